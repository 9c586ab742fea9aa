/*
 * A worker's client connections: the header clock, and the socket's one registration in the
 * loop (conn.h).
 *
 * The header deadline. libmicrohttpd's connection timeout (limits.connection_timeout_ms) is an
 * idle timeout: every byte resets it, so a client that sends one header byte every few seconds
 * (a slowloris) would hold its connection, and with enough of them all of
 * limits.max_connections, forever. So a connection must also deliver a whole request line and
 * headers within limits.header_timeout_ms of the moment it starts a request: when it opens,
 * and, on a keep-alive connection, when the first byte of its next request arrives. The time a
 * keep-alive connection spends idle between requests is left to the idle timeout, as nginx
 * does, so that the two keys bound different things and a pooled client's idle connection is
 * not cut (and logged as an attack) early.
 *
 * Connections whose header clock runs sit in one list per worker. A clock only ever starts
 * "now", so appending keeps the list in deadline order: the head is the next to expire, one
 * loop timer serves them all, and taking a connection out (its headers arrived) is O(1). An
 * expired connection is shut down (shutdown(2) on its socket); libmicrohttpd then reads the end
 * of the stream and closes it through its usual path, which calls the completion callback (the
 * access line says 408) and then the close notification, where its bookkeeping is freed.
 * Everything here runs on the worker's thread (or on the main thread after it has stopped,
 * when the daemon is torn down); nothing is locked.
 */

#include "hcgw/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "hcgw/config.h"
#include "hcgw/log.h"
#include "hcgw/loop.h"

enum conn_state {
    CONN_HEADERS,    /* the header clock runs; in the list */
    CONN_IDLE,       /* keep-alive between requests; its socket is watched for the next byte */
    CONN_SERVING,    /* headers arrived (or the deadline is off): no clock */
    CONN_CUT         /* shut down at its deadline; libmicrohttpd closes it next */
};

/* One client connection (libmicrohttpd's socket_context for it). */
struct gw_conn {
    struct gw_conns *cl;
    struct MHD_Connection *mhd;
    enum conn_state state;
    uint64_t since_ms;               /* loop time when the header clock started */
    struct gw_conn *prev;            /* in cl's list while CONN_HEADERS */
    struct gw_conn *next;
    /* The socket's one registration in the worker's loop, made when it is first needed and
     * kept for the connection's life with one mask, edge-triggered (CONN_WATCH): it hears the
     * next request's first byte while CONN_IDLE and a hang-up while a request waits on
     * HelpCrunch, and costs no epoll_ctl per request. An edge that comes when nobody waits
     * for it is only noted (input_seen, hup_seen), so that a state that starts caring later
     * asks epoll to look again (gw_loop_io_poke) only when something may have been missed. */
    struct gw_io io;
    void *req;                       /* the request being read or served (opaque), or NULL */
    bool input_seen;                 /* bytes arrived since the connection last went idle */
    bool hup_seen;                   /* the peer hung up (or half-closed) */
    bool hangup_watched;             /* req waits on HelpCrunch: a hang-up cancels its call */
};

/* The registration's one mask: see gw_conn.io. */
#define CONN_WATCH (EPOLLIN | EPOLLRDHUP | EPOLLET)

/* A worker's connections; those whose header clock runs are in its list. */
struct gw_conns {
    struct gw_loop *loop;
    const struct gw_config *const *cfg;  /* the worker's current configuration */
    struct gw_conn_hooks hooks;
    bool *mhd_needs_run;
    struct gw_log *log;
    struct gw_conn *head;            /* oldest clock first */
    struct gw_conn *tail;
    struct gw_timer timer;           /* due at the head's deadline (or earlier) */
};

struct gw_conn *gw_conn_of(struct MHD_Connection *mhd)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci != NULL ? ci->socket_context : NULL;
}

static uint64_t header_timeout(const struct gw_conns *cl)
{
    return (uint64_t)(*cl->cfg)->limits.header_timeout_ms;
}

static void unlink_conn(struct gw_conn *c)
{
    struct gw_conns *cl = c->cl;

    if (c->state != CONN_HEADERS)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        cl->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        cl->tail = c->prev;
    c->prev = NULL;
    c->next = NULL;
}

/* Leave the current state (and the clock's list) for @p state. */
static void set_state(struct gw_conn *c, enum conn_state state)
{
    unlink_conn(c);
    c->state = state;
}

/*
 * Make sure the registration is there, and that an edge missed while nobody cared is heard:
 * the first registration reports what is pending by itself; later, one EPOLL_CTL_MOD does,
 * and only when @p missed says an edge may have gone by. 0, or -1 when the socket cannot be
 * watched.
 */
static int watch(struct gw_conn *c, bool missed)
{
    if (c->io.fd < 0)
        return -1;
    if (c->io.events != CONN_WATCH)
        return gw_loop_io_set(c->cl->loop, &c->io, CONN_WATCH) == 0 ? 0 : -1;
    if (missed)
        return gw_loop_io_poke(c->cl->loop, &c->io) == 0 ? 0 : -1;
    return 0;
}

/*
 * Start the header clock now (unless the deadline is off). The timer is normally due already
 * no later than this new deadline, which is the latest of all; a reload that shortened
 * limits.header_timeout_ms is the exception, hence the comparison.
 */
static void start_clock(struct gw_conn *c)
{
    struct gw_conns *cl = c->cl;
    struct gw_loop *loop = cl->loop;
    uint64_t limit = header_timeout(cl);

    if (limit == 0) {
        set_state(c, CONN_SERVING);
        return;
    }
    set_state(c, CONN_HEADERS);
    c->since_ms = gw_loop_now(loop);
    c->prev = cl->tail;
    c->next = NULL;
    if (cl->tail != NULL)
        cl->tail->next = c;
    else
        cl->head = c;
    cl->tail = c;
    if (cl->timer.slot == 0 || cl->timer.due_ms > c->since_ms + limit)
        gw_timer_start(loop, &cl->timer, limit);
}

/* "203.0.113.7:51234" or "[2001:db8::1]:51234"; "" when unknown. */
static void format_remote(struct MHD_Connection *mhd, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN];

    out[0] = '\0';
    if (ci == NULL || ci->client_addr == NULL)
        return;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)ci->client_addr;
        if (inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip)) != NULL)
            snprintf(out, size, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)ci->client_addr;
        if (inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof(ip)) != NULL)
            snprintf(out, size, "[%s]:%u", ip, (unsigned)ntohs(sa->sin6_port));
    }
}

/* Shut the socket down; libmicrohttpd sees the end of the stream at its next run and closes
 * the connection. Returns false when the socket could not be found. */
static bool shut_socket(struct gw_conns *cl, struct MHD_Connection *mhd)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CONNECTION_FD);

    if (ci == NULL)
        return false;
    shutdown(ci->connect_fd, SHUT_RDWR);
    *cl->mhd_needs_run = true;
    return true;
}

static void cut(struct gw_conn *c, uint64_t now)
{
    struct gw_conns *cl = c->cl;
    struct gw_logline l;
    char remote[INET6_ADDRSTRLEN + 8];

    set_state(c, CONN_CUT);
    if (c->req != NULL)
        cl->hooks.cut(c->req);
    if (gw_log_enabled(cl->log, GW_LOG_WARN)) {
        format_remote(c->mhd, remote, sizeof(remote));
        gw_log_begin(cl->log, &l, GW_LOG_WARN, "header timeout: connection closed");
        gw_log_str(&l, "remote", remote[0] ? remote : NULL);
        gw_log_int(&l, "header_timeout_ms", (long long)header_timeout(c->cl));
        gw_log_int(&l, "waited_ms", (long long)(now - c->since_ms));
        gw_log_str(&l, "stage", c->req != NULL ? "headers" : "request_line");
        gw_log_end(&l);
    }
    shut_socket(cl, c->mhd);
}

static void on_header_timer(struct gw_timer *t)
{
    struct gw_conns *cl = t->data;
    uint64_t now = gw_loop_now(cl->loop);
    uint64_t limit = header_timeout(cl);

    /* A reload turned the deadline off: every clock stops. */
    while (limit == 0 && cl->head != NULL)
        set_state(cl->head, CONN_SERVING);
    while (cl->head != NULL && now - cl->head->since_ms >= limit)
        cut(cl->head, now);
    if (cl->head != NULL)
        gw_timer_start(cl->loop, &cl->timer, cl->head->since_ms + limit - now);
}

/*
 * The socket's event: while idle, the first byte (or the end) of a keep-alive connection's
 * next request starts the header clock; while its request waits on HelpCrunch, a hang-up
 * cancels the call. Anything else is an arming that outlived its purpose.
 */
static void on_conn_event(struct gw_io *io, uint32_t events)
{
    struct gw_conn *c = io->data;

    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->hup_seen = true;
    if (c->state == CONN_IDLE) {
        start_clock(c);
        return;
    }
    if (events & EPOLLIN)
        c->input_seen = true;
    if (c->req != NULL && c->hangup_watched && c->hup_seen)
        c->cl->hooks.hung_up(c->req);
}

void gw_conn_watch_hangup(struct gw_conn *c)
{
    if (c == NULL)
        return;
    /* A hang-up heard before anyone cared comes again, through the loop, as an event. */
    if (watch(c, c->hup_seen) == 0)
        c->hangup_watched = true;
}

void gw_conn_request_begun(struct gw_conn *c, void *req)
{
    if (c == NULL)
        return;
    /* Pipelined bytes that libmicrohttpd had already read were never seen by the watch. */
    if (c->state == CONN_IDLE)
        start_clock(c);
    c->req = req;
}

void gw_conn_headers_done(struct gw_conn *c)
{
    if (c != NULL && c->state != CONN_CUT)
        set_state(c, CONN_SERVING);
}

/*
 * A request that never reached the access handler (libmicrohttpd refused it itself) keeps the
 * clock it had; a cut connection stays cut.
 */
void gw_conn_request_done(struct gw_conn *c, bool keep_alive)
{
    if (c == NULL)
        return;
    c->req = NULL;
    c->hangup_watched = false;
    if (!keep_alive || c->state != CONN_SERVING || header_timeout(c->cl) == 0)
        return;
    set_state(c, CONN_IDLE);
    /* Bytes that arrived while the request was served may be the next request's (their edge
     * found the connection busy): epoll looks again. Without the watch, fall back to a clock
     * from now: a bound held early beats none. */
    if (watch(c, c->input_seen || c->hup_seen) != 0)
        start_clock(c);
    c->input_seen = false;
}

struct gw_conns *gw_conns_new(struct gw_loop *loop, const struct gw_config *const *cfg,
                              const struct gw_conn_hooks *hooks, bool *mhd_needs_run,
                              struct gw_log *log)
{
    struct gw_conns *cl = calloc(1, sizeof(*cl));

    if (cl == NULL)
        return NULL;
    cl->loop = loop;
    cl->cfg = cfg;
    cl->hooks = *hooks;
    cl->mhd_needs_run = mhd_needs_run;
    cl->log = log;
    gw_timer_init(&cl->timer, on_header_timer, cl);
    return cl;
}

void gw_conns_free(struct gw_conns *cl)
{
    if (cl == NULL)
        return;
    /* libmicrohttpd has stopped and announced every close, so the list is empty by now. */
    gw_timer_stop(cl->loop, &cl->timer);
    free(cl);
}

void gw_conns_notify(void *cls, struct MHD_Connection *mhd, void **socket_context,
                     enum MHD_ConnectionNotificationCode code)
{
    struct gw_conns *cl = cls;
    struct gw_conn *c;
    const union MHD_ConnectionInfo *ci;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        /*
         * At limits.max_connections, libmicrohttpd (in external epoll mode) takes the listening
         * socket out of its epoll set, and puts it back only at the start of its next run, not
         * when a connection closes. A close happens at the end of a run, and a daemon with no
         * connections left has no timeout to wake it: without another run, connections waiting
         * in the backlog would never be accepted. So a close asks for one more run.
         */
        *cl->mhd_needs_run = true;
        c = *socket_context;
        *socket_context = NULL;
        if (c == NULL)
            return;
        set_state(c, CONN_CUT);
        /* Out of the loop's set (and its pending events) before the memory goes. */
        gw_loop_io_set(cl->loop, &c->io, 0);
        free(c);
        return;
    }
    *socket_context = NULL;
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    /* Kept even while the deadline is off, so that a reload that turns it on applies to the
     * connections already open from their next request on. */
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        gw_logf(cl->log, GW_LOG_ERROR, "out of memory for a new connection: closing it");
        shut_socket(cl, mhd);
        return;
    }
    ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->cl = cl;
    c->mhd = mhd;
    c->state = CONN_SERVING; /* left by start_clock at once */
    /* Without its descriptor the idle watch fails, and the clock then restarts at once. */
    c->io.fd = ci != NULL ? ci->connect_fd : -1;
    c->io.cb = on_conn_event;
    c->io.data = c;
    *socket_context = c;
    start_clock(c);
}

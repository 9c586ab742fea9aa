/*
 * One Redis connection of one worker (redis.h): hiredis 0.14's asynchronous context, an
 * adapter that puts its socket on the worker's loop, the sign-in, the deadlines, the backoff.
 *
 * The life of a connection: the retry timer fires (at once for the first one) -> the host is
 * looked up (resolve.c; an IP literal needs none) -> redisAsyncConnect starts a non-blocking
 * connect and the adapter watches the socket -> AUTH, SELECT (or PING when neither is needed)
 * are queued at once, and the connection is up when the last of them is answered. All of it
 * must end within the sign-in deadline (the longer of GW_REDIS_CONNECT_TIMEOUT_MS and
 * redis.timeout_ms). Any failure closes the context and starts the retry timer with the
 * backoff.
 *
 * hiredis's rules that shape this file: a context frees itself when its connect fails or its
 * connection breaks (after running every pending callback with a NULL reply, then the
 * adapter's cleanup, then the disconnect callback); redisAsyncFree called from inside a reply
 * callback is carried out when that callback returns; a context must not be freed from inside
 * its connect callback. So the connection is only ever closed by redisAsyncFree outside the
 * connect callback, and every hook checks that the context it hears of is still the current
 * one (r->ac); the adapter's socket registration lives in struct gw_redis itself, since a new
 * context is only made by the retry timer, after the old one is gone.
 *
 * Each command is a record (struct gw_redis_cmd) given to hiredis as the callback's private
 * data: hiredis calls back exactly once per record, with the answer or, when the context
 * goes, with NULL, and that call frees the record. A record whose caller gave up (timeout or
 * gw_redis_cancel) has no callback of the caller's left and is freed the same way.
 */
#include "hcgw/redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <openssl/evp.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "hcgw/config.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/metrics.h"
#include "hcgw/resolve.h"
#include "hcgw/secret.h"

/* The sign-in's steps, the commands queued on every new connection, in order. */
enum step {
    STEP_COMMAND = 0,                /* a caller's command, not a step */
    STEP_AUTH,
    STEP_SELECT,
    STEP_PING                        /* when neither AUTH nor SELECT is needed */
};

enum phase {
    PHASE_WAITING = 0,               /* down: the retry timer runs (or nothing, while freeing) */
    PHASE_CONNECTING,                /* looking up, connecting, signing in */
    PHASE_UP
};

struct gw_redis_cmd {
    struct gw_redis *r;
    gw_redis_reply_cb *cb;           /* NULL once the caller's part is over */
    void *data;
    enum step step;
    bool last_step;                  /* its answer brings the connection up */
    struct gw_timer timer;           /* at deadline_ms, then at health_ms */
    uint64_t deadline_ms;            /* the caller's (loop time), at most health_ms */
    uint64_t health_ms;              /* unanswered by then, Redis is away */
    uint64_t sent_us;                /* monotonic, for the duration */
    struct gw_redis_cmd *prev, *next;/* r->cmds */
};

struct gw_redis {
    struct gw_loop *loop;
    struct gw_log *log;
    const struct gw_config *cfg;
    gw_redis_state_cb *on_state;
    void *state_data;

    enum phase phase;
    redisAsyncContext *ac;           /* the current context, NULL when none */
    redisAsyncContext *attached;     /* the context the adapter serves; NULL after cleanup */
    struct gw_io io;                 /* the attached context's socket */
    uint32_t io_events;
    bool tcp_up;                     /* the current context's connect(2) succeeded */
    struct gw_resolve *resolve;      /* the lookup of the current attempt, or NULL */
    struct gw_timer retry;           /* down: when to try again */
    struct gw_timer signin;          /* connecting: the attempt's deadline */
    uint64_t backoff_ms;             /* the next failure's wait */
    uint32_t rng;                    /* xorshift state for the backoff's jitter */
    bool freeing;

    struct gw_redis_cmd *cmds;       /* every record hiredis holds */
    size_t pending;                  /* the callers' commands among them */

    char last_error[GW_REDIS_ERROR_BYTES];
    char logged_error[GW_REDIS_ERROR_BYTES]; /* the last reason written to the log */
    struct gw_redis_stats st;
};

const double gw_redis_duration_bounds_s[GW_REDIS_DURATION_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
};

static const char *const error_names[GW_REDIS_ERR__COUNT] = {
    [GW_REDIS_ERR_CONNECT] = "connect",   [GW_REDIS_ERR_AUTH] = "auth",
    [GW_REDIS_ERR_TIMEOUT] = "timeout",   [GW_REDIS_ERR_CLOSED] = "closed",
    [GW_REDIS_ERR_REPLY] = "reply",       [GW_REDIS_ERR_PROTOCOL] = "protocol",
    [GW_REDIS_ERR_OVERLOAD] = "overload",
};

static const char *const step_names[] = {
    [STEP_COMMAND] = "a command", [STEP_AUTH] = "AUTH", [STEP_SELECT] = "SELECT",
    [STEP_PING] = "PING",
};

const char *gw_redis_error_name(enum gw_redis_error kind)
{
    if ((int)kind < 0 || kind >= GW_REDIS_ERR__COUNT)
        return "unknown";
    return error_names[kind];
}

static uint64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void set_stat(uint64_t *field, uint64_t v)
{
    __atomic_store_n(field, v, __ATOMIC_RELAXED);
}

static void observe(struct gw_redis *r, uint64_t us)
{
    size_t i = 0;

    while (i < GW_REDIS_DURATION_BUCKETS && (double)us > gw_redis_duration_bounds_s[i] * 1e6)
        i++;
    gw_metrics_inc(&r->st.duration_buckets[i]);
    set_stat(&r->st.duration_sum_us, r->st.duration_sum_us + us);
    gw_metrics_inc(&r->st.answers);
}

/* ---- the adapter: hiredis's event hooks on the worker's loop ---- */

static void watch(struct gw_redis *r, uint32_t events)
{
    if (r->attached == NULL || events == r->io_events)
        return;
    /* A failure (out of memory in epoll) leaves the socket unwatched: the sign-in deadline or
     * the commands' deadlines then close the connection. */
    if (gw_loop_io_set(r->loop, &r->io, events) == 0)
        r->io_events = events;
}

static void ev_add_read(void *p)
{
    struct gw_redis *r = p;

    watch(r, r->io_events | EPOLLIN);
}

static void ev_del_read(void *p)
{
    struct gw_redis *r = p;

    watch(r, r->io_events & ~(uint32_t)EPOLLIN);
}

static void ev_add_write(void *p)
{
    struct gw_redis *r = p;

    watch(r, r->io_events | EPOLLOUT);
}

static void ev_del_write(void *p)
{
    struct gw_redis *r = p;

    watch(r, r->io_events & ~(uint32_t)EPOLLOUT);
}

/* The context is going (hiredis closes the socket next): stop watching it. */
static void ev_cleanup(void *p)
{
    struct gw_redis *r = p;

    if (r->attached != NULL && r->io_events != 0)
        gw_loop_io_set(r->loop, &r->io, 0);
    r->io_events = 0;
    r->attached = NULL;
}

static void fail_conn(struct gw_redis *r, enum gw_redis_error kind, const char *fmt, ...)
    GW_PRINTF(3, 4);

/* Bytes of answers read and not yet parsed. */
static size_t unparsed(const redisAsyncContext *ac)
{
    const redisReader *rd = ac->c.reader;

    return rd != NULL && rd->len > rd->pos ? rd->len - rd->pos : 0;
}

static void on_io(struct gw_io *io, uint32_t events)
{
    struct gw_redis *r = io->data;
    redisAsyncContext *ac = r->attached;

    if (ac == NULL)
        return;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        redisAsyncHandleRead(ac);
    /* The context may be gone now (connect failed, connection lost, or closed by a
     * callback); no new one can have taken its place within this call. */
    if (r->attached == ac && (events & EPOLLOUT))
        redisAsyncHandleWrite(ac);
    if (r->attached == ac && r->ac == ac && unparsed(ac) > GW_REDIS_MAX_REPLY_BYTES)
        fail_conn(r, GW_REDIS_ERR_PROTOCOL, "an answer larger than %d bytes",
                  GW_REDIS_MAX_REPLY_BYTES);
}

/* ---- state ---- */

static void cmd_unlink(struct gw_redis *r, struct gw_redis_cmd *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        r->cmds = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Where a log line says it connects: host:port/db. */
static void target(const struct gw_redis *r, char *buf, size_t bufsz)
{
    const char *host = r->cfg->redis.host;
    bool v6 = strchr(host, ':') != NULL;

    snprintf(buf, bufsz, "%s%s%s:%d/%d", v6 ? "[" : "", host, v6 ? "]" : "", r->cfg->redis.port,
             r->cfg->redis.db);
}

/*
 * Keep @p text as the last error, with the password masked should Redis ever echo it; count
 * it under @p kind (unless @p counted: an error answer, counted when it came); log it when it
 * is not the reason logged last (a Redis that stays away is one line, not one per attempt).
 */
static void record_error(struct gw_redis *r, enum gw_redis_error kind, bool counted,
                         const char *text)
{
    char where[GW_MAX_REDIS_HOST_BYTES + 32];
    struct gw_logline l;

    snprintf(r->last_error, sizeof r->last_error, "%s", text);
    gw_secret_redact(r->cfg->redis.password, r->last_error, strlen(r->last_error));
    if (!counted)
        gw_metrics_inc(&r->st.errors[kind]);
    if (strcmp(r->last_error, r->logged_error) == 0 || !gw_log_enabled(r->log, GW_LOG_WARN))
        return;
    memcpy(r->logged_error, r->last_error, sizeof r->logged_error);
    target(r, where, sizeof where);
    gw_log_begin(r->log, &l, GW_LOG_WARN, "redis unavailable");
    gw_log_str(&l, "redis", where);
    gw_log_str(&l, "kind", gw_redis_error_name(kind));
    gw_log_str(&l, "error", r->last_error);
    gw_log_end(&l);
}

static void notify(struct gw_redis *r, bool up, const char *reason)
{
    if (r->on_state != NULL && !r->freeing)
        r->on_state(r->state_data, up, reason);
}

/*
 * Close the current attempt or connection, whatever its phase. Every record of the context
 * is called back with NULL (the callers' with GW_REDIS_DOWN), at once, or, when this runs
 * inside one of its reply callbacks, as soon as that callback returns. Returns whether it
 * was up. Starts nothing.
 */
static bool close_conn(struct gw_redis *r)
{
    redisAsyncContext *ac = r->ac;
    bool was_up = r->phase == PHASE_UP;

    r->phase = PHASE_WAITING;
    r->ac = NULL;
    r->tcp_up = false;
    set_stat(&r->st.up, 0);
    gw_timer_stop(r->loop, &r->signin);
    gw_resolve_cancel(r->resolve);
    r->resolve = NULL;
    if (ac != NULL)
        redisAsyncFree(ac);
    return was_up;
}

static void schedule_retry(struct gw_redis *r)
{
    uint64_t half = r->backoff_ms / 2;
    uint32_t x = r->rng;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r->rng = x;
    gw_timer_start(r->loop, &r->retry, half + x % (r->backoff_ms - half + 1));
    r->backoff_ms = r->backoff_ms * 2 > GW_REDIS_BACKOFF_MAX_MS ? GW_REDIS_BACKOFF_MAX_MS
                                                                : r->backoff_ms * 2;
}

/*
 * The attempt or the connection failed for @p kind: record why, close it, try again after
 * the backoff, and tell the state callback when it was up. An error answer (kind reply) was
 * counted when it came; any other kind is counted here. The context, when hiredis is
 * about to free it itself, must already be detached (r->ac NULL).
 */
static void fail_conn(struct gw_redis *r, enum gw_redis_error kind, const char *fmt, ...)
{
    char text[GW_REDIS_ERROR_BYTES];
    va_list ap;
    bool was_up;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    record_error(r, kind, kind == GW_REDIS_ERR_REPLY, text);
    was_up = close_conn(r);
    if (!r->freeing)
        schedule_retry(r);
    if (was_up)
        notify(r, false, r->last_error);
}

static void come_up(struct gw_redis *r)
{
    char where[GW_MAX_REDIS_HOST_BYTES + 32];
    struct gw_logline l;

    r->phase = PHASE_UP;
    r->backoff_ms = GW_REDIS_BACKOFF_MIN_MS;
    gw_timer_stop(r->loop, &r->signin);
    set_stat(&r->st.up, 1);
    gw_metrics_inc(&r->st.connects);
    r->logged_error[0] = '\0';
    if (gw_log_enabled(r->log, GW_LOG_INFO)) {
        target(r, where, sizeof where);
        gw_log_begin(r->log, &l, GW_LOG_INFO, "redis up");
        gw_log_str(&l, "redis", where);
        gw_log_end(&l);
    }
    notify(r, true, NULL);
}

/* ---- hiredis's callbacks ---- */

/* A sign-in step was answered (@p reply NULL: its context went, and who closed it said why). */
static void step_answered(struct gw_redis *r, const struct gw_redis_cmd *c,
                          const redisReply *reply)
{
    if (reply == NULL || r->phase != PHASE_CONNECTING)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        fail_conn(r, GW_REDIS_ERR_AUTH, "Redis refused %s: %.*s", step_names[c->step],
                  (int)(reply->len < 160 ? reply->len : 160), reply->str);
        return;
    }
    if (c->last_step)
        come_up(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct gw_redis_cmd *c = privdata;
    struct gw_redis *r = c->r;
    const redisReply *rep = reply;
    gw_redis_reply_cb *cb = c->cb;
    void *data = c->data;
    enum gw_redis_result result;

    (void)ac;
    gw_timer_stop(r->loop, &c->timer);
    cmd_unlink(r, c);
    if (c->step != STEP_COMMAND) {
        step_answered(r, c, rep);
        free(c);
        return;
    }
    r->pending--;
    if (rep != NULL) {
        observe(r, mono_us() - c->sent_us);
        /* NOSCRIPT is the expected answer to an EVALSHA of a script Redis does not hold yet. */
        if (rep->type == REDIS_REPLY_ERROR && (rep->str == NULL || strncmp(rep->str, "NOSCRIPT", 8) != 0))
            gw_metrics_inc(&r->st.errors[GW_REDIS_ERR_REPLY]);
    }
    /* Gone with its connection: late for a command whose deadline has passed too (the
     * connection went for another one's timeout at the same moment), else down. */
    if (rep != NULL)
        result = GW_REDIS_REPLY;
    else if (gw_loop_now(r->loop) >= c->deadline_ms)
        result = GW_REDIS_TIMEOUT;
    else
        result = GW_REDIS_DOWN;
    free(c);
    if (cb != NULL)
        cb(data, result, rep);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct gw_redis *r = ac->data;

    if (ac != r->ac)
        return;
    if (status == REDIS_OK) {
        r->tcp_up = true;
        return;
    }
    /* hiredis frees the context when this returns: detach it first. */
    r->ac = NULL;
    fail_conn(r, GW_REDIS_ERR_CONNECT, "cannot connect to %s:%d: %s", r->cfg->redis.host,
              r->cfg->redis.port, ac->c.err ? ac->c.errstr : "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct gw_redis *r = ac->data;

    (void)status;
    if (ac != r->ac)
        return; /* closed by close_conn, which said why */
    r->ac = NULL;
    fail_conn(r, GW_REDIS_ERR_CLOSED, "connection lost: %s",
              ac->c.err ? ac->c.errstr : "closed by Redis");
}

/* ---- connecting ---- */

/* Queue a sign-in step. Returns 0, or -1 (out of memory, or the context refused it). */
static int send_step(struct gw_redis *r, enum step step, bool last, int argc,
                     const char *const argv[], const size_t argvlen[])
{
    struct gw_redis_cmd *c = calloc(1, sizeof *c);

    if (c == NULL)
        return -1;
    c->r = r;
    c->step = step;
    c->last_step = last;
    gw_timer_init(&c->timer, NULL, c);
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, (const char **)argv, argvlen) !=
        REDIS_OK) {
        free(c);
        return -1;
    }
    c->next = r->cmds;
    if (r->cmds)
        r->cmds->prev = c;
    r->cmds = c;
    return 0;
}

/* AUTH [username] password, SELECT db: or PING when neither is needed. */
static int send_signin(struct gw_redis *r)
{
    const struct gw_secret *pw = r->cfg->redis.password;
    const char *user = r->cfg->redis.username;
    char db[16];
    const char *argv[3];
    size_t lens[3];
    bool select = r->cfg->redis.db != 0;
    int argc = 0;

    if (pw != NULL) {
        argv[argc] = "AUTH";
        lens[argc++] = 4;
        if (user != NULL) {
            argv[argc] = user;
            lens[argc++] = strlen(user);
        }
        argv[argc] = gw_secret_value(pw);
        lens[argc++] = gw_secret_len(pw);
        if (send_step(r, STEP_AUTH, !select, argc, argv, lens) != 0)
            return -1;
    }
    if (select) {
        snprintf(db, sizeof db, "%d", r->cfg->redis.db);
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db;
        lens[1] = strlen(db);
        if (send_step(r, STEP_SELECT, true, 2, argv, lens) != 0)
            return -1;
    }
    if (pw == NULL && !select) {
        argv[0] = "PING";
        lens[0] = 4;
        if (send_step(r, STEP_PING, true, 1, argv, lens) != 0)
            return -1;
    }
    return 0;
}

/* Connect to the numeric address @p addr; the sign-in is queued at once. */
static void connect_to(struct gw_redis *r, const char *addr)
{
    redisAsyncContext *ac = redisAsyncConnect(addr, r->cfg->redis.port);
    char why[GW_REDIS_ERROR_BYTES];

    if (ac == NULL) {
        fail_conn(r, GW_REDIS_ERR_CONNECT, "cannot connect to %s:%d: out of memory",
                  r->cfg->redis.host, r->cfg->redis.port);
        return;
    }
    if (ac->err) {
        /* Refused at once (a loopback port nobody listens on): not attached yet, so freeing
         * it calls nothing of ours. */
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        fail_conn(r, GW_REDIS_ERR_CONNECT, "cannot connect to %s:%d: %s", r->cfg->redis.host,
                  r->cfg->redis.port, why);
        return;
    }
    ac->data = r;
    ac->ev.data = r;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    r->ac = ac;
    r->attached = ac;
    r->io.fd = ac->c.fd;
    r->io_events = 0;
    /* The connect callback watches for writability: a finished connect(2). */
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (send_signin(r) != 0)
        fail_conn(r, GW_REDIS_ERR_CONNECT, "cannot queue the sign-in: out of memory");
}

static void on_resolved(void *data, const char *addr, const char *error)
{
    struct gw_redis *r = data;

    r->resolve = NULL;
    if (addr == NULL) {
        fail_conn(r, GW_REDIS_ERR_CONNECT, "cannot look up %s: %s", r->cfg->redis.host, error);
        return;
    }
    connect_to(r, addr);
}

static bool is_ip_literal(const char *host)
{
    struct in6_addr a;

    return inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
}

static void on_retry(struct gw_timer *t)
{
    struct gw_redis *r = t->data;
    long limit = r->cfg->redis.timeout_ms > GW_REDIS_CONNECT_TIMEOUT_MS
                     ? r->cfg->redis.timeout_ms
                     : GW_REDIS_CONNECT_TIMEOUT_MS;
    int rc;

    r->phase = PHASE_CONNECTING;
    r->tcp_up = false;
    gw_timer_start(r->loop, &r->signin, (uint64_t)limit);
    if (is_ip_literal(r->cfg->redis.host)) {
        connect_to(r, r->cfg->redis.host);
        return;
    }
    rc = gw_resolve_start(r->loop, r->cfg->redis.host, on_resolved, r, &r->resolve);
    if (rc != 0)
        fail_conn(r, GW_REDIS_ERR_CONNECT, "cannot look up %s: %s", r->cfg->redis.host,
                  rc == GW_ERR_NOMEM ? "out of memory" : "the lookup could not start");
}

static void on_signin_deadline(struct gw_timer *t)
{
    struct gw_redis *r = t->data;
    long limit = r->cfg->redis.timeout_ms > GW_REDIS_CONNECT_TIMEOUT_MS
                     ? r->cfg->redis.timeout_ms
                     : GW_REDIS_CONNECT_TIMEOUT_MS;

    if (r->tcp_up)
        fail_conn(r, GW_REDIS_ERR_TIMEOUT, "Redis did not answer the sign-in within %ld ms",
                  limit);
    else
        fail_conn(r, GW_REDIS_ERR_CONNECT, "cannot connect to %s:%d within %ld ms",
                  r->cfg->redis.host, r->cfg->redis.port, limit);
}

/* ---- the API ---- */

struct gw_redis *gw_redis_new(struct gw_loop *loop, const struct gw_config *cfg,
                              struct gw_log *log, gw_redis_state_cb *on_state, void *data)
{
    struct gw_redis *r = calloc(1, sizeof *r);

    if (r == NULL)
        return NULL;
    r->loop = loop;
    r->log = log;
    r->cfg = cfg;
    r->on_state = on_state;
    r->state_data = data;
    r->io.cb = on_io;
    r->io.data = r;
    r->io.fd = -1;
    r->backoff_ms = GW_REDIS_BACKOFF_MIN_MS;
    /* Any nonzero seed; replicas and workers differ by address and start time. */
    r->rng = (uint32_t)((uintptr_t)r ^ mono_us()) | 1u;
    gw_timer_init(&r->retry, on_retry, r);
    gw_timer_init(&r->signin, on_signin_deadline, r);
    gw_timer_start(loop, &r->retry, 0);
    return r;
}

static bool same_secret(const struct gw_secret *a, const struct gw_secret *b)
{
    return (a == NULL && b == NULL) || gw_secret_same(a, b);
}

static bool same_string(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

void gw_redis_reconfigure(struct gw_redis *r, const struct gw_config *cfg)
{
    const struct gw_config *old = r->cfg;
    bool same = strcmp(old->redis.host, cfg->redis.host) == 0 &&
                old->redis.port == cfg->redis.port && old->redis.db == cfg->redis.db &&
                same_string(old->redis.username, cfg->redis.username) &&
                same_secret(old->redis.password, cfg->redis.password);
    bool was_up;

    if (same) {
        r->cfg = cfg;
        return;
    }
    /* Closed while the old settings are still at hand (the password masked in errors). */
    was_up = close_conn(r);
    r->cfg = cfg;
    r->backoff_ms = GW_REDIS_BACKOFF_MIN_MS;
    r->logged_error[0] = '\0';
    gw_timer_start(r->loop, &r->retry, 0);
    if (was_up)
        notify(r, false, "the redis settings changed: reconnecting");
}

void gw_redis_free(struct gw_redis *r)
{
    if (r == NULL)
        return;
    r->freeing = true;
    for (struct gw_redis_cmd *c = r->cmds; c != NULL; c = c->next)
        c->cb = NULL;
    close_conn(r);
    gw_timer_stop(r->loop, &r->retry);
    free(r);
}

/*
 * A command's timer: its caller's deadline (the caller hears GW_REDIS_TIMEOUT, the connection
 * stays), or redis.timeout_ms (Redis is away: the connection goes down, and the caller, when
 * still waiting, hears GW_REDIS_TIMEOUT).
 */
static void on_cmd_timer(struct gw_timer *t)
{
    struct gw_redis_cmd *c = t->data;
    struct gw_redis *r = c->r;
    uint64_t now = gw_loop_now(r->loop);
    gw_redis_reply_cb *cb = NULL;
    void *data = c->data;

    if (c->cb != NULL && now >= c->deadline_ms) {
        cb = c->cb;
        c->cb = NULL;
    }
    /* Closing frees c (its record is called back with NULL). */
    if (now >= c->health_ms)
        fail_conn(r, GW_REDIS_ERR_TIMEOUT, "no answer within %ld ms (redis.timeout_ms)",
                  r->cfg->redis.timeout_ms);
    else
        gw_timer_start(r->loop, &c->timer, c->health_ms - now);
    if (cb != NULL)
        cb(data, GW_REDIS_TIMEOUT, NULL);
}

int gw_redis_command(struct gw_redis *r, int argc, const char *const argv[],
                     const size_t argvlen[], uint64_t deadline_ms, gw_redis_reply_cb *cb,
                     void *data, struct gw_redis_cmd **out)
{
    struct gw_redis_cmd *c;
    uint64_t now = gw_loop_now(r->loop);

    if (out != NULL)
        *out = NULL;
    if (r->phase != PHASE_UP || r->ac == NULL)
        return GW_ERR_UPSTREAM_UNAVAILABLE;
    if (r->pending >= GW_REDIS_MAX_PENDING) {
        gw_metrics_inc(&r->st.errors[GW_REDIS_ERR_OVERLOAD]);
        return GW_ERR_OVERLOADED;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return GW_ERR_NOMEM;
    c->r = r;
    c->cb = cb;
    c->data = data;
    c->step = STEP_COMMAND;
    c->health_ms = now + (uint64_t)r->cfg->redis.timeout_ms;
    c->deadline_ms = deadline_ms != 0 && deadline_ms < c->health_ms ? deadline_ms : c->health_ms;
    c->sent_us = mono_us();
    gw_timer_init(&c->timer, on_cmd_timer, c);
    /* Refused when the context is already going (a callback of its last moments). */
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, (const char **)argv, argvlen) !=
        REDIS_OK) {
        free(c);
        return GW_ERR_UPSTREAM_UNAVAILABLE;
    }
    c->next = r->cmds;
    if (r->cmds)
        r->cmds->prev = c;
    r->cmds = c;
    r->pending++;
    gw_timer_start(r->loop, &c->timer, c->deadline_ms > now ? c->deadline_ms - now : 0);
    if (out != NULL)
        *out = c;
    return 0;
}

void gw_redis_cancel(struct gw_redis_cmd *cmd)
{
    if (cmd != NULL)
        cmd->cb = NULL;
}

void gw_redis_fail(struct gw_redis *r, enum gw_redis_error kind, const char *reason)
{
    if (r->phase == PHASE_WAITING)
        return;
    if ((int)kind < 0 || kind >= GW_REDIS_ERR__COUNT)
        kind = GW_REDIS_ERR_REPLY;
    fail_conn(r, kind, "%s", reason);
}

bool gw_redis_up(const struct gw_redis *r)
{
    return r != NULL && r->phase == PHASE_UP;
}

size_t gw_redis_pending(const struct gw_redis *r)
{
    return r->pending;
}

uint64_t gw_redis_session(const struct gw_redis *r)
{
    return __atomic_load_n(&r->st.connects, __ATOMIC_RELAXED);
}

void gw_redis_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void gw_redis_script_sha(const char *script, char out[GW_REDIS_SHA1_HEX_BYTES])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (EVP_Digest(script, strlen(script), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        len = 0; /* never with libcrypto's own SHA-1; EVAL then carries the script */
    gw_redis_hex(md, len, out);
}

/* What the hash of the key starts with: this hash names an account, nothing else. */
#define ACCOUNT_DOMAIN "hcgw quota\n"

void gw_redis_account_tag(const struct gw_secret *key, char out[GW_REDIS_ACCOUNT_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    out[0] = '\0';
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, ACCOUNT_DOMAIN, sizeof ACCOUNT_DOMAIN - 1) == 1 &&
        EVP_DigestUpdate(ctx, gw_secret_value(key), gw_secret_len(key)) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &len) == 1 && len * 2 >= GW_REDIS_ACCOUNT_HEX)
        gw_redis_hex(md, GW_REDIS_ACCOUNT_HEX / 2, out);
    EVP_MD_CTX_free(ctx);
    gw_secret_wipe(md, sizeof md);
}

const char *gw_redis_last_error(const struct gw_redis *r)
{
    return r->last_error;
}

void gw_redis_stats(const struct gw_redis *r, struct gw_redis_stats *out)
{
    const uint64_t *from = (const uint64_t *)&r->st;
    uint64_t *to = (uint64_t *)out;

    /* The struct is nothing but uint64_t counts, each read atomically. */
    _Static_assert(sizeof(struct gw_redis_stats) % sizeof(uint64_t) == 0,
                   "gw_redis_stats holds only uint64_t counts");
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

/*
 * The upstream side: curl multi handles per worker loop (upstream.pool_shards, struct up_shard),
 * driven by the loop's epoll and timers through libcurl's socket interface
 * (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION). The multi handles' connection caches are the
 * keep-alive pool to HelpCrunch; a transfer goes to the one with the fewest transfers. A call
 * runs one or more attempts inside one deadline; between attempts it waits on a backoff timer
 * of the loop.
 *
 * start_attempt() is the single place every request to HelpCrunch leaves from: the gate admits
 * it there, and the key header (and, with upstream.propagate_trace, the trace headers) is
 * attached. finish() is the single place a call ends: its
 * outcome is settled there, once.
 */
#include "hcgw/upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "hcgw/config.h"
#include "hcgw/log.h"
#include "hcgw/metrics.h"
#include "hcgw/secret.h"
#include "hcgw/trace.h"
#include "hcgw/version.h"

/** Idle easy handles kept for reuse (each holds a few KiB). */
#define UP_MAX_IDLE_EASY 256
/** libcurl's receive buffer per handle (its default is 16 KiB). */
#define UP_RECV_BUFFER 4096
/** libcurl's send buffer per transfer, its minimum: libcurl 8 holds one (default 64 KiB) for
 * every transfer in flight; a request is a few hundred bytes, a longer body takes more writes. */
#define UP_SEND_BUFFER (16 * 1024)
/** First allocation for an answer body of unknown length; it grows by doubling up to the
 * configured bound. */
#define UP_INITIAL_BODY 1024

/* The request headers of one key generation. The list holds the key, so it is wiped when
 * freed, and it is freed only when no attempt sent with it is still in libcurl's hands. */
struct up_headers {
    struct curl_slist *list;
    unsigned refs;                   /* the upstream's own reference + one per live attempt */
};

/*
 * The trace headers of one attempt (upstream.propagate_trace): a traceparent naming a span of
 * the attempt's own, a child of hcgw's span for the request, and the caller's tracestate. Two
 * list nodes of their own in front of the key generation's shared list, so that an attempt
 * never copies the key; libcurl only reads the list, which lives until the transfer ends.
 */
struct up_trace_headers {
    struct curl_slist parent;        /* -> state, or the shared list */
    struct curl_slist state;         /* -> the shared list; unused without a tracestate */
    char parent_line[sizeof("traceparent: ") + GW_TRACEPARENT_LEN];
    char state_line[];               /* "tracestate: …", "" without one */
};

/*
 * One multi handle and its connection cache (upstream.pool_shards). libcurl 7.88 walks a
 * multi's whole cache twice per transfer (ConnectionExists looking for an idle connection,
 * curl_multi_remove_handle looking for the one just given back), so with a pool of P
 * connections split over S multi handles each walk covers P / S of them.
 */
struct up_shard {
    struct gw_upstream *up;
    CURLM *multi;
    struct gw_timer timer;           /* this multi's single timeout */
    size_t running;                  /* transfers added and not yet removed */
};

struct gw_upstream {
    struct gw_loop *loop;
    const struct gw_config *cfg;
    struct gw_metrics *metrics;
    struct gw_upstream_gate gate;
    struct gw_log *log;
    struct up_shard *shards;         /* n_shards of them, fixed at creation */
    size_t n_shards;
    struct up_headers *headers;      /* the current key generation */
    struct gw_call *calls;           /* in flight, doubly linked */
    struct up_sock *socks;           /* every up_sock, doubly linked */
    struct up_sock **by_fd;          /* connections' sockets by descriptor (on_curl_open) */
    size_t by_fd_len;
    size_t n_calls;
    CURL *idle[UP_MAX_IDLE_EASY];    /* configured for easy_gen, waiting for a call */
    size_t n_idle;
    unsigned easy_gen;               /* bumped by a reload: older handles are not reused */
    uint64_t rng;                    /* jitter */
};

/*
 * A socket libcurl asked us to watch. A connection's socket is made by on_curl_open and
 * listed by its descriptor (up->by_fd) until on_curl_close: between two transfers libcurl
 * stops watching it (CURL_POLL_REMOVE) while the connection waits in its pool, and the next
 * transfer on that connection asks for it again. The epoll registration is kept meanwhile
 * ("parked"), so that the round trip costs no system call when the next transfer wants the
 * same events (it nearly always wants EPOLLIN, as the last one did). Only the close tells
 * that a descriptor number is free for a new socket; the listing ends there.
 */
struct up_sock {
    struct gw_io io;
    struct gw_upstream *up;
    struct up_shard *shard;          /* the multi handle that watches it (its connection's) */
    bool listed;                     /* a connection's socket, in up->by_fd */
    bool connected;                  /* watched for reading once: libcurl closes it through
                                        on_curl_close (an unconnected one it may close itself) */
    bool watched;                    /* libcurl holds it (curl_multi_assign) */
    bool parked;                     /* libcurl stopped watching it; registration kept */
    struct up_sock *prev, *next;     /* every up_sock of the upstream */
};

static void check_done(struct up_shard *sh);
static int start_attempt(struct gw_upstream *up, struct gw_call *call);

static uint64_t next_rand(struct gw_upstream *up)
{
    /* xorshift64*: jitter needs spread, not secrecy. */
    up->rng ^= up->rng >> 12;
    up->rng ^= up->rng << 25;
    up->rng ^= up->rng >> 27;
    return up->rng * 0x2545F4914F6CDD1DULL;
}

static void wipe_slist(struct curl_slist *l)
{
    struct curl_slist *p;

    for (p = l; p != NULL; p = p->next)
        gw_secret_wipe(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

static struct curl_slist *build_headers(const struct gw_secret *secret)
{
    static const char prefix[] = "Authorization: Bearer ";
    struct curl_slist *l = NULL;
    struct curl_slist *t;
    size_t klen = gw_secret_len(secret);
    size_t n = sizeof(prefix) + klen;
    char *auth = malloc(n);

    if (auth == NULL)
        return NULL;
    memcpy(auth, prefix, sizeof(prefix) - 1);
    memcpy(auth + sizeof(prefix) - 1, gw_secret_value(secret), klen + 1);
    t = curl_slist_append(l, auth);
    gw_secret_wipe(auth, n);
    free(auth);
    if (t == NULL)
        goto fail;
    l = t;
    /* An empty "Expect:" stops curl from waiting for 100-continue before a body. */
    static const char *const fixed[] = {"Accept: application/json",
                                        "Content-Type: application/json", "Expect:"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        t = curl_slist_append(l, fixed[i]);
        if (t == NULL)
            goto fail;
        l = t;
    }
    return l;

fail:
    wipe_slist(l);
    return NULL;
}

static struct up_headers *headers_new(const struct gw_secret *secret)
{
    struct up_headers *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->list = build_headers(secret);
    if (h->list == NULL) {
        free(h);
        return NULL;
    }
    h->refs = 1;
    return h;
}

static void headers_put(struct up_headers *h)
{
    if (h == NULL || --h->refs > 0)
        return;
    wipe_slist(h->list);
    free(h);
}

/* ---- the loop glue ---- */

static void on_sock_event(struct gw_io *io, uint32_t events)
{
    struct up_sock *s = io->data;
    struct gw_upstream *up = s->up;
    struct up_shard *sh = s->shard;
    int flags = 0;
    int running;

    /* A parked connection has no transfer to tell: its peer closed it, most likely. Stop
     * watching it; libcurl finds out when it next wants the connection, as it would have. */
    if (s->parked) {
        gw_loop_io_set(up->loop, io, 0);
        return;
    }
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    /* `s` may be freed inside this call (CURL_POLL_REMOVE); do not touch it afterwards. */
    curl_multi_socket_action(sh->multi, io->fd, flags, &running);
    check_done(sh);
}

static struct up_sock *sock_new(struct gw_upstream *up, int fd)
{
    struct up_sock *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->io.fd = fd;
    s->io.cb = on_sock_event;
    s->io.data = s;
    s->up = up;
    s->next = up->socks;
    if (up->socks != NULL)
        up->socks->prev = s;
    up->socks = s;
    return s;
}

/* Take @p s out of the listing by descriptor (its socket is closed, or about to be). */
static void sock_unlist(struct gw_upstream *up, struct up_sock *s)
{
    if (!s->listed)
        return;
    s->listed = false;
    if ((size_t)s->io.fd < up->by_fd_len && up->by_fd[s->io.fd] == s)
        up->by_fd[s->io.fd] = NULL;
}

static void sock_free(struct gw_upstream *up, struct up_sock *s)
{
    gw_loop_io_set(up->loop, &s->io, 0);
    sock_unlist(up, s);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        up->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    free(s);
}

/* List @p s under its descriptor. False when the table cannot grow (then it is not listed,
 * and is watched and unwatched like any other socket). */
static bool sock_list(struct gw_upstream *up, struct up_sock *s)
{
    size_t fd = (size_t)s->io.fd;

    if (fd >= up->by_fd_len) {
        size_t len = up->by_fd_len ? up->by_fd_len : 64;
        struct up_sock **t;

        while (len <= fd)
            len *= 2;
        t = realloc(up->by_fd, len * sizeof(*t));
        if (t == NULL)
            return false;
        memset(t + up->by_fd_len, 0, (len - up->by_fd_len) * sizeof(*t));
        up->by_fd = t;
        up->by_fd_len = len;
    }
    up->by_fd[fd] = s;
    s->listed = true;
    return true;
}

/*
 * The descriptor of @p s is being closed (on_curl_close), or was closed behind our back (a
 * connection attempt libcurl abandons is closed without the callback; on_curl_open then meets
 * its number again): it leaves the listing and the epoll set, so that the number, free for
 * the next socket, is never taken for this one. Freed unless libcurl still holds it (then
 * at its CURL_POLL_REMOVE).
 */
static void sock_closed(struct gw_upstream *up, struct up_sock *s)
{
    sock_unlist(up, s);
    s->parked = false;
    gw_loop_io_set(up->loop, &s->io, 0);
    if (!s->watched)
        sock_free(up, s);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct up_shard *sh = userp;
    struct gw_upstream *up = sh->up;
    struct up_sock *s = socketp;
    uint32_t events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(sh->multi, fd, NULL);
            s->watched = false;
            if (s->listed && s->connected)
                s->parked = true;
            else
                sock_free(up, s);
        }
        return 0;
    }
    if (s == NULL) {
        if (fd >= 0 && (size_t)fd < up->by_fd_len && up->by_fd[fd] != NULL)
            s = up->by_fd[fd];
        else
            s = sock_new(up, fd);
        if (s == NULL)
            return -1;
        s->watched = true;
        s->parked = false;
        s->shard = sh;
        curl_multi_assign(sh->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        events |= EPOLLIN;
        s->connected = true;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= EPOLLOUT;
    if (gw_loop_io_set(up->loop, &s->io, events) != 0)
        return -1;
    return 0;
}

/*
 * libcurl opens a connection's socket (CURLSOCKTYPE_IPCXN, the only kind an HTTP transfer
 * opens): counted on /metrics, and listed under its descriptor until on_curl_close.
 */
static curl_socket_t on_curl_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct gw_upstream *up = clientp;
    struct up_sock *s;
    int fd;

    (void)purpose;
    fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    gw_metrics_inc(&up->metrics->upstream_connections);
    if ((size_t)fd < up->by_fd_len && up->by_fd[fd] != NULL)
        sock_closed(up, up->by_fd[fd]);
    /* Out of memory, the socket goes unlisted: watched and unwatched like any other. */
    s = sock_new(up, fd);
    if (s != NULL && !sock_list(up, s))
        sock_free(up, s);
    return fd;
}

/* libcurl closes a connection's socket: its number may come back as another socket. */
static int on_curl_close(void *clientp, curl_socket_t fd)
{
    struct gw_upstream *up = clientp;

    if (fd >= 0 && (size_t)fd < up->by_fd_len && up->by_fd[fd] != NULL)
        sock_closed(up, up->by_fd[fd]);
    return close(fd);
}

static void on_curl_timer_due(struct gw_timer *t)
{
    struct up_shard *sh = t->data;
    int running;

    curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(sh);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct up_shard *sh = userp;

    (void)multi;
    if (timeout_ms < 0)
        gw_timer_stop(sh->up->loop, &sh->timer);
    else
        gw_timer_start(sh->up->loop, &sh->timer, (uint64_t)timeout_ms);
    return 0;
}

/* ---- bodies and headers of the answer ---- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct gw_call *call = userdata;
    struct gw_upstream *up = call->up;
    size_t n = size * nmemb;
    size_t max = (size_t)up->cfg->limits.max_upstream_body_bytes;
    int rc;

    if (call->resp.data == NULL) {
        size_t first = UP_INITIAL_BODY;
        curl_off_t announced = -1;

        /* The first piece: room for the whole answer when HelpCrunch announced its length
         * (a customer is ~1 KiB), so most answers take one allocation of their own size. The
         * length of a gzip answer is that of its compressed bytes: the buffer then doubles as
         * they inflate, up to the bound. */
        if (curl_easy_getinfo(call->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) ==
                CURLE_OK &&
            announced > 0 && (uint64_t)announced <= (uint64_t)max)
            first = (size_t)announced + 1;
        gw_buf_init(&call->resp, max, first, 0);
    }
    /* The bound in force for this attempt (a reload may have changed it since the first). */
    call->resp.max = max;
    rc = gw_buf_append(&call->resp, ptr, n);
    if (rc == GW_ERR_BODY_TOO_LARGE)
        call->too_big = true;
    if (rc != 0)
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    return n;
}

/* Retry-After is either delay-seconds or an HTTP date. */
static long parse_retry_after(const char *v, size_t len)
{
    char buf[64];
    char *end;
    long s;

    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    if (len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, v, len);
    buf[len] = '\0';
    if (buf[0] >= '0' && buf[0] <= '9') {
        errno = 0;
        s = strtol(buf, &end, 10);
        if (errno != 0 || *end != '\0')
            return 0;
    } else {
        time_t when = curl_getdate(buf, NULL);
        if (when < 0)
            return 0;
        s = (long)(when - time(NULL));
        if (s < 1)
            s = 1;
    }
    if (s > GW_MAX_RETRY_AFTER_S)
        s = GW_MAX_RETRY_AFTER_S;
    return s < 0 ? 0 : s;
}

/*
 * True when the Content-Encoding value [v, v + len) names only codings hcgw takes: identity
 * and gzip (x-gzip). libcurl would decode others too (deflate, br, zstd; some with windows of
 * many MiB), which hcgw never asks for. A gzip answer hcgw did not ask for (compression.upstream
 * off) is not decoded by libcurl, and fails where its body is read as JSON.
 */
static bool coding_taken(const char *v, size_t len)
{
    const char *end = v + len;
    const char *t;
    size_t n;

    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ',' || *v == '\r' || *v == '\n'))
            v++;
        t = v;
        while (v < end && *v != ',' && *v != ' ' && *v != '\t' && *v != '\r' && *v != '\n')
            v++;
        n = (size_t)(v - t);
        if (n == 0)
            continue;
        if (n == 8 && strncasecmp(t, "identity", 8) == 0)
            continue;
        if ((n == 4 && strncasecmp(t, "gzip", 4) == 0) ||
            (n == 6 && strncasecmp(t, "x-gzip", 6) == 0))
            continue;
        return false;
    }
    return true;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    static const char name[] = "retry-after:";
    static const char coding[] = "content-encoding:";
    struct gw_call *call = userdata;
    size_t n = size * nitems;

    /* A new status line starts a new set of headers (e.g. after a redirect or 100). */
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        call->retry_after_s = 0;
    } else if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
        call->retry_after_s = parse_retry_after(buf + sizeof(name) - 1, n - (sizeof(name) - 1));
    } else if (n > sizeof(coding) - 1 && strncasecmp(buf, coding, sizeof(coding) - 1) == 0 &&
               !coding_taken(buf + sizeof(coding) - 1, n - (sizeof(coding) - 1))) {
        call->bad_coding = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    return n;
}

/* ---- calls ---- */

#define SETOPT(h, opt, val)                                 \
    do {                                                    \
        if (curl_easy_setopt((h), (opt), (val)) != CURLE_OK) \
            goto out;                                       \
    } while (0)

/*
 * The options that are the same for every call, set once when a handle is made: a handle
 * goes back to the idle list as it is (libcurl keeps options between transfers), and only
 * what differs per attempt is set again (setup_easy). A reload bumps easy_gen, so handles
 * configured under the old settings are dropped rather than reused.
 */
static CURL *new_easy(struct gw_upstream *up)
{
    const struct gw_config *cfg = up->cfg;
    CURL *h = curl_easy_init();

    if (h == NULL)
        return NULL;
    SETOPT(h, CURLOPT_USERAGENT, "hcgw/" HCGW_VERSION);
    SETOPT(h, CURLOPT_NOSIGNAL, 1L);
    SETOPT(h, CURLOPT_TCP_NODELAY, 1L);
    SETOPT(h, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
    /* TLS verification is never turned off; a private CA is given, not skipped. These are
     * libcurl's defaults, set anyway so that a build or an environment cannot change them. */
    SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (cfg->upstream.ca_file != NULL)
        SETOPT(h, CURLOPT_CAINFO, cfg->upstream.ca_file);
    /* The key goes through a proxy only when the configuration names one; the http_proxy
     * and https_proxy of the environment are not consulted ("" = no proxy). */
    SETOPT(h, CURLOPT_PROXY, cfg->upstream.proxy != NULL ? cfg->upstream.proxy : "");
    SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* upstream.http_version. "2" offers h2 and http/1.1 by ALPN on a TLS connection (an
     * http:// base_url stays on HTTP/1.1: no h2c upgrade, no prior knowledge), and PIPEWAIT
     * lets a call wait for a connection whose ALPN is under way rather than open one more, so
     * a burst of calls shares one connection from the start. */
    if (cfg->upstream.http_version == GW_HTTP_2) {
        SETOPT(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        SETOPT(h, CURLOPT_PIPEWAIT, 1L);
    } else {
        SETOPT(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    }
    /* Answers are small (a customer is ~1 KiB); a bigger one just takes more reads. */
    SETOPT(h, CURLOPT_BUFFERSIZE, (long)UP_RECV_BUFFER);
    SETOPT(h, CURLOPT_UPLOAD_BUFFERSIZE, (long)UP_SEND_BUFFER);
    /* HelpCrunch's answers come gzip-compressed when it will (a 100-customer list is a tenth
     * of its size), and libcurl decodes them: on_body sees the decoded bytes, so the bound on
     * an answer (limits.max_upstream_body_bytes) is on what it inflates to, and a small body
     * that inflates to far more is cut as soon as it passes. Only gzip: its window is 32 KiB. */
    if (cfg->compression.upstream)
        SETOPT(h, CURLOPT_ACCEPT_ENCODING, "gzip");
    SETOPT(h, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(h, CURLOPT_OPENSOCKETFUNCTION, on_curl_open);
    SETOPT(h, CURLOPT_OPENSOCKETDATA, up);
    SETOPT(h, CURLOPT_CLOSESOCKETFUNCTION, on_curl_close);
    SETOPT(h, CURLOPT_CLOSESOCKETDATA, up);
    return h;

out:
    curl_easy_cleanup(h);
    return NULL;
}

static CURL *take_easy(struct gw_upstream *up, unsigned *gen)
{
    *gen = up->easy_gen;
    if (up->n_idle > 0)
        return up->idle[--up->n_idle];
    return new_easy(up);
}

static void give_easy(struct gw_upstream *up, CURL *easy, unsigned gen)
{
    if (easy == NULL)
        return;
    if (gen == up->easy_gen && up->n_idle < UP_MAX_IDLE_EASY) {
        up->idle[up->n_idle++] = easy;
        return;
    }
    curl_easy_cleanup(easy);
}

static void drop_idle(struct gw_upstream *up)
{
    while (up->n_idle > 0)
        curl_easy_cleanup(up->idle[--up->n_idle]);
}

static void list_remove(struct gw_upstream *up, struct gw_call *call)
{
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        up->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
    up->n_calls--;
}

static void stop_waiting(struct gw_upstream *up, struct gw_call *call)
{
    if (!call->waiting_token)
        return;
    call->waiting_token = false;
    up->gate.done_waiting(up->gate.ctx, call, gw_loop_now(up->loop) - call->wait_start_ms);
}

static void end_transfer(struct gw_upstream *up, struct gw_call *call)
{
    if (call->easy != NULL) {
        curl_multi_remove_handle(call->shard->multi, call->easy);
        call->shard->running--;
        give_easy(up, call->easy, call->easy_gen);
        call->easy = NULL;
    }
    headers_put(call->headers);
    call->headers = NULL;
    free(call->trace_headers);
    call->trace_headers = NULL;
}

/*
 * The trace headers of @p call's next attempt, in front of its key generation's list: a new
 * span for each attempt, since each is a request of its own to HelpCrunch. NULL when out of
 * memory: trace context is advisory, and the attempt goes without it.
 */
static struct up_trace_headers *trace_headers_new(struct gw_upstream *up,
                                                  const struct gw_call *call)
{
    static const char state_name[] = "tracestate: ";
    const struct gw_trace *t = call->trace;
    size_t state_len = t->state != NULL ? sizeof(state_name) - 1 + strlen(t->state) : 0;
    struct up_trace_headers *th = malloc(sizeof(*th) + state_len + 1);
    uint64_t r = next_rand(up); /* never 0: a valid span */
    uint8_t span[GW_SPAN_ID_BYTES];
    char value[GW_TRACEPARENT_LEN + 1];

    if (th == NULL)
        return NULL;
    memcpy(span, &r, sizeof(span));
    gw_trace_format_parent(t, span, value);
    snprintf(th->parent_line, sizeof(th->parent_line), "traceparent: %s", value);
    th->parent.data = th->parent_line;
    th->parent.next = call->headers->list;
    th->state_line[0] = '\0';
    if (t->state != NULL) {
        snprintf(th->state_line, state_len + 1, "%s%s", state_name, t->state);
        th->state.data = th->state_line;
        th->state.next = call->headers->list;
        th->parent.next = &th->state;
    }
    return th;
}

/*
 * The outcome of @p call, ended with @p failure: the last answer's status and body, and for a
 * 429 the Retry-After the caller gets. The one place that policy lives.
 */
static void settle(struct gw_upstream *up, struct gw_call *call, enum gw_err failure)
{
    struct gw_outcome *o = &call->out;
    long s = call->retry_after_s;

    call->failure = failure;
    o->failure = failure;
    o->status = call->status;
    o->retry_after_s = 0;
    if (failure == GW_ERR_RATE_LIMITED || (failure == GW_OK && call->status == 429)) {
        if (s <= 0)
            s = up->gate.retry_after_s(up->gate.ctx, gw_loop_now(up->loop));
        if (s <= 0)
            s = up->cfg->upstream.retry_after_fallback_s;
        o->retry_after_s = s > GW_MAX_RETRY_AFTER_S ? GW_MAX_RETRY_AFTER_S : s;
    }
    free(o->body);
    o->body = gw_buf_take(&call->resp, &o->body_len);
}

static void finish(struct gw_upstream *up, struct gw_call *call, enum gw_err failure)
{
    /* An attempt still in libcurl's hands ends here, cut by the deadline or cancelled (the
     * caller hung up, the drain ran out): its time counts like that of an answered one. */
    if (call->easy != NULL)
        call->upstream_ms += (double)(gw_loop_now(up->loop) - call->attempt_start_ms);
    settle(up, call, failure);
    gw_timer_stop(up->loop, &call->backoff);
    gw_timer_stop(up->loop, &call->deadline);
    if (call->asking) {
        call->asking = false;
        if (up->gate.forget != NULL)
            up->gate.forget(up->gate.ctx, call);
    }
    stop_waiting(up, call);
    end_transfer(up, call);
    list_remove(up, call);
    call->done(call); /* may free the call: nothing after this */
}

/*
 * What differs from one attempt to the next. The method options are set in full every time,
 * because the handle keeps those of its previous call: CURLOPT_HTTPGET puts the method back
 * to a bodiless GET (which also drops a previous call's POSTFIELDS), CUSTOMREQUEST names the
 * verb on the wire.
 */
static int setup_easy(struct gw_upstream *up, struct gw_call *call, long timeout_ms)
{
    const struct gw_config *cfg = up->cfg;
    CURL *h = call->easy;
    long connect_ms = cfg->upstream.connect_timeout_ms;
    int rc = GW_ERR_INTERNAL;

    if (connect_ms > timeout_ms)
        connect_ms = timeout_ms;
    SETOPT(h, CURLOPT_URL, call->url);
    SETOPT(h, CURLOPT_PRIVATE, call);
    SETOPT(h, CURLOPT_HTTPHEADER, call->trace_headers != NULL ? &call->trace_headers->parent
                                                              : call->headers->list);
    /* libcurl silently sends a request again when a reused keep-alive connection turns out
     * dead before any answer byte. For a call that must never be sent twice (POST, PATCH:
     * HelpCrunch has no idempotency keys) a fresh connection rules that out. */
    SETOPT(h, CURLOPT_FRESH_CONNECT, call->retryable ? 0L : 1L);
    SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SETOPT(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    SETOPT(h, CURLOPT_WRITEDATA, call);
    SETOPT(h, CURLOPT_HEADERDATA, call);
    SETOPT(h, CURLOPT_HTTPGET, 1L);
    if (strcmp(call->method, "GET") == 0) {
        SETOPT(h, CURLOPT_CUSTOMREQUEST, (char *)NULL);
    } else {
        SETOPT(h, CURLOPT_CUSTOMREQUEST, call->method);
        if (call->body != NULL) {
            SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
            SETOPT(h, CURLOPT_POSTFIELDS, call->body);
        } else if (strcmp(call->method, "DELETE") != 0) {
            SETOPT(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
            SETOPT(h, CURLOPT_POSTFIELDS, "");
        }
    }
    rc = 0;
out:
    return rc;
}

/*
 * The multi handle with the fewest transfers (the first of them on a tie, so that a light load
 * stays on the connections of one): a shard is full only when every shard is.
 */
static struct up_shard *pick_shard(struct gw_upstream *up)
{
    struct up_shard *best = &up->shards[0];
    size_t i;

    for (i = 1; i < up->n_shards && best->running > 0; i++) {
        if (up->shards[i].running < best->running)
            best = &up->shards[i];
    }
    return best;
}

/* Hand the call to libcurl now. */
static int send_attempt(struct gw_upstream *up, struct gw_call *call)
{
    uint64_t now = gw_loop_now(up->loop);
    struct up_shard *sh;
    int rc;

    if (now >= call->deadline_ms)
        return GW_ERR_UPSTREAM_TIMEOUT;
    call->easy = take_easy(up, &call->easy_gen);
    if (call->easy == NULL)
        return GW_ERR_NOMEM;
    call->headers = up->headers;
    call->headers->refs++;
    if (call->trace != NULL)
        call->trace_headers = trace_headers_new(up, call);
    gw_buf_reset(&call->resp);
    call->too_big = false;
    call->bad_coding = false;
    call->retry_after_s = 0;
    call->status = 0;
    call->failure = GW_OK;
    rc = setup_easy(up, call, (long)(call->deadline_ms - now));
    if (rc != 0)
        goto fail;
    sh = pick_shard(up);
    if (curl_multi_add_handle(sh->multi, call->easy) != CURLM_OK) {
        rc = GW_ERR_INTERNAL;
        goto fail;
    }
    call->shard = sh;
    sh->running++;
    call->attempts++;
    call->attempt_start_ms = now;
    gw_metrics_inc(&up->metrics->upstream_attempts);
    return 0;

fail:
    end_transfer(up, call);
    return rc;
}

static int start_attempt(struct gw_upstream *up, struct gw_call *call);
static void retry_refused(struct gw_upstream *up, struct gw_call *call, int rc);

/*
 * The slot reserved for @p call is due. A cooldown that began while it waited (a 429 heard by
 * this process, or by the fleet through the shared bucket) holds it back like any other
 * attempt: it asks the gate again, and goes after the cooldown or is refused by its deadline.
 */
static void on_token_due(struct gw_timer *t)
{
    struct gw_call *call = t->data;
    struct gw_upstream *up = call->up;
    int rc;

    stop_waiting(up, call);
    if (up->gate.paused != NULL && up->gate.paused(up->gate.ctx, gw_loop_now(up->loop))) {
        rc = start_attempt(up, call);
        if (rc != 0 && call->attempts > 0) {
            retry_refused(up, call, rc);
            return;
        }
    } else {
        rc = send_attempt(up, call);
    }
    if (rc != 0)
        finish(up, call, rc);
}

/* Wait @p wait_ms for the slot the gate reserved, then send. */
static void wait_slot(struct gw_upstream *up, struct gw_call *call, uint64_t wait)
{
    call->waiting_token = true;
    call->wait_start_ms = gw_loop_now(up->loop);
    gw_timer_set_cb(&call->backoff, on_token_due);
    gw_timer_start(up->loop, &call->backoff, wait);
}

/*
 * Every attempt, first or retry, leaves from here: the gate decides whether it goes now, waits
 * for its slot (on the call's timer), is refused, or is decided later (gw_upstream_admit).
 * Returns 0 when the attempt was sent or is waiting; GW_ERR_RATE_LIMITED (with
 * call->retry_after_s) when the gate refused it; another error when it could not be sent.
 */
static int start_attempt(struct gw_upstream *up, struct gw_call *call)
{
    uint64_t now = gw_loop_now(up->loop);
    uint64_t wait = 0;
    long retry_after = 0;

    if (now >= call->deadline_ms)
        return GW_ERR_UPSTREAM_TIMEOUT;
    switch (up->gate.admit(up->gate.ctx, call, now, call->deadline_ms, &wait, &retry_after)) {
    case GW_GATE_GO:
        return send_attempt(up, call);
    case GW_GATE_WAIT:
        wait_slot(up, call, wait);
        return 0;
    case GW_GATE_ASK:
        call->asking = true;
        return 0;
    case GW_GATE_REFUSE:
    default:
        call->retry_after_s = retry_after;
        return GW_ERR_RATE_LIMITED;
    }
}

static void count_failure(struct gw_upstream *up, enum gw_err failure, long status);

/*
 * The deadline, held by hcgw itself: libcurl's CURLOPT_TIMEOUT_MS does not run while a
 * transfer waits in libcurl's queue for a free pool connection, so a call queued there would
 * otherwise end late.
 */
static void on_deadline(struct gw_timer *t)
{
    struct gw_call *call = t->data;
    struct gw_upstream *up = call->up;

    /* An attempt still in flight ends here, timed out: /metrics counts it as libcurl's own
     * timeout would be counted (its duration, a "timeout" failure), or the slowest attempts
     * would be missing from both. A call that was waiting for a quota slot or a retry made no
     * attempt now. */
    if (call->easy != NULL) {
        uint64_t now = gw_loop_now(up->loop);

        gw_metrics_observe(&up->metrics->upstream_seconds,
                           (now - call->attempt_start_ms) * 1000u);
        count_failure(up, GW_ERR_UPSTREAM_TIMEOUT, 0);
    }
    finish(up, call, GW_ERR_UPSTREAM_TIMEOUT);
}

/*
 * A retry could not go (the quota refused it with @p rc, or the deadline came): the caller
 * gets the last answer HelpCrunch actually gave, mapped as usual.
 */
static void retry_refused(struct gw_upstream *up, struct gw_call *call, int rc)
{
    call->status = call->last_status;
    call->retry_after_s = rc == GW_ERR_RATE_LIMITED && call->last_status == 429 &&
                                  call->last_retry_after_s == 0
                              ? call->retry_after_s
                              : call->last_retry_after_s;
    finish(up, call, call->last_failure);
}

static void on_backoff_due(struct gw_timer *t)
{
    struct gw_call *call = t->data;
    struct gw_upstream *up = call->up;
    int rc;

    call->last_failure = call->failure;
    call->last_status = call->status;
    call->last_retry_after_s = call->retry_after_s;
    rc = start_attempt(up, call);
    if (rc != 0)
        retry_refused(up, call, rc);
}

void gw_upstream_admit(struct gw_upstream *up, struct gw_call *call, enum gw_gate_verdict v,
                       uint64_t wait_ms, long retry_after_s)
{
    int rc = 0;

    call->asking = false;
    switch (v) {
    case GW_GATE_GO:
        rc = send_attempt(up, call);
        break;
    case GW_GATE_WAIT:
        wait_slot(up, call, wait_ms);
        break;
    case GW_GATE_ASK:
    case GW_GATE_REFUSE:
    default:
        call->retry_after_s = retry_after_s;
        rc = GW_ERR_RATE_LIMITED;
        break;
    }
    if (rc == 0)
        return;
    if (call->attempts > 0)
        retry_refused(up, call, rc);
    else
        finish(up, call, rc);
}

/* What a finished transfer means: GW_OK with an HTTP status, or a failure, and whether the
 * same request may be sent again. */
static enum gw_err classify(struct gw_upstream *up, struct gw_call *call, CURLcode code,
                            bool *transient)
{
    uint64_t now = gw_loop_now(up->loop);

    *transient = false;
    switch (code) {
    case CURLE_OK:
        *transient = call->status == 429 || call->status == 502 || call->status == 503 ||
                     call->status == 504;
        return GW_OK;
    case CURLE_WRITE_ERROR:
        return call->too_big || call->bad_coding ? GW_ERR_UPSTREAM_BAD_RESPONSE : GW_ERR_NOMEM;
    case CURLE_BAD_CONTENT_ENCODING:
        /* The body said gzip and was not (or was cut inside the gzip data). */
        return GW_ERR_UPSTREAM_BAD_RESPONSE;
    case CURLE_OPERATION_TIMEDOUT:
        /* Only the whole deadline is a timeout; a connect timeout inside it is a connect
         * failure that another attempt may cure. */
        if (now + 5 >= call->deadline_ms)
            return GW_ERR_UPSTREAM_TIMEOUT;
        *transient = true;
        return GW_ERR_UPSTREAM_UNAVAILABLE;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2_STREAM: /* an HTTP/2 stream reset before its answer came whole: a cut */
        *transient = true;
        return GW_ERR_UPSTREAM_UNAVAILABLE;
    default:
        return GW_ERR_UPSTREAM_UNAVAILABLE;
    }
}

static uint64_t backoff_ms(struct gw_upstream *up, struct gw_call *call)
{
    const struct gw_config *cfg = up->cfg;
    uint64_t d = (uint64_t)cfg->upstream.retry_base_ms;
    int i;

    if (call->retry_after_s > 0)
        return (uint64_t)call->retry_after_s * 1000u;
    for (i = 1; i < call->attempts && d < (uint64_t)cfg->upstream.retry_max_ms; i++)
        d *= 2;
    if (d > (uint64_t)cfg->upstream.retry_max_ms)
        d = (uint64_t)cfg->upstream.retry_max_ms;
    /* "Equal jitter": half fixed, half random, so that retries of many callers spread out. */
    return d / 2 + next_rand(up) % (d / 2 + 1);
}

static void count_failure(struct gw_upstream *up, enum gw_err failure, long status)
{
    enum gw_upstream_failure kind;

    switch (failure) {
    case GW_OK:
        if (status == 401 || status == 403)
            kind = GW_UPFAIL_AUTH;
        else if (status == 429)
            kind = GW_UPFAIL_RATE_LIMITED;
        else if (status >= 500)
            kind = GW_UPFAIL_HTTP_5XX;
        else if (status >= 400)
            kind = GW_UPFAIL_HTTP_4XX;
        else
            return;
        break;
    case GW_ERR_UPSTREAM_TIMEOUT:
        kind = GW_UPFAIL_TIMEOUT;
        break;
    case GW_ERR_UPSTREAM_BAD_RESPONSE:
        kind = GW_UPFAIL_BAD_RESPONSE;
        break;
    default:
        kind = GW_UPFAIL_UNAVAILABLE;
        break;
    }
    gw_metrics_inc(&up->metrics->upstream_failures[kind]);
}

/* A retry is a log line of its request, so it carries the request id like the access line. */
static void log_retry(const struct gw_call *call, enum gw_err failure, uint64_t delay)
{
    struct gw_logline l;

    if (!gw_log_enabled(call->up->log, GW_LOG_DEBUG))
        return;
    gw_log_begin(call->up->log, &l, GW_LOG_DEBUG, "upstream retry");
    gw_log_str(&l, "request_id", call->request_id);
    gw_log_int(&l, "attempt", call->attempts);
    if (failure == GW_OK)
        gw_log_int(&l, "upstream_status", call->status);
    else
        gw_log_int(&l, "curl_code", call->curl_code);
    gw_log_int(&l, "delay_ms", (long long)delay);
    gw_log_end(&l);
}

/* The HTTP version an answer came in (10, 11, 20), counted on /metrics by version. */
static unsigned char answer_version(struct gw_upstream *up, CURL *easy)
{
    long v = CURL_HTTP_VERSION_NONE;
    enum gw_upstream_version k;

    curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &v);
    switch (v) {
    case CURL_HTTP_VERSION_1_0:
        k = GW_UPVER_1_0;
        break;
    case CURL_HTTP_VERSION_1_1:
        k = GW_UPVER_1_1;
        break;
    case CURL_HTTP_VERSION_2_0:
        k = GW_UPVER_2;
        break;
    default:
        return 0; /* HTTP/3 is never asked for */
    }
    gw_metrics_inc(&up->metrics->upstream_answers[k]);
    return k == GW_UPVER_1_0 ? 10 : k == GW_UPVER_1_1 ? 11 : 20;
}

/*
 * Over HTTP/2 a server may answer before it has read the request body, then reset the stream
 * with NO_ERROR (RFC 9113, 8.1): an API refusing a request early (401, 429) does. libcurl 7.88
 * reports that as CURLE_HTTP2_STREAM, at times with the whole answer in hand: a status and
 * every byte its Content-Length announced make it the answer it is.
 */
static bool answer_whole(CURL *easy)
{
    curl_off_t announced = -1;
    curl_off_t got = -1;

    return curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
           curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &got) == CURLE_OK &&
           announced >= 0 && got == announced;
}

/*
 * libcurl 8 counts the time a transfer waits in its queue for a pool connection
 * (CURLMOPT_MAX_HOST_CONNECTIONS) against CURLOPT_CONNECTTIMEOUT_MS: one that waited longer
 * than that times out as it leaves the queue, before it could connect (7.88 let it wait). Such
 * a transfer, nothing of it sent, goes back into the queue as the same attempt: the wait for
 * the pool stays bounded by the call's deadline alone (on_deadline), the connect timeout by the
 * connect alone. Returns true if it went back.
 */
static bool requeue_timed_out_in_queue(struct gw_upstream *up, struct gw_call *call,
                                       CURLcode code)
{
#if LIBCURL_VERSION_NUM >= 0x080600
    uint64_t now = gw_loop_now(up->loop);
    curl_off_t lookup_us = -1;
    curl_off_t queued_us = 0;

    if (code != CURLE_OPERATION_TIMEDOUT || now >= call->deadline_ms ||
        curl_easy_getinfo(call->easy, CURLINFO_NAMELOOKUP_TIME_T, &lookup_us) != CURLE_OK ||
        curl_easy_getinfo(call->easy, CURLINFO_QUEUE_TIME_T, &queued_us) != CURLE_OK)
        return false;
    /* Timed out as it left the queue, before it took a connection (no name looked up), or
     * after half its connect timeout or more in the queue: the connect did not get its own. */
    if (lookup_us != 0 &&
        (uint64_t)queued_us / 1000u < (uint64_t)up->cfg->upstream.connect_timeout_ms / 2)
        return false;
    curl_multi_remove_handle(call->shard->multi, call->easy);
    return setup_easy(up, call, (long)(call->deadline_ms - now)) == 0 &&
           curl_multi_add_handle(call->shard->multi, call->easy) == CURLM_OK;
#else
    (void)up;
    (void)call;
    (void)code;
    return false;
#endif
}

static void on_transfer_done(struct gw_upstream *up, struct gw_call *call, CURLcode code)
{
    uint64_t now = gw_loop_now(up->loop);
    enum gw_err failure;
    bool transient;
    uint64_t delay;
    long status = 0;

    if (requeue_timed_out_in_queue(up, call, code))
        return;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    call->status = status;
    call->http_version = status > 0 ? answer_version(up, call->easy) : 0;
    if (code == CURLE_HTTP2_STREAM && status > 0 && answer_whole(call->easy))
        code = CURLE_OK;
    call->curl_code = (int)code;
    call->upstream_ms += (double)(now - call->attempt_start_ms);
    gw_metrics_observe(&up->metrics->upstream_seconds, (now - call->attempt_start_ms) * 1000u);
    end_transfer(up, call);

    failure = classify(up, call, code, &transient);
    if (failure != GW_OK)
        call->status = 0;
    call->failure = failure;
    count_failure(up, failure, call->status);
    if (failure == GW_OK)
        up->gate.answered(up->gate.ctx, now, call->status, call->retry_after_s);
    if (!transient || !call->retryable || call->attempts > up->cfg->upstream.max_retries)
        goto done;
    delay = backoff_ms(up, call);
    if (now + delay >= call->deadline_ms)
        goto done;
    log_retry(call, failure, delay);
    gw_metrics_inc(&up->metrics->upstream_retries);
    gw_timer_set_cb(&call->backoff, on_backoff_due);
    gw_timer_start(up->loop, &call->backoff, delay);
    return;

done:
    finish(up, call, failure);
}

static void check_done(struct up_shard *sh)
{
    struct gw_upstream *up = sh->up;
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(sh->multi, &left)) != NULL) {
        struct gw_call *call = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call == NULL)
            continue;
        on_transfer_done(up, call, msg->data.result);
    }
}

/* ---- the interface ---- */

/* Shard @p i's share of the pool: max_connections spread over the shards, the remainder on the
 * first ones. */
static long shard_pool(const struct gw_config *cfg, size_t n, size_t i)
{
    size_t max = (size_t)cfg->upstream.max_connections;

    return (long)(max / n + (i < max % n ? 1 : 0));
}

static int shard_set_pool(struct up_shard *sh, long pool)
{
    if (curl_multi_setopt(sh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, pool) != CURLM_OK ||
        curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, pool) != CURLM_OK)
        return -1;
    return 0;
}

static int shard_init(struct gw_upstream *up, struct up_shard *sh, long pool,
                      enum gw_http_version version)
{
    CURLMcode mc = CURLM_OK;

    sh->up = up;
    sh->multi = curl_multi_init();
    if (sh->multi == NULL)
        return -1;
    gw_timer_init(&sh->timer, on_curl_timer_due, sh);
    mc |= curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    mc |= curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
    mc |= curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    mc |= curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    /* With HTTP/2 a connection carries up to GW_MAX_UPSTREAM_H2_STREAMS calls at once, and the
     * shard's share of max_connections still bounds the connections. Set either way, so that
     * HTTP/1.1 never depends on libcurl's default. upstream.http_version does not change on a
     * reload (main.c refuses one that changes it), so this is set once. */
    mc |= curl_multi_setopt(sh->multi, CURLMOPT_PIPELINING,
                            version == GW_HTTP_2 ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
    mc |= curl_multi_setopt(sh->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                            (long)GW_MAX_UPSTREAM_H2_STREAMS);
    if (mc != CURLM_OK || shard_set_pool(sh, pool) != 0) {
        curl_multi_cleanup(sh->multi);
        sh->multi = NULL;
        return -1;
    }
    return 0;
}

/* The number of multi handles: upstream.pool_shards, or with 0 one per GW_POOL_SHARD_CONNS
 * connections of the pool; never more than the pool has connections. */
static size_t shard_count(const struct gw_config *cfg)
{
    size_t max = (size_t)cfg->upstream.max_connections;
    size_t n = (size_t)cfg->upstream.pool_shards;

    if (n == 0)
        n = (max + GW_POOL_SHARD_CONNS - 1) / GW_POOL_SHARD_CONNS;
    if (n > max)
        n = max;
    return n > 0 ? n : 1;
}

struct gw_upstream *gw_upstream_new(struct gw_loop *loop, const struct gw_config *cfg,
                                    const struct gw_secret *secret, struct gw_metrics *metrics,
                                    const struct gw_upstream_gate *gate, struct gw_log *log)
{
    struct gw_upstream *up = calloc(1, sizeof(*up));
    size_t n;

    if (up == NULL)
        goto fail_alloc;
    up->loop = loop;
    up->cfg = cfg;
    up->metrics = metrics;
    up->gate = *gate;
    up->log = log;
    up->headers = headers_new(secret);
    if (up->headers == NULL)
        goto fail_headers;
    n = shard_count(cfg);
    up->shards = calloc(n, sizeof(*up->shards));
    if (up->shards == NULL)
        goto fail_shards;
    for (up->n_shards = 0; up->n_shards < n; up->n_shards++) {
        if (shard_init(up, &up->shards[up->n_shards], shard_pool(cfg, n, up->n_shards),
                       cfg->upstream.http_version) != 0)
            goto fail_multi;
    }
    if (getrandom(&up->rng, sizeof(up->rng), 0) != sizeof(up->rng) || up->rng == 0)
        up->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)up;
    return up;

fail_multi:
    while (up->n_shards > 0)
        curl_multi_cleanup(up->shards[--up->n_shards].multi);
    free(up->shards);
fail_shards:
    headers_put(up->headers);
fail_headers:
    free(up);
fail_alloc:
    return NULL;
}

void gw_upstream_free(struct gw_upstream *up)
{
    size_t i;

    if (up == NULL)
        return;
    /* Cleanup closes the pooled connections (on_curl_close, which frees the parked ones). */
    for (i = 0; i < up->n_shards; i++) {
        gw_timer_stop(up->loop, &up->shards[i].timer);
        curl_multi_cleanup(up->shards[i].multi);
    }
    while (up->socks != NULL)
        sock_free(up, up->socks);
    free(up->by_fd);
    free(up->shards);
    drop_idle(up);
    headers_put(up->headers);
    free(up);
}

int gw_upstream_reconfigure(struct gw_upstream *up, const struct gw_config *cfg,
                            const struct gw_secret *secret)
{
    struct up_headers *h = headers_new(secret);
    bool kept = false;
    size_t i;

    if (h == NULL)
        return GW_ERR_NOMEM;
    headers_put(up->headers);
    up->headers = h;
    up->cfg = cfg;
    /* Handles carry the old settings (CA file, proxy): new ones are made from now on. */
    up->easy_gen++;
    drop_idle(up);
    /* The number of multi handles stays what it was at start (each holds its connections);
     * the pool is spread over them again. A pool size that cannot change keeps the old one:
     * not worth failing a reload for. */
    if (shard_count(cfg) != up->n_shards)
        gw_logf(up->log, GW_LOG_WARN,
                "reload: upstream.pool_shards takes effect at the next start only");
    for (i = 0; i < up->n_shards; i++) {
        if (shard_set_pool(&up->shards[i], shard_pool(cfg, up->n_shards, i)) != 0)
            kept = true;
    }
    if (kept)
        gw_logf(up->log, GW_LOG_WARN, "reload: upstream.max_connections not changed");
    return 0;
}

int gw_upstream_submit(struct gw_upstream *up, struct gw_call *call)
{
    int rc;

    call->up = up;
    call->failure = GW_OK;
    call->status = 0;
    call->attempts = 0;
    call->http_version = 0;
    call->upstream_ms = 0;
    call->easy = NULL;
    call->headers = NULL;
    call->trace_headers = NULL;
    call->waiting_token = false;
    call->asking = false;
    call->prev = call->next = NULL;
    gw_timer_init(&call->backoff, on_backoff_due, call);
    gw_timer_init(&call->deadline, on_deadline, call);
    rc = start_attempt(up, call);
    if (rc != 0) {
        gw_timer_stop(up->loop, &call->backoff);
        stop_waiting(up, call);
        end_transfer(up, call);
        settle(up, call, rc);
        return rc;
    }
    gw_timer_start(up->loop, &call->deadline, call->deadline_ms - gw_loop_now(up->loop));
    call->next = up->calls;
    if (up->calls != NULL)
        up->calls->prev = call;
    up->calls = call;
    up->n_calls++;
    return 0;
}

void gw_upstream_cancel(struct gw_upstream *up, struct gw_call *call, enum gw_err err)
{
    finish(up, call, err);
}

void gw_upstream_cancel_all(struct gw_upstream *up, enum gw_err err)
{
    while (up->calls != NULL)
        finish(up, up->calls, err);
}

bool gw_upstream_unsent(const struct gw_call *call)
{
    return (call->waiting_token || call->asking) && call->attempts == 0;
}

size_t gw_upstream_in_flight(const struct gw_upstream *up)
{
    return up->n_calls;
}

void gw_call_release(struct gw_call *call)
{
    gw_buf_free(&call->resp);
    free(call->out.body);
    call->out.body = NULL;
    call->out.body_len = 0;
}

char *gw_outcome_take_body(struct gw_outcome *o, size_t *len)
{
    char *body = o->body;

    *len = o->body_len;
    o->body = NULL;
    o->body_len = 0;
    return body;
}

/*
 * Listening sockets, worker threads and the ordered shutdown. Each worker runs one event loop
 * that carries its own libmicrohttpd daemon (external epoll mode: MHD's epoll descriptor is
 * watched by our loop) and its own curl multi handle, so a request is served start to end on
 * one thread with no hand-off. Several workers share the port through SO_REUSEPORT, and the
 * kernel spreads new connections over them.
 */
#include "hcgw/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hcgw/cache.h"
#include "hcgw/calls.h"
#include "hcgw/config.h"
#include "hcgw/conn.h"
#include "hcgw/governor.h"
#include "hcgw/homes.h"
#include "hcgw/idem.h"
#include "hcgw/idem_local.h"
#include "hcgw/idem_redis.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/metrics.h"
#include "hcgw/request.h"
#include "hcgw/tls.h"

/** listen(2) backlog of each listening socket. */
#define SRV_LISTEN_BACKLOG 1024
/** How long a reload waits for every worker to take the new configuration. */
#define SRV_RELOAD_WAIT_S 10
/**
 * After the drain deadline, how long answers already queued (the 503s of the calls it cut
 * among them) get to be written. The kernel takes a small answer whole at once, so this only
 * ever cuts a client that stopped reading a large one, and keeps the exit within
 * server.drain_timeout_ms and a few tens of milliseconds even then.
 */
#define SRV_FLUSH_MS 50
/** libmicrohttpd's log text for a failed TLS handshake (0.9.75), line break dropped. */
#define SRV_TLS_HANDSHAKE_FAILED "Error: received handshake message out of context."

struct gw_server {
    const struct gw_config *cfg;
    const struct gw_secret *secret;
    struct gw_log *log;                /* main's; its level changes on reload */
    struct gw_metrics_registry *registry; /* the workers' metrics blocks, for /metrics */
    int port;
    int stopping;                      /* set once by gw_server_stop; atomic access */
    struct gw_calls_shared shared;     /* the governor and the key's health */
    struct gw_idem_store *idem;        /* the Idempotency-Key records (idem.h) */
    /* A reload's mailbox: the main thread posts, each worker applies on its own thread. */
    pthread_mutex_t reload_mu;
    pthread_cond_t reload_cv;
    const struct gw_config *next_cfg;
    const struct gw_secret *next_secret;
    unsigned reload_gen;
    int reload_acks;
    int reload_failures;
    unsigned applied_gen[GW_MAX_WORKERS];
    int n_workers;
    struct gw_worker workers[GW_MAX_WORKERS];
};

static void errorf(char **error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void errorf(char **error, const char *fmt, ...)
{
    va_list ap;
    char buf[512];

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (error != NULL)
        *error = strdup(buf);
}

static int open_listener(const struct gw_config *cfg, int port, bool reuseport, char **error)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int one = 1;
    int fd;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, cfg->listen.address, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
        sa->sin_family = AF_INET;
        sa->sin_port = htons((uint16_t)port);
        sl = sizeof(*sa);
    } else if (inet_pton(AF_INET6, cfg->listen.address,
                         &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&ss;
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons((uint16_t)port);
        sl = sizeof(*sa);
    } else {
        errorf(error, "listen.address: %s is not an IP address", cfg->listen.address);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        errorf(error, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        errorf(error, "SO_REUSEPORT: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
        errorf(error, "cannot listen on %s port %d: %s (is another process using it? set "
                      "listen.port)", cfg->listen.address, port, strerror(errno));
        goto fail;
    }
    if (listen(fd, SRV_LISTEN_BACKLOG) != 0) {
        errorf(error, "listen: %s", strerror(errno));
        goto fail;
    }
    return fd;

fail:
    close(fd);
    return -1;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    struct gw_worker *w = cls;
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    /* libmicrohttpd says this of every failed TLS handshake (plain HTTP on the HTTPS port, a
     * protocol or a client certificate refused): a caller's mistake, and tls.c already warns
     * about a refused certificate with its reason. */
    if (strcmp(msg, SRV_TLS_HANDSHAKE_FAILED) == 0) {
        gw_logf(w->log, GW_LOG_INFO, "TLS handshake failed");
        return;
    }
    gw_logf(w->log, GW_LOG_WARN, "libmicrohttpd: %s", msg);
}

static void on_mhd_event(struct gw_io *io, uint32_t events)
{
    struct gw_worker *w = io->data;

    (void)events;
    w->mhd_needs_run = true;
}

static int worker_init(struct gw_server *srv, struct gw_worker *w, int index, int listen_fd)
{
    const struct gw_config *cfg = srv->cfg;
    const union MHD_DaemonInfo *info;
    unsigned int timeout_s = (unsigned int)((cfg->limits.connection_timeout_ms + 999) / 1000);
    /* listen.tls: HTTPS with the pair of the worker's configuration (tls.h). */
    struct MHD_OptionItem tls_opts[GW_TLS_MHD_OPTIONS] = {{MHD_OPTION_END, 0, NULL}};
    unsigned int tls_flag = 0;

    w->index = index;
    w->cfg = cfg;
    w->secret = srv->secret;
    w->stopping = &srv->stopping;
    w->log = srv->log;
    w->registry = srv->registry;
    w->homes = srv->shared.homes;
    w->idem = srv->idem;
    w->listen_fd = listen_fd;
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || (w->rng[0] | w->rng[1]) == 0) {
        w->rng[0] = 0x9E3779B97F4A7C15ULL + (uint64_t)index;
        w->rng[1] = (uint64_t)(uintptr_t)w;
    }
    w->metrics = gw_metrics_register(srv->registry);
    if (w->metrics == NULL)
        goto fail_metrics;
    w->loop = gw_loop_new();
    if (w->loop == NULL)
        goto fail_loop;
    if (gw_request_worker_init(w) != 0)
        goto fail_request;
    w->calls = gw_calls_new(index, w->loop, cfg, srv->secret, w->metrics, &srv->shared,
                            srv->log);
    if (w->calls == NULL)
        goto fail_calls;
    if (srv->shared.homes != NULL)
        gw_homes_attach(srv->shared.homes, index, w->loop, w->calls);
    gw_calls_register_metrics(w->calls, srv->registry);
    /* With a redis group the worker keeps Idempotency-Key records in Redis, on its own
     * connection, over the server's table (the fallback); without one, in the table. */
    if (cfg->redis.url != NULL) {
        struct gw_idem_store *own = gw_idem_redis_new(w->loop, gw_calls_redis(w->calls), cfg,
                                                      srv->secret, srv->idem, w->metrics);
        if (own == NULL)
            goto fail_idem;
        w->idem = own;
    }
    if (cfg->listen.tls.creds != NULL) {
        gw_tls_mhd_options(tls_opts);
        tls_flag = MHD_USE_TLS;
    }
    w->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | tls_flag, 0, NULL, NULL,
        gw_request_access, w,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, w,
        MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_URI_LOG_CALLBACK, gw_request_begin, w,
        MHD_OPTION_NOTIFY_COMPLETED, gw_request_completed, w,
        MHD_OPTION_NOTIFY_CONNECTION, gw_conns_notify, w->conns,
        MHD_OPTION_UNESCAPE_CALLBACK, gw_request_unescape, w,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)cfg->limits.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->limits.max_header_bytes,
        /* HTTP/1.1 without Host, and a space inside the target, are 400 (framing.h has more). */
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
        MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_END);
    if (w->mhd == NULL)
        goto fail_mhd;
    info = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL)
        goto fail_epoll;
    w->mhd_io.fd = info->epoll_fd;
    w->mhd_io.cb = on_mhd_event;
    w->mhd_io.data = w;
    if (gw_loop_io_set(w->loop, &w->mhd_io, EPOLLIN) != 0)
        goto fail_epoll;
    return 0;

fail_epoll:
    MHD_stop_daemon(w->mhd);
    w->mhd = NULL;
    w->listen_fd = -1; /* MHD closed it */
fail_mhd:
    if (w->idem != srv->idem)
        gw_idem_free(w->idem);
    w->idem = srv->idem;
fail_idem:
    gw_calls_free(w->calls);
    w->calls = NULL;
fail_calls:
    gw_request_worker_fini(w);
fail_request:
    gw_loop_free(w->loop);
    w->loop = NULL;
fail_loop:
fail_metrics:
    return -1;
}

static void worker_fini(struct gw_server *srv, struct gw_worker *w)
{
    if (w->mhd != NULL) {
        gw_loop_io_set(w->loop, &w->mhd_io, 0);
        MHD_stop_daemon(w->mhd);
        w->mhd = NULL;
        w->listen_fd = -1;
    }
    if (w->listen_fd >= 0) {
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    /* Its own store goes before the Redis connection it uses. */
    if (w->idem != srv->idem)
        gw_idem_free(w->idem);
    w->idem = srv->idem;
    gw_calls_free(w->calls);
    w->calls = NULL;
    gw_request_worker_fini(w);
    gw_loop_free(w->loop);
    w->loop = NULL;
}

static void run_mhd(struct gw_worker *w)
{
    w->mhd_needs_run = false;
    MHD_run(w->mhd);
}

static int mhd_wait_ms(struct gw_worker *w)
{
    MHD_UNSIGNED_LONG_LONG t;

    if (w->mhd_needs_run)
        return 0;
    if (MHD_get_timeout(w->mhd, &t) != MHD_YES)
        return -1;
    return t > (MHD_UNSIGNED_LONG_LONG)INT32_MAX ? INT32_MAX : (int)t;
}

static void begin_drain(struct gw_worker *w)
{
    MHD_socket fd;

    w->draining = true;
    fd = MHD_quiesce_daemon(w->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    w->listen_fd = -1;
}

static void *worker_main(void *arg)
{
    struct gw_worker *w = arg;
    uint64_t drain_deadline = 0;
    uint64_t flush_deadline = 0;

    gw_tls_bind_thread(&w->cfg, w->log);
    for (;;) {
        run_mhd(w);
        if (!w->draining && __atomic_load_n(w->stopping, __ATOMIC_ACQUIRE)) {
            begin_drain(w);
            drain_deadline = gw_loop_now(w->loop) + (uint64_t)w->cfg->server.drain_timeout_ms;
        }
        if (w->draining) {
            uint64_t now = gw_loop_now(w->loop);
            /* Done when its own requests are, and no other worker's call runs here. */
            if (w->active == 0 && (w->homes == NULL || gw_homes_close(w->homes, w->index, false)))
                break;
            if (flush_deadline == 0 && now >= drain_deadline) {
                gw_logf(w->log, GW_LOG_WARN, "drain timeout: answering %zu requests still "
                                             "waiting on HelpCrunch with shutting_down",
                        w->in_flight);
                /* Those waiting on the Idempotency-Key store (Redis) are answered too. */
                gw_idem_stop(w->idem);
                gw_calls_cancel_all(w->calls, GW_ERR_SHUTTING_DOWN);
                flush_deadline = now + SRV_FLUSH_MS;
                continue;
            }
            /* Past the deadline only answers being written are waited for. A request still
             * being received (its headers half sent, its body cut short) would not end before
             * its client sends the rest: MHD_stop_daemon closes it. */
            if (flush_deadline != 0 && (w->answering == 0 || now >= flush_deadline))
                break;
        }
        int wait = mhd_wait_ms(w);
        if (w->draining) {
            uint64_t now = gw_loop_now(w->loop);
            uint64_t until = flush_deadline ? flush_deadline : drain_deadline;
            int left = until > now ? (int)(until - now) : 0;
            if (wait < 0 || wait > left)
                wait = left;
        }
        if (gw_loop_run_once(w->loop, wait) < 0 && errno != EINTR)
            break;
    }
    /* Nothing may stay suspended or in flight when MHD stops: requests waiting on the
     * Idempotency-Key store are answered (shutting_down) or go on to their call, which is
     * cancelled below. Calls of other workers still waiting here go back to run there. */
    gw_idem_stop(w->idem);
    if (w->homes != NULL)
        gw_homes_close(w->homes, w->index, true);
    gw_calls_cancel_all(w->calls, GW_ERR_SHUTTING_DOWN);
    run_mhd(w);
    return NULL;
}

static struct gw_server *server_of(struct gw_worker *w)
{
    return (struct gw_server *)((char *)(w - w->index) - offsetof(struct gw_server, workers));
}

/*
 * Runs on the worker's thread after gw_loop_wake: run the calls other workers handed to it and
 * end its own whose answers came back (homes.h), then take a posted configuration and key. The
 * loop iteration itself re-reads the stopping flag, so a stop needs nothing here.
 */
static void on_wake(void *data)
{
    struct gw_worker *w = data;
    struct gw_server *srv = server_of(w);

    if (w->homes != NULL)
        gw_homes_run(w->homes, w->index);
    pthread_mutex_lock(&srv->reload_mu);
    if (srv->applied_gen[w->index] != srv->reload_gen) {
        srv->applied_gen[w->index] = srv->reload_gen;
        if (gw_calls_reconfigure(w->calls, srv->next_cfg, srv->next_secret) == 0) {
            w->cfg = srv->next_cfg;
            w->secret = srv->next_secret;
            if (w->idem != srv->idem)
                gw_idem_redis_reconfigure(w->idem, srv->next_cfg, srv->next_secret);
        } else {
            srv->reload_failures++;
        }
        srv->reload_acks++;
        pthread_cond_broadcast(&srv->reload_cv);
    }
    pthread_mutex_unlock(&srv->reload_mu);
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The expiry of the certificate the listener serves, for /metrics (0: no TLS, not shown). */
static void set_tls_metrics(struct gw_metrics_registry *reg, const struct gw_config *cfg)
{
    struct gw_tls_info info = {.not_after = 0};

    if (cfg->listen.tls.creds != NULL)
        gw_tls_creds_info(cfg->listen.tls.creds, &info);
    gw_metrics_set_tls_not_after(reg, info.not_after);
}

/* The idempotency group's settings, on the store. Returns as gw_idem_configure. */
static int configure_idem(struct gw_idem_store *idem, const struct gw_config *cfg)
{
    return gw_idem_configure(idem, (uint64_t)cfg->idempotency.ttl_s * 1000u,
                             cfg->idempotency.max_entries, cfg->idempotency.max_bytes);
}

int gw_server_reload(struct gw_server *srv, const struct gw_config *cfg,
                     const struct gw_secret *secret)
{
    const struct gw_config *old = srv->cfg;
    struct timespec until;
    int rc = 0;
    int i;

    if (!same_str(old->listen.address, cfg->listen.address) ||
        old->listen.port != cfg->listen.port || old->server.workers != cfg->server.workers ||
        old->limits.max_connections != cfg->limits.max_connections ||
        old->limits.max_header_bytes != cfg->limits.max_header_bytes ||
        old->limits.connection_timeout_ms != cfg->limits.connection_timeout_ms)
        gw_logf(srv->log, GW_LOG_WARN, "reload: listen.*, server.workers, "
                                       "limits.max_connections, limits.max_header_bytes and "
                                       "limits.connection_timeout_ms take effect at the next "
                                       "start only");
    gw_governor_configure(srv->shared.governor, cfg);
    set_tls_metrics(srv->registry, cfg);
    /* Out of memory for new buckets keeps the old ones: a longer chain, not a failure. */
    (void)gw_cache_configure(srv->shared.cache, cfg->cache.ttl_ms, cfg->cache.max_entries,
                             cfg->cache.max_bytes);
    (void)configure_idem(srv->idem, cfg);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SRV_RELOAD_WAIT_S;
    pthread_mutex_lock(&srv->reload_mu);
    srv->next_cfg = cfg;
    srv->next_secret = secret;
    srv->reload_gen++;
    srv->reload_acks = 0;
    srv->reload_failures = 0;
    pthread_mutex_unlock(&srv->reload_mu);
    for (i = 0; i < srv->n_workers; i++)
        gw_loop_wake(srv->workers[i].loop);
    pthread_mutex_lock(&srv->reload_mu);
    while (srv->reload_acks < srv->n_workers) {
        if (pthread_cond_timedwait(&srv->reload_cv, &srv->reload_mu, &until) != 0)
            break;
    }
    if (srv->reload_acks < srv->n_workers || srv->reload_failures > 0)
        rc = -1;
    pthread_mutex_unlock(&srv->reload_mu);
    srv->cfg = cfg;
    srv->secret = secret;
    return rc;
}

struct gw_server *gw_server_new(const struct gw_config *cfg, const struct gw_secret *secret,
                                struct gw_log *log, char **error)
{
    struct gw_server *srv = calloc(1, sizeof(*srv));
    long ncpu;
    int n;
    int i;
    int fd;

    if (srv == NULL) {
        errorf(error, "out of memory");
        return NULL;
    }
    srv->cfg = cfg;
    srv->secret = secret;
    srv->log = log;
    pthread_mutex_init(&srv->reload_mu, NULL);
    pthread_cond_init(&srv->reload_cv, NULL);
    srv->registry = gw_metrics_registry_new();
    srv->shared.governor = gw_governor_new(cfg);
    srv->shared.cache = gw_cache_new();
    if (srv->registry == NULL || srv->shared.governor == NULL || srv->shared.cache == NULL ||
        gw_cache_configure(srv->shared.cache, cfg->cache.ttl_ms, cfg->cache.max_entries,
                           cfg->cache.max_bytes) != 0) {
        errorf(error, "out of memory");
        gw_cache_free(srv->shared.cache);
        gw_governor_free(srv->shared.governor);
        gw_metrics_registry_free(srv->registry);
        pthread_cond_destroy(&srv->reload_cv);
        pthread_mutex_destroy(&srv->reload_mu);
        free(srv);
        return NULL;
    }
    gw_metrics_set_governor(srv->registry, srv->shared.governor);
    set_tls_metrics(srv->registry, cfg);
    gw_metrics_set_cache(srv->registry, srv->shared.cache);
    gw_metrics_set_key_refused(srv->registry, &srv->shared.key_refused);
    srv->idem = gw_idem_local_new();
    if (srv->idem == NULL || configure_idem(srv->idem, cfg) != 0) {
        errorf(error, "out of memory");
        goto fail;
    }
    n = cfg->server.workers;
    if (n == 0) {
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        n = ncpu < 1 ? 1 : ncpu > GW_MAX_WORKERS ? GW_MAX_WORKERS : (int)ncpu;
    }
    /* With one worker every contact's home is that worker: nothing to hand off. */
    if (n > 1) {
        srv->shared.homes = gw_homes_new(n);
        if (srv->shared.homes == NULL) {
            errorf(error, "out of memory");
            goto fail;
        }
    }
    for (i = 0; i < GW_MAX_WORKERS; i++)
        srv->workers[i].listen_fd = -1;
    srv->port = cfg->listen.port;
    for (i = 0; i < n; i++) {
        fd = open_listener(cfg, srv->port, n > 1, error);
        if (fd < 0)
            goto fail;
        if (i == 0)
            srv->port = bound_port(fd);
        if (worker_init(srv, &srv->workers[i], i, fd) != 0) {
            close(fd);
            errorf(error, "cannot start worker %d (libmicrohttpd or libcurl set-up failed)", i);
            goto fail;
        }
        srv->n_workers++;
        gw_loop_on_wake(srv->workers[i].loop, on_wake, &srv->workers[i]);
    }
    return srv;

fail:
    gw_server_free(srv);
    return NULL;
}

int gw_server_port(const struct gw_server *srv)
{
    return srv->port;
}

int gw_server_start(struct gw_server *srv)
{
    int i;

    for (i = 0; i < srv->n_workers; i++) {
        struct gw_worker *w = &srv->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            gw_server_stop(srv);
            gw_server_wait(srv);
            return -1;
        }
        w->started = true;
    }
    return 0;
}

void gw_server_stop(struct gw_server *srv)
{
    int i;

    __atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
    for (i = 0; i < srv->n_workers; i++)
        gw_loop_wake(srv->workers[i].loop);
}

void gw_server_wait(struct gw_server *srv)
{
    int i;

    for (i = 0; i < srv->n_workers; i++) {
        if (srv->workers[i].started) {
            pthread_join(srv->workers[i].thread, NULL);
            srv->workers[i].started = false;
        }
    }
}

void gw_server_free(struct gw_server *srv)
{
    int i;

    if (srv == NULL)
        return;
    for (i = 0; i < srv->n_workers; i++)
        worker_fini(srv, &srv->workers[i]);
    gw_metrics_registry_free(srv->registry);
    gw_homes_free(srv->shared.homes);
    gw_governor_free(srv->shared.governor);
    gw_cache_free(srv->shared.cache);
    gw_idem_free(srv->idem);
    pthread_cond_destroy(&srv->reload_cv);
    pthread_mutex_destroy(&srv->reload_mu);
    free(srv);
}

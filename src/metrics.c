/*
 * Prometheus metrics. Each worker owns one struct gw_metrics and is its only writer; a
 * server's registry holds its workers' blocks, and the render sums them with relaxed atomic
 * loads, so the hot path takes no lock and shares
 * no cache line between threads. Counts can be a few increments stale when read, which is
 * what a scrape can live with.
 */
#include "hcgw/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hcgw/buf.h"
#include "hcgw/cache.h"
#include "hcgw/governor.h"
#include "hcgw/redis.h"
#include "hcgw/redis_cache.h"
#include "hcgw/redis_quota.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"
#include "hcgw/version.h"

static const int statuses[GW_METRICS_STATUSES] = {200, 201, 204, 400, 401, 403, 404,
                                                  405, 409, 413, 415, 422, 429, 499,
                                                  500, 502, 503, 504, 414};
/* Upper bounds of the latency buckets, in microseconds. */
static const uint64_t bucket_us[GW_METRICS_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000};
static const char *const methods[GW_METRICS_METHODS] = {"GET",   "HEAD",   "POST",   "PUT",
                                                        "PATCH", "DELETE", "OPTIONS"};
static const char *const failure_names[GW_UPFAIL__COUNT] = {
    "timeout", "unavailable", "bad_response", "auth", "rate_limited", "http_4xx", "http_5xx"};
static const char *const version_names[GW_UPVER__COUNT] = {"1.0", "1.1", "2"};
static const char *const lookup_names[GW_LOOKUP__COUNT] = {"hit", "miss", "bypass",
                                                           "revalidated"};
static const char *const idem_fallback_names[GW_IDEM_FALLBACK__COUNT] = {"begin", "complete",
                                                                         "abandon"};
static const char *const saved_names[GW_SAVED__COUNT] = {"cache", "not_modified",
                                                         "collapsed", "coalesced"};

/* One server's blocks, written before its threads start and only read after that. */
struct gw_metrics_registry {
    struct gw_metrics *blocks[GW_MAX_WORKERS];
    size_t n_blocks;
    struct gw_governor *governor;
    struct gw_cache *cache;
    const uint32_t *key_refused;
    const struct gw_redis *redis[GW_MAX_WORKERS];
    const struct gw_redis_quota *rquota[GW_MAX_WORKERS];
    const struct gw_redis_cache *rcache[GW_MAX_WORKERS];
    size_t n_redis;
    int64_t tls_not_after;           /* seconds since the epoch, 0: no TLS; atomic access */
};

struct gw_metrics_registry *gw_metrics_registry_new(void)
{
    return calloc(1, sizeof(struct gw_metrics_registry));
}

void gw_metrics_registry_free(struct gw_metrics_registry *reg)
{
    if (reg == NULL)
        return;
    gw_metrics_reset(reg);
    free(reg);
}

void gw_metrics_set_governor(struct gw_metrics_registry *reg, struct gw_governor *g)
{
    reg->governor = g;
}

void gw_metrics_add_redis(struct gw_metrics_registry *reg, const struct gw_redis *r,
                          const struct gw_redis_quota *q, const struct gw_redis_cache *c)
{
    if (reg->n_redis >= GW_MAX_WORKERS)
        return;
    reg->redis[reg->n_redis] = r;
    reg->rquota[reg->n_redis] = q;
    reg->rcache[reg->n_redis] = c;
    reg->n_redis++;
}

void gw_metrics_set_tls_not_after(struct gw_metrics_registry *reg, int64_t not_after)
{
    __atomic_store_n(&reg->tls_not_after, not_after, __ATOMIC_RELAXED);
}

void gw_metrics_set_cache(struct gw_metrics_registry *reg, struct gw_cache *c)
{
    reg->cache = c;
}

void gw_metrics_set_key_refused(struct gw_metrics_registry *reg, const uint32_t *flag)
{
    reg->key_refused = flag;
}

struct gw_metrics *gw_metrics_register(struct gw_metrics_registry *reg)
{
    struct gw_metrics *m;

    if (reg->n_blocks >= sizeof(reg->blocks) / sizeof(reg->blocks[0]))
        return NULL;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    reg->blocks[reg->n_blocks++] = m;
    return m;
}

void gw_metrics_reset(struct gw_metrics_registry *reg)
{
    while (reg->n_blocks > 0)
        free(reg->blocks[--reg->n_blocks]);
}

static int status_slot(int status)
{
    int i;

    for (i = 0; i < GW_METRICS_STATUSES; i++) {
        if (statuses[i] == status)
            return i;
    }
    return GW_METRICS_STATUSES;
}

/* Methods are compared whole and case-sensitively, as the router compares them. */
static int method_slot(const char *method)
{
    int i;

    for (i = 0; method != NULL && i < GW_METRICS_METHODS; i++) {
        if (strcmp(methods[i], method) == 0)
            return i;
    }
    return GW_METRICS_METHODS;
}

void gw_metrics_observe(struct gw_histogram *h, uint64_t duration_us)
{
    int i;

    for (i = 0; i < GW_METRICS_BUCKETS; i++) {
        if (duration_us <= bucket_us[i])
            break;
    }
    gw_metrics_inc(&h->buckets[i]);
    __atomic_store_n(&h->sum_us, __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED) + duration_us,
                     __ATOMIC_RELAXED);
    gw_metrics_inc(&h->count);
}

void gw_metrics_request(struct gw_metrics *m, const struct gw_route *route, const char *method,
                        int status, uint64_t duration_us)
{
    size_t row = route != NULL ? (size_t)route->id : GW_ROUTE__COUNT;

    gw_metrics_inc(&m->requests[row][method_slot(method)][status_slot(status)]);
    gw_metrics_observe(&m->request_seconds, duration_us);
}

/** The render's first allocation; it doubles up to GW_MAX_METRICS_BYTES. */
#define METRICS_TEXT_FIRST 8192

/* The render's text, and whether a part of it could not be added; it is off the hot path. */
struct text {
    struct gw_buf buf;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void add(struct text *t, const char *fmt, ...)
{
    va_list ap;

    if (t->failed)
        return;
    va_start(ap, fmt);
    if (gw_buf_vappendf(&t->buf, fmt, ap) != 0)
        t->failed = 1;
    va_end(ap);
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void sum_histogram(const struct gw_metrics_registry *reg, struct gw_histogram *out,
                          size_t offset)
{
    size_t b;
    int i;

    memset(out, 0, sizeof(*out));
    for (b = 0; b < reg->n_blocks; b++) {
        const struct gw_histogram *h =
            (const struct gw_histogram *)((const char *)reg->blocks[b] + offset);
        for (i = 0; i <= GW_METRICS_BUCKETS; i++)
            out->buckets[i] += load(&h->buckets[i]);
        out->sum_us += load(&h->sum_us);
        out->count += load(&h->count);
    }
}

static void render_histogram(const struct gw_metrics_registry *reg, struct text *t,
                             const char *name, const char *help, size_t offset)
{
    struct gw_histogram h;
    uint64_t cum = 0;
    int i;

    sum_histogram(reg, &h, offset);
    add(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (i = 0; i < GW_METRICS_BUCKETS; i++) {
        cum += h.buckets[i];
        add(t, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bucket_us[i] / 1e6,
            (unsigned long long)cum);
    }
    cum += h.buckets[GW_METRICS_BUCKETS];
    add(t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    add(t, "%s_sum %.6f\n%s_count %llu\n", name, (double)h.sum_us / 1e6, name,
        (unsigned long long)h.count);
}

static uint64_t sum_field(const struct gw_metrics_registry *reg, size_t offset)
{
    uint64_t s = 0;
    size_t b;

    for (b = 0; b < reg->n_blocks; b++)
        s += load((const uint64_t *)((const char *)reg->blocks[b] + offset));
    return s;
}

/*
 * Read the first GW_PROC_STAT_BYTES - 1 bytes of /proc file @p path into @p out, NUL-terminated.
 * Returns the bytes read, or -1.
 */
static ssize_t read_proc(const char *path, char out[GW_PROC_STAT_BYTES])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -1;
    n = read(fd, out, GW_PROC_STAT_BYTES - 1);
    close(fd);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return n;
}

/* The process's open file descriptors, counted in /proc/self/fd (its own one excluded). */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1;
}

/* The process's start, seconds since the epoch (0: unknown), worked out once (start_once). */
static double process_started_s;
static pthread_once_t start_once = PTHREAD_ONCE_INIT;

/*
 * From /proc/self/stat's starttime (ticks after the boot) and /proc/uptime (seconds since the
 * boot): once, so that the value does not move between scrapes.
 */
static void work_out_start(void)
{
    char buf[GW_PROC_STAT_BYTES];
    unsigned long long start;
    double uptime;
    long ticks = sysconf(_SC_CLK_TCK);
    struct timespec now;
    const char *p;

    if (ticks <= 0 || read_proc("/proc/self/stat", buf) <= 0 ||
        (p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                      "%*d %*d %llu", &start) != 1 ||
        read_proc("/proc/uptime", buf) <= 0 || sscanf(buf, "%lf", &uptime) != 1 ||
        clock_gettime(CLOCK_REALTIME, &now) != 0)
        return;
    process_started_s = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - uptime +
                        (double)start / (double)ticks;
}

/*
 * The process_* families Prometheus's client libraries expose, from /proc/self/stat (CPU time,
 * memory), the start worked out once, /proc/self/fd and RLIMIT_NOFILE. A family whose source
 * cannot be read is left out.
 */
static void render_process(struct text *t)
{
    char buf[GW_PROC_STAT_BYTES];
    unsigned long long utime, stime, vsize;
    long long rss;
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    const char *p;
    long fds;

    /* Fields 14, 15 (utime, stime), 23 (vsize), 24 (rss) of proc(5)'s stat, counted
     * after the command name, which ends at the last ')'. */
    if (read_proc("/proc/self/stat", buf) > 0 && (p = strrchr(buf, ')')) != NULL &&
        ticks > 0 &&
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                      "%*d %*d %*u %llu %lld",
               &utime, &stime, &vsize, &rss) == 4) {
        add(t, "# HELP process_cpu_seconds_total Total user and system CPU time spent in "
               "seconds.\n# TYPE process_cpu_seconds_total counter\n"
               "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / (double)ticks);
        add(t, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
               "# TYPE process_resident_memory_bytes gauge\n"
               "process_resident_memory_bytes %lld\n", rss * (long long)page);
        add(t, "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
               "# TYPE process_virtual_memory_bytes gauge\n"
               "process_virtual_memory_bytes %llu\n", vsize);
    }
    (void)pthread_once(&start_once, work_out_start);
    if (process_started_s > 0)
        add(t, "# HELP process_start_time_seconds Start time of the process since unix epoch "
               "in seconds.\n# TYPE process_start_time_seconds gauge\n"
               "process_start_time_seconds %.2f\n", process_started_s);
    fds = open_fds();
    if (fds >= 0)
        add(t, "# HELP process_open_fds Number of open file descriptors.\n"
               "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n", fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        add(t, "# HELP process_max_fds Maximum number of open file descriptors.\n"
               "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
            (unsigned long long)rl.rlim_cur);
}

/*
 * The Redis connections of the workers and the account's shared bucket on them (only with a
 * redis group): up and shared only while every worker's is.
 */
static void render_redis(const struct gw_metrics_registry *reg, struct text *t)
{
    struct gw_redis_stats r;
    struct gw_redis_stats sum;
    struct gw_redis_quota_stats q;
    struct gw_redis_quota_stats qsum;
    struct gw_redis_cache_stats cs;
    struct gw_redis_cache_stats csum;
    bool up = true;
    bool shared = true;
    bool cache_shared = true;
    uint64_t cum = 0;
    size_t i;
    int k;

    if (reg->n_redis == 0)
        return;
    memset(&sum, 0, sizeof(sum));
    memset(&qsum, 0, sizeof(qsum));
    memset(&csum, 0, sizeof(csum));
    for (i = 0; i < reg->n_redis; i++) {
        gw_redis_stats(reg->redis[i], &r);
        up = up && r.up != 0;
        for (k = 0; k < GW_REDIS_ERR__COUNT; k++)
            sum.errors[k] += r.errors[k];
        for (k = 0; k <= GW_REDIS_DURATION_BUCKETS; k++)
            sum.duration_buckets[k] += r.duration_buckets[k];
        sum.duration_sum_us += r.duration_sum_us;
        sum.answers += r.answers;
        gw_redis_quota_stats(reg->rquota[i], &q);
        shared = shared && gw_redis_quota_usable(reg->rquota[i]);
        qsum.decided += q.decided;
        qsum.fallbacks += q.fallbacks;
        gw_redis_cache_stats(reg->rcache[i], &cs);
        cache_shared = cache_shared && gw_redis_cache_serving(reg->rcache[i]);
        csum.hits += cs.hits;
        csum.misses += cs.misses;
        csum.unanswered += cs.unanswered;
        csum.stored += cs.stored;
        csum.refused += cs.refused;
        csum.epochs += cs.epochs;
    }
    add(t, "# HELP hcgw_redis_up Whether every worker's Redis connection is up.\n"
           "# TYPE hcgw_redis_up gauge\nhcgw_redis_up %d\n", up ? 1 : 0);
    add(t, "# HELP hcgw_redis_duration_seconds Redis commands, from sending to the answer.\n"
           "# TYPE hcgw_redis_duration_seconds histogram\n");
    for (k = 0; k < GW_REDIS_DURATION_BUCKETS; k++) {
        cum += sum.duration_buckets[k];
        add(t, "hcgw_redis_duration_seconds_bucket{le=\"%g\"} %llu\n",
            gw_redis_duration_bounds_s[k], (unsigned long long)cum);
    }
    cum += sum.duration_buckets[GW_REDIS_DURATION_BUCKETS];
    add(t, "hcgw_redis_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    add(t, "hcgw_redis_duration_seconds_sum %.6f\nhcgw_redis_duration_seconds_count %llu\n",
        (double)sum.duration_sum_us / 1e6, (unsigned long long)cum);
    add(t, "# HELP hcgw_redis_errors_total Redis failures, by kind.\n"
           "# TYPE hcgw_redis_errors_total counter\n");
    for (k = 0; k < GW_REDIS_ERR__COUNT; k++)
        add(t, "hcgw_redis_errors_total{kind=\"%s\"} %llu\n",
            gw_redis_error_name((enum gw_redis_error)k), (unsigned long long)sum.errors[k]);
    add(t, "# HELP hcgw_quota_shared Whether the quota is the account's, shared in Redis (1), "
           "or this replica's fallback bucket (0).\n"
           "# TYPE hcgw_quota_shared gauge\nhcgw_quota_shared %d\n", shared ? 1 : 0);
    add(t, "# HELP hcgw_quota_shared_decisions_total Attempts the shared bucket admitted.\n"
           "# TYPE hcgw_quota_shared_decisions_total counter\n"
           "hcgw_quota_shared_decisions_total %llu\n", (unsigned long long)qsum.decided);
    add(t, "# HELP hcgw_quota_fallbacks_total Attempts the fallback bucket admitted because "
           "Redis could not answer in time.\n"
           "# TYPE hcgw_quota_fallbacks_total counter\n"
           "hcgw_quota_fallbacks_total %llu\n", (unsigned long long)qsum.fallbacks);
    add(t, "# HELP hcgw_cache_shared Whether the contact cache is the fleet's, in Redis, and "
           "served (1), or not served at all (0: Redis away, or a write it missed).\n"
           "# TYPE hcgw_cache_shared gauge\nhcgw_cache_shared %d\n", cache_shared ? 1 : 0);
    add(t, "# HELP hcgw_cache_shared_operations_total The shared cache's lookups (hit, miss) and "
           "stores (stored, refused), and those Redis did not answer (unanswered).\n"
           "# TYPE hcgw_cache_shared_operations_total counter\n"
           "hcgw_cache_shared_operations_total{result=\"hit\"} %llu\n"
           "hcgw_cache_shared_operations_total{result=\"miss\"} %llu\n"
           "hcgw_cache_shared_operations_total{result=\"stored\"} %llu\n"
           "hcgw_cache_shared_operations_total{result=\"refused\"} %llu\n"
           "hcgw_cache_shared_operations_total{result=\"unanswered\"} %llu\n",
        (unsigned long long)csum.hits, (unsigned long long)csum.misses,
        (unsigned long long)csum.stored, (unsigned long long)csum.refused,
        (unsigned long long)csum.unanswered);
    add(t, "# HELP hcgw_cache_shared_epochs_total Times this replica retired every shared entry "
           "after writes Redis missed.\n"
           "# TYPE hcgw_cache_shared_epochs_total counter\n"
           "hcgw_cache_shared_epochs_total %llu\n", (unsigned long long)csum.epochs);
}

char *gw_metrics_render(const struct gw_metrics_registry *reg, size_t *len)
{
    struct text t = {.failed = 0};
    size_t nroutes;
    const struct gw_route *routes = gw_router_table(&nroutes);
    size_t r, b;
    int k, s;
    int64_t in_flight = 0;
    int64_t tls_not_after;

    gw_buf_init(&t.buf, GW_MAX_METRICS_BYTES, METRICS_TEXT_FIRST, 0);
    add(&t, "# HELP hcgw_build_info Build information.\n# TYPE hcgw_build_info gauge\n");
    add(&t, "hcgw_build_info{version=\"%s\",commit=\"%s\"} 1\n", HCGW_VERSION, HCGW_COMMIT);

    add(&t, "# HELP hcgw_requests_total Requests answered, by route, method and status.\n"
            "# TYPE hcgw_requests_total counter\n");
    for (r = 0; r <= GW_ROUTE__COUNT; r++) {
        const char *name = r < nroutes ? routes[r].name : "unmatched";
        for (k = 0; k <= GW_METRICS_METHODS; k++) {
            const char *method = k < GW_METRICS_METHODS ? methods[k] : "other";
            for (s = 0; s <= GW_METRICS_STATUSES; s++) {
                char status[16] = "other";
                uint64_t v = 0;
                for (b = 0; b < reg->n_blocks; b++)
                    v += load(&reg->blocks[b]->requests[r][k][s]);
                if (v == 0)
                    continue;
                if (s < GW_METRICS_STATUSES)
                    snprintf(status, sizeof(status), "%d", statuses[s]);
                add(&t,
                    "hcgw_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
                    name, method, status, (unsigned long long)v);
            }
        }
    }
    render_histogram(reg, &t, "hcgw_request_duration_seconds",
                     "Time from the request's arrival to its answer.",
                     offsetof(struct gw_metrics, request_seconds));
    render_histogram(reg, &t, "hcgw_upstream_duration_seconds",
                     "Time of one upstream attempt.",
                     offsetof(struct gw_metrics, upstream_seconds));
    add(&t, "# HELP hcgw_upstream_attempts_total Requests sent to HelpCrunch.\n"
            "# TYPE hcgw_upstream_attempts_total counter\nhcgw_upstream_attempts_total %llu\n",
        (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, upstream_attempts)));
    add(&t, "# HELP hcgw_upstream_retries_total Attempts that were retries.\n"
            "# TYPE hcgw_upstream_retries_total counter\nhcgw_upstream_retries_total %llu\n",
        (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, upstream_retries)));
    add(&t, "# HELP hcgw_upstream_connections_total Connections opened to HelpCrunch.\n"
            "# TYPE hcgw_upstream_connections_total counter\n"
            "hcgw_upstream_connections_total %llu\n",
        (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, upstream_connections)));
    add(&t, "# HELP hcgw_upstream_answers_total Upstream attempts HelpCrunch answered, by the "
            "HTTP version of the answer.\n"
            "# TYPE hcgw_upstream_answers_total counter\n");
    for (s = 0; s < GW_UPVER__COUNT; s++) {
        add(&t, "hcgw_upstream_answers_total{http_version=\"%s\"} %llu\n", version_names[s],
            (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, upstream_answers) +
                                               (size_t)s * sizeof(uint64_t)));
    }
    add(&t, "# HELP hcgw_upstream_failures_total Failed upstream attempts, by kind.\n"
            "# TYPE hcgw_upstream_failures_total counter\n");
    for (s = 0; s < GW_UPFAIL__COUNT; s++) {
        add(&t, "hcgw_upstream_failures_total{kind=\"%s\"} %llu\n", failure_names[s],
            (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, upstream_failures) +
                                               (size_t)s * sizeof(uint64_t)));
    }
    for (b = 0; b < reg->n_blocks; b++)
        in_flight += __atomic_load_n(&reg->blocks[b]->in_flight, __ATOMIC_RELAXED);
    if (reg->key_refused != NULL)
        add(&t, "# HELP hcgw_upstream_key_refused Whether HelpCrunch's last answer to the API "
                "key was 401 or 403.\n"
                "# TYPE hcgw_upstream_key_refused gauge\nhcgw_upstream_key_refused %u\n",
            (unsigned)__atomic_load_n(reg->key_refused, __ATOMIC_RELAXED));
    add(&t, "# HELP hcgw_in_flight Requests waiting on HelpCrunch.\n"
            "# TYPE hcgw_in_flight gauge\nhcgw_in_flight %lld\n", (long long)in_flight);
    if (reg->governor != NULL) {
        struct gw_governor_stats st;

        gw_governor_stats(reg->governor, gw_clock_ms(), &st);
        add(&t, "# HELP hcgw_quota_enabled Whether the quota governor is on.\n"
                "# TYPE hcgw_quota_enabled gauge\nhcgw_quota_enabled %d\n", st.enabled ? 1 : 0);
        add(&t, "# HELP hcgw_quota_tokens Upstream calls that may go at once now.\n"
                "# TYPE hcgw_quota_tokens gauge\nhcgw_quota_tokens %.3f\n", st.tokens);
        add(&t, "# HELP hcgw_quota_queued Calls waiting for their quota slot now.\n"
                "# TYPE hcgw_quota_queued gauge\nhcgw_quota_queued %lld\n", (long long)st.queued);
        add(&t, "# HELP hcgw_quota_waits_total Calls that waited for a quota slot.\n"
                "# TYPE hcgw_quota_waits_total counter\nhcgw_quota_waits_total %llu\n",
            (unsigned long long)st.waits);
        add(&t, "# HELP hcgw_quota_wait_seconds_total Time calls spent waiting for a slot.\n"
                "# TYPE hcgw_quota_wait_seconds_total counter\n"
                "hcgw_quota_wait_seconds_total %.3f\n", (double)st.wait_ms_total / 1e3);
        add(&t, "# HELP hcgw_quota_rejections_total Calls answered 429 locally, no upstream call.\n"
                "# TYPE hcgw_quota_rejections_total counter\nhcgw_quota_rejections_total %llu\n",
            (unsigned long long)st.rejections);
        add(&t, "# HELP hcgw_quota_upstream_429_total 429 answers HelpCrunch gave.\n"
                "# TYPE hcgw_quota_upstream_429_total counter\n"
                "hcgw_quota_upstream_429_total %llu\n", (unsigned long long)st.upstream_429);
        add(&t, "# HELP hcgw_quota_cooldowns_total Process-wide pauses after a 429.\n"
                "# TYPE hcgw_quota_cooldowns_total counter\nhcgw_quota_cooldowns_total %llu\n",
            (unsigned long long)st.cooldowns);
    }
    add(&t, "# HELP hcgw_cache_lookups_total Contact cache lookups, by result.\n"
            "# TYPE hcgw_cache_lookups_total counter\n");
    for (s = 0; s < GW_LOOKUP__COUNT; s++) {
        add(&t, "hcgw_cache_lookups_total{result=\"%s\"} %llu\n", lookup_names[s],
            (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, cache_lookups) +
                                               (size_t)s * sizeof(uint64_t)));
    }
    add(&t, "# HELP hcgw_upstream_calls_saved_total Requests answered without an upstream "
            "call they would have cost, by reason.\n"
            "# TYPE hcgw_upstream_calls_saved_total counter\n");
    for (s = 0; s < GW_SAVED__COUNT; s++) {
        add(&t, "hcgw_upstream_calls_saved_total{reason=\"%s\"} %llu\n", saved_names[s],
            (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, calls_saved) +
                                               (size_t)s * sizeof(uint64_t)));
    }
    add(&t, "# HELP hcgw_idempotency_replays_total Creates answered again from the record of "
            "their Idempotency-Key, without an upstream call.\n"
            "# TYPE hcgw_idempotency_replays_total counter\nhcgw_idempotency_replays_total %llu\n",
        (unsigned long long)sum_field(reg, offsetof(struct gw_metrics, idempotency_replays)));
    if (reg->n_redis > 0) {
        /* Only with a redis group: without one, every record is local and none falls back. */
        add(&t, "# HELP hcgw_idempotency_fallbacks_total Idempotency-Key verbs Redis could not "
                "answer in time, done in the replica's own table instead, by verb.\n"
                "# TYPE hcgw_idempotency_fallbacks_total counter\n");
        for (s = 0; s < GW_IDEM_FALLBACK__COUNT; s++) {
            add(&t, "hcgw_idempotency_fallbacks_total{op=\"%s\"} %llu\n",
                idem_fallback_names[s],
                (unsigned long long)sum_field(reg, offsetof(struct gw_metrics,
                                                            idempotency_fallbacks) +
                                                       (size_t)s * sizeof(uint64_t)));
        }
    }
    if (reg->cache != NULL) {
        struct gw_cache_stats cs = gw_cache_stats(reg->cache);
        add(&t, "# HELP hcgw_cache_entries Contacts held in the cache now.\n"
                "# TYPE hcgw_cache_entries gauge\nhcgw_cache_entries %zu\n", cs.entries);
        add(&t, "# HELP hcgw_cache_bytes Bytes the cache holds now.\n"
                "# TYPE hcgw_cache_bytes gauge\nhcgw_cache_bytes %zu\n", cs.bytes);
    }
    render_redis(reg, &t);
    tls_not_after = __atomic_load_n(&reg->tls_not_after, __ATOMIC_RELAXED);
    if (tls_not_after != 0)
        add(&t, "# HELP hcgw_tls_cert_not_after_seconds When the certificate the listener "
                "serves expires, in seconds since the epoch.\n"
                "# TYPE hcgw_tls_cert_not_after_seconds gauge\n"
                "hcgw_tls_cert_not_after_seconds %lld\n", (long long)tls_not_after);
    render_process(&t);
    if (t.failed) {
        gw_buf_free(&t.buf);
        return NULL;
    }
    return gw_buf_take(&t.buf, len);
}

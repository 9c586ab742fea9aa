/*
 * Counters and histograms, per worker thread: each worker owns one struct gw_metrics and is
 * its only writer (relaxed atomic stores, no lock, no shared cache line); /metrics sums them
 * all when read and renders the Prometheus text format. The blocks of one server are kept in
 * its registry (struct gw_metrics_registry), which the server owns, so two servers in one
 * process count apart.
 */
#ifndef HCGW_METRICS_H
#define HCGW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "hcgw/router.h"

/** HTTP statuses counted by name; anything else is counted as "other". */
#define GW_METRICS_STATUSES 19
/** Request methods counted by name (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS); any other
 *  is counted as "other", so that a caller cannot grow the label set. */
#define GW_METRICS_METHODS 7
/** Latency histogram buckets (upper bounds in seconds, see metrics.c), plus +Inf. */
#define GW_METRICS_BUCKETS 14

enum gw_upstream_failure {
    GW_UPFAIL_TIMEOUT,
    GW_UPFAIL_UNAVAILABLE,
    GW_UPFAIL_BAD_RESPONSE,
    GW_UPFAIL_AUTH,
    GW_UPFAIL_RATE_LIMITED,
    GW_UPFAIL_HTTP_4XX,
    GW_UPFAIL_HTTP_5XX,
    GW_UPFAIL__COUNT
};

/** Upstream answers by the HTTP version they came in (label http_version). */
enum gw_upstream_version {
    GW_UPVER_1_0,
    GW_UPVER_1_1,
    GW_UPVER_2,
    GW_UPVER__COUNT
};

/** Contact cache lookups, by what came of them (label result). */
enum gw_cache_lookup {
    GW_LOOKUP_HIT,                   /* served from the cache */
    GW_LOOKUP_MISS,                  /* not there or too old: an upstream call */
    GW_LOOKUP_BYPASS,                /* the caller asked for fresh: an upstream call */
    GW_LOOKUP_REVALIDATED,           /* If-None-Match matched a fresh entry: 304 */
    GW_LOOKUP__COUNT
};

/** Upstream calls a request did not make, by why (label reason). */
enum gw_saved_reason {
    GW_SAVED_CACHE,                  /* answered from the cache */
    GW_SAVED_NOT_MODIFIED,           /* answered 304 from the cache */
    GW_SAVED_COLLAPSED,              /* shared another caller's call (single flight) */
    GW_SAVED_COALESCED,              /* merged into another caller's tag write */
    GW_SAVED__COUNT
};

/** Idempotency-Key verbs Redis could not answer in time (idem_redis.h), by verb (label op). */
enum gw_idem_fallback {
    GW_IDEM_FALLBACK_BEGIN,          /* the local table decided, and held the claim */
    GW_IDEM_FALLBACK_COMPLETE,       /* the final answer was kept in the local table */
    GW_IDEM_FALLBACK_ABANDON,        /* the claim is left to its lease */
    GW_IDEM_FALLBACK__COUNT
};

struct gw_histogram {
    uint64_t buckets[GW_METRICS_BUCKETS + 1];
    uint64_t sum_us;
    uint64_t count;
};

struct gw_metrics {
    /* Row GW_ROUTE__COUNT counts requests that matched no route; the last method and status
     * slots count "other". */
    uint64_t requests[GW_ROUTE__COUNT + 1][GW_METRICS_METHODS + 1][GW_METRICS_STATUSES + 1];
    struct gw_histogram request_seconds;
    struct gw_histogram upstream_seconds;
    uint64_t upstream_attempts;
    uint64_t upstream_retries;
    uint64_t upstream_failures[GW_UPFAIL__COUNT];
    uint64_t upstream_connections;   /* new connections opened to HelpCrunch */
    uint64_t upstream_answers[GW_UPVER__COUNT]; /* attempts HelpCrunch answered, by version */
    int64_t in_flight;               /* requests waiting on HelpCrunch now */
    uint64_t cache_lookups[GW_LOOKUP__COUNT];
    uint64_t calls_saved[GW_SAVED__COUNT];
    uint64_t idempotency_replays;    /* creates answered from an Idempotency-Key record */
    uint64_t idempotency_fallbacks[GW_IDEM_FALLBACK__COUNT]; /* with a redis group */
};

struct gw_metrics_registry;

/** An empty registry (no block, no governor). Returns NULL when out of memory. */
struct gw_metrics_registry *gw_metrics_registry_new(void);

/** Free @p reg and every block it holds. Call after all its workers stopped. Accepts NULL. */
void gw_metrics_registry_free(struct gw_metrics_registry *reg);

/**
 * A zeroed metrics block for a new worker, registered in @p reg so that gw_metrics_render sums
 * it; @p reg owns it. Call before threads start. Returns NULL when out of memory or over
 * GW_MAX_WORKERS blocks.
 */
struct gw_metrics *gw_metrics_register(struct gw_metrics_registry *reg);

/** Unregister and free every block of @p reg. Call after all its workers stopped. */
void gw_metrics_reset(struct gw_metrics_registry *reg);

/** Add 1 to a counter of the calling thread's own block. */
static inline void gw_metrics_inc(uint64_t *c)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/** Add @p d to a gauge of the calling thread's own block. */
static inline void gw_metrics_add(int64_t *g, int64_t d)
{
    __atomic_store_n(g, __atomic_load_n(g, __ATOMIC_RELAXED) + d, __ATOMIC_RELAXED);
}

struct gw_governor;
struct gw_cache;
struct gw_redis;
struct gw_redis_cache;
struct gw_redis_quota;

/**
 * The governor whose state @p reg's /metrics shows (NULL: none; not owned). Set before
 * threads start.
 */
void gw_metrics_set_governor(struct gw_metrics_registry *reg, struct gw_governor *g);

/**
 * The contact cache whose size @p reg's /metrics shows (NULL: none; not owned). Set before
 * threads start.
 */
void gw_metrics_set_cache(struct gw_metrics_registry *reg, struct gw_cache *c);

/**
 * The flag behind hcgw_upstream_key_refused (1 while HelpCrunch's last answer to the key was
 * 401 or 403; read atomically; not owned). Set before threads start.
 */
void gw_metrics_set_key_refused(struct gw_metrics_registry *reg, const uint32_t *flag);

/**
 * One worker's Redis connection, shared quota and shared cache, for hcgw_redis_*,
 * hcgw_quota_shared and hcgw_cache_shared* (not owned; they must outlive @p reg's last
 * render). Set before threads start; at most GW_MAX_WORKERS. No redis group: never called,
 * and those metrics are not shown.
 */
void gw_metrics_add_redis(struct gw_metrics_registry *reg, const struct gw_redis *r,
                          const struct gw_redis_quota *q, const struct gw_redis_cache *c);

/**
 * The expiry of the certificate the listener serves now, in seconds since the epoch, for
 * hcgw_tls_cert_not_after_seconds; 0 (the start) without TLS: the metric is not shown. Any
 * thread (an atomic store): set at start and by a reload.
 */
void gw_metrics_set_tls_not_after(struct gw_metrics_registry *reg, int64_t not_after);

/**
 * Count one answered request of @p route (NULL: unmatched) with the request's @p method (NULL
 * or any method not counted by name: "other") and @p status, and observe its duration.
 */
void gw_metrics_request(struct gw_metrics *m, const struct gw_route *route, const char *method,
                        int status, uint64_t duration_us);

/** Record one upstream attempt's duration. */
void gw_metrics_observe(struct gw_histogram *h, uint64_t duration_us);

/**
 * Render all blocks of @p reg, summed, in the Prometheus text format (version 0.0.4).
 * Returns a malloc'd string (length in *len) or NULL. Any thread.
 */
char *gw_metrics_render(const struct gw_metrics_registry *reg, size_t *len);

#endif

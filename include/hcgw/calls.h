/*
 * The call layer: between a request and the transport. Every upstream call of a worker is
 * submitted here; this layer decides what becomes of it before the transport sees it, and
 * admits every attempt the transport makes (the upstream gate, upstream.h). Today it holds the
 * quota governor (shared by all workers), HelpCrunch's cooldown after a 429, the key's health
 * after a 401/403, the contact cache (shared by all workers, cache.h), single flight of reads
 * and the line of writes of each contact: ordering and the coalescing of tag writes, in front
 * of gw_upstream_submit. Single flight and the line hold across workers because a contact's
 * reads that miss the cache and all its writes run on its home worker (homes.h).
 *
 * One struct gw_calls per worker loop; all functions run on that loop's thread, except where a
 * contract says otherwise.
 */
#ifndef HCGW_CALLS_H
#define HCGW_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/err.h"
#include "hcgw/redis_cache.h"
#include "hcgw/upstream.h"

struct gw_cache;
struct gw_config;
struct gw_governor;
struct gw_homes;
struct gw_log;
struct gw_loop;
struct gw_metrics;
struct gw_metrics_registry;
struct gw_redis;
struct gw_secret;

/**
 * What every worker's call layer shares: the quota governor, the contact cache, the contacts'
 * homes and the time HelpCrunch last refused the key. Owned by the server; lives as long as
 * it.
 */
struct gw_calls_shared {
    struct gw_governor *governor;
    struct gw_cache *cache;          /* configured by the server, at start and on reload */
    struct gw_homes *homes;          /* NULL: every call runs on its caller's worker */
    uint64_t auth_failed_ms;         /* monotonic ms of the last 401/403, 0: never; atomic */
    /* 1 while HelpCrunch's last answer to the key was 401 or 403, else 0; atomic */
    uint32_t key_refused;
    struct gw_redis_cache_marks cache_marks; /* writes the shared cache may have missed */
};

struct gw_calls;

/**
 * Create the call layer of worker @p index (its box in shared->homes) and the transport under
 * it (gw_upstream_new with the same arguments and this layer's gate), and, with a redis group
 * in @p cfg, this worker's Redis connection and the account's shared bucket on it (worker 0's
 * logs its changes of state to @p log). @p cfg, @p metrics, @p shared and @p log must
 * outlive it (@p cfg, or be replaced with gw_calls_reconfigure; a reload may not add or remove
 * the redis group). Returns NULL on failure.
 */
struct gw_calls *gw_calls_new(int index, struct gw_loop *loop, const struct gw_config *cfg,
                              const struct gw_secret *secret, struct gw_metrics *metrics,
                              struct gw_calls_shared *shared, struct gw_log *log);

/**
 * Use @p cfg and the key of @p secret from the next attempt on (gw_upstream_reconfigure).
 * Returns 0, or GW_ERR_NOMEM (then nothing changed).
 */
int gw_calls_reconfigure(struct gw_calls *calls, const struct gw_config *cfg,
                         const struct gw_secret *secret);

/** Free it and its transport. No call may be in flight (cancel them first). Accepts NULL. */
void gw_calls_free(struct gw_calls *calls);

/** gw_calls_submit served the call from the cache. */
#define GW_CALLS_SERVED 1

/**
 * Start @p call (filled as gw_upstream_submit says, and its cache role). Returns 0:
 * call->done runs exactly once, later, never from inside this function. Returns
 * GW_CALLS_SERVED: a read answered from the contact cache, call->out settled with a 200 and
 * the cached customer, call->cache GW_CACHE_HIT, and done never runs. Returns a negative
 * gw_err: done never runs, and call->out is settled with that failure (a local 429 with its
 * Retry-After).
 *
 * The cache: a GW_CACHE_READ call whose max_age_ms is not 0 is looked up first; a read that
 * goes upstream stores a 2xx customer it gets unless a write to the contact ended meanwhile.
 * A contact's home (homes.h): a read the cache did not answer (while the cache is on) and a
 * write or delete of a contact whose home is another worker are handed to that worker, whose
 * call layer runs them as below; done runs here when the answer is back.
 *
 * Single flight (while the cache is on): a read the cache did not answer joins the read of the
 * same contact in flight, when no write to it ended since that read began
 * and the caller did not ask for fresh (max_age_ms 0), and gets its own copy of the shared
 * outcome (call->cache GW_CACHE_COLLAPSED); otherwise it starts one that later reads may join.
 * The shared call belongs to the layer: when its caller is cancelled (hangs up) it goes on for
 * the others, and it is cancelled only when nobody waits on it any more. A
 * write stores the customer it answers (a create under its new id); a write that fails, and a
 * delete, drop the contact's entry. Every store happens before done runs, so that an answer
 * given after a write never shows the state before it.
 *
 * One contact, one line: a GW_CACHE_WRITE or GW_CACHE_DELETE call goes upstream
 * only when every earlier write of its contact has ended. While it waits (for them, or for the
 * quota slot of its first attempt), a later call with the same call->merge (not
 * GW_MERGE_NONE) joins it when coalesce.tags is on and the tags fit in GW_MAX_TAGS: one
 * upstream call with the merged body (coalesce.h); each caller gets its own copy of the
 * outcome and call->coalesced, the callers who shared it. A merged call answered 400 or 422
 * goes again item by item. A call that waits in line ends GW_ERR_UPSTREAM_TIMEOUT at its
 * deadline without being sent; gw_calls_cancel takes it out of the line.
 */
int gw_calls_submit(struct gw_calls *calls, struct gw_call *call);

/**
 * End @p call, in flight, now with @p err; its done callback runs before this returns. A read
 * waiting on a shared call leaves it; the call goes on while others wait on it.
 */
void gw_calls_cancel(struct gw_calls *calls, struct gw_call *call, enum gw_err err);

/** End every call in flight now with @p err (each done callback runs once). */
void gw_calls_cancel_all(struct gw_calls *calls, enum gw_err err);

/**
 * Show this layer's Redis connection and shared quota (when it has them) on @p reg's
 * /metrics. Before threads start.
 */
void gw_calls_register_metrics(const struct gw_calls *calls, struct gw_metrics_registry *reg);

/**
 * This layer's Redis connection (with a redis group; NULL without), for the worker's other
 * users of Redis (idem_redis.h). It lives as long as the layer.
 */
struct gw_redis *gw_calls_redis(const struct gw_calls *calls);

/** Calls in flight (submitted and not yet done; each caller of a shared read counts). */
size_t gw_calls_in_flight(const struct gw_calls *calls);

/**
 * True when HelpCrunch refused the key (401/403) less than upstream.auth_failure_unready_ms
 * ago, on any worker: the gateway is then not ready.
 */
bool gw_calls_key_refused(const struct gw_calls *calls);

#endif

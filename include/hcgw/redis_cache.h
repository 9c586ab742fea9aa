/*
 * The contact cache shared by every replica in front of one HelpCrunch account, kept in Redis
 * (with a redis group and the cache on). Each contact has, under the account's tag:
 *
 *     <redis.key_prefix>{<tag>}:c:<id>      its entry: a hash of ep (the epoch it was stored
 *                                           in), st (when, Redis's clock, us) and b (the
 *                                           customer), expiring after cache.ttl_ms
 *     <redis.key_prefix>{<tag>}:w:<id>      its write mark: when the last write through any
 *                                           replica ended (Redis's clock, us), kept for
 *                                           GW_REDIS_CACHE_MARK_MS
 *     <redis.key_prefix>{<tag>}:cache-epoch the account's epoch: entries of another are stale
 *
 * A write ends by setting the mark and storing its answer (or dropping the entry) in one
 * script, before its callers hear the answer: a read that starts after that, on any replica,
 * finds the write's state or nothing. A read's answer is stored only when no write ended since
 * the read began: the script compares the mark with the read's start, which it computes from
 * Redis's clock and how long ago, by this replica's clock, the read began (plus a margin,
 * GW_REDIS_CACHE_SKEW_MS), so that the replicas' clocks never meet. A write that could not
 * reach Redis leaves the entry as it was: the replica marks the fleet's entries suspect
 * (struct gw_redis_cache_marks), serves nothing from Redis meanwhile, and moves the epoch on
 * as soon as it reaches Redis again, which retires every entry stored before.
 *
 * Redis answering a cache command with an error (an ACL without the cache's commands) makes
 * the cache stand aside for GW_REDIS_CACHE_REFUSED_MS (nothing served or stored, a log line),
 * without taking the connection, and the shared quota on it, down.
 *
 * One per worker, on that worker's Redis connection (redis.h). Every function runs on the
 * loop's thread, except gw_redis_cache_stats.
 */
#ifndef HCGW_REDIS_CACHE_H
#define HCGW_REDIS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_config;
struct gw_log;
struct gw_redis;
struct gw_redis_cache;
struct gw_redis_cache_op;
struct gw_secret;

/**
 * The process's writes that could not reach Redis, shared by its workers' caches: `lost`
 * counts them, `settled` is the count the last epoch move covered. Entries in Redis may be
 * stale while lost > settled. Owned by the server; atomic.
 */
struct gw_redis_cache_marks {
    uint64_t lost;
    uint64_t settled;
};

/** What a lookup found. */
struct gw_redis_cache_found {
    int found;                       /* 1: an entry; 0: none fresh enough; -1: Redis could not say */
    char *body;                      /* found 1: the customer, NUL-terminated, malloc'd: the
                                        callback's to keep or free */
    size_t len;
    uint64_t age_ms;                 /* found 1: since it was stored */
};

/** A lookup's end, once (unless cancelled first), on the loop's thread. */
typedef void gw_redis_cache_lookup_cb(void *data, struct gw_redis_cache_found *found);

/** A store's end: 1 stored, 0 not (refused, or a drop), -1 Redis could not say. */
typedef void gw_redis_cache_store_cb(void *data, int stored);

/** What one worker's shared cache counted (hcgw_cache_shared_*). */
struct gw_redis_cache_stats {
    uint64_t hits;                   /* lookups that found an entry */
    uint64_t misses;                 /* ...that found none fresh enough */
    uint64_t unanswered;             /* ...and stores that Redis could not answer */
    uint64_t stored;                 /* entries stored (reads' and writes' answers) */
    uint64_t refused;                /* reads' answers refused: a write ended meanwhile */
    uint64_t epochs;                 /* epoch moves after writes that could not reach Redis */
    uint64_t refusals;               /* error answers: the cache stood aside for a while */
};

/**
 * The shared cache of the account whose key is @p key, for cache.* and redis.* of @p cfg, on
 * @p redis; @p marks is the process's (shared by its workers); @p log (NULL: none) gets a line
 * when Redis refuses the cache's commands. All must outlive it (@p cfg and @p key, or be
 * replaced with gw_redis_cache_reconfigure). Returns NULL when out of memory.
 */
struct gw_redis_cache *gw_redis_cache_new(struct gw_redis *redis, const struct gw_config *cfg,
                                          const struct gw_secret *key,
                                          struct gw_redis_cache_marks *marks,
                                          struct gw_log *log);

/** Take new settings and key (a reload); operations in flight keep what they were sent with. */
void gw_redis_cache_reconfigure(struct gw_redis_cache *c, const struct gw_config *cfg,
                                const struct gw_secret *key);

/** Free it. Operations in flight are dropped without their callbacks. Accepts NULL. */
void gw_redis_cache_free(struct gw_redis_cache *c);

/**
 * True when entries may be served and stored: the connection is up and no write of this
 * process is unaccounted for. While the connection is up and one is, the first call starts
 * the epoch's move (once at a time), and this turns true when Redis has done it.
 */
bool gw_redis_cache_usable(struct gw_redis_cache *c);

/** As gw_redis_cache_usable, without starting anything: for /metrics. Any thread. */
bool gw_redis_cache_serving(const struct gw_redis_cache *c);

/**
 * The session to give gw_redis_cache_fill for a read that starts now (gw_redis_session).
 */
uint64_t gw_redis_cache_session(const struct gw_redis_cache *c);

/**
 * Look up contact @p id, accepting an entry younger than @p max_age_ms (and than
 * cache.ttl_ms), answered by @p deadline_ms (loop time) at the latest. Returns 0: @p cb runs
 * once, later, and *out is a handle for gw_redis_cache_cancel until then; or a negative gw_err
 * when it could not be sent (@p cb never runs).
 */
int gw_redis_cache_lookup(struct gw_redis_cache *c, uint64_t id, uint64_t max_age_ms,
                          uint64_t deadline_ms, gw_redis_cache_lookup_cb *cb, void *data,
                          struct gw_redis_cache_op **out);

/**
 * A read of @p id that began @p elapsed_ms ago, in connection session @p session, got
 * @p body (a customer, @p len bytes): store it unless a write ended since the read began, the
 * connection went down meanwhile, or the read is older than the write marks last. Nobody
 * waits for it. Returns true when it was sent (Redis may still refuse it).
 */
bool gw_redis_cache_fill(struct gw_redis_cache *c, uint64_t id, uint64_t elapsed_ms,
                         uint64_t session, const char *body, size_t len);

/**
 * A write of @p id that began @p elapsed_ms ago ended: set the contact's write mark, and
 * store @p body (the customer it answered) unless another write ended since it began, else
 * drop the entry (@p body NULL: a failed write or a delete, always a drop). @p cb runs once,
 * later (by @p deadline_ms at the latest), and *out is its handle until then; or a negative
 * gw_err when it could not be sent (@p cb never runs). A write Redis did not hear of
 * (a negative return, or -1 to @p cb) counts as lost in the marks.
 */
int gw_redis_cache_write(struct gw_redis_cache *c, uint64_t id, uint64_t elapsed_ms,
                         const char *body, size_t len, uint64_t deadline_ms,
                         gw_redis_cache_store_cb *cb, void *data,
                         struct gw_redis_cache_op **out);

/**
 * A write of contact @p id could not be told to Redis (it was not asked: not usable): count
 * it as lost in the marks.
 */
void gw_redis_cache_lost(struct gw_redis_cache *c);

/** The caller of @p op no longer wants its callback; a write's mark still goes. NULL: no-op. */
void gw_redis_cache_cancel(struct gw_redis_cache_op *op);

/** Copy its counts into @p out. Any thread. */
void gw_redis_cache_stats(const struct gw_redis_cache *c, struct gw_redis_cache_stats *out);

#endif

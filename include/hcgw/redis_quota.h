/*
 * The quota shared by every replica in front of one HelpCrunch account, kept in Redis: one
 * GCRA bucket (governor.h's algorithm, the same verdicts) and one cooldown per account, both
 * changed atomically by a Lua script in one round trip per upstream attempt. The script reads
 * the time from Redis itself (TIME), so the replicas' clocks do not matter. The account is
 * named in Redis by a hash of the API key, never by the key:
 *
 *     <redis.key_prefix>{<32 hex digits of SHA-256("hcgw quota\n" key)>}:tat       the bucket
 *     <redis.key_prefix>{<same>}:cooldown                                          the pause
 *
 * (the braces keep both keys in one Redis Cluster slot). Each key expires once it no longer
 * matters. The scripts are sent by their SHA-1 (EVALSHA), and whole (EVAL) when Redis answers
 * NOSCRIPT (after a restart or a failover).
 *
 * One per worker, on that worker's Redis connection (redis.h). While the connection is down
 * nothing is asked: the caller decides with its local fallback bucket. Every function runs on
 * the loop's thread, except gw_redis_quota_stats.
 */
#ifndef HCGW_REDIS_QUOTA_H
#define HCGW_REDIS_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#include "hcgw/governor.h"

struct gw_config;
struct gw_redis;
struct gw_redis_quota;
struct gw_redis_quota_ask;
struct gw_secret;

/** What the shared bucket said to one attempt. */
struct gw_redis_quota_answer {
    /* false: Redis could not say (down, slower than the deadline, or an answer that made the
     * connection go down): decide with the local fallback bucket. The fields below are then 0. */
    bool shared;
    /* GW_GOV_GO: send now. GW_GOV_WAIT: a slot is reserved in the shared bucket, wait_ms from
     * the callback on. GW_GOV_REJECT: nothing reserved; retry_after_s (1..GW_MAX_RETRY_AFTER_S)
     * is when a slot would be free. As gw_governor_acquire's. */
    enum gw_gov_verdict verdict;
    uint64_t wait_ms;
    long retry_after_s;
};

/** Called once per admission (unless cancelled first), on the loop's thread. */
typedef void gw_redis_quota_cb(void *data, const struct gw_redis_quota_answer *answer);

/** A snapshot for /metrics. Written only by the loop's thread. */
struct gw_redis_quota_stats {
    uint64_t decided;                /* admissions the shared bucket answered */
    uint64_t go;                     /* ...of which GO */
    uint64_t waits;                  /* ...WAIT */
    uint64_t rejections;             /* ...REJECT */
    uint64_t fallbacks;              /* admissions it could not answer: the caller's local bucket */
    uint64_t cooldowns;              /* 429s put into the shared cooldown */
    uint64_t script_loads;           /* NOSCRIPT answers: a script sent whole */
    uint64_t queued;                 /* calls waiting for a shared slot now */
    uint64_t wait_ms_total;          /* sum of the shared waits that ended */
};

/**
 * The shared quota of the account whose key is @p key, for quota.* and redis.* of @p cfg, on
 * @p redis. @p cfg, @p key and @p redis must outlive it (or be replaced with
 * gw_redis_quota_reconfigure). Returns NULL when out of memory.
 */
struct gw_redis_quota *gw_redis_quota_new(struct gw_redis *redis, const struct gw_config *cfg,
                                          const struct gw_secret *key);

/** Take new settings and key (a reload); admissions in flight keep what they were sent with. */
void gw_redis_quota_reconfigure(struct gw_redis_quota *q, const struct gw_config *cfg,
                                const struct gw_secret *key);

/**
 * Free @p q. Admissions in flight are dropped without their callbacks (cancel them first if
 * their callers must hear it). Accepts NULL.
 */
void gw_redis_quota_free(struct gw_redis_quota *q);

/** True when admissions are asked of Redis: quota.requests_per_minute > 0 and Redis is up. */
bool gw_redis_quota_usable(const struct gw_redis_quota *q);

/**
 * Ask the shared bucket, at loop time @p now_ms, for a slot for an attempt that must end by
 * @p deadline_ms, waiting at most quota.max_wait_ms (a wait that would reach the deadline is
 * refused, as by gw_governor_acquire). Returns 0 and sets *out: @p cb will be called
 * exactly once, later, never from inside this function (with shared false when Redis did not
 * answer in time); *out is the handle for gw_redis_quota_cancel, valid until then. Returns a
 * negative gw_err when nothing was asked (not usable: GW_ERR_UPSTREAM_UNAVAILABLE; or
 * GW_ERR_OVERLOADED, GW_ERR_NOMEM): @p cb is never called, and the caller decides locally.
 */
int gw_redis_quota_admit(struct gw_redis_quota *q, uint64_t now_ms, uint64_t deadline_ms,
                         gw_redis_quota_cb *cb, void *data, struct gw_redis_quota_ask **out);

/**
 * The caller of @p ask, whose callback has not run, no longer wants the answer: the callback
 * never runs. A slot Redis reserved for it stays spent. Accepts NULL.
 */
void gw_redis_quota_cancel(struct gw_redis_quota_ask *ask);

/** An attempt that got GW_GOV_WAIT from the shared bucket stopped waiting after @p waited_ms. */
void gw_redis_quota_done_waiting(struct gw_redis_quota *q, uint64_t waited_ms);

/**
 * HelpCrunch answered 429: every replica's next slot is no sooner than @p retry_after_s from
 * now (0: quota.cooldown_ms), and the bucket resumes at its steady rate, not with a burst. A
 * longer cooldown already set is kept. Returns 0 once sent (nobody waits for the answer), or
 * a negative gw_err when it could not be (Redis down): the caller's local cooldown then is
 * all there is. This replica's own view of the cooldown (gw_redis_quota_cooldown_left_s) is
 * set at once either way.
 */
int gw_redis_quota_on_429(struct gw_redis_quota *q, uint64_t now_ms, long retry_after_s);

/**
 * Seconds until the shared cooldown ends as this replica last heard of it (from its own 429s
 * and the shared bucket's answers), 0 when none: for the Retry-After of a 429.
 */
long gw_redis_quota_cooldown_left_s(const struct gw_redis_quota *q, uint64_t now_ms);

/** Copy its counts into @p out. Any thread (each count is read atomically). */
void gw_redis_quota_stats(const struct gw_redis_quota *q, struct gw_redis_quota_stats *out);

#endif

/*
 * The quota governor: one token bucket for every upstream call of the process, so that hcgw
 * spends HelpCrunch's per-account limit (about 120 requests a minute) instead of earning 429s.
 * It is a GCRA (generic cell rate algorithm) bucket: each call reserves the next free slot, so
 * callers that must wait are served in arrival order (an implicit FIFO queue whose length is
 * bounded by quota.max_wait_ms), and a call whose slot is too far away is refused at once with
 * the Retry-After the bucket implies. An upstream 429 puts the whole process in a cooldown.
 *
 * Shared by all worker threads; every function takes the governor's mutex (held for a few
 * arithmetic operations; calls are at most a few per second when it is on). With
 * quota.requests_per_minute = 0 it is off and gw_governor_acquire takes no lock.
 */
#ifndef HCGW_GOVERNOR_H
#define HCGW_GOVERNOR_H

#include <stdbool.h>
#include <stdint.h>

struct gw_config;
struct gw_governor;

/** What the governor says to one call. */
enum gw_gov_verdict {
    GW_GOV_GO = 0,       /* send now */
    GW_GOV_WAIT = 1,     /* a slot is reserved: send after *wait_ms */
    GW_GOV_REJECT = 2    /* no slot within max_wait and the deadline: answer 429 at once */
};

/** A snapshot for /metrics. */
struct gw_governor_stats {
    bool enabled;
    double tokens;                 /* tokens available now (0..burst) */
    int64_t queued;                /* calls waiting for their slot now */
    uint64_t waits;                /* calls that had to wait */
    uint64_t rejections;           /* calls refused locally with 429 */
    uint64_t upstream_429;         /* 429 answers HelpCrunch gave anyway */
    uint64_t cooldowns;            /* cooldowns entered */
    uint64_t wait_ms_total;        /* sum of waits */
};

/**
 * The bucket's spacing, in microseconds, for a limit of @p requests_per_minute calls in any
 * 60 s, a burst of @p burst (at most the limit) included: one call every 60 s / (limit -
 * burst + 1), rounded up to the microsecond, once the burst is spent, so that a burst and the
 * steady rate after it together never pass the limit in any 60 s window [t, t + 60 s). The one definition of the rate, for the local bucket
 * and the shared one (redis_quota.h). Both arguments > 0.
 */
uint64_t gw_governor_interval_us(int requests_per_minute, int burst);

/** The burst a bucket of @p requests_per_minute allows: @p burst, at most the limit. */
int gw_governor_burst(int requests_per_minute, int burst);

/**
 * Create from cfg->quota: a bucket of quota.requests_per_minute, or, with a redis group (whose
 * shared bucket is the account's, redis_quota.h), of quota.fallback_requests_per_minute, the
 * replica's own while Redis is away. Returns NULL when out of memory.
 */
struct gw_governor *gw_governor_new(const struct gw_config *cfg);

/** Take new settings from cfg->quota (a reload); the bucket's state carries over. */
void gw_governor_configure(struct gw_governor *g, const struct gw_config *cfg);

/** Free it. Accepts NULL. */
void gw_governor_free(struct gw_governor *g);

/** True when quota.requests_per_minute > 0. */
bool gw_governor_enabled(const struct gw_governor *g);

/**
 * Ask for a slot at monotonic time @p now_ms for a call that must end by @p deadline_ms.
 * GW_GOV_GO: go. GW_GOV_WAIT: the slot is reserved; *wait_ms says when (counted as queued
 * until gw_governor_done_waiting). GW_GOV_REJECT: nothing reserved; *retry_after_s is when a
 * slot would be free (at least 1).
 */
enum gw_gov_verdict gw_governor_acquire(struct gw_governor *g, uint64_t now_ms,
                                        uint64_t deadline_ms, uint64_t *wait_ms,
                                        long *retry_after_s);

/** A call that got GW_GOV_WAIT stopped waiting (it was sent, or abandoned). */
void gw_governor_done_waiting(struct gw_governor *g, uint64_t waited_ms);

/**
 * HelpCrunch answered 429: no slot is given before now + @p retry_after_s (or, when 0,
 * quota.cooldown_ms), for every caller of the process.
 */
void gw_governor_on_429(struct gw_governor *g, uint64_t now_ms, long retry_after_s);

/** Seconds until the cooldown ends (0 when none), for the Retry-After of a 429. */
long gw_governor_cooldown_left_s(struct gw_governor *g, uint64_t now_ms);

/** Fill @p out. */
void gw_governor_stats(struct gw_governor *g, uint64_t now_ms, struct gw_governor_stats *out);

#endif

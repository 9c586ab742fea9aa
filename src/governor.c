/*
 * The quota governor, a GCRA token bucket (see governor.h). State is one "theoretical arrival
 * time" (tat): the earliest time the bucket is empty again. A call at `now` may go at
 * max(tat, now) - tau, where tau = (burst - 1) * interval is how far ahead a burst may run;
 * going moves tat one interval further. Reserving a future slot the same way is what queues
 * waiting callers in order, without a list to manage.
 */
#include "hcgw/governor.h"

#include <pthread.h>
#include <stdlib.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"

struct gw_governor {
    pthread_mutex_t mu;
    bool enabled;
    double interval_ms;            /* 60000 / requests_per_minute */
    double tau_ms;                 /* (burst - 1) * interval */
    double burst;
    long max_wait_ms;
    long cooldown_ms;
    double tat;                    /* ms, monotonic */
    uint64_t cooldown_until;       /* ms, monotonic */
    struct gw_governor_stats st;
};

int gw_governor_burst(int requests_per_minute, int burst)
{
    return burst < requests_per_minute ? burst : requests_per_minute;
}

uint64_t gw_governor_interval_us(int requests_per_minute, int burst)
{
    int b = gw_governor_burst(requests_per_minute, burst);

    uint64_t n = (uint64_t)(requests_per_minute - b + 1);

    /* Rounded up: truncated (540540 us for 120 and 10), the burst and limit - burst + 1 steady
     * calls would fit in one 60 s window, one too many. */
    return (60000000u + n - 1) / n;
}

static void set_from(struct gw_governor *g, const struct gw_config *cfg)
{
    /* With a redis group the account's bucket is in Redis, and this one is the replica's own
     * while Redis is away: its share of the account. */
    int rate = cfg->redis.url != NULL ? cfg->quota.fallback_requests_per_minute
                                      : cfg->quota.requests_per_minute;
    bool on = cfg->quota.requests_per_minute > 0 && rate > 0;

    /* The rates first, the switch last: a reader that sees "on" sees a usable interval. */
    if (on) {
        g->interval_ms = (double)gw_governor_interval_us(rate, cfg->quota.burst) / 1000.0;
        g->burst = (double)gw_governor_burst(rate, cfg->quota.burst);
        g->tau_ms = (g->burst - 1.0) * g->interval_ms;
    }
    g->max_wait_ms = cfg->quota.max_wait_ms;
    g->cooldown_ms = cfg->quota.cooldown_ms;
    g->st.enabled = on;
    __atomic_store_n(&g->enabled, on, __ATOMIC_RELEASE);
}

struct gw_governor *gw_governor_new(const struct gw_config *cfg)
{
    struct gw_governor *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    pthread_mutex_init(&g->mu, NULL);
    set_from(g, cfg);
    return g;
}

void gw_governor_configure(struct gw_governor *g, const struct gw_config *cfg)
{
    pthread_mutex_lock(&g->mu);
    set_from(g, cfg);
    pthread_mutex_unlock(&g->mu);
}

void gw_governor_free(struct gw_governor *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

bool gw_governor_enabled(const struct gw_governor *g)
{
    /* Read without the lock: a reload may flip it, and either value is a valid answer. */
    return g != NULL && __atomic_load_n(&g->enabled, __ATOMIC_RELAXED);
}

static long ceil_s(double ms)
{
    long s = (long)((ms + 999.0) / 1000.0);

    if (s < 1)
        s = 1;
    return s > GW_MAX_RETRY_AFTER_S ? GW_MAX_RETRY_AFTER_S : s;
}

enum gw_gov_verdict gw_governor_acquire(struct gw_governor *g, uint64_t now_ms,
                                        uint64_t deadline_ms, uint64_t *wait_ms,
                                        long *retry_after_s)
{
    enum gw_gov_verdict v;
    double now = (double)now_ms;
    double tat;
    double at;
    double wait;

    *wait_ms = 0;
    *retry_after_s = 0;
    if (!gw_governor_enabled(g))
        return GW_GOV_GO;
    pthread_mutex_lock(&g->mu);
    if (!g->enabled) { /* switched off by a reload since the check above */
        v = GW_GOV_GO;
        goto out;
    }
    tat = g->tat > now ? g->tat : now;
    at = tat - g->tau_ms;
    if (at < (double)g->cooldown_until)
        at = (double)g->cooldown_until;
    wait = at > now ? at - now : 0.0;
    if (wait > (double)g->max_wait_ms || now + wait >= (double)deadline_ms) {
        *retry_after_s = ceil_s(wait);
        g->st.rejections++;
        v = GW_GOV_REJECT;
        goto out;
    }
    /* The slot is taken: the next one is an interval after this one's bucket time. */
    g->tat = (at + g->tau_ms > tat ? at + g->tau_ms : tat) + g->interval_ms;
    if (wait > 0.0) {
        *wait_ms = (uint64_t)(wait + 0.999);
        g->st.waits++;
        g->st.queued++;
        v = GW_GOV_WAIT;
    } else {
        v = GW_GOV_GO;
    }
out:
    pthread_mutex_unlock(&g->mu);
    return v;
}

void gw_governor_done_waiting(struct gw_governor *g, uint64_t waited_ms)
{
    if (!gw_governor_enabled(g))
        return;
    pthread_mutex_lock(&g->mu);
    g->st.queued--;
    g->st.wait_ms_total += waited_ms;
    pthread_mutex_unlock(&g->mu);
}

void gw_governor_on_429(struct gw_governor *g, uint64_t now_ms, long retry_after_s)
{
    uint64_t until;

    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->st.upstream_429++;
    if (g->enabled) {
        until = now_ms + (retry_after_s > 0 ? (uint64_t)retry_after_s * 1000u
                                            : (uint64_t)g->cooldown_ms);
        if (until > g->cooldown_until) {
            g->cooldown_until = until;
            g->st.cooldowns++;
            /* After the cooldown, resume at the steady rate, not with a full burst. */
            if (g->tat < (double)until + g->tau_ms)
                g->tat = (double)until + g->tau_ms;
        }
    }
    pthread_mutex_unlock(&g->mu);
}

long gw_governor_cooldown_left_s(struct gw_governor *g, uint64_t now_ms)
{
    long s = 0;

    if (!gw_governor_enabled(g))
        return 0;
    pthread_mutex_lock(&g->mu);
    if (g->cooldown_until > now_ms)
        s = ceil_s((double)(g->cooldown_until - now_ms));
    pthread_mutex_unlock(&g->mu);
    return s;
}

void gw_governor_stats(struct gw_governor *g, uint64_t now_ms, struct gw_governor_stats *out)
{
    double now = (double)now_ms;
    double tokens;

    pthread_mutex_lock(&g->mu);
    *out = g->st;
    if (g->enabled) {
        /* The bucket is full (burst tokens) when tat <= now; each interval of tat beyond now
         * is one token spent. */
        tokens = g->burst - (g->tat > now ? (g->tat - now) / g->interval_ms : 0.0);
        if (now < (double)g->cooldown_until)
            tokens = 0.0;
        out->tokens = tokens < 0.0 ? 0.0 : tokens;
    }
    pthread_mutex_unlock(&g->mu);
}

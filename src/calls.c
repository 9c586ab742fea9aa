/*
 * The call layer (calls.h). It passes each call to the transport, and is the transport's gate:
 * the quota governor admits each attempt, and each answer feeds the governor's cooldown (a
 * 429) and the key's health (a 401 or 403), for all workers at once.
 */
#include "hcgw/calls.h"

#include <stdlib.h>

#include "hcgw/config.h"
#include "hcgw/governor.h"
#include "hcgw/loop.h"

struct gw_calls {
    struct gw_loop *loop;
    const struct gw_config *cfg;
    struct gw_calls_shared *shared;
    struct gw_upstream *up;
};

/* ---- the gate ---- */

static enum gw_gate_verdict gate_admit(void *ctx, uint64_t now_ms, uint64_t deadline_ms,
                                       uint64_t *wait_ms, long *retry_after_s)
{
    struct gw_calls *calls = ctx;

    switch (gw_governor_acquire(calls->shared->governor, now_ms, deadline_ms, wait_ms,
                                retry_after_s)) {
    case GW_GOV_GO:
        return GW_GATE_GO;
    case GW_GOV_WAIT:
        return GW_GATE_WAIT;
    case GW_GOV_REJECT:
    default:
        return GW_GATE_REFUSE;
    }
}

static void gate_done_waiting(void *ctx, uint64_t waited_ms)
{
    struct gw_calls *calls = ctx;

    gw_governor_done_waiting(calls->shared->governor, waited_ms);
}

static void gate_answered(void *ctx, uint64_t now_ms, long status, long retry_after_s)
{
    struct gw_calls *calls = ctx;

    if (status == 429)
        gw_governor_on_429(calls->shared->governor, now_ms, retry_after_s);
    if (status == 401 || status == 403)
        __atomic_store_n(&calls->shared->auth_failed_ms, now_ms, __ATOMIC_RELAXED);
}

/* A 429 without HelpCrunch's word: the process-wide cooldown still to run, if any. */
static long gate_retry_after_s(void *ctx, uint64_t now_ms)
{
    struct gw_calls *calls = ctx;

    return gw_governor_cooldown_left_s(calls->shared->governor, now_ms);
}

/* ---- the interface ---- */

struct gw_calls *gw_calls_new(struct gw_loop *loop, const struct gw_config *cfg,
                              const struct gw_secret *secret, struct gw_metrics *metrics,
                              struct gw_calls_shared *shared, struct gw_log *log)
{
    struct gw_calls *calls = calloc(1, sizeof(*calls));
    struct gw_upstream_gate gate = {
        .admit = gate_admit,
        .done_waiting = gate_done_waiting,
        .answered = gate_answered,
        .retry_after_s = gate_retry_after_s,
    };

    if (calls == NULL)
        return NULL;
    calls->loop = loop;
    calls->cfg = cfg;
    calls->shared = shared;
    gate.ctx = calls;
    calls->up = gw_upstream_new(loop, cfg, secret, metrics, &gate, log);
    if (calls->up == NULL) {
        free(calls);
        return NULL;
    }
    return calls;
}

int gw_calls_reconfigure(struct gw_calls *calls, const struct gw_config *cfg,
                         const struct gw_secret *secret)
{
    int rc = gw_upstream_reconfigure(calls->up, cfg, secret);

    if (rc == 0)
        calls->cfg = cfg;
    return rc;
}

void gw_calls_free(struct gw_calls *calls)
{
    if (calls == NULL)
        return;
    gw_upstream_free(calls->up);
    free(calls);
}

int gw_calls_submit(struct gw_calls *calls, struct gw_call *call)
{
    return gw_upstream_submit(calls->up, call);
}

void gw_calls_cancel(struct gw_calls *calls, struct gw_call *call, enum gw_err err)
{
    gw_upstream_cancel(calls->up, call, err);
}

void gw_calls_cancel_all(struct gw_calls *calls, enum gw_err err)
{
    gw_upstream_cancel_all(calls->up, err);
}

size_t gw_calls_in_flight(const struct gw_calls *calls)
{
    return gw_upstream_in_flight(calls->up);
}

bool gw_calls_key_refused(const struct gw_calls *calls)
{
    uint64_t at = __atomic_load_n(&calls->shared->auth_failed_ms, __ATOMIC_RELAXED);
    uint64_t now = gw_loop_now(calls->loop);

    return at != 0 && now - at < (uint64_t)calls->cfg->upstream.auth_failure_unready_ms;
}

/*
 * The call layer (calls.h). It answers reads of a contact from the contact cache when it can,
 * keeps the cache in step with every call that reads or changes a contact, passes the rest to
 * the transport, and is the transport's gate: the quota governor admits each attempt, and each
 * answer feeds the governor's cooldown (a 429) and the key's health (a 401 or 403), for all
 * workers at once.
 */
#include "hcgw/calls.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/cache.h"
#include "hcgw/config.h"
#include "hcgw/governor.h"
#include "hcgw/json.h"
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

/* ---- the cache ---- */

/* A 2xx answer whose body passed the check of a customer answer (reply.c): a JSON object. */
static bool customer_answer(const struct gw_outcome *o)
{
    enum gw_json_type type = GW_JSON_NULL;

    return o->failure == GW_OK && o->status >= 200 && o->status <= 299 && o->body != NULL &&
           gw_json_check(o->body, o->body_len, &type) == 0 && type == GW_JSON_OBJECT;
}

/* The "id" of a created customer, or 0 when it has none that is a contact id. */
static uint64_t created_id(const struct gw_outcome *o)
{
    json_object *root = NULL;
    json_object *v;
    int64_t id = 0;

    if (gw_body_parse(o->body, o->body_len, &root) == 0 && root != NULL &&
        json_object_object_get_ex(root, "id", &v) && json_object_is_type(v, json_type_int))
        id = json_object_get_int64(v);
    json_object_put(root);
    return id > 0 ? (uint64_t)id : 0;
}

/* The call ended: bring the cache in step with it, then tell the caller. */
static void call_done(struct gw_call *call)
{
    struct gw_calls *calls = call->calls;
    struct gw_cache *cache = calls->shared->cache;
    uint64_t now = gw_loop_now(calls->loop);
    const struct gw_outcome *o = &call->out;
    bool ok = customer_answer(o);
    uint64_t id;

    switch (call->cache_role) {
    case GW_CACHE_READ:
        if (ok && call->cache != GW_CACHE_UNUSED)
            call->cache_stored = gw_cache_fill(cache, call->contact_id, call->cache_gen,
                                               o->body, o->body_len, now);
        break;
    case GW_CACHE_WRITE:
        call->cache_stored = gw_cache_write(cache, call->contact_id, call->cache_gen,
                                            ok ? o->body : NULL, o->body_len, now);
        break;
    case GW_CACHE_DELETE:
        gw_cache_write(cache, call->contact_id, call->cache_gen, NULL, 0, now);
        break;
    case GW_CACHE_CREATE:
        id = ok ? created_id(o) : 0;
        if (id != 0)
            call->cache_stored = gw_cache_write(cache, id, gw_cache_generation(cache, id),
                                                o->body, o->body_len, now);
        break;
    case GW_CACHE_NONE:
    default:
        break;
    }
    call->done = call->caller_done;
    call->done(call);
}

/* A fresh enough entry for a read, settled as its outcome. */
static bool serve_cached(struct gw_calls *calls, struct gw_call *call)
{
    struct gw_cache_hit hit;

    if (call->max_age_ms == 0 ||
        !gw_cache_get(calls->shared->cache, call->contact_id, gw_loop_now(calls->loop),
                      call->max_age_ms, &hit))
        return false;
    memset(&call->out, 0, sizeof(call->out));
    call->out.status = 200;
    call->out.body = hit.body;
    call->out.body_len = hit.len;
    call->cache = GW_CACHE_HIT;
    call->cache_age_ms = hit.age_ms;
    call->cache_ttl_left_ms = hit.ttl_left_ms;
    return true;
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
    bool cache_on = calls->cfg->cache.ttl_ms > 0;
    int rc;

    call->cache = GW_CACHE_UNUSED;
    call->cache_stored = false;
    if (call->cache_role == GW_CACHE_READ && cache_on) {
        if (serve_cached(calls, call))
            return GW_CALLS_SERVED;
        call->cache = call->max_age_ms == 0 ? GW_CACHE_BYPASS : GW_CACHE_MISS;
    }
    if (call->cache_role != GW_CACHE_NONE && call->cache_role != GW_CACHE_CREATE)
        call->cache_gen = gw_cache_generation(calls->shared->cache, call->contact_id);
    call->calls = calls;
    call->caller_done = call->done;
    call->done = call_done;
    rc = gw_upstream_submit(calls->up, call);
    if (rc != 0) {
        call->done = call->caller_done;
        /* Refused before it went: nothing changed upstream, nothing to drop. */
    }
    return rc;
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

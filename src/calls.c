/*
 * The call layer (calls.h). It answers reads of a contact from the contact cache when it can,
 * keeps the cache in step with every call that reads or changes a contact, passes the rest to
 * the transport, and is the transport's gate: the quota governor admits each attempt, and each
 * answer feeds the governor's cooldown (a 429) and the key's health (a 401 or 403), for all
 * workers at once.
 */
#include "hcgw/calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/cache.h"
#include "hcgw/config.h"
#include "hcgw/governor.h"
#include "hcgw/json.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"

/*
 * One upstream read of a contact that callers on this worker share (single flight). It owns its
 * call, so that it goes on when the caller who started it hangs up while others still wait.
 */
struct gw_flight {
    struct gw_call call;
    uint64_t contact_id;
    uint64_t gen;                    /* the contact's write generation when it began */
    bool listed;                     /* in the table: later readers may join it */
    struct gw_call *waiters;         /* the first is the caller who started it */
    struct gw_flight *next;          /* bucket chain */
    char *url;
    char request_id[GW_MAX_REQUEST_ID + 1];
};

struct gw_calls {
    struct gw_loop *loop;
    const struct gw_config *cfg;
    struct gw_calls_shared *shared;
    struct gw_upstream *up;
    struct gw_flight *flights[GW_FLIGHT_BUCKETS];
    size_t nflights;                 /* flights in flight, listed or not */
    size_t nwaiting;                 /* callers waiting on them */
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

/* ---- single flight ---- */

static struct gw_flight **bucket(struct gw_calls *calls, uint64_t id)
{
    return &calls->flights[(id ^ (id >> 17)) % GW_FLIGHT_BUCKETS];
}

static void unlist(struct gw_calls *calls, struct gw_flight *f)
{
    struct gw_flight **p = bucket(calls, f->contact_id);

    if (!f->listed)
        return;
    while (*p != f)
        p = &(*p)->next;
    *p = f->next;
    f->next = NULL;
    f->listed = false;
}

static void add_waiter(struct gw_calls *calls, struct gw_flight *f, struct gw_call *call)
{
    struct gw_call **p = &f->waiters;

    /* At the end: the first waiter stays the caller who started the flight. */
    while (*p != NULL)
        p = &(*p)->wnext;
    call->wnext = NULL;
    *p = call;
    call->flight = f;
    calls->nwaiting++;
}

static void remove_waiter(struct gw_calls *calls, struct gw_call *call)
{
    struct gw_call **p = &call->flight->waiters;

    while (*p != call)
        p = &(*p)->wnext;
    *p = call->wnext;
    call->wnext = NULL;
    call->flight = NULL;
    calls->nwaiting--;
}

/* A listed flight for @p id that a new reader may join: no write ended since it began. */
static struct gw_flight *joinable(struct gw_calls *calls, uint64_t id)
{
    struct gw_flight *f;

    for (f = *bucket(calls, id); f != NULL; f = f->next) {
        if (f->contact_id == id)
            return f->gen == gw_cache_generation(calls->shared->cache, id) ? f : NULL;
    }
    return NULL;
}

/* Give @p w its own copy of the flight's outcome. */
static void settle_waiter(const struct gw_call *fc, struct gw_call *w, bool first)
{
    const struct gw_outcome *o = &fc->out;

    w->out.failure = o->failure;
    w->out.status = o->status;
    w->out.retry_after_s = o->retry_after_s;
    w->out.body = NULL;
    w->out.body_len = 0;
    if (o->body != NULL) {
        w->out.body = malloc(o->body_len + 1);
        if (w->out.body == NULL) {
            w->out.failure = GW_ERR_NOMEM;
        } else {
            memcpy(w->out.body, o->body, o->body_len + 1);
            w->out.body_len = o->body_len;
        }
    }
    w->cache_stored = fc->cache_stored;
    /* The attempts are the first caller's; the others made none of their own. */
    if (first) {
        w->attempts = fc->attempts;
        w->curl_code = fc->curl_code;
        w->upstream_ms = fc->upstream_ms;
    }
}

static void free_flight(struct gw_flight *f)
{
    gw_call_release(&f->call);
    free(f->url);
    free(f);
}

/* The flight's call ended: the cache first, then every waiter, each once, with the outcome. */
static void flight_done(struct gw_call *fc)
{
    struct gw_flight *f = fc->data;
    struct gw_calls *calls = fc->calls;
    struct gw_call *w;
    bool first = true;

    unlist(calls, f);
    if (customer_answer(&fc->out))
        fc->cache_stored = gw_cache_fill(calls->shared->cache, f->contact_id, f->gen,
                                         fc->out.body, fc->out.body_len,
                                         gw_loop_now(calls->loop));
    calls->nflights--;
    for (w = f->waiters; w != NULL; w = f->waiters) {
        remove_waiter(calls, w);
        settle_waiter(fc, w, first && w->cache != GW_CACHE_COLLAPSED);
        first = false;
        w->done = w->caller_done;
        w->done(w);
    }
    free_flight(f);
}

/* A read that the cache did not answer: join a flight for its contact, or start one. */
static int fly(struct gw_calls *calls, struct gw_call *call)
{
    struct gw_flight *f = NULL;
    struct gw_flight *old;
    struct gw_flight **b;
    int rc;

    if (call->cache != GW_CACHE_BYPASS) {
        f = joinable(calls, call->contact_id);
        if (f != NULL) {
            call->cache = GW_CACHE_COLLAPSED;
            call->caller_done = call->done;
            add_waiter(calls, f, call);
            return 0;
        }
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return GW_ERR_NOMEM;
    f->url = strdup(call->url);
    if (f->url == NULL) {
        free(f);
        return GW_ERR_NOMEM;
    }
    snprintf(f->request_id, sizeof(f->request_id), "%s", call->request_id);
    f->contact_id = call->contact_id;
    f->gen = gw_cache_generation(calls->shared->cache, call->contact_id);
    f->call.method = call->method;
    f->call.url = f->url;
    f->call.retryable = call->retryable;
    f->call.request_id = f->request_id;
    f->call.deadline_ms = call->deadline_ms;
    f->call.done = flight_done;
    f->call.data = f;
    f->call.calls = calls;
    rc = gw_upstream_submit(calls->up, &f->call);
    if (rc != 0) {
        /* Refused before it went (a local 429): the caller gets that outcome now. */
        call->out = f->call.out;
        memset(&f->call.out, 0, sizeof(f->call.out));
        free_flight(f);
        return rc;
    }
    calls->nflights++;
    call->caller_done = call->done;
    add_waiter(calls, f, call);
    /* A forced read replaces an older flight in the table: later readers join the fresher. */
    b = bucket(calls, f->contact_id);
    for (old = *b; old != NULL; old = old->next) {
        if (old->contact_id == f->contact_id)
            break;
    }
    if (old != NULL)
        unlist(calls, old);
    f->next = *b;
    *b = f;
    f->listed = true;
    return 0;
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
    call->flight = NULL;
    if (call->cache_role == GW_CACHE_READ && cache_on) {
        if (serve_cached(calls, call))
            return GW_CALLS_SERVED;
        call->cache = call->max_age_ms == 0 ? GW_CACHE_BYPASS : GW_CACHE_MISS;
        return fly(calls, call);
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
    struct gw_flight *f = call->flight;

    if (f == NULL) {
        gw_upstream_cancel(calls->up, call, err);
        return;
    }
    /* One waiter leaves; the flight goes on for the others, and ends when none is left. */
    remove_waiter(calls, call);
    memset(&call->out, 0, sizeof(call->out));
    call->out.failure = err;
    call->done = call->caller_done;
    call->done(call);
    if (f->waiters == NULL)
        gw_upstream_cancel(calls->up, &f->call, err);
}

void gw_calls_cancel_all(struct gw_calls *calls, enum gw_err err)
{
    gw_upstream_cancel_all(calls->up, err);
}

size_t gw_calls_in_flight(const struct gw_calls *calls)
{
    /* Each flight is one upstream call and stands for the callers waiting on it. */
    return gw_upstream_in_flight(calls->up) - calls->nflights + calls->nwaiting;
}

bool gw_calls_key_refused(const struct gw_calls *calls)
{
    uint64_t at = __atomic_load_n(&calls->shared->auth_failed_ms, __ATOMIC_RELAXED);
    uint64_t now = gw_loop_now(calls->loop);

    return at != 0 && now - at < (uint64_t)calls->cfg->upstream.auth_failure_unready_ms;
}

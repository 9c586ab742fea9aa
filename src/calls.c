/*
 * The call layer (calls.h). It answers reads of a contact from the contact cache when it can,
 * keeps the cache in step with every call that reads or changes a contact, passes the rest to
 * the transport, and is the transport's gate: the quota admits each attempt, and each answer
 * feeds the quota's cooldown (a 429) and the key's health (a 401 or 403), for all workers at
 * once. The quota is the process's governor, or, with a redis group, the account's bucket in
 * Redis shared by every replica (redis_quota.h), asked without blocking (GW_GATE_ASK), with
 * the governor at the replica's fallback rate whenever Redis cannot answer.
 */
#include "hcgw/calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/cache.h"
#include "hcgw/coalesce.h"
#include "hcgw/config.h"
#include "hcgw/governor.h"
#include "hcgw/homes.h"
#include "hcgw/json.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/loop.h"
#include "hcgw/metrics.h"
#include "hcgw/redis.h"
#include "hcgw/redis_cache.h"
#include "hcgw/redis_quota.h"
#include "hcgw/trace.h"

/*
 * One upstream read of a contact that its callers share (single flight, on the contact's home
 * worker: callers on other workers wait through homes.c). It owns its
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
    struct gw_trace trace;           /* the trace of the caller who started it */
};

/*
 * Writes of one contact, in one line (ordering): a batch is one upstream call made for one or
 * more callers (coalescing). Only the head of a lane is ever sent; the others wait for it.
 */
struct gw_batch {
    struct gw_call call;             /* the upstream call, once sent */
    struct gw_lane *lane;
    enum gw_call_merge merge;
    bool sent;
    bool alone;                      /* split after a 400/422: nobody joins it */
    bool storing;                    /* answered, out of its lane: Redis hears of it first */
    struct gw_redis_cache_op *op;    /* ...that store in flight */
    int ntags;                       /* tags its members carry */
    size_t nmembers;
    struct gw_call *members;         /* in arrival order (wnext) */
    struct gw_batch *next;           /* the next in its lane */
    struct gw_timer deadline;        /* while queued: the earliest deadline of its members */
    char *body;                      /* the merged body of several members */
    char *url;                       /* its own copy: the first member may leave */
    char request_id[GW_MAX_REQUEST_ID + 1];
    struct gw_trace trace;           /* the first member's, when the call is sent */
};

struct gw_lane {
    uint64_t contact_id;
    struct gw_batch *head, *tail;
    struct gw_lane *next;            /* bucket chain */
};

struct gw_calls {
    int index;                       /* the worker's, in shared->homes */
    struct gw_loop *loop;
    const struct gw_config *cfg;
    struct gw_calls_shared *shared;
    struct gw_metrics *metrics;
    struct gw_log *log;
    struct gw_upstream *up;
    struct gw_redis *redis;          /* with a redis group: this worker's connection */
    struct gw_redis_quota *rquota;   /* ...and the account's shared bucket on it */
    struct gw_redis_cache *rcache;   /* ...and the account's shared contact cache */
    struct gw_call *looking;         /* reads waiting for the shared cache's lookup */
    size_t nlooking;
    struct gw_batch *storing;        /* answered writes waiting for Redis to hear of them */
    struct gw_flight *flights[GW_FLIGHT_BUCKETS];
    size_t nflights;                 /* flights in flight, listed or not */
    size_t nwaiting;                 /* callers waiting on them */
    struct gw_lane *lanes[GW_LANE_BUCKETS];
    size_t nsent;                    /* batches sent and not yet done */
    size_t nmembers;                 /* callers in batches, sent or queued */
    bool stopping;                   /* cancel_all: no queued batch is sent any more */
};

/* ---- the gate ---- */

static enum gw_gate_verdict gate_of(enum gw_gov_verdict v)
{
    switch (v) {
    case GW_GOV_GO:
        return GW_GATE_GO;
    case GW_GOV_WAIT:
        return GW_GATE_WAIT;
    case GW_GOV_REJECT:
    default:
        return GW_GATE_REFUSE;
    }
}

/* The shared bucket answered @p call's attempt, or could not (then the local bucket decides). */
static void quota_answered(void *data, const struct gw_redis_quota_answer *a)
{
    struct gw_call *call = data;
    struct gw_calls *calls = call->calls;
    enum gw_gov_verdict v = a->verdict;
    uint64_t wait = a->wait_ms;
    long retry_after = a->retry_after_s;

    call->quota_ask = NULL;
    call->shared_wait = a->shared && v == GW_GOV_WAIT;
    if (!a->shared)
        v = gw_governor_acquire(calls->shared->governor, gw_loop_now(calls->loop),
                                call->deadline_ms, &wait, &retry_after);
    gw_upstream_admit(calls->up, call, gate_of(v), wait, retry_after);
}

static enum gw_gate_verdict gate_admit(void *ctx, struct gw_call *call, uint64_t now_ms,
                                       uint64_t deadline_ms, uint64_t *wait_ms,
                                       long *retry_after_s)
{
    struct gw_calls *calls = ctx;

    call->shared_wait = false;
    if (calls->rquota != NULL && gw_redis_quota_usable(calls->rquota) &&
        gw_redis_quota_admit(calls->rquota, now_ms, deadline_ms, quota_answered, call,
                             &call->quota_ask) == 0)
        return GW_GATE_ASK;
    return gate_of(gw_governor_acquire(calls->shared->governor, now_ms, deadline_ms, wait_ms,
                                       retry_after_s));
}

static void gate_forget(void *ctx, struct gw_call *call)
{
    (void)ctx;
    gw_redis_quota_cancel(call->quota_ask);
    call->quota_ask = NULL;
}

static void gate_done_waiting(void *ctx, struct gw_call *call, uint64_t waited_ms)
{
    struct gw_calls *calls = ctx;

    if (call->shared_wait)
        gw_redis_quota_done_waiting(calls->rquota, waited_ms);
    else
        gw_governor_done_waiting(calls->shared->governor, waited_ms);
    call->shared_wait = false;
}

/*
 * HelpCrunch answered with @p status: it refused the key (401, 403) or took it. A change is
 * one log line for the process (whichever worker heard it first) and the gauge
 * hcgw_upstream_key_refused; readiness stays local (upstream.auth_failure_unready_ms).
 */
static void key_heard(struct gw_calls *calls, bool refused, long status)
{
    uint32_t was = __atomic_exchange_n(&calls->shared->key_refused, refused ? 1u : 0u,
                                       __ATOMIC_ACQ_REL);
    struct gw_logline l;

    if (was == (refused ? 1u : 0u) ||
        !gw_log_enabled(calls->log, refused ? GW_LOG_ERROR : GW_LOG_INFO))
        return;
    if (refused) {
        gw_log_begin(calls->log, &l, GW_LOG_ERROR,
                     "HelpCrunch refused the API key: check or rotate upstream.api_key");
        gw_log_int(&l, "upstream_status", status);
        gw_log_end(&l);
    } else {
        gw_log_begin(calls->log, &l, GW_LOG_INFO, "HelpCrunch accepts the API key again");
        gw_log_int(&l, "upstream_status", status);
        gw_log_end(&l);
    }
}

static void gate_answered(void *ctx, uint64_t now_ms, long status, long retry_after_s)
{
    struct gw_calls *calls = ctx;

    if (status == 429) {
        /* Every replica pauses (when Redis hears it), and this one in any case. */
        gw_governor_on_429(calls->shared->governor, now_ms, retry_after_s);
        if (calls->rquota != NULL)
            (void)gw_redis_quota_on_429(calls->rquota, now_ms, retry_after_s);
    }
    if (status == 401 || status == 403)
        __atomic_store_n(&calls->shared->auth_failed_ms, now_ms, __ATOMIC_RELAXED);
    key_heard(calls, status == 401 || status == 403, status);
}

/* A 429 without HelpCrunch's word: the cooldown still to run, if any, the longer one. */
static long gate_retry_after_s(void *ctx, uint64_t now_ms)
{
    struct gw_calls *calls = ctx;
    long local = gw_governor_cooldown_left_s(calls->shared->governor, now_ms);
    long shared = calls->rquota != NULL ? gw_redis_quota_cooldown_left_s(calls->rquota, now_ms)
                                        : 0;

    return shared > local ? shared : local;
}

/* A cooldown holds attempts back: this process's, or the fleet's as this replica knows it. */
static bool gate_paused(void *ctx, uint64_t now_ms)
{
    return gate_retry_after_s(ctx, now_ms) > 0;
}

/* ---- the cache ---- */

/* The contact cache is the account's, in Redis (redis_cache.h), not this process's alone. */
static bool cache_shared(const struct gw_calls *calls)
{
    return calls->rcache != NULL && calls->cfg->cache.ttl_ms > 0;
}

/*
 * Stamp @p call as sent now, for the shared cache's comparisons with Redis's clock: the clock
 * itself (gw_clock_ms), not the loop's now, which is read once an iteration.
 */
static void stamp(struct gw_calls *calls, struct gw_call *call)
{
    call->began_ms = gw_clock_ms();
    call->session = calls->rcache != NULL ? gw_redis_cache_session(calls->rcache) : 0;
}

/* A read's or a create's answer for @p id, offered to the shared cache. Returns true if sent. */
static bool share_fill(struct gw_calls *calls, const struct gw_call *call, uint64_t id)
{
    const struct gw_outcome *o = &call->out;

    return gw_redis_cache_fill(calls->rcache, id, gw_clock_ms() - call->began_ms, call->session,
                               o->body, o->body_len);
}

/*
 * A 2xx answer whose body passed the check of a customer answer (reply.c): a JSON object.
 * Worked out once per call (the cache, Redis and the caller's answer all ask).
 */
static bool customer_answer(struct gw_call *call)
{
    const struct gw_outcome *o = &call->out;
    enum gw_json_type type = GW_JSON_NULL;

    if (!call->customer_known) {
        call->customer_ok = o->failure == GW_OK && o->status >= 200 && o->status <= 299 &&
                            o->body != NULL &&
                            gw_json_check(o->body, o->body_len, &type) == 0 &&
                            type == GW_JSON_OBJECT;
        call->customer_known = true;
    }
    return call->customer_ok;
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

/* A call ended: bring the cache in step with it. */
static void keep_cache(struct gw_calls *calls, struct gw_call *call)
{
    struct gw_cache *cache = calls->shared->cache;
    uint64_t now = gw_loop_now(calls->loop);
    const struct gw_outcome *o = &call->out;
    bool ok = call->cache_role != GW_CACHE_NONE && call->cache_role != GW_CACHE_DELETE &&
              customer_answer(call);
    uint64_t id;

    if (cache_shared(calls)) {
        /* The entries live in Redis (the writes' ends go there from batch_done): here only
         * the local generations move, for single flight. */
        if (call->cache_role == GW_CACHE_WRITE || call->cache_role == GW_CACHE_DELETE)
            gw_cache_write(cache, call->contact_id, call->cache_gen, NULL, 0, now);
        if (call->cache_role == GW_CACHE_CREATE && ok && (id = created_id(o)) != 0)
            call->cache_stored = share_fill(calls, call, id);
        return;
    }
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
}

/* The call ended: bring the cache in step with it, then tell the caller. */
static void call_done(struct gw_call *call)
{
    keep_cache(call->calls, call);
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
    memcpy(call->cache_etag, hit.etag, GW_ETAG_BYTES);
    /* Only customers are stored, each judged one when it was (customer_answer). */
    call->customer_known = true;
    call->customer_ok = true;
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
        w->http_version = fc->http_version;
        w->upstream_ms = fc->upstream_ms;
    }
}

static void free_flight(struct gw_flight *f)
{
    gw_call_release(&f->call);
    free(f->url);
    gw_trace_clear(&f->trace);
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
    if (customer_answer(fc) && cache_shared(calls))
        fc->cache_stored = f->gen == gw_cache_generation(calls->shared->cache, f->contact_id) &&
                           share_fill(calls, fc, f->contact_id);
    else if (customer_answer(fc))
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
    if (call->trace != NULL) {
        gw_trace_copy(&f->trace, call->trace);
        f->call.trace = &f->trace;
    }
    f->call.deadline_ms = call->deadline_ms;
    f->call.done = flight_done;
    f->call.data = f;
    f->call.calls = calls;
    stamp(calls, &f->call);
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

/* ---- one contact, one line: ordering and coalescing of writes ---- */

/*
 * Writes of one contact go to HelpCrunch one at a time, in the order they reached its home
 * worker (homes.h): each takes its place at the tail of the contact's lane, and only the lane's
 * head is sent. A tag write that finds the tail of its lane still waiting, of the same kind (additions
 * with additions, removals with removals) and with room for its tags, joins it instead: the
 * waiting batch goes as one call for all of them. Only the tail is ever joined, so nothing
 * moves past a write that arrived before it, and a write with nothing ahead of it is sent at
 * once (merging never adds a wait).
 */

static struct gw_lane **lane_bucket(struct gw_calls *calls, uint64_t id)
{
    return &calls->lanes[(id ^ (id >> 17)) % GW_LANE_BUCKETS];
}

static struct gw_lane *lane_find(struct gw_calls *calls, uint64_t id)
{
    struct gw_lane *l;

    for (l = *lane_bucket(calls, id); l != NULL; l = l->next) {
        if (l->contact_id == id)
            break;
    }
    return l;
}

static void lane_free_if_empty(struct gw_calls *calls, struct gw_lane *lane)
{
    struct gw_lane **p = lane_bucket(calls, lane->contact_id);

    if (lane->head != NULL)
        return;
    while (*p != lane)
        p = &(*p)->next;
    *p = lane->next;
    free(lane);
}

static void batch_add(struct gw_calls *calls, struct gw_batch *b, struct gw_call *call)
{
    struct gw_call **p = &b->members;

    while (*p != NULL)
        p = &(*p)->wnext;
    call->wnext = NULL;
    *p = call;
    call->batch = b;
    b->nmembers++;
    b->ntags += call->merge_tags;
    calls->nmembers++;
}

static void batch_remove(struct gw_calls *calls, struct gw_call *call)
{
    struct gw_batch *b = call->batch;
    struct gw_call **p = &b->members;

    while (*p != call)
        p = &(*p)->wnext;
    *p = call->wnext;
    call->wnext = NULL;
    call->batch = NULL;
    b->nmembers--;
    b->ntags -= call->merge_tags;
    calls->nmembers--;
}

static void batch_free(struct gw_batch *b)
{
    gw_call_release(&b->call);
    free(b->body);
    free(b->url);
    gw_trace_clear(&b->trace);
    free(b);
}

/* Take a batch that is not sent out of its lane (the lane may be freed). */
static void batch_unlink(struct gw_calls *calls, struct gw_batch *b)
{
    struct gw_lane *lane = b->lane;
    struct gw_batch **p = &lane->head;
    struct gw_batch *prev = NULL;

    gw_timer_stop(calls->loop, &b->deadline);
    while (*p != b) {
        prev = *p;
        p = &(*p)->next;
    }
    *p = b->next;
    if (lane->tail == b)
        lane->tail = prev;
    lane_free_if_empty(calls, lane);
}

/* End @p call, a member that leaves its batch, now with @p err. */
static void member_fail(struct gw_calls *calls, struct gw_call *call, enum gw_err err)
{
    batch_remove(calls, call);
    memset(&call->out, 0, sizeof(call->out));
    call->out.failure = err;
    call->coalesced = 0;
    call->done = call->caller_done;
    call->done(call);
}

/* End every member of a batch that was not sent with the outcome @p o (a local refusal). */
static void members_settle(struct gw_calls *calls, struct gw_batch *b, bool shared)
{
    struct gw_call *m;
    bool first = true;
    int n = (int)b->nmembers;

    for (m = b->members; m != NULL; m = b->members) {
        batch_remove(calls, m);
        settle_waiter(&b->call, m, first);
        m->coalesced = shared ? n : 0;
        first = false;
        m->done = m->caller_done;
        m->done(m);
    }
}

static void batch_done(struct gw_call *fc);
static void batch_due(struct gw_timer *t);

/* The earliest deadline of the members of @p b. */
static uint64_t batch_deadline(const struct gw_batch *b)
{
    uint64_t d = UINT64_MAX;

    for (const struct gw_call *m = b->members; m != NULL; m = m->wnext) {
        if (m->deadline_ms < d)
            d = m->deadline_ms;
    }
    return d;
}

/*
 * The body of the batch's call: the one member's own, or the merge of all of theirs. Returns 0
 * or a negative gw_err (then the call's body is unchanged).
 */
static int batch_body(struct gw_batch *b)
{
    const char **bodies = NULL;
    size_t *lens = NULL;
    char *merged = NULL;
    size_t merged_len = 0;
    size_t i = 0;
    int rc = 0;

    if (b->nmembers == 1) {
        b->call.body = b->members->body;
        b->call.body_len = b->members->body_len;
        goto out;
    }
    rc = GW_ERR_NOMEM;
    bodies = calloc(b->nmembers, sizeof(*bodies));
    lens = calloc(b->nmembers, sizeof(*lens));
    if (bodies == NULL || lens == NULL)
        goto out;
    for (const struct gw_call *m = b->members; m != NULL; m = m->wnext, i++) {
        bodies[i] = m->body;
        lens[i] = m->body_len;
    }
    rc = gw_coalesce_merge(bodies, lens, b->nmembers, &merged, &merged_len);
    if (rc != 0)
        goto out;
    free(b->body);
    b->body = merged;
    b->call.body = merged;
    b->call.body_len = merged_len;
out:
    free(bodies);
    free(lens);
    return rc;
}

static bool members_retryable(const struct gw_batch *b)
{
    bool retryable = true;

    for (const struct gw_call *m = b->members; m != NULL; m = m->wnext)
        retryable = retryable && m->retryable;
    return retryable;
}

/* Send the head of a lane: one call for all its members. Returns 0 or a negative gw_err. */
static int batch_send(struct gw_calls *calls, struct gw_batch *b)
{
    struct gw_call *first = b->members;
    int rc;

    gw_timer_stop(calls->loop, &b->deadline);
    memset(&b->call, 0, sizeof(b->call));
    b->call.method = first->method;
    free(b->url);
    b->url = strdup(first->url);
    rc = GW_ERR_NOMEM;
    if (b->url == NULL)
        goto out;
    b->call.url = b->url;
    rc = batch_body(b);
    if (rc != 0)
        goto out;
    snprintf(b->request_id, sizeof(b->request_id), "%s", first->request_id);
    b->call.retryable = members_retryable(b);
    b->call.request_id = b->request_id;
    gw_trace_clear(&b->trace);
    if (first->trace != NULL) {
        gw_trace_copy(&b->trace, first->trace);
        b->call.trace = &b->trace;
    }
    b->call.deadline_ms = batch_deadline(b);
    b->call.done = batch_done;
    b->call.data = b;
    b->call.calls = calls;
    b->call.cache_role = first->cache_role;
    b->call.contact_id = first->contact_id;
    b->call.cache_gen = gw_cache_generation(calls->shared->cache, first->contact_id);
    stamp(calls, &b->call);
    rc = gw_upstream_submit(calls->up, &b->call);
    if (rc == 0) {
        b->sent = true;
        calls->nsent++;
    }
out:
    if (rc != 0 && b->call.out.failure == GW_OK) {
        memset(&b->call.out, 0, sizeof(b->call.out));
        b->call.out.failure = rc;
    }
    return rc;
}

/* The head of @p lane ended: send the next batch, if any (each refused one ends at once). */
static void lane_advance(struct gw_calls *calls, struct gw_lane *lane)
{
    uint64_t id = lane->contact_id;
    struct gw_batch *b;

    while (lane != NULL && lane->head != NULL && !lane->head->sent && !calls->stopping) {
        b = lane->head;
        if (batch_send(calls, b) == 0)
            return;
        /* Refused before it went (a local 429, or out of memory): its callers hear it now. */
        batch_unlink(calls, b);
        members_settle(calls, b, false);
        batch_free(b);
        lane = lane_find(calls, id);
    }
}

/* Redis heard of a write's end (or could not): its members hear the answer now. */
static void batch_stored(void *data, int stored)
{
    struct gw_batch *b = data;
    struct gw_calls *calls = b->call.calls;
    struct gw_batch **p = &calls->storing;

    b->op = NULL;
    while (*p != b)
        p = &(*p)->next;
    *p = b->next;
    b->call.cache_stored = stored == 1;
    members_settle(calls, b, true);
    batch_free(b);
}

/*
 * The write @p b ended, with the shared cache on: tell Redis (the contact's write mark, and
 * its answer or a drop) before its members hear the answer, so that a read that starts after
 * that, on any replica, never finds the state before it. Returns true when @p b now waits for
 * Redis (out of its lane, in calls->storing); false when Redis could not be asked (the write
 * is counted lost, and the cache stays unused until the epoch moves).
 */
static bool share_write(struct gw_calls *calls, struct gw_batch *b)
{
    const struct gw_outcome *o = &b->call.out;
    bool ok = b->call.cache_role == GW_CACHE_WRITE && customer_answer(&b->call);

    if (!cache_shared(calls))
        return false;
    if (!gw_redis_cache_usable(calls->rcache)) {
        gw_redis_cache_lost(calls->rcache);
        return false;
    }
    if (gw_redis_cache_write(calls->rcache, b->lane->contact_id, gw_clock_ms() - b->call.began_ms,
                             ok ? o->body : NULL, ok ? o->body_len : 0, b->call.deadline_ms,
                             batch_stored, b, &b->op) != 0)
        return false;
    b->storing = true;
    b->lane = NULL;
    b->next = calls->storing;
    calls->storing = b;
    return true;
}

/*
 * The sent head of a lane ended: the cache first, then every member gets the outcome; a merged
 * call that HelpCrunch refused with 400 or 422 (which one item may cause) is split instead, and
 * its members go one by one, so that each caller gets its own answer.
 */
static void batch_done(struct gw_call *fc)
{
    struct gw_batch *b = fc->data;
    struct gw_calls *calls = fc->calls;
    struct gw_lane *lane = b->lane;
    struct gw_batch *single;
    struct gw_batch *after;
    struct gw_batch **at;
    struct gw_batch *last;
    struct gw_call *m;
    uint64_t now = gw_loop_now(calls->loop);
    bool refused = fc->out.failure == GW_OK && (fc->out.status == 400 || fc->out.status == 422);

    calls->nsent--;
    b->sent = false;
    lane->head = b->next;
    if (lane->tail == b)
        lane->tail = NULL;
    if (refused && b->nmembers > 1 && !calls->stopping) {
        /* Nothing changed upstream: the members take the batch's place, each alone. */
        after = lane->head;
        at = &lane->head;
        last = NULL;
        for (m = b->members; m != NULL; m = b->members) {
            single = calloc(1, sizeof(*single));
            if (single == NULL) {
                member_fail(calls, m, GW_ERR_NOMEM);
                continue;
            }
            batch_remove(calls, m);
            single->lane = lane;
            single->merge = b->merge;
            single->alone = true;
            gw_timer_init(&single->deadline, batch_due, single);
            batch_add(calls, single, m);
            gw_timer_start(calls->loop, &single->deadline,
                           m->deadline_ms > now ? m->deadline_ms - now : 0);
            *at = single;
            at = &single->next;
            last = single;
        }
        *at = after;
        if (after == NULL)
            lane->tail = last;
    } else {
        keep_cache(calls, fc);
        if (b->nmembers > 1 && fc->attempts > 0) {
            for (size_t i = 1; i < b->nmembers; i++)
                gw_metrics_inc(&calls->metrics->calls_saved[GW_SAVED_COALESCED]);
        }
        if (share_write(calls, b)) {
            /* Its members hear the answer once Redis has; the lane goes on meanwhile. */
            if (lane->head == NULL)
                lane_free_if_empty(calls, lane);
            else
                lane_advance(calls, lane);
            return;
        }
        members_settle(calls, b, true);
    }
    batch_free(b);
    if (lane->head == NULL)
        lane_free_if_empty(calls, lane);
    else
        lane_advance(calls, lane);
}

/* A queued batch's earliest deadline passed: its members that are due end as timed out. */
static void batch_due(struct gw_timer *t)
{
    struct gw_batch *b = t->data;
    struct gw_calls *calls = b->members->calls;
    uint64_t now = gw_loop_now(calls->loop);
    struct gw_call *m;
    struct gw_call *next;

    for (m = b->members; m != NULL; m = next) {
        next = m->wnext;
        if (m->deadline_ms <= now)
            member_fail(calls, m, GW_ERR_UPSTREAM_TIMEOUT);
    }
    if (b->nmembers == 0) {
        batch_unlink(calls, b);
        batch_free(b);
        return;
    }
    gw_timer_start(calls->loop, &b->deadline, batch_deadline(b) - now);
}

/*
 * Whether @p call may join the batch @p b, the last in its lane: one that waits for the write
 * ahead of it, or one at the transport still waiting for the quota slot of its first attempt.
 */
static bool may_join(const struct gw_calls *calls, const struct gw_batch *b,
                     const struct gw_call *call)
{
    return calls->cfg->coalesce.tags && call->merge != GW_MERGE_NONE && b != NULL &&
           (!b->sent || gw_upstream_unsent(&b->call)) && !b->alone && b->merge == call->merge &&
           call->merge_tags > 0 &&
           b->ntags + call->merge_tags <= GW_MAX_TAGS;
}

/*
 * A write of a contact takes its place in the contact's lane (the section's opening comment).
 * Returns as gw_calls_submit does.
 */
static int line_up(struct gw_calls *calls, struct gw_call *call)
{
    struct gw_lane *lane = lane_find(calls, call->contact_id);
    struct gw_batch *b;
    uint64_t now = gw_loop_now(calls->loop);
    int rc;

    call->calls = calls;
    call->caller_done = call->done;
    call->merge_tags = call->merge != GW_MERGE_NONE ? gw_coalesce_count(call->body, call->body_len)
                                                    : 0;
    if (call->merge_tags < 0)
        call->merge_tags = 0;
    if (lane != NULL && may_join(calls, lane->tail, call)) {
        b = lane->tail;
        batch_add(calls, b, call);
        if (!b->sent) {
            if (call->deadline_ms < b->deadline.due_ms || b->deadline.slot == 0)
                gw_timer_start(calls->loop, &b->deadline,
                               call->deadline_ms > now ? call->deadline_ms - now : 0);
            return 0;
        }
        /* At the transport, nothing sent yet: the call carries the new member's tags too. */
        if (batch_body(b) == 0) {
            b->call.retryable = members_retryable(b);
            return 0;
        }
        batch_remove(calls, call);
    }
    if (lane == NULL) {
        lane = calloc(1, sizeof(*lane));
        if (lane == NULL)
            return GW_ERR_NOMEM;
        lane->contact_id = call->contact_id;
        lane->next = *lane_bucket(calls, call->contact_id);
        *lane_bucket(calls, call->contact_id) = lane;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        lane_free_if_empty(calls, lane);
        return GW_ERR_NOMEM;
    }
    b->lane = lane;
    b->merge = call->merge;
    gw_timer_init(&b->deadline, batch_due, b);
    batch_add(calls, b, call);
    if (lane->tail != NULL)
        lane->tail->next = b;
    else
        lane->head = b;
    lane->tail = b;
    if (lane->head != b) {
        gw_timer_start(calls->loop, &b->deadline,
                       call->deadline_ms > now ? call->deadline_ms - now : 0);
        return 0;
    }
    /* Nothing ahead of it: it goes now. */
    rc = batch_send(calls, b);
    if (rc != 0) {
        batch_remove(calls, call);
        call->out = b->call.out;
        memset(&b->call.out, 0, sizeof(b->call.out));
        call->done = call->caller_done;
        batch_unlink(calls, b);
        batch_free(b);
    }
    return rc;
}

/* ---- the interface ---- */

/* The connection came up: a write Redis missed meanwhile moves the epoch now, not at the next
 * request, so that the shared cache serves again as soon as it may. */
static void redis_state(void *data, bool up, const char *reason)
{
    struct gw_calls *calls = data;

    (void)reason;
    if (up && calls->rcache != NULL && calls->cfg->cache.ttl_ms > 0)
        (void)gw_redis_cache_usable(calls->rcache);
}

struct gw_calls *gw_calls_new(int index, struct gw_loop *loop, const struct gw_config *cfg,
                              const struct gw_secret *secret, struct gw_metrics *metrics,
                              struct gw_calls_shared *shared, struct gw_log *log)
{
    struct gw_calls *calls = calloc(1, sizeof(*calls));
    struct gw_upstream_gate gate = {
        .admit = gate_admit,
        .forget = gate_forget,
        .done_waiting = gate_done_waiting,
        .answered = gate_answered,
        .paused = gate_paused,
        .retry_after_s = gate_retry_after_s,
    };

    if (calls == NULL)
        return NULL;
    calls->index = index;
    calls->loop = loop;
    calls->cfg = cfg;
    calls->shared = shared;
    calls->metrics = metrics;
    calls->log = log;
    gate.ctx = calls;
    calls->up = gw_upstream_new(loop, cfg, secret, metrics, &gate, log);
    if (calls->up == NULL)
        goto fail;
    if (cfg->redis.url != NULL) {
        /* Worker 0's connection logs for the process: a line when it comes up, one for each
         * new reason it is down. */
        calls->redis = gw_redis_new(loop, cfg, index == 0 ? log : NULL, redis_state, calls);
        if (calls->redis == NULL)
            goto fail;
        calls->rquota = gw_redis_quota_new(calls->redis, cfg, secret);
        if (calls->rquota == NULL)
            goto fail;
        calls->rcache = gw_redis_cache_new(calls->redis, cfg, secret, &shared->cache_marks,
                                           index == 0 ? log : NULL);
        if (calls->rcache == NULL)
            goto fail;
    }
    return calls;
fail:
    gw_calls_free(calls);
    return NULL;
}

int gw_calls_reconfigure(struct gw_calls *calls, const struct gw_config *cfg,
                         const struct gw_secret *secret)
{
    int rc = gw_upstream_reconfigure(calls->up, cfg, secret);

    if (rc != 0)
        return rc;
    calls->cfg = cfg;
    /* A redis group that comes or goes takes a restart (main.c refuses such a reload). */
    if (calls->redis != NULL && cfg->redis.url != NULL) {
        gw_redis_reconfigure(calls->redis, cfg);
        gw_redis_quota_reconfigure(calls->rquota, cfg, secret);
        gw_redis_cache_reconfigure(calls->rcache, cfg, secret);
    }
    return 0;
}

void gw_calls_free(struct gw_calls *calls)
{
    if (calls == NULL)
        return;
    gw_upstream_free(calls->up);
    gw_redis_quota_free(calls->rquota);
    gw_redis_cache_free(calls->rcache);
    gw_redis_free(calls->redis);
    free(calls);
}

/*
 * Hand @p call to its contact's home worker when that is another worker. Returns 1 when it
 * stays here (one worker, this is its home, or its home is stopping), else as gw_calls_submit.
 */
static int hand_off(struct gw_calls *calls, struct gw_call *call)
{
    struct gw_homes *homes = calls->shared->homes;
    int home;
    int rc;

    if (homes == NULL)
        return 1;
    home = gw_homes_home_of(homes, call->contact_id);
    if (home == calls->index)
        return 1;
    rc = gw_homes_send(homes, calls->index, home, call);
    if (rc < 0) {
        memset(&call->out, 0, sizeof(call->out));
        call->out.failure = rc;
    }
    return rc;
}

/* A read the cache did not answer: on its contact's home, in a flight. As gw_calls_submit. */
static int read_on(struct gw_calls *calls, struct gw_call *call)
{
    int rc;

    call->cache_checked = true; /* its home does not ask Redis again */
    rc = hand_off(calls, call);
    if (rc != 1)
        return rc;
    call->cache = call->max_age_ms == 0 ? GW_CACHE_BYPASS : GW_CACHE_MISS;
    return fly(calls, call);
}

static void unlook(struct gw_calls *calls, struct gw_call *call)
{
    if (call->lk_prev != NULL)
        call->lk_prev->lk_next = call->lk_next;
    else
        calls->looking = call->lk_next;
    if (call->lk_next != NULL)
        call->lk_next->lk_prev = call->lk_prev;
    call->lk_prev = call->lk_next = NULL;
    call->cache_op = NULL;
    calls->nlooking--;
}

/* The shared cache answered a read's lookup: a hit ends it, anything else goes on as a miss. */
static void looked_up(void *data, struct gw_redis_cache_found *found)
{
    struct gw_call *call = data;
    struct gw_calls *calls = call->calls;
    uint64_t ttl = (uint64_t)calls->cfg->cache.ttl_ms;
    int rc;

    unlook(calls, call);
    /* A write of this process that Redis missed meanwhile makes every entry suspect. */
    if (found->found == 1 && gw_redis_cache_usable(calls->rcache)) {
        memset(&call->out, 0, sizeof(call->out));
        call->out.status = 200;
        call->out.body = found->body;
        call->out.body_len = found->len;
        call->cache = GW_CACHE_HIT;
        call->cache_age_ms = found->age_ms;
        call->cache_ttl_left_ms = found->age_ms < ttl ? ttl - found->age_ms : 0;
        call->done(call);
        return;
    }
    free(found->body);
    rc = read_on(calls, call);
    if (rc != 0) {
        if (call->out.failure == GW_OK && call->out.status == 0)
            call->out.failure = rc;
        call->done(call);
    }
}

/* Ask the shared cache for a read. Returns 0 (looked_up runs later), or 1: it could not be. */
static int look_up(struct gw_calls *calls, struct gw_call *call)
{
    if (call->max_age_ms == 0 || !gw_redis_cache_usable(calls->rcache) ||
        gw_redis_cache_lookup(calls->rcache, call->contact_id, call->max_age_ms,
                              call->deadline_ms, looked_up, call, &call->cache_op) != 0)
        return 1;
    call->calls = calls;
    call->lk_prev = NULL;
    call->lk_next = calls->looking;
    if (calls->looking != NULL)
        calls->looking->lk_prev = call;
    calls->looking = call;
    calls->nlooking++;
    return 0;
}

int gw_calls_submit(struct gw_calls *calls, struct gw_call *call)
{
    bool cache_on = calls->cfg->cache.ttl_ms > 0;
    bool checked = call->cache_checked;
    int rc;

    call->cache = GW_CACHE_UNUSED;
    call->cache_stored = false;
    call->cache_etag[0] = '\0';
    call->customer_known = false;
    call->customer_ok = false;
    call->cache_checked = false;
    call->cache_op = NULL;
    call->flight = NULL;
    call->batch = NULL;
    call->hop = NULL;
    call->coalesced = 0;
    if (call->cache_role == GW_CACHE_READ && cache_on) {
        if (cache_shared(calls)) {
            /* Every replica's entries are in Redis; none is served from this process. */
            if (!checked && look_up(calls, call) == 0)
                return 0;
        } else if (serve_cached(calls, call)) {
            return GW_CALLS_SERVED;
        }
        return read_on(calls, call);
    }
    if ((call->cache_role == GW_CACHE_WRITE || call->cache_role == GW_CACHE_DELETE) &&
        call->contact_id != 0) {
        rc = hand_off(calls, call);
        if (rc != 1)
            return rc;
        return line_up(calls, call);
    }
    if (call->cache_role != GW_CACHE_NONE && call->cache_role != GW_CACHE_CREATE)
        call->cache_gen = gw_cache_generation(calls->shared->cache, call->contact_id);
    call->calls = calls;
    call->caller_done = call->done;
    call->done = call_done;
    stamp(calls, call);
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
    struct gw_batch *b = call->batch;

    if (call->hop != NULL) {
        gw_homes_cancel(calls->shared->homes, call, err);
        return;
    }
    if (call->cache_op != NULL) {
        gw_redis_cache_cancel(call->cache_op);
        unlook(calls, call);
        memset(&call->out, 0, sizeof(call->out));
        call->out.failure = err;
        call->done(call);
        return;
    }
    if (b != NULL) {
        /* A write leaves its line; its batch goes on for the others, or ends without them. */
        member_fail(calls, call, err);
        if (b->storing)
            return; /* answered: it ends when Redis has heard of it */
        if (b->nmembers > 0) {
            if (b->sent && gw_upstream_unsent(&b->call) && batch_body(b) == 0)
                b->call.retryable = members_retryable(b);
            return;
        }
        if (b->sent) {
            gw_upstream_cancel(calls->up, &b->call, err);
        } else {
            batch_unlink(calls, b);
            batch_free(b);
        }
        return;
    }
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
    struct gw_lane *l;
    struct gw_lane *next_lane;
    struct gw_batch *b;
    struct gw_batch *next_batch;

    /* The calls handed to other workers first: their answers would come back to nobody. */
    if (calls->shared->homes != NULL)
        gw_homes_cancel_all(calls->shared->homes, calls->index, err);
    /* Reads waiting for the shared cache, and answered writes waiting for Redis to hear of
     * them (their members get the answer; the write counts as lost to the shared cache). */
    while (calls->looking != NULL)
        gw_calls_cancel(calls, calls->looking, err);
    while (calls->storing != NULL) {
        b = calls->storing;
        calls->storing = b->next;
        gw_redis_cache_cancel(b->op);
        b->op = NULL;
        members_settle(calls, b, true);
        batch_free(b);
    }
    /* The writes still in line next, so that none is sent when the one ahead of it ends. */
    calls->stopping = true;
    for (size_t i = 0; i < GW_LANE_BUCKETS; i++) {
        for (l = calls->lanes[i]; l != NULL; l = next_lane) {
            next_lane = l->next;
            for (b = l->head; b != NULL; b = next_batch) {
                next_batch = b->next;
                if (b->sent)
                    continue;
                while (b->members != NULL)
                    member_fail(calls, b->members, err);
                batch_unlink(calls, b);
                batch_free(b);
            }
        }
    }
    gw_upstream_cancel_all(calls->up, err);
    calls->stopping = false;
}

void gw_calls_register_metrics(const struct gw_calls *calls, struct gw_metrics_registry *reg)
{
    if (calls->redis != NULL)
        gw_metrics_add_redis(reg, calls->redis, calls->rquota, calls->rcache);
}

struct gw_redis *gw_calls_redis(const struct gw_calls *calls)
{
    return calls->redis;
}

size_t gw_calls_in_flight(const struct gw_calls *calls)
{
    /* Each flight and each sent batch is one upstream call and stands for its callers. */
    size_t handed = calls->shared->homes != NULL
                        ? gw_homes_sent(calls->shared->homes, calls->index)
                        : 0;

    return gw_upstream_in_flight(calls->up) - calls->nflights - calls->nsent + calls->nwaiting +
           calls->nmembers + calls->nlooking + handed;
}

bool gw_calls_key_refused(const struct gw_calls *calls)
{
    uint64_t at = __atomic_load_n(&calls->shared->auth_failed_ms, __ATOMIC_RELAXED);
    uint64_t now = gw_loop_now(calls->loop);

    return at != 0 && now - at < (uint64_t)calls->cfg->upstream.auth_failure_unready_ms;
}

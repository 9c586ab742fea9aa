/*
 * The transport to HelpCrunch: libcurl's multi interface driven by the worker's event loop (the
 * socket and timer callbacks of docs/examples/multi-event.c, on our own epoll loop). A call is
 * one or more attempts of the same request inside one deadline: the key is injected here, the
 * deadline is enforced here, transient failures are sent again here. Whether an attempt may go
 * at all is not decided here: the gate the call layer installs (calls.h) admits every attempt
 * and hears every answer, so that the quota, its cooldown and the key's health live there.
 * A call ends in one outcome, settled once (struct gw_outcome).
 *
 * One struct gw_upstream per worker loop; all functions run on that loop's thread.
 */
#ifndef HCGW_UPSTREAM_H
#define HCGW_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/buf.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"

struct gw_config;
struct gw_log;
struct gw_metrics;
struct gw_secret;
struct gw_upstream;
struct gw_call;
struct gw_calls;
struct gw_flight;
struct gw_batch;
struct gw_hop;
struct gw_redis_quota_ask;
struct gw_redis_cache_op;
struct up_headers;
struct up_trace_headers;
struct up_shard;
struct gw_trace;

/** What the gate says to one attempt. */
enum gw_gate_verdict {
    GW_GATE_GO = 0,      /* send now */
    GW_GATE_WAIT = 1,    /* a slot is reserved: send after *wait_ms */
    GW_GATE_REFUSE = 2,  /* not within the deadline: the call ends GW_ERR_RATE_LIMITED */
    GW_GATE_ASK = 3      /* the verdict comes later, through gw_upstream_admit */
};

/**
 * The admission policy of the upstream's attempts, installed by the call layer. Every function
 * runs on the loop's thread and must not call back into the upstream.
 */
struct gw_upstream_gate {
    /**
     * Before every attempt of @p call, first or retry, that would end by @p deadline_ms.
     * GW_GATE_WAIT sets *wait_ms (the attempt goes then, and done_waiting is called when it
     * stops waiting); GW_GATE_REFUSE sets *retry_after_s (0: unknown). GW_GATE_ASK: the gate
     * answers later with gw_upstream_admit (never from inside admit), or is told with forget
     * that the call ended first; meanwhile the call waits as for a slot (unsent, its deadline
     * running).
     */
    enum gw_gate_verdict (*admit)(void *ctx, struct gw_call *call, uint64_t now_ms,
                                  uint64_t deadline_ms, uint64_t *wait_ms, long *retry_after_s);
    /** A call the gate answered GW_GATE_ASK ended before its verdict: drop it. May be NULL. */
    void (*forget)(void *ctx, struct gw_call *call);
    /** An attempt of @p call that got GW_GATE_WAIT stopped waiting after @p waited_ms. */
    void (*done_waiting)(void *ctx, struct gw_call *call, uint64_t waited_ms);
    /** HelpCrunch answered an attempt with @p status and Retry-After @p retry_after_s (0: none). */
    void (*answered)(void *ctx, uint64_t now_ms, long status, long retry_after_s);
    /** Seconds a caller refused with 429 should wait when HelpCrunch said nothing (0: unknown). */
    long (*retry_after_s)(void *ctx, uint64_t now_ms);
    /**
     * True while a cooldown (HelpCrunch's 429) holds every attempt back. An attempt whose
     * reserved slot comes due then is not sent: it asks admit again, as a new attempt would.
     * May be NULL (never paused).
     */
    bool (*paused)(void *ctx, uint64_t now_ms);
    void *ctx;
};

/**
 * How a call ended, settled once when it ends (or when gw_upstream_submit refuses it), and
 * never changed after. The caller owns it; gw_call_release frees the body.
 */
struct gw_outcome {
    enum gw_err failure;             /* GW_OK: HelpCrunch answered with `status` */
    long status;                     /* HTTP status of the last answer (0 when none) */
    /* For a 429, hcgw's own (failure GW_ERR_RATE_LIMITED) or HelpCrunch's (status 429): the
     * Retry-After to send, always > 0 and at most GW_MAX_RETRY_AFTER_S; HelpCrunch's own value,
     * else the gate's, else upstream.retry_after_fallback_s. 0 for every other outcome. */
    long retry_after_s;
    char *body;                      /* the last answer's body (NUL-terminated), or NULL */
    size_t body_len;
};

/**
 * Take the body out of @p o: the caller owns the returned bytes (NULL when there were none)
 * and *len is set to their length.
 */
char *gw_outcome_take_body(struct gw_outcome *o, size_t *len);

/** Called exactly once when a submitted call ends (answered, failed, or cancelled). */
typedef void gw_call_done_cb(struct gw_call *call);

/** What a call means to the contact cache (calls.h); upstream.c ignores it. */
enum gw_cache_role {
    GW_CACHE_NONE = 0,               /* not a contact's customer (lists, searches) */
    GW_CACHE_READ,                   /* reads the customer: may be served from the cache */
    GW_CACHE_WRITE,                  /* changes the customer and answers with it */
    GW_CACHE_DELETE,                 /* deletes the contact */
    GW_CACHE_CREATE                  /* creates a contact and answers with it */
};

/** Where a read's answer came from (calls.h). */
enum gw_cache_result {
    GW_CACHE_UNUSED = 0,             /* no lookup: not a read, or the cache is off */
    GW_CACHE_HIT,                    /* served from the cache, no upstream call */
    GW_CACHE_MISS,                   /* not there (or too old): an upstream call */
    GW_CACHE_BYPASS,                 /* the caller asked for fresh: an upstream call */
    GW_CACHE_COLLAPSED               /* joined another caller's call in flight (single flight) */
};

/** What a write may be merged with (calls.h, coalescing). */
enum gw_call_merge {
    GW_MERGE_NONE = 0,               /* never merged */
    GW_MERGE_TAGS_ADD,               /* adds the tags of its body {"tags":[…]} */
    GW_MERGE_TAGS_REMOVE             /* removes the tags of its body {"tags":[…]} */
};

/**
 * One upstream call. The caller embeds it (in its request), fills the "in" fields, and
 * submits. The "out" fields are valid in the done callback and until gw_call_release.
 */
struct gw_call {
    /* in */
    const char *method;              /* "GET", "PUT", "PATCH", "POST", "DELETE" (static) */
    const char *url;                 /* absolute URL; kept by the caller until done */
    const char *body;                /* NULL for none; owned by the caller, kept until done */
    size_t body_len;
    bool retryable;                  /* safe to send again (idempotent route) */
    const char *request_id;          /* for log lines of this call; kept by the caller until done */
    /* The trace of the request the call is made for (upstream.propagate_trace): each attempt
     * sends a traceparent of its own span in that trace, and its tracestate. NULL: neither is
     * sent. Kept by the caller until done. */
    const struct gw_trace *trace;
    uint64_t deadline_ms;            /* loop time by which the whole call, retries included, ends */
    gw_call_done_cb *done;
    void *data;                      /* for the callback */
    enum gw_cache_role cache_role;   /* GW_CACHE_NONE unless the call layer's cache applies */
    uint64_t contact_id;             /* the contact of a cache role other than CREATE */
    uint64_t max_age_ms;             /* a read: oldest entry accepted (0: call upstream) */
    enum gw_call_merge merge;        /* a write of a contact: what it may be merged with */

    /* out */
    struct gw_outcome out;           /* valid once done runs (or submit refused the call) */
    int attempts;                    /* attempts sent */
    int curl_code;                   /* CURLcode of the last attempt, for logs */
    unsigned char http_version;      /* the last answer's HTTP version: 10, 11, 20 (0: none) */
    double upstream_ms;              /* time spent in all attempts, cut or cancelled ones
                                        included (not in backoff or quota waits) */
    enum gw_cache_result cache;      /* a read: where its answer came from */
    bool cache_stored;               /* its answer was stored in the cache */
    /* The answer was judged by the call layer (customer_known): customer_ok when it is a 2xx
     * whose body is a JSON object, the check of a customer answer (reply.c), or a hit from
     * this process's cache (which holds only such); the check need not run again for the
     * caller. */
    bool customer_known;
    bool customer_ok;
    uint64_t cache_age_ms;           /* a hit: the entry's age */
    uint64_t cache_ttl_left_ms;      /* a hit: how long it stays fresh */
    char cache_etag[GW_ETAG_BYTES];  /* a hit from this process's cache: the customer's ETag,
                                        worked out when stored ("" otherwise) */
    int coalesced;                   /* a write of a contact: callers who shared its upstream
                                        call (1: alone), 0 when none was made for it */

    /* private to calls.c (and homes.c: hop) */
    gw_call_done_cb *caller_done;
    struct gw_calls *calls;
    uint64_t cache_gen;              /* the contact's write generation when the call began */
    struct gw_flight *flight;        /* a read: the shared call it waits on, or NULL */
    struct gw_call *wnext;           /* the next of the flight's waiters (or batch's members) */
    struct gw_batch *batch;          /* a write of a contact: its place in the contact's line */
    int merge_tags;                  /* the tags its body carries, when it may be merged */
    struct gw_hop *hop;              /* handed to its contact's home worker, or NULL */
    struct gw_redis_quota_ask *quota_ask; /* the shared bucket's verdict it waits for */
    bool shared_wait;                /* its slot wait was reserved in the shared bucket */
    bool cache_checked;              /* a read the shared cache (Redis) did not answer */
    struct gw_redis_cache_op *cache_op; /* a read: its shared cache lookup in flight */
    struct gw_call *lk_prev, *lk_next;  /* ...listed in its call layer while it is */
    uint64_t began_ms;               /* when the call layer sent it (fresh monotonic ms) */
    uint64_t session;                /* ...and the Redis connection's session then */

    /* private to upstream.c: the attempt at hand */
    struct gw_upstream *up;
    enum gw_err failure;
    long status;
    long retry_after_s;              /* Retry-After of the last answer, 0 when none */
    enum gw_err last_failure;        /* a retry waiting for the gate: the answer before it */
    long last_status;
    long last_retry_after_s;
    struct gw_buf resp;              /* answer body (NUL-terminated); settle() takes it */
    void *easy;
    struct up_shard *shard;          /* the multi handle `easy` is in */
    unsigned easy_gen;               /* the configuration generation `easy` was set up for */
    struct up_headers *headers;      /* the key generation this attempt was sent with */
    struct up_trace_headers *trace_headers; /* this attempt's traceparent, when it sends one */
    bool waiting_token;              /* the gate reserved a slot; waiting for it */
    bool asking;                     /* the gate answered GW_GATE_ASK; waiting for its verdict */
    uint64_t wait_start_ms;
    bool too_big;                    /* the body (decoded) passed its bound: the transfer was cut */
    bool bad_coding;                 /* a Content-Encoding hcgw does not decode: cut too */
    uint64_t attempt_start_ms;
    struct gw_timer backoff;         /* the wait before a retry, or for a quota slot */
    struct gw_timer deadline;        /* ends the call at deadline_ms, whatever it waits on */
    struct gw_call *prev, *next;     /* in-flight list */

};

/**
 * Create the upstream side of one worker: curl multi handles on @p loop (upstream.pool_shards
 * of them, fixed for its life, sharing upstream.max_connections) with the pool size, timeouts
 * and retry policy of @p cfg and the key of @p secret (the key is copied into one header list,
 * wiped when freed). A pooled connection's socket stays registered with @p loop between
 * transfers; its descriptor is closed only by libcurl's close callback, so the registration
 * never outlives the socket. Counts go to @p metrics, the worker's own block; every
 * attempt passes @p gate (copied); log lines go to @p log. @p cfg, @p metrics, @p log and the
 * gate's context must outlive it (@p cfg, or be replaced with gw_upstream_reconfigure).
 * curl_global_init must have run. Returns NULL on failure.
 */
struct gw_upstream *gw_upstream_new(struct gw_loop *loop, const struct gw_config *cfg,
                                    const struct gw_secret *secret, struct gw_metrics *metrics,
                                    const struct gw_upstream_gate *gate, struct gw_log *log);

/**
 * Use @p cfg and the key of @p secret from the next attempt on. Attempts already sent keep
 * the header list they were sent with; it is wiped and freed when the last of them ends.
 * upstream.pool_shards keeps its value from start (a warning says so); the pool size is spread
 * over the shards again.
 * Returns 0, or GW_ERR_NOMEM (then nothing changed). Loop thread.
 */
int gw_upstream_reconfigure(struct gw_upstream *up, const struct gw_config *cfg,
                            const struct gw_secret *secret);

/** Free it. No call may be in flight (cancel them first). Accepts NULL. */
void gw_upstream_free(struct gw_upstream *up);

/**
 * Start @p call. Returns 0: done will be called exactly once, later, never from inside this
 * function. Returns a negative gw_err: done will never be called, and call->out is settled
 * with that failure (a 429 of the gate's with its Retry-After).
 */
int gw_upstream_submit(struct gw_upstream *up, struct gw_call *call);

/**
 * End @p call, which must be in flight (submitted, done not yet run), now with @p err: its
 * transfer or retry wait is abandoned and its done callback runs before this returns.
 */
void gw_upstream_cancel(struct gw_upstream *up, struct gw_call *call, enum gw_err err);

/** End every call in flight now with @p err (each done callback runs once). */
void gw_upstream_cancel_all(struct gw_upstream *up, enum gw_err err);

/**
 * The verdict on @p call's attempt that the gate deferred (GW_GATE_ASK), with @p wait_ms for
 * GW_GATE_WAIT and @p retry_after_s for GW_GATE_REFUSE, as admit would have set them. The
 * attempt goes, waits, or the call ends (its done may run before this returns). Loop thread.
 */
void gw_upstream_admit(struct gw_upstream *up, struct gw_call *call, enum gw_gate_verdict v,
                       uint64_t wait_ms, long retry_after_s);

/**
 * True while @p call, in flight, waits for the quota slot of its first attempt: nothing of it
 * has been sent, and its body (body, body_len) and retryable may still be replaced; they are
 * read when the attempt goes.
 */
bool gw_upstream_unsent(const struct gw_call *call);

/** Calls in flight (submitted and not yet done). */
size_t gw_upstream_in_flight(const struct gw_upstream *up);

/** Free what the call's results hold (the outcome's body). Idempotent. */
void gw_call_release(struct gw_call *call);

#endif

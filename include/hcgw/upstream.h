/*
 * Calls to HelpCrunch: libcurl's multi interface driven by the worker's event loop (the
 * socket and timer callbacks of docs/examples/multi-event.c, on our own epoll loop). Every
 * upstream call of the process passes through gw_upstream_submit and the attempt starter
 * behind it: the place where the key is injected, the deadline is enforced, retries are
 * decided, and where a quota governor, a coalescer or a cache can sit.
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
struct gw_governor;
struct gw_log;
struct gw_metrics;
struct gw_secret;
struct gw_upstream;
struct gw_call;
struct up_headers;

/**
 * What all workers' upstreams share: the quota governor and the time HelpCrunch last refused
 * the key. Owned by the server; lives as long as it.
 */
struct gw_upstream_shared {
    struct gw_governor *governor;
    uint64_t auth_failed_ms;         /* monotonic ms of the last 401/403, 0: never; atomic */
};

/** Called exactly once when a submitted call ends (answered, failed, or cancelled). */
typedef void gw_call_done_cb(struct gw_call *call);

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
    uint64_t deadline_ms;            /* loop time by which the whole call, retries included, ends */
    gw_call_done_cb *done;
    void *data;                      /* for the callback */

    /* out */
    enum gw_err failure;             /* GW_OK: HelpCrunch answered with `status` */
    long status;                     /* HTTP status of the last answer (0 when none) */
    struct gw_buf resp;              /* answer body (NUL-terminated), owned by the call;
                                        gw_buf_take hands it over */
    long retry_after_s;              /* Retry-After of the last answer, 0 when none */
    int attempts;                    /* attempts sent */
    int curl_code;                   /* CURLcode of the last attempt, for logs */
    double upstream_ms;              /* time spent in attempts (not in backoff) */

    /* private to upstream.c */
    struct gw_upstream *up;
    void *easy;
    unsigned easy_gen;               /* the configuration generation `easy` was set up for */
    struct up_headers *headers;      /* the key generation this attempt was sent with */
    bool waiting_token;              /* reserved a governor slot, waiting for it */
    uint64_t wait_start_ms;
    bool too_big;
    uint64_t attempt_start_ms;
    struct gw_timer backoff;         /* the wait before a retry, or for a quota slot */
    struct gw_timer deadline;        /* ends the call at deadline_ms, whatever it waits on */
    struct gw_call *prev, *next;     /* in-flight list */

};

/**
 * Create the upstream side of one worker: a curl multi handle on @p loop with the pool size,
 * timeouts and retry policy of @p cfg and the key of @p secret (the key is copied into one
 * header list, wiped when freed). Counts go to @p metrics, the worker's own block; quota and
 * key health go through @p shared; log lines to @p log. @p cfg, @p metrics, @p shared and
 * @p log must outlive it (@p cfg, or be replaced with gw_upstream_reconfigure).
 * curl_global_init must have run. Returns NULL on failure.
 */
struct gw_upstream *gw_upstream_new(struct gw_loop *loop, const struct gw_config *cfg,
                                    const struct gw_secret *secret, struct gw_metrics *metrics,
                                    struct gw_upstream_shared *shared, struct gw_log *log);

/**
 * Use @p cfg and the key of @p secret from the next attempt on. Attempts already sent keep
 * the header list they were sent with; it is wiped and freed when the last of them ends.
 * Returns 0, or GW_ERR_NOMEM (then nothing changed). Loop thread.
 */
int gw_upstream_reconfigure(struct gw_upstream *up, const struct gw_config *cfg,
                            const struct gw_secret *secret);

/** Free it. No call may be in flight (cancel them first). Accepts NULL. */
void gw_upstream_free(struct gw_upstream *up);

/**
 * Start @p call. Returns 0: done will be called exactly once, later, never from inside this
 * function. Returns a negative gw_err: done will never be called.
 */
int gw_upstream_submit(struct gw_upstream *up, struct gw_call *call);

/**
 * End @p call, which must be in flight (submitted, done not yet run), now with @p err: its
 * transfer or retry wait is abandoned and its done callback runs before this returns.
 */
void gw_upstream_cancel(struct gw_upstream *up, struct gw_call *call, enum gw_err err);

/** End every call in flight now with @p err (each done callback runs once). */
void gw_upstream_cancel_all(struct gw_upstream *up, enum gw_err err);

/** Calls in flight (submitted and not yet done). */
size_t gw_upstream_in_flight(const struct gw_upstream *up);

/** Free what the call's results hold (the answer body). Idempotent. */
void gw_call_release(struct gw_call *call);

#endif

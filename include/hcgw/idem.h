/*
 * Idempotency-Key on POST /contacts (the IETF httpapi draft "The Idempotency-Key HTTP Header
 * Field", and Stripe's practice): what a key is, what becomes of a create's outcome, how a
 * create whose outcome is unknown is looked for before it is made again, and the interface of
 * the store that holds the records (struct gw_idem_store), whatever its backend.
 *
 * A record belongs to one key of one caller (its scope: the client name, "" when callers are
 * not identified) and holds the SHA-256 of the request body it was made for. It is in one of
 * three states: in progress (one request holds it, a claim with a token), done (a final
 * answer: a 2xx, or HelpCrunch's 400/422, replayed to later requests with the key), or
 * unknown (the request ended without knowing whether HelpCrunch created the contact: the next
 * request with the key, holding it again, looks for the contact first).
 *
 * The rules are pure functions (any thread). The store's verbs are atomic for their key
 * across every worker (and, for a shared backend, every process) that uses the store. The
 * local store's verbs may be called from any thread and answer at once; a shared one's
 * (idem_redis.h) run on its worker's loop and may answer later, through a callback: a
 * request's dealings with a store are a struct gw_idem_claim, which the request owns.
 */
#ifndef HCGW_IDEM_H
#define HCGW_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"

/* ---- the key and the body ---- */

/** Bytes of a body's fingerprint (SHA-256). */
#define GW_IDEM_FINGERPRINT_BYTES 32

/**
 * The key of an Idempotency-Key header sent @p count times, its first value @p value (as
 * libmicrohttpd gives it, without surrounding whitespace). The key is 1 to
 * GW_MAX_IDEM_KEY_BYTES characters 0x21-0x7E. It may be sent bare (`abc-123`) or as the
 * draft's Structured Field String (`"abc-123"`, with `\"` and `\\` escapes, no parameters):
 * both name the same key. Returns 0 and the key, NUL-terminated, in @p out; or
 * GW_ERR_INVALID_IDEMPOTENCY_KEY when @p count is not 1, or the value is empty, too long, has
 * a space, a control or non-ASCII byte, or is a malformed quoted string.
 */
int gw_idem_parse_key(const char *value, unsigned count, char out[GW_MAX_IDEM_KEY_BYTES + 1]);

/**
 * The fingerprint of a create's body: the SHA-256 of its bytes as sent, which hcgw forwards
 * byte for byte (so `{"a":1}` and `{"a": 1}` are two bodies). Returns 0, or GW_ERR_INTERNAL.
 */
int gw_idem_fingerprint(const char *body, size_t len,
                        unsigned char out[GW_IDEM_FINGERPRINT_BYTES]);

/* ---- what becomes of an outcome ---- */

/** What a claim's end does to its record. */
enum gw_idem_fate {
    GW_IDEM_KEEP,                    /* a final answer: done, replayed from now on */
    GW_IDEM_UNKNOWN,                 /* HelpCrunch may have created it: look before creating */
    GW_IDEM_FORGET                   /* certainly not created: the record goes */
};

/**
 * The fate of a create's outcome: HelpCrunch answered (@p failure GW_OK) with @p status, which,
 * for a 2xx, hcgw could use as its answer or not (@p usable); or the call failed with
 * @p failure. @p sent: an attempt went out. @p was_unknown: the record was unknown when this
 * claim took it. Kept: a usable 2xx, and HelpCrunch's 400 and 422 (they judge the body, and
 * the same body gets the same judgement). Unknown: a timeout, a cut connection, a 5xx or an
 * unusable 2xx, after a send; and anything but a kept answer when the record already was
 * unknown. Forgotten: nothing sent (hcgw's own 429, a cancel while waiting), or another
 * answer by which HelpCrunch refused the call (401, 403, 404, 409, 429, other 4xx), so that
 * the caller may try again with the same key.
 */
enum gw_idem_fate gw_idem_fate(enum gw_err failure, long status, bool usable, bool sent,
                               bool was_unknown);

/* ---- a create of unknown outcome, looked for ---- */

/**
 * The body of the HelpCrunch search (POST /customers/search) that finds the contact a create
 * with @p body (a JSON object, as validated) would have made: by its `userId` when it has a
 * non-empty string one, else by its `email`. Returns 0 and a malloc'd NUL-terminated body in
 * *out (length *out_len; the caller frees it); 1 when the body has neither (nothing to look
 * for: create); or GW_ERR_NOMEM.
 */
int gw_idem_search_body(const char *body, size_t len, char **out, size_t *out_len);

/**
 * The contact that search found, from HelpCrunch's answer @p body ({"data":[…],…}): of several,
 * the one with the highest numeric id (the newest). Returns 0 and the customer object,
 * serialized, malloc'd and NUL-terminated, in *out (length *out_len); 1 when none was found;
 * GW_ERR_UPSTREAM_BAD_RESPONSE when the answer is not such an object; or GW_ERR_NOMEM.
 */
int gw_idem_search_pick(const char *body, size_t len, char **out, size_t *out_len);

/* ---- the store ---- */

/** The record one request asks about: its scope, key and body. */
struct gw_idem_key {
    const char *scope;               /* the client name, "" when none: no NUL inside */
    const char *key;                 /* 1..GW_MAX_IDEM_KEY_BYTES, as gw_idem_parse_key gave */
    unsigned char fingerprint[GW_IDEM_FINGERPRINT_BYTES];
};

/** What gw_idem_begin found. */
enum gw_idem_verdict {
    GW_IDEM_NEW,                     /* no record: the caller holds the key now (a claim) */
    GW_IDEM_RECOVER,                 /* an unknown one: the caller holds it now, and looks first */
    GW_IDEM_REPLAY,                  /* a done one with this body: c->rec is its final answer */
    GW_IDEM_IN_PROGRESS,             /* another request holds it */
    GW_IDEM_MISMATCH                 /* the key was used with another body */
};

/**
 * Returned by gw_idem_begin and gw_idem_complete, never a verdict: the store answers later,
 * through the claim's done callback (a backend with a round trip to make, such as Redis).
 */
#define GW_IDEM_LATER 16

/** A final answer, copied out of the store: HelpCrunch's status and body. */
struct gw_idem_record {
    long status;
    char *body;                      /* NUL-terminated, malloc'd (the caller frees), or NULL */
    size_t len;
};

/** What a store holds now. */
struct gw_idem_stats {
    size_t entries;                  /* records, held ones included */
    size_t held;                     /* records in progress */
    size_t bytes;                    /* their keys, bodies and bookkeeping */
};

struct gw_idem_store;
struct gw_idem_claim;

/**
 * A verb of @p c that returned GW_IDEM_LATER ended: gw_idem_begin's verdict is in c->verdict;
 * gw_idem_complete's record is kept, or could not be. Runs on the store's loop thread, never
 * from inside the verb that returned GW_IDEM_LATER; it may call the store's verbs again.
 */
typedef void gw_idem_done_cb(struct gw_idem_claim *c);

/**
 * One request's dealings with the store about its key, from gw_idem_begin until its claim is
 * ended (c->held false) and no callback is due: the caller's memory, zeroed, then key, done
 * and data set before gw_idem_begin. The store fills in the rest.
 */
struct gw_idem_claim {
    struct gw_idem_key key;          /* the caller's; its strings outlive the claim */
    gw_idem_done_cb *done;           /* the caller's: an answer that came later */
    void *data;                      /* the caller's, for done */
    int verdict;                     /* begin's: an enum gw_idem_verdict, or a negative gw_err */
    struct gw_idem_record rec;       /* with GW_IDEM_REPLAY: the answer (the caller frees body) */
    bool held;                       /* a claim to end with gw_idem_complete or gw_idem_abandon */
    /* The store's own. */
    uint64_t token;                  /* the claim, while held: unique within its holder */
    struct gw_idem_store *holder;    /* the backend that holds it (a fallback's, maybe) */
    void *trip;                      /* a verb's round trip in flight, or NULL */
};

/**
 * What a backend implements; the gw_idem_* functions below call through it, and keep their
 * contracts. Each verb is atomic for its record: of two requests that begin with one key at
 * once, exactly one gets NEW or RECOVER. A backend is free to lose records (eviction, expiry,
 * a restart): a lost record only makes a later request with its key a NEW one. A backend that
 * answers at once never returns GW_IDEM_LATER and leaves cancel and stop NULL; one configured
 * otherwise (idem_redis.h) leaves configure NULL.
 */
struct gw_idem_store_ops {
    int (*begin)(struct gw_idem_store *s, struct gw_idem_claim *c, uint64_t now_ms,
                 uint64_t lease_ms, uint64_t deadline_ms);
    int (*complete)(struct gw_idem_store *s, struct gw_idem_claim *c, long status,
                    const char *body, size_t len, uint64_t now_ms);
    void (*abandon)(struct gw_idem_store *s, struct gw_idem_claim *c, bool outcome_unknown,
                    uint64_t now_ms);
    void (*cancel)(struct gw_idem_store *s, struct gw_idem_claim *c);
    void (*stop)(struct gw_idem_store *s);
    int (*configure)(struct gw_idem_store *s, uint64_t ttl_ms, long max_entries,
                     long max_bytes);
    struct gw_idem_stats (*stats)(struct gw_idem_store *s);
    void (*free)(struct gw_idem_store *s);
};

/** The head of every backend's store: a backend's struct begins with it. */
struct gw_idem_store {
    const struct gw_idem_store_ops *ops;
};

/**
 * Ask about c->key at monotonic time @p now_ms; a round trip the backend makes must end by
 * @p deadline_ms (loop time). Returns the verdict, also kept in c->verdict: GW_IDEM_NEW or
 * GW_IDEM_RECOVER with c->held true, and the caller must end the claim with exactly one
 * gw_idem_complete or gw_idem_abandon (it lasts @p lease_ms at most: a claim older than that
 * is taken over by the next begin as unknown); GW_IDEM_REPLAY with c->rec filled (the caller
 * frees c->rec.body); GW_IDEM_IN_PROGRESS or GW_IDEM_MISMATCH (nothing held, nothing to free).
 * While the store is off (ttl 0), GW_IDEM_NEW with nothing held: nothing will be kept. Or a
 * negative gw_err: GW_ERR_OVERLOADED when no record fits (every one is held), GW_ERR_NOMEM,
 * GW_ERR_SHUTTING_DOWN (gw_idem_stop); nothing is held then. Or GW_IDEM_LATER: c->done runs
 * once, later, with all of that in @p c.
 */
int gw_idem_begin(struct gw_idem_store *s, struct gw_idem_claim *c, uint64_t now_ms,
                  uint64_t lease_ms, uint64_t deadline_ms);

/**
 * End the claim of @p c (when held; otherwise nothing happens and this returns 0) with its
 * final answer: HelpCrunch's @p status and @p body of @p len bytes (copied), replayed for the
 * ttl from @p now_ms. A body too large for the store's bounds leaves the record unknown
 * instead (a later request finds the contact by a search). A claim that was taken over is
 * left alone. c->held is false on return. Returns 0, the record kept or not; or GW_IDEM_LATER:
 * c->done runs once, later, when it is kept (or could not be).
 */
int gw_idem_complete(struct gw_idem_store *s, struct gw_idem_claim *c, long status,
                     const char *body, size_t len, uint64_t now_ms);

/**
 * End the claim of @p c (when held) without a final answer: the record becomes unknown when
 * @p outcome_unknown (kept for the ttl from @p now_ms), otherwise it goes. Never calls back;
 * c->held is false on return.
 */
void gw_idem_abandon(struct gw_idem_store *s, struct gw_idem_claim *c, bool outcome_unknown,
                     uint64_t now_ms);

/**
 * The caller of @p c no longer waits for the verb in flight (GW_IDEM_LATER): its done never
 * runs. A claim that begin wins meanwhile is ended by the store (unknown when it was, else
 * forgotten); a complete goes on. Nothing in flight: nothing happens.
 */
void gw_idem_cancel(struct gw_idem_store *s, struct gw_idem_claim *c);

/**
 * End every verb in flight now (a worker stopping): each begin with GW_ERR_SHUTTING_DOWN and
 * nothing held, each complete as it stands; every done callback runs before this returns.
 */
void gw_idem_stop(struct gw_idem_store *s);

/**
 * Keep records for @p ttl_ms (0: off: every record goes, and nothing is kept until it is on
 * again), at most @p max_entries of them and @p max_bytes bytes (the least recently used
 * records not in progress go first). Returns 0, or -1 when out of memory (the bounds are set).
 * A backend configured otherwise ignores it and returns 0.
 */
int gw_idem_configure(struct gw_idem_store *s, uint64_t ttl_ms, long max_entries,
                      long max_bytes);

/** What it holds now. */
struct gw_idem_stats gw_idem_stats(struct gw_idem_store *s);

/**
 * Free it and every record it holds in memory. No thread may use it any more; verbs in flight
 * are dropped without their callbacks. Accepts NULL.
 */
void gw_idem_free(struct gw_idem_store *s);

#endif

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
 * The rules are pure functions (any thread). The store's verbs may be called from any thread,
 * and each is atomic for its key across every worker (and, for a shared backend, every
 * process) that uses the store.
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

/** The record one request asks about: its scope, key and body. Borrowed for the call. */
struct gw_idem_key {
    const char *scope;               /* the client name, "" when none: no NUL inside */
    const char *key;                 /* 1..GW_MAX_IDEM_KEY_BYTES, as gw_idem_parse_key gave */
    unsigned char fingerprint[GW_IDEM_FINGERPRINT_BYTES];
};

/** What gw_idem_begin found. */
enum gw_idem_verdict {
    GW_IDEM_NEW,                     /* no record: the caller holds the key now (a claim) */
    GW_IDEM_RECOVER,                 /* an unknown one: the caller holds it now, and looks first */
    GW_IDEM_REPLAY,                  /* a done one with this body: *rec is its final answer */
    GW_IDEM_IN_PROGRESS,             /* another request holds it */
    GW_IDEM_MISMATCH                 /* the key was used with another body */
};

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

/**
 * What a backend implements; the gw_idem_* functions below call through it. Each verb is atomic
 * for its record: of two requests that begin with one key at once, exactly one gets NEW or
 * RECOVER. A backend is free to lose records (eviction, expiry, a restart): a lost record only
 * makes a later request with its key a NEW one.
 */
struct gw_idem_store_ops {
    int (*begin)(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t now_ms,
                 uint64_t lease_ms, struct gw_idem_record *rec, uint64_t *token);
    void (*complete)(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t token,
                     long status, const char *body, size_t len, uint64_t now_ms);
    void (*abandon)(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t token,
                    bool outcome_unknown, uint64_t now_ms);
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
 * Ask about @p k at monotonic time @p now_ms. Returns a verdict (>= 0): GW_IDEM_NEW or
 * GW_IDEM_RECOVER with the claim's token in *token, which the caller must end with exactly one
 * gw_idem_complete or gw_idem_abandon (it lasts @p lease_ms at most: a claim older than that
 * is taken over by the next begin as unknown); GW_IDEM_REPLAY with @p rec filled (the caller
 * frees rec->body); GW_IDEM_IN_PROGRESS or GW_IDEM_MISMATCH (nothing held, nothing to free).
 * While the store is off (ttl 0), GW_IDEM_NEW with token 0: nothing is held or will be kept.
 * Or a negative gw_err: GW_ERR_OVERLOADED when no record fits (every one is held), or
 * GW_ERR_NOMEM; nothing is held then.
 */
int gw_idem_begin(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t now_ms,
                  uint64_t lease_ms, struct gw_idem_record *rec, uint64_t *token);

/**
 * End the claim @p token on @p k with its final answer (HelpCrunch's @p status and @p body of
 * @p len bytes, copied), replayed for the ttl from @p now_ms. A body too large for the store's
 * bounds leaves the record unknown instead (a later request finds the contact by a search). A
 * claim that was taken over is left alone.
 */
void gw_idem_complete(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t token,
                      long status, const char *body, size_t len, uint64_t now_ms);

/**
 * End the claim @p token on @p k without a final answer: the record becomes unknown when
 * @p outcome_unknown (kept for the ttl from @p now_ms), otherwise it goes.
 */
void gw_idem_abandon(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t token,
                     bool outcome_unknown, uint64_t now_ms);

/**
 * Keep records for @p ttl_ms (0: off: every record goes, and nothing is kept until it is on
 * again), at most @p max_entries of them and @p max_bytes bytes (the least recently used
 * records not in progress go first). Returns 0, or -1 when out of memory (the bounds are set).
 */
int gw_idem_configure(struct gw_idem_store *s, uint64_t ttl_ms, long max_entries,
                      long max_bytes);

/** What it holds now. */
struct gw_idem_stats gw_idem_stats(struct gw_idem_store *s);

/** Free it and every record. No thread may use it any more. Accepts NULL. */
void gw_idem_free(struct gw_idem_store *s);

#endif

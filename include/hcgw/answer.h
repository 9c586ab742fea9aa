/*
 * Answers, built and queued on a libmicrohttpd connection: the headers every answer carries,
 * a body handed over, and the one path from an error (local, or the outcome of an upstream
 * call) to its HTTP answer: the status, code and message of the error table and the headers
 * its row asks for (Retry-After, Allow, WWW-Authenticate, Connection: close), see envelope.h.
 *
 * It knows nothing of a request beyond struct gw_answer; resuming a suspended connection and
 * recording what was answered stay with the caller. Worker thread.
 */
#ifndef HCGW_ANSWER_H
#define HCGW_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "hcgw/err.h"

struct gw_envelope;
struct gw_gzip;
struct gw_outcome;
struct gw_secret;

/**
 * The request fields an answer varies on: the one Vary header of an answer names each whose
 * bit is set in struct gw_answer's vary, in this order. Every feature that makes an answer
 * depend on a request header adds its bit here and sets it; none writes Vary itself.
 */
enum gw_vary {
    GW_VARY_ORIGIN = 1u << 0,            /* Origin (browsers, CORS) */
    GW_VARY_ACCEPT_ENCODING = 1u << 1    /* Accept-Encoding (compression, gzip.h) */
};

/** What an answer needs of its request. Plain data, borrowed for the call. */
struct gw_answer {
    struct MHD_Connection *conn;
    const char *request_id;          /* X-Request-Id, and the envelope's request_id */
    const char *allow;               /* Allow of a 405 (the methods of the path), or NULL */
    bool close;                      /* Connection: close on any answer (the worker drains) */
    /* What the contact cache says of a success answer (cachectl.h), or NULL / -1: none. */
    const char *etag;                /* ETag */
    const char *cache_status;        /* Cache-Status (RFC 9211) */
    long age_s;                      /* Age, seconds */
    bool replayed;                   /* Idempotent-Replayed: true (idem.h) */
    /* Browsers (cors.h): Access-Control-Allow-Origin and -Expose-Headers on the answer to an
     * allowed origin, or NULL: none. */
    const char *cors_origin;
    unsigned vary;                   /* enum gw_vary bits: the fields of the Vary header */
    /* Compression: the worker's deflater when the caller accepts gzip, else NULL (never
     * compress); a body of gzip_min_bytes or more is then compressed at gzip_level. */
    struct gw_gzip *gzip;
    size_t gzip_min_bytes;
    int gzip_level;
    bool gzipped;                    /* set by gw_answer_encode: the body is gzip now */
};

/**
 * Compress *body (*len bytes, malloc'd) with gzip in place when @p a allows it (a->gzip, a
 * body of a->gzip_min_bytes or more) and gzip makes it smaller: *body is freed and replaced,
 * *len updated, and a->gzipped set. Otherwise (out of memory included) nothing changes and the
 * body goes as it is. Called by the functions below for every body; a caller that must know
 * the representation before it answers (its ETag) calls it first.
 */
void gw_answer_encode(struct gw_answer *a, char **body, size_t *len);

/**
 * Queue @p status with @p body of @p len bytes, which libmicrohttpd takes and frees (NULL: no
 * body), as @p content_type (NULL: none), with the common headers (X-Request-Id,
 * Cache-Control: no-store, X-Content-Type-Options: nosniff, Idempotent-Replayed, Vary, and the
 * CORS ones, when @p a says so) and the cache's (ETag, Cache-Status, Age) when @p a has them.
 * Every answer below carries the common headers. A body is gzip-compressed as
 * gw_answer_encode says (Content-Encoding: gzip), unless the status is 204 or 304. To a HEAD
 * request libmicrohttpd sends the same status and headers, Content-Length included, and no
 * body. Returns what MHD_queue_response returned, or MHD_NO when out of memory (the body is
 * freed).
 */
enum MHD_Result gw_answer_body(const struct gw_answer *a, unsigned status, char *body,
                               size_t len, const char *content_type);

/**
 * Queue the 204 to a CORS preflight from the allowed origin a->cors_origin: the common headers,
 * Access-Control-Allow-Methods @p methods, Access-Control-Allow-Headers (GW_CORS_ALLOW_HEADERS)
 * and Access-Control-Max-Age @p max_age_s. Returns as gw_answer_body.
 */
enum MHD_Result gw_answer_preflight(const struct gw_answer *a, const char *methods,
                                    long max_age_s);

/** gw_answer_body with a copy of the NUL-terminated JSON text @p text. */
enum MHD_Result gw_answer_json_text(const struct gw_answer *a, unsigned status,
                                    const char *text);

/**
 * Whether an answer for @p a with the envelope of @p err (GW_OK: not an envelope) carries
 * Connection: close, after which libmicrohttpd closes the connection: a->close, or the error's
 * row asks for it (envelope.h, GW_HDR_CLOSE).
 */
bool gw_answer_closes(const struct gw_answer *a, enum gw_err err);

/**
 * Queue the envelope of @p env with the headers its error's row asks for, and clear @p env.
 * *status is set to the HTTP status answered. Returns as gw_answer_body.
 */
enum MHD_Result gw_answer_envelope(const struct gw_answer *a, struct gw_envelope *env,
                                   int *status);

/** gw_answer_envelope for the local error @p err. */
enum MHD_Result gw_answer_error(const struct gw_answer *a, enum gw_err err, int *status);

/**
 * Queue the answer to an upstream call that did not succeed: @p o failed (its failure's row),
 * or HelpCrunch answered it with a non-2xx status (mapped by gw_envelope_from_upstream, the key
 * masked with @p secret), with the outcome's Retry-After. *err is set to the error answered.
 * Returns as gw_answer_body.
 */
enum MHD_Result gw_answer_outcome(const struct gw_answer *a, const struct gw_outcome *o,
                                  const struct gw_secret *secret, enum gw_err *err,
                                  int *status);

#endif

/*
 * The one error envelope. Every non-2xx answer hcgw gives, upstream or local, is
 *   {"error":{"status":…,"code":…,"message":…,"request_id":…[,"upstream_status":…][,"details":[…]]}}
 * The table of enum gw_err → status, code, message lives in envelope.c; normalizing an upstream
 * answer is a lookup plus reading HelpCrunch's error body, whichever of its shapes it has.
 */
#ifndef HCGW_ENVELOPE_H
#define HCGW_ENVELOPE_H

#include <stddef.h>

#include <json-c/json.h>

#include "hcgw/err.h"

struct gw_secret;

/** Headers an error's answer carries besides the common ones (answer.c writes them). */
enum gw_err_header {
    GW_HDR_RETRY_AFTER = 1 << 0,      /* Retry-After: the seconds of the envelope (or outcome) */
    GW_HDR_ALLOW = 1 << 1,            /* Allow: the methods the matched path takes */
    GW_HDR_WWW_AUTHENTICATE = 1 << 2, /* WWW-Authenticate: Bearer realm="hcgw" */
    GW_HDR_CLOSE = 1 << 3             /* Connection: close: no later byte can be trusted */
};

/** The fixed facts of one error value: the whole policy of its answer. */
struct gw_err_info {
    int status;              /* HTTP status hcgw answers */
    const char *code;        /* stable machine code: "upstream_timeout" */
    const char *message;     /* human text */
    unsigned headers;        /* enum gw_err_header bits */
};

/** One error to render. Plain data; gw_envelope_clear releases details. */
struct gw_envelope {
    enum gw_err err;
    int status;              /* HTTP status answered: the table's (a HelpCrunch 422 stays 422) */
    int upstream_status;     /* 0 when HelpCrunch did not answer */
    long retry_after_s;      /* > 0: send Retry-After with this many seconds */
    json_object *details;    /* NULL or an array of {"code","message"}; owned */
};

/** The table row for @p err (GW_ERR_INTERNAL's row for values outside the table). */
const struct gw_err_info *gw_err_info(enum gw_err err);

/** Fill @p env for a local failure @p err (status from the table, no upstream status). */
void gw_envelope_local(struct gw_envelope *env, enum gw_err err);

/**
 * Fill @p env for a non-2xx HelpCrunch answer with status @p upstream_status and body @p body
 * (@p len bytes, any content, may be NULL). The mapping: 400 → 400 invalid_request;
 * 401/403 → 502 upstream_auth_failed; 404 → 404 not_found; 409 → 409 conflict; 422 → 422
 * invalid_request; 429 → 429 rate_limited; other 4xx and 5xx (and 1xx/3xx) → 502
 * upstream_error. Details come from the error body in any of HelpCrunch's shapes
 * ({"errors":[{code,message}…]} new or old style, {"message","success","code","errors"}), minus
 * the generic "invalid_request" entry, at most GW_MAX_DETAILS, each string cut to
 * GW_MAX_DETAIL_BYTES; they are kept only for answers hcgw passes on as 4xx (400, 404, 409, 422),
 * never for 502s. Any occurrence of the key in a detail is masked with gw_secret_redact
 * (@p secret may be NULL). A body that is not JSON is ignored.
 */
void gw_envelope_from_upstream(struct gw_envelope *env, int upstream_status, const char *body,
                               size_t len, const struct gw_secret *secret);

/**
 * Render @p env as the JSON envelope with @p request_id. Returns a malloc'd NUL-terminated
 * string (length in *len), or NULL when out of memory.
 */
char *gw_envelope_render(const struct gw_envelope *env, const char *request_id, size_t *len);

/** Release what @p env owns (the details) and zero it. */
void gw_envelope_clear(struct gw_envelope *env);

#endif

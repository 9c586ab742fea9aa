/*
 * Errors are values: 0 or a negative enum gw_err. envelope.c holds the one table that maps
 * each to an HTTP status, a stable machine code and a message.
 */
#ifndef HCGW_ERR_H
#define HCGW_ERR_H

enum gw_err {
    GW_OK = 0,
    GW_ERR_ROUTE_NOT_FOUND = -1,        /* 404 route_not_found */
    GW_ERR_METHOD_NOT_ALLOWED = -2,     /* 405 method_not_allowed */
    GW_ERR_INVALID_CONTACT_ID = -3,     /* 400 invalid_contact_id */
    GW_ERR_INVALID_TAG = -4,            /* 400 invalid_tag */
    GW_ERR_INVALID_BODY = -5,           /* 400 invalid_body */
    GW_ERR_INVALID_QUERY = -6,          /* 400 invalid_query */
    GW_ERR_UNSUPPORTED_MEDIA_TYPE = -7, /* 415 unsupported_media_type */
    GW_ERR_BODY_TOO_LARGE = -8,         /* 413 body_too_large */
    GW_ERR_INVALID_REQUEST = -9,        /* 400 (or 422) invalid_request: HelpCrunch refused it */
    GW_ERR_NOT_FOUND = -10,             /* 404 not_found: HelpCrunch has no such contact */
    GW_ERR_CONFLICT = -11,              /* 409 conflict */
    GW_ERR_RATE_LIMITED = -12,          /* 429 rate_limited */
    GW_ERR_UPSTREAM_AUTH_FAILED = -13,  /* 502 upstream_auth_failed: our key was refused */
    GW_ERR_UPSTREAM_ERROR = -14,        /* 502 upstream_error */
    GW_ERR_UPSTREAM_BAD_RESPONSE = -15, /* 502 upstream_bad_response */
    GW_ERR_UPSTREAM_UNAVAILABLE = -16,  /* 502 upstream_unavailable */
    GW_ERR_UPSTREAM_TIMEOUT = -17,      /* 504 upstream_timeout */
    GW_ERR_SHUTTING_DOWN = -18,         /* 503 shutting_down */
    GW_ERR_OVERLOADED = -19,            /* 503 overloaded */
    GW_ERR_INTERNAL = -20,              /* 500 internal_error */
    GW_ERR_NOMEM = -21,                 /* 500 internal_error (out of memory) */
    GW_ERR_URI_TOO_LONG = -22,          /* 414 uri_too_long: longer than GW_MAX_URL_BYTES */
    GW_ERR_UNAUTHENTICATED = -23,       /* 401 unauthenticated: no or no valid client credential */
    GW_ERR_FORBIDDEN = -24,             /* 403 forbidden: the client may not call this route */
    GW_ERR_MALFORMED_REQUEST = -25,     /* 400 malformed_request: ambiguous HTTP framing; closes */
    GW_ERR_KEY_REFUSED = -26,           /* 503 upstream_auth_failed: not ready, key refused */
    GW_ERR_INVALID_IDEMPOTENCY_KEY = -27, /* 400 invalid_idempotency_key: not one valid key */
    GW_ERR_IDEMPOTENCY_KEY_REUSED = -28,  /* 422 idempotency_key_reused: another body */
    GW_ERR_IDEMPOTENCY_KEY_IN_PROGRESS = -29, /* 409 idempotency_key_in_progress */
    GW_ERR_CORS_ORIGIN_NOT_ALLOWED = -30, /* 403 cors_origin_not_allowed: browser origin refused */
    GW_ERR_INVALID_PREFLIGHT = -31,     /* 400 invalid_preflight: Access-Control-Request-Method */
    GW_ERR__LAST = -32                  /* not an error: one past the last */
};

#endif

/*
 * Browsers as callers (CORS): which origins may read hcgw's answers from a script, what a
 * configured origin may look like, and the fixed header lists of a preflight and of an answer
 * to an allowed origin. The policy lives in the configuration (the cors group, a client's
 * origins); request.c decides with these functions and answer.c writes the headers. Everything
 * here is pure or reads only the immutable configuration: any thread.
 */
#ifndef HCGW_CORS_H
#define HCGW_CORS_H

#include <stdbool.h>
#include <stddef.h>

#include "hcgw/config.h"

/**
 * Access-Control-Allow-Headers of a preflight: every request header a script may set on a call
 * to hcgw. Authorization is named on its own: the "*" wildcard would not cover it.
 */
#define GW_CORS_ALLOW_HEADERS                                                                \
    "authorization, content-type, x-request-id, idempotency-key, traceparent, tracestate, " \
    "cache-control, if-none-match"

/** Access-Control-Expose-Headers: the answer headers a script may read besides the safelisted. */
#define GW_CORS_EXPOSE_HEADERS                                                               \
    "X-Request-Id, Retry-After, ETag, Age, Cache-Status, Idempotent-Replayed"

/**
 * The Access-Control-Allow-Origin of the answers to a request whose one Origin header is
 * @p origin (NULL: none was sent, or more than one): "*" when cors.allow_origins is ["*"],
 * @p origin itself when the list holds exactly that string, NULL when there is no cors group
 * or the origin is not listed (then the answer carries no CORS header, and a browser keeps it
 * from the script). The pointer returned is @p origin or a static string, never the config's.
 */
const char *gw_cors_allow_origin(const struct gw_config *cfg, const char *origin);

/**
 * True when client @p c may be used from a page of @p origin: it lists no origins (any origin
 * of cors.allow_origins), or lists exactly this one. @p origin NULL stands for an Origin that
 * names none (more than one was sent), which a client with origins is refused. The caller asks
 * only when the request sent an Origin: without one it is not a browser's cross-origin call.
 */
bool gw_cors_client_allows(const struct gw_client *c, const char *origin);

/**
 * Check one configured origin as browsers serialize it (RFC 6454): "http" or "https", "://",
 * a lower-case host name or IPv4 address or [IPv6 address], an optional ":port" (1..65535, not
 * the scheme's default, which browsers leave out), and nothing else (no path, no trailing
 * slash, no user); at most GW_MAX_ORIGIN_BYTES. "*" is not an origin (config.c handles it).
 * Returns 0, or -1 with the reason in @p why.
 */
int gw_cors_check_origin(const char *value, char *why, size_t whysz);

/**
 * True when @p s is an Access-Control-Request-Method value hcgw reads: an HTTP method token
 * (RFC 9110 tchar) of 1 to GW_MAX_METHOD_BYTES characters.
 */
bool gw_cors_valid_method(const char *s);

#endif

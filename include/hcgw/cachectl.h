/*
 * What a caller asks of the contact cache and what an answer tells of it, in HTTP terms: the
 * request's Cache-Control (no-cache, max-age), the answer's strong ETag and the request's
 * If-None-Match. Pure functions; any thread.
 */
#ifndef HCGW_CACHECTL_H
#define HCGW_CACHECTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/limits.h"

/** No limit on an entry's age beyond the cache's ttl. */
#define GW_CACHECTL_ANY_AGE UINT64_MAX

/**
 * Fold one Cache-Control request header @p value into *max_age_ms (start with
 * GW_CACHECTL_ANY_AGE): "no-cache" and "max-age=0" make it 0 (an upstream call), "max-age=N"
 * makes it at most N seconds. Other directives and malformed ones are ignored, as RFC 9111
 * asks of a cache. NULL is no header.
 */
void gw_cachectl_request(const char *value, uint64_t *max_age_ms);

/**
 * The strong ETag of @p body (@p len bytes): a quoted hex hash of 128 bits of its SHA-256,
 * into @p out. Returns 0, or -1 when libcrypto failed (then @p out is "").
 */
int gw_cachectl_etag(const char *body, size_t len, char out[GW_ETAG_BYTES]);

/**
 * Turn the ETag in @p etag (from gw_cachectl_etag) into the one of the same body sent
 * gzip-compressed: "-gz" inside the quotes. A strong ETag names one representation (RFC 9110
 * section 8.8.3), and the gzip bytes are another one than the identity bytes. "" stays "".
 */
void gw_cachectl_etag_gzip(char etag[GW_ETAG_BYTES]);

/**
 * True when the If-None-Match header @p inm (NULL: none) matches @p etag: "*", or one of its
 * comma-separated tags equal to it, a W/ prefix ignored (the weak comparison RFC 9110 asks for
 * If-None-Match).
 */
bool gw_cachectl_none_match(const char *inm, const char *etag);

#endif

/*
 * Callers and permissions: who is calling (a bearer token, a client certificate verified by
 * hcgw's own TLS, or an identity header set by a trusted service mesh) and whether that client may call the matched route. The clients
 * themselves are configuration (struct gw_client in config.h, filled by config.c with the
 * parsers below); this module holds the checks, the hashing and the token tool's helpers.
 * Everything here is pure or reads only the immutable config: any thread.
 */
#ifndef HCGW_AUTH_H
#define HCGW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/config.h"
#include "hcgw/router.h"

/** Bytes of a SHA-256 digest. */
#define GW_SHA256_BYTES 32
/** Hex digits of a SHA-256 digest. */
#define GW_SHA256_HEX 64
/** Clients in one configuration. */
#define GW_MAX_CLIENTS 1024
/** A client name: 1 to this many characters of [A-Za-z0-9._-]. */
#define GW_MAX_CLIENT_NAME 64
/** A bearer token a caller presents: 1 to this many visible ASCII bytes. */
#define GW_MAX_TOKEN_BYTES 1024
/** A mesh identity (a SPIFFE URI, an X-Client-Id value): 1 to this many visible ASCII bytes. */
#define GW_MAX_IDENTITY_BYTES 1024
/** A mesh identity header name: 1 to this many token characters. */
#define GW_MAX_HEADER_NAME 64
/** Random bytes in a token made by `hcgw token new`. */
#define GW_TOKEN_RANDOM_BYTES 32
/** Characters of such a token: base64url of 32 bytes, without padding. */
#define GW_TOKEN_CHARS 43
/** The header read when mesh_identity_header names the Envoy client-certificate header. */
#define GW_XFCC_HEADER "x-forwarded-client-cert"

/** Who the caller is, or why that could not be decided. */
enum gw_auth_outcome {
    GW_AUTH_OK,               /* a client was identified */
    GW_AUTH_OPEN,             /* no check: auth = "none", or no clients configured */
    GW_AUTH_NO_CREDENTIAL,    /* no Authorization and no (trusted) identity header */
    GW_AUTH_MALFORMED,        /* Authorization is not one "Bearer <token>" */
    GW_AUTH_BAD_TOKEN,        /* no client has this token */
    GW_AUTH_BAD_IDENTITY,     /* the identity header is repeated, or XFCC without one URI */
    GW_AUTH_UNKNOWN_IDENTITY, /* no client has this identity */
    GW_AUTH_BAD_CERTIFICATE,  /* the client certificate's names cannot be read, or name two clients */
    GW_AUTH_UNKNOWN_CERTIFICATE /* no client has any name of the client certificate */
};

struct gw_tls_peer;

/** What a request presents, as request.c found it in the headers. */
struct gw_auth_input {
    const char *authorization;      /* the first Authorization header, or NULL */
    unsigned authorization_count;   /* how many Authorization headers were sent */
    const char *identity;           /* the first mesh identity header, or NULL */
    unsigned identity_count;        /* how many of those were sent */
    const struct gw_tls_peer *peer; /* the connection's client certificate (tls.h), or NULL */
};

/**
 * True when requests must name a client: auth = "clients" and at least one client is
 * configured. With no clients, hcgw is open as it always was (secure defaults refuse to
 * listen beyond loopback that way).
 */
bool gw_auth_required(const struct gw_config *cfg);

/** True for the routes no one needs a credential for: hcgw's own (health, readiness, metrics). */
bool gw_auth_route_public(const struct gw_route *r);

/**
 * Decide who sent @p in. A bearer token, when an Authorization header is present, decides
 * alone (a wrong one is refused even if an identity header would match); otherwise a client
 * certificate, when the connection presented one (in->peer): the client whose identity is one
 * of its URI or DNS names, and it too decides alone; otherwise the identity header, only when
 * cfg->auth.trust_mesh_identity is on. For the XFCC header the
 * identity is the URI of its last element (the one hcgw's own proxy added); for any other
 * header the whole value. Tokens are compared by their SHA-256, in constant time, against
 * every client. Returns GW_AUTH_OK with *client set, or another outcome with *client NULL.
 */
enum gw_auth_outcome gw_auth_identify(const struct gw_config *cfg, const struct gw_auth_input *in,
                                      const struct gw_client **client);

/** True when @p c may call @p r. */
bool gw_auth_allows(const struct gw_client *c, const struct gw_route *r);

/**
 * True when @p r changes HelpCrunch data (anything but a GET or the search): such requests
 * get an audit line. A route added later is a write unless it is a read by these rules.
 */
bool gw_auth_route_is_write(const struct gw_route *r);

/** The stable name of an outcome for the access line ("no_credential", "bad_token", ...). */
const char *gw_auth_outcome_name(enum gw_auth_outcome o);

/**
 * Add the routes that the routes entry @p spec names to @p mask (bit 1 << enum gw_route_id):
 * a route name ("tag_put"), "METHOD /pattern" exactly as in the table ("GET /contacts/{id}"),
 * or "*" for every route that needs a credential. Returns 0; -1 for an unknown entry; -2 for
 * a public route (one that needs no permission).
 */
int gw_auth_parse_route(const char *spec, uint64_t *mask);

/** Read 64 hex digits (either case, nothing else) into @p out. Returns 0 or -1. */
int gw_auth_parse_sha256_hex(const char *hex, size_t len, unsigned char out[GW_SHA256_BYTES]);

/** SHA-256 of @p len bytes (OpenSSL's libcrypto). Returns 0, or -1 if libcrypto failed. */
int gw_auth_sha256(const void *data, size_t len, unsigned char out[GW_SHA256_BYTES]);

/**
 * The URI of the last element of an X-Forwarded-Client-Cert value (Envoy's format: elements
 * separated by ',', key=value pairs by ';', values optionally in double quotes with \" and \\
 * escapes). Copies it, NUL-terminated, into @p out (capacity @p cap). Returns 0; -1 when the
 * value is malformed, the last element has no URI or more than one, or it does not fit.
 */
int gw_auth_xfcc_uri(const char *xfcc, char *out, size_t cap);

/** True when @p name is a valid client name (1..GW_MAX_CLIENT_NAME of [A-Za-z0-9._-]). */
bool gw_auth_valid_client_name(const char *name);

/**
 * Make a new token: GW_TOKEN_RANDOM_BYTES from getrandom(2), base64url without padding, into
 * @p token (room for GW_TOKEN_CHARS + 1), and its SHA-256 into @p hash. The random bytes are
 * wiped. Returns 0 or -1.
 */
int gw_auth_token_new(char token[GW_TOKEN_CHARS + 1], unsigned char hash[GW_SHA256_BYTES]);

#endif

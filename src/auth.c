/*
 * Callers and permissions. hcgw holds write access to every contact of the account, so each
 * request that is not one of hcgw's own (health, readiness, metrics) must name a configured
 * client, by a bearer token, by a client certificate that hcgw's own TLS verified, or, when the
 * operator says the service mesh can be trusted to set it, by an identity header; and that
 * client must be allowed the matched route.
 *
 * Tokens are never stored: the config holds their SHA-256, and a presented token is hashed and
 * compared with every client's hash in constant time (a digest comparison would leak little,
 * but the cost of doing it right is nothing). Hashing uses OpenSSL's libcrypto, which libcurl
 * already brings in, rather than a hand-written SHA-256. Nothing here logs or copies a token.
 */
#include "hcgw/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "hcgw/router.h"
#include "hcgw/secret.h"
#include "hcgw/text.h"
#include "hcgw/tls.h"

_Static_assert(GW_ROUTE__COUNT <= 64, "a client's routes are a 64-bit mask: widen it");
_Static_assert(sizeof(((struct gw_client *)0)->token_sha256) == GW_SHA256_BYTES,
               "struct gw_client holds a SHA-256");

static const char *const outcome_names[] = {
    [GW_AUTH_OK] = "ok",
    [GW_AUTH_OPEN] = "open",
    [GW_AUTH_NO_CREDENTIAL] = "no_credential",
    [GW_AUTH_MALFORMED] = "malformed_authorization",
    [GW_AUTH_BAD_TOKEN] = "bad_token",
    [GW_AUTH_BAD_IDENTITY] = "bad_identity_header",
    [GW_AUTH_UNKNOWN_IDENTITY] = "unknown_identity",
    [GW_AUTH_BAD_CERTIFICATE] = "bad_client_certificate",
    [GW_AUTH_UNKNOWN_CERTIFICATE] = "unknown_client_certificate",
};

const char *gw_auth_outcome_name(enum gw_auth_outcome o)
{
    const char *name = "unknown";

    if ((size_t)o < sizeof(outcome_names) / sizeof(outcome_names[0]) && outcome_names[o])
        name = outcome_names[o];
    return name;
}

bool gw_auth_required(const struct gw_config *cfg)
{
    return cfg->auth.mode == GW_AUTH_MODE_CLIENTS && cfg->auth.nclients > 0;
}

bool gw_auth_route_public(const struct gw_route *r)
{
    return r != NULL && r->reply == GW_REPLY_LOCAL;
}

bool gw_auth_allows(const struct gw_client *c, const struct gw_route *r)
{
    return c != NULL && r != NULL && (unsigned)r->id < GW_ROUTE__COUNT &&
           (c->routes & ((uint64_t)1 << r->id)) != 0;
}

bool gw_auth_route_is_write(const struct gw_route *r)
{
    return r != NULL && r->reply != GW_REPLY_LOCAL && strcmp(r->method, "GET") != 0 &&
           r->id != GW_ROUTE_CONTACTS_SEARCH;
}

int gw_auth_parse_route(const char *spec, uint64_t *mask)
{
    size_t n = 0;
    const struct gw_route *table = gw_router_table(&n);
    uint64_t add = 0;
    bool public_route = false;
    int rc = -1;

    if (strcmp(spec, "*") == 0) {
        for (size_t i = 0; i < n; i++) {
            if (!gw_auth_route_public(&table[i]))
                add |= (uint64_t)1 << table[i].id;
        }
        *mask |= add;
        rc = 0;
        goto out;
    }
    for (size_t i = 0; i < n && add == 0 && !public_route; i++) {
        const struct gw_route *r = &table[i];
        size_t mlen = strlen(r->method);
        bool named = strcmp(spec, r->name) == 0;
        bool pattern = strncmp(spec, r->method, mlen) == 0 && spec[mlen] == ' ' &&
                       strcmp(spec + mlen + 1, r->pattern) == 0;

        if (!named && !pattern)
            continue;
        if (gw_auth_route_public(r))
            public_route = true;
        else
            add = (uint64_t)1 << r->id;
    }
    if (public_route) {
        rc = -2;
    } else if (add != 0) {
        *mask |= add;
        rc = 0;
    }
out:
    return rc;
}

int gw_auth_parse_sha256_hex(const char *hex, size_t len, unsigned char out[GW_SHA256_BYTES])
{
    unsigned char tmp[GW_SHA256_BYTES];
    int rc = -1;

    if (len != GW_SHA256_HEX)
        goto out;
    for (size_t i = 0; i < GW_SHA256_BYTES; i++) {
        int hi = gw_text_hex_value(hex[2 * i]), lo = gw_text_hex_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            goto out;
        tmp[i] = (unsigned char)(hi << 4 | lo);
    }
    memcpy(out, tmp, sizeof(tmp));
    rc = 0;
out:
    return rc;
}

/*
 * The SHA-256 implementation, looked up once. Given EVP_sha256(), OpenSSL 3 looks the
 * algorithm up in its providers on every EVP_Digest (EVP_MD_fetch: about 5,000 instructions,
 * half the cost of checking a client's token); an algorithm fetched once is used as it is.
 * Kept for the process's life (never freed), and read-only once set: pthread_once makes it
 * safe for every worker.
 */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static const EVP_MD *sha256_md;

static void fetch_sha256(void)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#endif
    if (sha256_md == NULL)
        sha256_md = EVP_sha256();
}

int gw_auth_sha256(const void *data, size_t len, unsigned char out[GW_SHA256_BYTES])
{
    unsigned int n = 0;
    int rc = -1;

    pthread_once(&sha256_once, fetch_sha256);
    /* EVP_Digest, not the SHA256() shortcut: the same call in every OpenSSL from 1.1 to 3.x. */
    if (EVP_Digest(data, len, out, &n, sha256_md, NULL) == 1 && n == GW_SHA256_BYTES)
        rc = 0;
    return rc;
}

bool gw_auth_valid_client_name(const char *name)
{
    size_t n = 0;
    bool ok = name != NULL && name[0] != '\0';

    for (; ok && name[n] != '\0'; n++) {
        char c = name[n];

        ok = n < GW_MAX_CLIENT_NAME &&
             ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-');
    }
    return ok;
}

/* ---- X-Forwarded-Client-Cert ---- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Envoy writes XFCC as elements separated by ',', each a list of key=value pairs separated by
 * ';'; a value holding ',', ';', '=' or '"' is double-quoted, with '"' (and '\') escaped by a
 * backslash. Subject="CN=a,OU=b" is why a naive split on ',' is wrong. Each proxy that appends
 * adds one element at the end, so the last element is the one the proxy in front of hcgw
 * wrote about the peer it accepted; earlier ones came with the request and prove nothing.
 */
int gw_auth_xfcc_uri(const char *xfcc, char *out, size_t cap)
{
    const char *p = xfcc;
    unsigned uris = 0;      /* URI pairs in the current element */
    size_t len = 0;         /* bytes of the current element's URI in out */
    bool too_long = false;
    int rc = -1;

    if (p == NULL || cap == 0)
        goto out;
    out[0] = '\0';
    for (;;) {
        const char *key;
        size_t keylen;
        bool is_uri;

        while (is_ows(*p))
            p++;
        key = p;
        while (*p != '\0' && *p != '=' && *p != ';' && *p != ',' && *p != '"')
            p++;
        keylen = (size_t)(p - key);
        while (keylen > 0 && is_ows(key[keylen - 1]))
            keylen--;
        if (*p != '=' || keylen == 0)
            goto out;
        p++;
        is_uri = keylen == 3 && strncasecmp(key, "URI", 3) == 0;
        if (is_uri) {
            uris++;
            len = 0;
        }
        while (is_ows(*p))
            p++;
        if (*p == '"') {
            for (p++; *p != '"'; p++) {
                if (*p == '\\' && p[1] != '\0')
                    p++;
                if (*p == '\0')
                    goto out; /* no closing quote */
                if (is_uri) {
                    if (len + 1 < cap)
                        out[len++] = *p;
                    else
                        too_long = true;
                }
            }
            p++;
            while (is_ows(*p))
                p++;
        } else {
            const char *v = p;
            size_t vlen;

            while (*p != '\0' && *p != ';' && *p != ',' && *p != '"')
                p++;
            if (*p == '"')
                goto out; /* a quote inside an unquoted value */
            vlen = (size_t)(p - v);
            while (vlen > 0 && is_ows(v[vlen - 1]))
                vlen--;
            if (is_uri) {
                if (vlen < cap) {
                    memcpy(out, v, vlen);
                    len = vlen;
                } else {
                    too_long = true;
                }
            }
        }
        if (is_uri)
            out[len < cap ? len : cap - 1] = '\0';
        if (*p == ';') {
            p++;
        } else if (*p == ',') {
            /* A new element: only the last one counts. */
            p++;
            uris = 0;
            len = 0;
            too_long = false;
            out[0] = '\0';
        } else if (*p == '\0') {
            break;
        } else {
            goto out; /* something after a quoted value */
        }
    }
    if (uris == 1 && len > 0 && !too_long)
        rc = 0;
out:
    if (rc != 0 && out != NULL && cap > 0)
        out[0] = '\0';
    return rc;
}

/* ---- identifying a request ---- */

static bool visible_ascii(const char *s, size_t len)
{
    bool ok = true;

    for (size_t i = 0; i < len && ok; i++)
        ok = (unsigned char)s[i] >= 0x21 && (unsigned char)s[i] <= 0x7e;
    return ok;
}

/*
 * "Bearer <token>": the scheme in any case (RFC 7235), one or more spaces, then the token,
 * visible ASCII only. Every client's hash is compared, whatever matched before, so the time
 * taken does not depend on which client (if any) holds the token.
 */
static enum gw_auth_outcome by_token(const struct gw_config *cfg, const struct gw_auth_input *in,
                                     const struct gw_client **client)
{
    static const char scheme[] = "Bearer";
    const char *v = in->authorization;
    const char *token;
    unsigned char digest[GW_SHA256_BYTES];
    const struct gw_client *found = NULL;
    size_t len;
    enum gw_auth_outcome o = GW_AUTH_MALFORMED;

    if (in->authorization_count != 1 || v == NULL)
        goto out;
    if (strncasecmp(v, scheme, sizeof(scheme) - 1) != 0 || v[sizeof(scheme) - 1] != ' ')
        goto out;
    token = v + sizeof(scheme) - 1;
    while (*token == ' ')
        token++;
    len = strlen(token);
    if (len == 0 || len > GW_MAX_TOKEN_BYTES || !visible_ascii(token, len))
        goto out;
    if (gw_auth_sha256(token, len, digest) != 0) {
        /* Refuse rather than let a libcrypto failure open the door. */
        o = GW_AUTH_BAD_TOKEN;
        goto out;
    }
    for (size_t i = 0; i < cfg->auth.nclients; i++) {
        const struct gw_client *c = &cfg->auth.clients[i];
        bool same = c->has_token &&
                    CRYPTO_memcmp(digest, c->token_sha256, GW_SHA256_BYTES) == 0;

        if (same && found == NULL)
            found = c;
    }
    o = found != NULL ? GW_AUTH_OK : GW_AUTH_BAD_TOKEN;
    *client = found;
out:
    gw_secret_wipe(digest, sizeof(digest));
    return o;
}

static enum gw_auth_outcome by_identity(const struct gw_config *cfg,
                                        const struct gw_auth_input *in,
                                        const struct gw_client **client)
{
    char uri[GW_MAX_IDENTITY_BYTES + 1];
    const char *id = in->identity;
    size_t len;
    enum gw_auth_outcome o = GW_AUTH_BAD_IDENTITY;

    /* Two values would leave the choice to whoever added the second: refuse both. */
    if (in->identity_count != 1 || id == NULL)
        goto out;
    if (strcmp(cfg->auth.mesh_identity_header, GW_XFCC_HEADER) == 0) {
        if (gw_auth_xfcc_uri(id, uri, sizeof(uri)) != 0)
            goto out;
        id = uri;
    }
    len = strlen(id);
    if (len == 0 || len > GW_MAX_IDENTITY_BYTES || !visible_ascii(id, len))
        goto out;
    o = GW_AUTH_UNKNOWN_IDENTITY;
    for (size_t i = 0; i < cfg->auth.nclients && o != GW_AUTH_OK; i++) {
        const struct gw_client *c = &cfg->auth.clients[i];

        if (c->identity != NULL && strcmp(c->identity, id) == 0) {
            *client = c;
            o = GW_AUTH_OK;
        }
    }
out:
    return o;
}

/*
 * A client certificate, verified at the handshake, names the client whose identity equals one
 * of its URI or DNS names, compared exactly. Names that match two different clients leave the
 * choice to whoever wrote the certificate: refused, as is a certificate whose names could not
 * all be read.
 */
static enum gw_auth_outcome by_certificate(const struct gw_config *cfg,
                                           const struct gw_tls_peer *peer,
                                           const struct gw_client **client)
{
    const struct gw_client *found = NULL;
    enum gw_auth_outcome o = GW_AUTH_BAD_CERTIFICATE;

    if (peer->unreadable)
        goto out;
    for (unsigned n = 0; n < peer->count; n++) {
        for (size_t i = 0; i < cfg->auth.nclients; i++) {
            const struct gw_client *c = &cfg->auth.clients[i];

            if (c->identity == NULL || strcmp(c->identity, peer->names[n]) != 0)
                continue;
            if (found != NULL && found != c)
                goto out;
            found = c;
        }
    }
    o = found != NULL ? GW_AUTH_OK : GW_AUTH_UNKNOWN_CERTIFICATE;
    *client = found;
out:
    return o;
}

enum gw_auth_outcome gw_auth_identify(const struct gw_config *cfg, const struct gw_auth_input *in,
                                      const struct gw_client **client)
{
    enum gw_auth_outcome o = GW_AUTH_NO_CREDENTIAL;

    *client = NULL;
    if (!gw_auth_required(cfg))
        o = GW_AUTH_OPEN;
    else if (in->authorization_count > 0)
        o = by_token(cfg, in, client);
    else if (in->peer != NULL && in->peer->presented)
        o = by_certificate(cfg, in->peer, client);
    else if (cfg->auth.trust_mesh_identity && in->identity_count > 0)
        o = by_identity(cfg, in, client);
    return o;
}

/* ---- the token tool ---- */

static void base64url(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
}

_Static_assert((GW_TOKEN_RANDOM_BYTES * 4 + 2) / 3 == GW_TOKEN_CHARS,
               "GW_TOKEN_CHARS is base64url of GW_TOKEN_RANDOM_BYTES without padding");

int gw_auth_token_new(char token[GW_TOKEN_CHARS + 1], unsigned char hash[GW_SHA256_BYTES])
{
    unsigned char raw[GW_TOKEN_RANDOM_BYTES];
    size_t got = 0;
    int rc = -1;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto out;
        got += (size_t)n;
    }
    base64url(raw, sizeof(raw), token);
    if (gw_auth_sha256(token, GW_TOKEN_CHARS, hash) != 0) {
        gw_secret_wipe(token, GW_TOKEN_CHARS + 1);
        goto out;
    }
    rc = 0;
out:
    gw_secret_wipe(raw, sizeof(raw));
    return rc;
}

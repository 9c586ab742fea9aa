/*
 * Browsers as callers (CORS). A page's script may read hcgw's answers only when hcgw names the
 * page's origin in Access-Control-Allow-Origin; which origins those are is configuration (the
 * cors group, narrowed per client by its origins). Origins are compared byte for byte, so the
 * configuration must hold them exactly as browsers serialize them: the checks below refuse
 * any other spelling at load (upper case, a default port, a trailing slash) instead of letting
 * it silently never match.
 */
#include "hcgw/cors.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "hcgw/limits.h"

const char *gw_cors_allow_origin(const struct gw_config *cfg, const char *origin)
{
    const char *allow = NULL;

    if (!cfg->cors.enabled || origin == NULL)
        goto out;
    if (cfg->cors.any) {
        allow = "*";
        goto out;
    }
    for (size_t i = 0; i < cfg->cors.allow_origins.n && allow == NULL; i++) {
        if (strcmp(cfg->cors.allow_origins.v[i], origin) == 0)
            allow = origin;
    }
out:
    return allow;
}

bool gw_cors_client_allows(const struct gw_client *c, const char *origin)
{
    bool ok = c->origins.n == 0;

    for (size_t i = 0; i < c->origins.n && !ok && origin != NULL; i++)
        ok = strcmp(c->origins.v[i], origin) == 0;
    return ok;
}

/* An RFC 9110 token character. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

bool gw_cors_valid_method(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++) {
        if (n >= GW_MAX_METHOD_BYTES || !is_tchar(s[n]))
            return false;
    }
    return n > 0;
}

/*
 * The host of an origin, @p len bytes at @p h: a bracketed IPv6 address in the form browsers
 * write it (inet_ntop's), a dotted IPv4 address in its plain form, or a lower-case ASCII name.
 */
static int check_host(const char *h, size_t len, char *why, size_t whysz)
{
    char text[INET6_ADDRSTRLEN + 1];
    char canon[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];
    bool dotted = true;

    if (len == 0) {
        snprintf(why, whysz, "has no host");
        return -1;
    }
    if (h[0] == '[') {
        if (len < 3 || h[len - 1] != ']' || len - 2 >= sizeof(text)) {
            snprintf(why, whysz, "has a malformed IPv6 host (expected [address])");
            return -1;
        }
        memcpy(text, h + 1, len - 2);
        text[len - 2] = '\0';
        if (inet_pton(AF_INET6, text, addr) != 1 ||
            inet_ntop(AF_INET6, addr, canon, sizeof(canon)) == NULL) {
            snprintf(why, whysz, "has a malformed IPv6 host (expected [address])");
            return -1;
        }
        if (strcmp(canon, text) != 0) {
            snprintf(why, whysz, "must write the IPv6 address as browsers send it: [%s]",
                     canon);
            return -1;
        }
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        char c = h[i];

        if (c >= 'A' && c <= 'Z') {
            snprintf(why, whysz, "must be in lower case, as browsers send it");
            return -1;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
            snprintf(why, whysz, "has a host that is not an ASCII name or address (byte %zu; "
                                 "write an international name in punycode)", i + 1);
            return -1;
        }
        if (!((c >= '0' && c <= '9') || c == '.'))
            dotted = false;
    }
    if (!dotted)
        return 0;
    /* Browsers write an IPv4 host in its plain dotted form ("127.1" becomes 127.0.0.1). */
    if (len < sizeof(text)) {
        memcpy(text, h, len);
        text[len] = '\0';
        if (inet_pton(AF_INET, text, addr) == 1 &&
            inet_ntop(AF_INET, addr, canon, sizeof(canon)) != NULL && strcmp(canon, text) == 0)
            return 0;
    }
    snprintf(why, whysz, "has a host that is not a plain dotted IPv4 address");
    return -1;
}

int gw_cors_check_origin(const char *value, char *why, size_t whysz)
{
    size_t len = strlen(value);
    const char *host;
    const char *end;
    const char *colon = NULL;
    long port = 0;
    long default_port;
    int rc = -1;

    if (len == 0 || len > GW_MAX_ORIGIN_BYTES) {
        snprintf(why, whysz, "must be an origin of 1 to %d bytes (scheme://host[:port])",
                 GW_MAX_ORIGIN_BYTES);
        goto out;
    }
    if (strncmp(value, "https://", 8) == 0) {
        host = value + 8;
        default_port = 443;
    } else if (strncmp(value, "http://", 7) == 0) {
        host = value + 7;
        default_port = 80;
    } else {
        snprintf(why, whysz, "must start with https:// or http:// in lower case, as browsers "
                             "send an origin (not \"null\", not a file: page)");
        goto out;
    }
    end = host + strcspn(host, "/?#@\\");
    if (*end != '\0') {
        snprintf(why, whysz, "must be scheme://host[:port] only, as browsers send an origin: "
                             "no user, path, query or trailing slash");
        goto out;
    }
    if (host[0] == '[') {
        const char *close = strchr(host, ']');

        /* Whatever follows the bracket must be a port: anything else is refused below. */
        if (close != NULL && close[1] != '\0')
            colon = close + 1;
    } else {
        colon = strchr(host, ':');
    }
    if (check_host(host, colon != NULL ? (size_t)(colon - host) : (size_t)(end - host), why,
                   whysz) != 0)
        goto out;
    if (colon != NULL) {
        const char *d = colon + 1;

        if (*colon != ':' || *d == '\0' || *d == '0' || strlen(d) > 5) {
            snprintf(why, whysz, "has a bad port (expected :1 to :65535, no leading zero)");
            goto out;
        }
        for (; *d != '\0'; d++) {
            if (*d < '0' || *d > '9') {
                snprintf(why, whysz, "has a bad port (expected :1 to :65535, no leading zero)");
                goto out;
            }
            port = port * 10 + (*d - '0');
        }
        if (port > 65535) {
            snprintf(why, whysz, "has a bad port (expected :1 to :65535, no leading zero)");
            goto out;
        }
        if (port == default_port) {
            snprintf(why, whysz, "must leave out :%ld, the scheme's default port, as browsers "
                                 "do", default_port);
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

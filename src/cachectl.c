/*
 * Cache-Control, ETag and If-None-Match for the contact cache (cachectl.h). The parsers are
 * lenient where RFC 9111 and RFC 9110 say a recipient ignores what it does not understand, and
 * never read past the header's end.
 */
#include "hcgw/cachectl.h"

#include <string.h>
#include <strings.h>

#include "hcgw/auth.h"
#include "hcgw/text.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* One directive [p, end): no-cache, or max-age=digits. */
static void directive(const char *p, const char *end, uint64_t *max_age_ms)
{
    static const char max_age[] = "max-age=";
    size_t n = (size_t)(end - p);
    uint64_t s = 0;
    size_t i;

    if (n == 8 && strncasecmp(p, "no-cache", 8) == 0) {
        *max_age_ms = 0;
        return;
    }
    if (n <= sizeof(max_age) - 1 || strncasecmp(p, max_age, sizeof(max_age) - 1) != 0)
        return;
    for (i = sizeof(max_age) - 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return;
        /* Past a day of seconds, the ttl is the bound anyway. */
        if (s < 86400ULL * 365)
            s = s * 10 + (uint64_t)(p[i] - '0');
    }
    if (s * 1000 < *max_age_ms)
        *max_age_ms = s * 1000;
}

void gw_cachectl_request(const char *value, uint64_t *max_age_ms)
{
    const char *p = value;
    const char *end;
    const char *last;

    if (value == NULL)
        return;
    while (*p != '\0') {
        while (is_space(*p) || *p == ',')
            p++;
        end = p;
        while (*end != '\0' && *end != ',')
            end++;
        last = end;
        while (last > p && is_space(last[-1]))
            last--;
        if (last > p)
            directive(p, last, max_age_ms);
        p = end;
    }
}

int gw_cachectl_etag(const char *body, size_t len, char out[GW_ETAG_BYTES])
{
    unsigned char md[GW_SHA256_BYTES];

    out[0] = '\0';
    /* The SHA-256 that auth.c fetched once from OpenSSL's providers, not one per ETag. */
    if (gw_auth_sha256(body, len, md) != 0)
        return -1;
    out[0] = '"';
    gw_text_hex_encode(md, 16, out + 1);
    out[33] = '"';
    out[34] = '\0';
    return 0;
}

void gw_cachectl_etag_gzip(char etag[GW_ETAG_BYTES])
{
    static const char suffix[] = "-gz\"";
    size_t n = strnlen(etag, GW_ETAG_BYTES);

    if (n < 2 || n + sizeof(suffix) - 2 >= GW_ETAG_BYTES || etag[n - 1] != '"')
        return;
    memcpy(etag + n - 1, suffix, sizeof(suffix));
}

bool gw_cachectl_none_match(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    const char *end;

    if (inm == NULL || elen == 0)
        return false;
    while (*p != '\0') {
        while (is_space(*p) || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        end = p;
        while (*end != '\0' && *end != ',' && !is_space(*end))
            end++;
        if ((size_t)(end - p) == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = end;
        while (*p != '\0' && *p != ',')
            p++;
    }
    return false;
}

/*
 * Small text helpers shared by the router, the query check, the body validator, the logs and
 * the server: strict UTF-8 decoding, tag names, tag colours, the JSON media type, hex digits
 * and percent decoding. They are pure functions over caller-owned bytes, allocate nothing and
 * run on any thread.
 */
#include "hcgw/text.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"

/*
 * Decode one code point from @p s (@p len > 0 bytes left). Returns the number of bytes it
 * takes and stores the code point in *cp, or 0 when the bytes are not well-formed UTF-8.
 * The byte ranges are those of the Unicode standard's table of well-formed sequences: by
 * narrowing the second byte after E0, ED, F0 and F4 they exclude overlong forms, the UTF-16
 * surrogates D800..DFFF and everything above U+10FFFF without decoding first and checking
 * after.
 */
static size_t decode_one(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char b0 = s[0];
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t need;
    uint32_t v;
    size_t i;

    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        v = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        v = b0 & 0x0Fu;
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        v = b0 & 0x07u;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;
    } else {
        /* A stray continuation byte, C0/C1 (always overlong) or F5..FF (beyond U+10FFFF). */
        return 0;
    }
    if (len < need + 1)
        return 0;
    for (i = 1; i <= need; i++) {
        unsigned char b = s[i];
        /* Only the second byte has the narrowed range; the others are plain continuations. */
        unsigned char min = i == 1 ? lo : 0x80;
        unsigned char max = i == 1 ? hi : 0xBF;

        if (b < min || b > max)
            return 0;
        v = (v << 6) | (b & 0x3Fu);
    }
    *cp = v;
    return need + 1;
}

long gw_text_utf8_count(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    long count = 0;
    size_t off = 0;

    if (s == NULL && len > 0)
        return -1;
    while (off < len) {
        uint32_t cp;
        size_t n = decode_one(p + off, len - off, &cp);

        if (n == 0)
            return -1;
        off += n;
        count++;
    }
    return count;
}

int gw_text_check_tag(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    size_t off = 0;
    int rc = GW_ERR_INVALID_TAG;

    if (s == NULL || len == 0 || len > GW_MAX_TAG_BYTES)
        goto out;
    while (off < len) {
        uint32_t cp;
        size_t n = decode_one(p + off, len - off, &cp);

        if (n == 0)
            goto out;
        /* C0 controls, DEL and the C1 controls: none has a place in a label a person reads. */
        if (cp <= 0x1F || (cp >= 0x7F && cp <= 0x9F))
            goto out;
        off += n;
        chars++;
        if (chars > GW_MAX_TAG_CHARS)
            goto out;
    }
    rc = 0;
out:
    return rc;
}

bool gw_text_is_color(const char *s)
{
    size_t len;
    size_t i;

    if (s == NULL || s[0] != '#')
        return false;
    /* Bounded scan: anything longer than "#rrggbb" is not a colour, however long it is. */
    len = strnlen(s, sizeof "#rrggbb");
    if (len != sizeof "#rgb" - 1 && len != sizeof "#rrggbb" - 1)
        return false;
    for (i = 1; i < len; i++) {
        if (gw_text_hex_value(s[i]) < 0)
            return false;
    }
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool gw_text_is_json_media_type(const char *ct)
{
    static const char json[] = "application/json";
    const char *p = ct;

    if (p == NULL)
        return false;
    while (is_ows(*p))
        p++;
    /*
     * Type and subtype are case-insensitive tokens (RFC 9110, 8.3.1). Comparing the whole
     * "application/json" and then demanding an end, whitespace or ';' right after it is what
     * keeps "application/jsonx" and "application/json-patch+json" out.
     */
    if (strncasecmp(p, json, sizeof json - 1) != 0)
        return false;
    p += sizeof json - 1;
    while (is_ows(*p))
        p++;
    /* Parameters (a charset, say) do not change what the body is, so they are not read. */
    return *p == '\0' || *p == ';';
}

void gw_text_hex_encode(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * n] = '\0';
}

long gw_text_percent_decode(const char *s, size_t len, char *out, size_t cap, unsigned flags)
{
    size_t i = 0;
    size_t o = 0;
    long rc = -1;

    if (out == NULL || cap == 0)
        goto out;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];

        /* One byte must stay free for the NUL. */
        if (o + 1 >= cap)
            goto out;
        if (c == '%') {
            int hi;
            int lo;

            if (len - i < 3)
                goto out;
            hi = gw_text_hex_value(s[i + 1]);
            lo = gw_text_hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                goto out;
            c = (unsigned char)(hi * 16 + lo);
            i += 3;
        } else {
            i++;
        }
        if (c == '\0' && (flags & GW_TEXT_PCT_NO_NUL))
            goto out;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    rc = (long)o;
out:
    if (rc < 0 && out != NULL && cap > 0)
        out[0] = '\0';
    return rc;
}

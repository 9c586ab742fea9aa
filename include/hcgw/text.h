/*
 * Small text helpers shared by the router, the query check, the body validator, the JSON check,
 * the logs and the credentials: UTF-8, tag names, colours, media types, hex digits and percent
 * decoding. Pure functions over caller-owned bytes; they allocate nothing; any thread.
 */
#ifndef HCGW_TEXT_H
#define HCGW_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Check that @p s (@p len bytes, may contain NUL) is valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF). Returns the number of code points, or -1.
 */
long gw_text_utf8_count(const char *s, size_t len);

/**
 * Check a (decoded) tag name: valid UTF-8, 1..GW_MAX_TAG_CHARS code points, no control
 * characters (U+0000..U+001F, U+007F, U+0080..U+009F). Returns 0 or GW_ERR_INVALID_TAG.
 */
int gw_text_check_tag(const char *s, size_t len);

/** True when @p s is a colour "#rgb" or "#rrggbb" (hex digits, either case). */
bool gw_text_is_color(const char *s);

/**
 * True when the Content-Type header value @p ct is application/json, case-insensitive, with
 * optional parameters ("application/json; charset=utf-8"). NULL is false.
 */
bool gw_text_is_json_media_type(const char *ct);

/** gw_text_percent_decode flag: refuse a NUL in the result (from "%00", or sent as is). */
#define GW_TEXT_PCT_NO_NUL 1u

/**
 * The value of the hex digit @p c ('0'-'9', 'a'-'f', 'A'-'F'): 0 to 15, or -1 for any other
 * character. Inline: the JSON check and the percent decoder call it per character.
 */
static inline int gw_text_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/**
 * Write the @p n bytes at @p in as 2n lowercase hex digits and a NUL into @p out, which has
 * room for 2n + 1 bytes.
 */
void gw_text_hex_encode(const void *in, size_t n, char *out);

/**
 * Percent-decode the @p len bytes at @p s into @p out (@p cap bytes, the NUL included): each
 * "%XY" (two hex digits, either case) becomes its byte, every other byte is kept as it is; '+'
 * stays a plus (a space only in form bodies, which hcgw does not decode). With
 * GW_TEXT_PCT_NO_NUL a NUL in the result is refused. Returns the decoded length (out
 * NUL-terminated), or -1 for a '%' without two hex digits, a refused NUL, or a result that does
 * not fit in cap - 1 bytes; then out is "" (when cap > 0).
 */
long gw_text_percent_decode(const char *s, size_t len, char *out, size_t cap, unsigned flags);

#endif

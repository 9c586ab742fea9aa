/*
 * Small text checks shared by the router and the body validator: UTF-8, tag names, colours,
 * media types. Pure functions; any thread.
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

#endif

/*
 * The list route's query string. The caller's raw query is checked strictly (known keys, each
 * at most once, values from a fixed set or plain decimal numbers) and the HelpCrunch query is
 * written anew from the checked values, so nothing the caller typed reaches the upstream URL
 * unless it is one of those values.
 */
#include "hcgw/query.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/text.h"

/* HelpCrunch pages hold 1 to this many customers; it is also hcgw's default page. */
#define LIST_MAX_LIMIT 100
/* HelpCrunch documents no bound on offset; a signed 32-bit value is the conservative one. */
#define LIST_MAX_OFFSET INT32_MAX
/*
 * Numbers saturate here while they are read: the value is above every bound checked below, so
 * a number of any length is read without overflow, and a long one is still clamped (a limit)
 * or out of range (an offset) as its true value would be.
 */
#define NUMBER_SATURATED ((uint64_t)1 << 40)

static const char *const sort_values[] = { "customers.firstSeen", "customers.lastSeen" };
static const char *const order_values[] = { "asc", "desc" };

/*
 * A decoded value is never longer than the raw query it comes from, which is part of a URL of
 * at most GW_MAX_URL_BYTES. The bound is the URL's and not the longest legal word's, because a
 * limit of any number of digits is legal: it is clamped, not refused for its size.
 */
#define VALUE_MAX_BYTES GW_MAX_URL_BYTES

/*
 * Percent-decode @p len bytes of @p s into @p out (at most VALUE_MAX_BYTES, NUL-terminated).
 * '+' is not turned into a space: no legal value has either, so both are refused alike. A
 * decoded NUL would cut the value short when it is compared as a C string: refused.
 */
static bool decode_value(const char *s, size_t len, char out[VALUE_MAX_BYTES + 1])
{
    return gw_text_percent_decode(s, len, out, VALUE_MAX_BYTES + 1, GW_TEXT_PCT_NO_NUL) >= 0;
}

/* A plain decimal number: one or more digits, no sign, no space; saturated (see above). */
static bool parse_number(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (s[0] == '\0')
        return false;
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        /* Below 2^40 before the step, below 2^44 after it: no overflow. */
        if (v < NUMBER_SATURATED)
            v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v < NUMBER_SATURATED ? v : NUMBER_SATURATED;
    return true;
}

/* The entry of @p values equal to @p s, or NULL. */
static const char *pick(const char *const *values, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(values[i], s) == 0)
            return values[i];
    }
    return NULL;
}

static bool key_is(const char *key, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(key, name, len) == 0;
}

int gw_query_list(const char *raw, char *out, size_t cap)
{
    uint64_t limit = LIST_MAX_LIMIT;
    uint64_t offset = 0;
    bool seen_limit = false;
    bool seen_offset = false;
    const char *sort = NULL;
    const char *order = NULL;
    const char *p = raw != NULL ? raw : "";
    int n;
    int rc = GW_ERR_INVALID_QUERY;

    if (out == NULL || cap == 0) {
        rc = GW_ERR_INTERNAL;
        goto out;
    }
    out[0] = '\0';
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t pair_len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', pair_len);
        char value[VALUE_MAX_BYTES + 1];
        size_t key_len;

        /* "a&&b", a trailing '&' and a bare "limit" are all pairs without '=': refused. */
        if (eq == NULL)
            goto out;
        key_len = (size_t)(eq - p);
        if (!decode_value(eq + 1, pair_len - key_len - 1, value))
            goto out;
        if (key_is(p, key_len, "limit")) {
            if (seen_limit || !parse_number(value, &limit))
                goto out;
            seen_limit = true;
            /* Clamped, not refused: asking for more than a page is an ordinary request. */
            if (limit < 1)
                limit = 1;
            else if (limit > LIST_MAX_LIMIT)
                limit = LIST_MAX_LIMIT;
        } else if (key_is(p, key_len, "offset")) {
            if (seen_offset || !parse_number(value, &offset) || offset > LIST_MAX_OFFSET)
                goto out;
            seen_offset = true;
        } else if (key_is(p, key_len, "sort")) {
            if (sort != NULL)
                goto out;
            sort = pick(sort_values, sizeof sort_values / sizeof *sort_values, value);
            if (sort == NULL)
                goto out;
        } else if (key_is(p, key_len, "order")) {
            if (order != NULL)
                goto out;
            order = pick(order_values, sizeof order_values / sizeof *order_values, value);
            if (order == NULL)
                goto out;
        } else {
            goto out;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
        /* A '&' with nothing after it is an empty pair, refused like the others. */
        if (*p == '\0')
            goto out;
    }

    /* Values come from the tables above, never from the caller's bytes, so none needs escaping. */
    n = snprintf(out, cap, "?offset=%llu&limit=%llu%s%s%s%s", (unsigned long long)offset,
                 (unsigned long long)limit, sort != NULL ? "&sort=" : "",
                 sort != NULL ? sort : "", order != NULL ? "&order=" : "",
                 order != NULL ? order : "");
    if (n < 0 || (size_t)n >= cap) {
        /* The caller's buffer is too small for a valid query: a bug of hcgw, not the caller's. */
        rc = GW_ERR_INTERNAL;
        goto out;
    }
    rc = 0;
out:
    if (rc != 0 && out != NULL && cap > 0)
        out[0] = '\0';
    return rc;
}

/*
 * JSON checked without building it. HelpCrunch's customer answers pass through hcgw byte for
 * byte; all hcgw needs to know is that the body is a JSON object, and a json-c tree (one
 * allocation per value, a hash table per object) only to learn that cost a third of a request.
 * This is one pass over the text with the open containers on a fixed stack.
 *
 * The contract is gw_body_parse's observable result, not RFC 8259 in the abstract, so the rules
 * are json-c 0.16's strict tokener as hcgw drives it: json-c does not check UTF-8 (no
 * JSON_TOKENER_VALIDATE_UTF8) and turns lone surrogate escapes into U+FFFD instead of failing;
 * it counts depth per value, not per container; it saturates integers beyond 64 bits but makes
 * inf of an overflowing double, which all_finite then refuses. tests/fuzz/fuzz_body.c holds the
 * two to the same answer on every input.
 */
#include "hcgw/json.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/text.h"

/*
 * Significant digits handed to strtod when a number's magnitude is that of DBL_MAX. The
 * question there is whether the number reaches the midpoint between DBL_MAX and 2^1024, where
 * rounding goes to inf: an integer of 309 decimal digits. A prefix of more digits than that is
 * on the same side of it as the whole number (or on it, when the whole is at or above it).
 */
#define NEAR_MAX_DIGITS 400

/* An exponent beyond this decides nothing more (digits are at most INT_MAX); it stops growing. */
#define EXPONENT_CAP 1000000000000000LL

/* The decimal exponent of DBL_MAX (1.797…e308): numbers of this magnitude need a closer look. */
#define DBL_MAX_EXP10 308

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static size_t skip_ws(const unsigned char *s, size_t len, size_t i)
{
    while (i < len && is_ws(s[i]))
        i++;
    return i;
}

/*
 * The string that starts with the quote at s[*pos]; *pos moves past its closing quote. Bytes
 * from 0x80 up are taken unchecked, as json-c takes them; every \u needs four hex digits, but
 * what they encode (a lone surrogate, say) does not matter to json-c.
 */
static bool scan_string(const unsigned char *s, size_t len, size_t *pos)
{
    size_t i = *pos + 1;

    while (i < len) {
        unsigned char c = s[i];

        if (c == '"') {
            *pos = i + 1;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            i++;
            continue;
        }
        if (len - i < 2)
            return false;
        c = s[i + 1];
        if (c == 'u') {
            if (len - i < 6 || gw_text_hex_value((char)s[i + 2]) < 0 ||
                gw_text_hex_value((char)s[i + 3]) < 0 || gw_text_hex_value((char)s[i + 4]) < 0 ||
                gw_text_hex_value((char)s[i + 5]) < 0)
                return false;
            i += 6;
        } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                   c == 'r' || c == 't') {
            i += 2;
        } else {
            return false;
        }
    }
    return false;
}

/* An object member's name and its colon, whitespace around them; *pos moves past the colon. */
static bool scan_name(const unsigned char *s, size_t len, size_t *pos)
{
    size_t i = skip_ws(s, len, *pos);

    if (i == len || s[i] != '"' || !scan_string(s, len, &i))
        return false;
    i = skip_ws(s, len, i);
    if (i == len || s[i] != ':')
        return false;
    *pos = i + 1;
    return true;
}

/* The digits of a number that are left of and right of its point, without either. */
struct digits {
    const unsigned char *s;
    size_t int_start, int_end;
    size_t frac_start, frac_end;
};

/*
 * Whether a number whose leading significant digit is at s[lead] and stands for 10^308 stays
 * below the point where strtod rounds to inf. strtod decides on a bounded copy "ddd…e<n>",
 * without a decimal point so that no locale can change how it reads.
 */
static bool near_max_is_finite(const struct digits *d, size_t lead)
{
    char buf[NEAR_MAX_DIGITS + 16];
    size_t from[2] = { lead, d->frac_start };
    size_t to[2] = { d->int_end, d->frac_end };
    size_t n = 0;
    size_t part;
    size_t i;

    /* A leading digit right of the point leaves nothing to take left of it. */
    if (lead >= d->int_end) {
        from[0] = to[0];
        from[1] = lead;
    }
    for (part = 0; part < 2; part++) {
        for (i = from[part]; i < to[part] && n < NEAR_MAX_DIGITS; i++)
            buf[n++] = (char)d->s[i];
    }
    snprintf(buf + n, sizeof buf - n, "e%d", DBL_MAX_EXP10 + 1 - (int)n);
    return isfinite(strtod(buf, NULL));
}

/*
 * Whether a number with a fraction or an exponent stays finite as a double, as json-c's strtod
 * makes it. Only its magnitude matters: the power of ten of its leading significant digit
 * (e10) settles every case but the one of DBL_MAX itself. Underflow gives 0, which is finite.
 */
static bool double_is_finite(const struct digits *d, long long exponent)
{
    size_t lead = d->int_start;
    long long e10;

    while (lead < d->int_end && d->s[lead] == '0')
        lead++;
    if (lead < d->int_end) {
        e10 = exponent + (long long)(d->int_end - lead) - 1;
    } else {
        lead = d->frac_start;
        while (lead < d->frac_end && d->s[lead] == '0')
            lead++;
        if (lead == d->frac_end)
            return true;
        e10 = exponent - (long long)(lead - d->frac_start) - 1;
    }
    if (e10 != DBL_MAX_EXP10)
        return e10 < DBL_MAX_EXP10;
    return near_max_is_finite(d, lead);
}

/*
 * The number at s[*pos], in the form -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; *pos moves
 * past it. One with a fraction or an exponent is a double for json-c and must be finite; one
 * without is an integer, which json-c saturates at 64 bits whatever its length.
 */
static bool scan_number(const unsigned char *s, size_t len, size_t *pos,
                        enum gw_json_type *type)
{
    struct digits d;
    size_t i = *pos;
    size_t start;
    long long exponent = 0;
    bool exp_neg = false;
    bool is_double = false;

    if (s[i] == '-')
        i++;
    d.s = s;
    d.int_start = i;
    if (i < len && s[i] == '0') {
        i++;
    } else if (i < len && is_digit(s[i])) {
        while (i < len && is_digit(s[i]))
            i++;
    } else {
        return false;
    }
    d.int_end = i;
    d.frac_start = i;
    d.frac_end = i;
    if (i < len && s[i] == '.') {
        is_double = true;
        start = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == start)
            return false;
        d.frac_start = start;
        d.frac_end = i;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        is_double = true;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) {
            exp_neg = s[i] == '-';
            i++;
        }
        start = i;
        while (i < len && is_digit(s[i])) {
            if (exponent < EXPONENT_CAP)
                exponent = exponent * 10 + (s[i] - '0');
            i++;
        }
        if (i == start)
            return false;
    }
    if (is_double && !double_is_finite(&d, exp_neg ? -exponent : exponent))
        return false;
    *type = is_double ? GW_JSON_DOUBLE : GW_JSON_INT;
    *pos = i;
    return true;
}

/* The literal @p word (true, false or null) at s[*pos]; *pos moves past it. */
static bool scan_word(const unsigned char *s, size_t len, size_t *pos, const char *word)
{
    size_t n = strlen(word);

    if (len - *pos < n || memcmp(s + *pos, word, n) != 0)
        return false;
    *pos += n;
    return true;
}

int gw_json_check(const char *text, size_t len, enum gw_json_type *root_type)
{
    const unsigned char *s = (const unsigned char *)text;
    /* The closing bracket of each open container, innermost last. */
    unsigned char open[GW_MAX_JSON_DEPTH];
    size_t depth = 0;
    size_t i = 0;
    bool want_value = true;
    enum gw_json_type root = GW_JSON_NULL;
    enum gw_json_type type = GW_JSON_NULL;
    size_t at;
    int rc = GW_ERR_INVALID_BODY;

    if (text == NULL || len == 0 || len > (size_t)INT_MAX - 1)
        goto out;
    for (;;) {
        i = skip_ws(s, len, i);
        if (!want_value) {
            /* After a value: close what it ends, or go on to the next element or member. */
            if (depth == 0)
                break;
            if (i == len)
                goto out;
            if (s[i] == open[depth - 1]) {
                depth--;
                i++;
            } else if (s[i] == ',') {
                i++;
                if (open[depth - 1] == '}' && !scan_name(s, len, &i))
                    goto out;
                want_value = true;
            } else {
                goto out;
            }
            continue;
        }
        if (i == len)
            goto out;
        /*
         * json-c's count: a value sits inside at most GW_MAX_JSON_DEPTH - 1 containers, so
         * GW_MAX_JSON_DEPTH arrays nest only when the innermost one is empty.
         */
        if (depth >= GW_MAX_JSON_DEPTH)
            goto out;
        want_value = false;
        at = depth;
        switch (s[i]) {
        case '{':
        case '[':
            type = s[i] == '{' ? GW_JSON_OBJECT : GW_JSON_ARRAY;
            open[depth++] = s[i] == '{' ? '}' : ']';
            i = skip_ws(s, len, i + 1);
            if (i < len && s[i] == open[depth - 1]) {
                depth--;
                i++;
            } else if (type == GW_JSON_OBJECT && !scan_name(s, len, &i)) {
                goto out;
            } else {
                want_value = true;
            }
            break;
        case '"':
            type = GW_JSON_STRING;
            if (!scan_string(s, len, &i))
                goto out;
            break;
        case 't':
        case 'f':
            type = GW_JSON_BOOLEAN;
            if (!scan_word(s, len, &i, s[i] == 't' ? "true" : "false"))
                goto out;
            break;
        case 'n':
            type = GW_JSON_NULL;
            if (!scan_word(s, len, &i, "null"))
                goto out;
            break;
        default:
            if (!scan_number(s, len, &i, &type))
                goto out;
            break;
        }
        /* The root is the value that began with no container open. */
        if (at == 0)
            root = type;
    }
    if (i != len)
        goto out;
    if (root_type != NULL)
        *root_type = root;
    rc = 0;
out:
    return rc;
}

int gw_json_add(json_object *obj, const char *key, json_object *val)
{
    if (val == NULL)
        return GW_ERR_NOMEM;
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return GW_ERR_NOMEM;
    }
    return 0;
}

int gw_json_append(json_object *arr, json_object *val)
{
    if (val == NULL)
        return GW_ERR_NOMEM;
    if (json_object_array_add(arr, val) != 0) {
        json_object_put(val);
        return GW_ERR_NOMEM;
    }
    return 0;
}

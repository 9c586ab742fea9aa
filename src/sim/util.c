/*
 * util.c: strict numbers, bounded JSON parsing and the clock shared by hcgw-sim's modules.
 *
 * Request bodies come from the gateway under test, which may send anything, so parsing is
 * strict (no comments, no trailing commas, valid UTF-8, bounded depth): a body the real
 * HelpCrunch API would refuse should be refused here too.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limits.h"

int sim_parse_ll(const char *s, long long *out)
{
    const char *digits = s;
    char *end = NULL;
    long long v;

    if (s == NULL)
        return -1;
    if (*digits == '-')
        digits++;
    /* strtoll alone would accept leading spaces and '+', which no caller wants. */
    if (!isdigit((unsigned char)*digits))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int sim_parse_double(const char *s, double *out)
{
    char *end = NULL;
    double v;

    if (s == NULL)
        return -1;
    /* Plain decimals only: strtod would also take spaces, signs, hex, "inf" and "nan". */
    if (!isdigit((unsigned char)*s) && !(*s == '.' && isdigit((unsigned char)s[1])))
        return -1;
    if (strspn(s, "0123456789.eE-+") != strlen(s))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* json-c 0.18's JSON_TOKENER_STRICT refuses every byte past 0x7f in a string (a signed char
 * compared with 0x1f; json-c issues 875, 892): all of UTF-8. With it (Debian 13), the
 * simulator parses without strict mode, still validating UTF-8. */
#if JSON_C_VERSION_NUM >= ((0 << 16) | (18 << 8))
#define SIM_JSON_STRICT 0
#else
#define SIM_JSON_STRICT JSON_TOKENER_STRICT
#endif

int sim_json_parse(const char *buf, size_t len, json_object **out)
{
    struct json_tokener *tok = NULL;
    json_object *obj = NULL;
    size_t end;
    int rc = -1;

    *out = NULL;
    if (len >= (size_t)INT32_MAX)
        goto out;
    tok = json_tokener_new_ex(SIM_JSON_DEPTH_MAX);
    if (tok == NULL)
        goto out;
    json_tokener_set_flags(tok, SIM_JSON_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    /* Passing the terminating NUL tells json-c the input ends here, so a bare number at the
     * very end parses instead of waiting for more digits. */
    obj = json_tokener_parse_ex(tok, buf, (int)len + 1);
    if (json_tokener_get_error(tok) != json_tokener_success)
        goto out;
    /* Only whitespace may follow the value; a second value or garbage makes it invalid. */
    for (end = json_tokener_get_parse_end(tok); end < len; end++) {
        if (!isspace((unsigned char)buf[end]))
            goto out;
    }
    *out = obj;
    obj = NULL;
    rc = 0;
out:
    json_object_put(obj);
    if (tok != NULL)
        json_tokener_free(tok);
    return rc;
}

char *sim_json_dump(json_object *obj, size_t *len)
{
    size_t n = 0;
    const char *text = json_object_to_json_string_length(obj, SIM_JSON_FLAGS, &n);
    char *copy = NULL;

    if (text == NULL)
        goto out;
    copy = malloc(n + 1);
    if (copy == NULL)
        goto out;
    memcpy(copy, text, n + 1);
    if (len != NULL)
        *len = n;
out:
    return copy;
}

long long sim_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

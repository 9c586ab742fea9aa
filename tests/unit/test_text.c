/*
 * Unit tests of src/text.c: strict UTF-8 counting, tag names, colours, the JSON media type, hex
 * digits and percent decoding. Each table row carries the exact bytes, so the boundaries of
 * the UTF-8 ranges (overlongs, surrogates, U+10FFFF) are tested on both sides.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/text.h"

struct utf8_case {
    const char *bytes;
    size_t len;
    long want;
};

#define U(s, w) { s, sizeof s - 1, w }

static void test_utf8_count(void **state)
{
    static const struct utf8_case cases[] = {
        U("", 0),
        U("abc", 3),
        U("a\0b", 3),                     /* NUL is a code point; the length is explicit */
        U("\xC2\x80", 1),                 /* U+0080, the first two-byte form */
        U("\xC3\xA9", 1),                 /* é */
        U("\xDF\xBF", 1),                 /* U+07FF */
        U("\xE0\xA0\x80", 1),             /* U+0800, the first three-byte form */
        U("\xE2\x82\xAC", 1),             /* € */
        U("\xED\x9F\xBF", 1),             /* U+D7FF, just below the surrogates */
        U("\xEE\x80\x80", 1),             /* U+E000, just above them */
        U("\xEF\xBF\xBF", 1),             /* U+FFFF */
        U("\xF0\x90\x80\x80", 1),         /* U+10000, the first four-byte form */
        U("\xF0\x9F\x98\x80", 1),         /* 😀 */
        U("\xF4\x8F\xBF\xBF", 1),         /* U+10FFFF, the last code point */
        U("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z", 5),
        U("\x80", -1),                    /* stray continuation byte */
        U("a\xBF", -1),
        U("\xC0\xAF", -1),                /* overlong '/' */
        U("\xC1\xBF", -1),                /* overlong */
        U("\xE0\x80\xAF", -1),            /* overlong three-byte '/' */
        U("\xE0\x9F\xBF", -1),            /* overlong U+07FF */
        U("\xF0\x80\x80\xAF", -1),        /* overlong four-byte '/' */
        U("\xF0\x8F\xBF\xBF", -1),        /* overlong U+FFFF */
        U("\xED\xA0\x80", -1),            /* U+D800, a surrogate */
        U("\xED\xBF\xBF", -1),            /* U+DFFF */
        U("\xF4\x90\x80\x80", -1),        /* U+110000 */
        U("\xF5\x80\x80\x80", -1),
        U("\xFE", -1),
        U("\xFF", -1),
        U("\xC3", -1),                    /* truncated sequences */
        U("\xE2\x82", -1),
        U("\xF0\x9F\x98", -1),
        U("\xC3\x28", -1),                /* second byte is not a continuation */
        U("\xE2\x28\xA1", -1),
        U("\xE2\x82\x28", -1),
        U("\xF0\x9F\x98\x28", -1),
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        long got = gw_text_utf8_count(cases[i].bytes, cases[i].len);

        if (got != cases[i].want)
            fail_msg("utf8 case %zu: got %ld, want %ld", i, got, cases[i].want);
    }
    assert_int_equal(gw_text_utf8_count(NULL, 0), 0);
    assert_int_equal(gw_text_utf8_count(NULL, 1), -1);
}

/* A string of @p n copies of the @p unit bytes, in @p buf of capacity @p cap. */
static size_t repeat(char *buf, size_t cap, const char *unit, size_t n)
{
    size_t ul = strlen(unit);
    size_t i;

    assert_true(ul * n < cap);
    for (i = 0; i < n; i++)
        memcpy(buf + i * ul, unit, ul);
    buf[ul * n] = '\0';
    return ul * n;
}

static void test_check_tag(void **state)
{
    static const struct utf8_case cases[] = {
        U("vip", 0),
        U("a", 0),
        U("Lead PPC", 0),
        U("a+b", 0),
        U("/?#%&=", 0),                   /* legal in a name; they never go into a URL */
        U("\"\\", 0),
        U("\xC3\xA9t\xC3\xA9", 0),
        U("\xC2\xA0", 0),                 /* U+00A0 no-break space: not a control */
        U("\xF0\x9F\x98\x80", 0),
        U("", GW_ERR_INVALID_TAG),
        U("\0", GW_ERR_INVALID_TAG),
        U("a\0b", GW_ERR_INVALID_TAG),
        U("a\nb", GW_ERR_INVALID_TAG),
        U("\t", GW_ERR_INVALID_TAG),
        U("\x1F", GW_ERR_INVALID_TAG),
        U("\x7F", GW_ERR_INVALID_TAG),
        U("\xC2\x80", GW_ERR_INVALID_TAG),        /* U+0080, a C1 control */
        U("\xC2\x9F", GW_ERR_INVALID_TAG),        /* U+009F, the last one */
        U("\xC3\x28", GW_ERR_INVALID_TAG),
        U("\xED\xA0\x80", GW_ERR_INVALID_TAG),
        U("\xC0\xAF", GW_ERR_INVALID_TAG),
        U("ok\xFF", GW_ERR_INVALID_TAG),
    };
    char buf[1024];
    size_t len;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        int got = gw_text_check_tag(cases[i].bytes, cases[i].len);

        if (got != cases[i].want)
            fail_msg("tag case %zu: got %d, want %ld", i, got, cases[i].want);
    }
    assert_int_equal(gw_text_check_tag(NULL, 0), GW_ERR_INVALID_TAG);
    assert_int_equal(gw_text_check_tag(NULL, 3), GW_ERR_INVALID_TAG);

    /* The bound counts characters, not bytes: 100 of any width fit, 101 do not. */
    len = repeat(buf, sizeof buf, "a", GW_MAX_TAG_CHARS);
    assert_int_equal(gw_text_check_tag(buf, len), 0);
    len = repeat(buf, sizeof buf, "a", GW_MAX_TAG_CHARS + 1);
    assert_int_equal(gw_text_check_tag(buf, len), GW_ERR_INVALID_TAG);
    len = repeat(buf, sizeof buf, "\xE2\x82\xAC", GW_MAX_TAG_CHARS);
    assert_int_equal(gw_text_check_tag(buf, len), 0);
    len = repeat(buf, sizeof buf, "\xE2\x82\xAC", GW_MAX_TAG_CHARS + 1);
    assert_int_equal(gw_text_check_tag(buf, len), GW_ERR_INVALID_TAG);
    len = repeat(buf, sizeof buf, "\xF0\x9F\x98\x80", GW_MAX_TAG_CHARS);
    assert_int_equal(len, GW_MAX_TAG_BYTES);
    assert_int_equal(gw_text_check_tag(buf, len), 0);
    len = repeat(buf, sizeof buf, "\xF0\x9F\x98\x80", GW_MAX_TAG_CHARS + 1);
    assert_int_equal(gw_text_check_tag(buf, len), GW_ERR_INVALID_TAG);
}

static void test_is_color(void **state)
{
    static const char *const good[] = { "#fff", "#FFF", "#0aF", "#000000", "#c57de0",
                                        "#C57DE0", "#c377e0" };
    static const char *const bad[] = { "", "#", "fff", "c57de0", "#ff", "#ffff", "#fffff",
                                       "#fffffff", "#ggg", "#12345g", "# fff", "#fff ",
                                       " #fff", "#-12", "red", "##fff" };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof good / sizeof *good; i++) {
        if (!gw_text_is_color(good[i]))
            fail_msg("colour \"%s\" refused", good[i]);
    }
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (gw_text_is_color(bad[i]))
            fail_msg("colour \"%s\" accepted", bad[i]);
    }
    assert_false(gw_text_is_color(NULL));
}

static void test_json_media_type(void **state)
{
    static const char *const good[] = {
        "application/json",
        "Application/JSON",
        "APPLICATION/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/json ; charset=utf-8",
        "  application/json",
        "application/json  ",
        "\tapplication/json\t",
        "application/json;",
    };
    static const char *const bad[] = {
        "",
        " ",
        "application/json-patch+json",
        "application/merge-patch+json",
        "text/json",
        "application/jsonx",
        "application/json5",
        "application/xml",
        "application/",
        "application / json",
        "application/ json",
        "json",
        "application/json, text/plain",
        "text/plain; x=application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof good / sizeof *good; i++) {
        if (!gw_text_is_json_media_type(good[i]))
            fail_msg("media type \"%s\" refused", good[i]);
    }
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (gw_text_is_json_media_type(bad[i]))
            fail_msg("media type \"%s\" accepted", bad[i]);
    }
    assert_false(gw_text_is_json_media_type(NULL));
}

static void test_hex_value(void **state)
{
    static const char digits[] = "0123456789abcdef";
    int c;

    (void)state;
    for (c = 0; c < 16; c++) {
        assert_int_equal(gw_text_hex_value(digits[c]), c);
        if (c >= 10)
            assert_int_equal(gw_text_hex_value((char)(digits[c] - 'a' + 'A')), c);
    }
    /* Every other byte, the neighbours of each range included, is not a digit. */
    for (c = 0; c < 256; c++) {
        bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

        if (!digit)
            assert_int_equal(gw_text_hex_value((char)c), -1);
    }
    assert_int_equal(gw_text_hex_value('/'), -1);
    assert_int_equal(gw_text_hex_value(':'), -1);
    assert_int_equal(gw_text_hex_value('@'), -1);
    assert_int_equal(gw_text_hex_value('G'), -1);
    assert_int_equal(gw_text_hex_value('`'), -1);
    assert_int_equal(gw_text_hex_value('g'), -1);
}

static void test_hex_encode(void **state)
{
    static const unsigned char bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff, 0x10};
    char out[2 * sizeof(bytes) + 2];

    (void)state;
    memset(out, 'X', sizeof(out));
    gw_text_hex_encode(bytes, sizeof(bytes), out);
    assert_string_equal(out, "00017f80abff10");
    assert_int_equal(out[2 * sizeof(bytes) + 1], 'X'); /* nothing past the NUL */
    gw_text_hex_encode(bytes, 0, out);
    assert_string_equal(out, "");
}

struct pct_case {
    const char *in;
    unsigned flags;
    long want;              /* decoded length, or -1 */
    const char *out;        /* the decoded bytes (want of them) */
};

static void test_percent_decode(void **state)
{
    static const struct pct_case cases[] = {
        {"", 0, 0, ""},
        {"plain", 0, 5, "plain"},
        {"a%20b", 0, 3, "a b"},
        {"%41%62%7a%7A%4a", 0, 5, "AbzzJ"},       /* either case */
        {"%e2%82%ac", 0, 3, "\xe2\x82\xac"},      /* bytes, not characters */
        {"a+b", 0, 3, "a+b"},                     /* a plus stays a plus */
        {"%2B", 0, 1, "+"},
        {"%25", 0, 1, "%"},
        {"%2525", 0, 3, "%25"},                   /* decoded once only */
        {"%00", 0, 1, "\0"},                      /* kept unless refused */
        {"%00", GW_TEXT_PCT_NO_NUL, -1, ""},
        {"a%00b", GW_TEXT_PCT_NO_NUL, -1, ""},
        {"%", 0, -1, ""},                         /* a '%' needs two hex digits */
        {"%4", 0, -1, ""},
        {"a%", 0, -1, ""},
        {"%4g", 0, -1, ""},
        {"%g4", 0, -1, ""},
        {"% 41", 0, -1, ""},
        {"%-1", 0, -1, ""},
    };
    char out[32];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pct_case *c = &cases[i];
        long n;

        memset(out, 'X', sizeof(out));
        n = gw_text_percent_decode(c->in, strlen(c->in), out, sizeof(out), c->flags);
        if (n != c->want)
            fail_msg("case %zu \"%s\": %ld, want %ld", i, c->in, n, c->want);
        if (n >= 0) {
            assert_memory_equal(out, c->out, (size_t)n);
            assert_int_equal(out[n], '\0');
        } else {
            assert_string_equal(out, "");
        }
    }
    /* A NUL sent as is (the length is explicit) is refused the same way. */
    assert_int_equal(gw_text_percent_decode("a\0b", 3, out, sizeof(out), 0), 3);
    assert_int_equal(gw_text_percent_decode("a\0b", 3, out, sizeof(out), GW_TEXT_PCT_NO_NUL), -1);
    /* Only len bytes are read: a '%' cut off by the length is incomplete. */
    assert_int_equal(gw_text_percent_decode("a%41", 2, out, sizeof(out), 0), -1);
    assert_int_equal(gw_text_percent_decode("%41", 3, out, sizeof(out), 0), 1);
}

static void test_percent_decode_room(void **state)
{
    char out[8];

    (void)state;
    /* cap counts the NUL: "abc" needs 4. */
    assert_int_equal(gw_text_percent_decode("abc", 3, out, 4, 0), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(gw_text_percent_decode("abc", 3, out, 3, 0), -1);
    assert_string_equal(out, "");
    /* What counts is the decoded size: three bytes sent, one kept. */
    assert_int_equal(gw_text_percent_decode("%41", 3, out, 2, 0), 1);
    assert_string_equal(out, "A");
    assert_int_equal(gw_text_percent_decode("%41", 3, out, 1, 0), -1);
    assert_string_equal(out, "");
    assert_int_equal(gw_text_percent_decode("", 0, out, 1, 0), 0);
    assert_int_equal(gw_text_percent_decode("abc", 3, out, 0, 0), -1);
    assert_int_equal(gw_text_percent_decode("abc", 3, NULL, 4, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_count),
        cmocka_unit_test(test_check_tag),
        cmocka_unit_test(test_is_color),
        cmocka_unit_test(test_json_media_type),
        cmocka_unit_test(test_hex_value),
        cmocka_unit_test(test_hex_encode),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_percent_decode_room),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

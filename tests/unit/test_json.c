/*
 * Unit tests of src/json.c: gw_json_check against a table of valid and invalid texts. Every
 * case is also put to gw_body_parse, the json-c path whose answers gw_json_check must repeat:
 * the two must agree with each other and with the table, and the root type must be json-c's.
 * The cases are chosen where json-c has rules of its own: how it counts depth, integers that
 * saturate while doubles overflow, UTF-8 it does not check, surrogate escapes it replaces.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/err.h"
#include "hcgw/json.h"
#include "hcgw/limits.h"

#include "../support/json_c_type.h"

/* The midpoint between DBL_MAX and 2^1024 (2^1024 - 2^970): from here on strtod gives inf. */
#define DBL_HALFWAY                                                                          \
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475094664" \
    "90179775872070963302864166928879109465555478519404026306574886715058206819089020007083" \
    "83676273854845817711531764475730270069855571366959622842914819860834936475292719074168" \
    "444365510704342711559699508093042880177904174497792"
/* The same less one. */
#define DBL_HALFWAY_LESS_1                                                                   \
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475094664" \
    "90179775872070963302864166928879109465555478519404026306574886715058206819089020007083" \
    "83676273854845817711531764475730270069855571366959622842914819860834936475292719074168" \
    "444365510704342711559699508093042880177904174497791"

/*
 * Put @p text to both paths: each must give @p want (0 or GW_ERR_INVALID_BODY) and, when it
 * accepts, the root type @p type. @p what names the case in a failure.
 */
static void agree(const char *what, const char *text, size_t len, int want,
                  enum gw_json_type type)
{
    enum gw_json_type got = (enum gw_json_type)-1;
    json_object *obj = NULL;
    int rc_check = gw_json_check(text, len, &got);
    int rc_parse = gw_body_parse(text, len, &obj);

    if (rc_check != want || rc_parse != want)
        fail_msg("%s: gw_json_check %d, gw_body_parse %d, want %d", what, rc_check, rc_parse,
                 want);
    if (want == 0 && (got != type || json_c_type(obj) != type))
        fail_msg("%s: gw_json_check type %d, json-c %d, want %d", what, (int)got,
                 (int)json_c_type(obj), (int)type);
    json_object_put(obj);
}

struct check_case {
    const char *text;
    size_t len;
    int want;
    enum gw_json_type type;
};

#define OK(s, t) { s, sizeof s - 1, 0, t }
#define NO(s) { s, sizeof s - 1, GW_ERR_INVALID_BODY, GW_JSON_NULL }

static void run_cases(const struct check_case *cases, size_t n, const char *group)
{
    char what[160];
    size_t i;

    for (i = 0; i < n; i++) {
        snprintf(what, sizeof what, "%s case %zu (%.60s)", group, i, cases[i].text);
        agree(what, cases[i].text, cases[i].len, cases[i].want, cases[i].type);
    }
}

static void test_grammar(void **state)
{
    static const struct check_case cases[] = {
        OK("{}", GW_JSON_OBJECT),
        OK("[]", GW_JSON_ARRAY),
        OK("{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}", GW_JSON_OBJECT),
        OK(" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \t\r\n", GW_JSON_OBJECT),
        OK("[[],{},[{}],{\"\":[]}]", GW_JSON_ARRAY),
        OK("{\"a\":1,\"a\":2}", GW_JSON_OBJECT),    /* json-c keeps the last */
        OK("true", GW_JSON_BOOLEAN),
        OK("false", GW_JSON_BOOLEAN),
        OK("null", GW_JSON_NULL),
        OK(" null ", GW_JSON_NULL),
        OK("\"s\"", GW_JSON_STRING),
        OK("[true,false,null]", GW_JSON_ARRAY),
        NO(""),
        NO(" "),
        NO("\r\n"),
        NO("{"),
        NO("}"),
        NO("[1,2"),
        NO("[1 2]"),
        NO("{\"a\":1"),
        NO("{\"a\"}"),
        NO("{\"a\" 1}"),
        NO("{\"a\":}"),
        NO("{,}"),
        NO("[,]"),
        NO("[,1]"),
        NO("{1:2}"),
        NO("{null:2}"),
        NO("[1,]"),
        NO("{\"a\":1,}"),
        NO("{'a':1}"),
        NO("['a']"),
        NO("{a:1}"),
        NO("[}"),
        NO("{]"),
        NO("[1}"),
        NO("{\"a\":1]"),
        /* Anything after the value but whitespace. */
        NO("{} x"),
        NO("{}{}"),
        NO("{}]"),
        NO("[]]"),
        NO("[1] [2]"),
        NO("1 2"),
        NO("{},"),
        NO("\"a\"\"b\""),
        NO("truefalse"),
        NO("nullx"),
        NO("1true"),
        NO("[1true]"),
        NO("[true1]"),
        NO("[1-2]"),
        NO("[1\"a\"]"),
        /* Words. */
        NO("tru"),
        NO("nul"),
        NO("[nul]"),
        NO("[truex]"),
        NO("True"),
        NO("TRUE"),
        NO("[NULL]"),
        NO("NaN"),
        NO("[nan]"),
        NO("Infinity"),
        NO("-Infinity"),
        NO("{\"a\":Infinity}"),
        NO("[-inf]"),
        NO("undefined"),
        NO("Ok"),
        NO("<html>Bad Gateway</html>"),
        /* JSON's whitespace only: no form feed, vertical tab, NBSP or byte order mark. */
        NO("[\f]"),
        NO("{}\f"),
        NO("\v{}"),
        NO("\xC2\xA0{}"),
        NO("\xEF\xBB\xBF{}"),
        NO("[\x80]"),
        NO("\x7F"),
        /* NUL bytes anywhere. */
        NO("{}\0"),
        NO("\0{}"),
        NO("{\"a\":\"b\0c\"}"),
        NO("[1\0]"),
        NO("\0"),
        NO("{} \0"),
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases, "grammar");
}

static void test_strings(void **state)
{
    static const struct check_case cases[] = {
        OK("\"\"", GW_JSON_STRING),
        OK("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", GW_JSON_STRING),
        OK("\"\\u0000\"", GW_JSON_STRING),          /* an escaped NUL is a legal string */
        OK("\"\\u00e9\\u00E9\\uABCD\\uffff\"", GW_JSON_STRING),
        OK("\"\\ud83d\\ude00\"", GW_JSON_STRING),
        /* Lone and misordered surrogate escapes: json-c puts U+FFFD in, it does not refuse. */
        OK("\"\\ud800\"", GW_JSON_STRING),
        OK("\"\\udc00\"", GW_JSON_STRING),
        OK("\"\\udc00\\ud800\"", GW_JSON_STRING),
        OK("\"\\ud800\\ud800\"", GW_JSON_STRING),
        OK("\"\\ud800\\n\"", GW_JSON_STRING),
        OK("\"\\ud800x\"", GW_JSON_STRING),
        OK("{\"\\ud800\":1}", GW_JSON_OBJECT),
        OK("\"'\"", GW_JSON_STRING),
        OK("\"\x7F\"", GW_JSON_STRING),             /* DEL is not a control character here */
        OK("{\"a\\\"}\":\"[\"}", GW_JSON_OBJECT),
        NO("\"abc"),
        NO("\"\\"),
        NO("\"\\\""),
        NO("\"\\u"),
        NO("\"\\u12\""),
        NO("\"\\u12G4\""),
        NO("\"\\u 123\""),
        NO("\"\\ud800\\u00\""),
        NO("\"\\ud800\\x\""),
        NO("\"\\x41\""),
        NO("\"\\a\""),
        NO("\"\\U0041\""),
        NO("\"\\'\""),
        NO("\"a\tb\""),                             /* raw control characters */
        NO("\"a\nb\""),
        NO("\"\x1F\""),
        NO("{\"a\x01\":1}"),
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases, "strings");
}

static void test_utf8(void **state)
{
    /*
     * gw_body_parse leaves UTF-8 to its callers (json-c runs without
     * JSON_TOKENER_VALIDATE_UTF8; gw_body_build calls gw_text_utf8_count first): inside a
     * string, every byte from 0x80 up passes, valid or not. Outside one, none does.
     */
    static const struct check_case cases[] = {
        OK("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"", GW_JSON_STRING),
        OK("\"\xC0\x80\"", GW_JSON_STRING),         /* overlong NUL */
        OK("\"\xC1\xBF\"", GW_JSON_STRING),         /* overlong */
        OK("\"\xE0\x80\xAF\"", GW_JSON_STRING),     /* overlong '/' */
        OK("\"\xF0\x80\x80\xAF\"", GW_JSON_STRING), /* overlong '/' */
        OK("\"\xED\xA0\x80\"", GW_JSON_STRING),     /* U+D800, a raw surrogate */
        OK("\"\xED\xBF\xBF\"", GW_JSON_STRING),     /* U+DFFF */
        OK("\"\xF4\x90\x80\x80\"", GW_JSON_STRING), /* above U+10FFFF */
        OK("\"\x80\"", GW_JSON_STRING),             /* a lone continuation byte */
        OK("\"\xE2\x82\"", GW_JSON_STRING),         /* truncated */
        OK("\"\xFF\xFE\"", GW_JSON_STRING),
        OK("{\"\xFF\":\"\xC0\"}", GW_JSON_OBJECT),
        NO("\xC3\xA9"),
        NO("[\xC3\xA9]"),
        NO("{\"a\":1}\xFF"),
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases, "utf8");
}

static void test_numbers(void **state)
{
    static const struct check_case cases[] = {
        OK("0", GW_JSON_INT),
        OK("-0", GW_JSON_INT),
        OK("1", GW_JSON_INT),                       /* a number that ends the input */
        OK("10", GW_JSON_INT),
        OK("-12", GW_JSON_INT),
        OK(" 7 ", GW_JSON_INT),
        OK("-12.5e3", GW_JSON_DOUBLE),
        OK("0.0", GW_JSON_DOUBLE),
        OK("-0.0", GW_JSON_DOUBLE),
        OK("1E+5", GW_JSON_DOUBLE),
        OK("1e-5", GW_JSON_DOUBLE),
        OK("1e5", GW_JSON_DOUBLE),
        OK("[0,-0,1.5,-0.25e-3,1E+5,1e5,10,123456789]", GW_JSON_ARRAY),
        OK("{\"n\":15.99}", GW_JSON_OBJECT),
        /* Integers saturate in json-c (int64, then uint64): any length passes. */
        OK("9223372036854775807", GW_JSON_INT),
        OK("9223372036854775808", GW_JSON_INT),
        OK("18446744073709551615", GW_JSON_INT),
        OK("18446744073709551616", GW_JSON_INT),
        OK("123456789012345678901234567890", GW_JSON_INT),
        OK("-123456789012345678901234567890", GW_JSON_INT),
        OK(DBL_HALFWAY, GW_JSON_INT),
        OK(DBL_HALFWAY "0000", GW_JSON_INT),
        /* Doubles become inf past DBL_MAX, which gw_body_parse refuses; underflow is 0. */
        OK("1e-400", GW_JSON_DOUBLE),
        OK("-1e-400", GW_JSON_DOUBLE),
        OK("4.9e-324", GW_JSON_DOUBLE),
        OK("1e-99999999999999999999999", GW_JSON_DOUBLE),
        OK("0e99999999999999999999", GW_JSON_DOUBLE),
        OK("0.000e400", GW_JSON_DOUBLE),
        OK("1e308", GW_JSON_DOUBLE),
        OK("9.99e307", GW_JSON_DOUBLE),
        OK("1.7976931348623157e308", GW_JSON_DOUBLE),  /* DBL_MAX */
        OK("1.7976931348623158e308", GW_JSON_DOUBLE),  /* rounds down to DBL_MAX */
        OK("-1.7976931348623158e308", GW_JSON_DOUBLE),
        OK("0.17976931348623158e309", GW_JSON_DOUBLE),
        OK("0.0000000000017976931348623158e320", GW_JSON_DOUBLE),
        OK("17976931348623158e292", GW_JSON_DOUBLE),
        OK(DBL_HALFWAY_LESS_1 ".0", GW_JSON_DOUBLE),
        OK("0." DBL_HALFWAY_LESS_1 "e309", GW_JSON_DOUBLE),
        OK(DBL_HALFWAY_LESS_1 ".99999999999999999999999999999999999999999999999999999999999"
           "9999999999999999999999999999999999999999999999999999999999999999999999999999999999"
           "9999999999999999999999999999999999999999999999999999999999999999999999999999999999",
           GW_JSON_DOUBLE),
        NO("1e999"),
        /* json-c's tree keeps the last of duplicate keys, so a tree walk would never see the
         * first value; the text as sent still carries it (fuzz_body found this one). */
        NO("{\"a\":1e999,\"a\":0}"),
        NO("{\"\":5e999,\"\xff\xff\":0,\"\":[5,5]}"),
        NO("-1e999"),
        NO("1E400"),
        NO("1e309"),
        NO("10e308"),
        NO("1e99999999999999999999999"),
        NO("1.7976931348623159e308"),
        NO("-1.7976931348623159e308"),
        NO("0.17976931348623159e309"),
        NO("0.0000000000017976931348623159e320"),
        NO(DBL_HALFWAY ".0"),                         /* the midpoint itself rounds to inf */
        NO(DBL_HALFWAY "e0"),
        NO(DBL_HALFWAY ".000000000000000000000000000000000000000000000000000000000000000000000"
           "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
           "00000000000000000000000000000000000000000000000000000000000000000000000000000001"),
        NO("0." DBL_HALFWAY "e309"),
        NO("{\"a\":[1e400]}"),
        /* The number form: json-c's strict mode takes some of these, JSON does not. */
        NO("01"),
        NO("-01"),
        NO("[-01]"),
        NO("00"),
        NO("[1.]"),
        NO("[1.e5]"),
        NO("[1e]"),
        NO("[1e+]"),
        NO("[1E-]"),
        NO("[-]"),
        NO("-"),
        NO("[.5]"),
        NO("[+1]"),
        NO("[1x]"),
        NO("[0x10]"),
        NO("[1.5.5]"),
        NO("[1e5e5]"),
        NO("[1e5.5]"),
        NO("[- 1]"),
        NO("[--1]"),
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases, "numbers");
}

/* @p n nested @p open/@p close pairs around @p inner, in a malloc'd string. */
static char *nested(size_t n, const char *open, const char *inner, const char *close)
{
    size_t lo = strlen(open);
    size_t li = strlen(inner);
    size_t lc = strlen(close);
    char *s = malloc(n * (lo + lc) + li + 1);
    char *p = s;
    size_t i;

    assert_non_null(s);
    for (i = 0; i < n; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, inner, li);
    p += li;
    for (i = 0; i < n; i++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

static void test_depth(void **state)
{
    /*
     * json-c counts the containers around each value: a value inside GW_MAX_JSON_DEPTH - 1 of
     * them is the deepest it takes. So GW_MAX_JSON_DEPTH empty arrays nest, but an array at
     * that depth may hold nothing, not even a number.
     */
    static const struct {
        size_t n;
        const char *open, *inner, *close;
        int want;
        enum gw_json_type type;
    } cases[] = {
        { GW_MAX_JSON_DEPTH, "[", "", "]", 0, GW_JSON_ARRAY },
        { GW_MAX_JSON_DEPTH + 1, "[", "", "]", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { GW_MAX_JSON_DEPTH - 1, "[", "1", "]", 0, GW_JSON_ARRAY },
        { GW_MAX_JSON_DEPTH, "[", "1", "]", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { GW_MAX_JSON_DEPTH - 1, "[", "{}", "]", 0, GW_JSON_ARRAY },
        { GW_MAX_JSON_DEPTH - 1, "[", "[ ]", "]", 0, GW_JSON_ARRAY },
        { GW_MAX_JSON_DEPTH - 1, "[", "{\"a\":1}", "]", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { GW_MAX_JSON_DEPTH - 1, "[", "[\"x\"]", "]", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { GW_MAX_JSON_DEPTH - 1, "{\"a\":", "1", "}", 0, GW_JSON_OBJECT },
        { GW_MAX_JSON_DEPTH, "{\"a\":", "1", "}", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { GW_MAX_JSON_DEPTH - 1, "{\"a\":", "{}", "}", 0, GW_JSON_OBJECT },
        { GW_MAX_JSON_DEPTH, "{\"a\":", "{}", "}", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { GW_MAX_JSON_DEPTH / 2 - 1, " [ {\"k\" : ", " [ null ] ", " } ] ", 0, GW_JSON_ARRAY },
        { GW_MAX_JSON_DEPTH / 2, "[{\"k\":", "1", "}]", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { GW_MAX_JSON_DEPTH / 2 - 1, "[{\"k\":", "[1]", "}]", 0, GW_JSON_ARRAY },
        { GW_MAX_JSON_DEPTH / 2 - 1, "[{\"k\":", "[[]]", "}]", 0, GW_JSON_ARRAY },
        { GW_MAX_JSON_DEPTH / 2 - 1, "[{\"k\":", "[[1]]", "}]", GW_ERR_INVALID_BODY,
          GW_JSON_NULL },
        /* Siblings do not add up: only nesting counts. */
        { GW_MAX_JSON_DEPTH - 2, "[[],", "[1],[2]", ",[]]", 0, GW_JSON_ARRAY },
        { 100000, "[", "", "]", GW_ERR_INVALID_BODY, GW_JSON_NULL },
        { 100000, "[", "", "", GW_ERR_INVALID_BODY, GW_JSON_NULL },
    };
    char what[160];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = nested(cases[i].n, cases[i].open, cases[i].inner, cases[i].close);

        snprintf(what, sizeof what, "depth case %zu (%zu × %s%s%s)", i, cases[i].n,
                 cases[i].open, cases[i].inner, cases[i].close);
        agree(what, s, strlen(s), cases[i].want, cases[i].type);
        free(s);
    }
}

static void test_bounds(void **state)
{
    enum gw_json_type type = GW_JSON_NULL;
    static const char big[] = "[1234567890123456789012345678901234567890.5e-1]";

    (void)state;
    /* Only @p len bytes are read: what follows them is not part of the input. */
    assert_int_equal(gw_json_check("42}", 2, &type), 0);
    assert_int_equal(type, GW_JSON_INT);
    assert_int_equal(gw_json_check("[1]xyz", 3, &type), 0);
    assert_int_equal(type, GW_JSON_ARRAY);
    assert_int_equal(gw_json_check("{\"a\":1}", 6, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_json_check("1.5", 2, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_json_check("1e5", 2, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_json_check("\"\\u0041\"", 7, &type), GW_ERR_INVALID_BODY);
    /* Every prefix of a valid text but the whole is invalid, and none is read past. */
    for (size_t n = 1; n < sizeof big - 1; n++) {
        char *copy = malloc(n);

        assert_non_null(copy);
        memcpy(copy, big, n);
        if (gw_json_check(copy, n, NULL) == 0)
            fail_msg("a prefix of %zu bytes passes", n);
        free(copy);
    }
    assert_int_equal(gw_json_check(big, sizeof big - 1, NULL), 0);

    /* No text, and more than json-c's int length can take, are refused unread. */
    assert_int_equal(gw_json_check(NULL, 0, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_json_check(NULL, 5, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_json_check("{}", 0, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_json_check("{}", (size_t)INT_MAX, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_json_check("{}", SIZE_MAX, &type), GW_ERR_INVALID_BODY);
    /* The type is written only on success. */
    type = GW_JSON_STRING;
    assert_int_equal(gw_json_check("[", 1, &type), GW_ERR_INVALID_BODY);
    assert_int_equal(type, GW_JSON_STRING);
}

/* The customer document of the benchmark, the shape of the hot path. */
static void test_customer_file(void **state)
{
    char buf[4096];
    FILE *f = fopen(HCGW_TEST_DATA "/../../bench/customer.json", "rb");
    size_t n;

    (void)state;
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 100 && n < sizeof buf);
    agree("bench/customer.json", buf, n, 0, GW_JSON_OBJECT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_customer_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

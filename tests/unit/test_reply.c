/*
 * Unit tests of src/reply.c: which HelpCrunch 2xx bodies pass through, which become
 * upstream_bad_response, and the {"tags":[…]} body built from a customer object.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/reply.h"

struct reply_case {
    enum gw_reply_kind kind;
    const char *body;
    size_t len;
    int want;
    const char *out;    /* the exact built body, or NULL for a pass-through */
};

#define R(k, s, ...) { k, s, sizeof s - 1, __VA_ARGS__ }
#define BAD GW_ERR_UPSTREAM_BAD_RESPONSE, NULL

static const char customer[] =
    "{\"id\":542335,\"name\":\"John Doe\",\"email\":\"john@example.com\",\"device\":null,"
    "\"tags\":[{\"name\":\"vip\",\"color\":\"#ff0000\"}],\"customData\":{\"n\":15.99}}";

static void run_cases(const struct reply_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const struct reply_case *c = &cases[i];
        char *out = (char *)&out;
        size_t out_len = 777;
        int rc = gw_reply_build(c->kind, c->body, c->len, &out, &out_len);

        if (rc != c->want)
            fail_msg("reply case %zu (%s): rc %d, want %d", i, c->body, rc, c->want);
        if (c->out == NULL || rc != 0) {
            if (out != NULL || out_len != 0)
                fail_msg("reply case %zu (%s): a body where none belongs", i, c->body);
            continue;
        }
        if (out == NULL || strcmp(out, c->out) != 0 || out_len != strlen(c->out))
            fail_msg("reply case %zu (%s): got %s, want %s", i, c->body,
                     out != NULL ? out : "(null)", c->out);
        free(out);
    }
}

static void test_customer(void **state)
{
    static const struct reply_case cases[] = {
        R(GW_REPLY_CUSTOMER, customer, 0, NULL),
        R(GW_REPLY_CUSTOMER, "{}", 0, NULL),
        R(GW_REPLY_CUSTOMER, " {\"id\":1}\r\n", 0, NULL),
        R(GW_REPLY_CUSTOMER, "", BAD),
        R(GW_REPLY_CUSTOMER, "Ok", BAD),
        R(GW_REPLY_CUSTOMER, "\"Ok\"", BAD),
        R(GW_REPLY_CUSTOMER, "<html><body>502 Bad Gateway</body></html>", BAD),
        R(GW_REPLY_CUSTOMER, "[]", BAD),
        R(GW_REPLY_CUSTOMER, "[{\"id\":1}]", BAD),
        R(GW_REPLY_CUSTOMER, "null", BAD),
        R(GW_REPLY_CUSTOMER, "1", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":1", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":1}garbage", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":1}\0", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":NaN}", BAD),
        /* Checked without json-c (gw_json_check), under the rules of gw_body_parse. */
        R(GW_REPLY_CUSTOMER, "{\"id\":1,\"a\":[1,]}", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":1,}", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":01}", BAD),
        R(GW_REPLY_CUSTOMER, "{\"n\":1e400}", BAD),
        R(GW_REPLY_CUSTOMER, "{\"n\":1e-400}", 0, NULL),
        R(GW_REPLY_CUSTOMER, "{\"n\":123456789012345678901234567890}", 0, NULL),
        R(GW_REPLY_CUSTOMER, "{\"s\":\"\\ud800\"}", 0, NULL),
        R(GW_REPLY_CUSTOMER, "{\"s\":\"\\u12\"}", BAD),
        R(GW_REPLY_CUSTOMER, "{\"s\":\"a\tb\"}", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":1}\f", BAD),
        R(GW_REPLY_CUSTOMER, "\xEF\xBB\xBF{\"id\":1}", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":1}]", BAD),
        R(GW_REPLY_CUSTOMER, "{\"id\":true1}", BAD),
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases);
}

static void test_list_and_search(void **state)
{
    static const struct reply_case cases[] = {
        R(GW_REPLY_LIST, "{\"total\":2,\"data\":[{\"id\":1},{\"id\":2}]}", 0, NULL),
        R(GW_REPLY_LIST, "{\"total\":0,\"data\":[]}", 0, NULL),
        R(GW_REPLY_LIST, "{\"data\":[],\"total\":\"0\"}", 0, NULL),
        R(GW_REPLY_LIST, "{\"total\":0,\"data\":[],\"extra\":true}", 0, NULL),
        R(GW_REPLY_LIST, "{\"total\":0}", BAD),
        R(GW_REPLY_LIST, "{\"data\":[]}", BAD),
        R(GW_REPLY_LIST, "{\"total\":0,\"data\":{}}", BAD),
        R(GW_REPLY_LIST, "{\"total\":0,\"data\":null}", BAD),
        R(GW_REPLY_LIST, "{\"total\":-1,\"data\":[]}", BAD),
        R(GW_REPLY_LIST, "{\"total\":null,\"data\":[]}", BAD),
        R(GW_REPLY_LIST, "{\"total\":\"\",\"data\":[]}", BAD),
        R(GW_REPLY_LIST, "{\"total\":\"2x\",\"data\":[]}", BAD),
        R(GW_REPLY_LIST, "{\"total\":1.5,\"data\":[]}", BAD),
        R(GW_REPLY_LIST, "[]", BAD),
        R(GW_REPLY_LIST, "", BAD),
        R(GW_REPLY_SEARCH, "{\"data\":[{\"id\":1}]}", 0, NULL),
        R(GW_REPLY_SEARCH, "{\"data\":[]}", 0, NULL),
        R(GW_REPLY_SEARCH, "{\"data\":[],\"total\":0}", 0, NULL),
        R(GW_REPLY_SEARCH, "{}", BAD),
        R(GW_REPLY_SEARCH, "{\"data\":{}}", BAD),
        R(GW_REPLY_SEARCH, "{\"data\":\"x\"}", BAD),
        R(GW_REPLY_SEARCH, "[{\"id\":1}]", BAD),
        R(GW_REPLY_SEARCH, "not json", BAD),
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases);
}

static void test_tags(void **state)
{
    static const struct reply_case cases[] = {
        R(GW_REPLY_TAGS, customer, 0, "{\"tags\":[{\"name\":\"vip\",\"color\":\"#ff0000\"}]}"),
        R(GW_REPLY_TAGS, "{\"id\":1,\"tags\":[]}", 0, "{\"tags\":[]}"),
        R(GW_REPLY_TAGS, "{\"id\":1,\"tags\":null}", 0, "{\"tags\":[]}"),
        R(GW_REPLY_TAGS, "{\"id\":1}", 0, "{\"tags\":[]}"),
        R(GW_REPLY_TAGS, "{\"tags\":[{\"name\":\"a\"},{\"name\":\"b\",\"color\":\"#fff\"}]}", 0,
          "{\"tags\":[{\"name\":\"a\"},{\"name\":\"b\",\"color\":\"#fff\"}]}"),
        /* The objects as HelpCrunch gave them, extra members and all. */
        R(GW_REPLY_TAGS, "{\"tags\":[{\"name\":\"a\",\"id\":7,\"w\":1.50}]}", 0,
          "{\"tags\":[{\"name\":\"a\",\"id\":7,\"w\":1.50}]}"),
        /* Re-serialized by json-c: escapes stay escapes where needed, '/' is left alone. */
        R(GW_REPLY_TAGS, "{\"tags\":[{\"name\":\"a\\/b \\u00e9 \\\"q\\\" \\\\\"}]}", 0,
          "{\"tags\":[{\"name\":\"a/b \xC3\xA9 \\\"q\\\" \\\\\"}]}"),
        R(GW_REPLY_TAGS, "{\"tags\":\"vip\"}", BAD),
        R(GW_REPLY_TAGS, "{\"tags\":{}}", BAD),
        R(GW_REPLY_TAGS, "{\"tags\":1}", BAD),
        R(GW_REPLY_TAGS, "{\"tags\":false}", BAD),
        R(GW_REPLY_TAGS, "[{\"name\":\"vip\"}]", BAD),
        R(GW_REPLY_TAGS, "{\"tags\":[]", BAD),
        R(GW_REPLY_TAGS, "Ok", BAD),
        R(GW_REPLY_TAGS, "", BAD),
    };

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases);
}

static void test_deleted_and_local(void **state)
{
    static const struct reply_case cases[] = {
        R(GW_REPLY_DELETED, "Ok", 0, NULL),
        R(GW_REPLY_DELETED, "\"Ok\"", 0, NULL),
        R(GW_REPLY_DELETED, "", 0, NULL),
        R(GW_REPLY_DELETED, "{\"id\":1}", 0, NULL),
        R(GW_REPLY_DELETED, "\0\xFF", 0, NULL),
        R(GW_REPLY_LOCAL, "{}", GW_ERR_INTERNAL, NULL),
    };
    char *out = NULL;
    size_t out_len = 0;

    (void)state;
    run_cases(cases, sizeof cases / sizeof *cases);
    assert_int_equal(gw_reply_build(GW_REPLY_DELETED, NULL, 0, &out, &out_len), 0);
    assert_null(out);
    assert_int_equal(gw_reply_build(GW_REPLY_CUSTOMER, NULL, 0, &out, &out_len),
                     GW_ERR_UPSTREAM_BAD_RESPONSE);
    assert_int_equal(gw_reply_build(GW_REPLY_CUSTOMER, "{}", 2, NULL, &out_len),
                     GW_ERR_INTERNAL);
    assert_int_equal(gw_reply_build(GW_REPLY_CUSTOMER, "{}", 2, &out, NULL), GW_ERR_INTERNAL);
}

/* A customer whose "x" member nests @p n arrays. */
static char *deep_customer(size_t n)
{
    char *s = malloc(2 * n + 16);
    size_t used = 0;
    size_t i;

    assert_non_null(s);
    memcpy(s, "{\"x\":", 5);
    used = 5;
    for (i = 0; i < n; i++)
        s[used++] = '[';
    for (i = 0; i < n; i++)
        s[used++] = ']';
    memcpy(s + used, "}", 2);
    return s;
}

static void test_depth(void **state)
{
    char *s;
    char *out = NULL;
    size_t out_len = 0;

    (void)state;
    /* The object is one level, so it may hold GW_MAX_JSON_DEPTH - 1 more. */
    s = deep_customer(GW_MAX_JSON_DEPTH - 1);
    assert_int_equal(gw_reply_build(GW_REPLY_CUSTOMER, s, strlen(s), &out, &out_len), 0);
    free(s);
    s = deep_customer(GW_MAX_JSON_DEPTH);
    assert_int_equal(gw_reply_build(GW_REPLY_CUSTOMER, s, strlen(s), &out, &out_len),
                     GW_ERR_UPSTREAM_BAD_RESPONSE);
    free(s);
    s = deep_customer(100000);
    assert_int_equal(gw_reply_build(GW_REPLY_TAGS, s, strlen(s), &out, &out_len),
                     GW_ERR_UPSTREAM_BAD_RESPONSE);
    assert_null(out);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_customer),
        cmocka_unit_test(test_list_and_search),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_deleted_and_local),
        cmocka_unit_test(test_depth),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

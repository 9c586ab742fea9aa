/*
 * Unit tests of src/coalesce.c: counting the tags of an upstream tags body, and merging the
 * bodies of several callers into the body of one call (order kept, a name given twice kept
 * once, where its later item stood, with its later colour).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hcgw/coalesce.h"
#include "hcgw/err.h"

#define S(s) s, sizeof s - 1

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(gw_coalesce_count(S("{\"tags\":[{\"name\":\"a\"}]}")), 1);
    assert_int_equal(gw_coalesce_count(S("{\"tags\":[{\"name\":\"a\"},{\"name\":\"b\"}]}")), 2);
    assert_int_equal(gw_coalesce_count(S("{\"tags\":[]}")), 0);
    assert_int_equal(gw_coalesce_count(S("{\"name\":\"x\"}")), -1);
    assert_int_equal(gw_coalesce_count(S("{\"tags\":{}}")), -1);
    assert_int_equal(gw_coalesce_count(S("[1]")), -1);
    assert_int_equal(gw_coalesce_count(S("{\"tags\":[")), -1);
    assert_int_equal(gw_coalesce_count(NULL, 0), -1);
}

static void merge_case(const char *const *bodies, size_t n, const char *want)
{
    size_t lens[8];
    char *out = NULL;
    size_t out_len = 0;

    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(bodies[i]);
    assert_int_equal(gw_coalesce_merge(bodies, lens, n, &out, &out_len), 0);
    assert_non_null(out);
    assert_string_equal(out, want);
    assert_int_equal(out_len, strlen(want));
    free(out);
}

static void test_merge(void **state)
{
    const char *one[] = {"{\"tags\":[{\"name\":\"a\"}]}"};
    const char *three[] = {"{\"tags\":[{\"name\":\"a\"}]}",
                           "{\"tags\":[{\"name\":\"b\",\"color\":\"#fff\"},{\"name\":\"c\"}]}",
                           "{\"tags\":[{\"name\":\"d\"}]}"};
    const char *twice[] = {"{\"tags\":[{\"name\":\"a\",\"color\":\"#111\"},{\"name\":\"b\"}]}",
                           "{\"tags\":[{\"name\":\"a\",\"color\":\"#222\"}]}"};
    const char *escaped[] = {"{\"tags\":[{\"name\":\"a\\\"q\"}]}",
                             "{\"tags\":[{\"name\":\"x/y\"}]}"};

    (void)state;
    merge_case(one, 1, "{\"tags\":[{\"name\":\"a\"}]}");
    merge_case(three, 3,
               "{\"tags\":[{\"name\":\"a\"},{\"name\":\"b\",\"color\":\"#fff\"},"
               "{\"name\":\"c\"},{\"name\":\"d\"}]}");
    /* Done one after another, the later colour would win. */
    merge_case(twice, 2, "{\"tags\":[{\"name\":\"b\"},{\"name\":\"a\",\"color\":\"#222\"}]}");
    merge_case(escaped, 2, "{\"tags\":[{\"name\":\"a\\\"q\"},{\"name\":\"x/y\"}]}");
}

static void test_merge_refuses(void **state)
{
    const char *bad[] = {"{\"tags\":[{\"name\":\"a\"}]}", "{\"name\":\"x\"}"};
    const char *null_body[] = {"{\"tags\":[]}", NULL};
    size_t lens[2] = {strlen(bad[0]), strlen(bad[1])};
    char *out = (char *)1;
    size_t out_len = 7;

    (void)state;
    assert_int_equal(gw_coalesce_merge(bad, lens, 2, &out, &out_len), GW_ERR_INVALID_BODY);
    assert_null(out);
    assert_int_equal(out_len, 0);
    lens[1] = 0;
    assert_int_equal(gw_coalesce_merge(null_body, lens, 2, &out, &out_len), GW_ERR_INVALID_BODY);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_merge_refuses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

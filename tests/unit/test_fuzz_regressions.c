/*
 * Inputs the libFuzzer targets (tests/fuzz) found, each kept as a unit test so that the bug
 * stays fixed in every ordinary test run, not only in a fuzz run. Each test names its target
 * and the seed file (tests/fuzz/corpus/<target>/regression-*) that holds the original input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/config.h"
#include "hcgw/envelope.h"
#include "hcgw/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * fuzz_envelope, regression-overlong-utf8-detail: json-c's JSON_TOKENER_VALIDATE_UTF8 accepts
 * overlong forms (E0 82 AC), encoded surrogates (ED A0 80) and code points past U+10FFFF
 * (F4 90 80 80), so an error message with such bytes went into the envelope's details and
 * hcgw answered with text that is not UTF-8. Such a body is now ignored like any non-JSON one.
 */
static void test_envelope_details_are_always_utf8(void **state)
{
    static const char *const bad[] = {"\xe0\x82\xac", "\xc0\xaf", "\xed\xa0\x80",
                                      "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80"};
    char body[256];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_envelope env;
        size_t len = 0;
        char *text;

        snprintf(body, sizeof body,
                 "{\"errors\":[{\"code\":\"email\",\"message\":\"bad %s value\"}]}", bad[i]);
        gw_envelope_from_upstream(&env, 400, body, strlen(body), NULL);
        assert_int_equal(env.status, 400);
        assert_null(env.details); /* the status decides; nothing of the body is passed on */
        text = gw_envelope_render(&env, "rid", &len);
        assert_non_null(text);
        assert_true(gw_text_utf8_count(text, len) >= 0);
        free(text);
        gw_envelope_clear(&env);
    }
    /* Valid text, escapes included, still gives its details; a lone surrogate escape is
     * decoded by json-c to U+FFFD, which is valid. */
    {
        static const char ok[] =
            "{\"errors\":[{\"code\":\"email\",\"message\":\"\xe2\x82\xac \\u00e9 \\ud800\"}]}";
        struct gw_envelope env;
        size_t len = 0;
        char *text;

        gw_envelope_from_upstream(&env, 400, ok, strlen(ok), NULL);
        assert_non_null(env.details);
        text = gw_envelope_render(&env, "rid", &len);
        assert_non_null(text);
        assert_true(gw_text_utf8_count(text, len) >= 0);
        assert_non_null(strstr(text, "\xe2\x82\xac \xc3\xa9 \xef\xbf\xbd"));
        free(text);
        gw_envelope_clear(&env);
    }
}

/*
 * fuzz_config, regression-newline-in-problem: a problem quoted the offending value as it was, so
 * a route name (or any quoted value) with a line break split its problem line, and with a
 * forged "FILE:LINE: key: reason" after the break, added a problem that was never found.
 * Control characters in a problem line are now '?': one problem, one line, always.
 */
static void test_config_problems_stay_one_per_line(void **state)
{
    static const char text[] =
        "clients = ( { name = \"a\"; token_sha256 = \""
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\";\n"
        "  routes = [ \"GET /x\\nfake.conf:1: upstream.base_url: forged\\r\\t\" ]; } );\n";
    char path[] = "/tmp/hcgw-fuzz-regression-XXXXXX";
    char *errors = NULL;
    struct gw_config *cfg;
    const char *line;
    int fd = mkstemp(path);
    unsigned lines = 0;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    cfg = gw_config_load(path, &errors);
    unlink(path);
    assert_null(cfg);
    assert_non_null(errors);
    for (line = errors; *line != '\0'; line = strchr(line, '\n') + 1) {
        assert_non_null(strchr(line, '\n'));
        assert_memory_equal(line, path, strlen(path)); /* every line is a problem of the file */
        lines++;
    }
    assert_int_equal(lines, 1);
    assert_non_null(strstr(errors, "GET /x?fake.conf:1: upstream.base_url: forged??"));
    free(errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_details_are_always_utf8),
        cmocka_unit_test(test_config_problems_stay_one_per_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

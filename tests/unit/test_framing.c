/*
 * Unit tests of framing.c's verdict over a request's header fields: the requests libmicrohttpd
 * 0.9.75 would frame one way and a proxy another (two Content-Lengths, Content-Length beside
 * Transfer-Encoding, a Transfer-Encoding that is not plain chunked, two Hosts, two
 * Content-Types, a field name that is not a token) are refused; ordinary ones pass. The checks
 * on libmicrohttpd's buffer (NUL bytes, bare LF, obs-fold) need a live connection and are
 * covered by tests/integration/test_hostile.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/err.h"
#include "hcgw/framing.h"

#include <string.h>

/* The verdict over @p n name/value pairs. */
static int verdict(const char *const fields[][2], size_t n)
{
    struct gw_framing f;

    memset(&f, 0, sizeof f);
    for (size_t i = 0; i < n; i++)
        gw_framing_add(&f, fields[i][0], fields[i][1]);
    return gw_framing_verdict(&f);
}

#define VERDICT(...)                                                                           \
    ({                                                                                         \
        static const char *const fields_[][2] = {__VA_ARGS__};                                 \
        verdict(fields_, sizeof fields_ / sizeof fields_[0]);                                  \
    })

static void test_ordinary_requests_pass(void **state)
{
    (void)state;
    assert_int_equal(VERDICT({"Host", "hcgw"}), 0);
    assert_int_equal(VERDICT({"Host", "hcgw"}, {"Content-Type", "application/json"},
                             {"Content-Length", "17"}, {"X-Request-Id", "abc"}),
                     0);
    assert_int_equal(VERDICT({"host", "hcgw"}, {"transfer-encoding", "chunked"},
                             {"content-type", "application/json; charset=utf-8"}),
                     0);
    assert_int_equal(VERDICT({"Host", "hcgw"}, {"Transfer-Encoding", "CHUNKED"}), 0);
    assert_int_equal(VERDICT({"Host", "h"}, {"Accept", "*/*"}, {"Accept", "application/json"},
                             {"X-Weird!#$%&'*+-.^_`|~", "ok"}),
                     0);
}

static void test_ambiguous_framing_is_refused(void **state)
{
    (void)state;
    /* Two lengths: libmicrohttpd reads the first, a proxy may read the last. */
    assert_int_equal(VERDICT({"Content-Length", "0"}, {"Content-Length", "42"}),
                     GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Content-Length", "2"}, {"content-length", "2"}),
                     GW_ERR_MALFORMED_REQUEST);
    /* CL.TE and TE.CL. */
    assert_int_equal(VERDICT({"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}),
                     GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}),
                     GW_ERR_MALFORMED_REQUEST);
    /* Transfer-Encoding other than exactly chunked, or twice. */
    assert_int_equal(VERDICT({"Transfer-Encoding", "xchunked"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Transfer-Encoding", "chunked, identity"}),
                     GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Transfer-Encoding", "gzip, chunked"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Transfer-Encoding", "identity"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Transfer-Encoding", "chunked "}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Transfer-Encoding", ""}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}),
                     GW_ERR_MALFORMED_REQUEST);
    /* Singleton fields given twice. */
    assert_int_equal(VERDICT({"Host", "a"}, {"Host", "b"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Content-Type", "application/json"},
                             {"Content-Type", "text/plain"}),
                     GW_ERR_MALFORMED_REQUEST);
}

static void test_names_must_be_tokens(void **state)
{
    (void)state;
    /* "Transfer-Encoding : chunked" (a space before the colon) and libmicrohttpd's gluing of
     * an obs-fold continuation onto the name both give names that are not tokens. */
    assert_int_equal(VERDICT({"Transfer-Encoding ", "chunked"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"XTransfer-Encoding: chunked", "y"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"", "empty name"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"Na\tme", "v"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"N\xc3\xa4me", "v"}), GW_ERR_MALFORMED_REQUEST);
    assert_int_equal(VERDICT({"(comment)", "v"}), GW_ERR_MALFORMED_REQUEST);
}

static void test_add_tolerates_null(void **state)
{
    struct gw_framing f;

    (void)state;
    memset(&f, 0, sizeof f);
    gw_framing_add(&f, "Host", NULL);
    assert_int_equal(gw_framing_verdict(&f), 0);
    gw_framing_add(&f, NULL, "x");
    assert_int_equal(gw_framing_verdict(&f), GW_ERR_MALFORMED_REQUEST);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinary_requests_pass),
        cmocka_unit_test(test_ambiguous_framing_is_refused),
        cmocka_unit_test(test_names_must_be_tokens),
        cmocka_unit_test(test_add_tolerates_null),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

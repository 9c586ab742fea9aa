/*
 * Unit tests of src/resolve.c: a name from /etc/hosts (localhost) and IP literals are answered
 * on the loop, once, never from inside gw_resolve_start; a bad host is refused at once; a
 * lookup cancelled at once or while glibc works on it never calls back and leaks nothing (the
 * sanitizers' leak check); many lookups in flight at once each end once. No test needs DNS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"
#include "hcgw/resolve.h"

/* No test waits longer than this for a lookup. */
#define GUARD_MS 5000u

/* Lookups in flight at once in test_many. */
#define MANY 16

struct answer {
    int calls;
    char addr[GW_RESOLVE_ADDR_BYTES];
    char error[128];
};

static void on_answer(void *data, const char *addr, const char *error)
{
    struct answer *a = data;

    a->calls++;
    if (addr)
        snprintf(a->addr, sizeof a->addr, "%s", addr);
    if (error)
        snprintf(a->error, sizeof a->error, "%s", error);
}

/* Run @p loop until @p n answers have come, or the guard passes. */
static void run_until(struct gw_loop *loop, struct answer *a, size_t count, int n)
{
    uint64_t until = gw_clock_ms() + GUARD_MS;
    int got = 0;

    while (got < n && gw_clock_ms() < until) {
        gw_loop_run_once(loop, 50);
        got = 0;
        for (size_t i = 0; i < count; i++)
            got += a[i].calls;
    }
}

static void lookup(const char *host, const char *const *accepted)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_resolve *q = NULL;
    struct answer a = {0};
    bool ok = false;

    assert_non_null(loop);
    assert_int_equal(gw_resolve_start(loop, host, on_answer, &a, &q), 0);
    assert_non_null(q);
    assert_int_equal(a.calls, 0); /* never from inside start */
    run_until(loop, &a, 1, 1);
    assert_int_equal(a.calls, 1);
    for (size_t i = 0; accepted[i] && !ok; i++)
        ok = strcmp(a.addr, accepted[i]) == 0;
    if (!ok)
        print_error("%s gave \"%s\" (%s)\n", host, a.addr, a.error);
    assert_true(ok);
    /* Nothing more comes. */
    gw_loop_run_once(loop, 20);
    assert_int_equal(a.calls, 1);
    gw_loop_free(loop);
}

static void test_localhost(void **state)
{
    static const char *const local[] = {"127.0.0.1", "::1", NULL};

    (void)state;
    lookup("localhost", local);
}

static void test_literals(void **state)
{
    static const char *const v4[] = {"127.0.0.1", NULL};
    static const char *const v4b[] = {"10.1.2.3", NULL};

    (void)state;
    lookup("127.0.0.1", v4);
    lookup("10.1.2.3", v4b);
}

static void test_bad_host_refused(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_resolve *q = (struct gw_resolve *)1;
    struct answer a = {0};
    char long_name[GW_MAX_HOSTNAME_BYTES + 2];

    (void)state;
    assert_int_equal(gw_resolve_start(loop, "", on_answer, &a, &q), GW_ERR_INVALID_REQUEST);
    assert_null(q);
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(gw_resolve_start(loop, long_name, on_answer, &a, &q),
                     GW_ERR_INVALID_REQUEST);
    gw_loop_run_once(loop, 10);
    assert_int_equal(a.calls, 0);
    gw_loop_free(loop);
}

static void test_cancel(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_resolve *q;
    struct answer a = {0};
    struct timespec pause = {0, 20 * 1000000L};

    (void)state;
    /* At once: most likely still queued in glibc. */
    assert_int_equal(gw_resolve_start(loop, "localhost", on_answer, &a, &q), 0);
    gw_resolve_cancel(q);
    /* Later: most likely done, its notification on its way or over. */
    assert_int_equal(gw_resolve_start(loop, "localhost", on_answer, &a, &q), 0);
    nanosleep(&pause, NULL);
    gw_resolve_cancel(q);
    gw_resolve_cancel(NULL);
    for (int i = 0; i < 5; i++)
        gw_loop_run_once(loop, 10);
    assert_int_equal(a.calls, 0);
    /* Let the notification threads end before the leak check looks. */
    nanosleep(&pause, NULL);
    gw_loop_free(loop);
}

static void test_many(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_resolve *q[MANY];
    struct answer a[MANY];

    (void)state;
    memset(a, 0, sizeof a);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(gw_resolve_start(loop, "localhost", on_answer, &a[i], &q[i]), 0);
    /* Half of them are given up. */
    for (int i = 0; i < MANY; i += 2)
        gw_resolve_cancel(q[i]);
    run_until(loop, a, MANY, MANY / 2);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(a[i].calls, i % 2);
    gw_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_localhost),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_bad_host_refused),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_many),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

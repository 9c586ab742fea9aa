/* Unit tests for the quota governor: the GCRA bucket's burst, steady rate, FIFO waits,
 * rejections with Retry-After, and the process-wide cooldown after a 429. Time is passed in,
 * so the tests are exact and take no wall-clock time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/config.h"
#include "hcgw/governor.h"

static struct gw_config cfg_with(int rpm, int burst, long max_wait_ms, long cooldown_ms)
{
    struct gw_config c = {0};

    c.quota.requests_per_minute = rpm;
    c.quota.burst = burst;
    c.quota.max_wait_ms = max_wait_ms;
    c.quota.cooldown_ms = cooldown_ms;
    return c;
}

#define T0 1000000u   /* an arbitrary monotonic start, in ms */
#define FAR (T0 + 10000000u)

static void test_off_always_goes(void **state)
{
    struct gw_config c = cfg_with(0, 10, 5000, 10000);
    struct gw_governor *g = gw_governor_new(&c);
    uint64_t wait;
    long ra;
    int i;

    (void)state;
    assert_false(gw_governor_enabled(g));
    for (i = 0; i < 100000; i++)
        assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_GO);
    gw_governor_free(g);
}

static void test_burst_then_steady_rate(void **state)
{
    /* 129 in any minute, a burst of 10 included: the burst goes at once, then one every
     * 60 s / (129 - 10 + 1) = 500 ms. */
    struct gw_config c = cfg_with(129, 10, 5000, 10000);
    struct gw_governor *g = gw_governor_new(&c);
    struct gw_governor_stats st;
    uint64_t wait;
    long ra;
    int i;

    (void)state;
    gw_governor_stats(g, T0, &st);
    assert_true(st.tokens > 9.99 && st.tokens <= 10.0);
    for (i = 0; i < 10; i++)
        assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_GO);
    gw_governor_stats(g, T0, &st);
    assert_true(st.tokens < 0.01);
    /* The 11th waits one interval, the 12th two: first come, first served. */
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_WAIT);
    assert_int_equal(wait, 500);
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_WAIT);
    assert_int_equal(wait, 1000);
    gw_governor_stats(g, T0, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.waits, 2);
    gw_governor_done_waiting(g, 500);
    gw_governor_done_waiting(g, 1000);
    gw_governor_stats(g, T0, &st);
    assert_int_equal(st.queued, 0);
    gw_governor_free(g);
}

static void test_rate_over_a_minute_never_exceeds_limit(void **state)
{
    /* Calls arriving every 10 ms for ten minutes; count those allowed to go in every sliding
     * 60 s window: never more than rpm, the burst included. */
    struct gw_config c = cfg_with(120, 10, 0, 10000);
    struct gw_governor *g = gw_governor_new(&c);
    static uint64_t sent[200000];
    size_t n = 0, lo = 0, i;
    uint64_t t, wait;
    long ra;

    (void)state;
    for (t = T0; t < T0 + 600000u; t += 10) {
        if (gw_governor_acquire(g, t, t + 10000, &wait, &ra) == GW_GOV_GO)
            sent[n++] = t;
    }
    for (i = 0; i < n; i++) {
        while (sent[i] - sent[lo] >= 60000)
            lo++;
        assert_true(i - lo + 1 <= 120);
    }
    /* And it is not starved: the burst, then 111 a minute (60 s / 540.5 ms) go. */
    assert_true(n >= 1110 && n <= 1125);
    gw_governor_free(g);
}

/*
 * The spacing alone: after a burst b at t0, the steady calls go at t0 + k * interval (k >= 1);
 * the window [t0, t0 + 60 s) holds b of them and every k with k * interval < 60 s, which must
 * be the limit exactly (below 7000 a minute, where microseconds are fine enough): never more,
 * and not starved.
 */
static void test_interval_holds_the_ceiling(void **state)
{
    static const int bursts[] = {1, 2, 5, 10, 50};

    (void)state;
    for (int rpm = 1; rpm <= 7000; rpm++) {
        for (size_t j = 0; j < sizeof bursts / sizeof bursts[0] + 1; j++) {
            int burst = j < sizeof bursts / sizeof bursts[0] ? bursts[j] : rpm;
            int b = gw_governor_burst(rpm, burst);
            uint64_t i = gw_governor_interval_us(rpm, burst);
            uint64_t in_window = (uint64_t)b + (60000000u + i - 1) / i - 1;

            assert_true(in_window <= (uint64_t)rpm);
            assert_true(in_window == (uint64_t)rpm);
        }
    }
}

static void test_reject_beyond_max_wait_with_retry_after(void **state)
{
    struct gw_config c = cfg_with(60, 1, 2500, 10000); /* one a second, no burst */
    struct gw_governor *g = gw_governor_new(&c);
    struct gw_governor_stats st;
    uint64_t wait;
    long ra;

    (void)state;
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_GO);
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_WAIT);
    assert_int_equal(wait, 1000);
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_WAIT);
    assert_int_equal(wait, 2000);
    /* The next slot is 3 s away: beyond max_wait. Nothing is reserved. */
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_REJECT);
    assert_int_equal(ra, 3);
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_REJECT);
    assert_int_equal(ra, 3);
    gw_governor_stats(g, T0, &st);
    assert_int_equal(st.rejections, 2);
    gw_governor_free(g);
}

static void test_reject_beyond_deadline(void **state)
{
    struct gw_config c = cfg_with(60, 1, 60000, 10000);
    struct gw_governor *g = gw_governor_new(&c);
    uint64_t wait;
    long ra;

    (void)state;
    assert_int_equal(gw_governor_acquire(g, T0, T0 + 5000, &wait, &ra), GW_GOV_GO);
    /* The slot would be at T0+1000 but this call must be done by T0+800. */
    assert_int_equal(gw_governor_acquire(g, T0, T0 + 800, &wait, &ra), GW_GOV_REJECT);
    assert_int_equal(ra, 1);
    /* A call with time to spare still gets that slot. */
    assert_int_equal(gw_governor_acquire(g, T0, T0 + 5000, &wait, &ra), GW_GOV_WAIT);
    assert_int_equal(wait, 1000);
    gw_governor_free(g);
}

static void test_cooldown_after_429(void **state)
{
    struct gw_config c = cfg_with(129, 10, 60000, 7000); /* 500 ms apart after the burst */
    struct gw_governor *g = gw_governor_new(&c);
    struct gw_governor_stats st;
    uint64_t wait;
    long ra;

    (void)state;
    /* With Retry-After: 3 s, nobody goes before T0+3000, even with a full bucket. */
    gw_governor_on_429(g, T0, 3);
    assert_int_equal(gw_governor_cooldown_left_s(g, T0), 3);
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_WAIT);
    assert_int_equal(wait, 3000);
    /* And then the steady rate, not a burst. */
    assert_int_equal(gw_governor_acquire(g, T0, FAR, &wait, &ra), GW_GOV_WAIT);
    assert_int_equal(wait, 3500);
    gw_governor_stats(g, T0, &st);
    assert_int_equal(st.upstream_429, 1);
    assert_int_equal(st.cooldowns, 1);
    assert_true(st.tokens == 0.0);
    /* Without Retry-After: the configured cooldown. */
    gw_governor_on_429(g, T0 + 4000, 0);
    assert_int_equal(gw_governor_cooldown_left_s(g, T0 + 4000), 7);
    gw_governor_stats(g, T0, &st);
    assert_int_equal(st.cooldowns, 2);
    assert_int_equal(gw_governor_cooldown_left_s(g, T0 + 20000), 0);
    gw_governor_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_always_goes),
        cmocka_unit_test(test_burst_then_steady_rate),
        cmocka_unit_test(test_rate_over_a_minute_never_exceeds_limit),
        cmocka_unit_test(test_interval_holds_the_ceiling),
        cmocka_unit_test(test_reject_beyond_max_wait_with_retry_after),
        cmocka_unit_test(test_reject_beyond_deadline),
        cmocka_unit_test(test_cooldown_after_429),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the contact cache: freshness by ttl and by the caller's max age, the LRU
 * bounds by entries and by bytes, write generations (a read's answer from before a write is
 * not stored; of two writes that overlap, neither is kept), eviction, and reconfiguration.
 * Time is passed in, so the tests are exact. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hcgw/cache.h"
#include "hcgw/cachectl.h"

#define T0 1000000u
#define ANY GW_CACHECTL_ANY_AGE
#define BODY "{\"id\":1,\"name\":\"a\"}"

static struct gw_cache *cache_with(long ttl, long entries, long bytes)
{
    struct gw_cache *c = gw_cache_new();

    assert_non_null(c);
    assert_int_equal(gw_cache_configure(c, ttl, entries, bytes), 0);
    return c;
}

static bool has(struct gw_cache *c, uint64_t id, uint64_t now)
{
    struct gw_cache_hit h;

    if (!gw_cache_get(c, id, now, ANY, &h))
        return false;
    free(h.body);
    return true;
}

static void fill(struct gw_cache *c, uint64_t id, const char *body, uint64_t now)
{
    assert_true(gw_cache_fill(c, id, gw_cache_generation(c, id), body, strlen(body), now));
}

static void test_hit_until_ttl(void **state)
{
    struct gw_cache *c = cache_with(10000, 100, 1 << 20);
    struct gw_cache_hit h;

    (void)state;
    assert_false(has(c, 1, T0));
    fill(c, 1, BODY, T0);
    assert_true(gw_cache_get(c, 1, T0 + 2500, ANY, &h));
    assert_string_equal(h.body, BODY);
    assert_int_equal(h.len, strlen(BODY));
    assert_int_equal(h.age_ms, 2500);
    assert_int_equal(h.ttl_left_ms, 7500);
    free(h.body);
    assert_true(has(c, 1, T0 + 9999));
    assert_false(has(c, 1, T0 + 10000));
    /* Expired entries go: nothing is held for them. */
    assert_int_equal(gw_cache_stats(c).entries, 0);
    gw_cache_free(c);
}

/* A hit carries the ETag worked out when the body was stored: the same as hashing it again. */
static void test_hit_carries_the_stored_etag(void **state)
{
    static const char other[] = "{\"id\":1,\"name\":\"b\"}";
    struct gw_cache *c = cache_with(10000, 100, 1 << 20);
    struct gw_cache_hit h;
    char want[GW_ETAG_BYTES];

    (void)state;
    fill(c, 1, BODY, T0);
    assert_true(gw_cache_get(c, 1, T0, ANY, &h));
    assert_int_equal(gw_cachectl_etag(BODY, strlen(BODY), want), 0);
    assert_string_equal(h.etag, want);
    free(h.body);
    /* A write's answer replaces it, and its ETag with it. */
    assert_true(gw_cache_write(c, 1, gw_cache_generation(c, 1), other, strlen(other), T0));
    assert_true(gw_cache_get(c, 1, T0, ANY, &h));
    assert_int_equal(gw_cachectl_etag(other, strlen(other), want), 0);
    assert_string_equal(h.etag, want);
    assert_string_equal(h.body, other);
    free(h.body);
    gw_cache_free(c);
}

static void test_max_age(void **state)
{
    struct gw_cache *c = cache_with(10000, 100, 1 << 20);
    struct gw_cache_hit h;

    (void)state;
    fill(c, 1, BODY, T0);
    assert_false(gw_cache_get(c, 1, T0 + 3000, 2000, &h));
    assert_true(gw_cache_get(c, 1, T0 + 3000, 3000, &h));
    free(h.body);
    /* Not beyond the ttl, whatever the caller accepts. */
    assert_false(gw_cache_get(c, 1, T0 + 10000, 60000, &h));
    gw_cache_free(c);
}

static void test_off_keeps_nothing(void **state)
{
    struct gw_cache *c = cache_with(0, 100, 1 << 20);

    (void)state;
    assert_false(gw_cache_fill(c, 1, gw_cache_generation(c, 1), BODY, strlen(BODY), T0));
    assert_false(gw_cache_write(c, 1, gw_cache_generation(c, 1), BODY, strlen(BODY), T0));
    assert_false(has(c, 1, T0));
    assert_int_equal(gw_cache_stats(c).entries, 0);
    gw_cache_free(c);
}

static void test_lru_by_entries(void **state)
{
    struct gw_cache *c = cache_with(10000, 3, 1 << 20);

    (void)state;
    fill(c, 1, BODY, T0);
    fill(c, 2, BODY, T0);
    fill(c, 3, BODY, T0);
    assert_true(has(c, 1, T0 + 1)); /* 1 is now the most recently used: 2 goes next */
    fill(c, 4, BODY, T0 + 2);
    assert_int_equal(gw_cache_stats(c).entries, 3);
    assert_false(has(c, 2, T0 + 3));
    assert_true(has(c, 1, T0 + 3));
    assert_true(has(c, 3, T0 + 3));
    assert_true(has(c, 4, T0 + 3));
    gw_cache_free(c);
}

static void test_lru_by_bytes(void **state)
{
    char big[3000];
    struct gw_cache *c = cache_with(10000, 1000, 8192);
    struct gw_cache_stats st;
    uint64_t id;

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (id = 1; id <= 10; id++) {
        fill(c, id, big, T0 + id);
        st = gw_cache_stats(c);
        assert_true(st.bytes <= 8192);
    }
    /* Two bodies of 3000 bytes fit in 8192 with their bookkeeping, three do not. */
    assert_int_equal(st.entries, 2);
    assert_true(has(c, 10, T0 + 20));
    assert_true(has(c, 9, T0 + 20));
    assert_false(has(c, 8, T0 + 20));
    gw_cache_free(c);
}

static void test_too_big_is_not_stored(void **state)
{
    char big[5000];
    struct gw_cache *c = cache_with(10000, 1000, 4096);

    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fill(c, 1, BODY, T0);
    assert_false(gw_cache_fill(c, 1, gw_cache_generation(c, 1), big, strlen(big), T0));
    /* The old entry does not survive a newer answer that could not be kept. */
    assert_false(has(c, 1, T0));
    gw_cache_free(c);
}

static void test_read_started_before_write_is_not_stored(void **state)
{
    struct gw_cache *c = cache_with(10000, 100, 1 << 20);
    uint64_t read_gen = gw_cache_generation(c, 7);
    uint64_t write_gen = gw_cache_generation(c, 7);
    struct gw_cache_hit h;

    (void)state;
    /* The write ends first and stores its customer; the read's older answer comes later. */
    assert_true(gw_cache_write(c, 7, write_gen, "{\"v\":2}", 7, T0 + 10));
    assert_false(gw_cache_fill(c, 7, read_gen, "{\"v\":1}", 7, T0 + 20));
    assert_true(gw_cache_get(c, 7, T0 + 30, ANY, &h));
    assert_string_equal(h.body, "{\"v\":2}");
    free(h.body);
    /* A read that starts after the write may store. */
    assert_true(gw_cache_fill(c, 7, gw_cache_generation(c, 7), "{\"v\":3}", 7, T0 + 40));
    gw_cache_free(c);
}

static void test_overlapping_writes_keep_nothing(void **state)
{
    struct gw_cache *c = cache_with(10000, 100, 1 << 20);
    uint64_t g1 = gw_cache_generation(c, 7);
    uint64_t g2 = gw_cache_generation(c, 7);

    (void)state;
    assert_true(gw_cache_write(c, 7, g2, "{\"v\":2}", 7, T0));
    /* Which one HelpCrunch applied last is unknown: the entry goes. */
    assert_false(gw_cache_write(c, 7, g1, "{\"v\":1}", 7, T0 + 1));
    assert_false(has(c, 7, T0 + 2));
    gw_cache_free(c);
}

static void test_delete_evicts(void **state)
{
    struct gw_cache *c = cache_with(10000, 100, 1 << 20);
    uint64_t read_gen;

    (void)state;
    fill(c, 5, BODY, T0);
    read_gen = gw_cache_generation(c, 5);
    assert_false(gw_cache_write(c, 5, gw_cache_generation(c, 5), NULL, 0, T0 + 1));
    assert_false(has(c, 5, T0 + 2));
    assert_int_equal(gw_cache_stats(c).entries, 0);
    assert_int_equal(gw_cache_stats(c).bytes, 0);
    /* A read in flight across the delete does not bring the contact back. */
    assert_false(gw_cache_fill(c, 5, read_gen, BODY, strlen(BODY), T0 + 3));
    gw_cache_free(c);
}

static void test_reconfigure_trims_and_turns_off(void **state)
{
    struct gw_cache *c = cache_with(10000, 100, 1 << 20);
    uint64_t id;

    (void)state;
    for (id = 1; id <= 50; id++)
        fill(c, id, BODY, T0 + id);
    assert_int_equal(gw_cache_stats(c).entries, 50);
    assert_int_equal(gw_cache_configure(c, 10000, 10, 1 << 20), 0);
    assert_int_equal(gw_cache_stats(c).entries, 10);
    assert_true(has(c, 50, T0 + 100));
    assert_false(has(c, 40, T0 + 100));
    assert_int_equal(gw_cache_configure(c, 0, 10, 1 << 20), 0);
    assert_int_equal(gw_cache_stats(c).entries, 0);
    assert_int_equal(gw_cache_stats(c).bytes, 0);
    gw_cache_free(c);
}

static void test_many_ids_grow_buckets(void **state)
{
    struct gw_cache *c = cache_with(10000, 5000, 1 << 24);
    uint64_t id;

    (void)state;
    for (id = 1; id <= 5000; id++)
        fill(c, id * 7919, BODY, T0);
    assert_int_equal(gw_cache_configure(c, 10000, 100000, 1 << 24), 0);
    for (id = 1; id <= 5000; id++)
        assert_true(has(c, id * 7919, T0 + 1));
    gw_cache_free(c);
}

static void test_cache_control(void **state)
{
    uint64_t m;

    (void)state;
    m = ANY;
    gw_cachectl_request(NULL, &m);
    assert_true(m == ANY);
    m = ANY;
    gw_cachectl_request("no-cache", &m);
    assert_true(m == 0);
    m = ANY;
    gw_cachectl_request("max-age=0", &m);
    assert_true(m == 0);
    m = ANY;
    gw_cachectl_request(" Max-Age=5 , no-transform", &m);
    assert_true(m == 5000);
    m = ANY;
    gw_cachectl_request("max-age=5x, private, max-age=", &m);
    assert_true(m == ANY);
    m = ANY;
    gw_cachectl_request("max-age=99999999999999999999999", &m);
    assert_true(m > 86400000ULL && m != ANY);
    m = 3000;
    gw_cachectl_request("max-age=10", &m);
    assert_true(m == 3000);
}

static void test_etag_and_none_match(void **state)
{
    char a[GW_ETAG_BYTES];
    char b[GW_ETAG_BYTES];
    char list[128];

    (void)state;
    assert_int_equal(gw_cachectl_etag("{}", 2, a), 0);
    assert_int_equal(gw_cachectl_etag("{ }", 3, b), 0);
    /* 32 hex digits in quotes; the room left is for the gzip one's "-gz". */
    assert_int_equal(strlen(a), 34);
    assert_int_equal(GW_ETAG_BYTES, 34 + 3 + 1);
    assert_true(a[0] == '"' && a[33] == '"');
    assert_string_not_equal(a, b);
    assert_true(gw_cachectl_none_match(a, a));
    assert_true(gw_cachectl_none_match("*", a));
    snprintf(list, sizeof(list), "\"x\", W/%s", a);
    assert_true(gw_cachectl_none_match(list, a));
    assert_false(gw_cachectl_none_match(b, a));
    assert_false(gw_cachectl_none_match(NULL, a));
    assert_false(gw_cachectl_none_match("", a));
    assert_false(gw_cachectl_none_match("\"x\"", a));
}

/* The gzip representation's ETag: the same hash with "-gz" inside the quotes (RFC 9110
 * section 8.8.3: a strong ETag names one representation), matched only as itself. */
static void test_etag_gzip(void **state)
{
    char a[GW_ETAG_BYTES];
    char gz[GW_ETAG_BYTES];
    char list[128];
    char empty[GW_ETAG_BYTES] = "";

    (void)state;
    assert_int_equal(gw_cachectl_etag("{}", 2, a), 0);
    memcpy(gz, a, sizeof(gz));
    gw_cachectl_etag_gzip(gz);
    assert_int_equal(strlen(gz), GW_ETAG_BYTES - 1);
    assert_memory_equal(gz, a, 33);
    assert_string_equal(gz + 33, "-gz\"");
    assert_true(gw_cachectl_none_match(gz, gz));
    assert_false(gw_cachectl_none_match(a, gz));
    assert_false(gw_cachectl_none_match(gz, a));
    assert_true(gw_cachectl_none_match("*", gz));
    snprintf(list, sizeof(list), "%s, W/%s", a, gz);
    assert_true(gw_cachectl_none_match(list, gz));
    assert_true(gw_cachectl_none_match(list, a));
    /* Once only: a second call finds no room and leaves it as it is. */
    gw_cachectl_etag_gzip(gz);
    assert_string_equal(gz + 33, "-gz\"");
    gw_cachectl_etag_gzip(empty);
    assert_string_equal(empty, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_until_ttl),
        cmocka_unit_test(test_hit_carries_the_stored_etag),
        cmocka_unit_test(test_max_age),
        cmocka_unit_test(test_off_keeps_nothing),
        cmocka_unit_test(test_lru_by_entries),
        cmocka_unit_test(test_lru_by_bytes),
        cmocka_unit_test(test_too_big_is_not_stored),
        cmocka_unit_test(test_read_started_before_write_is_not_stored),
        cmocka_unit_test(test_overlapping_writes_keep_nothing),
        cmocka_unit_test(test_delete_evicts),
        cmocka_unit_test(test_reconfigure_trims_and_turns_off),
        cmocka_unit_test(test_many_ids_grow_buckets),
        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_etag_and_none_match),
        cmocka_unit_test(test_etag_gzip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

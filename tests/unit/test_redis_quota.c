/*
 * Unit tests of src/redis_quota.c against a real redis-server (tests/support/redis_server.h),
 * through the ACL user that docs/configuration.md describes. Two "replicas" are two
 * connections, each with its own shared quota, on one loop: together they are admitted at the
 * configured rate; a wait within max_wait reserves its slot (and a refusal reserves none), the
 * other replica queues behind it; a 429 reported by one puts the other in the cooldown, and a
 * shorter one later does not shorten it; the keys are named by a hash of the API key, never the
 * key, and expire; NOSCRIPT sends the script whole, once; an error answer takes the connection
 * down; a paused Redis answers "not shared" by the deadline, and nothing is asked while it is
 * down; cancel and free leave no callback. Exits 77 (skipped) without redis-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "hcgw/config.h"
#include "hcgw/err.h"
#include "hcgw/governor.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"
#include "hcgw/redis.h"
#include "hcgw/redis_quota.h"
#include "hcgw/secret.h"

#include "../support/tmpdir.h"
#include "../support/redis_server.h"
#include "../support/run_until.h"

/* No wait in a test lasts longer than this. */
#define GUARD_MS 15000u

/* The API keys of the tests' two accounts. */
#define API_KEY "test-api-key-0123456789"
#define OTHER_KEY "test-api-key-other-account"

/* The password file's path, in tmpdir. */
#define PW_PATH_BYTES 128

static struct redis_server srv;
static char hcgw_pw[PW_PATH_BYTES];

/* One hcgw replica: its connection and its shared quota. */
struct replica {
    struct gw_redis *redis;
    struct gw_redis_quota *quota;
    struct gw_secret *key;
    int ups, downs;
};

static void on_state(void *data, bool up, const char *reason)
{
    struct replica *rep = data;

    (void)reason;
    if (up)
        rep->ups++;
    else
        rep->downs++;
}

struct verdict {
    int calls;
    struct gw_redis_quota_answer a;
};

static void on_verdict(void *data, const struct gw_redis_quota_answer *a)
{
    struct verdict *v = data;

    v->calls++;
    v->a = *a;
}

/* A configuration: the quota of @p quota, the api key @p key, Redis as the user @p user. */
static struct gw_config *config(const char *quota, const char *user, const char *more)
{
    char path[PATH_MAX], text[4096];
    char *errors = NULL;
    struct gw_config *cfg;
    int n = snprintf(text, sizeof text,
                     "quota = { %s };\n"
                     "redis = { url = \"redis://127.0.0.1:%d/0\"; username = \"%s\";\n"
                     "  password_file = \"%s\"; key_prefix = \"hcgw:test:\"; timeout_ms = 250;\n"
                     "  %s };\n",
                     quota, srv.port, user, hcgw_pw, more ? more : "");

    assert_true(n > 0 && (size_t)n < sizeof text);
    tmpdir_write("test.conf", text, (size_t)n, path, sizeof path);
    cfg = gw_config_load(path, &errors);
    if (errors)
        print_error("%s", errors);
    assert_non_null(cfg);
    return cfg;
}

static struct gw_secret *api_key(const char *value)
{
    char *error = NULL;
    struct gw_secret *s;

    setenv("HCGW_API_KEY", value, 1);
    s = gw_secret_load(NULL, NULL, &error);
    unsetenv("HCGW_API_KEY");
    assert_null(error);
    assert_non_null(s);
    return s;
}

static void replica_start(struct replica *rep, struct gw_loop *loop, const struct gw_config *cfg,
                          const char *key)
{
    memset(rep, 0, sizeof *rep);
    rep->key = api_key(key);
    rep->redis = gw_redis_new(loop, cfg, NULL, on_state, rep);
    assert_non_null(rep->redis);
    rep->quota = gw_redis_quota_new(rep->redis, cfg, rep->key);
    assert_non_null(rep->quota);
    assert_false(gw_redis_quota_usable(rep->quota));
    if (!RUN_UNTIL(loop, gw_redis_quota_usable(rep->quota), GUARD_MS))
        print_error("not up: %s\n", gw_redis_last_error(rep->redis));
    assert_true(gw_redis_quota_usable(rep->quota));
}

static void replica_stop(struct replica *rep)
{
    gw_redis_quota_free(rep->quota);
    gw_redis_free(rep->redis);
    gw_secret_free(rep->key);
}

/* Ask @p rep's shared bucket, deadline @p within_ms from now, and wait for the answer. */
static struct gw_redis_quota_answer ask(struct gw_loop *loop, struct replica *rep,
                                        uint64_t within_ms)
{
    struct gw_redis_quota_ask *handle = NULL;
    struct verdict v = {0};
    uint64_t now = gw_loop_now(loop);

    assert_int_equal(gw_redis_quota_admit(rep->quota, now, now + within_ms, on_verdict, &v,
                                          &handle), 0);
    assert_non_null(handle);
    assert_int_equal(v.calls, 0);
    assert_true(RUN_UNTIL(loop, v.calls == 1, GUARD_MS));
    return v.a;
}

static void flushall(void)
{
    freeReplyObject(redis_server_do(&srv, "FLUSHALL"));
}

static void test_admit_and_key_names(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("requests_per_minute = 120; burst = 2;", "hcgw", NULL);
    struct replica a, b;
    struct gw_redis_quota_answer v;
    struct gw_redis_quota_stats st;
    redisReply *keys, *ttl;
    char first[128];

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY);
    v = ask(loop, &a, 10000);
    assert_true(v.shared);
    assert_int_equal(v.verdict, GW_GOV_GO);
    assert_int_equal(v.wait_ms, 0);
    /* One key, the bucket, named by the hash: never by the key itself. */
    keys = redis_server_do(&srv, "KEYS *");
    assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
    assert_int_equal(keys->elements, 1);
    snprintf(first, sizeof first, "%s", keys->element[0]->str);
    freeReplyObject(keys);
    assert_int_equal(strlen(first), strlen("hcgw:test:{}:tat") + 32);
    assert_int_equal(strncmp(first, "hcgw:test:{", 11), 0);
    assert_string_equal(first + 11 + 32, "}:tat");
    assert_int_equal(strspn(first + 11, "0123456789abcdef"), 32);
    assert_null(strstr(first, API_KEY));
    /* It expires once it no longer matters: within tau plus an interval (1 s). */
    ttl = redis_server_do(&srv, "PTTL %s", first);
    assert_true(ttl->integer > 0 && ttl->integer <= 1001);
    freeReplyObject(ttl);

    /* Another account, another bucket: its first call is not held back by this one's. */
    replica_start(&b, loop, cfg, OTHER_KEY);
    v = ask(loop, &b, 10000);
    assert_int_equal(v.verdict, GW_GOV_GO);
    keys = redis_server_do(&srv, "KEYS *");
    assert_int_equal(keys->elements, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_null(strstr(keys->element[i]->str, API_KEY));
        assert_null(strstr(keys->element[i]->str, OTHER_KEY));
    }
    freeReplyObject(keys);
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.decided, 1);
    assert_int_equal(st.go, 1);
    assert_int_equal(st.fallbacks, 0);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* The asks one replica keeps in flight, one at a time, in test_rate_two_replicas. */
struct runner {
    struct replica *rep;
    struct verdict v;
    bool in_flight;
    int go, rejected;
};

static void run_ask(struct gw_loop *loop, struct runner *r)
{
    struct gw_redis_quota_ask *handle;
    uint64_t now = gw_loop_now(loop);

    if (r->in_flight && r->v.calls == 1) {
        assert_true(r->v.a.shared);
        r->go += r->v.a.verdict == GW_GOV_GO;
        r->rejected += r->v.a.verdict == GW_GOV_REJECT;
        assert_int_not_equal(r->v.a.verdict, GW_GOV_WAIT); /* max_wait_ms = 0 */
        r->in_flight = false;
    }
    if (!r->in_flight) {
        memset(&r->v, 0, sizeof r->v);
        assert_int_equal(gw_redis_quota_admit(r->rep->quota, now, now + 10000, on_verdict,
                                              &r->v, &handle), 0);
        r->in_flight = true;
    }
}

/*
 * Two replicas ask as fast as Redis answers for a window: together they are admitted at most
 * burst + window / interval (+1 for the slot that falls due as the window ends), and each of
 * them gets some of it.
 */
static void test_rate_two_replicas(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    /* 600 a minute: one every 100 ms. */
    struct gw_config *cfg =
        config("requests_per_minute = 600; burst = 3; max_wait_ms = 0;", "hcgw", NULL);
    struct replica a, b;
    struct runner ra = {0}, rb = {0};
    uint64_t start, window;
    int total;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY);
    replica_start(&b, loop, cfg, API_KEY);
    ra.rep = &a;
    rb.rep = &b;
    start = gw_clock_ms();
    while (gw_clock_ms() - start < 1500) {
        run_ask(loop, &ra);
        run_ask(loop, &rb);
        gw_loop_run_once(loop, 5);
    }
    /* The last asks answer; the window is over once they have. */
    assert_true(RUN_UNTIL(loop, ra.v.calls == 1 && rb.v.calls == 1, GUARD_MS));
    window = gw_clock_ms() - start;
    ra.go += ra.v.a.verdict == GW_GOV_GO;
    rb.go += rb.v.a.verdict == GW_GOV_GO;
    total = ra.go + rb.go;
    print_message("admitted %d (%d + %d) in %" PRIu64 " ms, refused %d\n", total, ra.go, rb.go,
                  window, ra.rejected + rb.rejected);
    assert_true((uint64_t)total <= 3 + window / 100 + 1);
    assert_true(total >= 3 + 1500 / 100 / 2); /* the bucket is not stuck either */
    assert_true(ra.go >= 1 && rb.go >= 1);
    assert_true(ra.rejected + rb.rejected > total); /* they did ask past the rate */
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/*
 * A wait within max_wait reserves the slot; a refusal reserves none; the deadline bounds it.
 * Slots are fixed on Redis's clock, so each wait is its slot less the time since the first
 * call: the bounds leave half a second for a slow machine between the asks.
 */
static void test_wait_reservation(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    /* One a second, no burst. */
    struct gw_config *cfg =
        config("requests_per_minute = 60; burst = 1; max_wait_ms = 5000;", "hcgw", NULL);
    struct gw_config *short_wait =
        config("requests_per_minute = 60; burst = 1; max_wait_ms = 1500;", "hcgw", NULL);
    struct replica a, b;
    struct gw_redis_quota_answer v;
    struct gw_redis_quota_stats st;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY);
    replica_start(&b, loop, cfg, API_KEY);
    v = ask(loop, &a, 10000);
    assert_int_equal(v.verdict, GW_GOV_GO);
    v = ask(loop, &a, 10000);
    assert_int_equal(v.verdict, GW_GOV_WAIT);
    assert_true(v.wait_ms > 500 && v.wait_ms <= 1000);
    /* The other replica queues behind both. */
    v = ask(loop, &b, 10000);
    assert_int_equal(v.verdict, GW_GOV_WAIT);
    assert_true(v.wait_ms > 1500 && v.wait_ms <= 2000);
    /* Past max_wait: refused, with the Retry-After of the next slot, and nothing taken. */
    gw_redis_quota_reconfigure(a.quota, short_wait, a.key);
    v = ask(loop, &a, 10000);
    assert_true(v.shared);
    assert_int_equal(v.verdict, GW_GOV_REJECT);
    assert_true(v.retry_after_s >= 2 && v.retry_after_s <= 3);
    assert_int_equal(v.wait_ms, 0);
    /* The deadline bounds the wait too: 3 s away is refused for a call that ends in 2. */
    gw_redis_quota_reconfigure(a.quota, cfg, a.key);
    v = ask(loop, &a, 2000);
    assert_int_equal(v.verdict, GW_GOV_REJECT);
    v = ask(loop, &b, 10000);
    assert_int_equal(v.verdict, GW_GOV_WAIT);
    assert_true(v.wait_ms > 2500 && v.wait_ms <= 3000);
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.decided, 4);
    assert_int_equal(st.go, 1);
    assert_int_equal(st.waits, 1);
    assert_int_equal(st.rejections, 2);
    assert_int_equal(st.queued, 1);
    gw_redis_quota_done_waiting(a.quota, 1000);
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.wait_ms_total, 1000);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_config_free(short_wait);
    gw_loop_free(loop);
}

/* A 429 seen by one replica holds the other back; a shorter one later changes nothing. */
static void test_cooldown_shared(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg =
        config("requests_per_minute = 600; burst = 5; max_wait_ms = 0;", "hcgw", NULL);
    struct gw_config *patient =
        config("requests_per_minute = 600; burst = 5; max_wait_ms = 5000;", "hcgw", NULL);
    struct replica a, b;
    struct gw_redis_quota_answer v;
    struct gw_redis_quota_stats st;
    redisReply *keys, *ttl;
    char cooldown_key[128] = "";

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY);
    replica_start(&b, loop, cfg, API_KEY);
    v = ask(loop, &b, 10000);
    assert_int_equal(v.verdict, GW_GOV_GO);
    assert_int_equal(gw_redis_quota_on_429(a.quota, gw_loop_now(loop), 2), 0);
    assert_int_equal(gw_redis_quota_cooldown_left_s(a.quota, gw_loop_now(loop)), 2);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    assert_true(gw_redis_quota_usable(a.quota));
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.cooldowns, 1);

    keys = redis_server_do(&srv, "KEYS *:cooldown");
    assert_int_equal(keys->elements, 1);
    snprintf(cooldown_key, sizeof cooldown_key, "%s", keys->element[0]->str);
    freeReplyObject(keys);
    assert_null(strstr(cooldown_key, API_KEY));
    ttl = redis_server_do(&srv, "PTTL %s", cooldown_key);
    assert_true(ttl->integer > 1000 && ttl->integer <= 2000);
    freeReplyObject(ttl);

    /* The other replica, which saw no 429, is held back too. */
    assert_int_equal(gw_redis_quota_cooldown_left_s(b.quota, gw_loop_now(loop)), 0);
    v = ask(loop, &b, 10000);
    assert_true(v.shared);
    assert_int_equal(v.verdict, GW_GOV_REJECT);
    assert_int_equal(v.retry_after_s, 2);
    assert_int_equal(gw_redis_quota_cooldown_left_s(b.quota, gw_loop_now(loop)), 2);
    /* Willing to wait, it gets the first slot after the cooldown, not before. */
    gw_redis_quota_reconfigure(b.quota, patient, b.key);
    v = ask(loop, &b, 10000);
    assert_int_equal(v.verdict, GW_GOV_WAIT);
    assert_true(v.wait_ms > 1000 && v.wait_ms <= 2000);

    /* A shorter cooldown does not shorten the one in force. */
    assert_int_equal(gw_redis_quota_on_429(b.quota, gw_loop_now(loop), 1), 0);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(b.redis) == 0, GUARD_MS));
    ttl = redis_server_do(&srv, "PTTL %s", cooldown_key);
    assert_true(ttl->integer > 1000);
    freeReplyObject(ttl);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_config_free(patient);
    gw_loop_free(loop);
}

/* Redis forgot the scripts: the next ask sends the script whole, once. */
static void test_noscript(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("requests_per_minute = 6000; burst = 10;", "hcgw", NULL);
    struct replica a;
    struct gw_redis_quota_answer v;
    struct gw_redis_quota_stats st;

    (void)state;
    flushall();
    freeReplyObject(redis_server_do(&srv, "SCRIPT FLUSH"));
    replica_start(&a, loop, cfg, API_KEY);
    v = ask(loop, &a, 10000);
    assert_true(v.shared);
    assert_int_equal(v.verdict, GW_GOV_GO);
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.script_loads, 1);
    v = ask(loop, &a, 10000);
    assert_int_equal(v.verdict, GW_GOV_GO);
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.script_loads, 1);
    assert_true(gw_redis_quota_usable(a.quota));
    replica_stop(&a);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* A user who may not run the script: the error answer takes the connection down. */
static void test_error_answer_goes_down(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("requests_per_minute = 60;", "noeval", NULL);
    struct gw_redis_quota_stats st;
    struct gw_redis_stats rst;
    struct replica a;
    struct gw_redis_quota_answer v;

    (void)state;
    replica_start(&a, loop, cfg, API_KEY);
    v = ask(loop, &a, 10000);
    assert_false(v.shared);
    assert_false(gw_redis_quota_usable(a.quota));
    assert_int_equal(a.downs, 1);
    assert_non_null(strstr(gw_redis_last_error(a.redis), "the quota script failed: NOPERM"));
    gw_redis_stats(a.redis, &rst);
    assert_int_equal(rst.errors[GW_REDIS_ERR_REPLY], 1); /* counted once, as it came */
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.fallbacks, 1);
    assert_int_equal(st.decided, 0);
    replica_stop(&a);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* Redis paused: the ask answers "not shared" in time; nothing is asked while down. */
static void test_redis_away(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("requests_per_minute = 600;", "hcgw", NULL);
    struct gw_redis_quota_ask *handle;
    struct gw_redis_quota_stats st;
    struct replica a;
    struct gw_redis_quota_answer v;
    struct verdict never = {0};
    uint64_t t0;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY);
    redis_server_pause(&srv);
    t0 = gw_clock_ms();
    v = ask(loop, &a, 10000);
    assert_false(v.shared);
    assert_true(gw_clock_ms() - t0 < 250 + 1000); /* timeout_ms, not the call's deadline */
    assert_false(gw_redis_quota_usable(a.quota));
    assert_int_equal(a.downs, 1);
    assert_int_equal(gw_redis_quota_admit(a.quota, gw_loop_now(loop),
                                          gw_loop_now(loop) + 10000, on_verdict, &never,
                                          &handle),
                     GW_ERR_UPSTREAM_UNAVAILABLE);
    assert_null(handle);
    assert_int_equal(gw_redis_quota_on_429(a.quota, gw_loop_now(loop), 3),
                     GW_ERR_UPSTREAM_UNAVAILABLE);
    /* Its own view of the cooldown is set even so. */
    assert_int_equal(gw_redis_quota_cooldown_left_s(a.quota, gw_loop_now(loop)), 3);
    gw_redis_quota_stats(a.quota, &st);
    assert_int_equal(st.fallbacks, 2);
    redis_server_resume(&srv);
    assert_true(RUN_UNTIL(loop, gw_redis_quota_usable(a.quota), GUARD_MS));
    v = ask(loop, &a, 10000);
    assert_true(v.shared);
    assert_int_equal(never.calls, 0);
    replica_stop(&a);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* A cancelled ask, and one in flight when the quota is freed: no callback, nothing leaks. */
static void test_cancel_and_free(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("requests_per_minute = 600;", "hcgw", NULL);
    struct gw_redis_quota_ask *handle;
    struct replica a;
    struct verdict v1 = {0}, v2 = {0};
    uint64_t now;

    (void)state;
    replica_start(&a, loop, cfg, API_KEY);
    now = gw_loop_now(loop);
    assert_int_equal(gw_redis_quota_admit(a.quota, now, now + 10000, on_verdict, &v1, &handle),
                     0);
    gw_redis_quota_cancel(handle);
    assert_int_equal(gw_redis_quota_admit(a.quota, now, now + 10000, on_verdict, &v2, &handle),
                     0);
    assert_int_equal(gw_redis_quota_on_429(a.quota, now, 1), 0);
    gw_redis_quota_free(a.quota);
    a.quota = NULL;
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    assert_int_equal(v1.calls, 0);
    assert_int_equal(v2.calls, 0);
    assert_true(gw_redis_up(a.redis));
    replica_stop(&a);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

static int test_teardown(void **state)
{
    (void)state;
    if (srv.paused)
        redis_server_resume(&srv);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    if (tmpdir_make("rquota") != 0)
        return -1;
    tmpdir_write("hcgw.pw", HCGW_PASSWORD "\n", strlen(HCGW_PASSWORD) + 1, hcgw_pw,
                 sizeof hcgw_pw);
    chmod(hcgw_pw, 0600);
    redis_server_start(&srv);
    return 0;
}

static int group_teardown(void **state)
{
    redis_server_kill(&srv);
    return tmpdir_group_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_admit_and_key_names, test_teardown),
        cmocka_unit_test_teardown(test_rate_two_replicas, test_teardown),
        cmocka_unit_test_teardown(test_wait_reservation, test_teardown),
        cmocka_unit_test_teardown(test_cooldown_shared, test_teardown),
        cmocka_unit_test_teardown(test_noscript, test_teardown),
        cmocka_unit_test_teardown(test_error_answer_goes_down, test_teardown),
        cmocka_unit_test_teardown(test_redis_away, test_teardown),
        cmocka_unit_test_teardown(test_cancel_and_free, test_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    unsetenv("HCGW_API_KEY");
    unsetenv("HCGW_API_KEY_FILE");
    if (!redis_server_available()) {
        printf("skipped: %s is not installed (scripts/install-deps.sh installs it)\n",
               REDIS_SERVER_BIN);
        return 77;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

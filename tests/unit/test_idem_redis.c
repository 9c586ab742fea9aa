/*
 * Unit tests of src/idem_redis.c against a real redis-server (tests/support/redis_server.h),
 * through the ACL user that docs/configuration.md describes. Two "replicas" are two
 * connections on one loop, each with its shared store and its own local table: a key held on
 * one is in progress on the other, its final answer replayed there, another body refused; an
 * abandoned claim goes or becomes unknown (then recovered by one holder only); a claim past its
 * lease is taken over and its holder's late end changes nothing; records are named by a hash
 * of the account, client and key (never the key) under the prefix and expire; a body over the
 * bound leaves the record unknown; NOSCRIPT sends the script whole. Redis away (paused, or an
 * error answer): each verb falls back to the local table within redis.timeout_ms, counted, and
 * what the table kept counts once Redis is back (and becomes the Redis record). Cancel, stop
 * and free leave no callback behind. Exits 77 (skipped) without redis-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "hcgw/config.h"
#include "hcgw/err.h"
#include "hcgw/idem.h"
#include "hcgw/idem_local.h"
#include "hcgw/idem_redis.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"
#include "hcgw/metrics.h"
#include "hcgw/redis.h"
#include "hcgw/secret.h"

#include "../support/tmpdir.h"
#include "../support/redis_server.h"
#include "../support/run_until.h"

/* No wait in a test lasts longer than this. */
#define GUARD_MS 15000u
/* redis.timeout_ms in these tests. */
#define TIMEOUT_MS 250u
/* A lease that outlasts every step of a test but the one that waits it out. */
#define LEASE_MS 60000u
/* The short lease of test_lease_and_stale_claim, and how long that test waits it out. */
#define SHORT_LEASE_MS 1500u
#define PAST_LEASE_MS 2000u

#define API_KEY "test-api-key-0123456789"
#define OTHER_KEY "test-api-key-other-account"
#define IDEM_KEY "8e03978e-40d5-43e8-bc93-6894a57f9324"
#define CUSTOMER "{\"id\":1568838,\"name\":\"Ann\"}"
#define PREFIX "hcgw:test:"

#define PW_PATH_BYTES 128

static struct redis_server srv;
static char hcgw_pw[PW_PATH_BYTES];

/* One hcgw replica: its connection, its local table, its shared store over both. */
struct replica {
    struct gw_loop *loop;
    struct gw_redis *redis;
    struct gw_secret *key;
    struct gw_idem_store *local;
    struct gw_idem_store *store;
    struct gw_metrics *metrics;
};

/* One request's claim, and what became of its verbs. */
struct ask {
    struct gw_idem_claim c;
    int done;                        /* times its callback ran */
    bool later;                      /* its last verb answered GW_IDEM_LATER */
};

static void on_done(struct gw_idem_claim *c)
{
    struct ask *a = c->data;

    a->done++;
}

/* A configuration: Redis as the user @p user, and @p more (other groups). */
static struct gw_config *config(const char *user, const char *more)
{
    char path[PATH_MAX], text[4096];
    char *errors = NULL;
    struct gw_config *cfg;
    int n = snprintf(text, sizeof text,
                     "redis = { url = \"redis://127.0.0.1:%d/0\"; username = \"%s\";\n"
                     "  password_file = \"%s\"; key_prefix = \"" PREFIX "\"; timeout_ms = %u; };\n"
                     "%s\n",
                     srv.port, user, hcgw_pw, TIMEOUT_MS, more ? more : "");

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

/* Start a replica and wait until its connection is up (unless @p wait_up is false). */
static void replica_start(struct replica *rep, struct gw_loop *loop, const struct gw_config *cfg,
                          const char *key, bool wait_up)
{
    memset(rep, 0, sizeof *rep);
    rep->loop = loop;
    rep->key = api_key(key);
    rep->metrics = calloc(1, sizeof *rep->metrics);
    assert_non_null(rep->metrics);
    rep->local = gw_idem_local_new();
    assert_non_null(rep->local);
    assert_int_equal(gw_idem_configure(rep->local, (uint64_t)cfg->idempotency.ttl_s * 1000u,
                                       cfg->idempotency.max_entries,
                                       cfg->idempotency.max_bytes),
                     0);
    rep->redis = gw_redis_new(loop, cfg, NULL, NULL, NULL);
    assert_non_null(rep->redis);
    rep->store = gw_idem_redis_new(loop, rep->redis, cfg, rep->key, rep->local, rep->metrics);
    assert_non_null(rep->store);
    if (!wait_up)
        return;
    if (!RUN_UNTIL(loop, gw_redis_up(rep->redis), GUARD_MS))
        print_error("not up: %s\n", gw_redis_last_error(rep->redis));
    assert_true(gw_redis_up(rep->redis));
}

static void replica_stop(struct replica *rep)
{
    gw_idem_free(rep->store);
    gw_redis_free(rep->redis);
    gw_idem_free(rep->local);
    gw_secret_free(rep->key);
    free(rep->metrics);
}

static uint64_t fallbacks(const struct replica *rep, enum gw_idem_fallback op)
{
    return rep->metrics->idempotency_fallbacks[op];
}

static struct gw_idem_key key_of(const char *scope, const char *key, const char *body)
{
    struct gw_idem_key k = {.scope = scope, .key = key};

    assert_int_equal(gw_idem_fingerprint(body, strlen(body), k.fingerprint), 0);
    return k;
}

/* Begin @p k on @p rep with @p lease_ms and wait for the verdict. */
static int begin_lease(struct replica *rep, struct ask *a, const struct gw_idem_key *k,
                       uint64_t lease_ms)
{
    uint64_t now = gw_loop_now(rep->loop);
    int rc;

    memset(a, 0, sizeof *a);
    a->c.key = *k;
    a->c.done = on_done;
    a->c.data = a;
    rc = gw_idem_begin(rep->store, &a->c, now, lease_ms, now + 10000);
    a->later = rc == GW_IDEM_LATER;
    if (a->later) {
        assert_int_equal(a->done, 0); /* never from inside the verb */
        assert_true(RUN_UNTIL(rep->loop, a->done == 1, GUARD_MS));
        rc = a->c.verdict;
    } else {
        assert_int_equal(a->c.verdict, rc);
    }
    assert_null(a->c.trip);
    if (rc != GW_IDEM_NEW && rc != GW_IDEM_RECOVER)
        assert_false(a->c.held);
    return rc;
}

/* Begin with a lease longer than any test; a claim it gets is held. */
static int begin(struct replica *rep, struct ask *a, const struct gw_idem_key *k)
{
    int rc = begin_lease(rep, a, k, LEASE_MS);

    if (rc == GW_IDEM_NEW || rc == GW_IDEM_RECOVER)
        assert_true(a->c.held);
    return rc;
}

/* Begin, expect @p verdict, and let go of what it gave (a replay's body). */
static void expect(struct replica *rep, const struct gw_idem_key *k, int verdict)
{
    struct ask a;

    assert_int_equal(begin(rep, &a, k), verdict);
    free(a.c.rec.body);
    /* A claim it got is given back as it was found (for the tests that only look). */
    if (a.c.held)
        gw_idem_abandon(rep->store, &a.c, verdict == GW_IDEM_RECOVER, gw_loop_now(rep->loop));
    assert_true(RUN_UNTIL(rep->loop, gw_redis_pending(rep->redis) == 0, GUARD_MS));
}

/* Complete @p a's claim and wait until the store kept it (or could not). */
static void complete(struct replica *rep, struct ask *a, long status, const char *body,
                     size_t len)
{
    int rc;

    a->done = 0;
    rc = gw_idem_complete(rep->store, &a->c, status, body, len, gw_loop_now(rep->loop));
    a->later = rc == GW_IDEM_LATER;
    assert_false(a->c.held);
    if (a->later)
        assert_true(RUN_UNTIL(rep->loop, a->done == 1, GUARD_MS));
    else
        assert_int_equal(rc, 0);
    assert_null(a->c.trip);
}

/* Abandon @p a's claim, and wait until nothing is in flight on the connection. */
static void abandon(struct replica *rep, struct ask *a, bool unknown)
{
    int done = a->done;

    gw_idem_abandon(rep->store, &a->c, unknown, gw_loop_now(rep->loop));
    assert_false(a->c.held);
    assert_true(RUN_UNTIL(rep->loop, gw_redis_pending(rep->redis) == 0, GUARD_MS));
    assert_int_equal(a->done, done); /* an abandon never calls back */
}

static void flushall(void)
{
    freeReplyObject(redis_server_do(&srv, "FLUSHALL"));
}

/* The names of the records in Redis, in @p out (at most @p cap); returns how many. */
static size_t record_names(char out[][128], size_t cap)
{
    redisReply *keys = redis_server_do(&srv, "KEYS *");
    size_t n;

    assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
    n = keys->elements;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++)
        snprintf(out[i], 128, "%s", keys->element[i]->str);
    freeReplyObject(keys);
    return n;
}

static void test_two_replicas(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key k = key_of("billing", IDEM_KEY, "{\"email\":\"a@x\"}");
    struct gw_idem_key other_body = key_of("billing", IDEM_KEY, "{\"email\":\"b@x\"}");
    struct replica a, b;
    struct ask first, again;
    char names[4][128];
    redisReply *ttl;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    replica_start(&b, loop, cfg, API_KEY, true);
    assert_int_equal(begin(&a, &first, &k), GW_IDEM_NEW);
    assert_true(first.later);
    assert_ptr_equal(first.c.holder, a.store);
    assert_int_equal(gw_idem_stats(a.store).held, 1);
    /* The other replica sees the claim, and the body it was made for. */
    expect(&b, &k, GW_IDEM_IN_PROGRESS);
    expect(&b, &other_body, GW_IDEM_MISMATCH);
    /* One record, named by a hash under the prefix: never the key, the client or the API key;
     * it lives for the lease and the ttl while held. */
    assert_int_equal(record_names(names, 4), 1);
    assert_int_equal(strlen(names[0]), strlen(PREFIX "idem:") + 32);
    assert_int_equal(strncmp(names[0], PREFIX "idem:", strlen(PREFIX "idem:")), 0);
    assert_int_equal(strspn(names[0] + strlen(PREFIX "idem:"), "0123456789abcdef"), 32);
    assert_null(strstr(names[0], "8e03978e"));
    assert_null(strstr(names[0], "billing"));
    ttl = redis_server_do(&srv, "PTTL %s", names[0]);
    assert_true(ttl->integer > (long long)(LEASE_MS + 86400000u - 60000u) &&
                ttl->integer <= (long long)(LEASE_MS + 86400000u));
    freeReplyObject(ttl);

    complete(&a, &first, 201, CUSTOMER, strlen(CUSTOMER));
    assert_true(first.later);
    assert_int_equal(gw_idem_stats(a.store).held, 0);
    /* Kept for the ttl from now. */
    ttl = redis_server_do(&srv, "PTTL %s", names[0]);
    assert_true(ttl->integer > 86400000 - 60000 && ttl->integer <= 86400000);
    freeReplyObject(ttl);
    for (int i = 0; i < 2; i++) {
        struct replica *rep = i == 0 ? &b : &a;

        assert_int_equal(begin(rep, &again, &k), GW_IDEM_REPLAY);
        assert_true(again.later);
        assert_int_equal(again.c.rec.status, 201);
        assert_int_equal(again.c.rec.len, strlen(CUSTOMER));
        assert_string_equal(again.c.rec.body, CUSTOMER);
        free(again.c.rec.body);
    }
    expect(&b, &other_body, GW_IDEM_MISMATCH);
    /* Nothing fell back, and the local tables hold nothing. */
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_BEGIN) + fallbacks(&b, GW_IDEM_FALLBACK_BEGIN),
                     0);
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_COMPLETE), 0);
    assert_int_equal(gw_idem_stats(a.local).entries + gw_idem_stats(b.local).entries, 0);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

static void test_abandon_and_recover(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key k = key_of("", "k-abandon", "{\"email\":\"a@x\"}");
    struct gw_idem_key other_body = key_of("", "k-abandon", "{\"email\":\"b@x\"}");
    struct replica a, b;
    struct ask x, y;
    char names[4][128];

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    replica_start(&b, loop, cfg, API_KEY, true);
    /* Not sent: the record goes, and the key is free again, for any body. */
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_NEW);
    abandon(&a, &x, false);
    assert_int_equal(record_names(names, 4), 0);
    assert_int_equal(begin(&b, &y, &other_body), GW_IDEM_NEW);
    abandon(&b, &y, false);

    /* Unknown: the next request with the key holds it to look first, on whichever replica. */
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_NEW);
    abandon(&a, &x, true);
    expect(&a, &other_body, GW_IDEM_MISMATCH);
    assert_int_equal(begin(&b, &y, &k), GW_IDEM_RECOVER);
    expect(&a, &k, GW_IDEM_IN_PROGRESS);
    /* Still unknown after this attempt too, then found. */
    abandon(&b, &y, true);
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_RECOVER);
    complete(&a, &x, 201, CUSTOMER, strlen(CUSTOMER));
    assert_int_equal(begin(&b, &y, &k), GW_IDEM_REPLAY);
    assert_string_equal(y.c.rec.body, CUSTOMER);
    free(y.c.rec.body);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

static void test_lease_and_stale_claim(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key k = key_of("", "k-lease", "{}");
    struct replica a, b;
    struct ask lost, taker;
    uint64_t until;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    replica_start(&b, loop, cfg, API_KEY, true);
    assert_int_equal(begin_lease(&a, &lost, &k, SHORT_LEASE_MS), GW_IDEM_NEW);
    expect(&b, &k, GW_IDEM_IN_PROGRESS);
    /* Past its lease (Redis's clock) the claim is over: whether it created anything is
     * unknown, and the next request takes it over to look first. */
    until = gw_clock_ms() + PAST_LEASE_MS;
    RUN_UNTIL(loop, gw_clock_ms() >= until, GUARD_MS);
    assert_int_equal(begin(&b, &taker, &k), GW_IDEM_RECOVER);
    /* The lost holder's end, should it still come, changes nothing. */
    complete(&a, &lost, 201, CUSTOMER, strlen(CUSTOMER));
    expect(&a, &k, GW_IDEM_IN_PROGRESS);
    complete(&b, &taker, 422, "{\"errors\":[]}", 13);
    assert_int_equal(begin(&a, &lost, &k), GW_IDEM_REPLAY);
    assert_int_equal(lost.c.rec.status, 422);
    assert_string_equal(lost.c.rec.body, "{\"errors\":[]}");
    free(lost.c.rec.body);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

static void test_scopes_and_accounts(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key billing = key_of("billing", "k", "{}");
    struct gw_idem_key crm = key_of("crm", "k", "{}");
    /* A scope and a key whose concatenations are equal are still two records. */
    struct gw_idem_key ab_c = key_of("ab", "c", "{}");
    struct gw_idem_key a_bc = key_of("a", "bc", "{}");
    struct replica a, other;
    struct ask x;
    char names[8][128];

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    replica_start(&other, loop, cfg, OTHER_KEY, true);
    assert_int_equal(begin(&a, &x, &billing), GW_IDEM_NEW);
    complete(&a, &x, 201, CUSTOMER, strlen(CUSTOMER));
    expect(&a, &billing, GW_IDEM_REPLAY);
    assert_int_equal(begin(&a, &x, &crm), GW_IDEM_NEW);
    abandon(&a, &x, true);
    assert_int_equal(begin(&a, &x, &ab_c), GW_IDEM_NEW);
    abandon(&a, &x, true);
    assert_int_equal(begin(&a, &x, &a_bc), GW_IDEM_NEW);
    abandon(&a, &x, true);
    /* Another HelpCrunch account (another API key) never sees this one's records. */
    assert_int_equal(begin(&other, &x, &billing), GW_IDEM_NEW);
    abandon(&other, &x, true);
    assert_int_equal(record_names(names, 8), 5);
    for (int i = 0; i < 5; i++) {
        assert_null(strstr(names[i], API_KEY));
        assert_null(strstr(names[i], OTHER_KEY));
    }
    replica_stop(&a);
    replica_stop(&other);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

static void test_body_bound(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key largest = key_of("", "k-largest", "{}");
    struct gw_idem_key too_large = key_of("", "k-too-large", "{}");
    char *body = malloc(GW_IDEM_REDIS_MAX_BODY_BYTES + 1);
    struct replica a, b;
    struct ask x;

    (void)state;
    assert_non_null(body);
    memset(body, 'x', GW_IDEM_REDIS_MAX_BODY_BYTES + 1);
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    replica_start(&b, loop, cfg, API_KEY, true);
    /* The largest answer kept comes back whole, in one answer within the connection's bound. */
    assert_int_equal(begin(&a, &x, &largest), GW_IDEM_NEW);
    complete(&a, &x, 201, body, GW_IDEM_REDIS_MAX_BODY_BYTES);
    assert_true(x.later);
    assert_int_equal(begin(&b, &x, &largest), GW_IDEM_REPLAY);
    assert_int_equal(x.c.rec.len, GW_IDEM_REDIS_MAX_BODY_BYTES);
    assert_memory_equal(x.c.rec.body, body, GW_IDEM_REDIS_MAX_BODY_BYTES);
    free(x.c.rec.body);
    /* One byte more: kept as unknown (a later request looks for the contact), not sent. */
    assert_int_equal(begin(&a, &x, &too_large), GW_IDEM_NEW);
    complete(&a, &x, 201, body, GW_IDEM_REDIS_MAX_BODY_BYTES + 1);
    assert_false(x.later);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    expect(&b, &too_large, GW_IDEM_RECOVER);
    assert_true(gw_redis_up(a.redis) && gw_redis_up(b.redis));
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_COMPLETE), 0);
    free(body);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* Redis forgot the script (SCRIPT FLUSH, as after a restart): it is sent whole, and works. */
static void test_noscript(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key k = key_of("", "k-noscript", "{}");
    struct replica a;
    struct ask x;

    (void)state;
    flushall();
    freeReplyObject(redis_server_do(&srv, "SCRIPT FLUSH"));
    replica_start(&a, loop, cfg, API_KEY, true);
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_NEW);
    assert_true(x.later);
    freeReplyObject(redis_server_do(&srv, "SCRIPT FLUSH"));
    complete(&a, &x, 201, CUSTOMER, strlen(CUSTOMER));
    expect(&a, &k, GW_IDEM_REPLAY);
    assert_true(gw_redis_up(a.redis));
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_BEGIN), 0);
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_COMPLETE), 0);
    replica_stop(&a);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* Redis loses everything (killed and started again, nothing saved): wait until both are up. */
static void restart_redis(struct gw_loop *loop, struct replica *a, struct replica *b)
{
    redis_server_kill(&srv);
    /* Both saw it go (so that "up" below is the new connection's). */
    assert_true(RUN_UNTIL(loop, !gw_redis_up(a->redis) && !gw_redis_up(b->redis), GUARD_MS));
    redis_server_start(&srv);
    assert_true(RUN_UNTIL(loop, gw_redis_up(a->redis) && gw_redis_up(b->redis), GUARD_MS));
}

/*
 * Redis paused: a begin falls back to the local table within redis.timeout_ms (the table
 * holds the claim, and keeps its answer); while down, verbs go to the table at once. Back up,
 * Redis applies the begin it got too late: a claim nobody holds, in progress for the others
 * until its lease ends, while this replica replays its table's answer. Redis restarted empty:
 * the table's answer is replayed and becomes the Redis record, for every replica.
 */
static void test_redis_away_begin(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key k = key_of("", "k-away", "{}");
    struct replica a, b;
    struct ask x;
    uint64_t t0;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    replica_start(&b, loop, cfg, API_KEY, true);
    redis_server_pause(&srv);
    t0 = gw_clock_ms();
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_NEW);
    assert_true(x.later);
    assert_true(gw_clock_ms() - t0 < TIMEOUT_MS + 1000); /* timeout_ms, not the deadline */
    assert_ptr_equal(x.c.holder, a.local);
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_BEGIN), 1);
    assert_false(gw_redis_up(a.redis));
    complete(&a, &x, 201, CUSTOMER, strlen(CUSTOMER));
    assert_false(x.later);
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_COMPLETE), 0); /* the table held it */
    /* Down: the table answers at once. */
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_REPLAY);
    assert_false(x.later);
    free(x.c.rec.body);
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_BEGIN), 2);

    redis_server_resume(&srv);
    assert_true(RUN_UNTIL(loop, gw_redis_up(a.redis) && gw_redis_up(b.redis), GUARD_MS));
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_REPLAY);
    assert_true(x.later);
    assert_string_equal(x.c.rec.body, CUSTOMER);
    free(x.c.rec.body);
    expect(&b, &k, GW_IDEM_IN_PROGRESS);

    restart_redis(loop, &a, &b);
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_REPLAY);
    assert_true(x.later);
    assert_string_equal(x.c.rec.body, CUSTOMER);
    free(x.c.rec.body);
    assert_int_equal(gw_idem_stats(a.store).held, 0);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    assert_int_equal(begin(&b, &x, &k), GW_IDEM_REPLAY);
    assert_string_equal(x.c.rec.body, CUSTOMER);
    free(x.c.rec.body);
    assert_int_equal(fallbacks(&b, GW_IDEM_FALLBACK_BEGIN), 0);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/*
 * Redis paused between the begin and the complete: the answer is kept in the local table.
 * Redis restarted empty: this replica replays the table's answer and makes it the Redis
 * record, for every replica.
 */
static void test_redis_away_complete(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key k = key_of("", "k-away-complete", "{}");
    struct replica a, b;
    struct ask x;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    replica_start(&b, loop, cfg, API_KEY, true);
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_NEW);
    assert_ptr_equal(x.c.holder, a.store);
    redis_server_pause(&srv);
    complete(&a, &x, 201, CUSTOMER, strlen(CUSTOMER));
    assert_true(x.later);
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_COMPLETE), 1);
    assert_int_equal(gw_idem_stats(a.local).entries, 1);
    restart_redis(loop, &a, &b);
    expect(&b, &k, GW_IDEM_NEW); /* B's table never had it */
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_REPLAY);
    assert_string_equal(x.c.rec.body, CUSTOMER);
    free(x.c.rec.body);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    assert_int_equal(begin(&b, &x, &k), GW_IDEM_REPLAY);
    free(x.c.rec.body);
    replica_stop(&a);
    replica_stop(&b);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* A user who may not run the script: the error answer takes the connection down, said why
 * (never the password), and the begin falls back. */
static void test_error_answer(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("noeval", NULL);
    struct gw_idem_key k = key_of("", "k-noeval", "{}");
    struct replica a;
    struct ask x;

    (void)state;
    replica_start(&a, loop, cfg, API_KEY, true);
    assert_int_equal(begin(&a, &x, &k), GW_IDEM_NEW);
    assert_true(x.later);
    assert_ptr_equal(x.c.holder, a.local);
    assert_false(gw_redis_up(a.redis));
    assert_non_null(strstr(gw_redis_last_error(a.redis),
                           "the idempotency script failed: NOPERM"));
    assert_null(strstr(gw_redis_last_error(a.redis), HCGW_PASSWORD));
    assert_int_equal(fallbacks(&a, GW_IDEM_FALLBACK_BEGIN), 1);
    abandon(&a, &x, false);
    assert_int_equal(gw_idem_stats(a.local).entries, 0);
    replica_stop(&a);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* A cancelled begin: no callback, and the claim it won is given back. Stop: every waiter
 * hears at once. Free: nothing in flight calls back, nothing leaks. */
static void test_cancel_stop_free(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", NULL);
    struct gw_idem_key k = key_of("", "k-cancel", "{}");
    struct gw_idem_key k2 = key_of("", "k-stop", "{}");
    struct replica a;
    struct ask x, y;
    char names[4][128];
    uint64_t now;

    (void)state;
    flushall();
    replica_start(&a, loop, cfg, API_KEY, true);
    memset(&x, 0, sizeof x);
    x.c.key = k;
    x.c.done = on_done;
    x.c.data = &x;
    now = gw_loop_now(loop);
    assert_int_equal(gw_idem_begin(a.store, &x.c, now, LEASE_MS, now + 10000), GW_IDEM_LATER);
    gw_idem_cancel(a.store, &x.c);
    assert_null(x.c.trip);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    assert_int_equal(x.done, 0);
    assert_int_equal(record_names(names, 4), 0); /* won, then forgotten */
    assert_int_equal(gw_idem_stats(a.store).held, 0);

    /* Stop: the begin ends now with shutting_down, nothing held. */
    memset(&y, 0, sizeof y);
    y.c.key = k2;
    y.c.done = on_done;
    y.c.data = &y;
    assert_int_equal(gw_idem_begin(a.store, &y.c, now, LEASE_MS, now + 10000), GW_IDEM_LATER);
    gw_idem_stop(a.store);
    assert_int_equal(y.done, 1);
    assert_int_equal(y.c.verdict, GW_ERR_SHUTTING_DOWN);
    assert_false(y.c.held);
    assert_null(y.c.trip);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    assert_int_equal(y.done, 1);
    assert_int_equal(record_names(names, 4), 0);

    /* Free with a begin in flight: its callback never runs. */
    memset(&x, 0, sizeof x);
    x.c.key = k;
    x.c.done = on_done;
    x.c.data = &x;
    assert_int_equal(gw_idem_begin(a.store, &x.c, now, LEASE_MS, now + 10000), GW_IDEM_LATER);
    gw_idem_free(a.store);
    a.store = NULL;
    assert_true(RUN_UNTIL(loop, gw_redis_pending(a.redis) == 0, GUARD_MS));
    assert_int_equal(x.done, 0);
    replica_stop(&a);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* idempotency.ttl_s = 0: nothing is asked or held. */
static void test_off(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = config("hcgw", "idempotency = { ttl_s = 0; };");
    struct gw_idem_key k = key_of("", "k-off", "{}");
    struct replica a;
    struct ask x;

    (void)state;
    replica_start(&a, loop, cfg, API_KEY, true);
    assert_int_equal(begin_lease(&a, &x, &k, LEASE_MS), GW_IDEM_NEW);
    assert_false(x.later);
    assert_false(x.c.held);
    assert_int_equal(gw_redis_pending(a.redis), 0);
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
    if (tmpdir_make("ridem") != 0)
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
        cmocka_unit_test_teardown(test_two_replicas, test_teardown),
        cmocka_unit_test_teardown(test_abandon_and_recover, test_teardown),
        cmocka_unit_test_teardown(test_lease_and_stale_claim, test_teardown),
        cmocka_unit_test_teardown(test_scopes_and_accounts, test_teardown),
        cmocka_unit_test_teardown(test_body_bound, test_teardown),
        cmocka_unit_test_teardown(test_noscript, test_teardown),
        cmocka_unit_test_teardown(test_redis_away_begin, test_teardown),
        cmocka_unit_test_teardown(test_redis_away_complete, test_teardown),
        cmocka_unit_test_teardown(test_error_answer, test_teardown),
        cmocka_unit_test_teardown(test_cancel_stop_free, test_teardown),
        cmocka_unit_test_teardown(test_off, test_teardown),
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

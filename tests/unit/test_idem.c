/* Unit tests for Idempotency-Key: the key's syntax (bare and quoted), the fate of each kind of
 * outcome, the recovery search's body and pick, and the local store: a new key is held, a
 * done one replayed, a held one in progress, another body a mismatch, an unknown one taken
 * again for recovery; expiry by ttl, the lease of a lost claim, the LRU bounds by entries and
 * bytes (held records are never evicted), scoping by caller, stale claims, turning it off.
 * Time is passed in, so the tests are exact; each begin is one request's claim (idem.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hcgw/idem.h"
#include "hcgw/idem_local.h"

#define T0 1000000u
#define TTL 60000u
#define LEASE 20000u
#define CUSTOMER "{\"id\":1568838,\"name\":\"Ann\"}"

/* ---- the key ---- */

static void expect_key(const char *value, const char *key)
{
    char out[GW_MAX_IDEM_KEY_BYTES + 1];

    assert_int_equal(gw_idem_parse_key(value, 1, out), 0);
    assert_string_equal(out, key);
}

static void expect_bad_key(const char *value, unsigned count)
{
    char out[GW_MAX_IDEM_KEY_BYTES + 1];

    assert_int_equal(gw_idem_parse_key(value, count, out), GW_ERR_INVALID_IDEMPOTENCY_KEY);
    assert_string_equal(out, "");
}

static void test_key_syntax(void **state)
{
    char longest[GW_MAX_IDEM_KEY_BYTES + 3];
    char quoted[GW_MAX_IDEM_KEY_BYTES + 8];

    (void)state;
    expect_key("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324");
    expect_key("a", "a");
    expect_key("!~{}[]:;,=?/", "!~{}[]:;,=?/");
    /* The draft's sf-string names the same key as the bare form. */
    expect_key("\"8e03978e\"", "8e03978e");
    expect_key("\"a\\\"b\\\\c\"", "a\"b\\c");
    /* A bare value may hold a quote or a backslash, just not start with a quote. */
    expect_key("a\"b\\c", "a\"b\\c");

    memset(longest, 'k', GW_MAX_IDEM_KEY_BYTES);
    longest[GW_MAX_IDEM_KEY_BYTES] = '\0';
    expect_key(longest, longest);
    snprintf(quoted, sizeof(quoted), "\"%s\"", longest);
    expect_key(quoted, longest);
    longest[GW_MAX_IDEM_KEY_BYTES] = 'k';
    longest[GW_MAX_IDEM_KEY_BYTES + 1] = '\0';
    expect_bad_key(longest, 1);
    snprintf(quoted, sizeof(quoted), "\"%s\"", longest);
    expect_bad_key(quoted, 1);

    expect_bad_key("", 1);
    expect_bad_key("\"\"", 1);
    expect_bad_key(NULL, 0);
    expect_bad_key("abc", 0);
    expect_bad_key("abc", 2);
    expect_bad_key("a b", 1);
    expect_bad_key("\"a b\"", 1);
    expect_bad_key("a\tb", 1);
    expect_bad_key("caf\xc3\xa9", 1);
    expect_bad_key("a\x7f", 1);
    expect_bad_key("\"abc", 1);
    expect_bad_key("\"abc\\\"", 1);
    expect_bad_key("\"a\\nb\"", 1);
    expect_bad_key("\"abc\";p=1", 1);
    expect_bad_key("\"abc\"x", 1);
}

static void test_fingerprint_is_sha256_of_the_bytes(void **state)
{
    unsigned char a[GW_IDEM_FINGERPRINT_BYTES];
    unsigned char b[GW_IDEM_FINGERPRINT_BYTES];
    /* SHA-256 of "abc" (FIPS 180-2, appendix B.1). */
    static const unsigned char abc[GW_IDEM_FINGERPRINT_BYTES] = {
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

    (void)state;
    assert_int_equal(gw_idem_fingerprint("abc", 3, a), 0);
    assert_memory_equal(a, abc, sizeof(abc));
    assert_int_equal(gw_idem_fingerprint("{\"a\":1}", 7, a), 0);
    assert_int_equal(gw_idem_fingerprint("{\"a\": 1}", 8, b), 0);
    assert_memory_not_equal(a, b, sizeof(a));
}

/* ---- fates ---- */

static void test_fate(void **state)
{
    (void)state;
    /* Final answers. */
    assert_int_equal(gw_idem_fate(GW_OK, 201, true, true, false), GW_IDEM_KEEP);
    assert_int_equal(gw_idem_fate(GW_OK, 400, false, true, false), GW_IDEM_KEEP);
    assert_int_equal(gw_idem_fate(GW_OK, 422, false, true, true), GW_IDEM_KEEP);
    assert_int_equal(gw_idem_fate(GW_OK, 201, true, true, true), GW_IDEM_KEEP);
    /* Sent, and nobody knows what HelpCrunch did. */
    assert_int_equal(gw_idem_fate(GW_ERR_UPSTREAM_TIMEOUT, 0, false, true, false),
                     GW_IDEM_UNKNOWN);
    assert_int_equal(gw_idem_fate(GW_ERR_UPSTREAM_UNAVAILABLE, 0, false, true, false),
                     GW_IDEM_UNKNOWN);
    assert_int_equal(gw_idem_fate(GW_ERR_INTERNAL, 0, false, true, false), GW_IDEM_UNKNOWN);
    assert_int_equal(gw_idem_fate(GW_OK, 503, false, true, false), GW_IDEM_UNKNOWN);
    assert_int_equal(gw_idem_fate(GW_OK, 500, false, true, false), GW_IDEM_UNKNOWN);
    assert_int_equal(gw_idem_fate(GW_OK, 201, false, true, false), GW_IDEM_UNKNOWN);
    /* Refused, or never sent: the caller may try again with the key. */
    assert_int_equal(gw_idem_fate(GW_ERR_RATE_LIMITED, 0, false, false, false), GW_IDEM_FORGET);
    assert_int_equal(gw_idem_fate(GW_ERR_UPSTREAM_TIMEOUT, 0, false, false, false),
                     GW_IDEM_FORGET);
    assert_int_equal(gw_idem_fate(GW_OK, 429, false, true, false), GW_IDEM_FORGET);
    assert_int_equal(gw_idem_fate(GW_OK, 401, false, true, false), GW_IDEM_FORGET);
    assert_int_equal(gw_idem_fate(GW_OK, 409, false, true, false), GW_IDEM_FORGET);
    /* ...unless an earlier attempt's outcome was already unknown. */
    assert_int_equal(gw_idem_fate(GW_OK, 429, false, true, true), GW_IDEM_UNKNOWN);
    assert_int_equal(gw_idem_fate(GW_ERR_RATE_LIMITED, 0, false, false, true), GW_IDEM_UNKNOWN);
}

/* ---- recovery ---- */

static void expect_search(const char *body, const char *search)
{
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(gw_idem_search_body(body, strlen(body), &out, &len), 0);
    assert_non_null(out);
    assert_string_equal(out, search);
    assert_int_equal(len, strlen(search));
    free(out);
}

static void expect_no_search(const char *body)
{
    char *out = NULL;
    size_t len = 0;

    assert_int_equal(gw_idem_search_body(body, strlen(body), &out, &len), 1);
    assert_null(out);
}

static void test_search_body(void **state)
{
    (void)state;
    expect_search("{\"name\":\"Ann\",\"email\":\"ann@example.com\",\"userId\":\"u-1\"}",
                  "{\"filter\":[{\"field\":\"customers.userId\",\"operator\":\"=\","
                  "\"value\":\"u-1\"}],\"limit\":100}");
    expect_search("{\"name\":\"Ann\",\"email\":\"ann@example.com\"}",
                  "{\"filter\":[{\"field\":\"customers.email\",\"operator\":\"=\","
                  "\"value\":\"ann@example.com\"}],\"limit\":100}");
    /* An empty or non-string userId is no userId. */
    expect_search("{\"userId\":\"\",\"email\":\"a\\\"b@example.com\"}",
                  "{\"filter\":[{\"field\":\"customers.email\",\"operator\":\"=\","
                  "\"value\":\"a\\\"b@example.com\"}],\"limit\":100}");
    expect_search("{\"userId\":42,\"email\":\"x@example.com\"}",
                  "{\"filter\":[{\"field\":\"customers.email\",\"operator\":\"=\","
                  "\"value\":\"x@example.com\"}],\"limit\":100}");
    expect_no_search("{\"name\":\"Ann\"}");
    expect_no_search("{\"email\":null,\"userId\":\"\"}");
    expect_no_search("[]");
}

static void test_search_pick(void **state)
{
    char *out = NULL;
    size_t len = 0;
    const char *two = "{\"data\":[{\"id\":1568838,\"name\":\"old\"},{\"id\":1568840,\"name\":\"new\"},"
                      "{\"id\":1568839,\"name\":\"mid\"}],\"total\":3}";
    const char *none = "{\"data\":[],\"total\":0}";

    (void)state;
    assert_int_equal(gw_idem_search_pick(two, strlen(two), &out, &len), 0);
    assert_string_equal(out, "{\"id\":1568840,\"name\":\"new\"}");
    assert_int_equal(len, strlen(out));
    free(out);
    assert_int_equal(gw_idem_search_pick(none, strlen(none), &out, &len), 1);
    assert_null(out);
    assert_int_equal(gw_idem_search_pick("{\"total\":0}", 11, &out, &len),
                     GW_ERR_UPSTREAM_BAD_RESPONSE);
    assert_int_equal(gw_idem_search_pick("{\"data\":[1]}", 12, &out, &len),
                     GW_ERR_UPSTREAM_BAD_RESPONSE);
    assert_int_equal(gw_idem_search_pick("<html>", 6, &out, &len), GW_ERR_UPSTREAM_BAD_RESPONSE);
    assert_null(out);
}

/* ---- the store ---- */

static struct gw_idem_store *store_with(uint64_t ttl, long entries, long bytes)
{
    struct gw_idem_store *s = gw_idem_local_new();

    assert_non_null(s);
    assert_int_equal(gw_idem_configure(s, ttl, entries, bytes), 0);
    return s;
}

static struct gw_idem_key key_of(const char *scope, const char *key, const char *body)
{
    struct gw_idem_key k = {.scope = scope, .key = key};

    assert_int_equal(gw_idem_fingerprint(body, strlen(body), k.fingerprint), 0);
    return k;
}

/*
 * A request's claim on @p k (gw_idem_begin's), and what it calls. The local store answers at
 * once: never GW_IDEM_LATER, so no callback is set.
 */
static int begin_claim(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t now,
                       struct gw_idem_claim *c)
{
    int rc;

    memset(c, 0, sizeof(*c));
    c->key = *k;
    rc = gw_idem_begin(s, c, now, LEASE, now + 1000);
    assert_int_not_equal(rc, GW_IDEM_LATER);
    assert_int_equal(c->verdict, rc);
    assert_null(c->trip);
    if (rc == GW_IDEM_NEW || rc == GW_IDEM_RECOVER) {
        assert_true(c->held || gw_idem_stats(s).entries == 0);
        assert_true(!c->held || c->holder == s);
    } else {
        assert_false(c->held);
    }
    if (rc != GW_IDEM_REPLAY)
        assert_null(c->rec.body);
    return rc;
}

/* Begin and expect @p verdict; returns the token of a claim (0: nothing held). */
static uint64_t begin(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t now,
                      int verdict)
{
    struct gw_idem_claim c;

    assert_int_equal(begin_claim(s, k, now, &c), verdict);
    free(c.rec.body);
    return c.held ? c.token : 0;
}

/* Begin, and the record of a replay in @p rec (the caller frees its body). */
static int begin_rec(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t now,
                     struct gw_idem_record *rec)
{
    struct gw_idem_claim c;
    int rc = begin_claim(s, k, now, &c);

    *rec = c.rec;
    return rc;
}

/* The claim on @p k with @p token, held (as a request keeps it between begin and its end). */
static struct gw_idem_claim held_claim(const struct gw_idem_key *k, uint64_t token)
{
    struct gw_idem_claim c;

    memset(&c, 0, sizeof(c));
    c.key = *k;
    c.token = token;
    c.held = true;
    return c;
}

static void complete(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t token,
                     long status, const char *body, size_t len, uint64_t now)
{
    struct gw_idem_claim c = held_claim(k, token);

    assert_int_equal(gw_idem_complete(s, &c, status, body, len, now), 0);
    assert_false(c.held);
}

static void abandon(struct gw_idem_store *s, const struct gw_idem_key *k, uint64_t token,
                    bool unknown, uint64_t now)
{
    struct gw_idem_claim c = held_claim(k, token);

    gw_idem_abandon(s, &c, unknown, now);
    assert_false(c.held);
}

static void test_new_replay_in_progress_mismatch(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 100, 1 << 20);
    struct gw_idem_key k = key_of("", "k1", "{\"email\":\"a@x\"}");
    struct gw_idem_key other_body = key_of("", "k1", "{\"email\":\"b@x\"}");
    struct gw_idem_record rec;
    uint64_t token;

    (void)state;
    token = begin(s, &k, T0, GW_IDEM_NEW);
    assert_int_equal(gw_idem_stats(s).held, 1);
    begin(s, &k, T0 + 1, GW_IDEM_IN_PROGRESS);
    begin(s, &other_body, T0 + 1, GW_IDEM_MISMATCH);
    complete(s, &k, token, 201, CUSTOMER, strlen(CUSTOMER), T0 + 5);
    assert_int_equal(gw_idem_stats(s).held, 0);
    assert_int_equal(gw_idem_stats(s).entries, 1);

    assert_int_equal(begin_rec(s, &k, T0 + 10, &rec), GW_IDEM_REPLAY);
    assert_int_equal(rec.status, 201);
    assert_int_equal(rec.len, strlen(CUSTOMER));
    assert_string_equal(rec.body, CUSTOMER);
    free(rec.body);
    /* A replay takes nothing: the next one replays too. */
    begin(s, &k, T0 + 11, GW_IDEM_REPLAY);
    begin(s, &other_body, T0 + 12, GW_IDEM_MISMATCH);
    /* A stale claim's end changes nothing. */
    complete(s, &k, token, 500, "x", 1, T0 + 13);
    abandon(s, &k, token, false, T0 + 13);
    assert_int_equal(begin_rec(s, &k, T0 + 14, &rec), GW_IDEM_REPLAY);
    assert_int_equal(rec.status, 201);
    free(rec.body);
    gw_idem_free(s);
}

static void test_abandon(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 100, 1 << 20);
    struct gw_idem_key k = key_of("", "k", "{\"email\":\"a@x\"}");
    struct gw_idem_key other_body = key_of("", "k", "{\"email\":\"b@x\"}");
    uint64_t token;

    (void)state;
    /* Not sent: the record goes, and the key is free again, for any body. */
    token = begin(s, &k, T0, GW_IDEM_NEW);
    abandon(s, &k, token, false, T0 + 1);
    assert_int_equal(gw_idem_stats(s).entries, 0);
    token = begin(s, &other_body, T0 + 2, GW_IDEM_NEW);
    abandon(s, &other_body, token, false, T0 + 3);

    /* Unknown: the next request with the key holds it to look first; another body is refused. */
    token = begin(s, &k, T0 + 4, GW_IDEM_NEW);
    abandon(s, &k, token, true, T0 + 5);
    assert_int_equal(gw_idem_stats(s).entries, 1);
    assert_int_equal(gw_idem_stats(s).held, 0);
    begin(s, &other_body, T0 + 6, GW_IDEM_MISMATCH);
    token = begin(s, &k, T0 + 7, GW_IDEM_RECOVER);
    begin(s, &k, T0 + 8, GW_IDEM_IN_PROGRESS);
    /* Still unknown after this attempt too, then found. */
    abandon(s, &k, token, true, T0 + 9);
    token = begin(s, &k, T0 + 10, GW_IDEM_RECOVER);
    complete(s, &k, token, 201, CUSTOMER, strlen(CUSTOMER), T0 + 11);
    begin(s, &k, T0 + 12, GW_IDEM_REPLAY);
    gw_idem_free(s);
}

static void test_expiry(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 100, 1 << 20);
    struct gw_idem_key a = key_of("", "a", "{}");
    struct gw_idem_key b = key_of("", "b", "{}");
    uint64_t token;

    (void)state;
    token = begin(s, &a, T0, GW_IDEM_NEW);
    complete(s, &a, token, 201, CUSTOMER, strlen(CUSTOMER), T0 + 100);
    token = begin(s, &b, T0 + 200, GW_IDEM_NEW);
    abandon(s, &b, token, true, T0 + 300);
    /* The ttl counts from the end of the claim. */
    begin(s, &a, T0 + 100 + TTL - 1, GW_IDEM_REPLAY);
    token = begin(s, &a, T0 + 100 + TTL, GW_IDEM_NEW);
    abandon(s, &a, token, false, T0 + 100 + TTL);
    /* Each begin sweeps what expired, whatever its key. */
    assert_int_equal(gw_idem_stats(s).entries, 1);
    begin(s, &a, T0 + 300 + TTL, GW_IDEM_NEW);
    assert_int_equal(gw_idem_stats(s).entries, 1);
    assert_int_equal(gw_idem_stats(s).held, 1);
    gw_idem_free(s);
}

static void test_lost_claim_becomes_unknown(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 100, 1 << 20);
    struct gw_idem_key k = key_of("", "k", "{}");
    uint64_t lost;
    uint64_t token;

    (void)state;
    lost = begin(s, &k, T0, GW_IDEM_NEW);
    begin(s, &k, T0 + LEASE - 1, GW_IDEM_IN_PROGRESS);
    /* Past its lease the claim is over: whether it created anything is unknown. */
    token = begin(s, &k, T0 + LEASE, GW_IDEM_RECOVER);
    assert_true(token != lost);
    /* The lost holder's end, should it still come, changes nothing. */
    complete(s, &k, lost, 201, CUSTOMER, strlen(CUSTOMER), T0 + LEASE + 1);
    begin(s, &k, T0 + LEASE + 2, GW_IDEM_IN_PROGRESS);
    complete(s, &k, token, 422, "{\"errors\":[]}", 13, T0 + LEASE + 3);
    begin(s, &k, T0 + LEASE + 4, GW_IDEM_REPLAY);
    gw_idem_free(s);
}

static void test_scopes_never_collide(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 100, 1 << 20);
    struct gw_idem_key billing = key_of("billing", "k", "{}");
    struct gw_idem_key crm = key_of("crm", "k", "{}");
    struct gw_idem_key none = key_of("", "k", "{}");
    /* A scope and a key whose concatenations are equal are still two records. */
    struct gw_idem_key ab_c = key_of("ab", "c", "{}");
    struct gw_idem_key a_bc = key_of("a", "bc", "{}");
    uint64_t token;

    (void)state;
    token = begin(s, &billing, T0, GW_IDEM_NEW);
    begin(s, &crm, T0, GW_IDEM_NEW);
    begin(s, &none, T0, GW_IDEM_NEW);
    complete(s, &billing, token, 201, CUSTOMER, strlen(CUSTOMER), T0 + 1);
    begin(s, &billing, T0 + 2, GW_IDEM_REPLAY);
    begin(s, &crm, T0 + 2, GW_IDEM_IN_PROGRESS);
    begin(s, &ab_c, T0 + 3, GW_IDEM_NEW);
    begin(s, &a_bc, T0 + 3, GW_IDEM_NEW);
    assert_int_equal(gw_idem_stats(s).entries, 5);
    gw_idem_free(s);
}

/* Make @p n done records "k0".."k<n-1>" at T0. */
static void fill(struct gw_idem_store *s, int n)
{
    char name[16];
    struct gw_idem_key k;
    uint64_t token;

    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        k = key_of("", name, "{}");
        token = begin(s, &k, T0, GW_IDEM_NEW);
        complete(s, &k, token, 201, CUSTOMER, strlen(CUSTOMER), T0);
    }
}

static void test_lru_by_entries(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 3, 1 << 20);
    struct gw_idem_key k0 = key_of("", "k0", "{}");
    struct gw_idem_key k1 = key_of("", "k1", "{}");
    struct gw_idem_key k3 = key_of("", "k3", "{}");
    struct gw_idem_key k4 = key_of("", "k4", "{}");
    struct gw_idem_key k5 = key_of("", "k5", "{}");
    struct gw_idem_key k6 = key_of("", "k6", "{}");
    uint64_t t1, t3, t4;

    (void)state;
    fill(s, 3);
    /* k0 used: k1 is now the least recently used, and goes for k3. */
    begin(s, &k0, T0 + 1, GW_IDEM_REPLAY);
    t3 = begin(s, &k3, T0 + 2, GW_IDEM_NEW);
    assert_int_equal(gw_idem_stats(s).entries, 3);
    begin(s, &k0, T0 + 3, GW_IDEM_REPLAY);
    /* k1 is gone: new again; k2 goes for it. */
    t1 = begin(s, &k1, T0 + 3, GW_IDEM_NEW);
    /* Held records are never evicted: with all three held, a fourth does not fit. */
    t4 = begin(s, &k4, T0 + 4, GW_IDEM_NEW);
    assert_int_equal(gw_idem_stats(s).held, 3);
    begin(s, &k5, T0 + 5, GW_ERR_OVERLOADED);
    begin(s, &k0, T0 + 5, GW_ERR_OVERLOADED);
    /* Once one ends, room is made again from those not held. */
    complete(s, &k3, t3, 201, CUSTOMER, strlen(CUSTOMER), T0 + 6);
    begin(s, &k6, T0 + 7, GW_IDEM_NEW);
    begin(s, &k3, T0 + 8, GW_ERR_OVERLOADED);
    abandon(s, &k1, t1, false, T0 + 9);
    abandon(s, &k4, t4, true, T0 + 9);
    assert_int_equal(gw_idem_stats(s).entries, 2);
    begin(s, &k3, T0 + 10, GW_IDEM_NEW);
    begin(s, &k4, T0 + 11, GW_IDEM_RECOVER);
    gw_idem_free(s);
}

static void test_lru_by_bytes_and_too_big(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 100, 4096);
    struct gw_idem_key k = key_of("", "big", "{}");
    struct gw_idem_key k0 = key_of("", "k0", "{}");
    struct gw_idem_record rec;
    char big[5000];
    uint64_t token;
    struct gw_idem_stats st;

    (void)state;
    fill(s, 40);
    st = gw_idem_stats(s);
    assert_true(st.bytes <= 4096);
    assert_true(st.entries > 1 && st.entries < 40);
    /* The oldest went first. */
    begin(s, &k0, T0 + 1, GW_IDEM_NEW);
    /* A body larger than the store leaves its record unknown (the next request looks), and
     * does not flush the others first. */
    st = gw_idem_stats(s);
    memset(big, 'x', sizeof(big));
    token = begin(s, &k, T0 + 2, GW_IDEM_NEW);
    complete(s, &k, token, 201, big, sizeof(big), T0 + 3);
    assert_int_equal(begin_rec(s, &k, T0 + 4, &rec), GW_IDEM_RECOVER);
    assert_null(rec.body);
    assert_true(gw_idem_stats(s).bytes <= 4096);
    assert_true(gw_idem_stats(s).entries >= st.entries - 1);
    gw_idem_free(s);
}

static void test_off_and_reconfigure(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 100, 1 << 20);
    struct gw_idem_key k = key_of("", "k", "{}");
    struct gw_idem_key held = key_of("", "held", "{}");
    uint64_t token;

    (void)state;
    fill(s, 10);
    token = begin(s, &held, T0, GW_IDEM_NEW);
    assert_int_equal(gw_idem_configure(s, TTL, 4, 1 << 20), 0);
    /* A lower bound drops the least recently used; the held record stays. */
    assert_int_equal(gw_idem_stats(s).entries, 4);
    assert_int_equal(gw_idem_stats(s).held, 1);
    /* Off: everything goes, the held record too; its end keeps nothing. */
    assert_int_equal(gw_idem_configure(s, 0, 4, 1 << 20), 0);
    assert_int_equal(gw_idem_stats(s).entries, 0);
    complete(s, &held, token, 201, CUSTOMER, strlen(CUSTOMER), T0 + 1);
    assert_int_equal(gw_idem_stats(s).entries, 0);
    /* Off, every request is new and nothing is held for it. */
    assert_int_equal(begin(s, &k, T0 + 2, GW_IDEM_NEW), 0);
    assert_int_equal(begin(s, &k, T0 + 2, GW_IDEM_NEW), 0);
    assert_int_equal(gw_idem_stats(s).entries, 0);
    /* On again. */
    assert_int_equal(gw_idem_configure(s, TTL, 100000, 1 << 20), 0);
    begin(s, &k, T0 + 3, GW_IDEM_NEW);
    gw_idem_free(s);
}

static void test_many_keys(void **state)
{
    struct gw_idem_store *s = store_with(TTL, 5000, 64L << 20);
    char name[16];
    struct gw_idem_key k;

    (void)state;
    fill(s, 3000);
    assert_int_equal(gw_idem_stats(s).entries, 3000);
    for (int i = 0; i < 3000; i += 7) {
        snprintf(name, sizeof(name), "k%d", i);
        k = key_of("", name, "{}");
        begin(s, &k, T0 + 1, GW_IDEM_REPLAY);
    }
    gw_idem_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_syntax),
        cmocka_unit_test(test_fingerprint_is_sha256_of_the_bytes),
        cmocka_unit_test(test_fate),
        cmocka_unit_test(test_search_body),
        cmocka_unit_test(test_search_pick),
        cmocka_unit_test(test_new_replay_in_progress_mismatch),
        cmocka_unit_test(test_abandon),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_lost_claim_becomes_unknown),
        cmocka_unit_test(test_scopes_never_collide),
        cmocka_unit_test(test_lru_by_entries),
        cmocka_unit_test(test_lru_by_bytes_and_too_big),
        cmocka_unit_test(test_off_and_reconfigure),
        cmocka_unit_test(test_many_keys),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

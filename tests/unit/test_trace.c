/*
 * Unit tests of src/trace.c: W3C Trace Context Level 1. The traceparent parser against the
 * specification's edge cases (each field too long, too short, with a character out of range,
 * uppercase hex, all-zero ids, version ff, future versions with and without extra fields,
 * spaces around the value); the tracestate check (the grammar of keys and values, their length
 * limits, 32 members, duplicate keys, empty members, optional whitespace, 512 bytes); and how a
 * request's trace begins from its headers: continued, started, restarted, the tracestate kept
 * only with a valid traceparent, and the child traceparent written for an upstream call.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hcgw/limits.h"
#include "hcgw/text.h"
#include "hcgw/trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"

/* Parse @p s; returns 0 or -1, and the trace-id, parent-id and flags as hex in the out args. */
static int parse(const char *s, char tid[33], char pid[17], uint8_t *flags)
{
    uint8_t t[GW_TRACE_ID_BYTES] = {0};
    uint8_t p[GW_SPAN_ID_BYTES] = {0};
    int rc = gw_trace_parse_parent(s, strlen(s), t, p, flags);

    gw_text_hex_encode(t, sizeof(t), tid);
    gw_text_hex_encode(p, sizeof(p), pid);
    return rc;
}

static void expect_valid(const char *s, const char *want_tid, const char *want_pid,
                         uint8_t want_flags)
{
    char tid[33], pid[17];
    uint8_t flags = 0xaa;

    if (parse(s, tid, pid, &flags) != 0)
        fail_msg("refused a valid traceparent: \"%s\"", s);
    assert_string_equal(tid, want_tid);
    assert_string_equal(pid, want_pid);
    assert_int_equal(flags, want_flags);
}

static void expect_invalid(const char *s)
{
    char tid[33], pid[17];
    uint8_t flags = 0;

    if (parse(s, tid, pid, &flags) != -1)
        fail_msg("accepted an invalid traceparent: \"%s\"", s);
}

static void test_parent_valid(void **state)
{
    (void)state;
    expect_valid("00-" TID "-" PID "-01", TID, PID, 0x01);
    expect_valid("00-" TID "-" PID "-00", TID, PID, 0x00);
    /* Flags are a bit field: unknown bits are read as sent (and dropped when passed on). */
    expect_valid("00-" TID "-" PID "-09", TID, PID, 0x09);
    expect_valid("00-" TID "-" PID "-ff", TID, PID, 0xff);
    /* The specification's test values: ids that are not random-looking are still ids. */
    expect_valid("00-12345678901234567890123456789012-1234567890123456-01",
                 "12345678901234567890123456789012", "1234567890123456", 0x01);
    expect_valid("00-00000000000000000000000000000001-0000000000000001-00",
                 "00000000000000000000000000000001", "0000000000000001", 0x00);
    /* Optional whitespace around a header value is not part of it. */
    expect_valid(" 00-" TID "-" PID "-01", TID, PID, 0x01);
    expect_valid("\t00-" TID "-" PID "-01", TID, PID, 0x01);
    expect_valid("00-" TID "-" PID "-01 ", TID, PID, 0x01);
    expect_valid("00-" TID "-" PID "-01\t", TID, PID, 0x01);
    expect_valid("\t 00-" TID "-" PID "-01 \t", TID, PID, 0x01);
}

static void test_parent_future_versions(void **state)
{
    char longest[GW_MAX_TRACEPARENT_BYTES + 1];

    (void)state;
    /* A version it does not know is parsed for the fields it does, if they are where version
     * 00 has them; what follows them must start with a dash. */
    expect_valid("cc-" TID "-" PID "-01", TID, PID, 0x01);
    expect_valid("01-" TID "-" PID "-01", TID, PID, 0x01);
    expect_valid("fe-" TID "-" PID "-00", TID, PID, 0x00);
    expect_valid("cc-" TID "-" PID "-01-what-the-future-will-be-like", TID, PID, 0x01);
    expect_valid("cc-" TID "-" PID "-01-", TID, PID, 0x01);
    expect_invalid("cc-" TID "-" PID "-01.what-the-future-will-be-like");
    expect_invalid("cc-" TID "-" PID "-01x");
    expect_invalid("cc-" TID "-" PID);
    /* Bounded: a future version may be longer, but not without end. */
    memset(longest, 'a', sizeof(longest));
    memcpy(longest, "cc-" TID "-" PID "-01-", GW_TRACEPARENT_LEN + 1);
    longest[GW_MAX_TRACEPARENT_BYTES - 1] = '\0';
    expect_valid(longest, TID, PID, 0x01);
    longest[GW_MAX_TRACEPARENT_BYTES - 1] = 'a';
    longest[GW_MAX_TRACEPARENT_BYTES] = '\0';
    expect_invalid(longest);
}

static void test_parent_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "garbage",
        "00",
        "00-",
        /* version: ff is forbidden, and it must be two lowercase hex digits and a dash */
        "ff-" TID "-" PID "-01",
        ".0-" TID "-" PID "-01",
        "0.-" TID "-" PID "-01",
        "0A-" TID "-" PID "-01",
        "0-" TID "-" PID "-01",
        "000-" TID "-" PID "-01",
        "0000-" TID "-" PID "-01",
        "00_" TID "-" PID "-01",
        /* version 00 is exactly 55 characters */
        "00-" TID "-" PID "-01.",
        "00-" TID "-" PID "-01-what-the-future-will-be-like",
        "00-" TID "-" PID "-01-",
        /* trace-id: 32 lowercase hex digits, not all zero */
        "00-00000000000000000000000000000000-" PID "-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473A-" PID "-01",
        "00-.bf92f3577b34da6a3ce929d0e0e4736-" PID "-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473.-" PID "-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47g6-" PID "-01",
        "00-123456789012345678901234567890123-" PID "-01",
        "00-1234567890123456789012345678901-" PID "-01",
        /* parent-id: 16 lowercase hex digits, not all zero */
        "00-" TID "-0000000000000000-01",
        "00-" TID "-00F067AA0BA902B7-01",
        "00-" TID "-.234567890123456-01",
        "00-" TID "-123456789012345.-01",
        "00-" TID "-12345678901234567-01",
        "00-" TID "-123456789012345-01",
        /* trace-flags: two lowercase hex digits */
        "00-" TID "-" PID "-.0",
        "00-" TID "-" PID "-0.",
        "00-" TID "-" PID "-0A",
        "00-" TID "-" PID "-001",
        "00-" TID "-" PID "-1",
        "00-" TID "-" PID "-",
        "00-" TID "-" PID,
        /* delimiters */
        "00-" TID "_" PID "-01",
        "00-" TID "-" PID "_01",
        "00 " TID " " PID " 01",
        /* whitespace inside is not optional whitespace */
        "00- " TID "-" PID "-01",
        "00-" TID "-" PID "-0 1",
        /* an all-zero everything */
        "00-00000000000000000000000000000000-0000000000000000-00",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_invalid(bad[i]);
    /* A NUL inside is not the end of the value: the length is. */
    {
        static const char nul[] = "00-" TID "-" PID "-01\0junk";
        uint8_t t[GW_TRACE_ID_BYTES], p[GW_SPAN_ID_BYTES], f;

        assert_int_equal(gw_trace_parse_parent(nul, sizeof(nul) - 1, t, p, &f), -1);
        assert_int_equal(gw_trace_parse_parent(nul, GW_TRACEPARENT_LEN, t, p, &f), 0);
    }
}

/* "bar01=01,bar02=02,…" with @p n members into @p out. */
static void members(char *out, size_t cap, int n)
{
    size_t used = 0;

    out[0] = '\0';
    for (int i = 1; i <= n; i++) {
        int w = snprintf(out + used, cap - used, "%sbar%02d=%02d", i > 1 ? "," : "", i, i);
        assert_true(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
}

/* Check @p in as a tracestate: -1, or its normalised form. */
static long state_of(const char *in, char *out, size_t cap)
{
    return gw_trace_check_state(in, strlen(in), out, cap);
}

static void expect_state(const char *in, const char *want)
{
    char out[GW_MAX_TRACESTATE_BYTES + 1];
    long n = state_of(in, out, sizeof(out));

    if (n < 0)
        fail_msg("refused a valid tracestate: \"%s\"", in);
    assert_string_equal(out, want);
    assert_int_equal(n, (long)strlen(want));
}

static void expect_bad_state(const char *in)
{
    char out[GW_MAX_TRACESTATE_BYTES + 1];

    if (state_of(in, out, sizeof(out)) != -1)
        fail_msg("accepted an invalid tracestate: \"%s\"", in);
}

static void test_state_valid(void **state)
{
    char key[300], value[300], in[600], want[600];

    (void)state;
    expect_state("congo=t61rcWkgMzE", "congo=t61rcWkgMzE");
    expect_state("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
                 "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    /* Empty and whitespace-only members are allowed, not counted, and not passed on. */
    expect_state("", "");
    expect_state(" \t ", "");
    expect_state(",,", "");
    expect_state("foo=1,", "foo=1");
    expect_state(",foo=1", "foo=1");
    expect_state("foo=1, ,bar=2", "foo=1,bar=2");
    /* Optional whitespace around members. */
    expect_state("foo=1 \t , \t bar=2, \t baz=3", "foo=1,bar=2,baz=3");
    expect_state("foo=1\t \t,\t \tbar=2,\t \tbaz=3", "foo=1,bar=2,baz=3");
    expect_state(" foo=1", "foo=1");
    expect_state("\tfoo=1", "foo=1");
    expect_state("foo=1 ", "foo=1");
    expect_state("foo=1\t", "foo=1");
    expect_state("\t foo=1 \t", "foo=1");
    /* Spaces inside a value, and leading ones, are part of it. */
    expect_state("foo= a b", "foo= a b");
    /* Every character a key may have; a multi-tenant key; every character a value may have. */
    expect_state("abcdefghijklmnopqrstuvwxyz0123456789_-*/=1",
                 "abcdefghijklmnopqrstuvwxyz0123456789_-*/=1");
    expect_state("0tenant_-*/@sys0_-*/=1", "0tenant_-*/@sys0_-*/=1");
    expect_state("a=!\"#$%&'()*+-./0123456789:;<>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`{|}~",
                 "a=!\"#$%&'()*+-./0123456789:;<>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`{|}~");
    /* The length limits: a simple key of 256, tenant 241 and system 14, a value of 256. */
    memset(key, 'z', 256);
    key[256] = '\0';
    snprintf(in, sizeof(in), "foo=1,%s=1", key);
    expect_state(in, in);
    memset(key, 't', 241);
    key[241] = '@';
    memset(key + 242, 'v', 14);
    key[256] = '\0';
    snprintf(in, sizeof(in), "foo=1,%s=1", key);
    expect_state(in, in);
    memset(value, 'v', 256);
    value[256] = '\0';
    snprintf(in, sizeof(in), "k=%s", value);
    expect_state(in, in);
    /* Exactly 32 members. */
    members(in, sizeof(in), GW_MAX_TRACESTATE_MEMBERS);
    snprintf(want, sizeof(want), "%s", in);
    expect_state(in, want);
}

static void test_state_invalid(void **state)
{
    static const char *const bad[] = {
        /* keys */
        "foo =1",
        "FOO=1",
        "Foo=1",
        "foo.bar=1",
        "1foo=1",        /* a simple key starts with a letter */
        "_foo=1",
        "=1",
        "foo",
        "foo,bar=1",
        "foo@=1,bar=2",
        "@foo=1,bar=2",
        "foo@@bar=1,bar=2",
        "foo@bar@baz=1,bar=2",
        "foo@1bar=1",    /* a system id starts with a letter */
        "fo\x01o=1",
        /* values */
        "foo=bar=baz",
        "foo=,bar=3",
        "foo=",
        "foo=a\tb",
        "foo=\x7f",
        "foo=\x80",
        "foo=\x1f",
        /* one entry per key */
        "foo=1,foo=1",
        "foo=1,foo=2",
        "foo=1,bar=2,foo=3",
    };
    char big[GW_MAX_TRACESTATE_BYTES + 64];
    char out[GW_MAX_TRACESTATE_BYTES + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_bad_state(bad[i]);
    /* Past the length limits: a simple key of 257, tenant 242, system 15, a value of 257. */
    memset(big, 'z', 257);
    memcpy(big + 257, "=1", 3);
    expect_bad_state(big);
    memset(big, 't', 242);
    memcpy(big + 242, "@v=1", 5);
    expect_bad_state(big);
    expect_bad_state("t@vvvvvvvvvvvvvvv=1"); /* a system id of 15 */
    memcpy(big, "k=", 2);
    memset(big + 2, 'v', 257);
    big[259] = '\0';
    expect_bad_state(big);
    /* 33 members. */
    members(big, sizeof(big), GW_MAX_TRACESTATE_MEMBERS + 1);
    expect_bad_state(big);
    /* Over 512 bytes, even of valid members (and of whitespace). */
    memset(big, ' ', sizeof(big));
    memcpy(big, "a=1", 3);
    assert_int_equal(gw_trace_check_state(big, GW_MAX_TRACESTATE_BYTES, out, sizeof(out)), 3);
    assert_int_equal(gw_trace_check_state(big, GW_MAX_TRACESTATE_BYTES + 1, out, sizeof(out)),
                     -1);
    /* Too little room for the result. */
    assert_int_equal(gw_trace_check_state("a=1,b=2", 7, out, 8), 7);
    assert_int_equal(gw_trace_check_state("a=1,b=2", 7, out, 7), -1);
    assert_int_equal(gw_trace_check_state("a=1", 3, out, 0), -1);
}

static const uint8_t fresh[GW_TRACE_FRESH_BYTES] = {
    0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22};

static void headers(struct gw_trace_headers *h, const char *parent, unsigned parents,
                    const char *state)
{
    memset(h, 0, sizeof(*h));
    h->parent = parent;
    h->parents = parents;
    if (state != NULL) {
        h->state_sent = true;
        h->state_len = strlen(state);
        memcpy(h->state, state, h->state_len + 1);
    }
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    gw_text_hex_encode(b, n, out);
}

static void test_begin(void **state)
{
    struct gw_trace_headers h;
    struct gw_trace t;
    struct gw_trace copy;
    char s[40];

    (void)state;
    memset(&t, 0, sizeof(t));
    /* None: hcgw starts a trace from the fresh bytes, sampled (it logs every request). */
    gw_trace_begin(&t, NULL, fresh, true);
    assert_int_equal(t.origin, GW_TRACE_STARTED);
    hex(t.trace_id, GW_TRACE_ID_BYTES, s);
    assert_string_equal(s, "11111111111111111111111111111111");
    hex(t.span_id, GW_SPAN_ID_BYTES, s);
    assert_string_equal(s, "2222222222222222");
    hex(t.parent_id, GW_SPAN_ID_BYTES, s);
    assert_string_equal(s, "0000000000000000");
    assert_int_equal(t.flags, GW_TRACE_FLAG_SAMPLED);
    assert_null(t.state);
    gw_trace_clear(&t);

    /* Valid: the caller's trace goes on, with hcgw's span; its flags are kept (the defined
     * one), its tracestate normalised and kept when asked for. */
    headers(&h, "00-" TID "-" PID "-00", 1, " congo=t61rcWkgMzE , rojo=1");
    gw_trace_begin(&t, &h, fresh, true);
    assert_int_equal(t.origin, GW_TRACE_CONTINUED);
    hex(t.trace_id, GW_TRACE_ID_BYTES, s);
    assert_string_equal(s, TID);
    hex(t.parent_id, GW_SPAN_ID_BYTES, s);
    assert_string_equal(s, PID);
    hex(t.span_id, GW_SPAN_ID_BYTES, s);
    assert_string_equal(s, "2222222222222222");
    assert_int_equal(t.flags, 0);
    assert_non_null(t.state);
    assert_string_equal(t.state, "congo=t61rcWkgMzE,rojo=1");
    gw_trace_copy(&copy, &t);
    assert_ptr_not_equal(copy.state, t.state);
    assert_string_equal(copy.state, t.state);
    assert_memory_equal(copy.trace_id, t.trace_id, GW_TRACE_ID_BYTES);
    gw_trace_clear(&copy);
    gw_trace_clear(&t);
    assert_null(t.state);

    /* Reserved flags are dropped; the tracestate is not kept unless asked for. */
    headers(&h, "00-" TID "-" PID "-ff", 1, "congo=1");
    gw_trace_begin(&t, &h, fresh, false);
    assert_int_equal(t.origin, GW_TRACE_CONTINUED);
    assert_int_equal(t.flags, GW_TRACE_FLAG_SAMPLED);
    assert_null(t.state);
    gw_trace_clear(&t);

    /* A bad tracestate is dropped, and only it: the trace goes on. */
    headers(&h, "00-" TID "-" PID "-01", 1, "foo=1,foo=2");
    gw_trace_begin(&t, &h, fresh, true);
    assert_int_equal(t.origin, GW_TRACE_CONTINUED);
    assert_null(t.state);
    gw_trace_clear(&t);
    headers(&h, "00-" TID "-" PID "-01", 1, "foo=1");
    h.state_too_long = true;
    gw_trace_begin(&t, &h, fresh, true);
    assert_int_equal(t.origin, GW_TRACE_CONTINUED);
    assert_null(t.state);
    gw_trace_clear(&t);
    headers(&h, "00-" TID "-" PID "-01", 1, " , ");
    gw_trace_begin(&t, &h, fresh, true);
    assert_null(t.state); /* empty: nothing to pass on */
    gw_trace_clear(&t);

    /* Malformed: a new trace, and the tracestate that came with it is dropped. */
    headers(&h, "00-" TID "-" PID "-0X", 1, "congo=1");
    gw_trace_begin(&t, &h, fresh, true);
    assert_int_equal(t.origin, GW_TRACE_RESTARTED);
    hex(t.trace_id, GW_TRACE_ID_BYTES, s);
    assert_string_equal(s, "11111111111111111111111111111111");
    hex(t.parent_id, GW_SPAN_ID_BYTES, s);
    assert_string_equal(s, "0000000000000000");
    assert_int_equal(t.flags, GW_TRACE_FLAG_SAMPLED);
    assert_null(t.state);
    gw_trace_clear(&t);

    /* Two traceparent fields, even valid ones: neither is trusted. */
    headers(&h, "00-" TID "-" PID "-01", 2, NULL);
    gw_trace_begin(&t, &h, fresh, true);
    assert_int_equal(t.origin, GW_TRACE_RESTARTED);
    gw_trace_clear(&t);

    /* A tracestate without a traceparent belongs to no trace hcgw knows. */
    headers(&h, NULL, 0, "congo=1");
    gw_trace_begin(&t, &h, fresh, true);
    assert_int_equal(t.origin, GW_TRACE_STARTED);
    assert_null(t.state);
    gw_trace_clear(&t);
}

static void test_begin_zero_draw(void **state)
{
    static const uint8_t zero[GW_TRACE_FRESH_BYTES] = {0};
    struct gw_trace t;
    char s[40];

    (void)state;
    memset(&t, 0, sizeof(t));
    /* An all-zero id is invalid: a draw of zeros is made valid rather than sent. */
    gw_trace_begin(&t, NULL, zero, false);
    hex(t.trace_id, GW_TRACE_ID_BYTES, s);
    assert_string_equal(s, "00000000000000000000000000000001");
    hex(t.span_id, GW_SPAN_ID_BYTES, s);
    assert_string_equal(s, "0000000000000001");
    gw_trace_clear(&t);
}

static void test_format_parent(void **state)
{
    static const uint8_t span[GW_SPAN_ID_BYTES] = {0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31};
    struct gw_trace_headers h;
    struct gw_trace t;
    char out[GW_TRACEPARENT_LEN + 1];
    uint8_t tid[GW_TRACE_ID_BYTES], pid[GW_SPAN_ID_BYTES], f;

    (void)state;
    memset(&t, 0, sizeof(t));
    /* A future version's trace is passed on as version 00 with the flags 00 defines. */
    headers(&h, "cc-" TID "-" PID "-0b-future", 1, NULL);
    gw_trace_begin(&t, &h, fresh, false);
    memset(out, 'x', sizeof(out));
    gw_trace_format_parent(&t, span, out);
    assert_string_equal(out, "00-" TID "-b7ad6b7169203331-01");
    assert_int_equal(strlen(out), GW_TRACEPARENT_LEN);
    /* What hcgw writes, it reads back. */
    assert_int_equal(gw_trace_parse_parent(out, strlen(out), tid, pid, &f), 0);
    assert_memory_equal(tid, t.trace_id, GW_TRACE_ID_BYTES);
    assert_memory_equal(pid, span, GW_SPAN_ID_BYTES);
    gw_trace_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parent_valid),
        cmocka_unit_test(test_parent_future_versions),
        cmocka_unit_test(test_parent_invalid),
        cmocka_unit_test(test_state_valid),
        cmocka_unit_test(test_state_invalid),
        cmocka_unit_test(test_begin),
        cmocka_unit_test(test_begin_zero_draw),
        cmocka_unit_test(test_format_parent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

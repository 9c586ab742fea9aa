/*
 * libFuzzer target: W3C trace context (trace.c), the two headers any caller sends. The input
 * is "TRACEPARENT\nTRACESTATE": the traceparent value up to the first newline, the tracestate
 * after it. Properties besides memory safety:
 *   - an accepted traceparent is 55 to 255 bytes once trimmed, has non-zero ids, and what
 *     hcgw writes for its trace (gw_trace_format_parent) is a version 00 traceparent that
 *     parses back to the same trace-id and span;
 *   - an accepted tracestate comes out no longer than it went in, of printable ASCII, with at
 *     most 32 members and no empty member or whitespace around one, and checking that output
 *     again gives it back unchanged;
 *   - gw_trace_begin keeps a tracestate only with a valid traceparent, and then exactly the
 *     checked one; its ids are never all zero.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/limits.h"
#include "hcgw/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_trace: property broken: %s\n", what);
        abort();
    }
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static void check_parent(const char *s, size_t len)
{
    uint8_t tid[GW_TRACE_ID_BYTES], pid[GW_SPAN_ID_BYTES], flags;
    uint8_t tid2[GW_TRACE_ID_BYTES], pid2[GW_SPAN_ID_BYTES], flags2;
    struct gw_trace t;
    char out[GW_TRACEPARENT_LEN + 1];
    size_t lo = 0, hi = len;

    if (gw_trace_parse_parent(s, len, tid, pid, &flags) != 0)
        return;
    while (lo < hi && (s[lo] == ' ' || s[lo] == '\t'))
        lo++;
    while (hi > lo && (s[hi - 1] == ' ' || s[hi - 1] == '\t'))
        hi--;
    check(hi - lo >= GW_TRACEPARENT_LEN && hi - lo < GW_MAX_TRACEPARENT_BYTES, "length");
    check(!all_zero(tid, sizeof(tid)) && !all_zero(pid, sizeof(pid)), "non-zero ids");
    memset(&t, 0, sizeof(t));
    memcpy(t.trace_id, tid, sizeof(tid));
    t.flags = flags;
    gw_trace_format_parent(&t, pid, out);
    check(strlen(out) == GW_TRACEPARENT_LEN && memcmp(out, "00-", 3) == 0, "version 00 out");
    check(gw_trace_parse_parent(out, strlen(out), tid2, pid2, &flags2) == 0, "reads back");
    check(memcmp(tid, tid2, sizeof(tid)) == 0 && memcmp(pid, pid2, sizeof(pid)) == 0,
          "same ids back");
    check(flags2 == (flags & GW_TRACE_FLAG_SAMPLED), "only the sampled flag goes out");
}

static long check_state(const char *s, size_t len, char *out, size_t cap)
{
    char again[GW_MAX_TRACESTATE_BYTES + 1];
    long n = gw_trace_check_state(s, len, out, cap);
    size_t members = 0;

    if (n < 0)
        return n;
    check((size_t)n <= len && strlen(out) == (size_t)n, "no longer than the input");
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        check(c >= 0x20 && c <= 0x7e, "printable");
        if (c == ',' || i == 0)
            members++;
        if (c == ',')
            check(i > 0 && i + 1 < n && out[i - 1] != ',' && out[i + 1] != ' ' &&
                      out[i - 1] != ' ' && out[i + 1] != ',',
                  "no empty member, no whitespace around one");
    }
    check(n == 0 || (out[0] != ' ' && out[n - 1] != ' '), "trimmed");
    check(members <= GW_MAX_TRACESTATE_MEMBERS, "at most 32 members");
    check(gw_trace_check_state(out, (size_t)n, again, sizeof(again)) == n &&
              strcmp(again, out) == 0,
          "normalised once for all");
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t fresh[GW_TRACE_FRESH_BYTES] = {0};
    char *in = malloc(size + 1);
    const char *nl;
    const char *st;
    size_t plen, slen;
    struct gw_trace_headers h;
    struct gw_trace t;
    char state[GW_MAX_TRACESTATE_BYTES + 1];
    long n;

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    nl = memchr(in, '\n', size);
    plen = nl != NULL ? (size_t)(nl - in) : size;
    st = nl != NULL ? nl + 1 : in + size;
    slen = size - (size_t)(st - in);

    check_parent(in, plen);
    n = slen <= GW_MAX_TRACESTATE_BYTES ? check_state(st, slen, state, sizeof(state)) : -1;

    /* As a request would carry them: the traceparent a C string (MHD's), the tracestate
     * joined. */
    memset(&h, 0, sizeof(h));
    in[plen] = '\0';
    h.parent = in;
    h.parents = 1;
    if (nl != NULL) {
        h.state_sent = true;
        h.state_too_long = slen > GW_MAX_TRACESTATE_BYTES;
        if (!h.state_too_long) {
            memcpy(h.state, st, slen);
            h.state[slen] = '\0';
            h.state_len = slen;
        }
    }
    memset(&t, 0, sizeof(t));
    gw_trace_begin(&t, &h, fresh, true);
    check(!all_zero(t.trace_id, GW_TRACE_ID_BYTES) && !all_zero(t.span_id, GW_SPAN_ID_BYTES),
          "ids never zero");
    if (t.state != NULL)
        check(t.origin == GW_TRACE_CONTINUED && n > 0 && strcmp(t.state, state) == 0,
              "the tracestate kept is the checked one, with its traceparent");
    else
        check(t.origin != GW_TRACE_CONTINUED || n <= 0,
              "a valid tracestate with a valid traceparent is kept");
    gw_trace_clear(&t);
    free(in);
    return 0;
}

/*
 * W3C Trace Context (Level 1) for one request: the caller's `traceparent` and `tracestate`
 * read and checked, hcgw's own span in the caller's trace (or in a trace hcgw starts), and the
 * child `traceparent` an upstream call sends when upstream.propagate_trace is on.
 *
 * Trace context is advisory: nothing here refuses a request. A traceparent that does not parse
 * (or comes twice, or is longer than GW_MAX_TRACEPARENT_BYTES) is replaced by a new trace and
 * its tracestate dropped; a tracestate that does not parse (or is longer than
 * GW_MAX_TRACESTATE_BYTES, or has more than GW_MAX_TRACESTATE_MEMBERS members, or a key twice)
 * is dropped on its own.
 *
 * The parser and the formatter are pure functions over caller-owned bytes, any thread; the ids
 * of a new trace or span come from random bytes the caller draws, so that this file holds no
 * generator and its tests are deterministic.
 */
#ifndef HCGW_TRACE_H
#define HCGW_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/limits.h"

struct MHD_Connection;
struct gw_logline;

/** A trace-id: 16 bytes, 32 lowercase hex digits; all zero is invalid. */
#define GW_TRACE_ID_BYTES 16
/** A span (parent-id): 8 bytes, 16 lowercase hex digits; all zero is invalid. */
#define GW_SPAN_ID_BYTES 8
/** A traceparent of version 00, "00-<trace-id>-<parent-id>-<flags>", NUL excluded. */
#define GW_TRACEPARENT_LEN 55
/** trace-flags: the one flag of version 00. The others are reserved and sent as zero. */
#define GW_TRACE_FLAG_SAMPLED 0x01
/** Random bytes gw_trace_begin takes: a trace-id (used when it starts a trace), then a span. */
#define GW_TRACE_FRESH_BYTES (GW_TRACE_ID_BYTES + GW_SPAN_ID_BYTES)

/** How a request's trace began. */
enum gw_trace_origin {
    GW_TRACE_STARTED = 0,            /* the caller sent no traceparent: hcgw started a trace */
    GW_TRACE_CONTINUED,              /* the caller's traceparent was valid: its trace goes on */
    GW_TRACE_RESTARTED               /* the caller's traceparent was not: hcgw started a trace */
};

/**
 * A request's trace context: its trace, hcgw's span for it, and what came from the caller.
 * Whoever holds one owns its `state` (gw_trace_copy, gw_trace_clear).
 */
struct gw_trace {
    uint8_t trace_id[GW_TRACE_ID_BYTES];
    uint8_t span_id[GW_SPAN_ID_BYTES];      /* hcgw's span for the request */
    uint8_t parent_id[GW_SPAN_ID_BYTES];    /* the caller's span (CONTINUED only), else zero */
    uint8_t flags;                          /* trace-flags hcgw passes on (sampled bit only) */
    enum gw_trace_origin origin;
    char *state;                            /* the caller's tracestate as passed on: checked,
                                               normalised, malloc'd; NULL: none or not kept */
};

/**
 * The trace headers of one request, as gw_trace_read collects them. Lives on the caller's
 * stack; `parent` points into the request's headers, which outlive it.
 */
struct gw_trace_headers {
    const char *parent;              /* the traceparent value, NULL when none */
    unsigned parents;                /* traceparent fields sent (more than one: invalid) */
    bool state_sent;                 /* at least one tracestate field */
    bool state_too_long;             /* joined, they exceed GW_MAX_TRACESTATE_BYTES */
    size_t state_len;
    char state[GW_MAX_TRACESTATE_BYTES + 1]; /* the tracestate fields joined by "," (RFC 9110) */
};

/**
 * Collect the traceparent and tracestate fields of @p conn's request (names in any case) into
 * @p h. MHD's thread of that connection.
 */
void gw_trace_read(struct MHD_Connection *conn, struct gw_trace_headers *h);

/**
 * Parse one traceparent value (@p len bytes; surrounding spaces and tabs are allowed) by the
 * rules of Level 1, future versions included: on success set *trace_id, *parent_id and *flags
 * (as sent) and return 0; return -1 when it is invalid (wrong length or shape, a hex digit
 * that is not lowercase, an all-zero id, version ff, a version 00 with anything after its
 * flags, a longer one of GW_MAX_TRACEPARENT_BYTES or more).
 */
int gw_trace_parse_parent(const char *s, size_t len, uint8_t trace_id[GW_TRACE_ID_BYTES],
                          uint8_t parent_id[GW_SPAN_ID_BYTES], uint8_t *flags);

/**
 * Check a (combined) tracestate value of @p len bytes against Level 1's grammar and limits and
 * write it normalised into @p out (@p cap bytes, room for len + 1 is always enough): its
 * members joined by "," without the optional whitespace or empty members, NUL-terminated.
 * Returns the normalised length (0: no member at all), or -1 when it is invalid: a key or
 * value out of the grammar, a key twice, more than GW_MAX_TRACESTATE_MEMBERS members, @p len
 * over GW_MAX_TRACESTATE_BYTES, or @p out too small.
 */
long gw_trace_check_state(const char *s, size_t len, char *out, size_t cap);

/**
 * Fill @p t for a new request from its caller's headers @p h (NULL: none looked at, as for a
 * request refused before its headers are read): the caller's trace continued with a new span,
 * or a new trace. @p fresh holds GW_TRACE_FRESH_BYTES random bytes: a new trace's trace-id,
 * then hcgw's span-id (an all-zero draw is made valid). With @p keep_state the caller's
 * tracestate, when valid and the traceparent was too, is kept in t->state; without it, or
 * when out of memory, none is (trace context is advisory: nothing fails). @p t must be
 * zeroed or cleared.
 */
void gw_trace_begin(struct gw_trace *t, const struct gw_trace_headers *h,
                    const uint8_t fresh[GW_TRACE_FRESH_BYTES], bool keep_state);

/**
 * Write the traceparent of a child of @p t's trace whose span is @p span: "00-<trace-id>-
 * <span>-<flags>" and a NUL into @p out (GW_TRACEPARENT_LEN + 1 bytes).
 */
void gw_trace_format_parent(const struct gw_trace *t, const uint8_t span[GW_SPAN_ID_BYTES],
                            char out[GW_TRACEPARENT_LEN + 1]);

/**
 * Make @p dst (zeroed or cleared) a copy of @p src with its own state, for a call that
 * outlives the request it was made for (calls.c, homes.c). Out of memory, the copy has no
 * state: trace context is advisory, so the call goes without it rather than fail.
 */
void gw_trace_copy(struct gw_trace *dst, const struct gw_trace *src);

/**
 * Add @p t to a request's log line: "trace_id" and "span_id" (hcgw's), then "parent_span_id"
 * (the caller's span) when the caller's trace goes on, or "traceparent":"invalid" when the
 * caller's traceparent was replaced by a new trace.
 */
void gw_trace_log(struct gw_logline *l, const struct gw_trace *t);

/** Free what @p t owns (its state) and zero it. Accepts a zeroed trace. */
void gw_trace_clear(struct gw_trace *t);

#endif

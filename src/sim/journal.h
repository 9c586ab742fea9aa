/*
 * journal.h: what hcgw-sim saw: counters (requests, connections, rate-limited, scripted, per
 * route) and a ring of the last SIM_JOURNAL_RING /v1 requests with the headers tests assert on.
 *
 * Tests read it through GET /_sim/stats and GET /_sim/requests to check what the gateway sent
 * upstream. Not locked by itself: call every function with the API lock held (see api.c).
 */
#ifndef HCGW_SIM_JOURNAL_H
#define HCGW_SIM_JOURNAL_H

#include <stddef.h>

#include "faults.h"

struct sim_journal;

/** One /v1 call as it arrived; every string may be NULL (absent) and is copied. */
struct sim_journal_call {
    const char *route_key;      /**< "METHOD pattern", e.g. "DELETE /customers/{id}/tags" */
    const char *method;
    const char *path;           /**< raw path, without the query */
    const char *query;          /**< raw query string; NULL is recorded as "" */
    const char *authorization;  /**< raw header, recorded on purpose: the key is a test key */
    const char *content_type;
    const char *accept;
    const char *accept_encoding;
    const char *user_agent;
    const char *x_request_id;
    const char *traceparent;    /**< W3C trace context, as a gateway passes it on */
    const char *tracestate;
    const char *body;           /**< raw body bytes; only the first SIM_JOURNAL_BODY_MAX kept */
    size_t body_len;
};

/** Creates an empty journal, or NULL when out of memory. */
struct sim_journal *sim_journal_new(void);

/** Frees the journal and its ring; NULL is fine. */
void sim_journal_free(struct sim_journal *j);

/** Zeroes every counter and empties the ring (POST /_sim/reset). */
void sim_journal_reset(struct sim_journal *j);

/**
 * Counts one /v1 call (total and per route) and appends it to the ring, dropping the oldest
 * entry when full. A copy that fails for lack of memory is recorded as null; the count stands.
 */
void sim_journal_record(struct sim_journal *j, const struct sim_journal_call *call);

/** Counts one accepted TCP connection. */
void sim_journal_count_connection(struct sim_journal *j);

/** Counts one call answered 429 by the rate limiter. */
void sim_journal_count_rate_limited(struct sim_journal *j);

/** Counts one answer sent encoded (the gzip knob, or an entry's "encoding"). */
void sim_journal_count_encoded(struct sim_journal *j);

/** Counts one call that took an entry of the fault script. */
void sim_journal_count_scripted(struct sim_journal *j);

/** Counts one fault of the knobs applied to a call (SIM_FAULT_NONE is not counted). */
void sim_journal_count_fault(struct sim_journal *j, enum sim_fault_kind kind);

/**
 * The body of GET /_sim/stats: {"requests":N,"connections":N,"rate_limited":N,"scripted":N,
 * "encoded":N,
 * "faults":{"latency":N,"error":N,...},"by_route":{...}}, a heap string the caller frees;
 * NULL when out of memory.
 */
char *sim_journal_stats_json(const struct sim_journal *j, size_t *len);

/** The body of GET /_sim/requests, oldest first; a heap string, NULL when out of memory. */
char *sim_journal_requests_json(const struct sim_journal *j, size_t *len);

#endif /* HCGW_SIM_JOURNAL_H */

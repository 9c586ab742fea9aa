/*
 * faults.h: persistent fault knobs. Where a script entry (script.h) answers one call, a knob
 * stays set until it is changed: added latency and jitter, an error status for the next N
 * calls or a fraction of them, the rate limit, hung calls, closed or reset connections, bad,
 * HTML, huge, dripping or truncated bodies. Knobs come from the command line at start and
 * from POST /_sim/faults at run time; every /v1 call that no script entry answers draws its
 * fate from them with a seedable PRNG.
 *
 * Nothing here is locked by itself: call every function that takes a struct sim_faults with
 * the API lock held (see api.c), which also makes the PRNG's sequence one sequence.
 */
#ifndef HCGW_SIM_FAULTS_H
#define HCGW_SIM_FAULTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "script.h"

struct sim_faults;

/** Every knob. Rates are fractions of /v1 calls, 0.0 to 1.0, adding up to at most 1.0. */
struct sim_knobs {
    unsigned long long latency_ms;        /**< added before every /v1 answer */
    unsigned long long latency_jitter_ms; /**< plus a random 0..N ms */
    double error_rate;                    /**< answered error_status with an error body */
    unsigned long long error_status;      /**< 400..599, default 503 */
    unsigned long long error_next;        /**< the next N calls get error_status */
    unsigned long long rate_limit;        /**< calls per one-minute window, 0 = no limit */
    bool retry_after;                     /**< send Retry-After with a 429 */
    double hang_rate;                     /**< never answered until the sim stops */
    double close_rate;                    /**< closed without an answer */
    double reset_rate;                    /**< headers, part of the body, then a TCP reset */
    double truncate_rate;                 /**< headers, half the body, then a close */
    double drip_rate;                     /**< the body one byte per drip_interval_ms */
    unsigned long long drip_interval_ms;
    double huge_rate;                     /**< a valid JSON body of huge_bytes */
    unsigned long long huge_bytes;
    double html_rate;                     /**< 502 with an HTML page, as from a proxy */
    double bad_body_rate;                 /**< 200 with a body that is not JSON */
    bool gzip;                            /**< gzip-encode the answers of calls that accept it */
};

/**
 * What one call gets, besides its latency. The order is the order in which rates are laid out
 * on the [0, 1) line of one draw, and the order of the "faults" counters in /_sim/stats.
 */
enum sim_fault_kind {
    SIM_FAULT_NONE,
    SIM_FAULT_LATENCY, /**< counted only: the call was delayed by latency_ms or jitter */
    SIM_FAULT_ERROR,
    SIM_FAULT_HANG,
    SIM_FAULT_CLOSE,
    SIM_FAULT_RESET,
    SIM_FAULT_TRUNCATE,
    SIM_FAULT_DRIP,
    SIM_FAULT_HUGE,
    SIM_FAULT_HTML,
    SIM_FAULT_BAD_BODY,
    SIM_FAULT_KINDS
};

/** One call's draw: its added latency and the fault that answers it (or none). */
struct sim_draw {
    unsigned long long delay_ms;
    enum sim_fault_kind kind;
    unsigned status;                    /**< ERROR: error_status */
    bool retry_after;                   /**< ERROR with 429: send Retry-After */
    unsigned long long huge_bytes;      /**< HUGE */
    unsigned long long drip_interval_ms; /**< DRIP */
};

/** The defaults: no fault, error_status 503, the given rate limit, 9 MiB, 1 s drips. */
void sim_knobs_default(struct sim_knobs *k, unsigned long long rate_limit);

/** The number of knobs, for main.c's option table. */
size_t sim_knobs_count(void);

/** Knob i's command-line flag without the dashes ("latency-jitter-ms"). */
const char *sim_knobs_flag(size_t i);

/** Whether knob i's flag takes a value (only boolean flags such as --retry-after do not). */
bool sim_knobs_flag_has_arg(size_t i);

/**
 * Sets knob i from a flag's text (NULL for a flag without a value). Returns 0, or -1 with a
 * reason in err ("--error-rate must be a number from 0 to 1").
 */
int sim_knobs_set_flag(struct sim_knobs *k, size_t i, const char *text, char *err,
                       size_t errlen);

/** Checks the knobs as a whole (the rates add up to at most 1). Returns 0, or -1 with err. */
int sim_knobs_check(const struct sim_knobs *k, char *err, size_t errlen);

/**
 * Creates the fault state with start as the knobs that DELETE /_sim/faults and /_sim/reset
 * return to, and the PRNG seeded with seed (the same seed, the same sequence of draws).
 * Returns NULL when out of memory.
 */
struct sim_faults *sim_faults_new(const struct sim_knobs *start, uint64_t seed);

/** Frees the fault state; NULL is fine. */
void sim_faults_free(struct sim_faults *f);

/** Puts every knob back to its start value and re-seeds the PRNG with the start seed. */
void sim_faults_reset(struct sim_faults *f);

/**
 * Applies a POST /_sim/faults body: an object whose keys (knob names, and "seed") change only
 * those knobs. All or nothing: on an unknown key, a bad value or rates adding up to more than
 * 1, returns -1 with a reason in err and changes nothing. doc stays the caller's. Setting
 * rate_limit is reported through *rate_changed so that the caller can start a new window.
 */
int sim_faults_update(struct sim_faults *f, json_object *doc, bool *rate_changed, char *err,
                      size_t errlen);

/** The current knobs and seed as a JSON text (GET /_sim/faults); heap, NULL when out of memory. */
char *sim_faults_json(const struct sim_faults *f, size_t *len);

/** The current knobs (for the rate limiter); valid until the next update or reset. */
const struct sim_knobs *sim_faults_knobs(const struct sim_faults *f);

/**
 * Draws the latency and fault of one /v1 call and consumes one error_next. With latency_only
 * (a call a script entry answers: the script wins over the knobs) only the latency is drawn
 * and out->kind is NONE.
 */
void sim_faults_draw(struct sim_faults *f, bool latency_only, struct sim_draw *out);

/**
 * The fault that plays draw's kind (hang, close, reset, truncate, drip, huge, html or
 * bad_body), with one reference the caller releases with sim_fault_release; NULL when out of
 * memory or for NONE, LATENCY and ERROR (api.c answers an error itself, in the error style of
 * the command line). Any thread, no lock needed.
 */
struct sim_fault *sim_faults_make(const struct sim_draw *draw);

/** The name of a kind as in /_sim/stats and the access log ("bad_body"). */
const char *sim_fault_kind_name(enum sim_fault_kind kind);

#endif /* HCGW_SIM_FAULTS_H */

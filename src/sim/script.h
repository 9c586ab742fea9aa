/*
 * script.h: scripted faults. POST /_sim/script queues entries; each upcoming /v1 call takes
 * the entry at the head and is answered by it (a status and body, a closed connection, a
 * truncated or huge or dripping body, a delay) instead of by the store.
 *
 * The queue is not locked by itself: call sim_script_push/pop/clear/len with the API lock
 * held. A popped struct sim_fault is immutable and reference-counted (atomically), so the
 * connection that answers with it needs no lock.
 */
#ifndef HCGW_SIM_SCRIPT_H
#define HCGW_SIM_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "gzip.h"
#include "nap.h"

struct sim_script;
struct sim_fault;

/** What an entry does with the call it applies to. */
enum sim_action {
    SIM_ACTION_RESPOND,     /**< answer status/body/headers */
    SIM_ACTION_CLOSE,       /**< close the connection without an answer */
    SIM_ACTION_TRUNCATE,    /**< announce the full length, send half, close */
    SIM_ACTION_HUGE,        /**< a valid JSON body of `size` bytes */
    SIM_ACTION_DRIP,        /**< the body one byte every interval_ms */
    SIM_ACTION_PASSTHROUGH, /**< no fault: the call is handled normally (after delay_ms) */
    SIM_ACTION_HANG,        /**< never answer; the connection is closed when the sim stops */
    SIM_ACTION_RESET,       /**< announce the full length, send half, then reset the TCP
                                 connection (a truncate when the socket is not known) */
};

/** A fault built by code rather than by a script entry (the fault knobs, faults.h). */
struct sim_fault_spec {
    enum sim_action action;
    unsigned status;
    const char *body;              /**< NULL: none (truncate, reset, drip: a small customer) */
    const char *content_type;      /**< NULL: application/json */
    unsigned long long size;       /**< huge */
    unsigned long interval_ms;     /**< drip */
};

/** Creates an empty queue, or NULL when out of memory. */
struct sim_script *sim_script_new(void);

/** Frees the queue and the entries still in it; NULL is fine. */
void sim_script_free(struct sim_script *script);

/**
 * Validates doc (one entry object or an array of them) and appends every entry, or none: on
 * a bad entry or when the queue would exceed SIM_SCRIPT_QUEUE_MAX entries, returns -1 with a
 * reason in err (e.g. "entry 2: status must be an integer from 100 to 599"). Returns the queue
 * length on success. doc stays the caller's.
 */
long sim_script_push(struct sim_script *script, json_object *doc, char *err, size_t errlen);

/**
 * Takes the entry for one call: returns a reference the caller releases with
 * sim_fault_release, or NULL when the queue is empty. An entry with "count": N is returned N
 * times before it leaves the queue.
 */
struct sim_fault *sim_script_pop(struct sim_script *script);

/**
 * Makes a fault from spec (strings are copied), with one reference the caller releases with
 * sim_fault_release. Returns NULL when out of memory. Any thread.
 */
struct sim_fault *sim_fault_make(const struct sim_fault_spec *spec);

/** Empties the queue. */
void sim_script_clear(struct sim_script *script);

/** Entries waiting (an entry with a count counts once). */
size_t sim_script_len(const struct sim_script *script);

/** Drops a reference from sim_script_pop; NULL is fine. Any thread. */
void sim_fault_release(struct sim_fault *fault);

/** The entry's action. Any thread. */
enum sim_action sim_fault_action(const struct sim_fault *fault);

/** The action's name as written in scripts ("close", "drip", ...), for the access log. */
const char *sim_fault_action_name(const struct sim_fault *fault);

/** delay_ms of the entry (0 when absent). */
unsigned long sim_fault_delay_ms(const struct sim_fault *fault);

/** The status the entry answers with (200 when absent). */
unsigned sim_fault_status(const struct sim_fault *fault);

/** True when the entry's extra headers name @p name (compared without regard to case). */
bool sim_fault_has_header(const struct sim_fault *fault, const char *name);

/**
 * The entry's "encoding" (SIM_CODING_IDENTITY when absent): its body is sent encoded, with the
 * Content-Encoding that names it (a passthrough's real answer too, which api.c encodes).
 */
enum sim_coding sim_fault_coding(const struct sim_fault *fault);

/**
 * Builds the response of a RESPOND, TRUNCATE, RESET, HUGE or DRIP entry, with its content type
 * and extra headers; the caller queues and destroys it. Body callbacks of DRIP sleep on nap,
 * which must outlive the response. sock is the connection's socket, which RESET resets at the
 * cut (-1 when unknown: RESET then plays as TRUNCATE). Returns NULL when out of memory or for
 * another action.
 */
struct MHD_Response *sim_fault_response(struct sim_fault *fault, struct sim_nap *nap, int sock);

/**
 * Adds the entry's extra headers to resp (a passthrough entry may carry some for the normal
 * answer, e.g. a Retry-After). Returns MHD_NO when one could not be added.
 */
enum MHD_Result sim_fault_add_headers(const struct sim_fault *fault, struct MHD_Response *resp);

#endif /* HCGW_SIM_SCRIPT_H */

/*
 * Contact homes: every contact has one home worker (its id, hashed, modulo the number of
 * workers), and the call layer runs a contact's reads that miss the cache and all its writes
 * there, so that single flight, the line of writes and tag coalescing (calls.h) hold across
 * workers, not only within one. A call of another worker's contact is handed off: the home
 * worker's call layer runs a copy of it, and the answer comes back to the caller's worker,
 * which ends the call on its own thread. With one worker nothing is ever handed off.
 *
 * The hand-off goes through one mailbox per worker (a mutex, a few lists and the loop's
 * eventfd); nothing else is shared, and a worker never touches another worker's call layer.
 * A worker's mailbox is read on its own thread by gw_homes_run, called after gw_loop_wake.
 */
#ifndef HCGW_HOMES_H
#define HCGW_HOMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/err.h"

struct gw_call;
struct gw_calls;
struct gw_loop;
struct gw_homes;

/** Create the mailboxes of @p nworkers workers (1 to GW_MAX_WORKERS). NULL: out of memory. */
struct gw_homes *gw_homes_new(int nworkers);

/**
 * Free them. Every worker's thread has stopped and gw_homes_close ran for each; the answers
 * still waiting in a mailbox (of calls nobody waits for) are freed. Accepts NULL.
 */
void gw_homes_free(struct gw_homes *homes);

/**
 * Give worker @p index its loop and call layer, before any thread runs. A worker that is never
 * attached is a home to nobody: its contacts stay with their callers' workers.
 */
void gw_homes_attach(struct gw_homes *homes, int index, struct gw_loop *loop,
                     struct gw_calls *calls);

/** The home worker of @p contact_id. Any thread. */
int gw_homes_home_of(const struct gw_homes *homes, uint64_t contact_id);

/**
 * Hand @p call, submitted on worker @p from, to worker @p to. Returns 0: call->done runs
 * exactly once, later, on @p from's thread (the answer of the home's copy, or the failure of
 * gw_homes_cancel, or GW_ERR_UPSTREAM_TIMEOUT when no answer came back shortly after the
 * call's deadline). Returns 1: @p to takes no hand-off any more (it is stopping): run the call
 * here. Returns GW_ERR_NOMEM: nothing happened. @p call's url, body and request_id are copied.
 */
int gw_homes_send(struct gw_homes *homes, int from, int to, struct gw_call *call);

/**
 * End @p call, handed off and not yet ended, now with @p err: its done callback runs before
 * this returns, and its home is asked to cancel the copy (gw_calls_cancel there: a shared read
 * goes on for the others). Thread of the worker that sent it.
 */
void gw_homes_cancel(struct gw_homes *homes, struct gw_call *call, enum gw_err err);

/** End every call that worker @p index handed off, now with @p err. Its thread. */
void gw_homes_cancel_all(struct gw_homes *homes, int index, enum gw_err err);

/**
 * Worker @p index's mail, on its thread: run the calls handed to it, cancel the ones their
 * callers left, and end its own handed-off calls whose answers came back.
 */
void gw_homes_run(struct gw_homes *homes, int index);

/** Calls worker @p index handed off that have not ended. Its thread. */
size_t gw_homes_sent(const struct gw_homes *homes, int index);

/**
 * Close worker @p index's mailbox when it hosts nothing (no call handed to it is waiting or
 * running): later hand-offs to it return 1. With @p force it closes anyway, and the calls still
 * waiting in it go back to their workers to run there. Returns true when closed. Its thread.
 */
bool gw_homes_close(struct gw_homes *homes, int index, bool force);

#endif

/*
 * nap.h: sleeps that shutdown can cut short.
 *
 * Scripted faults sleep for up to ten minutes inside connection threads (delay_ms, drip), and
 * MHD_stop_daemon joins those threads; a plain nanosleep would hold SIGTERM hostage for that
 * long. Every sleep in hcgw-sim goes through a struct sim_nap instead, which sim_nap_stop wakes.
 */
#ifndef HCGW_SIM_NAP_H
#define HCGW_SIM_NAP_H

#include <stdbool.h>

struct sim_nap;

/** Creates a nap (not stopped). Returns NULL when memory or a pthread object ran out. */
struct sim_nap *sim_nap_new(void);

/** Frees a nap; NULL is fine. No thread may still be sleeping on it. */
void sim_nap_free(struct sim_nap *nap);

/**
 * Sleeps for ms milliseconds on the calling thread. Returns true after the full sleep, false at
 * once (or as soon as it happens) when sim_nap_stop was called. Any thread.
 */
bool sim_nap_sleep(struct sim_nap *nap, unsigned long ms);

/** Sleeps on the calling thread until sim_nap_stop is called (a hung call). Any thread. */
void sim_nap_until_stop(struct sim_nap *nap);

/** Wakes every sleeper and makes every later sim_nap_sleep return false. Any thread. */
void sim_nap_stop(struct sim_nap *nap);

#endif /* HCGW_SIM_NAP_H */

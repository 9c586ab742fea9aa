/*
 * api.h: the HTTP side of hcgw-sim: a libmicrohttpd daemon serving the simulated HelpCrunch
 * REST API under /v1 and the control API under /_sim.
 *
 * main.c fills a struct sim_options, starts the daemon with sim_api_start, and stops it with
 * sim_api_stop on SIGTERM/SIGINT. Everything between is in api.c.
 */
#ifndef HCGW_SIM_API_H
#define HCGW_SIM_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

#include "faults.h"
#include "limits.h"

struct sim_api;

/** The two error body shapes HelpCrunch documents. */
enum sim_error_style {
    SIM_ERRORS_NEW, /**< {"errors":[{"code":"invalid_request",...},{specific}]} */
    SIM_ERRORS_OLD, /**< {"errors":[{specific}]} */
};

/** Everything the command line decides; checked by main.c before sim_api_start. */
struct sim_options {
    char address[INET6_ADDRSTRLEN]; /**< numeric IPv4 or IPv6 address to bind */
    uint16_t port;                  /**< 0 = an ephemeral port */
    char key[SIM_KEY_MAX];          /**< the key expected in "Authorization: Bearer <key>" */
    enum sim_error_style error_style;
    bool seed;                      /**< load the seed customers at start and on reset */
    struct sim_knobs knobs;         /**< fault knobs at start (latency, rate limit, ...) */
    uint64_t rng_seed;              /**< the fault PRNG's seed (--seed) */
    bool quiet;                     /**< no access log lines on stderr */
};

/**
 * Binds opt->address:opt->port and starts serving on MHD's threads (one per connection).
 * opt is copied. Returns the running API, or NULL with a reason in err. Main thread.
 */
struct sim_api *sim_api_start(const struct sim_options *opt, char *err, size_t errlen);

/** The port actually bound (the ephemeral one when opt->port was 0). */
uint16_t sim_api_port(const struct sim_api *api);

/**
 * Wakes sleeping faults, stops the daemon (joining every connection thread) and frees all.
 * NULL is fine. Main thread, once.
 */
void sim_api_stop(struct sim_api *api);

#endif /* HCGW_SIM_API_H */

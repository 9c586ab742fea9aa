/*
 * For unit tests that step an event loop by hand: run it until a condition holds or a guard
 * passes. The clock is gw_clock_ms (loop.h): the real one, not the loop's cached now.
 */
#ifndef HCGW_TEST_RUN_UNTIL_H
#define HCGW_TEST_RUN_UNTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "hcgw/loop.h"

/* Run @p loop until @p cond holds or @p ms pass; evaluates to whether it holds. */
#define RUN_UNTIL(loop, cond, ms)                                                            \
    ({                                                                                       \
        uint64_t until_ = gw_clock_ms() + (ms);                                              \
        while (!(cond) && gw_clock_ms() < until_)                                            \
            gw_loop_run_once((loop), 5);                                                     \
        (bool)(cond);                                                                        \
    })

#endif

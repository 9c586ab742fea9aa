/*
 * An asynchronous host name lookup on a worker's loop. glibc's getaddrinfo_a resolves the name
 * on a thread of its own and wakes the loop through an eventfd, so that a slow or absent DNS
 * server never stalls a worker (a blocking getaddrinfo on the loop would, for seconds).
 *
 * Everything here runs on the loop's thread.
 */
#ifndef HCGW_RESOLVE_H
#define HCGW_RESOLVE_H

#include <netinet/in.h>

#include "hcgw/loop.h"

struct gw_resolve;

/** An IPv6 address in text, the longest answer (INET6_ADDRSTRLEN, NUL included). */
#define GW_RESOLVE_ADDR_BYTES INET6_ADDRSTRLEN

/**
 * Called once on the loop's thread when the lookup ends: @p addr is the first address found,
 * as a numeric string ("10.0.0.7", "fd00::7"), or NULL with @p error saying why (a static
 * text, such as "Name or service not known"). Both are valid during the call only. The lookup
 * is already over: the callback may start another one.
 */
typedef void gw_resolve_cb(void *data, const char *addr, const char *error);

/**
 * Look up @p host (1..GW_MAX_HOSTNAME_BYTES bytes; an IP literal is answered too) for a TCP
 * connection, on @p loop. Returns 0 and sets *out: @p cb will be called exactly once, later,
 * never from inside this function, unless gw_resolve_cancel comes first. Returns a negative
 * gw_err (GW_ERR_INVALID_REQUEST for a bad host, GW_ERR_NOMEM, GW_ERR_INTERNAL when no lookup
 * could be started): then @p cb is never called.
 */
int gw_resolve_start(struct gw_loop *loop, const char *host, gw_resolve_cb *cb, void *data,
                     struct gw_resolve **out);

/**
 * Give up the lookup @p q, whose callback has not run: it never will, and @p q is freed. The
 * lookup itself may go on in glibc's thread; what it finds is freed when it ends. Accepts NULL.
 */
void gw_resolve_cancel(struct gw_resolve *q);

#endif

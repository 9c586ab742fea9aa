/*
 * The list route's query string: limit, offset, sort and order, checked and turned into the
 * HelpCrunch query. Pure; any thread.
 */
#ifndef HCGW_QUERY_H
#define HCGW_QUERY_H

#include <stddef.h>

/**
 * Build the upstream query ("?offset=0&limit=100[&sort=…&order=…]") from the caller's raw,
 * still percent-encoded query string @p raw (NULL or "" for none). limit: a decimal integer,
 * clamped to 1..100 (default 100); offset: a decimal integer 0..2^31-1 (default 0); sort:
 * "customers.firstSeen" or "customers.lastSeen"; order: "asc" or "desc". Values are
 * percent-decoded before the check. An unknown parameter, a repeated one, a non-numeric
 * number or a value out of the list is GW_ERR_INVALID_QUERY. Returns 0 with the query in @p out
 * (capacity @p cap), or GW_ERR_INVALID_QUERY.
 */
int gw_query_list(const char *raw, char *out, size_t cap);

#endif

/*
 * The merging of tag writes (calls.c, coalescing): the upstream tags bodies of several callers,
 * {"tags":[{"name":…[,"color":…]},…]} as gw_body_build makes them, become the body of one call.
 * Pure functions: no I/O, no state; any thread.
 */
#ifndef HCGW_COALESCE_H
#define HCGW_COALESCE_H

#include <stddef.h>

/**
 * The number of tags in the upstream tags body @p body (@p len bytes): the length of its
 * "tags" array, or -1 when it is not such a body.
 */
int gw_coalesce_count(const char *body, size_t len);

/**
 * Merge the @p n tags bodies @p bodies (lengths @p lens, in arrival order) into one: every
 * item in order, except that of two items that name the same tag only the later is kept, where
 * the later one stood (done one after another, the later write would win). On success returns
 * 0 and *out / *out_len receive a malloc'd NUL-terminated body that the caller frees. Returns
 * GW_ERR_INVALID_BODY when a body is not a tags body, GW_ERR_NOMEM when out of memory; then
 * *out is NULL.
 */
int gw_coalesce_merge(const char *const *bodies, const size_t *lens, size_t n, char **out,
                      size_t *out_len);

#endif

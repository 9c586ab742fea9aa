/*
 * HelpCrunch success answers → hcgw's answers. Bodies pass through byte for byte when the
 * route returns what HelpCrunch returns; they are still checked (a customer by gw_json_check,
 * the others parsed by json-c), so that a 2xx that is not the JSON the route expects becomes
 * upstream_bad_response instead of garbage for the caller.
 */
#ifndef HCGW_REPLY_H
#define HCGW_REPLY_H

#include <stddef.h>

#include "hcgw/router.h"

/**
 * Check the 2xx body @p body (@p len bytes) of HelpCrunch for @p kind and produce the answer
 * body, under the rules of gw_body_parse (gw_json_check for a customer, which accepts the same).
 * GW_REPLY_CUSTOMER: must be a JSON object → *out = NULL (pass the body through).
 * GW_REPLY_LIST: an object with an array "data" (and "total") → pass through.
 * GW_REPLY_SEARCH: an object with an array "data" → pass through.
 * GW_REPLY_TAGS: a customer object whose "tags" is an array (or null/absent = empty) → *out
 * is a malloc'd {"tags":[…]} (caller frees), *out_len its length.
 * GW_REPLY_DELETED: anything → *out = NULL (hcgw answers 204 without a body).
 * Returns 0, GW_ERR_UPSTREAM_BAD_RESPONSE or GW_ERR_NOMEM.
 */
int gw_reply_build(enum gw_reply_kind kind, const char *body, size_t len, char **out,
                   size_t *out_len);

#endif

/*
 * Request bodies: parse with bounded depth, check the shape a route expects, and build the
 * body HelpCrunch gets. Nothing here reaches the network; every failure is a 4xx value.
 */
#ifndef HCGW_BODY_H
#define HCGW_BODY_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "hcgw/router.h"

/**
 * Parse @p len bytes of JSON text into a json-c tree. What is accepted is exactly what
 * gw_json_check (hcgw/json.h) accepts — it runs first, over the text as sent — and json-c only
 * builds the tree (tests/fuzz/fuzz_body.c checks that the two agree on every input).
 * Returns 0 and a new reference in *out (the caller puts it), or GW_ERR_INVALID_BODY.
 */
int gw_body_parse(const char *text, size_t len, json_object **out);

/**
 * Validate a request body for route @p r (which has the parameters in @p m) and build the
 * upstream body. On success returns 0 and *out / *out_len receive a malloc'd NUL-terminated
 * body (NULL/0 for GW_UPBODY_NONE); the caller frees it. On failure returns
 * GW_ERR_INVALID_BODY (bad JSON, wrong shape, empty when a body is required, 0 or more than
 * GW_MAX_TAGS tags, unknown keys in a tag object, a colour that is not #rgb/#rrggbb),
 * GW_ERR_INVALID_TAG (a tag name fails gw_text_check_tag) or GW_ERR_NOMEM.
 * Shapes: GW_BODY_TAGS: object with only "tags": array of strings or {"name":str[,"color":str]}.
 * GW_BODY_OBJECT: a JSON object. GW_BODY_SEARCH: a JSON object whose "filter", when present, is
 * an array, and whose "limit" / "offset", when present, are integers (limit 1..100, offset >= 0).
 * Upstream bodies are built with json-c, so names are JSON-escaped correctly.
 */
int gw_body_build(const struct gw_route *r, const struct gw_match *m, const char *body,
                  size_t len, char **out, size_t *out_len);

#endif

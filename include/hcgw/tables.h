/*
 * hcgw's own tables as data others can read: the route table (router.h) and the error table
 * (envelope.h) as one JSON object, for `hcgw --dump-tables`. Tests and the contract check read
 * the tables from the program this way, never by parsing the C source.
 */
#ifndef HCGW_TABLES_H
#define HCGW_TABLES_H

#include <json-c/json.h>

/**
 * A new JSON object holding both tables:
 *   {"routes":[{"name","method","pattern","up_method","up_path","body","up_body","reply",
 *               "success_status","retryable","query","local"},…],
 *    "errors":[{"err","status","code","message"},…]}
 * A route's keys are the fields of struct gw_route (its id is its place in the array); enum
 * fields are named in lower case by what follows their prefix ("tag_name" for
 * GW_UPBODY_TAG_NAME), up_method and up_path are null for a local route, and "local" is true
 * exactly when reply is "local". The errors are one per enum gw_err value, -1 down to one above
 * GW_ERR__LAST, in that order; "err" is the value, and two values may share a code
 * (internal_error). Returns NULL when out of memory; the caller owns the object and releases it
 * with json_object_put. Pure; any thread.
 */
json_object *gw_tables_dump(void);

#endif

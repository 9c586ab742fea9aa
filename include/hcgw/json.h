/*
 * A JSON validator that builds nothing: one pass over the text, no allocation, a stack bounded
 * by GW_MAX_JSON_DEPTH. It is what decides that a text is JSON: gw_body_parse runs it first
 * and has json-c build the tree only then; callers that only need to know that a body is JSON
 * and what its root is call it alone. Pure function; any thread.
 */
#ifndef HCGW_JSON_H
#define HCGW_JSON_H

#include <stddef.h>

#include <json-c/json.h>

/** The type of a JSON value, as json-c would make it (json_type_int / json_type_double). */
enum gw_json_type {
    GW_JSON_NULL,
    GW_JSON_BOOLEAN,
    GW_JSON_INT,        /* a number without fraction or exponent, of any size */
    GW_JSON_DOUBLE,     /* a number with a fraction or an exponent */
    GW_JSON_STRING,
    GW_JSON_ARRAY,
    GW_JSON_OBJECT
};

/**
 * Check that the @p len bytes at @p text are one JSON value (RFC 8259), optionally surrounded by
 * whitespace, under exactly the rules of gw_body_parse: no NUL byte anywhere, no raw control
 * character in a string, only true/false/null as words, the strict number form, complete \u
 * escapes (lone surrogates are taken, as json-c takes them), string bytes from 0x80 up taken as
 * they are (like gw_body_parse, this does not check UTF-8: callers that need it call
 * gw_text_utf8_count), no value inside more than GW_MAX_JSON_DEPTH - 1 containers (json-c's
 * count: GW_MAX_JSON_DEPTH nested empty arrays pass), no number with a fraction or an exponent
 * that overflows a double (integers of any length pass: json-c saturates them). Reads nothing
 * beyond @p len and allocates nothing. Returns 0 and, when @p root_type is not NULL, the type
 * of the root value in *root_type; or GW_ERR_INVALID_BODY (also for NULL or empty text, and
 * for more than INT_MAX - 1 bytes, which json-c cannot take).
 */
int gw_json_check(const char *text, size_t len, enum gw_json_type *root_type);

/**
 * Add @p val to the object @p obj under @p key. The value is taken either way: it belongs to
 * @p obj on success and is released on failure; a NULL @p val (a json_object_new_* that ran out
 * of memory) is a failure. Returns 0 or GW_ERR_NOMEM.
 */
int gw_json_add(json_object *obj, const char *key, json_object *val);

/** Append @p val to the array @p arr, taking it as gw_json_add does. Returns 0 or GW_ERR_NOMEM. */
int gw_json_append(json_object *arr, json_object *val);

#endif

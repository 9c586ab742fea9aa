/*
 * For the tests and fuzzers that compare gw_json_check with json-c: json-c's type of a value
 * in gw_json_check's terms (NULL, the literal null, is GW_JSON_NULL).
 */
#ifndef HCGW_TESTS_JSON_C_TYPE_H
#define HCGW_TESTS_JSON_C_TYPE_H

#include <json-c/json.h>

#include "hcgw/json.h"

static inline enum gw_json_type json_c_type(json_object *obj)
{
    switch (json_object_get_type(obj)) {
    case json_type_boolean:
        return GW_JSON_BOOLEAN;
    case json_type_int:
        return GW_JSON_INT;
    case json_type_double:
        return GW_JSON_DOUBLE;
    case json_type_string:
        return GW_JSON_STRING;
    case json_type_array:
        return GW_JSON_ARRAY;
    case json_type_object:
        return GW_JSON_OBJECT;
    case json_type_null:
    default:
        return GW_JSON_NULL;
    }
}

#endif

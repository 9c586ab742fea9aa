/*
 * HelpCrunch's success answers turned into hcgw's. Most bodies pass through byte for byte, but
 * every one is checked first (with the same bounded depth and rules as requests): a 2xx whose
 * body is not the JSON the route promises becomes upstream_bad_response here, rather than
 * something the caller cannot read. A customer, the answer of most calls, only has to be a
 * JSON object, which gw_json_check tells without building a tree; lists, searches and tags read
 * members, so they are parsed by json-c. Only the tags route builds a new body.
 */
#include "hcgw/reply.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/err.h"
#include "hcgw/json.h"

/* The member @p key of @p root when it is an array. */
static bool has_array(json_object *root, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(root, key, &v) && json_object_is_type(v, json_type_array);
}

/*
 * A list's "total": a count. The documentation shows HelpCrunch numbers sometimes as strings
 * (timestamps), so a string of digits is taken as well rather than failing every list call.
 */
static bool has_total(json_object *root)
{
    json_object *v;
    const char *s;
    size_t i;
    size_t n;

    if (!json_object_object_get_ex(root, "total", &v))
        return false;
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v) >= 0;
    if (!json_object_is_type(v, json_type_string))
        return false;
    s = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (n == 0)
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* {"tags":[…]} from a customer object, serialized into a malloc'd string. */
static int build_tags(json_object *customer, char **out, size_t *out_len)
{
    json_object *wrap = NULL;
    json_object *tags = NULL;
    const char *s;
    size_t n = 0;
    char *copy;
    int rc = GW_ERR_UPSTREAM_BAD_RESPONSE;

    /* A customer with no tags may come without the member or with null: both mean none. */
    if (!json_object_object_get_ex(customer, "tags", &tags) || tags == NULL) {
        tags = json_object_new_array();
        if (tags == NULL) {
            rc = GW_ERR_NOMEM;
            goto out;
        }
    } else if (json_object_is_type(tags, json_type_array)) {
        /* Shared with the customer object; each holds its own reference. */
        json_object_get(tags);
    } else {
        tags = NULL;
        goto out;
    }
    rc = GW_ERR_NOMEM;
    wrap = json_object_new_object();
    if (wrap == NULL)
        goto out;
    if (json_object_object_add(wrap, "tags", tags) != 0)
        goto out;
    tags = NULL;
    s = json_object_to_json_string_length(wrap,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                          &n);
    if (s == NULL)
        goto out;
    /* The string lives only as long as wrap does; the caller gets its own copy. */
    copy = malloc(n + 1);
    if (copy == NULL)
        goto out;
    memcpy(copy, s, n + 1);
    *out = copy;
    *out_len = n;
    rc = 0;
out:
    json_object_put(tags);
    json_object_put(wrap);
    return rc;
}

int gw_reply_build(enum gw_reply_kind kind, const char *body, size_t len, char **out,
                   size_t *out_len)
{
    json_object *root = NULL;
    enum gw_json_type type = GW_JSON_NULL;
    int rc = GW_ERR_INTERNAL;

    if (out == NULL || out_len == NULL)
        goto out;
    *out = NULL;
    *out_len = 0;
    /* HelpCrunch answers a delete with "Ok", which is not JSON: any 2xx body will do. */
    if (kind == GW_REPLY_DELETED) {
        rc = 0;
        goto out;
    }
    /* A local route never had an upstream answer; being asked to shape one is a bug. */
    if (kind == GW_REPLY_LOCAL)
        goto out;
    /* The hot path: the bytes pass through, so knowing they are an object is enough. */
    if (kind == GW_REPLY_CUSTOMER) {
        rc = GW_ERR_UPSTREAM_BAD_RESPONSE;
        if (gw_json_check(body, len, &type) == 0 && type == GW_JSON_OBJECT)
            rc = 0;
        goto out;
    }

    rc = gw_body_parse(body, len, &root);
    if (rc == GW_ERR_NOMEM)
        goto out;
    rc = GW_ERR_UPSTREAM_BAD_RESPONSE;
    if (root == NULL || !json_object_is_type(root, json_type_object))
        goto out;
    switch (kind) {
    case GW_REPLY_LIST:
        if (has_array(root, "data") && has_total(root))
            rc = 0;
        break;
    case GW_REPLY_SEARCH:
        if (has_array(root, "data"))
            rc = 0;
        break;
    case GW_REPLY_TAGS:
        rc = build_tags(root, out, out_len);
        break;
    case GW_REPLY_CUSTOMER:
    case GW_REPLY_LOCAL:
    case GW_REPLY_DELETED:
    default:
        rc = GW_ERR_INTERNAL;
        break;
    }
out:
    json_object_put(root);
    return rc;
}

/*
 * The merging of tag writes (coalesce.h): what one upstream call carries for several callers
 * whose tag additions (or removals) of one contact waited together (calls.c decides who waits
 * together; this file only builds the body).
 */
#include "hcgw/coalesce.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/err.h"
#include "hcgw/json.h"

/* The "tags" array of a parsed tags body, or NULL. */
static json_object *tags_of(json_object *root)
{
    json_object *tags = NULL;

    if (root == NULL || !json_object_is_type(root, json_type_object) ||
        !json_object_object_get_ex(root, "tags", &tags) ||
        !json_object_is_type(tags, json_type_array))
        return NULL;
    return tags;
}

/* The "name" of a tag object, or NULL. */
static const char *name_of(json_object *tag)
{
    json_object *v = NULL;

    if (!json_object_is_type(tag, json_type_object) ||
        !json_object_object_get_ex(tag, "name", &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

int gw_coalesce_count(const char *body, size_t len)
{
    json_object *root = NULL;
    json_object *tags;
    int n = -1;

    if (body == NULL || gw_body_parse(body, len, &root) != 0)
        goto out;
    tags = tags_of(root);
    if (tags != NULL)
        n = (int)json_object_array_length(tags);
out:
    json_object_put(root);
    return n;
}

/* True when an item after position @p i of @p all names the same tag as item @p i. */
static bool named_later(json_object *all, size_t i)
{
    const char *name = name_of(json_object_array_get_idx(all, i));
    size_t n = json_object_array_length(all);
    const char *other;

    for (size_t j = i + 1; j < n; j++) {
        other = name_of(json_object_array_get_idx(all, j));
        if (name != NULL && other != NULL && strcmp(name, other) == 0)
            return true;
    }
    return false;
}

int gw_coalesce_merge(const char *const *bodies, const size_t *lens, size_t n, char **out,
                      size_t *out_len)
{
    json_object *all = NULL;
    json_object *merged = NULL;
    json_object *up = NULL;
    json_object *root = NULL;
    json_object *tags;
    const char *s;
    size_t len = 0;
    int rc = GW_ERR_NOMEM;

    *out = NULL;
    *out_len = 0;
    all = json_object_new_array();
    merged = json_object_new_array();
    if (all == NULL || merged == NULL)
        goto out;
    for (size_t b = 0; b < n; b++) {
        rc = GW_ERR_INVALID_BODY;
        if (bodies[b] == NULL || gw_body_parse(bodies[b], lens[b], &root) != 0)
            goto out;
        tags = tags_of(root);
        if (tags == NULL)
            goto out;
        for (size_t i = 0; i < json_object_array_length(tags); i++) {
            rc = gw_json_append(all, json_object_get(json_object_array_get_idx(tags, i)));
            if (rc != 0)
                goto out;
        }
        json_object_put(root);
        root = NULL;
    }
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        if (named_later(all, i))
            continue;
        rc = gw_json_append(merged, json_object_get(json_object_array_get_idx(all, i)));
        if (rc != 0)
            goto out;
    }
    rc = GW_ERR_NOMEM;
    up = json_object_new_object();
    if (up == NULL)
        goto out;
    rc = gw_json_add(up, "tags", merged);
    merged = NULL;
    if (rc != 0)
        goto out;
    rc = GW_ERR_NOMEM;
    s = json_object_to_json_string_length(up, JSON_C_TO_STRING_PLAIN |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (s == NULL)
        goto out;
    *out = malloc(len + 1);
    if (*out == NULL)
        goto out;
    memcpy(*out, s, len + 1);
    *out_len = len;
    rc = 0;
out:
    json_object_put(root);
    json_object_put(up);
    json_object_put(merged);
    json_object_put(all);
    return rc;
}

/*
 * Request bodies, before anything reaches HelpCrunch: parse the caller's JSON with bounded
 * depth, check that it has the shape its route expects, and build the body hcgw sends
 * upstream. Upstream bodies are built as json-c objects and serialized by json-c, never
 * pasted together from strings, so a tag name with a quote or a backslash in it stays one
 * JSON string. Every failure here is a 4xx value (or out of memory); nothing is sent.
 */
#include "hcgw/body.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/err.h"
#include "hcgw/json.h"
#include "hcgw/limits.h"
#include "hcgw/text.h"

/* A search asks HelpCrunch for 1 to this many customers at once (its own page limit). */
#define SEARCH_MAX_LIMIT 100

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * What is JSON is gw_json_check's to say (src/json.c: RFC 8259, no NUL, no raw control
 * characters, only true/false/null, the strict number form, the depth bound, numbers that fit
 * a double) — over the text as sent, so that a value a duplicate key later replaces in json-c's
 * tree (`{"a":1e999,"a":0}`) is judged too: an AS_IS body is forwarded byte for byte. json-c
 * then only builds the tree.
 */
int gw_body_parse(const char *text, size_t len, json_object **out)
{
    struct json_tokener *tok = NULL;
    json_object *obj = NULL;
    size_t end;
    int rc = GW_ERR_INVALID_BODY;

    if (out == NULL) {
        rc = GW_ERR_INTERNAL;
        goto out;
    }
    *out = NULL;
    if (text == NULL || len == 0 || len > (size_t)INT_MAX - 1)
        goto out;
    if (gw_json_check(text, len, NULL) != 0)
        goto out;
    tok = json_tokener_new_ex(GW_MAX_JSON_DEPTH);
    if (tok == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    /* Not JSON_TOKENER_STRICT: gw_json_check is stricter, and json-c 0.18's strict mode
     * refuses every byte past 0x7f in a string (json-c issues 875, 892), all of UTF-8. */
    obj = json_tokener_parse_ex(tok, text, (int)len);
    end = json_tokener_get_parse_end(tok);
    if (json_tokener_get_error(tok) == json_tokener_continue) {
        /*
         * A top-level number or literal ("42", "true") could still go on when the input ends
         * without a delimiter, so the tokener waits for more. The NUL it takes for the end of
         * the input says there is no more; gw_json_check made sure the text itself had none.
         */
        obj = json_tokener_parse_ex(tok, "", 1);
    }
    /* Success with a NULL object is the JSON literal null, which is a whole value too. */
    if (json_tokener_get_error(tok) != json_tokener_success)
        goto out;
    while (end < len && is_json_ws(text[end]))
        end++;
    if (end != len)
        goto out;
    *out = obj;
    obj = NULL;
    rc = 0;
out:
    json_object_put(obj);
    if (tok != NULL)
        json_tokener_free(tok);
    return rc;
}

/* A new {"name":…} object, with "color" when @p color is not NULL. */
static int new_tag(const char *name, size_t name_len, const char *color, json_object **out)
{
    json_object *tag = json_object_new_object();
    int rc = GW_ERR_NOMEM;

    if (tag == NULL)
        goto out;
    rc = gw_json_add(tag, "name", json_object_new_string_len(name, (int)name_len));
    if (rc != 0)
        goto out;
    if (color != NULL) {
        rc = gw_json_add(tag, "color", json_object_new_string(color));
        if (rc != 0)
            goto out;
    }
    *out = tag;
    tag = NULL;
out:
    json_object_put(tag);
    return rc;
}

/* A JSON string with no NUL inside, so that its C string is all of it. */
static bool is_plain_string(json_object *v)
{
    const char *s;

    if (!json_object_is_type(v, json_type_string))
        return false;
    s = json_object_get_string(v);
    return strlen(s) == (size_t)json_object_get_string_len(v);
}

/*
 * Check one item of a tags body (a name, or {"name":…[,"color":…]}) and append its normalized
 * object to @p tags; the colour is kept only when @p keep_color.
 */
static int take_tag(json_object *item, bool keep_color, json_object *tags)
{
    json_object *name = item;
    json_object *color = NULL;
    json_object *tag = NULL;
    int rc = GW_ERR_INVALID_BODY;

    if (json_object_is_type(item, json_type_object)) {
        json_object_object_foreach(item, key, val) {
            (void)val;
            if (strcmp(key, "name") != 0 && strcmp(key, "color") != 0)
                goto out;
        }
        if (!json_object_object_get_ex(item, "name", &name))
            goto out;
        if (json_object_object_get_ex(item, "color", &color)) {
            if (!is_plain_string(color) || !gw_text_is_color(json_object_get_string(color)))
                goto out;
        }
    }
    if (!json_object_is_type(name, json_type_string))
        goto out;
    /* The length comes from json-c: "\u0000" is a legal JSON string and must be seen. */
    rc = gw_text_check_tag(json_object_get_string(name),
                           (size_t)json_object_get_string_len(name));
    if (rc != 0)
        goto out;
    rc = new_tag(json_object_get_string(name), (size_t)json_object_get_string_len(name),
                 keep_color && color != NULL ? json_object_get_string(color) : NULL, &tag);
    if (rc != 0)
        goto out;
    rc = gw_json_append(tags, tag);
out:
    return rc;
}

/* Check a tags body and build the normalized array of tag objects in *out. */
static int take_tags(json_object *root, bool keep_color, json_object **out)
{
    json_object *list = NULL;
    json_object *tags = NULL;
    size_t n;
    size_t i;
    int rc = GW_ERR_INVALID_BODY;

    if (!json_object_is_type(root, json_type_object) || json_object_object_length(root) != 1)
        goto out;
    if (!json_object_object_get_ex(root, "tags", &list))
        goto out;
    if (!json_object_is_type(list, json_type_array))
        goto out;
    n = json_object_array_length(list);
    if (n < 1 || n > GW_MAX_TAGS)
        goto out;
    tags = json_object_new_array_ext((int)n);
    if (tags == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        rc = take_tag(json_object_array_get_idx(list, i), keep_color, tags);
        if (rc != 0)
            goto out;
    }
    *out = tags;
    tags = NULL;
    rc = 0;
out:
    json_object_put(tags);
    return rc;
}

/* An integer member that, when present, lies in @p min..@p max. */
static bool int_in_range(json_object *root, const char *key, int64_t min, int64_t max)
{
    json_object *v;
    int64_t n;

    if (!json_object_object_get_ex(root, key, &v))
        return true;
    if (!json_object_is_type(v, json_type_int))
        return false;
    /* json-c saturates values beyond int64 to INT64_MAX, which is out of any range here. */
    n = json_object_get_int64(v);
    return n >= min && n <= max;
}

/*
 * A HelpCrunch search: catch locally what HelpCrunch would refuse with a 400 anyway, so that
 * the mistake costs the caller no upstream quota. Other members pass through unchecked.
 */
static int check_search(json_object *root)
{
    json_object *v;
    size_t i;
    size_t n;

    if (!json_object_is_type(root, json_type_object))
        return GW_ERR_INVALID_BODY;
    if (json_object_object_get_ex(root, "filter", &v)) {
        if (!json_object_is_type(v, json_type_array))
            return GW_ERR_INVALID_BODY;
        n = json_object_array_length(v);
        for (i = 0; i < n; i++) {
            if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_object))
                return GW_ERR_INVALID_BODY;
        }
    }
    if (!int_in_range(root, "limit", 1, SEARCH_MAX_LIMIT))
        return GW_ERR_INVALID_BODY;
    if (!int_in_range(root, "offset", 0, INT64_MAX))
        return GW_ERR_INVALID_BODY;
    if (json_object_object_get_ex(root, "comparison", &v)) {
        const char *s;

        if (!is_plain_string(v))
            return GW_ERR_INVALID_BODY;
        s = json_object_get_string(v);
        if (strcmp(s, "AND") != 0 && strcmp(s, "OR") != 0)
            return GW_ERR_INVALID_BODY;
    }
    return 0;
}

/* Serialize @p obj into a malloc'd copy, which outlives the object. */
static int serialize(json_object *obj, char **out, size_t *out_len)
{
    const char *s;
    size_t n = 0;
    char *copy;

    s = json_object_to_json_string_length(obj,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                          &n);
    if (s == NULL)
        return GW_ERR_NOMEM;
    copy = malloc(n + 1);
    if (copy == NULL)
        return GW_ERR_NOMEM;
    memcpy(copy, s, n + 1);
    *out = copy;
    *out_len = n;
    return 0;
}

int gw_body_build(const struct gw_route *r, const struct gw_match *m, const char *body,
                  size_t len, char **out, size_t *out_len)
{
    json_object *root = NULL;
    json_object *tags = NULL;
    json_object *up = NULL;
    json_object *tag = NULL;
    char *copy;
    int rc = GW_ERR_INTERNAL;

    if (out == NULL || out_len == NULL)
        goto out;
    *out = NULL;
    *out_len = 0;
    if (r == NULL)
        goto out;

    /* Validate: a route that takes a body gets all of it checked before anything is built. */
    if (r->body != GW_BODY_NONE) {
        rc = GW_ERR_INVALID_BODY;
        if (body == NULL || len == 0)
            goto out;
        /* JSON text is UTF-8 (RFC 8259, 8.1); json-c checks little of it, and AS_IS forwards. */
        if (gw_text_utf8_count(body, len) < 0)
            goto out;
        rc = gw_body_parse(body, len, &root);
        if (rc != 0)
            goto out;
        switch (r->body) {
        case GW_BODY_TAGS:
            rc = take_tags(root, r->up_body == GW_UPBODY_TAGS, &tags);
            break;
        case GW_BODY_OBJECT:
            rc = json_object_is_type(root, json_type_object) ? 0 : GW_ERR_INVALID_BODY;
            break;
        case GW_BODY_SEARCH:
            rc = check_search(root);
            break;
        case GW_BODY_NONE:
        default:
            rc = GW_ERR_INTERNAL;
            break;
        }
        if (rc != 0)
            goto out;
    }

    /* Build. A route whose upstream body needs what its request did not give is a table bug. */
    rc = GW_ERR_INTERNAL;
    switch (r->up_body) {
    case GW_UPBODY_NONE:
        rc = 0;
        goto out;
    case GW_UPBODY_TAG_NAME:
        if (m == NULL || m->name_len == 0 || m->name_len >= sizeof m->name)
            goto out;
        rc = GW_ERR_NOMEM;
        tags = json_object_new_array();
        if (tags == NULL)
            goto out;
        rc = new_tag(m->name, m->name_len, NULL, &tag);
        if (rc != 0)
            goto out;
        rc = gw_json_append(tags, tag);
        if (rc != 0)
            goto out;
        break;
    case GW_UPBODY_TAGS:
    case GW_UPBODY_TAGS_NAMES:
        if (tags == NULL)
            goto out;
        break;
    case GW_UPBODY_AS_IS:
        if (r->body == GW_BODY_NONE)
            goto out;
        /* Validated above; forwarded byte for byte so HelpCrunch sees exactly what was sent. */
        rc = GW_ERR_NOMEM;
        copy = malloc(len + 1);
        if (copy == NULL)
            goto out;
        memcpy(copy, body, len);
        copy[len] = '\0';
        *out = copy;
        *out_len = len;
        rc = 0;
        goto out;
    case GW_UPBODY_BLOCK:
    case GW_UPBODY_UNBLOCK:
        rc = GW_ERR_NOMEM;
        up = json_object_new_object();
        if (up == NULL)
            goto out;
        rc = gw_json_add(up, "blocked", json_object_new_boolean(r->up_body == GW_UPBODY_BLOCK));
        if (rc != 0)
            goto out;
        break;
    default:
        goto out;
    }

    if (up == NULL) {
        rc = GW_ERR_NOMEM;
        up = json_object_new_object();
        if (up == NULL)
            goto out;
        rc = gw_json_add(up, "tags", tags);
        tags = NULL;
        if (rc != 0)
            goto out;
    }
    rc = serialize(up, out, out_len);
out:
    json_object_put(up);
    json_object_put(tags);
    json_object_put(root);
    return rc;
}

/*
 * The route and error tables as JSON, built with json-c from the tables themselves
 * (gw_router_table, gw_err_info), so that what `hcgw --dump-tables` prints is what the binary
 * does. The enum names are switches without a default: an enum value added without a name here
 * stops the build (-Wswitch).
 */
#include "hcgw/tables.h"

#include <stdbool.h>
#include <stddef.h>

#include "hcgw/envelope.h"
#include "hcgw/err.h"
#include "hcgw/router.h"

static const char *body_name(enum gw_body_kind b)
{
    switch (b) {
    case GW_BODY_NONE:
        return "none";
    case GW_BODY_TAGS:
        return "tags";
    case GW_BODY_OBJECT:
        return "object";
    case GW_BODY_SEARCH:
        return "search";
    }
    return "unknown";
}

static const char *up_body_name(enum gw_upbody b)
{
    switch (b) {
    case GW_UPBODY_NONE:
        return "none";
    case GW_UPBODY_TAG_NAME:
        return "tag_name";
    case GW_UPBODY_TAGS:
        return "tags";
    case GW_UPBODY_TAGS_NAMES:
        return "tags_names";
    case GW_UPBODY_AS_IS:
        return "as_is";
    case GW_UPBODY_BLOCK:
        return "block";
    case GW_UPBODY_UNBLOCK:
        return "unblock";
    }
    return "unknown";
}

static const char *reply_name(enum gw_reply_kind r)
{
    switch (r) {
    case GW_REPLY_LOCAL:
        return "local";
    case GW_REPLY_CUSTOMER:
        return "customer";
    case GW_REPLY_TAGS:
        return "tags";
    case GW_REPLY_LIST:
        return "list";
    case GW_REPLY_SEARCH:
        return "search";
    case GW_REPLY_DELETED:
        return "deleted";
    }
    return "unknown";
}

/* Add @p val (NULL: an allocation failed) under @p key; @p val is no longer the caller's. */
static bool add(json_object *obj, const char *key, json_object *val)
{
    if (val == NULL)
        return false;
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return false;
    }
    return true;
}

/* Add @p s under @p key as a string, or as JSON null when @p s is NULL. */
static bool add_string_or_null(json_object *obj, const char *key, const char *s)
{
    if (s == NULL)
        return json_object_object_add(obj, key, NULL) == 0;
    return add(obj, key, json_object_new_string(s));
}

static json_object *route_json(const struct gw_route *r)
{
    json_object *o = json_object_new_object();
    bool ok = o != NULL;

    ok = ok && add(o, "name", json_object_new_string(r->name));
    ok = ok && add(o, "method", json_object_new_string(r->method));
    ok = ok && add(o, "pattern", json_object_new_string(r->pattern));
    ok = ok && add_string_or_null(o, "up_method", r->up_method);
    ok = ok && add_string_or_null(o, "up_path", r->up_path);
    ok = ok && add(o, "body", json_object_new_string(body_name(r->body)));
    ok = ok && add(o, "up_body", json_object_new_string(up_body_name(r->up_body)));
    ok = ok && add(o, "reply", json_object_new_string(reply_name(r->reply)));
    ok = ok && add(o, "success_status", json_object_new_int(r->success_status));
    ok = ok && add(o, "retryable", json_object_new_boolean(r->retryable));
    ok = ok && add(o, "query", json_object_new_boolean(r->query));
    ok = ok && add(o, "local", json_object_new_boolean(r->reply == GW_REPLY_LOCAL));
    if (!ok) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

/* The headers an error's answer carries besides the common ones, by name. */
static json_object *headers_json(unsigned headers)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {GW_HDR_RETRY_AFTER, "Retry-After"},
        {GW_HDR_ALLOW, "Allow"},
        {GW_HDR_WWW_AUTHENTICATE, "WWW-Authenticate"},
        {GW_HDR_CLOSE, "Connection"},
    };
    json_object *arr = json_object_new_array();
    size_t i;

    for (i = 0; arr != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if ((headers & names[i].bit) == 0)
            continue;
        if (json_object_array_add(arr, json_object_new_string(names[i].name)) != 0) {
            json_object_put(arr);
            arr = NULL;
        }
    }
    return arr;
}

static json_object *error_json(enum gw_err err)
{
    const struct gw_err_info *info = gw_err_info(err);
    json_object *o = json_object_new_object();
    bool ok = o != NULL;

    ok = ok && add(o, "err", json_object_new_int((int)err));
    ok = ok && add(o, "status", json_object_new_int(info->status));
    ok = ok && add(o, "code", json_object_new_string(info->code));
    ok = ok && add(o, "message", json_object_new_string(info->message));
    ok = ok && add(o, "headers", headers_json(info->headers));
    if (!ok) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

/* Append @p val to @p arr; @p val is no longer the caller's either way. Returns success. */
static bool append(json_object *arr, json_object *val)
{
    if (val == NULL)
        return false;
    if (json_object_array_add(arr, val) != 0) {
        json_object_put(val);
        return false;
    }
    return true;
}

json_object *gw_tables_dump(void)
{
    json_object *root = json_object_new_object();
    json_object *routes = json_object_new_array();
    json_object *errors = json_object_new_array();
    size_t n = 0;
    const struct gw_route *table = gw_router_table(&n);
    bool ok = root != NULL && routes != NULL && errors != NULL;

    for (size_t i = 0; ok && i < n; i++)
        ok = append(routes, route_json(&table[i]));
    for (int e = -1; ok && e > GW_ERR__LAST; e--)
        ok = append(errors, error_json((enum gw_err)e));
    if (ok) {
        ok = add(root, "routes", routes);
        routes = NULL; /* add took it, or put it */
    }
    if (ok) {
        ok = add(root, "errors", errors);
        errors = NULL;
    }
    if (!ok) {
        json_object_put(root);
        root = NULL;
    }
    json_object_put(routes);
    json_object_put(errors);
    return root;
}

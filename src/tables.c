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
#include "hcgw/json.h"
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

/* Add @p s under @p key as a string, or as JSON null when @p s is NULL. */
static bool add_string_or_null(json_object *obj, const char *key, const char *s)
{
    if (s == NULL)
        return json_object_object_add(obj, key, NULL) == 0;
    return gw_json_add(obj, key, json_object_new_string(s)) == 0;
}

static json_object *route_json(const struct gw_route *r)
{
    json_object *o = json_object_new_object();
    bool ok = o != NULL;

    ok = ok && gw_json_add(o, "name", json_object_new_string(r->name)) == 0;
    ok = ok && gw_json_add(o, "method", json_object_new_string(r->method)) == 0;
    ok = ok && gw_json_add(o, "pattern", json_object_new_string(r->pattern)) == 0;
    ok = ok && add_string_or_null(o, "up_method", r->up_method);
    ok = ok && add_string_or_null(o, "up_path", r->up_path);
    ok = ok && gw_json_add(o, "body", json_object_new_string(body_name(r->body))) == 0;
    ok = ok && gw_json_add(o, "up_body", json_object_new_string(up_body_name(r->up_body))) == 0;
    ok = ok && gw_json_add(o, "reply", json_object_new_string(reply_name(r->reply))) == 0;
    ok = ok && gw_json_add(o, "success_status", json_object_new_int(r->success_status)) == 0;
    ok = ok && gw_json_add(o, "retryable", json_object_new_boolean(r->retryable)) == 0;
    ok = ok && gw_json_add(o, "query", json_object_new_boolean(r->query)) == 0;
    ok = ok && gw_json_add(o, "local", json_object_new_boolean(r->reply == GW_REPLY_LOCAL)) == 0;
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
        if (gw_json_append(arr, json_object_new_string(names[i].name)) != 0) {
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

    ok = ok && gw_json_add(o, "err", json_object_new_int((int)err)) == 0;
    ok = ok && gw_json_add(o, "status", json_object_new_int(info->status)) == 0;
    ok = ok && gw_json_add(o, "code", json_object_new_string(info->code)) == 0;
    ok = ok && gw_json_add(o, "message", json_object_new_string(info->message)) == 0;
    ok = ok && gw_json_add(o, "headers", headers_json(info->headers)) == 0;
    if (!ok) {
        json_object_put(o);
        o = NULL;
    }
    return o;
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
        ok = gw_json_append(routes, route_json(&table[i])) == 0;
    for (int e = -1; ok && e > GW_ERR__LAST; e--)
        ok = gw_json_append(errors, error_json((enum gw_err)e)) == 0;
    if (ok) {
        ok = gw_json_add(root, "routes", routes) == 0;
        routes = NULL; /* add took it, or put it */
    }
    if (ok) {
        ok = gw_json_add(root, "errors", errors) == 0;
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

/*
 * Unit tests of src/tables.c: the JSON of `hcgw --dump-tables` against the tables themselves.
 * Every route appears once, at its id, with every field of its row; the enum fields carry the
 * names written out here; every error value appears once with its row, and a code two values
 * share means the same status and message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/envelope.h"
#include "hcgw/err.h"
#include "hcgw/router.h"
#include "hcgw/tables.h"

/* The names the dump gives each route's enum fields, written out independently. */
static const struct {
    enum gw_route_id id;
    const char *body;
    const char *up_body;
    const char *reply;
} kinds[] = {
    {.id = GW_ROUTE_TAG_DELETE, .body = "none", .up_body = "tag_name", .reply = "customer"},
    {.id = GW_ROUTE_TAG_PUT, .body = "none", .up_body = "tag_name", .reply = "customer"},
    {.id = GW_ROUTE_TAGS_ADD, .body = "tags", .up_body = "tags", .reply = "customer"},
    {.id = GW_ROUTE_TAGS_REMOVE, .body = "tags", .up_body = "tags_names", .reply = "customer"},
    {.id = GW_ROUTE_TAGS_GET, .body = "none", .up_body = "none", .reply = "tags"},
    {.id = GW_ROUTE_CONTACT_GET, .body = "none", .up_body = "none", .reply = "customer"},
    {.id = GW_ROUTE_CONTACT_PATCH, .body = "object", .up_body = "as_is", .reply = "customer"},
    {.id = GW_ROUTE_BLOCK, .body = "none", .up_body = "block", .reply = "customer"},
    {.id = GW_ROUTE_UNBLOCK, .body = "none", .up_body = "unblock", .reply = "customer"},
    {.id = GW_ROUTE_CONTACT_DELETE, .body = "none", .up_body = "none", .reply = "deleted"},
    {.id = GW_ROUTE_CONTACTS_LIST, .body = "none", .up_body = "none", .reply = "list"},
    {.id = GW_ROUTE_CONTACTS_SEARCH, .body = "search", .up_body = "as_is", .reply = "search"},
    {.id = GW_ROUTE_CONTACT_CREATE, .body = "object", .up_body = "as_is", .reply = "customer"},
    {.id = GW_ROUTE_HEALTHZ, .body = "none", .up_body = "none", .reply = "local"},
    {.id = GW_ROUTE_READYZ, .body = "none", .up_body = "none", .reply = "local"},
    {.id = GW_ROUTE_METRICS, .body = "none", .up_body = "none", .reply = "local"},
    {.id = GW_ROUTE_OPENAPI, .body = "none", .up_body = "none", .reply = "local"},
};

/* Member @p key of @p obj, which must be there (its value may be JSON null, i.e. NULL). */
static json_object *member(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v))
        fail_msg("no member %s in %s", key, json_object_to_json_string(obj));
    return v;
}

static const char *string_member(json_object *obj, const char *key)
{
    json_object *v = member(obj, key);

    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

static int int_member(json_object *obj, const char *key)
{
    json_object *v = member(obj, key);

    assert_true(json_object_is_type(v, json_type_int));
    return json_object_get_int(v);
}

static bool bool_member(json_object *obj, const char *key)
{
    json_object *v = member(obj, key);

    assert_true(json_object_is_type(v, json_type_boolean));
    return json_object_get_boolean(v);
}

/* A string member, or NULL when the member is JSON null. */
static const char *nullable_member(json_object *obj, const char *key)
{
    json_object *v = member(obj, key);

    if (v == NULL)
        return NULL;
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

static void test_routes(void **state)
{
    json_object *tables = gw_tables_dump();
    json_object *routes;

    (void)state;
    assert_non_null(tables);
    assert_int_equal(json_object_object_length(tables), 2);
    routes = member(tables, "routes");
    assert_true(json_object_is_type(routes, json_type_array));
    assert_int_equal(json_object_array_length(routes), GW_ROUTE__COUNT);
    assert_int_equal(sizeof kinds / sizeof kinds[0], GW_ROUTE__COUNT);
    for (size_t i = 0; i < GW_ROUTE__COUNT; i++) {
        const struct gw_route *r = gw_router_get((enum gw_route_id)i);
        json_object *o = json_object_array_get_idx(routes, i);
        const char *up_method = nullable_member(o, "up_method");
        const char *up_path = nullable_member(o, "up_path");
        bool local = bool_member(o, "local");

        assert_int_equal(json_object_object_length(o), 12);
        assert_string_equal(string_member(o, "name"), r->name);
        assert_string_equal(string_member(o, "method"), r->method);
        assert_string_equal(string_member(o, "pattern"), r->pattern);
        assert_int_equal(int_member(o, "success_status"), r->success_status);
        assert_int_equal(bool_member(o, "retryable"), r->retryable);
        assert_int_equal(bool_member(o, "query"), r->query);
        assert_int_equal(local, r->reply == GW_REPLY_LOCAL);
        if (local) {
            assert_null(up_method);
            assert_null(up_path);
        } else {
            assert_non_null(up_method);
            assert_non_null(up_path);
            assert_string_equal(up_method, r->up_method);
            assert_string_equal(up_path, r->up_path);
        }
        assert_int_equal(kinds[i].id, i);
        assert_string_equal(string_member(o, "body"), kinds[i].body);
        assert_string_equal(string_member(o, "up_body"), kinds[i].up_body);
        assert_string_equal(string_member(o, "reply"), kinds[i].reply);
        /* Each route once: no other entry has its name, or its method and pattern. */
        for (size_t j = i + 1; j < GW_ROUTE__COUNT; j++) {
            json_object *p = json_object_array_get_idx(routes, j);

            assert_string_not_equal(string_member(p, "name"), r->name);
            if (strcmp(string_member(p, "pattern"), r->pattern) == 0)
                assert_string_not_equal(string_member(p, "method"), r->method);
        }
    }
    json_object_put(tables);
}

static void test_errors(void **state)
{
    json_object *tables = gw_tables_dump();
    json_object *errors;
    size_t n = (size_t)-GW_ERR__LAST - 1;

    (void)state;
    assert_non_null(tables);
    errors = member(tables, "errors");
    assert_true(json_object_is_type(errors, json_type_array));
    assert_int_equal(json_object_array_length(errors), n);
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(errors, i);
        int err = int_member(o, "err");
        const struct gw_err_info *info = gw_err_info((enum gw_err)err);
        const char *code = string_member(o, "code");
        json_object *headers;

        /* Every value from -1 down, each once, in order. */
        assert_int_equal(json_object_object_length(o), 5);
        assert_int_equal(err, -(int)(i + 1));
        assert_int_equal(int_member(o, "status"), info->status);
        assert_string_equal(code, info->code);
        assert_string_equal(string_member(o, "message"), info->message);
        /*
         * Codes are unique but for two failures the caller cannot tell apart, which must say
         * the same: internal_error (GW_ERR_INTERNAL and GW_ERR_NOMEM, with one status), and
         * upstream_auth_failed (a call's 502, /readyz's 503).
         */
        for (size_t j = i + 1; j < n; j++) {
            json_object *p = json_object_array_get_idx(errors, j);

            if (strcmp(string_member(p, "code"), code) != 0)
                continue;
            if (strcmp(code, "internal_error") == 0)
                assert_int_equal(int_member(p, "status"), info->status);
            else
                assert_string_equal(code, "upstream_auth_failed");
            assert_string_equal(string_member(p, "message"), info->message);
        }
        /* Each header the row asks for, named. */
        headers = member(o, "headers");
        assert_true(json_object_is_type(headers, json_type_array));
        assert_int_equal(json_object_array_length(headers),
                         (size_t)__builtin_popcount(info->headers));
    }
    json_object_put(tables);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests of src/body.c: the bounded, whole-input JSON parse, the shape rules of each body
 * kind, and the upstream bodies. Upstream bodies are compared byte for byte where their form is
 * fixed, and parsed back where the point is that names survive JSON escaping unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/router.h"

struct parse_case {
    const char *text;
    size_t len;
    int want;
};

#define P(s, w) { s, sizeof s - 1, w }

static void test_parse(void **state)
{
    static const struct parse_case cases[] = {
        P("{}", 0),
        P("[]", 0),
        P("{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}", 0),
        P(" \t\r\n{} \t\r\n", 0),
        P("1", 0),                      /* a number that ends the input is complete */
        P("-12.5e3", 0),
        P("true", 0),
        P("null", 0),
        P("\"s\"", 0),
        P("\"\\u0000\"", 0),            /* an escaped NUL is a legal string */
        P("\"\\ud83d\\ude00\"", 0),
        P("", GW_ERR_INVALID_BODY),
        P(" ", GW_ERR_INVALID_BODY),
        P("{", GW_ERR_INVALID_BODY),
        P("[1,2", GW_ERR_INVALID_BODY),
        P("\"abc", GW_ERR_INVALID_BODY),
        P("{} x", GW_ERR_INVALID_BODY),  /* trailing garbage */
        P("{}{}", GW_ERR_INVALID_BODY),
        P("[1] [2]", GW_ERR_INVALID_BODY),
        P("1 2", GW_ERR_INVALID_BODY),
        P("{},", GW_ERR_INVALID_BODY),
        P("[1,]", GW_ERR_INVALID_BODY),
        P("{\"a\":1,}", GW_ERR_INVALID_BODY),
        P("{'a':1}", GW_ERR_INVALID_BODY),
        P("{a:1}", GW_ERR_INVALID_BODY),
        P("{\"a\":[\"b\"]}", 0),
        P("[0,-0,1.5,-0.25e-3,1E+5,1e5,10,123456789]", 0),
        P("{\"t\":true,\"f\":false,\"n\":null}", 0),
        P("01", GW_ERR_INVALID_BODY),
        /* json-c's strict mode takes these; JSON does not. */
        P("{'a':1}", GW_ERR_INVALID_BODY),
        P("[-01]", GW_ERR_INVALID_BODY),
        P("[1.]", GW_ERR_INVALID_BODY),
        P("[1.e5]", GW_ERR_INVALID_BODY),
        P("[1e]", GW_ERR_INVALID_BODY),
        P("[-]", GW_ERR_INVALID_BODY),
        P("[.5]", GW_ERR_INVALID_BODY),
        P("[+1]", GW_ERR_INVALID_BODY),
        P("[1x]", GW_ERR_INVALID_BODY),
        P("[nul]", GW_ERR_INVALID_BODY),
        P("[truex]", GW_ERR_INVALID_BODY),
        P("[True]", GW_ERR_INVALID_BODY),
        P("[nan]", GW_ERR_INVALID_BODY),
        P("NaN", GW_ERR_INVALID_BODY),
        P("[NaN]", GW_ERR_INVALID_BODY),
        P("-Infinity", GW_ERR_INVALID_BODY),
        P("{\"a\":Infinity}", GW_ERR_INVALID_BODY),
        P("1e999", GW_ERR_INVALID_BODY),
        P("tru", GW_ERR_INVALID_BODY),
        P("TRUE", GW_ERR_INVALID_BODY),
        P("\"a\tb\"", GW_ERR_INVALID_BODY),    /* raw control character in a string */
        P("\"a\nb\"", GW_ERR_INVALID_BODY),
        P("{}\0", GW_ERR_INVALID_BODY),        /* NUL bytes anywhere */
        P("\0{}", GW_ERR_INVALID_BODY),
        P("{\"a\":\"b\0c\"}", GW_ERR_INVALID_BODY),
        P("[1\0]", GW_ERR_INVALID_BODY),
        P("<html>Bad Gateway</html>", GW_ERR_INVALID_BODY),
        P("Ok", GW_ERR_INVALID_BODY),
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_object *obj = (json_object *)&obj;
        int rc = gw_body_parse(cases[i].text, cases[i].len, &obj);

        if (rc != cases[i].want)
            fail_msg("parse case %zu: rc %d, want %d", i, rc, cases[i].want);
        if (rc != 0 && obj != NULL)
            fail_msg("parse case %zu: an object on failure", i);
        json_object_put(obj);
    }
}

static void test_parse_values(void **state)
{
    json_object *obj = NULL;

    (void)state;
    assert_int_equal(gw_body_parse("{\"a\":[1,\"x\"]} ", 14, &obj), 0);
    assert_true(json_object_is_type(obj, json_type_object));
    assert_string_equal(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN),
                        "{\"a\":[1,\"x\"]}");
    json_object_put(obj);

    /* Only @p len bytes are read: what follows them is not part of the input. */
    assert_int_equal(gw_body_parse("42}", 2, &obj), 0);
    assert_int_equal(json_object_get_int(obj), 42);
    json_object_put(obj);
    assert_int_equal(gw_body_parse("[1]xyz", 3, &obj), 0);
    json_object_put(obj);

    /* The literal null is a whole value; json-c represents it as NULL. */
    obj = (json_object *)&obj;
    assert_int_equal(gw_body_parse("null", 4, &obj), 0);
    assert_null(obj);

    assert_int_equal(gw_body_parse(NULL, 0, &obj), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_body_parse(NULL, 5, &obj), GW_ERR_INVALID_BODY);
    assert_int_equal(gw_body_parse("{}", 2, NULL), GW_ERR_INTERNAL);
}

/* @p n nested arrays, each holding the next, in a malloc'd string. */
static char *nested(size_t n)
{
    char *s = malloc(2 * n + 1);
    size_t i;

    assert_non_null(s);
    for (i = 0; i < n; i++) {
        s[i] = '[';
        s[n + i] = ']';
    }
    s[2 * n] = '\0';
    return s;
}

static void test_parse_depth(void **state)
{
    char *s;
    json_object *obj = NULL;
    struct gw_match m;
    char *out = NULL;
    size_t out_len = 0;
    char buf[256];

    (void)state;
    s = nested(GW_MAX_JSON_DEPTH);
    assert_int_equal(gw_body_parse(s, strlen(s), &obj), 0);
    json_object_put(obj);
    free(s);
    s = nested(GW_MAX_JSON_DEPTH + 1);
    assert_int_equal(gw_body_parse(s, strlen(s), &obj), GW_ERR_INVALID_BODY);
    assert_null(obj);
    free(s);
    s = nested(10000);
    assert_int_equal(gw_body_parse(s, strlen(s), &obj), GW_ERR_INVALID_BODY);
    free(s);

    /* The same bound through a route: an object holding 31 arrays is 32 levels deep. */
    memset(&m, 0, sizeof m);
    s = nested(GW_MAX_JSON_DEPTH - 1);
    snprintf(buf, sizeof buf, "{\"a\":%s}", s);
    free(s);
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_CONTACT_PATCH), &m, buf, strlen(buf),
                                   &out, &out_len), 0);
    assert_string_equal(out, buf);
    free(out);
    s = nested(GW_MAX_JSON_DEPTH);
    snprintf(buf, sizeof buf, "{\"a\":%s}", s);
    free(s);
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_CONTACT_PATCH), &m, buf, strlen(buf),
                                   &out, &out_len), GW_ERR_INVALID_BODY);
    assert_null(out);
}

struct build_case {
    enum gw_route_id route;
    const char *body;
    size_t len;
    int want;
    const char *up;     /* the exact upstream body on success; NULL for none */
};

#define B(r, s, w, u) { r, s, sizeof s - 1, w, u }

static void run_build_cases(const struct build_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const struct build_case *c = &cases[i];
        struct gw_match m;
        char *out = (char *)&m;
        size_t out_len = 777;
        int rc;

        memset(&m, 0, sizeof m);
        m.route = gw_router_get(c->route);
        rc = gw_body_build(m.route, &m, c->body, c->len, &out, &out_len);
        if (rc != c->want)
            fail_msg("build case %zu (%s): rc %d, want %d", i, c->body, rc, c->want);
        if (rc != 0 || c->up == NULL) {
            if (out != NULL || out_len != 0)
                fail_msg("build case %zu (%s): a body where none belongs", i, c->body);
            continue;
        }
        if (out == NULL || strcmp(out, c->up) != 0 || out_len != strlen(c->up))
            fail_msg("build case %zu (%s): got %s, want %s", i, c->body,
                     out != NULL ? out : "(null)", c->up);
        free(out);
    }
}

static void test_build_tags_shapes(void **state)
{
    static const struct build_case cases[] = {
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\",{\"name\":\"b\",\"color\":\"#fff\"}]}", 0,
          "{\"tags\":[{\"name\":\"a\"},{\"name\":\"b\",\"color\":\"#fff\"}]}"),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"Lead\",\"color\":\"#c57de0\"},\"PPC\"]}", 0,
          "{\"tags\":[{\"name\":\"Lead\",\"color\":\"#c57de0\"},{\"name\":\"PPC\"}]}"),
        B(GW_ROUTE_TAGS_ADD, " { \"tags\" : [ { \"color\" : \"#ABCDEF\" , \"name\" : \"x\" } ] } ",
          0, "{\"tags\":[{\"name\":\"x\",\"color\":\"#ABCDEF\"}]}"),
        /* Removal goes by name: colours are checked, then dropped. */
        B(GW_ROUTE_TAGS_REMOVE, "{\"tags\":[\"a\",{\"name\":\"b\",\"color\":\"#fff\"}]}", 0,
          "{\"tags\":[{\"name\":\"a\"},{\"name\":\"b\"}]}"),
        B(GW_ROUTE_TAGS_REMOVE, "{\"tags\":[{\"name\":\"b\",\"color\":\"#ff\"}]}",
          GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\",\"a\"]}", 0,
          "{\"tags\":[{\"name\":\"a\"},{\"name\":\"a\"}]}"),
        /* Shapes that are not a tags body. */
        B(GW_ROUTE_TAGS_ADD, "", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "   ", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\"]", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\"]} x", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "[\"a\"]", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "\"a\"", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "null", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tag\":[\"a\"]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\"],\"x\":1}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":\"a\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":null}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":{\"name\":\"a\"}}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[1]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[null]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[true]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[[\"a\"]]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\",2]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{}]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"color\":\"#fff\"}]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":1}]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":null}]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":[\"a\"]}]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"x\":1}]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"Color\":\"#fff\"}]}",
          GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"color\":1}]}", GW_ERR_INVALID_BODY,
          NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"color\":null}]}",
          GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"color\":\"red\"}]}",
          GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"color\":\"#ffff\"}]}",
          GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"color\":\"#fff\\u0000\"}]}",
          GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[{\"name\":\"a\",\"color\":\"#fff\\u0000ab\"}]}",
          GW_ERR_INVALID_BODY, NULL),
        /* Names that are not tag names: a bad tag, not a bad body. */
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\"]}", GW_ERR_INVALID_TAG, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\\u0000\"]}", GW_ERR_INVALID_TAG, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\\u0000b\"]}", GW_ERR_INVALID_TAG, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\\nb\"]}", GW_ERR_INVALID_TAG, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\\u001f\"]}", GW_ERR_INVALID_TAG, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\\u007f\"]}", GW_ERR_INVALID_TAG, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\\u0080\"]}", GW_ERR_INVALID_TAG, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"ok\",{\"name\":\"\\u009f\"}]}", GW_ERR_INVALID_TAG,
          NULL),
        B(GW_ROUTE_TAGS_REMOVE, "{\"tags\":[{\"name\":\"\"}]}", GW_ERR_INVALID_TAG, NULL),
        /* Raw bytes that are not UTF-8 are not JSON text at all. */
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\xC3\x28\"]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\xED\xA0\x80\"]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"\xC0\xAF\"]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\"]}\0", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_TAGS_ADD, "{\"tags\":[\"a\"]}\x01", GW_ERR_INVALID_BODY, NULL),
    };

    (void)state;
    run_build_cases(cases, sizeof cases / sizeof *cases);
}

/* A tags body of @p n tags "t0", "t1", …, in a malloc'd string. */
static char *tags_body(size_t n)
{
    size_t cap = 32 + n * 16;
    char *s = malloc(cap);
    size_t used;
    size_t i;

    assert_non_null(s);
    used = (size_t)snprintf(s, cap, "{\"tags\":[");
    for (i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used, "%s\"t%zu\"", i > 0 ? "," : "", i);
    used += (size_t)snprintf(s + used, cap - used, "]}");
    assert_true(used < cap);
    return s;
}

static void test_build_tags_count(void **state)
{
    static const size_t counts[] = { 0, 1, 2, GW_MAX_TAGS - 1, GW_MAX_TAGS, GW_MAX_TAGS + 1,
                                     1000 };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof counts / sizeof *counts; i++) {
        size_t n = counts[i];
        char *body = tags_body(n);
        struct gw_match m;
        char *out = NULL;
        size_t out_len = 0;
        int want = n >= 1 && n <= GW_MAX_TAGS ? 0 : GW_ERR_INVALID_BODY;
        int rc;

        memset(&m, 0, sizeof m);
        rc = gw_body_build(gw_router_get(GW_ROUTE_TAGS_ADD), &m, body, strlen(body), &out,
                           &out_len);
        if (rc != want)
            fail_msg("%zu tags: rc %d, want %d", n, rc, want);
        if (rc == 0) {
            json_object *up = json_tokener_parse(out);
            json_object *tags;

            assert_non_null(up);
            assert_true(json_object_object_get_ex(up, "tags", &tags));
            assert_int_equal(json_object_array_length(tags), n);
            json_object_put(up);
        }
        free(out);
        free(body);
    }
}

/* A name of @p n copies of the bytes @p unit, as a JSON tags body, built and checked. */
static void check_long_name(const char *unit, size_t n, int want)
{
    size_t ul = strlen(unit);
    char *body = malloc(n * ul + 32);
    struct gw_match m;
    char *out = NULL;
    size_t out_len = 0;
    size_t used;
    size_t i;
    int rc;

    assert_non_null(body);
    used = (size_t)snprintf(body, 32, "{\"tags\":[\"");
    for (i = 0; i < n; i++, used += ul)
        memcpy(body + used, unit, ul);
    memcpy(body + used, "\"]}", 4);
    memset(&m, 0, sizeof m);
    rc = gw_body_build(gw_router_get(GW_ROUTE_TAGS_ADD), &m, body, strlen(body), &out, &out_len);
    if (rc != want)
        fail_msg("%zu x \"%s\": rc %d, want %d", n, unit, rc, want);
    free(out);
    free(body);
}

static void test_build_tag_length(void **state)
{
    (void)state;
    check_long_name("a", GW_MAX_TAG_CHARS, 0);
    check_long_name("a", GW_MAX_TAG_CHARS + 1, GW_ERR_INVALID_TAG);
    check_long_name("\xC3\xA9", GW_MAX_TAG_CHARS, 0);
    check_long_name("\xC3\xA9", GW_MAX_TAG_CHARS + 1, GW_ERR_INVALID_TAG);
    check_long_name("\xF0\x9F\x98\x80", GW_MAX_TAG_CHARS, 0);
    check_long_name("\xF0\x9F\x98\x80", GW_MAX_TAG_CHARS + 1, GW_ERR_INVALID_TAG);
    /* An escape counts as the one character it stands for. */
    check_long_name("\\u00e9", GW_MAX_TAG_CHARS, 0);
    check_long_name("\\u00e9", GW_MAX_TAG_CHARS + 1, GW_ERR_INVALID_TAG);
    check_long_name("\\ud83d\\ude00", GW_MAX_TAG_CHARS, 0);
}

/* The names of the upstream body @p up, in order, must be @p names (with their lengths). */
static void expect_names(const char *up, const char *const *names, size_t n)
{
    json_object *obj = NULL;
    json_object *tags;
    size_t i;

    assert_int_equal(gw_body_parse(up, strlen(up), &obj), 0);
    assert_true(json_object_object_get_ex(obj, "tags", &tags));
    assert_int_equal(json_object_array_length(tags), n);
    for (i = 0; i < n; i++) {
        json_object *tag = json_object_array_get_idx(tags, i);
        json_object *name;

        assert_int_equal(json_object_object_length(tag), 1);
        assert_true(json_object_object_get_ex(tag, "name", &name));
        assert_int_equal(json_object_get_string_len(name), strlen(names[i]));
        assert_memory_equal(json_object_get_string(name), names[i], strlen(names[i]));
    }
    json_object_put(obj);
}

static void test_build_escaping(void **state)
{
    static const char body[] =
        "{\"tags\":[\"a\\\"b\",\"c\\\\d\",\"e/f\",\"g\\/h\",\"\xC3\xA9t\xC3\xA9\","
        "\"\\u20ac\",\"\\ud83d\\ude00\",\"<script>\",\"\\u2028\",\"%2F+?#\"]}";
    static const char *const names[] = {
        "a\"b", "c\\d", "e/f", "g/h", "\xC3\xA9t\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
        "<script>", "\xE2\x80\xA8", "%2F+?#",
    };
    struct gw_match m;
    char *out = NULL;
    size_t out_len = 0;

    (void)state;
    memset(&m, 0, sizeof m);
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_TAGS_REMOVE), &m, body,
                                   sizeof body - 1, &out, &out_len), 0);
    assert_int_equal(out_len, strlen(out));
    /* Slashes are not escaped (NOSLASHESCAPE); quotes and backslashes are. */
    assert_non_null(strstr(out, "\"e/f\""));
    assert_non_null(strstr(out, "\"a\\\"b\""));
    assert_non_null(strstr(out, "\"c\\\\d\""));
    expect_names(out, names, sizeof names / sizeof *names);
    free(out);
}

/* The upstream body of a {name} route for the decoded name @p name. */
static void check_tag_name_route(enum gw_route_id id, const char *name)
{
    struct gw_match m;
    char *out = NULL;
    size_t out_len = 0;

    memset(&m, 0, sizeof m);
    m.route = gw_router_get(id);
    m.name_len = strlen(name);
    memcpy(m.name, name, m.name_len + 1);
    memcpy(m.id, "1", sizeof "1");
    /* The request body of a {name} route is ignored, however wrong it is. */
    assert_int_equal(gw_body_build(m.route, &m, "not json", 8, &out, &out_len), 0);
    assert_non_null(out);
    assert_int_equal(out_len, strlen(out));
    expect_names(out, &name, 1);
    free(out);
}

static void test_build_tag_name_routes(void **state)
{
    static const char *const names[] = {
        "Lead", "a\"b", "c\\d", "e/f", "?#%&", "a+b", " ", "\xC3\xA9", "\xF0\x9F\x98\x80",
        "\"},{\"name\":\"x",
    };
    struct gw_match m;
    char *out = NULL;
    size_t out_len = 0;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof names / sizeof *names; i++) {
        check_tag_name_route(GW_ROUTE_TAG_PUT, names[i]);
        check_tag_name_route(GW_ROUTE_TAG_DELETE, names[i]);
    }

    /* The exact form, from the router's own match. */
    assert_int_equal(gw_router_match("DELETE", "/contacts/1568834/tags/Le%22ad%2F", &m), 0);
    assert_int_equal(gw_body_build(m.route, &m, NULL, 0, &out, &out_len), 0);
    assert_string_equal(out, "{\"tags\":[{\"name\":\"Le\\\"ad/\"}]}");
    free(out);

    /* A {name} route without a name is a caller bug, not a request to send "". */
    memset(&m, 0, sizeof m);
    out = NULL;
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_TAG_PUT), &m, NULL, 0, &out,
                                   &out_len), GW_ERR_INTERNAL);
    assert_null(out);
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_TAG_PUT), NULL, NULL, 0, &out,
                                   &out_len), GW_ERR_INTERNAL);
}

static void test_build_fixed_and_none(void **state)
{
    static const struct build_case cases[] = {
        B(GW_ROUTE_BLOCK, "", 0, "{\"blocked\":true}"),
        B(GW_ROUTE_BLOCK, "{\"blocked\":false}", 0, "{\"blocked\":true}"),
        B(GW_ROUTE_UNBLOCK, "", 0, "{\"blocked\":false}"),
        B(GW_ROUTE_UNBLOCK, "garbage", 0, "{\"blocked\":false}"),
        /* Routes without an upstream body ignore whatever the caller sent. */
        B(GW_ROUTE_CONTACT_GET, "", 0, NULL),
        B(GW_ROUTE_CONTACT_GET, "{not json", 0, NULL),
        B(GW_ROUTE_TAGS_GET, "[]", 0, NULL),
        B(GW_ROUTE_CONTACT_DELETE, "{\"x\":1}", 0, NULL),
        B(GW_ROUTE_CONTACTS_LIST, "\0\0", 0, NULL),
        B(GW_ROUTE_HEALTHZ, "", 0, NULL),
        B(GW_ROUTE_READYZ, "", 0, NULL),
        B(GW_ROUTE_METRICS, "", 0, NULL),
    };

    (void)state;
    run_build_cases(cases, sizeof cases / sizeof *cases);
}

static void test_build_object(void **state)
{
    static const struct build_case cases[] = {
        B(GW_ROUTE_CONTACT_PATCH, "{\"name\":\"x\"}", 0, "{\"name\":\"x\"}"),
        B(GW_ROUTE_CONTACT_PATCH, "{}", 0, "{}"),
        /* Byte for byte: whitespace, escapes and key order are the caller's. */
        B(GW_ROUTE_CONTACT_PATCH, " {\"b\" : 1, \"a\":\"\\/\\u00e9\", \"c\":null}\n", 0,
          " {\"b\" : 1, \"a\":\"\\/\\u00e9\", \"c\":null}\n"),
        B(GW_ROUTE_CONTACT_CREATE, "{\"email\":\"a@example.com\",\"customData\":"
          "[{\"property\":\"p\",\"value\":1.50}]}", 0,
          "{\"email\":\"a@example.com\",\"customData\":[{\"property\":\"p\",\"value\":1.50}]}"),
        B(GW_ROUTE_CONTACT_CREATE, "{\"name\":\"\xC3\xA9\"}", 0, "{\"name\":\"\xC3\xA9\"}"),
        B(GW_ROUTE_CONTACT_PATCH, "", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "\n", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "[]", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "[{}]", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "\"x\"", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "1", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "true", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "null", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "{\"a\":1", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "{\"a\":1}}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "{\"a\":NaN}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_PATCH, "{\"a\":\"\xFF\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_CREATE, "{\"a\":\"x\0\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_CREATE, "{\"a\":1}\0", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_CREATE, "", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACT_CREATE, "[1,2]", GW_ERR_INVALID_BODY, NULL),
    };

    (void)state;
    run_build_cases(cases, sizeof cases / sizeof *cases);
}

static void test_build_search(void **state)
{
    static const struct build_case cases[] = {
        B(GW_ROUTE_CONTACTS_SEARCH,
          "{\"filter\":[{\"field\":\"customers.email\",\"operator\":\"~\",\"value\":\"gmail\"}],"
          "\"comparison\":\"AND\",\"limit\":5,\"offset\":0}", 0,
          "{\"filter\":[{\"field\":\"customers.email\",\"operator\":\"~\",\"value\":\"gmail\"}],"
          "\"comparison\":\"AND\",\"limit\":5,\"offset\":0}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "{}", 0, "{}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"filter\":[]}", 0, "{\"filter\":[]}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"comparison\":\"OR\"}", 0, "{\"comparison\":\"OR\"}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":1}", 0, "{\"limit\":1}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":100}", 0, "{\"limit\":100}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"offset\":123456}", 0, "{\"offset\":123456}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"x\":1}", 0, "{\"x\":1}"),
        B(GW_ROUTE_CONTACTS_SEARCH, "", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "[]", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "\"q\"", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"filter\":{}}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"filter\":null}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"filter\":\"a\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"filter\":[1]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"filter\":[{},[]]}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":0}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":101}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":-1}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":5.0}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":\"5\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":null}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"limit\":18446744073709551615}", GW_ERR_INVALID_BODY,
          NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"offset\":-1}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"offset\":\"0\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"offset\":0.5}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"comparison\":\"and\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"comparison\":\"XOR\"}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"comparison\":\"AND\\u0000\"}", GW_ERR_INVALID_BODY,
          NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"comparison\":1}", GW_ERR_INVALID_BODY, NULL),
        B(GW_ROUTE_CONTACTS_SEARCH, "{\"comparison\":null}", GW_ERR_INVALID_BODY, NULL),
    };

    (void)state;
    run_build_cases(cases, sizeof cases / sizeof *cases);
}

static void test_build_args(void **state)
{
    struct gw_match m;
    char *out = NULL;
    size_t out_len = 0;

    (void)state;
    memset(&m, 0, sizeof m);
    assert_int_equal(gw_body_build(NULL, &m, "{}", 2, &out, &out_len), GW_ERR_INTERNAL);
    assert_null(out);
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_CONTACT_PATCH), &m, "{}", 2, NULL,
                                   &out_len), GW_ERR_INTERNAL);
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_CONTACT_PATCH), &m, "{}", 2, &out,
                                   NULL), GW_ERR_INTERNAL);
    assert_int_equal(gw_body_build(gw_router_get(GW_ROUTE_CONTACT_PATCH), &m, NULL, 2, &out,
                                   &out_len), GW_ERR_INVALID_BODY);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_parse_depth),
        cmocka_unit_test(test_build_tags_shapes),
        cmocka_unit_test(test_build_tags_count),
        cmocka_unit_test(test_build_tag_length),
        cmocka_unit_test(test_build_escaping),
        cmocka_unit_test(test_build_tag_name_routes),
        cmocka_unit_test(test_build_fixed_and_none),
        cmocka_unit_test(test_build_object),
        cmocka_unit_test(test_build_search),
        cmocka_unit_test(test_build_args),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

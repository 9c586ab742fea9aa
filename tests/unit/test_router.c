/*
 * Unit tests of src/router.c: the route table row by row against the documented contract,
 * matching of every route with its parameters, the 404 shapes, the 405 Allow lists, and the
 * contact id and tag name checks with their edge cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/router.h"

/* The contract's route table, written out independently of src/router.c. */
static const struct gw_route expected[] = {
    { GW_ROUTE_TAG_DELETE, "tag_delete", "DELETE", "/contacts/{id}/tags/{name}", "DELETE",
      "/customers/{id}/tags", GW_BODY_NONE, GW_UPBODY_TAG_NAME, GW_REPLY_CUSTOMER, 200, true,
      false },
    { GW_ROUTE_TAG_PUT, "tag_put", "PUT", "/contacts/{id}/tags/{name}", "PUT",
      "/customers/{id}/tags", GW_BODY_NONE, GW_UPBODY_TAG_NAME, GW_REPLY_CUSTOMER, 200, true,
      false },
    { GW_ROUTE_TAGS_ADD, "tags_add", "POST", "/contacts/{id}/tags", "PUT",
      "/customers/{id}/tags", GW_BODY_TAGS, GW_UPBODY_TAGS, GW_REPLY_CUSTOMER, 200, false,
      false },
    { GW_ROUTE_TAGS_REMOVE, "tags_remove", "DELETE", "/contacts/{id}/tags", "DELETE",
      "/customers/{id}/tags", GW_BODY_TAGS, GW_UPBODY_TAGS_NAMES, GW_REPLY_CUSTOMER, 200, true,
      false },
    { GW_ROUTE_TAGS_GET, "tags_get", "GET", "/contacts/{id}/tags", "GET", "/customers/{id}",
      GW_BODY_NONE, GW_UPBODY_NONE, GW_REPLY_TAGS, 200, true, false },
    { GW_ROUTE_CONTACT_GET, "contact_get", "GET", "/contacts/{id}", "GET", "/customers/{id}",
      GW_BODY_NONE, GW_UPBODY_NONE, GW_REPLY_CUSTOMER, 200, true, false },
    { GW_ROUTE_CONTACT_PATCH, "contact_patch", "PATCH", "/contacts/{id}", "PATCH",
      "/customers/{id}", GW_BODY_OBJECT, GW_UPBODY_AS_IS, GW_REPLY_CUSTOMER, 200, false,
      false },
    { GW_ROUTE_BLOCK, "contact_block", "PUT", "/contacts/{id}/block", "PATCH",
      "/customers/{id}", GW_BODY_NONE, GW_UPBODY_BLOCK, GW_REPLY_CUSTOMER, 200, true, false },
    { GW_ROUTE_UNBLOCK, "contact_unblock", "DELETE", "/contacts/{id}/block", "PATCH",
      "/customers/{id}", GW_BODY_NONE, GW_UPBODY_UNBLOCK, GW_REPLY_CUSTOMER, 200, true, false },
    { GW_ROUTE_CONTACT_DELETE, "contact_delete", "DELETE", "/contacts/{id}", "DELETE",
      "/customers/{id}", GW_BODY_NONE, GW_UPBODY_NONE, GW_REPLY_DELETED, 204, true, false },
    { GW_ROUTE_CONTACTS_LIST, "contacts_list", "GET", "/contacts", "GET", "/customers",
      GW_BODY_NONE, GW_UPBODY_NONE, GW_REPLY_LIST, 200, true, true },
    { GW_ROUTE_CONTACTS_SEARCH, "contacts_search", "POST", "/contacts/search", "POST",
      "/customers/search", GW_BODY_SEARCH, GW_UPBODY_AS_IS, GW_REPLY_SEARCH, 200, false,
      false },
    { GW_ROUTE_CONTACT_CREATE, "contact_create", "POST", "/contacts", "POST", "/customers",
      GW_BODY_OBJECT, GW_UPBODY_AS_IS, GW_REPLY_CUSTOMER, 201, false, false },
    { GW_ROUTE_HEALTHZ, "healthz", "GET", "/healthz", NULL, NULL, GW_BODY_NONE,
      GW_UPBODY_NONE, GW_REPLY_LOCAL, 200, false, false },
    { GW_ROUTE_READYZ, "readyz", "GET", "/readyz", NULL, NULL, GW_BODY_NONE, GW_UPBODY_NONE,
      GW_REPLY_LOCAL, 200, false, false },
    { GW_ROUTE_METRICS, "metrics", "GET", "/metrics", NULL, NULL, GW_BODY_NONE,
      GW_UPBODY_NONE, GW_REPLY_LOCAL, 200, false, false },
    { GW_ROUTE_OPENAPI, "openapi", "GET", "/openapi.yaml", NULL, NULL, GW_BODY_NONE,
      GW_UPBODY_NONE, GW_REPLY_LOCAL, 200, false, false },
};

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void test_table_indexed(void **state)
{
    size_t n = 0;
    const struct gw_route *t = gw_router_table(&n);
    size_t i;
    size_t j;

    (void)state;
    assert_non_null(t);
    assert_int_equal(n, GW_ROUTE__COUNT);
    for (i = 0; i < n; i++) {
        assert_int_equal(t[i].id, i);
        assert_ptr_equal(gw_router_get((enum gw_route_id)i), &t[i]);
        for (j = i + 1; j < n; j++) {
            if (strcmp(t[i].name, t[j].name) == 0)
                fail_msg("routes %zu and %zu share the name %s", i, j, t[i].name);
            if (strcmp(t[i].pattern, t[j].pattern) == 0 && strcmp(t[i].method, t[j].method) == 0)
                fail_msg("routes %zu and %zu are both %s %s", i, j, t[i].method, t[i].pattern);
        }
    }
    assert_null(gw_router_get(GW_ROUTE__COUNT));
    assert_null(gw_router_get((enum gw_route_id)-1));
    assert_ptr_equal(gw_router_table(NULL), t);
}

static void test_table_rows(void **state)
{
    size_t n = 0;
    const struct gw_route *t = gw_router_table(&n);
    size_t i;

    (void)state;
    assert_int_equal(sizeof expected / sizeof *expected, GW_ROUTE__COUNT);
    for (i = 0; i < n; i++) {
        const struct gw_route *e = &expected[i];
        const struct gw_route *r = &t[i];

        if (r->id != e->id || !str_eq(r->name, e->name) || !str_eq(r->method, e->method) ||
            !str_eq(r->pattern, e->pattern) || !str_eq(r->up_method, e->up_method) ||
            !str_eq(r->up_path, e->up_path) || r->body != e->body || r->up_body != e->up_body ||
            r->reply != e->reply || r->success_status != e->success_status ||
            r->retryable != e->retryable || r->query != e->query)
            fail_msg("route %zu (%s) differs from the contract", i, e->name);
        /* Local routes and upstream routes are told apart by the reply kind alone. */
        assert_int_equal(r->up_method == NULL, r->reply == GW_REPLY_LOCAL);
        assert_int_equal(r->up_path == NULL, r->reply == GW_REPLY_LOCAL);
    }
}

/* How many '/'-separated segments @p p has, and how many of them are literals. */
static void shape_of(const char *p, int *segs, int *lits)
{
    *segs = 0;
    *lits = 0;
    while (*p == '/') {
        p++;
        (*segs)++;
        if (*p != '{')
            (*lits)++;
        while (*p != '\0' && *p != '/')
            p++;
    }
}

/* Segment @p k of pattern @p p, into @p buf. */
static void segment(const char *p, int k, char *buf, size_t cap)
{
    const char *end;
    int i;

    for (i = 0; i <= k; i++)
        p = strchr(p, '/') + 1;
    end = strchr(p, '/');
    snprintf(buf, cap, "%.*s", (int)(end != NULL ? (size_t)(end - p) : strlen(p)), p);
}

/*
 * "Most literals win" decides between shapes only if no path fits two different patterns with
 * as many literals: each such pair must differ in a position where both have a literal.
 */
static void test_table_unambiguous(void **state)
{
    size_t n = 0;
    const struct gw_route *t = gw_router_table(&n);
    size_t i;
    size_t j;

    (void)state;
    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            int si, li, sj, lj, k;
            bool apart = false;

            if (strcmp(t[i].pattern, t[j].pattern) == 0)
                continue;
            shape_of(t[i].pattern, &si, &li);
            shape_of(t[j].pattern, &sj, &lj);
            if (si != sj || li != lj)
                continue;
            for (k = 0; k < si; k++) {
                char a[64];
                char b[64];

                segment(t[i].pattern, k, a, sizeof a);
                segment(t[j].pattern, k, b, sizeof b);
                if (a[0] != '{' && b[0] != '{' && strcmp(a, b) != 0)
                    apart = true;
            }
            if (!apart)
                fail_msg("%s and %s are ambiguous", t[i].pattern, t[j].pattern);
        }
    }
}

struct match_case {
    const char *method;
    const char *path;
    enum gw_route_id route;
    const char *id;
    const char *name;
    size_t name_len;
};

static void test_match_every_route(void **state)
{
    static const struct match_case cases[] = {
        { "DELETE", "/contacts/1568834/tags/Lead", GW_ROUTE_TAG_DELETE, "1568834", "Lead", 4 },
        { "PUT", "/contacts/1/tags/vip", GW_ROUTE_TAG_PUT, "1", "vip", 3 },
        { "POST", "/contacts/42/tags", GW_ROUTE_TAGS_ADD, "42", "", 0 },
        { "DELETE", "/contacts/42/tags", GW_ROUTE_TAGS_REMOVE, "42", "", 0 },
        { "GET", "/contacts/42/tags", GW_ROUTE_TAGS_GET, "42", "", 0 },
        { "GET", "/contacts/542335", GW_ROUTE_CONTACT_GET, "542335", "", 0 },
        { "PATCH", "/contacts/542335", GW_ROUTE_CONTACT_PATCH, "542335", "", 0 },
        { "PUT", "/contacts/7/block", GW_ROUTE_BLOCK, "7", "", 0 },
        { "DELETE", "/contacts/7/block", GW_ROUTE_UNBLOCK, "7", "", 0 },
        { "DELETE", "/contacts/9", GW_ROUTE_CONTACT_DELETE, "9", "", 0 },
        { "GET", "/contacts", GW_ROUTE_CONTACTS_LIST, "", "", 0 },
        { "POST", "/contacts/search", GW_ROUTE_CONTACTS_SEARCH, "", "", 0 },
        { "POST", "/contacts", GW_ROUTE_CONTACT_CREATE, "", "", 0 },
        { "GET", "/healthz", GW_ROUTE_HEALTHZ, "", "", 0 },
        { "GET", "/readyz", GW_ROUTE_READYZ, "", "", 0 },
        { "GET", "/metrics", GW_ROUTE_METRICS, "", "", 0 },
        { "GET", "/openapi.yaml", GW_ROUTE_OPENAPI, "", "", 0 },
        /* HEAD is answered by every GET row: the same route, parameters and all. */
        { "HEAD", "/contacts/42/tags", GW_ROUTE_TAGS_GET, "42", "", 0 },
        { "HEAD", "/contacts/542335", GW_ROUTE_CONTACT_GET, "542335", "", 0 },
        { "HEAD", "/contacts", GW_ROUTE_CONTACTS_LIST, "", "", 0 },
        { "HEAD", "/healthz", GW_ROUTE_HEALTHZ, "", "", 0 },
        { "HEAD", "/readyz", GW_ROUTE_READYZ, "", "", 0 },
        { "HEAD", "/metrics", GW_ROUTE_METRICS, "", "", 0 },
        { "HEAD", "/openapi.yaml", GW_ROUTE_OPENAPI, "", "", 0 },
        /* Names are decoded; '+' stays a plus; the decoded characters are all legal. */
        { "PUT", "/contacts/1/tags/a%2Fb", GW_ROUTE_TAG_PUT, "1", "a/b", 3 },
        { "PUT", "/contacts/1/tags/a+b", GW_ROUTE_TAG_PUT, "1", "a+b", 3 },
        { "PUT", "/contacts/1/tags/a%20b", GW_ROUTE_TAG_PUT, "1", "a b", 3 },
        { "PUT", "/contacts/1/tags/%3F%23%25%26", GW_ROUTE_TAG_PUT, "1", "?#%&", 4 },
        { "PUT", "/contacts/1/tags/%c3%a9t%C3%A9", GW_ROUTE_TAG_PUT, "1", "\xC3\xA9t\xC3\xA9", 5 },
        { "PUT", "/contacts/1/tags/%22%5C", GW_ROUTE_TAG_PUT, "1", "\"\\", 2 },
        /* Literal segments are not parameters even where a parameter could sit. */
        { "DELETE", "/contacts/1/tags/tags", GW_ROUTE_TAG_DELETE, "1", "tags", 4 },
        { "GET", "/contacts/9223372036854775807", GW_ROUTE_CONTACT_GET,
          "9223372036854775807", "", 0 },
        { "GET", "/contacts/9999999999999999999", GW_ROUTE_CONTACT_GET,
          "9999999999999999999", "", 0 },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct match_case *c = &cases[i];
        struct gw_match m;
        int rc;

        memset(&m, 0x5A, sizeof m);
        rc = gw_router_match(c->method, c->path, &m);
        if (rc != 0)
            fail_msg("%s %s: rc %d", c->method, c->path, rc);
        if (m.route == NULL || m.route->id != c->route)
            fail_msg("%s %s: wrong route", c->method, c->path);
        if (strcmp(m.id, c->id) != 0)
            fail_msg("%s %s: id \"%s\"", c->method, c->path, m.id);
        if (m.name_len != c->name_len || memcmp(m.name, c->name, c->name_len + 1) != 0)
            fail_msg("%s %s: name \"%s\" (%zu)", c->method, c->path, m.name, m.name_len);
        if (m.allow[0] != '\0')
            fail_msg("%s %s: allow \"%s\" on a match", c->method, c->path, m.allow);
    }
}

static void test_not_found(void **state)
{
    static const char *const paths[] = {
        "", "/", "contacts", "contacts/1", "/contacts/", "//contacts", "/contacts//",
        "/contacts/1/", "/contacts//tags", "/contacts/1//tags", "/contacts/1/tags/",
        "/contacts/1/tags//", "/contacts/1/tags/a/b", "/contacts/1/tags/a/", "/unknown",
        "/Contacts", "/CONTACTS/1", "/contacts/1/Tags", "/contacts/1/block/x",
        "/contacts/1/unknown", "/customers/1", "/healthz/", "/healthz/x", "/metrics/1",
        "/contacts/search/1", "/contacts/1/tags/a/b/c", "/contacts?limit=1",
        "/openapi.json", "/openapi.yaml/", "/openapi", "/OPENAPI.YAML",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof paths / sizeof *paths; i++) {
        static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };
        size_t k;

        for (k = 0; k < sizeof methods / sizeof *methods; k++) {
            struct gw_match m;
            int rc = gw_router_match(methods[k], paths[i], &m);

            if (rc != GW_ERR_ROUTE_NOT_FOUND)
                fail_msg("%s \"%s\": rc %d, want not found", methods[k], paths[i], rc);
            assert_null(m.route);
        }
    }
    {
        struct gw_match m;

        assert_int_equal(gw_router_match("GET", NULL, &m), GW_ERR_ROUTE_NOT_FOUND);
        assert_int_equal(gw_router_match("GET", "/contacts", NULL), GW_ERR_INTERNAL);
    }
}

struct allow_case {
    const char *method;
    const char *path;
    const char *allow;
};

static void test_method_not_allowed(void **state)
{
    static const struct allow_case cases[] = {
        { "GET", "/contacts/1/tags/a", "DELETE, PUT" },
        { "POST", "/contacts/1/tags/a", "DELETE, PUT" },
        { "PATCH", "/contacts/1/tags/a", "DELETE, PUT" },
        { "PUT", "/contacts/1/tags", "POST, DELETE, GET, HEAD" },
        { "PATCH", "/contacts/1/tags", "POST, DELETE, GET, HEAD" },
        { "POST", "/contacts/1", "GET, HEAD, PATCH, DELETE" },
        { "PUT", "/contacts/1", "GET, HEAD, PATCH, DELETE" },
        { "GET", "/contacts/1/block", "PUT, DELETE" },
        { "POST", "/contacts/1/block", "PUT, DELETE" },
        { "PATCH", "/contacts/1/block", "PUT, DELETE" },
        { "PUT", "/contacts", "GET, HEAD, POST" },
        { "DELETE", "/contacts", "GET, HEAD, POST" },
        /* The literal "search" beats {id}: not a contact with the id "search". */
        { "GET", "/contacts/search", "POST" },
        { "DELETE", "/contacts/search", "POST" },
        { "PATCH", "/contacts/search", "POST" },
        { "POST", "/healthz", "GET, HEAD" },
        { "DELETE", "/readyz", "GET, HEAD" },
        { "PUT", "/metrics", "GET, HEAD" },
        { "POST", "/openapi.yaml", "GET, HEAD" },
        /* Methods are case-sensitive and compared whole. */
        { "get", "/contacts", "GET, HEAD, POST" },
        { "Get", "/healthz", "GET, HEAD" },
        { "GETX", "/healthz", "GET, HEAD" },
        { "head", "/healthz", "GET, HEAD" },
        /* HEAD is served where GET is, and nowhere else. */
        { "HEAD", "/contacts/1/tags/a", "DELETE, PUT" },
        { "HEAD", "/contacts/1/block", "PUT, DELETE" },
        { "HEAD", "/contacts/search", "POST" },
        { "OPTIONS", "/contacts/1", "GET, HEAD, PATCH, DELETE" },
        { "", "/contacts", "GET, HEAD, POST" },
        /* The method is checked before the parameters. */
        { "POST", "/contacts/abc", "GET, HEAD, PATCH, DELETE" },
        { "GET", "/contacts/0/tags/%ZZ", "DELETE, PUT" },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct allow_case *c = &cases[i];
        struct gw_match m;
        int rc = gw_router_match(c->method, c->path, &m);

        if (rc != GW_ERR_METHOD_NOT_ALLOWED)
            fail_msg("%s %s: rc %d, want 405", c->method, c->path, rc);
        if (strcmp(m.allow, c->allow) != 0)
            fail_msg("%s %s: allow \"%s\", want \"%s\"", c->method, c->path, m.allow, c->allow);
        assert_null(m.route);
    }
    {
        struct gw_match m;

        assert_int_equal(gw_router_match(NULL, "/contacts", &m), GW_ERR_METHOD_NOT_ALLOWED);
        assert_string_equal(m.allow, "GET, HEAD, POST");
    }
}

struct id_case {
    const char *seg;
    int want;
};

static void test_contact_id(void **state)
{
    static const struct id_case cases[] = {
        { "1", 0 },
        { "9", 0 },
        { "10", 0 },
        { "1568834", 0 },
        { "1234567890123456789", 0 },           /* 19 digits */
        { "9999999999999999999", 0 },
        { "12345678901234567890", GW_ERR_INVALID_CONTACT_ID },  /* 20 digits */
        { "0", GW_ERR_INVALID_CONTACT_ID },
        { "00", GW_ERR_INVALID_CONTACT_ID },
        { "01", GW_ERR_INVALID_CONTACT_ID },
        { "-1", GW_ERR_INVALID_CONTACT_ID },
        { "+1", GW_ERR_INVALID_CONTACT_ID },
        { "1a", GW_ERR_INVALID_CONTACT_ID },
        { "a1", GW_ERR_INVALID_CONTACT_ID },
        { "abc", GW_ERR_INVALID_CONTACT_ID },
        { "1.0", GW_ERR_INVALID_CONTACT_ID },
        { "1e3", GW_ERR_INVALID_CONTACT_ID },
        { "0x1", GW_ERR_INVALID_CONTACT_ID },
        { "%31", GW_ERR_INVALID_CONTACT_ID },   /* no decoding of ids */
        { " 1", GW_ERR_INVALID_CONTACT_ID },
        { "1 ", GW_ERR_INVALID_CONTACT_ID },
        { "%201", GW_ERR_INVALID_CONTACT_ID },
        { "1+", GW_ERR_INVALID_CONTACT_ID },
        { "\xD9\xA1", GW_ERR_INVALID_CONTACT_ID },  /* ARABIC-INDIC DIGIT ONE */
        { "search1", GW_ERR_INVALID_CONTACT_ID },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct id_case *c = &cases[i];
        char path[128];
        struct gw_match m;
        int rc = gw_router_check_id(c->seg, strlen(c->seg));

        if (rc != c->want)
            fail_msg("check_id \"%s\": rc %d, want %d", c->seg, rc, c->want);
        /* The same through the matcher, on a route with an id and one with an id and a name. */
        snprintf(path, sizeof path, "/contacts/%s", c->seg);
        rc = gw_router_match("GET", path, &m);
        if (rc != c->want)
            fail_msg("GET %s: rc %d, want %d", path, rc, c->want);
        assert_non_null(m.route);
        assert_int_equal(m.route->id, GW_ROUTE_CONTACT_GET);
        if (rc == 0)
            assert_string_equal(m.id, c->seg);
        snprintf(path, sizeof path, "/contacts/%s/tags/ok", c->seg);
        rc = gw_router_match("PUT", path, &m);
        if (rc != c->want)
            fail_msg("PUT %s: rc %d, want %d", path, rc, c->want);
        assert_non_null(m.route);
        assert_int_equal(m.route->id, GW_ROUTE_TAG_PUT);
    }
    assert_int_equal(gw_router_check_id("", 0), GW_ERR_INVALID_CONTACT_ID);
    assert_int_equal(gw_router_check_id(NULL, 1), GW_ERR_INVALID_CONTACT_ID);
    /* The length is the caller's: digits after it are not read. */
    assert_int_equal(gw_router_check_id("12x", 2), 0);
    assert_int_equal(gw_router_check_id("1\0" "2", 3), GW_ERR_INVALID_CONTACT_ID);
}

struct tag_case {
    const char *seg;
    int want;
    const char *name;
    size_t name_len;
};

static void test_tag_name(void **state)
{
    static const struct tag_case cases[] = {
        { "Lead", 0, "Lead", 4 },
        { "a+b", 0, "a+b", 3 },
        { "%2F", 0, "/", 1 },
        { "%2f", 0, "/", 1 },
        { "a%2Fb%3Fc%23d%25e", 0, "a/b?c#d%e", 9 },
        { "%20", 0, " ", 1 },
        { "%41%42", 0, "AB", 2 },
        { "%c3%A9", 0, "\xC3\xA9", 2 },
        { "%E2%82%AC", 0, "\xE2\x82\xAC", 3 },
        { "%F0%9F%98%80", 0, "\xF0\x9F\x98\x80", 4 },
        { "%C2%A0", 0, "\xC2\xA0", 2 },
        { "\xC3\xA9", 0, "\xC3\xA9", 2 },       /* raw UTF-8 in the path is taken as is */
        { "%22", 0, "\"", 1 },
        { "%5C", 0, "\\", 1 },
        { "", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%2", GW_ERR_INVALID_TAG, NULL, 0 },
        { "a%", GW_ERR_INVALID_TAG, NULL, 0 },
        { "a%4", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%G1", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%1G", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%%41", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%-1", GW_ERR_INVALID_TAG, NULL, 0 },
        { "% 1", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%00", GW_ERR_INVALID_TAG, NULL, 0 },
        { "a%00b", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%0A", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%0d", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%09", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%1F", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%7F", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%C2%80", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%C2%9F", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%C3%28", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%ED%A0%80", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%C0%AF", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%E0%80%AF", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%F4%90%80%80", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%FF", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%C3", GW_ERR_INVALID_TAG, NULL, 0 },
        { "%80", GW_ERR_INVALID_TAG, NULL, 0 },
        { "\xFF", GW_ERR_INVALID_TAG, NULL, 0 },
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct tag_case *c = &cases[i];
        char out[GW_MAX_TAG_BYTES + 1];
        size_t out_len = 12345;
        char path[128];
        struct gw_match m;
        int rc = gw_router_decode_tag(c->seg, strlen(c->seg), out, sizeof out, &out_len);

        if (rc != c->want)
            fail_msg("decode \"%s\": rc %d, want %d", c->seg, rc, c->want);
        if (rc == 0 && (out_len != c->name_len || memcmp(out, c->name, out_len + 1) != 0))
            fail_msg("decode \"%s\": got \"%s\" (%zu)", c->seg, out, out_len);
        if (rc != 0)
            assert_int_equal(out_len, 12345);

        /* Through the matcher an empty name is an empty segment, so a 404, not a bad tag. */
        if (c->seg[0] == '\0')
            continue;
        snprintf(path, sizeof path, "/contacts/1/tags/%s", c->seg);
        rc = gw_router_match("DELETE", path, &m);
        if (rc != c->want)
            fail_msg("DELETE %s: rc %d, want %d", path, rc, c->want);
        assert_non_null(m.route);
        assert_int_equal(m.route->id, GW_ROUTE_TAG_DELETE);
        if (rc == 0) {
            assert_int_equal(m.name_len, c->name_len);
            assert_memory_equal(m.name, c->name, c->name_len + 1);
            assert_string_equal(m.id, "1");
        }
    }
}

/* @p n copies of @p unit after @p prefix, in @p buf. */
static void build(char *buf, size_t cap, const char *prefix, const char *unit, size_t n)
{
    size_t pl = strlen(prefix);
    size_t ul = strlen(unit);
    size_t i;

    assert_true(pl + ul * n < cap);
    memcpy(buf, prefix, pl);
    for (i = 0; i < n; i++)
        memcpy(buf + pl + i * ul, unit, ul);
    buf[pl + ul * n] = '\0';
}

static void test_tag_length(void **state)
{
    char path[GW_MAX_URL_BYTES * 2];
    char out[GW_MAX_TAG_BYTES + 1];
    size_t out_len;
    struct gw_match m;

    (void)state;
    build(path, sizeof path, "/contacts/1/tags/", "a", GW_MAX_TAG_CHARS);
    assert_int_equal(gw_router_match("PUT", path, &m), 0);
    assert_int_equal(m.name_len, GW_MAX_TAG_CHARS);

    build(path, sizeof path, "/contacts/1/tags/", "a", GW_MAX_TAG_CHARS + 1);
    assert_int_equal(gw_router_match("PUT", path, &m), GW_ERR_INVALID_TAG);
    assert_non_null(m.route);
    assert_int_equal(m.route->id, GW_ROUTE_TAG_PUT);

    /* 100 characters of four bytes each fill the buffer exactly, and are valid. */
    build(path, sizeof path, "/contacts/1/tags/", "%F0%9F%98%80", GW_MAX_TAG_CHARS);
    assert_int_equal(gw_router_match("PUT", path, &m), 0);
    assert_int_equal(m.name_len, GW_MAX_TAG_BYTES);
    build(path, sizeof path, "/contacts/1/tags/", "%F0%9F%98%80", GW_MAX_TAG_CHARS + 1);
    assert_int_equal(gw_router_match("PUT", path, &m), GW_ERR_INVALID_TAG);
    build(path, sizeof path, "/contacts/1/tags/", "%E2%82%AC", GW_MAX_TAG_CHARS);
    assert_int_equal(gw_router_match("PUT", path, &m), 0);
    assert_int_equal(m.name_len, 3 * GW_MAX_TAG_CHARS);
    build(path, sizeof path, "/contacts/1/tags/", "%E2%82%AC", GW_MAX_TAG_CHARS + 1);
    assert_int_equal(gw_router_match("PUT", path, &m), GW_ERR_INVALID_TAG);

    /* The output capacity is a hard bound, including the NUL. */
    assert_int_equal(gw_router_decode_tag("abc", 3, out, 4, &out_len), 0);
    assert_string_equal(out, "abc");
    assert_int_equal(gw_router_decode_tag("abc", 3, out, 3, &out_len), GW_ERR_INVALID_TAG);
    assert_int_equal(gw_router_decode_tag("%41", 3, out, 2, &out_len), 0);
    assert_string_equal(out, "A");
    assert_int_equal(gw_router_decode_tag("%41", 3, out, 1, &out_len), GW_ERR_INVALID_TAG);
    assert_int_equal(gw_router_decode_tag("abc", 3, out, 0, &out_len), GW_ERR_INVALID_TAG);
    assert_int_equal(gw_router_decode_tag("abc", 3, NULL, 4, &out_len), GW_ERR_INVALID_TAG);
    assert_int_equal(gw_router_decode_tag(NULL, 0, out, 4, &out_len), GW_ERR_INVALID_TAG);
    /* The length is the caller's: a '%' cut off by it is malformed. */
    assert_int_equal(gw_router_decode_tag("a%41", 2, out, sizeof out, &out_len),
                     GW_ERR_INVALID_TAG);
    assert_int_equal(gw_router_decode_tag("%41", 2, out, sizeof out, &out_len),
                     GW_ERR_INVALID_TAG);
    assert_int_equal(gw_router_decode_tag("%41", 3, out, sizeof out, &out_len), 0);
}

static void test_params_order_and_bounds(void **state)
{
    char path[GW_MAX_URL_BYTES * 2];
    struct gw_match m;

    (void)state;
    /* A bad id is reported before a bad name. */
    assert_int_equal(gw_router_match("PUT", "/contacts/0/tags/%00", &m),
                     GW_ERR_INVALID_CONTACT_ID);
    assert_int_equal(m.route->id, GW_ROUTE_TAG_PUT);
    assert_int_equal(gw_router_match("PUT", "/contacts/1/tags/%00", &m), GW_ERR_INVALID_TAG);
    assert_int_equal(m.route->id, GW_ROUTE_TAG_PUT);
    assert_int_equal(gw_router_match("POST", "/contacts/x/tags", &m),
                     GW_ERR_INVALID_CONTACT_ID);
    assert_int_equal(m.route->id, GW_ROUTE_TAGS_ADD);
    assert_int_equal(gw_router_match("DELETE", "/contacts/01/block", &m),
                     GW_ERR_INVALID_CONTACT_ID);
    assert_int_equal(m.route->id, GW_ROUTE_UNBLOCK);

    /* A path of GW_MAX_URL_BYTES is read (and its id refused); one byte more is not a route. */
    build(path, sizeof path, "/contacts/", "a", GW_MAX_URL_BYTES - strlen("/contacts/"));
    assert_int_equal(strlen(path), GW_MAX_URL_BYTES);
    assert_int_equal(gw_router_match("GET", path, &m), GW_ERR_INVALID_CONTACT_ID);
    build(path, sizeof path, "/contacts/", "a", GW_MAX_URL_BYTES + 1 - strlen("/contacts/"));
    assert_int_equal(gw_router_match("GET", path, &m), GW_ERR_ROUTE_NOT_FOUND);
    assert_null(m.route);
    /* Many segments are simply no shape. */
    build(path, sizeof path, "", "/a", 500);
    assert_int_equal(gw_router_match("GET", path, &m), GW_ERR_ROUTE_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_indexed),
        cmocka_unit_test(test_table_rows),
        cmocka_unit_test(test_table_unambiguous),
        cmocka_unit_test(test_match_every_route),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_contact_id),
        cmocka_unit_test(test_tag_name),
        cmocka_unit_test(test_tag_length),
        cmocka_unit_test(test_params_order_and_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

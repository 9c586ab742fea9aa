/*
 * Unit tests of cors.c and of the cors group of config.c: which spellings of an origin the
 * configuration takes (exactly the ones browsers send) and which it refuses with which reason;
 * the group's rules ("*" alone and only without clients, a client's origins inside the list,
 * the group needed); and the decisions request.c asks for: the Access-Control-Allow-Origin of
 * a request's Origin, a client's origins, the method of a preflight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/config.h"
#include "hcgw/cors.h"
#include "hcgw/limits.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/tmpdir.h"

/* Room for one test's expected problems, or the reference file's cors example. */
#define TEXT_BYTES 8192

#define REFERENCE_CONF HCGW_TEST_DATA "/../../conf/hcgw.conf"

/* A token hash for the clients of these tests (the hash of nothing in particular). */
#define HASH_A "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
#define HASH_B "1f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

static int group_setup(void **state)
{
    (void)state;
    return tmpdir_make("cors");
}

static struct gw_config *load(const char *text, char **errors)
{
    char path[PATH_MAX];

    tmpdir_write("cors.conf", text, strlen(text), path, sizeof path);
    return gw_config_load(path, errors);
}

static struct gw_config *load_ok(const char *text)
{
    char *errors = NULL;
    struct gw_config *cfg = load(text, &errors);

    if (errors != NULL)
        print_error("unexpected problems:\n%s", errors);
    assert_null(errors);
    assert_non_null(cfg);
    return cfg;
}

/* @p text must be refused with exactly one problem, ending in "key: reason". */
static void expect_problem(const char *text, const char *tail)
{
    char *errors = NULL;
    struct gw_config *cfg = load(text, &errors);
    size_t n;
    size_t t = strlen(tail);

    assert_null(cfg);
    assert_non_null(errors);
    n = strlen(errors);
    if (strchr(errors, '\n') != errors + n - 1 || n < t || memcmp(errors + n - t, tail, t) != 0)
        fail_msg("for:\n%s\nwant one problem ending in\n  %s\ngot:\n%s", text, tail, errors);
    free(errors);
}

/* ---- origins as browsers send them ---- */

static void test_origins_accepted(void **state)
{
    static const char *const good[] = {
        "https://crm.example.com",
        "http://127.0.0.1:8000",
        "http://localhost:3000",
        "https://a",
        "https://xn--bcher-kva.example",
        "https://crm.example.com:8443",
        "http://[::1]:8080",
        "https://[2001:db8::1]",
        "http://10.0.0.1",
        "https://example.com.",
        "http://h:65535",
        "http://h:1",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char why[256] = "";

        if (gw_cors_check_origin(good[i], why, sizeof why) != 0)
            fail_msg("%s refused: %s", good[i], why);
    }
}

struct bad_origin {
    const char *value;
    const char *reason; /* a part of the reason */
};

static void test_origins_refused(void **state)
{
    static const struct bad_origin bad[] = {
        {"", "1 to"},
        {"*", "https:// or http://"},
        {"null", "https:// or http://"},
        {"HTTPS://crm.example.com", "https:// or http://"},
        {"ftp://crm.example.com", "https:// or http://"},
        {"crm.example.com", "https:// or http://"},
        {"file://", "https:// or http://"},
        {"https://Crm.example.com", "lower case"},
        {"https://crm.example.com/", "no user, path, query or trailing slash"},
        {"https://crm.example.com/app", "no user, path"},
        {"https://crm.example.com?x", "no user, path"},
        {"https://crm.example.com#x", "no user, path"},
        {"https://user@crm.example.com", "no user"},
        {"https://crm.example.com\\x", "no user"},
        {"https://", "no host"},
        {"https://:8443", "no host"},
        {"https://crm.example.com:443", "leave out :443"},
        {"http://crm.example.com:80", "leave out :80"},
        {"https://crm.example.com:0", "bad port"},
        {"https://crm.example.com:08443", "bad port"},
        {"https://crm.example.com:65536", "bad port"},
        {"https://crm.example.com:123456", "bad port"},
        {"https://crm.example.com:", "bad port"},
        {"https://crm.example.com:x", "bad port"},
        {"https://crm example.com", "not an ASCII name"},
        {"https://b\xc3\xbc" "cher.example", "punycode"},
        {"https://crm.example.com\t", "not an ASCII name"},
        {"http://127.1", "plain dotted IPv4"},
        {"http://127.000.0.1", "plain dotted IPv4"},
        {"http://999.0.0.1", "plain dotted IPv4"},
        {"http://[::1", "malformed IPv6"},
        {"http://[]", "malformed IPv6"},
        {"http://[zz::1]", "malformed IPv6"},
        {"http://[0:0:0:0:0:0:0:1]", "[::1]"},
        {"http://[2001:DB8::1]", "[2001:db8::1]"},
        {"http://[::1]x", "bad port"},
        {"http://::1", "no host"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char why[256] = "";

        if (gw_cors_check_origin(bad[i].value, why, sizeof why) == 0)
            fail_msg("%s accepted", bad[i].value);
        if (strstr(why, bad[i].reason) == NULL)
            fail_msg("%s: reason \"%s\", want \"%s\" in it", bad[i].value, why, bad[i].reason);
    }
}

static void test_origin_length(void **state)
{
    char value[GW_MAX_ORIGIN_BYTES + 2];
    char why[256];
    size_t host = GW_MAX_ORIGIN_BYTES - strlen("https://") - strlen(":8443");

    (void)state;
    /* The longest origin: a 253-byte name and a 5-digit port, and one byte more. */
    snprintf(value, sizeof value, "https://%0*d:8443", (int)host, 0);
    memset(value + 8, 'a', host);
    assert_int_equal(strlen(value), GW_MAX_ORIGIN_BYTES);
    assert_int_equal(gw_cors_check_origin(value, why, sizeof why), 0);
    snprintf(value, sizeof value, "https://%0*d:8443", (int)host + 1, 0);
    memset(value + 8, 'a', host + 1);
    assert_int_equal(gw_cors_check_origin(value, why, sizeof why), -1);
    assert_non_null(strstr(why, "1 to 267 bytes"));
}

static void test_preflight_methods(void **state)
{
    char longest[GW_MAX_METHOD_BYTES + 2];

    (void)state;
    assert_true(gw_cors_valid_method("PUT"));
    assert_true(gw_cors_valid_method("DELETE"));
    assert_true(gw_cors_valid_method("patch"));
    assert_true(gw_cors_valid_method("X-CUSTOM_1!"));
    assert_false(gw_cors_valid_method(NULL));
    assert_false(gw_cors_valid_method(""));
    assert_false(gw_cors_valid_method("PUT, DELETE"));
    assert_false(gw_cors_valid_method("PU T"));
    assert_false(gw_cors_valid_method("PUT\r"));
    assert_false(gw_cors_valid_method("GET/"));
    assert_false(gw_cors_valid_method("(GET)"));
    assert_false(gw_cors_valid_method("\xc3\xa9"));
    memset(longest, 'A', GW_MAX_METHOD_BYTES);
    longest[GW_MAX_METHOD_BYTES] = '\0';
    assert_true(gw_cors_valid_method(longest));
    longest[GW_MAX_METHOD_BYTES] = 'A';
    longest[GW_MAX_METHOD_BYTES + 1] = '\0';
    assert_false(gw_cors_valid_method(longest));
}

/* ---- the configuration ---- */

static void test_no_group_no_cors(void **state)
{
    struct gw_config *cfg = load_ok("listen = { port = 0; };\n");

    (void)state;
    assert_false(cfg->cors.enabled);
    assert_int_equal(cfg->cors.allow_origins.n, 0);
    assert_int_equal(cfg->cors.max_age_s, 600);
    /* No group: no origin is named, whatever it is. */
    assert_null(gw_cors_allow_origin(cfg, "https://crm.example.com"));
    assert_null(gw_cors_allow_origin(cfg, NULL));
    gw_config_free(cfg);
}

/*
 * The reference file has no cors group (CORS is off by default), and its commented example of
 * one, uncommented, is a group that loads with the values it documents.
 */
static void test_reference_example(void **state)
{
    char text[TEXT_BYTES];
    char line[256];
    size_t used = 0;
    bool in = false;
    struct gw_config *cfg = gw_config_load(REFERENCE_CONF, NULL);
    FILE *f;

    (void)state;
    assert_non_null(cfg);
    assert_false(cfg->cors.enabled);
    gw_config_free(cfg);
    f = fopen(REFERENCE_CONF, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f) != NULL) {
        if (strcmp(line, "# cors = {\n") == 0)
            in = true;
        if (!in)
            continue;
        assert_true(strncmp(line, "#", 1) == 0);
        used += (size_t)snprintf(text + used, sizeof text - used, "%s", line + (line[1] ? 2 : 1));
        assert_true(used < sizeof text);
        if (strcmp(line, "# };\n") == 0)
            break;
    }
    fclose(f);
    assert_true(in);
    cfg = load_ok(text);
    assert_true(cfg->cors.enabled);
    assert_int_equal(cfg->cors.allow_origins.n, 1);
    assert_string_equal(cfg->cors.allow_origins.v[0], "https://crm.example.com");
    assert_int_equal(cfg->cors.max_age_s, 600);
    gw_config_free(cfg);
}

static void test_group_read(void **state)
{
    struct gw_config *cfg = load_ok(
        "cors = { allow_origins = [ \"https://crm.example.com\", \"http://localhost:3000\" ];\n"
        "         max_age_s = 7200; };\n");

    (void)state;
    assert_true(cfg->cors.enabled);
    assert_false(cfg->cors.any);
    assert_int_equal(cfg->cors.allow_origins.n, 2);
    assert_string_equal(cfg->cors.allow_origins.v[0], "https://crm.example.com");
    assert_string_equal(cfg->cors.allow_origins.v[1], "http://localhost:3000");
    assert_int_equal(cfg->cors.max_age_s, 7200);
    gw_config_free(cfg);

    /* A list in parentheses means the same as an array. */
    cfg = load_ok("cors = { allow_origins = ( \"https://crm.example.com\" ); max_age_s = 0; };\n");
    assert_int_equal(cfg->cors.allow_origins.n, 1);
    assert_int_equal(cfg->cors.max_age_s, 0);
    gw_config_free(cfg);
}

static void test_allow_origin_exact(void **state)
{
    struct gw_config *cfg = load_ok(
        "cors = { allow_origins = [ \"https://crm.example.com\",\n"
        "                           \"http://localhost:3000\" ]; };\n");
    static const char *const others[] = {
        "https://crm.example.com/", "https://CRM.example.com", "http://crm.example.com",
        "https://crm.example.com:443", "https://crm.example.co", "https://crm.example.com.",
        "https://evil.crm.example.com", "https://crm.example.com.evil", "null", "",
        "http://localhost:30000", "http://localhost:300", " https://crm.example.com",
    };
    const char *origin = "https://crm.example.com";

    (void)state;
    /* The request's own string is named, not the config's (which a reload may free). */
    assert_ptr_equal(gw_cors_allow_origin(cfg, origin), origin);
    assert_string_equal(gw_cors_allow_origin(cfg, "http://localhost:3000"),
                        "http://localhost:3000");
    assert_null(gw_cors_allow_origin(cfg, NULL));
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        if (gw_cors_allow_origin(cfg, others[i]) != NULL)
            fail_msg("\"%s\" allowed", others[i]);
    }
    gw_config_free(cfg);
}

static void test_star(void **state)
{
    struct gw_config *cfg = load_ok("cors = { allow_origins = [ \"*\" ]; };\n");

    (void)state;
    assert_true(cfg->cors.any);
    assert_string_equal(gw_cors_allow_origin(cfg, "https://anything.example"), "*");
    assert_string_equal(gw_cors_allow_origin(cfg, "null"), "*");
    /* No Origin: not a browser's cross-origin call, no header. */
    assert_null(gw_cors_allow_origin(cfg, NULL));
    gw_config_free(cfg);

    /* auth = "none" has no clients: "*" is fine. */
    cfg = load_ok("auth = \"none\";\ncors = { allow_origins = [ \"*\" ]; };\n");
    assert_true(cfg->cors.any);
    gw_config_free(cfg);
}

static void test_client_origins(void **state)
{
    struct gw_config *cfg = load_ok(
        "cors = { allow_origins = [ \"https://crm.example.com\",\n"
        "                           \"https://ops.example.com\" ]; };\n"
        "clients = ( { name = \"crm\"; token_sha256 = \"" HASH_A "\"; routes = [ \"*\" ];\n"
        "              origins = [ \"https://crm.example.com\" ]; },\n"
        "            { name = \"any\"; token_sha256 = \"" HASH_B "\"; routes = [ \"*\" ]; } );\n");
    const struct gw_client *crm = &cfg->auth.clients[0];
    const struct gw_client *any = &cfg->auth.clients[1];

    (void)state;
    assert_int_equal(crm->origins.n, 1);
    assert_string_equal(crm->origins.v[0], "https://crm.example.com");
    assert_int_equal(any->origins.n, 0);
    assert_true(gw_cors_client_allows(crm, "https://crm.example.com"));
    assert_false(gw_cors_client_allows(crm, "https://ops.example.com"));
    assert_false(gw_cors_client_allows(crm, "https://evil.example"));
    /* Several Origin headers name none: refused for a client with origins only. */
    assert_false(gw_cors_client_allows(crm, NULL));
    assert_true(gw_cors_client_allows(any, "https://ops.example.com"));
    assert_true(gw_cors_client_allows(any, "https://evil.example"));
    assert_true(gw_cors_client_allows(any, NULL));
    gw_config_free(cfg);
}

static void test_group_problems(void **state)
{
    (void)state;
    expect_problem("cors = { max_age_s = 60; };\n",
                   ":1: cors: has no allow_origins: list the origins of the browser apps that "
                   "call hcgw (allow_origins = [ \"https://crm.example.com\" ];), or remove the "
                   "group\n");
    expect_problem("cors = { };\n", ":1: cors: has no allow_origins: list the origins of the "
                                    "browser apps that call hcgw (allow_origins = [ "
                                    "\"https://crm.example.com\" ];), or remove the group\n");
    expect_problem("cors = { allow_origins = [ ]; };\n",
                   ":1: cors.allow_origins: must list 1 to 64 origins\n");
    expect_problem("cors = { allow_origins = \"https://crm.example.com\"; };\n",
                   ":1: cors.allow_origins: expected a list of strings: [ "
                   "\"https://crm.example.com\" ]\n");
    expect_problem("cors = { allow_origins = [ 1 ]; };\n",
                   ":1: cors.allow_origins: expected strings\n");
    expect_problem("cors = { allow_origins = [ \"https://crm.example.com/\" ]; };\n",
                   ":1: cors.allow_origins: \"https://crm.example.com/\" must be "
                   "scheme://host[:port] only, as browsers send an origin: no user, path, query "
                   "or trailing slash\n");
    expect_problem("cors = { allow_origins = [ \"https://a.example\",\n"
                   "                           \"https://a.example\" ]; };\n",
                   ":2: cors.allow_origins: \"https://a.example\" is listed twice\n");
    expect_problem("cors = { allow_origins = [ \"*\", \"https://a.example\" ]; };\n",
                   ":1: cors.allow_origins: \"*\" must stand alone: it already allows every "
                   "origin\n");
    expect_problem("cors = { allow_origins = [ \"https://a.example\" ]; max_age_s = 86401; };\n",
                   ":1: cors.max_age_s: must be between 0 and 86400\n");
    expect_problem("cors = { allow_origins = [ \"https://a.example\" ];\n"
                   "         allow_origin = [ \"https://b.example\" ]; };\n",
                   ":2: cors.allow_origin: unknown key\n");
    expect_problem("cors = 1;\n", ":1: cors: expected a group\n");
}

static void test_star_refused_with_clients(void **state)
{
    (void)state;
    expect_problem("cors = { allow_origins = [ \"*\" ]; };\n"
                   "clients = ( { name = \"a\"; token_sha256 = \"" HASH_A "\"; "
                   "routes = [ \"*\" ]; } );\n",
                   ":1: cors.allow_origins: \"*\" is refused while clients are configured: a "
                   "page of any site could then call hcgw with a client's token; list the "
                   "origins of the browser apps\n");
}

static void test_client_origin_problems(void **state)
{
    (void)state;
    expect_problem("clients = ( { name = \"a\"; token_sha256 = \"" HASH_A "\"; "
                   "routes = [ \"*\" ];\n"
                   "              origins = [ \"https://crm.example.com\" ]; } );\n",
                   ":2: clients[0].origins: needs the cors group: a client's origins narrow "
                   "cors.allow_origins\n");
    expect_problem("cors = { allow_origins = [ \"https://crm.example.com\" ]; };\n"
                   "clients = ( { name = \"a\"; token_sha256 = \"" HASH_A "\"; "
                   "routes = [ \"*\" ];\n"
                   "              origins = [ \"https://crm.example.com\",\n"
                   "                          \"https://ops.example.com\" ]; } );\n",
                   ":4: clients[0].origins: \"https://ops.example.com\" is not in "
                   "cors.allow_origins: a client's origins narrow that list\n");
    expect_problem("cors = { allow_origins = [ \"https://crm.example.com\" ]; };\n"
                   "clients = ( { name = \"a\"; token_sha256 = \"" HASH_A "\"; "
                   "routes = [ \"*\" ];\n"
                   "              origins = [ \"*\" ]; } );\n",
                   ":3: clients[0].origins: \"*\" must start with https:// or http:// in lower "
                   "case, as browsers send an origin (not \"null\", not a file: page)\n");
    expect_problem("cors = { allow_origins = [ \"https://crm.example.com\" ]; };\n"
                   "clients = ( { name = \"a\"; token_sha256 = \"" HASH_A "\"; "
                   "routes = [ \"*\" ];\n"
                   "              origins = [ ]; } );\n",
                   ":3: clients[0].origins: must list 1 to 64 origins\n");
}

static void test_list_bound(void **state)
{
    char text[TEXT_BYTES];
    size_t used;

    (void)state;
    used = (size_t)snprintf(text, sizeof text, "cors = { allow_origins = [");
    for (int i = 0; i <= GW_MAX_CORS_ORIGINS; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, "%s\"https://h%d.example\"",
                                 i ? ", " : " ", i);
    snprintf(text + used, sizeof text - used, " ]; };\n");
    expect_problem(text, ":1: cors.allow_origins: must list 1 to 64 origins\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origins_accepted),
        cmocka_unit_test(test_origins_refused),
        cmocka_unit_test(test_origin_length),
        cmocka_unit_test(test_preflight_methods),
        cmocka_unit_test(test_no_group_no_cors),
        cmocka_unit_test(test_reference_example),
        cmocka_unit_test(test_group_read),
        cmocka_unit_test(test_allow_origin_exact),
        cmocka_unit_test(test_star),
        cmocka_unit_test(test_client_origins),
        cmocka_unit_test(test_group_problems),
        cmocka_unit_test(test_star_refused_with_clients),
        cmocka_unit_test(test_client_origin_problems),
        cmocka_unit_test(test_list_bound),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}

/*
 * Unit tests of auth.c and of the callers keys in config.c: SHA-256 against published vectors,
 * hex hashes, route entries ("tag_put", "GET /contacts/{id}", "*"), X-Forwarded-Client-Cert
 * parsing, identifying a request by token or mesh identity, the write-route list, the token
 * tool, and every problem a clients list can have, with its FILE:LINE: key: reason line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/auth.h"
#include "hcgw/tls.h"
#include "hcgw/config.h"
#include "hcgw/router.h"
#include "hcgw/text.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/tmpdir.h"

/* A client's token in these tests; the configs hold its SHA-256 (computed by hash_hex). */
#define BILLING_TOKEN "billing-token"

static int group_setup(void **state)
{
    (void)state;
    return tmpdir_make("auth");
}

static void write_file(const char *name, const char *text, char *path, size_t pathsz)
{
    tmpdir_write(name, text, strlen(text), path, pathsz);
}

static void hash_hex(const char *token, char out[GW_SHA256_HEX + 1])
{
    unsigned char h[GW_SHA256_BYTES];

    assert_int_equal(gw_auth_sha256(token, strlen(token), h), 0);
    gw_text_hex_encode(h, sizeof(h), out);
}

/* Load @p text, which must be accepted. */
static struct gw_config *load_ok(const char *text)
{
    char path[PATH_MAX];
    char *errors = NULL;
    struct gw_config *cfg;

    write_file("ok.conf", text, path, sizeof path);
    cfg = gw_config_load(path, &errors);
    if (errors)
        print_error("unexpected problems:\n%s", errors);
    assert_null(errors);
    assert_non_null(cfg);
    return cfg;
}

/* Load @p text, which must be refused with exactly @p expected ("LINE: key: reason\n"...). */
static void expect_problems(const char *text, const char *expected)
{
    char path[PATH_MAX];
    char want[4 * PATH_MAX + 8192];
    char *errors = NULL;
    const char *e = expected;
    size_t w = 0;
    struct gw_config *cfg;

    write_file("bad.conf", text, path, sizeof path);
    cfg = gw_config_load(path, &errors);
    assert_null(cfg);
    assert_non_null(errors);
    /* Every expected line gets the file's path in front. */
    while (*e) {
        const char *nl = strchr(e, '\n');
        size_t n = nl ? (size_t)(nl - e) + 1 : strlen(e);
        int k = snprintf(want + w, sizeof want - w, "%s:%.*s", path, (int)n, e);

        assert_true(k > 0 && (size_t)k < sizeof want - w);
        w += (size_t)k;
        e += n;
    }
    if (strcmp(errors, want) != 0)
        print_error("expected:\n%s\ngot:\n%s", want, errors);
    assert_string_equal(errors, want);
    free(errors);
}

/* ---- SHA-256 ---- */

static void test_sha256_vectors(void **state)
{
    /* FIPS 180-2 examples, and the empty string. */
    static const struct {
        const char *in;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"The quick brown fox jumps over the lazy dog",
         "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"},
    };
    char hex[GW_SHA256_HEX + 1];
    unsigned char h[GW_SHA256_BYTES];
    char *million;

    (void)state;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        hash_hex(v[i].in, hex);
        assert_string_equal(hex, v[i].hex);
    }
    million = malloc(1000000);
    assert_non_null(million);
    memset(million, 'a', 1000000);
    assert_int_equal(gw_auth_sha256(million, 1000000, h), 0);
    gw_text_hex_encode(h, sizeof h, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

static void test_parse_hex(void **state)
{
    unsigned char h[GW_SHA256_BYTES], g[GW_SHA256_BYTES];
    const char *lower = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const char *upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
    char hex[GW_SHA256_HEX + 1];

    (void)state;
    assert_int_equal(gw_auth_parse_sha256_hex(lower, strlen(lower), h), 0);
    gw_text_hex_encode(h, sizeof h, hex);
    assert_string_equal(hex, lower);
    assert_int_equal(gw_auth_parse_sha256_hex(upper, strlen(upper), g), 0);
    assert_memory_equal(h, g, sizeof h);
    assert_int_equal(gw_auth_parse_sha256_hex(lower, 63, h), -1);
    assert_int_equal(gw_auth_parse_sha256_hex("", 0, h), -1);
    assert_int_equal(gw_auth_parse_sha256_hex(
                         "ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 64, h),
                     -1);
    assert_int_equal(gw_auth_parse_sha256_hex(
                         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a ", 64, h),
                     -1);
}

/* ---- routes ---- */

static void test_route_entries(void **state)
{
    uint64_t m = 0;
    size_t n = 0;
    const struct gw_route *t = gw_router_table(&n);

    (void)state;
    assert_int_equal(gw_auth_parse_route("tag_put", &m), 0);
    assert_true(m == (uint64_t)1 << GW_ROUTE_TAG_PUT);
    assert_int_equal(gw_auth_parse_route("GET /contacts/{id}", &m), 0);
    assert_true(m == ((uint64_t)1 << GW_ROUTE_TAG_PUT | (uint64_t)1 << GW_ROUTE_CONTACT_GET));
    /* Every row can be named both ways, and both name the same route. */
    for (size_t i = 0; i < n; i++) {
        char spec[128];
        uint64_t a = 0, b = 0;
        int want = gw_auth_route_public(&t[i]) ? -2 : 0;

        snprintf(spec, sizeof spec, "%s %s", t[i].method, t[i].pattern);
        assert_int_equal(gw_auth_parse_route(t[i].name, &a), want);
        assert_int_equal(gw_auth_parse_route(spec, &b), want);
        assert_true(a == b);
        if (want == 0)
            assert_true(a == (uint64_t)1 << t[i].id);
    }
    /* Unknown entries change nothing. */
    m = 0;
    assert_int_equal(gw_auth_parse_route("tag_putt", &m), -1);
    assert_int_equal(gw_auth_parse_route("get /contacts/{id}", &m), -1);
    assert_int_equal(gw_auth_parse_route("GET  /contacts/{id}", &m), -1);
    assert_int_equal(gw_auth_parse_route("GET /contacts/1568834", &m), -1);
    assert_int_equal(gw_auth_parse_route("PUT /contacts/{id}", &m), -1);
    assert_int_equal(gw_auth_parse_route("", &m), -1);
    assert_int_equal(gw_auth_parse_route("**", &m), -1);
    assert_int_equal(gw_auth_parse_route("healthz", &m), -2);
    assert_int_equal(gw_auth_parse_route("GET /metrics", &m), -2);
    assert_true(m == 0);
    /* "*" is every route that needs a credential, and none that does not. */
    assert_int_equal(gw_auth_parse_route("*", &m), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal((m >> t[i].id) & 1, gw_auth_route_public(&t[i]) ? 0 : 1);
}

static void test_allows(void **state)
{
    struct gw_client c = {0};

    (void)state;
    assert_int_equal(gw_auth_parse_route("tag_put", &c.routes), 0);
    assert_int_equal(gw_auth_parse_route("DELETE /contacts/{id}/tags/{name}", &c.routes), 0);
    assert_true(gw_auth_allows(&c, gw_router_get(GW_ROUTE_TAG_PUT)));
    assert_true(gw_auth_allows(&c, gw_router_get(GW_ROUTE_TAG_DELETE)));
    assert_false(gw_auth_allows(&c, gw_router_get(GW_ROUTE_CONTACT_GET)));
    assert_false(gw_auth_allows(&c, gw_router_get(GW_ROUTE_CONTACT_DELETE)));
    assert_false(gw_auth_allows(NULL, gw_router_get(GW_ROUTE_TAG_PUT)));
    assert_false(gw_auth_allows(&c, NULL));
}

static void test_public_and_write_routes(void **state)
{
    static const enum gw_route_id writes[] = {
        GW_ROUTE_TAG_PUT, GW_ROUTE_TAG_DELETE, GW_ROUTE_TAGS_ADD, GW_ROUTE_TAGS_REMOVE,
        GW_ROUTE_CONTACT_PATCH, GW_ROUTE_BLOCK, GW_ROUTE_UNBLOCK, GW_ROUTE_CONTACT_DELETE,
        GW_ROUTE_CONTACT_CREATE,
    };
    size_t n = 0;
    const struct gw_route *t = gw_router_table(&n);

    (void)state;
    for (size_t i = 0; i < n; i++) {
        bool write = false;

        for (size_t j = 0; j < sizeof writes / sizeof writes[0]; j++)
            write = write || t[i].id == writes[j];
        assert_int_equal(gw_auth_route_is_write(&t[i]), write);
    }
    assert_true(gw_auth_route_public(gw_router_get(GW_ROUTE_HEALTHZ)));
    assert_true(gw_auth_route_public(gw_router_get(GW_ROUTE_READYZ)));
    assert_true(gw_auth_route_public(gw_router_get(GW_ROUTE_METRICS)));
    assert_false(gw_auth_route_public(gw_router_get(GW_ROUTE_CONTACT_GET)));
    assert_false(gw_auth_route_public(NULL));
    assert_false(gw_auth_route_is_write(NULL));
}

/* ---- XFCC ---- */

static void test_xfcc(void **state)
{
    char out[128];
    char small[8];

    (void)state;
    assert_int_equal(gw_auth_xfcc_uri("URI=spiffe://cluster.local/ns/a/sa/a", out, sizeof out), 0);
    assert_string_equal(out, "spiffe://cluster.local/ns/a/sa/a");
    /* The usual Envoy shape, with a quoted Subject holding ',' ';' and '='. */
    assert_int_equal(gw_auth_xfcc_uri("By=spiffe://cluster.local/ns/hcgw/sa/hcgw;"
                                      "Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a"
                                      "02dd8de688;Subject=\"CN=billing,OU=a;b=c\";"
                                      "URI=spiffe://cluster.local/ns/billing/sa/billing",
                                      out, sizeof out),
                     0);
    assert_string_equal(out, "spiffe://cluster.local/ns/billing/sa/billing");
    /* The key in any case; a quoted URI with escapes; spaces around separators. */
    assert_int_equal(gw_auth_xfcc_uri("uri=\"spiffe://x/\\\"q\\\\\" ; By=a", out, sizeof out), 0);
    assert_string_equal(out, "spiffe://x/\"q\\");
    assert_int_equal(gw_auth_xfcc_uri(" By=a ; URI=spiffe://x ", out, sizeof out), 0);
    assert_string_equal(out, "spiffe://x");
    /* Only the last element counts: the one the proxy in front of hcgw added. */
    assert_int_equal(gw_auth_xfcc_uri("By=p;URI=spiffe://forged/admin,By=q;URI=spiffe://real/b",
                                      out, sizeof out),
                     0);
    assert_string_equal(out, "spiffe://real/b");
    assert_int_equal(gw_auth_xfcc_uri("URI=spiffe://forged/admin,By=q;Hash=abc", out, sizeof out),
                     -1);
    assert_string_equal(out, "");
    /* A URI inside a quoted value of another key is not a URI. */
    assert_int_equal(gw_auth_xfcc_uri("Subject=\"URI=spiffe://forged\";By=q", out, sizeof out), -1);
    /* Malformed, empty, ambiguous. */
    assert_int_equal(gw_auth_xfcc_uri("", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=\"\"", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=a;URI=b", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=\"spiffe://x", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=\"spiffe://x\"junk", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=spiffe://x\"", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("spiffe://x", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("=x;URI=y", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=a,", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=a,,URI=b", out, sizeof out), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=\"\\", out, sizeof out), -1);
    /* A URI that does not fit is refused, not cut. */
    assert_int_equal(gw_auth_xfcc_uri("URI=spiffe://long", small, sizeof small), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=\"spiffe://long\"", small, sizeof small), -1);
    assert_int_equal(gw_auth_xfcc_uri("URI=1234567", small, sizeof small), 0);
    assert_string_equal(small, "1234567");
    assert_int_equal(gw_auth_xfcc_uri(NULL, out, sizeof out), -1);
}

/* ---- identifying requests ---- */

static struct gw_config *clients_conf(bool trust, const char *header)
{
    char text[4096];
    char billing[GW_SHA256_HEX + 1], admin[GW_SHA256_HEX + 1];

    hash_hex(BILLING_TOKEN, billing);
    hash_hex("admin-token", admin);
    snprintf(text, sizeof text,
             "trust_mesh_identity = %s;\n"
             "%s%s%s"
             "clients = (\n"
             "  { name = \"billing\"; token_sha256 = \"%s\";\n"
             "    identity = \"spiffe://cluster.local/ns/billing/sa/billing\";\n"
             "    routes = [ \"tag_put\", \"GET /contacts/{id}\" ]; },\n"
             "  { name = \"admin\"; token_sha256 = \"%s\"; routes = [ \"*\" ]; },\n"
             "  { name = \"reports\"; token_sha256 = \"%s\"; identity = \"reports-svc\";\n"
             "    routes = [ \"contacts_list\" ]; }\n"
             ");\n",
             trust ? "true" : "false", header ? "mesh_identity_header = \"" : "",
             header ? header : "", header ? "\";\n" : "", billing, admin,
             "0000000000000000000000000000000000000000000000000000000000000001");
    return load_ok(text);
}

static enum gw_auth_outcome identify(const struct gw_config *cfg, const char *authz,
                                     unsigned nauth, const char *ident, unsigned nident,
                                     const char **name)
{
    struct gw_auth_input in = {authz, nauth, ident, nident, NULL};
    const struct gw_client *c = (const struct gw_client *)1;
    enum gw_auth_outcome o = gw_auth_identify(cfg, &in, &c);

    *name = c ? c->name : NULL;
    if (o != GW_AUTH_OK)
        assert_null(c);
    return o;
}

static void test_identify_tokens(void **state)
{
    struct gw_config *cfg = clients_conf(false, NULL);
    const char *name;

    (void)state;
    assert_true(gw_auth_required(cfg));
    assert_int_equal(identify(cfg, "Bearer " BILLING_TOKEN, 1, NULL, 0, &name), GW_AUTH_OK);
    assert_string_equal(name, "billing");
    assert_int_equal(identify(cfg, "Bearer admin-token", 1, NULL, 0, &name), GW_AUTH_OK);
    assert_string_equal(name, "admin");
    /* The scheme in any case, several spaces. */
    assert_int_equal(identify(cfg, "bearer   " BILLING_TOKEN, 1, NULL, 0, &name), GW_AUTH_OK);
    assert_string_equal(name, "billing");
    assert_int_equal(identify(cfg, "BEARER admin-token", 1, NULL, 0, &name), GW_AUTH_OK);
    /* Wrong tokens: near misses are just wrong. */
    assert_int_equal(identify(cfg, "Bearer billing-toke", 1, NULL, 0, &name), GW_AUTH_BAD_TOKEN);
    assert_int_equal(identify(cfg, "Bearer billing-tokenx", 1, NULL, 0, &name),
                     GW_AUTH_BAD_TOKEN);
    assert_int_equal(identify(cfg, "Bearer Billing-token", 1, NULL, 0, &name), GW_AUTH_BAD_TOKEN);
    /* The stored hash is not a token. */
    {
        char hex[GW_SHA256_HEX + 8];

        snprintf(hex, sizeof hex, "Bearer ");
        hash_hex(BILLING_TOKEN, hex + 7);
        assert_int_equal(identify(cfg, hex, 1, NULL, 0, &name), GW_AUTH_BAD_TOKEN);
    }
    /* Malformed: other schemes, no token, spaces inside, two headers. */
    assert_int_equal(identify(cfg, "Basic YmlsbGluZzp4", 1, NULL, 0, &name), GW_AUTH_MALFORMED);
    assert_int_equal(identify(cfg, BILLING_TOKEN, 1, NULL, 0, &name), GW_AUTH_MALFORMED);
    assert_int_equal(identify(cfg, "Bearer", 1, NULL, 0, &name), GW_AUTH_MALFORMED);
    assert_int_equal(identify(cfg, "Bearer ", 1, NULL, 0, &name), GW_AUTH_MALFORMED);
    assert_int_equal(identify(cfg, "Bearer" BILLING_TOKEN, 1, NULL, 0, &name), GW_AUTH_MALFORMED);
    assert_int_equal(identify(cfg, "Bearer a b", 1, NULL, 0, &name), GW_AUTH_MALFORMED);
    assert_int_equal(identify(cfg, "Bearer \x01x", 1, NULL, 0, &name), GW_AUTH_MALFORMED);
    assert_int_equal(identify(cfg, "Bearer " BILLING_TOKEN, 2, NULL, 0, &name), GW_AUTH_MALFORMED);
    {
        char big[GW_MAX_TOKEN_BYTES + 16];

        memcpy(big, "Bearer ", 7);
        memset(big + 7, 'a', GW_MAX_TOKEN_BYTES + 1);
        big[7 + GW_MAX_TOKEN_BYTES + 1] = '\0';
        assert_int_equal(identify(cfg, big, 1, NULL, 0, &name), GW_AUTH_MALFORMED);
        big[7 + GW_MAX_TOKEN_BYTES] = '\0';
        assert_int_equal(identify(cfg, big, 1, NULL, 0, &name), GW_AUTH_BAD_TOKEN);
    }
    /* Nothing at all; and with mesh trust off an identity header is no credential. */
    assert_int_equal(identify(cfg, NULL, 0, NULL, 0, &name), GW_AUTH_NO_CREDENTIAL);
    assert_int_equal(identify(cfg, NULL, 0, "URI=spiffe://cluster.local/ns/billing/sa/billing", 1,
                              &name),
                     GW_AUTH_NO_CREDENTIAL);
    gw_config_free(cfg);
}

static void test_identify_mesh(void **state)
{
    struct gw_config *cfg = clients_conf(true, NULL);
    const char *name;

    (void)state;
    assert_string_equal(cfg->auth.mesh_identity_header, GW_XFCC_HEADER);
    assert_int_equal(identify(cfg, NULL, 0,
                              "By=spiffe://cluster.local/ns/hcgw/sa/hcgw;Hash=ab;"
                              "URI=spiffe://cluster.local/ns/billing/sa/billing",
                              1, &name),
                     GW_AUTH_OK);
    assert_string_equal(name, "billing");
    assert_int_equal(identify(cfg, NULL, 0, "URI=spiffe://cluster.local/ns/other/sa/other", 1,
                              &name),
                     GW_AUTH_UNKNOWN_IDENTITY);
    assert_int_equal(identify(cfg, NULL, 0, "By=x;Hash=y", 1, &name), GW_AUTH_BAD_IDENTITY);
    assert_int_equal(identify(cfg, NULL, 0, "URI=spiffe://cluster.local/ns/billing/sa/billing", 2,
                              &name),
                     GW_AUTH_BAD_IDENTITY);
    /* XFCC carries the URI, not a bare value. */
    assert_int_equal(identify(cfg, NULL, 0, "spiffe://cluster.local/ns/billing/sa/billing", 1,
                              &name),
                     GW_AUTH_BAD_IDENTITY);
    /* A token, when present, decides alone. */
    assert_int_equal(identify(cfg, "Bearer admin-token", 1,
                              "URI=spiffe://cluster.local/ns/billing/sa/billing", 1, &name),
                     GW_AUTH_OK);
    assert_string_equal(name, "admin");
    assert_int_equal(identify(cfg, "Bearer wrong", 1,
                              "URI=spiffe://cluster.local/ns/billing/sa/billing", 1, &name),
                     GW_AUTH_BAD_TOKEN);
    gw_config_free(cfg);

    /* Another header: its whole value is the identity. */
    cfg = clients_conf(true, "X-Client-Id");
    assert_string_equal(cfg->auth.mesh_identity_header, "x-client-id");
    assert_int_equal(identify(cfg, NULL, 0, "reports-svc", 1, &name), GW_AUTH_OK);
    assert_string_equal(name, "reports");
    assert_int_equal(identify(cfg, NULL, 0, "spiffe://cluster.local/ns/billing/sa/billing", 1,
                              &name),
                     GW_AUTH_OK);
    assert_string_equal(name, "billing");
    assert_int_equal(identify(cfg, NULL, 0, "URI=reports-svc", 1, &name),
                     GW_AUTH_UNKNOWN_IDENTITY);
    assert_int_equal(identify(cfg, NULL, 0, "reports svc", 1, &name), GW_AUTH_BAD_IDENTITY);
    assert_int_equal(identify(cfg, NULL, 0, "", 1, &name), GW_AUTH_BAD_IDENTITY);
    gw_config_free(cfg);
}

/* A client certificate's names, as gw_tls_peer_get would find them. */
static enum gw_auth_outcome by_cert(const struct gw_config *cfg, const char *authz,
                                    const char *ident, const char *const *names, unsigned n,
                                    bool unreadable, const char **name)
{
    struct gw_tls_peer peer;
    struct gw_auth_input in = {authz, authz ? 1 : 0, ident, ident ? 1 : 0, &peer};
    const struct gw_client *c = (const struct gw_client *)1;
    enum gw_auth_outcome o;

    memset(&peer, 0, sizeof peer);
    peer.presented = true;
    peer.unreadable = unreadable;
    peer.count = n;
    for (unsigned i = 0; i < n; i++)
        peer.names[i] = names[i];
    o = gw_auth_identify(cfg, &in, &c);
    *name = c ? c->name : NULL;
    if (o != GW_AUTH_OK)
        assert_null(c);
    return o;
}

static void test_identify_certificate(void **state)
{
    static const char *const billing[] = {"billing.internal",
                                          "spiffe://cluster.local/ns/billing/sa/billing"};
    static const char *const two[] = {"spiffe://cluster.local/ns/billing/sa/billing",
                                      "reports-svc"};
    static const char *const same_twice[] = {"reports-svc", "reports-svc"};
    static const char *const nobody[] = {"spiffe://cluster.local/ns/other/sa/other"};
    struct gw_config *cfg = clients_conf(true, "X-Client-Id");
    const char *name;

    (void)state;
    /* Any of its URI or DNS names may be a client's identity. */
    assert_int_equal(by_cert(cfg, NULL, NULL, billing, 2, false, &name), GW_AUTH_OK);
    assert_string_equal(name, "billing");
    assert_int_equal(by_cert(cfg, NULL, NULL, same_twice, 2, false, &name), GW_AUTH_OK);
    assert_string_equal(name, "reports");
    /* Names of two clients leave the choice to whoever wrote the certificate. */
    assert_int_equal(by_cert(cfg, NULL, NULL, two, 2, false, &name), GW_AUTH_BAD_CERTIFICATE);
    assert_int_equal(by_cert(cfg, NULL, NULL, nobody, 1, false, &name),
                     GW_AUTH_UNKNOWN_CERTIFICATE);
    assert_int_equal(by_cert(cfg, NULL, NULL, NULL, 0, false, &name),
                     GW_AUTH_UNKNOWN_CERTIFICATE);
    assert_int_equal(by_cert(cfg, NULL, NULL, billing, 0, true, &name), GW_AUTH_BAD_CERTIFICATE);
    /* A token decides over a certificate... */
    assert_int_equal(by_cert(cfg, "Bearer admin-token", NULL, billing, 2, false, &name),
                     GW_AUTH_OK);
    assert_string_equal(name, "admin");
    assert_int_equal(by_cert(cfg, "Bearer wrong", NULL, billing, 2, false, &name),
                     GW_AUTH_BAD_TOKEN);
    /* ...and a certificate over the mesh identity header. */
    assert_int_equal(by_cert(cfg, NULL, "reports-svc", nobody, 1, false, &name),
                     GW_AUTH_UNKNOWN_CERTIFICATE);
    assert_int_equal(by_cert(cfg, NULL, "reports-svc", billing, 2, false, &name), GW_AUTH_OK);
    assert_string_equal(name, "billing");
    gw_config_free(cfg);
}

static void test_open_when_no_clients(void **state)
{
    struct gw_config *cfg = load_ok("");
    const char *name;

    (void)state;
    assert_int_equal(cfg->auth.mode, GW_AUTH_MODE_CLIENTS);
    assert_false(cfg->auth.trust_mesh_identity);
    assert_string_equal(cfg->auth.mesh_identity_header, "x-forwarded-client-cert");
    assert_null(cfg->auth.clients);
    assert_int_equal(cfg->auth.nclients, 0);
    assert_false(gw_auth_required(cfg));
    assert_int_equal(identify(cfg, NULL, 0, NULL, 0, &name), GW_AUTH_OPEN);
    assert_int_equal(identify(cfg, "Bearer x", 1, NULL, 0, &name), GW_AUTH_OPEN);
    gw_config_free(cfg);

    cfg = load_ok("auth = \"none\";\nclients = ();\n");
    assert_int_equal(cfg->auth.mode, GW_AUTH_MODE_NONE);
    assert_false(gw_auth_required(cfg));
    gw_config_free(cfg);

    cfg = load_ok("clients = [];\n");
    assert_int_equal(cfg->auth.nclients, 0);
    gw_config_free(cfg);
}

static void test_outcome_names(void **state)
{
    (void)state;
    assert_string_equal(gw_auth_outcome_name(GW_AUTH_NO_CREDENTIAL), "no_credential");
    assert_string_equal(gw_auth_outcome_name(GW_AUTH_MALFORMED), "malformed_authorization");
    assert_string_equal(gw_auth_outcome_name(GW_AUTH_BAD_TOKEN), "bad_token");
    assert_string_equal(gw_auth_outcome_name(GW_AUTH_BAD_IDENTITY), "bad_identity_header");
    assert_string_equal(gw_auth_outcome_name(GW_AUTH_UNKNOWN_IDENTITY), "unknown_identity");
    assert_string_equal(gw_auth_outcome_name(GW_AUTH_BAD_CERTIFICATE), "bad_client_certificate");
    assert_string_equal(gw_auth_outcome_name(GW_AUTH_UNKNOWN_CERTIFICATE),
                        "unknown_client_certificate");
    assert_string_equal(gw_auth_outcome_name((enum gw_auth_outcome)99), "unknown");
}

/* ---- the clients list in the config ---- */

static void test_clients_loaded(void **state)
{
    char path[PATH_MAX], text[PATH_MAX + 1024], hex[GW_SHA256_HEX + 1], fhex[GW_SHA256_HEX + 1];
    struct gw_config *cfg;
    unsigned char h[GW_SHA256_BYTES];

    (void)state;
    hash_hex("file-token", fhex);
    snprintf(text, sizeof text, "%s\r\n", fhex);
    write_file("token.sha256", text, path, sizeof path);
    hash_hex(BILLING_TOKEN, hex);
    /* Upper-case hex is fine; routes as an array or a list. */
    for (size_t i = 0; i < GW_SHA256_HEX; i++)
        hex[i] = (char)(hex[i] >= 'a' ? hex[i] - 'a' + 'A' : hex[i]);
    snprintf(text, sizeof text,
             "clients = (\n"
             "  { name = \"billing\"; token_sha256 = \"%s\"; routes = [ \"tag_put\" ]; },\n"
             "  { name = \"from-file\"; token_file = \"%s\"; routes = ( \"*\" ); }\n"
             ");\n",
             hex, path);
    cfg = load_ok(text);
    assert_int_equal(cfg->auth.nclients, 2);
    assert_string_equal(cfg->auth.clients[0].name, "billing");
    assert_true(cfg->auth.clients[0].has_token);
    assert_int_equal(gw_auth_sha256(BILLING_TOKEN, strlen(BILLING_TOKEN), h), 0);
    assert_memory_equal(cfg->auth.clients[0].token_sha256, h, sizeof h);
    assert_null(cfg->auth.clients[0].identity);
    assert_true(cfg->auth.clients[0].routes == (uint64_t)1 << GW_ROUTE_TAG_PUT);
    assert_string_equal(cfg->auth.clients[1].name, "from-file");
    assert_int_equal(gw_auth_sha256("file-token", 10, h), 0);
    assert_memory_equal(cfg->auth.clients[1].token_sha256, h, sizeof h);
    assert_true(gw_auth_allows(&cfg->auth.clients[1], gw_router_get(GW_ROUTE_CONTACT_DELETE)));
    gw_config_free(cfg);
}

static void test_clients_problems(void **state)
{
    char hex[GW_SHA256_HEX + 1], text[3 * PATH_MAX + 1024], path[PATH_MAX], missing[PATH_MAX + 16];

    (void)state;
    hash_hex(BILLING_TOKEN, hex);
    snprintf(text, sizeof text,
             "clients = (\n"
             "  { name = \"billing\"; token_sha256 = \"%s\";\n"
             "    routes = [ \"tag_putt\", \"GET /contacts/{id}\", \"healthz\" ]; },\n"
             "  { name = \"billing\"; token_sha256 = \"abc\"; routes = [ \"*\" ]; },\n"
             "  { name = \"bad name\"; token_sha256 = \"%s\"; routes = [ ]; colour = 1; },\n"
             "  { name = \"nocred\"; routes = [ \"*\" ]; },\n"
             "  { token_sha256 = 5; },\n"
             "  \"not a group\"\n"
             ");\n",
             hex, hex);
    expect_problems(text,
                    "3: clients[0].routes: unknown route \"tag_putt\": give a route name "
                    "(tag_put), \"METHOD /pattern\" (GET /contacts/{id}) or \"*\"\n"
                    "3: clients[0].routes: \"healthz\" is public: it needs no permission\n"
                    "4: clients[1].token_sha256: must be the 64 hex digits of the token's "
                    "SHA-256 (hcgw token new prints one)\n"
                    "5: clients[2].name: must be 1 to 64 characters of A-Z a-z 0-9 . _ -\n"
                    "5: clients[2].routes: must name at least one route\n"
                    "5: clients[2].colour: unknown key\n"
                    "6: clients[3]: needs a credential: token_sha256, token_file or identity\n"
                    "7: clients[4].token_sha256: expected a string\n"
                    "7: clients[4].name: missing: every client needs a name\n"
                    "7: clients[4].routes: missing: list the routes this client may call, or "
                    "\"*\"\n"
                    /* libconfig dates a scalar by the token after it: the ");" line. */
                    "9: clients[5]: expected a group: { name = \"…\"; token_sha256 = \"…\"; "
                    "routes = [ … ]; }\n"
                    "4: clients[1].name: duplicate client name \"billing\" (also clients[0])\n"
                    "5: clients[2].token_sha256: the same token as clients[0]: give each "
                    "client its own\n");

    /* token_file: unreadable, wrong content, both kinds at once. */
    snprintf(missing, sizeof missing, "%s/none", tmpdir);
    write_file("junk.sha256", "not a hash\n", path, sizeof path);
    snprintf(text, sizeof text,
             "clients = (\n"
             "  { name = \"a\"; token_file = \"%s\"; routes = [ \"*\" ]; },\n"
             "  { name = \"b\"; token_file = \"%s\"; routes = [ \"*\" ]; },\n"
             "  { name = \"c\"; token_sha256 = \"%s\"; token_file = \"%s\"; routes = [ \"*\" ]; }\n"
             ");\n",
             missing, path, hex, path);
    {
        char want[3 * PATH_MAX + 1024];

        snprintf(want, sizeof want,
                 "2: clients[0].token_file: cannot read %s: No such file or directory\n"
                 "3: clients[1].token_file: %s must hold the 64 hex digits of a SHA-256 "
                 "(hcgw token new prints one)\n"
                 "4: clients[2].token_file: %s must hold the 64 hex digits of a SHA-256 "
                 "(hcgw token new prints one)\n"
                 "4: clients[2].token_file: give token_sha256 or token_file, not both\n",
                 missing, path, path);
        expect_problems(text, want);
    }
    /* Not a regular file (a device, a FIFO): refused without reading, so a load never hangs. */
    expect_problems("clients = ( { name = \"a\"; token_file = \"/dev/null\"; "
                    "routes = [ \"*\" ]; } );\n",
                    "1: clients[0].token_file: /dev/null is not a regular file\n");
    expect_problems("clients = ( { name = \"a\"; token_file = \"\"; routes = [ \"*\" ]; } );\n",
                    "1: clients[0].token_file: must not be empty\n");
}

static void test_clients_cross_checks(void **state)
{
    char hex[GW_SHA256_HEX + 1], text[4096];

    (void)state;
    hash_hex(BILLING_TOKEN, hex);
    /* An identity-only client with mesh trust off could never get in; identities unique;
     * auth = "none" with clients is a contradiction. */
    snprintf(text, sizeof text,
             "auth = \"none\";\n"
             "clients = (\n"
             "  { name = \"a\"; identity = \"spiffe://x\"; routes = [ \"*\" ]; },\n"
             "  { name = \"b\"; token_sha256 = \"%s\"; identity = \"spiffe://x\";\n"
             "    routes = [ \"*\" ]; }\n"
             ");\n",
             hex);
    expect_problems(text,
                    "1: auth: is \"none\" but clients are configured: remove one or the other\n"
                    "3: clients[0].identity: neither trust_mesh_identity nor "
                    "listen.tls.client_ca_file is set, so this client could never be "
                    "identified: set one, or give a token\n"
                    "4: clients[1].identity: the same identity as clients[0]\n");
    /* With trust on (given after the list), the identity-only client is fine. */
    snprintf(text, sizeof text,
             "clients = ( { name = \"a\"; identity = \"spiffe://x\"; routes = [ \"*\" ]; } );\n"
             "trust_mesh_identity = true;\n");
    gw_config_free(load_ok(text));
}

static void test_top_level_keys(void **state)
{
    (void)state;
    expect_problems("auth = \"open\";\n"
                    "trust_mesh_identity = \"yes\";\n"
                    "mesh_identity_header = \"Authorization\";\n"
                    "clients = { name = \"a\"; };\n",
                    "1: auth: must be \"clients\" or \"none\"\n"
                    "2: trust_mesh_identity: expected a boolean\n"
                    "3: mesh_identity_header: must not be authorization, which carries the "
                    "bearer token\n"
                    "4: clients: expected a list of groups: "
                    "clients = ( { name = \"…\"; … } );\n");
    expect_problems("mesh_identity_header = \"x client\";\nauth = 1;\n",
                    "1: mesh_identity_header: must be a header name such as \"x-client-id\" "
                    "(byte 2)\n"
                    "2: auth: expected a string\n");
    expect_problems("mesh_identity_header = \"\";\n",
                    "1: mesh_identity_header: must be a header name of 1 to 64 characters\n");
    /* An unknown top-level name is still unknown. */
    expect_problems("client = ();\n", "1: client: unknown key\n");
}

/* ---- the token tool ---- */

static void test_token_new(void **state)
{
    char a[GW_TOKEN_CHARS + 1], b[GW_TOKEN_CHARS + 1];
    unsigned char ha[GW_SHA256_BYTES], hb[GW_SHA256_BYTES], check[GW_SHA256_BYTES];

    (void)state;
    assert_int_equal(gw_auth_token_new(a, ha), 0);
    assert_int_equal(gw_auth_token_new(b, hb), 0);
    assert_int_equal(strlen(a), GW_TOKEN_CHARS);
    for (size_t i = 0; i < GW_TOKEN_CHARS; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                               a[i]));
    assert_string_not_equal(a, b);
    assert_int_equal(gw_auth_sha256(a, strlen(a), check), 0);
    assert_memory_equal(ha, check, sizeof check);
    assert_memory_not_equal(ha, hb, sizeof hb);
}

static void test_client_names(void **state)
{
    char long_name[GW_MAX_CLIENT_NAME + 2];

    (void)state;
    assert_true(gw_auth_valid_client_name("billing"));
    assert_true(gw_auth_valid_client_name("ci.bot_2-x"));
    assert_false(gw_auth_valid_client_name(""));
    assert_false(gw_auth_valid_client_name(NULL));
    assert_false(gw_auth_valid_client_name("a b"));
    assert_false(gw_auth_valid_client_name("a\"b"));
    assert_false(gw_auth_valid_client_name("caf\xc3\xa9"));
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[GW_MAX_CLIENT_NAME] = '\0';
    assert_true(gw_auth_valid_client_name(long_name));
    long_name[GW_MAX_CLIENT_NAME] = 'a';
    long_name[GW_MAX_CLIENT_NAME + 1] = '\0';
    assert_false(gw_auth_valid_client_name(long_name));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_parse_hex),
        cmocka_unit_test(test_route_entries),
        cmocka_unit_test(test_allows),
        cmocka_unit_test(test_public_and_write_routes),
        cmocka_unit_test(test_xfcc),
        cmocka_unit_test(test_identify_tokens),
        cmocka_unit_test(test_identify_mesh),
        cmocka_unit_test(test_identify_certificate),
        cmocka_unit_test(test_open_when_no_clients),
        cmocka_unit_test(test_outcome_names),
        cmocka_unit_test(test_clients_loaded),
        cmocka_unit_test(test_clients_problems),
        cmocka_unit_test(test_clients_cross_checks),
        cmocka_unit_test(test_top_level_keys),
        cmocka_unit_test(test_token_new),
        cmocka_unit_test(test_client_names),
    };

    return cmocka_run_group_tests(tests, group_setup, tmpdir_group_teardown);
}

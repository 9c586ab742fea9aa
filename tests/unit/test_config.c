/*
 * Unit tests of config.c: the reference file and an empty file give the documented defaults,
 * every key is read, and each kind of problem gives its exact "FILE:LINE: key: reason" line,
 * all of them at once. Test files are written to a fresh temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/tmpdir.h"

#define REFERENCE_CONF HCGW_TEST_DATA "/../../conf/hcgw.conf"

/* Room for the expected problems text of one test. */
#define EXPECTED_BYTES 16384

static int group_setup(void **state)
{
    (void)state;
    return tmpdir_make("config");
}

static void write_conf(const char *name, const char *text, char *path, size_t pathsz)
{
    tmpdir_write(name, text, strlen(text), path, pathsz);
}

/* Load @p text, which must be accepted. The caller frees the result. */
static struct gw_config *load_ok(const char *text)
{
    char path[PATH_MAX];
    char *errors = NULL;
    struct gw_config *cfg;

    write_conf("ok.conf", text, path, sizeof path);
    cfg = gw_config_load(path, &errors);
    if (errors)
        print_error("unexpected problems:\n%s", errors);
    assert_null(errors);
    assert_non_null(cfg);
    return cfg;
}

/*
 * Load the file at @p path and expect exactly the problems in @p expected, given as
 * "LINE: key: reason\n" lines; each gets "PATH:" in front.
 */
static void expect_problems_at(const char *path, const char *expected)
{
    char want[EXPECTED_BYTES];
    size_t used = 0;
    char *errors = NULL;
    struct gw_config *cfg;

    for (const char *line = expected; *line;) {
        const char *nl = strchr(line, '\n');
        int n;

        assert_non_null(nl);
        n = snprintf(want + used, sizeof want - used, "%s:%.*s\n", path, (int)(nl - line), line);
        assert_true(n > 0 && (size_t)n < sizeof want - used);
        used += (size_t)n;
        line = nl + 1;
    }
    want[used] = '\0';

    cfg = gw_config_load(path, &errors);
    assert_null(cfg);
    assert_non_null(errors);
    assert_string_equal(errors, want);
    free(errors);
}

static void expect_problems(const char *text, const char *expected)
{
    char path[PATH_MAX];

    write_conf("bad.conf", text, path, sizeof path);
    expect_problems_at(path, expected);
}

static void assert_defaults(const struct gw_config *cfg)
{
    assert_string_equal(cfg->listen.address, "127.0.0.1");
    assert_int_equal(cfg->listen.port, 8080);
    assert_int_equal(cfg->server.workers, 1);
    assert_int_equal(cfg->server.drain_timeout_ms, 10000);
    assert_string_equal(cfg->upstream.base_url, "https://api.helpcrunch.com/v1");
    assert_null(cfg->upstream.api_key);
    assert_null(cfg->upstream.api_key_file);
    assert_int_equal(cfg->upstream.connect_timeout_ms, 2000);
    assert_int_equal(cfg->upstream.timeout_ms, 10000);
    assert_int_equal(cfg->upstream.max_retries, 2);
    assert_int_equal(cfg->upstream.retry_base_ms, 100);
    assert_int_equal(cfg->upstream.retry_max_ms, 2000);
    assert_int_equal(cfg->upstream.retry_after_fallback_s, 10);
    assert_int_equal(cfg->upstream.max_connections, 64);
    assert_int_equal(cfg->upstream.pool_shards, 0);       /* one per 128 connections */
    assert_false(cfg->upstream.propagate_trace);      /* HelpCrunch is a third party */
    assert_int_equal(cfg->upstream.http_version, GW_HTTP_1_1);
    assert_int_equal(cfg->limits.max_body_bytes, 65536);
    assert_int_equal(cfg->limits.max_upstream_body_bytes, 8388608);
    assert_int_equal(cfg->limits.max_connections, 1024);
    assert_int_equal(cfg->limits.max_header_bytes, 16384);
    assert_int_equal(cfg->limits.connection_timeout_ms, 30000);
    assert_int_equal(cfg->limits.max_in_flight, 4096);
    assert_int_equal(cfg->quota.requests_per_minute, 120);
    assert_int_equal(cfg->quota.burst, 10);
    assert_int_equal(cfg->quota.fallback_requests_per_minute, 120); /* 120 / 1 replica */
    assert_null(cfg->redis.url);                                     /* no redis: all local */
    assert_int_equal(cfg->cache.ttl_ms, 10000);
    assert_int_equal(cfg->cache.max_entries, 10000);
    assert_int_equal(cfg->cache.max_bytes, 33554432);
    assert_true(cfg->coalesce.tags);
    assert_true(cfg->compression.gzip);
    assert_int_equal(cfg->compression.min_bytes, 1024);
    assert_int_equal(cfg->compression.level, 1);
    assert_true(cfg->compression.upstream);
    assert_int_equal(cfg->idempotency.ttl_s, 86400);
    assert_int_equal(cfg->idempotency.max_entries, 10000);
    assert_int_equal(cfg->idempotency.max_bytes, 16777216);
    assert_int_equal(cfg->log.level, GW_LOG_INFO);
}

static void test_reference_conf_loads(void **state)
{
    char *errors = NULL;
    struct gw_config *cfg;

    (void)state;
    cfg = gw_config_load(REFERENCE_CONF, &errors);
    if (errors)
        print_error("%s", errors);
    assert_null(errors);
    assert_non_null(cfg);
    /* Every value in the reference file is the default it documents. */
    assert_defaults(cfg);
    assert_string_equal(cfg->path, REFERENCE_CONF);
    gw_config_free(cfg);
}

static void test_empty_file_gives_defaults(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_ok("");
    assert_defaults(cfg);
    gw_config_free(cfg);

    cfg = load_ok("# only a comment\n\n// and another\n/* and a block */\n");
    assert_defaults(cfg);
    gw_config_free(cfg);

    /* Known groups that are empty leave every default too. */
    cfg = load_ok("listen = {};\nserver = {};\nupstream = {};\nlimits = {};\nlog = {};\n");
    assert_defaults(cfg);
    gw_config_free(cfg);
}

static void test_every_key_is_read(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_ok("listen = { address = \"::1\"; port = 0; };\n"
                  "server = { workers = 0; drain_timeout_ms = 0; };\n"
                  "upstream = {\n"
                  "  base_url = \"http://127.0.0.1:9000/api/\";\n"
                  "  api_key_file = \"/run/secrets/key\";\n"
                  "  connect_timeout_ms = 1;\n"
                  "  timeout_ms = 600000;\n"
                  "  max_retries = 10;\n"
                  "  retry_base_ms = 7;\n"
                  "  retry_max_ms = 7;\n"
                  "  retry_after_fallback_s = 3600;\n"
                  "  max_connections = 10000;\n"
                  "  pool_shards = 64;\n"
                  "  propagate_trace = true;\n"
                  "  http_version = \"2\";\n"
                  "};\n"
                  "limits = {\n"
                  "  max_body_bytes = 16777216;\n"
                  "  max_upstream_body_bytes = 1024;\n"
                  "  max_connections = 1;\n"
                  "  max_header_bytes = 4096;\n"
                  "  connection_timeout_ms = 0;\n"
                  "  max_in_flight = 1000000;\n"
                  "};\n"
                  "log = { level = \"debug\"; };\n");
    assert_string_equal(cfg->listen.address, "::1");
    assert_int_equal(cfg->listen.port, 0);
    assert_int_equal(cfg->server.workers, 0);
    assert_int_equal(cfg->server.drain_timeout_ms, 0);
    assert_string_equal(cfg->upstream.base_url, "http://127.0.0.1:9000/api");
    assert_null(cfg->upstream.api_key);
    assert_string_equal(cfg->upstream.api_key_file, "/run/secrets/key");
    assert_int_equal(cfg->upstream.connect_timeout_ms, 1);
    assert_int_equal(cfg->upstream.timeout_ms, 600000);
    assert_int_equal(cfg->upstream.max_retries, 10);
    assert_int_equal(cfg->upstream.retry_base_ms, 7);
    assert_int_equal(cfg->upstream.retry_max_ms, 7);
    assert_int_equal(cfg->upstream.retry_after_fallback_s, 3600);
    assert_int_equal(cfg->upstream.max_connections, 10000);
    assert_int_equal(cfg->upstream.pool_shards, GW_MAX_POOL_SHARDS);
    assert_true(cfg->upstream.propagate_trace);
    assert_int_equal(cfg->upstream.http_version, GW_HTTP_2); /* Debian's libcurl has nghttp2 */
    assert_int_equal(cfg->limits.max_body_bytes, 16777216);
    assert_int_equal(cfg->limits.max_upstream_body_bytes, 1024);
    assert_int_equal(cfg->limits.max_connections, 1);
    assert_int_equal(cfg->limits.max_header_bytes, 4096);
    assert_int_equal(cfg->limits.connection_timeout_ms, 0);
    assert_int_equal(cfg->limits.max_in_flight, 1000000);
    assert_int_equal(cfg->log.level, GW_LOG_DEBUG);
    gw_config_free(cfg);
}

static void test_int64_and_hex_integers(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_ok("listen = { port = 8081L; };\n"
                  "upstream = { max_retries = 0x3; timeout_ms = 20000LL; };\n"
                  "limits = { max_upstream_body_bytes = 0x1000000L; };\n");
    assert_int_equal(cfg->listen.port, 8081);
    assert_int_equal(cfg->upstream.max_retries, 3);
    assert_int_equal(cfg->upstream.timeout_ms, 20000);
    assert_int_equal(cfg->limits.max_upstream_body_bytes, 16777216);
    gw_config_free(cfg);
}

/* The compression group: each key read, and a demanding user can turn both sides off. */
static void test_compression_keys(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_ok("compression = { gzip = false; min_bytes = 0; level = 9; upstream = false; };\n");
    assert_false(cfg->compression.gzip);
    assert_int_equal(cfg->compression.min_bytes, 0);
    assert_int_equal(cfg->compression.level, 9);
    assert_false(cfg->compression.upstream);
    gw_config_free(cfg);
    expect_problems("compression = { gzip = 1; };\n", "1: compression.gzip: expected a boolean\n");
    expect_problems("compression = { brotli = true; };\n", "1: compression.brotli: unknown key\n");
}

static void test_api_key_is_copied(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_ok("upstream = { api_key = \"k3y-From_config.0\"; };\n");
    assert_string_equal(cfg->upstream.api_key, "k3y-From_config.0");
    assert_null(cfg->upstream.api_key_file);
    gw_config_free(cfg);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_problems("listen = {\n"
                    "  port = 8080;\n"
                    "};\n"
                    "upstream = {\n"
                    "  tiemout_ms = 100;\n"
                    "  retry = { base_ms = 1; };\n"
                    "};\n"
                    "foo = 1;\n"
                    "bar = { port = 1; };\n"
                    "x99999999999 = 1;\n",
                    "5: upstream.tiemout_ms: unknown key\n"
                    "6: upstream.retry: unknown key\n"
                    "8: foo: unknown key\n"
                    "9: bar: unknown key\n"
                    "10: x99999999999: unknown key\n");
    /* A key of one group under another is unknown there. */
    expect_problems("listen = { timeout_ms = 5; };\n", "1: listen.timeout_ms: unknown key\n");
}

/*
 * listen.tls is a group inside a group. Its files are read (tests/integration/test_tls.py has
 * real certificates); here only what the table and the walk decide, and a missing file.
 */
static void test_listen_tls_group(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_ok("listen = { port = 1; };\n");
    assert_null(cfg->listen.tls.cert_file);
    assert_null(cfg->listen.tls.creds);
    gw_config_free(cfg);
    expect_problems("listen = {\n  tls = 1;\n};\n", "2: listen.tls: expected a group\n");
    expect_problems("listen = {\n  tls = {\n    cert = \"x\";\n  };\n};\n",
                    "3: listen.tls.cert: unknown key\n"
                    "2: listen.tls: needs cert_file (the certificate chain, PEM) and key_file "
                    "(its private key)\n");
    expect_problems("listen = { tls = { cert_file = \"/c.pem\"; }; };\n",
                    "1: listen.tls: needs cert_file (the certificate chain, PEM) and key_file "
                    "(its private key)\n");
    expect_problems("listen = { tls = { key_file = \"\"; cert_file = \"/c.pem\"; }; };\n",
                    "1: listen.tls.key_file: must not be empty\n");
    expect_problems("listen = { tls = { tls = { cert_file = \"/c.pem\"; }; }; };\n",
                    "1: listen.tls.tls: unknown key\n"
                    "1: listen.tls: needs cert_file (the certificate chain, PEM) and key_file "
                    "(its private key)\n");
    /* The keys belong to the tls group only. */
    expect_problems("listen = { cert_file = \"/c.pem\"; };\n",
                    "1: listen.cert_file: unknown key\n");
    expect_problems("listen = {\n  tls = {\n    cert_file = \"/nonexistent/c.pem\";\n"
                    "    key_file = \"/nonexistent/k.pem\";\n  };\n};\n",
                    "3: listen.tls.cert_file: cannot read /nonexistent/c.pem: No such file or "
                    "directory\n");
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_problems("listen = {\n"
                    "  port = \"8080\";\n"
                    "  address = 127;\n"
                    "};\n"
                    "upstream = {\n"
                    "  timeout_ms = 1.5;\n"
                    "  max_retries = true;\n"
                    "  base_url = [\"https://x\"];\n"
                    "  connect_timeout_ms = 1e3;\n"
                    "  api_key = { a = 1; };\n"
                    "};\n"
                    "log = 5;\n"
                    "server = ( 1 );\n"
                    "limits = { max_body_bytes = [1]; max_in_flight = (1); };\n",
                    "2: listen.port: expected an integer\n"
                    "3: listen.address: expected a string\n"
                    "6: upstream.timeout_ms: expected an integer\n"
                    "7: upstream.max_retries: expected an integer\n"
                    "8: upstream.base_url: expected a string\n"
                    "9: upstream.connect_timeout_ms: expected an integer\n"
                    "10: upstream.api_key: expected a string\n"
                    "12: log: expected a group\n"
                    "13: server: expected a group\n"
                    "14: limits.max_body_bytes: expected an integer\n"
                    "14: limits.max_in_flight: expected an integer\n");
    expect_problems("log = { level = true; };\n", "1: log.level: expected a string\n");
}

/* Each integer key refuses one below its minimum and one above its maximum. */
static void test_out_of_bounds(void **state)
{
    static const struct {
        const char *group, *name;
        long long min, max;
    } bounds[] = {
        {"listen", "port", 0, 65535},
        {"server", "workers", 0, GW_MAX_WORKERS},
        {"server", "drain_timeout_ms", 0, 600000},
        {"upstream", "connect_timeout_ms", 1, 60000},
        {"upstream", "timeout_ms", 1, 600000},
        {"upstream", "max_retries", 0, 10},
        {"upstream", "retry_base_ms", 1, 60000},
        {"upstream", "retry_max_ms", 1, 600000},
        {"upstream", "retry_after_fallback_s", 1, GW_MAX_RETRY_AFTER_S},
        {"upstream", "max_connections", 1, 10000},
        {"upstream", "pool_shards", 0, GW_MAX_POOL_SHARDS},
        {"limits", "max_body_bytes", 1, 16777216},
        {"limits", "max_upstream_body_bytes", 1024, 268435456},
        {"limits", "max_connections", 1, 1000000},
        {"limits", "connection_timeout_ms", 0, 3600000},
        {"limits", "max_in_flight", 1, 1000000},
        {"compression", "min_bytes", 0, 268435456},
        {"compression", "level", 1, 9},
    };
    char text[256], expected[256];

    (void)state;
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        const long long wrong[] = {bounds[i].min - 1, bounds[i].max + 1};

        for (size_t j = 0; j < 2; j++) {
            snprintf(text, sizeof text, "%s = {\n  %s = %lld;\n};\n", bounds[i].group,
                     bounds[i].name, wrong[j]);
            snprintf(expected, sizeof expected, "2: %s.%s: must be between %lld and %lld\n",
                     bounds[i].group, bounds[i].name, bounds[i].min, bounds[i].max);
            expect_problems(text, expected);
        }
    }
    /* Retries are bounded so a misconfigured gateway cannot multiply its load on HelpCrunch. */
    expect_problems("upstream = { max_retries = 11; };\n",
                    "1: upstream.max_retries: must be between 0 and 10\n");
}

/*
 * libconfig 1.5 would read 4294967376 (2^32 + 80) as 80; the loader widens such literals so
 * the bounds check sees the real value.
 */
static void test_big_integers_not_truncated(void **state)
{
    struct gw_config *cfg;

    (void)state;
    expect_problems("listen = { port = 4294967376; };\n",
                    "1: listen.port: must be between 0 and 65535\n");
    expect_problems("listen = { port = -4294967216; };\n",
                    "1: listen.port: must be between 0 and 65535\n");
    expect_problems("listen = { port = 0x100000050; };\n",
                    "1: listen.port: must be between 0 and 65535\n");
    expect_problems("listen = { port = 4294967376L; };\n",
                    "1: listen.port: must be between 0 and 65535\n");
    expect_problems("upstream = { max_retries = 99999999999999999999999; };\n",
                    "1: upstream.max_retries: must be between 0 and 10\n");
    expect_problems("upstream = { max_retries = 0xFFFFFFFF; };\n",
                    "1: upstream.max_retries: must be between 0 and 10\n");
    /* The same digits in comments, strings and names are left alone. */
    cfg = load_ok("# port = 4294967376;\n"
                  "/* 4294967376 */ // 4294967376\n"
                  "upstream = { api_key = \"k4294967376\\\"4294967376\"; max_retries = 3; };\n");
    assert_string_equal(cfg->upstream.api_key, "k4294967376\"4294967376");
    assert_int_equal(cfg->upstream.max_retries, 3);
    gw_config_free(cfg);
}

/* Every trailing slash goes, however many (the config fuzzer found "http://host//" kept one,
 * so that every upstream URL would have held "//"); the root of the origin stays bare. */
static void test_base_url_trailing_slashes(void **state)
{
    static const struct {
        const char *url;
        const char *kept;
    } rows[] = {
        {"http://127.0.0.1:9000/", "http://127.0.0.1:9000"},
        {"http://api.example//", "http://api.example"},
        {"https://api.example/v1///", "https://api.example/v1"},
        {"https://[::1]:8090/v1", "https://[::1]:8090/v1"},
    };
    char text[256];

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct gw_config *cfg;

        snprintf(text, sizeof text,
                 "upstream = { base_url = \"%s\"; allow_insecure_http = true; };\n",
                 rows[i].url);
        cfg = load_ok(text);
        assert_string_equal(cfg->upstream.base_url, rows[i].kept);
        gw_config_free(cfg);
    }
}

static void test_base_url_refused(void **state)
{
    static const struct {
        const char *url, *reason;
    } bad[] = {
        {"ftp://api.helpcrunch.com/v1", "must start with http:// or https://"},
        {"api.helpcrunch.com/v1", "must start with http:// or https://"},
        {"", "must start with http:// or https://"},
        {"https://", "must name a host"},
        {"https:///v1", "must name a host"},
        {"https://:8080/v1", "must name a host"},
        {"https://api.helpcrunch.com/v1?x=1", "must not have a query ('?')"},
        {"https://api.helpcrunch.com/v1?", "must not have a query ('?')"},
        {"https://api.helpcrunch.com/v1#top", "must not have a fragment ('#')"},
        {"https://user:pw@api.helpcrunch.com/v1",
         "must not hold credentials (user@host); the key goes in api_key"},
        {"https://user@api.helpcrunch.com",
         "must not hold credentials (user@host); the key goes in api_key"},
        {"https://api.helpcrunch.com /v1",
         "must not contain spaces, control characters or non-ASCII bytes (byte 27); "
         "percent-encode them"},
        {"https://h/\\tv1",
         "must not contain spaces, control characters or non-ASCII bytes (byte 11); "
         "percent-encode them"},
        {"https://h/v1\\n",
         "must not contain spaces, control characters or non-ASCII bytes (byte 13); "
         "percent-encode them"},
        {"https://h/caf\\xc3\\xa9",
         "must not contain spaces, control characters or non-ASCII bytes (byte 14); "
         "percent-encode them"},
        {"https://h:0/v1", "has a bad port (expected :1 to :65535 after the host)"},
        {"https://h:65536/v1", "has a bad port (expected :1 to :65535 after the host)"},
        {"https://h:/v1", "has a bad port (expected :1 to :65535 after the host)"},
        {"https://h:80a/v1", "has a bad port (expected :1 to :65535 after the host)"},
        {"https://h:1:2/v1", "has a bad port (expected :1 to :65535 after the host)"},
        {"https://[::1/v1", "has a malformed IPv6 host (expected [address])"},
        {"https://[]/v1", "has a malformed IPv6 host (expected [address])"},
        {"https://[::1]x/v1", "has a bad port (expected :1 to :65535 after the host)"},
    };
    char text[512], expected[512];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "upstream = {\n  base_url = \"%s\";\n};\n", bad[i].url);
        snprintf(expected, sizeof expected, "2: upstream.base_url: %s\n", bad[i].reason);
        expect_problems(text, expected);
    }
}

static void test_base_url_length(void **state)
{
    /* "https://h/" and padding: exactly GW_MAX_UPSTREAM_URL / 2 bytes is one too many. */
    const size_t limit = GW_MAX_UPSTREAM_URL / 2;
    char url[GW_MAX_UPSTREAM_URL];
    char text[GW_MAX_UPSTREAM_URL + 64], expected[128];
    struct gw_config *cfg;

    (void)state;
    memset(url, 'a', limit);
    memcpy(url, "https://h/", 10);
    url[limit] = '\0';
    snprintf(text, sizeof text, "upstream = { base_url = \"%s\"; };\n", url);
    snprintf(expected, sizeof expected, "1: upstream.base_url: must be shorter than %zu bytes\n",
             limit);
    expect_problems(text, expected);

    url[limit - 1] = '\0';
    snprintf(text, sizeof text, "upstream = { base_url = \"%s\"; };\n", url);
    cfg = load_ok(text);
    assert_string_equal(cfg->upstream.base_url, url);
    gw_config_free(cfg);
}

static void test_base_url_accepted(void **state)
{
    static const struct {
        const char *given, *stored;
    } good[] = {
        {"https://api.helpcrunch.com/v1/", "https://api.helpcrunch.com/v1"},
        {"https://api.helpcrunch.com/v1", "https://api.helpcrunch.com/v1"},
        {"https://api.helpcrunch.com/", "https://api.helpcrunch.com"},
        {"https://api.helpcrunch.com", "https://api.helpcrunch.com"},
        {"http://127.0.0.1:8081", "http://127.0.0.1:8081"},
        {"HTTPS://Example.COM/V1/", "HTTPS://Example.COM/V1"},
        {"http://[::1]:65535/v1/", "http://[::1]:65535/v1"},
        {"http://[::1]/", "http://[::1]"},
        {"https://h//", "https://h"}, /* all of them: "//" once made "//customers" */
        {"https://h/a%20b", "https://h/a%20b"},
    };
    char text[512];
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(text, sizeof text, "upstream = { base_url = \"%s\"; };\n", good[i].given);
        cfg = load_ok(text);
        assert_string_equal(cfg->upstream.base_url, good[i].stored);
        gw_config_free(cfg);
    }
}

static void test_listen_address(void **state)
{
    static const char *const good[] = {"127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1",
                                       "2001:db8::8:800:200c:417a", "::ffff:10.0.0.1"};
    static const char *const bad[] = {"localhost", "", "1.2.3.4.5", "256.0.0.1", " 127.0.0.1",
                                      "[::1]", "::1%lo", "127.0.0.1:8080"};
    char text[256];
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(text, sizeof text, "listen = { address = \"%s\"; };\n", good[i]);
        cfg = load_ok(text);
        assert_string_equal(cfg->listen.address, good[i]);
        gw_config_free(cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "listen = {\n  address = \"%s\";\n};\n", bad[i]);
        expect_problems(text, "2: listen.address: must be an IPv4 or IPv6 address such as "
                              "127.0.0.1 or ::1\n");
    }
}

static void test_api_key_checks(void **state)
{
    char path[PATH_MAX];
    char *errors = NULL;

    (void)state;
    expect_problems("upstream = {\n"
                    "  api_key = \"k\";\n"
                    "  api_key_file = \"/run/secrets/key\";\n"
                    "};\n",
                    "3: upstream.api_key_file: give api_key or api_key_file, not both\n");
    expect_problems("upstream = {\n  api_key = \"\";\n  api_key_file = \"\";\n};\n",
                    "2: upstream.api_key: must not be empty\n"
                    "3: upstream.api_key_file: must not be empty\n"
                    "3: upstream.api_key_file: give api_key or api_key_file, not both\n");
    expect_problems("upstream = {\n  api_key = \"sekrit value\";\n};\n",
                    "2: upstream.api_key: contains a character that is not visible ASCII at "
                    "byte 7\n");

    /* The reason never quotes the key. */
    write_conf("key.conf", "upstream = { api_key = \"sekrit\\x01value\"; };\n", path,
               sizeof path);
    assert_null(gw_config_load(path, &errors));
    assert_non_null(errors);
    assert_null(strstr(errors, "sekrit"));
    assert_non_null(strstr(errors, "at byte 7"));
    free(errors);
}

static void test_api_key_length(void **state)
{
    char text[4096 + 128];
    char key[4096 + 2];
    struct gw_config *cfg;

    (void)state;
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0'; /* 4097 bytes */
    snprintf(text, sizeof text, "upstream = { api_key = \"%s\"; };\n", key);
    expect_problems(text, "1: upstream.api_key: must be at most 4096 bytes\n");

    key[4096] = '\0';
    snprintf(text, sizeof text, "upstream = { api_key = \"%s\"; };\n", key);
    cfg = load_ok(text);
    assert_int_equal(strlen(cfg->upstream.api_key), 4096);
    gw_config_free(cfg);
}

static void test_log_level(void **state)
{
    static const struct {
        const char *name;
        enum gw_log_level level;
    } levels[] = {
        {"debug", GW_LOG_DEBUG},
        {"info", GW_LOG_INFO},
        {"warn", GW_LOG_WARN},
        {"error", GW_LOG_ERROR},
    };
    char text[128];
    struct gw_config *cfg;
    enum gw_log_level level = GW_LOG_INFO;

    (void)state;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        snprintf(text, sizeof text, "log = { level = \"%s\"; };\n", levels[i].name);
        cfg = load_ok(text);
        assert_int_equal(cfg->log.level, levels[i].level);
        gw_config_free(cfg);

        assert_int_equal(gw_config_parse_level(levels[i].name, &level), 0);
        assert_int_equal(level, levels[i].level);
    }
    expect_problems("log = {\n  level = \"verbose\";\n};\n",
                    "2: log.level: must be one of debug, info, warn, error\n");
    expect_problems("log = { level = \"INFO\"; };\n",
                    "1: log.level: must be one of debug, info, warn, error\n");

    level = GW_LOG_ERROR;
    assert_int_equal(gw_config_parse_level("warning", &level), -1);
    assert_int_equal(gw_config_parse_level("", &level), -1);
    assert_int_equal(gw_config_parse_level("Debug", &level), -1);
    assert_int_equal(gw_config_parse_level(NULL, &level), -1);
    assert_int_equal(level, GW_LOG_ERROR); /* untouched on failure */
}

static void test_retry_order(void **state)
{
    struct gw_config *cfg;

    (void)state;
    expect_problems("upstream = {\n  retry_base_ms = 500;\n  retry_max_ms = 200;\n};\n",
                    "3: upstream.retry_max_ms: must be at least upstream.retry_base_ms (500)\n");
    /* With retry_max_ms at its default, the problem is on retry_base_ms. */
    expect_problems("upstream = {\n  retry_base_ms = 5000;\n};\n",
                    "2: upstream.retry_base_ms: must be at most upstream.retry_max_ms (2000)\n");
    /* A value already refused is not compared again. */
    expect_problems("upstream = {\n  retry_base_ms = 0;\n  retry_max_ms = 50;\n};\n",
                    "2: upstream.retry_base_ms: must be between 1 and 60000\n");
    cfg = load_ok("upstream = { retry_base_ms = 300; retry_max_ms = 300; };\n");
    assert_int_equal(cfg->upstream.retry_base_ms, 300);
    assert_int_equal(cfg->upstream.retry_max_ms, 300);
    gw_config_free(cfg);
}

static void test_syntax_errors(void **state)
{
    char path[PATH_MAX];

    (void)state;
    expect_problems("listen = {\n  port = 8080;\n  address = ;\n};\n",
                    "3: (syntax): syntax error\n");
    expect_problems("listen = {\n  port = 1;\n  port = 2;\n};\n",
                    "3: (syntax): duplicate setting name\n");
    /* libconfig notices an unterminated string at the end of the file, and says so there. */
    expect_problems("upstream = {\n  base_url = \"https://h;\n};\n",
                    "4: (syntax): syntax error\n");
    expect_problems("listen = {\n  port = 1;\n", "3: (syntax): syntax error\n");
    expect_problems("# one file only\n@include \"other.conf\"\n",
                    "2: (syntax): @include is not supported: put every key in this one file\n");

    /* A NUL byte would end libconfig's reading early and hide what follows. */
    tmpdir_write("nul.conf", "listen = {\n  port = 1;\0\n  bogus = 2;\n};\n", 40, path,
                sizeof path);
    expect_problems_at(path, "2: (syntax): the file contains a NUL byte\n");
}

static void test_unreadable_file(void **state)
{
    char path[PATH_MAX];
    char *errors = NULL;

    (void)state;
    snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
    expect_problems_at(path, "0: (file): cannot read: No such file or directory\n");

    /* A directory opens but cannot be read. */
    expect_problems_at(tmpdir, "0: (file): cannot read: Is a directory\n");

    /* A NULL errors pointer is allowed: the caller only learns that loading failed. */
    assert_null(gw_config_load(path, NULL));
    assert_null(gw_config_load(NULL, &errors));
    assert_string_equal(errors, "(null):0: (file): cannot read: no path given\n");
    free(errors);
}

static void test_file_too_large(void **state)
{
    const size_t size = 1024 * 1024 + 1;
    char *text = malloc(size);
    char path[PATH_MAX];
    struct gw_config *cfg;

    (void)state;
    assert_non_null(text);
    /* Comment lines: a valid file, refused for its size alone. */
    for (size_t i = 0; i < size; i++)
        text[i] = (i % 64 == 0) ? '#' : (i % 64 == 63) ? '\n' : 'x';
    tmpdir_write("big.conf", text, size, path, sizeof path);
    expect_problems_at(path, "0: (file): larger than 1048576 bytes\n");

    /* At the bound it is read. */
    tmpdir_write("big.conf", text, size - 1, path, sizeof path);
    cfg = gw_config_load(path, NULL);
    assert_non_null(cfg);
    gw_config_free(cfg);
    free(text);
}

static void test_all_problems_reported(void **state)
{
    (void)state;
    expect_problems("listen = {\n"                                  /* 1 */
                    "  address = \"localhost\";\n"                   /* 2 */
                    "  port = 70000;\n"                              /* 3 */
                    "};\n"                                           /* 4 */
                    "server = { workers = \"4\"; };\n"               /* 5 */
                    "upstream = {\n"                                 /* 6 */
                    "  base_url = \"https://h/v1?x\";\n"             /* 7 */
                    "  api_key = \"k\";\n"                           /* 8 */
                    "  api_key_file = \"/k\";\n"                     /* 9 */
                    "  tiemout_ms = 5;\n"                            /* 10 */
                    "  max_retries = 11;\n"                          /* 11 */
                    "};\n"                                           /* 12 */
                    "limit = { max_body_bytes = 1; };\n"             /* 13 */
                    "log = { level = \"loud\"; };\n",                /* 14 */
                    "2: listen.address: must be an IPv4 or IPv6 address such as 127.0.0.1 or "
                    "::1\n"
                    "3: listen.port: must be between 0 and 65535\n"
                    "5: server.workers: expected an integer\n"
                    "7: upstream.base_url: must not have a query ('?')\n"
                    "10: upstream.tiemout_ms: unknown key\n"
                    "11: upstream.max_retries: must be between 0 and 10\n"
                    "13: limit: unknown key\n"
                    "14: log.level: must be one of debug, info, warn, error\n"
                    "9: upstream.api_key_file: give api_key or api_key_file, not both\n");
}

static void test_problem_count_bounded(void **state)
{
    char text[8192];
    char expected[EXPECTED_BYTES];
    size_t used = 0, eused = 0;

    (void)state;
    used += (size_t)snprintf(text + used, sizeof text - used, "upstream = {\n");
    for (int i = 0; i < 150; i++) {
        used += (size_t)snprintf(text + used, sizeof text - used, "  k%d = 1;\n", i);
        if (i < 100)
            eused += (size_t)snprintf(expected + eused, sizeof expected - eused,
                                      "%d: upstream.k%d: unknown key\n", i + 2, i);
    }
    snprintf(text + used, sizeof text - used, "};\n");
    snprintf(expected + eused, sizeof expected - eused, "0: (more): 50 more problems not shown\n");
    expect_problems(text, expected);
}

static void test_free_null(void **state)
{
    (void)state;
    gw_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_conf_loads),
        cmocka_unit_test(test_compression_keys),
        cmocka_unit_test(test_empty_file_gives_defaults),
        cmocka_unit_test(test_every_key_is_read),
        cmocka_unit_test(test_int64_and_hex_integers),
        cmocka_unit_test(test_api_key_is_copied),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_listen_tls_group),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_out_of_bounds),
        cmocka_unit_test(test_big_integers_not_truncated),
        cmocka_unit_test(test_base_url_trailing_slashes),
        cmocka_unit_test(test_base_url_refused),
        cmocka_unit_test(test_base_url_length),
        cmocka_unit_test(test_base_url_accepted),
        cmocka_unit_test(test_listen_address),
        cmocka_unit_test(test_api_key_checks),
        cmocka_unit_test(test_api_key_length),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_retry_order),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_file_too_large),
        cmocka_unit_test(test_all_problems_reported),
        cmocka_unit_test(test_problem_count_bounded),
        cmocka_unit_test(test_free_null),
    };

    return cmocka_run_group_tests(tests, group_setup, tmpdir_group_teardown);
}

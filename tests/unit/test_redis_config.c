/*
 * Unit tests of the redis group of config.c and of quota.fallback_requests_per_minute: no
 * group means no Redis; every key is read; the URL is parsed into host, port and database and
 * refused, with its exact reason, when it holds credentials, TLS or anything but
 * redis://host[:port][/db]; the password file is read at load (missing, empty, too large,
 * readable by others), its reasons never quote the password; bounds; the fallback rate's
 * derived default. Test files are written to a fresh temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"
#include "hcgw/secret.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/tmpdir.h"

#define REFERENCE_CONF HCGW_TEST_DATA "/../../conf/hcgw.conf"

/* Room for one test's configuration text and its expected problems. */
#define TEXT_BYTES 8192

/* The password the tests' password files hold. */
#define PASSWORD "s3cret-Redis-pw"

static char pw_path[PATH_MAX];

static void write_file(const char *name, const char *text, char *path, size_t pathsz);

static int group_setup(void **state)
{
    (void)state;
    if (tmpdir_make("rcfg") != 0)
        return -1;
    write_file("password", PASSWORD "\n", pw_path, sizeof pw_path);
    return 0;
}

static void write_file(const char *name, const char *text, char *path, size_t pathsz)
{
    tmpdir_write(name, text, strlen(text), path, pathsz);
    assert_int_equal(chmod(path, 0600), 0);
}

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

/* Load @p text and expect exactly @p expected ("LINE: key: reason\n" lines, PATH: added). */
static void expect_problems(const char *text, const char *expected)
{
    char path[PATH_MAX];
    char want[TEXT_BYTES * 2];
    size_t used = 0;
    char *errors = NULL;

    write_file("bad.conf", text, path, sizeof path);
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
    assert_null(gw_config_load(path, &errors));
    assert_non_null(errors);
    assert_string_equal(errors, want);
    assert_null(strstr(errors, PASSWORD));
    free(errors);
}

static void test_no_group_no_redis(void **state)
{
    struct gw_config *cfg;

    (void)state;
    cfg = load_ok("");
    assert_null(cfg->redis.url);
    assert_null(cfg->redis.username);
    assert_null(cfg->redis.password_file);
    assert_null(cfg->redis.password);
    assert_int_equal(cfg->redis.timeout_ms, 50);
    assert_string_equal(cfg->redis.key_prefix, "hcgw:");
    assert_int_equal(cfg->redis.expected_replicas, 1);
    /* One replica: the fallback is the whole rate. */
    assert_int_equal(cfg->quota.fallback_requests_per_minute, 120);
    gw_config_free(cfg);

    /* The reference file documents the group without setting it. */
    cfg = gw_config_load(REFERENCE_CONF, NULL);
    assert_non_null(cfg);
    assert_null(cfg->redis.url);
    assert_int_equal(cfg->quota.fallback_requests_per_minute, 120);
    gw_config_free(cfg);
}

static void test_every_key_is_read(void **state)
{
    char text[TEXT_BYTES];
    struct gw_config *cfg;

    (void)state;
    snprintf(text, sizeof text,
             "quota = { requests_per_minute = 120; };\n"
             "redis = {\n"
             "  url = \"redis://redis.internal:6380/3\";\n"
             "  username = \"hcgw\";\n"
             "  password_file = \"%s\";\n"
             "  timeout_ms = 75;\n"
             "  key_prefix = \"acct-1:hcgw.\";\n"
             "  expected_replicas = 4;\n"
             "};\n",
             pw_path);
    cfg = load_ok(text);
    assert_string_equal(cfg->redis.url, "redis://redis.internal:6380/3");
    assert_string_equal(cfg->redis.host, "redis.internal");
    assert_int_equal(cfg->redis.port, 6380);
    assert_int_equal(cfg->redis.db, 3);
    assert_string_equal(cfg->redis.username, "hcgw");
    assert_string_equal(cfg->redis.password_file, pw_path);
    assert_non_null(cfg->redis.password);
    assert_string_equal(gw_secret_value(cfg->redis.password), PASSWORD);
    assert_int_equal(cfg->redis.timeout_ms, 75);
    assert_string_equal(cfg->redis.key_prefix, "acct-1:hcgw.");
    assert_int_equal(cfg->redis.expected_replicas, 4);
    assert_int_equal(cfg->quota.fallback_requests_per_minute, 30);
    gw_config_free(cfg);
}

static void test_url_accepted(void **state)
{
    static const struct {
        const char *url, *host;
        int port, db;
    } good[] = {
        {"redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0},
        {"redis://127.0.0.1", "127.0.0.1", 6379, 0},
        {"redis://h/", "h", 6379, 0},
        {"REDIS://Redis-1.svc.cluster.local:1/65535", "Redis-1.svc.cluster.local", 1, 65535},
        {"redis://[::1]:7000/2", "::1", 7000, 2},
        {"redis://[fe80::1]", "fe80::1", 6379, 0},
        {"redis://localhost:65535", "localhost", 65535, 0},
    };
    char text[TEXT_BYTES];
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(text, sizeof text, "redis = { url = \"%s\"; };\n", good[i].url);
        cfg = load_ok(text);
        assert_string_equal(cfg->redis.url, good[i].url);
        assert_string_equal(cfg->redis.host, good[i].host);
        assert_int_equal(cfg->redis.port, good[i].port);
        assert_int_equal(cfg->redis.db, good[i].db);
        assert_null(cfg->redis.password);
        gw_config_free(cfg);
    }
}

static void test_url_refused(void **state)
{
    static const struct {
        const char *url, *reason;
    } bad[] = {
        {"http://127.0.0.1:6379", "must start with redis:// (redis://host:6379/0)"},
        {"127.0.0.1:6379", "must start with redis:// (redis://host:6379/0)"},
        {"", "must start with redis:// (redis://host:6379/0)"},
        {"unix:///run/redis.sock", "must start with redis:// (redis://host:6379/0)"},
        {"rediss://h:6379", "rediss:// (TLS) is not supported: use redis:// to a Redis on a "
                            "private network or on this machine"},
        {"redis://hcgw:" PASSWORD "@h:6379/0",
         "must not hold credentials (user:password@): give redis.username and "
         "redis.password_file"},
        {"redis://:" PASSWORD "@h",
         "must not hold credentials (user:password@): give redis.username and "
         "redis.password_file"},
        {"redis://", "must name a host"},
        {"redis:///0", "must name a host"},
        {"redis://:6379", "must name a host"},
        {"redis://h:0", "has a bad port (expected :1 to :65535 after the host)"},
        {"redis://h:65536", "has a bad port (expected :1 to :65535 after the host)"},
        {"redis://h:", "has a bad port (expected :1 to :65535 after the host)"},
        {"redis://h:63a9", "has a bad port (expected :1 to :65535 after the host)"},
        {"redis://h:1:2", "has a bad port (expected :1 to :65535 after the host)"},
        {"redis://[::1]x", "has a bad port (expected :1 to :65535 after the host)"},
        {"redis://h/x", "has a bad database (expected /0 to /65535 after the host)"},
        {"redis://h/65536", "has a bad database (expected /0 to /65535 after the host)"},
        {"redis://h/1/2", "has a bad database (expected /0 to /65535 after the host)"},
        {"redis://h/-1", "has a bad database (expected /0 to /65535 after the host)"},
        {"redis://h/0?timeout=1", "must not have a query ('?') or a fragment ('#')"},
        {"redis://h#x", "must not have a query ('?') or a fragment ('#')"},
        {"redis://[::1", "has a malformed IPv6 host (expected [address])"},
        {"redis://[]", "has a malformed IPv6 host (expected [address])"},
        {"redis://[not-v6]", "has a malformed IPv6 host (expected [address])"},
        {"redis://h%41", "has a host that is not a name or an address (byte 10)"},
        {"redis://h ost", "must not contain spaces, control characters or non-ASCII bytes "
                          "(byte 10)"},
    };
    char text[TEXT_BYTES], expected[TEXT_BYTES];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "redis = {\n  url = \"%s\";\n};\n", bad[i].url);
        snprintf(expected, sizeof expected, "2: redis.url: %s\n", bad[i].reason);
        expect_problems(text, expected);
    }
}

static void test_url_length(void **state)
{
    char url[GW_MAX_REDIS_URL_BYTES + 2];
    char text[TEXT_BYTES];
    struct gw_config *cfg;

    (void)state;
    /* A host of 253 bytes fits; 254 does not. */
    memcpy(url, "redis://", 8);
    memset(url + 8, 'a', GW_MAX_REDIS_HOST_BYTES + 1);
    url[8 + GW_MAX_REDIS_HOST_BYTES + 1] = '\0';
    snprintf(text, sizeof text, "redis = { url = \"%s\"; };\n", url);
    expect_problems(text, "1: redis.url: has a host longer than 253 bytes\n");
    url[8 + GW_MAX_REDIS_HOST_BYTES] = '\0';
    snprintf(text, sizeof text, "redis = { url = \"%s\"; };\n", url);
    cfg = load_ok(text);
    assert_int_equal(strlen(cfg->redis.host), GW_MAX_REDIS_HOST_BYTES);
    gw_config_free(cfg);

    memset(url + 8, 'a', sizeof url - 9);
    url[sizeof url - 1] = '\0'; /* 513 bytes */
    snprintf(text, sizeof text, "redis = { url = \"%s\"; };\n", url);
    expect_problems(text, "1: redis.url: must be at most 512 bytes\n");
}

static void test_group_needs_url(void **state)
{
    char text[TEXT_BYTES];

    (void)state;
    expect_problems("redis = {\n  timeout_ms = 20;\n};\n",
                    "1: redis: has no url: give redis.url, or remove the group to keep the "
                    "quota local\n");
    expect_problems("redis = {};\n", "1: redis: has no url: give redis.url, or remove the "
                                     "group to keep the quota local\n");
    /* A url refused for its own reason is not also missing. */
    expect_problems("redis = {\n  url = \"http://h\";\n};\n",
                    "2: redis.url: must start with redis:// (redis://host:6379/0)\n");
    expect_problems("redis = 1;\n", "1: redis: expected a group\n");
    snprintf(text, sizeof text,
             "redis = {\n  url = \"redis://h\";\n  username = \"hcgw\";\n};\n");
    expect_problems(text, "3: redis.username: needs redis.password_file: an ACL user signs in "
                          "with a password\n");
}

static void test_username_prefix_and_bounds(void **state)
{
    static const struct {
        const char *name;
        long long min, max;
    } bounds[] = {
        {"timeout_ms", 1, GW_MAX_REDIS_TIMEOUT_MS},
        {"expected_replicas", 1, GW_MAX_REPLICAS},
    };
    char text[TEXT_BYTES], expected[TEXT_BYTES];
    char long_name[GW_MAX_REDIS_USERNAME_BYTES + 2];

    (void)state;
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        const long long wrong[] = {bounds[i].min - 1, bounds[i].max + 1};

        for (size_t j = 0; j < 2; j++) {
            snprintf(text, sizeof text, "redis = {\n  url = \"redis://h\";\n  %s = %lld;\n};\n",
                     bounds[i].name, wrong[j]);
            snprintf(expected, sizeof expected, "3: redis.%s: must be between %lld and %lld\n",
                     bounds[i].name, bounds[i].min, bounds[i].max);
            expect_problems(text, expected);
        }
    }
    expect_problems("redis = {\n  url = \"redis://h\";\n  key_prefix = \"hcgw{x}:\";\n};\n",
                    "3: redis.key_prefix: must be 1 to 64 characters of A-Z a-z 0-9 : . _ -\n");
    expect_problems("redis = {\n  url = \"redis://h\";\n  key_prefix = \"\";\n};\n",
                    "3: redis.key_prefix: must be 1 to 64 characters of A-Z a-z 0-9 : . _ -\n");
    expect_problems("redis = {\n  url = \"redis://h\";\n  username = \"a b\";\n};\n",
                    "3: redis.username: must be visible ASCII, without spaces (byte 2)\n");
    memset(long_name, 'u', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    snprintf(text, sizeof text, "redis = {\n  url = \"redis://h\";\n  username = \"%s\";\n};\n",
             long_name);
    expect_problems(text, "3: redis.username: must be 1 to 128 bytes\n");
    expect_problems("quota = {\n  fallback_requests_per_minute = 0;\n};\n",
                    "2: quota.fallback_requests_per_minute: must be between 1 and 1000000\n");
}

static void test_password_file(void **state)
{
    char text[TEXT_BYTES], expected[TEXT_BYTES];
    char path[PATH_MAX], big[GW_MAX_REDIS_PASSWORD_BYTES + 8];
    struct gw_config *cfg;

    (void)state;
    /* Missing. */
    tmpdir_path("no-such-file", path, sizeof path);
    snprintf(text, sizeof text,
             "redis = {\n  url = \"redis://h\";\n  password_file = \"%s\";\n};\n", path);
    snprintf(expected, sizeof expected,
             "3: redis.password_file: %s: cannot open: No such file or directory\n", path);
    expect_problems(text, expected);

    /* Empty, and only a line break. */
    write_file("empty", "\n", path, sizeof path);
    snprintf(text, sizeof text,
             "redis = {\n  url = \"redis://h\";\n  password_file = \"%s\";\n};\n", path);
    snprintf(expected, sizeof expected,
             "3: redis.password_file: %s is empty: it must hold the password\n", path);
    expect_problems(text, expected);

    /* Too large: the longest password, a CRLF, and one byte more. */
    memset(big, 'p', sizeof big - 1);
    big[GW_MAX_REDIS_PASSWORD_BYTES + 3] = '\0';
    write_file("big", big, path, sizeof path);
    snprintf(text, sizeof text,
             "redis = {\n  url = \"redis://h\";\n  password_file = \"%s\";\n};\n", path);
    snprintf(expected, sizeof expected,
             "3: redis.password_file: %s is too large (more than 514 bytes): a password file "
             "holds only the password and one line break\n", path);
    expect_problems(text, expected);

    /* The longest password and its line break are fine. */
    big[GW_MAX_REDIS_PASSWORD_BYTES] = '\n';
    big[GW_MAX_REDIS_PASSWORD_BYTES + 1] = '\0';
    write_file("longest", big, path, sizeof path);
    snprintf(text, sizeof text,
             "redis = { url = \"redis://h\"; password_file = \"%s\"; };\n", path);
    cfg = load_ok(text);
    assert_int_equal(gw_secret_len(cfg->redis.password), GW_MAX_REDIS_PASSWORD_BYTES);
    gw_config_free(cfg);

    /* A space in the password: the reason gives the byte, never the password. */
    write_file("spaced", PASSWORD " x\n", path, sizeof path);
    snprintf(text, sizeof text,
             "redis = {\n  url = \"redis://h\";\n  password_file = \"%s\";\n};\n", path);
    snprintf(expected, sizeof expected,
             "3: redis.password_file: %s: the password contains a character that is not "
             "visible ASCII at byte 16; give the password alone, without spaces, quotes or "
             "extra line breaks\n", path);
    expect_problems(text, expected);

    /* Readable by others: refused with key_file_mode = "refuse", taken with "warn". */
    write_file("open", PASSWORD "\n", path, sizeof path);
    assert_int_equal(chmod(path, 0644), 0);
    snprintf(text, sizeof text,
             "upstream = { key_file_mode = \"refuse\"; };\n"
             "redis = {\n  url = \"redis://h\";\n  password_file = \"%s\";\n};\n", path);
    snprintf(expected, sizeof expected,
             "4: redis.password_file: %s is readable by other users (mode 0644): chmod 600 it, "
             "or set upstream.key_file_mode = \"warn\"\n", path);
    expect_problems(text, expected);
    snprintf(text, sizeof text,
             "redis = { url = \"redis://h\"; password_file = \"%s\"; };\n", path);
    cfg = load_ok(text);
    assert_string_equal(gw_secret_value(cfg->redis.password), PASSWORD);
    gw_config_free(cfg);
}

static void test_fallback_rate(void **state)
{
    static const struct {
        const char *text;
        int fallback;
    } rows[] = {
        {"quota = { requests_per_minute = 120; };\n"
         "redis = { url = \"redis://h\"; expected_replicas = 4; };\n", 30},
        {"quota = { requests_per_minute = 100; };\n"
         "redis = { url = \"redis://h\"; expected_replicas = 3; };\n", 33},
        /* At least 1. */
        {"quota = { requests_per_minute = 5; };\n"
         "redis = { url = \"redis://h\"; expected_replicas = 10; };\n", 1},
        /* The quota off: no fallback either. */
        {"quota = { requests_per_minute = 0; };\n"
         "redis = { url = \"redis://h\"; expected_replicas = 2; };\n", 0},
        /* Given: kept, whatever the replicas. */
        {"quota = { requests_per_minute = 120; fallback_requests_per_minute = 50; };\n"
         "redis = { url = \"redis://h\"; expected_replicas = 4; };\n", 50},
        {"quota = { requests_per_minute = 0; fallback_requests_per_minute = 50; };\n", 50},
    };
    struct gw_config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        cfg = load_ok(rows[i].text);
        assert_int_equal(cfg->quota.fallback_requests_per_minute, rows[i].fallback);
        gw_config_free(cfg);
    }
    expect_problems("quota = {\n  requests_per_minute = 60;\n"
                    "  fallback_requests_per_minute = 61;\n};\n",
                    "3: quota.fallback_requests_per_minute: must be at most "
                    "quota.requests_per_minute (60)\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_group_no_redis),
        cmocka_unit_test(test_every_key_is_read),
        cmocka_unit_test(test_url_accepted),
        cmocka_unit_test(test_url_refused),
        cmocka_unit_test(test_url_length),
        cmocka_unit_test(test_group_needs_url),
        cmocka_unit_test(test_username_prefix_and_bounds),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_fallback_rate),
    };

    return cmocka_run_group_tests(tests, group_setup, tmpdir_group_teardown);
}

/*
 * Unit tests of the secure defaults that config.c and secret.c enforce: plain http to a host
 * that is not loopback is refused unless upstream.allow_insecure_http; upstream.ca_file must
 * name a readable file; upstream.key_file_mode decides whether a key file other users can read
 * is a warning (logged, the key is used) or a refusal; and the loopback test behind both the
 * http rule and hcgw's listen check. Files go to a fresh temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/config.h"
#include "hcgw/log.h"
#include "hcgw/secret.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/tmpdir.h"

#define TEST_KEY "secure-defaults-key-0123456789"

static int group_setup(void **state)
{
    (void)state;
    unsetenv("HCGW_API_KEY");
    unsetenv("HCGW_API_KEY_FILE");
    return tmpdir_make("secure");
}

/* Write @p text to tmpdir/@p name with @p mode; the path goes to @p path. */
static void write_file(const char *name, const char *text, mode_t mode, char *path, size_t pathsz)
{
    tmpdir_write(name, text, strlen(text), path, pathsz);
    assert_int_equal(chmod(path, mode), 0);
}

/* Load @p text as a config file; *errors gets the problems (or NULL). */
static struct gw_config *load(const char *text, char **errors)
{
    char path[PATH_MAX];

    write_file("hcgw.conf", text, 0600, path, sizeof path);
    return gw_config_load(path, errors);
}

static struct gw_config *load_ok(const char *text)
{
    char *errors = NULL;
    struct gw_config *cfg = load(text, &errors);

    if (errors)
        print_error("%s", errors);
    assert_null(errors);
    assert_non_null(cfg);
    return cfg;
}

/* Expect exactly one problem, whose text after "FILE:" is @p tail. */
static void load_fails(const char *text, const char *tail)
{
    char *errors = NULL;
    struct gw_config *cfg = load(text, &errors);
    const char *colon;

    assert_null(cfg);
    assert_non_null(errors);
    colon = strchr(errors, ':');
    assert_non_null(colon);
    assert_string_equal(colon + 1, tail);
    free(errors);
}

static void test_defaults(void **state)
{
    struct gw_config *cfg = load_ok("");

    (void)state;
    assert_false(cfg->upstream.allow_insecure_http);
    assert_null(cfg->upstream.ca_file);
    assert_null(cfg->upstream.proxy);
    assert_int_equal(cfg->upstream.key_file_mode, GW_KEY_FILE_WARN);
    gw_config_free(cfg);
}

/* An egress proxy is scheme://host[:port] and nothing else; the environment's is never used. */
static void test_proxy(void **state)
{
    static const char *const good[] = {"http://egress.internal:3128", "https://10.0.0.1",
                                       "socks5h://[::1]:1080/", "socks5://proxy"};
    static const struct {
        const char *value;
        const char *why;
    } bad[] = {
        {"ftp://proxy:21", "must start with http://, https://, socks5:// or socks5h://"},
        {"proxy:3128", "must start with http://, https://, socks5:// or socks5h://"},
        {"http://", "has no host"},
        {"http://:3128", "has no host"},
        {"http://user:secret@proxy:3128", "must not hold credentials (user:password@)"},
        {"http://proxy:3128/path", "must be scheme://host[:port] only"},
        {"http://proxy:3128?x", "must be scheme://host[:port] only"},
        {"http://pro xy", "must be scheme://host[:port] only"},
    };
    char text[256];
    char tail[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct gw_config *cfg;

        snprintf(text, sizeof text, "upstream = { proxy = \"%s\"; };\n", good[i]);
        cfg = load_ok(text);
        assert_string_equal(cfg->upstream.proxy, good[i]);
        gw_config_free(cfg);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof text, "upstream = { proxy = \"%s\"; };\n", bad[i].value);
        snprintf(tail, sizeof tail, "1: upstream.proxy: %s\n", bad[i].why);
        load_fails(text, tail);
    }
    /* Plain http through a proxy hands it the key, even to a loopback base_url. */
    load_fails("upstream = { base_url = \"http://127.0.0.1:9/v1\";\n"
               "  proxy = \"http://egress.internal:3128\"; };\n",
               "2: upstream.proxy: with an http:// base_url the proxy reads the key in clear; "
               "use https or set upstream.allow_insecure_http = true\n");
    {
        struct gw_config *cfg = load_ok("upstream = { base_url = \"http://127.0.0.1:9/v1\";\n"
                                        "  proxy = \"http://egress.internal:3128\";\n"
                                        "  allow_insecure_http = true; };\n");

        assert_string_equal(cfg->upstream.proxy, "http://egress.internal:3128");
        gw_config_free(cfg);
    }
}

static void test_values_are_read(void **state)
{
    char ca[PATH_MAX];
    char text[PATH_MAX + 256];
    struct gw_config *cfg;

    (void)state;
    write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n", 0644, ca, sizeof ca);
    snprintf(text, sizeof text,
             "upstream = { allow_insecure_http = true; ca_file = \"%s\";\n"
             "             key_file_mode = \"refuse\"; };\n",
             ca);
    cfg = load_ok(text);
    assert_true(cfg->upstream.allow_insecure_http);
    assert_string_equal(cfg->upstream.ca_file, ca);
    assert_int_equal(cfg->upstream.key_file_mode, GW_KEY_FILE_REFUSE);
    gw_config_free(cfg);
}

static void test_bad_values(void **state)
{
    char text[PATH_MAX + 256];
    char dir[PATH_MAX];

    (void)state;
    load_fails("upstream = { key_file_mode = \"ignore\"; };\n",
               "1: upstream.key_file_mode: must be \"warn\" or \"refuse\"\n");
    load_fails("upstream = { allow_insecure_http = 1; };\n",
               "1: upstream.allow_insecure_http: expected a boolean\n");
    load_fails("upstream = {\n  ca_file = \"/nonexistent/ca.pem\"; };\n",
               "2: upstream.ca_file: cannot read /nonexistent/ca.pem: No such file or "
               "directory\n");
    snprintf(dir, sizeof dir, "%s", tmpdir);
    snprintf(text, sizeof text, "upstream = { ca_file = \"%s\"; };\n", dir);
    {
        char expected[PATH_MAX + 128];

        snprintf(expected, sizeof expected,
                 "1: upstream.ca_file: %s is not a regular file (a PEM bundle of CA "
                 "certificates)\n",
                 dir);
        load_fails(text, expected);
    }
}

/* Plain http carries the key in clear: only to this machine, unless allowed on purpose. */
static void test_http_to_a_remote_host_is_refused(void **state)
{
    static const char *const refused[] = {
        "http://api.helpcrunch.com/v1", "HTTP://api.helpcrunch.com", "http://10.0.0.1:8090/v1",
        "http://[2001:db8::1]/v1",      "http://127.0.0.1.nip.io/v1", "http://0.0.0.0:8090",
        "http://[::]/v1",               "http://localhost.example.com/v1",
    };
    static const char *const allowed[] = {
        "http://127.0.0.1:8090/v1", "http://127.1.2.3/v1",       "http://localhost:8090/v1",
        "http://LOCALHOST/v1",      "http://[::1]:8090/v1",      "http://[::ffff:127.0.0.1]/v1",
        "https://api.helpcrunch.com/v1", "https://10.0.0.1/v1",
    };
    char text[512];

    (void)state;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        struct gw_config *cfg;

        snprintf(text, sizeof text, "upstream = {\n  base_url = \"%s\"; };\n", refused[i]);
        load_fails(text, "2: upstream.base_url: http:// to a non-loopback host sends the key in "
                         "clear; use https or set upstream.allow_insecure_http = true\n");
        /* allow_insecure_http, before or after the URL, lets it through. */
        snprintf(text, sizeof text,
                 "upstream = { allow_insecure_http = true; base_url = \"%s\"; };\n", refused[i]);
        cfg = load_ok(text);
        assert_true(gw_config_url_in_clear(cfg->upstream.base_url));
        gw_config_free(cfg);
        snprintf(text, sizeof text,
                 "upstream = { base_url = \"%s\"; allow_insecure_http = true; };\n", refused[i]);
        gw_config_free(load_ok(text));
    }
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        struct gw_config *cfg;

        snprintf(text, sizeof text, "upstream = { base_url = \"%s\"; };\n", allowed[i]);
        cfg = load_ok(text);
        assert_false(gw_config_url_in_clear(cfg->upstream.base_url));
        gw_config_free(cfg);
    }
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(gw_config_is_loopback("127.0.0.1"));
    assert_true(gw_config_is_loopback("127.255.0.9"));
    assert_true(gw_config_is_loopback("::1"));
    assert_true(gw_config_is_loopback("::ffff:127.0.0.1"));
    assert_true(gw_config_is_loopback("localhost"));
    assert_false(gw_config_is_loopback("0.0.0.0"));
    assert_false(gw_config_is_loopback("::"));
    assert_false(gw_config_is_loopback("128.0.0.1"));
    assert_false(gw_config_is_loopback("10.0.0.1"));
    assert_false(gw_config_is_loopback("::ffff:10.0.0.1"));
    assert_false(gw_config_is_loopback("localhost.localdomain"));
    assert_false(gw_config_is_loopback(""));
    assert_false(gw_config_is_loopback(NULL));
    assert_false(gw_config_url_in_clear(NULL));
    assert_true(gw_config_url_in_clear("http://"));
    assert_true(gw_config_url_in_clear("http://[::1"));
}

/* A config as gw_config_load leaves it, with only what secret.c reads. */
static void init_cfg(struct gw_config *cfg, char *key_file, enum gw_key_file_mode mode)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->path = (char *)"/etc/hcgw/test.conf";
    cfg->upstream.api_key_file = key_file;
    cfg->upstream.key_file_mode = mode;
}

/* Load the key from @p path in @p mode; returns what was logged, in @p log. */
static struct gw_secret *load_key(const char *path, enum gw_key_file_mode mode, char **error,
                                  char *log, size_t logsz)
{
    struct gw_config cfg;
    struct gw_secret *s;
    int fd = memfd_create("log", MFD_CLOEXEC);
    struct gw_log *lg;
    ssize_t n;

    assert_true(fd >= 0);
    lg = gw_log_new(fd, GW_LOG_INFO);
    assert_non_null(lg);
    init_cfg(&cfg, (char *)path, mode);
    s = gw_secret_load(&cfg, lg, error);
    gw_log_free(lg);
    n = pread(fd, log, logsz - 1, 0);
    assert_true(n >= 0);
    log[n] = '\0';
    close(fd);
    return s;
}

/* A key file in @p mode that others may read: a warning, or a refusal with "refuse". */
static void expect_shared(const char *path, mode_t mode)
{
    char octal[8];
    char expected[PATH_MAX + 256];
    char log[4096];
    char *error = NULL;
    struct gw_secret *s;

    assert_int_equal(chmod(path, mode), 0);
    snprintf(octal, sizeof octal, "%04o", (unsigned)mode);

    /* warn: the key is used, one warning line names the file and the mode. */
    s = load_key(path, GW_KEY_FILE_WARN, &error, log, sizeof log);
    assert_null(error);
    assert_non_null(s);
    assert_string_equal(gw_secret_value(s), TEST_KEY);
    gw_secret_free(s);
    assert_non_null(strstr(log, "\"level\":\"warn\""));
    assert_non_null(strstr(log, "the key file is readable by other users: chmod 600 it"));
    assert_non_null(strstr(log, path));
    snprintf(expected, sizeof expected, "\"mode\":\"%s\"", octal);
    assert_non_null(strstr(log, expected));
    assert_null(strstr(log, TEST_KEY));
    assert_int_equal(strchr(log, '\n') - log + 1, (long)strlen(log)); /* one line */

    /* refuse: no key, and a reason that says how to fix it. */
    s = load_key(path, GW_KEY_FILE_REFUSE, &error, log, sizeof log);
    assert_null(s);
    assert_non_null(error);
    snprintf(expected, sizeof expected,
             "key file %s (from upstream.api_key_file in /etc/hcgw/test.conf) is readable "
             "by other users (mode %s): chmod 600 it, or set upstream.key_file_mode = "
             "\"warn\"",
             path, octal);
    assert_string_equal(error, expected);
    assert_null(strstr(error, TEST_KEY));
    assert_string_equal(log, "");
    free(error);
}

/* A group no process of these tests is in (chown to it needs root). */
#define FOREIGN_GID 54321

static void test_key_file_modes(void **state)
{
    /* Group read is private while the file's group is the process's own (fsGroup). */
    static const mode_t private_modes[] = {0600, 0400, 0700, 0200 | 0400, 0640, 0440, 0660};
    static const mode_t shared_modes[] = {0644, 0604, 0444, 0666};
    static const mode_t group_modes[] = {0640, 0440, 0660};
    char path[PATH_MAX];
    char log[4096];
    char *error = NULL;
    struct gw_secret *s;

    (void)state;
    write_file("api.key", TEST_KEY "\n", 0600, path, sizeof path);
    assert_int_equal(chown(path, (uid_t)-1, getegid()), 0);
    for (size_t i = 0; i < sizeof private_modes / sizeof private_modes[0]; i++) {
        for (int mode = GW_KEY_FILE_WARN; mode <= GW_KEY_FILE_REFUSE; mode++) {
            assert_int_equal(chmod(path, private_modes[i]), 0);
            s = load_key(path, (enum gw_key_file_mode)mode, &error, log, sizeof log);
            assert_null(error);
            assert_non_null(s);
            assert_string_equal(gw_secret_value(s), TEST_KEY);
            assert_string_equal(log, ""); /* not a word */
            gw_secret_free(s);
        }
    }
    for (size_t i = 0; i < sizeof shared_modes / sizeof shared_modes[0]; i++)
        expect_shared(path, shared_modes[i]);
    /* Another group that may read it shares the key with its members. */
    if (chown(path, (uid_t)-1, FOREIGN_GID) != 0) {
        print_message("not root: the foreign group's modes are not checked\n");
        return;
    }
    for (size_t i = 0; i < sizeof group_modes / sizeof group_modes[0]; i++)
        expect_shared(path, group_modes[i]);
}

/* HCGW_API_KEY_FILE gets the same check, in the mode of the config. */
static void test_env_key_file_mode(void **state)
{
    char path[PATH_MAX];
    char log[4096];
    char *error = NULL;
    struct gw_secret *s;

    (void)state;
    write_file("env.key", TEST_KEY, 0644, path, sizeof path);
    setenv("HCGW_API_KEY_FILE", path, 1);
    s = load_key(NULL, GW_KEY_FILE_REFUSE, &error, log, sizeof log);
    assert_null(s);
    assert_non_null(error);
    assert_non_null(strstr(error, "is readable by other users (mode 0644)"));
    assert_non_null(strstr(error, "(from HCGW_API_KEY_FILE)"));
    free(error);
    error = NULL;
    s = load_key(NULL, GW_KEY_FILE_WARN, &error, log, sizeof log);
    assert_non_null(s);
    assert_non_null(strstr(log, "readable by other users"));
    gw_secret_free(s);
    unsetenv("HCGW_API_KEY_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values_are_read),
        cmocka_unit_test(test_proxy),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_http_to_a_remote_host_is_refused),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_key_file_modes),
        cmocka_unit_test(test_env_key_file_mode),
    };

    return cmocka_run_group_tests(tests, group_setup, tmpdir_group_teardown);
}

/*
 * Unit tests of secret.c: which of the four sources wins, how a key file is read (line
 * endings, size, symbolic links, what is refused), that no error text carries the key, and
 * that redaction masks every occurrence. Key files go to a fresh temporary directory; the
 * environment variables are cleared before each test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hcgw/config.h"
#include "hcgw/secret.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/tmpdir.h"

#define CONF_PATH "/etc/hcgw/test.conf"

/* The longest key secret.h allows. */
#define KEY_MAX 4096

static int group_setup(void **state)
{
    (void)state;
    return tmpdir_make("secret");
}

/* Each test starts with neither environment variable set. */
static int setup(void **state)
{
    (void)state;
    unsetenv("HCGW_API_KEY");
    unsetenv("HCGW_API_KEY_FILE");
    return 0;
}

/* A config as gw_config_load would leave it, with only what secret.c reads. */
static void init_cfg(struct gw_config *cfg, char *api_key, char *api_key_file)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->path = CONF_PATH;
    cfg->upstream.api_key = api_key;
    cfg->upstream.api_key_file = api_key_file;
}

/* Load with @p cfg and expect the key @p value from @p source. */
static void expect_key(const struct gw_config *cfg, const char *value, const char *source)
{
    char *error = NULL;
    struct gw_secret *s = gw_secret_load(cfg, NULL, &error);

    if (error)
        print_error("unexpected error: %s\n", error);
    assert_null(error);
    assert_non_null(s);
    assert_string_equal(gw_secret_value(s), value);
    assert_int_equal(gw_secret_len(s), strlen(value));
    assert_string_equal(gw_secret_source(s), source);
    gw_secret_free(s);
}

/* Load with @p cfg and expect exactly the error @p expected. */
static void expect_error(const struct gw_config *cfg, const char *expected)
{
    char *error = NULL;
    struct gw_secret *s = gw_secret_load(cfg, NULL, &error);

    assert_null(s);
    assert_non_null(error);
    assert_string_equal(error, expected);
    free(error);
}

/* Load with @p cfg, expect an error that holds @p part and not the key @p key. */
static void expect_error_without_key(const struct gw_config *cfg, const char *part,
                                     const char *key)
{
    char *error = NULL;
    struct gw_secret *s = gw_secret_load(cfg, NULL, &error);

    assert_null(s);
    assert_non_null(error);
    if (!strstr(error, part))
        print_error("error text: %s\n", error);
    assert_non_null(strstr(error, part));
    assert_null(strstr(error, key));
    assert_null(strchr(error, '\n')); /* one line */
    free(error);
}

static void test_precedence(void **state)
{
    char env_file[PATH_MAX], cfg_file[PATH_MAX], source[PATH_MAX + 8];
    struct gw_config cfg;

    (void)state;
    tmpdir_write("env.key", "from-env-file\n", 14, env_file, sizeof env_file);
    tmpdir_write("cfg.key", "from-config-file\n", 17, cfg_file, sizeof cfg_file);

    /* 1. HCGW_API_KEY beats everything else. */
    init_cfg(&cfg, "from-config", cfg_file);
    assert_int_equal(setenv("HCGW_API_KEY", "from-env", 1), 0);
    assert_int_equal(setenv("HCGW_API_KEY_FILE", env_file, 1), 0);
    expect_key(&cfg, "from-env", "env HCGW_API_KEY");

    /* 2. Then HCGW_API_KEY_FILE. */
    unsetenv("HCGW_API_KEY");
    snprintf(source, sizeof source, "file %s", env_file);
    expect_key(&cfg, "from-env-file", source);

    /* 3. Then upstream.api_key. */
    unsetenv("HCGW_API_KEY_FILE");
    expect_key(&cfg, "from-config", "config");

    /* 4. Then upstream.api_key_file. */
    init_cfg(&cfg, NULL, cfg_file);
    snprintf(source, sizeof source, "file %s", cfg_file);
    expect_key(&cfg, "from-config-file", source);

    /* The environment needs no config at all. */
    assert_int_equal(setenv("HCGW_API_KEY", "no-config-needed", 1), 0);
    expect_key(NULL, "no-config-needed", "env HCGW_API_KEY");
}

/* The first source that is set wins even when it is wrong: no silent fall-through. */
static void test_first_source_set_wins_even_when_bad(void **state)
{
    char missing[PATH_MAX], msg[2 * PATH_MAX];
    struct gw_config cfg;

    (void)state;
    init_cfg(&cfg, "good-config-key", NULL);
    tmpdir_path("missing.key", missing, sizeof missing);
    assert_int_equal(setenv("HCGW_API_KEY_FILE", missing, 1), 0);
    snprintf(msg, sizeof msg,
             "key file %s (from HCGW_API_KEY_FILE): cannot open: No such file or directory",
             missing);
    expect_error(&cfg, msg);

    assert_int_equal(setenv("HCGW_API_KEY", "", 1), 0);
    expect_error(&cfg, "HCGW_API_KEY is set but empty: set it to the key, or unset it");

    unsetenv("HCGW_API_KEY");
    assert_int_equal(setenv("HCGW_API_KEY_FILE", "", 1), 0);
    expect_error(&cfg, "HCGW_API_KEY_FILE is set but empty: set it to the path of the key file, "
                       "or unset it");
}

static void test_file_line_endings(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } files[] = {
        {"abc-123\n", 8},   /* LF */
        {"abc-123\r\n", 9}, /* CRLF */
        {"abc-123", 7},     /* no line break */
    };
    char path[PATH_MAX];
    char source[PATH_MAX + 8];
    struct gw_config cfg;

    (void)state;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        tmpdir_write("eol.key", files[i].bytes, files[i].len, path, sizeof path);
        init_cfg(&cfg, NULL, path);
        snprintf(source, sizeof source, "file %s", path);
        expect_key(&cfg, "abc-123", source);
    }
}

/* Only one line break is stripped; whatever is left must be the key alone. */
static void test_file_extra_bytes_refused(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *part;
    } files[] = {
        {"sekrit1\n\n", 9, "not visible ASCII at byte 8;"},
        {"sekrit1\r", 8, "not visible ASCII at byte 8;"},
        {"sekrit1 \n", 9, "not visible ASCII at byte 8;"},
        {"\xef\xbb\xbf" "sekrit1\n", 11, "not visible ASCII at byte 1;"}, /* a UTF-8 BOM */
        {"sekr\tt1\n", 8, "not visible ASCII at byte 5;"},
        {"sekrit1\nnext\n", 13, "not visible ASCII at byte 8;"},
    };
    char path[PATH_MAX];
    struct gw_config cfg;

    (void)state;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        tmpdir_write("extra.key", files[i].bytes, files[i].len, path, sizeof path);
        init_cfg(&cfg, NULL, path);
        expect_error_without_key(&cfg, files[i].part, "sekr");
    }
}

static void test_empty_file(void **state)
{
    char path[PATH_MAX], msg[2 * PATH_MAX];
    struct gw_config cfg;

    (void)state;
    tmpdir_write("empty.key", "", 0, path, sizeof path);
    assert_int_equal(setenv("HCGW_API_KEY_FILE", path, 1), 0);
    snprintf(msg, sizeof msg,
             "key file %s (from HCGW_API_KEY_FILE) is empty: it must hold the HelpCrunch API key",
             path);
    expect_error(NULL, msg);

    /* A line break alone is empty too, once stripped. */
    tmpdir_write("newline.key", "\r\n", 2, path, sizeof path);
    unsetenv("HCGW_API_KEY_FILE");
    init_cfg(&cfg, NULL, path);
    snprintf(msg, sizeof msg,
             "key file %s (from upstream.api_key_file in " CONF_PATH
             ") is empty: it must hold the HelpCrunch API key",
             path);
    expect_error(&cfg, msg);
}

static void test_file_size(void **state)
{
    char bytes[KEY_MAX + 3];
    char path[PATH_MAX], msg[2 * PATH_MAX];
    char *error = NULL;
    struct gw_config cfg;
    struct gw_secret *s;

    (void)state;
    memset(bytes, 'k', sizeof bytes);

    /* The longest key, with and without its line break, is fine. */
    bytes[KEY_MAX] = '\r';
    bytes[KEY_MAX + 1] = '\n';
    tmpdir_write("max.key", bytes, KEY_MAX + 2, path, sizeof path);
    init_cfg(&cfg, NULL, path);
    s = gw_secret_load(&cfg, NULL, &error);
    assert_null(error);
    assert_non_null(s);
    assert_int_equal(gw_secret_len(s), KEY_MAX);
    assert_int_equal(strlen(gw_secret_value(s)), KEY_MAX);
    gw_secret_free(s);

    /* One byte more than the longest key and a CRLF: too large, and not read further. */
    tmpdir_write("big.key", bytes, KEY_MAX + 3, path, sizeof path);
    init_cfg(&cfg, NULL, path);
    snprintf(msg, sizeof msg,
             "key file %s (from upstream.api_key_file in " CONF_PATH
             ") is too large (more than 4098 bytes): a key file holds only the key and one line "
             "break",
             path);
    expect_error(&cfg, msg);

    /* A key one byte too long, with no line break to strip. */
    memset(bytes, 'k', sizeof bytes);
    tmpdir_write("long.key", bytes, KEY_MAX + 1, path, sizeof path);
    init_cfg(&cfg, NULL, path);
    snprintf(msg, sizeof msg,
             "key file %s (from upstream.api_key_file in " CONF_PATH
             "): the key is longer than 4096 bytes; it must hold only the key",
             path);
    expect_error(&cfg, msg);
}

static void test_bad_characters(void **state)
{
    static const char *const keys[] = {
        "sekrit key",   /* a space */
        "sekrit\tkey",  /* a control character */
        "sekrit\x7fkey", /* DEL */
        "sekrit\xc3\xa9", /* UTF-8 */
    };
    char path[PATH_MAX];
    struct gw_config cfg;

    (void)state;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        /* From the environment... */
        assert_int_equal(setenv("HCGW_API_KEY", keys[i], 1), 0);
        expect_error_without_key(NULL, "HCGW_API_KEY: the key contains a character that is not "
                                       "visible ASCII at byte 7;", "sekrit");
        unsetenv("HCGW_API_KEY");

        /* ...from the config... */
        init_cfg(&cfg, (char *)keys[i], NULL);
        expect_error_without_key(&cfg, "upstream.api_key in " CONF_PATH ": the key contains a "
                                       "character that is not visible ASCII at byte 7;", "sekrit");

        /* ...and from a file. */
        tmpdir_write("bad.key", keys[i], strlen(keys[i]), path, sizeof path);
        init_cfg(&cfg, NULL, path);
        expect_error_without_key(&cfg, "not visible ASCII at byte 7;", "sekrit");
    }
}

static void test_missing_and_odd_files(void **state)
{
    char path[PATH_MAX], msg[2 * PATH_MAX];
    struct gw_config cfg;

    (void)state;
    tmpdir_path("nope.key", path, sizeof path);
    init_cfg(&cfg, NULL, path);
    snprintf(msg, sizeof msg,
             "key file %s (from upstream.api_key_file in " CONF_PATH
             "): cannot open: No such file or directory",
             path);
    expect_error(&cfg, msg);

    /* A directory (and so a FIFO or a device) is refused rather than read. */
    init_cfg(&cfg, NULL, tmpdir);
    snprintf(msg, sizeof msg,
             "key file %s (from upstream.api_key_file in " CONF_PATH
             ") is not a regular file: it must be a file that holds only the key",
             tmpdir);
    expect_error(&cfg, msg);

    /* A FIFO must not hang the load waiting for a writer. */
    tmpdir_path("fifo.key", path, sizeof path);
    assert_int_equal(mkfifo(path, 0600), 0);
    init_cfg(&cfg, NULL, path);
    snprintf(msg, sizeof msg,
             "key file %s (from upstream.api_key_file in " CONF_PATH
             ") is not a regular file: it must be a file that holds only the key",
             path);
    expect_error(&cfg, msg);
}

/* A key put in the file variable by mistake must not be echoed in the error. */
static void test_key_given_as_file_name(void **state)
{
    struct gw_config cfg;

    (void)state;
    assert_int_equal(setenv("HCGW_API_KEY_FILE", "sk-live-0123456789", 1), 0);
    expect_error_without_key(NULL,
                             "the key file named by HCGW_API_KEY_FILE (name not shown: without "
                             "a '/' it may be a key given by mistake): cannot open: No such file "
                             "or directory",
                             "sk-live");

    unsetenv("HCGW_API_KEY_FILE");
    init_cfg(&cfg, NULL, "sk-live-0123456789");
    expect_error_without_key(&cfg,
                             "the key file named by upstream.api_key_file in " CONF_PATH
                             " (name not shown: ",
                             "sk-live");
}

static void test_no_key(void **state)
{
    struct gw_config cfg;

    (void)state;
    init_cfg(&cfg, NULL, NULL);
    expect_error(&cfg, "no HelpCrunch API key: set HCGW_API_KEY or HCGW_API_KEY_FILE, or "
                       "upstream.api_key_file in " CONF_PATH);
    expect_error(NULL, "no HelpCrunch API key: set HCGW_API_KEY or HCGW_API_KEY_FILE, or "
                       "upstream.api_key_file in the config file");
    /* A NULL error pointer is allowed. */
    assert_null(gw_secret_load(&cfg, NULL, NULL));
}

/* Kubernetes mounts a secret as key -> ..data/key, ..data -> ..2024_01_01/, so follow links. */
static void test_symlinked_key_file(void **state)
{
    char dir[PATH_MAX], real[PATH_MAX], data[PATH_MAX], link[PATH_MAX], source[PATH_MAX + 8];
    struct gw_config cfg;

    (void)state;
    tmpdir_path("..2024_01_01", dir, sizeof dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    tmpdir_write("..2024_01_01/api-key", "linked-key\n", 11, real, sizeof real);
    tmpdir_path("..data", data, sizeof data);
    assert_int_equal(symlink("..2024_01_01", data), 0);
    tmpdir_path("api-key", link, sizeof link);
    assert_int_equal(symlink("..data/api-key", link), 0);

    assert_int_equal(setenv("HCGW_API_KEY_FILE", link, 1), 0);
    snprintf(source, sizeof source, "file %s", link);
    expect_key(NULL, "linked-key", source);

    unsetenv("HCGW_API_KEY_FILE");
    init_cfg(&cfg, NULL, link);
    expect_key(&cfg, "linked-key", source);
}

/* The path secret.c is given by config.c works end to end. */
static void test_with_loaded_config(void **state)
{
    char key[PATH_MAX], conf[PATH_MAX], text[PATH_MAX + 64], source[PATH_MAX + 8];
    char *errors = NULL;
    struct gw_config *cfg;

    (void)state;
    tmpdir_write("conf.key", "conf-file-key\n", 14, key, sizeof key);
    snprintf(text, sizeof text, "upstream = { api_key_file = \"%s\"; };\n", key);
    tmpdir_write("hcgw.conf", text, strlen(text), conf, sizeof conf);
    cfg = gw_config_load(conf, &errors);
    assert_null(errors);
    assert_non_null(cfg);
    snprintf(source, sizeof source, "file %s", key);
    expect_key(cfg, "conf-file-key", source);
    gw_config_free(cfg);
}

static void test_redact(void **state)
{
    struct gw_secret *s;
    char text[128];

    (void)state;
    assert_int_equal(setenv("HCGW_API_KEY", "K3Y", 1), 0);
    s = gw_secret_load(NULL, NULL, NULL);
    assert_non_null(s);

    snprintf(text, sizeof text, "{\"error\":\"bad key K3Y\",\"key\":\"K3YK3Y\",\"k\":\"K3\"}");
    assert_int_equal(gw_secret_redact(s, text, strlen(text)), 3);
    assert_string_equal(text, "{\"error\":\"bad key ***\",\"key\":\"******\",\"k\":\"K3\"}");
    /* Nothing left to find. */
    assert_int_equal(gw_secret_redact(s, text, strlen(text)), 0);

    /* Only the first len bytes are looked at; the text need not be NUL-terminated. */
    memcpy(text, "K3YxK3Y", 7);
    assert_int_equal(gw_secret_redact(s, text, 6), 1);
    assert_memory_equal(text, "***xK3Y", 7);

    /* Text shorter than the key, empty text, no text, no secret. */
    memcpy(text, "K3", 2);
    assert_int_equal(gw_secret_redact(s, text, 2), 0);
    assert_int_equal(gw_secret_redact(s, text, 0), 0);
    assert_int_equal(gw_secret_redact(s, NULL, 0), 0);
    snprintf(text, sizeof text, "K3Y");
    assert_int_equal(gw_secret_redact(NULL, text, 3), 0);
    assert_string_equal(text, "K3Y");
    gw_secret_free(s);
}

/* A key with a repeating pattern: occurrences are counted without overlap. */
static void test_redact_overlap(void **state)
{
    struct gw_secret *s;
    char text[16];

    (void)state;
    assert_int_equal(setenv("HCGW_API_KEY", "aa", 1), 0);
    s = gw_secret_load(NULL, NULL, NULL);
    assert_non_null(s);
    snprintf(text, sizeof text, "aaaaa");
    assert_int_equal(gw_secret_redact(s, text, 5), 2);
    assert_string_equal(text, "****a");
    gw_secret_free(s);
}

static void test_wipe_and_free(void **state)
{
    char buf[8] = "secret!";

    (void)state;
    gw_secret_wipe(buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
    gw_secret_wipe(NULL, 0);
    gw_secret_free(NULL);
    assert_null(gw_secret_value(NULL));
    assert_int_equal(gw_secret_len(NULL), 0);
    assert_null(gw_secret_source(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_precedence, setup),
        cmocka_unit_test_setup(test_first_source_set_wins_even_when_bad, setup),
        cmocka_unit_test_setup(test_file_line_endings, setup),
        cmocka_unit_test_setup(test_file_extra_bytes_refused, setup),
        cmocka_unit_test_setup(test_empty_file, setup),
        cmocka_unit_test_setup(test_file_size, setup),
        cmocka_unit_test_setup(test_bad_characters, setup),
        cmocka_unit_test_setup(test_missing_and_odd_files, setup),
        cmocka_unit_test_setup(test_key_given_as_file_name, setup),
        cmocka_unit_test_setup(test_no_key, setup),
        cmocka_unit_test_setup(test_symlinked_key_file, setup),
        cmocka_unit_test_setup(test_with_loaded_config, setup),
        cmocka_unit_test_setup(test_redact, setup),
        cmocka_unit_test_setup(test_redact_overlap, setup),
        cmocka_unit_test_setup(test_wipe_and_free, setup),
    };

    return cmocka_run_group_tests(tests, group_setup, tmpdir_group_teardown);
}

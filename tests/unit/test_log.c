/*
 * Unit tests of src/log.c: every line is read back from a memfd (or a SOCK_SEQPACKET socket,
 * which keeps the boundaries of each write) and parsed with json-c in strict mode, so a line
 * that is not exactly one valid JSON object fails. Covered: the fixed leading fields, escaping
 * of quotes, backslashes, control characters and 0x7f, levels filtered before formatting,
 * one write(2) per line (also from several threads at once), truncation of an over-long line
 * to valid JSON with "truncated":true, and gw_logf.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"

/* The memfd the module writes to during a test. */
static int log_mem = -1;

/*
 * What a test reads back lives in static storage or is held here and released by the
 * teardown, so a failed assertion (which leaves the test at once) leaks nothing.
 */
static char log_text[1 << 16];
static struct json_object *held[16];
static size_t n_held;

static struct json_object *hold(struct json_object *o)
{
    assert_true(n_held < sizeof(held) / sizeof(held[0]));
    held[n_held++] = o;
    return o;
}

static void release_all(void)
{
    while (n_held > 0)
        json_object_put(held[--n_held]);
}

static int setup(void **state)
{
    (void)state;
    log_mem = memfd_create("hcgw-log", MFD_CLOEXEC);
    if (log_mem < 0)
        return -1;
    gw_log_set_fd(log_mem);
    gw_log_set_level(GW_LOG_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gw_log_set_fd(2);
    gw_log_set_level(GW_LOG_INFO);
    close(log_mem);
    log_mem = -1;
    release_all();
    return 0;
}

/* Everything written so far, NUL-terminated, in log_text; *len receives its length. */
static char *written(size_t *len)
{
    struct stat st;
    ssize_t n;

    assert_int_equal(fstat(log_mem, &st), 0);
    assert_true((size_t)st.st_size < sizeof(log_text));
    n = pread(log_mem, log_text, (size_t)st.st_size, 0);
    assert_int_equal(n, st.st_size);
    log_text[n] = '\0';
    *len = (size_t)n;
    return log_text;
}

/* Forget what was written, so the next read sees only new lines. */
static void rewind_log(void)
{
    assert_int_equal(ftruncate(log_mem, 0), 0);
    assert_int_equal(lseek(log_mem, 0, SEEK_SET), 0);
}

/*
 * Parse exactly @p len bytes as one strict JSON value with valid UTF-8 and nothing after it.
 * Returns the object (caller puts it) or NULL.
 */
static struct json_object *parse_exact(const char *s, size_t len)
{
    struct json_tokener *tok = json_tokener_new();
    struct json_object *obj;

    assert_non_null(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    obj = json_tokener_parse_ex(tok, s, (int)len);
    if (obj != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
                        json_tokener_get_parse_end(tok) != len ||
                        !json_object_is_type(obj, json_type_object))) {
        json_object_put(obj);
        obj = NULL;
    }
    json_tokener_free(tok);
    return obj;
}

/*
 * The one line written since the last rewind, parsed and held until the teardown (or
 * release_all). *raw (if not NULL) gets its text, valid until the next read.
 */
static struct json_object *only_line(char **raw)
{
    size_t len;
    char *buf = written(&len);
    struct json_object *obj;

    assert_true(len >= 3);
    assert_true(len <= GW_MAX_LOG_LINE);
    assert_int_equal(buf[len - 1], '\n');
    /* Exactly one line. */
    assert_ptr_equal(strchr(buf, '\n'), buf + len - 1);
    obj = parse_exact(buf, len - 1);
    if (obj == NULL)
        print_error("not one valid JSON object (%zu bytes), ends with: %s", len,
                    len > 80 ? buf + len - 80 : buf);
    assert_non_null(obj);
    if (raw != NULL)
        *raw = buf;
    return hold(obj);
}

static const char *get_str(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool is_truncated(struct json_object *o)
{
    struct json_object *v;

    return json_object_object_get_ex(o, "truncated", &v) &&
           json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
}

static long long realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_line_fields(void **state)
{
    struct gw_logline l;
    struct json_object *o, *v;
    char *raw;
    const char *ts;
    struct tm tm = {0};
    int ms = -1;
    char z = 0;
    long long before = realtime_ms(), after;
    long long when;

    (void)state;
    gw_log_begin(&l, GW_LOG_INFO, "request done");
    after = realtime_ms();
    gw_log_str(&l, "route", "contact_get");
    gw_log_int(&l, "status", 200);
    gw_log_ms(&l, "duration_ms", 12.5);
    gw_log_strn(&l, "id", "12345678", 4);
    gw_log_end(&l);
    o = only_line(&raw);
    /* The fixed fields come first, in this order. */
    assert_memory_equal(raw, "{\"ts\":\"", 7);
    assert_non_null(strstr(raw, "\",\"level\":\"info\",\"msg\":\"request done\","));
    ts = get_str(o, "ts");
    assert_non_null(ts);
    /* 2024-05-01T12:34:56.789Z: UTC, to the millisecond, taken in gw_log_begin. */
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &z),
                     8);
    assert_int_equal(z, 'Z');
    assert_true(ms >= 0 && ms <= 999);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    when = (long long)timegm(&tm) * 1000 + ms;
    assert_true(when >= before && when <= after);
    assert_string_equal(get_str(o, "level"), "info");
    assert_string_equal(get_str(o, "msg"), "request done");
    assert_string_equal(get_str(o, "route"), "contact_get");
    assert_string_equal(get_str(o, "id"), "1234");
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_true(json_object_is_type(v, json_type_int));
    assert_int_equal(json_object_get_int64(v), 200);
    assert_true(json_object_object_get_ex(o, "duration_ms", &v));
    assert_true(json_object_get_double(v) == 12.5);
    assert_non_null(strstr(raw, "\"duration_ms\":12.500"));
    assert_false(json_object_object_get_ex(o, "truncated", NULL));
    assert_int_equal(json_object_object_length(o), 7);
}

static void test_level_names(void **state)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    struct gw_logline l;
    struct json_object *o;
    int lv;

    (void)state;
    for (lv = GW_LOG_DEBUG; lv <= GW_LOG_ERROR; lv++) {
        rewind_log();
        gw_log_begin(&l, (enum gw_log_level)lv, "x");
        gw_log_end(&l);
        o = only_line(NULL);
        assert_string_equal(get_str(o, "level"), names[lv]);
        assert_int_equal(json_object_object_length(o), 3);
        release_all();
    }
}

static void test_escaping_round_trips(void **state)
{
    char all[128];
    struct gw_logline l;
    struct json_object *o, *v;
    char *raw;
    size_t i;

    (void)state;
    /* Every byte from 0x01 to 0x7f: quotes, backslash, all control characters, DEL. */
    for (i = 0; i < 127; i++)
        all[i] = (char)(i + 1);
    all[127] = '\0';
    gw_log_begin(&l, GW_LOG_WARN, "say \"hi\"\\\n\t\x7f");
    gw_log_str(&l, "all", all);
    gw_log_strn(&l, "nul", "a\0b", 3);
    gw_log_str(&l, "k\"e\\y\n", "v");
    gw_log_str(&l, "utf8", "caf\xc3\xa9 \xe2\x82\xac");
    gw_log_end(&l);
    o = only_line(&raw);
    assert_string_equal(get_str(o, "msg"), "say \"hi\"\\\n\t\x7f");
    assert_true(json_object_object_get_ex(o, "all", &v));
    assert_int_equal(json_object_get_string_len(v), 127);
    assert_memory_equal(json_object_get_string(v), all, 127);
    assert_true(json_object_object_get_ex(o, "nul", &v));
    assert_int_equal(json_object_get_string_len(v), 3);
    assert_memory_equal(json_object_get_string(v), "a\0b", 3);
    assert_string_equal(get_str(o, "k\"e\\y\n"), "v");
    assert_string_equal(get_str(o, "utf8"), "caf\xc3\xa9 \xe2\x82\xac");
    /* On the wire: no raw control byte or DEL anywhere but the final newline. */
    for (i = 0; raw[i + 1] != '\0'; i++)
        assert_false((unsigned char)raw[i] < 0x20 || (unsigned char)raw[i] == 0x7f);
    assert_non_null(strstr(raw, "\\u007f"));
    assert_non_null(strstr(raw, "\\u0000"));
    assert_non_null(strstr(raw, "\\\"hi\\\"\\\\"));
}

static void test_null_value_and_numbers(void **state)
{
    struct gw_logline l;
    struct json_object *o, *v;

    (void)state;
    gw_log_begin(&l, GW_LOG_ERROR, "n");
    gw_log_str(&l, "none", NULL);
    gw_log_int(&l, "min", LLONG_MIN);
    gw_log_int(&l, "max", LLONG_MAX);
    gw_log_int(&l, "neg", -42);
    gw_log_ms(&l, "ms", 0.0004);
    gw_log_ms(&l, "big", 123456.7894);
    gw_log_end(&l);
    o = only_line(NULL);
    assert_true(json_object_object_get_ex(o, "none", &v));
    assert_null(v);
    assert_true(json_object_object_get_ex(o, "min", &v));
    assert_true(json_object_get_int64(v) == LLONG_MIN);
    assert_true(json_object_object_get_ex(o, "max", &v));
    assert_true(json_object_get_int64(v) == LLONG_MAX);
    assert_true(json_object_object_get_ex(o, "neg", &v));
    assert_int_equal(json_object_get_int64(v), -42);
    assert_true(json_object_object_get_ex(o, "ms", &v));
    assert_true(json_object_get_double(v) == 0.0);
    assert_true(json_object_object_get_ex(o, "big", &v));
    assert_true(json_object_get_double(v) == 123456.789);
}

static void test_level_filtered_before_formatting(void **state)
{
    int n = -1;
    size_t len;
    char *buf;

    (void)state;
    gw_log_set_level(GW_LOG_WARN);
    assert_false(gw_log_enabled(GW_LOG_DEBUG));
    assert_false(gw_log_enabled(GW_LOG_INFO));
    assert_true(gw_log_enabled(GW_LOG_WARN));
    assert_true(gw_log_enabled(GW_LOG_ERROR));
    /* %n stores how much was formatted: untouched means the format was never run. */
    gw_logf(GW_LOG_INFO, "abc%n", &n);
    gw_logf(GW_LOG_DEBUG, "abc%n", &n);
    assert_int_equal(n, -1);
    buf = written(&len);
    assert_int_equal(len, 0);
    assert_int_equal(buf[0], '\0');
    /* The probe works: at an enabled level the format runs and a line is written. */
    gw_logf(GW_LOG_WARN, "abc%n", &n);
    assert_int_equal(n, 3);
    only_line(NULL);
    /* Debug opens everything. */
    gw_log_set_level(GW_LOG_DEBUG);
    assert_true(gw_log_enabled(GW_LOG_DEBUG));
    rewind_log();
    n = -1;
    gw_logf(GW_LOG_DEBUG, "abc%n", &n);
    assert_int_equal(n, 3);
    only_line(NULL);
    /* Error closes all but errors. */
    gw_log_set_level(GW_LOG_ERROR);
    assert_false(gw_log_enabled(GW_LOG_WARN));
    assert_true(gw_log_enabled(GW_LOG_ERROR));
}

static void test_logf(void **state)
{
    struct json_object *o;

    (void)state;
    gw_logf(GW_LOG_WARN, "config %s:%d: %s", "/etc/hcgw/\"x\".conf", 12, "bad\tkey");
    o = only_line(NULL);
    assert_string_equal(get_str(o, "level"), "warn");
    assert_string_equal(get_str(o, "msg"), "config /etc/hcgw/\"x\".conf:12: bad\tkey");
    assert_int_equal(json_object_object_length(o), 3);
}

static void test_logf_long_message_stays_valid(void **state)
{
    static char big[3001];
    struct json_object *o;
    const char *msg;

    (void)state;
    memset(big, 'q', 3000);
    big[3000] = '\0';
    big[100] = '"';
    gw_logf(GW_LOG_ERROR, "%s", big);
    o = only_line(NULL);
    msg = get_str(o, "msg");
    assert_non_null(msg);
    /* Whatever is kept is a prefix of the message, still one valid line. */
    assert_true(strlen(msg) > 200);
    assert_memory_equal(msg, big, strlen(msg));
}

static void test_one_write_per_line(void **state)
{
    int sv[2];
    static char value[3901];
    static char rec[2 * GW_MAX_LOG_LINE];
    struct gw_logline l;
    struct json_object *o;
    ssize_t n;
    int i;

    (void)state;
    memset(value, 'v', 3900);
    value[3900] = '\0';
    /* Each write(2) on a SOCK_SEQPACKET socket is one record with its own boundary. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    gw_log_set_fd(sv[0]);
    gw_log_begin(&l, GW_LOG_INFO, "small");
    gw_log_end(&l);
    gw_log_begin(&l, GW_LOG_INFO, "big");
    gw_log_str(&l, "a", "x");
    gw_log_str(&l, "v", value);
    gw_log_int(&l, "n", 1);
    gw_log_end(&l);
    gw_logf(GW_LOG_ERROR, "third %d", 3);
    for (i = 0; i < 3; i++) {
        n = recv(sv[1], rec, 2 * GW_MAX_LOG_LINE, MSG_DONTWAIT | MSG_TRUNC);
        assert_true(n > 0 && n < 2 * GW_MAX_LOG_LINE);
        assert_int_equal(rec[n - 1], '\n');
        assert_null(memchr(rec, '\n', (size_t)n - 1));
        o = parse_exact(rec, (size_t)n - 1);
        assert_non_null(hold(o));
        assert_string_equal(get_str(o, "msg"), i == 0 ? "small" : i == 1 ? "big" : "third 3");
        if (i == 1)
            assert_int_equal(strlen(get_str(o, "v")), 3900);
        release_all();
    }
    /* Nothing more: three lines, three writes. */
    assert_true(recv(sv[1], rec, 2 * GW_MAX_LOG_LINE, MSG_DONTWAIT) < 0);
    gw_log_set_fd(log_mem);
    close(sv[0]);
    close(sv[1]);
}

/* Several threads log at once; each line must arrive whole, as its own write. */
#define LOG_THREADS 4
#define LOG_PER_THREAD 150

static void *log_many(void *arg)
{
    long t = (long)(intptr_t)arg;
    char value[3001];
    struct gw_logline l;
    int i;

    for (i = 0; i < LOG_PER_THREAD; i++) {
        size_t len = ((size_t)i * 37 + (size_t)t * 101) % 3000;
        memset(value, (int)('a' + t), len);
        value[len] = '\0';
        gw_log_begin(&l, GW_LOG_INFO, "t");
        gw_log_int(&l, "t", t);
        gw_log_int(&l, "i", i);
        gw_log_str(&l, "v", value);
        gw_log_end(&l);
    }
    return NULL;
}

static void test_threads_never_interleave(void **state)
{
    int sv[2];
    pthread_t th[LOG_THREADS];
    int next[LOG_THREADS] = {0};
    static char rec[2 * GW_MAX_LOG_LINE];
    struct json_object *o, *v;
    long t;
    int k;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    gw_log_set_fd(sv[0]);
    for (t = 0; t < LOG_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t), 0);
    for (k = 0; k < LOG_THREADS * LOG_PER_THREAD; k++) {
        ssize_t n = recv(sv[1], rec, 2 * GW_MAX_LOG_LINE, MSG_TRUNC);
        assert_true(n > 0 && n < 2 * GW_MAX_LOG_LINE);
        assert_int_equal(rec[n - 1], '\n');
        o = parse_exact(rec, (size_t)n - 1);
        assert_non_null(hold(o));
        assert_true(json_object_object_get_ex(o, "t", &v));
        t = (long)json_object_get_int64(v);
        assert_true(t >= 0 && t < LOG_THREADS);
        assert_true(json_object_object_get_ex(o, "i", &v));
        /* Each thread's lines arrive complete and in its own order. */
        assert_int_equal(json_object_get_int64(v), next[t]);
        next[t]++;
        assert_true(json_object_object_get_ex(o, "v", &v));
        assert_int_equal(json_object_get_string_len(v),
                         ((size_t)(next[t] - 1) * 37 + (size_t)t * 101) % 3000);
        release_all();
    }
    for (t = 0; t < LOG_THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    gw_log_set_fd(log_mem);
    close(sv[0]);
    close(sv[1]);
}

/*
 * Check one line that may have been truncated: at most GW_MAX_LOG_LINE bytes, one valid JSON
 * object, with the leading fields intact, and either every field or "truncated":true.
 */
static void check_bounded_line(const char *want_a, size_t want_a_len)
{
    struct json_object *o, *v;

    o = only_line(NULL);
    assert_string_equal(get_str(o, "level"), "info");
    assert_string_equal(get_str(o, "msg"), "m");
    if (!is_truncated(o)) {
        assert_true(json_object_object_get_ex(o, "a", &v));
        assert_int_equal(json_object_get_string_len(v), want_a_len);
        assert_memory_equal(json_object_get_string(v), want_a, want_a_len);
        assert_true(json_object_object_get_ex(o, "n", &v));
        assert_int_equal(json_object_get_int64(v), 7);
        assert_string_equal(get_str(o, "b"), "tail");
    }
    release_all();
}

static void test_long_value_truncated_to_valid_json(void **state)
{
    static char big[GW_MAX_LOG_LINE + 101];
    size_t n = GW_MAX_LOG_LINE + 100;
    struct gw_logline l;
    struct json_object *o;

    (void)state;
    memset(big, 'x', n);
    big[n] = '\0';
    gw_log_begin(&l, GW_LOG_INFO, "m");
    gw_log_str(&l, "a", big);
    gw_log_end(&l);
    /* only_line() asserts: at most GW_MAX_LOG_LINE bytes, one line, strict valid JSON. */
    o = only_line(NULL);
    assert_true(is_truncated(o));
    assert_string_equal(get_str(o, "msg"), "m");
}

static void test_truncation_at_every_boundary(void **state)
{
    /* Plain bytes (1 out), quotes (2 out) and control bytes (6 out), so that the cut falls
     * inside a value, between an escape's bytes, after a key, and inside the int field. */
    static const char fill[] = {'x', '"', '\x01'};
    static char val[GW_MAX_LOG_LINE + 8];
    struct gw_logline l;
    size_t f, len;

    (void)state;
    for (f = 0; f < sizeof(fill); f++) {
        size_t unit = f == 0 ? 1 : f == 1 ? 2 : 6;
        size_t lo = (GW_MAX_LOG_LINE - 120) / unit;
        size_t hi = GW_MAX_LOG_LINE / unit + 2;
        assert_true(hi < sizeof(val));
        for (len = lo; len <= hi; len++) {
            memset(val, fill[f], len);
            val[len] = '\0';
            rewind_log();
            gw_log_begin(&l, GW_LOG_INFO, "m");
            gw_log_str(&l, "a", val);
            gw_log_int(&l, "n", 7);
            gw_log_str(&l, "b", "tail");
            gw_log_end(&l);
            check_bounded_line(val, len);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_value_and_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filtered_before_formatting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logf_long_message_stays_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_write_per_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_never_interleave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_value_truncated_to_valid_json, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_truncation_at_every_boundary, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

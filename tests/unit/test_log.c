/*
 * Unit tests of src/log.c: every line is read back from a memfd (or a SOCK_SEQPACKET socket,
 * which keeps the boundaries of each write) and parsed with json-c in strict mode, so a line
 * that is not exactly one valid JSON object fails. Covered: the fixed leading fields, escaping
 * of quotes, backslashes, control characters and 0x7f, levels filtered before formatting,
 * one write(2) per line (also from several threads at once), truncation of an over-long line
 * to valid JSON with "truncated":true, and gw_logf. The hand-made formatting is held to what it
 * replaced: the timestamp's shape and its per-second reuse, integers against "%lld", durations
 * against "%.3f" over edge and random values, escaping of every byte value against a byte by
 * byte reference, one threshold for truncation whatever the escapes, and two lines written
 * together by gw_log_end_pair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
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
#include "hcgw/json.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"

/* The memfd the module writes to during a test, and the logger that writes there. */
static int log_mem = -1;
static struct gw_log *lg;

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
    lg = gw_log_new(log_mem, GW_LOG_INFO);
    if (lg == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gw_log_free(lg);
    lg = NULL;
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
    /* gw_json_check for "strict" (json-c 0.18's JSON_TOKENER_STRICT refuses all of UTF-8). */
    if (gw_json_check(s, len, NULL) != 0) {
        json_tokener_free(tok);
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
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
    gw_log_begin(lg, &l, GW_LOG_INFO, "request done");
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
        gw_log_begin(lg, &l, (enum gw_log_level)lv, "x");
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
    gw_log_begin(lg, &l, GW_LOG_WARN, "say \"hi\"\\\n\t\x7f");
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
    gw_log_begin(lg, &l, GW_LOG_ERROR, "n");
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
    gw_log_set_level(lg, GW_LOG_WARN);
    assert_false(gw_log_enabled(lg, GW_LOG_DEBUG));
    assert_false(gw_log_enabled(lg, GW_LOG_INFO));
    assert_true(gw_log_enabled(lg, GW_LOG_WARN));
    assert_true(gw_log_enabled(lg, GW_LOG_ERROR));
    /* %n stores how much was formatted: untouched means the format was never run. */
    gw_logf(lg, GW_LOG_INFO, "abc%n", &n);
    gw_logf(lg, GW_LOG_DEBUG, "abc%n", &n);
    assert_int_equal(n, -1);
    buf = written(&len);
    assert_int_equal(len, 0);
    assert_int_equal(buf[0], '\0');
    /* The probe works: at an enabled level the format runs and a line is written. */
    gw_logf(lg, GW_LOG_WARN, "abc%n", &n);
    assert_int_equal(n, 3);
    only_line(NULL);
    /* Debug opens everything. */
    gw_log_set_level(lg, GW_LOG_DEBUG);
    assert_true(gw_log_enabled(lg, GW_LOG_DEBUG));
    rewind_log();
    n = -1;
    gw_logf(lg, GW_LOG_DEBUG, "abc%n", &n);
    assert_int_equal(n, 3);
    only_line(NULL);
    /* Error closes all but errors. */
    gw_log_set_level(lg, GW_LOG_ERROR);
    assert_false(gw_log_enabled(lg, GW_LOG_WARN));
    assert_true(gw_log_enabled(lg, GW_LOG_ERROR));
}

static void test_logf(void **state)
{
    struct json_object *o;

    (void)state;
    gw_logf(lg, GW_LOG_WARN, "config %s:%d: %s", "/etc/hcgw/\"x\".conf", 12, "bad\tkey");
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
    gw_logf(lg, GW_LOG_ERROR, "%s", big);
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
    gw_log_set_fd(lg, sv[0]);
    gw_log_begin(lg, &l, GW_LOG_INFO, "small");
    gw_log_end(&l);
    gw_log_begin(lg, &l, GW_LOG_INFO, "big");
    gw_log_str(&l, "a", "x");
    gw_log_str(&l, "v", value);
    gw_log_int(&l, "n", 1);
    gw_log_end(&l);
    gw_logf(lg, GW_LOG_ERROR, "third %d", 3);
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
    gw_log_set_fd(lg, log_mem);
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
        gw_log_begin(lg, &l, GW_LOG_INFO, "t");
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
    gw_log_set_fd(lg, sv[0]);
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
    gw_log_set_fd(lg, log_mem);
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
    gw_log_begin(lg, &l, GW_LOG_INFO, "m");
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
            gw_log_begin(lg, &l, GW_LOG_INFO, "m");
            gw_log_str(&l, "a", val);
            gw_log_int(&l, "n", 7);
            gw_log_str(&l, "b", "tail");
            gw_log_end(&l);
            check_bounded_line(val, len);
        }
    }
}

/* ---- the hand-made formatting, held to what it replaced ---- */

/* A small deterministic generator (xorshift64), so that a failure can be reproduced. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/*
 * The one line written since the last rewind must be exactly the leading fields of a line
 * with msg "m", then @p fields, then '}' and a newline. Compared as bytes, so it works for
 * values that are not valid UTF-8.
 */
static const char level_msg[] = ",\"level\":\"info\",\"msg\":\"m\"";

static void assert_line_is(const char *fields, size_t fields_len)
{
    size_t len;
    char *raw = written(&len);
    /* {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ" */
    size_t head = 32;

    if (len != head + sizeof(level_msg) - 1 + fields_len + 2)
        print_error("line of %zu bytes, %zu expected: %s", len,
                    head + sizeof(level_msg) - 1 + fields_len + 2, raw);
    assert_int_equal(len, head + sizeof(level_msg) - 1 + fields_len + 2);
    assert_memory_equal(raw + head, level_msg, sizeof(level_msg) - 1);
    assert_memory_equal(raw + head + sizeof(level_msg) - 1, fields, fields_len);
    assert_memory_equal(raw + len - 2, "}\n", 2);
}

/* The shape of {"ts":"2024-05-01T12:34:56.789Z" at the start of @p raw. */
static void assert_stamp_shape(const char *raw)
{
    static const char shape[] = "{\"ts\":\"dddd-dd-ddTdd:dd:dd.dddZ\",";
    size_t i;

    for (i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd')
            assert_true(raw[i] >= '0' && raw[i] <= '9');
        else
            assert_int_equal(raw[i], shape[i]);
    }
}

static void test_timestamp_shape_and_reuse(void **state)
{
    static char first[64];
    struct gw_logline l;
    struct timespec a, b;
    size_t len;
    char *raw;
    int tries;

    (void)state;
    /* Two lines begun in the same second share everything up to the milliseconds. Retried
     * when the clock crosses a second between them (rare). */
    for (tries = 0; tries < 10; tries++) {
        rewind_log();
        clock_gettime(CLOCK_REALTIME, &a);
        gw_log_begin(lg, &l, GW_LOG_INFO, "one");
        gw_log_end(&l);
        raw = written(&len);
        assert_stamp_shape(raw);
        memcpy(first, raw, 32);
        rewind_log();
        gw_log_begin(lg, &l, GW_LOG_INFO, "two");
        gw_log_end(&l);
        clock_gettime(CLOCK_REALTIME, &b);
        raw = written(&len);
        assert_stamp_shape(raw);
        if (a.tv_sec == b.tv_sec)
            break;
    }
    assert_true(tries < 10);
    assert_memory_equal(raw, first, 26);
}

/* Parse the timestamp of the line in @p raw into milliseconds since the epoch. */
static long long stamp_ms(const char *raw)
{
    struct tm tm = {0};
    int ms = -1;

    assert_stamp_shape(raw);
    assert_int_equal(sscanf(raw + 7, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms),
                     7);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000 + ms;
}

static void test_timestamp_follows_the_second(void **state)
{
    struct gw_logline l;
    struct timespec now, nap;
    long long before, after, when;
    size_t len;

    (void)state;
    /* A line now fills this thread's cache; then sleep past the next second boundary: the
     * next line must carry the new second, not the cached one. */
    gw_log_begin(lg, &l, GW_LOG_INFO, "m");
    gw_log_end(&l);
    clock_gettime(CLOCK_REALTIME, &now);
    nap.tv_sec = 0;
    nap.tv_nsec = 1000000000L - now.tv_nsec + 5000000L;
    if (nap.tv_nsec >= 1000000000L) {
        nap.tv_sec = 1;
        nap.tv_nsec -= 1000000000L;
    }
    assert_int_equal(nanosleep(&nap, NULL), 0);
    rewind_log();
    before = realtime_ms();
    gw_log_begin(lg, &l, GW_LOG_INFO, "m");
    after = realtime_ms();
    gw_log_end(&l);
    when = stamp_ms(written(&len));
    assert_true(when >= before && when <= after);
    assert_true(when / 1000 > (long long)now.tv_sec);
}

static void test_int_matches_printf(void **state)
{
    static const long long edges[] = {
        0, 1, -1, 9, 10, -10, 99, 100, 999999999, 1000000000, -1000000000, INT_MAX, INT_MIN,
        (long long)INT_MAX + 1, 4294967295LL, 4294967296LL, 999999999999999999LL,
        1000000000000000000LL, -1000000000000000000LL, LLONG_MAX, LLONG_MIN, LLONG_MAX - 1,
        LLONG_MIN + 1,
    };
    struct gw_logline l;
    char want[64];
    long long v;
    size_t i;
    int n;

    (void)state;
    for (i = 0; i < sizeof(edges) / sizeof(edges[0]) + 2000; i++) {
        if (i < sizeof(edges) / sizeof(edges[0]))
            v = edges[i];
        else
            v = (long long)(rng() >> (1 + rng() % 63)) * ((rng() & 1) != 0 ? -1 : 1);
        n = snprintf(want, sizeof(want), ",\"n\":%lld", v);
        assert_true(n > 0 && (size_t)n < sizeof(want));
        rewind_log();
        gw_log_begin(lg, &l, GW_LOG_INFO, "m");
        gw_log_int(&l, "n", v);
        gw_log_end(&l);
        assert_line_is(want, (size_t)n);
    }
}

/* What gw_log_ms must write for @p ms: printf's "%.3f", or -1.000 where JSON has no number. */
static void check_ms(double ms)
{
    struct gw_logline l;
    char want[400];
    int n;

    if (ms != ms || ms > 1e15 || ms < -1e15)
        n = snprintf(want, sizeof(want), ",\"ms\":-1.000");
    else
        n = snprintf(want, sizeof(want), ",\"ms\":%.3f", ms);
    assert_true(n > 0 && (size_t)n < sizeof(want));
    rewind_log();
    gw_log_begin(lg, &l, GW_LOG_INFO, "m");
    gw_log_ms(&l, "ms", ms);
    gw_log_end(&l);
    assert_line_is(want, (size_t)n);
}

static void test_ms_matches_printf(void **state)
{
    static const double edges[] = {
        0.0, -0.0, 0.0005, -0.0005, 0.0004999, 0.0015, 0.0025, 0.9995, 1.0005, 0.9994999,
        0.999, 1.0, -1.0, 12.5, 0.0625, 0.1875, 2.0625, -0.0625, 0.001, 0.002, 0.123456,
        123456.7894, 999.9995, 1e-300, -1e-300, DBL_MIN, -DBL_MIN, DBL_TRUE_MIN,
        -DBL_TRUE_MIN, 4503599627370495.5 / 4503599627.370496, 1e15, -1e15,
        1e15 - 0.125, -1e15 + 0.125, 999999999999999.9, 1e15 + 0.125, -1e15 - 0.125, 2e15,
        1e300, -1e300, DBL_MAX, -DBL_MAX, INFINITY, -INFINITY, NAN, -NAN,
        9007199254740991.0, 4503599627370496.5 / 8, 1125899906842624.0 / 1024,
    };
    uint64_t bits;
    double d;
    size_t i;
    int k;

    (void)state;
    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        check_ms(edges[i]);
    /* Exact ties in binary (k / 2^j) test the rounding of a half: printf rounds to even. */
    for (k = -2100; k <= 2100; k++) {
        check_ms((double)k / 16.0);
        check_ms((double)k / 2048.0);
        check_ms((double)k * 0.0005);
        check_ms((double)k * 1000.0 + 0.0005);
    }
    for (i = 0; i < 20000; i++) {
        switch (rng() % 5) {
        case 0: /* plausible durations: microseconds to minutes */
            d = (double)(rng() % 100000000000ULL) / 1e6;
            break;
        case 1: /* a uniform spread over the whole range, both signs */
            d = ((double)(rng() >> 11) / 9007199254740992.0 - 0.5) * 2e15;
            break;
        case 2: /* near the thousandths: n/1000 and its neighbours */
            d = ((double)(rng() % 20000000) - 1e7) / 1000.0;
            d += (double)((int)(rng() % 3) - 1) * 1e-12;
            break;
        case 3: /* tiny values around the half thousandth */
            d = ((double)(rng() >> 11) / 9007199254740992.0 - 0.5) * 4e-3;
            break;
        default: /* any bit pattern: NaNs, infinities, subnormals, huge values */
            bits = rng();
            memcpy(&d, &bits, sizeof(d));
            break;
        }
        check_ms(d);
    }
}

/* JSON escaping one byte at a time, as log.c did before it copied runs: the reference. */
static size_t reference_escape(const unsigned char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0;

    out[o++] = '"';
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            out[o++] = '\\';
            out[o++] = (char)s[i];
        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[s[i] >> 4];
            out[o + 5] = hex[s[i] & 0xf];
            o += 6;
        } else {
            out[o++] = (char)s[i];
        }
    }
    out[o++] = '"';
    return o;
}

/* The line with one string field "v" holding @p n bytes must show them as the reference does. */
static void check_escaped(const unsigned char *s, size_t n)
{
    static char want[6 * 1024 + 16];
    struct gw_logline l;
    size_t w;

    assert_true(6 * n + 8 < sizeof(want));
    memcpy(want, ",\"v\":", 5);
    w = 5 + reference_escape(s, n, want + 5);
    rewind_log();
    gw_log_begin(lg, &l, GW_LOG_INFO, "m");
    gw_log_strn(&l, "v", (const char *)s, n);
    gw_log_end(&l);
    assert_line_is(want, w);
}

static void test_escaping_every_byte(void **state)
{
    unsigned char s[600];
    size_t i, n;
    int c;

    (void)state;
    /* Each byte value alone, between plain bytes, and in a run of its own. */
    for (c = 0; c < 256; c++) {
        s[0] = (unsigned char)c;
        check_escaped(s, 1);
        memcpy(s, "ab", 2);
        s[2] = (unsigned char)c;
        memcpy(s + 3, "cd", 2);
        check_escaped(s, 5);
        memset(s, c, 40);
        check_escaped(s, 40);
    }
    /* All 256 in order, and random mixes of runs and escapes. */
    for (c = 0; c < 256; c++)
        s[c] = (unsigned char)c;
    check_escaped(s, 256);
    for (i = 0; i < 300; i++) {
        n = rng() % sizeof(s);
        for (c = 0; (size_t)c < n; c++)
            s[c] = (rng() % 4) == 0 ? (unsigned char)rng() : (unsigned char)('a' + rng() % 26);
        check_escaped(s, n);
    }
}

/*
 * A field is kept exactly when the whole line would fit one bound, whatever mix of plain
 * bytes and escapes it holds; otherwise the line is its leading fields and the truncation mark,
 * still one valid JSON object.
 */
static void test_truncation_threshold(void **state)
{
    static const char truncated[] = ",\"truncated\":true";
    static unsigned char val[GW_MAX_LOG_LINE];
    static char want[6 * GW_MAX_LOG_LINE + 16];
    struct gw_logline l;
    size_t max_kept = 0, min_cut = SIZE_MAX;
    size_t f, len, w, full_len;
    struct json_object *o;
    char *raw;

    (void)state;
    for (f = 0; f < 4; f++) {
        size_t unit = f == 0 ? 1 : f == 1 ? 2 : f == 2 ? 6 : 3;
        size_t lo = (GW_MAX_LOG_LINE - 160) / unit;
        size_t hi = GW_MAX_LOG_LINE / unit + 2;

        for (len = lo; len <= hi && len < sizeof(val); len++) {
            size_t i;

            for (i = 0; i < len; i++)
                val[i] = f == 0 ? 'x' : f == 1 ? '\\' : f == 2 ? 0x1f : "a\"\x7f"[i % 3];
            memcpy(want, ",\"v\":", 5);
            w = 5 + reference_escape(val, len, want + 5);
            rewind_log();
            gw_log_begin(lg, &l, GW_LOG_INFO, "m");
            gw_log_strn(&l, "v", (const char *)val, len);
            gw_log_end(&l);
            /* The length of the line had it been kept: 32 + level and msg + field + "}\n". */
            full_len = 32 + (sizeof(level_msg) - 1) + w + 2;
            raw = written(&w);
            if (raw[w - 3] == 'e') {
                assert_line_is(truncated, sizeof(truncated) - 1);
                if (full_len < min_cut)
                    min_cut = full_len;
            } else {
                assert_line_is(want, full_len - 32 - (sizeof(level_msg) - 1) - 2);
                if (full_len > max_kept)
                    max_kept = full_len;
            }
            o = only_line(NULL);
            assert_string_equal(get_str(o, "msg"), "m");
            release_all();
        }
    }
    /* Every kept line is shorter than every cut one: one bound, below GW_MAX_LOG_LINE. */
    assert_true(max_kept > 0 && min_cut < SIZE_MAX);
    assert_true(max_kept < min_cut);
    assert_true(max_kept <= GW_MAX_LOG_LINE);
}

/* An access-like line and an audit-like line for the pair tests, the audit @p pad long. */
static void build_pair(struct gw_logline *a, struct gw_logline *b, int id, size_t pad)
{
    static char filler[GW_MAX_LOG_LINE + 1];

    memset(filler, 'p', pad);
    filler[pad] = '\0';
    gw_log_begin(lg, a, GW_LOG_INFO, "access");
    gw_log_int(a, "id", id);
    gw_log_str(a, "route", "contact_update");
    gw_log_ms(a, "duration_ms", 1.25);
    gw_log_begin(lg, b, GW_LOG_INFO, "audit");
    gw_log_int(b, "id", id);
    gw_log_str(b, "pad", filler);
}

/* Check that @p s (@p n bytes, no newline) is the line of @p msg and @p id. */
static struct json_object *check_pair_line(const char *s, size_t n, const char *msg, int id)
{
    struct json_object *o = hold(parse_exact(s, n));
    struct json_object *v;

    assert_non_null(o);
    assert_string_equal(get_str(o, "msg"), msg);
    assert_true(json_object_object_get_ex(o, "id", &v));
    assert_int_equal(json_object_get_int64(v), id);
    return o;
}

static void test_pair_on_a_pipe(void **state)
{
    static char text[4 * GW_MAX_LOG_LINE];
    struct gw_logline a, b;
    struct json_object *o;
    size_t got = 0;
    char *nl, *second;
    ssize_t n;
    int p[2];

    (void)state;
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    gw_log_set_fd(lg, p[1]);
    build_pair(&a, &b, 7, 100);
    gw_log_end_pair(&a, &b);
    close(p[1]);
    gw_log_set_fd(lg, log_mem);
    while ((n = read(p[0], text + got, sizeof(text) - 1 - got)) > 0)
        got += (size_t)n;
    close(p[0]);
    text[got] = '\0';
    /* Two complete lines, access first, and nothing else. */
    nl = memchr(text, '\n', got);
    assert_non_null(nl);
    check_pair_line(text, (size_t)(nl - text), "access", 7);
    second = nl + 1;
    nl = memchr(second, '\n', got - (size_t)(second - text));
    assert_non_null(nl);
    assert_ptr_equal(nl, text + got - 1);
    o = check_pair_line(second, (size_t)(nl - second), "audit", 7);
    assert_int_equal(strlen(get_str(o, "pad")), 100);
}

/*
 * The next record on @p fd must hold the two lines of pair @p id, access then audit, or when
 * @p only is not NULL the one line of the pair with that msg.
 */
static void expect_record(int fd, int id, const char *only, bool truncated)
{
    static char rec[4 * GW_MAX_LOG_LINE];
    ssize_t n = recv(fd, rec, sizeof(rec), MSG_DONTWAIT | MSG_TRUNC);
    const char *msgs[2] = {"access", "audit"};
    int lines = only != NULL ? 1 : 2;
    char *at = rec, *nl;
    int i;

    assert_true(n > 0 && (size_t)n < sizeof(rec));
    /* One line is at most GW_MAX_LOG_LINE, two together at most PIPE_BUF. */
    assert_true(n <= (lines == 1 ? GW_MAX_LOG_LINE : PIPE_BUF));
    assert_int_equal(rec[n - 1], '\n');
    for (i = 0; i < lines; i++) {
        nl = memchr(at, '\n', (size_t)(rec + n - at));
        assert_non_null(nl);
        assert_int_equal(is_truncated(check_pair_line(at, (size_t)(nl - at),
                                                      only != NULL ? only : msgs[i], id)),
                         truncated);
        at = nl + 1;
    }
    assert_ptr_equal(at, rec + n);
}

static void test_pair_is_one_write_up_to_pipe_buf(void **state)
{
    static char big[GW_MAX_LOG_LINE];
    struct gw_logline a, b;
    int sv[2];

    (void)state;
    /* Each write(2) or writev(2) on a SOCK_SEQPACKET socket is one record. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    gw_log_set_fd(lg, sv[0]);
    /* Small: both lines in one record. */
    build_pair(&a, &b, 1, 200);
    gw_log_end_pair(&a, &b);
    expect_record(sv[1], 1, NULL, false);
    /* Over PIPE_BUF together, each line under it: one record per line, in order. */
    build_pair(&a, &b, 2, 3000);
    memset(big, 'q', 2000);
    gw_log_strn(&a, "q", big, 2000);
    gw_log_end_pair(&a, &b);
    expect_record(sv[1], 2, "access", false);
    expect_record(sv[1], 2, "audit", false);
    /* Truncated lines close as gw_log_end closes them, and still go out together. */
    build_pair(&a, &b, 3, 100);
    memset(big, 'z', sizeof(big));
    gw_log_strn(&a, "big", big, sizeof(big));
    gw_log_strn(&b, "big", big, sizeof(big));
    gw_log_end_pair(&a, &b);
    expect_record(sv[1], 3, NULL, true);
    /* Nothing more. */
    assert_true(recv(sv[1], big, sizeof(big), MSG_DONTWAIT) < 0);
    gw_log_set_fd(lg, log_mem);
    close(sv[0]);
    close(sv[1]);
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
        cmocka_unit_test_setup_teardown(test_timestamp_shape_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamp_follows_the_second, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_matches_printf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ms_matches_printf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_every_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_threshold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_on_a_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_is_one_write_up_to_pipe_buf, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * JSON-lines logging. A line is assembled in a fixed buffer on the caller's stack and handed
 * to the kernel with one write(2): no global lock, no interleaving between worker threads, and
 * a bounded size (GW_MAX_LOG_LINE) however long a value is.
 */
#include "hcgw/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum gw_log_level min_level = GW_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Room kept at the end of the buffer for ',"truncated":true}\n'. */
#define LOG_TAIL 24

void gw_log_set_level(enum gw_log_level level)
{
    min_level = level;
}

void gw_log_set_fd(int fd)
{
    log_fd = fd;
}

bool gw_log_enabled(enum gw_log_level level)
{
    return level >= min_level;
}

static void put(struct gw_logline *l, const char *s, size_t n)
{
    if (l->full || l->len + n > sizeof(l->buf) - LOG_TAIL) {
        l->full = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_escaped(struct gw_logline *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6];
    size_t i;

    put(l, "\"", 1);
    for (i = 0; i < n && !l->full; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(l, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            put(l, esc, 6);
        } else {
            put(l, (const char *)&s[i], 1);
        }
    }
    put(l, "\"", 1);
}

static void put_key(struct gw_logline *l, const char *key)
{
    put(l, ",", 1);
    put_escaped(l, key, strlen(key));
    put(l, ":", 1);
}

void gw_log_begin(struct gw_logline *l, enum gw_log_level level, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char stamp[40];
    int n;

    l->len = 0;
    l->full = false;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(stamp, sizeof(stamp), "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000);
    if (n > 0 && (size_t)n < sizeof(stamp))
        put(l, stamp, (size_t)n);
    put_key(l, "level");
    put_escaped(l, level_names[level], strlen(level_names[level]));
    gw_log_strn(l, "msg", msg, strlen(msg));
}

/*
 * A field is written whole or not at all: when it does not fit, the line goes back to where
 * the field began, so that the closing ',"truncated":true}' always follows a complete field
 * and the line stays valid JSON.
 */
static size_t field_begin(const struct gw_logline *l)
{
    return l->len;
}

static void field_end(struct gw_logline *l, size_t mark)
{
    if (l->full)
        l->len = mark;
}

void gw_log_str(struct gw_logline *l, const char *key, const char *value)
{
    size_t mark;

    if (value == NULL) {
        mark = field_begin(l);
        put_key(l, key);
        put(l, "null", 4);
        field_end(l, mark);
        return;
    }
    gw_log_strn(l, key, value, strlen(value));
}

void gw_log_strn(struct gw_logline *l, const char *key, const char *value, size_t len)
{
    size_t mark = field_begin(l);

    put_key(l, key);
    put_escaped(l, value, len);
    field_end(l, mark);
}

void gw_log_int(struct gw_logline *l, const char *key, long long value)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", value);
    size_t mark = field_begin(l);

    put_key(l, key);
    if (n > 0 && (size_t)n < sizeof(num))
        put(l, num, (size_t)n);
    field_end(l, mark);
}

void gw_log_ms(struct gw_logline *l, const char *key, double ms)
{
    char num[48];
    int n;
    size_t mark = field_begin(l);

    /* JSON has no NaN or infinity. */
    if (ms != ms || ms > 1e15 || ms < -1e15)
        ms = -1.0;
    n = snprintf(num, sizeof(num), "%.3f", ms);
    put_key(l, key);
    if (n > 0 && (size_t)n < sizeof(num))
        put(l, num, (size_t)n);
    field_end(l, mark);
}

void gw_log_end(struct gw_logline *l)
{
    static const char trunc[] = ",\"truncated\":true}\n";
    size_t off = 0;
    ssize_t w;

    /* The tail room reserved by put() always fits the closing text. */
    if (l->full) {
        memcpy(l->buf + l->len, trunc, sizeof(trunc) - 1);
        l->len += sizeof(trunc) - 1;
    } else {
        l->buf[l->len++] = '}';
        l->buf[l->len++] = '\n';
    }
    while (off < l->len) {
        w = write(log_fd, l->buf + off, l->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void gw_logf(enum gw_log_level level, const char *fmt, ...)
{
    struct gw_logline l;
    char msg[1024];
    va_list ap;

    if (!gw_log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gw_log_begin(&l, level, msg);
    gw_log_end(&l);
}

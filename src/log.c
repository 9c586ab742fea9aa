/*
 * JSON-lines logging. A line is assembled in a fixed buffer on the caller's stack and handed
 * to the kernel with one write(2), or two lines of one request with one writev(2): no global
 * lock, no interleaving between worker threads, and a bounded size (GW_MAX_LOG_LINE) however
 * long a value is. Logging is on every request's path, so the formatting is done by hand: the
 * timestamp up to the second is kept per thread, numbers are converted without printf, and a
 * run of bytes that needs no escaping is copied at once.
 */
#include "hcgw/log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "hcgw/text.h"

/* A line no longer than PIPE_BUF reaches a pipe in one piece, whoever else writes to it. */
_Static_assert(GW_MAX_LOG_LINE <= PIPE_BUF, "a log line must fit one atomic pipe write");
/* gw_log_ms reads the bits of an IEEE 754 binary64 double. */
_Static_assert(sizeof(double) == sizeof(uint64_t), "double is not 64 bits");

struct gw_log {
    int level;               /* enum gw_log_level; atomic (a reload writes it, workers read it) */
    int fd;
};

/* What follows the timestamp, per level: ,"level":"<name>" as put_key and put_escaped write it. */
static const struct {
    const char *text;
    size_t len;
} level_fields[] = {
#define LEVEL_FIELD(name) {",\"level\":\"" name "\"", sizeof(",\"level\":\"" name "\"") - 1}
    LEVEL_FIELD("debug"),
    LEVEL_FIELD("info"),
    LEVEL_FIELD("warn"),
    LEVEL_FIELD("error"),
#undef LEVEL_FIELD
};

/* Room kept at the end of the buffer for ',"truncated":true}\n'. */
#define LOG_TAIL 24

/*
 * The start of a line up to the milliseconds, {"ts":"YYYY-MM-DDTHH:MM:SS. , formatted once per
 * second and per thread: every line in the same second shares it, so a line costs one
 * clock_gettime (a vDSO call) and three digits, and gmtime_r runs only when the second changes.
 * Per thread, so no lock and no race between workers.
 */
#define STAMP_HEAD_MAX 48
static _Thread_local struct {
    bool valid;
    time_t sec;
    size_t len;
    char text[STAMP_HEAD_MAX];
} stamp_cache;

struct gw_log *gw_log_new(int fd, enum gw_log_level level)
{
    struct gw_log *log = calloc(1, sizeof(*log));

    if (log == NULL)
        return NULL;
    log->fd = fd;
    __atomic_store_n(&log->level, (int)level, __ATOMIC_RELAXED);
    return log;
}

void gw_log_free(struct gw_log *log)
{
    free(log);
}

void gw_log_set_level(struct gw_log *log, enum gw_log_level level)
{
    /* Relaxed: a worker that reads the old level a moment longer writes or skips one more
     * line, which is all a level decides. */
    __atomic_store_n(&log->level, (int)level, __ATOMIC_RELAXED);
}

enum gw_log_level gw_log_level(const struct gw_log *log)
{
    return (enum gw_log_level)__atomic_load_n(&log->level, __ATOMIC_RELAXED);
}

void gw_log_set_fd(struct gw_log *log, int fd)
{
    log->fd = fd;
}

bool gw_log_enabled(const struct gw_log *log, enum gw_log_level level)
{
    return log != NULL && (int)level >= __atomic_load_n(&log->level, __ATOMIC_RELAXED);
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

/*
 * 1 for the bytes JSON needs escaped: the quote, the backslash, the control characters and DEL
 * (not a JSON requirement, but a raw DEL in a log line helps nobody). Bytes from 0x80 up pass
 * through as they are.
 */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* 0x70: DEL */
    /* 0x80 to 0xff: zero. */
};

/*
 * The value in quotes, escaped. A run of bytes that need no escape is copied with one put();
 * the output is the same as escaping byte by byte, and so is the point where the line fills.
 */
static void put_escaped(struct gw_logline *l, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + n;
    const unsigned char *run;
    char esc[7]; /* a \u00XY escape, and the NUL gw_text_hex_encode adds */

    put(l, "\"", 1);
    while (p < end && !l->full) {
        run = p;
        while (p < end && !needs_escape[*p])
            p++;
        if (p > run)
            put(l, (const char *)run, (size_t)(p - run));
        if (p == end)
            break;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else {
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            gw_text_hex_encode(p, 1, esc + 4);
            put(l, esc, 6);
        }
        p++;
    }
    put(l, "\"", 1);
}

static void put_key(struct gw_logline *l, const char *key)
{
    put(l, ",", 1);
    put_escaped(l, key, strlen(key));
    put(l, ":", 1);
}

/*
 * Decimal digits of @p v, written backwards so that they end at @p end; returns where they
 * start. Room for 20 digits is needed.
 */
static char *put_digits(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

void gw_log_begin(const struct gw_log *log, struct gw_logline *l, enum gw_log_level level,
                  const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char ms[5];
    long milli;
    int n;

    l->log = log;
    l->len = 0;
    l->full = false;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!stamp_cache.valid || stamp_cache.sec != ts.tv_sec) {
        stamp_cache.valid = false;
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(stamp_cache.text, sizeof(stamp_cache.text),
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (n > 0 && (size_t)n < sizeof(stamp_cache.text)) {
            stamp_cache.len = (size_t)n;
            stamp_cache.sec = ts.tv_sec;
            stamp_cache.valid = true;
        }
    }
    if (stamp_cache.valid) {
        milli = ts.tv_nsec / 1000000;
        ms[0] = (char)('0' + milli / 100);
        ms[1] = (char)('0' + milli / 10 % 10);
        ms[2] = (char)('0' + milli % 10);
        ms[3] = 'Z';
        ms[4] = '"';
        put(l, stamp_cache.text, stamp_cache.len);
        put(l, ms, sizeof(ms));
    }
    put(l, level_fields[level].text, level_fields[level].len);
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
    char num[24];
    char *end = num + sizeof(num);
    char *start;
    /* The magnitude in unsigned arithmetic, where -LLONG_MIN does not overflow. */
    uint64_t mag = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    size_t mark = field_begin(l);

    start = put_digits(end, mag);
    if (value < 0)
        *--start = '-';
    put_key(l, key);
    put(l, start, (size_t)(end - start));
    field_end(l, mark);
}

/*
 * The double whose bits are @p bits (finite, magnitude at most 1e15) times 1000, rounded to
 * the nearest integer with ties to even, from its exact binary value: what printf("%.3f")
 * prints, without its cost. The magnitude is m * 2^e with m below 2^53, so m * 1000 stays
 * below 2^63 and the scaling is exact.
 */
static uint64_t thousandths(uint64_t bits)
{
    uint64_t m, q, rest, half;
    int biased, e, shift;

    biased = (int)((bits >> 52) & 0x7ff);
    m = bits & ((UINT64_C(1) << 52) - 1);
    if (biased == 0) {
        e = -1074; /* subnormal (or zero) */
    } else {
        m |= UINT64_C(1) << 52;
        e = biased - 1075;
    }
    if (e >= 0)
        return (m << e) * 1000; /* an integer no larger than 1e15 */
    shift = -e;
    m *= 1000;
    if (shift >= 64)
        return 0; /* below 2^63 / 2^64: less than half a thousandth */
    q = m >> shift;
    rest = m & ((UINT64_C(1) << shift) - 1);
    half = UINT64_C(1) << (shift - 1);
    if (rest > half || (rest == half && (q & 1) != 0))
        q++;
    return q;
}

void gw_log_ms(struct gw_logline *l, const char *key, double ms)
{
    char num[32];
    char *const end = num + sizeof(num);
    char *start = end;
    uint64_t bits, q;
    size_t mark = field_begin(l);

    /* JSON has no NaN or infinity. */
    if (ms != ms || ms > 1e15 || ms < -1e15)
        ms = -1.0;
    memcpy(&bits, &ms, sizeof(bits));
    q = thousandths(bits);
    *--start = (char)('0' + q % 10);
    *--start = (char)('0' + q / 10 % 10);
    *--start = (char)('0' + q / 100 % 10);
    *--start = '.';
    start = put_digits(start, q / 1000);
    /* A negative value keeps its sign even when it rounds to zero (-0.000), as printf's. */
    if ((bits >> 63) != 0)
        *--start = '-';
    put_key(l, key);
    put(l, start, (size_t)(end - start));
    field_end(l, mark);
}

/* Close the line: '}' and a newline, or the truncation mark when a field did not fit. */
static void close_line(struct gw_logline *l)
{
    static const char trunc[] = ",\"truncated\":true}\n";

    /* The tail room reserved by put() always fits the closing text. */
    if (l->full) {
        memcpy(l->buf + l->len, trunc, sizeof(trunc) - 1);
        l->len += sizeof(trunc) - 1;
    } else {
        l->buf[l->len++] = '}';
        l->buf[l->len++] = '\n';
    }
}

/*
 * Write @p n buffers with writev(2), going on after a signal or a partial write until all is
 * written or the descriptor fails (a log has nowhere to report its own failure).
 */
static void write_all(const struct gw_log *log, struct iovec *iov, int n)
{
    ssize_t w;
    size_t done;

    if (log == NULL)
        return;
    while (n > 0) {
        w = writev(log->fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done = (size_t)w;
        while (n > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
}

void gw_log_end(struct gw_logline *l)
{
    struct iovec iov;

    close_line(l);
    iov.iov_base = l->buf;
    iov.iov_len = l->len;
    write_all(l->log, &iov, 1);
}

void gw_log_end_pair(struct gw_logline *a, struct gw_logline *b)
{
    struct iovec iov[2];

    close_line(a);
    close_line(b);
    iov[0].iov_base = a->buf;
    iov[0].iov_len = a->len;
    iov[1].iov_base = b->buf;
    iov[1].iov_len = b->len;
    /* Together only while the pair is one atomic pipe write; past that, one write per line
     * keeps each line whole (each is at most PIPE_BUF) where one big write could be split. */
    if (a->len + b->len <= PIPE_BUF) {
        write_all(a->log, iov, 2);
    } else {
        write_all(a->log, &iov[0], 1);
        write_all(a->log, &iov[1], 1);
    }
}

void gw_logf(const struct gw_log *log, enum gw_log_level level, const char *fmt, ...)
{
    struct gw_logline l;
    char msg[1024];
    va_list ap;

    if (!gw_log_enabled(log, level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gw_log_begin(log, &l, level, msg);
    gw_log_end(&l);
}

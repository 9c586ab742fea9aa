/*
 * JSON-lines logs. A logger (struct gw_log) is a descriptor and a level; main makes one (on
 * stderr) and the server and its workers log through it, so two servers in one process log
 * apart. Each line is built in a stack buffer and written with a single write(2) (or, for two
 * lines of one request, a single writev(2)), so threads never take a lock to log and lines
 * never interleave. The level is checked before anything is formatted; a reload changes it
 * while workers read it, so it is read and written atomically. The API key never reaches this
 * module: callers log where the key came from, never what it is.
 *
 * A NULL logger logs nothing: gw_log_enabled is false, gw_logf returns, and a line begun with
 * it is dropped by gw_log_end.
 */
#ifndef HCGW_LOG_H
#define HCGW_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"

#define GW_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))

struct gw_log;

/** One line under construction. Lives on the caller's stack. */
struct gw_logline {
    const struct gw_log *log; /* where gw_log_end writes it (NULL: nowhere) */
    char buf[GW_MAX_LOG_LINE];
    size_t len;
    bool full;               /* a value did not fit; the line is closed as "truncated":true */
};

/**
 * A logger that writes to @p fd (not owned: the caller closes it after gw_log_free) the lines
 * at @p level and above. Returns NULL when out of memory.
 */
struct gw_log *gw_log_new(int fd, enum gw_log_level level);

/** Free @p log; nothing may log with it any more. Accepts NULL. */
void gw_log_free(struct gw_log *log);

/**
 * Set the level below which nothing is logged. Any thread, while others log: the level is
 * stored atomically (a reload sets it while the workers read it).
 */
void gw_log_set_level(struct gw_log *log, enum gw_log_level level);

/** The level now (an atomic read). */
enum gw_log_level gw_log_level(const struct gw_log *log);

/** Write to @p fd from now on. Not atomic: only while no other thread logs with it (tests). */
void gw_log_set_fd(struct gw_log *log, int fd);

/** True when a line at @p level would be written (false for a NULL logger). Any thread. */
bool gw_log_enabled(const struct gw_log *log, enum gw_log_level level);

/**
 * Start a line for @p log: {"ts":"…","level":"…","msg":"<msg>" (msg is escaped). ts is UTC to
 * the millisecond, 2024-05-01T12:34:56.789Z; the part up to the second is formatted once per
 * second in each thread and reused by the lines that follow in that second. The level is not
 * checked here (gw_log_enabled is); @p log must outlive the line.
 */
void gw_log_begin(const struct gw_log *log, struct gw_logline *l, enum gw_log_level level,
                  const char *msg);

/** Add "key":"value" with JSON escaping; a NULL value is written as null. */
void gw_log_str(struct gw_logline *l, const char *key, const char *value);

/** Add "key":"value" for @p len bytes of @p value (escaped; need not be NUL-terminated). */
void gw_log_strn(struct gw_logline *l, const char *key, const char *value, size_t len);

/** Add "key":number, any long long (LLONG_MIN included) in plain decimal. */
void gw_log_int(struct gw_logline *l, const char *key, long long value);

/**
 * Add "key":number with 3 decimals (durations in ms): exactly what printf's "%.3f" writes
 * (rounded to nearest, ties to even; -0.000 for a small negative), and -1.000 for NaN,
 * infinities and magnitudes above 1e15.
 */
void gw_log_ms(struct gw_logline *l, const char *key, double ms);

/**
 * Close the line ('}' and a newline, or ',"truncated":true}' and a newline when a field did
 * not fit) and write it to its logger's descriptor with one system call; a write cut short or
 * interrupted by a signal is continued, a failing descriptor drops the line. A line is at most
 * GW_MAX_LOG_LINE bytes, no more than PIPE_BUF, so it reaches a pipe whole whoever else writes
 * to it.
 */
void gw_log_end(struct gw_logline *l);

/**
 * Close @p a and @p b each as gw_log_end() does and write them, @p a first, with one
 * writev(2) (continued like gw_log_end()'s write) to @p a's logger. Both must have been
 * started with gw_log_begin(), with the same logger. A pair of at most PIPE_BUF bytes in total
 * reaches a pipe as one atomic write: no other line lands inside or between them. A larger pair
 * is written as two writes, one per line, so that each line stays atomic. For two lines of one
 * request (access, then audit).
 */
void gw_log_end_pair(struct gw_logline *a, struct gw_logline *b);

/**
 * A whole line with a printf-formatted message and no other fields, when @p level is enabled
 * for @p log (nothing is formatted otherwise).
 */
void gw_logf(const struct gw_log *log, enum gw_log_level level, const char *fmt, ...)
    GW_PRINTF(3, 4);

#endif

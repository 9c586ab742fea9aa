/*
 * JSON-lines logs on stderr. Each line is built in a stack buffer and written with a single
 * write(2) (or, for two lines of one request, a single writev(2)), so threads never take a
 * lock to log and lines never interleave. The level is checked before anything is formatted.
 * The API key never reaches this module: callers log where the key came from, never what it
 * is.
 */
#ifndef HCGW_LOG_H
#define HCGW_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"

#define GW_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))

/** One line under construction. Lives on the caller's stack. */
struct gw_logline {
    char buf[GW_MAX_LOG_LINE];
    size_t len;
    bool full;               /* a value did not fit; the line is closed as "truncated":true */
};

/** Set the level below which nothing is logged. Call before threads start; default info. */
void gw_log_set_level(enum gw_log_level level);

/** Direct logs to @p fd (default 2). For tests. */
void gw_log_set_fd(int fd);

/** True when a line at @p level would be written. */
bool gw_log_enabled(enum gw_log_level level);

/**
 * Start a line: {"ts":"…","level":"…","msg":"<msg>" (msg is escaped). ts is UTC to the
 * millisecond, 2024-05-01T12:34:56.789Z; the part up to the second is formatted once per
 * second in each thread and reused by the lines that follow in that second.
 */
void gw_log_begin(struct gw_logline *l, enum gw_log_level level, const char *msg);

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
 * not fit) and write it with one system call; a write cut short or interrupted by a signal is
 * continued, a failing descriptor drops the line. A line is at most GW_MAX_LOG_LINE bytes,
 * no more than PIPE_BUF, so it reaches a pipe whole whoever else writes to it.
 */
void gw_log_end(struct gw_logline *l);

/**
 * Close @p a and @p b each as gw_log_end() does and write them, @p a first, with one
 * writev(2) (continued like gw_log_end()'s write). Both must have been started with
 * gw_log_begin(). A pair of at most PIPE_BUF bytes in total reaches a pipe as one atomic write:
 * no other line lands inside or between them. A larger pair is written as two writes, one per
 * line, so that each line stays atomic. For two lines of one request (access, then audit).
 */
void gw_log_end_pair(struct gw_logline *a, struct gw_logline *b);

/** A whole line with a printf-formatted message and no other fields. */
void gw_logf(enum gw_log_level level, const char *fmt, ...) GW_PRINTF(2, 3);

#endif

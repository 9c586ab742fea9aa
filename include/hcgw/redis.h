/*
 * One Redis connection of one worker, on the worker's event loop: hiredis's asynchronous API
 * driven by an adapter for hcgw's loop (the socket through gw_loop_io_set, and gw_timer for
 * every deadline, which hiredis 0.14 does not keep). No thread ever waits on Redis: a host
 * name is looked up asynchronously (resolve.h), connect(2) does not block, and every command
 * has a deadline.
 *
 * The connection is up once it is connected, signed in (AUTH [username] password, when
 * redis.password_file is set) and on its database (SELECT, when redis.url names one other
 * than 0). It goes down when Redis refuses or drops the connection, when a command is not
 * answered within redis.timeout_ms, when an answer is too large, or when a user of the
 * connection finds an answer wrong (gw_redis_fail). Going down ends every command in flight
 * with GW_REDIS_DOWN; while down, commands are refused at once; the next connection is tried
 * after a backoff (limits.h: GW_REDIS_BACKOFF_MIN_MS, doubled after each failure up to
 * GW_REDIS_BACKOFF_MAX_MS, drawn between half and all of it). One callback hears each change
 * between up and down.
 *
 * Every function runs on the loop's thread, except gw_redis_stats and gw_redis_error_name.
 */
#ifndef HCGW_REDIS_H
#define HCGW_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/loop.h"

struct gw_config;
struct gw_log;
struct gw_redis;
struct gw_redis_cmd;
struct gw_secret;
struct redisReply; /* hiredis's <hiredis/hiredis.h> */

/** How a command ended. */
enum gw_redis_result {
    GW_REDIS_REPLY = 0,  /* Redis answered: the reply is its answer (maybe an error reply) */
    GW_REDIS_TIMEOUT = 1,/* no answer by the command's deadline; a later one is ignored */
    GW_REDIS_DOWN = 2    /* the connection went down before an answer came, and before the
                            command's deadline */
};

/** Why the connection failed or a command was refused: the label kind of the error count. */
enum gw_redis_error {
    GW_REDIS_ERR_CONNECT = 0,  /* "connect": the name lookup or the connection failed */
    GW_REDIS_ERR_AUTH,         /* "auth": Redis refused AUTH or SELECT */
    GW_REDIS_ERR_TIMEOUT,      /* "timeout": no answer within redis.timeout_ms (or the sign-in's) */
    GW_REDIS_ERR_CLOSED,       /* "closed": the connection was lost */
    GW_REDIS_ERR_REPLY,        /* "reply": an error answer (but NOSCRIPT), counted as it comes */
    GW_REDIS_ERR_PROTOCOL,     /* "protocol": an answer larger than GW_REDIS_MAX_REPLY_BYTES,
                                  or not the shape its command answers (gw_redis_fail) */
    GW_REDIS_ERR_OVERLOAD,     /* "overload": a command refused, GW_REDIS_MAX_PENDING in flight */
    GW_REDIS_ERR__COUNT
};

/** The duration histogram's buckets: upper bounds in seconds (gw_redis_duration_bounds_s). */
#define GW_REDIS_DURATION_BUCKETS 11

/** Upper bounds, in seconds, of the duration buckets of struct gw_redis_stats. */
extern const double gw_redis_duration_bounds_s[GW_REDIS_DURATION_BUCKETS];

/**
 * What one connection counted, for /metrics (hcgw_redis_up, hcgw_redis_duration_seconds,
 * hcgw_redis_errors_total{kind}). Written only by the loop's thread.
 */
struct gw_redis_stats {
    uint64_t up;                     /* 1 while up, else 0 */
    uint64_t connects;               /* times it came up */
    uint64_t answers;                /* commands Redis answered */
    uint64_t errors[GW_REDIS_ERR__COUNT];
    /* Answered commands by duration, from sending to the answer: bucket i counts those of at
     * most gw_redis_duration_bounds_s[i] and more than the bound before it (not cumulative);
     * the last one counts the slower ones. */
    uint64_t duration_buckets[GW_REDIS_DURATION_BUCKETS + 1];
    uint64_t duration_sum_us;
};

/**
 * Called once per command (unless cancelled first), on the loop's thread, never from inside
 * gw_redis_command. @p reply (GW_REDIS_REPLY only, else NULL) lives until the callback
 * returns; read it with hiredis's <hiredis/hiredis.h>. The callback may send commands.
 */
typedef void gw_redis_reply_cb(void *data, enum gw_redis_result result,
                               const struct redisReply *reply);

/**
 * Called when the connection comes up (@p up true, @p reason NULL) or goes down (false, with
 * a one-line reason that never holds the password, valid during the call). Not called for the
 * first state, down, nor for a failed attempt while down (gw_redis_last_error tells those).
 */
typedef void gw_redis_state_cb(void *data, bool up, const char *reason);

/** The label of @p kind ("connect", "auth", ...), or "unknown". Any thread. */
const char *gw_redis_error_name(enum gw_redis_error kind);

/**
 * A connection to the Redis of cfg->redis (its url must be set), started at the loop's next
 * iteration, never inside this function; it starts down. @p cfg (with the password it holds)
 * must outlive it or be replaced with gw_redis_reconfigure; @p log (NULL: none) gets one line
 * when it comes up and one for each new reason it is down; @p on_state (NULL: none) hears the
 * changes. The process must ignore SIGPIPE (hiredis writes with write(2); main.c does).
 * Returns NULL when out of memory.
 */
struct gw_redis *gw_redis_new(struct gw_loop *loop, const struct gw_config *cfg,
                              struct gw_log *log, gw_redis_state_cb *on_state, void *data);

/**
 * Use @p cfg (a reload; its url must be set) from now on: when the target changed (host,
 * port, database, username or password), the connection is closed (commands in flight end
 * with GW_REDIS_DOWN, and the state callback hears the change when it was up) and a new one
 * is started at once; otherwise the new timeout applies to the next commands.
 */
void gw_redis_reconfigure(struct gw_redis *r, const struct gw_config *cfg);

/**
 * Close and free @p r. The commands still in flight are dropped without their callbacks:
 * cancel them first if their callers must hear it. Not from inside one of its callbacks.
 * Accepts NULL.
 */
void gw_redis_free(struct gw_redis *r);

/**
 * Send the command of @p argc arguments (@p argv, their lengths in @p argvlen: binary-safe;
 * hiredis copies them). It must be answered by @p deadline_ms (loop time; 0: none of the
 * caller's) and within redis.timeout_ms, whichever comes first; when the caller's deadline
 * passes first, the callback gets GW_REDIS_TIMEOUT and the connection stays; when
 * redis.timeout_ms passes, the callback gets GW_REDIS_TIMEOUT and the connection goes down.
 * Returns 0: @p cb will be called exactly once, later; *out (when @p out is not NULL) is a
 * handle for gw_redis_cancel, valid until the callback runs. Returns a negative gw_err, and
 * @p cb is never called: GW_ERR_UPSTREAM_UNAVAILABLE while down, GW_ERR_OVERLOADED with
 * GW_REDIS_MAX_PENDING commands in flight, GW_ERR_NOMEM.
 */
int gw_redis_command(struct gw_redis *r, int argc, const char *const argv[],
                     const size_t argvlen[], uint64_t deadline_ms, gw_redis_reply_cb *cb,
                     void *data, struct gw_redis_cmd **out);

/**
 * The caller of @p cmd, whose callback has not run, no longer wants it: it never runs. The
 * command itself stays in flight (its answer is read and dropped) and still counts toward
 * redis.timeout_ms. Accepts NULL.
 */
void gw_redis_cancel(struct gw_redis_cmd *cmd);

/**
 * The caller found an answer that shows the connection unusable: an error answer where none
 * should come (@p kind GW_REDIS_ERR_REPLY, not counted again: it was when it came), or one of
 * the wrong shape (GW_REDIS_ERR_PROTOCOL, counted). It goes down with @p reason (which must
 * not hold the password), and is tried again after the backoff. May be called from inside a
 * reply callback. No-op while down.
 */
void gw_redis_fail(struct gw_redis *r, enum gw_redis_error kind, const char *reason);

/** True while up: connected, signed in, on its database. */
bool gw_redis_up(const struct gw_redis *r);

/**
 * The connection's session: how many times it came up. Two reads that give the same number
 * saw one unbroken connection in between (while it was up at both).
 */
uint64_t gw_redis_session(const struct gw_redis *r);

/* ---- what the features built on the connection share ---- */

/** A SHA-1 in hex and its NUL, as EVALSHA takes it. */
#define GW_REDIS_SHA1_HEX_BYTES 41

/** Hex digits of an account's tag: half of a SHA-256, ample to tell accounts apart. */
#define GW_REDIS_ACCOUNT_HEX 32

/** @p n bytes of @p b as 2n lowercase hex digits and a NUL in @p out. Any thread. */
void gw_redis_hex(const unsigned char *b, size_t n, char *out);

/** The SHA-1 of a Lua script in hex, the name EVALSHA knows it by. Any thread. */
void gw_redis_script_sha(const char *script, char out[GW_REDIS_SHA1_HEX_BYTES]);

/**
 * The name in Redis of the HelpCrunch account whose API key is @p key: hex digits of a
 * SHA-256 of the key in the quota's domain, never the key. Every key of one account holds it
 * in braces ({tag}), which keeps them in one Redis Cluster slot. Any thread.
 */
void gw_redis_account_tag(const struct gw_secret *key, char out[GW_REDIS_ACCOUNT_HEX + 1]);

/** Commands in flight (sent, callback not yet run or cancelled). */
size_t gw_redis_pending(const struct gw_redis *r);

/**
 * Why it was last down, one line without the password ("" when it never was); valid until
 * the loop runs again.
 */
const char *gw_redis_last_error(const struct gw_redis *r);

/** Copy its counts into @p out. Any thread (each count is read atomically, not all at once). */
void gw_redis_stats(const struct gw_redis *r, struct gw_redis_stats *out);

#endif

/*
 * The configuration: read once from a libconfig file, checked whole, then read-only.
 * A reload builds a new struct gw_config and swaps it; nothing edits one in place.
 */
#ifndef HCGW_CONFIG_H
#define HCGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/** Default configuration path when -c is not given. */
#define GW_CONFIG_DEFAULT_PATH "/etc/hcgw/hcgw.conf"

enum gw_log_level { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3 };

struct gw_config {
    char *path;                      /* the file this was read from */
    struct {
        char *address;               /* listen.address, default "127.0.0.1" */
        int port;                    /* listen.port 0..65535, default 8080 (0: ephemeral) */
    } listen;
    struct {
        int workers;                 /* server.workers 0..GW_MAX_WORKERS, 0 = one per CPU; default 1 */
        long drain_timeout_ms;       /* server.drain_timeout_ms, default 10000 */
    } server;
    struct {
        char *base_url;              /* upstream.base_url, no trailing slash */
        char *api_key;               /* upstream.api_key or NULL; wiped on free */
        char *api_key_file;          /* upstream.api_key_file or NULL */
        long connect_timeout_ms;     /* default 2000 */
        long timeout_ms;             /* whole deadline, retries included; default 10000 */
        int max_retries;             /* 0..10, default 2 */
        long retry_base_ms;          /* first backoff, default 100 */
        long retry_max_ms;           /* backoff cap, default 2000 */
        long retry_after_fallback_s; /* Retry-After we give on 429 when HelpCrunch gave none; default 10 */
        int max_connections;         /* pool size (connections to the upstream host); default 64 */
    } upstream;
    struct {
        long max_body_bytes;         /* request body bound, default 65536 */
        long max_upstream_body_bytes;/* upstream answer bound, default 8 MiB */
        int max_connections;         /* client connections per worker, default 1024 */
        long connection_timeout_ms;  /* idle client connection timeout, default 30000 */
        int max_in_flight;           /* requests waiting on HelpCrunch per worker; default 4096 */
    } limits;
    struct {
        int requests_per_minute;     /* quota.requests_per_minute, 0 = off; default 120 */
        int burst;                   /* quota.burst, calls that may go at once; default 10 */
        long max_wait_ms;            /* quota.max_wait_ms, longest wait for a slot; default 5000 */
        long cooldown_ms;            /* quota.cooldown_ms, pause after a 429 without Retry-After; default 10000 */
    } quota;
    struct {
        enum gw_log_level level;     /* log.level "debug" | "info" | "warn" | "error"; default info */
    } log;
};

/**
 * Read and check the file at @p path. Returns a new config, or NULL when the file cannot be
 * read or has any problem; then @p errors (if not NULL) receives a malloc'd text with one line
 * per problem, "FILE:LINE: key: reason\n" (unknown keys and wrong types are problems), which the
 * caller frees. Thread: any. The API key, when the file holds one, is wiped from libconfig's
 * memory before this returns.
 */
struct gw_config *gw_config_load(const char *path, char **errors);

/** Free a config and wipe the API key it may hold. Accepts NULL. */
void gw_config_free(struct gw_config *cfg);

/** Parse a level name ("debug", ...). Returns 0 and sets *out, or -1. */
int gw_config_parse_level(const char *name, enum gw_log_level *out);

#endif

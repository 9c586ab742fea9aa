/*
 * The configuration: read once from a libconfig file, checked whole, then read-only.
 * A reload builds a new struct gw_config and swaps it; nothing edits one in place.
 */
#ifndef HCGW_CONFIG_H
#define HCGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcgw/limits.h"

struct gw_secret;
struct gw_tls_creds;

/** Default configuration path when -c is not given. */
#define GW_CONFIG_DEFAULT_PATH "/etc/hcgw/hcgw.conf"

enum gw_log_level { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3 };

/** upstream.key_file_mode: what a key file readable by other users (group or other) gets. */
enum gw_key_file_mode {
    GW_KEY_FILE_WARN = 0,            /* "warn": a warning at every load, the key is used */
    GW_KEY_FILE_REFUSE = 1           /* "refuse": the key is not loaded (start or reload fails) */
};

/** upstream.http_version: the HTTP version hcgw asks HelpCrunch for. */
enum gw_http_version {
    GW_HTTP_1_1 = 0,                 /* "1.1": HTTP/1.1 only, one call per connection at a time */
    GW_HTTP_2 = 1                    /* "2": HTTP/2 over TLS when the server offers it (ALPN),
                                        a worker's calls multiplexed on few connections */
};

/** The top-level `auth` key: who may call hcgw (see auth.h). */
enum gw_auth_mode {
    GW_AUTH_MODE_CLIENTS = 0,        /* "clients": a request names a client (when any are configured) */
    GW_AUTH_MODE_NONE = 1            /* "none": no caller checks at all (a mesh enforces policy) */
};

/** A list of strings read from the configuration (each malloc'd, as the array). */
struct gw_strings {
    char **v;                        /* NULL when empty */
    size_t n;
};

/** One entry of the top-level `clients` list: a caller, its credentials and its routes. */
struct gw_client {
    char *name;                      /* 1..GW_MAX_CLIENT_NAME of [A-Za-z0-9._-], unique */
    bool has_token;                  /* token_sha256 or token_file was given */
    unsigned char token_sha256[32];  /* SHA-256 of its bearer token (never the token itself) */
    char *identity;                  /* the mesh identity (SPIFFE URI, X-Client-Id), or NULL */
    uint64_t routes;                 /* bit 1 << enum gw_route_id for every route it may call */
    /* origins: the browser origins it may be used from, a subset of cors.allow_origins; empty:
     * any of them (cors.h) */
    struct gw_strings origins;
};

struct gw_config {
    char *path;                      /* the file this was read from */
    struct {
        char *address;               /* listen.address, default "127.0.0.1" */
        int port;                    /* listen.port 0..65535, default 8080 (0: ephemeral) */
        struct {
            char *cert_file;         /* listen.tls.cert_file, or NULL: plain HTTP */
            char *key_file;          /* listen.tls.key_file (given with cert_file) */
            char *client_ca_file;    /* listen.tls.client_ca_file, or NULL: no client certificates */
            /* The three files, read and checked when this config was loaded (tls.h); NULL
             * without cert_file. Freed with the config: a reload that replaces it frees the old
             * pair once no worker can use it. */
            struct gw_tls_creds *creds;
        } tls;
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
        int pool_shards;             /* multi handles the pool is split over; 0 (default): one
                                        per GW_POOL_SHARD_CONNS connections */
        long auth_failure_unready_ms;/* /readyz 503 this long after a 401/403; default 0 (off) */
        bool allow_insecure_http;    /* http:// to a host that is not loopback; default false */
        char *ca_file;               /* CA bundle that verifies HelpCrunch's TLS, or NULL (system's) */
        char *proxy;                 /* egress proxy URL, or NULL: none (the environment's is ignored) */
        enum gw_key_file_mode key_file_mode; /* "warn" | "refuse"; default warn */
        bool propagate_trace;        /* send a child traceparent (and tracestate); default false */
        enum gw_http_version http_version; /* "1.1" | "2"; default "1.1" (a reload keeps it) */
    } upstream;
    struct {
        long max_body_bytes;         /* request body bound, default 65536 */
        long max_upstream_body_bytes;/* upstream answer bound, default 8 MiB */
        int max_connections;         /* client connections per worker, default 1024 */
        int max_header_bytes;        /* request line + headers memory per connection; 16384 */
        long connection_timeout_ms;  /* idle client connection timeout, default 30000 */
        long header_timeout_ms;      /* whole request line + headers must arrive within; default 10000 */
        int max_in_flight;           /* requests waiting on HelpCrunch per worker; default 4096 */
    } limits;
    struct {
        int requests_per_minute;     /* quota.requests_per_minute, 0 = off; default 120 */
        int burst;                   /* quota.burst, calls that may go at once; default 10 */
        long max_wait_ms;            /* quota.max_wait_ms, longest wait for a slot; default 5000 */
        long cooldown_ms;            /* quota.cooldown_ms, pause after a 429 without Retry-After; default 10000 */
        /* quota.fallback_requests_per_minute: this replica's own rate while Redis is away;
         * default requests_per_minute / redis.expected_replicas, at least 1 (0 when
         * requests_per_minute is 0) */
        int fallback_requests_per_minute;
    } quota;
    struct {
        /* redis.url, redis://host[:port][/db]; NULL: no redis group, every replica counts
         * alone (the quota is local). The three fields below are parsed from it. */
        char *url;
        char host[GW_MAX_REDIS_HOST_BYTES + 1]; /* a name or an IP literal, without brackets */
        int port;                    /* default 6379 */
        int db;                      /* 0..GW_MAX_REDIS_DB, default 0 */
        char *username;              /* redis.username (an ACL user), or NULL: the default user */
        char *password_file;         /* redis.password_file, or NULL: no AUTH */
        /* The password read from password_file when the file was loaded (NULL without one);
         * wiped when this config is freed, so a reload that replaces it wipes the old one. */
        struct gw_secret *password;
        bool password_shared;        /* its file is readable by others (key_file_mode warn) */
        long timeout_ms;             /* redis.timeout_ms, each command's deadline; default 50 */
        char *key_prefix;            /* redis.key_prefix, default "hcgw:" */
        int expected_replicas;       /* redis.expected_replicas, 1..GW_MAX_REPLICAS; default 1 */
    } redis;
    struct {
        long ttl_ms;                 /* cache.ttl_ms, 0 = off; default 10000 */
        long max_entries;            /* cache.max_entries; default 10000 */
        long max_bytes;              /* cache.max_bytes; default 32 MiB */
    } cache;
    struct {
        bool tags;                   /* coalesce.tags: merge waiting tag writes; default true */
    } coalesce;
    struct {
        bool gzip;                   /* compression.gzip: gzip answers for callers who accept
                                        it; default true */
        long min_bytes;              /* compression.min_bytes: smaller answers go as they are;
                                        default GW_GZIP_MIN_BYTES_DEFAULT */
        int level;                   /* compression.level, zlib 1..9; default GW_GZIP_LEVEL_DEFAULT */
        bool upstream;               /* compression.upstream: ask HelpCrunch for gzip; default true */
    } compression;
    struct {
        long ttl_s;                  /* idempotency.ttl_s, 0 = off; default 86400 */
        long max_entries;            /* idempotency.max_entries; default 10000 */
        long max_bytes;              /* idempotency.max_bytes; default 16 MiB */
    } idempotency;
    struct {
        /* Browsers as callers (cors.h): true when the file has a cors group. Without one, no
         * answer carries a CORS header and OPTIONS is not served. */
        bool enabled;
        struct gw_strings allow_origins; /* cors.allow_origins: origins, or the one "*" */
        bool any;                    /* allow_origins is [ "*" ] (only while no clients) */
        long max_age_s;              /* cors.max_age_s, Access-Control-Max-Age; default 600 */
    } cors;
    struct {
        enum gw_log_level level;     /* log.level "debug" | "info" | "warn" | "error"; default info */
    } log;
    struct {
        enum gw_auth_mode mode;      /* top-level auth "clients" | "none"; default "clients" */
        bool trust_mesh_identity;    /* top-level trust_mesh_identity; default false */
        char *mesh_identity_header;  /* top-level mesh_identity_header, lowercased;
                                        default "x-forwarded-client-cert" */
        struct gw_client *clients;   /* top-level clients list; NULL when none */
        size_t nclients;
    } auth;
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

/**
 * True when @p host (an IP literal without brackets, or a name) is this machine: 127.0.0.0/8,
 * ::1, ::ffff:127.x.x.x or "localhost". Any other name is not, whatever DNS says. Pure; any thread.
 */
bool gw_config_is_loopback(const char *host);

/**
 * True when @p url is http:// (not https://) to a host that gw_config_is_loopback does not
 * accept, so that the key in its Authorization header would cross a network in clear.
 */
bool gw_config_url_in_clear(const char *url);

#endif

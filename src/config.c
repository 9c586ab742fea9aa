/*
 * The configuration file: read once, checked whole, then read-only.
 *
 * Every key hcgw knows is one row of the table below: its dotted name, its type, its bounds,
 * its default and the field of struct gw_config it fills. Loading applies every default, then
 * walks the whole libconfig tree and checks each setting against the table, so a misspelt key
 * is an error instead of a line that is silently ignored. Every problem is collected, one
 * "FILE:LINE: key: reason" line each, so one run of --check-config shows all that is wrong.
 * Nothing edits a struct gw_config after gw_config_load returns it; a reload builds a new one.
 */
#include "hcgw/config.h"

#include "hcgw/limits.h"
#include "hcgw/auth.h"
#include "hcgw/buf.h"
#include "hcgw/cors.h"
#include "hcgw/err.h"
#include "hcgw/secret.h"
#include "hcgw/tls.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest configuration file read; the commented reference file is about 10 KiB. */

/* Problems listed one per line; past this many, one last line only counts the rest. */
#define CONFIG_MAX_PROBLEMS 100

/* Room for the reason part of one problem line ("must be shorter than 1024 bytes"). */
#define CONFIG_REASON_BYTES 192

/*
 * The problems text: at most CONFIG_MAX_PROBLEMS lines and the line that counts the rest, each
 * a path, names read from the file (two at most, each shorter than the file) and a reason, so
 * a load never reaches this bound; past it a line counts as out of memory.
 */
#define CONFIG_MAX_PROBLEM_TEXT_BYTES                                                        \
    ((size_t)(CONFIG_MAX_PROBLEMS + 1) *                                                     \
     ((size_t)PATH_MAX + 2 * (size_t)GW_MAX_CONFIG_BYTES + CONFIG_REASON_BYTES + 64))

/* The first allocation of the problems text: a few lines. */
#define CONFIG_PROBLEM_TEXT_FIRST 256

/* The first allocation for the file's text; it doubles up to GW_MAX_CONFIG_BYTES + 2. */
#define CONFIG_TEXT_FIRST 8192

/* Room for one strerror_r text. */
#define CONFIG_ERRNO_BYTES 128

/* Room for the dotted name of a group ("listen.tls"); a longer one names no group. */
#define CONFIG_GROUP_BYTES 64

/*
 * The longest API key, the same bound secret.c enforces (secret.h: 1..4096 bytes). It belongs
 * in limits.h; until it is there, this fallback keeps the two files in step.
 */

enum key_type {
    KEY_INT,    /* an int field; libconfig int or int64 */
    KEY_LONG,   /* a long field; libconfig int or int64 */
    KEY_BOOL,   /* a bool field; libconfig true/false */
    KEY_STRING, /* a malloc'd char * field, or whatever the key's setter fills */
    KEY_STRINGS, /* a struct gw_strings field: a non-empty array or list of distinct strings,
                  * each checked by the key's check */
};

/*
 * Checks (and may normalise in place) a string value before it is stored. Returns 0, or -1
 * with a reason in @p why.
 */
typedef int (*check_fn)(char *value, char *why, size_t whysz);

/* Stores a string value somewhere other than a char * field. Returns 0, or -1 with a reason. */
typedef int (*set_fn)(struct gw_config *cfg, const char *value, char *why, size_t whysz);

struct key {
    const char *name;    /* dotted: "upstream.timeout_ms"; the part before the dot is a group */
    enum key_type type;
    long long min, max;  /* integers only, both inclusive */
    long long def;       /* the default of an integer or boolean key */
    const char *def_str; /* the default of a string key; NULL for none */
    size_t offset;       /* the field in struct gw_config (unless set is given) */
    check_fn check;      /* string keys: optional check before storing */
    set_fn set;          /* string keys: optional setter used instead of offset */
};

static int check_address(char *value, char *why, size_t whysz);
static int check_base_url(char *value, char *why, size_t whysz);
static int check_api_key(char *value, char *why, size_t whysz);
static int check_path(char *value, char *why, size_t whysz);
static int check_ca_file(char *value, char *why, size_t whysz);
static int check_proxy(char *value, char *why, size_t whysz);
static int set_level(struct gw_config *cfg, const char *value, char *why, size_t whysz);
static int set_key_file_mode(struct gw_config *cfg, const char *value, char *why, size_t whysz);
static int set_auth_mode(struct gw_config *cfg, const char *value, char *why, size_t whysz);
static int set_http_version(struct gw_config *cfg, const char *value, char *why, size_t whysz);
static int check_header_name(char *value, char *why, size_t whysz);
static int check_redis_url(char *value, char *why, size_t whysz);
static int check_redis_username(char *value, char *why, size_t whysz);
static int check_redis_prefix(char *value, char *why, size_t whysz);
static int check_allow_origin(char *value, char *why, size_t whysz);
static int check_origin(char *value, char *why, size_t whysz);

/* The callers section at the end of this file: top-level keys and the clients list. */
struct load;
static const struct key *top_key(const char *name);
static void load_clients(struct load *ld, const config_setting_t *list);
static void check_clients(struct load *ld, const config_setting_t *root);
static void free_clients(struct gw_config *cfg);

/* The Redis section at the end of this file: the checks that involve the whole group. */
static void check_redis(struct load *ld, const config_setting_t *root);

/* The TLS section at the end of this file: listen.tls's files, read and checked. */
static void check_tls(struct load *ld, const config_setting_t *root);
/* The browsers section at the end of this file: lists of strings, the cors group as a whole. */
static void read_strings(struct load *ld, const config_setting_t *s, const char *group,
                         const char *name, check_fn check, struct gw_strings *out);
static void free_strings(struct gw_strings *list);
static void check_cors(struct load *ld, const config_setting_t *root);

/* Table rows: a key's dotted name, the field it fills, then its bounds and default. */
#define FIELD_OF(field) offsetof(struct gw_config, field)
#define INT_KEY(key, fld, lo, hi, dflt)                                                      \
    {.name = key, .type = KEY_INT, .min = lo, .max = hi, .def = dflt, .offset = FIELD_OF(fld)}
#define LONG_KEY(key, fld, lo, hi, dflt)                                                     \
    {.name = key, .type = KEY_LONG, .min = lo, .max = hi, .def = dflt, .offset = FIELD_OF(fld)}
#define STRING_KEY(key, fld, dflt, chk)                                                      \
    {.name = key, .type = KEY_STRING, .def_str = dflt, .offset = FIELD_OF(fld), .check = chk}

/*
 * Every key, grouped as in conf/hcgw.conf (which documents the same bounds for users). The
 * bounds keep each value where the code that uses it stays sane: no timeout of zero where
 * libcurl would read zero as "no deadline", and every value fits in an int.
 */
static const struct key keys[] = {
    STRING_KEY("listen.address", listen.address, "127.0.0.1", check_address),
    INT_KEY("listen.port", listen.port, 0, 65535, 8080),
    /* A group inside listen: HTTPS. check_tls reads the files once the whole file is read. */
    STRING_KEY("listen.tls.cert_file", listen.tls.cert_file, NULL, check_path),
    STRING_KEY("listen.tls.key_file", listen.tls.key_file, NULL, check_path),
    STRING_KEY("listen.tls.client_ca_file", listen.tls.client_ca_file, NULL, check_path),

    INT_KEY("server.workers", server.workers, 0, GW_MAX_WORKERS, 1),
    LONG_KEY("server.drain_timeout_ms", server.drain_timeout_ms, 0, 600000, 10000),

    STRING_KEY("upstream.base_url", upstream.base_url, "https://api.helpcrunch.com/v1",
               check_base_url),
    STRING_KEY("upstream.api_key", upstream.api_key, NULL, check_api_key),
    STRING_KEY("upstream.api_key_file", upstream.api_key_file, NULL, check_path),
    LONG_KEY("upstream.connect_timeout_ms", upstream.connect_timeout_ms, 1, 60000, 2000),
    LONG_KEY("upstream.timeout_ms", upstream.timeout_ms, 1, 600000, 10000),
    INT_KEY("upstream.max_retries", upstream.max_retries, 0, 10, 2),
    LONG_KEY("upstream.retry_base_ms", upstream.retry_base_ms, 1, 60000, 100),
    LONG_KEY("upstream.retry_max_ms", upstream.retry_max_ms, 1, 600000, 2000),
    LONG_KEY("upstream.retry_after_fallback_s", upstream.retry_after_fallback_s, 1,
             GW_MAX_RETRY_AFTER_S, 10),
    INT_KEY("upstream.max_connections", upstream.max_connections, 1, 10000, 64),
    INT_KEY("upstream.pool_shards", upstream.pool_shards, 0, GW_MAX_POOL_SHARDS, 0),
    LONG_KEY("upstream.auth_failure_unready_ms", upstream.auth_failure_unready_ms, 0, 86400000,
             0),
    /* Secure defaults: the key leaves in clear only on purpose, TLS trusts a chosen CA. */
    {.name = "upstream.allow_insecure_http", .type = KEY_BOOL, .def = 0,
     .offset = FIELD_OF(upstream.allow_insecure_http)},
    STRING_KEY("upstream.ca_file", upstream.ca_file, NULL, check_ca_file),
    STRING_KEY("upstream.proxy", upstream.proxy, NULL, check_proxy),
    {.name = "upstream.key_file_mode", .type = KEY_STRING, .def_str = "warn",
     .set = set_key_file_mode},
    /* HelpCrunch is a third party: a caller's trace context goes there only on purpose. */
    {.name = "upstream.propagate_trace", .type = KEY_BOOL, .def = 0,
     .offset = FIELD_OF(upstream.propagate_trace)},
    /* An enum: "1.1" or "2" (HTTP/2 only when this libcurl has it). */
    {.name = "upstream.http_version", .type = KEY_STRING, .def_str = "1.1",
     .set = set_http_version},

    LONG_KEY("limits.max_body_bytes", limits.max_body_bytes, 1, 16777216, 65536),
    LONG_KEY("limits.max_upstream_body_bytes", limits.max_upstream_body_bytes, 1024, 268435456,
             GW_DEFAULT_UPSTREAM_BODY_BYTES),
    INT_KEY("limits.max_connections", limits.max_connections, 1, 1000000, 1024),
    INT_KEY("limits.max_header_bytes", limits.max_header_bytes, GW_MIN_HEADER_BYTES,
            GW_MAX_HEADER_BYTES, GW_DEFAULT_HEADER_BYTES),
    LONG_KEY("limits.connection_timeout_ms", limits.connection_timeout_ms, 0, 3600000, 30000),
    LONG_KEY("limits.header_timeout_ms", limits.header_timeout_ms, 0, 3600000, 10000),
    INT_KEY("limits.max_in_flight", limits.max_in_flight, 1, 1000000, 4096),

    INT_KEY("quota.requests_per_minute", quota.requests_per_minute, 0, 1000000, 120),
    INT_KEY("quota.burst", quota.burst, 1, 100000, 10),
    LONG_KEY("quota.max_wait_ms", quota.max_wait_ms, 0, 600000, 5000),
    LONG_KEY("quota.cooldown_ms", quota.cooldown_ms, 1, 3600000, 10000),
    /* The default, 0 here, is not a value: check_redis derives it from requests_per_minute
     * and redis.expected_replicas once both are known. */
    INT_KEY("quota.fallback_requests_per_minute", quota.fallback_requests_per_minute, 1,
            1000000, 0),

    /* No url, no Redis: every other redis key is then refused (check_redis). */
    STRING_KEY("redis.url", redis.url, NULL, check_redis_url),
    STRING_KEY("redis.username", redis.username, NULL, check_redis_username),
    STRING_KEY("redis.password_file", redis.password_file, NULL, check_path),
    LONG_KEY("redis.timeout_ms", redis.timeout_ms, 1, GW_MAX_REDIS_TIMEOUT_MS, 50),
    STRING_KEY("redis.key_prefix", redis.key_prefix, "hcgw:", check_redis_prefix),
    INT_KEY("redis.expected_replicas", redis.expected_replicas, 1, GW_MAX_REPLICAS, 1),

    LONG_KEY("cache.ttl_ms", cache.ttl_ms, 0, 3600000, 10000),
    LONG_KEY("cache.max_entries", cache.max_entries, 1, 10000000, 10000),
    LONG_KEY("cache.max_bytes", cache.max_bytes, 4096, 4294967296L, 33554432),

    {.name = "coalesce.tags", .type = KEY_BOOL, .def = 1, .offset = FIELD_OF(coalesce.tags)},

    {.name = "compression.gzip", .type = KEY_BOOL, .def = 1,
     .offset = FIELD_OF(compression.gzip)},
    LONG_KEY("compression.min_bytes", compression.min_bytes, 0, 268435456,
             GW_GZIP_MIN_BYTES_DEFAULT),
    INT_KEY("compression.level", compression.level, 1, 9, GW_GZIP_LEVEL_DEFAULT),
    {.name = "compression.upstream", .type = KEY_BOOL, .def = 1,
     .offset = FIELD_OF(compression.upstream)},

    LONG_KEY("idempotency.ttl_s", idempotency.ttl_s, 0, 604800, 86400),
    LONG_KEY("idempotency.max_entries", idempotency.max_entries, 1, 10000000, 10000),
    LONG_KEY("idempotency.max_bytes", idempotency.max_bytes, 4096, 4294967296L, 16777216),

    /* No cors group, no CORS: check_cors sets cors.enabled from the group's presence. */
    {.name = "cors.allow_origins", .type = KEY_STRINGS, .offset = FIELD_OF(cors.allow_origins),
     .check = check_allow_origin},
    LONG_KEY("cors.max_age_s", cors.max_age_s, 0, GW_MAX_CORS_MAX_AGE_S, 600),

    /* An enum, not a string field: its setter parses the name. */
    {.name = "log.level", .type = KEY_STRING, .def_str = "info", .set = set_level},

    /* Top-level keys, outside any group: who may call hcgw. The clients list is not a row,
     * since it is a list of groups; load_clients reads it. */
    {.name = "auth", .type = KEY_STRING, .def_str = "clients", .set = set_auth_mode},
    {.name = "trust_mesh_identity", .type = KEY_BOOL, .def = 0,
     .offset = FIELD_OF(auth.trust_mesh_identity)},
    STRING_KEY("mesh_identity_header", auth.mesh_identity_header, GW_XFCC_HEADER,
               check_header_name),
};

#undef STRING_KEY
#undef LONG_KEY
#undef INT_KEY
#undef FIELD_OF

#define NKEYS (sizeof keys / sizeof keys[0])

/* The problems found so far, as the text gw_config_load hands back. */
struct problems {
    const char *path; /* the file given to gw_config_load, for settings libconfig names no file */
    struct gw_buf text; /* NUL-terminated lines; data NULL until the first one */
    unsigned shown;   /* lines in text */
    unsigned dropped; /* problems past CONFIG_MAX_PROBLEMS, only counted */
    bool nomem;       /* a line could not be stored: the load fails whatever else happens */
};

/* Everything one load works on. */
struct load {
    struct gw_config *cfg;
    struct problems problems;
    const config_setting_t *seen[NKEYS]; /* the setting that gave each key, if any */
    bool bad[NKEYS];                     /* the setting was refused; the default stays */
};

static void *field(struct gw_config *cfg, const struct key *k)
{
    return (char *)cfg + k->offset;
}

/* Wipe before freeing: a string freed here may be the API key. */
static void free_string(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static int vappend(struct problems *p, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Append formatted text to the problems text, growing it. Returns 0, or -1 (and sets nomem). */
static int vappend(struct problems *p, const char *fmt, va_list ap)
{
    if (gw_buf_vappendf(&p->text, fmt, ap) != 0) {
        p->nomem = true;
        return -1;
    }
    return 0;
}

static int append(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int append(struct problems *p, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vappend(p, fmt, ap);
    va_end(ap);
    return rc;
}

static void problem_at(struct problems *p, const char *file, unsigned line, const char *group,
                       const char *name, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/*
 * Record one problem as "FILE:LINE: group.name: reason" (FILE NULL: the loaded file). @p group
 * is NULL for a top-level name; @p name may be a pseudo key such as "(syntax)". Past
 * CONFIG_MAX_PROBLEMS a problem is only counted, so a wrong file cannot make a huge text.
 */
static void problem_at(struct problems *p, const char *file, unsigned line, const char *group,
                       const char *name, const char *fmt, ...)
{
    va_list ap;
    size_t mark = p->text.len;
    int rc;

    if (p->shown >= CONFIG_MAX_PROBLEMS) {
        p->dropped++;
        return;
    }
    rc = append(p, "%s:%u: %s%s%s: ", file ? file : p->path, line, group ? group : "",
                group ? "." : "", name);
    if (rc == 0) {
        va_start(ap, fmt);
        rc = vappend(p, fmt, ap);
        va_end(ap);
    }
    /*
     * One problem, one line: a value quoted in the reason (a route, a path) may hold a line
     * break or another control character, which would split the line or forge another one
     * (found by tests/fuzz/fuzz_config). Each becomes '?'.
     */
    for (size_t i = mark; rc == 0 && i < p->text.len; i++) {
        if ((unsigned char)p->text.data[i] < 0x20 || p->text.data[i] == 0x7f)
            p->text.data[i] = '?';
    }
    if (rc == 0)
        rc = append(p, "\n");
    if (rc == 0) {
        p->shown++;
    } else {
        /* Keep the text whole lines: drop the part of this one already stored. */
        gw_buf_truncate(&p->text, mark);
    }
}

static void problem(struct problems *p, const config_setting_t *s, const char *group,
                    const char *name, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Record a problem with the setting @p s, at the file and line libconfig saw it. */
static void problem(struct problems *p, const config_setting_t *s, const char *group,
                    const char *name, const char *fmt, ...)
{
    char reason[CONFIG_REASON_BYTES];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    problem_at(p, config_setting_source_file(s), config_setting_source_line(s), group, name,
               "%s", reason);
}

static const char *errno_text(int err, char *buf, size_t bufsz)
{
    /* The GNU strerror_r (we build with _GNU_SOURCE); strerror is not thread-safe. */
    return strerror_r(err, buf, bufsz);
}

/* The key called @p group.@p name, or NULL. */
static const struct key *find_key(const char *group, const char *name)
{
    size_t glen = strlen(group);
    const struct key *found = NULL;

    for (size_t i = 0; i < NKEYS && !found; i++) {
        if (strncmp(keys[i].name, group, glen) == 0 && keys[i].name[glen] == '.' &&
            strcmp(keys[i].name + glen + 1, name) == 0)
            found = &keys[i];
    }
    return found;
}

/* True when @p name is the group of at least one key. */
static bool group_known(const char *name)
{
    size_t len = strlen(name);
    bool known = false;

    for (size_t i = 0; i < NKEYS && !known; i++)
        known = strncmp(keys[i].name, name, len) == 0 && keys[i].name[len] == '.';
    return known;
}

/* Replace a string field, wiping what it held. */
static void store_string(struct gw_config *cfg, const struct key *k, char *value)
{
    char **slot = field(cfg, k);

    free_string(*slot);
    *slot = value;
}

/* Give every key its default. Returns 0, or -1 when out of memory. */
static int apply_defaults(struct gw_config *cfg)
{
    char why[CONFIG_REASON_BYTES];
    int rc = -1;

    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];

        switch (k->type) {
        case KEY_INT:
            *(int *)field(cfg, k) = (int)k->def;
            break;
        case KEY_LONG:
            *(long *)field(cfg, k) = (long)k->def;
            break;
        case KEY_BOOL:
            *(bool *)field(cfg, k) = k->def != 0;
            break;
        case KEY_STRING:
            if (k->set) {
                if (k->set(cfg, k->def_str, why, sizeof why) != 0)
                    goto out;
            } else if (k->def_str) {
                char *copy = strdup(k->def_str);

                if (!copy)
                    goto out;
                store_string(cfg, k, copy);
            }
            break;
        case KEY_STRINGS:
            break; /* empty */
        }
    }
    rc = 0;
out:
    return rc;
}

/* Check the setting @p s that gave key @p k (found as @p group.@p name) and store its value. */
static void apply(struct load *ld, size_t ki, const config_setting_t *s, const char *group,
                  const char *name)
{
    const struct key *k = &keys[ki];
    struct problems *p = &ld->problems;
    char why[CONFIG_REASON_BYTES];
    long long v;

    ld->seen[ki] = s;
    ld->bad[ki] = true;
    switch (k->type) {
    case KEY_INT:
    case KEY_LONG:
        /* A float or a string is refused rather than converted: 1.5 retries means nothing. */
        if (config_setting_type(s) == CONFIG_TYPE_INT)
            v = config_setting_get_int(s);
        else if (config_setting_type(s) == CONFIG_TYPE_INT64)
            v = config_setting_get_int64(s);
        else {
            problem(p, s, group, name, "expected an integer");
            break;
        }
        if (v < k->min || v > k->max) {
            problem(p, s, group, name, "must be between %lld and %lld", k->min, k->max);
            break;
        }
        if (k->type == KEY_INT)
            *(int *)field(ld->cfg, k) = (int)v;
        else
            *(long *)field(ld->cfg, k) = (long)v;
        ld->bad[ki] = false;
        break;
    case KEY_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
            problem(p, s, group, name, "expected a boolean");
            break;
        }
        *(bool *)field(ld->cfg, k) = config_setting_get_bool(s) != 0;
        ld->bad[ki] = false;
        break;
    case KEY_STRING: {
        const char *value = config_setting_get_string(s);
        char *copy;

        if (config_setting_type(s) != CONFIG_TYPE_STRING || !value) {
            problem(p, s, group, name, "expected a string");
            break;
        }
        if (k->set) {
            if (k->set(ld->cfg, value, why, sizeof why) != 0)
                problem(p, s, group, name, "%s", why);
            else
                ld->bad[ki] = false;
            break;
        }
        copy = strdup(value);
        if (!copy) {
            problem(p, s, group, name, "out of memory");
            break;
        }
        if (k->check && k->check(copy, why, sizeof why) != 0) {
            problem(p, s, group, name, "%s", why);
            free_string(copy);
            break;
        }
        store_string(ld->cfg, k, copy);
        ld->bad[ki] = false;
        break;
    }
    case KEY_STRINGS: {
        struct gw_strings *list = field(ld->cfg, k);
        unsigned before = p->shown + p->dropped;

        free_strings(list);
        read_strings(ld, s, group, name, k->check, list);
        ld->bad[ki] = p->shown + p->dropped != before;
        break;
    }
    }
}

/*
 * The settings of the group @p g, whose dotted name is @p group ("listen", "listen.tls"): keys,
 * and groups inside it that the table knows (listen.tls), each walked in turn. The depth is
 * the table's: a group is only entered when some key's name starts with its dotted name.
 */
static void walk_group(struct load *ld, const config_setting_t *g, const char *group)
{
    struct problems *p = &ld->problems;

    for (unsigned j = 0; j < (unsigned)config_setting_length(g); j++) {
        const config_setting_t *s = config_setting_get_elem(g, j);
        const char *name = config_setting_name(s);
        const struct key *k = find_key(group, name);
        char inner[CONFIG_GROUP_BYTES];
        int n;

        if (k) {
            apply(ld, (size_t)(k - keys), s, group, name);
            continue;
        }
        n = snprintf(inner, sizeof inner, "%s.%s", group, name);
        if (n < 0 || (size_t)n >= sizeof inner || !group_known(inner))
            problem(p, s, group, name, "unknown key");
        else if (!config_setting_is_group(s))
            problem(p, s, group, name, "expected a group");
        else
            walk_group(ld, s, inner);
    }
}

/* Walk the whole tree in file order: unknown names and wrong types are problems too. */
static void walk(struct load *ld, const config_setting_t *root)
{
    struct problems *p = &ld->problems;

    for (unsigned i = 0; i < (unsigned)config_setting_length(root); i++) {
        const config_setting_t *g = config_setting_get_elem(root, i);
        const char *group = config_setting_name(g);
        const struct key *top = top_key(group);

        if (strcmp(group, "clients") == 0) {
            load_clients(ld, g);
            continue;
        }
        if (top) {
            apply(ld, (size_t)(top - keys), g, NULL, group);
            continue;
        }
        if (!group_known(group)) {
            problem(p, g, NULL, group, "unknown key");
            continue;
        }
        if (!config_setting_is_group(g)) {
            problem(p, g, NULL, group, "expected a group");
            continue;
        }
        walk_group(ld, g, group);
    }
}

static size_t key_index(const char *name)
{
    size_t i = 0;

    while (i < NKEYS && strcmp(keys[i].name, name) != 0)
        i++;
    return i;
}

/*
 * Checks that involve two keys, once each key is known good on its own. They come after the
 * walk, so their lines may be out of file order.
 */
static void cross_check(struct load *ld)
{
    struct problems *p = &ld->problems;
    size_t key = key_index("upstream.api_key"), key_file = key_index("upstream.api_key_file");
    size_t base = key_index("upstream.retry_base_ms"), max = key_index("upstream.retry_max_ms");
    size_t url = key_index("upstream.base_url");
    size_t insecure = key_index("upstream.allow_insecure_http");
    size_t proxy = key_index("upstream.proxy");
    const struct gw_config *cfg = ld->cfg;

    if (ld->seen[key] && ld->seen[key_file])
        problem(p, ld->seen[key_file], "upstream", "api_key_file",
                "give api_key or api_key_file, not both");
    /* The key goes in a header of every call, so plain http is for this machine only. */
    if (ld->seen[url] && !ld->bad[url] && !ld->bad[insecure] &&
        !cfg->upstream.allow_insecure_http && gw_config_url_in_clear(cfg->upstream.base_url))
        problem(p, ld->seen[url], "upstream", "base_url",
                "http:// to a non-loopback host sends the key in clear; use https or set "
                "upstream.allow_insecure_http = true");
    /* A proxy reads a plain http request, key and all; over https it only tunnels TLS. */
    if (ld->seen[proxy] && !ld->bad[proxy] && !ld->bad[url] && !ld->bad[insecure] &&
             !cfg->upstream.allow_insecure_http && cfg->upstream.proxy != NULL &&
             strncasecmp(cfg->upstream.base_url, "http://", 7) == 0)
        problem(p, ld->seen[proxy], "upstream", "proxy",
                "with an http:// base_url the proxy reads the key in clear; use https or set "
                "upstream.allow_insecure_http = true");
    if (!ld->bad[base] && !ld->bad[max] &&
        cfg->upstream.retry_max_ms < cfg->upstream.retry_base_ms) {
        if (ld->seen[max])
            problem(p, ld->seen[max], "upstream", "retry_max_ms",
                    "must be at least upstream.retry_base_ms (%ld)", cfg->upstream.retry_base_ms);
        else
            problem(p, ld->seen[base], "upstream", "retry_base_ms",
                    "must be at most upstream.retry_max_ms (%ld)", cfg->upstream.retry_max_ms);
    }
}

/*
 * Wipe every string value in the tree before libconfig frees it. Not only upstream.api_key:
 * a key given under a misspelt name is still a key.
 */
static void wipe_strings(config_setting_t *s)
{
    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        char *v = (char *)config_setting_get_string(s);

        if (v)
            explicit_bzero(v, strlen(v));
    } else if (config_setting_is_aggregate(s)) {
        for (unsigned i = 0; i < (unsigned)config_setting_length(s); i++)
            wipe_strings(config_setting_get_elem(s, i));
    }
}

/*
 * Read the file at @p path whole, at most GW_MAX_CONFIG_BYTES. Returns the NUL-terminated text
 * (the caller wipes and frees it) and its length in *len, or NULL with a problem recorded.
 */
static char *read_text(const char *path, size_t *len, struct problems *p)
{
    char errbuf[CONFIG_ERRNO_BYTES];
    char *ret = NULL;
    struct gw_buf text;
    int fd;

    /*
     * One byte past the bound is enough to know the file is too large. The text may hold the
     * key: the buffer wipes every block it lets go of, and grows by copying, not realloc.
     */
    gw_buf_init(&text, GW_MAX_CONFIG_BYTES + 1, CONFIG_TEXT_FIRST, GW_BUF_WIPE);
    /* Not O_NONBLOCK: a pipe (-c <(envsubst < tmpl)) is a fine source. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        problem_at(p, path, 0, NULL, "(file)", "cannot read: %s",
                   errno_text(errno, errbuf, sizeof errbuf));
        goto out;
    }
    for (;;) {
        char *at;
        size_t room;
        ssize_t r;
        int rc = gw_buf_space(&text, &at, &room);

        if (rc == GW_ERR_BODY_TOO_LARGE) {
            problem_at(p, path, 0, NULL, "(file)", "larger than %d bytes", GW_MAX_CONFIG_BYTES);
            goto out;
        }
        if (rc != 0)
            goto fail_nomem;
        r = read(fd, at, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            problem_at(p, path, 0, NULL, "(file)", "cannot read: %s",
                       errno_text(errno, errbuf, sizeof errbuf));
            goto out;
        }
        if (r == 0)
            break;
        gw_buf_commit(&text, (size_t)r);
    }
    ret = gw_buf_take(&text, len);
    goto out;
fail_nomem:
    problem_at(p, path, 0, NULL, "(file)", "out of memory");
out:
    gw_buf_free(&text);
    if (fd >= 0)
        close(fd);
    return ret;
}

/* A character that starts a libconfig name ("[A-Za-z*]"); not isalpha, which follows the locale. */
static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*';
}

/*
 * Skip the number literal at in[*pos] the way libconfig's scanner reads it, and say whether
 * it is an integer without an L suffix that does not fit in an int.
 */
static bool skip_number(const char *in, size_t n, size_t *pos)
{
    size_t i = *pos;
    unsigned long long v = 0;
    bool hex = in[i] == '0' && i + 1 < n && (in[i + 1] == 'x' || in[i + 1] == 'X');
    bool big = false;

    if (hex) {
        i += 2;
        for (; i < n && isxdigit((unsigned char)in[i]); i++) {
            unsigned d = in[i] <= '9' ? (unsigned)(in[i] - '0')
                                      : (unsigned)((in[i] | 0x20) - 'a' + 10);

            /* Stop growing once too big; the value itself does not matter then. */
            if (!big)
                v = v * 16 + d;
            big = big || v > INT_MAX;
        }
    } else {
        for (; i < n && in[i] >= '0' && in[i] <= '9'; i++) {
            if (!big)
                v = v * 10 + (unsigned)(in[i] - '0');
            big = big || v > INT_MAX;
        }
        if (i < n && (in[i] == '.' || in[i] == 'e' || in[i] == 'E')) {
            /* A float: the type check refuses it for an integer key, whatever its size. */
            big = false;
            if (in[i] == '.')
                for (i++; i < n && in[i] >= '0' && in[i] <= '9'; i++)
                    ;
            if (i < n && (in[i] == 'e' || in[i] == 'E')) {
                i++;
                if (i < n && (in[i] == '+' || in[i] == '-'))
                    i++;
                for (; i < n && in[i] >= '0' && in[i] <= '9'; i++)
                    ;
            }
        }
    }
    if (i < n && in[i] == 'L')
        big = false; /* already a 64-bit literal */
    *pos = i;
    return big;
}

/*
 * Go over the text the way libconfig's scanner does (skipping comments, strings and names)
 * for two things libconfig 1.5 gets wrong:
 *
 * - It reads an integer literal without an L suffix into an int with no overflow check, so
 *   "port = 4294967376;" would be read as 80 and pass the bounds check. Every such literal
 *   that does not fit gets an L suffix, so libconfig reads it as a 64-bit integer and the
 *   bounds check sees the real value.
 * - An @include directive names its file relative to the current directory, and a syntax
 *   error inside the included file is reported with no file and the wrong line. hcgw reads
 *   one file, so *include receives the offset of the first '@' outside a comment or string
 *   (n when there is none) and the caller refuses it.
 *
 * Writes the widened text to @p out (room for n plus the count, plus a NUL) when it is not
 * NULL; returns how many suffixes were (or would be) added.
 */
static size_t prescan(const char *in, size_t n, char *out, size_t *include)
{
    size_t i = 0, o = 0, added = 0;

    *include = n;
    while (i < n) {
        size_t start = i;
        bool big = false;
        char c = in[i];

        if (c == '"') {
            for (i++; i < n && in[i] != '"'; i++)
                if (in[i] == '\\' && i + 1 < n)
                    i++;
            if (i < n)
                i++;
        } else if (c == '#' || (c == '/' && i + 1 < n && in[i + 1] == '/')) {
            while (i < n && in[i] != '\n')
                i++;
        } else if (c == '/' && i + 1 < n && in[i + 1] == '*') {
            for (i += 2; i < n && !(in[i] == '*' && i + 1 < n && in[i + 1] == '/'); i++)
                ;
            i = i < n ? i + 2 : n;
        } else if (is_name_start(c)) {
            for (i++; i < n && (is_name_start(in[i]) || (in[i] >= '0' && in[i] <= '9') ||
                                in[i] == '-' || in[i] == '_');
                 i++)
                ;
        } else if ((c >= '0' && c <= '9') ||
                   (c == '.' && i + 1 < n && in[i + 1] >= '0' && in[i + 1] <= '9')) {
            big = skip_number(in, n, &i);
        } else {
            if (c == '@' && *include == n)
                *include = i;
            i++;
        }
        if (out) {
            memcpy(out + o, in + start, i - start);
            o += i - start;
            if (big)
                out[o++] = 'L';
        }
        added += big;
    }
    if (out)
        out[o] = '\0';
    return added;
}

/* The line (from 1) of the byte at @p offset. */
static unsigned line_of(const char *text, size_t offset)
{
    unsigned line = 1;

    for (size_t i = 0; i < offset; i++)
        line += text[i] == '\n';
    return line;
}

struct gw_config *gw_config_load(const char *path, char **errors)
{
    struct load *ld = NULL;
    struct gw_config *ret = NULL;
    char *text = NULL, *wide = NULL;
    size_t len = 0, added = 0, include, nul;
    config_t lc;
    bool lc_live = false;
    bool nomem = false;

    if (errors)
        *errors = NULL;
    ld = calloc(1, sizeof *ld);
    if (!ld) {
        nomem = true;
        goto out;
    }
    ld->problems.path = path ? path : "(null)";
    gw_buf_init(&ld->problems.text, CONFIG_MAX_PROBLEM_TEXT_BYTES, CONFIG_PROBLEM_TEXT_FIRST, 0);
    if (!path) {
        problem_at(&ld->problems, NULL, 0, NULL, "(file)", "cannot read: no path given");
        goto out;
    }
    ld->cfg = calloc(1, sizeof *ld->cfg);
    if (!ld->cfg)
        goto fail_nomem;
    ld->cfg->path = strdup(path);
    if (!ld->cfg->path || apply_defaults(ld->cfg) != 0)
        goto fail_nomem;

    text = read_text(path, &len, &ld->problems);
    if (!text)
        goto out;
    /* A NUL byte would silently end libconfig's reading of the text. */
    nul = strlen(text);
    if (nul < len) {
        problem_at(&ld->problems, NULL, line_of(text, nul), NULL, "(syntax)",
                   "the file contains a NUL byte");
        goto out;
    }
    added = prescan(text, len, NULL, &include);
    if (include < len) {
        problem_at(&ld->problems, NULL, line_of(text, include), NULL, "(syntax)",
                   "@include is not supported: put every key in this one file");
        goto out;
    }
    if (added) {
        wide = malloc(len + added + 1);
        if (!wide)
            goto fail_nomem;
        prescan(text, len, wide, &include);
    }

    /*
     * Parse from memory rather than with config_read_file, so the integers can be widened
     * first and the text (which may hold the key) is ours to wipe.
     */
    config_init(&lc);
    lc_live = true;
    if (config_read_string(&lc, wide ? wide : text) != CONFIG_TRUE) {
        problem_at(&ld->problems, NULL, (unsigned)config_error_line(&lc), NULL, "(syntax)", "%s",
                   config_error_text(&lc) ? config_error_text(&lc) : "cannot parse");
        goto out;
    }
    walk(ld, config_root_setting(&lc));
    cross_check(ld);
    check_clients(ld, config_root_setting(&lc));
    check_redis(ld, config_root_setting(&lc));
    check_tls(ld, config_root_setting(&lc));
    check_cors(ld, config_root_setting(&lc));
    goto out;

fail_nomem:
    problem_at(&ld->problems, NULL, 0, NULL, "(memory)", "out of memory");
out:
    if (lc_live) {
        wipe_strings(config_root_setting(&lc));
        config_destroy(&lc);
    }
    if (wide) {
        explicit_bzero(wide, len + added);
        free(wide);
    }
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    if (ld) {
        struct problems *p = &ld->problems;

        if (p->dropped)
            append(p, "%s:0: (more): %u more problems not shown\n", p->path, p->dropped);
        nomem = p->nomem;
        if (p->shown == 0 && !nomem) {
            ret = ld->cfg;
            ld->cfg = NULL;
        } else if (errors && !nomem) {
            *errors = gw_buf_take(&p->text, NULL);
        }
        gw_buf_free(&p->text);
        gw_config_free(ld->cfg);
        free(ld);
    }
    if (nomem && errors)
        *errors = strdup("(config):0: (memory): out of memory\n"); /* best effort; may be NULL */
    return ret;
}

void gw_config_free(struct gw_config *cfg)
{
    if (!cfg)
        return;
    /* Every string field comes from the table; free_string wipes, since one is the key. */
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == KEY_STRING && !keys[i].set)
            store_string(cfg, &keys[i], NULL);
        else if (keys[i].type == KEY_STRINGS)
            free_strings(field(cfg, &keys[i]));
    }
    free_clients(cfg);
    gw_secret_free(cfg->redis.password);
    gw_tls_creds_free(cfg->listen.tls.creds);
    free(cfg->path);
    free(cfg);
}

int gw_config_parse_level(const char *name, enum gw_log_level *out)
{
    static const struct {
        const char *name;
        enum gw_log_level level;
    } levels[] = {
        {"debug", GW_LOG_DEBUG},
        {"info", GW_LOG_INFO},
        {"warn", GW_LOG_WARN},
        {"error", GW_LOG_ERROR},
    };
    int rc = -1;

    for (size_t i = 0; name && i < sizeof levels / sizeof levels[0] && rc != 0; i++) {
        if (strcmp(name, levels[i].name) == 0) {
            if (out)
                *out = levels[i].level;
            rc = 0;
        }
    }
    return rc;
}

static int set_level(struct gw_config *cfg, const char *value, char *why, size_t whysz)
{
    int rc = gw_config_parse_level(value, &cfg->log.level);

    if (rc != 0)
        snprintf(why, whysz, "must be one of debug, info, warn, error");
    return rc;
}

/* A literal, not a name: resolving would make the listening address depend on DNS. */
static int check_address(char *value, char *why, size_t whysz)
{
    struct in6_addr addr; /* big enough for either family */
    int rc = 0;

    if (inet_pton(AF_INET, value, &addr) != 1 && inet_pton(AF_INET6, value, &addr) != 1) {
        snprintf(why, whysz, "must be an IPv4 or IPv6 address such as 127.0.0.1 or ::1");
        rc = -1;
    }
    return rc;
}

/*
 * The base URL is joined with a route's path and query by upstream.c, so it must be a plain
 * http(s) origin with an optional path: no query, no fragment, no credentials (the key goes
 * in a header, never in the URL), and short enough that base plus path stays within
 * GW_MAX_UPSTREAM_URL. Trailing slashes are stripped since every route path starts with one.
 */
static int check_base_url(char *value, char *why, size_t whysz)
{
    size_t len = strlen(value);
    const char *auth, *end, *host_end;
    int rc = -1;

    if (len >= GW_MAX_UPSTREAM_URL / 2) {
        snprintf(why, whysz, "must be shorter than %d bytes", GW_MAX_UPSTREAM_URL / 2);
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];

        if (c < 0x21 || c > 0x7e) {
            snprintf(why, whysz,
                     "must not contain spaces, control characters or non-ASCII bytes "
                     "(byte %zu); percent-encode them",
                     i + 1);
            goto out;
        }
    }
    if (strncasecmp(value, "http://", 7) == 0) {
        auth = value + 7;
    } else if (strncasecmp(value, "https://", 8) == 0) {
        auth = value + 8;
    } else {
        snprintf(why, whysz, "must start with http:// or https://");
        goto out;
    }
    if (strchr(value, '?')) {
        snprintf(why, whysz, "must not have a query ('?')");
        goto out;
    }
    if (strchr(value, '#')) {
        snprintf(why, whysz, "must not have a fragment ('#')");
        goto out;
    }
    end = auth + strcspn(auth, "/");
    if (memchr(auth, '@', (size_t)(end - auth))) {
        snprintf(why, whysz, "must not hold credentials (user@host); the key goes in api_key");
        goto out;
    }
    if (*auth == '[') {
        host_end = memchr(auth, ']', (size_t)(end - auth));
        if (!host_end || host_end == auth + 1) {
            snprintf(why, whysz, "has a malformed IPv6 host (expected [address])");
            goto out;
        }
        host_end++;
    } else {
        host_end = auth + strcspn(auth, ":/");
    }
    if (host_end == auth) {
        snprintf(why, whysz, "must name a host");
        goto out;
    }
    if (host_end < end) {
        /* What follows the host can only be ":port", 1..65535. */
        const char *d = host_end + 1;
        long port = 0;

        if (*host_end != ':' || d == end || end - d > 5)
            goto bad_port;
        for (; d < end; d++) {
            if (*d < '0' || *d > '9')
                goto bad_port;
            port = port * 10 + (*d - '0');
        }
        if (port < 1 || port > 65535)
            goto bad_port;
    }
    /* "http://host//" too: every route path brings its own slash. */
    while (len > (size_t)(end - value) && value[len - 1] == '/')
        value[--len] = '\0';
    rc = 0;
    goto out;
bad_port:
    snprintf(why, whysz, "has a bad port (expected :1 to :65535 after the host)");
out:
    return rc;
}

/*
 * The key goes into an HTTP header, so the same rule as secret.c: 1..GW_MAX_API_KEY_BYTES of
 * visible ASCII. Checked here too so the problem carries its file and line. The reason never
 * quotes the value.
 */
static int check_api_key(char *value, char *why, size_t whysz)
{
    size_t len = strlen(value);
    int rc = -1;

    if (len == 0) {
        snprintf(why, whysz, "must not be empty");
        goto out;
    }
    if (len > GW_MAX_API_KEY_BYTES) {
        snprintf(why, whysz, "must be at most %d bytes", GW_MAX_API_KEY_BYTES);
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];

        if (c < 0x21 || c > 0x7e) {
            snprintf(why, whysz, "contains a character that is not visible ASCII at byte %zu",
                     i + 1);
            goto out;
        }
    }
    rc = 0;
out:
    return rc;
}

static int check_path(char *value, char *why, size_t whysz)
{
    size_t len = strlen(value);
    int rc = -1;

    if (len == 0) {
        snprintf(why, whysz, "must not be empty");
        goto out;
    }
    if (len >= PATH_MAX) {
        snprintf(why, whysz, "must be shorter than %d bytes", PATH_MAX);
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* ---- secure defaults: allow_insecure_http, ca_file, key_file_mode ---- */

/* @p value as one of two words: 0 for @p first, 1 for @p second, or -1 with the reason. */
static int one_of_two(const char *value, const char *first, const char *second, char *why,
                      size_t whysz)
{
    if (strcmp(value, first) == 0)
        return 0;
    if (strcmp(value, second) == 0)
        return 1;
    snprintf(why, whysz, "must be \"%s\" or \"%s\"", first, second);
    return -1;
}

static int set_key_file_mode(struct gw_config *cfg, const char *value, char *why, size_t whysz)
{
    int which = one_of_two(value, "warn", "refuse", why, whysz);

    if (which < 0)
        return -1;
    cfg->upstream.key_file_mode = which == 0 ? GW_KEY_FILE_WARN : GW_KEY_FILE_REFUSE;
    return 0;
}

/*
 * "2" needs a libcurl built with HTTP/2 (nghttp2): without it libcurl would quietly speak
 * HTTP/1.1, and the operator who asked for multiplexing would not get it.
 */
static int set_http_version(struct gw_config *cfg, const char *value, char *why, size_t whysz)
{
    const curl_version_info_data *cv;
    int which = one_of_two(value, "1.1", "2", why, whysz);

    if (which < 0)
        return -1;
    if (which == 1) {
        cv = curl_version_info(CURLVERSION_NOW);
        if (!(cv->features & CURL_VERSION_HTTP2)) {
            snprintf(why, whysz, "\"2\" needs HTTP/2, and this libcurl (%s) is built without "
                     "it (no nghttp2); use \"1.1\"", cv->version);
            return -1;
        }
    }
    cfg->upstream.http_version = which == 0 ? GW_HTTP_1_1 : GW_HTTP_2;
    return 0;
}

/*
 * libcurl reads the CA bundle only at the first TLS handshake, long after start, and then every
 * call would fail with upstream_unavailable. A path that names no readable file is refused here
 * instead, so that --check-config shows the mistake. Whether it holds PEM is libcurl's to say.
 */
static int check_ca_file(char *value, char *why, size_t whysz)
{
    char errbuf[CONFIG_ERRNO_BYTES];
    struct stat st;
    int fd = -1;
    int rc = check_path(value, why, whysz);

    if (rc != 0)
        goto out;
    rc = -1;
    /* O_NONBLOCK so that a FIFO given by mistake is refused below instead of hanging open(). */
    fd = open(value, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, whysz, "cannot read %.100s: %s", value,
                 errno_text(errno, errbuf, sizeof errbuf));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whysz, "%.100s is not a regular file (a PEM bundle of CA certificates)",
                 value);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/*
 * An egress proxy for the calls to HelpCrunch: scheme://host[:port] with no credentials (a
 * password in the configuration would be a second secret with none of the key's care). Without
 * it, no proxy is used at all, whatever http_proxy or https_proxy the environment holds: the key
 * goes through a proxy only when the configuration says so.
 */
static int check_proxy(char *value, char *why, size_t whysz)
{
    static const char *const schemes[] = {"http://", "https://", "socks5://", "socks5h://"};
    const char *host = NULL;
    size_t i;

    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strncmp(value, schemes[i], strlen(schemes[i])) == 0) {
            host = value + strlen(schemes[i]);
            break;
        }
    }
    if (host == NULL) {
        snprintf(why, whysz, "must start with http://, https://, socks5:// or socks5h://");
        return -1;
    }
    if (*host == '\0' || *host == '/' || *host == ':') {
        snprintf(why, whysz, "has no host");
        return -1;
    }
    for (i = 0; host[i] != '\0'; i++) {
        unsigned char c = (unsigned char)host[i];

        if (c == '@') {
            snprintf(why, whysz, "must not hold credentials (user:password@)");
            return -1;
        }
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') {
            snprintf(why, whysz, "must be scheme://host[:port] only");
            return -1;
        }
        if (c == '/' && host[i + 1] != '\0') {
            snprintf(why, whysz, "must be scheme://host[:port] only");
            return -1;
        }
    }
    return 0;
}

bool gw_config_is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    bool ret = false;

    if (host == NULL)
        goto out;
    /* libcurl answers "localhost" itself, without DNS (RFC 6761). */
    if (strcasecmp(host, "localhost") == 0)
        ret = true;
    else if (inet_pton(AF_INET, host, &v4) == 1)
        ret = (ntohl(v4.s_addr) >> 24) == 127;
    else if (inet_pton(AF_INET6, host, &v6) == 1)
        ret = IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
out:
    return ret;
}

bool gw_config_url_in_clear(const char *url)
{
    char host[256]; /* a DNS name is at most 253 bytes */
    const char *start, *end;
    size_t len;
    bool ret = false;

    if (url == NULL || strncasecmp(url, "http://", 7) != 0)
        goto out;
    ret = true; /* http: in clear unless the host is shown to be loopback */
    start = url + 7;
    if (*start == '[') {
        start++;
        end = strchr(start, ']');
    } else {
        end = start + strcspn(start, ":/");
    }
    if (end == NULL || end == start || (size_t)(end - start) >= sizeof host)
        goto out;
    len = (size_t)(end - start);
    memcpy(host, start, len);
    host[len] = '\0';
    ret = !gw_config_is_loopback(host);
out:
    return ret;
}

/* ---- callers: auth, trust_mesh_identity, mesh_identity_header, clients ---- */

/* Room for a client's key name in a problem line: "clients[1023].token_sha256". */
#define CONFIG_CLIENT_KEY_BYTES 48

/* Longest token_file read: a hash and a line break, with room to say "too long". */
#define CONFIG_TOKEN_FILE_BYTES 256

/* A top-level key (one without a group), or NULL. libconfig names hold no '.', so an exact
 * match can only be a key that has none either. */
static const struct key *top_key(const char *name)
{
    const struct key *found = NULL;

    for (size_t i = 0; i < NKEYS && !found; i++) {
        if (strcmp(keys[i].name, name) == 0)
            found = &keys[i];
    }
    return found;
}

static int set_auth_mode(struct gw_config *cfg, const char *value, char *why, size_t whysz)
{
    int which = one_of_two(value, "clients", "none", why, whysz);

    if (which < 0)
        return -1;
    cfg->auth.mode = which == 0 ? GW_AUTH_MODE_CLIENTS : GW_AUTH_MODE_NONE;
    return 0;
}

/*
 * An HTTP field name (RFC 9110 token characters), stored lowercased. Authorization is refused:
 * it carries the bearer token, and reading an identity out of it would mix the two credentials.
 */
static int check_header_name(char *value, char *why, size_t whysz)
{
    static const char tchar_punct[] = "!#$%&'*+-.^_`|~";
    size_t len = strlen(value);
    int rc = -1;

    if (len == 0 || len > GW_MAX_HEADER_NAME) {
        snprintf(why, whysz, "must be a header name of 1 to %d characters", GW_MAX_HEADER_NAME);
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        char c = value[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(tchar_punct, c) != NULL)) {
            snprintf(why, whysz, "must be a header name such as \"x-client-id\" (byte %zu)",
                     i + 1);
            goto out;
        }
        if (c >= 'A' && c <= 'Z')
            value[i] = (char)(c - 'A' + 'a');
    }
    if (strcmp(value, "authorization") == 0) {
        snprintf(why, whysz, "must not be authorization, which carries the bearer token");
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/*
 * Read the hash a token_file holds: 64 hex digits, then at most trailing white space (a line
 * break). Returns 0, or -1 with a reason.
 */
static int read_token_file(const char *path, unsigned char out[GW_SHA256_BYTES], char *why,
                           size_t whysz)
{
    char buf[CONFIG_TOKEN_FILE_BYTES + 1];
    char errbuf[CONFIG_ERRNO_BYTES];
    struct stat st;
    size_t n = 0;
    int fd = -1;
    int rc = -1;

    /* O_NONBLOCK and a regular file only: a FIFO or a device named here must not hang a
     * load (or a reload, which runs on the main thread). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whysz, "cannot read %s: %s", path,
                 errno_text(errno, errbuf, sizeof errbuf));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whysz, "%s is not a regular file", path);
        goto out;
    }
    while (n < sizeof buf - 1) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whysz, "cannot read %s: %s", path,
                     errno_text(errno, errbuf, sizeof errbuf));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        n--;
    if (gw_auth_parse_sha256_hex(buf, n, out) != 0) {
        snprintf(why, whysz, "%s must hold the 64 hex digits of a SHA-256 (hcgw token new "
                             "prints one)", path);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* A string setting's value, or NULL (with a problem) when it is not a string. */
static const char *client_string(struct load *ld, const config_setting_t *s, const char *key)
{
    const char *v = config_setting_get_string(s);

    if (config_setting_type(s) != CONFIG_TYPE_STRING || !v) {
        problem(&ld->problems, s, NULL, key, "expected a string");
        v = NULL;
    }
    return v;
}

/* A client's routes: a non-empty list or array of route entries (see gw_auth_parse_route). */
static void client_routes(struct load *ld, const config_setting_t *s, const char *key,
                          struct gw_client *c)
{
    struct problems *p = &ld->problems;
    unsigned n = (unsigned)config_setting_length(s);

    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        problem(p, s, NULL, key,
                "expected a list of routes: [ \"tag_put\", \"GET /contacts/{id}\" ]");
        return;
    }
    if (n == 0) {
        problem(p, s, NULL, key, "must name at least one route");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, i);
        const char *spec = config_setting_get_string(e);
        int rc;

        if (config_setting_type(e) != CONFIG_TYPE_STRING || !spec) {
            problem(p, e, NULL, key, "expected route names as strings");
            continue;
        }
        rc = gw_auth_parse_route(spec, &c->routes);
        if (rc == -2)
            problem(p, e, NULL, key, "\"%.80s\" is public: it needs no permission", spec);
        else if (rc != 0)
            problem(p, e, NULL, key,
                    "unknown route \"%.80s\": give a route name (tag_put), \"METHOD /pattern\" "
                    "(GET /contacts/{id}) or \"*\"", spec);
    }
}

/* One client group: every member checked, the client filled in. */
static void load_client(struct load *ld, const config_setting_t *g, unsigned idx,
                        struct gw_client *c)
{
    struct problems *p = &ld->problems;
    char key[CONFIG_CLIENT_KEY_BYTES];
    char why[CONFIG_REASON_BYTES];
    const config_setting_t *hash = NULL, *file = NULL, *routes = NULL;

    for (unsigned j = 0; j < (unsigned)config_setting_length(g); j++) {
        const config_setting_t *s = config_setting_get_elem(g, j);
        const char *name = config_setting_name(s);
        const char *v;

        snprintf(key, sizeof key, "clients[%u].%s", idx, name);
        if (strcmp(name, "name") == 0) {
            v = client_string(ld, s, key);
            if (v && !gw_auth_valid_client_name(v)) {
                problem(p, s, NULL, key, "must be 1 to %d characters of A-Z a-z 0-9 . _ -",
                        GW_MAX_CLIENT_NAME);
            } else if (v) {
                c->name = strdup(v);
                if (!c->name)
                    problem(p, s, NULL, key, "out of memory");
            }
        } else if (strcmp(name, "token_sha256") == 0) {
            hash = s;
            v = client_string(ld, s, key);
            if (v && gw_auth_parse_sha256_hex(v, strlen(v), c->token_sha256) != 0)
                problem(p, s, NULL, key, "must be the 64 hex digits of the token's SHA-256 "
                                         "(hcgw token new prints one)");
            else if (v)
                c->has_token = true;
        } else if (strcmp(name, "token_file") == 0) {
            file = s;
            v = client_string(ld, s, key);
            if (v && (check_path((char *)v, why, sizeof why) != 0 ||
                      read_token_file(v, c->token_sha256, why, sizeof why) != 0))
                problem(p, s, NULL, key, "%s", why);
            else if (v)
                c->has_token = true;
        } else if (strcmp(name, "identity") == 0) {
            size_t len;

            v = client_string(ld, s, key);
            len = v ? strlen(v) : 0;
            if (v && (len == 0 || len > GW_MAX_IDENTITY_BYTES)) {
                problem(p, s, NULL, key, "must be 1 to %d bytes", GW_MAX_IDENTITY_BYTES);
            } else if (v) {
                bool visible = true;

                for (size_t i = 0; i < len && visible; i++)
                    visible = (unsigned char)v[i] >= 0x21 && (unsigned char)v[i] <= 0x7e;
                if (visible)
                    c->identity = strdup(v);
                if (!visible)
                    problem(p, s, NULL, key, "must be visible ASCII, without spaces");
                else if (!c->identity)
                    problem(p, s, NULL, key, "out of memory");
            }
        } else if (strcmp(name, "routes") == 0) {
            routes = s;
            client_routes(ld, s, key, c);
        } else if (strcmp(name, "origins") == 0) {
            /* Each must be in cors.allow_origins too: check_cors, once the file is read. */
            free_strings(&c->origins);
            read_strings(ld, s, NULL, key, check_origin, &c->origins);
        } else {
            problem(p, s, NULL, key, "unknown key");
        }
    }
    if (hash && file) {
        snprintf(key, sizeof key, "clients[%u].token_file", idx);
        problem(p, file, NULL, key, "give token_sha256 or token_file, not both");
    }
    if (!config_setting_get_member(g, "name")) {
        snprintf(key, sizeof key, "clients[%u].name", idx);
        problem(p, g, NULL, key, "missing: every client needs a name");
    }
    if (!hash && !file && !config_setting_get_member(g, "identity")) {
        snprintf(key, sizeof key, "clients[%u]", idx);
        problem(p, g, NULL, key, "needs a credential: token_sha256, token_file or identity");
    }
    if (!routes) {
        snprintf(key, sizeof key, "clients[%u].routes", idx);
        problem(p, g, NULL, key, "missing: list the routes this client may call, or \"*\"");
    }
}

/* The top-level clients list: ( { name = …; token_sha256 = …; routes = [ … ]; }, … ). */
static void load_clients(struct load *ld, const config_setting_t *list)
{
    struct problems *p = &ld->problems;
    struct gw_config *cfg = ld->cfg;
    unsigned n = (unsigned)config_setting_length(list);
    char key[CONFIG_CLIENT_KEY_BYTES];

    /* An empty [] is an array, not a list; it means the same. */
    if (!config_setting_is_list(list) && !(config_setting_is_array(list) && n == 0)) {
        problem(p, list, NULL, "clients",
                "expected a list of groups: clients = ( { name = \"…\"; … } );");
        return;
    }
    if (n > GW_MAX_CLIENTS) {
        problem(p, list, NULL, "clients", "at most %d clients", GW_MAX_CLIENTS);
        return;
    }
    if (n == 0)
        return;
    cfg->auth.clients = calloc(n, sizeof(*cfg->auth.clients));
    if (!cfg->auth.clients) {
        problem(p, list, NULL, "clients", "out of memory");
        return;
    }
    cfg->auth.nclients = n;
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(list, i);

        if (!config_setting_is_group(g)) {
            snprintf(key, sizeof key, "clients[%u]", i);
            problem(p, g, NULL, key, "expected a group: { name = \"…\"; token_sha256 = \"…\"; "
                                     "routes = [ … ]; }");
            continue;
        }
        load_client(ld, g, i, &cfg->auth.clients[i]);
    }
}

/*
 * Checks across clients and keys, once the whole file is read (trust_mesh_identity may come
 * after the list): names, tokens and identities are unique, and each client can be identified.
 */
static void check_clients(struct load *ld, const config_setting_t *root)
{
    struct problems *p = &ld->problems;
    const struct gw_config *cfg = ld->cfg;
    const config_setting_t *list = config_setting_get_member(root, "clients");
    const config_setting_t *mode = ld->seen[(size_t)(top_key("auth") - keys)];
    char key[CONFIG_CLIENT_KEY_BYTES];

    if (!list || cfg->auth.nclients == 0)
        return;
    if (cfg->auth.mode == GW_AUTH_MODE_NONE && mode)
        problem(p, mode, NULL, "auth",
                "is \"none\" but clients are configured: remove one or the other");
    for (size_t i = 0; i < cfg->auth.nclients; i++) {
        const struct gw_client *c = &cfg->auth.clients[i];
        const config_setting_t *g = config_setting_get_elem(list, (unsigned)i);

        if (c->identity && !c->has_token && !cfg->auth.trust_mesh_identity &&
            cfg->listen.tls.client_ca_file == NULL) {
            snprintf(key, sizeof key, "clients[%zu].identity", i);
            problem(p, config_setting_get_member(g, "identity"), NULL, key,
                    "neither trust_mesh_identity nor listen.tls.client_ca_file is set, so this "
                    "client could never be identified: set one, or give a token");
        }
        for (size_t j = 0; j < i; j++) {
            const struct gw_client *o = &cfg->auth.clients[j];

            if (c->name && o->name && strcmp(c->name, o->name) == 0) {
                snprintf(key, sizeof key, "clients[%zu].name", i);
                problem(p, config_setting_get_member(g, "name"), NULL, key,
                        "duplicate client name \"%s\" (also clients[%zu])", c->name, j);
            }
            if (c->has_token && o->has_token &&
                memcmp(c->token_sha256, o->token_sha256, sizeof c->token_sha256) == 0) {
                const config_setting_t *t = config_setting_get_member(g, "token_sha256");

                snprintf(key, sizeof key, "clients[%zu].%s", i, t ? "token_sha256" : "token_file");
                problem(p, t ? t : config_setting_get_member(g, "token_file"), NULL, key,
                        "the same token as clients[%zu]: give each client its own", j);
            }
            if (c->identity && o->identity && strcmp(c->identity, o->identity) == 0) {
                snprintf(key, sizeof key, "clients[%zu].identity", i);
                problem(p, config_setting_get_member(g, "identity"), NULL, key,
                        "the same identity as clients[%zu]", j);
            }
        }
    }
}

static void free_clients(struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->auth.nclients; i++) {
        struct gw_client *c = &cfg->auth.clients[i];

        free(c->name);
        free(c->identity);
        free_strings(&c->origins);
        explicit_bzero(c->token_sha256, sizeof c->token_sha256);
    }
    free(cfg->auth.clients);
    cfg->auth.clients = NULL;
    cfg->auth.nclients = 0;
}

/* ---- redis: url, username, password_file, key_prefix; quota.fallback_requests_per_minute ---- */

/* The default port of redis:// (Redis's own). */
#define REDIS_DEFAULT_PORT 6379

/* Room for a decimal number of up to 5 digits and its NUL. */
#define REDIS_NUMBER_BYTES 6

/*
 * A decimal number of 1 to 5 digits in [@p lo, @p hi], the whole of @p len bytes at @p s.
 * Returns it, or -1.
 */
static long small_number(const char *s, size_t len, long lo, long hi)
{
    long v = 0;

    if (len == 0 || len >= REDIS_NUMBER_BYTES)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

/*
 * redis.url: redis://host[:port][/db], nothing more. The host is a name, an IPv4 literal or
 * an IPv6 literal in brackets; the port defaults to 6379 and the database to 0. Credentials
 * in the URL are refused: the password would sit in the configuration, be shown by every tool
 * that prints the URL, and miss the care the password file gets. rediss:// (TLS) is refused
 * too, since hcgw's Redis client does not speak TLS. Fills @p host (GW_MAX_REDIS_HOST_BYTES + 1
 * bytes), *port and *db; returns 0, or -1 with a reason.
 */
static int parse_redis_url(const char *value, char *host, int *port, int *db, char *why,
                           size_t whysz)
{
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789.-_";
    struct in6_addr v6;
    size_t len = strlen(value);
    const char *auth, *end, *h, *h_end, *after;
    size_t hlen;
    long n;
    int rc = -1;

    if (len > GW_MAX_REDIS_URL_BYTES) {
        snprintf(why, whysz, "must be at most %d bytes", GW_MAX_REDIS_URL_BYTES);
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];

        if (c < 0x21 || c > 0x7e) {
            snprintf(why, whysz, "must not contain spaces, control characters or non-ASCII "
                                 "bytes (byte %zu)", i + 1);
            goto out;
        }
    }
    if (strncasecmp(value, "rediss://", 9) == 0) {
        snprintf(why, whysz, "rediss:// (TLS) is not supported: use redis:// to a Redis on "
                             "a private network or on this machine");
        goto out;
    }
    if (strncasecmp(value, "redis://", 8) != 0) {
        snprintf(why, whysz, "must start with redis:// (redis://host:6379/0)");
        goto out;
    }
    if (strpbrk(value, "?#")) {
        snprintf(why, whysz, "must not have a query ('?') or a fragment ('#')");
        goto out;
    }
    auth = value + 8;
    end = auth + strcspn(auth, "/");
    if (memchr(auth, '@', (size_t)(end - auth))) {
        snprintf(why, whysz, "must not hold credentials (user:password@): give "
                             "redis.username and redis.password_file");
        goto out;
    }
    if (*auth == '[') {
        h = auth + 1;
        h_end = memchr(h, ']', (size_t)(end - h));
        hlen = h_end ? (size_t)(h_end - h) : 0;
        if (hlen == 0 || hlen > GW_MAX_REDIS_HOST_BYTES) {
            snprintf(why, whysz, "has a malformed IPv6 host (expected [address])");
            goto out;
        }
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, &v6) != 1) {
            snprintf(why, whysz, "has a malformed IPv6 host (expected [address])");
            goto out;
        }
        after = h_end + 1;
    } else {
        h = auth;
        h_end = h + strcspn(h, ":/");
        hlen = (size_t)(h_end - h);
        if (hlen == 0) {
            snprintf(why, whysz, "must name a host");
            goto out;
        }
        if (hlen > GW_MAX_REDIS_HOST_BYTES) {
            snprintf(why, whysz, "has a host longer than %d bytes", GW_MAX_REDIS_HOST_BYTES);
            goto out;
        }
        for (size_t i = 0; i < hlen; i++) {
            if (!strchr(name_chars, h[i])) {
                snprintf(why, whysz, "has a host that is not a name or an address (byte %zu)",
                         (size_t)(h - value) + i + 1);
                goto out;
            }
        }
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        after = h_end;
    }
    *port = REDIS_DEFAULT_PORT;
    if (after < end) {
        n = *after == ':' ? small_number(after + 1, (size_t)(end - after - 1), 1, 65535) : -1;
        if (n < 0) {
            snprintf(why, whysz, "has a bad port (expected :1 to :65535 after the host)");
            goto out;
        }
        *port = (int)n;
    }
    *db = 0;
    if (*end == '/' && end[1] != '\0') {
        n = small_number(end + 1, strlen(end + 1), 0, GW_MAX_REDIS_DB);
        if (n < 0) {
            snprintf(why, whysz, "has a bad database (expected /0 to /%d after the host)",
                     GW_MAX_REDIS_DB);
            goto out;
        }
        *db = (int)n;
    }
    rc = 0;
out:
    return rc;
}

static int check_redis_url(char *value, char *why, size_t whysz)
{
    char host[GW_MAX_REDIS_HOST_BYTES + 1];
    int port, db;

    return parse_redis_url(value, host, &port, &db, why, whysz);
}

/* An ACL user name goes into AUTH as one argument: any visible ASCII, bounded. */
static int check_redis_username(char *value, char *why, size_t whysz)
{
    size_t len = strlen(value);

    if (len == 0 || len > GW_MAX_REDIS_USERNAME_BYTES) {
        snprintf(why, whysz, "must be 1 to %d bytes", GW_MAX_REDIS_USERNAME_BYTES);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)value[i] < 0x21 || (unsigned char)value[i] > 0x7e) {
            snprintf(why, whysz, "must be visible ASCII, without spaces (byte %zu)", i + 1);
            return -1;
        }
    }
    return 0;
}

/*
 * Every key hcgw writes starts with the prefix, so that an ACL can confine its user to them
 * (~hcgw:*). Braces are left out: hcgw puts a hash tag of its own after the prefix.
 */
static int check_redis_prefix(char *value, char *why, size_t whysz)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789:._-";
    size_t len = strlen(value);

    if (len == 0 || len > GW_MAX_REDIS_PREFIX_BYTES || strspn(value, allowed) != len) {
        snprintf(why, whysz, "must be 1 to %d characters of A-Z a-z 0-9 : . _ -",
                 GW_MAX_REDIS_PREFIX_BYTES);
        return -1;
    }
    return 0;
}

/*
 * Once the whole file is read: a redis group needs a url; a username needs a password; the
 * password file is read (so that --check-config and a reload find a missing or empty one);
 * the fallback rate is derived when not given, and may not exceed the shared rate.
 */
static void check_redis(struct load *ld, const config_setting_t *root)
{
    struct problems *p = &ld->problems;
    struct gw_config *cfg = ld->cfg;
    const config_setting_t *group = config_setting_get_member(root, "redis");
    size_t url = key_index("redis.url"), user = key_index("redis.username");
    size_t pwf = key_index("redis.password_file");
    size_t fallback = key_index("quota.fallback_requests_per_minute");
    size_t rpm = key_index("quota.requests_per_minute");
    char why[CONFIG_REASON_BYTES];
    char *error = NULL;
    struct stat st;

    if (cfg->redis.url != NULL &&
        parse_redis_url(cfg->redis.url, cfg->redis.host, &cfg->redis.port, &cfg->redis.db, why,
                        sizeof why) != 0)
        problem(p, ld->seen[url], "redis", "url", "%s", why); /* checked once already */
    if (group != NULL && config_setting_is_group(group) && cfg->redis.url == NULL &&
        !ld->bad[url])
        problem(p, group, NULL, "redis",
                "has no url: give redis.url, or remove the group to keep the quota local");
    if (ld->seen[user] && !ld->bad[user] && !ld->seen[pwf])
        problem(p, ld->seen[user], "redis", "username",
                "needs redis.password_file: an ACL user signs in with a password");
    if (cfg->redis.password_file != NULL && !ld->bad[pwf]) {
        cfg->redis.password = gw_secret_load_password(cfg->redis.password_file,
                                                      cfg->redis.password_file,
                                                      cfg->upstream.key_file_mode, NULL, &error);
        if (cfg->redis.password == NULL)
            problem(p, ld->seen[pwf], "redis", "password_file", "%s",
                    error ? error : "out of memory");
        else
            cfg->redis.password_shared = stat(cfg->redis.password_file, &st) == 0 &&
                                         gw_secret_file_shared(&st);
        free(error);
    }
    if (!ld->seen[fallback]) {
        int share = cfg->quota.requests_per_minute / cfg->redis.expected_replicas;

        cfg->quota.fallback_requests_per_minute =
            cfg->quota.requests_per_minute == 0 ? 0 : (share < 1 ? 1 : share);
    } else if (!ld->bad[fallback] && !ld->bad[rpm] && cfg->quota.requests_per_minute > 0 &&
               cfg->quota.fallback_requests_per_minute > cfg->quota.requests_per_minute) {
        problem(p, ld->seen[fallback], "quota", "fallback_requests_per_minute",
                "must be at most quota.requests_per_minute (%d)",
                cfg->quota.requests_per_minute);
    }
}

/* ---- listen.tls: cert_file, key_file, client_ca_file ---- */

/*
 * Once the whole file is read (key_file_mode may come after the group): a tls group needs
 * both cert_file and key_file, and all its files are read and checked now (tls.h), so that
 * --check-config and a reload find a missing file, a key that does not match its certificate
 * or an expired certificate, instead of the first handshake after a start.
 */
static void check_tls(struct load *ld, const config_setting_t *root)
{
    struct problems *p = &ld->problems;
    struct gw_config *cfg = ld->cfg;
    const config_setting_t *listen = config_setting_get_member(root, "listen");
    const config_setting_t *group = NULL;
    const config_setting_t *at;
    size_t cert = key_index("listen.tls.cert_file"), key = key_index("listen.tls.key_file");
    size_t ca = key_index("listen.tls.client_ca_file");
    enum gw_tls_file which;
    const char *why;
    char *error = NULL;

    if (listen != NULL && config_setting_is_group(listen))
        group = config_setting_get_member(listen, "tls");
    if (group == NULL || !config_setting_is_group(group))
        return; /* no TLS, or the walk said it is not a group */
    if (ld->bad[cert] || ld->bad[key] || ld->bad[ca])
        return;
    if (!ld->seen[cert] || !ld->seen[key]) {
        problem(p, group, "listen", "tls",
                "needs cert_file (the certificate chain, PEM) and key_file (its private key)");
        return;
    }
    why = gw_tls_unsupported();
    if (why != NULL) {
        problem(p, group, "listen", "tls", "%s", why);
        return;
    }
    if (gw_tls_creds_load(cfg->listen.tls.cert_file, cfg->listen.tls.key_file,
                          cfg->listen.tls.client_ca_file, cfg->upstream.key_file_mode,
                          &cfg->listen.tls.creds, &which, &error) != 0) {
        at = which == GW_TLS_FILE_CERT ? ld->seen[cert]
             : which == GW_TLS_FILE_KEY ? ld->seen[key] : ld->seen[ca];
        /* Not problem(): a reason that names two paths may be longer than its buffer. */
        problem_at(p, config_setting_source_file(at), config_setting_source_line(at),
                   "listen.tls",
                   which == GW_TLS_FILE_CERT  ? "cert_file"
                   : which == GW_TLS_FILE_KEY ? "key_file" : "client_ca_file",
                   "%s", error ? error : "out of memory");
        free(error);
    }
}

/* ---- browsers: cors.allow_origins, cors.max_age_s, clients[N].origins ---- */

/* Room for a quoted value in a problem line: origins are at most GW_MAX_ORIGIN_BYTES. */
#define CONFIG_QUOTE_BYTES 80

static int check_origin(char *value, char *why, size_t whysz)
{
    return gw_cors_check_origin(value, why, whysz);
}

/* An entry of cors.allow_origins: an origin, or "*" (which check_cors confines). */
static int check_allow_origin(char *value, char *why, size_t whysz)
{
    return strcmp(value, "*") == 0 ? 0 : gw_cors_check_origin(value, why, whysz);
}

static void free_strings(struct gw_strings *list)
{
    for (size_t i = 0; i < list->n; i++)
        free(list->v[i]);
    free(list->v);
    list->v = NULL;
    list->n = 0;
}

/*
 * The setting @p s (named @p group.@p name, or @p name at the top level) as a list of strings:
 * a libconfig array or list of 1 to GW_MAX_CORS_ORIGINS distinct strings, each passing
 * @p check. Stored in @p out (empty on any problem, each of which is recorded).
 */
static void read_strings(struct load *ld, const config_setting_t *s, const char *group,
                         const char *name, check_fn check, struct gw_strings *out)
{
    struct problems *p = &ld->problems;
    unsigned n = (unsigned)config_setting_length(s);
    unsigned before = p->shown + p->dropped;
    char why[CONFIG_REASON_BYTES];
    struct gw_strings list = {NULL, 0};

    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        problem(p, s, group, name, "expected a list of strings: [ \"https://crm.example.com\" ]");
        return;
    }
    if (n == 0 || n > GW_MAX_CORS_ORIGINS) {
        problem(p, s, group, name, "must list 1 to %d origins", GW_MAX_CORS_ORIGINS);
        return;
    }
    list.v = calloc(n, sizeof(*list.v));
    if (list.v == NULL) {
        problem(p, s, group, name, "out of memory");
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, i);
        const char *v = config_setting_get_string(e);
        char *copy;

        if (config_setting_type(e) != CONFIG_TYPE_STRING || v == NULL) {
            problem(p, e, group, name, "expected strings");
            continue;
        }
        copy = strdup(v);
        if (copy == NULL) {
            problem(p, e, group, name, "out of memory");
            continue;
        }
        if (check(copy, why, sizeof why) != 0) {
            problem(p, e, group, name, "\"%.*s\" %s", CONFIG_QUOTE_BYTES, copy, why);
            free(copy);
            continue;
        }
        for (size_t j = 0; j < list.n && copy != NULL; j++) {
            if (strcmp(list.v[j], copy) == 0) {
                problem(p, e, group, name, "\"%.*s\" is listed twice", CONFIG_QUOTE_BYTES,
                        copy);
                free(copy);
                copy = NULL;
            }
        }
        if (copy != NULL)
            list.v[list.n++] = copy;
    }
    if (p->shown + p->dropped != before) {
        free_strings(&list);
        return;
    }
    *out = list;
}

/* True when @p list holds exactly @p s. */
static bool strings_have(const struct gw_strings *list, const char *s)
{
    bool found = false;

    for (size_t i = 0; i < list->n && !found; i++)
        found = strcmp(list->v[i], s) == 0;
    return found;
}

/*
 * Once the whole file is read: a cors group turns CORS on and needs allow_origins; "*" stands
 * alone and only while no clients are configured (a page of any site could otherwise call hcgw
 * with a client's token); a client's origins need the group and narrow its list.
 */
static void check_cors(struct load *ld, const config_setting_t *root)
{
    struct problems *p = &ld->problems;
    struct gw_config *cfg = ld->cfg;
    const config_setting_t *group = config_setting_get_member(root, "cors");
    const config_setting_t *clients = config_setting_get_member(root, "clients");
    size_t ao = key_index("cors.allow_origins");
    const struct gw_strings *allow = &cfg->cors.allow_origins;
    bool any = strings_have(allow, "*");
    char key[CONFIG_CLIENT_KEY_BYTES];

    cfg->cors.enabled = group != NULL && config_setting_is_group(group);
    if (cfg->cors.enabled && !ld->seen[ao])
        problem(p, group, NULL, "cors",
                "has no allow_origins: list the origins of the browser apps that call hcgw "
                "(allow_origins = [ \"https://crm.example.com\" ];), or remove the group");
    if (any && allow->n > 1)
        problem(p, ld->seen[ao], "cors", "allow_origins",
                "\"*\" must stand alone: it already allows every origin");
    else if (any && cfg->auth.nclients > 0)
        problem(p, ld->seen[ao], "cors", "allow_origins",
                "\"*\" is refused while clients are configured: a page of any site could then "
                "call hcgw with a client's token; list the origins of the browser apps");
    cfg->cors.any = any && allow->n == 1;
    for (size_t i = 0; clients != NULL && i < cfg->auth.nclients; i++) {
        const struct gw_client *c = &cfg->auth.clients[i];
        const config_setting_t *s =
            config_setting_get_member(config_setting_get_elem(clients, (unsigned)i), "origins");

        snprintf(key, sizeof key, "clients[%zu].origins", i);
        if (c->origins.n > 0 && !cfg->cors.enabled) {
            problem(p, s, NULL, key, "needs the cors group: a client's origins narrow "
                                     "cors.allow_origins");
            continue;
        }
        for (size_t j = 0; j < c->origins.n && !ld->bad[ao]; j++) {
            if (!strings_have(allow, c->origins.v[j]))
                problem(p, config_setting_get_elem(s, (unsigned)j), NULL, key,
                        "\"%.*s\" is not in cors.allow_origins: a client's origins narrow "
                        "that list", CONFIG_QUOTE_BYTES, c->origins.v[j]);
        }
    }
}

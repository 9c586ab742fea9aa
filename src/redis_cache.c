/*
 * The contact cache shared through Redis (redis_cache.h): three Lua scripts and an epoch, on
 * a worker's Redis connection. Each operation is a struct gw_redis_cache_op that holds what it
 * sends (keys and arguments copied in it), so a reload or a NOSCRIPT resend never mixes
 * settings, and its caller's callback.
 */
#include "hcgw/redis_cache.h"

#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/config.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/loop.h"
#include "hcgw/metrics.h"
#include "hcgw/redis.h"

/*
 * KEYS[1] the entry, KEYS[2] the epoch. ARGV[1] the oldest age accepted (us). Answers {1, age
 * (us), body} for an entry of the current epoch younger than that, else {0}.
 */
static const char lookup_script[] =
    "local e = redis.call('HMGET', KEYS[1], 'ep', 'st', 'b')\n"
    "if not e[3] then return {0} end\n"
    "if e[1] ~= (redis.call('GET', KEYS[2]) or '0') then return {0} end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local age = now - tonumber(e[2])\n"
    "if age < 0 then age = 0 end\n"
    "if age >= tonumber(ARGV[1]) then return {0} end\n"
    "return {1, age, e[3]}\n";

/*
 * KEYS[1] the entry, KEYS[2] the write mark, KEYS[3] the epoch. ARGV[1] the customer ("": a
 * drop), ARGV[2] how long ago the call began (us, margin included), ARGV[3] the entry's time
 * to live (ms), ARGV[4] the mark's (ms), ARGV[5] "w" for a write's end, "r" for a read's,
 * ARGV[6] the writer (this worker's name). The mark is "<time>:<writer>". A write sets it; the
 * answer is stored only when no write ended after the call began (a write drops the entry
 * otherwise), a write of the same writer excepted for a write: one writer's writes of a
 * contact go one at a time, in order (its line). Answers 1 when stored, else 0. Numbers are
 * written with %d: Lua's own tostring keeps 14 digits, and a time in microseconds has 16.
 */
static const char store_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local began = now - tonumber(ARGV[2])\n"
    "local mark = redis.call('GET', KEYS[2]) or '0:'\n"
    "local sep = string.find(mark, ':', 1, true) or (#mark + 1)\n"
    "local last = tonumber(string.sub(mark, 1, sep - 1)) or 0\n"
    "local write = ARGV[5] == 'w'\n"
    "local mine = write and string.sub(mark, sep + 1) == ARGV[6]\n"
    "if write then\n"
    "  redis.call('SET', KEYS[2], string.format('%d', now) .. ':' .. ARGV[6], 'PX', ARGV[4])\n"
    "end\n"
    "if ARGV[1] == '' or (last >= began and not mine) then\n"
    "  if write then redis.call('DEL', KEYS[1]) end\n"
    "  return 0\n"
    "end\n"
    "local ep = redis.call('GET', KEYS[3]) or '0'\n"
    "redis.call('HSET', KEYS[1], 'ep', ep, 'st', string.format('%d', now), 'b', ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "return 1\n";

/* A key: the prefix, "{", the tag, "}", the longest suffix (":cache-epoch" or ":c:" and a
 * 20-digit id), a NUL. */
#define KEY_BYTES (GW_MAX_REDIS_PREFIX_BYTES + 1 + GW_REDIS_ACCOUNT_HEX + 1 + 24 + 1)

/* One decimal argument (a 64-bit number and its sign) and its NUL. */
#define NUMBER_BYTES 24

enum op_kind { OP_LOOKUP, OP_FILL, OP_WRITE, OP_EPOCH };

struct gw_redis_cache_op {
    struct gw_redis_cache *c;
    enum op_kind kind;
    bool whole;                      /* sent with EVAL after a NOSCRIPT */
    uint64_t deadline_ms;
    uint64_t lost_mark;              /* OP_EPOCH: marks.lost when it was sent */
    gw_redis_cache_lookup_cb *lookup_cb;
    gw_redis_cache_store_cb *store_cb;
    void *data;
    struct gw_redis_cmd *cmd;        /* in flight on the connection */
    char keys[3][KEY_BYTES];
    char args[5][NUMBER_BYTES];     /* ARGV[2..6] */
    char *body;                      /* a store's customer (ARGV[1]), its own copy */
    size_t len;
    struct gw_redis_cache_op *prev, *next; /* c->ops */
};

struct gw_redis_cache {
    struct gw_redis *redis;
    const struct gw_config *cfg;
    struct gw_redis_cache_marks *marks;
    char prefix[GW_MAX_REDIS_PREFIX_BYTES + 1 + GW_REDIS_ACCOUNT_HEX + 2]; /* "<p>{<tag>}" */
    char writer[NUMBER_BYTES];       /* this worker's name in write marks (random) */
    char lookup_sha[GW_REDIS_SHA1_HEX_BYTES];
    char store_sha[GW_REDIS_SHA1_HEX_BYTES];
    struct gw_log *log;              /* NULL: none */
    uint64_t refused_until_ms;       /* Redis refused a command: not used until then; atomic */
    bool moving;                     /* an epoch move in flight */
    struct gw_redis_cache_op *ops;   /* in flight */
    struct gw_redis_cache_stats st;
};

static void count(uint64_t *c)
{
    gw_metrics_inc(c);
}

static void name_account(struct gw_redis_cache *c, const struct gw_secret *key)
{
    char tag[GW_REDIS_ACCOUNT_HEX + 1];

    gw_redis_account_tag(key, tag);
    snprintf(c->prefix, sizeof c->prefix, "%.*s{%s}", GW_MAX_REDIS_PREFIX_BYTES,
             c->cfg->redis.key_prefix, tag);
}

struct gw_redis_cache *gw_redis_cache_new(struct gw_redis *redis, const struct gw_config *cfg,
                                          const struct gw_secret *key,
                                          struct gw_redis_cache_marks *marks,
                                          struct gw_log *log)
{
    struct gw_redis_cache *c = calloc(1, sizeof *c);
    uint64_t name;

    if (c == NULL)
        return NULL;
    c->redis = redis;
    c->cfg = cfg;
    c->marks = marks;
    c->log = log;
    if (RAND_bytes((unsigned char *)&name, sizeof name) != 1) {
        free(c);
        return NULL;
    }
    snprintf(c->writer, sizeof c->writer, "%016" PRIx64, name);
    gw_redis_script_sha(lookup_script, c->lookup_sha);
    gw_redis_script_sha(store_script, c->store_sha);
    name_account(c, key);
    return c;
}

void gw_redis_cache_reconfigure(struct gw_redis_cache *c, const struct gw_config *cfg,
                                const struct gw_secret *key)
{
    c->cfg = cfg;
    name_account(c, key);
}

static void op_unlink(struct gw_redis_cache_op *op)
{
    struct gw_redis_cache *c = op->c;

    if (op->prev != NULL)
        op->prev->next = op->next;
    else
        c->ops = op->next;
    if (op->next != NULL)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void op_free(struct gw_redis_cache_op *op)
{
    free(op->body);
    free(op);
}

void gw_redis_cache_free(struct gw_redis_cache *c)
{
    if (c == NULL)
        return;
    while (c->ops != NULL) {
        struct gw_redis_cache_op *op = c->ops;

        gw_redis_cancel(op->cmd);
        op_unlink(op);
        op_free(op);
    }
    free(c);
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void lose(struct gw_redis_cache *c)
{
    __atomic_fetch_add(&c->marks->lost, 1, __ATOMIC_ACQ_REL);
}

/* The epoch moved after @p mark lost writes: they are accounted for (never moving back). */
static void settle(struct gw_redis_cache *c, uint64_t mark)
{
    uint64_t cur = load(&c->marks->settled);

    while (cur < mark &&
           !__atomic_compare_exchange_n(&c->marks->settled, &cur, mark, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
        ;
}

static void on_answer(void *data, enum gw_redis_result result, const struct redisReply *reply);

/*
 * Redis answered a cache command with an error (@p why, without any secret: Redis's own
 * words): nothing is served or stored for GW_REDIS_CACHE_REFUSED_MS, and one log line says so
 * when it starts.
 */
static void refused(struct gw_redis_cache *c, const char *why)
{
    uint64_t now = gw_clock_ms();
    struct gw_logline l;
    bool was = __atomic_load_n(&c->refused_until_ms, __ATOMIC_RELAXED) > now;

    __atomic_store_n(&c->refused_until_ms, now + GW_REDIS_CACHE_REFUSED_MS, __ATOMIC_RELAXED);
    count(&c->st.refusals);
    if (was || !gw_log_enabled(c->log, GW_LOG_WARN))
        return;
    gw_log_begin(c->log, &l, GW_LOG_WARN,
                 "Redis refused the shared contact cache: not served for a while (does the "
                 "ACL user have the cache's commands?)");
    gw_log_str(&l, "error", why);
    gw_log_int(&l, "retry_ms", GW_REDIS_CACHE_REFUSED_MS);
    gw_log_end(&l);
}

/* Send @p op: its script by SHA-1 (whole after a NOSCRIPT), or the epoch's INCR. */
static int send_op(struct gw_redis_cache_op *op)
{
    struct gw_redis_cache *c = op->c;
    const char *argv[13];
    size_t lens[13];
    int argc = 0;
    bool lookup = op->kind == OP_LOOKUP;

#define ARG(s, n) (argv[argc] = (s), lens[argc] = (n), argc++)
#define STR(s) ARG((s), strlen(s))
    if (op->kind == OP_EPOCH) {
        STR("INCR");
        STR(op->keys[0]);
    } else {
        STR(op->whole ? "EVAL" : "EVALSHA");
        if (op->whole)
            STR(lookup ? lookup_script : store_script);
        else
            STR(lookup ? c->lookup_sha : c->store_sha);
        STR(lookup ? "2" : "3");
        for (int i = 0; i < (lookup ? 2 : 3); i++)
            STR(op->keys[i]);
        if (!lookup)
            ARG(op->body != NULL ? op->body : "", op->len); /* binary-safe */
        for (int i = 0; i < (lookup ? 1 : 5); i++)
            STR(op->args[i]);
    }
#undef STR
#undef ARG
    return gw_redis_command(c->redis, argc, argv, lens, op->deadline_ms, on_answer, op,
                            &op->cmd);
}

static struct gw_redis_cache_op *new_op(struct gw_redis_cache *c, enum op_kind kind,
                                        uint64_t deadline_ms)
{
    struct gw_redis_cache_op *op = calloc(1, sizeof *op);

    if (op == NULL)
        return NULL;
    op->c = c;
    op->kind = kind;
    op->deadline_ms = deadline_ms;
    return op;
}

/* Send a new op and keep it in c->ops when it went. Returns 0 or a gw_err (then freed). */
static int start_op(struct gw_redis_cache_op *op)
{
    struct gw_redis_cache *c = op->c;
    int rc = send_op(op);

    if (rc != 0) {
        op_free(op);
        return rc;
    }
    op->next = c->ops;
    if (c->ops != NULL)
        c->ops->prev = op;
    c->ops = op;
    return 0;
}

/* The epoch moves: every entry stored before is stale from now on. */
static void move_epoch(struct gw_redis_cache *c)
{
    struct gw_redis_cache_op *op = new_op(c, OP_EPOCH, 0);

    if (op == NULL)
        return;
    op->lost_mark = load(&c->marks->lost);
    snprintf(op->keys[0], sizeof op->keys[0], "%s:cache-epoch", c->prefix);
    if (start_op(op) == 0)
        c->moving = true;
}

bool gw_redis_cache_usable(struct gw_redis_cache *c)
{
    if (!gw_redis_up(c->redis) ||
        __atomic_load_n(&c->refused_until_ms, __ATOMIC_RELAXED) > gw_clock_ms())
        return false;
    if (gw_redis_cache_serving(c))
        return true;
    if (!c->moving)
        move_epoch(c);
    return false;
}

bool gw_redis_cache_serving(const struct gw_redis_cache *c)
{
    return gw_redis_up(c->redis) && load(&c->marks->lost) <= load(&c->marks->settled) &&
           __atomic_load_n(&c->refused_until_ms, __ATOMIC_RELAXED) <= gw_clock_ms();
}

uint64_t gw_redis_cache_session(const struct gw_redis_cache *c)
{
    return gw_redis_session(c->redis);
}

static void contact_keys(struct gw_redis_cache_op *op, uint64_t id, bool store)
{
    const char *prefix = op->c->prefix;

    snprintf(op->keys[0], sizeof op->keys[0], "%s:c:%" PRIu64, prefix, id);
    if (store) {
        snprintf(op->keys[1], sizeof op->keys[1], "%s:w:%" PRIu64, prefix, id);
        snprintf(op->keys[2], sizeof op->keys[2], "%s:cache-epoch", prefix);
    } else {
        snprintf(op->keys[1], sizeof op->keys[1], "%s:cache-epoch", prefix);
    }
}

int gw_redis_cache_lookup(struct gw_redis_cache *c, uint64_t id, uint64_t max_age_ms,
                          uint64_t deadline_ms, gw_redis_cache_lookup_cb *cb, void *data,
                          struct gw_redis_cache_op **out)
{
    struct gw_redis_cache_op *op;
    uint64_t ttl = (uint64_t)c->cfg->cache.ttl_ms;
    int rc;

    *out = NULL;
    op = new_op(c, OP_LOOKUP, deadline_ms);
    if (op == NULL)
        return GW_ERR_NOMEM;
    op->lookup_cb = cb;
    op->data = data;
    contact_keys(op, id, false);
    snprintf(op->args[0], sizeof op->args[0], "%" PRIu64,
             (max_age_ms < ttl ? max_age_ms : ttl) * 1000u);
    rc = start_op(op);
    if (rc != 0) {
        count(&c->st.unanswered);
        return rc;
    }
    *out = op;
    return 0;
}

/* A store of @p body for @p id, begun @p elapsed_ms ago; not sent yet. NULL: out of memory. */
static struct gw_redis_cache_op *store_op(struct gw_redis_cache *c, enum op_kind kind,
                                          uint64_t id, uint64_t elapsed_ms, const char *body,
                                          size_t len, uint64_t deadline_ms)
{
    struct gw_redis_cache_op *op = new_op(c, kind, deadline_ms);

    if (op == NULL)
        return NULL;
    if (body != NULL && len > 0) {
        op->body = malloc(len + 1);
        if (op->body == NULL) {
            free(op);
            return NULL;
        }
        memcpy(op->body, body, len);
        op->body[len] = '\0';
        op->len = len;
    }
    contact_keys(op, id, true);
    snprintf(op->args[0], sizeof op->args[0], "%" PRIu64,
             (elapsed_ms + GW_REDIS_CACHE_SKEW_MS) * 1000u);
    snprintf(op->args[1], sizeof op->args[1], "%ld", c->cfg->cache.ttl_ms);
    snprintf(op->args[2], sizeof op->args[2], "%d", GW_REDIS_CACHE_MARK_MS);
    snprintf(op->args[3], sizeof op->args[3], "%s", kind == OP_WRITE ? "w" : "r");
    snprintf(op->args[4], sizeof op->args[4], "%s", c->writer);
    return op;
}

bool gw_redis_cache_fill(struct gw_redis_cache *c, uint64_t id, uint64_t elapsed_ms,
                         uint64_t session, const char *body, size_t len)
{
    struct gw_redis_cache_op *op;

    /* Too old to tell whether a write ended meanwhile, too large for an answer, or across a
     * lost connection (a write may have missed Redis then): not stored. */
    if (elapsed_ms + GW_REDIS_CACHE_SKEW_MS >= GW_REDIS_CACHE_MARK_MS ||
        len > GW_REDIS_CACHE_MAX_ENTRY_BYTES || session != gw_redis_session(c->redis) ||
        !gw_redis_cache_usable(c)) {
        count(&c->st.refused);
        return false;
    }
    op = store_op(c, OP_FILL, id, elapsed_ms, body, len, 0);
    if (op == NULL || start_op(op) != 0) {
        count(&c->st.unanswered);
        return false;
    }
    return true;
}

int gw_redis_cache_write(struct gw_redis_cache *c, uint64_t id, uint64_t elapsed_ms,
                         const char *body, size_t len, uint64_t deadline_ms,
                         gw_redis_cache_store_cb *cb, void *data,
                         struct gw_redis_cache_op **out)
{
    struct gw_redis_cache_op *op;
    int rc;

    *out = NULL;
    /* An answer too large to be read back is not stored: the write drops the entry. */
    if (len > GW_REDIS_CACHE_MAX_ENTRY_BYTES)
        body = NULL;
    op = store_op(c, OP_WRITE, id, elapsed_ms, body, body != NULL ? len : 0, deadline_ms);
    if (op == NULL) {
        lose(c);
        return GW_ERR_NOMEM;
    }
    op->store_cb = cb;
    op->data = data;
    rc = start_op(op);
    if (rc != 0) {
        lose(c);
        count(&c->st.unanswered);
        return rc;
    }
    *out = op;
    return 0;
}

void gw_redis_cache_lost(struct gw_redis_cache *c)
{
    lose(c);
}

void gw_redis_cache_cancel(struct gw_redis_cache_op *op)
{
    if (op == NULL)
        return;
    /* A write whose end nobody hears may not have reached Redis: count it lost. */
    if (op->kind == OP_WRITE)
        lose(op->c);
    gw_redis_cancel(op->cmd);
    op_unlink(op);
    op_free(op);
}

/* The lookup script's answer {0} or {1, age_us, body} into @p f. Returns 0 or -1. */
static int read_found(const redisReply *reply, struct gw_redis_cache_found *f)
{
    const redisReply *b;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER)
        return -1;
    if (reply->element[0]->integer == 0 && reply->elements == 1) {
        f->found = 0;
        return 0;
    }
    if (reply->element[0]->integer != 1 || reply->elements != 3 ||
        reply->element[1]->type != REDIS_REPLY_INTEGER || reply->element[1]->integer < 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return -1;
    b = reply->element[2];
    f->body = malloc(b->len + 1);
    if (f->body == NULL) {
        f->found = -1;
        return 0;
    }
    memcpy(f->body, b->str, b->len);
    f->body[b->len] = '\0';
    f->len = b->len;
    f->age_ms = (uint64_t)reply->element[1]->integer / 1000u;
    f->found = 1;
    return 0;
}

/* The connection's answer to an op. */
static void on_answer(void *data, enum gw_redis_result result, const struct redisReply *reply)
{
    struct gw_redis_cache_op *op = data;
    struct gw_redis_cache *c = op->c;
    struct gw_redis_cache_found found = {.found = -1};
    int stored = -1;
    char why[GW_REDIS_ERROR_BYTES];

    op->cmd = NULL;
    if (result == GW_REDIS_REPLY && reply->type == REDIS_REPLY_ERROR && !op->whole &&
        op->kind != OP_EPOCH && reply->str != NULL && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* Redis forgot the script (a restart, a failover): send it whole, once. */
        op->whole = true;
        if (send_op(op) == 0)
            return;
    } else if (result == GW_REDIS_REPLY && reply->type == REDIS_REPLY_ERROR) {
        /* Redis refuses the cache (an ACL without its commands, a script error): the cache
         * stands aside for a while; the connection, and the shared quota on it, stay. */
        snprintf(why, sizeof why, "%.*s", (int)(reply->len < 160 ? reply->len : 160),
                 reply->str ? reply->str : "");
        refused(c, why);
    } else if (result == GW_REDIS_REPLY && op->kind == OP_LOOKUP) {
        if (read_found(reply, &found) != 0)
            gw_redis_fail(c->redis, GW_REDIS_ERR_PROTOCOL,
                          "the cache script answered something unexpected");
    } else if (result == GW_REDIS_REPLY) {
        /* The store script's 1 or 0, or INCR's new epoch. */
        if (reply->type == REDIS_REPLY_INTEGER)
            stored = reply->integer == 1 || op->kind == OP_EPOCH ? 1 : 0;
        else
            gw_redis_fail(c->redis, GW_REDIS_ERR_PROTOCOL,
                          "the cache script answered something unexpected");
    }
    op_unlink(op);
    switch (op->kind) {
    case OP_LOOKUP:
        count(found.found == 1 ? &c->st.hits : found.found == 0 ? &c->st.misses
                                                                 : &c->st.unanswered);
        op->lookup_cb(op->data, &found);
        break;
    case OP_EPOCH:
        c->moving = false;
        if (stored == 1) {
            settle(c, op->lost_mark);
            count(&c->st.epochs);
        }
        break;
    case OP_WRITE:
    case OP_FILL:
    default:
        count(stored == 1 ? &c->st.stored : stored == 0 ? &c->st.refused : &c->st.unanswered);
        if (op->kind == OP_WRITE && stored == -1)
            lose(c);
        if (op->store_cb != NULL)
            op->store_cb(op->data, stored);
        break;
    }
    op_free(op);
}

void gw_redis_cache_stats(const struct gw_redis_cache *c, struct gw_redis_cache_stats *out)
{
    const uint64_t *from = (const uint64_t *)&c->st;
    uint64_t *to = (uint64_t *)out;

    _Static_assert(sizeof(struct gw_redis_cache_stats) % sizeof(uint64_t) == 0,
                   "gw_redis_cache_stats holds only uint64_t counts");
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

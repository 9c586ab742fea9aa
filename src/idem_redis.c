/*
 * The shared idempotency store (idem_redis.h): Idempotency-Key records in Redis, changed by
 * one Lua script per verb, with the server's local table as the fallback.
 *
 * A record is one string: a fixed header and HelpCrunch's body after it,
 *
 *     state (1: h held, d done, u unknown)  fingerprint (64 hex)  token (20 digits)
 *     lease end (16 digits, ms of Redis's clock)  status (3 digits)  body
 *
 * so that one GET reads it and one SET ... PX writes it and its expiry together; the script
 * reads the time from Redis itself (TIME), so the replicas' clocks do not matter. A claim's
 * token is a random 64-bit number: the holder's end changes the record only while it still
 * holds it (not after another request took it over as unknown, its lease past).
 *
 * Each verb in flight is a trip (struct trip) that holds everything it sends, copied: a
 * NOSCRIPT resend, a reload, or the caller going away (gw_idem_cancel, gw_idem_stop) never
 * mixes or loses what it was sent with. A trip whose caller left still ends what it started:
 * a claim its begin wins is ended at once, a complete falls back as any other.
 */
#include "hcgw/idem_redis.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hcgw/auth.h"
#include "hcgw/config.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"
#include "hcgw/metrics.h"
#include "hcgw/redis.h"
#include "hcgw/secret.h"

/*
 * KEYS[1] the record. ARGV[1] the verb, ARGV[2] the body's fingerprint (64 hex), ARGV[3] the
 * claim's token (20 digits), ARGV[4] a number (begin: the lease, ms; complete: the status, 3
 * digits; abandon: 1 unknown, 0 forget), ARGV[5] the ttl (ms), ARGV[6] (complete) the body.
 *
 * begin answers {0} new, {1} recover (unknown, or held past its lease: taken over), {2,
 * status, body} replay, {3} in progress, {4} mismatch (another body), as enum
 * gw_idem_verdict; a new claim's record lives for its lease and the ttl after it, so that a
 * lost claim is known as unknown for the ttl. complete and abandon answer 1 when they ended
 * the claim, 0 when it was no longer theirs; complete makes the record again if it was lost
 * (evicted) while held, since its answer is final all the same.
 */
static const char script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "local fp, token = ARGV[2], ARGV[3]\n"
    "if ARGV[1] == 'b' then\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "  local lease = tonumber(ARGV[4])\n"
    "  if v then\n"
    "    if string.sub(v, 2, 65) ~= fp then return {4} end\n"
    "    local state = string.sub(v, 1, 1)\n"
    "    if state == 'd' then\n"
    "      return {2, tonumber(string.sub(v, 102, 104)), string.sub(v, 105)}\n"
    "    end\n"
    "    if state == 'h' and (tonumber(string.sub(v, 86, 101)) or 0) > now then return {3} end\n"
    "  end\n"
    "  redis.call('SET', KEYS[1], 'h' .. fp .. token .. string.format('%016d', now + lease) ..\n"
    "             '000', 'PX', string.format('%d', lease + tonumber(ARGV[5])))\n"
    "  if v then return {1} end\n"
    "  return {0}\n"
    "end\n"
    "if ARGV[1] == 'c' then\n"
    "  if v and (string.sub(v, 1, 1) ~= 'h' or string.sub(v, 66, 85) ~= token) then return 0 end\n"
    "  redis.call('SET', KEYS[1], 'd' .. fp .. token .. string.rep('0', 16) .. ARGV[4] ..\n"
    "             ARGV[6], 'PX', ARGV[5])\n"
    "  return 1\n"
    "end\n"
    "if not v or string.sub(v, 1, 1) ~= 'h' or string.sub(v, 66, 85) ~= token then return 0 end\n"
    "if ARGV[4] == '1' then\n"
    "  redis.call('SET', KEYS[1], 'u' .. string.sub(v, 2, 85) .. string.rep('0', 19), 'PX',\n"
    "             ARGV[5])\n"
    "else\n"
    "  redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 1\n";

/* What the hash of a record's name starts with: these hashes name idempotency records. */
#define NAME_DOMAIN "hcgw idem\n"

/* Hex digits of the hash in a record's name: half of SHA-256, ample to tell records apart. */
#define NAME_HEX 32

/* A record's name: the prefix, "idem:", the hash, a NUL. */
#define NAME_BYTES (GW_MAX_REDIS_PREFIX_BYTES + 5 + NAME_HEX + 1)

/* The fingerprint in hex, and the token's fixed width in decimal digits. */
#define FP_HEX (2 * GW_IDEM_FINGERPRINT_BYTES)
#define TOKEN_DIGITS 20

/* One decimal argument (a 64-bit number) and its NUL. */
#define NUMBER_BYTES 24

/* A record's scope, NUL, key, NUL: what the local fallback needs of it. */
#define ID_BYTES (GW_MAX_CLIENT_NAME + 1 + GW_MAX_IDEM_KEY_BYTES + 1)

/* EVALSHA sha 1 name verb fingerprint token number ttl [body]. */
#define MAX_ARGC 10

/* read_begin: the answer is not the script's (never a gw_err, which are negative). */
#define NOT_ANSWERED 1

enum verb {
    VERB_BEGIN,
    VERB_COMPLETE,
    VERB_ABANDON
};

static const char *const verb_args[] = {"b", "c", "a"};

/* What the script's begin answers, by its number. */
static const int verdicts[] = {GW_IDEM_NEW, GW_IDEM_RECOVER, GW_IDEM_REPLAY,
                               GW_IDEM_IN_PROGRESS, GW_IDEM_MISMATCH};

struct shared;

/* One verb in flight: what it sends, copied. */
struct trip {
    struct shared *s;
    struct gw_idem_claim *c;         /* the caller waiting for it, or NULL */
    enum verb verb;
    bool whole;                      /* sent with EVAL after a NOSCRIPT */
    uint64_t token;                  /* the claim's */
    uint64_t lease_ms;               /* begin's: for the fallback too */
    uint64_t deadline_ms;            /* begin's; 0 for the ends (redis.timeout_ms alone) */
    struct gw_redis_cmd *cmd;        /* in flight on the connection */
    struct gw_idem_key key;          /* scope and key into id */
    char id[ID_BYTES];
    char name[NAME_BYTES];
    char fp[FP_HEX + 1];
    char token_arg[TOKEN_DIGITS + 1];
    char number[NUMBER_BYTES];
    char ttl[NUMBER_BYTES];
    long status;                     /* complete's */
    char *body;                      /* complete's, malloc'd, or NULL */
    size_t len;
    struct trip *prev, *next;        /* s->trips */
};

struct shared {
    struct gw_idem_store base;       /* first: the store every caller sees */
    struct gw_loop *loop;
    struct gw_redis *redis;
    const struct gw_config *cfg;
    struct gw_idem_store *fallback;  /* the server's local table */
    struct gw_metrics *metrics;      /* the worker's block */
    char account[GW_REDIS_ACCOUNT_HEX + 1]; /* the account's tag (redis.h) */
    char sha[GW_REDIS_SHA1_HEX_BYTES];
    uint64_t rng[2];                 /* the claims' tokens */
    uint64_t held;                   /* claims this worker holds in Redis; read atomically */
    struct trip *trips;              /* in flight */
};

static void add_held(struct shared *s, int d)
{
    __atomic_store_n(&s->held, __atomic_load_n(&s->held, __ATOMIC_RELAXED) + (uint64_t)(int64_t)d,
                     __ATOMIC_RELAXED);
}

static void count_fallback(struct shared *s, enum gw_idem_fallback op)
{
    gw_metrics_inc(&s->metrics->idempotency_fallbacks[op]);
}

static uint64_t ttl_ms(const struct shared *s)
{
    return (uint64_t)s->cfg->idempotency.ttl_s * 1000u;
}

/* The largest final answer a record keeps: what one answer from Redis may carry, and no more
 * than the local table's bytes (so that the two backends keep the same answers). */
static size_t max_body(const struct shared *s)
{
    size_t m = GW_IDEM_REDIS_MAX_BODY_BYTES;

    if (s->cfg->idempotency.max_bytes > 0 && (unsigned long)s->cfg->idempotency.max_bytes < m)
        m = (size_t)s->cfg->idempotency.max_bytes;
    return m;
}

/* A claim's token: random (xorshift128+ seeded by getrandom), unique across replicas, not 0. */
static uint64_t new_token(struct shared *s)
{
    uint64_t a = s->rng[0];
    const uint64_t b = s->rng[1];
    uint64_t t;

    s->rng[0] = b;
    a ^= a << 23;
    s->rng[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    t = s->rng[1] + b;
    return t != 0 ? t : 1;
}

/* The account's part of every record's name: its tag (a hash of the API key, never the key). */
static void account_of(struct shared *s, const struct gw_secret *key)
{
    gw_redis_account_tag(key, s->account);
}

/* The Redis name of the record of @p k: the account, the scope and the key, hashed. */
static void record_name(const struct shared *s, const struct gw_idem_key *k,
                        char out[NAME_BYTES])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[NAME_HEX + 1] = "";
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    /* The scope's NUL separates it from the key: ("ab", "c") and ("a", "bc") are two. */
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, NAME_DOMAIN, sizeof NAME_DOMAIN - 1) == 1 &&
        EVP_DigestUpdate(ctx, s->account, strlen(s->account) + 1) == 1 &&
        EVP_DigestUpdate(ctx, k->scope, strlen(k->scope) + 1) == 1 &&
        EVP_DigestUpdate(ctx, k->key, strlen(k->key)) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &len) == 1 && len * 2 >= NAME_HEX)
        gw_redis_hex(md, NAME_HEX / 2, hex);
    EVP_MD_CTX_free(ctx);
    snprintf(out, NAME_BYTES, "%.*sidem:%s", GW_MAX_REDIS_PREFIX_BYTES,
             s->cfg->redis.key_prefix, hex);
}

/* ---- trips ---- */

static void trip_free(struct trip *t)
{
    if (t == NULL)
        return;
    free(t->body);
    free(t);
}

static void trip_unlink(struct trip *t)
{
    struct shared *s = t->s;

    if (t->prev != NULL)
        t->prev->next = t->next;
    else if (s->trips == t)
        s->trips = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* A trip of @p verb about the claim @p token on @p k, its key copied. NULL: out of memory. */
static struct trip *trip_new(struct shared *s, enum verb verb, const struct gw_idem_key *k,
                             uint64_t token)
{
    struct trip *t = calloc(1, sizeof *t);
    size_t a = strlen(k->scope);
    size_t b = strlen(k->key);

    if (t == NULL)
        return NULL;
    if (a > GW_MAX_CLIENT_NAME || b > GW_MAX_IDEM_KEY_BYTES) {
        free(t); /* never: request.c gives at most these */
        return NULL;
    }
    t->s = s;
    t->verb = verb;
    t->token = token;
    memcpy(t->id, k->scope, a + 1);
    memcpy(t->id + a + 1, k->key, b + 1);
    t->key.scope = t->id;
    t->key.key = t->id + a + 1;
    memcpy(t->key.fingerprint, k->fingerprint, sizeof t->key.fingerprint);
    record_name(s, k, t->name);
    gw_redis_hex(k->fingerprint, sizeof k->fingerprint, t->fp);
    snprintf(t->token_arg, sizeof t->token_arg, "%0*" PRIu64, TOKEN_DIGITS, token);
    snprintf(t->ttl, sizeof t->ttl, "%" PRIu64, ttl_ms(s));
    return t;
}

static void on_answer(void *data, enum gw_redis_result result, const struct redisReply *reply);

/* Send @p t's script: by its SHA-1, or whole once Redis said NOSCRIPT. Returns 0 or a gw_err. */
static int send_trip(struct trip *t)
{
    struct shared *s = t->s;
    const char *argv[MAX_ARGC];
    size_t lens[MAX_ARGC];
    int argc = 0;

    argv[argc++] = t->whole ? "EVAL" : "EVALSHA";
    argv[argc++] = t->whole ? script : s->sha;
    argv[argc++] = "1";
    argv[argc++] = t->name;
    argv[argc++] = verb_args[t->verb];
    argv[argc++] = t->fp;
    argv[argc++] = t->token_arg;
    argv[argc++] = t->number;
    argv[argc++] = t->ttl;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (t->verb == VERB_COMPLETE) {
        argv[argc] = t->body != NULL ? t->body : "";
        lens[argc++] = t->len;
    }
    return gw_redis_command(s->redis, argc, argv, lens, t->deadline_ms, on_answer, t, &t->cmd);
}

/* Send a new trip, and keep it in s->trips when it went. Returns 0 or a gw_err (then freed). */
static int start_trip(struct trip *t)
{
    struct shared *s = t->s;
    int rc = send_trip(t);

    if (rc != 0) {
        trip_free(t);
        return rc;
    }
    t->next = s->trips;
    if (s->trips != NULL)
        s->trips->prev = t;
    s->trips = t;
    return 0;
}

/* Keep a final answer Redis could not take in the local table (the claim is not held there:
 * the answer makes the record, unless the table has one of its own for the key). */
static void complete_locally(struct shared *s, const struct gw_idem_key *k, uint64_t token,
                             long status, const char *body, size_t len)
{
    struct gw_idem_claim c;

    memset(&c, 0, sizeof c);
    c.key = *k;
    c.token = token;
    c.held = true;
    (void)gw_idem_complete(s->fallback, &c, status, body, len, gw_loop_now(s->loop));
}

/*
 * End the Redis claim @p token on @p k without a final answer (as unknown, or forgotten);
 * nobody waits for it. Not sent (Redis away): the claim's lease ends it, as unknown.
 */
static void end_claim(struct shared *s, const struct gw_idem_key *k, uint64_t token,
                      bool unknown)
{
    struct trip *t = trip_new(s, VERB_ABANDON, k, token);

    if (ttl_ms(s) == 0)
        unknown = false; /* turned off by a reload meanwhile: nothing is kept */
    if (t != NULL) {
        snprintf(t->number, sizeof t->number, "%d", unknown ? 1 : 0);
        if (start_trip(t) == 0)
            return;
    }
    count_fallback(s, GW_IDEM_FALLBACK_ABANDON);
}

/*
 * End the Redis claim @p token on @p k with a final answer; @p c (NULL: nobody) waits for it.
 * A body over the bounds ends it as unknown instead. Returns GW_IDEM_LATER when @p c's done
 * will run, else 0 (kept in the local table when Redis could not take it).
 */
static int complete_claim(struct shared *s, const struct gw_idem_key *k, uint64_t token,
                          long status, const char *body, size_t len, struct gw_idem_claim *c)
{
    struct trip *t;

    if (body == NULL)
        len = 0;
    if (ttl_ms(s) == 0 || len > max_body(s) || status < 100 || status > 999) {
        /* Off (a reload meanwhile): it goes; too large: a later request looks for it. */
        end_claim(s, k, token, true);
        return 0;
    }
    t = trip_new(s, VERB_COMPLETE, k, token);
    if (t != NULL && len > 0) {
        t->body = malloc(len);
        if (t->body == NULL) {
            trip_free(t);
            t = NULL;
        } else {
            memcpy(t->body, body, len);
            t->len = len;
        }
    }
    if (t != NULL) {
        t->status = status;
        snprintf(t->number, sizeof t->number, "%03ld", status);
        if (start_trip(t) == 0) {
            t->c = c;
            if (c != NULL)
                c->trip = t;
            return c != NULL ? GW_IDEM_LATER : 0;
        }
    }
    count_fallback(s, GW_IDEM_FALLBACK_COMPLETE);
    complete_locally(s, k, token, status, body, len);
    return 0;
}

/* ---- begin ---- */

/* Redis could not say: the local table decides, and holds the claim when there is one. */
static int begin_locally(struct shared *s, struct gw_idem_claim *c, uint64_t lease_ms,
                         uint64_t deadline_ms)
{
    count_fallback(s, GW_IDEM_FALLBACK_BEGIN);
    return gw_idem_begin(s->fallback, c, gw_loop_now(s->loop), lease_ms, deadline_ms);
}

/*
 * What this replica's table kept while Redis was away counts too, when Redis would let @p c
 * hold the key (@p v NEW or RECOVER: c holds the Redis claim) or says another request holds
 * it (IN_PROGRESS: maybe a begin Redis applied after hcgw had given up on it). There a final
 * answer is replayed, whatever Redis says (it is final for this key and body), and becomes
 * the Redis record when c holds the claim; while c holds it, a claim in progress there or
 * another body wins (the Redis claim is ended as it was), and an unknown outcome makes this
 * one a recovery. Returns the verdict.
 */
static int consult_local(struct shared *s, struct gw_idem_claim *c, int v, uint64_t lease_ms,
                         uint64_t deadline_ms)
{
    struct gw_idem_claim p;
    uint64_t now = gw_loop_now(s->loop);
    bool holds = v == GW_IDEM_NEW || v == GW_IDEM_RECOVER;
    int lv;

    if ((!holds && v != GW_IDEM_IN_PROGRESS) || gw_idem_stats(s->fallback).entries == 0)
        return v;
    memset(&p, 0, sizeof p);
    p.key = c->key;
    lv = gw_idem_begin(s->fallback, &p, now, lease_ms, deadline_ms);
    switch (lv) {
    case GW_IDEM_NEW:
    case GW_IDEM_RECOVER:
        /* Only looked: the table's record stays as it was (none, or unknown). */
        gw_idem_abandon(s->fallback, &p, lv == GW_IDEM_RECOVER, now);
        return holds && lv == GW_IDEM_RECOVER ? GW_IDEM_RECOVER : v;
    case GW_IDEM_REPLAY:
        if (holds)
            (void)complete_claim(s, &c->key, c->token, p.rec.status, p.rec.body, p.rec.len,
                                 NULL);
        break;
    case GW_IDEM_IN_PROGRESS:
    case GW_IDEM_MISMATCH:
        if (!holds)
            return v;
        end_claim(s, &c->key, c->token, v == GW_IDEM_RECOVER);
        break;
    default:
        return v; /* the table is full or out of memory: Redis's verdict stands */
    }
    if (holds) {
        add_held(s, -1);
        c->held = false;
        c->token = 0;
        c->holder = NULL;
    }
    c->rec = p.rec;
    return lv;
}

/* The script's answer to a begin: its verdict, and a replay's record in @p rec. Returns 0,
 * NOT_ANSWERED when the answer is not of that shape, or GW_ERR_NOMEM. */
static int read_begin(const redisReply *reply, int *verdict, struct gw_idem_record *rec)
{
    const redisReply *body;
    long long code;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER)
        return NOT_ANSWERED;
    code = reply->element[0]->integer;
    if (code < 0 || code >= (long long)(sizeof verdicts / sizeof verdicts[0]))
        return NOT_ANSWERED;
    *verdict = verdicts[code];
    if (*verdict != GW_IDEM_REPLAY)
        return reply->elements == 1 ? 0 : NOT_ANSWERED;
    if (reply->elements != 3 || reply->element[1]->type != REDIS_REPLY_INTEGER ||
        reply->element[2]->type != REDIS_REPLY_STRING || reply->element[1]->integer < 100 ||
        reply->element[1]->integer > 999)
        return NOT_ANSWERED;
    body = reply->element[2];
    rec->status = (long)reply->element[1]->integer;
    if (body->len > 0) {
        rec->body = malloc(body->len + 1);
        if (rec->body == NULL)
            return GW_ERR_NOMEM;
        memcpy(rec->body, body->str, body->len);
        rec->body[body->len] = '\0';
        rec->len = body->len;
    }
    return 0;
}

/* A begin's answer came (@p reply NULL: Redis could not say). */
static void begin_answered(struct trip *t, const redisReply *reply)
{
    struct shared *s = t->s;
    struct gw_idem_claim *c = t->c;
    struct gw_idem_record rec = {0, NULL, 0};
    int v = GW_IDEM_NEW;
    int rc = NOT_ANSWERED;

    if (reply != NULL) {
        rc = read_begin(reply, &v, &rec);
        if (rc == NOT_ANSWERED)
            gw_redis_fail(s->redis, GW_REDIS_ERR_PROTOCOL,
                          "the idempotency script answered something unexpected");
    }
    if (c == NULL) {
        /* Nobody waits: a claim it won is ended at once, as the record was. */
        if (rc == 0 && (v == GW_IDEM_NEW || v == GW_IDEM_RECOVER))
            end_claim(s, &t->key, t->token, v == GW_IDEM_RECOVER);
        free(rec.body);
        trip_free(t);
        return;
    }
    c->trip = NULL;
    if (rc == NOT_ANSWERED) {
        v = begin_locally(s, c, t->lease_ms, t->deadline_ms);
    } else if (rc < 0) {
        v = rc; /* out of memory for the replayed body: nothing is held */
    } else {
        c->rec = rec;
        if (v == GW_IDEM_NEW || v == GW_IDEM_RECOVER) {
            c->held = true;
            c->token = t->token;
            c->holder = &s->base;
            add_held(s, 1);
        }
        v = consult_local(s, c, v, t->lease_ms, t->deadline_ms);
    }
    c->verdict = v;
    trip_free(t);
    c->done(c);
}

static int shared_begin(struct gw_idem_store *base, struct gw_idem_claim *c, uint64_t now_ms,
                        uint64_t lease_ms, uint64_t deadline_ms)
{
    struct shared *s = (struct shared *)base;
    struct trip *t;

    (void)now_ms; /* the lease runs on Redis's clock */
    if (ttl_ms(s) == 0)
        return GW_IDEM_NEW; /* off: nothing is held, nothing will be kept */
    if (!gw_redis_up(s->redis))
        return begin_locally(s, c, lease_ms, deadline_ms);
    t = trip_new(s, VERB_BEGIN, &c->key, new_token(s));
    if (t == NULL)
        return begin_locally(s, c, lease_ms, deadline_ms);
    t->lease_ms = lease_ms;
    t->deadline_ms = deadline_ms;
    snprintf(t->number, sizeof t->number, "%" PRIu64, lease_ms);
    if (start_trip(t) != 0)
        return begin_locally(s, c, lease_ms, deadline_ms);
    t->c = c;
    c->trip = t;
    return GW_IDEM_LATER;
}

/* ---- complete and abandon ---- */

static int shared_complete(struct gw_idem_store *base, struct gw_idem_claim *c, long status,
                           const char *body, size_t len, uint64_t now_ms)
{
    struct shared *s = (struct shared *)base;

    if (c->holder != base)
        return gw_idem_complete(c->holder, c, status, body, len, now_ms);
    add_held(s, -1);
    return complete_claim(s, &c->key, c->token, status, body, len, c);
}

static void shared_abandon(struct gw_idem_store *base, struct gw_idem_claim *c,
                           bool outcome_unknown, uint64_t now_ms)
{
    struct shared *s = (struct shared *)base;

    if (c->holder != base) {
        gw_idem_abandon(c->holder, c, outcome_unknown, now_ms);
        return;
    }
    add_held(s, -1);
    end_claim(s, &c->key, c->token, outcome_unknown);
}

/* A complete's answer came (@p reply NULL: Redis could not say: kept locally instead). */
static void complete_answered(struct trip *t, const redisReply *reply)
{
    struct shared *s = t->s;
    struct gw_idem_claim *c = t->c;

    if (reply != NULL && reply->type != REDIS_REPLY_INTEGER) {
        gw_redis_fail(s->redis, GW_REDIS_ERR_PROTOCOL,
                      "the idempotency script answered something unexpected");
        reply = NULL;
    }
    if (reply == NULL) {
        count_fallback(s, GW_IDEM_FALLBACK_COMPLETE);
        complete_locally(s, &t->key, t->token, t->status, t->body, t->len);
    }
    trip_free(t);
    if (c != NULL) {
        c->trip = NULL;
        c->done(c);
    }
}

/* An abandon's answer came (@p reply NULL: Redis could not say: the lease ends the claim). */
static void abandon_answered(struct trip *t, const redisReply *reply)
{
    struct shared *s = t->s;

    if (reply != NULL && reply->type != REDIS_REPLY_INTEGER) {
        gw_redis_fail(s->redis, GW_REDIS_ERR_PROTOCOL,
                      "the idempotency script answered something unexpected");
        reply = NULL;
    }
    if (reply == NULL)
        count_fallback(s, GW_IDEM_FALLBACK_ABANDON);
    trip_free(t);
}

/* The connection's answer to a trip. */
static void on_answer(void *data, enum gw_redis_result result, const struct redisReply *reply)
{
    struct trip *t = data;
    struct shared *s = t->s;
    char why[GW_REDIS_ERROR_BYTES];

    t->cmd = NULL;
    if (result != GW_REDIS_REPLY) {
        reply = NULL;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (!t->whole && reply->str != NULL && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            /* Redis forgot the script (a restart, a failover): send it whole, once. */
            t->whole = true;
            if (send_trip(t) == 0)
                return;
        } else {
            /* An error answer (an ACL without a command the script needs, Redis out of
             * memory): Redis is away as far as hcgw is concerned, and says why in the log. */
            snprintf(why, sizeof why, "the idempotency script failed: %.*s",
                     (int)(reply->len < 160 ? reply->len : 160), reply->str ? reply->str : "");
            gw_redis_fail(s->redis, GW_REDIS_ERR_REPLY, why);
        }
        reply = NULL;
    }
    trip_unlink(t);
    switch (t->verb) {
    case VERB_BEGIN:
        begin_answered(t, reply);
        break;
    case VERB_COMPLETE:
        complete_answered(t, reply);
        break;
    case VERB_ABANDON:
    default:
        abandon_answered(t, reply);
        break;
    }
}

/* ---- the rest of the interface ---- */

static void shared_cancel(struct gw_idem_store *base, struct gw_idem_claim *c)
{
    struct trip *t = c->trip;

    (void)base;
    t->c = NULL;
    c->trip = NULL;
}

static void shared_stop(struct gw_idem_store *base)
{
    struct shared *s = (struct shared *)base;
    struct gw_idem_claim *c;
    struct trip *t;

    /* Each callback may start or end trips: look again from the head after each (a worker
     * stops once; the trips are at most GW_REDIS_MAX_PENDING). */
    for (;;) {
        for (t = s->trips; t != NULL && t->c == NULL; t = t->next)
            ;
        if (t == NULL)
            break;
        c = t->c;
        t->c = NULL;
        c->trip = NULL;
        if (t->verb == VERB_BEGIN) {
            c->verdict = GW_ERR_SHUTTING_DOWN;
            c->held = false;
        }
        c->done(c);
    }
}

/* What it holds: the records live in Redis; these are the claims this worker holds there. */
static struct gw_idem_stats shared_stats(struct gw_idem_store *base)
{
    struct shared *s = (struct shared *)base;
    struct gw_idem_stats st;

    st.held = (size_t)__atomic_load_n(&s->held, __ATOMIC_RELAXED);
    st.entries = st.held;
    st.bytes = 0;
    return st;
}

static void shared_free(struct gw_idem_store *base)
{
    struct shared *s = (struct shared *)base;

    while (s->trips != NULL) {
        struct trip *t = s->trips;

        gw_redis_cancel(t->cmd);
        trip_unlink(t);
        trip_free(t);
    }
    gw_secret_wipe(s->account, sizeof s->account);
    free(s);
}

static const struct gw_idem_store_ops shared_ops = {
    .begin = shared_begin,
    .complete = shared_complete,
    .abandon = shared_abandon,
    .cancel = shared_cancel,
    .stop = shared_stop,
    .configure = NULL,               /* from its configuration: gw_idem_redis_reconfigure */
    .stats = shared_stats,
    .free = shared_free,
};

struct gw_idem_store *gw_idem_redis_new(struct gw_loop *loop, struct gw_redis *redis,
                                        const struct gw_config *cfg,
                                        const struct gw_secret *key,
                                        struct gw_idem_store *fallback,
                                        struct gw_metrics *metrics)
{
    struct shared *s = calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    s->base.ops = &shared_ops;
    s->loop = loop;
    s->redis = redis;
    s->fallback = fallback;
    s->metrics = metrics;
    if (getrandom(s->rng, sizeof s->rng, 0) != (ssize_t)sizeof s->rng ||
        (s->rng[0] | s->rng[1]) == 0) {
        /* Unique within this process at least; getrandom does not fail after boot. */
        s->rng[0] = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)s;
        s->rng[1] = gw_loop_now(loop) | 1;
    }
    gw_redis_script_sha(script, s->sha);
    gw_idem_redis_reconfigure(&s->base, cfg, key);
    return &s->base;
}

void gw_idem_redis_reconfigure(struct gw_idem_store *base, const struct gw_config *cfg,
                               const struct gw_secret *key)
{
    struct shared *s = (struct shared *)base;

    s->cfg = cfg;
    account_of(s, key);
}

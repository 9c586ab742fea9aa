/*
 * The shared quota (redis_quota.h): the GCRA bucket of governor.c, kept in Redis and changed
 * by a Lua script, so that the replicas of one account draw from one bucket.
 *
 * The bucket is one number, its "theoretical arrival time" (tat, microseconds of Redis's own
 * clock): a call at `now` may go at max(tat, now) - tau, where tau = (burst - 1) * interval,
 * and going moves tat one interval past that slot. A caller that can wait gets its future slot
 * reserved the same way, which queues callers in order without a list. A cooldown key, set
 * with a time to live after a HelpCrunch 429, holds every slot back until it expires; the
 * report also moves tat so that the bucket resumes at its steady rate, not with a burst.
 *
 * Each admission is an ask (struct gw_redis_quota_ask) holding what it sends: the script's
 * keys and arguments are copied in it, so a reload or a NOSCRIPT resend never mixes settings.
 */
#include "hcgw/redis_quota.h"

#include <hiredis/hiredis.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/config.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/metrics.h"
#include "hcgw/redis.h"
#include "hcgw/secret.h"

/*
 * KEYS[1] the bucket's tat, KEYS[2] the cooldown. ARGV[1] the interval (us), ARGV[2] the
 * burst, ARGV[3] the longest wait the caller accepts (us; negative: none at all). Answers
 * {1, wait_us, cooldown_ms} with the slot taken (it goes after wait_us), or {0, wait_us,
 * cooldown_ms} with nothing taken (the next slot is wait_us away). cooldown_ms is the
 * cooldown's time to live (<= 0: none). Numbers are written with %d: Lua's own tostring
 * keeps 14 digits, and a time in microseconds has 16.
 */
static const char admit_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local interval = tonumber(ARGV[1])\n"
    "local tau = (tonumber(ARGV[2]) - 1) * interval\n"
    "local limit = tonumber(ARGV[3])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or now\n"
    "if tat < now then tat = now end\n"
    "local at = tat - tau\n"
    "local cd = redis.call('PTTL', KEYS[2])\n"
    "if cd > 0 and at < now + cd * 1000 then at = now + cd * 1000 end\n"
    "local wait = at - now\n"
    "if wait < 0 then wait = 0 end\n"
    "if wait > limit then return {0, wait, cd} end\n"
    "local new = math.max(at + tau, tat) + interval\n"
    "redis.call('SET', KEYS[1], string.format('%d', new), 'PX',\n"
    "           string.format('%d', math.floor((new - now) / 1000) + 1))\n"
    "return {1, wait, cd}\n";

/*
 * KEYS as above. ARGV[1] the cooldown (ms), ARGV[2] the interval (us), ARGV[3] the burst.
 * Sets the cooldown unless a longer one runs, and moves tat to the cooldown's end plus tau,
 * so that the first slots after it come at the steady rate. Answers the cooldown in force (ms).
 */
static const char cooldown_script[] =
    "local ms = tonumber(ARGV[1])\n"
    "local left = redis.call('PTTL', KEYS[2])\n"
    "if left >= ms then return left end\n"
    "redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local floor = now + ms * 1000 + (tonumber(ARGV[3]) - 1) * tonumber(ARGV[2])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1])) or 0\n"
    "if tat < floor then\n"
    "  redis.call('SET', KEYS[1], string.format('%d', floor), 'PX',\n"
    "             string.format('%d', math.floor((floor - now) / 1000) + 1))\n"
    "end\n"
    "return ms\n";

/* A key: the prefix, "{", the account's tag, "}", the longest suffix (":cooldown"), a NUL. */
#define KEY_BYTES (GW_MAX_REDIS_PREFIX_BYTES + 1 + GW_REDIS_ACCOUNT_HEX + 1 + 9 + 1)

/* One decimal argument (a 64-bit number and its sign) and its NUL. */
#define NUMBER_BYTES 24

/* EVALSHA sha 2 key key arg arg arg. */
#define SCRIPT_ARGC 8

struct gw_redis_quota_ask {
    struct gw_redis_quota *q;
    gw_redis_quota_cb *cb;           /* NULL for a cooldown report */
    void *data;
    bool cooldown;                   /* the cooldown script, not the admission */
    bool whole;                      /* sent with EVAL after a NOSCRIPT */
    uint64_t now_ms, deadline_ms;
    struct gw_redis_cmd *cmd;        /* in flight on the connection */
    char keys[2][KEY_BYTES];
    char args[3][NUMBER_BYTES];
    struct gw_redis_quota_ask *prev, *next; /* q->asks */
};

struct gw_redis_quota {
    struct gw_redis *redis;
    const struct gw_config *cfg;
    char key_tat[KEY_BYTES];
    char key_cooldown[KEY_BYTES];
    char admit_sha[GW_REDIS_SHA1_HEX_BYTES];
    char cooldown_sha[GW_REDIS_SHA1_HEX_BYTES];
    uint64_t cooldown_until;         /* loop time, as last heard */
    struct gw_redis_quota_ask *asks; /* in flight */
    struct gw_redis_quota_stats st;
};

static void count(uint64_t *c)
{
    gw_metrics_inc(c);
}

static void add_stat(uint64_t *c, int64_t d)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + (uint64_t)d, __ATOMIC_RELAXED);
}

/* The two key names of the account whose API key is @p key. */
static void account_keys(struct gw_redis_quota *q, const struct gw_secret *key)
{
    char tag[GW_REDIS_ACCOUNT_HEX + 1];

    gw_redis_account_tag(key, tag);
    snprintf(q->key_tat, sizeof q->key_tat, "%.*s{%s}:tat", GW_MAX_REDIS_PREFIX_BYTES,
             q->cfg->redis.key_prefix, tag);
    snprintf(q->key_cooldown, sizeof q->key_cooldown, "%.*s{%s}:cooldown",
             GW_MAX_REDIS_PREFIX_BYTES, q->cfg->redis.key_prefix, tag);
}

struct gw_redis_quota *gw_redis_quota_new(struct gw_redis *redis, const struct gw_config *cfg,
                                          const struct gw_secret *key)
{
    struct gw_redis_quota *q = calloc(1, sizeof *q);

    if (q == NULL)
        return NULL;
    q->redis = redis;
    q->cfg = cfg;
    gw_redis_script_sha(admit_script, q->admit_sha);
    gw_redis_script_sha(cooldown_script, q->cooldown_sha);
    account_keys(q, key);
    return q;
}

void gw_redis_quota_reconfigure(struct gw_redis_quota *q, const struct gw_config *cfg,
                                const struct gw_secret *key)
{
    q->cfg = cfg;
    account_keys(q, key);
}

static void ask_unlink(struct gw_redis_quota_ask *a)
{
    struct gw_redis_quota *q = a->q;

    if (a->prev)
        a->prev->next = a->next;
    else
        q->asks = a->next;
    if (a->next)
        a->next->prev = a->prev;
}

void gw_redis_quota_free(struct gw_redis_quota *q)
{
    if (q == NULL)
        return;
    while (q->asks != NULL) {
        struct gw_redis_quota_ask *a = q->asks;

        gw_redis_cancel(a->cmd);
        ask_unlink(a);
        free(a);
    }
    free(q);
}

bool gw_redis_quota_usable(const struct gw_redis_quota *q)
{
    return q->cfg->quota.requests_per_minute > 0 && gw_redis_up(q->redis);
}

static void on_answer(void *data, enum gw_redis_result result, const struct redisReply *reply);

/* Send @p a's script: by its SHA-1, or whole once Redis said NOSCRIPT. Returns 0 or a gw_err. */
static int send_ask(struct gw_redis_quota_ask *a)
{
    struct gw_redis_quota *q = a->q;
    const char *script = a->cooldown ? cooldown_script : admit_script;
    const char *sha = a->cooldown ? q->cooldown_sha : q->admit_sha;
    const char *argv[SCRIPT_ARGC];
    size_t lens[SCRIPT_ARGC];

    argv[0] = a->whole ? "EVAL" : "EVALSHA";
    argv[1] = a->whole ? script : sha;
    argv[2] = "2";
    argv[3] = a->keys[0];
    argv[4] = a->keys[1];
    argv[5] = a->args[0];
    argv[6] = a->args[1];
    argv[7] = a->args[2];
    for (int i = 0; i < SCRIPT_ARGC; i++)
        lens[i] = strlen(argv[i]);
    return gw_redis_command(q->redis, SCRIPT_ARGC, argv, lens, a->deadline_ms, on_answer, a,
                            &a->cmd);
}

static struct gw_redis_quota_ask *new_ask(struct gw_redis_quota *q, uint64_t now_ms,
                                          uint64_t deadline_ms)
{
    struct gw_redis_quota_ask *a = calloc(1, sizeof *a);

    if (a == NULL)
        return NULL;
    a->q = q;
    a->now_ms = now_ms;
    a->deadline_ms = deadline_ms;
    memcpy(a->keys[0], q->key_tat, sizeof a->keys[0]);
    memcpy(a->keys[1], q->key_cooldown, sizeof a->keys[1]);
    return a;
}

/* Send a new ask, and keep it in q->asks when it went. Returns 0 or a gw_err (then freed). */
static int start_ask(struct gw_redis_quota_ask *a)
{
    struct gw_redis_quota *q = a->q;
    int rc = send_ask(a);

    if (rc != 0) {
        free(a);
        return rc;
    }
    a->next = q->asks;
    if (q->asks)
        q->asks->prev = a;
    q->asks = a;
    return 0;
}

static uint64_t interval_us(const struct gw_config *cfg)
{
    return gw_governor_interval_us(cfg->quota.requests_per_minute, cfg->quota.burst);
}

static int burst_of(const struct gw_config *cfg)
{
    return gw_governor_burst(cfg->quota.requests_per_minute, cfg->quota.burst);
}

int gw_redis_quota_admit(struct gw_redis_quota *q, uint64_t now_ms, uint64_t deadline_ms,
                         gw_redis_quota_cb *cb, void *data, struct gw_redis_quota_ask **out)
{
    const struct gw_config *cfg = q->cfg;
    struct gw_redis_quota_ask *a;
    int64_t limit_us, left_us;
    int rc;

    *out = NULL;
    if (!gw_redis_quota_usable(q)) {
        count(&q->st.fallbacks);
        return GW_ERR_UPSTREAM_UNAVAILABLE;
    }
    a = new_ask(q, now_ms, deadline_ms);
    if (a == NULL)
        return GW_ERR_NOMEM;
    a->cb = cb;
    a->data = data;
    /* As gw_governor_acquire: refused when the wait passes max_wait_ms, or reaches the
     * deadline (wait_us >= left_us). */
    left_us = deadline_ms > now_ms ? (int64_t)(deadline_ms - now_ms) * 1000 - 1 : -1;
    limit_us = (int64_t)cfg->quota.max_wait_ms * 1000;
    if (left_us < limit_us)
        limit_us = left_us;
    snprintf(a->args[0], sizeof a->args[0], "%" PRIu64, interval_us(cfg));
    snprintf(a->args[1], sizeof a->args[1], "%d", burst_of(cfg));
    snprintf(a->args[2], sizeof a->args[2], "%" PRId64, limit_us);
    rc = start_ask(a);
    if (rc != 0) {
        count(&q->st.fallbacks);
        return rc;
    }
    *out = a;
    return 0;
}

void gw_redis_quota_cancel(struct gw_redis_quota_ask *ask)
{
    if (ask == NULL)
        return;
    gw_redis_cancel(ask->cmd);
    ask_unlink(ask);
    free(ask);
}

static long ceil_s(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;

    if (s < 1)
        s = 1;
    return s > GW_MAX_RETRY_AFTER_S ? GW_MAX_RETRY_AFTER_S : (long)s;
}

/* The admission script's answer {taken, wait_us, cooldown_ms} into @p out. Returns 0 or -1. */
static int read_verdict(struct gw_redis_quota_ask *a, const redisReply *reply,
                        struct gw_redis_quota_answer *out)
{
    struct gw_redis_quota *q = a->q;
    long long taken, wait_us, cd_ms;
    uint64_t wait_ms;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return -1;
    for (size_t i = 0; i < 3; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return -1;
    }
    taken = reply->element[0]->integer;
    wait_us = reply->element[1]->integer;
    cd_ms = reply->element[2]->integer;
    if ((taken != 0 && taken != 1) || wait_us < 0)
        return -1;
    if (cd_ms > 0 && a->now_ms + (uint64_t)cd_ms > q->cooldown_until)
        q->cooldown_until = a->now_ms + (uint64_t)cd_ms;
    wait_ms = ((uint64_t)wait_us + 999) / 1000;
    out->shared = true;
    count(&q->st.decided);
    if (!taken) {
        out->verdict = GW_GOV_REJECT;
        out->retry_after_s = ceil_s(wait_ms);
        count(&q->st.rejections);
    } else if (wait_us > 0) {
        out->verdict = GW_GOV_WAIT;
        out->wait_ms = wait_ms;
        count(&q->st.waits);
        add_stat(&q->st.queued, 1);
    } else {
        out->verdict = GW_GOV_GO;
        count(&q->st.go);
    }
    return 0;
}

/* The connection's answer to an ask. */
static void on_answer(void *data, enum gw_redis_result result, const struct redisReply *reply)
{
    struct gw_redis_quota_ask *a = data;
    struct gw_redis_quota *q = a->q;
    struct gw_redis_quota_answer answer;
    char why[GW_REDIS_ERROR_BYTES];
    gw_redis_quota_cb *cb = a->cb;
    void *cb_data = a->data;

    memset(&answer, 0, sizeof answer);
    a->cmd = NULL;
    if (result == GW_REDIS_REPLY && reply->type == REDIS_REPLY_ERROR && !a->whole &&
        reply->str != NULL && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* Redis forgot the script (a restart, a failover): send it whole, once. */
        a->whole = true;
        count(&q->st.script_loads);
        if (send_ask(a) == 0)
            return;
    } else if (result == GW_REDIS_REPLY && reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof why, "the quota script failed: %.*s",
                 (int)(reply->len < 160 ? reply->len : 160), reply->str ? reply->str : "");
        gw_redis_fail(q->redis, GW_REDIS_ERR_REPLY, why);
    } else if (result == GW_REDIS_REPLY && a->cooldown) {
        if (reply->type != REDIS_REPLY_INTEGER)
            gw_redis_fail(q->redis, GW_REDIS_ERR_PROTOCOL,
                          "the cooldown script answered something unexpected");
    } else if (result == GW_REDIS_REPLY && read_verdict(a, reply, &answer) != 0) {
        gw_redis_fail(q->redis, GW_REDIS_ERR_PROTOCOL,
                      "the quota script answered something unexpected");
    }
    ask_unlink(a);
    free(a);
    if (cb == NULL)
        return; /* a cooldown report: nobody waits for it */
    if (!answer.shared)
        count(&q->st.fallbacks);
    cb(cb_data, &answer);
}

void gw_redis_quota_done_waiting(struct gw_redis_quota *q, uint64_t waited_ms)
{
    add_stat(&q->st.queued, -1);
    add_stat(&q->st.wait_ms_total, (int64_t)waited_ms);
}

int gw_redis_quota_on_429(struct gw_redis_quota *q, uint64_t now_ms, long retry_after_s)
{
    const struct gw_config *cfg = q->cfg;
    uint64_t ms = retry_after_s > 0 ? (uint64_t)retry_after_s * 1000u
                                    : (uint64_t)cfg->quota.cooldown_ms;
    struct gw_redis_quota_ask *a;
    int rc;

    if (now_ms + ms > q->cooldown_until)
        q->cooldown_until = now_ms + ms;
    if (!gw_redis_quota_usable(q))
        return GW_ERR_UPSTREAM_UNAVAILABLE;
    a = new_ask(q, now_ms, 0);
    if (a == NULL)
        return GW_ERR_NOMEM;
    a->cooldown = true;
    snprintf(a->args[0], sizeof a->args[0], "%" PRIu64, ms);
    snprintf(a->args[1], sizeof a->args[1], "%" PRIu64, interval_us(cfg));
    snprintf(a->args[2], sizeof a->args[2], "%d", burst_of(cfg));
    rc = start_ask(a);
    if (rc == 0)
        count(&q->st.cooldowns);
    return rc;
}

long gw_redis_quota_cooldown_left_s(const struct gw_redis_quota *q, uint64_t now_ms)
{
    return q->cooldown_until > now_ms ? ceil_s(q->cooldown_until - now_ms) : 0;
}

void gw_redis_quota_stats(const struct gw_redis_quota *q, struct gw_redis_quota_stats *out)
{
    const uint64_t *from = (const uint64_t *)&q->st;
    uint64_t *to = (uint64_t *)out;

    _Static_assert(sizeof(struct gw_redis_quota_stats) % sizeof(uint64_t) == 0,
                   "gw_redis_quota_stats holds only uint64_t counts");
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

/*
 * faults.c: the fault knobs, their one table (JSON key, flag, type, bounds), and the draw that
 * decides each /v1 call's fate.
 *
 * The command line and POST /_sim/faults go through the same table, so a knob has the same
 * name, bounds and messages in both places, and a typo is refused in both. One draw of the
 * PRNG per call lays the rates end to end on [0, 1): that keeps each fraction exact (a call is
 * closed with probability close_rate whatever error_rate is), which is why the rates may not
 * add up to more than 1.
 */
#include "faults.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "util.h"

/* What a proxy in front of HelpCrunch answers when HelpCrunch is down (html_rate). */
#define HTML_PAGE \
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" \
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n" \
    "</body>\r\n</html>\r\n"
/* A 200 whose body is not JSON (bad_body_rate); it does not look like "Ok" either, which is
 * what HelpCrunch answers a delete with. */
#define BAD_BODY "hcgw-sim: this 200 body is not JSON {\"id\":"

enum knob_type { KNOB_UINT, KNOB_RATE, KNOB_BOOL };

struct knob {
    const char *name; /* the JSON key */
    const char *flag; /* the command-line flag, without "--" */
    enum knob_type type;
    size_t offset;    /* into struct sim_knobs */
    unsigned long long min, max; /* KNOB_UINT only */
};

#define UINT_KNOB(n, f, field, lo, hi) \
    {n, f, KNOB_UINT, offsetof(struct sim_knobs, field), (lo), (hi)}
#define RATE_KNOB(n, f, field) {n, f, KNOB_RATE, offsetof(struct sim_knobs, field), 0, 0}
#define BOOL_KNOB(n, f, field) {n, f, KNOB_BOOL, offsetof(struct sim_knobs, field), 0, 0}

static const struct knob knobs[] = {
    UINT_KNOB("latency_ms", "latency-ms", latency_ms, 0, SIM_LATENCY_MAX_MS),
    UINT_KNOB("latency_jitter_ms", "latency-jitter-ms", latency_jitter_ms, 0,
              SIM_LATENCY_MAX_MS),
    RATE_KNOB("error_rate", "error-rate", error_rate),
    UINT_KNOB("error_status", "error-status", error_status, SIM_ERROR_STATUS_MIN,
              SIM_ERROR_STATUS_MAX),
    UINT_KNOB("error_next", "error-next", error_next, 0, SIM_ERROR_NEXT_MAX),
    UINT_KNOB("rate_limit", "rate-limit", rate_limit, 0, SIM_RATE_LIMIT_MAX),
    BOOL_KNOB("retry_after", "retry-after", retry_after),
    RATE_KNOB("hang_rate", "hang-rate", hang_rate),
    RATE_KNOB("close_rate", "close-rate", close_rate),
    RATE_KNOB("reset_rate", "reset-rate", reset_rate),
    RATE_KNOB("truncate_rate", "truncate-rate", truncate_rate),
    RATE_KNOB("drip_rate", "drip-rate", drip_rate),
    UINT_KNOB("drip_interval_ms", "drip-interval-ms", drip_interval_ms, 0,
              SIM_SCRIPT_INTERVAL_MAX_MS),
    RATE_KNOB("huge_rate", "huge-rate", huge_rate),
    UINT_KNOB("huge_bytes", "huge-bytes", huge_bytes, SIM_HUGE_MIN, SIM_HUGE_MAX),
    RATE_KNOB("html_rate", "html-rate", html_rate),
    RATE_KNOB("bad_body_rate", "bad-body-rate", bad_body_rate),
    BOOL_KNOB("gzip", "gzip", gzip),
};
#define N_KNOBS (sizeof(knobs) / sizeof(knobs[0]))

/* The rates in the order they are laid out on [0, 1) by a draw. */
static const struct {
    enum sim_fault_kind kind;
    size_t offset;
} rate_order[] = {
    {SIM_FAULT_HANG, offsetof(struct sim_knobs, hang_rate)},
    {SIM_FAULT_CLOSE, offsetof(struct sim_knobs, close_rate)},
    {SIM_FAULT_RESET, offsetof(struct sim_knobs, reset_rate)},
    {SIM_FAULT_TRUNCATE, offsetof(struct sim_knobs, truncate_rate)},
    {SIM_FAULT_DRIP, offsetof(struct sim_knobs, drip_rate)},
    {SIM_FAULT_HUGE, offsetof(struct sim_knobs, huge_rate)},
    {SIM_FAULT_HTML, offsetof(struct sim_knobs, html_rate)},
    {SIM_FAULT_BAD_BODY, offsetof(struct sim_knobs, bad_body_rate)},
    {SIM_FAULT_ERROR, offsetof(struct sim_knobs, error_rate)},
};
#define N_RATES (sizeof(rate_order) / sizeof(rate_order[0]))

static const char *const kind_names[] = {
    [SIM_FAULT_NONE] = "none",         [SIM_FAULT_LATENCY] = "latency",
    [SIM_FAULT_ERROR] = "error",       [SIM_FAULT_HANG] = "hang",
    [SIM_FAULT_CLOSE] = "close",       [SIM_FAULT_RESET] = "reset",
    [SIM_FAULT_TRUNCATE] = "truncate", [SIM_FAULT_DRIP] = "drip",
    [SIM_FAULT_HUGE] = "huge",         [SIM_FAULT_HTML] = "html",
    [SIM_FAULT_BAD_BODY] = "bad_body",
};

struct sim_faults {
    struct sim_knobs start; /* what DELETE /_sim/faults and /_sim/reset go back to */
    struct sim_knobs now;
    uint64_t start_seed;
    uint64_t seed;          /* the last seed given, shown by GET /_sim/faults */
    uint64_t rng;           /* splitmix64 state */
};

static unsigned long long *uint_at(struct sim_knobs *k, const struct knob *d)
{
    return (unsigned long long *)(void *)((char *)k + d->offset);
}

static double *rate_at(struct sim_knobs *k, size_t offset)
{
    return (double *)(void *)((char *)k + offset);
}

static bool *bool_at(struct sim_knobs *k, const struct knob *d)
{
    return (bool *)(void *)((char *)k + d->offset);
}

static double rate_of(const struct sim_knobs *k, size_t offset)
{
    return *(const double *)(const void *)((const char *)k + offset);
}

void sim_knobs_default(struct sim_knobs *k, unsigned long long rate_limit)
{
    memset(k, 0, sizeof(*k));
    k->error_status = SIM_ERROR_STATUS_DEFAULT;
    k->rate_limit = rate_limit;
    k->huge_bytes = SIM_HUGE_DEFAULT;
    k->drip_interval_ms = SIM_SCRIPT_INTERVAL_DEFAULT_MS;
}

size_t sim_knobs_count(void)
{
    return N_KNOBS;
}

const char *sim_knobs_flag(size_t i)
{
    return knobs[i].flag;
}

bool sim_knobs_flag_has_arg(size_t i)
{
    return knobs[i].type != KNOB_BOOL;
}

/* The reason a value was refused, worded for a flag ("--x") or a JSON key ("x"). */
static void bad_value(const struct knob *d, bool as_flag, char *err, size_t errlen)
{
    const char *dashes = as_flag ? "--" : "";
    const char *name = as_flag ? d->flag : d->name;

    switch (d->type) {
    case KNOB_UINT:
        snprintf(err, errlen, "%s%s must be an integer from %llu to %llu", dashes, name, d->min,
                 d->max);
        break;
    case KNOB_RATE:
        snprintf(err, errlen, "%s%s must be a number from 0 to 1", dashes, name);
        break;
    case KNOB_BOOL:
        snprintf(err, errlen, "%s%s must be true or false", dashes, name);
        break;
    }
}

int sim_knobs_set_flag(struct sim_knobs *k, size_t i, const char *text, char *err,
                       size_t errlen)
{
    const struct knob *d = &knobs[i];
    long long n = 0;
    double v = 0;
    int rc = -1;

    switch (d->type) {
    case KNOB_UINT:
        if (sim_parse_ll(text, &n) != 0 || n < 0 || (unsigned long long)n < d->min ||
            (unsigned long long)n > d->max)
            goto fail;
        *uint_at(k, d) = (unsigned long long)n;
        break;
    case KNOB_RATE:
        if (sim_parse_double(text, &v) != 0 || v < 0.0 || v > 1.0)
            goto fail;
        *rate_at(k, d->offset) = v;
        break;
    case KNOB_BOOL:
        *bool_at(k, d) = true;
        break;
    }
    rc = 0;
    goto out;
fail:
    bad_value(d, true, err, errlen);
out:
    return rc;
}

int sim_knobs_check(const struct sim_knobs *k, char *err, size_t errlen)
{
    double sum = 0;
    size_t i;
    int rc = 0;

    for (i = 0; i < N_RATES; i++)
        sum += rate_of(k, rate_order[i].offset);
    /* The slack forgives float sums such as 0.7 + 0.2 + 0.1. */
    if (sum > 1.0 + SIM_RATE_SUM_SLACK) {
        snprintf(err, errlen, "the rates add up to %.6g, more than 1", sum);
        rc = -1;
    }
    return rc;
}

/* splitmix64: tiny, fast, good enough for fault dice, and fully determined by the seed. */
static uint64_t next_u64(struct sim_faults *f)
{
    uint64_t z = (f->rng += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1), from the top 53 bits. */
static double next_unit(struct sim_faults *f)
{
    return (double)(next_u64(f) >> 11) * (1.0 / 9007199254740992.0);
}

struct sim_faults *sim_faults_new(const struct sim_knobs *start, uint64_t seed)
{
    struct sim_faults *f = calloc(1, sizeof(*f));

    if (f != NULL) {
        f->start = *start;
        f->start_seed = seed;
        sim_faults_reset(f);
    }
    return f;
}

void sim_faults_free(struct sim_faults *f)
{
    free(f);
}

void sim_faults_reset(struct sim_faults *f)
{
    f->now = f->start;
    f->seed = f->rng = f->start_seed;
}

static const struct knob *knob_find(const char *name)
{
    size_t i;

    for (i = 0; i < N_KNOBS; i++) {
        if (strcmp(knobs[i].name, name) == 0)
            return &knobs[i];
    }
    return NULL;
}

static int knob_set_json(struct sim_knobs *k, const struct knob *d, json_object *v, char *err,
                         size_t errlen)
{
    long long n;
    double x;
    bool ok = false;

    switch (d->type) {
    case KNOB_UINT:
        n = json_object_get_int64(v);
        ok = json_object_is_type(v, json_type_int) && n >= 0 &&
             (unsigned long long)n >= d->min && (unsigned long long)n <= d->max;
        if (ok)
            *uint_at(k, d) = (unsigned long long)n;
        break;
    case KNOB_RATE:
        x = json_object_get_double(v);
        ok = (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) &&
             isfinite(x) && x >= 0.0 && x <= 1.0;
        if (ok)
            *rate_at(k, d->offset) = x;
        break;
    case KNOB_BOOL:
        ok = json_object_is_type(v, json_type_boolean);
        if (ok)
            *bool_at(k, d) = json_object_get_boolean(v) != 0;
        break;
    }
    if (!ok)
        bad_value(d, false, err, errlen);
    return ok ? 0 : -1;
}

int sim_faults_update(struct sim_faults *f, json_object *doc, bool *rate_changed, char *err,
                      size_t errlen)
{
    struct sim_knobs k = f->now;
    bool has_seed = false;
    uint64_t seed = 0;
    int rc = -1;

    *rate_changed = false;
    if (!json_object_is_type(doc, json_type_object)) {
        snprintf(err, errlen, "the knobs are a JSON object");
        goto out;
    }
    json_object_object_foreach(doc, key, val) {
        const struct knob *d = knob_find(key);

        if (strcmp(key, "seed") == 0) {
            if (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 0) {
                snprintf(err, errlen, "seed must be an integer from 0 to %lld",
                         (long long)INT64_MAX);
                goto out;
            }
            seed = (uint64_t)json_object_get_int64(val);
            has_seed = true;
            continue;
        }
        if (d == NULL) {
            snprintf(err, errlen, "unknown knob \"%.64s\"", key);
            goto out;
        }
        if (knob_set_json(&k, d, val, err, errlen) != 0)
            goto out;
        if (d->offset == offsetof(struct sim_knobs, rate_limit))
            *rate_changed = true;
    }
    if (sim_knobs_check(&k, err, errlen) != 0) {
        *rate_changed = false;
        goto out;
    }
    f->now = k;
    if (has_seed)
        f->seed = f->rng = seed;
    rc = 0;
out:
    return rc;
}

/* Adds key: value; false when memory ran out. */
static bool add(json_object *obj, const char *key, json_object *v)
{
    if (v == NULL || json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

char *sim_faults_json(const struct sim_faults *f, size_t *len)
{
    json_object *doc = json_object_new_object();
    struct sim_knobs k = f->now;
    char *text = NULL;
    char num[32];
    size_t i;

    if (doc == NULL)
        goto out;
    for (i = 0; i < N_KNOBS; i++) {
        const struct knob *d = &knobs[i];
        json_object *v = NULL;

        switch (d->type) {
        case KNOB_UINT:
            v = json_object_new_uint64(*uint_at(&k, d));
            break;
        case KNOB_RATE:
            /* "%.15g" prints 0.3 as 0.3, where json-c's own format would print 0.2999... */
            snprintf(num, sizeof(num), "%.15g", *rate_at(&k, d->offset));
            v = json_object_new_double_s(*rate_at(&k, d->offset), num);
            break;
        case KNOB_BOOL:
            v = json_object_new_boolean(*bool_at(&k, d));
            break;
        }
        if (!add(doc, d->name, v))
            goto out;
    }
    if (!add(doc, "seed", json_object_new_uint64(f->seed)))
        goto out;
    text = sim_json_dump(doc, len);
out:
    json_object_put(doc);
    return text;
}

const struct sim_knobs *sim_faults_knobs(const struct sim_faults *f)
{
    return &f->now;
}

void sim_faults_draw(struct sim_faults *f, bool latency_only, struct sim_draw *out)
{
    struct sim_knobs *k = &f->now;
    double u, edge = 0;
    size_t i;

    memset(out, 0, sizeof(*out));
    out->kind = SIM_FAULT_NONE;
    out->delay_ms = k->latency_ms;
    if (k->latency_jitter_ms > 0)
        out->delay_ms += next_u64(f) % (k->latency_jitter_ms + 1);
    /* One draw per call, whatever the knobs, so that a seed replays the same sequence. */
    u = next_unit(f);
    if (latency_only) {
        /* A script entry answers this call. */
    } else if (k->error_next > 0) {
        k->error_next--;
        out->kind = SIM_FAULT_ERROR;
    } else {
        for (i = 0; i < N_RATES; i++) {
            edge += rate_of(k, rate_order[i].offset);
            if (u < edge) {
                out->kind = rate_order[i].kind;
                break;
            }
        }
    }
    out->status = (unsigned)k->error_status;
    out->retry_after = k->retry_after;
    out->huge_bytes = k->huge_bytes;
    out->drip_interval_ms = k->drip_interval_ms;
}

struct sim_fault *sim_faults_make(const struct sim_draw *draw)
{
    struct sim_fault_spec spec = {.status = 200};

    switch (draw->kind) {
    case SIM_FAULT_HANG:
        spec.action = SIM_ACTION_HANG;
        break;
    case SIM_FAULT_CLOSE:
        spec.action = SIM_ACTION_CLOSE;
        break;
    case SIM_FAULT_RESET:
        spec.action = SIM_ACTION_RESET;
        break;
    case SIM_FAULT_TRUNCATE:
        spec.action = SIM_ACTION_TRUNCATE;
        break;
    case SIM_FAULT_DRIP:
        spec.action = SIM_ACTION_DRIP;
        spec.interval_ms = (unsigned long)draw->drip_interval_ms;
        break;
    case SIM_FAULT_HUGE:
        spec.action = SIM_ACTION_HUGE;
        spec.size = draw->huge_bytes;
        break;
    case SIM_FAULT_HTML:
        spec.action = SIM_ACTION_RESPOND;
        spec.status = 502;
        spec.body = HTML_PAGE;
        spec.content_type = "text/html";
        break;
    case SIM_FAULT_BAD_BODY:
        /* Labelled JSON, as a broken upstream would. */
        spec.action = SIM_ACTION_RESPOND;
        spec.body = BAD_BODY;
        break;
    case SIM_FAULT_NONE:
    case SIM_FAULT_LATENCY:
    case SIM_FAULT_ERROR:
    case SIM_FAULT_KINDS:
        return NULL; /* nothing to play: the caller answers (or not) by itself */
    }
    return sim_fault_make(&spec);
}

const char *sim_fault_kind_name(enum sim_fault_kind kind)
{
    return kind < SIM_FAULT_KINDS ? kind_names[kind] : "unknown";
}

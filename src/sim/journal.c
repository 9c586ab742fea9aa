/*
 * journal.c: the counters and the ring of recent requests behind /_sim/stats and
 * /_sim/requests.
 *
 * Both are bounded: the ring keeps SIM_JOURNAL_RING entries with at most
 * SIM_JOURNAL_BODY_MAX body bytes each, and the per-route table has SIM_JOURNAL_ROUTES_MAX
 * slots (api.c folds unknown methods and paths into a few keys, so it never fills up in
 * practice; if it does, the rest is counted under "OTHER").
 */
#include "journal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "limits.h"
#include "util.h"

#define OVERFLOW_KEY "OTHER"

struct entry {
    unsigned long long seq;
    char *method;
    char *path;
    char *query;
    char *authorization;
    char *content_type;
    char *accept;
    char *accept_encoding;
    char *user_agent;
    char *x_request_id;
    char *traceparent;
    char *tracestate;
    char *body;
    size_t body_len;
    bool body_truncated;
};

struct route_count {
    char key[SIM_ROUTE_KEY_MAX];
    unsigned long long n;
};

struct sim_journal {
    unsigned long long requests;
    unsigned long long connections;
    unsigned long long rate_limited;
    unsigned long long scripted;
    unsigned long long encoded;
    unsigned long long faults[SIM_FAULT_KINDS];
    unsigned long long seq;
    struct route_count routes[SIM_JOURNAL_ROUTES_MAX];
    size_t n_routes;
    struct entry ring[SIM_JOURNAL_RING];
    size_t head; /* the slot the next entry goes to */
    size_t len;
};

static void entry_clear(struct entry *e)
{
    free(e->method);
    free(e->path);
    free(e->query);
    free(e->authorization);
    free(e->content_type);
    free(e->accept);
    free(e->accept_encoding);
    free(e->user_agent);
    free(e->x_request_id);
    free(e->traceparent);
    free(e->tracestate);
    free(e->body);
    memset(e, 0, sizeof(*e));
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

struct sim_journal *sim_journal_new(void)
{
    return calloc(1, sizeof(struct sim_journal));
}

void sim_journal_reset(struct sim_journal *j)
{
    size_t i;

    for (i = 0; i < SIM_JOURNAL_RING; i++)
        entry_clear(&j->ring[i]);
    j->requests = j->connections = j->rate_limited = j->scripted = j->encoded = j->seq = 0;
    memset(j->faults, 0, sizeof(j->faults));
    j->n_routes = 0;
    j->head = j->len = 0;
}

void sim_journal_free(struct sim_journal *j)
{
    if (j == NULL)
        return;
    sim_journal_reset(j);
    free(j);
}

static void count_route(struct sim_journal *j, const char *key)
{
    size_t i;

    if (key == NULL)
        key = OVERFLOW_KEY;
    for (i = 0; i < j->n_routes; i++) {
        if (strcmp(j->routes[i].key, key) == 0)
            goto found;
    }
    /* Keep the last slot for the overflow key so that it can always be counted. */
    if (j->n_routes + 1 >= SIM_JOURNAL_ROUTES_MAX && strcmp(key, OVERFLOW_KEY) != 0) {
        count_route(j, OVERFLOW_KEY);
        return;
    }
    i = j->n_routes++;
    snprintf(j->routes[i].key, sizeof(j->routes[i].key), "%s", key);
    j->routes[i].n = 0;
found:
    j->routes[i].n++;
}

void sim_journal_record(struct sim_journal *j, const struct sim_journal_call *call)
{
    struct entry *e = &j->ring[j->head];
    size_t keep = call->body_len < SIM_JOURNAL_BODY_MAX ? call->body_len : SIM_JOURNAL_BODY_MAX;

    j->requests++;
    count_route(j, call->route_key);
    entry_clear(e);
    e->seq = ++j->seq;
    e->method = dup_or_null(call->method);
    e->path = dup_or_null(call->path);
    e->query = strdup(call->query != NULL ? call->query : "");
    e->authorization = dup_or_null(call->authorization);
    e->content_type = dup_or_null(call->content_type);
    e->accept = dup_or_null(call->accept);
    e->accept_encoding = dup_or_null(call->accept_encoding);
    e->user_agent = dup_or_null(call->user_agent);
    e->x_request_id = dup_or_null(call->x_request_id);
    e->traceparent = dup_or_null(call->traceparent);
    e->tracestate = dup_or_null(call->tracestate);
    e->body = malloc(keep + 1);
    if (e->body != NULL) {
        if (keep > 0)
            memcpy(e->body, call->body, keep);
        e->body[keep] = '\0';
        e->body_len = keep;
        e->body_truncated = keep < call->body_len;
    }
    j->head = (j->head + 1) % SIM_JOURNAL_RING;
    if (j->len < SIM_JOURNAL_RING)
        j->len++;
}

void sim_journal_count_connection(struct sim_journal *j)
{
    j->connections++;
}

void sim_journal_count_rate_limited(struct sim_journal *j)
{
    j->rate_limited++;
}

void sim_journal_count_encoded(struct sim_journal *j)
{
    j->encoded++;
}

void sim_journal_count_scripted(struct sim_journal *j)
{
    j->scripted++;
}

void sim_journal_count_fault(struct sim_journal *j, enum sim_fault_kind kind)
{
    if (kind > SIM_FAULT_NONE && kind < SIM_FAULT_KINDS)
        j->faults[kind]++;
}

/* Adds key: value, where a NULL string becomes JSON null; false when memory ran out. */
static bool add_str(json_object *obj, const char *key, const char *s, size_t len)
{
    json_object *v = NULL;

    if (s != NULL) {
        v = json_object_new_string_len(s, (int)len);
        if (v == NULL)
            return false;
    }
    if (json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

static bool add_cstr(json_object *obj, const char *key, const char *s)
{
    return add_str(obj, key, s, s != NULL ? strlen(s) : 0);
}

static bool add_u64(json_object *obj, const char *key, unsigned long long n)
{
    json_object *v = json_object_new_uint64(n);

    if (v == NULL || json_object_object_add(obj, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

char *sim_journal_stats_json(const struct sim_journal *j, size_t *len)
{
    json_object *doc = json_object_new_object();
    json_object *routes = json_object_new_object();
    json_object *faults = json_object_new_object();
    char *text = NULL;
    size_t i;

    if (doc == NULL || routes == NULL || faults == NULL)
        goto out;
    /* Every kind, zero included, so that a test can read any counter without a default. */
    for (i = SIM_FAULT_NONE + 1; i < SIM_FAULT_KINDS; i++) {
        if (!add_u64(faults, sim_fault_kind_name((enum sim_fault_kind)i), j->faults[i]))
            goto out;
    }
    for (i = 0; i < j->n_routes; i++) {
        if (!add_u64(routes, j->routes[i].key, j->routes[i].n))
            goto out;
    }
    if (!add_u64(doc, "requests", j->requests) || !add_u64(doc, "connections", j->connections) ||
        !add_u64(doc, "rate_limited", j->rate_limited) ||
        !add_u64(doc, "scripted", j->scripted) || !add_u64(doc, "encoded", j->encoded))
        goto out;
    if (json_object_object_add(doc, "faults", faults) != 0)
        goto out;
    faults = NULL;
    if (json_object_object_add(doc, "by_route", routes) != 0)
        goto out;
    routes = NULL;
    text = sim_json_dump(doc, len);
out:
    json_object_put(faults);
    json_object_put(routes);
    json_object_put(doc);
    return text;
}

static json_object *entry_json(const struct entry *e)
{
    json_object *o = json_object_new_object();
    json_object *t = NULL;

    if (o == NULL)
        goto fail;
    if (!add_u64(o, "seq", e->seq) || !add_cstr(o, "method", e->method) ||
        !add_cstr(o, "path", e->path) || !add_cstr(o, "query", e->query) ||
        !add_cstr(o, "authorization", e->authorization) ||
        !add_cstr(o, "content_type", e->content_type) || !add_cstr(o, "accept", e->accept) ||
        !add_cstr(o, "accept_encoding", e->accept_encoding) ||
        !add_cstr(o, "user_agent", e->user_agent) ||
        !add_cstr(o, "x_request_id", e->x_request_id) ||
        !add_cstr(o, "traceparent", e->traceparent) ||
        !add_cstr(o, "tracestate", e->tracestate) ||
        !add_str(o, "body", e->body, e->body_len))
        goto fail;
    /* Only said when it happened, so that the usual entry has exactly the documented keys. */
    if (e->body_truncated) {
        t = json_object_new_boolean(1);
        if (t == NULL || json_object_object_add(o, "body_truncated", t) != 0) {
            json_object_put(t);
            goto fail;
        }
    }
    return o;
fail:
    json_object_put(o);
    return NULL;
}

char *sim_journal_requests_json(const struct sim_journal *j, size_t *len)
{
    json_object *doc = json_object_new_object();
    json_object *list = json_object_new_array();
    char *text = NULL;
    size_t i;

    if (doc == NULL || list == NULL)
        goto out;
    for (i = 0; i < j->len; i++) {
        /* The oldest entry is at head when the ring is full, at 0 until then. */
        size_t slot = (j->head + SIM_JOURNAL_RING - j->len + i) % SIM_JOURNAL_RING;
        json_object *e = entry_json(&j->ring[slot]);

        if (e == NULL || json_object_array_add(list, e) != 0) {
            json_object_put(e);
            goto out;
        }
    }
    if (json_object_object_add(doc, "requests", list) != 0)
        goto out;
    list = NULL;
    text = sim_json_dump(doc, len);
out:
    json_object_put(list);
    json_object_put(doc);
    return text;
}

/*
 * api.c: hcgw-sim's HTTP server: intake of requests (libmicrohttpd, one thread per
 * connection), the /v1 pipeline (journal, fault script, fault knobs, key check, rate limit,
 * route, store), the /_sim control API and the access log.
 *
 * One thread per connection lets a fault sleep (latency, delay_ms, drip, hang) without holding
 * up any other connection. A single mutex guards the store, the counters and request journal,
 * the script queue, the fault knobs with their PRNG, and the rate-limit window; it is never
 * held while sleeping or sending, and every JSON text that leaves the store is serialized
 * under it.
 */
#include "api.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "faults.h"
#include "gzip.h"
#include "journal.h"
#include "nap.h"
#include "script.h"
#include "store.h"
#include "util.h"

#define JSON_TYPE "application/json"
#define HEADER_REQUEST_ID "X-Request-Id"
#define HEADER_TRACEPARENT "traceparent"
#define HEADER_TRACESTATE "tracestate"
#define BEARER "Bearer "

struct sim_api {
    struct sim_options opt;
    pthread_mutex_t lock; /* guards store, script, faults, journal and the rate window */
    struct sim_store *store;
    struct sim_script *script;
    struct sim_faults *faults;
    struct sim_journal *journal;
    struct sim_nap *nap;
    struct MHD_Daemon *daemon;
    uint16_t port;
    bool window_open;
    long long window_start_ms;
    unsigned long window_count;
    bool lock_ready;      /* lock was initialized (for a failed start) */
    /* The keys accepted now: the start key, or what POST /_sim/keys set (key rotation). */
    char keys[SIM_MAX_KEYS][SIM_KEY_MAX];
    size_t n_keys;
};

/* All state of one request, from the URI log callback to the completion callback. */
struct request {
    struct sim_api *api;
    char *raw_path;       /* as sent, before percent-decoding; NULL if it could not be kept */
    char *raw_query;      /* after '?', NULL without one */
    bool started;
    bool is_api;          /* a /v1 call: it gets an access log line */
    long long t0_ms;
    char method[SIM_METHOD_MAX];
    char *body;           /* NUL-terminated */
    size_t body_len;
    size_t body_cap;
    bool body_too_large;
    bool body_oom;
    unsigned status;      /* the status answered; 0 when the connection was closed instead */
    const char *fault;    /* the scripted action or knob fault that answered, for the log */
    bool gzip;            /* the gzip knob is on and the call accepts gzip */
};

/* An answer being built; body is heap memory, NULL meaning "out of memory". */
struct reply {
    unsigned status;
    char *body;
    size_t len;
    char allow[64];       /* the Allow header of a 405 */
    long retry_after;     /* seconds, -1 for no Retry-After */
};

/* ---------------------------------------------------------------- routes */

enum route { ROUTE_CUSTOMERS, ROUTE_SEARCH, ROUTE_CUSTOMER, ROUTE_TAGS, ROUTE_NONE };

/* Literal routes come before the {id} ones so that /customers/search is not an id. */
static const char *const route_patterns[] = {
    [ROUTE_CUSTOMERS] = "/customers",
    [ROUTE_SEARCH] = "/customers/search",
    [ROUTE_CUSTOMER] = "/customers/{id}",
    [ROUTE_TAGS] = "/customers/{id}/tags",
    [ROUTE_NONE] = "(unmatched)",
};

struct match {
    enum route route;
    const char *id; /* the {id} segment, borrowed from the URL */
    size_t id_len;
};

typedef void handler_fn(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                        const struct match *m, struct reply *r);

static handler_fn h_list, h_create, h_search, h_get, h_patch, h_put, h_delete, h_tags_add,
    h_tags_remove;

static const struct handler {
    enum route route;
    const char *method;
    handler_fn *fn;
} handlers[] = {
    {ROUTE_CUSTOMERS, "GET", h_list},   {ROUTE_CUSTOMERS, "POST", h_create},
    {ROUTE_SEARCH, "POST", h_search},   {ROUTE_CUSTOMER, "GET", h_get},
    {ROUTE_CUSTOMER, "PATCH", h_patch}, {ROUTE_CUSTOMER, "PUT", h_put},
    {ROUTE_CUSTOMER, "DELETE", h_delete}, {ROUTE_TAGS, "PUT", h_tags_add},
    {ROUTE_TAGS, "DELETE", h_tags_remove},
};
#define N_HANDLERS (sizeof(handlers) / sizeof(handlers[0]))

/* Methods get their own counter; anything else is counted as OTHER, keeping keys bounded. */
static const char *const known_methods[] = {"GET",    "POST", "PUT",    "PATCH",
                                            "DELETE", "HEAD", "OPTIONS"};

/* ---------------------------------------------------------------- errors */

enum api_err { E_UNAUTHORIZED, E_NOT_FOUND, E_NO_ROUTE, E_METHOD, E_TOO_LARGE, E_RATE,
               E_INTERNAL };

/* Every fixed error, in both of HelpCrunch's documented styles. */
static const struct api_error {
    unsigned status;
    const char *code_new;
    const char *code_old;
    const char *message;
} api_errors[] = {
    [E_UNAUTHORIZED] = {401, "unauthorized", "invalid_token", "Invalid token"},
    [E_NOT_FOUND] = {404, "not_found", "entity_not_found", "Customer not found"},
    [E_NO_ROUTE] = {404, "not_found", "entity_not_found", "Route not found"},
    [E_METHOD] = {405, "method_not_allowed", "method_not_allowed", "Method not allowed"},
    [E_TOO_LARGE] = {413, "payload_too_large", "payload_too_large",
                     "The request body is larger than 1 MiB"},
    [E_RATE] = {429, "too_many_requests", "too_many_requests",
                "You have exceeded your requests limit"},
    [E_INTERNAL] = {500, "internal_error", "internal_error", "Internal server error"},
};

static int push_error(json_object *list, const char *code, const char *message)
{
    json_object *e = json_object_new_object();
    json_object *c = json_object_new_string(code);
    json_object *m = json_object_new_string(message);
    int rc = -1;

    if (e == NULL || c == NULL || m == NULL)
        goto out;
    if (json_object_object_add(e, "code", c) != 0)
        goto out;
    c = NULL;
    if (json_object_object_add(e, "message", m) != 0)
        goto out;
    m = NULL;
    if (json_object_array_add(list, e) != 0)
        goto out;
    e = NULL;
    rc = 0;
out:
    json_object_put(m);
    json_object_put(c);
    json_object_put(e);
    return rc;
}

/* A HelpCrunch error body; the "new" style puts the generic invalid_request entry first. */
static void reply_error(struct reply *r, enum sim_error_style style, unsigned status,
                        const char *code, const char *message)
{
    json_object *doc = json_object_new_object();
    json_object *list = json_object_new_array();

    free(r->body);
    r->body = NULL;
    r->status = status;
    if (doc == NULL || list == NULL)
        goto out;
    if (style == SIM_ERRORS_NEW && push_error(list, "invalid_request", "Invalid request") != 0)
        goto out;
    if (push_error(list, code, message) != 0 || json_object_object_add(doc, "errors", list) != 0)
        goto out;
    list = NULL;
    r->body = sim_json_dump(doc, &r->len);
out:
    json_object_put(list);
    json_object_put(doc);
}

static void reply_std(struct reply *r, const struct sim_api *api, enum api_err e)
{
    const struct api_error *d = &api_errors[e];
    enum sim_error_style style = api->opt.error_style;

    reply_error(r, style, d->status, style == SIM_ERRORS_NEW ? d->code_new : d->code_old,
                d->message);
}

static void reply_invalid(struct reply *r, const struct sim_api *api, const char *code,
                          const char *message)
{
    reply_error(r, api->opt.error_style, 400, code, message);
}

/* Success body from the store, or its failure mapped to a status and an error body. */
static void reply_store(struct reply *r, const struct sim_api *api, int rc, char *out,
                        const struct sim_fail *fail, unsigned ok_status)
{
    if (rc == 0) {
        r->status = ok_status;
        r->body = out;
        r->len = strlen(out);
        return;
    }
    switch (fail->kind) {
    case SIM_FAIL_INVALID:
        reply_invalid(r, api, fail->code, fail->message);
        break;
    case SIM_FAIL_NOT_FOUND:
        reply_std(r, api, E_NOT_FOUND);
        break;
    case SIM_FAIL_INTERNAL:
        reply_std(r, api, E_INTERNAL);
        break;
    }
}

/* The control API's own plain shape: {"<key>":"<text>"}. */
static void reply_plain(struct reply *r, unsigned status, const char *key, const char *text)
{
    json_object *doc = json_object_new_object();
    json_object *v = json_object_new_string(text);

    free(r->body);
    r->body = NULL;
    r->status = status;
    if (doc != NULL && v != NULL && json_object_object_add(doc, key, v) == 0) {
        v = NULL;
        r->body = sim_json_dump(doc, &r->len);
    }
    json_object_put(v);
    json_object_put(doc);
}

static void reply_text(struct reply *r, unsigned status, const char *text)
{
    free(r->body);
    r->status = status;
    r->body = strdup(text);
    r->len = strlen(text);
}

/* ---------------------------------------------------------------- sending */

static void count_encoded(struct sim_api *api)
{
    pthread_mutex_lock(&api->lock);
    sim_journal_count_encoded(api->journal);
    pthread_mutex_unlock(&api->lock);
}

static enum MHD_Result send_reply(struct request *req, struct MHD_Connection *conn,
                                  const struct reply *r, const struct sim_fault *extra)
{
    static const char oom_body[] =
        "{\"errors\":[{\"code\":\"internal_error\",\"message\":\"Out of memory\"}]}";
    unsigned status = r->body != NULL ? r->status : 500;
    const char *body = r->body != NULL ? r->body : oom_body;
    size_t len = r->body != NULL ? r->len : sizeof(oom_body) - 1;
    /* A passthrough entry's "encoding" wins over the gzip knob. */
    enum sim_coding coding = extra != NULL && sim_fault_coding(extra) != SIM_CODING_IDENTITY
                                 ? sim_fault_coding(extra)
                             : req->gzip ? SIM_CODING_GZIP
                                         : SIM_CODING_IDENTITY;
    char *coded = NULL;
    struct MHD_Response *resp = NULL;
    enum MHD_Result ret = MHD_NO;
    char retry[32];

    if (coding != SIM_CODING_IDENTITY) {
        coded = sim_encode(coding, body, len, &len);
        if (coded == NULL)
            goto out;
        body = coded;
    }
    /* MUST_COPY: MHD copies the bytes, so the const buffer is never written through. */
    resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        goto out;
    /* A passthrough entry's own Content-Encoding (in its headers) wins. */
    if (coding != SIM_CODING_IDENTITY &&
        ((!(extra != NULL && sim_fault_has_header(extra, "Content-Encoding")) &&
          MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
                                  sim_coding_name(coding)) != MHD_YES) ||
                 MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding") !=
                     MHD_YES))
        goto out;
    /* Even the bare "Ok" of a delete says JSON: the real API is that sloppy. */
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_TYPE) != MHD_YES)
        goto out;
    if (r->allow[0] != '\0' &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->allow) != MHD_YES)
        goto out;
    if (r->retry_after >= 0) {
        snprintf(retry, sizeof(retry), "%ld", r->retry_after);
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry) != MHD_YES)
            goto out;
    }
    if (extra != NULL && sim_fault_add_headers(extra, resp) != MHD_YES)
        goto out;
    ret = MHD_queue_response(conn, status, resp);
    req->status = status;
    if (coding != SIM_CODING_IDENTITY)
        count_encoded(req->api);
out:
    if (resp != NULL)
        MHD_destroy_response(resp);
    free(coded);
    return ret;
}

/* The connection's socket, which a reset fault resets; -1 when MHD does not tell it. */
static int connection_socket(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

    return ci != NULL ? (int)ci->connect_fd : -1;
}

static enum MHD_Result send_fault(struct sim_api *api, struct request *req,
                                  struct MHD_Connection *conn, struct sim_fault *fault)
{
    struct MHD_Response *resp = sim_fault_response(fault, api->nap, connection_socket(conn));
    struct reply r = {.retry_after = -1};
    enum MHD_Result ret;

    if (resp == NULL) {
        reply_std(&r, api, E_INTERNAL);
        ret = send_reply(req, conn, &r, NULL);
        goto out;
    }
    ret = MHD_queue_response(conn, sim_fault_status(fault), resp);
    req->status = sim_fault_status(fault);
    if (sim_fault_coding(fault) != SIM_CODING_IDENTITY)
        count_encoded(api);
out:
    if (resp != NULL)
        MHD_destroy_response(resp);
    free(r.body);
    return ret;
}

/* ---------------------------------------------------------------- request state */

static struct request *request_new(struct sim_api *api, const char *uri)
{
    struct request *req = calloc(1, sizeof(*req));
    size_t path_len;

    if (req == NULL)
        goto out;
    req->api = api;
    req->t0_ms = sim_now_ms();
    if (uri == NULL)
        goto out;
    /* The raw URI is what the gateway put on the wire; tests compare it byte for byte. */
    path_len = strcspn(uri, "?");
    req->raw_path = strndup(uri, path_len < SIM_URI_MAX ? path_len : SIM_URI_MAX);
    if (uri[path_len] == '?')
        req->raw_query = strndup(uri + path_len + 1, SIM_URI_MAX);
out:
    return req;
}

static void request_free(struct request *req)
{
    if (req == NULL)
        return;
    free(req->raw_path);
    free(req->raw_query);
    free(req->body);
    free(req);
}

static void body_append(struct request *req, const char *data, size_t n)
{
    size_t cap;
    char *grown;

    if (req->body_too_large || req->body_oom)
        goto out;
    /* Past the bound the rest is read and dropped, and the call is answered 413. */
    if (n > SIM_BODY_MAX - req->body_len) {
        req->body_too_large = true;
        goto out;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        cap = req->body_cap ? req->body_cap : 1024;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        if (cap > SIM_BODY_MAX + 1)
            cap = SIM_BODY_MAX + 1;
        grown = realloc(req->body, cap);
        if (grown == NULL) {
            req->body_oom = true;
            goto out;
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
out:
    return;
}

/* ---------------------------------------------------------------- /v1 helpers */

static bool path_under(const char *url, const char *prefix)
{
    size_t n = strlen(prefix);

    return strncmp(url, prefix, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

static bool pattern_matches(const char *pattern, const char *path, struct match *m)
{
    while (*pattern != '\0') {
        size_t plen, slen;

        if (*pattern != '/' || *path != '/')
            return false;
        pattern++;
        path++;
        plen = strcspn(pattern, "/");
        slen = strcspn(path, "/");
        if (plen == 4 && strncmp(pattern, "{id}", 4) == 0) {
            if (slen == 0)
                return false;
            m->id = path;
            m->id_len = slen;
        } else if (plen != slen || strncmp(pattern, path, plen) != 0) {
            return false;
        }
        pattern += plen;
        path += slen;
    }
    return *path == '\0';
}

static void route_match(const char *path, struct match *m)
{
    size_t i;

    memset(m, 0, sizeof(*m));
    for (i = 0; i < ROUTE_NONE; i++) {
        if (pattern_matches(route_patterns[i], path, m)) {
            m->route = (enum route)i;
            return;
        }
    }
    m->route = ROUTE_NONE;
}

static const char *method_key(const char *method)
{
    size_t i;

    for (i = 0; i < sizeof(known_methods) / sizeof(known_methods[0]); i++) {
        if (strcmp(method, known_methods[i]) == 0)
            return known_methods[i];
    }
    return "OTHER";
}

/* Appends item to a comma-separated list in buf; an item that does not fit is dropped. */
static void list_append(char *buf, size_t cap, const char *item)
{
    size_t used = strlen(buf), sep = used > 0 ? 2 : 0, n = strlen(item);

    if (used + sep + n + 1 > cap)
        return;
    memcpy(buf + used, ", ", sep);
    memcpy(buf + used + sep, item, n + 1);
}

static const struct handler *handler_find(enum route route, const char *method,
                                          char *allow, size_t allow_len)
{
    const struct handler *found = NULL;
    size_t i;

    allow[0] = '\0';
    for (i = 0; i < N_HANDLERS; i++) {
        if (handlers[i].route != route)
            continue;
        if (strcmp(handlers[i].method, method) == 0)
            found = &handlers[i];
        /* The Allow list of a 405, built from the same table. */
        list_append(allow, allow_len, handlers[i].method);
    }
    return found;
}

static bool authorized(struct sim_api *api, struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    bool ok = false;
    size_t i;

    /* Exactly "Bearer <key>", as HelpCrunch asks: no other scheme, no extra characters. */
    if (h == NULL || strncmp(h, BEARER, sizeof(BEARER) - 1) != 0)
        return false;
    pthread_mutex_lock(&api->lock);
    for (i = 0; i < api->n_keys && !ok; i++)
        ok = strcmp(h + sizeof(BEARER) - 1, api->keys[i]) == 0;
    pthread_mutex_unlock(&api->lock);
    return ok;
}

/* A fixed one-minute window, started by the first call after the previous one ran out. */
static bool rate_limited(struct sim_api *api, long *retry_after)
{
    long long now = sim_now_ms();
    const struct sim_knobs *k;
    bool hit = false;

    pthread_mutex_lock(&api->lock);
    /* The limit is a knob: POST /_sim/faults may change it between two calls. */
    k = sim_faults_knobs(api->faults);
    if (k->rate_limit == 0)
        goto out;
    if (!api->window_open || now - api->window_start_ms >= SIM_RATE_WINDOW_MS) {
        api->window_open = true;
        api->window_start_ms = now;
        api->window_count = 0;
    }
    if (api->window_count < k->rate_limit) {
        api->window_count++;
    } else {
        hit = true;
        sim_journal_count_rate_limited(api->journal);
        if (k->retry_after) {
            long long left = api->window_start_ms + SIM_RATE_WINDOW_MS - now;

            *retry_after = (long)((left + 999) / 1000);
            if (*retry_after < 1)
                *retry_after = 1;
        }
    }
out:
    pthread_mutex_unlock(&api->lock);
    return hit;
}

/* {id} must be digits; a number nobody can have (too long) is simply not found. */
static int parse_id(const struct sim_api *api, const struct match *m, long long *id,
                    struct reply *r)
{
    char buf[24];
    size_t i;

    for (i = 0; i < m->id_len; i++) {
        if (!isdigit((unsigned char)m->id[i])) {
            reply_invalid(r, api, "customer", "This value should be of type numeric.");
            return -1;
        }
    }
    *id = -1;
    if (m->id_len < sizeof(buf)) {
        memcpy(buf, m->id, m->id_len);
        buf[m->id_len] = '\0';
        if (sim_parse_ll(buf, id) != 0)
            *id = -1;
    }
    return 0;
}

/* The body as a JSON object, or NULL with a 400 in r. */
static json_object *body_object(const struct sim_api *api, const struct request *req,
                                struct reply *r)
{
    json_object *doc = NULL;

    if (sim_json_parse(req->body != NULL ? req->body : "", req->body_len, &doc) != 0) {
        reply_invalid(r, api, "invalid_json", "The request body is not valid JSON.");
        goto out;
    }
    if (!json_object_is_type(doc, json_type_object)) {
        reply_invalid(r, api, "invalid_json", "The request body should be a JSON object.");
        json_object_put(doc);
        doc = NULL;
    }
out:
    return doc;
}

/* ---------------------------------------------------------------- /v1 handlers */

static void h_list(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                   const struct match *m, struct reply *r)
{
    const char *offset = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset");
    const char *limit = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
    const char *sort = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "sort");
    const char *order = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "order");
    struct sim_fail fail;
    char *out = NULL;
    int rc;

    (void)req;
    (void)m;
    pthread_mutex_lock(&api->lock);
    rc = sim_store_list(api->store, offset, limit, sort, order, &out, &fail);
    pthread_mutex_unlock(&api->lock);
    reply_store(r, api, rc, out, &fail, 200);
}

static void h_search(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                     const struct match *m, struct reply *r)
{
    json_object *body = body_object(api, req, r);
    struct sim_fail fail;
    char *out = NULL;
    int rc;

    (void)conn;
    (void)m;
    if (body == NULL)
        goto out;
    pthread_mutex_lock(&api->lock);
    rc = sim_store_search(api->store, body, &out, &fail);
    pthread_mutex_unlock(&api->lock);
    reply_store(r, api, rc, out, &fail, 200);
out:
    json_object_put(body);
}

static void h_create(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                     const struct match *m, struct reply *r)
{
    json_object *body = body_object(api, req, r);
    struct sim_fail fail;
    char *out = NULL;
    int rc;

    (void)conn;
    (void)m;
    if (body == NULL)
        goto out;
    pthread_mutex_lock(&api->lock);
    rc = sim_store_create(api->store, body, time(NULL), &out, &fail);
    pthread_mutex_unlock(&api->lock);
    reply_store(r, api, rc, out, &fail, 201);
out:
    json_object_put(body);
}

static void h_get(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                  const struct match *m, struct reply *r)
{
    struct sim_fail fail;
    char *out = NULL;
    long long id;
    int rc;

    (void)req;
    (void)conn;
    if (parse_id(api, m, &id, r) != 0)
        return;
    pthread_mutex_lock(&api->lock);
    rc = sim_store_get(api->store, id, &out, &fail);
    pthread_mutex_unlock(&api->lock);
    reply_store(r, api, rc, out, &fail, 200);
}

static void update(struct sim_api *api, struct request *req, const struct match *m,
                   struct reply *r, bool replace)
{
    json_object *body = NULL;
    struct sim_fail fail;
    char *out = NULL;
    long long id;
    int rc;

    if (parse_id(api, m, &id, r) != 0)
        goto out;
    body = body_object(api, req, r);
    if (body == NULL)
        goto out;
    pthread_mutex_lock(&api->lock);
    rc = sim_store_update(api->store, id, body, replace, &out, &fail);
    pthread_mutex_unlock(&api->lock);
    reply_store(r, api, rc, out, &fail, 200);
out:
    json_object_put(body);
}

static void h_patch(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                    const struct match *m, struct reply *r)
{
    (void)conn;
    update(api, req, m, r, false);
}

static void h_put(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                  const struct match *m, struct reply *r)
{
    (void)conn;
    update(api, req, m, r, true);
}

static void h_delete(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                     const struct match *m, struct reply *r)
{
    struct sim_fail fail;
    long long id;
    int rc;

    (void)req;
    (void)conn;
    if (parse_id(api, m, &id, r) != 0)
        return;
    pthread_mutex_lock(&api->lock);
    rc = sim_store_delete(api->store, id, &fail);
    pthread_mutex_unlock(&api->lock);
    if (rc == 0)
        reply_text(r, 200, "Ok"); /* not JSON: HelpCrunch answers a delete with a bare Ok */
    else
        reply_store(r, api, rc, NULL, &fail, 200);
}

static void tags(struct sim_api *api, struct request *req, const struct match *m,
                 struct reply *r, bool add)
{
    json_object *body = NULL;
    struct sim_fail fail;
    char *out = NULL;
    long long id;
    int rc;

    if (parse_id(api, m, &id, r) != 0)
        goto out;
    body = body_object(api, req, r);
    if (body == NULL)
        goto out;
    pthread_mutex_lock(&api->lock);
    rc = sim_store_tags(api->store, id, body, add, &out, &fail);
    pthread_mutex_unlock(&api->lock);
    reply_store(r, api, rc, out, &fail, 200);
out:
    json_object_put(body);
}

static void h_tags_add(struct sim_api *api, struct request *req, struct MHD_Connection *conn,
                       const struct match *m, struct reply *r)
{
    (void)conn;
    tags(api, req, m, r, true);
}

static void h_tags_remove(struct sim_api *api, struct request *req,
                          struct MHD_Connection *conn, const struct match *m, struct reply *r)
{
    (void)conn;
    tags(api, req, m, r, false);
}

/* ---------------------------------------------------------------- /v1 pipeline */

/* The HelpCrunch-shaped error of an error_status knob fault; other statuses get a generic one. */
static const struct {
    unsigned status;
    const char *code;
    const char *message;
} knob_errors[] = {
    {429, "too_many_requests", "You have exceeded your requests limit"},
    {500, "internal_error", "Internal server error"},
    {502, "bad_gateway", "Bad gateway"},
    {503, "service_unavailable", "Service temporarily unavailable"},
    {504, "gateway_timeout", "Gateway timeout"},
};

static enum MHD_Result send_knob_error(struct sim_api *api, struct request *req,
                                       struct MHD_Connection *conn, const struct sim_draw *draw)
{
    struct reply r = {.retry_after = -1};
    const char *code = "simulated_error", *message = "Simulated error";
    enum MHD_Result ret;
    size_t i;

    for (i = 0; i < sizeof(knob_errors) / sizeof(knob_errors[0]); i++) {
        if (knob_errors[i].status == draw->status) {
            code = knob_errors[i].code;
            message = knob_errors[i].message;
        }
    }
    reply_error(&r, api->opt.error_style, draw->status, code, message);
    if (draw->status == 429 && draw->retry_after)
        r.retry_after = SIM_ERROR_RETRY_AFTER_S;
    ret = send_reply(req, conn, &r, NULL);
    free(r.body);
    return ret;
}

static enum MHD_Result send_internal(struct sim_api *api, struct request *req,
                                     struct MHD_Connection *conn)
{
    struct reply r = {.retry_after = -1};
    enum MHD_Result ret;

    reply_std(&r, api, E_INTERNAL);
    ret = send_reply(req, conn, &r, NULL);
    free(r.body);
    return ret;
}

/* Steps 2 to 4 of a /v1 call: key, rate limit, then the operation itself. */
static enum MHD_Result serve_real(struct sim_api *api, struct request *req,
                                  struct MHD_Connection *conn, const struct match *m,
                                  const struct sim_fault *extra)
{
    struct reply r = {.retry_after = -1};
    const struct handler *h = handler_find(m->route, req->method, r.allow, sizeof(r.allow));
    enum MHD_Result ret;

    if (req->body_oom) {
        reply_std(&r, api, E_INTERNAL);
    } else if (req->body_too_large) {
        reply_std(&r, api, E_TOO_LARGE);
    } else if (!authorized(api, conn)) {
        reply_std(&r, api, E_UNAUTHORIZED);
    } else if (rate_limited(api, &r.retry_after)) {
        reply_std(&r, api, E_RATE);
    } else if (m->route == ROUTE_NONE) {
        reply_std(&r, api, E_NO_ROUTE);
    } else if (h == NULL) {
        reply_std(&r, api, E_METHOD);
    } else {
        h->fn(api, req, conn, m, &r);
    }
    if (r.status != 405)
        r.allow[0] = '\0';
    ret = send_reply(req, conn, &r, extra);
    free(r.body);
    return ret;
}

static enum MHD_Result serve_api(struct sim_api *api, struct request *req,
                                 struct MHD_Connection *conn, const char *url)
{
    struct sim_journal_call call;
    struct sim_fault *fault = NULL;
    struct sim_draw draw;
    struct match m;
    char key[SIM_ROUTE_KEY_MAX];
    enum MHD_Result ret = MHD_NO;

    req->is_api = true;
    route_match(url + strlen("/v1"), &m);
    snprintf(key, sizeof(key), "%s %s", method_key(req->method), route_patterns[m.route]);
    memset(&call, 0, sizeof(call));
    call.route_key = key;
    call.method = req->method;
    call.path = req->raw_path != NULL ? req->raw_path : url;
    call.query = req->raw_query;
    call.authorization =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    call.content_type =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    call.accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    call.accept_encoding =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    call.user_agent =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_USER_AGENT);
    call.x_request_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, HEADER_REQUEST_ID);
    call.traceparent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, HEADER_TRACEPARENT);
    call.tracestate = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, HEADER_TRACESTATE);
    call.body = req->body;
    call.body_len = req->body_len;

    /* Step 1: count and record, take a scripted fault if one is queued, and draw the latency
     * and (when no script entry answers) the knob fault of this call. */
    pthread_mutex_lock(&api->lock);
    sim_journal_record(api->journal, &call);
    fault = sim_script_pop(api->script);
    if (fault != NULL)
        sim_journal_count_scripted(api->journal);
    sim_faults_draw(api->faults, fault != NULL, &draw);
    req->gzip = sim_faults_knobs(api->faults)->gzip && sim_gzip_accepted(call.accept_encoding);
    if (draw.delay_ms > 0)
        sim_journal_count_fault(api->journal, SIM_FAULT_LATENCY);
    sim_journal_count_fault(api->journal, draw.kind);
    pthread_mutex_unlock(&api->lock);

    /* Sleeps return false when the sim shuts down; the connection is then just closed. */
    if (draw.delay_ms > 0 && !sim_nap_sleep(api->nap, (unsigned long)draw.delay_ms))
        goto out;
    if (draw.kind == SIM_FAULT_ERROR) {
        req->fault = sim_fault_kind_name(draw.kind);
        ret = send_knob_error(api, req, conn, &draw);
        goto out;
    }
    if (draw.kind != SIM_FAULT_NONE) {
        req->fault = sim_fault_kind_name(draw.kind);
        fault = sim_faults_make(&draw);
        if (fault == NULL) {
            ret = send_internal(api, req, conn);
            goto out;
        }
    } else if (fault != NULL) {
        req->fault = sim_fault_action_name(fault);
        if (sim_fault_delay_ms(fault) > 0 && !sim_nap_sleep(api->nap, sim_fault_delay_ms(fault)))
            goto out;
    }
    if (fault != NULL) {
        switch (sim_fault_action(fault)) {
        case SIM_ACTION_CLOSE:
            goto out; /* MHD_NO: MHD drops the connection without an answer */
        case SIM_ACTION_HANG:
            /* No answer until the sim stops; then the connection is just closed. */
            sim_nap_until_stop(api->nap);
            goto out;
        case SIM_ACTION_PASSTHROUGH:
            break;
        case SIM_ACTION_RESPOND:
        case SIM_ACTION_RESET:
        case SIM_ACTION_TRUNCATE:
        case SIM_ACTION_HUGE:
        case SIM_ACTION_DRIP:
            ret = send_fault(api, req, conn, fault);
            goto out;
        }
    }
    ret = serve_real(api, req, conn, &m, fault);
out:
    sim_fault_release(fault);
    return ret;
}

/* ---------------------------------------------------------------- /_sim control API */

typedef void control_fn(struct sim_api *api, struct request *req, struct reply *r);

static void c_stats(struct sim_api *api, struct request *req, struct reply *r)
{
    (void)req;
    pthread_mutex_lock(&api->lock);
    r->body = sim_journal_stats_json(api->journal, &r->len);
    pthread_mutex_unlock(&api->lock);
    r->status = 200;
}

static void c_requests(struct sim_api *api, struct request *req, struct reply *r)
{
    (void)req;
    pthread_mutex_lock(&api->lock);
    r->body = sim_journal_requests_json(api->journal, &r->len);
    pthread_mutex_unlock(&api->lock);
    r->status = 200;
}

static void c_reset(struct sim_api *api, struct request *req, struct reply *r)
{
    int rc;

    (void)req;
    pthread_mutex_lock(&api->lock);
    sim_journal_reset(api->journal);
    sim_script_clear(api->script);
    sim_faults_reset(api->faults);
    explicit_bzero(api->keys, sizeof(api->keys));
    memcpy(api->keys[0], api->opt.key, sizeof(api->keys[0]));
    api->n_keys = 1;
    rc = sim_store_reset(api->store, api->opt.seed);
    api->window_open = false;
    pthread_mutex_unlock(&api->lock);
    if (rc == 0)
        reply_text(r, 200, "{\"ok\":true}");
    else
        reply_plain(r, 500, "error", "out of memory while seeding");
}

static void reply_queued(struct reply *r, size_t n)
{
    char text[48];

    snprintf(text, sizeof(text), "{\"queued\":%zu}", n);
    reply_text(r, 200, text);
}

static void c_script_push(struct sim_api *api, struct request *req, struct reply *r)
{
    json_object *doc = NULL;
    char err[256];
    long n;

    if (req->body_too_large || req->body_oom) {
        reply_plain(r, 413, "error", "the body is larger than 1 MiB");
        goto out;
    }
    if (sim_json_parse(req->body != NULL ? req->body : "", req->body_len, &doc) != 0) {
        reply_plain(r, 400, "error", "the body is not valid JSON");
        goto out;
    }
    if (!json_object_is_type(doc, json_type_object) && !json_object_is_type(doc, json_type_array)) {
        reply_plain(r, 400, "error", "a script is an entry object or an array of entries");
        goto out;
    }
    pthread_mutex_lock(&api->lock);
    n = sim_script_push(api->script, doc, err, sizeof(err));
    pthread_mutex_unlock(&api->lock);
    if (n < 0)
        reply_plain(r, 400, "error", err);
    else
        reply_queued(r, (size_t)n);
out:
    json_object_put(doc);
}

static void c_script_clear(struct sim_api *api, struct request *req, struct reply *r)
{
    (void)req;
    pthread_mutex_lock(&api->lock);
    sim_script_clear(api->script);
    pthread_mutex_unlock(&api->lock);
    reply_queued(r, 0);
}

/* The knobs as they are now, under the lock. */
static void reply_knobs(struct sim_api *api, struct reply *r)
{
    free(r->body);
    pthread_mutex_lock(&api->lock);
    r->body = sim_faults_json(api->faults, &r->len);
    pthread_mutex_unlock(&api->lock);
    r->status = 200;
}

/*
 * POST /_sim/keys {"keys":["a","b"]}: the keys HelpCrunch accepts from now on, so that a test
 * can issue a new key beside the old one, rotate hcgw, then revoke the old key.
 */
static void c_keys_set(struct sim_api *api, struct request *req, struct reply *r)
{
    json_object *doc = NULL;
    json_object *arr = NULL;
    char keys[SIM_MAX_KEYS][SIM_KEY_MAX];
    size_t n, i;

    if (req->body_too_large || req->body_oom ||
        sim_json_parse(req->body != NULL ? req->body : "", req->body_len, &doc) != 0 ||
        !json_object_is_type(doc, json_type_object) ||
        !json_object_object_get_ex(doc, "keys", &arr) ||
        !json_object_is_type(arr, json_type_array)) {
        reply_plain(r, 400, "error", "expected {\"keys\":[\"key\",...]}");
        goto out;
    }
    n = json_object_array_length(arr);
    if (n < 1 || n > SIM_MAX_KEYS) {
        reply_plain(r, 400, "error", "between 1 and SIM_MAX_KEYS keys");
        goto out;
    }
    for (i = 0; i < n; i++) {
        json_object *k = json_object_array_get_idx(arr, i);
        size_t len;
        if (!json_object_is_type(k, json_type_string) ||
            (len = (size_t)json_object_get_string_len(k)) == 0 || len >= SIM_KEY_MAX) {
            reply_plain(r, 400, "error", "each key is a non-empty string");
            goto out;
        }
        memcpy(keys[i], json_object_get_string(k), len + 1);
    }
    pthread_mutex_lock(&api->lock);
    for (i = 0; i < api->n_keys; i++)
        explicit_bzero(api->keys[i], sizeof(api->keys[i]));
    memcpy(api->keys, keys, n * sizeof(keys[0]));
    api->n_keys = n;
    pthread_mutex_unlock(&api->lock);
    reply_text(r, 200, "{\"ok\":true}");
out:
    explicit_bzero(keys, sizeof(keys));
    json_object_put(doc);
}

static void c_faults_get(struct sim_api *api, struct request *req, struct reply *r)
{
    (void)req;
    reply_knobs(api, r);
}

static void c_faults_set(struct sim_api *api, struct request *req, struct reply *r)
{
    json_object *doc = NULL;
    bool rate_changed = false;
    char err[256];
    int rc;

    if (req->body_too_large || req->body_oom) {
        reply_plain(r, 413, "error", "the body is larger than 1 MiB");
        goto out;
    }
    if (sim_json_parse(req->body != NULL ? req->body : "", req->body_len, &doc) != 0) {
        reply_plain(r, 400, "error", "the body is not valid JSON");
        goto out;
    }
    pthread_mutex_lock(&api->lock);
    rc = sim_faults_update(api->faults, doc, &rate_changed, err, sizeof(err));
    /* A new limit starts a new window, so that it applies from the next call on. */
    if (rate_changed)
        api->window_open = false;
    pthread_mutex_unlock(&api->lock);
    if (rc != 0)
        reply_plain(r, 400, "error", err);
    else
        reply_knobs(api, r);
out:
    json_object_put(doc);
}

static void c_faults_clear(struct sim_api *api, struct request *req, struct reply *r)
{
    (void)req;
    pthread_mutex_lock(&api->lock);
    sim_faults_reset(api->faults);
    api->window_open = false;
    pthread_mutex_unlock(&api->lock);
    reply_knobs(api, r);
}

static const struct control {
    const char *path;
    const char *method;
    control_fn *fn;
} controls[] = {
    {"/_sim/stats", "GET", c_stats},         {"/_sim/requests", "GET", c_requests},
    {"/_sim/reset", "POST", c_reset},        {"/_sim/script", "POST", c_script_push},
    {"/_sim/script", "DELETE", c_script_clear}, {"/_sim/faults", "GET", c_faults_get},
    {"/_sim/faults", "POST", c_faults_set},  {"/_sim/faults", "DELETE", c_faults_clear},
    {"/_sim/keys", "POST", c_keys_set},
};
#define N_CONTROLS (sizeof(controls) / sizeof(controls[0]))

static enum MHD_Result serve_control(struct sim_api *api, struct request *req,
                                     struct MHD_Connection *conn, const char *url)
{
    struct reply r = {.retry_after = -1};
    const struct control *found = NULL;
    bool path_known = false;
    size_t i;
    enum MHD_Result ret;

    for (i = 0; i < N_CONTROLS; i++) {
        if (strcmp(controls[i].path, url) != 0)
            continue;
        path_known = true;
        if (strcmp(controls[i].method, req->method) == 0)
            found = &controls[i];
        list_append(r.allow, sizeof(r.allow), controls[i].method);
    }
    if (found != NULL)
        found->fn(api, req, &r);
    else if (path_known)
        reply_plain(&r, 405, "error", "method not allowed");
    else
        reply_plain(&r, 404, "error", "not found");
    if (r.status != 405)
        r.allow[0] = '\0';
    ret = send_reply(req, conn, &r, NULL);
    free(r.body);
    return ret;
}

/* ---------------------------------------------------------------- MHD callbacks */

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    struct sim_api *api = cls;
    struct request *req = *con_cls;
    struct reply r = {.retry_after = -1};
    enum MHD_Result ret = MHD_YES;

    (void)version;
    /* The URI log callback normally made req; it is NULL only if that allocation failed. */
    if (req == NULL) {
        req = request_new(api, NULL);
        if (req == NULL) {
            ret = MHD_NO;
            goto out;
        }
        *con_cls = req;
    }
    /* First call: headers only. Answering nothing yet lets MHD send 100 Continue. */
    if (!req->started) {
        req->started = true;
        snprintf(req->method, sizeof(req->method), "%s", method);
        goto out;
    }
    /* Middle calls: body bytes. */
    if (*upload_data_size != 0) {
        body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        goto out;
    }
    /* Last call: the whole request is here. */
    if (path_under(url, "/v1")) {
        ret = serve_api(api, req, conn, url);
    } else if (path_under(url, "/_sim")) {
        ret = serve_control(api, req, conn, url);
    } else {
        reply_std(&r, api, E_NO_ROUTE);
        ret = send_reply(req, conn, &r, NULL);
        free(r.body);
    }
out:
    return ret;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)conn;
    return request_new(cls, uri);
}

static void access_log(const struct request *req)
{
    json_object *line = json_object_new_object();
    char *text = NULL;

    if (line == NULL)
        goto out;
    /* The query is left out on purpose: only the path, never a header (the key). */
    json_object_object_add(line, "msg", json_object_new_string("request"));
    json_object_object_add(line, "method", json_object_new_string(req->method));
    json_object_object_add(line, "path",
                           json_object_new_string(req->raw_path ? req->raw_path : ""));
    json_object_object_add(line, "status", json_object_new_int((int)req->status));
    json_object_object_add(line, "duration_ms",
                           json_object_new_int64(sim_now_ms() - req->t0_ms));
    if (req->fault != NULL)
        json_object_object_add(line, "fault", json_object_new_string(req->fault));
    text = sim_json_dump(line, NULL);
    if (text != NULL)
        fprintf(stderr, "%s\n", text);
out:
    free(text);
    json_object_put(line);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct sim_api *api = cls;
    struct request *req = *con_cls;

    (void)conn;
    (void)toe;
    if (req == NULL)
        return;
    if (req->is_api && !api->opt.quiet)
        access_log(req);
    request_free(req);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct sim_api *api = cls;

    (void)conn;
    (void)socket_context;
    /* Tests prove connection reuse by the gateway with this count. */
    if (toe != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    pthread_mutex_lock(&api->lock);
    sim_journal_count_connection(api->journal);
    pthread_mutex_unlock(&api->lock);
}

/* MHD's own complaints, as JSON lines like the rest of stderr. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt,
                                                             va_list ap)
{
    json_object *line = json_object_new_object();
    char msg[512];
    size_t n;
    char *text = NULL;

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (line == NULL)
        goto out;
    json_object_object_add(line, "msg", json_object_new_string("mhd"));
    json_object_object_add(line, "error", json_object_new_string(msg));
    text = sim_json_dump(line, NULL);
    if (text != NULL)
        fprintf(stderr, "%s\n", text);
out:
    free(text);
    json_object_put(line);
}

/* ---------------------------------------------------------------- start and stop */

struct sim_api *sim_api_start(const struct sim_options *opt, char *err, size_t errlen)
{
    struct sim_api *api = calloc(1, sizeof(*api));
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sockaddr *sa = (struct sockaddr *)&sin;
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_ERROR_LOG | MHD_USE_POLL;
    const union MHD_DaemonInfo *info;

    /* poll() rather than select(): with 4096 connections, descriptors pass FD_SETSIZE. */
    if (api == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    api->opt = *opt;
    memcpy(api->keys[0], opt->key, sizeof(api->keys[0]));
    api->n_keys = 1;
    if (pthread_mutex_init(&api->lock, NULL) != 0) {
        snprintf(err, errlen, "cannot create a mutex");
        goto fail;
    }
    api->lock_ready = true;
    api->store = sim_store_new();
    api->script = sim_script_new();
    api->journal = sim_journal_new();
    api->nap = sim_nap_new();
    api->faults = sim_faults_new(&opt->knobs, opt->rng_seed);
    if (api->store == NULL || api->script == NULL || api->journal == NULL || api->nap == NULL ||
        api->faults == NULL ||
        sim_store_reset(api->store, opt->seed) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET, opt->address, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons(opt->port);
    } else if (inet_pton(AF_INET6, opt->address, &sin6.sin6_addr) == 1) {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(opt->port);
        sa = (struct sockaddr *)&sin6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, errlen, "not a numeric IPv4 or IPv6 address: %s", opt->address);
        goto fail;
    }
    api->daemon = MHD_start_daemon(
        flags, opt->port, NULL, NULL, on_access, api,
        /* First, or MHD prints its complaints about later options with its own logger. */
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api,
        MHD_OPTION_SOCK_ADDR, sa,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)SIM_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)SIM_CONNECTION_TIMEOUT_S,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)SIM_LISTEN_BACKLOG,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)SIM_THREAD_STACK,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, api,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, api,
        MHD_OPTION_END);
    if (api->daemon == NULL) {
        snprintf(err, errlen, "cannot listen on %s port %u", opt->address, (unsigned)opt->port);
        goto fail;
    }
    info = MHD_get_daemon_info(api->daemon, MHD_DAEMON_INFO_BIND_PORT);
    api->port = info != NULL ? info->port : opt->port;
    return api;
fail:
    sim_api_stop(api);
    return NULL;
}

uint16_t sim_api_port(const struct sim_api *api)
{
    return api->port;
}

void sim_api_stop(struct sim_api *api)
{
    if (api == NULL)
        return;
    /* Wake sleeping faults first: MHD_stop_daemon joins every connection thread. */
    if (api->nap != NULL)
        sim_nap_stop(api->nap);
    if (api->daemon != NULL)
        MHD_stop_daemon(api->daemon);
    sim_store_free(api->store);
    sim_script_free(api->script);
    sim_faults_free(api->faults);
    sim_journal_free(api->journal);
    sim_nap_free(api->nap);
    if (api->lock_ready)
        pthread_mutex_destroy(&api->lock);
    explicit_bzero(api->opt.key, sizeof(api->opt.key));
    explicit_bzero(api->keys, sizeof(api->keys));
    free(api);
}

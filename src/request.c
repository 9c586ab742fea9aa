/*
 * The life of one request, on its worker's thread:
 *   URI-log callback → request created, raw URI kept (the router decodes it, not MHD)
 *   first access call → request id, route match, local answers, early 4xx checks
 *   body calls       → bounded accumulation
 *   last access call → body validated, upstream call built, connection suspended, call submitted
 *   caller hangs up  → (while suspended) the call is cancelled, and the request logged as 499
 *   call done        → answer built (pass-through, reshaped or the envelope), queued, resumed
 *   completion       → one access log line, counters, free.
 * Every failure on the way is a value of enum gw_err rendered by envelope.c.
 */
#include "hcgw/request.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "hcgw/auth.h"
#include "hcgw/body.h"
#include "hcgw/buf.h"
#include "hcgw/config.h"
#include "hcgw/envelope.h"
#include "hcgw/framing.h"
#include "hcgw/governor.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/metrics.h"
#include "hcgw/openapi.h"
#include "hcgw/query.h"
#include "hcgw/reply.h"
#include "hcgw/router.h"
#include "hcgw/secret.h"
#include "hcgw/text.h"
#include "hcgw/upstream.h"

/** First allocation for a request body; it doubles up to limits.max_body_bytes. */
#define REQ_INITIAL_BODY 1024

enum req_state {
    REQ_NEW,         /* headers arrived, nothing decided */
    REQ_BODY,        /* reading the body */
    REQ_UPSTREAM,    /* suspended, waiting on HelpCrunch */
    REQ_ANSWERED     /* a response is queued */
};

struct conn;

struct gw_request {
    struct gw_worker *w;
    struct MHD_Connection *conn;
    enum req_state state;
    struct timespec start;
    const char *query;                /* into uri, NULL when none */
    bool uri_too_long;
    char method[16];
    char request_id[GW_MAX_REQUEST_ID + 1];
    struct gw_match match;
    const struct gw_route *route;     /* NULL when unmatched */
    struct gw_buf body;               /* bounded by limits.max_body_bytes */
    size_t body_seen;                 /* bytes received, kept or not */
    char *up_body;
    size_t up_body_len;
    bool call_live;                   /* submitted, done not yet run */
    bool client_gone;                 /* the caller hung up before it had an answer */
    enum gw_err pending;              /* decided at the headers, answered after the body */
    struct conn *cx;                  /* its connection's bookkeeping; NULL when there is none */
    bool header_timeout;              /* its connection was cut at the header deadline */
    char client[GW_MAX_CLIENT_NAME + 1]; /* the client its credential named; "" when none */
    const char *auth_refusal;         /* why it was refused 401/403 (static text), or NULL */
    /* For the access line. */
    int status;
    enum gw_err err;
    long upstream_status;
    struct gw_call call;
    char *url;                        /* the call's upstream URL (malloc'd, its own length) */
    /* Sized to the URI at hand (at most GW_MAX_URL_BYTES): a request in flight holds a few
     * hundred bytes of its own, not two 2 KiB buffers (bench/README.md, memory). */
    char uri[];                       /* path, NUL, query */
};

/* The connections section at the end of this file keeps each connection's header deadline. */
static struct conn *conn_of(struct MHD_Connection *mhd);
static void conn_request_begun(struct conn *c, struct gw_request *req);
static void conn_headers_done(struct conn *c);
static void conn_request_done(struct conn *c, bool keep_alive);
static void conn_watch_hangup(struct conn *c);

static uint64_t rng_next(uint64_t s[2])
{
    /* xorshift128+: request ids must be unique, not secret. */
    uint64_t a = s[0];
    const uint64_t b = s[1];

    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

static void new_request_id(struct gw_worker *w, char out[GW_MAX_REQUEST_ID + 1])
{
    uint64_t v[2] = {rng_next(w->rng), rng_next(w->rng)};

    gw_text_hex_encode(v, sizeof(v), out);
}

static bool valid_request_id(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= GW_MAX_REQUEST_ID)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return n > 0;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

size_t gw_request_unescape(void *cls, struct MHD_Connection *conn, char *uri)
{
    (void)cls;
    (void)conn;
    return strlen(uri);
}

void *gw_request_begin(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct gw_worker *w = cls;
    struct gw_request *req;
    size_t n = strlen(uri);
    bool too_long = n > GW_MAX_URL_BYTES;
    char *q;

    if (too_long)
        n = 0;
    req = calloc(1, sizeof(*req) + n + 1);
    if (req == NULL)
        return NULL;
    req->uri_too_long = too_long;
    req->w = w;
    req->conn = conn;
    gw_buf_init(&req->body, (size_t)w->cfg->limits.max_body_bytes, REQ_INITIAL_BODY, 0);
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    memcpy(req->uri, uri, n);
    req->uri[n] = '\0';
    q = strchr(req->uri, '?');
    if (q != NULL) {
        *q = '\0';
        req->query = q + 1;
    }
    w->active++;
    conn_request_begun(conn_of(conn), req);
    return req;
}

/* ---- answers ---- */

static void add_common_headers(struct gw_request *req, struct MHD_Response *resp,
                               const char *content_type)
{
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    if (content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (req->w->draining)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* Queue @p resp (and drop our reference). On a suspended connection, also resume it. */
static enum MHD_Result queue(struct gw_request *req, int status, struct MHD_Response *resp)
{
    enum MHD_Result r;

    if (resp == NULL)
        return MHD_NO;
    req->status = status;
    r = MHD_queue_response(req->conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    if (req->state == REQ_UPSTREAM) {
        MHD_resume_connection(req->conn);
        req->w->mhd_needs_run = true;
    }
    req->state = REQ_ANSWERED;
    return r;
}

/* Answer with @p body, which we own and MHD frees (NULL/0: no body). */
static enum MHD_Result answer(struct gw_request *req, int status, char *body, size_t len,
                              const char *content_type)
{
    struct MHD_Response *resp;

    if (body != NULL)
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    else
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    add_common_headers(req, resp, content_type);
    return queue(req, status, resp);
}

static enum MHD_Result answer_envelope(struct gw_request *req, struct gw_envelope *env)
{
    struct MHD_Response *resp;
    char num[24];
    size_t len = 0;
    char *text = gw_envelope_render(env, req->request_id, &len);

    req->err = env->err;
    if (text == NULL) {
        gw_envelope_clear(env);
        return MHD_NO;
    }
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        gw_envelope_clear(env);
        return MHD_NO;
    }
    add_common_headers(req, resp, "application/json");
    if (env->err == GW_ERR_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, req->match.allow);
    if (env->err == GW_ERR_UNAUTHENTICATED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"hcgw\"");
    if (env->retry_after_s > 0) {
        snprintf(num, sizeof(num), "%ld", env->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, num);
    }
    /* After a malformed request no byte on the connection can be trusted to start the next. */
    if (env->err == GW_ERR_BODY_TOO_LARGE || env->err == GW_ERR_SHUTTING_DOWN ||
        env->err == GW_ERR_MALFORMED_REQUEST)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    int status = env->status;
    gw_envelope_clear(env);
    return queue(req, status, resp);
}

static enum MHD_Result answer_error(struct gw_request *req, enum gw_err err)
{
    struct gw_envelope env;

    gw_envelope_local(&env, err);
    return answer_envelope(req, &env);
}

static enum MHD_Result answer_json_text(struct gw_request *req, int status, const char *text)
{
    size_t n = strlen(text);
    char *copy = malloc(n + 1);

    if (copy == NULL)
        return MHD_NO;
    memcpy(copy, text, n + 1);
    return answer(req, status, copy, n, "application/json");
}

static bool key_recently_refused(struct gw_worker *w)
{
    uint64_t at = __atomic_load_n(&w->shared->auth_failed_ms, __ATOMIC_RELAXED);
    uint64_t now = gw_loop_now(w->loop);

    return at != 0 && now - at < (uint64_t)w->cfg->upstream.auth_failure_unready_ms;
}

static enum MHD_Result answer_local(struct gw_request *req)
{
    size_t len = 0;
    char *text;

    switch (req->route->id) {
    case GW_ROUTE_HEALTHZ:
        return answer_json_text(req, 200, "{\"status\":\"ok\"}");
    case GW_ROUTE_READYZ:
        if (__atomic_load_n(req->w->stopping, __ATOMIC_RELAXED) || req->w->draining)
            return answer_error(req, GW_ERR_SHUTTING_DOWN);
        if (key_recently_refused(req->w)) {
            /* Not ready, so that an orchestrator notices a revoked key; /healthz stays 200. */
            struct gw_envelope env;
            gw_envelope_local(&env, GW_ERR_UPSTREAM_AUTH_FAILED);
            env.status = 503;
            return answer_envelope(req, &env);
        }
        return answer_json_text(req, 200, "{\"status\":\"ready\"}");
    case GW_ROUTE_METRICS:
        text = gw_metrics_render(req->w->registry, &len);
        if (text == NULL)
            return answer_error(req, GW_ERR_NOMEM);
        return answer(req, 200, text, len, "text/plain; version=0.0.4; charset=utf-8");
    case GW_ROUTE_OPENAPI:
        /* The document built into the binary; MHD frees the copy it is given. */
        text = malloc(gw_openapi_yaml_len + 1);
        if (text == NULL)
            return answer_error(req, GW_ERR_NOMEM);
        memcpy(text, gw_openapi_yaml, gw_openapi_yaml_len + 1);
        return answer(req, 200, text, gw_openapi_yaml_len, "application/yaml");
    default:
        return answer_error(req, GW_ERR_INTERNAL);
    }
}

/* ---- the upstream call ---- */

/*
 * A suspended connection is not watched by libmicrohttpd, so a caller who hangs up while its
 * request waits on HelpCrunch would go unnoticed until the answer is written into a dead
 * socket (and logged as a success), and the call would run, and be retried, for nobody. The
 * caller's socket is therefore watched for a hang-up (as nginx does) while the call runs,
 * through its connection's one registration in the loop (conn_watch_hangup).
 */
static void client_hung_up(struct gw_request *req)
{
    if (!req->call_live)
        return;
    req->client_gone = true;
    /* The answer this produces goes nowhere; the access line says 499. */
    gw_upstream_cancel(req->w->up, &req->call, GW_ERR_INTERNAL);
}

/* The Retry-After of a 429: HelpCrunch's (or the governor's), else the process-wide
 * cooldown still to run, else the configured fallback. */
static long retry_after(struct gw_worker *w, long given_s)
{
    long s = given_s;

    if (s <= 0)
        s = gw_governor_cooldown_left_s(w->shared->governor, gw_loop_now(w->loop));
    if (s <= 0)
        s = w->cfg->upstream.retry_after_fallback_s;
    return s;
}

static void on_call_done(struct gw_call *call)
{
    struct gw_request *req = call->data;
    struct gw_worker *w = req->w;
    struct gw_envelope env;
    char *out = NULL;
    size_t out_len = 0;
    int rc;

    req->call_live = false;
    w->in_flight--;
    gw_metrics_add(&w->metrics->in_flight, -1);
    req->upstream_status = call->status;
    if (call->failure != GW_OK) {
        gw_envelope_local(&env, call->failure);
        if (call->failure == GW_ERR_RATE_LIMITED)
            env.retry_after_s = retry_after(w, call->retry_after_s);
        answer_envelope(req, &env);
        return;
    }
    if (call->status < 200 || call->status > 299) {
        gw_envelope_from_upstream(&env, (int)call->status, call->resp.data, call->resp.len,
                                  w->secret);
        if (env.err == GW_ERR_RATE_LIMITED)
            env.retry_after_s = retry_after(w, call->retry_after_s);
        answer_envelope(req, &env);
        return;
    }
    rc = gw_reply_build(req->route->reply, call->resp.data, call->resp.len, &out, &out_len);
    if (rc != 0) {
        /* HelpCrunch did answer (with a 2xx we cannot use): say which status it was. */
        gw_envelope_local(&env, rc);
        env.upstream_status = (int)call->status;
        answer_envelope(req, &env);
        return;
    }
    if (req->route->reply == GW_REPLY_DELETED) {
        answer(req, req->route->success_status, NULL, 0, NULL);
    } else if (out != NULL) {
        answer(req, req->route->success_status, out, out_len, "application/json");
    } else {
        /* Pass HelpCrunch's bytes through: MHD takes the buffer and frees it. */
        out = gw_buf_take(&call->resp, &out_len);
        if (out == NULL) {
            answer_error(req, GW_ERR_UPSTREAM_BAD_RESPONSE);
            return;
        }
        answer(req, req->route->success_status, out, out_len, "application/json");
    }
}

static int build_url(struct gw_request *req)
{
    const struct gw_config *cfg = req->w->cfg;
    const char *tpl = req->route->up_path;
    const char *p = strstr(tpl, "{id}");
    char query[256] = "";
    char url[GW_MAX_UPSTREAM_URL];
    int n;
    int rc;

    if (req->route->query) {
        rc = gw_query_list(req->query, query, sizeof(query));
        if (rc != 0)
            return rc;
    }
    if (p != NULL)
        n = snprintf(url, sizeof(url), "%s%.*s%s%s%s", cfg->upstream.base_url,
                     (int)(p - tpl), tpl, req->match.id, p + 4, query);
    else
        n = snprintf(url, sizeof(url), "%s%s%s", cfg->upstream.base_url, tpl,
                     query);
    if (n < 0 || (size_t)n >= sizeof(url))
        return GW_ERR_INTERNAL;
    req->url = strdup(url);
    if (req->url == NULL)
        return GW_ERR_NOMEM;
    req->call.url = req->url;
    return 0;
}

static enum MHD_Result start_upstream(struct gw_request *req)
{
    struct gw_worker *w = req->w;
    const struct gw_route *r = req->route;
    int rc;

    rc = gw_body_build(r, &req->match, req->body.data, req->body.len, &req->up_body,
                       &req->up_body_len);
    if (rc != 0)
        return answer_error(req, rc);
    rc = build_url(req);
    if (rc != 0)
        return answer_error(req, rc);
    req->call.method = r->up_method;
    req->call.body = req->up_body;
    req->call.body_len = req->up_body_len;
    req->call.retryable = r->retryable;
    req->call.request_id = req->request_id;
    req->call.deadline_ms = gw_loop_now(w->loop) + (uint64_t)w->cfg->upstream.timeout_ms;
    req->call.done = on_call_done;
    req->call.data = req;
    MHD_suspend_connection(req->conn);
    req->state = REQ_UPSTREAM;
    rc = gw_upstream_submit(w->up, &req->call);
    if (rc != 0) {
        /* The callback will not run: answer here (queue() resumes the connection). A 429
         * from the governor spent no upstream call and says when to come back. */
        struct gw_envelope env;
        gw_envelope_local(&env, rc);
        if (rc == GW_ERR_RATE_LIMITED)
            env.retry_after_s = retry_after(w, req->call.retry_after_s);
        answer_envelope(req, &env);
        return MHD_YES;
    }
    req->call_live = true;
    w->in_flight++;
    gw_metrics_add(&w->metrics->in_flight, 1);
    conn_watch_hangup(req->cx);
    return MHD_YES;
}

/* ---- intake ---- */

static bool parse_length(const char *s, unsigned long long *out)
{
    char *end;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return errno == 0 && *end == '\0';
}

/* The credentials auth.c looks at, and how many times each header was sent. */
struct auth_headers {
    const char *identity_name;        /* the mesh identity header, or NULL when not trusted */
    struct gw_auth_input in;
};

static enum MHD_Result collect_auth_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    struct auth_headers *h = cls;

    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0) {
        if (h->in.authorization_count++ == 0)
            h->in.authorization = value;
    } else if (h->identity_name != NULL && strcasecmp(key, h->identity_name) == 0) {
        if (h->in.identity_count++ == 0)
            h->in.identity = value;
    }
    return MHD_YES;
}

/*
 * Who is calling, and may it call this route? hcgw's own routes need nothing; every other
 * request, matched or not, names a client when clients are configured, so that a caller
 * without a credential learns nothing about routes or validation. Returns 0,
 * GW_ERR_UNAUTHENTICATED or GW_ERR_FORBIDDEN; req->client and req->auth_refusal are set for
 * the access line. The token is hashed where libmicrohttpd keeps it, and never copied.
 */
static int authorize(struct gw_request *req)
{
    const struct gw_config *cfg = req->w->cfg;
    struct auth_headers h;
    const struct gw_client *client = NULL;
    enum gw_auth_outcome o;
    int rc = 0;

    if (gw_auth_route_public(req->route) || !gw_auth_required(cfg))
        goto out;
    memset(&h, 0, sizeof(h));
    h.identity_name = cfg->auth.trust_mesh_identity ? cfg->auth.mesh_identity_header : NULL;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_auth_header, &h);
    o = gw_auth_identify(cfg, &h.in, &client);
    if (o != GW_AUTH_OK) {
        req->auth_refusal = gw_auth_outcome_name(o);
        rc = GW_ERR_UNAUTHENTICATED;
        goto out;
    }
    snprintf(req->client, sizeof(req->client), "%s", client->name);
    if (req->route != NULL && !gw_auth_allows(client, req->route)) {
        req->auth_refusal = "route_not_allowed";
        rc = GW_ERR_FORBIDDEN;
    }
out:
    return rc;
}

/*
 * Decide what can be decided from the request line and headers. Errors that concern the body
 * itself (415, 413 by Content-Length) are answered at once, and MHD then closes the connection
 * instead of reading a body nobody wants. Everything else is answered after the (bounded) body
 * has been read, so that the connection stays usable for the caller's next request.
 */
static enum MHD_Result on_headers(struct gw_request *req, const char *method)
{
    struct gw_worker *w = req->w;
    const char *rid;
    const char *ct;
    unsigned long long clen;
    int rc;
    int auth;

    rid = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid != NULL && valid_request_id(rid))
        memcpy(req->request_id, rid, strlen(rid) + 1);
    else
        new_request_id(w, req->request_id);
    snprintf(req->method, sizeof(req->method), "%s", method);
    req->state = REQ_BODY;

    if (__atomic_load_n(w->stopping, __ATOMIC_RELAXED) || w->draining)
        return answer_error(req, GW_ERR_SHUTTING_DOWN);
    if (req->uri_too_long)
        rc = GW_ERR_URI_TOO_LONG;
    else
        rc = gw_router_match(method, req->uri, &req->match);
    req->route = req->match.route;
    /* A caller without a valid credential is answered at once, before its body is read; a
     * known client refused this route gets its 403 after the body, like a validation error,
     * and before any (so it learns nothing about a route it may not call). */
    auth = authorize(req);
    if (auth == GW_ERR_UNAUTHENTICATED)
        return answer_error(req, auth);
    if (auth != 0)
        rc = auth;
    if (parse_length(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH),
                     &clen) &&
        clen > (unsigned long long)w->cfg->limits.max_body_bytes)
        return answer_error(req, GW_ERR_BODY_TOO_LARGE);
    if (rc != 0) {
        req->pending = rc;
        return MHD_YES;
    }
    if (req->route->body != GW_BODY_NONE) {
        ct = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!gw_text_is_json_media_type(ct))
            return answer_error(req, GW_ERR_UNSUPPORTED_MEDIA_TYPE);
    }
    if (req->route->reply != GW_REPLY_LOCAL && w->in_flight >= (size_t)w->cfg->limits.max_in_flight)
        return answer_error(req, GW_ERR_OVERLOADED);
    return MHD_YES;
}

static enum MHD_Result on_request_read(struct gw_request *req)
{
    if (req->pending != GW_OK)
        return answer_error(req, req->pending);
    if (req->route->reply == GW_REPLY_LOCAL)
        return answer_local(req);
    return start_upstream(req);
}

static enum MHD_Result on_body_chunk(struct gw_request *req, const char *data, size_t n)
{
    size_t max = (size_t)req->w->cfg->limits.max_body_bytes;

    if (n > max || req->body_seen > max - n) {
        /* MHD cannot answer in the middle of a body (a chunked one, whose size was not known
         * at the headers), so the rest is read and dropped, up to a bound, and the 413 goes
         * out when the request ends. A client that sends more than that is cut off. */
        req->pending = GW_ERR_BODY_TOO_LARGE;
        req->body_seen = req->body_seen + n < req->body_seen ? SIZE_MAX : req->body_seen + n;
        return req->body_seen - max > GW_MAX_DISCARD_BYTES ? MHD_NO : MHD_YES;
    }
    req->body_seen += n;
    if (req->route == NULL || req->route->body == GW_BODY_NONE || req->pending != GW_OK)
        return MHD_YES; /* not used, but still bounded: counted and dropped */
    /* The bound in force, the one body_seen was held to (a reload may have changed it). */
    req->body.max = max;
    if (gw_buf_append(&req->body, data, n) != 0)
        return answer_error(req, GW_ERR_NOMEM);
    return MHD_YES;
}

/* The request target as the URI callback saw it (path and query), or (size_t)-1 if not kept. */
static size_t target_len(const struct gw_request *req)
{
    if (req->uri_too_long)
        return (size_t)-1;
    return strlen(req->uri) + (req->query != NULL ? 1 + strlen(req->query) : 0);
}

/*
 * A request whose framing is ambiguous (framing.h) is answered before anything else is looked
 * at, its headers included, and the connection is closed after the answer.
 */
static enum MHD_Result refuse_malformed(struct gw_request *req, const char *method)
{
    new_request_id(req->w, req->request_id);
    snprintf(req->method, sizeof(req->method), "%s", method);
    req->state = REQ_BODY;
    return answer_error(req, GW_ERR_MALFORMED_REQUEST);
}

enum MHD_Result gw_request_access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct gw_request *req = *req_cls;
    size_t n = *upload_data_size;

    (void)cls;
    (void)url;
    (void)version;
    if (req == NULL)
        return MHD_NO; /* out of memory at the URI callback: drop the connection */
    switch (req->state) {
    case REQ_NEW:
        conn_headers_done(req->cx);
        if (gw_framing_check(conn, method, url, version, target_len(req)) != 0)
            return refuse_malformed(req, method);
        return on_headers(req, method);
    case REQ_BODY:
        if (n > 0) {
            *upload_data_size = 0;
            return on_body_chunk(req, upload_data, n);
        }
        return on_request_read(req);
    case REQ_UPSTREAM:
        return MHD_YES;
    case REQ_ANSWERED:
    default:
        /* A body that keeps coming after an early answer is read and dropped. */
        *upload_data_size = 0;
        return MHD_YES;
    }
}

/* ---- completion ---- */

/*
 * The audit line of a request to a route that changes data, whatever came of it (refusals
 * included): who, what, which contact, and the result. Written whatever log.level says, since
 * an audit trail that a log level can switch off is not one. @p access is the request's access
 * line, built but not yet written, or NULL when the level left it out: both go out in one
 * system call, access first.
 */
static void log_audit(const struct gw_request *req, int status, struct gw_logline *access)
{
    struct gw_logline l;

    gw_log_begin(req->w->log, &l, GW_LOG_INFO, "audit");
    gw_log_str(&l, "request_id", req->request_id);
    gw_log_str(&l, "client", req->client[0] ? req->client : NULL);
    gw_log_str(&l, "route", req->route->name);
    gw_log_str(&l, "contact_id", req->match.id[0] ? req->match.id : NULL);
    gw_log_int(&l, "status", status);
    if (!req->client_gone && req->err != GW_OK)
        gw_log_str(&l, "code", gw_err_info(req->err)->code);
    if (req->auth_refusal != NULL)
        gw_log_str(&l, "auth", req->auth_refusal);
    if (req->upstream_status > 0)
        gw_log_int(&l, "upstream_status", req->upstream_status);
    if (access != NULL)
        gw_log_end_pair(access, &l);
    else
        gw_log_end(&l);
}

void gw_request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                          enum MHD_RequestTerminationCode toe)
{
    struct gw_worker *w = cls;
    struct gw_request *req = *req_cls;
    const union MHD_ConnectionInfo *ci;
    struct gw_logline l;
    double ms;
    int status;
    bool access, audit;

    if (req == NULL)
        return;
    *req_cls = NULL;
    ms = ms_since(&req->start);
    /* 499 (as nginx logs it): the client went away before it had an answer. */
    status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->client_gone ? req->status : 499;
    if (req->header_timeout) {
        /* Cut before its headers were complete; nothing was answered. nginx logs 408 too. */
        status = 408;
    } else if (req->state == REQ_NEW) {
        /* libmicrohttpd answered on its own (431 for headers over its memory, 400 for a
         * malformed header line) before the access handler ever ran, and then closed the
         * connection: log the status it sent rather than a 499. */
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci != NULL && ci->http_status != 0)
            status = (int)ci->http_status;
    }
    if (req->state == REQ_NEW && req->request_id[0] == '\0')
        new_request_id(w, req->request_id);
    gw_metrics_request(w->metrics, req->route, req->method[0] ? req->method : NULL, status,
                       (uint64_t)(ms * 1000.0));
    access = gw_log_enabled(w->log, GW_LOG_INFO);
    audit = gw_auth_route_is_write(req->route);
    if (access) {
        gw_log_begin(w->log, &l, GW_LOG_INFO, "access");
        gw_log_str(&l, "request_id", req->request_id);
        gw_log_str(&l, "method", req->method[0] ? req->method : NULL);
        gw_log_str(&l, "route", req->route != NULL ? req->route->name : NULL);
        gw_log_str(&l, "contact_id", req->match.id[0] ? req->match.id : NULL);
        gw_log_str(&l, "client", req->client[0] ? req->client : NULL);
        gw_log_int(&l, "status", status);
        /* Only hcgw's own envelopes have a code: not a cut, not libmicrohttpd's answers. */
        if (!req->client_gone && req->err != GW_OK)
            gw_log_str(&l, "code", gw_err_info(req->err)->code);
        if (req->auth_refusal != NULL)
            gw_log_str(&l, "auth", req->auth_refusal);
        if (req->upstream_status > 0)
            gw_log_int(&l, "upstream_status", req->upstream_status);
        gw_log_int(&l, "attempts", req->call.attempts);
        gw_log_ms(&l, "duration_ms", ms);
        if (req->call.attempts > 0)
            gw_log_ms(&l, "upstream_ms", req->call.upstream_ms);
        /* A write route's access line waits for its audit line: one write for both. */
        if (!audit)
            gw_log_end(&l);
    }
    if (audit)
        log_audit(req, status, access ? &l : NULL);
    /* A live call would write into freed memory; the server never lets this happen (it
     * cancels calls before it stops MHD), so this is a last line of defence. */
    if (req->call_live)
        abort();
    /* After the counters and the log line, which a caller may already be waiting to see. */
    conn_request_done(req->cx, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    gw_call_release(&req->call);
    gw_buf_free(&req->body);
    free(req->up_body);
    free(req->url);
    free(req);
    w->active--;
}

/* ---- connections ---- */

/*
 * The header deadline. libmicrohttpd's connection timeout (limits.connection_timeout_ms) is an
 * idle timeout: every byte resets it, so a client that sends one header byte every few seconds
 * (a slowloris) would hold its connection, and with enough of them all of
 * limits.max_connections, forever. So a connection must also deliver a whole request line and
 * headers within limits.header_timeout_ms of the moment it starts a request: when it opens,
 * and, on a keep-alive connection, when the first byte of its next request arrives. The time a
 * keep-alive connection spends idle between requests is left to the idle timeout, as nginx
 * does, so that the two keys bound different things and a pooled client's idle connection is
 * not cut (and logged as an attack) early.
 *
 * Connections whose header clock runs sit in one list per worker. A clock only ever starts
 * "now", so appending keeps the list in deadline order: the head is the next to expire, one
 * loop timer serves them all, and taking a connection out (its headers arrived) is O(1). An
 * expired connection is shut down (shutdown(2) on its socket); libmicrohttpd then reads the end
 * of the stream and closes it through its usual path, which calls the completion callback (the
 * access line says 408) and then the close notification, where its bookkeeping is freed.
 * Everything here runs on the worker's thread (or on the main thread after it has stopped,
 * when the daemon is torn down); nothing is locked.
 */

enum conn_state {
    CONN_HEADERS,    /* the header clock runs; in the list */
    CONN_IDLE,       /* keep-alive between requests; its socket is watched for the next byte */
    CONN_SERVING,    /* headers arrived (or the deadline is off): no clock */
    CONN_CUT         /* shut down at its deadline; libmicrohttpd closes it next */
};

struct conn_list;

/* One client connection (libmicrohttpd's socket_context for it). */
struct conn {
    struct conn_list *cl;
    struct MHD_Connection *mhd;
    enum conn_state state;
    uint64_t since_ms;               /* loop time when the header clock started */
    struct conn *prev;               /* in cl's list while CONN_HEADERS */
    struct conn *next;
    /* The socket's one registration in the worker's loop, for the connection's life, armed
     * one-shot for what its state needs: the next request's first byte while CONN_IDLE, a
     * hang-up while its request waits on HelpCrunch. One epoll_ctl re-arms it; nothing has to
     * disarm it (an event that comes when nobody waits for it is ignored). */
    struct gw_io io;
    struct gw_request *req;          /* the request being read or served, or NULL */
};

/* A worker's connections whose header clock runs (w->conns). */
struct conn_list {
    struct gw_worker *w;
    struct conn *head;               /* oldest clock first */
    struct conn *tail;
    struct gw_timer timer;           /* due at the head's deadline (or earlier) */
};

static struct conn *conn_of(struct MHD_Connection *mhd)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci != NULL ? ci->socket_context : NULL;
}

static uint64_t header_timeout(const struct conn_list *cl)
{
    return (uint64_t)cl->w->cfg->limits.header_timeout_ms;
}

static void unlink_conn(struct conn *c)
{
    struct conn_list *cl = c->cl;

    if (c->state != CONN_HEADERS)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        cl->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        cl->tail = c->prev;
    c->prev = NULL;
    c->next = NULL;
}

/* Leave the current state (and the clock's list) for @p state. */
static void set_state(struct conn *c, enum conn_state state)
{
    unlink_conn(c);
    c->state = state;
}

static int arm(struct conn *c, uint32_t events)
{
    if (c->io.fd < 0)
        return -1;
    return gw_loop_io_set(c->cl->w->loop, &c->io, events | EPOLLONESHOT);
}

/*
 * Start the header clock now (unless the deadline is off). The timer is normally due already
 * no later than this new deadline, which is the latest of all; a reload that shortened
 * limits.header_timeout_ms is the exception, hence the comparison.
 */
static void start_clock(struct conn *c)
{
    struct conn_list *cl = c->cl;
    struct gw_loop *loop = cl->w->loop;
    uint64_t limit = header_timeout(cl);

    if (limit == 0) {
        set_state(c, CONN_SERVING);
        return;
    }
    set_state(c, CONN_HEADERS);
    c->since_ms = gw_loop_now(loop);
    c->prev = cl->tail;
    c->next = NULL;
    if (cl->tail != NULL)
        cl->tail->next = c;
    else
        cl->head = c;
    cl->tail = c;
    if (cl->timer.slot == 0 || cl->timer.due_ms > c->since_ms + limit)
        gw_timer_start(loop, &cl->timer, limit);
}

/* "203.0.113.7:51234" or "[2001:db8::1]:51234"; "" when unknown. */
static void format_remote(struct MHD_Connection *mhd, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN];

    out[0] = '\0';
    if (ci == NULL || ci->client_addr == NULL)
        return;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)ci->client_addr;
        if (inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip)) != NULL)
            snprintf(out, size, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sa = (const struct sockaddr_in6 *)ci->client_addr;
        if (inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof(ip)) != NULL)
            snprintf(out, size, "[%s]:%u", ip, (unsigned)ntohs(sa->sin6_port));
    }
}

/* Shut the socket down; libmicrohttpd sees the end of the stream at its next run and closes
 * the connection. Returns false when the socket could not be found. */
static bool shut_socket(struct gw_worker *w, struct MHD_Connection *mhd)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CONNECTION_FD);

    if (ci == NULL)
        return false;
    shutdown(ci->connect_fd, SHUT_RDWR);
    w->mhd_needs_run = true;
    return true;
}

static void cut(struct conn *c, uint64_t now)
{
    struct gw_worker *w = c->cl->w;
    struct gw_logline l;
    char remote[INET6_ADDRSTRLEN + 8];

    set_state(c, CONN_CUT);
    if (c->req != NULL)
        c->req->header_timeout = true;
    if (gw_log_enabled(w->log, GW_LOG_WARN)) {
        format_remote(c->mhd, remote, sizeof(remote));
        gw_log_begin(w->log, &l, GW_LOG_WARN, "header timeout: connection closed");
        gw_log_str(&l, "remote", remote[0] ? remote : NULL);
        gw_log_int(&l, "header_timeout_ms", (long long)header_timeout(c->cl));
        gw_log_int(&l, "waited_ms", (long long)(now - c->since_ms));
        gw_log_str(&l, "stage", c->req != NULL ? "headers" : "request_line");
        gw_log_end(&l);
    }
    shut_socket(w, c->mhd);
}

static void on_header_timer(struct gw_timer *t)
{
    struct conn_list *cl = t->data;
    uint64_t now = gw_loop_now(cl->w->loop);
    uint64_t limit = header_timeout(cl);

    /* A reload turned the deadline off: every clock stops. */
    while (limit == 0 && cl->head != NULL)
        set_state(cl->head, CONN_SERVING);
    while (cl->head != NULL && now - cl->head->since_ms >= limit)
        cut(cl->head, now);
    if (cl->head != NULL)
        gw_timer_start(cl->w->loop, &cl->timer, cl->head->since_ms + limit - now);
}

/*
 * The socket's event: while idle, the first byte (or the end) of a keep-alive connection's
 * next request starts the header clock; while its request waits on HelpCrunch, a hang-up
 * cancels the call. Anything else is an arming that outlived its purpose.
 */
static void on_conn_event(struct gw_io *io, uint32_t events)
{
    struct conn *c = io->data;

    if (c->state == CONN_IDLE) {
        start_clock(c);
        return;
    }
    if (c->req != NULL && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        client_hung_up(c->req);
}

/* Its request was suspended for an upstream call: watch for the caller hanging up. On
 * failure the request is simply not watched. */
static void conn_watch_hangup(struct conn *c)
{
    if (c != NULL)
        arm(c, EPOLLRDHUP);
}

/* The URI callback: the request line is complete. */
static void conn_request_begun(struct conn *c, struct gw_request *req)
{
    if (c == NULL)
        return;
    /* Pipelined bytes that libmicrohttpd had already read were never seen by the watch. */
    if (c->state == CONN_IDLE)
        start_clock(c);
    c->req = req;
    req->cx = c;
}

/* The first access-handler call: the headers are complete, the clock stops. */
static void conn_headers_done(struct conn *c)
{
    if (c != NULL && c->state != CONN_CUT)
        set_state(c, CONN_SERVING);
}

/*
 * The completion callback. When the connection stays open for another request, it waits idle
 * (under the idle timeout alone) until a byte arrives, then the header clock starts again. A
 * request that never reached the access handler (libmicrohttpd refused it itself) keeps the
 * clock it had; a cut connection stays cut.
 */
static void conn_request_done(struct conn *c, bool keep_alive)
{
    if (c == NULL)
        return;
    if (c->req != NULL)
        c->req->cx = NULL;
    c->req = NULL;
    if (!keep_alive || c->state != CONN_SERVING || header_timeout(c->cl) == 0)
        return;
    set_state(c, CONN_IDLE);
    /* Without the watch, fall back to a clock from now: a bound held early beats none. */
    if (arm(c, EPOLLIN | EPOLLRDHUP) != 0)
        start_clock(c);
}

int gw_request_worker_init(struct gw_worker *w)
{
    struct conn_list *cl = calloc(1, sizeof(*cl));

    w->conns = cl;
    if (cl == NULL)
        return -1;
    cl->w = w;
    gw_timer_init(&cl->timer, on_header_timer, cl);
    return 0;
}

void gw_request_worker_fini(struct gw_worker *w)
{
    struct conn_list *cl = w->conns;

    if (cl == NULL)
        return;
    /* libmicrohttpd has stopped and announced every close, so the list is empty by now. */
    gw_timer_stop(w->loop, &cl->timer);
    free(cl);
    w->conns = NULL;
}

void gw_request_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code)
{
    struct gw_worker *w = cls;
    struct conn_list *cl = w->conns;
    struct conn *c;
    const union MHD_ConnectionInfo *ci;

    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        /*
         * At limits.max_connections, libmicrohttpd (in external epoll mode) takes the listening
         * socket out of its epoll set, and puts it back only at the start of its next run, not
         * when a connection closes. A close happens at the end of a run, and a daemon with no
         * connections left has no timeout to wake it: without another run, connections waiting
         * in the backlog would never be accepted. So a close asks for one more run.
         */
        w->mhd_needs_run = true;
        c = *socket_context;
        *socket_context = NULL;
        if (c == NULL)
            return;
        set_state(c, CONN_CUT);
        /* Out of the loop's set (and its pending events) before the memory goes. */
        gw_loop_io_set(w->loop, &c->io, 0);
        if (c->req != NULL)
            c->req->cx = NULL;
        free(c);
        return;
    }
    *socket_context = NULL;
    if (code != MHD_CONNECTION_NOTIFY_STARTED || cl == NULL)
        return;
    /* Kept even while the deadline is off, so that a reload that turns it on applies to the
     * connections already open from their next request on. */
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        /* A connection that escaped the deadline would be the slowloris this exists for. */
        gw_logf(w->log, GW_LOG_ERROR, "out of memory for a new connection: closing it");
        shut_socket(w, conn);
        return;
    }
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->cl = cl;
    c->mhd = conn;
    c->state = CONN_SERVING; /* left by start_clock at once */
    /* Without its descriptor the idle watch fails, and the clock then restarts at once. */
    c->io.fd = ci != NULL ? ci->connect_fd : -1;
    c->io.cb = on_conn_event;
    c->io.data = c;
    *socket_context = c;
    start_clock(c);
}

/*
 * The life of one request, on its worker's thread:
 *   URI-log callback → request created, raw URI kept (the router decodes it, not MHD); its
 *                      connection's header clock (conn.c) learns of it
 *   first access call → the clock stops; request id, framing check, route match, the
 *                      browser's origin (cors.c: a CORS preflight is hcgw's alone, and needs
 *                      no credential), who calls (auth.c), early 4xx answers
 *   body calls       → bounded accumulation
 *   last access call → a local answer, or the body validated, the upstream call built, the
 *                      connection suspended and the call handed to the call layer (calls.c);
 *                      a create with an Idempotency-Key asks the store first (idem.h), the
 *                      connection suspended while a shared store (Redis) answers: a replay
 *                      or a refusal is answered here, an unknown outcome is searched for
 *                      before the create goes, and a final answer is kept before it is given
 *   caller hangs up  → (while suspended; conn.c watches) the call is cancelled, logged as 499
 *   call done        → its one outcome (upstream.h) becomes the answer: the route's reply
 *                      (reply.c) or the envelope with its headers (answer.c), queued, resumed
 *   completion       → one access line (and an audit line for writes), counters, free.
 * Every failure on the way is a value of enum gw_err; the error table in envelope.c says what
 * its answer is, and answer.c writes it. This file decides what happens, never how an answer
 * or a connection is built.
 */
#include "hcgw/request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hcgw/answer.h"
#include "hcgw/auth.h"
#include "hcgw/body.h"
#include "hcgw/cachectl.h"
#include "hcgw/calls.h"
#include "hcgw/buf.h"
#include "hcgw/config.h"
#include "hcgw/conn.h"
#include "hcgw/cors.h"
#include "hcgw/envelope.h"
#include "hcgw/framing.h"
#include "hcgw/gzip.h"
#include "hcgw/idem.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/metrics.h"
#include "hcgw/openapi.h"
#include "hcgw/query.h"
#include "hcgw/reply.h"
#include "hcgw/router.h"
#include "hcgw/secret.h"
#include "hcgw/text.h"
#include "hcgw/tls.h"
#include "hcgw/trace.h"
#include "hcgw/upstream.h"

/** First allocation for a request body; it doubles up to limits.max_body_bytes. */
#define REQ_INITIAL_BODY 1024

/* What an Idempotency-Key did for a create, for the access line (its "idempotency"). */
enum idem_result {
    IDEM_NONE = 0,                   /* nothing yet (or the store is off) */
    IDEM_STORED,                     /* its final answer is kept for the key */
    IDEM_REPLAYED,                   /* answered from the key's record, no upstream call */
    IDEM_IN_PROGRESS,                /* 409: another request holds the key */
    IDEM_REUSED,                     /* 422: the key was used with another body */
    IDEM_RECOVERED,                  /* an earlier attempt's contact, found by a search */
    IDEM_UNKNOWN,                    /* ended not knowing whether the contact was created */
    IDEM_RELEASED,                   /* certainly not created: the key is free again */
    IDEM__COUNT
};

static const char *const idem_words[IDEM__COUNT] = {
    NULL, "stored", "replayed", "in_progress", "reused", "recovered", "unknown", "released"};

/* What a create waits for from a store that answers later (idem.h, GW_IDEM_LATER). */
enum idem_wait {
    IDEM_WAIT_NONE = 0,
    IDEM_WAIT_BEGIN,                 /* the key's verdict */
    IDEM_WAIT_KEPT                   /* its final answer kept, before it is given */
};

/* A create's Idempotency-Key (idem.h), allocated only for a create that sends one. */
struct req_idem {
    struct gw_idem_claim claim;      /* with the store: the key (scope: the client), the claim */
    char text[GW_MAX_IDEM_KEY_BYTES + 1];
    enum idem_wait wait;
    bool was_unknown;                /* the claim took a record of unknown outcome */
    bool searching;                  /* the call in flight is the recovery search */
    char *search_body;               /* its body and URL (malloc'd) */
    char *search_url;
    char *found;                     /* a recovery's customer, given once kept (malloc'd) */
    size_t found_len;
    int search_attempts;             /* its attempts and their time, once the create reused the */
    double search_ms;                /* call: for the access line */
    enum idem_result result;
};

enum req_state {
    REQ_NEW,         /* headers arrived, nothing decided */
    REQ_BODY,        /* reading the body */
    REQ_UPSTREAM,    /* suspended, waiting on HelpCrunch */
    REQ_ANSWERED     /* a response is queued */
};

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
    bool header_timeout;              /* its connection was cut at the header deadline */
    bool closes;                      /* its answer says Connection: close (answer.h) */
    char client[GW_MAX_CLIENT_NAME + 1]; /* the client its credential named; "" when none */
    const char *auth_refusal;         /* why it was refused 401/403 (static text), or NULL */
    /* Browsers (cors.h). The strings are the request's own or static, never the config's,
     * which a reload may free while the request waits. */
    char *origin;                     /* its one Origin header (malloc'd, cut at
                                         GW_MAX_ORIGIN_BYTES), or NULL: none or several */
    bool origin_sent;                 /* an Origin header came (one or more) */
    bool origin_whole;                /* origin is the whole header: it may name an origin */
    const char *cors_origin;          /* Access-Control-Allow-Origin of its answers, or NULL */
    bool vary_origin;                 /* Vary: Origin on its answers (a cors group is on) */
    bool preflight;                   /* a CORS preflight: answered by hcgw alone */
    bool preflight_method_ok;         /* one Access-Control-Request-Method, a method token */
    /* For the access line. */
    int status;
    enum gw_err err;
    long upstream_status;
    struct gw_call call;
    bool revalidated;                 /* a 304 for a fresh cache entry */
    char etag[GW_ETAG_BYTES];         /* "" until a cacheable answer has one */
    char *url;                        /* the call's upstream URL (malloc'd, its own length) */
    struct req_idem *idem;            /* a create's Idempotency-Key, or NULL */
    struct gw_trace trace;            /* its trace context and hcgw's span (trace.h) */
    /* Sized to the URI at hand (at most GW_MAX_URL_BYTES): a request in flight holds a few
     * hundred bytes of its own, not two 2 KiB buffers (bench/README.md, memory). */
    char uri[];                       /* path, NUL, query */
};


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

/*
 * The request's trace context (trace.h) and its id. A trace hcgw starts (no valid traceparent)
 * and a request id hcgw makes up are the same random bytes, so that the X-Request-Id a caller
 * gets is the trace_id of the logs. A caller's valid X-Request-Id is kept whatever its trace,
 * and a caller's trace gets a request id of its own: one trace spans many requests.
 * @p read_headers: false for a request whose headers are not looked at.
 */
static void identify(struct gw_request *req, bool read_headers)
{
    struct gw_worker *w = req->w;
    struct gw_trace_headers h;
    uint64_t fresh[3] = {rng_next(w->rng), rng_next(w->rng), rng_next(w->rng)};
    const char *rid = NULL;

    _Static_assert(sizeof(fresh) == GW_TRACE_FRESH_BYTES, "a trace-id and a span-id");
    gw_trace_clear(&req->trace);
    if (read_headers) {
        gw_trace_read(req->conn, &h);
        rid = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Request-Id");
    }
    gw_trace_begin(&req->trace, read_headers ? &h : NULL, (const uint8_t *)fresh,
                   w->cfg->upstream.propagate_trace);
    if (rid != NULL && valid_request_id(rid))
        memcpy(req->request_id, rid, strlen(rid) + 1);
    else if (req->trace.origin != GW_TRACE_CONTINUED)
        gw_text_hex_encode(req->trace.trace_id, GW_TRACE_ID_BYTES, req->request_id);
    else
        new_request_id(w, req->request_id);
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
    gw_conn_request_begun(gw_conn_of(conn), req);
    return req;
}

/* ---- answers ---- */

/*
 * Which answers may go gzip-compressed: every route's but the probes' (their bodies are a few
 * bytes, and a probe has no use for Vary). Of those, a body of compression.min_bytes or more
 * is compressed, errors included, when the caller accepts gzip; 204 and 304 have no body.
 */
static bool compressible(const struct gw_route *route)
{
    return route != NULL && route->id != GW_ROUTE_HEALTHZ && route->id != GW_ROUTE_READYZ;
}

static enum MHD_Result fold_accept_encoding(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_ACCEPT_ENCODING) == 0)
        gw_gzip_accept_fold(cls, value);
    return MHD_YES;
}

/*
 * The answer's compression: every answer of a compressible route varies on Accept-Encoding
 * (compressed or not, since the header decides), and goes through the worker's deflater when
 * the caller accepts gzip.
 */
static void set_compression(const struct gw_request *req, struct gw_answer *a)
{
    const struct gw_config *cfg = req->w->cfg;
    struct gw_gzip_accept acc;

    /* A preflight's answer is about the request it announces, not a body of the route. */
    if (!cfg->compression.gzip || !compressible(req->route) || req->preflight)
        return;
    a->vary |= GW_VARY_ACCEPT_ENCODING;
    gw_gzip_accept_init(&acc);
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, fold_accept_encoding, &acc);
    if (!gw_gzip_accepted(&acc))
        return;
    a->gzip = req->w->gzip;
    a->gzip_min_bytes = (size_t)cfg->compression.min_bytes;
    a->gzip_level = cfg->compression.level;
}

/* What answer.c needs of this request. */
static struct gw_answer answer_of(const struct gw_request *req)
{
    struct gw_answer a = {
        .conn = req->conn,
        .request_id = req->request_id,
        .allow = req->match.allow,
        .close = req->w->draining,
        .etag = req->etag,
        .age_s = -1,
        .replayed = req->idem != NULL && req->idem->result == IDEM_REPLAYED,
        .cors_origin = req->cors_origin,
        .vary = req->vary_origin ? GW_VARY_ORIGIN : 0u,
    };

    set_compression(req, &a);
    return a;
}

/* An answer was queued (or failed to be) with @p status: on a suspended connection, resume. */
static enum MHD_Result answered(struct gw_request *req, int status, enum MHD_Result r)
{
    req->status = status;
    /* Every answer of a draining worker says Connection: close (answer_of). */
    req->closes = req->closes || req->w->draining;
    if (req->state == REQ_UPSTREAM) {
        MHD_resume_connection(req->conn);
        req->w->mhd_needs_run = true;
    }
    if (req->state != REQ_ANSWERED)
        req->w->answering++;
    req->state = REQ_ANSWERED;
    return r;
}

/* Answer with @p body, which we own and MHD frees (NULL/0: no body). */
static enum MHD_Result answer(struct gw_request *req, int status, char *body, size_t len,
                              const char *content_type)
{
    struct gw_answer a = answer_of(req);

    return answered(req, status, gw_answer_body(&a, (unsigned)status, body, len, content_type));
}

static enum MHD_Result answer_json_text(struct gw_request *req, int status, const char *text)
{
    struct gw_answer a = answer_of(req);

    return answered(req, status, gw_answer_json_text(&a, (unsigned)status, text));
}

static enum MHD_Result answer_error(struct gw_request *req, enum gw_err err)
{
    struct gw_answer a = answer_of(req);
    int status = 0;
    enum MHD_Result r = gw_answer_error(&a, err, &status);

    req->err = err;
    req->closes = gw_answer_closes(&a, err);
    return answered(req, status, r);
}

static enum MHD_Result answer_envelope(struct gw_request *req, struct gw_envelope *env)
{
    struct gw_answer a = answer_of(req);
    int status = 0;
    enum MHD_Result r;

    req->err = env->err;
    req->closes = gw_answer_closes(&a, env->err);
    r = gw_answer_envelope(&a, env, &status);
    return answered(req, status, r);
}

static enum MHD_Result answer_outcome(struct gw_request *req, const struct gw_outcome *o)
{
    struct gw_answer a = answer_of(req);
    int status = 0;
    enum MHD_Result r = gw_answer_outcome(&a, o, req->w->secret, &req->err, &status);

    req->closes = gw_answer_closes(&a, req->err);
    return answered(req, status, r);
}

/* The 204 to a preflight from an allowed origin: the path's methods, the configured max age. */
static enum MHD_Result answer_preflight(struct gw_request *req)
{
    struct gw_answer a = answer_of(req);

    return answered(req, 204, gw_answer_preflight(&a, req->match.allow,
                                                  req->w->cfg->cors.max_age_s));
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
        if (gw_calls_key_refused(req->w->calls))
            return answer_error(req, GW_ERR_KEY_REFUSED);
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
 * through its connection's one registration in the loop (gw_conn_watch_hangup).
 */
static void client_hung_up(void *data)
{
    struct gw_request *req = data;

    if (!req->call_live)
        return;
    req->client_gone = true;
    /* The answer this produces goes nowhere; the access line says 499. */
    gw_calls_cancel(req->w->calls, &req->call, GW_ERR_INTERNAL);
}

/* The words of RFC 9211's Cache-Status for where the read's answer came from. */
static const char *cache_status(const struct gw_call *call, char *buf, size_t cap)
{
    switch (call->cache) {
    case GW_CACHE_HIT:
        snprintf(buf, cap, "hcgw; hit; ttl=%llu",
                 (unsigned long long)(call->cache_ttl_left_ms / 1000));
        return buf;
    case GW_CACHE_MISS:
        return call->cache_stored ? "hcgw; fwd=miss; stored" : "hcgw; fwd=miss";
    case GW_CACHE_BYPASS:
        return call->cache_stored ? "hcgw; fwd=request; stored" : "hcgw; fwd=request";
    case GW_CACHE_COLLAPSED:
        return "hcgw; fwd=miss; collapsed";
    case GW_CACHE_UNUSED:
    default:
        return NULL;
    }
}

/*
 * The answer is a customer from this process's cache, served as it was stored, with the ETag
 * worked out then (cache.h).
 */
static bool cached_customer(const struct gw_request *req)
{
    return req->call.cache == GW_CACHE_HIT && req->route->reply == GW_REPLY_CUSTOMER &&
           req->call.cache_etag[0] != '\0';
}

/*
 * A success answer to a read of a contact: with its ETag and what the cache did, or a 304
 * when the caller's If-None-Match already names this representation of the body (identity or
 * gzip: each has its own ETag, and a 304 names the one the caller would get).
 */
static enum MHD_Result answer_read(struct gw_request *req, char *body, size_t len)
{
    struct gw_answer a = answer_of(req);
    char status_buf[48];
    const char *inm;

    if (cached_customer(req))
        memcpy(req->etag, req->call.cache_etag, GW_ETAG_BYTES);
    else
        (void)gw_cachectl_etag(body, len, req->etag);
    /* The representation first: the gzip one has an ETag of its own. */
    gw_answer_encode(&a, &body, &len);
    if (a.gzipped)
        gw_cachectl_etag_gzip(req->etag);
    a.etag = req->etag;
    a.cache_status = cache_status(&req->call, status_buf, sizeof(status_buf));
    if (req->call.cache == GW_CACHE_HIT)
        a.age_s = (long)(req->call.cache_age_ms / 1000);
    inm = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                      MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (gw_cachectl_none_match(inm, req->etag)) {
        free(body);
        req->revalidated = req->call.cache == GW_CACHE_HIT;
        return answered(req, 304, gw_answer_body(&a, 304, NULL, 0, NULL));
    }
    return answered(req, req->route->success_status,
                    gw_answer_body(&a, (unsigned)req->route->success_status, body, len,
                                   "application/json"));
}

static void idem_searched(struct gw_request *req);
static bool idem_settle(struct gw_request *req, bool usable);

/* The call's outcome, from HelpCrunch, the cache or an idempotency record, becomes the answer. */
static void answer_call(struct gw_request *req)
{
    struct gw_outcome *o = &req->call.out;
    char *out = NULL;
    size_t out_len = 0;
    int rc;

    if (req->idem != NULL && req->idem->searching) {
        idem_searched(req);
        return;
    }
    req->upstream_status = req->call.cache == GW_CACHE_HIT ||
                                   (req->idem != NULL && req->idem->result == IDEM_REPLAYED)
                               ? 0
                               : o->status;
    /* A create's final answer is kept for its Idempotency-Key before it is given; when the
     * store answers later, this runs again then (idem_done), the claim no longer held. */
    if (o->failure != GW_OK || o->status < 200 || o->status > 299) {
        if (!idem_settle(req, false))
            answer_outcome(req, o);
        return;
    }
    /* Every answer but a customer the call layer already judged one (served from its cache,
     * or checked on its way there) is checked (and shaped) here. */
    if (req->route->reply == GW_REPLY_CUSTOMER && req->call.customer_ok)
        rc = 0;
    else
        rc = gw_reply_build(req->route->reply, o->body, o->body_len, &out, &out_len);
    if (rc != 0) {
        /* HelpCrunch did answer (with a 2xx we cannot use): say which status it was. */
        struct gw_envelope env;
        if (idem_settle(req, false))
            return;
        gw_envelope_local(&env, rc);
        env.upstream_status = (int)o->status;
        answer_envelope(req, &env);
        return;
    }
    if (idem_settle(req, true)) {
        free(out);
        return;
    }
    if (req->route->reply == GW_REPLY_DELETED) {
        answer(req, req->route->success_status, NULL, 0, NULL);
        return;
    }
    if (out == NULL) {
        /* Pass HelpCrunch's bytes through: MHD takes the buffer and frees it. */
        out = gw_outcome_take_body(o, &out_len);
        if (out == NULL) {
            answer_error(req, GW_ERR_UPSTREAM_BAD_RESPONSE);
            return;
        }
    }
    if (req->call.cache_role == GW_CACHE_READ)
        answer_read(req, out, out_len);
    else
        answer(req, req->route->success_status, out, out_len, "application/json");
}

static void on_call_done(struct gw_call *call)
{
    struct gw_request *req = call->data;
    struct gw_worker *w = req->w;

    req->call_live = false;
    w->in_flight--;
    gw_metrics_add(&w->metrics->in_flight, -1);
    answer_call(req);
}

/* What the contact cache is to this route's call (calls.h). */
static enum gw_cache_role cache_role_of(const struct gw_route *r)
{
    switch (r->id) {
    case GW_ROUTE_CONTACT_GET:
    case GW_ROUTE_TAGS_GET:
        return GW_CACHE_READ;
    case GW_ROUTE_TAG_DELETE:
    case GW_ROUTE_TAG_PUT:
    case GW_ROUTE_TAGS_ADD:
    case GW_ROUTE_TAGS_REMOVE:
    case GW_ROUTE_CONTACT_PATCH:
    case GW_ROUTE_BLOCK:
    case GW_ROUTE_UNBLOCK:
        return GW_CACHE_WRITE;
    case GW_ROUTE_CONTACT_DELETE:
        return GW_CACHE_DELETE;
    case GW_ROUTE_CONTACT_CREATE:
        return GW_CACHE_CREATE;
    default:
        return GW_CACHE_NONE;
    }
}

/* What this route's write may be merged with (calls.h, coalescing). */
static enum gw_call_merge merge_of(const struct gw_route *r)
{
    switch (r->id) {
    case GW_ROUTE_TAG_PUT:
    case GW_ROUTE_TAGS_ADD:
        return GW_MERGE_TAGS_ADD;
    case GW_ROUTE_TAG_DELETE:
    case GW_ROUTE_TAGS_REMOVE:
        return GW_MERGE_TAGS_REMOVE;
    default:
        return GW_MERGE_NONE;
    }
}

static enum MHD_Result fold_cache_control(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    (void)kind;
    if (strcasecmp(key, MHD_HTTP_HEADER_CACHE_CONTROL) == 0)
        gw_cachectl_request(value, cls);
    return MHD_YES;
}

/* The call's cache role, contact and, for a read, the oldest entry the caller accepts. */
static void set_cache_role(struct gw_request *req)
{
    struct gw_call *c = &req->call;

    c->cache_role = cache_role_of(req->route);
    c->merge = merge_of(req->route);
    c->contact_id = req->match.id[0] ? strtoull(req->match.id, NULL, 10) : 0;
    c->max_age_ms = GW_CACHECTL_ANY_AGE;
    if (c->cache_role == GW_CACHE_READ)
        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, fold_cache_control,
                                  &c->max_age_ms);
}

/* The route's upstream URL, with this request's id and query, in req->url. */
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
    return 0;
}

/*
 * Fill the call's "in" fields for one upstream call of this request (calls.h): the route's,
 * or a recovery search. The call is free: never submitted, or done and released.
 */
static void prepare_call(struct gw_request *req, const char *method, const char *url,
                         const char *body, size_t body_len, bool retryable)
{
    struct gw_worker *w = req->w;

    memset(&req->call, 0, sizeof(req->call));
    req->call.method = method;
    req->call.url = url;
    req->call.body = body;
    req->call.body_len = body_len;
    req->call.retryable = retryable;
    req->call.request_id = req->request_id;
    req->call.trace = w->cfg->upstream.propagate_trace ? &req->trace : NULL;
    req->call.deadline_ms = gw_loop_now(w->loop) + (uint64_t)w->cfg->upstream.timeout_ms;
    req->call.done = on_call_done;
    req->call.data = req;
}

/* The route's own upstream call. */
static void prepare_route_call(struct gw_request *req)
{
    const struct gw_route *r = req->route;

    prepare_call(req, r->up_method, req->url, req->up_body, req->up_body_len, r->retryable);
    set_cache_role(req);
}

/* Suspend the connection (once) while its request waits. */
static void suspend(struct gw_request *req)
{
    if (req->state != REQ_UPSTREAM) {
        MHD_suspend_connection(req->conn);
        req->state = REQ_UPSTREAM;
    }
}

/*
 * Hand the prepared call to the call layer, the connection suspended until its answer. The
 * answer of a call the layer served or refused at once (a cache hit, a local 429) is given
 * here, without suspending when nothing more is awaited: a suspend and resume would cost two
 * epoll_ctl and a read that finds nothing (libmicrohttpd 0.9.75 and 1.0.x alike).
 */
static void submit(struct gw_request *req)
{
    struct gw_worker *w = req->w;
    int rc;

    rc = gw_calls_submit(w->calls, &req->call);
    if (rc != 0) {
        /* Served from the cache, or refused before it went (the callback will not run): answer
         * the settled outcome here (on a suspended connection, which resumes it). A 429 from
         * the quota spent no upstream call and says when to come back. What is still awaited
         * then (an Idempotency-Key's store or search) answers later: the connection waits for
         * it suspended. */
        answer_call(req);
        if (req->state != REQ_ANSWERED)
            suspend(req);
        return;
    }
    suspend(req);
    req->call_live = true;
    w->in_flight++;
    gw_metrics_add(&w->metrics->in_flight, 1);
    gw_conn_watch_hangup(gw_conn_of(req->conn));
}

/* ---- Idempotency-Key (idem.h) ---- */

static uint64_t now_ms(const struct gw_request *req)
{
    return gw_loop_now(req->w->loop);
}

/* End the held claim without a final answer: @p fate GW_IDEM_UNKNOWN or GW_IDEM_FORGET. */
static void idem_end(struct gw_request *req, enum gw_idem_fate fate)
{
    struct req_idem *id = req->idem;

    if (id == NULL || !id->claim.held)
        return;
    gw_idem_abandon(req->w->idem, &id->claim, fate == GW_IDEM_UNKNOWN, now_ms(req));
    id->result = fate == GW_IDEM_UNKNOWN ? IDEM_UNKNOWN : IDEM_RELEASED;
}

/*
 * Keep @p status and @p body (@p len bytes) as the key's final answer, as @p result. Returns
 * true when the store answers later: the answer waits for idem_done.
 */
static bool idem_keep(struct gw_request *req, long status, const char *body, size_t len,
                      enum idem_result result)
{
    struct req_idem *id = req->idem;

    id->result = result;
    if (gw_idem_complete(req->w->idem, &id->claim, status, body, len, now_ms(req)) !=
        GW_IDEM_LATER)
        return false;
    id->wait = IDEM_WAIT_KEPT;
    return true;
}

/*
 * The create's call ended (req->call.out): keep its answer for the key when it is final, or
 * end the claim as unknown or forgotten (gw_idem_fate). @p usable: a 2xx hcgw answers with.
 * Returns true when the answer must wait for the store (idem_done answers it).
 */
static bool idem_settle(struct gw_request *req, bool usable)
{
    struct req_idem *id = req->idem;
    const struct gw_outcome *o = &req->call.out;
    enum gw_idem_fate fate;

    if (id == NULL || !id->claim.held)
        return false;
    fate = gw_idem_fate(o->failure, o->status, usable, req->call.attempts > 0, id->was_unknown);
    if (fate != GW_IDEM_KEEP) {
        idem_end(req, fate);
        return false;
    }
    return idem_keep(req, o->status, o->body, o->body_len, IDEM_STORED);
}

/* Prepare the recovery search: HelpCrunch's search for the contact the create would make. */
static int idem_prepare_search(struct gw_request *req)
{
    const struct gw_route *search = gw_router_get(GW_ROUTE_CONTACTS_SEARCH);
    struct req_idem *id = req->idem;
    size_t len = 0;
    size_t n;
    int rc;

    rc = gw_idem_search_body(req->up_body, req->up_body_len, &id->search_body, &len);
    if (rc != 0)
        return rc;
    n = strlen(req->w->cfg->upstream.base_url) + strlen(search->up_path) + 1;
    id->search_url = malloc(n);
    if (id->search_url == NULL)
        return GW_ERR_NOMEM;
    snprintf(id->search_url, n, "%s%s", req->w->cfg->upstream.base_url, search->up_path);
    /* A search changes nothing upstream: it may be sent again after a transient failure. */
    prepare_call(req, search->up_method, id->search_url, id->search_body, len, true);
    id->searching = true;
    return 0;
}

/*
 * The recovery search ended. Found: the contact the earlier attempt created is the answer
 * (201, as the create would have answered), and the key's record. Not found: the earlier
 * attempt created nothing, and the create goes now. Failed: nothing is known still; the
 * caller gets the search's failure and may try again with the key.
 */
static void idem_searched(struct gw_request *req)
{
    struct req_idem *id = req->idem;
    struct gw_outcome *o = &req->call.out;
    struct gw_envelope env;
    char *customer = NULL;
    size_t len = 0;
    int rc;

    id->searching = false;
    req->upstream_status = o->status;
    if (req->client_gone || o->failure != GW_OK || o->status < 200 || o->status > 299) {
        idem_end(req, GW_IDEM_UNKNOWN);
        answer_outcome(req, o);
        return;
    }
    rc = gw_idem_search_pick(o->body, o->body_len, &customer, &len);
    if (rc < 0) {
        idem_end(req, GW_IDEM_UNKNOWN);
        gw_envelope_local(&env, rc);
        env.upstream_status = (int)o->status;
        answer_envelope(req, &env);
        return;
    }
    if (rc == 0) {
        if (idem_keep(req, req->route->success_status, customer, len, IDEM_RECOVERED)) {
            id->found = customer;
            id->found_len = len;
            return;
        }
        answer(req, req->route->success_status, customer, len, "application/json");
        return;
    }
    /* The call is reused for the create: the search's attempts count on the access line. */
    id->search_attempts = req->call.attempts;
    id->search_ms = req->call.upstream_ms;
    gw_call_release(&req->call);
    prepare_route_call(req);
    submit(req);
}

/* The answer kept for the key, given again (Idempotent-Replayed: true). @p rec is taken. */
static enum MHD_Result answer_replay(struct gw_request *req, struct gw_idem_record *rec)
{
    req->idem->result = IDEM_REPLAYED;
    req->call.out.failure = GW_OK;
    req->call.out.status = rec->status;
    req->call.out.body = rec->body;
    req->call.out.body_len = rec->len;
    rec->body = NULL;
    answer_call(req);
    return MHD_YES;
}

/*
 * How long a create may hold its key: both its calls' deadlines, the wait for a shared store
 * to keep its answer, and a margin (limits.h).
 */
static uint64_t idem_lease_ms(const struct gw_config *cfg)
{
    uint64_t redis_ms = cfg->redis.url != NULL ? (uint64_t)cfg->redis.timeout_ms : 0;

    return 2u * (uint64_t)cfg->upstream.timeout_ms + redis_ms + GW_IDEM_LEASE_GRACE_MS;
}

/*
 * What the store says of the key decides. New: the create goes. Done with this body: its
 * answer again, no upstream call. Held by another request: 409. Used with another body: 422.
 * Unknown: the earlier attempt's contact is searched for first (when the body names a userId
 * or an email), and the create goes only when it is not found.
 */
static enum MHD_Result idem_begun(struct gw_request *req, int verdict)
{
    struct req_idem *id = req->idem;
    int rc;

    switch (verdict) {
    case GW_IDEM_NEW:
        prepare_route_call(req);
        submit(req);
        return MHD_YES;
    case GW_IDEM_RECOVER:
        id->was_unknown = true;
        rc = idem_prepare_search(req);
        if (rc == 1) {
            /* Nothing to search by: the create goes again. */
            prepare_route_call(req);
            rc = 0;
        }
        if (rc != 0) {
            idem_end(req, GW_IDEM_UNKNOWN);
            return answer_error(req, rc);
        }
        submit(req);
        return MHD_YES;
    case GW_IDEM_REPLAY:
        return answer_replay(req, &id->claim.rec);
    case GW_IDEM_IN_PROGRESS:
        id->result = IDEM_IN_PROGRESS;
        return answer_error(req, GW_ERR_IDEMPOTENCY_KEY_IN_PROGRESS);
    case GW_IDEM_MISMATCH:
        id->result = IDEM_REUSED;
        return answer_error(req, GW_ERR_IDEMPOTENCY_KEY_REUSED);
    default:
        return answer_error(req, verdict < 0 ? verdict : GW_ERR_INTERNAL);
    }
}

/* A store that answered later (GW_IDEM_LATER) has: the key's verdict, or its answer kept. */
static void idem_done(struct gw_idem_claim *c)
{
    struct gw_request *req = c->data;
    struct req_idem *id = req->idem;
    enum idem_wait wait = id->wait;
    char *found = id->found;

    id->wait = IDEM_WAIT_NONE;
    if (wait == IDEM_WAIT_BEGIN) {
        (void)idem_begun(req, c->verdict);
    } else if (found != NULL) {
        id->found = NULL;
        answer(req, req->route->success_status, found, id->found_len, "application/json");
    } else {
        answer_call(req);
    }
}

/*
 * A create with an Idempotency-Key asks the store about it. The connection waits (suspended)
 * while a shared store answers, within the create's own deadline.
 */
static enum MHD_Result idem_start(struct gw_request *req)
{
    struct gw_worker *w = req->w;
    struct req_idem *id = req->idem;
    uint64_t now = now_ms(req);
    int verdict;
    int rc;

    rc = gw_idem_fingerprint(req->up_body, req->up_body_len, id->claim.key.fingerprint);
    if (rc != 0)
        return answer_error(req, rc);
    id->claim.done = idem_done;
    id->claim.data = req;
    verdict = gw_idem_begin(w->idem, &id->claim, now, idem_lease_ms(w->cfg),
                            now + (uint64_t)w->cfg->upstream.timeout_ms);
    if (verdict != GW_IDEM_LATER)
        return idem_begun(req, verdict);
    id->wait = IDEM_WAIT_BEGIN;
    suspend(req);
    return MHD_YES;
}

/* The Idempotency-Key headers of a request: how many, and the first one's value. */
struct idem_header {
    const char *value;
    unsigned count;
};

static enum MHD_Result collect_idem_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    struct idem_header *h = cls;

    (void)kind;
    if (strcasecmp(key, "Idempotency-Key") == 0 && h->count++ == 0)
        h->value = value;
    return MHD_YES;
}

/*
 * A create's Idempotency-Key, when it sends one and the store is on (idempotency.ttl_s): kept
 * in req->idem, scoped to the request's client. Returns 0 (a key, or none), or
 * GW_ERR_INVALID_IDEMPOTENCY_KEY, or GW_ERR_NOMEM.
 */
static int take_idem_key(struct gw_request *req)
{
    struct idem_header h = {NULL, 0};
    struct req_idem *id;
    int rc;

    if (req->route->id != GW_ROUTE_CONTACT_CREATE || req->w->cfg->idempotency.ttl_s == 0)
        return 0;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_idem_header, &h);
    if (h.count == 0)
        return 0;
    id = calloc(1, sizeof(*id));
    if (id == NULL)
        return GW_ERR_NOMEM;
    rc = gw_idem_parse_key(h.value, h.count, id->text);
    if (rc != 0) {
        free(id);
        return rc;
    }
    id->claim.key.scope = req->client;
    id->claim.key.key = id->text;
    req->idem = id;
    return 0;
}

static enum MHD_Result start_upstream(struct gw_request *req)
{
    const struct gw_route *r = req->route;
    int rc;

    rc = gw_body_build(r, &req->match, req->body.data, req->body.len, &req->up_body,
                       &req->up_body_len);
    if (rc != 0)
        return answer_error(req, rc);
    rc = build_url(req);
    if (rc != 0)
        return answer_error(req, rc);
    if (req->idem != NULL)
        return idem_start(req);
    prepare_route_call(req);
    submit(req);
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
 * GW_ERR_UNAUTHENTICATED, GW_ERR_CORS_ORIGIN_NOT_ALLOWED (the client's origins do not hold the
 * request's Origin) or GW_ERR_FORBIDDEN; req->client and req->auth_refusal are set for
 * the access line. The token is hashed where libmicrohttpd keeps it, and never copied.
 */
static int authorize(struct gw_request *req)
{
    const struct gw_config *cfg = req->w->cfg;
    struct auth_headers h;
    struct gw_tls_peer peer;
    const struct gw_client *client = NULL;
    enum gw_auth_outcome o;
    int rc = 0;

    if (gw_auth_route_public(req->route) || !gw_auth_required(cfg))
        goto out;
    memset(&h, 0, sizeof(h));
    h.identity_name = cfg->auth.trust_mesh_identity ? cfg->auth.mesh_identity_header : NULL;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_auth_header, &h);
    /* A client certificate is only looked at when a token does not decide (auth.h). */
    if (cfg->listen.tls.client_ca_file != NULL && h.in.authorization_count == 0) {
        gw_tls_peer_get(req->conn, &peer);
        h.in.peer = &peer;
    }
    o = gw_auth_identify(cfg, &h.in, &client);
    if (o != GW_AUTH_OK) {
        req->auth_refusal = gw_auth_outcome_name(o);
        rc = GW_ERR_UNAUTHENTICATED;
        goto out;
    }
    snprintf(req->client, sizeof(req->client), "%s", client->name);
    /* A client's origins bind its credential to the pages of those origins: from any other
     * page, nothing it asks is done. (Any program can send any Origin: this narrows what a
     * browser may do, it proves nothing about who calls.) */
    if (req->origin_sent &&
        !gw_cors_client_allows(client, req->origin_whole ? req->origin : NULL)) {
        req->auth_refusal = "origin_not_allowed";
        rc = GW_ERR_CORS_ORIGIN_NOT_ALLOWED;
    } else if (req->route != NULL && !gw_auth_allows(client, req->route)) {
        req->auth_refusal = "route_not_allowed";
        rc = GW_ERR_FORBIDDEN;
    }
out:
    return rc;
}

/* The headers of CORS: Origin, Access-Control-Request-Method, each with how often it came. */
struct cors_headers {
    const char *origin;
    unsigned origins;
    const char *method;
    unsigned methods;
};

static enum MHD_Result collect_cors_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    struct cors_headers *h = cls;

    (void)kind;
    if (strcasecmp(key, "Origin") == 0) {
        if (h->origins++ == 0)
            h->origin = value;
    } else if (strcasecmp(key, "Access-Control-Request-Method") == 0) {
        if (h->methods++ == 0)
            h->method = value;
    }
    return MHD_YES;
}

/*
 * The browser's part of a request (cors.h): its Origin, whether its answers name that origin,
 * and whether it is a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method,
 * while a cors group is configured (without one, OPTIONS stays a 405 like any other method the
 * path lacks).
 */
static void take_cors(struct gw_request *req)
{
    const struct gw_config *cfg = req->w->cfg;
    struct cors_headers h = {NULL, 0, NULL, 0};

    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_cors_header, &h);
    /* Kept for the answers and the access line. A longer one names no origin (none in the
     * configuration is longer), and only its log field is cut. Out of memory: none named. */
    req->origin = h.origins == 1 ? strndup(h.origin, GW_MAX_ORIGIN_BYTES) : NULL;
    req->origin_sent = h.origins > 0;
    req->origin_whole = req->origin != NULL && strlen(h.origin) <= GW_MAX_ORIGIN_BYTES;
    req->cors_origin = gw_cors_allow_origin(cfg, req->origin_whole ? req->origin : NULL);
    req->vary_origin = cfg->cors.enabled;
    req->preflight = cfg->cors.enabled && h.origins > 0 && h.methods > 0 &&
                     strcmp(req->method, "OPTIONS") == 0;
    req->preflight_method_ok = h.methods == 1 && gw_cors_valid_method(h.method);
}

/*
 * A preflight's verdict from @p rc, the router's answer to its OPTIONS: 0 (the 204), or the
 * error to answer. A preflight carries no credential, so it is judged by its origin first:
 * from an origin not allowed it learns nothing, not even a 404.
 */
static int preflight_verdict(const struct gw_request *req, int rc)
{
    if (req->cors_origin == NULL)
        return GW_ERR_CORS_ORIGIN_NOT_ALLOWED;
    if (rc != GW_ERR_METHOD_NOT_ALLOWED)
        return rc; /* no such path (404), or a URI too long (414) */
    if (!req->preflight_method_ok)
        return GW_ERR_INVALID_PREFLIGHT;
    return 0;
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
    const char *ct;
    unsigned long long clen;
    int rc;
    int auth;

    identify(req, true);
    snprintf(req->method, sizeof(req->method), "%s", method);
    req->state = REQ_BODY;
    /* Before any answer, so that every answer to an allowed origin names it. */
    take_cors(req);

    if (__atomic_load_n(w->stopping, __ATOMIC_RELAXED) || w->draining)
        return answer_error(req, GW_ERR_SHUTTING_DOWN);
    if (req->uri_too_long)
        rc = GW_ERR_URI_TOO_LONG;
    else
        rc = gw_router_match(method, req->uri, &req->match);
    req->route = req->match.route;
    if (req->preflight) {
        /* Not a caller of hcgw yet: the browser asks whether its page may call. */
        rc = preflight_verdict(req, rc);
    } else {
        /* A caller without a valid credential is answered at once, before its body is read;
         * a known client refused this route gets its 403 after the body, like a validation
         * error, and before any (so it learns nothing about a route it may not call). */
        auth = authorize(req);
        if (auth == GW_ERR_UNAUTHENTICATED)
            return answer_error(req, auth);
        if (auth != 0)
            rc = auth;
    }
    if (parse_length(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH),
                     &clen) &&
        clen > (unsigned long long)w->cfg->limits.max_body_bytes)
        return answer_error(req, GW_ERR_BODY_TOO_LARGE);
    if (rc != 0 || req->preflight) {
        req->pending = rc; /* a preflight's 204 too: after its (bounded, unused) body */
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
    /* Like a validation error, a bad key is answered after the body, with no upstream call. */
    req->pending = take_idem_key(req);
    return MHD_YES;
}

static enum MHD_Result on_request_read(struct gw_request *req)
{
    if (req->pending != GW_OK)
        return answer_error(req, req->pending);
    if (req->preflight)
        return answer_preflight(req);
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
    identify(req, false);
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
    enum MHD_Result r;

    (void)cls;
    (void)url;
    (void)version;
    if (req == NULL)
        return MHD_NO; /* out of memory at the URI callback: drop the connection */
    switch (req->state) {
    case REQ_NEW:
        gw_conn_headers_done(gw_conn_of(conn));
        if (gw_framing_check(conn, method, url, version, target_len(req)) != 0)
            r = refuse_malformed(req, method);
        else
            r = on_headers(req, method);
        /* An answer queued at the headers, before any body, makes libmicrohttpd (0.9.75 and
         * 1.0.x alike) refuse the rest of the request and any further one: it closes. */
        if (req->state == REQ_ANSWERED)
            req->closes = true;
        return r;
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
    gw_trace_log(&l, &req->trace);
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

/* What the contact cache did for this request, for its counters, or -1. */
static int cache_lookup(const struct gw_request *req)
{
    switch (req->call.cache) {
    case GW_CACHE_HIT:
        return req->revalidated ? GW_LOOKUP_REVALIDATED : GW_LOOKUP_HIT;
    case GW_CACHE_MISS:
    case GW_CACHE_COLLAPSED:
        return GW_LOOKUP_MISS;
    case GW_CACHE_BYPASS:
        return GW_LOOKUP_BYPASS;
    case GW_CACHE_UNUSED:
    default:
        return -1;
    }
}

static const char *const lookup_words[GW_LOOKUP__COUNT] = {"hit", "miss", "bypass",
                                                           "revalidated"};

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
    int lookup;
    int attempts;
    double upstream_ms;

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
        identify(req, false);
    /* Every claim on an Idempotency-Key ends at its answer, and nothing waits on the store
     * any more (a suspended request is not completed); this is a last line of defence. */
    if (req->idem != NULL) {
        gw_idem_cancel(w->idem, &req->idem->claim);
        idem_end(req, req->idem->was_unknown || req->call.attempts > 0 ? GW_IDEM_UNKNOWN
                                                                        : GW_IDEM_FORGET);
    }
    attempts = req->call.attempts + (req->idem != NULL ? req->idem->search_attempts : 0);
    upstream_ms = req->call.upstream_ms + (req->idem != NULL ? req->idem->search_ms : 0);
    gw_metrics_request(w->metrics, req->route, req->method[0] ? req->method : NULL, status,
                       (uint64_t)(ms * 1000.0));
    lookup = cache_lookup(req);
    if (lookup >= 0) {
        gw_metrics_inc(&w->metrics->cache_lookups[lookup]);
        if (req->call.cache == GW_CACHE_COLLAPSED)
            gw_metrics_inc(&w->metrics->calls_saved[GW_SAVED_COLLAPSED]);
        else if (lookup == GW_LOOKUP_HIT)
            gw_metrics_inc(&w->metrics->calls_saved[GW_SAVED_CACHE]);
        else if (lookup == GW_LOOKUP_REVALIDATED)
            gw_metrics_inc(&w->metrics->calls_saved[GW_SAVED_NOT_MODIFIED]);
    }
    if (req->idem != NULL && req->idem->result == IDEM_REPLAYED)
        gw_metrics_inc(&w->metrics->idempotency_replays);
    access = gw_log_enabled(w->log, GW_LOG_INFO);
    audit = gw_auth_route_is_write(req->route);
    if (access) {
        gw_log_begin(w->log, &l, GW_LOG_INFO, "access");
        gw_log_str(&l, "request_id", req->request_id);
        gw_trace_log(&l, &req->trace);
        gw_log_str(&l, "method", req->method[0] ? req->method : NULL);
        gw_log_str(&l, "route", req->route != NULL ? req->route->name : NULL);
        gw_log_str(&l, "contact_id", req->match.id[0] ? req->match.id : NULL);
        gw_log_str(&l, "client", req->client[0] ? req->client : NULL);
        if (req->origin != NULL)
            gw_log_str(&l, "origin", req->origin);
        gw_log_int(&l, "status", status);
        /* Only hcgw's own envelopes have a code: not a cut, not libmicrohttpd's answers. */
        if (!req->client_gone && req->err != GW_OK)
            gw_log_str(&l, "code", gw_err_info(req->err)->code);
        if (req->auth_refusal != NULL)
            gw_log_str(&l, "auth", req->auth_refusal);
        if (req->upstream_status > 0)
            gw_log_int(&l, "upstream_status", req->upstream_status);
        if (req->call.http_version != 0)
            gw_log_str(&l, "upstream_http_version", req->call.http_version == 20   ? "2"
                                                    : req->call.http_version == 11 ? "1.1"
                                                                                   : "1.0");
        gw_log_int(&l, "attempts", attempts);
        gw_log_ms(&l, "duration_ms", ms);
        if (attempts > 0)
            gw_log_ms(&l, "upstream_ms", upstream_ms);
        if (req->call.cache == GW_CACHE_COLLAPSED)
            gw_log_str(&l, "cache", "collapsed");
        else if (lookup >= 0)
            gw_log_str(&l, "cache", lookup_words[lookup]);
        if (req->call.coalesced > 0)
            gw_log_int(&l, "coalesced", req->call.coalesced);
        if (req->idem != NULL && req->idem->result != IDEM_NONE)
            gw_log_str(&l, "idempotency", idem_words[req->idem->result]);
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
    /* A connection that libmicrohttpd closes after this answer is not watched for a next
     * request (its watch would be added to the loop only to be taken out at once). */
    gw_conn_request_done(gw_conn_of(conn),
                         toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && !req->closes);
    gw_call_release(&req->call);
    gw_buf_free(&req->body);
    free(req->up_body);
    free(req->url);
    free(req->origin);
    gw_trace_clear(&req->trace);
    if (req->idem != NULL) {
        free(req->idem->search_body);
        free(req->idem->search_url);
        free(req->idem->found);
        free(req->idem->claim.rec.body);
        free(req->idem);
    }
    if (req->state == REQ_ANSWERED)
        w->answering--;
    free(req);
    w->active--;
}

/* The connection's clock cut the request at its header deadline: the access line says 408. */
static void header_timed_out(void *data)
{
    struct gw_request *req = data;

    req->header_timeout = true;
}

static const struct gw_conn_hooks conn_hooks = {
    .hung_up = client_hung_up,
    .cut = header_timed_out,
};

int gw_request_worker_init(struct gw_worker *w)
{
    w->conns = gw_conns_new(w->loop, &w->cfg, &conn_hooks, &w->mhd_needs_run, w->log);
    if (w->conns == NULL)
        return -1;
    w->gzip = gw_gzip_new();
    if (w->gzip == NULL) {
        gw_conns_free(w->conns);
        w->conns = NULL;
        return -1;
    }
    return 0;
}

void gw_request_worker_fini(struct gw_worker *w)
{
    gw_gzip_free(w->gzip);
    w->gzip = NULL;
    gw_conns_free(w->conns);
    w->conns = NULL;
}

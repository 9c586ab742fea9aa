/*
 * Answers on a libmicrohttpd connection (answer.h). Which headers an error answer carries is
 * not decided here: each row of the error table (envelope.c) says it, and this file only
 * writes them.
 */
#include "hcgw/answer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/cors.h"
#include "hcgw/envelope.h"
#include "hcgw/gzip.h"
#include "hcgw/upstream.h"

/* The fields of Vary, in the order they are named (answer.h, enum gw_vary). */
static const struct {
    unsigned bit;
    const char *name;
} vary_fields[] = {
    {GW_VARY_ORIGIN, "Origin"},
    {GW_VARY_ACCEPT_ENCODING, "Accept-Encoding"},
};

/* Room for every field of vary_fields, with ", " between them. */
#define VARY_BYTES 64

/* The one Vary header of an answer: every field whose bit is set, in one line. */
static void add_vary(const struct gw_answer *a, struct MHD_Response *resp)
{
    char v[VARY_BYTES];
    size_t n = 0;
    size_t i;
    int k;

    for (i = 0; i < sizeof(vary_fields) / sizeof(vary_fields[0]); i++) {
        if ((a->vary & vary_fields[i].bit) == 0)
            continue;
        k = snprintf(v + n, sizeof(v) - n, "%s%s", n > 0 ? ", " : "", vary_fields[i].name);
        if (k < 0 || (size_t)k >= sizeof(v) - n)
            return; /* cannot happen: VARY_BYTES holds them all */
        n += (size_t)k;
    }
    if (n > 0)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, v);
}

/* gzip *body in place when @p a allows it and it gets smaller; true when it did. */
static bool gzip_in_place(const struct gw_answer *a, char **body, size_t *len)
{
    char *out = NULL;
    size_t out_len = 0;

    if (a->gzip == NULL || *body == NULL || *len < a->gzip_min_bytes)
        return false;
    if (gw_gzip_compress(a->gzip, a->gzip_level, *body, *len, &out, &out_len) != 0)
        return false; /* not smaller, or no memory for it: the body goes as it is */
    free(*body);
    *body = out;
    *len = out_len;
    return true;
}

void gw_answer_encode(struct gw_answer *a, char **body, size_t *len)
{
    if (!a->gzipped && gzip_in_place(a, body, len))
        a->gzipped = true;
}

/*
 * The body of an answer with @p status as it goes, compressed unless its caller did it
 * already or the status has no body (204, 304). True when it is gzip.
 */
static bool encode(const struct gw_answer *a, unsigned status, char **body, size_t *len)
{
    if (*body == NULL || status == MHD_HTTP_NO_CONTENT || status == MHD_HTTP_NOT_MODIFIED)
        return false;
    return a->gzipped || gzip_in_place(a, body, len);
}

static void add_common_headers(const struct gw_answer *a, struct MHD_Response *resp,
                               const char *content_type)
{
    MHD_add_response_header(resp, "X-Request-Id", a->request_id);
    if (content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (a->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (a->replayed)
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    /* Errors too: a script reads a 401 or a 429 envelope only when its origin is named. */
    if (a->cors_origin != NULL) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", a->cors_origin);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", GW_CORS_EXPOSE_HEADERS);
    }
    add_vary(a, resp);
}

/* The contact cache's word on a success answer: its ETag, where it came from, how old. */
static void add_cache_headers(const struct gw_answer *a, struct MHD_Response *resp)
{
    char num[24];

    if (a->etag != NULL && a->etag[0] != '\0')
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, a->etag);
    if (a->cache_status != NULL)
        MHD_add_response_header(resp, "Cache-Status", a->cache_status);
    if (a->age_s >= 0) {
        snprintf(num, sizeof(num), "%ld", a->age_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_AGE, num);
    }
}

/* Queue @p resp and drop our reference. */
static enum MHD_Result queue(const struct gw_answer *a, unsigned status,
                             struct MHD_Response *resp)
{
    enum MHD_Result r = MHD_queue_response(a->conn, status, resp);

    MHD_destroy_response(resp);
    return r;
}

enum MHD_Result gw_answer_body(const struct gw_answer *a, unsigned status, char *body,
                               size_t len, const char *content_type)
{
    struct MHD_Response *resp;
    bool gzipped = encode(a, status, &body, &len);

    if (body != NULL)
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    else
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    add_common_headers(a, resp, content_type);
    if (gzipped)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    add_cache_headers(a, resp);
    return queue(a, status, resp);
}

enum MHD_Result gw_answer_preflight(const struct gw_answer *a, const char *methods,
                                    long max_age_s)
{
    struct MHD_Response *resp;
    char num[24];

    resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    add_common_headers(a, resp, NULL);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", methods);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", GW_CORS_ALLOW_HEADERS);
    snprintf(num, sizeof(num), "%ld", max_age_s);
    MHD_add_response_header(resp, "Access-Control-Max-Age", num);
    return queue(a, MHD_HTTP_NO_CONTENT, resp);
}

enum MHD_Result gw_answer_json_text(const struct gw_answer *a, unsigned status,
                                    const char *text)
{
    size_t n = strlen(text);
    char *copy = malloc(n + 1);

    if (copy == NULL)
        return MHD_NO;
    memcpy(copy, text, n + 1);
    return gw_answer_body(a, status, copy, n, "application/json");
}

bool gw_answer_closes(const struct gw_answer *a, enum gw_err err)
{
    return a->close || (err != GW_OK && (gw_err_info(err)->headers & GW_HDR_CLOSE) != 0);
}

enum MHD_Result gw_answer_envelope(const struct gw_answer *a, struct gw_envelope *env,
                                   int *status)
{
    const enum gw_err err = env->err;  /* env is cleared below */
    const struct gw_err_info *info = gw_err_info(err);
    long retry_after_s = env->retry_after_s;
    struct MHD_Response *resp;
    char num[24];
    size_t len = 0;
    char *text = gw_envelope_render(env, a->request_id, &len);
    bool gzipped;

    *status = env->status;
    gw_envelope_clear(env);
    if (text == NULL)
        return MHD_NO;
    gzipped = encode(a, (unsigned)*status, &text, &len);
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    add_common_headers(a, resp, "application/json");
    if (gzipped)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    if ((info->headers & GW_HDR_ALLOW) && a->allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, a->allow);
    if (info->headers & GW_HDR_WWW_AUTHENTICATE)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"hcgw\"");
    if ((info->headers & GW_HDR_RETRY_AFTER) && retry_after_s > 0) {
        snprintf(num, sizeof(num), "%ld", retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, num);
    }
    /* add_common_headers wrote it already for a->close. */
    if (gw_answer_closes(a, err) && !a->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return queue(a, (unsigned)*status, resp);
}

enum MHD_Result gw_answer_error(const struct gw_answer *a, enum gw_err err, int *status)
{
    struct gw_envelope env;

    gw_envelope_local(&env, err);
    return gw_answer_envelope(a, &env, status);
}

enum MHD_Result gw_answer_outcome(const struct gw_answer *a, const struct gw_outcome *o,
                                  const struct gw_secret *secret, enum gw_err *err,
                                  int *status)
{
    struct gw_envelope env;

    if (o->failure != GW_OK)
        gw_envelope_local(&env, o->failure);
    else
        gw_envelope_from_upstream(&env, (int)o->status, o->body, o->body_len, secret);
    env.retry_after_s = o->retry_after_s;
    *err = env.err;
    return gw_answer_envelope(a, &env, status);
}

/*
 * The one error envelope. A table maps each enum gw_err to the HTTP status hcgw answers, a
 * stable machine code and a message; an upstream answer is normalized by mapping its status to
 * one of those values and reading the specific entries ("details") out of whichever of
 * HelpCrunch's error-body shapes it sent. Rendering builds the envelope with json-c. Pure
 * functions on caller-owned data; any thread.
 */
#include "hcgw/envelope.h"

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/err.h"
#include "hcgw/json.h"
#include "hcgw/limits.h"
#include "hcgw/secret.h"
#include "hcgw/text.h"

/*
 * Indexed by -err. Row 0 (GW_OK) is left empty on purpose: GW_OK is not an error, and
 * gw_err_info() answers it, like any value outside the table, with GW_ERR_INTERNAL's row.
 */
static const struct gw_err_info err_table[] = {
    [-GW_ERR_ROUTE_NOT_FOUND] = {
        .status = 404, .code = "route_not_found",
        .message = "No such route" },
    [-GW_ERR_METHOD_NOT_ALLOWED] = {
        .status = 405, .code = "method_not_allowed",
        .message = "Method not allowed on this route",
        .headers = GW_HDR_ALLOW },
    [-GW_ERR_INVALID_CONTACT_ID] = {
        .status = 400, .code = "invalid_contact_id",
        .message = "The contact id must be a positive decimal integer of at most 19 digits" },
    [-GW_ERR_INVALID_TAG] = {
        .status = 400, .code = "invalid_tag",
        .message = "A tag name must be 1 to 100 characters of valid UTF-8 without control "
                   "characters" },
    [-GW_ERR_INVALID_BODY] = {
        .status = 400, .code = "invalid_body",
        .message = "The request body is not JSON of the expected shape" },
    [-GW_ERR_INVALID_QUERY] = {
        .status = 400, .code = "invalid_query",
        .message = "The query string is not valid for this route" },
    [-GW_ERR_UNSUPPORTED_MEDIA_TYPE] = {
        .status = 415, .code = "unsupported_media_type",
        .message = "The request body must be sent with Content-Type: application/json" },
    [-GW_ERR_BODY_TOO_LARGE] = {
        .status = 413, .code = "body_too_large",
        .message = "The request body is larger than the configured limit",
        .headers = GW_HDR_CLOSE },
    [-GW_ERR_INVALID_REQUEST] = {
        .status = 400, .code = "invalid_request",
        .message = "HelpCrunch rejected the request" },
    [-GW_ERR_NOT_FOUND] = {
        .status = 404, .code = "not_found",
        .message = "Contact not found" },
    [-GW_ERR_CONFLICT] = {
        .status = 409, .code = "conflict",
        .message = "HelpCrunch reported a conflict" },
    [-GW_ERR_RATE_LIMITED] = {
        .status = 429, .code = "rate_limited",
        .message = "The HelpCrunch request quota is exhausted; retry later",
        .headers = GW_HDR_RETRY_AFTER },
    [-GW_ERR_UPSTREAM_AUTH_FAILED] = {
        .status = 502, .code = "upstream_auth_failed",
        .message = "HelpCrunch refused the gateway's API key" },
    [-GW_ERR_UPSTREAM_ERROR] = {
        .status = 502, .code = "upstream_error",
        .message = "HelpCrunch answered with an error" },
    [-GW_ERR_UPSTREAM_BAD_RESPONSE] = {
        .status = 502, .code = "upstream_bad_response",
        .message = "HelpCrunch sent an answer the gateway cannot use" },
    [-GW_ERR_UPSTREAM_UNAVAILABLE] = {
        .status = 502, .code = "upstream_unavailable",
        .message = "HelpCrunch could not be reached" },
    [-GW_ERR_UPSTREAM_TIMEOUT] = {
        .status = 504, .code = "upstream_timeout",
        .message = "HelpCrunch did not answer in time" },
    [-GW_ERR_SHUTTING_DOWN] = {
        .status = 503, .code = "shutting_down",
        .message = "The gateway is shutting down",
        .headers = GW_HDR_CLOSE },
    [-GW_ERR_OVERLOADED] = {
        .status = 503, .code = "overloaded",
        .message = "The gateway is at its limit of requests in flight" },
    [-GW_ERR_INTERNAL] = {
        .status = 500, .code = "internal_error",
        .message = "Internal error" },
    [-GW_ERR_NOMEM] = {
        .status = 500, .code = "internal_error",
        .message = "Internal error" },
    [-GW_ERR_URI_TOO_LONG] = {
        .status = 414, .code = "uri_too_long",
        .message = "The request URI is longer than the gateway accepts" },
    [-GW_ERR_UNAUTHENTICATED] = {
        .status = 401, .code = "unauthenticated",
        .message = "A valid client credential is required (Authorization: Bearer <token>)",
        .headers = GW_HDR_WWW_AUTHENTICATE },
    [-GW_ERR_FORBIDDEN] = {
        .status = 403, .code = "forbidden",
        .message = "This client may not call this route" },
    [-GW_ERR_MALFORMED_REQUEST] = {
        .status = 400, .code = "malformed_request",
        .message = "The request is not well-formed HTTP/1.1 (its framing is ambiguous or it "
                   "holds bytes HTTP does not allow)",
        .headers = GW_HDR_CLOSE },
    /* /readyz while the key is refused: not ready, so that an orchestrator notices; /healthz
     * stays 200. */
    [-GW_ERR_KEY_REFUSED] = {
        .status = 503, .code = "upstream_auth_failed",
        .message = "HelpCrunch refused the gateway's API key" },
    /* Idempotency-Key on POST /contacts (idem.h): none of them reaches HelpCrunch. */
    [-GW_ERR_INVALID_IDEMPOTENCY_KEY] = {
        .status = 400, .code = "invalid_idempotency_key",
        .message = "Idempotency-Key must be sent once, as 1 to 255 printable ASCII characters "
                   "without spaces (bare, or as a quoted string)" },
    [-GW_ERR_IDEMPOTENCY_KEY_REUSED] = {
        .status = 422, .code = "idempotency_key_reused",
        .message = "This Idempotency-Key was already used with a different request body" },
    [-GW_ERR_IDEMPOTENCY_KEY_IN_PROGRESS] = {
        .status = 409, .code = "idempotency_key_in_progress",
        .message = "A request with this Idempotency-Key is still in progress; retry later" },
    /* Browsers (cors.h): a preflight from an origin cors.allow_origins does not list, or a
     * client's token from an origin outside its own origins. */
    [-GW_ERR_CORS_ORIGIN_NOT_ALLOWED] = {
        .status = 403, .code = "cors_origin_not_allowed",
        .message = "This browser origin may not call the gateway (cors.allow_origins, or the "
                   "client's origins)" },
    [-GW_ERR_INVALID_PREFLIGHT] = {
        .status = 400, .code = "invalid_preflight",
        .message = "A CORS preflight needs exactly one Access-Control-Request-Method naming an "
                   "HTTP method" },
};

/*
 * One row per enum value (row 0 for GW_OK included): an error added to err.h without a row
 * here stops the build, since GW_ERR__LAST moves and the array does not. A row forgotten in the
 * middle is caught by the unit test, which checks every row is filled.
 */
_Static_assert(sizeof(err_table) / sizeof(err_table[0]) == (size_t)-GW_ERR__LAST,
               "err_table needs exactly one row per enum gw_err value");

/* The generic HelpCrunch entry that says nothing specific; it is never a detail. */
static const char generic_code[] = "invalid_request";

/* The value gw_err_info() answers for: GW_OK and strays become GW_ERR_INTERNAL. */
static enum gw_err known_err(enum gw_err err)
{
    /* Compare before negating, so that no value a caller casts in can overflow. */
    if (err >= GW_OK || err <= GW_ERR__LAST)
        return GW_ERR_INTERNAL;
    return err;
}

const struct gw_err_info *gw_err_info(enum gw_err err)
{
    return &err_table[-(int)known_err(err)];
}

void gw_envelope_local(struct gw_envelope *env, enum gw_err err)
{
    /* env may be uninitialized memory, so nothing in it is read (or freed). */
    memset(env, 0, sizeof(*env));
    env->err = known_err(err);
    env->status = gw_err_info(env->err)->status;
}

void gw_envelope_clear(struct gw_envelope *env)
{
    if (env == NULL)
        return;
    json_object_put(env->details);
    memset(env, 0, sizeof(*env));
}

/* The error value and hcgw status for a HelpCrunch status; see the table in envelope.h. */
static enum gw_err map_upstream_status(int upstream_status, int *status)
{
    enum gw_err err;

    switch (upstream_status) {
    case 400:
        err = GW_ERR_INVALID_REQUEST;
        break;
    case 401:
    case 403:
        err = GW_ERR_UPSTREAM_AUTH_FAILED;
        break;
    case 404:
        err = GW_ERR_NOT_FOUND;
        break;
    case 409:
        err = GW_ERR_CONFLICT;
        break;
    case 422:
        err = GW_ERR_INVALID_REQUEST;
        break;
    case 429:
        err = GW_ERR_RATE_LIMITED;
        break;
    default:
        err = GW_ERR_UPSTREAM_ERROR;
        break;
    }
    /* 422 is passed on as 422: the caller's request was understood but refused. */
    *status = upstream_status == 422 ? 422 : gw_err_info(err)->status;
    return err;
}

/* Only answers hcgw passes on as 4xx carry details; a 502 or 429 says nothing the caller can fix. */
static bool status_keeps_details(int status)
{
    return status == 400 || status == 404 || status == 409 || status == 422;
}

/*
 * The length of the longest prefix of @p s (@p len bytes) that is at most @p max bytes and does
 * not end inside a UTF-8 sequence. The parser already rejected invalid UTF-8; the walk back is
 * still bounded to the three continuation bytes a sequence can have.
 */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    size_t n;
    int back = 0;

    if (len <= max)
        return len;
    n = max;
    while (n > 0 && back < 3 && ((unsigned char)s[n] & 0xC0) == 0x80) {
        n--;
        back++;
    }
    return n;
}

/*
 * A new json string holding @p s (@p len bytes) with the key masked and cut to
 * GW_MAX_DETAIL_BYTES. The key is masked on the whole private copy before cutting: cutting
 * first could leave a prefix of the key, no longer a whole occurrence, unmasked at the end.
 * Returns NULL when out of memory.
 */
static json_object *detail_string(const char *s, size_t len, const struct gw_secret *secret)
{
    json_object *out = NULL;
    char *copy = malloc(len + 1);

    if (copy == NULL)
        goto out;
    if (len > 0)
        memcpy(copy, s, len);
    copy[len] = '\0';
    if (secret != NULL)
        gw_secret_redact(secret, copy, len);
    out = json_object_new_string_len(copy, (int)utf8_cut(copy, len, GW_MAX_DETAIL_BYTES));
out:
    free(copy);
    return out;
}

/* Add {"code","message"} to @p details (NULL → ""). Returns 0, or -1 when out of memory. */
static int add_detail(json_object *details, const char *code, size_t code_len, const char *message,
                      size_t message_len, const struct gw_secret *secret)
{
    int rc = -1;
    json_object *entry = json_object_new_object();
    json_object *jcode = NULL;
    json_object *jmessage = NULL;

    if (entry == NULL)
        goto out;
    jcode = detail_string(code != NULL ? code : "", code != NULL ? code_len : 0, secret);
    jmessage = detail_string(message != NULL ? message : "", message != NULL ? message_len : 0,
                             secret);
    if (jcode == NULL || jmessage == NULL)
        goto out;
    /* json_object_object_add does not take the value when it fails, so it is put below. */
    if (json_object_object_add(entry, "code", jcode) != 0)
        goto out;
    jcode = NULL;
    if (json_object_object_add(entry, "message", jmessage) != 0)
        goto out;
    jmessage = NULL;
    if (json_object_array_add(details, entry) != 0)
        goto out;
    entry = NULL;
    rc = 0;
out:
    json_object_put(jcode);
    json_object_put(jmessage);
    json_object_put(entry);
    return rc;
}

static bool details_full(json_object *details)
{
    return json_object_array_length(details) >= GW_MAX_DETAILS;
}

static bool is_generic(const char *code, size_t len)
{
    return code != NULL && len == sizeof(generic_code) - 1 && memcmp(code, generic_code, len) == 0;
}

/* The string member @p key of @p obj, or NULL (also when it is not a string). */
static const char *member_string(json_object *obj, const char *key, size_t *len)
{
    json_object *v = NULL;

    *len = 0;
    if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/*
 * Entries of the {"errors":[{"code","message"},…]} shape. An entry that is not an object, or
 * has neither a string code nor a string message, or is the generic invalid_request, is skipped.
 */
static void read_entries(json_object *entries, json_object *details,
                         const struct gw_secret *secret)
{
    size_t n = json_object_array_length(entries);

    for (size_t i = 0; i < n && !details_full(details); i++) {
        json_object *e = json_object_array_get_idx(entries, i);
        size_t code_len;
        size_t message_len;
        const char *code;
        const char *message;

        if (!json_object_is_type(e, json_type_object))
            continue;
        code = member_string(e, "code", &code_len);
        message = member_string(e, "message", &message_len);
        if ((code == NULL && message == NULL) || is_generic(code, code_len))
            continue;
        if (add_detail(details, code, code_len, message, message_len, secret) != 0)
            return;
    }
}

/* {"field":"message"} or {"field":["message",…]}: one {"code":field,"message":…} each. */
static void read_field_map(json_object *map, json_object *details, const struct gw_secret *secret)
{
    struct json_object_iterator it = json_object_iter_begin(map);
    struct json_object_iterator end = json_object_iter_end(map);

    for (; !json_object_iter_equal(&it, &end) && !details_full(details);
         json_object_iter_next(&it)) {
        const char *field = json_object_iter_peek_name(&it);
        json_object *v = json_object_iter_peek_value(&it);
        size_t field_len = strlen(field);

        if (json_object_is_type(v, json_type_string)) {
            if (add_detail(details, field, field_len, json_object_get_string(v),
                           (size_t)json_object_get_string_len(v), secret) != 0)
                return;
        } else if (json_object_is_type(v, json_type_array)) {
            size_t n = json_object_array_length(v);

            for (size_t i = 0; i < n && !details_full(details); i++) {
                json_object *m = json_object_array_get_idx(v, i);

                if (!json_object_is_type(m, json_type_string))
                    continue;
                if (add_detail(details, field, field_len, json_object_get_string(m),
                               (size_t)json_object_get_string_len(m), secret) != 0)
                    return;
            }
        }
    }
}

/*
 * The "code" of the {"message","success","code","errors"} shape as text: a string as is, an
 * integer in decimal (into @p buf), anything else NULL.
 */
static const char *shape_code(json_object *root, char *buf, size_t size, size_t *len)
{
    json_object *v = NULL;
    int n;

    *len = 0;
    if (!json_object_object_get_ex(root, "code", &v))
        return NULL;
    if (json_object_is_type(v, json_type_string)) {
        *len = (size_t)json_object_get_string_len(v);
        return json_object_get_string(v);
    }
    if (!json_object_is_type(v, json_type_int))
        return NULL;
    n = snprintf(buf, size, "%" PRId64, json_object_get_int64(v));
    if (n < 0 || (size_t)n >= size)
        return NULL;
    *len = (size_t)n;
    return buf;
}

/* Every detail the error body @p root holds, in whichever of HelpCrunch's shapes. */
static void read_details(json_object *root, json_object *details, const struct gw_secret *secret)
{
    json_object *errors = NULL;
    char code_buf[24];
    size_t code_len;
    size_t message_len;
    const char *code;
    const char *message;

    if (!json_object_is_type(root, json_type_object))
        return;
    code = shape_code(root, code_buf, sizeof(code_buf), &code_len);
    message = member_string(root, "message", &message_len);

    if (json_object_object_get_ex(root, "errors", &errors)) {
        if (json_object_is_type(errors, json_type_array)) {
            read_entries(errors, details, secret);
        } else if (json_object_is_type(errors, json_type_object)) {
            read_field_map(errors, details, secret);
        } else if (json_object_is_type(errors, json_type_string)) {
            /*
             * A bare string names no field; the shape's own code is the best code it has,
             * unless that is the generic one, which says nothing.
             */
            bool generic = is_generic(code, code_len);

            add_detail(details, generic ? NULL : code, code_len,
                       json_object_get_string(errors),
                       (size_t)json_object_get_string_len(errors), secret);
        }
    }

    /* The third shape with nothing usable under "errors" still has its own code and message. */
    if (json_object_array_length(details) == 0 && (code != NULL || message != NULL) &&
        !is_generic(code, code_len))
        add_detail(details, code, code_len, message, message_len, secret);
}

/*
 * Parse @p body as one JSON value, strictly, bounded by GW_MAX_JSON_DEPTH, as UTF-8. Returns
 * the value, or NULL for anything else (HTML pages, "Ok", truncated JSON, trailing bytes).
 */
static json_object *parse_body(const char *body, size_t len)
{
    json_object *root = NULL;
    json_tokener *tok = NULL;

    if (body == NULL || len == 0 || len > INT_MAX)
        goto out;
    /*
     * json-c's JSON_TOKENER_VALIDATE_UTF8 lets overlong forms, encoded surrogates and code
     * points past U+10FFFF through (found by tests/fuzz/fuzz_envelope), and a detail would
     * carry them into hcgw's own answer. The strict check comes first; json-c's decoding of
     * \u escapes only ever yields valid UTF-8 (a lone surrogate becomes U+FFFD).
     */
    if (gw_text_utf8_count(body, len) < 0)
        goto out;
    /* What is JSON is gw_json_check's to say, as for a request body (gw_body_parse): json-c's
     * JSON_TOKENER_STRICT is not asked for, as in 0.18 it refuses all of UTF-8 (json-c
     * issues 875, 892). */
    if (gw_json_check(body, len, NULL) != 0)
        goto out;
    tok = json_tokener_new_ex(GW_MAX_JSON_DEPTH);
    if (tok == NULL)
        goto out;
    json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != len) {
        json_object_put(root);
        root = NULL;
    }
out:
    if (tok != NULL)
        json_tokener_free(tok);
    return root;
}

void gw_envelope_from_upstream(struct gw_envelope *env, int upstream_status, const char *body,
                               size_t len, const struct gw_secret *secret)
{
    json_object *root = NULL;
    json_object *details = NULL;
    int status = 0;

    memset(env, 0, sizeof(*env));
    env->err = map_upstream_status(upstream_status, &status);
    env->status = status;
    env->upstream_status = upstream_status;
    /* retry_after_s stays 0: the caller sets it from the answer's headers. */

    /* A body whose details would be dropped anyway is not parsed at all. */
    if (!status_keeps_details(status))
        goto out;
    root = parse_body(body, len);
    if (root == NULL)
        goto out;
    details = json_object_new_array();
    if (details == NULL)
        goto out;
    read_details(root, details, secret);
    if (json_object_array_length(details) > 0) {
        env->details = details;
        details = NULL;
    }
out:
    json_object_put(details);
    json_object_put(root);
}

/*
 * @p s as a JSON string, quotes included, escaped as json-c escapes it with
 * JSON_C_TO_STRING_NOSLASHESCAPE: '"', '\\', \b \f \n \r \t, other control bytes as \u00xx,
 * everything else as it is. Writes into @p out when it is not NULL; returns the length.
 */
static size_t put_string(char *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    static const char short_esc[] = "\"\"\\\\\bb\ff\nn\rr\tt";  /* byte, then its letter */
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *run;
    const char *hit;
    size_t n = 1;

    if (out != NULL)
        out[0] = '"';
    for (;;) {
        /* The bytes that go as they are, copied in one run. */
        for (run = p; *p >= 0x20 && *p != '"' && *p != '\\'; p++)
            ;
        if (out != NULL && p > run)
            memcpy(out + n, run, (size_t)(p - run));
        n += (size_t)(p - run);
        if (*p == '\0')
            break;
        hit = strchr(short_esc, *p);
        if (hit != NULL && (hit - short_esc) % 2 == 0) {
            if (out != NULL) {
                out[n] = '\\';
                out[n + 1] = hit[1];
            }
            n += 2;
        } else {
            if (out != NULL) {
                memcpy(out + n, "\\u00", 4);
                out[n + 4] = hex[*p >> 4];
                out[n + 5] = hex[*p & 15];
            }
            n += 6;
        }
        p++;
    }
    if (out != NULL)
        out[n] = '"';
    return n + 1;
}

/* @p v (>= 0) in decimal into @p out when it is not NULL; returns the number of digits. */
static size_t put_uint(char *out, unsigned v)
{
    char d[16];
    size_t n = 0;
    size_t i;

    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (i = 0; out != NULL && i < n; i++)
        out[i] = d[n - 1 - i];
    return n;
}

/* Append the literal @p lit at out + *n (out NULL: count only), and advance *n. */
static void put_lit(char *out, size_t *n, const char *lit)
{
    size_t k = strlen(lit);

    if (out != NULL)
        memcpy(out + *n, lit, k);
    *n += k;
}

/*
 * An envelope without details, written straight into one allocation in two passes (the first
 * counts): the same bytes json-c writes, at a small part of the cost. Every local refusal
 * (400, 401, 404, 429, ...) is one of these, and with json-c its envelope cost about 12,000
 * instructions, more than the rest of hcgw's work on such a request (bench/README.md).
 */
static char *render_plain(int status, const struct gw_err_info *info, const char *request_id,
                          int upstream_status, size_t *len)
{
    char *out = NULL;
    size_t n = 0;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        n = 0;
        put_lit(out, &n, "{\"error\":{\"status\":");
        n += put_uint(out != NULL ? out + n : NULL, (unsigned)status);
        put_lit(out, &n, ",\"code\":");
        n += put_string(out != NULL ? out + n : NULL, info->code);
        put_lit(out, &n, ",\"message\":");
        n += put_string(out != NULL ? out + n : NULL, info->message);
        put_lit(out, &n, ",\"request_id\":");
        n += put_string(out != NULL ? out + n : NULL, request_id);
        if (upstream_status > 0) {
            put_lit(out, &n, ",\"upstream_status\":");
            n += put_uint(out != NULL ? out + n : NULL, (unsigned)upstream_status);
        }
        put_lit(out, &n, "}}");
        if (pass == 0) {
            out = malloc(n + 1);
            if (out == NULL)
                return NULL;
        }
    }
    out[n] = '\0';
    if (len != NULL)
        *len = n;
    return out;
}

char *gw_envelope_render(const struct gw_envelope *env, const char *request_id, size_t *len)
{
    const struct gw_err_info *info = gw_err_info(env->err);
    json_object *root = NULL;
    json_object *error = NULL;
    const char *text;
    size_t text_len = 0;
    char *out = NULL;

    if (len != NULL)
        *len = 0;
    if (!json_object_is_type(env->details, json_type_array) ||
        json_object_array_length(env->details) == 0)
        return render_plain(env->status > 0 ? env->status : info->status, info,
                            request_id != NULL ? request_id : "", env->upstream_status, len);
    root = json_object_new_object();
    error = json_object_new_object();
    if (root == NULL || error == NULL)
        goto out;
    /* Keys go in the documented order; json-c keeps insertion order when it serializes. */
    if (gw_json_add(error, "status",
                   json_object_new_int(env->status > 0 ? env->status : info->status)) != 0 ||
        gw_json_add(error, "code", json_object_new_string(info->code)) != 0 ||
        gw_json_add(error, "message", json_object_new_string(info->message)) != 0 ||
        gw_json_add(error, "request_id",
                   json_object_new_string(request_id != NULL ? request_id : "")) != 0)
        goto out;
    if (env->upstream_status > 0 &&
        gw_json_add(error, "upstream_status", json_object_new_int(env->upstream_status)) != 0)
        goto out;
    /*
     * The envelope keeps its details: the output takes its own reference, so putting the
     * output below drops only that one.
     */
    if (json_object_is_type(env->details, json_type_array) &&
        json_object_array_length(env->details) > 0 &&
        gw_json_add(error, "details", json_object_get(env->details)) != 0)
        goto out;
    if (gw_json_add(root, "error", error) != 0) {
        error = NULL; /* add_member put it */
        goto out;
    }
    error = NULL;

    text = json_object_to_json_string_length(
        root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &text_len);
    if (text == NULL)
        goto out;
    /* The serialized text lives only as long as root, so it is copied out. */
    out = malloc(text_len + 1);
    if (out == NULL)
        goto out;
    memcpy(out, text, text_len + 1);
    if (len != NULL)
        *len = text_len;
out:
    json_object_put(error);
    json_object_put(root);
    return out;
}

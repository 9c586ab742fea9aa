/*
 * Unit tests of envelope.c: the error table, the mapping of HelpCrunch statuses, reading
 * details out of every error-body shape HelpCrunch sends (and ignoring everything else), the
 * bounds on details, masking the key, and the rendered envelope parsed back field by field.
 * Documented error bodies are read from tests/data/upstream-errors/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/config.h"
#include "hcgw/envelope.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/secret.h"

#ifndef HCGW_TEST_DATA
#error "HCGW_TEST_DATA must name the tests/data directory"
#endif

#define TEST_KEY "hcKEY-0123456789abcdefABCDEF"

/* The table as issue 2 specifies it, written out again so that a typo in envelope.c shows. */
static const struct {
    enum gw_err err;
    int status;
    const char *code;
    const char *message;
} expected_table[] = {
    {GW_ERR_ROUTE_NOT_FOUND, 404, "route_not_found", "No such route"},
    {GW_ERR_METHOD_NOT_ALLOWED, 405, "method_not_allowed", "Method not allowed on this route"},
    {GW_ERR_INVALID_CONTACT_ID, 400, "invalid_contact_id",
     "The contact id must be a positive decimal integer of at most 19 digits"},
    {GW_ERR_INVALID_TAG, 400, "invalid_tag",
     "A tag name must be 1 to 100 characters of valid UTF-8 without control characters"},
    {GW_ERR_INVALID_BODY, 400, "invalid_body", "The request body is not JSON of the expected shape"},
    {GW_ERR_INVALID_QUERY, 400, "invalid_query", "The query string is not valid for this route"},
    {GW_ERR_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type",
     "The request body must be sent with Content-Type: application/json"},
    {GW_ERR_BODY_TOO_LARGE, 413, "body_too_large",
     "The request body is larger than the configured limit"},
    {GW_ERR_INVALID_REQUEST, 400, "invalid_request", "HelpCrunch rejected the request"},
    {GW_ERR_NOT_FOUND, 404, "not_found", "Contact not found"},
    {GW_ERR_CONFLICT, 409, "conflict", "HelpCrunch reported a conflict"},
    {GW_ERR_RATE_LIMITED, 429, "rate_limited",
     "The HelpCrunch request quota is exhausted; retry later"},
    {GW_ERR_UPSTREAM_AUTH_FAILED, 502, "upstream_auth_failed",
     "HelpCrunch refused the gateway's API key"},
    {GW_ERR_UPSTREAM_ERROR, 502, "upstream_error", "HelpCrunch answered with an error"},
    {GW_ERR_UPSTREAM_BAD_RESPONSE, 502, "upstream_bad_response",
     "HelpCrunch sent an answer the gateway cannot use"},
    {GW_ERR_UPSTREAM_UNAVAILABLE, 502, "upstream_unavailable", "HelpCrunch could not be reached"},
    {GW_ERR_UPSTREAM_TIMEOUT, 504, "upstream_timeout", "HelpCrunch did not answer in time"},
    {GW_ERR_SHUTTING_DOWN, 503, "shutting_down", "The gateway is shutting down"},
    {GW_ERR_OVERLOADED, 503, "overloaded", "The gateway is at its limit of requests in flight"},
    {GW_ERR_INTERNAL, 500, "internal_error", "Internal error"},
    {GW_ERR_NOMEM, 500, "internal_error", "Internal error"},
    {GW_ERR_URI_TOO_LONG, 414, "uri_too_long",
     "The request URI is longer than the gateway accepts"},
    {GW_ERR_UNAUTHENTICATED, 401, "unauthenticated",
     "A valid client credential is required (Authorization: Bearer <token>)"},
    {GW_ERR_FORBIDDEN, 403, "forbidden", "This client may not call this route"},
    {GW_ERR_MALFORMED_REQUEST, 400, "malformed_request",
     "The request is not well-formed HTTP/1.1 (its framing is ambiguous or it holds bytes HTTP "
     "does not allow)"},
    {GW_ERR_KEY_REFUSED, 503, "upstream_auth_failed", "HelpCrunch refused the gateway's API key"},
    {GW_ERR_INVALID_IDEMPOTENCY_KEY, 400, "invalid_idempotency_key",
     "Idempotency-Key must be sent once, as 1 to 255 printable ASCII characters without spaces "
     "(bare, or as a quoted string)"},
    {GW_ERR_IDEMPOTENCY_KEY_REUSED, 422, "idempotency_key_reused",
     "This Idempotency-Key was already used with a different request body"},
    {GW_ERR_IDEMPOTENCY_KEY_IN_PROGRESS, 409, "idempotency_key_in_progress",
     "A request with this Idempotency-Key is still in progress; retry later"},
    {GW_ERR_CORS_ORIGIN_NOT_ALLOWED, 403, "cors_origin_not_allowed",
     "This browser origin may not call the gateway (cors.allow_origins, or the client's "
     "origins)"},
    {GW_ERR_INVALID_PREFLIGHT, 400, "invalid_preflight",
     "A CORS preflight needs exactly one Access-Control-Request-Method naming an HTTP method"},
};

/* ---- helpers ---------------------------------------------------------------------------- */

/* A fixture from tests/data/upstream-errors/, malloc'd and NUL-terminated. */
static char *load_fixture(const char *name, size_t *len)
{
    char path[1024];
    FILE *f;
    char *buf;
    long size;
    int n = snprintf(path, sizeof(path), "%s/upstream-errors/%s", HCGW_TEST_DATA, name);

    assert_true(n > 0 && (size_t)n < sizeof(path));
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open fixture %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    buf[size] = '\0';
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void from_string(struct gw_envelope *env, int status, const char *body,
                        const struct gw_secret *secret)
{
    gw_envelope_from_upstream(env, status, body, body != NULL ? strlen(body) : 0, secret);
}

static void from_fixture(struct gw_envelope *env, int status, const char *name)
{
    size_t len;
    char *body = load_fixture(name, &len);

    gw_envelope_from_upstream(env, status, body, len, NULL);
    free(body);
}

static const char *str_member(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v))
        fail_msg("member \"%s\" missing", key);
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

/* env->details is exactly the @p n pairs code[i], message[i], each with only those two keys. */
static void assert_details(const struct gw_envelope *env, size_t n, const char *const *codes,
                           const char *const *messages)
{
    assert_non_null(env->details);
    assert_true(json_object_is_type(env->details, json_type_array));
    assert_int_equal(json_object_array_length(env->details), n);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(env->details, i);

        assert_true(json_object_is_type(e, json_type_object));
        assert_int_equal(json_object_object_length(e), 2);
        assert_string_equal(str_member(e, "code"), codes[i]);
        assert_string_equal(str_member(e, "message"), messages[i]);
    }
}

static void assert_one_detail(const struct gw_envelope *env, const char *code, const char *message)
{
    assert_details(env, 1, &code, &message);
}

/* The message of detail @p i, with its length. */
static const char *detail_message(const struct gw_envelope *env, size_t i, size_t *len)
{
    json_object *e = json_object_array_get_idx(env->details, i);
    json_object *m = NULL;

    assert_non_null(e);
    assert_true(json_object_object_get_ex(e, "message", &m));
    *len = (size_t)json_object_get_string_len(m);
    return json_object_get_string(m);
}

static struct gw_secret *load_test_secret(void)
{
    struct gw_config cfg;
    char *error = NULL;
    struct gw_secret *s;

    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(setenv("HCGW_API_KEY", TEST_KEY, 1), 0);
    assert_int_equal(unsetenv("HCGW_API_KEY_FILE"), 0);
    s = gw_secret_load(&cfg, NULL, &error);
    if (s == NULL)
        fail_msg("gw_secret_load: %s", error != NULL ? error : "(no reason)");
    assert_string_equal(gw_secret_value(s), TEST_KEY);
    return s;
}

/* ---- the table -------------------------------------------------------------------------- */

static void test_table_matches_spec(void **state)
{
    (void)state;
    /* One expected row per error value from -1 to one before GW_ERR__LAST. */
    assert_int_equal(sizeof(expected_table) / sizeof(expected_table[0]), (size_t)-GW_ERR__LAST - 1);
    for (size_t i = 0; i < sizeof(expected_table) / sizeof(expected_table[0]); i++) {
        const struct gw_err_info *info = gw_err_info(expected_table[i].err);

        assert_int_equal(expected_table[i].err, -(int)(i + 1));
        assert_non_null(info);
        assert_int_equal(info->status, expected_table[i].status);
        assert_non_null(info->code);
        assert_string_equal(info->code, expected_table[i].code);
        assert_non_null(info->message);
        assert_string_equal(info->message, expected_table[i].message);
    }
}

static void test_table_row_per_value_codes_unique(void **state)
{
    (void)state;
    for (int e = -1; e > GW_ERR__LAST; e--) {
        const struct gw_err_info *info = gw_err_info((enum gw_err)e);

        /* A row left out of the designated initializers would be all zero. */
        assert_non_null(info->code);
        assert_non_null(info->message);
        assert_true(info->status >= 400 && info->status <= 599);
        assert_true(strlen(info->code) > 0 && strlen(info->message) > 0);
        /* Only GW_ERR_INTERNAL and GW_ERR_NOMEM may answer with internal_error's own row text. */
        if (e != GW_ERR_INTERNAL && e != GW_ERR_NOMEM)
            assert_ptr_not_equal(info, gw_err_info(GW_ERR_INTERNAL));
        for (int o = e - 1; o > GW_ERR__LAST; o--) {
            const struct gw_err_info *other = gw_err_info((enum gw_err)o);

            /* Two values may share a code only when they are one failure: internal_error
             * (out of memory or not), and the refused key (a 502 to a call, a 503 /readyz). */
            if (strcmp(info->code, other->code) == 0) {
                if (!((e == GW_ERR_INTERNAL && o == GW_ERR_NOMEM) ||
                      (e == GW_ERR_NOMEM && o == GW_ERR_INTERNAL) ||
                      (e == GW_ERR_UPSTREAM_AUTH_FAILED && o == GW_ERR_KEY_REFUSED)))
                    fail_msg("code %s used by %d and %d", info->code, e, o);
            }
        }
    }
}

static void test_table_out_of_range_is_internal(void **state)
{
    const struct gw_err_info *internal = gw_err_info(GW_ERR_INTERNAL);
    const int strays[] = {GW_OK, GW_ERR__LAST, GW_ERR__LAST - 1, 1, 42, INT_MIN, INT_MAX};

    (void)state;
    assert_string_equal(internal->code, "internal_error");
    for (size_t i = 0; i < sizeof(strays) / sizeof(strays[0]); i++)
        assert_ptr_equal(gw_err_info((enum gw_err)strays[i]), internal);
}

/* ---- local envelopes -------------------------------------------------------------------- */

static void test_local_fills_from_table(void **state)
{
    (void)state;
    for (int e = -1; e > GW_ERR__LAST; e--) {
        struct gw_envelope env;

        /* Garbage first: gw_envelope_local must neither read nor free what was there. */
        memset(&env, 0xA5, sizeof(env));
        gw_envelope_local(&env, (enum gw_err)e);
        assert_int_equal(env.err, e);
        assert_int_equal(env.status, gw_err_info((enum gw_err)e)->status);
        assert_int_equal(env.upstream_status, 0);
        assert_int_equal(env.retry_after_s, 0);
        assert_null(env.details);
        gw_envelope_clear(&env);
    }
}

static void test_local_ok_and_strays_are_internal(void **state)
{
    struct gw_envelope env;

    (void)state;
    gw_envelope_local(&env, GW_OK);
    assert_int_equal(env.err, GW_ERR_INTERNAL);
    assert_int_equal(env.status, 500);
    gw_envelope_local(&env, (enum gw_err)7);
    assert_int_equal(env.err, GW_ERR_INTERNAL);
    assert_int_equal(env.status, 500);
    gw_envelope_local(&env, GW_ERR__LAST);
    assert_int_equal(env.err, GW_ERR_INTERNAL);
    gw_envelope_clear(&env);
}

static void test_clear(void **state)
{
    struct gw_envelope env;

    (void)state;
    from_string(&env, 400, "{\"errors\":[{\"code\":\"email\",\"message\":\"bad\"}]}", NULL);
    assert_non_null(env.details);
    env.retry_after_s = 5;
    gw_envelope_clear(&env);
    assert_null(env.details);
    assert_int_equal(env.err, 0);
    assert_int_equal(env.status, 0);
    assert_int_equal(env.upstream_status, 0);
    assert_int_equal(env.retry_after_s, 0);
    /* Clearing twice, and clearing NULL, are harmless (ASan would see a double free). */
    gw_envelope_clear(&env);
    gw_envelope_clear(NULL);
}

/* ---- the mapping of HelpCrunch statuses ------------------------------------------------- */

static void test_mapping_every_row(void **state)
{
    static const struct {
        int upstream;
        int status;
        enum gw_err err;
        const char *code;
    } rows[] = {
        {400, 400, GW_ERR_INVALID_REQUEST, "invalid_request"},
        {401, 502, GW_ERR_UPSTREAM_AUTH_FAILED, "upstream_auth_failed"},
        {403, 502, GW_ERR_UPSTREAM_AUTH_FAILED, "upstream_auth_failed"},
        {404, 404, GW_ERR_NOT_FOUND, "not_found"},
        {409, 409, GW_ERR_CONFLICT, "conflict"},
        {422, 422, GW_ERR_INVALID_REQUEST, "invalid_request"},
        {429, 429, GW_ERR_RATE_LIMITED, "rate_limited"},
        {418, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {405, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {499, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {500, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {502, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {503, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {504, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {599, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {301, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
        {100, 502, GW_ERR_UPSTREAM_ERROR, "upstream_error"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct gw_envelope env;

        memset(&env, 0xA5, sizeof(env));
        gw_envelope_from_upstream(&env, rows[i].upstream, NULL, 0, NULL);
        assert_int_equal(env.status, rows[i].status);
        assert_int_equal(env.err, rows[i].err);
        assert_string_equal(gw_err_info(env.err)->code, rows[i].code);
        assert_int_equal(env.upstream_status, rows[i].upstream);
        assert_int_equal(env.retry_after_s, 0);
        assert_null(env.details);
        gw_envelope_clear(&env);
    }
}

/* Details survive exactly for the answers passed on as 400, 404, 409 and 422. */
static void test_details_only_on_passed_on_4xx(void **state)
{
    static const struct {
        int upstream;
        int keeps;
    } rows[] = {
        {400, 1}, {404, 1}, {409, 1}, {422, 1}, {401, 0}, {403, 0}, {418, 0}, {429, 0},
        {500, 0}, {502, 0}, {503, 0}, {504, 0}, {301, 0}, {200, 0},
    };
    const char *body = "{\"errors\":[{\"code\":\"invalid_request\",\"message\":\"Invalid request\"},"
                       "{\"code\":\"email\",\"message\":\"This value is not a valid email address.\"}]}";

    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct gw_envelope env;

        from_string(&env, rows[i].upstream, body, NULL);
        if (rows[i].keeps)
            assert_one_detail(&env, "email", "This value is not a valid email address.");
        else if (env.details != NULL)
            fail_msg("details on an answer to HelpCrunch %d (hcgw %d)", rows[i].upstream, env.status);
        gw_envelope_clear(&env);
    }
}

static void test_details_never_on_502_even_with_body(void **state)
{
    struct gw_envelope env;

    (void)state;
    from_fixture(&env, 401, "new-401-unauthorized.json");
    assert_int_equal(env.status, 502);
    assert_null(env.details);
    gw_envelope_clear(&env);
    from_fixture(&env, 401, "old-401-invalid-token.json");
    assert_int_equal(env.status, 502);
    assert_null(env.details);
    gw_envelope_clear(&env);
    from_fixture(&env, 429, "new-429-too-many-requests.json");
    assert_int_equal(env.status, 429);
    assert_null(env.details);
    gw_envelope_clear(&env);
    from_fixture(&env, 429, "old-429-too-many-requests.json");
    assert_null(env.details);
    gw_envelope_clear(&env);
    from_string(&env, 500,
                "{\"message\":\"Server error\",\"success\":false,\"code\":\"db\",\"errors\":[]}", NULL);
    assert_int_equal(env.status, 502);
    assert_null(env.details);
    gw_envelope_clear(&env);
}

/* ---- HelpCrunch's documented error styles ----------------------------------------------- */

static void test_new_style_drops_generic_entry(void **state)
{
    struct gw_envelope env;

    (void)state;
    from_fixture(&env, 400, "new-400-customer.json");
    assert_int_equal(env.status, 400);
    assert_string_equal(gw_err_info(env.err)->code, "invalid_request");
    assert_one_detail(&env, "customer", "This value should be of type numeric.");
    gw_envelope_clear(&env);

    from_fixture(&env, 400, "new-400-filter.json");
    assert_one_detail(&env, "filter[0].field", "This value should not be blank.");
    gw_envelope_clear(&env);

    from_fixture(&env, 404, "new-404-not-found.json");
    assert_int_equal(env.status, 404);
    assert_string_equal(gw_err_info(env.err)->code, "not_found");
    assert_one_detail(&env, "not_found", "Chat not found");
    gw_envelope_clear(&env);
}

static void test_old_style_single_entry(void **state)
{
    struct gw_envelope env;

    (void)state;
    from_fixture(&env, 404, "old-404-entity-not-found.json");
    assert_int_equal(env.status, 404);
    assert_int_equal(env.upstream_status, 404);
    assert_one_detail(&env, "entity_not_found", "Customer not found");
    gw_envelope_clear(&env);

    from_fixture(&env, 400, "old-400-invalid-userid.json");
    assert_int_equal(env.status, 400);
    assert_one_detail(&env, "invalid_userId_value", "Customer with this userId already exists");
    gw_envelope_clear(&env);
}

static void test_only_generic_entry_gives_no_details(void **state)
{
    struct gw_envelope env;

    (void)state;
    from_string(&env, 400, "{\"errors\":[{\"code\":\"invalid_request\",\"message\":\"Invalid request\"}]}",
                NULL);
    assert_int_equal(env.status, 400);
    assert_null(env.details);
    gw_envelope_clear(&env);
}

static void test_entries_skipped_or_completed(void **state)
{
    struct gw_envelope env;
    /* Not objects, no usable string member, generic: skipped. One member only: the other is "". */
    const char *body =
        "{\"errors\":[\"a string\",42,null,[],{},{\"code\":7,\"message\":null},"
        "{\"code\":\"invalid_request\",\"message\":\"Invalid request\"},"
        "{\"code\":\"only_code\"},{\"message\":\"only message\"},"
        "{\"code\":\"name\",\"message\":\"This value is too long.\",\"extra\":true}]}";
    const char *codes[] = {"only_code", "", "name"};
    const char *messages[] = {"", "only message", "This value is too long."};

    (void)state;
    from_string(&env, 422, body, NULL);
    assert_int_equal(env.status, 422);
    assert_int_equal(env.upstream_status, 422);
    assert_string_equal(gw_err_info(env.err)->code, "invalid_request");
    assert_details(&env, 3, codes, messages);
    gw_envelope_clear(&env);
}

/* ---- the third shape: {"message","success","code","errors"} ----------------------------- */

static void test_third_shape_errors_array(void **state)
{
    struct gw_envelope env;
    const char *codes[] = {"email", "phone"};
    const char *messages[] = {"Invalid email", "Invalid phone"};

    (void)state;
    from_string(&env, 400,
                "{\"message\":\"Validation failed\",\"success\":false,\"code\":\"invalid_request\","
                "\"errors\":[{\"code\":\"invalid_request\",\"message\":\"Invalid request\"},"
                "{\"code\":\"email\",\"message\":\"Invalid email\"},"
                "{\"code\":\"phone\",\"message\":\"Invalid phone\"}]}",
                NULL);
    assert_details(&env, 2, codes, messages);
    gw_envelope_clear(&env);
}

static void test_third_shape_errors_map(void **state)
{
    struct gw_envelope env;
    const char *codes[] = {"email", "tags[0].name", "tags[0].name", "company"};
    const char *messages[] = {"This value is not a valid email address.", "Too long",
                              "Not unique", "Too short"};

    (void)state;
    /* field → message, field → [messages] (non-strings in the list skipped), other values skipped. */
    from_string(&env, 409,
                "{\"message\":\"Invalid data\",\"success\":false,\"code\":409,\"errors\":{"
                "\"email\":\"This value is not a valid email address.\","
                "\"tags[0].name\":[\"Too long\",3,\"Not unique\"],"
                "\"ignored\":{\"nested\":\"x\"},\"also_ignored\":5,"
                "\"company\":[\"Too short\"]}}",
                NULL);
    assert_int_equal(env.status, 409);
    assert_string_equal(gw_err_info(env.err)->code, "conflict");
    assert_details(&env, 4, codes, messages);
    gw_envelope_clear(&env);
}

static void test_third_shape_errors_string(void **state)
{
    struct gw_envelope env;

    (void)state;
    from_string(&env, 400,
                "{\"message\":\"Bad\",\"success\":false,\"code\":\"customer_blocked\","
                "\"errors\":\"The customer is blocked\"}",
                NULL);
    assert_one_detail(&env, "customer_blocked", "The customer is blocked");
    gw_envelope_clear(&env);

    /* A generic code says nothing; the string still does. */
    from_string(&env, 400,
                "{\"message\":\"Bad\",\"success\":false,\"code\":\"invalid_request\","
                "\"errors\":\"userId is taken\"}",
                NULL);
    assert_one_detail(&env, "", "userId is taken");
    gw_envelope_clear(&env);
}

static void test_third_shape_without_usable_errors(void **state)
{
    struct gw_envelope env;

    (void)state;
    /* No "errors": the shape's own code and message are the one detail. */
    from_string(&env, 404, "{\"message\":\"Customer not found\",\"success\":false,\"code\":\"not_found\"}",
                NULL);
    assert_one_detail(&env, "not_found", "Customer not found");
    gw_envelope_clear(&env);

    /* An integer code becomes its decimal text; "errors" of no use (empty, null, number). */
    from_string(&env, 404,
                "{\"message\":\"Customer not found\",\"success\":false,\"code\":404,\"errors\":[]}",
                NULL);
    assert_one_detail(&env, "404", "Customer not found");
    gw_envelope_clear(&env);
    from_string(&env, 422,
                "{\"message\":\"Nope\",\"success\":false,\"code\":-9007199254740993,\"errors\":null}",
                NULL);
    assert_one_detail(&env, "-9007199254740993", "Nope");
    gw_envelope_clear(&env);
    from_string(&env, 409,
                "{\"message\":\"Taken\",\"success\":false,\"code\":1.5,\"errors\":[{\"code\":\"invalid_request\"}]}",
                NULL);
    assert_one_detail(&env, "", "Taken");
    gw_envelope_clear(&env);

    /* The generic code, with nothing else: no details. */
    from_string(&env, 400,
                "{\"message\":\"Invalid request\",\"success\":false,\"code\":\"invalid_request\","
                "\"errors\":[]}",
                NULL);
    assert_int_equal(env.status, 400);
    assert_null(env.details);
    gw_envelope_clear(&env);
}

/* ---- bodies that are not JSON error bodies ---------------------------------------------- */

static void assert_no_details(int status, const char *body, size_t len)
{
    struct gw_envelope env;

    gw_envelope_from_upstream(&env, status, body, len, NULL);
    assert_int_equal(env.upstream_status, status);
    assert_null(env.details);
    gw_envelope_clear(&env);
}

static void test_non_json_bodies_ignored(void **state)
{
    static const char *const bodies[] = {
        "Ok",
        "\"Ok\"",
        "<html><body>Bad Request</body></html>",
        "{\"errors\":[{\"code\":\"email\",\"message\":\"trunc",
        "{\"errors\":[{\"code\":\"email\",\"message\":\"x\"}]",
        "{\"errors\":[{\"code\":\"email\",\"message\":\"x\"}]} trailing",
        "{\"errors\":[{\"code\":\"email\",\"message\":\"x\"}]}{\"errors\":[]}",
        "{'errors':[{'code':'email','message':'x'}]}",
        "{\"errors\":[{\"code\":\"email\",\"message\":\"\xff\xfe\"}]}",
        "[{\"code\":\"email\",\"message\":\"x\"}]",
        "null",
        "42",
        "   ",
        "{}",
        "{\"errors\":[]}",
        "{\"errors\":{}}",
        "{\"errors\":42}",
    };
    const char with_nul[] = "{\"errors\":[{\"code\":\"email\",\"message\":\"x\"}]}\0garbage";
    size_t len;
    char *html = load_fixture("proxy-502.html", &len);

    (void)state;
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        assert_no_details(400, bodies[i], strlen(bodies[i]));
        assert_no_details(404, bodies[i], strlen(bodies[i]));
    }
    assert_no_details(400, html, len);
    assert_no_details(502, html, len);
    free(html);
    assert_no_details(400, "", 0);
    assert_no_details(400, NULL, 0);
    assert_no_details(400, NULL, 10);
    /* A NUL inside the counted length is trailing garbage, not the end of the body. */
    assert_no_details(400, with_nul, sizeof(with_nul) - 1);
    /* The counted length bounds the parse: the NUL-terminated tail beyond it is not read. */
    assert_no_details(400, "{\"errors\":[{\"code\":\"email\",\"message\":\"x\"}]}", 20);
}

static void test_trailing_whitespace_accepted(void **state)
{
    struct gw_envelope env;

    (void)state;
    from_string(&env, 400, " {\"errors\":[{\"code\":\"email\",\"message\":\"x\"}]}\r\n\t ", NULL);
    assert_one_detail(&env, "email", "x");
    gw_envelope_clear(&env);
}

static void test_deep_nesting_ignored(void **state)
{
    enum { DEPTH = 1000 };
    char *deep = malloc(2 * DEPTH + 64);
    size_t n = 0;

    (void)state;
    assert_non_null(deep);
    for (size_t i = 0; i < DEPTH; i++)
        deep[n++] = '[';
    assert_no_details(400, deep, n);
    for (size_t i = 0; i < DEPTH; i++)
        deep[n++] = ']';
    assert_no_details(400, deep, n);

    /* Nested objects under "errors", deeper than GW_MAX_JSON_DEPTH. */
    n = 0;
    n += (size_t)snprintf(deep, 64, "{\"errors\":");
    for (size_t i = 0; i < DEPTH / 2; i++)
        deep[n++] = '[';
    for (size_t i = 0; i < DEPTH / 2; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    assert_no_details(400, deep, n);
    free(deep);
}

/* A valid error body whose one entry carries a member nested @p pad arrays deep. */
static void from_padded_entry(struct gw_envelope *env, int pad)
{
    char body[512];
    size_t n = 0;

    assert_true(pad >= 0 && pad < 200);
    n += (size_t)snprintf(body, sizeof(body), "{\"errors\":[{\"code\":\"c\",\"message\":\"m\",\"x\":");
    for (int i = 0; i < pad; i++)
        body[n++] = '[';
    for (int i = 0; i < pad; i++)
        body[n++] = ']';
    n += (size_t)snprintf(body + n, sizeof(body) - n, "}]}");
    gw_envelope_from_upstream(env, 400, body, n, NULL);
}

static void test_depth_bound(void **state)
{
    struct gw_envelope env;

    (void)state;
    /* {"errors":[{…}]} is 3 levels: padding to exactly GW_MAX_JSON_DEPTH levels is read... */
    from_padded_entry(&env, GW_MAX_JSON_DEPTH - 3);
    assert_one_detail(&env, "c", "m");
    gw_envelope_clear(&env);
    /* ...one level more and the whole body is ignored, however usable the entry. */
    from_padded_entry(&env, GW_MAX_JSON_DEPTH - 2);
    assert_null(env.details);
    gw_envelope_clear(&env);
    from_padded_entry(&env, 150);
    assert_null(env.details);
    gw_envelope_clear(&env);
}

/* ---- bounds ----------------------------------------------------------------------------- */

static void test_details_capped(void **state)
{
    enum { ENTRIES = GW_MAX_DETAILS * 3 };
    size_t cap = 64 + ENTRIES * 64;
    char *body = malloc(cap);
    size_t n = 0;
    struct gw_envelope env;

    (void)state;
    assert_non_null(body);
    n += (size_t)snprintf(body, cap, "{\"errors\":[{\"code\":\"invalid_request\",\"message\":\"Invalid request\"}");
    for (int i = 0; i < ENTRIES; i++)
        n += (size_t)snprintf(body + n, cap - n, ",{\"code\":\"f%d\",\"message\":\"m%d\"}", i, i);
    n += (size_t)snprintf(body + n, cap - n, "]}");
    assert_true(n < cap);
    gw_envelope_from_upstream(&env, 400, body, n, NULL);
    assert_non_null(env.details);
    assert_int_equal(json_object_array_length(env.details), GW_MAX_DETAILS);
    /* The first ones, in order. */
    for (size_t i = 0; i < GW_MAX_DETAILS; i++) {
        char expect[16];
        json_object *e = json_object_array_get_idx(env.details, i);

        snprintf(expect, sizeof(expect), "f%zu", i);
        assert_string_equal(str_member(e, "code"), expect);
    }
    gw_envelope_clear(&env);

    /* The field-map form is capped too. */
    n = (size_t)snprintf(body, cap, "{\"success\":false,\"errors\":{\"f\":[");
    for (int i = 0; i < ENTRIES; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s\"m%d\"", i > 0 ? "," : "", i);
    n += (size_t)snprintf(body + n, cap - n, "]}}");
    gw_envelope_from_upstream(&env, 422, body, n, NULL);
    assert_non_null(env.details);
    assert_int_equal(json_object_array_length(env.details), GW_MAX_DETAILS);
    gw_envelope_clear(&env);
    free(body);
}

/*
 * A message of @p prefix bytes of 'a' and then @p mb (a UTF-8 sequence) repeated to over 10 KB
 * comes back cut to at most GW_MAX_DETAIL_BYTES, a prefix of the original, ending on a boundary.
 */
static void check_cut(size_t prefix, const char *mb, size_t expect_len)
{
    size_t mb_len = strlen(mb);
    size_t msg_len = prefix;
    size_t cap = 64 + 10240 + 8;
    char *msg = malloc(cap);
    char *body = malloc(cap + 64);
    struct gw_envelope env;
    const char *got;
    size_t got_len;
    int n;

    assert_non_null(msg);
    assert_non_null(body);
    memset(msg, 'a', prefix);
    while (msg_len + mb_len <= 10240) {
        memcpy(msg + msg_len, mb, mb_len);
        msg_len += mb_len;
    }
    msg[msg_len] = '\0';
    n = snprintf(body, cap + 64, "{\"errors\":[{\"code\":\"notes\",\"message\":\"%s\"}]}", msg);
    assert_true(n > 0 && (size_t)n < cap + 64);
    gw_envelope_from_upstream(&env, 400, body, (size_t)n, NULL);
    assert_non_null(env.details);
    got = detail_message(&env, 0, &got_len);
    assert_int_equal(got_len, expect_len);
    assert_true(got_len <= GW_MAX_DETAIL_BYTES);
    assert_memory_equal(got, msg, got_len);
    /* The first byte left out starts a character: nothing was split. */
    assert_true(((unsigned char)msg[got_len] & 0xC0) != 0x80);
    gw_envelope_clear(&env);
    free(body);
    free(msg);
}

static void test_long_message_cut_at_utf8_boundary(void **state)
{
    (void)state;
    check_cut(0, "a", GW_MAX_DETAIL_BYTES);                /* ASCII: exactly the bound */
    check_cut(0, "\xc3\xa9", GW_MAX_DETAIL_BYTES);         /* é: 256 whole characters */
    check_cut(1, "\xc3\xa9", GW_MAX_DETAIL_BYTES - 1);     /* byte 512 would split an é */
    check_cut(0, "\xe2\x82\xac", 510);                     /* €: 170 characters */
    check_cut(1, "\xe2\x82\xac", 511);
    check_cut(2, "\xe2\x82\xac", GW_MAX_DETAIL_BYTES);
    check_cut(0, "\xf0\x9f\x98\x80", GW_MAX_DETAIL_BYTES); /* 😀: 128 characters */
    check_cut(1, "\xf0\x9f\x98\x80", 509);
    check_cut(3, "\xf0\x9f\x98\x80", 511);
}

static void test_long_code_cut(void **state)
{
    char code[2048];
    char body[4096];
    struct gw_envelope env;
    json_object *e;
    int n;

    (void)state;
    memset(code, 'c', sizeof(code) - 1);
    code[sizeof(code) - 1] = '\0';
    n = snprintf(body, sizeof(body), "{\"errors\":[{\"code\":\"%s\",\"message\":\"m\"}]}", code);
    assert_true(n > 0 && (size_t)n < sizeof(body));
    gw_envelope_from_upstream(&env, 400, body, (size_t)n, NULL);
    assert_non_null(env.details);
    e = json_object_array_get_idx(env.details, 0);
    assert_int_equal(strlen(str_member(e, "code")), GW_MAX_DETAIL_BYTES);
    assert_string_equal(str_member(e, "message"), "m");
    gw_envelope_clear(&env);
}

/* ---- the key ---------------------------------------------------------------------------- */

static void test_key_masked(void **state)
{
    struct gw_secret *s = load_test_secret();
    struct gw_envelope env;
    const char *body =
        "{\"errors\":[{\"code\":\"token_" TEST_KEY "\",\"message\":\"Token " TEST_KEY
        " is not valid for " TEST_KEY "\"}]}";
    const char *stars = "****************************"; /* strlen(TEST_KEY) */
    json_object *e;
    char expect[256];

    (void)state;
    assert_int_equal(strlen(stars), strlen(TEST_KEY));
    from_string(&env, 400, body, s);
    assert_non_null(env.details);
    e = json_object_array_get_idx(env.details, 0);
    assert_null(strstr(str_member(e, "code"), TEST_KEY));
    assert_null(strstr(str_member(e, "message"), TEST_KEY));
    snprintf(expect, sizeof(expect), "token_%s", stars);
    assert_string_equal(str_member(e, "code"), expect);
    snprintf(expect, sizeof(expect), "Token %s is not valid for %s", stars, stars);
    assert_string_equal(str_member(e, "message"), expect);
    gw_envelope_clear(&env);

    /* Map form, string form and the third shape's own fields are masked as well. */
    from_string(&env, 400, "{\"success\":false,\"errors\":{\"f\":\"key=" TEST_KEY "\"}}", s);
    assert_one_detail(&env, "f", "key=****************************");
    gw_envelope_clear(&env);
    from_string(&env, 404, "{\"success\":false,\"code\":\"c\",\"message\":\"" TEST_KEY "\"}", s);
    assert_one_detail(&env, "c", stars);
    gw_envelope_clear(&env);

    /* Without a secret the text passes unchanged (and the parser did not touch the body). */
    from_string(&env, 400, body, NULL);
    e = json_object_array_get_idx(env.details, 0);
    assert_non_null(strstr(str_member(e, "message"), TEST_KEY));
    gw_envelope_clear(&env);
    gw_secret_free(s);
}

/* A key straddling the cut must not leave its first bytes behind. */
static void test_key_across_cut_masked(void **state)
{
    struct gw_secret *s = load_test_secret();
    struct gw_envelope env;
    char msg[1024];
    char body[1200];
    const char *got;
    size_t got_len;
    size_t lead = GW_MAX_DETAIL_BYTES - 10;
    int n;

    (void)state;
    memset(msg, 'a', lead);
    n = snprintf(msg + lead, sizeof(msg) - lead, "%s tail", TEST_KEY);
    assert_true(n > 0);
    n = snprintf(body, sizeof(body), "{\"errors\":[{\"code\":\"x\",\"message\":\"%s\"}]}", msg);
    assert_true(n > 0 && (size_t)n < sizeof(body));
    gw_envelope_from_upstream(&env, 400, body, (size_t)n, s);
    got = detail_message(&env, 0, &got_len);
    assert_int_equal(got_len, GW_MAX_DETAIL_BYTES);
    assert_memory_equal(got, msg, lead);
    for (size_t i = lead; i < got_len; i++)
        assert_int_equal(got[i], '*');
    gw_envelope_clear(&env);
    gw_secret_free(s);
}

/* ---- rendering -------------------------------------------------------------------------- */

static json_object *parse_rendered(const char *text, size_t len)
{
    json_object *root;

    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    root = json_tokener_parse(text);
    assert_non_null(root);
    assert_true(json_object_is_type(root, json_type_object));
    assert_int_equal(json_object_object_length(root), 1);
    return root;
}

/* The keys of @p obj are exactly @p keys, in that order. */
static void assert_keys(json_object *obj, const char *const *keys, size_t n)
{
    struct json_object_iterator it = json_object_iter_begin(obj);
    struct json_object_iterator end = json_object_iter_end(obj);
    size_t i = 0;

    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it), i++) {
        assert_true(i < n);
        assert_string_equal(json_object_iter_peek_name(&it), keys[i]);
    }
    assert_int_equal(i, n);
}

static json_object *member(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v))
        fail_msg("member \"%s\" missing", key);
    return v;
}

static void test_render_local_exact(void **state)
{
    struct gw_envelope env;
    size_t len = 12345;
    char *text;

    (void)state;
    gw_envelope_local(&env, GW_ERR_ROUTE_NOT_FOUND);
    text = gw_envelope_render(&env, "req-1/a", &len);
    assert_non_null(text);
    /* Plain, no slash escaping, keys in order, no upstream_status, no details. */
    assert_string_equal(text, "{\"error\":{\"status\":404,\"code\":\"route_not_found\","
                              "\"message\":\"No such route\",\"request_id\":\"req-1/a\"}}");
    assert_int_equal(len, strlen(text));
    free(text);
    gw_envelope_clear(&env);
}

static void test_render_every_local_error(void **state)
{
    static const char *const keys[] = {"status", "code", "message", "request_id"};

    (void)state;
    for (int e = -1; e > GW_ERR__LAST; e--) {
        const struct gw_err_info *info = gw_err_info((enum gw_err)e);
        struct gw_envelope env;
        size_t len;
        char *text;
        json_object *root;
        json_object *error;

        gw_envelope_local(&env, (enum gw_err)e);
        text = gw_envelope_render(&env, "abc", &len);
        root = parse_rendered(text, len);
        error = member(root, "error");
        assert_keys(error, keys, 4);
        assert_int_equal(json_object_get_int(member(error, "status")), info->status);
        assert_string_equal(json_object_get_string(member(error, "code")), info->code);
        assert_string_equal(json_object_get_string(member(error, "message")), info->message);
        assert_string_equal(json_object_get_string(member(error, "request_id")), "abc");
        json_object_put(root);
        free(text);
        gw_envelope_clear(&env);
    }
}

static void test_render_upstream_with_details(void **state)
{
    static const char *const keys[] = {"status", "code",          "message",
                                       "request_id", "upstream_status", "details"};
    struct gw_envelope env;
    size_t len;
    size_t len2;
    char *text;
    char *text2;
    json_object *root;
    json_object *error;
    json_object *details;
    json_object *d0;

    (void)state;
    from_fixture(&env, 422, "new-400-customer.json");
    text = gw_envelope_render(&env, "5f0c-req", &len);
    root = parse_rendered(text, len);
    error = member(root, "error");
    assert_keys(error, keys, 6);
    assert_int_equal(json_object_get_int(member(error, "status")), 422);
    assert_string_equal(json_object_get_string(member(error, "code")), "invalid_request");
    assert_string_equal(json_object_get_string(member(error, "message")),
                        "HelpCrunch rejected the request");
    assert_string_equal(json_object_get_string(member(error, "request_id")), "5f0c-req");
    assert_int_equal(json_object_get_int(member(error, "upstream_status")), 422);
    details = member(error, "details");
    assert_true(json_object_is_type(details, json_type_array));
    assert_int_equal(json_object_array_length(details), 1);
    d0 = json_object_array_get_idx(details, 0);
    assert_string_equal(str_member(d0, "code"), "customer");
    assert_string_equal(str_member(d0, "message"), "This value should be of type numeric.");
    json_object_put(root);

    /* Rendering took its own reference: the envelope's details are intact and render again. */
    assert_non_null(env.details);
    assert_int_equal(json_object_array_length(env.details), 1);
    text2 = gw_envelope_render(&env, "5f0c-req", &len2);
    assert_non_null(text2);
    assert_int_equal(len2, len);
    assert_string_equal(text2, text);
    free(text2);
    free(text);
    gw_envelope_clear(&env);
}

static void test_render_upstream_without_details(void **state)
{
    static const char *const keys[] = {"status", "code", "message", "request_id", "upstream_status"};
    struct gw_envelope env;
    size_t len;
    char *text;
    json_object *root;
    json_object *error;

    (void)state;
    from_fixture(&env, 401, "old-401-invalid-token.json");
    env.retry_after_s = 30; /* a header, not part of the body */
    text = gw_envelope_render(&env, NULL, &len);
    root = parse_rendered(text, len);
    error = member(root, "error");
    assert_keys(error, keys, 5);
    assert_int_equal(json_object_get_int(member(error, "status")), 502);
    assert_string_equal(json_object_get_string(member(error, "code")), "upstream_auth_failed");
    /* A NULL request id is rendered as "", never left out. */
    assert_string_equal(json_object_get_string(member(error, "request_id")), "");
    assert_int_equal(json_object_get_int(member(error, "upstream_status")), 401);
    json_object_put(root);
    free(text);
    gw_envelope_clear(&env);
}

/*
 * An envelope without details is written without json-c: its bytes must be json-c's, for every
 * byte a request id (or a table text) could hold, with and without an upstream status.
 */
static void test_render_plain_matches_json_c(void **state)
{
    char id[256];
    size_t n = 0;

    (void)state;
    for (int c = 1; c < 256; c++)
        id[n++] = (char)c;
    id[n] = '\0';
    for (int up = 0; up <= 503; up += 503) {
        struct gw_envelope env;
        json_object *root = json_object_new_object();
        json_object *error = json_object_new_object();
        const struct gw_err_info *info = gw_err_info(GW_ERR_INVALID_CONTACT_ID);
        const char *want;
        size_t len;
        char *text;

        gw_envelope_local(&env, GW_ERR_INVALID_CONTACT_ID);
        env.upstream_status = up;
        json_object_object_add(error, "status", json_object_new_int(info->status));
        json_object_object_add(error, "code", json_object_new_string(info->code));
        json_object_object_add(error, "message", json_object_new_string(info->message));
        json_object_object_add(error, "request_id", json_object_new_string(id));
        if (up > 0)
            json_object_object_add(error, "upstream_status", json_object_new_int(up));
        json_object_object_add(root, "error", error);
        want = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                        JSON_C_TO_STRING_NOSLASHESCAPE);
        text = gw_envelope_render(&env, id, &len);
        assert_non_null(text);
        assert_string_equal(text, want);
        assert_int_equal(len, strlen(want));
        free(text);
        json_object_put(root);
        gw_envelope_clear(&env);
    }
}

static void test_render_escapes_and_empty_details(void **state)
{
    static const char *const keys[] = {"status", "code", "message", "request_id"};
    struct gw_envelope env;
    size_t len;
    char *text;
    json_object *root;
    json_object *error;

    (void)state;
    gw_envelope_local(&env, GW_ERR_INVALID_TAG);
    /* An empty details array is left out. */
    env.details = json_object_new_array();
    assert_non_null(env.details);
    text = gw_envelope_render(&env, "q\"uote\\", &len);
    root = parse_rendered(text, len);
    error = member(root, "error");
    assert_keys(error, keys, 4);
    assert_string_equal(json_object_get_string(member(error, "request_id")), "q\"uote\\");
    json_object_put(root);
    free(text);
    gw_envelope_clear(&env);
    assert_null(env.details);

    /* A zeroed envelope renders as the internal error; len may be NULL. */
    memset(&env, 0, sizeof(env));
    text = gw_envelope_render(&env, "z", NULL);
    assert_non_null(text);
    assert_string_equal(text, "{\"error\":{\"status\":500,\"code\":\"internal_error\","
                              "\"message\":\"Internal error\",\"request_id\":\"z\"}}");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_matches_spec),
        cmocka_unit_test(test_table_row_per_value_codes_unique),
        cmocka_unit_test(test_table_out_of_range_is_internal),
        cmocka_unit_test(test_local_fills_from_table),
        cmocka_unit_test(test_local_ok_and_strays_are_internal),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_mapping_every_row),
        cmocka_unit_test(test_details_only_on_passed_on_4xx),
        cmocka_unit_test(test_details_never_on_502_even_with_body),
        cmocka_unit_test(test_new_style_drops_generic_entry),
        cmocka_unit_test(test_old_style_single_entry),
        cmocka_unit_test(test_only_generic_entry_gives_no_details),
        cmocka_unit_test(test_entries_skipped_or_completed),
        cmocka_unit_test(test_third_shape_errors_array),
        cmocka_unit_test(test_third_shape_errors_map),
        cmocka_unit_test(test_third_shape_errors_string),
        cmocka_unit_test(test_third_shape_without_usable_errors),
        cmocka_unit_test(test_non_json_bodies_ignored),
        cmocka_unit_test(test_trailing_whitespace_accepted),
        cmocka_unit_test(test_deep_nesting_ignored),
        cmocka_unit_test(test_depth_bound),
        cmocka_unit_test(test_details_capped),
        cmocka_unit_test(test_long_message_cut_at_utf8_boundary),
        cmocka_unit_test(test_long_code_cut),
        cmocka_unit_test(test_key_masked),
        cmocka_unit_test(test_key_across_cut_masked),
        cmocka_unit_test(test_render_local_exact),
        cmocka_unit_test(test_render_every_local_error),
        cmocka_unit_test(test_render_upstream_with_details),
        cmocka_unit_test(test_render_upstream_without_details),
        cmocka_unit_test(test_render_escapes_and_empty_details),
        cmocka_unit_test(test_render_plain_matches_json_c),
    };

    return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}

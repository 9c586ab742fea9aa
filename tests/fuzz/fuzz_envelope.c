/*
 * libFuzzer target: the upstream answer normalizer. The first two bytes pick an HTTP status
 * (100..599), the rest is the body HelpCrunch (or a proxy in front of it) sent. Each input goes
 * through gw_envelope_from_upstream and gw_envelope_render for that status, and through
 * gw_reply_build for every success shape. Properties besides memory safety:
 *   - the rendered envelope is JSON with the status, a code and the request id;
 *   - details appear only for 400, 404, 409 and 422, at most GW_MAX_DETAILS, each string at
 *     most GW_MAX_DETAIL_BYTES and valid UTF-8;
 *   - the API key never appears in the rendered envelope, whatever the body holds (the
 *     dictionary and the seeds hold the key, so the fuzzer gets to try).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/envelope.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/reply.h"
#include "hcgw/secret.h"
#include "hcgw/text.h"

/* The key the fuzzer's secret holds; the seeds and the dictionary use it too. */
#define FUZZ_KEY "hcFUZZkey0123456789secret"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gw_secret *secret;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_envelope: property broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *error = NULL;

    (void)argc;
    (void)argv;
    setenv("HCGW_API_KEY", FUZZ_KEY, 1);
    unsetenv("HCGW_API_KEY_FILE");
    secret = gw_secret_load(NULL, NULL, &error);
    check(secret != NULL, "the fuzz key loads");
    free(error);
    return 0;
}

static void check_details(json_object *details)
{
    size_t n = json_object_array_length(details);

    check(n >= 1 && n <= GW_MAX_DETAILS, "1..GW_MAX_DETAILS details");
    for (size_t i = 0; i < n; i++) {
        json_object *d = json_object_array_get_idx(details, i);
        json_object *code = NULL;
        json_object *message = NULL;

        check(json_object_object_get_ex(d, "code", &code) &&
                  json_object_object_get_ex(d, "message", &message),
              "a detail has code and message");
        check(json_object_get_string_len(code) <= GW_MAX_DETAIL_BYTES &&
                  json_object_get_string_len(message) <= GW_MAX_DETAIL_BYTES,
              "detail strings are cut");
        check(gw_text_utf8_count(json_object_get_string(message),
                                 (size_t)json_object_get_string_len(message)) >= 0,
              "detail messages are UTF-8");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum gw_reply_kind kinds[] = {GW_REPLY_CUSTOMER, GW_REPLY_TAGS, GW_REPLY_LIST,
                                               GW_REPLY_SEARCH, GW_REPLY_DELETED};
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    struct gw_envelope env;
    json_object *root;
    json_object *error;
    json_object *v;
    json_object *details = NULL;
    size_t text_len = 0;
    char *text;
    int status;

    if (size < 2)
        return 0;
    status = 100 + (((int)data[0] << 8) | data[1]) % 500;

    gw_envelope_from_upstream(&env, status, body, len, secret);
    text = gw_envelope_render(&env, "fuzz-request-id", &text_len);
    check(text != NULL, "the envelope renders");
    check(strlen(text) == text_len, "no NUL inside the envelope");
    check(strstr(text, FUZZ_KEY) == NULL, "the key never appears in an envelope");
    root = json_tokener_parse(text);
    check(root != NULL, "the envelope is JSON");
    check(json_object_object_get_ex(root, "error", &error), "it has error");
    check(json_object_object_get_ex(error, "status", &v) && json_object_get_int(v) == env.status,
          "it has the status");
    check(env.status >= 400 && env.status <= 599, "the status is an error status");
    check(json_object_object_get_ex(error, "request_id", &v) &&
              strcmp(json_object_get_string(v), "fuzz-request-id") == 0,
          "it has the request id");
    check(json_object_object_get_ex(error, "upstream_status", &v) &&
              json_object_get_int(v) == status,
          "it has the upstream status");
    if (json_object_object_get_ex(error, "details", &details)) {
        check(status == 400 || status == 404 || status == 409 || status == 422,
              "details only on answers passed on as 4xx");
        check_details(details);
    }
    json_object_put(root);
    free(text);
    gw_envelope_clear(&env);

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char *out = NULL;
        size_t out_len = 0;
        int rc = gw_reply_build(kinds[i], body, len, &out, &out_len);

        check(rc == 0 || rc == GW_ERR_UPSTREAM_BAD_RESPONSE || rc == GW_ERR_NOMEM,
              "a 2xx body is used or upstream_bad_response");
        if (rc == 0 && out != NULL) {
            json_object *reshaped = json_tokener_parse(out);

            check(out[out_len] == '\0' && reshaped != NULL, "a reshaped body is JSON");
            json_object_put(reshaped);
        }
        free(out);
    }
    return 0;
}

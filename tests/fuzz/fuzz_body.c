/*
 * libFuzzer target: request body validation. Every input is offered as the body of every
 * route that takes one (each body kind: tags with and without colours, object, search), plus
 * the JSON parser and the text checks on their own. Properties besides memory safety:
 *   - a body accepted for an AS_IS route is forwarded byte for byte;
 *   - an accepted tags body becomes JSON whose every name passes gw_text_check_tag and whose
 *     every tag has only "name" (and "color" when colours are kept);
 *   - every refusal is one of the documented values;
 *   - gw_json_check (no tree) and gw_body_parse (which runs it, then has json-c build the tree)
 *     agree on every input: json-c builds a tree for every text gw_json_check passes, with the
 *     root type gw_json_check reported, and a customer reply passes exactly when json-c makes
 *     an object of it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/err.h"
#include "hcgw/json.h"
#include "hcgw/reply.h"
#include "hcgw/router.h"
#include "hcgw/text.h"

#include "../support/json_c_type.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_body: property broken: %s\n", what);
        abort();
    }
}

static void check_tags(const char *out, bool colors)
{
    json_object *root = json_tokener_parse(out);
    json_object *tags;
    size_t n;

    check(root != NULL, "the upstream tags body is JSON");
    check(json_object_object_get_ex(root, "tags", &tags) &&
              json_object_is_type(tags, json_type_array),
          "it has a tags array");
    n = json_object_array_length(tags);
    check(n >= 1 && n <= 100, "1..100 tags");
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tags, i);
        json_object *name;

        check(json_object_object_get_ex(t, "name", &name), "each tag has a name");
        check(gw_text_check_tag(json_object_get_string(name),
                                (size_t)json_object_get_string_len(name)) == 0,
              "each name is valid");
        check(json_object_object_length(t) == 1 ||
                  (colors && json_object_object_length(t) == 2 &&
                   json_object_object_get_ex(t, "color", NULL)),
              "only name (and color where kept)");
    }
    json_object_put(root);
}

/* The validator against the parser it stands in for, alone and as the customer reply check. */
static void check_validator(const char *body, size_t size)
{
    json_object *parsed = NULL;
    enum gw_json_type type = (enum gw_json_type)-1;
    char *out = NULL;
    size_t out_len = 0;
    int rc_parse = gw_body_parse(body, size, &parsed);
    int rc_check = gw_json_check(body, size, &type);
    int rc_reply = gw_reply_build(GW_REPLY_CUSTOMER, body, size, &out, &out_len);

    check(rc_parse == 0 || rc_parse == GW_ERR_INVALID_BODY || rc_parse == GW_ERR_NOMEM,
          "gw_body_parse gives a documented value");
    if (rc_parse != GW_ERR_NOMEM) {
        check(rc_check == rc_parse, "gw_json_check accepts exactly what gw_body_parse does");
        if (rc_parse == 0)
            check(type == json_c_type(parsed), "gw_json_check gives json-c's root type");
        check((rc_reply == 0) ==
                  (rc_parse == 0 && json_object_is_type(parsed, json_type_object)),
              "a customer reply passes exactly when json-c makes an object of it");
    }
    check(rc_reply == 0 || rc_reply == GW_ERR_UPSTREAM_BAD_RESPONSE,
          "a customer reply is passed or upstream_bad_response");
    check(out == NULL && out_len == 0, "a customer reply builds no body");
    json_object_put(parsed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct gw_match m;
    size_t n = 0;
    const struct gw_route *table = gw_router_table(&n);
    char *copy;

    memset(&m, 0, sizeof m);
    memcpy(m.id, "1568834", 8);
    for (size_t i = 0; i < n; i++) {
        const struct gw_route *r = &table[i];
        char *out = NULL;
        size_t out_len = 0;
        int rc;

        if (r->body == GW_BODY_NONE)
            continue;
        rc = gw_body_build(r, &m, body, size, &out, &out_len);
        if (rc == 0) {
            check(out != NULL && out[out_len] == '\0', "a built body is terminated");
            if (r->up_body == GW_UPBODY_AS_IS)
                check(out_len == size && memcmp(out, data, size) == 0, "AS_IS is byte for byte");
            else if (r->up_body == GW_UPBODY_TAGS || r->up_body == GW_UPBODY_TAGS_NAMES)
                check_tags(out, r->up_body == GW_UPBODY_TAGS);
        } else {
            check(out == NULL, "nothing is built on a refusal");
            check(rc == GW_ERR_INVALID_BODY || rc == GW_ERR_INVALID_TAG || rc == GW_ERR_NOMEM,
                  "a refusal is invalid_body or invalid_tag");
        }
        free(out);
    }

    check_validator(body, size);
    gw_text_utf8_count(body, size);
    gw_text_check_tag(body, size);

    /* The NUL-terminated checks: a Content-Type value and a colour. */
    copy = malloc(size + 1);
    if (copy != NULL) {
        memcpy(copy, data, size);
        copy[size] = '\0';
        gw_text_is_json_media_type(copy);
        gw_text_is_color(copy);
        free(copy);
    }
    return 0;
}

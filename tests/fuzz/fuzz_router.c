/*
 * libFuzzer target: the router and path decoding. The input is "METHOD\nPATH[?QUERY]": the
 * method (at most 15 bytes, as request.c keeps it) up to the first newline, then the raw,
 * still percent-encoded request target. Beyond "no crash, no leak, no undefined behaviour"
 * it checks the properties the security of the upstream URL rests on:
 *   - a matched {id} is 1..19 ASCII digits without a leading zero, so the upstream URL built
 *     from it (as request.c builds it) is the base URL, the route's path and nothing else:
 *     no "..", "//", '@', '?', '#' or '%' can come from a caller;
 *   - a matched {name} is valid text (gw_text_check_tag) that only ever lands in the JSON
 *     body, where it reads back byte for byte;
 *   - the list query becomes an upstream query of fixed keys and digits only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/body.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/query.h"
#include "hcgw/router.h"
#include "hcgw/text.h"

#define BASE_URL "https://api.helpcrunch.com/v1"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_router: property broken: %s\n", what);
        abort();
    }
}

/* The upstream URL exactly as request.c's build_url makes it, checked to be steer-proof. */
static void check_upstream_url(const struct gw_route *r, const struct gw_match *m)
{
    char url[GW_MAX_UPSTREAM_URL + 1];
    const char *tpl = r->up_path;
    const char *p = strstr(tpl, "{id}");
    const char *path;
    int n;

    if (p != NULL)
        n = snprintf(url, sizeof url, "%s%.*s%s%s", BASE_URL, (int)(p - tpl), tpl, m->id, p + 4);
    else
        n = snprintf(url, sizeof url, "%s%s", BASE_URL, tpl);
    check(n > 0 && (size_t)n < sizeof url, "upstream URL fits");
    path = url + strlen(BASE_URL);
    check(strncmp(path, "/customers", 10) == 0, "upstream path starts with /customers");
    check(strstr(path, "..") == NULL && strstr(path, "//") == NULL, "no .. or // upstream");
    check(strpbrk(path, "@?#%\\ \r\n") == NULL, "no @ ? # % \\ or whitespace upstream");
    for (const char *c = path; *c != '\0'; c++)
        check((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '/',
              "upstream path is lowercase letters, digits and slashes");
}

/* The {name} of a tag route goes into the JSON body, and reads back unchanged. */
static void check_tag_body(const struct gw_route *r, const struct gw_match *m)
{
    char *body = NULL;
    size_t len = 0;
    json_object *root = NULL;
    json_object *tags;
    json_object *name;
    int rc = gw_body_build(r, m, NULL, 0, &body, &len);

    check(rc == 0 || rc == GW_ERR_NOMEM, "a matched tag name builds a body");
    if (rc != 0)
        return;
    root = json_tokener_parse(body);
    check(root != NULL, "the upstream body is JSON");
    check(json_object_object_get_ex(root, "tags", &tags) && json_object_array_length(tags) == 1,
          "one tag upstream");
    check(json_object_object_get_ex(json_object_array_get_idx(tags, 0), "name", &name),
          "the tag has a name");
    check((size_t)json_object_get_string_len(name) == m->name_len &&
              memcmp(json_object_get_string(name), m->name, m->name_len) == 0,
          "the name reads back byte for byte");
    json_object_put(root);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    char method[16];
    char query[256];
    char decoded[GW_MAX_TAG_BYTES + 1];
    size_t mlen;
    size_t plen;
    size_t dlen = 0;
    struct gw_match m;
    char *target;
    char *q;
    int rc;

    if (nl == NULL)
        return 0;
    mlen = (size_t)(nl - data);
    if (mlen >= sizeof method)
        return 0;
    memcpy(method, data, mlen);
    method[mlen] = '\0';
    plen = size - mlen - 1;
    target = malloc(plen + 1);
    if (target == NULL)
        return 0;
    memcpy(target, nl + 1, plen);
    target[plen] = '\0';
    q = strchr(target, '?');
    if (q != NULL)
        *q++ = '\0';

    rc = gw_router_match(method, target, &m);
    if (rc == 0) {
        const struct gw_route *r = m.route;

        /* HEAD is served by the GET rows (router.h). */
        check(r != NULL && (strcmp(r->method, method) == 0 ||
                            (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)),
              "the method matched");
        if (strstr(r->pattern, "{id}") != NULL)
            check(gw_router_check_id(m.id, strlen(m.id)) == 0, "the id is valid");
        if (strstr(r->pattern, "{name}") != NULL) {
            check(m.name_len > 0 && gw_text_check_tag(m.name, m.name_len) == 0,
                  "the name is valid");
            check(m.name[m.name_len] == '\0', "the name is terminated");
        }
        if (r->up_path != NULL)
            check_upstream_url(r, &m);
        if (r->up_body == GW_UPBODY_TAG_NAME)
            check_tag_body(r, &m);
        if (r->query && gw_query_list(q, query, sizeof query) == 0) {
            check(strncmp(query, "?offset=", 8) == 0, "the query starts with offset");
            check(strspn(query, "?&=.0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
                      == strlen(query),
                  "the query holds fixed keys, table values and digits only");
        }
    } else {
        check(rc == GW_ERR_ROUTE_NOT_FOUND || rc == GW_ERR_METHOD_NOT_ALLOWED ||
                  rc == GW_ERR_INVALID_CONTACT_ID || rc == GW_ERR_INVALID_TAG,
              "a refusal is one of the router's errors");
        if (rc == GW_ERR_METHOD_NOT_ALLOWED)
            check(m.allow[0] != '\0', "a 405 has an Allow list");
    }

    /* The pieces on their own, over the whole raw target (NULs and all). */
    gw_router_check_id((const char *)nl + 1, plen);
    if (gw_router_decode_tag((const char *)nl + 1, plen, decoded, sizeof decoded, &dlen) == 0)
        check(dlen > 0 && dlen < sizeof decoded && decoded[dlen] == '\0', "decode bounds");
    gw_query_list(target, query, sizeof query);
    free(target);
    return 0;
}

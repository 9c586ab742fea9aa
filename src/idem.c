/*
 * Idempotency-Key's rules (idem.h): the key's syntax, the body's fingerprint, which outcomes of
 * a create are final, the search that looks for a create of unknown outcome and the pick of
 * its answer; and the store's verbs, which call through the backend's table. Pure functions on
 * caller-owned data; any thread.
 */
#include "hcgw/idem.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "hcgw/auth.h"
#include "hcgw/body.h"
#include "hcgw/json.h"

_Static_assert(GW_IDEM_FINGERPRINT_BYTES == GW_SHA256_BYTES, "the fingerprint is a SHA-256");

/* A key's character: visible ASCII (the draft's sf-string allows a space too; a key does not). */
static bool key_char(char c)
{
    return c >= 0x21 && c <= 0x7e;
}

/*
 * The draft's form (RFC 8941 sf-string): DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE,
 * and nothing after it (an Item's parameters are not taken). Returns the key's length, or -1.
 */
static int parse_quoted(const char *v, char out[GW_MAX_IDEM_KEY_BYTES + 1])
{
    size_t i = 1;
    size_t n = 0;
    char c;

    for (;;) {
        c = v[i++];
        if (c == '"')
            break;
        if (c == '\\') {
            c = v[i++];
            if (c != '"' && c != '\\')
                return -1;
        }
        /* The end of the text (an unterminated string) is not a key character either. */
        if (!key_char(c) || n >= GW_MAX_IDEM_KEY_BYTES)
            return -1;
        out[n++] = c;
    }
    if (v[i] != '\0')
        return -1;
    out[n] = '\0';
    return (int)n;
}

static int parse_bare(const char *v, char out[GW_MAX_IDEM_KEY_BYTES + 1])
{
    size_t n;

    for (n = 0; v[n] != '\0'; n++) {
        if (!key_char(v[n]) || n >= GW_MAX_IDEM_KEY_BYTES)
            return -1;
        out[n] = v[n];
    }
    out[n] = '\0';
    return (int)n;
}

int gw_idem_parse_key(const char *value, unsigned count, char out[GW_MAX_IDEM_KEY_BYTES + 1])
{
    int n;

    out[0] = '\0';
    if (value == NULL || count != 1)
        return GW_ERR_INVALID_IDEMPOTENCY_KEY;
    n = value[0] == '"' ? parse_quoted(value, out) : parse_bare(value, out);
    if (n < 1) {
        out[0] = '\0';
        return GW_ERR_INVALID_IDEMPOTENCY_KEY;
    }
    return 0;
}

int gw_idem_fingerprint(const char *body, size_t len,
                        unsigned char out[GW_IDEM_FINGERPRINT_BYTES])
{
    return gw_auth_sha256(body != NULL ? body : "", body != NULL ? len : 0, out) == 0
               ? 0
               : GW_ERR_INTERNAL;
}

enum gw_idem_fate gw_idem_fate(enum gw_err failure, long status, bool usable, bool sent,
                               bool was_unknown)
{
    enum gw_idem_fate f;

    if (failure != GW_OK)
        f = sent ? GW_IDEM_UNKNOWN : GW_IDEM_FORGET;
    else if (status >= 200 && status <= 299)
        f = usable ? GW_IDEM_KEEP : GW_IDEM_UNKNOWN;
    else if (status == 400 || status == 422)
        f = GW_IDEM_KEEP;
    else if (status >= 401 && status <= 499)
        f = GW_IDEM_FORGET;
    else
        f = GW_IDEM_UNKNOWN; /* 5xx (and 1xx/3xx): HelpCrunch may have done it first */
    /* What an earlier attempt did stays unknown until a final answer says it. */
    if (f == GW_IDEM_FORGET && was_unknown)
        f = GW_IDEM_UNKNOWN;
    return f;
}

/* The member @p name of @p root when it is a non-empty string, else NULL. */
static json_object *nonempty_string(json_object *root, const char *name)
{
    json_object *v;

    if (!json_object_object_get_ex(root, name, &v) || !json_object_is_type(v, json_type_string) ||
        json_object_get_string_len(v) == 0)
        return NULL;
    return v;
}

/* A malloc'd copy of @p obj's text. Returns 0 or GW_ERR_NOMEM. */
static int serialize(json_object *obj, char **out, size_t *out_len)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    char *copy;

    if (s == NULL)
        return GW_ERR_NOMEM;
    copy = malloc(n + 1);
    if (copy == NULL)
        return GW_ERR_NOMEM;
    memcpy(copy, s, n + 1);
    *out = copy;
    *out_len = n;
    return 0;
}

int gw_idem_search_body(const char *body, size_t len, char **out, size_t *out_len)
{
    json_object *root = NULL;
    json_object *search = NULL;
    json_object *filter = NULL;
    json_object *cond = NULL;
    json_object *value;
    const char *field = "customers.userId";
    int rc;

    *out = NULL;
    *out_len = 0;
    rc = gw_body_parse(body, len, &root);
    if (rc == GW_ERR_NOMEM)
        goto out;
    rc = 1;
    if (root == NULL || !json_object_is_type(root, json_type_object))
        goto out;
    value = nonempty_string(root, "userId");
    if (value == NULL) {
        field = "customers.email";
        value = nonempty_string(root, "email");
    }
    if (value == NULL)
        goto out;
    rc = GW_ERR_NOMEM;
    search = json_object_new_object();
    filter = json_object_new_array();
    cond = json_object_new_object();
    if (search == NULL || filter == NULL || cond == NULL)
        goto out;
    if (gw_json_add(cond, "field", json_object_new_string(field)) != 0 ||
        gw_json_add(cond, "operator", json_object_new_string("=")) != 0 ||
        gw_json_add(cond, "value", json_object_get(value)) != 0)
        goto out;
    rc = gw_json_append(filter, cond);
    cond = NULL;
    if (rc != 0)
        goto out;
    rc = gw_json_add(search, "filter", filter);
    filter = NULL;
    if (rc == 0)
        rc = gw_json_add(search, "limit", json_object_new_int(GW_IDEM_SEARCH_LIMIT));
    if (rc == 0)
        rc = serialize(search, out, out_len);
out:
    json_object_put(cond);
    json_object_put(filter);
    json_object_put(search);
    json_object_put(root);
    return rc;
}

int gw_idem_search_pick(const char *body, size_t len, char **out, size_t *out_len)
{
    json_object *root = NULL;
    json_object *data;
    json_object *best = NULL;
    json_object *id;
    int64_t best_id = -1;
    size_t i;
    size_t n;
    int rc;

    *out = NULL;
    *out_len = 0;
    rc = gw_body_parse(body, len, &root);
    if (rc == GW_ERR_NOMEM)
        goto out;
    rc = GW_ERR_UPSTREAM_BAD_RESPONSE;
    if (root == NULL || !json_object_is_type(root, json_type_object) ||
        !json_object_object_get_ex(root, "data", &data) ||
        !json_object_is_type(data, json_type_array))
        goto out;
    n = json_object_array_length(data);
    for (i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(data, i);
        int64_t v = -1;

        if (!json_object_is_type(c, json_type_object))
            goto out;
        /* HelpCrunch's ids are integers; one sent as a string of digits counts the same. */
        if (json_object_object_get_ex(c, "id", &id) &&
            (json_object_is_type(id, json_type_int) || json_object_is_type(id, json_type_string)))
            v = json_object_get_int64(id);
        if (best == NULL || v > best_id) {
            best = c;
            best_id = v;
        }
    }
    rc = 1;
    if (best != NULL)
        rc = serialize(best, out, out_len);
out:
    json_object_put(root);
    return rc;
}

/* ---- the store's verbs ---- */

int gw_idem_begin(struct gw_idem_store *s, struct gw_idem_claim *c, uint64_t now_ms,
                  uint64_t lease_ms, uint64_t deadline_ms)
{
    int rc;

    memset(&c->rec, 0, sizeof(c->rec));
    c->held = false;
    c->token = 0;
    c->holder = NULL;
    c->trip = NULL;
    rc = s->ops->begin(s, c, now_ms, lease_ms, deadline_ms);
    if (rc != GW_IDEM_LATER)
        c->verdict = rc;
    return rc;
}

int gw_idem_complete(struct gw_idem_store *s, struct gw_idem_claim *c, long status,
                     const char *body, size_t len, uint64_t now_ms)
{
    int rc;

    if (!c->held)
        return 0;
    rc = s->ops->complete(s, c, status, body, len, now_ms);
    c->held = false;
    return rc;
}

void gw_idem_abandon(struct gw_idem_store *s, struct gw_idem_claim *c, bool outcome_unknown,
                     uint64_t now_ms)
{
    if (!c->held)
        return;
    s->ops->abandon(s, c, outcome_unknown, now_ms);
    c->held = false;
}

void gw_idem_cancel(struct gw_idem_store *s, struct gw_idem_claim *c)
{
    if (c->trip != NULL && s->ops->cancel != NULL)
        s->ops->cancel(s, c);
}

void gw_idem_stop(struct gw_idem_store *s)
{
    if (s->ops->stop != NULL)
        s->ops->stop(s);
}

int gw_idem_configure(struct gw_idem_store *s, uint64_t ttl_ms, long max_entries,
                      long max_bytes)
{
    if (s->ops->configure == NULL)
        return 0;
    return s->ops->configure(s, ttl_ms, max_entries, max_bytes);
}

struct gw_idem_stats gw_idem_stats(struct gw_idem_store *s)
{
    return s->ops->stats(s);
}

void gw_idem_free(struct gw_idem_store *s)
{
    if (s != NULL)
        s->ops->free(s);
}

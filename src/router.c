/*
 * The route table and the matcher. Every route hcgw serves is one row of data below: its
 * internal method and path pattern, the HelpCrunch call it becomes, what body it takes and
 * sends, and how the answer is shaped. The matcher walks a raw path and the patterns segment
 * by segment in place, so matching allocates nothing and copies only the parameters it keeps.
 */
#include "hcgw/router.h"

#include <string.h>

#include "hcgw/err.h"
#include "hcgw/text.h"

/*
 * Indexed by enum gw_route_id, so that gw_router_get is a lookup; the designated initializers
 * make a row that lands at the wrong index impossible to write by accident. Among rows with the
 * same pattern, table order is the order of the Allow header of a 405.
 */
static const struct gw_route table[GW_ROUTE__COUNT] = {
    [GW_ROUTE_TAG_DELETE] = {
        .id = GW_ROUTE_TAG_DELETE, .name = "tag_delete",
        .method = "DELETE", .pattern = "/contacts/{id}/tags/{name}",
        .up_method = "DELETE", .up_path = "/customers/{id}/tags",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_TAG_NAME, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = true, .query = false },
    [GW_ROUTE_TAG_PUT] = {
        .id = GW_ROUTE_TAG_PUT, .name = "tag_put",
        .method = "PUT", .pattern = "/contacts/{id}/tags/{name}",
        .up_method = "PUT", .up_path = "/customers/{id}/tags",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_TAG_NAME, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = true, .query = false },
    /* Upstream this is a PUT, but the caller's POST promises no idempotency: never retried. */
    [GW_ROUTE_TAGS_ADD] = {
        .id = GW_ROUTE_TAGS_ADD, .name = "tags_add",
        .method = "POST", .pattern = "/contacts/{id}/tags",
        .up_method = "PUT", .up_path = "/customers/{id}/tags",
        .body = GW_BODY_TAGS, .up_body = GW_UPBODY_TAGS, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = false, .query = false },
    /* HelpCrunch removes by name; a colour in the request means nothing here, so it is dropped. */
    [GW_ROUTE_TAGS_REMOVE] = {
        .id = GW_ROUTE_TAGS_REMOVE, .name = "tags_remove",
        .method = "DELETE", .pattern = "/contacts/{id}/tags",
        .up_method = "DELETE", .up_path = "/customers/{id}/tags",
        .body = GW_BODY_TAGS, .up_body = GW_UPBODY_TAGS_NAMES, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = true, .query = false },
    [GW_ROUTE_TAGS_GET] = {
        .id = GW_ROUTE_TAGS_GET, .name = "tags_get",
        .method = "GET", .pattern = "/contacts/{id}/tags",
        .up_method = "GET", .up_path = "/customers/{id}",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_TAGS,
        .success_status = 200, .retryable = true, .query = false },
    [GW_ROUTE_CONTACT_GET] = {
        .id = GW_ROUTE_CONTACT_GET, .name = "contact_get",
        .method = "GET", .pattern = "/contacts/{id}",
        .up_method = "GET", .up_path = "/customers/{id}",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = true, .query = false },
    [GW_ROUTE_CONTACT_PATCH] = {
        .id = GW_ROUTE_CONTACT_PATCH, .name = "contact_patch",
        .method = "PATCH", .pattern = "/contacts/{id}",
        .up_method = "PATCH", .up_path = "/customers/{id}",
        .body = GW_BODY_OBJECT, .up_body = GW_UPBODY_AS_IS, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = false, .query = false },
    /* Setting "blocked" to a fixed value is idempotent although the upstream verb is PATCH. */
    [GW_ROUTE_BLOCK] = {
        .id = GW_ROUTE_BLOCK, .name = "contact_block",
        .method = "PUT", .pattern = "/contacts/{id}/block",
        .up_method = "PATCH", .up_path = "/customers/{id}",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_BLOCK, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = true, .query = false },
    [GW_ROUTE_UNBLOCK] = {
        .id = GW_ROUTE_UNBLOCK, .name = "contact_unblock",
        .method = "DELETE", .pattern = "/contacts/{id}/block",
        .up_method = "PATCH", .up_path = "/customers/{id}",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_UNBLOCK, .reply = GW_REPLY_CUSTOMER,
        .success_status = 200, .retryable = true, .query = false },
    [GW_ROUTE_CONTACT_DELETE] = {
        .id = GW_ROUTE_CONTACT_DELETE, .name = "contact_delete",
        .method = "DELETE", .pattern = "/contacts/{id}",
        .up_method = "DELETE", .up_path = "/customers/{id}",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_DELETED,
        .success_status = 204, .retryable = true, .query = false },
    [GW_ROUTE_CONTACTS_LIST] = {
        .id = GW_ROUTE_CONTACTS_LIST, .name = "contacts_list",
        .method = "GET", .pattern = "/contacts",
        .up_method = "GET", .up_path = "/customers",
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_LIST,
        .success_status = 200, .retryable = true, .query = true },
    /* A search is a read, but it is a POST to both sides, so it is not retried. */
    [GW_ROUTE_CONTACTS_SEARCH] = {
        .id = GW_ROUTE_CONTACTS_SEARCH, .name = "contacts_search",
        .method = "POST", .pattern = "/contacts/search",
        .up_method = "POST", .up_path = "/customers/search",
        .body = GW_BODY_SEARCH, .up_body = GW_UPBODY_AS_IS, .reply = GW_REPLY_SEARCH,
        .success_status = 200, .retryable = false, .query = false },
    [GW_ROUTE_CONTACT_CREATE] = {
        .id = GW_ROUTE_CONTACT_CREATE, .name = "contact_create",
        .method = "POST", .pattern = "/contacts",
        .up_method = "POST", .up_path = "/customers",
        .body = GW_BODY_OBJECT, .up_body = GW_UPBODY_AS_IS, .reply = GW_REPLY_CUSTOMER,
        .success_status = 201, .retryable = false, .query = false },
    /* Local routes make no upstream call, so there is nothing to retry. */
    [GW_ROUTE_HEALTHZ] = {
        .id = GW_ROUTE_HEALTHZ, .name = "healthz",
        .method = "GET", .pattern = "/healthz",
        .up_method = NULL, .up_path = NULL,
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_LOCAL,
        .success_status = 200, .retryable = false, .query = false },
    [GW_ROUTE_READYZ] = {
        .id = GW_ROUTE_READYZ, .name = "readyz",
        .method = "GET", .pattern = "/readyz",
        .up_method = NULL, .up_path = NULL,
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_LOCAL,
        .success_status = 200, .retryable = false, .query = false },
    [GW_ROUTE_METRICS] = {
        .id = GW_ROUTE_METRICS, .name = "metrics",
        .method = "GET", .pattern = "/metrics",
        .up_method = NULL, .up_path = NULL,
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_LOCAL,
        .success_status = 200, .retryable = false, .query = false },
    [GW_ROUTE_OPENAPI] = {
        .id = GW_ROUTE_OPENAPI, .name = "openapi",
        .method = "GET", .pattern = "/openapi.yaml",
        .up_method = NULL, .up_path = NULL,
        .body = GW_BODY_NONE, .up_body = GW_UPBODY_NONE, .reply = GW_REPLY_LOCAL,
        .success_status = 200, .retryable = false, .query = false },
};

/* One '/'-separated piece of a path or pattern, pointing into the caller's string. */
struct seg {
    const char *p;
    size_t len;
};

/* The piece of @p s from *pos up to the next '/' or the end; *pos moves past the '/'. */
static bool next_seg(const char *s, size_t len, size_t *pos, struct seg *out)
{
    const char *slash;

    if (*pos > len)
        return false;
    out->p = s + *pos;
    slash = memchr(out->p, '/', len - *pos);
    out->len = slash != NULL ? (size_t)(slash - out->p) : len - *pos;
    *pos += out->len + 1;
    return true;
}

static bool is_param(const struct seg *s)
{
    return s->len >= 2 && s->p[0] == '{' && s->p[s->len - 1] == '}';
}

static bool seg_is(const struct seg *s, const char *lit)
{
    size_t n = strlen(lit);

    return s->len == n && memcmp(s->p, lit, n) == 0;
}

/*
 * Does the pattern of @p r have the shape of @p path (@p len bytes, starting with '/', no
 * empty segment)? Returns the number of literal segments of the pattern when it does, or -1.
 */
static int shape_match(const struct gw_route *r, const char *path, size_t len)
{
    const char *pat = r->pattern;
    size_t plen = strlen(pat);
    size_t ppos = 1;
    size_t pos = 1;
    int literals = 0;
    struct seg ps;
    struct seg s;

    for (;;) {
        bool more_pat = next_seg(pat, plen, &ppos, &ps);
        bool more_path = next_seg(path, len, &pos, &s);

        if (more_pat != more_path)
            return -1;
        if (!more_pat)
            return literals;
        if (is_param(&ps))
            continue;
        if (ps.len != s.len || memcmp(ps.p, s.p, s.len) != 0)
            return -1;
        literals++;
    }
}

/* Append ", " (unless first) and @p method to the Allow list; false when it does not fit. */
static bool allow_add(char *allow, size_t cap, const char *method)
{
    size_t used = strlen(allow);
    size_t sep = used > 0 ? 2 : 0;
    size_t n = strlen(method);

    if (used + sep + n + 1 > cap)
        return false;
    if (sep > 0)
        memcpy(allow + used, ", ", sep);
    memcpy(allow + used + sep, method, n + 1);
    return true;
}

/*
 * Does the row @p r serve @p method? HEAD is served by every GET row (RFC 9110 section 9.3.2):
 * the same answer, which libmicrohttpd sends without its body.
 */
static bool serves(const struct gw_route *r, const char *method)
{
    return strcmp(r->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0);
}

/* Is @p method already in the comma-separated @p allow? */
static bool allow_has(const char *allow, const char *method)
{
    size_t n = strlen(method);
    const char *p = allow;

    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (len == n && memcmp(p, method, n) == 0)
            return true;
        if (end == NULL)
            break;
        p = end + 2;
    }
    return false;
}

/* Copy and check the parameters of @p path for the matched route m->route. */
static int take_params(const char *path, size_t len, struct gw_match *m)
{
    const char *pat = m->route->pattern;
    size_t plen = strlen(pat);
    size_t ppos = 1;
    size_t pos = 1;
    struct seg ps;
    struct seg s;
    int rc = 0;

    while (next_seg(pat, plen, &ppos, &ps) && next_seg(path, len, &pos, &s)) {
        if (seg_is(&ps, "{id}")) {
            rc = gw_router_check_id(s.p, s.len);
            if (rc != 0)
                goto out;
            memcpy(m->id, s.p, s.len);
            m->id[s.len] = '\0';
        } else if (seg_is(&ps, "{name}")) {
            rc = gw_router_decode_tag(s.p, s.len, m->name, sizeof m->name, &m->name_len);
            if (rc != 0)
                goto out;
        }
    }
out:
    return rc;
}

int gw_router_match(const char *method, const char *path, struct gw_match *m)
{
    const struct gw_route *winner = NULL;
    int best = -1;
    size_t len;
    size_t i;
    int rc = GW_ERR_ROUTE_NOT_FOUND;

    if (m == NULL) {
        rc = GW_ERR_INTERNAL;
        goto out;
    }
    memset(m, 0, sizeof *m);
    if (path == NULL || path[0] != '/')
        goto out;
    /* Bounded scan: a path longer than any URL hcgw reads cannot name a route. */
    len = strnlen(path, GW_MAX_URL_BYTES + 1);
    if (len > GW_MAX_URL_BYTES)
        goto out;
    /*
     * No pattern has an empty segment, so "//x", "/x/" and "/" never match; rejecting them
     * here keeps a parameter from matching an empty string.
     */
    if (len == 1 || path[len - 1] == '/' || strstr(path, "//") != NULL)
        goto out;

    /* The most specific shape wins: the one with the most literal segments (first on a tie). */
    for (i = 0; i < GW_ROUTE__COUNT; i++) {
        int lit = shape_match(&table[i], path, len);

        if (lit > best) {
            best = lit;
            winner = &table[i];
        }
    }
    if (winner == NULL)
        goto out;

    /* The rows of the winning shape are the ones with the very same pattern. */
    for (i = 0; i < GW_ROUTE__COUNT; i++) {
        const struct gw_route *r = &table[i];

        if (strcmp(r->pattern, winner->pattern) != 0)
            continue;
        if (method != NULL && serves(r, method)) {
            m->route = r;
            break;
        }
    }
    if (m->route == NULL) {
        for (i = 0; i < GW_ROUTE__COUNT; i++) {
            const struct gw_route *r = &table[i];

            if (strcmp(r->pattern, winner->pattern) != 0 || allow_has(m->allow, r->method))
                continue;
            if (!allow_add(m->allow, sizeof m->allow, r->method) ||
                (strcmp(r->method, "GET") == 0 && !allow_add(m->allow, sizeof m->allow, "HEAD"))) {
                rc = GW_ERR_INTERNAL;
                goto out;
            }
        }
        rc = GW_ERR_METHOD_NOT_ALLOWED;
        goto out;
    }
    rc = take_params(path, len, m);
out:
    return rc;
}

const struct gw_route *gw_router_table(size_t *n)
{
    if (n != NULL)
        *n = GW_ROUTE__COUNT;
    return table;
}

const struct gw_route *gw_router_get(enum gw_route_id id)
{
    if ((int)id < 0 || id >= GW_ROUTE__COUNT)
        return NULL;
    return &table[id];
}

int gw_router_check_id(const char *seg, size_t len)
{
    size_t i;

    if (seg == NULL || len == 0 || len > GW_MAX_ID_DIGITS || seg[0] == '0')
        return GW_ERR_INVALID_CONTACT_ID;
    for (i = 0; i < len; i++) {
        if (seg[i] < '0' || seg[i] > '9')
            return GW_ERR_INVALID_CONTACT_ID;
    }
    return 0;
}

int gw_router_decode_tag(const char *seg, size_t len, char *out, size_t cap, size_t *out_len)
{
    long o;
    int rc = GW_ERR_INVALID_TAG;

    if (seg == NULL || out == NULL || cap == 0 || out_len == NULL)
        goto out;
    /* A name that does not fit is too long anyway. A decoded NUL is left to the tag check
     * (a control character), and '+' is a plus in a path. */
    o = gw_text_percent_decode(seg, len, out, cap, 0);
    if (o < 0)
        goto out;
    rc = gw_text_check_tag(out, (size_t)o);
    if (rc != 0)
        goto out;
    *out_len = (size_t)o;
out:
    if (rc != 0 && out != NULL && cap > 0)
        out[0] = '\0';
    return rc;
}

/*
 * The route table (data, not an if/else chain) and the matcher that turns a method and a raw
 * path into a route plus its validated parameters. Path parameters are decoded and checked here,
 * before any upstream call: {id} is a HelpCrunch customer id, {name} a tag name.
 */
#ifndef HCGW_ROUTER_H
#define HCGW_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "hcgw/limits.h"

enum gw_route_id {
    GW_ROUTE_TAG_DELETE,     /* DELETE /contacts/{id}/tags/{name} */
    GW_ROUTE_TAG_PUT,        /* PUT    /contacts/{id}/tags/{name} */
    GW_ROUTE_TAGS_ADD,       /* POST   /contacts/{id}/tags */
    GW_ROUTE_TAGS_REMOVE,    /* DELETE /contacts/{id}/tags */
    GW_ROUTE_TAGS_GET,       /* GET    /contacts/{id}/tags */
    GW_ROUTE_CONTACT_GET,    /* GET    /contacts/{id} */
    GW_ROUTE_CONTACT_PATCH,  /* PATCH  /contacts/{id} */
    GW_ROUTE_BLOCK,          /* PUT    /contacts/{id}/block */
    GW_ROUTE_UNBLOCK,        /* DELETE /contacts/{id}/block */
    GW_ROUTE_CONTACT_DELETE, /* DELETE /contacts/{id} */
    GW_ROUTE_CONTACTS_LIST,  /* GET    /contacts */
    GW_ROUTE_CONTACTS_SEARCH,/* POST   /contacts/search */
    GW_ROUTE_CONTACT_CREATE, /* POST   /contacts */
    GW_ROUTE_HEALTHZ,        /* GET    /healthz (local) */
    GW_ROUTE_READYZ,         /* GET    /readyz (local) */
    GW_ROUTE_METRICS,        /* GET    /metrics (local) */
    GW_ROUTE_OPENAPI,        /* GET    /openapi.yaml (local) */
    GW_ROUTE__COUNT
};

/** What request body a route takes. */
enum gw_body_kind {
    GW_BODY_NONE,            /* no body expected (one that is sent is ignored) */
    GW_BODY_TAGS,            /* {"tags":["a",{"name":"b","color":"#hex"}]} */
    GW_BODY_OBJECT,          /* any JSON object, forwarded as is (patch, create) */
    GW_BODY_SEARCH           /* a HelpCrunch search object */
};

/** What hcgw sends upstream as the body. */
enum gw_upbody {
    GW_UPBODY_NONE,          /* no body */
    GW_UPBODY_TAG_NAME,      /* {"tags":[{"name":<decoded {name}>}]} */
    GW_UPBODY_TAGS,          /* the tags body, normalized to objects (colours kept) */
    GW_UPBODY_TAGS_NAMES,    /* the tags body, normalized to {"name":…} only */
    GW_UPBODY_AS_IS,         /* the request body, byte for byte */
    GW_UPBODY_BLOCK,         /* {"blocked":true} */
    GW_UPBODY_UNBLOCK        /* {"blocked":false} */
};

/** How a HelpCrunch success answer becomes hcgw's answer (see reply.h). */
enum gw_reply_kind {
    GW_REPLY_LOCAL,          /* answered by hcgw itself; no upstream call */
    GW_REPLY_CUSTOMER,       /* a customer object, passed through byte for byte */
    GW_REPLY_TAGS,           /* {"tags":[…]} taken from the customer object */
    GW_REPLY_LIST,           /* {"total":N,"data":[…]}, passed through */
    GW_REPLY_SEARCH,         /* {"data":[…]…}, passed through */
    GW_REPLY_DELETED         /* any 2xx body; hcgw answers 204 with no body */
};

struct gw_route {
    enum gw_route_id id;
    const char *name;        /* stable name for logs and metrics: "tag_delete" */
    const char *method;      /* internal method */
    const char *pattern;     /* internal path pattern: "/contacts/{id}/tags/{name}" */
    const char *up_method;   /* HelpCrunch method; NULL for local routes */
    const char *up_path;     /* HelpCrunch path pattern: "/customers/{id}/tags"; NULL if local */
    enum gw_body_kind body;
    enum gw_upbody up_body;
    enum gw_reply_kind reply;
    int success_status;      /* what hcgw answers on success: 200, 201 or 204 */
    bool retryable;          /* idempotent internal method (GET, PUT, DELETE) */
    bool query;              /* takes limit/offset/sort/order (the list route) */
};

/** A matched route and its decoded, validated parameters. */
struct gw_match {
    const struct gw_route *route;
    char id[GW_MAX_ID_DIGITS + 1];     /* "" when the route has no {id} */
    char name[GW_MAX_TAG_BYTES + 1];   /* decoded {name}, NUL-terminated; "" when none */
    size_t name_len;
    char allow[64];                    /* for 405: "GET, HEAD, PATCH, DELETE" */
};

/**
 * Match @p method and the raw, still percent-encoded @p path (no query string) against the
 * table. The most specific pattern shape wins (literal segments beat parameters), so
 * "/contacts/search" is that route, not a contact id. HEAD matches the GET row of its path
 * (m->route is that row; the caller's method stays HEAD). Returns 0 and fills @p m, or
 * GW_ERR_ROUTE_NOT_FOUND (no pattern has this shape), GW_ERR_METHOD_NOT_ALLOWED (m->allow
 * holds the path's methods in table order, HEAD right after GET; OPTIONS, which is no row,
 * always gets this), GW_ERR_INVALID_CONTACT_ID or GW_ERR_INVALID_TAG (m->route is set).
 * Pure; any thread.
 */
int gw_router_match(const char *method, const char *path, struct gw_match *m);

/** The whole table, @p n receives its length (GW_ROUTE__COUNT). */
const struct gw_route *gw_router_table(size_t *n);

/** The route with id @p id. */
const struct gw_route *gw_router_get(enum gw_route_id id);

/**
 * Check a contact id segment: 1..19 ASCII digits, no sign, no leading zero (so not "0").
 * Returns 0 or GW_ERR_INVALID_CONTACT_ID.
 */
int gw_router_check_id(const char *seg, size_t len);

/**
 * Percent-decode a tag path segment into @p out (capacity @p cap, NUL-terminated on success):
 * %XX (either case) decodes, '+' stays '+', a '%' not followed by two hex digits is malformed.
 * The result must pass gw_text_check_tag. Returns 0 (with *out_len) or GW_ERR_INVALID_TAG.
 */
int gw_router_decode_tag(const char *seg, size_t len, char *out, size_t cap, size_t *out_len);

#endif

/*
 * The contact cache (cache.h): a hash table of entries by contact id, chained, with one list
 * in order of use for the LRU bounds, and the write generations of GW_CACHE_GEN_STRIPES stripes
 * of ids. One mutex guards it all: every worker reads and writes it, and each use is a few
 * pointer moves and one copy of a body.
 */
#include "hcgw/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/cachectl.h"
#include "hcgw/limits.h"

struct entry {
    uint64_t id;
    uint64_t stored_ms;
    char etag[GW_ETAG_BYTES];        /* of the body as GET /contacts/{id} answers it; "" none */
    struct entry *hnext;             /* bucket chain */
    struct entry *prev, *next;       /* use order: head most recent */
    size_t len;
    char body[];                     /* len bytes and a NUL */
};

struct gw_cache {
    pthread_mutex_t mu;
    uint64_t ttl_ms;
    size_t max_entries;
    size_t max_bytes;
    struct entry **buckets;
    size_t nbuckets;                 /* a power of two */
    struct entry *head, *tail;
    size_t entries;
    size_t bytes;
    uint64_t gen[GW_CACHE_GEN_STRIPES];
};

static size_t entry_bytes(size_t len)
{
    return sizeof(struct entry) + len + 1;
}

/* A 64-bit mix (splitmix64's finalizer): contact ids are often sequential. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static struct entry **slot(struct gw_cache *c, uint64_t id)
{
    struct entry **p = &c->buckets[mix(id) & (c->nbuckets - 1)];

    while (*p != NULL && (*p)->id != id)
        p = &(*p)->hnext;
    return p;
}

static uint64_t *stripe(struct gw_cache *c, uint64_t id)
{
    return &c->gen[(mix(id) >> 32) % GW_CACHE_GEN_STRIPES];
}

static void unlink_use(struct gw_cache *c, struct entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(struct gw_cache *c, struct entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
}

static void drop(struct gw_cache *c, struct entry *e)
{
    struct entry **p = slot(c, e->id);

    *p = e->hnext;
    unlink_use(c, e);
    c->entries--;
    c->bytes -= entry_bytes(e->len);
    free(e);
}

static void drop_id(struct gw_cache *c, uint64_t id)
{
    struct entry *e;

    if (c->buckets == NULL)
        return;
    e = *slot(c, id);
    if (e != NULL)
        drop(c, e);
}

/* Drop the least recently used entries until @p entries and @p bytes more would fit. */
static void make_room(struct gw_cache *c, size_t entries, size_t bytes)
{
    while (c->tail != NULL &&
           (c->entries + entries > c->max_entries || c->bytes + bytes > c->max_bytes))
        drop(c, c->tail);
}

/* Store @p body for @p id, replacing what was there. Caller holds the lock. */
static bool store(struct gw_cache *c, uint64_t id, const char *body, size_t len, uint64_t now_ms,
                  const char *etag)
{
    size_t need = entry_bytes(len);
    struct entry *e;

    drop_id(c, id);
    if (c->ttl_ms == 0 || c->buckets == NULL || need > c->max_bytes || c->max_entries == 0)
        return false;
    make_room(c, 1, need);
    e = malloc(need);
    if (e == NULL)
        return false;
    e->id = id;
    e->stored_ms = now_ms;
    e->len = len;
    memcpy(e->etag, etag, GW_ETAG_BYTES);
    memcpy(e->body, body, len);
    e->body[len] = '\0';
    e->hnext = NULL;
    *slot(c, id) = e;
    push_front(c, e);
    c->entries++;
    c->bytes += need;
    return true;
}

static size_t buckets_for(size_t max_entries)
{
    size_t n = GW_CACHE_MIN_BUCKETS;

    while (n < max_entries && n < GW_CACHE_MAX_BUCKETS)
        n <<= 1;
    return n;
}

/* Chain every entry into @p nb new buckets. Caller holds the lock. */
static int rehash(struct gw_cache *c, size_t nb)
{
    struct entry **b = calloc(nb, sizeof(*b));
    struct entry *e;

    if (b == NULL)
        return -1;
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = nb;
    for (e = c->head; e != NULL; e = e->next) {
        e->hnext = NULL;
        *slot(c, e->id) = e;
    }
    return 0;
}

struct gw_cache *gw_cache_new(void)
{
    struct gw_cache *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

void gw_cache_free(struct gw_cache *c)
{
    struct entry *e;
    struct entry *next;

    if (c == NULL)
        return;
    for (e = c->head; e != NULL; e = next) {
        next = e->next;
        free(e);
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int gw_cache_configure(struct gw_cache *c, long ttl_ms, long max_entries, long max_bytes)
{
    size_t nb = buckets_for(max_entries > 0 ? (size_t)max_entries : 0);
    int rc = 0;

    pthread_mutex_lock(&c->mu);
    c->ttl_ms = ttl_ms > 0 ? (uint64_t)ttl_ms : 0;
    c->max_entries = max_entries > 0 ? (size_t)max_entries : 0;
    c->max_bytes = max_bytes > 0 ? (size_t)max_bytes : 0;
    /* Off, nothing is kept; on, what no longer fits goes. */
    while (c->tail != NULL && c->ttl_ms == 0)
        drop(c, c->tail);
    make_room(c, 0, 0);
    if (c->nbuckets != nb)
        rc = rehash(c, nb);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

uint64_t gw_cache_generation(struct gw_cache *c, uint64_t id)
{
    uint64_t g;

    pthread_mutex_lock(&c->mu);
    g = *stripe(c, id);
    pthread_mutex_unlock(&c->mu);
    return g;
}

bool gw_cache_get(struct gw_cache *c, uint64_t id, uint64_t now_ms, uint64_t max_age_ms,
                  struct gw_cache_hit *hit)
{
    struct entry *e = NULL;
    uint64_t age;
    bool ok = false;

    pthread_mutex_lock(&c->mu);
    if (c->ttl_ms == 0 || c->buckets == NULL)
        goto out;
    e = *slot(c, id);
    if (e == NULL)
        goto out;
    /* Workers read the monotonic clock at their own moments: an entry may look a little
     * younger than zero to another worker. */
    age = now_ms > e->stored_ms ? now_ms - e->stored_ms : 0;
    if (age >= c->ttl_ms) {
        drop(c, e);
        goto out;
    }
    if (age > max_age_ms)
        goto out;
    hit->body = malloc(e->len + 1);
    if (hit->body == NULL)
        goto out;
    memcpy(hit->body, e->body, e->len + 1);
    hit->len = e->len;
    memcpy(hit->etag, e->etag, GW_ETAG_BYTES);
    hit->age_ms = age;
    hit->ttl_left_ms = c->ttl_ms - age;
    unlink_use(c, e);
    push_front(c, e);
    ok = true;
out:
    pthread_mutex_unlock(&c->mu);
    return ok;
}

bool gw_cache_fill(struct gw_cache *c, uint64_t id, uint64_t gen, const char *body, size_t len,
                   uint64_t now_ms)
{
    bool ok = false;

    char etag[GW_ETAG_BYTES];

    /* The hash outside the lock, once per store rather than once per hit. */
    if (gw_cachectl_etag(body, len, etag) != 0)
        etag[0] = '\0';
    pthread_mutex_lock(&c->mu);
    if (*stripe(c, id) == gen)
        ok = store(c, id, body, len, now_ms, etag);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

bool gw_cache_write(struct gw_cache *c, uint64_t id, uint64_t gen, const char *body, size_t len,
                    uint64_t now_ms)
{
    char etag[GW_ETAG_BYTES] = "";
    uint64_t *g;
    bool ok = false;

    if (body != NULL && gw_cachectl_etag(body, len, etag) != 0)
        etag[0] = '\0';
    pthread_mutex_lock(&c->mu);
    g = stripe(c, id);
    if (*g == gen && body != NULL)
        ok = store(c, id, body, len, now_ms, etag);
    else
        drop_id(c, id);
    (*g)++;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

struct gw_cache_stats gw_cache_stats(struct gw_cache *c)
{
    struct gw_cache_stats st;

    pthread_mutex_lock(&c->mu);
    st.entries = c->entries;
    st.bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
    return st;
}

/*
 * The local idempotency store (idem_local.h): records in a chained hash table by scope and
 * key, on two lists: the order of use, for the bounds (least recently used first out; a record
 * in progress is never evicted, since its holder will end it), and the order of deadlines, for
 * the ttl and the claims' leases (soonest first, swept at every begin). One mutex guards it all: every worker
 * uses it, and each use is a lookup, a few pointer moves and at most one copy of a body.
 */
#include "hcgw/idem_local.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/limits.h"

enum rec_state {
    REC_HELD,                        /* in progress: a claim holds it */
    REC_DONE,                        /* a final answer */
    REC_UNKNOWN                      /* ended, whether HelpCrunch created it is unknown */
};

struct rec {
    struct rec *hnext;               /* bucket chain */
    struct rec *uprev, *unext;       /* use order, head most recent; not while held */
    struct rec *eprev, *enext;       /* its deadline list (leases or expiry), head soonest */
    uint64_t hash;
    uint64_t until_ms;               /* held: the end of the claim's lease; else its expiry */
    uint64_t token;                  /* the claim holding it, or the last one */
    enum rec_state state;
    unsigned char fingerprint[GW_IDEM_FINGERPRINT_BYTES];
    long status;                     /* done: HelpCrunch's */
    char *body;                      /* done: HelpCrunch's body, NUL-terminated, or NULL */
    size_t body_len;
    size_t id_len;                   /* scope, NUL, key */
    char id[];
};

struct list {
    struct rec *head, *tail;
};

struct local {
    struct gw_idem_store base;       /* first: the store every caller sees */
    pthread_mutex_t mu;
    uint64_t ttl_ms;                 /* 0: off */
    size_t max_entries;
    size_t max_bytes;
    struct rec **buckets;
    size_t nbuckets;                 /* a power of two */
    struct list use;                 /* records not held */
    struct list expiry;              /* records not held, by expiry */
    struct list leases;              /* held records, by the end of their lease */
    size_t entries;
    size_t held;
    size_t bytes;
    uint64_t next_token;
};

static size_t rec_bytes(size_t id_len, size_t body_len)
{
    return sizeof(struct rec) + id_len + body_len + (body_len > 0 ? 1 : 0);
}

/* FNV-1a over the record's id (scope, NUL, key). */
static uint64_t hash_id(const char *id, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)id[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- the two lists (prev/next chosen by the list) ---- */

#define LIST_UNLINK(l, e, prev, next)                                                        \
    do {                                                                                     \
        if ((e)->prev != NULL)                                                               \
            (e)->prev->next = (e)->next;                                                     \
        else                                                                                 \
            (l)->head = (e)->next;                                                           \
        if ((e)->next != NULL)                                                               \
            (e)->next->prev = (e)->prev;                                                     \
        else                                                                                 \
            (l)->tail = (e)->prev;                                                           \
        (e)->prev = (e)->next = NULL;                                                        \
    } while (0)

static bool in_use_list(const struct local *s, const struct rec *r)
{
    return r->uprev != NULL || s->use.head == r;
}

static void use_unlink(struct local *s, struct rec *r)
{
    if (in_use_list(s, r))
        LIST_UNLINK(&s->use, r, uprev, unext);
}

static void use_front(struct local *s, struct rec *r)
{
    use_unlink(s, r);
    r->unext = s->use.head;
    if (s->use.head != NULL)
        s->use.head->uprev = r;
    s->use.head = r;
    if (s->use.tail == NULL)
        s->use.tail = r;
}

/* The deadline list @p r belongs on: a held record's lease, or another one's expiry. */
static struct list *deadlines(struct local *s, const struct rec *r)
{
    return r->state == REC_HELD ? &s->leases : &s->expiry;
}

/* Take @p r off its deadline list (chosen by its state now). */
static void deadline_unlink(struct local *s, struct rec *r)
{
    struct list *l = deadlines(s, r);

    if (r->eprev != NULL || l->head == r)
        LIST_UNLINK(l, r, eprev, enext);
}

/*
 * Put @p r, on no list, on its deadline list at @p until_ms. Each list's deadlines are one
 * length from now (the ttl; the lease), so a new one goes at the tail, after a step or two
 * back at most when workers' clocks were read a little apart.
 */
static void deadline_set(struct local *s, struct rec *r, uint64_t until_ms)
{
    struct list *l = deadlines(s, r);
    struct rec *after = l->tail;

    r->until_ms = until_ms;
    while (after != NULL && after->until_ms > until_ms)
        after = after->eprev;
    r->eprev = after;
    r->enext = after != NULL ? after->enext : l->head;
    if (r->enext != NULL)
        r->enext->eprev = r;
    else
        l->tail = r;
    if (after != NULL)
        after->enext = r;
    else
        l->head = r;
}

/* ---- the table ---- */

static struct rec **slot(struct local *s, const char *id, size_t n, uint64_t h)
{
    struct rec **p = &s->buckets[h & (s->nbuckets - 1)];

    while (*p != NULL &&
           ((*p)->hash != h || (*p)->id_len != n || memcmp((*p)->id, id, n) != 0))
        p = &(*p)->hnext;
    return p;
}

static void drop(struct local *s, struct rec *r)
{
    struct rec **p = slot(s, r->id, r->id_len, r->hash);

    *p = r->hnext;
    use_unlink(s, r);
    deadline_unlink(s, r);
    s->entries--;
    if (r->state == REC_HELD)
        s->held--;
    s->bytes -= rec_bytes(r->id_len, r->body_len);
    free(r->body);
    free(r);
}

static void release(struct local *s, struct rec *r, enum rec_state state, uint64_t now_ms);

/*
 * Records whose deadline passed: a claim past its lease was lost by its holder, so what it did
 * is unknown (its holder's end, should it still come, is ignored); any other record goes.
 */
static void sweep(struct local *s, uint64_t now_ms)
{
    while (s->leases.head != NULL && s->leases.head->until_ms <= now_ms) {
        if (s->ttl_ms > 0)
            release(s, s->leases.head, REC_UNKNOWN, now_ms);
        else
            drop(s, s->leases.head);
    }
    while (s->expiry.head != NULL && s->expiry.head->until_ms <= now_ms)
        drop(s, s->expiry.head);
}

/* Every record goes. */
static void drop_all(struct local *s)
{
    while (s->leases.head != NULL)
        drop(s, s->leases.head);
    while (s->expiry.head != NULL)
        drop(s, s->expiry.head);
}

/* Drop the least recently used records not held until @p entries and @p bytes more fit. */
static bool make_room(struct local *s, size_t entries, size_t bytes)
{
    while (s->use.tail != NULL &&
           (s->entries + entries > s->max_entries || s->bytes + bytes > s->max_bytes))
        drop(s, s->use.tail);
    return s->entries + entries <= s->max_entries && s->bytes + bytes <= s->max_bytes;
}

/* The record's id, scope NUL key, in @p buf. Returns its length, or 0 when it does not fit. */
static size_t make_id(const struct gw_idem_key *k, char *buf, size_t cap)
{
    size_t a = strlen(k->scope);
    size_t b = strlen(k->key);

    if (a + 1 + b > cap)
        return 0;
    memcpy(buf, k->scope, a);
    buf[a] = '\0';
    memcpy(buf + a + 1, k->key, b);
    return a + 1 + b;
}

/* Room for an id: the longest client name, a NUL and the longest key, with margin. */
#define ID_CAP (2 * GW_MAX_IDEM_KEY_BYTES + 2)

static struct rec *find(struct local *s, const struct gw_idem_key *k)
{
    char id[ID_CAP];
    size_t n = make_id(k, id, sizeof(id));

    if (n == 0 || s->buckets == NULL)
        return NULL;
    return *slot(s, id, n, hash_id(id, n));
}

/* A new held record for @p k, or NULL (no room, out of memory, the store off). */
static struct rec *add(struct local *s, const struct gw_idem_key *k, int *err)
{
    char id[ID_CAP];
    size_t n = make_id(k, id, sizeof(id));
    size_t need = rec_bytes(n, 0);
    struct rec *r;

    *err = GW_ERR_OVERLOADED;
    if (n == 0 || s->buckets == NULL || s->ttl_ms == 0 || !make_room(s, 1, need))
        return NULL;
    r = calloc(1, sizeof(*r) + n);
    if (r == NULL) {
        *err = GW_ERR_NOMEM;
        return NULL;
    }
    memcpy(r->id, id, n);
    r->id_len = n;
    r->hash = hash_id(id, n);
    memcpy(r->fingerprint, k->fingerprint, sizeof(r->fingerprint));
    r->state = REC_HELD;
    *slot(s, id, n, r->hash) = r;
    s->entries++;
    s->held++;
    s->bytes += need;
    return r;
}

/* Hold @p r (new, or not held) for a new claim until @p until_ms. Returns its token. */
static uint64_t hold(struct local *s, struct rec *r, uint64_t until_ms)
{
    deadline_unlink(s, r);
    use_unlink(s, r);
    if (r->state != REC_HELD)
        s->held++;
    r->state = REC_HELD;
    r->token = ++s->next_token;
    deadline_set(s, r, until_ms);
    return r->token;
}

/* Let go of held @p r in @p state, kept for the ttl (> 0) from @p now_ms. */
static void release(struct local *s, struct rec *r, enum rec_state state, uint64_t now_ms)
{
    deadline_unlink(s, r);
    s->held--;
    r->state = state;
    use_front(s, r);
    deadline_set(s, r, now_ms + s->ttl_ms);
}

static int local_begin(struct gw_idem_store *base, struct gw_idem_claim *c, uint64_t now_ms,
                       uint64_t lease_ms, uint64_t deadline_ms)
{
    struct local *s = (struct local *)base;
    const struct gw_idem_key *k = &c->key;
    struct gw_idem_record *rec = &c->rec;
    struct rec *r;
    int rc;

    (void)deadline_ms; /* answered at once */
    c->holder = base;

    pthread_mutex_lock(&s->mu);
    if (s->ttl_ms == 0) {
        rc = GW_IDEM_NEW; /* off: nothing is held, nothing will be kept */
        goto out;
    }
    sweep(s, now_ms);
    r = find(s, k);
    if (r != NULL && r->state != REC_HELD && r->until_ms <= now_ms) {
        drop(s, r);
        r = NULL;
    }
    if (r == NULL) {
        r = add(s, k, &rc);
        if (r != NULL) {
            c->token = hold(s, r, now_ms + lease_ms);
            c->held = true;
            rc = GW_IDEM_NEW;
        }
        goto out;
    }
    if (memcmp(r->fingerprint, k->fingerprint, sizeof(r->fingerprint)) != 0) {
        rc = GW_IDEM_MISMATCH;
        goto out;
    }
    switch (r->state) {
    case REC_HELD:
        rc = GW_IDEM_IN_PROGRESS; /* the sweep released it if its lease was over */
        break;
    case REC_UNKNOWN:
        c->token = hold(s, r, now_ms + lease_ms);
        c->held = true;
        rc = GW_IDEM_RECOVER;
        break;
    case REC_DONE:
    default:
        rc = GW_ERR_NOMEM;
        if (r->body != NULL) {
            rec->body = malloc(r->body_len + 1);
            if (rec->body == NULL)
                goto out;
            memcpy(rec->body, r->body, r->body_len + 1);
            rec->len = r->body_len;
        }
        rec->status = r->status;
        use_front(s, r);
        rc = GW_IDEM_REPLAY;
        break;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int local_complete(struct gw_idem_store *base, struct gw_idem_claim *c, long status,
                          const char *body, size_t len, uint64_t now_ms)
{
    struct local *s = (struct local *)base;
    const struct gw_idem_key *k = &c->key;
    uint64_t token = c->token;
    struct rec *r;
    char *copy = NULL;
    bool has_body;
    bool fits;
    int err;

    pthread_mutex_lock(&s->mu);
    r = find(s, k);
    if (r != NULL && (r->state != REC_HELD || r->token != token))
        goto out; /* taken over by another claim */
    if (r == NULL) {
        /* Dropped while held (its lease ran out, or the store was turned off and on): the
         * answer is still final. */
        r = add(s, k, &err);
        if (r == NULL)
            goto out;
        r->token = token;
    }
    if (s->ttl_ms == 0) {
        drop(s, r);
        goto out;
    }
    /* A body larger than the whole store is not kept, and does not flush the store first.
     * The record itself is held, so the room made is never its own. */
    has_body = body != NULL && len > 0;
    fits = !has_body ||
           (rec_bytes(r->id_len, len) <= s->max_bytes && make_room(s, 0, len + 1));
    if (fits && has_body)
        copy = malloc(len + 1);
    if (!fits || (has_body && copy == NULL)) {
        /* It does not fit: HelpCrunch's answer is known but cannot be replayed; a later
         * request with the key finds the contact the way an unknown outcome is found. */
        release(s, r, REC_UNKNOWN, now_ms);
        goto out;
    }
    if (copy != NULL) {
        memcpy(copy, body, len);
        copy[len] = '\0';
        r->body = copy;
        r->body_len = len;
        s->bytes += len + 1;
    }
    r->status = status;
    release(s, r, REC_DONE, now_ms);
out:
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static void local_abandon(struct gw_idem_store *base, struct gw_idem_claim *c,
                          bool outcome_unknown, uint64_t now_ms)
{
    struct local *s = (struct local *)base;
    struct rec *r;

    pthread_mutex_lock(&s->mu);
    r = find(s, &c->key);
    if (r == NULL || r->state != REC_HELD || r->token != c->token)
        goto out;
    if (outcome_unknown && s->ttl_ms > 0)
        release(s, r, REC_UNKNOWN, now_ms);
    else
        drop(s, r);
out:
    pthread_mutex_unlock(&s->mu);
}

static size_t buckets_for(size_t max_entries)
{
    size_t n = GW_IDEM_MIN_BUCKETS;

    while (n < max_entries && n < GW_IDEM_MAX_BUCKETS)
        n <<= 1;
    return n;
}

/* Chain every record into @p nb new buckets. Caller holds the lock. */
static int rehash(struct local *s, size_t nb)
{
    struct rec **b = calloc(nb, sizeof(*b));
    struct rec **old = s->buckets;
    size_t on = s->nbuckets;
    size_t i;
    struct rec *r;
    struct rec *next;

    if (b == NULL)
        return -1;
    s->buckets = b;
    s->nbuckets = nb;
    for (i = 0; i < on; i++) {
        for (r = old[i]; r != NULL; r = next) {
            next = r->hnext;
            r->hnext = b[r->hash & (nb - 1)];
            b[r->hash & (nb - 1)] = r;
        }
    }
    free(old);
    return 0;
}

static int local_configure(struct gw_idem_store *base, uint64_t ttl_ms, long max_entries,
                           long max_bytes)
{
    struct local *s = (struct local *)base;
    size_t nb = buckets_for(max_entries > 0 ? (size_t)max_entries : 0);
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    s->ttl_ms = ttl_ms;
    s->max_entries = max_entries > 0 ? (size_t)max_entries : 0;
    s->max_bytes = max_bytes > 0 ? (size_t)max_bytes : 0;
    /* Off, nothing is kept (a held record goes too: its holder's end finds nothing and keeps
     * nothing); on, what no longer fits goes. */
    if (s->ttl_ms == 0)
        drop_all(s);
    make_room(s, 0, 0);
    if (s->nbuckets != nb)
        rc = rehash(s, nb);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static struct gw_idem_stats local_stats(struct gw_idem_store *base)
{
    struct local *s = (struct local *)base;
    struct gw_idem_stats st;

    pthread_mutex_lock(&s->mu);
    st.entries = s->entries;
    st.held = s->held;
    st.bytes = s->bytes;
    pthread_mutex_unlock(&s->mu);
    return st;
}

static void local_free(struct gw_idem_store *base)
{
    struct local *s = (struct local *)base;

    drop_all(s);
    free(s->buckets);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const struct gw_idem_store_ops local_ops = {
    .begin = local_begin,
    .complete = local_complete,
    .abandon = local_abandon,
    .cancel = NULL,                  /* it answers at once: nothing is ever in flight */
    .stop = NULL,
    .configure = local_configure,
    .stats = local_stats,
    .free = local_free,
};

struct gw_idem_store *gw_idem_local_new(void)
{
    struct local *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->base.ops = &local_ops;
    return &s->base;
}

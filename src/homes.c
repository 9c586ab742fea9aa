/*
 * Contact homes (homes.h): the hand-off of a contact's calls to its home worker and of their
 * answers back.
 *
 * A hand-off is one struct gw_hop, owned by the worker that sent it (the sender) from
 * gw_homes_send until it comes back, and freed only by the sender. On its way it sits in one
 * place at a time, said by `where` under the lock:
 *
 *   QUEUED  in the home's inbox          the home takes it at its next wake
 *   HOSTED  the home runs its copy       the copy's done gives it back
 *   BACK    in the sender's return box   the sender ends the caller's call with the answer
 *
 * A caller who leaves (gw_homes_cancel) ends its call at once and marks the hop abandoned:
 * a queued hop then comes straight back unrun, a hosted one is cancelled by the home (it asks
 * through its mailbox's `cancels` flag), and an abandoned hop that comes back is freed.
 * Each worker's mailbox is read by that worker alone, in gw_homes_run.
 */
#include "hcgw/homes.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/calls.h"
#include "hcgw/limits.h"
#include "hcgw/loop.h"
#include "hcgw/trace.h"
#include "hcgw/upstream.h"

enum hop_where { HOP_QUEUED, HOP_HOSTED, HOP_BACK };

struct gw_hop {
    struct gw_call call;             /* the home's copy of the caller's call */
    struct gw_homes *homes;
    int from, to;
    /* under the lock */
    enum hop_where where;
    bool abandoned;                  /* the caller left: nobody waits for the answer */
    bool cancel;                     /* the home should cancel its copy */
    enum gw_err cancel_err;
    bool bounced;                    /* the home closed before running it: run it at home */
    struct gw_hop *next;             /* in an inbox or a return box */
    /* the home's thread only */
    int rc;                          /* what the home's gw_calls_submit returned */
    bool hosted;                     /* in the home's hosted list */
    struct gw_hop *hprev, *hnext;
    struct gw_hop *cnext;            /* in a run's list of copies to cancel */
    /* the sender's thread only */
    struct gw_call *caller;          /* NULL once its call ended */
    struct gw_hop *sprev, *snext;    /* in the sender's list of calls handed off */
    struct gw_timer late;            /* no answer shortly after the deadline: give up */
    char *url;
    char *body;
    char request_id[GW_MAX_REQUEST_ID + 1];
    struct gw_trace trace;           /* the caller's, for the home's call */
};

struct hop_list {
    struct gw_hop *head, *tail;
};

struct box {
    struct gw_loop *loop;
    struct gw_calls *calls;
    /* under the lock */
    bool closed;
    bool cancels;                    /* some hosted copy has `cancel` set */
    size_t hosting;                  /* hops QUEUED or HOSTED here */
    struct hop_list inbox;           /* QUEUED, in arrival order */
    struct hop_list back;            /* BACK: answers to this worker's hand-offs */
    /* this worker's thread only */
    struct gw_hop *hosted;           /* copies running here */
    bool running;                    /* inside gw_homes_run: hold answers in `pending` */
    struct hop_list pending;
    struct gw_hop *sent;             /* this worker's hand-offs that have not ended */
    size_t nsent;
};

struct gw_homes {
    pthread_mutex_t lock;
    int n;
    struct box box[];
};

static void push(struct hop_list *l, struct gw_hop *h)
{
    h->next = NULL;
    if (l->tail != NULL)
        l->tail->next = h;
    else
        l->head = h;
    l->tail = h;
}

static struct gw_hop *take_all(struct hop_list *l)
{
    struct gw_hop *h = l->head;

    l->head = NULL;
    l->tail = NULL;
    return h;
}

static void hop_free(struct gw_hop *h)
{
    gw_call_release(&h->call);
    free(h->url);
    free(h->body);
    gw_trace_clear(&h->trace);
    free(h);
}

struct gw_homes *gw_homes_new(int nworkers)
{
    struct gw_homes *homes;

    if (nworkers < 1 || nworkers > GW_MAX_WORKERS)
        return NULL;
    homes = calloc(1, sizeof(*homes) + (size_t)nworkers * sizeof(struct box));
    if (homes == NULL)
        return NULL;
    pthread_mutex_init(&homes->lock, NULL);
    homes->n = nworkers;
    return homes;
}

void gw_homes_free(struct gw_homes *homes)
{
    struct gw_hop *h;
    struct gw_hop *next;

    if (homes == NULL)
        return;
    for (int i = 0; i < homes->n; i++) {
        for (h = take_all(&homes->box[i].back); h != NULL; h = next) {
            next = h->next;
            hop_free(h);
        }
        for (h = take_all(&homes->box[i].inbox); h != NULL; h = next) {
            next = h->next;
            hop_free(h);
        }
    }
    pthread_mutex_destroy(&homes->lock);
    free(homes);
}

void gw_homes_attach(struct gw_homes *homes, int index, struct gw_loop *loop,
                     struct gw_calls *calls)
{
    homes->box[index].loop = loop;
    homes->box[index].calls = calls;
}

int gw_homes_home_of(const struct gw_homes *homes, uint64_t contact_id)
{
    uint64_t h = contact_id * 0x9E3779B97F4A7C15ULL;

    return (int)((h >> 32) % (uint64_t)homes->n);
}

/* ---- the sender's side ---- */

static void unlink_sent(struct box *b, struct gw_hop *h)
{
    if (h->sprev != NULL)
        h->sprev->snext = h->snext;
    else
        b->sent = h->snext;
    if (h->snext != NULL)
        h->snext->sprev = h->sprev;
    h->sprev = h->snext = NULL;
    b->nsent--;
}

static void hop_late(struct gw_timer *t)
{
    struct gw_hop *h = t->data;

    gw_homes_cancel(h->homes, h->caller, GW_ERR_UPSTREAM_TIMEOUT);
}

int gw_homes_send(struct gw_homes *homes, int from, int to, struct gw_call *call)
{
    struct box *sb = &homes->box[from];
    struct box *hb = &homes->box[to];
    struct gw_hop *h = calloc(1, sizeof(*h));
    uint64_t now = gw_loop_now(sb->loop);
    uint64_t late;
    int rc = GW_ERR_NOMEM;

    if (h == NULL)
        goto out;
    h->url = strdup(call->url);
    if (h->url == NULL)
        goto out;
    if (call->body != NULL) {
        h->body = malloc(call->body_len + 1);
        if (h->body == NULL)
            goto out;
        memcpy(h->body, call->body, call->body_len);
        h->body[call->body_len] = '\0';
    }
    snprintf(h->request_id, sizeof(h->request_id), "%s", call->request_id);
    h->homes = homes;
    h->from = from;
    h->to = to;
    h->call.method = call->method;
    h->call.url = h->url;
    h->call.body = h->body;
    h->call.body_len = call->body_len;
    h->call.retryable = call->retryable;
    h->call.request_id = h->request_id;
    if (call->trace != NULL) {
        gw_trace_copy(&h->trace, call->trace);
        h->call.trace = &h->trace;
    }
    h->call.deadline_ms = call->deadline_ms;
    h->call.cache_role = call->cache_role;
    h->call.contact_id = call->contact_id;
    h->call.max_age_ms = call->max_age_ms;
    h->call.merge = call->merge;
    h->call.cache_checked = call->cache_checked;
    h->caller = call;

    pthread_mutex_lock(&homes->lock);
    if (hb->closed || hb->calls == NULL) {
        pthread_mutex_unlock(&homes->lock);
        rc = 1;
        goto out;
    }
    h->where = HOP_QUEUED;
    push(&hb->inbox, h);
    hb->hosting++;
    pthread_mutex_unlock(&homes->lock);
    gw_loop_wake(hb->loop);

    call->hop = h;
    h->snext = sb->sent;
    if (sb->sent != NULL)
        sb->sent->sprev = h;
    sb->sent = h;
    sb->nsent++;
    late = call->deadline_ms + GW_HANDOFF_GRACE_MS;
    gw_timer_init(&h->late, hop_late, h);
    gw_timer_start(sb->loop, &h->late, late > now ? late - now : 0);
    return 0;
out:
    if (h != NULL)
        hop_free(h);
    return rc;
}

void gw_homes_cancel(struct gw_homes *homes, struct gw_call *call, enum gw_err err)
{
    struct gw_hop *h = call->hop;
    struct box *sb = &homes->box[h->from];
    struct box *hb = &homes->box[h->to];
    bool wake = false;

    pthread_mutex_lock(&homes->lock);
    h->abandoned = true;
    if (h->where == HOP_HOSTED) {
        h->cancel = true;
        h->cancel_err = err;
        hb->cancels = true;
        wake = true;
    }
    pthread_mutex_unlock(&homes->lock);
    if (wake)
        gw_loop_wake(hb->loop);
    gw_timer_stop(sb->loop, &h->late);
    unlink_sent(sb, h);
    h->caller = NULL;
    call->hop = NULL;
    memset(&call->out, 0, sizeof(call->out));
    call->out.failure = err;
    call->done(call);
}

void gw_homes_cancel_all(struct gw_homes *homes, int index, enum gw_err err)
{
    struct box *b = &homes->box[index];

    while (b->sent != NULL)
        gw_homes_cancel(homes, b->sent->caller, err);
}

size_t gw_homes_sent(const struct gw_homes *homes, int index)
{
    return homes->box[index].nsent;
}

/* An answer came back to the sender: end the caller's call with it. */
static void answer_caller(struct gw_homes *homes, struct gw_hop *h)
{
    struct box *sb = &homes->box[h->from];
    struct gw_call *call = h->caller;
    int rc;

    if (call == NULL)
        goto out;
    gw_timer_stop(sb->loop, &h->late);
    unlink_sent(sb, h);
    call->hop = NULL;
    if (h->bounced) {
        /* Its home stopped before it ran: it runs here, and ends as a submit would. */
        rc = gw_calls_submit(sb->calls, call);
        if (rc != 0)
            call->done(call);
        goto out;
    }
    call->out = h->call.out;
    memset(&h->call.out, 0, sizeof(h->call.out));
    call->attempts = h->call.attempts;
    call->curl_code = h->call.curl_code;
    call->http_version = h->call.http_version;
    call->upstream_ms = h->call.upstream_ms;
    call->cache = h->call.cache;
    call->cache_stored = h->call.cache_stored;
    call->cache_age_ms = h->call.cache_age_ms;
    call->cache_ttl_left_ms = h->call.cache_ttl_left_ms;
    memcpy(call->cache_etag, h->call.cache_etag, GW_ETAG_BYTES);
    call->customer_known = h->call.customer_known;
    call->customer_ok = h->call.customer_ok;
    call->coalesced = h->call.coalesced;
    call->done(call);
out:
    hop_free(h);
}

/* ---- the home's side ---- */

/* Send @p h back to its sender. Under the lock. */
static void send_back_locked(struct gw_homes *homes, struct gw_hop *h)
{
    homes->box[h->to].hosting--;
    h->where = HOP_BACK;
    push(&homes->box[h->from].back, h);
}

static void give_back(struct gw_homes *homes, struct gw_hop *h)
{
    struct box *hb = &homes->box[h->to];

    if (hb->running) {
        push(&hb->pending, h);
        return;
    }
    pthread_mutex_lock(&homes->lock);
    send_back_locked(homes, h);
    pthread_mutex_unlock(&homes->lock);
    gw_loop_wake(homes->box[h->from].loop);
}

/* The home's copy ended. */
static void hosted_done(struct gw_call *call)
{
    struct gw_hop *h = call->data;
    struct box *hb = &h->homes->box[h->to];

    if (h->hprev != NULL)
        h->hprev->hnext = h->hnext;
    else
        hb->hosted = h->hnext;
    if (h->hnext != NULL)
        h->hnext->hprev = h->hprev;
    h->hprev = h->hnext = NULL;
    h->hosted = false;
    give_back(h->homes, h);
}

static void host(struct box *hb, struct gw_hop *h)
{
    h->hosted = true;
    h->hnext = hb->hosted;
    if (hb->hosted != NULL)
        hb->hosted->hprev = h;
    hb->hosted = h;
    h->call.done = hosted_done;
    h->call.data = h;
    h->rc = gw_calls_submit(hb->calls, &h->call);
    /* Served from the cache, or refused: the outcome is settled already. */
    if (h->rc != 0)
        hosted_done(&h->call);
}

/* Send every answer held during a run back, and wake their senders once each. */
static void flush_pending(struct gw_homes *homes, struct box *b)
{
    struct gw_hop *h = take_all(&b->pending);
    struct gw_hop *next;
    uint64_t senders = 0;

    if (h == NULL)
        return;
    pthread_mutex_lock(&homes->lock);
    for (; h != NULL; h = next) {
        next = h->next;
        senders |= 1ULL << h->from;
        send_back_locked(homes, h);
    }
    pthread_mutex_unlock(&homes->lock);
    for (int i = 0; i < homes->n; i++) {
        if (senders & (1ULL << i))
            gw_loop_wake(homes->box[i].loop);
    }
}

void gw_homes_run(struct gw_homes *homes, int index)
{
    struct box *b = &homes->box[index];
    struct hop_list run = { NULL, NULL };
    struct gw_hop *back;
    struct gw_hop *cancels = NULL;
    struct gw_hop *h;
    struct gw_hop *next;

    b->running = true;
    pthread_mutex_lock(&homes->lock);
    for (h = take_all(&b->inbox); h != NULL; h = next) {
        next = h->next;
        /* A caller who left before its call ran: it goes back unrun, to be freed. */
        if (h->abandoned) {
            push(&b->pending, h);
            continue;
        }
        h->where = HOP_HOSTED;
        push(&run, h);
    }
    back = take_all(&b->back);
    if (b->cancels) {
        b->cancels = false;
        for (h = b->hosted; h != NULL; h = h->hnext) {
            if (h->cancel) {
                h->cancel = false;
                h->cnext = cancels;
                cancels = h;
            }
        }
    }
    pthread_mutex_unlock(&homes->lock);

    /* Copies whose callers left, first: nothing has run yet, so each is still hosted. */
    for (h = cancels; h != NULL; h = h->cnext) {
        if (h->hosted)
            gw_calls_cancel(b->calls, &h->call, h->cancel_err);
    }
    for (h = run.head; h != NULL; h = next) {
        next = h->next;
        host(b, h);
    }
    for (h = back; h != NULL; h = next) {
        next = h->next;
        answer_caller(homes, h);
    }
    b->running = false;
    flush_pending(homes, b);
}

bool gw_homes_close(struct gw_homes *homes, int index, bool force)
{
    struct box *b = &homes->box[index];
    struct gw_hop *h;
    struct gw_hop *next;
    bool closed = false;

    pthread_mutex_lock(&homes->lock);
    if (b->hosting == 0 || force) {
        b->closed = true;
        closed = true;
        for (h = take_all(&b->inbox); h != NULL; h = next) {
            next = h->next;
            h->bounced = true;
            send_back_locked(homes, h);
            gw_loop_wake(homes->box[h->from].loop);
        }
    }
    pthread_mutex_unlock(&homes->lock);
    return closed;
}

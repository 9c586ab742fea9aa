/*
 * The per-worker event loop: epoll for descriptors, an indexed binary min-heap for timers
 * (O(log n) start and stop, so thousands of per-request deadlines cost little), and an eventfd
 * for cross-thread wake-ups. Deliberately small: it is the one place where libmicrohttpd and
 * libcurl meet, and both bring their own idea of what to watch.
 */
#include "hcgw/loop.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/** Events fetched per epoll_wait. */
#define LOOP_MAX_EVENTS 128

struct gw_loop {
    int epfd;
    struct gw_io wake_io;
    void (*wake_cb)(void *data);
    void *wake_data;
    uint64_t now_ms;
    uint64_t timer_seq;      /* start order: ties in due time fire oldest first */
    struct gw_timer **heap;
    size_t heap_len;
    size_t heap_cap;
    struct epoll_event events[LOOP_MAX_EVENTS];
    int n_events;            /* events of the batch being dispatched */
    int cur_event;           /* index of the event being dispatched */
};

uint64_t gw_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_wake(struct gw_io *io, uint32_t events)
{
    struct gw_loop *loop = io->data;
    uint64_t v;

    (void)events;
    /* Drain the counter; the value itself carries no meaning. */
    if (read(io->fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;
    if (loop->wake_cb != NULL)
        loop->wake_cb(loop->wake_data);
}

struct gw_loop *gw_loop_new(void)
{
    struct gw_loop *loop = calloc(1, sizeof(*loop));

    if (loop == NULL)
        goto fail_alloc;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        goto fail_epoll;
    loop->wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake_io.fd < 0)
        goto fail_eventfd;
    loop->wake_io.cb = on_wake;
    loop->wake_io.data = loop;
    if (gw_loop_io_set(loop, &loop->wake_io, EPOLLIN) != 0)
        goto fail_watch;
    loop->now_ms = gw_clock_ms();
    return loop;

fail_watch:
    close(loop->wake_io.fd);
fail_eventfd:
    close(loop->epfd);
fail_epoll:
    free(loop);
fail_alloc:
    return NULL;
}

void gw_loop_free(struct gw_loop *loop)
{
    if (loop == NULL)
        return;
    close(loop->wake_io.fd);
    close(loop->epfd);
    free(loop->heap);
    free(loop);
}

uint64_t gw_loop_now(const struct gw_loop *loop)
{
    return loop->now_ms;
}

void gw_loop_update_time(struct gw_loop *loop)
{
    loop->now_ms = gw_clock_ms();
}

int gw_loop_io_set(struct gw_loop *loop, struct gw_io *io, uint32_t events)
{
    struct epoll_event ev;
    int op;
    int i;

    /* Nothing to change; a one-shot registration is re-armed by the same mask, though. */
    if (events == io->events && !(events & EPOLLONESHOT))
        return 0;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.ptr = io;
    if (events == 0) {
        if (io->events == 0)
            return 0;
        op = EPOLL_CTL_DEL;
        /* Forget events already fetched for this io, so that its owner may free it now. */
        for (i = loop->cur_event + 1; i < loop->n_events; i++) {
            if (loop->events[i].data.ptr == io)
                loop->events[i].data.ptr = NULL;
        }
    } else {
        op = io->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    }
    if (epoll_ctl(loop->epfd, op, io->fd, &ev) != 0) {
        /* A descriptor closed before it was unwatched has already left the epoll set. */
        if (!(op == EPOLL_CTL_DEL && (errno == EBADF || errno == ENOENT)))
            return -errno;
    }
    io->events = events;
    return 0;
}

int gw_loop_io_poke(struct gw_loop *loop, struct gw_io *io)
{
    struct epoll_event ev;

    if (io->events == 0)
        return -ENOENT;
    memset(&ev, 0, sizeof(ev));
    ev.events = io->events;
    ev.data.ptr = io;
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) == 0 ? 0 : -errno;
}

/* The heap stores slot = index + 1 in each timer, so that 0 means "not running". */
static void heap_set(struct gw_loop *loop, size_t i, struct gw_timer *t)
{
    loop->heap[i] = t;
    t->slot = i + 1;
}

static bool before(const struct gw_timer *a, const struct gw_timer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void heap_up(struct gw_loop *loop, size_t i)
{
    struct gw_timer *t = loop->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct gw_loop *loop, size_t i)
{
    struct gw_timer *t = loop->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!before(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

void gw_timer_init(struct gw_timer *t, gw_timer_cb *cb, void *data)
{
    t->due_ms = 0;
    t->slot = 0;
    t->cb = cb;
    t->data = data;
}

void gw_timer_set_cb(struct gw_timer *t, gw_timer_cb *cb)
{
    t->cb = cb;
}

void gw_timer_stop(struct gw_loop *loop, struct gw_timer *t)
{
    size_t i;
    struct gw_timer *last;

    if (t->slot == 0)
        return;
    i = t->slot - 1;
    t->slot = 0;
    last = loop->heap[--loop->heap_len];
    if (i == loop->heap_len)
        return;
    heap_set(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->slot - 1);
}

void gw_timer_start(struct gw_loop *loop, struct gw_timer *t, uint64_t delay_ms)
{
    gw_timer_stop(loop, t);
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct gw_timer **h = realloc(loop->heap, cap * sizeof(*h));
        if (h == NULL)
            abort(); /* A timer that silently never fires would hang a request forever. */
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->due_ms = loop->now_ms + delay_ms;
    t->seq = loop->timer_seq++;
    loop->heap_len++;
    heap_set(loop, loop->heap_len - 1, t);
    heap_up(loop, loop->heap_len - 1);
}

int gw_loop_next_timeout(const struct gw_loop *loop)
{
    uint64_t due;

    if (loop->heap_len == 0)
        return -1;
    due = loop->heap[0]->due_ms;
    if (due <= loop->now_ms)
        return 0;
    if (due - loop->now_ms > (uint64_t)INT32_MAX)
        return INT32_MAX;
    return (int)(due - loop->now_ms);
}

/*
 * Run the timers that were due when this pass began. A timer (re)started by a callback during
 * the pass waits for the next iteration even with a delay of 0, so that a callback that keeps
 * restarting itself at once (libcurl asks for 0 ms timeouts) cannot starve the descriptors.
 */
static int run_timers(struct gw_loop *loop)
{
    uint64_t limit = loop->timer_seq;
    int n = 0;

    while (loop->heap_len > 0 && loop->heap[0]->due_ms <= loop->now_ms &&
           loop->heap[0]->seq < limit) {
        struct gw_timer *t = loop->heap[0];
        gw_timer_stop(loop, t);
        t->cb(t);
        n++;
    }
    return n;
}

int gw_loop_run_once(struct gw_loop *loop, int max_wait_ms)
{
    int timeout = gw_loop_next_timeout(loop);
    int n;
    int i;

    if (max_wait_ms >= 0 && (timeout < 0 || max_wait_ms < timeout))
        timeout = max_wait_ms;
    n = epoll_wait(loop->epfd, loop->events, LOOP_MAX_EVENTS, timeout);
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        n = 0;
    }
    loop->now_ms = gw_clock_ms();
    loop->n_events = n;
    for (i = 0; i < n; i++) {
        struct gw_io *io = loop->events[i].data.ptr;
        loop->cur_event = i;
        if (io != NULL)
            io->cb(io, loop->events[i].events);
    }
    loop->n_events = 0;
    loop->cur_event = 0;
    return n + run_timers(loop);
}

void gw_loop_wake(struct gw_loop *loop)
{
    uint64_t one = 1;
    ssize_t w = write(loop->wake_io.fd, &one, sizeof(one));

    (void)w; /* A full counter already means "wake up". */
}

void gw_loop_on_wake(struct gw_loop *loop, void (*cb)(void *data), void *data)
{
    loop->wake_cb = cb;
    loop->wake_data = data;
}

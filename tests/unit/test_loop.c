/*
 * Unit tests of src/loop.c: the indexed min-heap of timers (due order, no early firing, stop
 * at the root, in the middle and at the end, restart, a callback that restarts its own timer),
 * io readiness on pipes, the rule that io_set(0) drops an event already fetched for that io,
 * gw_loop_wake from another thread, and gw_loop_next_timeout. Delays are a few milliseconds of
 * real time; every wait is bounded, so a broken loop fails a test instead of hanging it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "hcgw/loop.h"

/* No test may spin longer than this, whatever the loop does. */
#define GUARD_MS 3000u

static uint64_t clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A fixed-seed xorshift, so the "random" delays are the same on every run. */
static uint32_t rng_state;

static uint32_t rng(void)
{
    uint32_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x;
    return x;
}

/* ---- timers ---- */

/* A timer with what the test expects of it, and what happened to it. */
struct rec {
    struct gw_timer t;
    struct gw_loop *loop;
    uint64_t due;            /* loop time it was started at plus its delay */
    int fired;
    uint64_t fired_at;       /* loop time in its callback */
};

/* The firing sequence shared by the callbacks of one test. */
static struct rec *seq[1024];
static size_t seq_len;

/*
 * The loop of the test being run, made by the setup and freed by the teardown, so that a
 * failed assertion (which leaves the test at once) leaks nothing.
 */
static struct gw_loop *cur_loop;

static int setup(void **state)
{
    (void)state;
    seq_len = 0;
    cur_loop = gw_loop_new();
    return cur_loop != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    gw_loop_free(cur_loop);
    cur_loop = NULL;
    return 0;
}

static void on_rec(struct gw_timer *t)
{
    struct rec *r = t->data;

    /* The contract: the timer is already stopped when its callback runs. */
    assert_int_equal(t->slot, 0);
    r->fired++;
    r->fired_at = gw_loop_now(r->loop);
    /* Never early, by the loop's clock and by the wall clock. */
    assert_true(r->fired_at >= r->due);
    assert_true(clock_ms() >= r->due);
    assert_true(seq_len < sizeof(seq) / sizeof(seq[0]));
    seq[seq_len++] = r;
}

/* Start or restart @p r; only its first start prepares the timer. */
static void rec_start(struct gw_loop *loop, struct rec *r, uint64_t delay)
{
    if (r->loop == NULL) {
        r->loop = loop;
        gw_timer_init(&r->t, on_rec, r);
    }
    r->due = gw_loop_now(loop) + delay;
    gw_timer_start(loop, &r->t, delay);
}

/* Run the loop until @p want timers have fired (or the guard expires). */
static void run_until_fired(struct gw_loop *loop, size_t want)
{
    uint64_t start = clock_ms();

    while (seq_len < want) {
        int rc = gw_loop_run_once(loop, 50);
        assert_true(rc >= 0);
        assert_true(clock_ms() - start < GUARD_MS);
    }
}

/*
 * The heap invariant through the public fields: the running timers hold exactly the slots
 * 1..n, and no timer is due before its parent.
 */
static void check_heap(struct rec *r, size_t n)
{
    static struct rec *by_slot[1024 + 1];
    size_t running = 0;
    size_t i;

    assert_true(n < sizeof(by_slot) / sizeof(by_slot[0]));
    memset(by_slot, 0, sizeof(by_slot));
    for (i = 0; i < n; i++) {
        if (r[i].t.slot == 0)
            continue;
        assert_true(r[i].t.slot <= n);
        assert_null(by_slot[r[i].t.slot]);
        by_slot[r[i].t.slot] = &r[i];
        running++;
    }
    for (i = 1; i <= running; i++) {
        assert_non_null(by_slot[i]);
        if (i > 1)
            assert_true(by_slot[i / 2]->t.due_ms <= by_slot[i]->t.due_ms);
    }
}

/* The running timer at heap slot @p slot, or NULL. */
static struct rec *at_slot(struct rec *r, size_t n, size_t slot)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (r[i].t.slot == slot && slot != 0)
            return &r[i];
    }
    return NULL;
}

static void test_new_free(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    uint64_t before;

    (void)state;
    assert_non_null(loop);
    assert_int_equal(gw_loop_next_timeout(loop), -1);
    before = gw_loop_now(loop);
    sleep_ms(3);
    assert_int_equal(gw_loop_now(loop), before); /* cached until refreshed */
    gw_loop_update_time(loop);
    assert_true(gw_loop_now(loop) >= before + 3);
    /* With nothing to do, run_once waits its bound and dispatches nothing. */
    before = clock_ms();
    assert_int_equal(gw_loop_run_once(loop, 20), 0);
    assert_true(clock_ms() - before >= 19);
    gw_loop_free(loop);
    gw_loop_free(NULL);
}

static void test_next_timeout(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct rec a = {0}, b = {0}, c = {0}, far = {0};
    uint64_t start;

    (void)state;
    gw_loop_update_time(loop);
    rec_start(loop, &a, 5000);
    assert_int_equal(gw_loop_next_timeout(loop), 5000);
    rec_start(loop, &b, 100);
    assert_int_equal(gw_loop_next_timeout(loop), 100);
    gw_timer_stop(loop, &b.t);
    assert_int_equal(gw_loop_next_timeout(loop), 5000);
    /* Far in the future: clamped, not wrapped negative. */
    gw_timer_stop(loop, &a.t);
    rec_start(loop, &far, (uint64_t)INT32_MAX * 4);
    assert_int_equal(gw_loop_next_timeout(loop), INT32_MAX);
    /* Due now (or overdue once the clock moved on): 0. */
    rec_start(loop, &c, 0);
    assert_int_equal(gw_loop_next_timeout(loop), 0);
    sleep_ms(2);
    gw_loop_update_time(loop);
    assert_int_equal(gw_loop_next_timeout(loop), 0);
    /* run_once does not wait for a due timer, even when asked to wait long. */
    start = clock_ms();
    assert_int_equal(gw_loop_run_once(loop, 10000), 1);
    assert_true(clock_ms() - start < 1000);
    assert_int_equal(c.fired, 1);
    assert_true(gw_loop_next_timeout(loop) > 1000);
    gw_timer_stop(loop, &far.t);
    assert_int_equal(gw_loop_next_timeout(loop), -1);
    assert_int_equal(a.fired + b.fired + far.fired, 0);
}

static void test_timers_fire_in_due_order(void **state)
{
    enum { N = 1000 };
    struct gw_loop *loop = cur_loop;
    static struct rec r[N];
    size_t i;

    (void)state;
    memset(r, 0, sizeof(r));
    rng_state = 0x9e3779b9u;
    gw_loop_update_time(loop);
    for (i = 0; i < N; i++)
        rec_start(loop, &r[i], rng() % 60);
    check_heap(r, N);
    run_until_fired(loop, N);
    assert_int_equal(seq_len, N);
    for (i = 0; i < N; i++) {
        assert_int_equal(r[i].fired, 1);
        if (i > 0)
            assert_true(seq[i - 1]->due <= seq[i]->due);
    }
    assert_int_equal(gw_loop_next_timeout(loop), -1);
    /* And none fires twice later. */
    assert_int_equal(gw_loop_run_once(loop, 0), 0);
    assert_int_equal(seq_len, N);
}

static void test_stop_root_middle_last(void **state)
{
    enum { N = 31 };
    struct gw_loop *loop = cur_loop;
    struct rec r[N];
    size_t perm[N];
    struct rec *root = NULL, *middle = NULL, *last = NULL;
    size_t i;

    (void)state;
    memset(r, 0, sizeof(r));
    rng_state = 12345u;
    for (i = 0; i < N; i++)
        perm[i] = i;
    for (i = N - 1; i > 0; i--) {
        size_t j = rng() % (i + 1);
        size_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    gw_loop_update_time(loop);
    /* Distinct delays 1..31 ms, started in a shuffled order. */
    for (i = 0; i < N; i++)
        rec_start(loop, &r[perm[i]], perm[i] + 1);
    check_heap(r, N);
    /* Each is found just before it is stopped, since every stop moves the last timer. */
    last = at_slot(r, N, N);
    assert_non_null(last);
    gw_timer_stop(loop, &last->t);
    assert_int_equal(last->t.slot, 0);
    check_heap(r, N);
    middle = at_slot(r, N, 5); /* an inner node with two children */
    assert_non_null(middle);
    gw_timer_stop(loop, &middle->t);
    assert_int_equal(middle->t.slot, 0);
    check_heap(r, N);
    root = at_slot(r, N, 1);
    assert_non_null(root);
    gw_timer_stop(loop, &root->t);
    assert_int_equal(root->t.slot, 0);
    check_heap(r, N);
    /* Stopping a stopped timer is a no-op. */
    gw_timer_stop(loop, &root->t);
    check_heap(r, N);
    run_until_fired(loop, N - 3);
    assert_int_equal(root->fired + middle->fired + last->fired, 0);
    for (i = 1; i < seq_len; i++)
        assert_true(seq[i - 1]->due <= seq[i]->due);
    /* Nothing is left: the stopped ones stay stopped. */
    assert_int_equal(gw_loop_next_timeout(loop), -1);
    sleep_ms(2);
    assert_int_equal(gw_loop_run_once(loop, 0), 0);
    assert_int_equal(root->fired + middle->fired + last->fired, 0);
}

static void test_stop_root_promotes_last(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct rec a = {0}, b = {0}, c = {0};
    uint64_t start;

    (void)state;
    gw_loop_update_time(loop);
    /* Heap [a 1, b 30, c 10]: stopping the root moves the last, c, up; it is the next. */
    rec_start(loop, &a, 1);
    rec_start(loop, &b, 30);
    rec_start(loop, &c, 10);
    assert_int_equal(a.t.slot, 1);
    assert_int_equal(c.t.slot, 3);
    gw_timer_stop(loop, &a.t);
    assert_int_equal(c.t.slot, 1);
    assert_int_equal(b.t.slot, 2);
    assert_int_equal(gw_loop_next_timeout(loop), 10);
    /* run_once waits no longer than the next timer, however long it may wait. */
    start = clock_ms();
    while (seq_len == 0) {
        assert_true(gw_loop_run_once(loop, 5000) >= 0);
        assert_true(clock_ms() - start < 1000);
    }
    assert_ptr_equal(seq[0], &c);
    run_until_fired(loop, 2);
    assert_ptr_equal(seq[1], &b);
    assert_int_equal(a.fired, 0);
}

static void test_random_start_stop_keeps_heap(void **state)
{
    enum { N = 400, OPS = 4000 };
    struct gw_loop *loop = cur_loop;
    static struct rec r[N];
    size_t i, running = 0;

    (void)state;
    memset(r, 0, sizeof(r));
    rng_state = 777u;
    gw_loop_update_time(loop);
    for (i = 0; i < OPS; i++) {
        struct rec *x = &r[rng() % N];
        uint32_t op = rng() % 8;
        /* Start, restart (which moves it) or stop, in a random mix; some stops hit the root
         * or the last slot on purpose. */
        if (op == 0)
            x = at_slot(r, N, 1);
        else if (op == 1)
            x = at_slot(r, N, running);
        if (op <= 3) {
            if (x != NULL)
                gw_timer_stop(loop, &x->t);
        } else {
            rec_start(loop, x, 5 + rng() % 40);
        }
        running = 0;
        for (size_t k = 0; k < N; k++)
            running += r[k].t.slot != 0;
        check_heap(r, N);
    }
    assert_true(running > 0 && running < N);
    run_until_fired(loop, running);
    /* Exactly the timers left running fired, each once. */
    assert_int_equal(seq_len, running);
    assert_int_equal(gw_loop_next_timeout(loop), -1);
    for (i = 0; i < N; i++)
        assert_true(r[i].fired <= 1);
    for (i = 1; i < seq_len; i++)
        assert_true(seq[i - 1]->due <= seq[i]->due);
}

static void test_stopped_timer_never_fires(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct rec a = {0};
    struct gw_timer never;

    (void)state;
    gw_loop_update_time(loop);
    rec_start(loop, &a, 5);
    gw_timer_stop(loop, &a.t);
    assert_int_equal(gw_loop_next_timeout(loop), -1);
    sleep_ms(10);
    assert_int_equal(gw_loop_run_once(loop, 20), 0);
    assert_int_equal(a.fired, 0);
    /* Stopping a timer that never ran is a no-op too. */
    gw_timer_init(&never, on_rec, NULL);
    gw_timer_stop(loop, &never);
    assert_int_equal(gw_loop_next_timeout(loop), -1);
}

/* A callback that stops another timer, already due in the same round. */
static struct rec *victim;

static void on_stop_victim(struct gw_timer *t)
{
    on_rec(t);
    gw_timer_stop(victim->loop, &victim->t);
}

static void test_stop_due_timer_from_callback(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct rec a = {0}, b = {0};

    (void)state;
    gw_loop_update_time(loop);
    rec_start(loop, &a, 0);
    a.t.cb = on_stop_victim;
    rec_start(loop, &b, 1);
    victim = &b;
    sleep_ms(5);
    /* Both are due when the round starts; a runs first and stops b. */
    assert_int_equal(gw_loop_run_once(loop, 0), 1);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 0);
    assert_int_equal(gw_loop_next_timeout(loop), -1);
}

static void test_restart_moves_timer(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct rec a = {0}, b = {0};

    (void)state;
    gw_loop_update_time(loop);
    rec_start(loop, &a, 60000);
    rec_start(loop, &b, 20);
    assert_int_equal(gw_loop_next_timeout(loop), 20);
    /* Earlier: a moves to the front. */
    rec_start(loop, &a, 3);
    assert_int_equal(gw_loop_next_timeout(loop), 3);
    /* Later: b moves to the back, far away. */
    rec_start(loop, &b, 60000);
    assert_int_equal(gw_loop_next_timeout(loop), 3);
    run_until_fired(loop, 1);
    assert_ptr_equal(seq[0], &a);
    assert_int_equal(a.fired, 1);
    /* b runs once, at its new time, not its old one. */
    assert_int_equal(b.fired, 0);
    assert_true(gw_loop_next_timeout(loop) > 50000);
    sleep_ms(25);
    assert_int_equal(gw_loop_run_once(loop, 0), 0);
    assert_int_equal(b.fired, 0);
    gw_timer_stop(loop, &b.t);
}

/* A timer whose callback restarts itself until it has fired five times. */
struct again {
    struct gw_timer t;
    struct gw_loop *loop;
    int fired;
    uint64_t at[5];
};

static void on_again(struct gw_timer *t)
{
    struct again *a = t->data;

    assert_int_equal(t->slot, 0);
    a->at[a->fired++] = gw_loop_now(a->loop);
    if (a->fired < 5)
        gw_timer_start(a->loop, t, 2);
}

static void test_callback_restarts_itself(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct again a = {0};
    uint64_t start = clock_ms();
    int i;

    (void)state;
    a.loop = loop;
    gw_timer_init(&a.t, on_again, &a);
    gw_loop_update_time(loop);
    gw_timer_start(loop, &a.t, 2);
    while (a.fired < 5) {
        assert_true(gw_loop_run_once(loop, 50) >= 0);
        assert_true(clock_ms() - start < GUARD_MS);
    }
    for (i = 1; i < 5; i++)
        assert_true(a.at[i] >= a.at[i - 1] + 2);
    /* The fifth did not restart: nothing is left. */
    assert_int_equal(a.t.slot, 0);
    assert_int_equal(gw_loop_next_timeout(loop), -1);
}

/* ---- io watchers ---- */

struct watch {
    struct gw_io io;
    int calls;
    uint32_t events;
    struct watch *other;     /* for the unwatch-and-free test */
    struct gw_loop *loop;
};

static void on_io(struct gw_io *io, uint32_t events)
{
    struct watch *w = io->data;

    assert_ptr_equal(&w->io, io);
    w->calls++;
    w->events = events;
}

static void test_io_readiness_on_pipe(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct watch rd = {0}, wr = {0};
    int p[2];
    char c = 'x';

    (void)state;
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    rd.io.fd = p[0];
    rd.io.cb = on_io;
    rd.io.data = &rd;
    assert_int_equal(gw_loop_io_set(loop, &rd.io, EPOLLIN), 0);
    assert_int_equal(rd.io.events, EPOLLIN);
    /* Nothing to read yet. */
    assert_int_equal(gw_loop_run_once(loop, 0), 0);
    assert_int_equal(rd.calls, 0);
    assert_int_equal(write(p[1], &c, 1), 1);
    assert_int_equal(gw_loop_run_once(loop, 1000), 1);
    assert_int_equal(rd.calls, 1);
    assert_true(rd.events & EPOLLIN);
    /* Level-triggered: still readable until drained. */
    assert_int_equal(gw_loop_run_once(loop, 0), 1);
    assert_int_equal(rd.calls, 2);
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(gw_loop_run_once(loop, 0), 0);
    assert_int_equal(rd.calls, 2);
    /* Stopped: data arrives, nothing is called. */
    assert_int_equal(gw_loop_io_set(loop, &rd.io, 0), 0);
    assert_int_equal(rd.io.events, 0);
    assert_int_equal(gw_loop_io_set(loop, &rd.io, 0), 0); /* twice is fine */
    assert_int_equal(write(p[1], &c, 1), 1);
    assert_int_equal(gw_loop_run_once(loop, 10), 0);
    assert_int_equal(rd.calls, 2);
    /* Watched again: the pending byte is reported. */
    assert_int_equal(gw_loop_io_set(loop, &rd.io, EPOLLIN), 0);
    assert_int_equal(gw_loop_run_once(loop, 1000), 1);
    assert_int_equal(rd.calls, 3);
    /* The write end: EPOLLIN never comes, a change to EPOLLOUT does at once. */
    wr.io.fd = p[1];
    wr.io.cb = on_io;
    wr.io.data = &wr;
    assert_int_equal(gw_loop_io_set(loop, &rd.io, 0), 0);
    assert_int_equal(gw_loop_io_set(loop, &wr.io, EPOLLIN), 0);
    assert_int_equal(gw_loop_run_once(loop, 0), 0);
    assert_int_equal(gw_loop_io_set(loop, &wr.io, EPOLLOUT), 0);
    assert_int_equal(gw_loop_run_once(loop, 1000), 1);
    assert_int_equal(wr.calls, 1);
    assert_true(wr.events & EPOLLOUT);
    assert_int_equal(gw_loop_io_set(loop, &wr.io, 0), 0);
    /* The writer hangs up: the reader sees EPOLLHUP. */
    assert_int_equal(gw_loop_io_set(loop, &rd.io, EPOLLIN), 0);
    close(p[1]);
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(gw_loop_run_once(loop, 1000), 1);
    assert_true(rd.events & EPOLLHUP);
    assert_int_equal(gw_loop_io_set(loop, &rd.io, 0), 0);
    close(p[0]);
}

/* An edge-triggered watch hears an edge once; gw_loop_io_poke makes epoll look again. */
static void test_io_poke_edge_triggered(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct watch rd = {0};
    int p[2];
    char c = 'x';

    (void)state;
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    rd.io.fd = p[0];
    rd.io.cb = on_io;
    rd.io.data = &rd;
    assert_int_equal(gw_loop_io_poke(loop, &rd.io), -ENOENT); /* not watched */
    assert_int_equal(gw_loop_io_set(loop, &rd.io, EPOLLIN | EPOLLET), 0);
    assert_int_equal(write(p[1], &c, 1), 1);
    assert_int_equal(gw_loop_run_once(loop, 1000), 1);
    assert_int_equal(rd.calls, 1);
    /* The byte is still there, but its edge has gone by. */
    assert_int_equal(gw_loop_run_once(loop, 10), 0);
    assert_int_equal(rd.calls, 1);
    /* The same mask again is no system call, so it does not help; a poke does. */
    assert_int_equal(gw_loop_io_set(loop, &rd.io, EPOLLIN | EPOLLET), 0);
    assert_int_equal(gw_loop_run_once(loop, 10), 0);
    assert_int_equal(gw_loop_io_poke(loop, &rd.io), 0);
    assert_int_equal(gw_loop_run_once(loop, 1000), 1);
    assert_int_equal(rd.calls, 2);
    assert_true(rd.events & EPOLLIN);
    /* Nothing pending: a poke brings nothing. */
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(gw_loop_io_poke(loop, &rd.io), 0);
    assert_int_equal(gw_loop_run_once(loop, 10), 0);
    assert_int_equal(rd.calls, 2);
    assert_int_equal(gw_loop_io_set(loop, &rd.io, 0), 0);
    close(p[0]);
    close(p[1]);
}

static void test_io_set_errors(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct watch w = {0};
    int p[2];

    (void)state;
    w.io.fd = -1;
    w.io.cb = on_io;
    w.io.data = &w;
    assert_int_equal(gw_loop_io_set(loop, &w.io, EPOLLIN), -EBADF);
    assert_int_equal(w.io.events, 0);
    /* A descriptor closed before it was unwatched can still be unwatched. */
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    w.io.fd = p[0];
    assert_int_equal(gw_loop_io_set(loop, &w.io, EPOLLIN), 0);
    close(p[0]);
    close(p[1]);
    assert_int_equal(gw_loop_io_set(loop, &w.io, 0), 0);
    assert_int_equal(w.io.events, 0);
}

/* Whichever of the two runs first unwatches the other, closes it and frees it. */
static int pair_calls;
static struct watch *pair_survivor;

static void on_io_kill_other(struct gw_io *io, uint32_t events)
{
    struct watch *w = io->data;
    struct watch *other = w->other;

    (void)events;
    pair_calls++;
    pair_survivor = w;
    assert_non_null(other);
    assert_int_equal(gw_loop_io_set(w->loop, &other->io, 0), 0);
    close(other->io.fd);
    free(other);
    w->other = NULL;
}

static void test_unwatch_drops_fetched_event(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct watch *a = calloc(1, sizeof(*a));
    struct watch *b = calloc(1, sizeof(*b));
    struct watch *survivor;
    int pa[2], pb[2];
    char c = 'x';

    (void)state;
    assert_int_equal(pipe2(pa, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(pipe2(pb, O_NONBLOCK | O_CLOEXEC), 0);
    a->io.fd = pa[0];
    b->io.fd = pb[0];
    a->io.cb = b->io.cb = on_io_kill_other;
    a->io.data = a;
    b->io.data = b;
    a->loop = b->loop = loop;
    a->other = b;
    b->other = a;
    assert_int_equal(gw_loop_io_set(loop, &a->io, EPOLLIN), 0);
    assert_int_equal(gw_loop_io_set(loop, &b->io, EPOLLIN), 0);
    /* Both readable before the loop looks: one epoll_wait fetches both events. */
    assert_int_equal(write(pa[1], &c, 1), 1);
    assert_int_equal(write(pb[1], &c, 1), 1);
    pair_calls = 0;
    assert_int_equal(gw_loop_run_once(loop, 1000), 2);
    /* The freed one's event was dropped (ASan reports a use after free otherwise). */
    assert_int_equal(pair_calls, 1);
    survivor = pair_survivor;
    assert_true(survivor == a || survivor == b);
    assert_null(survivor->other);
    /* The survivor is still watched and still readable. */
    survivor->io.cb = on_io;
    assert_int_equal(gw_loop_run_once(loop, 0), 1);
    assert_int_equal(survivor->calls, 1);
    assert_int_equal(pair_calls, 1);
    assert_int_equal(gw_loop_io_set(loop, &survivor->io, 0), 0);
    close(survivor->io.fd);
    free(survivor);
    close(pa[1]);
    close(pb[1]);
}

/* ---- wake-ups from other threads ---- */

struct waker {
    struct gw_loop *loop;
    pthread_t loop_thread;
    int calls;
    bool on_loop_thread;
};

static void on_wake_cb(void *data)
{
    struct waker *w = data;

    w->calls++;
    w->on_loop_thread = pthread_equal(pthread_self(), w->loop_thread) != 0;
}

static void *wake_later(void *arg)
{
    struct waker *w = arg;

    /* Long enough for the loop to be asleep in epoll_wait. */
    sleep_ms(30);
    gw_loop_wake(w->loop);
    return NULL;
}

static void test_wake_from_other_thread(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct waker w = {0};
    pthread_t th;
    uint64_t start;

    (void)state;
    w.loop = loop;
    w.loop_thread = pthread_self();
    /* A wake without a callback is harmless. */
    gw_loop_wake(loop);
    assert_int_equal(gw_loop_run_once(loop, 0), 1);
    gw_loop_on_wake(loop, on_wake_cb, &w);
    assert_int_equal(pthread_create(&th, NULL, wake_later, &w), 0);
    start = clock_ms();
    /* Asleep for up to 10 s, woken after about 30 ms. */
    while (w.calls == 0 && clock_ms() - start < GUARD_MS)
        assert_true(gw_loop_run_once(loop, 10000) >= 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.calls, 1);
    assert_true(w.on_loop_thread);
    assert_true(clock_ms() - start < 2000);
    /* Several wakes before the loop looks: one callback, and then quiet. */
    gw_loop_wake(loop);
    gw_loop_wake(loop);
    gw_loop_wake(loop);
    assert_int_equal(gw_loop_run_once(loop, 1000), 1);
    assert_int_equal(w.calls, 2);
    assert_int_equal(gw_loop_run_once(loop, 0), 0);
    assert_int_equal(w.calls, 2);
}

static void test_run_once_counts_events_and_timers(void **state)
{
    struct gw_loop *loop = cur_loop;
    struct watch rd = {0};
    struct rec a = {0};
    int p[2];
    char c = 'x';

    (void)state;
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    rd.io.fd = p[0];
    rd.io.cb = on_io;
    rd.io.data = &rd;
    assert_int_equal(gw_loop_io_set(loop, &rd.io, EPOLLIN), 0);
    gw_loop_update_time(loop);
    rec_start(loop, &a, 1);
    assert_int_equal(write(p[1], &c, 1), 1);
    sleep_ms(3);
    assert_int_equal(gw_loop_run_once(loop, 1000), 2);
    assert_int_equal(rd.calls, 1);
    assert_int_equal(a.fired, 1);
    assert_int_equal(gw_loop_io_set(loop, &rd.io, 0), 0);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free),
        cmocka_unit_test_setup_teardown(test_next_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timers_fire_in_due_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_root_middle_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_root_promotes_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_start_stop_keeps_heap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_timer_never_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_due_timer_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_moves_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_restarts_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_readiness_on_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_poke_edge_triggered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_set_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwatch_drops_fetched_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wake_from_other_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_once_counts_events_and_timers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

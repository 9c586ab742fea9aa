/*
 * One event loop per worker thread: epoll for file descriptors, a binary min-heap for timers,
 * and an eventfd so that other threads (and signal handlers) can wake it. libmicrohttpd's epoll
 * descriptor and libcurl's sockets and timer all live on the same loop, so a request never
 * changes threads between intake, the upstream call and the reply.
 *
 * Everything here runs on the loop's own thread, except gw_loop_wake().
 */
#ifndef HCGW_LOOP_H
#define HCGW_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct gw_loop;
struct gw_io;
struct gw_timer;

/** Called with the epoll events (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP) of a watched fd. */
typedef void gw_io_cb(struct gw_io *io, uint32_t events);
/** Called once when a timer is due. The timer is already stopped; the callback may restart it. */
typedef void gw_timer_cb(struct gw_timer *t);

/** A watched descriptor. Owned by the caller; must stay valid while watched. */
struct gw_io {
    int fd;
    uint32_t events;         /* what is watched now; 0 when not watched */
    gw_io_cb *cb;
    void *data;              /* for the callback */
};

/** A one-shot timer. Owned by the caller; zero it (or gw_timer_init) before first use. */
struct gw_timer {
    uint64_t due_ms;         /* loop time when due */
    uint64_t seq;            /* start order, for ties and for the timer pass */
    size_t slot;             /* index in the heap + 1; 0 when not running */
    gw_timer_cb *cb;
    void *data;
};

/** Create a loop. Returns NULL on failure (errno set). */
struct gw_loop *gw_loop_new(void);

/** Free a loop. Watchers and timers must already be stopped. Accepts NULL. */
void gw_loop_free(struct gw_loop *loop);

/** Monotonic milliseconds, refreshed once per iteration (and by gw_loop_update_time). */
uint64_t gw_loop_now(const struct gw_loop *loop);

/**
 * Monotonic milliseconds read from the clock now, not the loop's cached now: for code that
 * measures inside an iteration, or runs on no loop. Any thread.
 */
uint64_t gw_clock_ms(void);

/** Refresh the loop's notion of now. */
void gw_loop_update_time(struct gw_loop *loop);

/**
 * Watch @p io->fd for @p events (EPOLLIN and/or EPOLLOUT; 0 stops watching). Adds, changes or
 * removes the registration as needed: setting the mask it already has makes no system call, so
 * an owner that stops caring for a while may leave the registration in place (and ignore what
 * it hears meanwhile) rather than remove and add it again. Returns 0 or -errno. After a stop,
 * no event already fetched for this io is delivered, so the caller may free it at once. A
 * descriptor closed while watched leaves the epoll set, but its io still says it is watched:
 * stop watching it (0) before its number can come back as another socket.
 */
int gw_loop_io_set(struct gw_loop *loop, struct gw_io *io, uint32_t events);

/**
 * Ask epoll to look at a watched @p io's readiness again (one EPOLL_CTL_MOD with the same mask):
 * for an edge-triggered (EPOLLET) registration whose owner may have missed an edge while it did
 * not care, an event comes if the condition holds now. Returns 0, or -errno (-ENOENT when not
 * watched).
 */
int gw_loop_io_poke(struct gw_loop *loop, struct gw_io *io);

/** Prepare @p t with its callback. Not on a running timer (use gw_timer_set_cb). */
void gw_timer_init(struct gw_timer *t, gw_timer_cb *cb, void *data);

/** Change the callback of a timer, running or not (it keeps its place). */
void gw_timer_set_cb(struct gw_timer *t, gw_timer_cb *cb);

/** (Re)start @p t to fire @p delay_ms from now. */
void gw_timer_start(struct gw_loop *loop, struct gw_timer *t, uint64_t delay_ms);

/** Stop @p t if it runs; no-op otherwise. */
void gw_timer_stop(struct gw_loop *loop, struct gw_timer *t);

/**
 * Wait for events at most @p max_wait_ms (-1: until the next timer or event), dispatch them and
 * the timers that are due. Returns the number of events and timers dispatched, or -errno.
 */
int gw_loop_run_once(struct gw_loop *loop, int max_wait_ms);

/** Milliseconds until the next timer (-1 when none). */
int gw_loop_next_timeout(const struct gw_loop *loop);

/**
 * Wake the loop from any thread or a signal handler (async-signal-safe): the wake callback set
 * with gw_loop_on_wake runs on the loop thread at its next iteration.
 */
void gw_loop_wake(struct gw_loop *loop);

/** Set the callback run on the loop thread after gw_loop_wake. */
void gw_loop_on_wake(struct gw_loop *loop, void (*cb)(void *data), void *data);

#endif

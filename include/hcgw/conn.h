/*
 * A worker's client connections and their clock: the header deadline (limits.header_timeout_ms)
 * that libmicrohttpd's idle timeout cannot give, and the socket's one registration in the
 * worker's loop, edge-triggered and kept for the connection's life (no epoll_ctl per request),
 * which hears what the connection waits on (the next request's first byte while idle, a
 * hang-up while its request waits on HelpCrunch).
 *
 * It knows a request only as an opaque pointer, and tells its owner about it through the hooks
 * it was made with; it never looks inside one. Everything runs on the worker's thread (or on
 * the main thread after the worker stopped, while the daemon is torn down); nothing is locked.
 */
#ifndef HCGW_CONN_H
#define HCGW_CONN_H

#include <stdbool.h>

#include <microhttpd.h>

struct gw_config;
struct gw_conn;
struct gw_conns;
struct gw_log;
struct gw_loop;

/** What the connections tell their owner. Each hook is called on the worker's thread. */
struct gw_conn_hooks {
    /**
     * The caller hung up while @p req waited (armed by gw_conn_watch_hangup). The connection
     * stays known until libmicrohttpd closes it.
     */
    void (*hung_up)(void *req);
    /**
     * The connection of @p req was cut at its header deadline: nothing will be answered, and
     * the request completes when libmicrohttpd closes the connection.
     */
    void (*cut)(void *req);
};

/**
 * Make the connection set of one worker. @p cfg points at the worker's current configuration
 * pointer, read at each use (a reload swaps it on the worker's thread). @p mhd_needs_run is
 * set to true whenever libmicrohttpd must run again (a socket was shut down, a connection
 * closed). Warnings (a connection cut at its deadline) go to @p log. All of them must outlive
 * the set. Returns NULL when out of memory.
 */
struct gw_conns *gw_conns_new(struct gw_loop *loop, const struct gw_config *const *cfg,
                              const struct gw_conn_hooks *hooks, bool *mhd_needs_run,
                              struct gw_log *log);

/**
 * Free the set. libmicrohttpd must have stopped (and so announced every close) before, so that
 * no connection is left. Accepts NULL.
 */
void gw_conns_free(struct gw_conns *cs);

/**
 * MHD_OPTION_NOTIFY_CONNECTION (with the set as cls): a connection opened (its header clock
 * starts) or closed (its bookkeeping goes). A connection that cannot be tracked for lack of
 * memory is shut down, since one that escaped the deadline would be the slowloris the deadline
 * exists for.
 */
void gw_conns_notify(void *cls, struct MHD_Connection *mhd, void **socket_context,
                     enum MHD_ConnectionNotificationCode code);

/** The bookkeeping of @p mhd, or NULL when there is none (then every gw_conn_* is a no-op). */
struct gw_conn *gw_conn_of(struct MHD_Connection *mhd);

/** The request line of @p req is complete (the URI callback). Accepts a NULL @p c. */
void gw_conn_request_begun(struct gw_conn *c, void *req);

/** The headers of its request are complete: the header clock stops. Accepts NULL. */
void gw_conn_headers_done(struct gw_conn *c);

/**
 * Its request waits on HelpCrunch (the connection is suspended, so libmicrohttpd does not
 * watch it): arm the hang-up watch, which calls hooks->hung_up. On failure the request is
 * simply not watched. Accepts NULL.
 */
void gw_conn_watch_hangup(struct gw_conn *c);

/**
 * Its request completed. When the connection stays open (@p keep_alive), it waits idle, under
 * libmicrohttpd's idle timeout alone, until a byte of the next request arrives; then the header
 * clock starts again. The request pointer is forgotten. Accepts NULL.
 */
void gw_conn_request_done(struct gw_conn *c, bool keep_alive);

#endif

/*
 * The server: listening sockets, one worker thread per configured worker, each running its
 * own event loop with its own libmicrohttpd daemon (external epoll mode, SO_REUSEPORT when
 * there are several) and its own curl multi handle; and the ordered shutdown (stop accepting,
 * drain in-flight requests within server.drain_timeout_ms, stop).
 */
#ifndef HCGW_SERVER_H
#define HCGW_SERVER_H

struct gw_config;
struct gw_log;
struct gw_secret;
struct gw_server;

/**
 * Bind the listening sockets and build the workers (nothing runs yet). The server owns its
 * metrics registry; it logs through @p log, whose level may be changed (gw_log_set_level) while
 * it runs. @p cfg, @p secret and @p log must outlive the server. Several servers may live in
 * one process, each with its own logger. Returns NULL with a malloc'd one-line reason in
 * *error.
 */
struct gw_server *gw_server_new(const struct gw_config *cfg, const struct gw_secret *secret,
                                struct gw_log *log, char **error);

/** The bound port (useful when listen.port is 0). */
int gw_server_port(const struct gw_server *srv);

/** Start the worker threads. Returns 0 or -1 (then nothing runs). */
int gw_server_start(struct gw_server *srv);

/**
 * Begin the drain: /readyz turns 503, listening stops, new requests get 503 shutting_down,
 * in-flight requests finish within the drain timeout. Any thread; returns at once.
 */
void gw_server_stop(struct gw_server *srv);

/**
 * Switch every worker to @p cfg and @p secret (a reload): each takes them on its own thread
 * at its next loop iteration; new upstream attempts use the new key; settings that belong to
 * the listening sockets and MHD daemons (listen.*, server.workers, limits.max_connections,
 * limits.connection_timeout_ms) keep their old values until a restart (a warning says so),
 * except listen.tls's pair (@p cfg's listen.tls.creds), which each worker's next handshake
 * takes (tls.h); whether the listener is TLS at all stays as it started.
 * Returns 0 when every worker took them: the old config and key are then unused and may be
 * freed. Returns -1 when a worker did not (out of memory, or no answer within 10 s): the old
 * ones must be kept. Main thread, after gw_server_start.
 */
int gw_server_reload(struct gw_server *srv, const struct gw_config *cfg,
                     const struct gw_secret *secret);

/** Wait until every worker has drained and stopped. */
void gw_server_wait(struct gw_server *srv);

/** Free the server (after gw_server_wait, or without having started). Accepts NULL. */
void gw_server_free(struct gw_server *srv);

#endif

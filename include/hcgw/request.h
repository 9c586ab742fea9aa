/*
 * One request, one owner: struct gw_request (private to request.c) holds everything from the
 * URI-log callback that creates it to the completion callback that logs and frees it. This
 * header gives server.c the libmicrohttpd callbacks to install, and struct gw_worker, the
 * per-thread context both files share.
 */
#ifndef HCGW_REQUEST_H
#define HCGW_REQUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "hcgw/loop.h"

struct gw_config;
struct gw_conns;
struct gw_gzip;
struct gw_log;
struct gw_metrics_registry;
struct gw_secret;
struct gw_calls;
struct gw_homes;
struct gw_idem_store;
struct gw_metrics;

/** A worker thread: one loop, one MHD daemon, one curl multi. Fields are for request.c and
 * server.c only, and are touched on the worker's own thread (except `stop`, `thread`). */
struct gw_worker {
    int index;
    const struct gw_config *cfg;
    const struct gw_secret *secret;
    struct gw_loop *loop;
    struct gw_calls *calls;    /* the call layer, and the transport under it */
    struct gw_homes *homes;    /* the server's contact homes; NULL with one worker */
    struct gw_idem_store *idem; /* its Idempotency-Key store (idem.h): the server's table,
                                   or with a redis group its own over Redis (idem_redis.h) */
    struct gw_metrics *metrics;         /* this worker's block */
    struct gw_metrics_registry *registry; /* the server's, whose blocks /metrics sums */
    struct gw_log *log;                 /* the server's logger */
    struct MHD_Daemon *mhd;
    struct gw_io mhd_io;
    int listen_fd;
    pthread_t thread;
    bool started;
    const int *stopping;       /* the server's flag, read with __atomic_load_n */
    bool draining;             /* this worker has begun its drain */
    size_t active;             /* live requests (created, not yet completed) */
    size_t in_flight;          /* requests waiting on HelpCrunch */
    size_t answering;          /* requests whose answer is queued, not yet completed */
    bool mhd_needs_run;        /* MHD must run again: a connection was resumed, cut or closed */
    uint64_t rng[2];           /* request ids */
    struct gw_conns *conns;    /* its client connections and their clock (conn.h) */
    struct gw_gzip *gzip;      /* its deflater for answers (gzip.h) */
};

/**
 * Set up request.c's per-worker state (after w->loop exists): the worker's connection set
 * (w->conns, conn.h), whose hooks tell request.c of hang-ups and header timeouts, and its
 * deflater (w->gzip). Returns 0 or -1.
 */
int gw_request_worker_init(struct gw_worker *w);

/** Tear it down (before w->loop is freed). */
void gw_request_worker_fini(struct gw_worker *w);

/** MHD_OPTION_URI_LOG_CALLBACK: creates the request (its return value becomes req_cls). */
void *gw_request_begin(void *cls, const char *uri, struct MHD_Connection *conn);

/** The MHD access handler (cls is the worker). */
enum MHD_Result gw_request_access(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls);

/** MHD_OPTION_NOTIFY_COMPLETED: writes the access line, counts, frees the request. */
void gw_request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                          enum MHD_RequestTerminationCode toe);

/** MHD_OPTION_UNESCAPE_CALLBACK: leaves the URI as sent, so the router decodes each segment. */
size_t gw_request_unescape(void *cls, struct MHD_Connection *conn, char *uri);

#endif

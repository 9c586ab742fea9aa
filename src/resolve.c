/*
 * An asynchronous host name lookup (resolve.h). The lookup is a glibc getaddrinfo_a request
 * whose completion is told by a notification thread (SIGEV_THREAD) that writes an eventfd the
 * loop watches. The request block (struct job) is shared by two owners, the loop and that
 * notification, with a reference count: whichever lets go last frees it, so a lookup given up
 * by the loop (gw_resolve_cancel) may still end in glibc's thread without anyone waiting for
 * it, and without writing into freed memory.
 */
#include "hcgw/resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"

struct job {
    int refs;                        /* the loop's and the notification's (atomic) */
    int efd;                         /* written once by the notification */
    struct gaicb req;
    struct addrinfo hints;
    char host[GW_MAX_HOSTNAME_BYTES + 1];
};

struct gw_resolve {
    struct gw_loop *loop;
    struct gw_io io;                 /* watches job->efd */
    struct job *job;
    gw_resolve_cb *cb;
    void *data;
};

static void job_release(struct job *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    if (j->req.ar_result != NULL)
        freeaddrinfo(j->req.ar_result);
    close(j->efd);
    free(j);
}

/* On glibc's notification thread, once the lookup is over: wake the loop, let go. */
static void on_done(union sigval v)
{
    struct job *j = v.sival_ptr;
    uint64_t one = 1;
    ssize_t n;

    do {
        n = write(j->efd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    job_release(j);
}

static void finish(struct gw_resolve *q)
{
    gw_loop_io_set(q->loop, &q->io, 0);
    job_release(q->job);
    free(q);
}

/* The eventfd is readable: the lookup is over. Report it, then free everything of ours. */
static void on_ready(struct gw_io *io, uint32_t events)
{
    struct gw_resolve *q = io->data;
    struct job *j = q->job;
    char addr[GW_RESOLVE_ADDR_BYTES];
    const char *error = NULL;
    gw_resolve_cb *cb = q->cb;
    void *data = q->data;
    int rc = gai_error(&j->req);

    (void)events;
    if (rc == EAI_INPROGRESS)
        return; /* not for us: only the notification writes the eventfd */
    addr[0] = '\0';
    if (rc != 0) {
        error = gai_strerror(rc);
    } else if (j->req.ar_result == NULL ||
               getnameinfo(j->req.ar_result->ai_addr, j->req.ar_result->ai_addrlen, addr,
                           sizeof addr, NULL, 0, NI_NUMERICHOST) != 0) {
        error = "the name has no usable address";
    }
    finish(q);
    cb(data, error ? NULL : addr, error);
}

int gw_resolve_start(struct gw_loop *loop, const char *host, gw_resolve_cb *cb, void *data,
                     struct gw_resolve **out)
{
    struct gaicb *list[1];
    struct sigevent sev;
    struct gw_resolve *q = NULL;
    struct job *j = NULL;
    size_t len = host ? strlen(host) : 0;
    int rc = GW_ERR_INVALID_REQUEST;

    *out = NULL;
    if (len == 0 || len > GW_MAX_HOSTNAME_BYTES)
        goto fail;
    rc = GW_ERR_NOMEM;
    q = calloc(1, sizeof *q);
    j = calloc(1, sizeof *j);
    if (q == NULL || j == NULL)
        goto fail;
    rc = GW_ERR_INTERNAL;
    j->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (j->efd < 0)
        goto fail;
    memcpy(j->host, host, len + 1);
    j->hints.ai_family = AF_UNSPEC;
    j->hints.ai_socktype = SOCK_STREAM;
    j->hints.ai_flags = AI_ADDRCONFIG;
    j->req.ar_name = j->host;
    j->req.ar_request = &j->hints;
    j->refs = 2;
    q->loop = loop;
    q->job = j;
    q->cb = cb;
    q->data = data;
    q->io.fd = j->efd;
    q->io.cb = on_ready;
    q->io.data = q;
    if (gw_loop_io_set(loop, &q->io, EPOLLIN) != 0)
        goto fail_efd;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD;
    sev.sigev_notify_function = on_done;
    sev.sigev_value.sival_ptr = j;
    list[0] = &j->req;
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, &sev) != 0) {
        gw_loop_io_set(loop, &q->io, 0);
        goto fail_efd;
    }
    *out = q;
    return 0;

fail_efd:
    close(j->efd);
fail:
    free(j);
    free(q);
    return rc;
}

void gw_resolve_cancel(struct gw_resolve *q)
{
    if (q == NULL)
        return;
    /* Still queued: glibc drops it and will never notify, so the notification's reference
     * is let go here. Running or done: the notification comes (or came) and lets go itself. */
    if (gai_cancel(&q->job->req) == EAI_CANCELED)
        job_release(q->job);
    finish(q);
}

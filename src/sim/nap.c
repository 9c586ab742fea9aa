/*
 * nap.c: interruptible sleeps, a condition variable on CLOCK_MONOTONIC waited on with a
 * deadline. It has its own small mutex, separate from the API lock, so that a sleeping
 * connection never holds the lock that guards the store.
 */
#include "nap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct sim_nap {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
};

struct sim_nap *sim_nap_new(void)
{
    struct sim_nap *nap = calloc(1, sizeof(*nap));
    pthread_condattr_t attr;

    if (nap == NULL)
        goto fail_alloc;
    if (pthread_mutex_init(&nap->mu, NULL) != 0)
        goto fail_mutex;
    if (pthread_condattr_init(&attr) != 0)
        goto fail_attr;
    /* A monotonic deadline keeps a wall-clock jump from shortening or stretching a fault. */
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0)
        goto fail_cond;
    if (pthread_cond_init(&nap->cv, &attr) != 0)
        goto fail_cond;
    pthread_condattr_destroy(&attr);
    return nap;

fail_cond:
    pthread_condattr_destroy(&attr);
fail_attr:
    pthread_mutex_destroy(&nap->mu);
fail_mutex:
    free(nap);
fail_alloc:
    return NULL;
}

void sim_nap_free(struct sim_nap *nap)
{
    if (nap == NULL)
        return;
    pthread_cond_destroy(&nap->cv);
    pthread_mutex_destroy(&nap->mu);
    free(nap);
}

bool sim_nap_sleep(struct sim_nap *nap, unsigned long ms)
{
    struct timespec deadline;
    bool full = false;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(ms / 1000);
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&nap->mu);
    /* Loop: condition variables may wake spuriously. */
    while (!nap->stopping && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&nap->cv, &nap->mu, &deadline);
    full = !nap->stopping;
    pthread_mutex_unlock(&nap->mu);
    return full;
}

void sim_nap_until_stop(struct sim_nap *nap)
{
    pthread_mutex_lock(&nap->mu);
    while (!nap->stopping)
        pthread_cond_wait(&nap->cv, &nap->mu);
    pthread_mutex_unlock(&nap->mu);
}

void sim_nap_stop(struct sim_nap *nap)
{
    pthread_mutex_lock(&nap->mu);
    nap->stopping = true;
    pthread_cond_broadcast(&nap->cv);
    pthread_mutex_unlock(&nap->mu);
}

/*
 * The bounded growable buffer (include/hcgw/buf.h). It sits on the hot path (every request
 * body and upstream answer goes through gw_buf_append), so it adds nothing to what a request
 * did by hand before: one allocation of the owner's first size, doubling after that, and no
 * copy but the one into the buffer.
 */
#include "hcgw/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hcgw/err.h"

void gw_buf_init(struct gw_buf *b, size_t max, size_t first, unsigned flags)
{
    /* max + 1 (the NUL) must not wrap. */
    if (max > SIZE_MAX - 1)
        max = SIZE_MAX - 1;
    if (first < 1)
        first = 1;
    if (first > max + 1)
        first = max + 1;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->first = first;
    b->flags = flags;
}

/* Whether @p n more bytes keep len within the bound. */
static int fits(const struct gw_buf *b, size_t n)
{
    return b->len <= b->max && n <= b->max - b->len;
}

/*
 * Grow the allocation to hold @p need bytes (the NUL included; at most max + 1): the first
 * size, then doubling, never past max + 1. Returns 0 or GW_ERR_NOMEM (nothing changed).
 */
static int grow(struct gw_buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : b->first;
    char *p;

    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    if (cap < need)
        cap = need;
    if (b->flags & GW_BUF_WIPE) {
        /* Not realloc: it may move the bytes and free the old block without wiping it. */
        p = malloc(cap);
        if (p == NULL)
            return GW_ERR_NOMEM;
        if (b->data != NULL) {
            memcpy(p, b->data, b->len + 1);
            explicit_bzero(b->data, b->cap);
            free(b->data);
        }
    } else {
        p = realloc(b->data, cap);
        if (p == NULL)
            return GW_ERR_NOMEM;
    }
    if (b->data == NULL)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return 0;
}

int gw_buf_append(struct gw_buf *b, const void *p, size_t n)
{
    int rc;

    if (!fits(b, n))
        return GW_ERR_BODY_TOO_LARGE;
    if (b->len + n + 1 > b->cap) {
        rc = grow(b, b->len + n + 1);
        if (rc != 0)
            return rc;
    }
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int gw_buf_vappendf(struct gw_buf *b, const char *fmt, va_list ap)
{
    size_t room = b->cap - b->len;
    va_list again;
    int n;
    int rc = 0;

    /* Print straight into the room there is; only when it does not fit, grow and print again. */
    va_copy(again, ap);
    n = vsnprintf(b->data != NULL ? b->data + b->len : NULL, room, fmt, ap);
    if (n < 0) {
        rc = GW_ERR_INTERNAL;
        goto out;
    }
    if ((size_t)n < room) {
        b->len += (size_t)n;
        goto out;
    }
    if (!fits(b, (size_t)n)) {
        rc = GW_ERR_BODY_TOO_LARGE;
        goto out;
    }
    rc = grow(b, b->len + (size_t)n + 1);
    if (rc != 0)
        goto out;
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, again);
    b->len += (size_t)n;
out:
    va_end(again);
    /* A failed or cut-short print may have written past len. */
    if (b->data != NULL)
        b->data[b->len] = '\0';
    return rc;
}

int gw_buf_appendf(struct gw_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = gw_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int gw_buf_space(struct gw_buf *b, char **at, size_t *room)
{
    int rc;

    if (!fits(b, 1))
        return GW_ERR_BODY_TOO_LARGE;
    if (b->len + 2 > b->cap) {
        rc = grow(b, b->len + 2);
        if (rc != 0)
            return rc;
    }
    *at = b->data + b->len;
    *room = b->cap - 1 - b->len;
    if (*room > b->max - b->len)
        *room = b->max - b->len;
    return 0;
}

void gw_buf_commit(struct gw_buf *b, size_t n)
{
    b->len += n;
    b->data[b->len] = '\0';
}

void gw_buf_truncate(struct gw_buf *b, size_t len)
{
    if (b->data == NULL || len >= b->len)
        return;
    if (b->flags & GW_BUF_WIPE)
        explicit_bzero(b->data + len, b->len - len);
    b->len = len;
    b->data[len] = '\0';
}

void gw_buf_reset(struct gw_buf *b)
{
    gw_buf_truncate(b, 0);
}

char *gw_buf_take(struct gw_buf *b, size_t *len)
{
    char *data = b->data;

    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return data;
}

void gw_buf_free(struct gw_buf *b)
{
    if (b->data != NULL && (b->flags & GW_BUF_WIPE))
        explicit_bzero(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/*
 * A growable byte buffer with a bound: the one way hcgw grows a buffer whose final size it
 * does not know (a request body, an upstream answer, the configuration file and its problems,
 * the /metrics text). Its owner names the bound and the first allocation at gw_buf_init; the
 * buffer allocates nothing until the first byte, then doubles, never past the bound. The bytes
 * are kept NUL-terminated (data[len] is '\0'), so text in it can be read as a C string.
 *
 * A buffer that may hold a secret (GW_BUF_WIPE) wipes every block it lets go of, and grows by
 * copying rather than with realloc, which could free the old block unwiped.
 *
 * The struct is embedded in its owner (no allocation of its own); it has one owner at a time
 * and no lock. Its bytes can change owner without a copy (gw_buf_take), for example to
 * libmicrohttpd with MHD_RESPMEM_MUST_FREE.
 */
#ifndef HCGW_BUF_H
#define HCGW_BUF_H

#include <stdarg.h>
#include <stddef.h>

/** gw_buf_init flag: wipe (explicit_bzero) every block before it is freed. */
#define GW_BUF_WIPE 1u

/**
 * A bounded buffer. Read data and len directly; change them only through the functions
 * below. data[0..len) may be rewritten in place.
 */
struct gw_buf {
    char *data;       /* NULL until the first byte is added; then NUL-terminated at data[len] */
    size_t len;       /* bytes held, never more than max */
    size_t cap;       /* bytes allocated, the terminating NUL included; 0 while data is NULL */
    size_t max;       /* the bound on len; the owner may change it between appends */
    size_t first;     /* the first allocation, in bytes, the NUL included */
    unsigned flags;   /* GW_BUF_WIPE */
};

/**
 * Make @p b an empty buffer that holds at most @p max bytes and whose first allocation is
 * @p first bytes (the NUL included; raised to 1 and lowered to max + 1 if need be). Allocates
 * nothing. Not on a buffer that holds memory (gw_buf_free it first).
 */
void gw_buf_init(struct gw_buf *b, size_t max, size_t first, unsigned flags);

/**
 * Append @p n bytes from @p p (which may not point into the buffer itself). Grows the
 * allocation to the first size, then by doubling, never past max + 1 bytes. Returns 0;
 * GW_ERR_BODY_TOO_LARGE when len would pass max; GW_ERR_NOMEM. On failure nothing changed.
 */
int gw_buf_append(struct gw_buf *b, const void *p, size_t n);

/**
 * Append printf-style formatted text; the same growth, bound and returns as gw_buf_append,
 * plus GW_ERR_INTERNAL for a format error. On failure nothing changed.
 */
int gw_buf_appendf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** gw_buf_appendf with a va_list (which it uses up, as vsnprintf does). */
int gw_buf_vappendf(struct gw_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/**
 * Make room to write at least one byte past len (for read(2) straight into the buffer): stores
 * where in *at and how many bytes fit before the bound in *room, and returns 0. Returns
 * GW_ERR_BODY_TOO_LARGE when len is already max, GW_ERR_NOMEM when it could not grow; then
 * *at and *room are untouched. Finish with gw_buf_commit.
 */
int gw_buf_space(struct gw_buf *b, char **at, size_t *room);

/** Count @p n bytes written at the place gw_buf_space gave (n at most its room) as added. */
void gw_buf_commit(struct gw_buf *b, size_t n);

/** Shorten the content to @p len bytes (no more than len now). Keeps the allocation. */
void gw_buf_truncate(struct gw_buf *b, size_t len);

/** Empty it for reuse: len 0, the allocation kept (its old bytes wiped under GW_BUF_WIPE). */
void gw_buf_reset(struct gw_buf *b);

/**
 * Hand the bytes over: returns data (NUL-terminated; NULL when nothing was ever added) with
 * its length in *len (if @p len is not NULL); the caller frees it with free(), after wiping it
 * when it may hold a secret. The buffer is left empty, without memory, with its bound, first
 * size and flags, ready for reuse.
 */
char *gw_buf_take(struct gw_buf *b, size_t *len);

/**
 * Free what the buffer holds (wiped first under GW_BUF_WIPE) and leave it empty, ready for
 * reuse. Accepts a buffer that never allocated, and one zeroed and never initialised.
 */
void gw_buf_free(struct gw_buf *b);

#endif

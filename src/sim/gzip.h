/*
 * gzip.h: gzip-encoded answers, as a HelpCrunch behind a compressing proxy gives them: whether
 * a call's Accept-Encoding asks for gzip, a whole body compressed at once, and a body made and
 * compressed on the fly (the "huge" action with "encoding":"gzip": a compression bomb, a small
 * body that inflates to up to 1 GiB). Thread-safe: nothing is shared.
 */
#ifndef HCGW_SIM_GZIP_H
#define HCGW_SIM_GZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * True when the Accept-Encoding value names gzip, x-gzip or "*" without a weight of 0 (a
 * plain reading: a simulator, not a negotiator). NULL (no header) is false.
 */
bool sim_gzip_accepted(const char *accept_encoding);

/**
 * in[0..len) as one gzip member, in a new heap buffer the caller frees, *out_len its length.
 * NULL when out of memory.
 */
char *sim_gzip(const char *in, size_t len, size_t *out_len);

/** A body compressed as it is produced; see sim_gzip_stream_read. */
struct sim_gzip_stream;

/** Produces raw bytes [pos, pos + n) of the body into buf. */
typedef void sim_gzip_fill_fn(void *ctx, uint64_t pos, char *buf, size_t n);

/**
 * A stream of the gzip encoding of a body of @p size bytes that @p fill makes on demand (ctx is
 * passed to it). NULL when out of memory. Its memory is fixed: zlib's state and one block.
 */
struct sim_gzip_stream *sim_gzip_stream_new(uint64_t size, sim_gzip_fill_fn *fill, void *ctx);

/** Frees the stream; NULL is fine. */
void sim_gzip_stream_free(struct sim_gzip_stream *s);

/**
 * The next compressed bytes, at most max of them, into buf: returns how many (> 0), 0 at the
 * end of the stream (or when max is 0), or -1 when zlib failed.
 */
long sim_gzip_stream_read(struct sim_gzip_stream *s, char *buf, size_t max);

#endif /* HCGW_SIM_GZIP_H */

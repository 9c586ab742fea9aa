/*
 * gzip.h: encoded answers, as a HelpCrunch behind a compressing proxy gives them: whether a
 * call's Accept-Encoding asks for gzip, a whole body encoded at once (gzip, or deflate: the
 * zlib format, for a test of a coding the client did not ask for), and a body made and encoded
 * on the fly (the "huge" action with an "encoding": a compression bomb, a small body that
 * inflates to up to 1 GiB). Thread-safe: nothing is shared.
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

/** A content coding of an answer. */
enum sim_coding {
    SIM_CODING_IDENTITY, /**< none */
    SIM_CODING_GZIP,     /**< gzip (RFC 1952) */
    SIM_CODING_DEFLATE   /**< deflate: the zlib format (RFC 1950), as HTTP names it */
};

/** The coding's name in Content-Encoding and in scripts ("gzip"). */
const char *sim_coding_name(enum sim_coding coding);

/** The coding named @p name ("identity", "gzip", "deflate"); -1 for another name. */
int sim_coding_parse(const char *name);

/**
 * in[0..len) encoded with @p coding (not IDENTITY), in a new heap buffer the caller frees,
 * *out_len its length. NULL when out of memory.
 */
char *sim_encode(enum sim_coding coding, const char *in, size_t len, size_t *out_len);

/** A body encoded as it is produced; see sim_gzip_stream_read. */
struct sim_gzip_stream;

/** Produces raw bytes [pos, pos + n) of the body into buf. */
typedef void sim_gzip_fill_fn(void *ctx, uint64_t pos, char *buf, size_t n);

/**
 * A stream of the @p coding (not IDENTITY) of a body of @p size bytes that @p fill makes on
 * demand (ctx is passed to it). NULL when out of memory. Its memory is fixed: zlib's state and
 * one block.
 */
struct sim_gzip_stream *sim_gzip_stream_new(enum sim_coding coding, uint64_t size,
                                            sim_gzip_fill_fn *fill, void *ctx);

/** Frees the stream; NULL is fine. */
void sim_gzip_stream_free(struct sim_gzip_stream *s);

/**
 * The next encoded bytes, at most max of them, into buf: returns how many (> 0), 0 at the
 * end of the stream (or when max is 0), or -1 when zlib failed.
 */
long sim_gzip_stream_read(struct sim_gzip_stream *s, char *buf, size_t max);

#endif /* HCGW_SIM_GZIP_H */

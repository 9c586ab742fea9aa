/*
 * gzip for hcgw's answers (RFC 9110 section 8.4.1.3): whether a caller's Accept-Encoding lets
 * an answer go gzip-compressed, and a worker's deflater that compresses one body at a time.
 *
 * The Accept-Encoding functions are pure (any thread). A deflater belongs to one worker and is
 * used on its thread only; it keeps one zlib stream and a scratch buffer for the worker's life
 * (about 326 KiB once it first compressed), because setting a stream up for every answer, or
 * a buffer of the body's size, costs several times more than the compression itself
 * (docs/performance.md, Compression).
 */
#ifndef HCGW_GZIP_H
#define HCGW_GZIP_H

#include <stdbool.h>
#include <stddef.h>

/**
 * What the Accept-Encoding lines of one request said, folded one line at a time (a request may
 * send the field on several lines; RFC 9110 section 5.3 reads them as one list). Weights are
 * in thousandths (q=0.5 is 500); -1 while the coding was not named. Plain data.
 */
struct gw_gzip_accept {
    int gzip_q;                      /* gzip or x-gzip */
    int identity_q;                  /* identity */
    int any_q;                       /* "*": every coding not named */
    size_t bytes;                    /* of every line so far */
    bool seen;                       /* at least one line */
};

/** An empty fold: no line seen. */
void gw_gzip_accept_init(struct gw_gzip_accept *acc);

/**
 * Fold one Accept-Encoding line @p value (NUL-terminated; NULL is no line) into @p acc.
 * Codings are tokens compared without regard to case, each with an optional weight
 * (`;q=0.5`); a member that does not parse (another parameter, a weight out of 0..1 or with
 * more than three decimals) is ignored, and so is a coding named again. Lines longer than
 * GW_MAX_ACCEPT_ENCODING_BYTES together are not read at all (gw_gzip_accepted is then false).
 */
void gw_gzip_accept_fold(struct gw_gzip_accept *acc, const char *value);

/**
 * True when the caller accepts gzip and does not prefer the identity: gzip (or "*", when gzip
 * is not named) has a weight above 0, and not below the one the identity has when the identity
 * (or "*") is named. No Accept-Encoding at all, an empty one and one over the bound: false.
 */
bool gw_gzip_accepted(const struct gw_gzip_accept *acc);

struct gw_gzip;

/** A deflater with no zlib stream yet (made at its first use). NULL when out of memory. */
struct gw_gzip *gw_gzip_new(void);

/** Free @p gz and its stream; NULL is fine. */
void gw_gzip_free(struct gw_gzip *gz);

/**
 * Compress the @p len bytes at @p in into one gzip member at zlib @p level (1..9), with a
 * 32 KiB window. The output is never larger than the input: it is held to len - 1 bytes, and
 * when it does not fit, the answer is better sent as it is. Returns 0 with *out (malloc'd, of
 * exactly *out_len bytes when it fit the deflater's scratch, GW_GZIP_SCRATCH_BYTES; the
 * caller's) and *out_len < len; 1 when gzip would not be smaller (nothing allocated);
 * GW_ERR_NOMEM, or GW_ERR_INTERNAL when zlib failed (nothing allocated).
 */
int gw_gzip_compress(struct gw_gzip *gz, int level, const char *in, size_t len, char **out,
                     size_t *out_len);

#endif

/*
 * gzip for answers (gzip.h): the caller's Accept-Encoding, read as RFC 9110 section 12.5.3
 * writes it, and a worker's deflater. The parser never reads past a line's end nor more than
 * GW_MAX_ACCEPT_ENCODING_BYTES of a request's lines; the deflater never writes more than the
 * body it was given.
 */
#include "hcgw/gzip.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* next_in is then a pointer to const: the body is read, never written. */
#define ZLIB_CONST
#include <zlib.h>

#include "hcgw/buf.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"

/* ---- Accept-Encoding ---- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* A tchar of RFC 9110 section 5.6.2. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A qvalue [p, end): "0" or "1", then up to three decimals, at most 1. In thousandths, or -1. */
static int qvalue(const char *p, const char *end)
{
    int q;
    int scale = 100;

    if (p == end || (*p != '0' && *p != '1'))
        return -1;
    q = (*p - '0') * 1000;
    p++;
    if (p == end)
        return q;
    if (*p != '.')
        return -1;
    for (p++; p < end; p++) {
        if (scale == 0 || *p < '0' || *p > '9')
            return -1;
        q += (*p - '0') * scale;
        scale /= 10;
    }
    return q > 1000 ? -1 : q;
}

static bool token_is(const char *t, size_t n, const char *word)
{
    return n == strlen(word) && strncasecmp(t, word, n) == 0;
}

/* One member [p, end) of the list, without the spaces around it: coding [ OWS ";" OWS q=v ]. */
static void member(struct gw_gzip_accept *acc, const char *p, const char *end)
{
    const char *t = p;
    size_t n;
    int q = 1000;
    int *slot;

    while (p < end && is_tchar(*p))
        p++;
    n = (size_t)(p - t);
    if (n == 0)
        return;
    while (p < end && is_ows(*p))
        p++;
    if (p < end) {
        if (*p != ';')
            return;
        p++;
        while (p < end && is_ows(*p))
            p++;
        if (end - p < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=')
            return;
        q = qvalue(p + 2, end);
        if (q < 0)
            return;
    }
    if (token_is(t, n, "gzip") || token_is(t, n, "x-gzip"))
        slot = &acc->gzip_q;
    else if (token_is(t, n, "identity"))
        slot = &acc->identity_q;
    else if (token_is(t, n, "*"))
        slot = &acc->any_q;
    else
        return;
    /* The first mention counts, as for a header sent twice. */
    if (*slot < 0)
        *slot = q;
}

void gw_gzip_accept_init(struct gw_gzip_accept *acc)
{
    acc->gzip_q = -1;
    acc->identity_q = -1;
    acc->any_q = -1;
    acc->bytes = 0;
    acc->seen = false;
}

void gw_gzip_accept_fold(struct gw_gzip_accept *acc, const char *value)
{
    size_t n;
    const char *p;
    const char *end;
    const char *last;

    if (value == NULL)
        return;
    acc->seen = true;
    n = strnlen(value, GW_MAX_ACCEPT_ENCODING_BYTES + 1);
    if (n > GW_MAX_ACCEPT_ENCODING_BYTES - (acc->bytes < GW_MAX_ACCEPT_ENCODING_BYTES
                                                 ? acc->bytes
                                                 : GW_MAX_ACCEPT_ENCODING_BYTES)) {
        acc->bytes = GW_MAX_ACCEPT_ENCODING_BYTES + 1;
        return;
    }
    acc->bytes += n;
    p = value;
    while (*p != '\0') {
        while (is_ows(*p) || *p == ',')
            p++;
        end = p;
        while (*end != '\0' && *end != ',')
            end++;
        last = end;
        while (last > p && is_ows(last[-1]))
            last--;
        if (last > p)
            member(acc, p, last);
        p = end;
    }
}

bool gw_gzip_accepted(const struct gw_gzip_accept *acc)
{
    int gzip;
    int identity;

    if (!acc->seen || acc->bytes > GW_MAX_ACCEPT_ENCODING_BYTES)
        return false;
    /* A coding the list does not name, and "*" does not cover, is not acceptable. */
    gzip = acc->gzip_q >= 0 ? acc->gzip_q : acc->any_q >= 0 ? acc->any_q : 0;
    /* The identity is acceptable unless refused, but it is preferred only when named. */
    identity = acc->identity_q >= 0 ? acc->identity_q : acc->any_q >= 0 ? acc->any_q : 0;
    return gzip > 0 && gzip >= identity;
}

/* ---- the deflater ---- */

struct gw_gzip {
    z_stream z;
    bool ready;                      /* z and scratch are set up */
    int level;                       /* z's level */
    /* deflate writes here first: the answer then gets a buffer of its compressed size. A
     * buffer of the body's size for every answer, shrunk afterwards, gave back its tail to
     * the system each time and cost ~15 page faults per 46 KB answer (docs/performance.md). */
    char *scratch;                   /* GW_GZIP_SCRATCH_BYTES */
};

struct gw_gzip *gw_gzip_new(void)
{
    return calloc(1, sizeof(struct gw_gzip));
}

void gw_gzip_free(struct gw_gzip *gz)
{
    if (gz == NULL)
        return;
    if (gz->ready)
        deflateEnd(&gz->z);
    free(gz->scratch);
    free(gz);
}

/* The stream ready for a new member at @p level. Returns 0, or a negative enum gw_err. */
static int prepare(struct gw_gzip *gz, int level)
{
    int zr;

    if (!gz->ready) {
        gz->scratch = malloc(GW_GZIP_SCRATCH_BYTES);
        if (gz->scratch == NULL)
            return GW_ERR_NOMEM;
        memset(&gz->z, 0, sizeof(gz->z));
        /* windowBits + 16: a gzip header and trailer around the deflate data. */
        zr = deflateInit2(&gz->z, level, Z_DEFLATED, GW_GZIP_WINDOW_BITS + 16, GW_GZIP_MEM_LEVEL,
                          Z_DEFAULT_STRATEGY);
        if (zr != Z_OK) {
            free(gz->scratch);
            gz->scratch = NULL;
            return zr == Z_MEM_ERROR ? GW_ERR_NOMEM : GW_ERR_INTERNAL;
        }
        gz->ready = true;
        gz->level = level;
        return 0;
    }
    if (deflateReset(&gz->z) != Z_OK)
        return GW_ERR_INTERNAL;
    /* A reload may have changed the level; on a stream just reset this only sets it. */
    if (level != gz->level) {
        if (deflateParams(&gz->z, level, Z_DEFAULT_STRATEGY) != Z_OK)
            return GW_ERR_INTERNAL;
        gz->level = level;
    }
    return 0;
}

int gw_gzip_compress(struct gw_gzip *gz, int level, const char *in, size_t len, char **out,
                     size_t *out_len)
{
    struct gw_buf acc;
    size_t n;
    int zr;
    int rc;

    *out = NULL;
    *out_len = 0;
    /* zlib counts in uInt; no answer comes near that. */
    if (len < 2 || len > UINT_MAX)
        return 1;
    rc = prepare(gz, level);
    if (rc != 0)
        return rc;
    /* What does not fit the scratch at once gathers here, never past the body's size. */
    gw_buf_init(&acc, len - 1, 2 * (size_t)GW_GZIP_SCRATCH_BYTES, 0);
    gz->z.next_in = (const Bytef *)in;
    gz->z.avail_in = (uInt)len;
    for (;;) {
        gz->z.next_out = (Bytef *)gz->scratch;
        gz->z.avail_out = GW_GZIP_SCRATCH_BYTES;
        zr = deflate(&gz->z, Z_FINISH);
        n = GW_GZIP_SCRATCH_BYTES - gz->z.avail_out;
        /* With Z_FINISH and room to write, deflate always moves: anything else is a failure. */
        if ((zr != Z_OK && zr != Z_STREAM_END) || (zr == Z_OK && n == 0)) {
            rc = GW_ERR_INTERNAL;
            goto out;
        }
        if (zr == Z_STREAM_END && acc.len == 0) {
            /* The usual case: all of it in the scratch, copied into a buffer of its size. */
            if (n >= len) {
                rc = 1;
                goto out;
            }
            *out = malloc(n);
            if (*out == NULL) {
                rc = GW_ERR_NOMEM;
                goto out;
            }
            memcpy(*out, gz->scratch, n);
            *out_len = n;
            rc = 0;
            goto out;
        }
        rc = gw_buf_append(&acc, gz->scratch, n);
        if (rc == GW_ERR_BODY_TOO_LARGE) {
            rc = 1; /* not smaller than the body */
            goto out;
        }
        if (rc != 0)
            goto out;
        if (zr == Z_STREAM_END) {
            *out = gw_buf_take(&acc, out_len);
            goto out;
        }
    }
out:
    gw_buf_free(&acc);
    return rc;
}

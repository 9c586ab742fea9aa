/*
 * gzip.c: encoded answers of hcgw-sim (gzip.h), on zlib. The simulator shares no code with
 * hcgw, so this reads Accept-Encoding its own, simpler way.
 */
#include "gzip.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ZLIB_CONST
#include <zlib.h>

#include "limits.h"

/* windowBits 15, plus 16 for a gzip header and trailer instead of zlib's; level 6, zlib's
 * default. */
#define GZIP_WINDOW_BITS 15
#define GZIP_LEVEL 6
#define GZIP_MEM_LEVEL 8

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* One member [p, end): a coding, then parameters; true when it is gzip-ish and not q=0. */
static bool member_accepts_gzip(const char *p, const char *end)
{
    const char *t = p;
    size_t n;

    while (p < end && *p != ';' && !is_space(*p))
        p++;
    n = (size_t)(p - t);
    if (!((n == 4 && strncasecmp(t, "gzip", 4) == 0) ||
          (n == 6 && strncasecmp(t, "x-gzip", 6) == 0) || (n == 1 && *t == '*')))
        return false;
    while (p < end) {
        while (p < end && (is_space(*p) || *p == ';'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            if (p < end && *p == '0') {
                p++;
                if (p < end && *p == '.')
                    p++;
                while (p < end && *p == '0')
                    p++;
                if (p == end || is_space(*p) || *p == ';')
                    return false; /* q=0 */
            }
        }
        while (p < end && *p != ';')
            p++;
    }
    return true;
}

bool sim_gzip_accepted(const char *accept_encoding)
{
    const char *p = accept_encoding;
    const char *end;
    const char *last;

    if (p == NULL)
        return false;
    while (*p != '\0') {
        while (is_space(*p) || *p == ',')
            p++;
        end = p;
        while (*end != '\0' && *end != ',')
            end++;
        last = end;
        while (last > p && is_space(last[-1]))
            last--;
        if (last > p && member_accepts_gzip(p, last))
            return true;
        p = end;
    }
    return false;
}

static const char *const coding_names[] = {
    [SIM_CODING_IDENTITY] = "identity",
    [SIM_CODING_GZIP] = "gzip",
    [SIM_CODING_DEFLATE] = "deflate",
};

const char *sim_coding_name(enum sim_coding coding)
{
    return coding_names[coding];
}

int sim_coding_parse(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(coding_names) / sizeof(coding_names[0]); i++) {
        if (strcmp(name, coding_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

static int init_stream(z_stream *z, enum sim_coding coding)
{
    memset(z, 0, sizeof(*z));
    return deflateInit2(z, GZIP_LEVEL, Z_DEFLATED,
                        GZIP_WINDOW_BITS + (coding == SIM_CODING_GZIP ? 16 : 0), GZIP_MEM_LEVEL,
                        Z_DEFAULT_STRATEGY);
}

char *sim_encode(enum sim_coding coding, const char *in, size_t len, size_t *out_len)
{
    z_stream z;
    char *out = NULL;
    uLong cap;

    *out_len = 0;
    if (len > UINT_MAX)
        return NULL;
    if (init_stream(&z, coding) != Z_OK)
        return NULL;
    /* deflateBound is for the zlib wrapper; the gzip one is 12 bytes longer. */
    cap = deflateBound(&z, (uLong)len) + 32;
    out = malloc(cap);
    if (out == NULL)
        goto out;
    z.next_in = (const Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        free(out);
        out = NULL;
        goto out;
    }
    *out_len = (size_t)z.total_out;
out:
    deflateEnd(&z);
    return out;
}

struct sim_gzip_stream {
    z_stream z;
    uint64_t size;           /* of the raw body */
    uint64_t made;           /* raw bytes made so far */
    sim_gzip_fill_fn *fill;
    void *ctx;
    bool done;               /* Z_STREAM_END seen */
    char block[SIM_STREAM_BLOCK];
};

struct sim_gzip_stream *sim_gzip_stream_new(enum sim_coding coding, uint64_t size,
                                            sim_gzip_fill_fn *fill, void *ctx)
{
    struct sim_gzip_stream *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    if (init_stream(&s->z, coding) != Z_OK) {
        free(s);
        return NULL;
    }
    s->size = size;
    s->fill = fill;
    s->ctx = ctx;
    return s;
}

void sim_gzip_stream_free(struct sim_gzip_stream *s)
{
    if (s == NULL)
        return;
    deflateEnd(&s->z);
    free(s);
}

long sim_gzip_stream_read(struct sim_gzip_stream *s, char *buf, size_t max)
{
    size_t n;
    int zr;

    if (max > UINT_MAX)
        max = UINT_MAX;
    s->z.next_out = (Bytef *)buf;
    s->z.avail_out = (uInt)max;
    /* Highly repetitive input makes no output for many blocks: go on until some comes. */
    while (!s->done && max > 0 && s->z.avail_out == max) {
        if (s->z.avail_in == 0 && s->made < s->size) {
            n = s->size - s->made < sizeof(s->block) ? (size_t)(s->size - s->made)
                                                     : sizeof(s->block);
            s->fill(s->ctx, s->made, s->block, n);
            s->made += n;
            s->z.next_in = (const Bytef *)s->block;
            s->z.avail_in = (uInt)n;
        }
        zr = deflate(&s->z, s->made == s->size && s->z.avail_in == 0 ? Z_FINISH : Z_NO_FLUSH);
        if (zr == Z_STREAM_END)
            s->done = true;
        else if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -1;
    }
    return (long)(max - s->z.avail_out);
}

/*
 * libFuzzer target: gzip.c, the Accept-Encoding reading and the deflater. The input is one or
 * more Accept-Encoding lines separated by newlines (each folded as a request's header line
 * would be); the whole input is also compressed. Beyond "no crash, no leak, no undefined
 * behaviour" it checks:
 *   - the fold reads no more than GW_MAX_ACCEPT_ENCODING_BYTES of the lines together (past it,
 *     nothing is accepted), and is the same whether the lines come one by one or as one list
 *     joined by commas, as RFC 9110 section 5.3 says they are;
 *   - a line that names only other codings is never read as accepting gzip, and "gzip" alone
 *     always is;
 *   - the deflater's output is smaller than its input, and inflates to exactly the input.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "hcgw/gzip.h"
#include "hcgw/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_gzip: property broken: %s\n", what);
        abort();
    }
}

/* One deflater for the run, as a worker keeps one. */
static struct gw_gzip *deflater;

static void check_round_trip(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t out_len = 0;
    char *back;
    z_stream z;
    int level = size > 0 ? 1 + data[0] % 9 : 1;
    int rc = gw_gzip_compress(deflater, level, (const char *)data, size, &out, &out_len);

    check(rc == 0 || rc == 1, "compress answers 0 or 1");
    if (rc != 0) {
        check(out == NULL && out_len == 0, "nothing handed over when not smaller");
        return;
    }
    check(out_len < size, "smaller than the input");
    back = malloc(size + 1);
    check(back != NULL, "memory");
    memset(&z, 0, sizeof(z));
    check(inflateInit2(&z, 15 + 16) == Z_OK, "inflateInit2");
    z.next_in = (Bytef *)out;
    z.avail_in = (uInt)out_len;
    z.next_out = (Bytef *)back;
    z.avail_out = (uInt)size + 1;
    check(inflate(&z, Z_FINISH) == Z_STREAM_END && z.avail_in == 0, "a whole gzip member");
    check(z.total_out == size && memcmp(back, data, size) == 0, "inflates to the input");
    inflateEnd(&z);
    free(back);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_gzip_accept lines, joined;
    char *text = malloc(size + 1);
    char *all = malloc(size + 1);
    char *p;
    char *nl;
    size_t n = 0;
    size_t line_bytes = 0;

    if (deflater == NULL)
        deflater = gw_gzip_new();
    check(text != NULL && all != NULL && deflater != NULL, "memory");
    memcpy(text, data, size);
    text[size] = '\0';
    gw_gzip_accept_init(&lines);
    gw_gzip_accept_init(&joined);
    /* The lines one by one, and the same lines joined with commas: one list either way. */
    all[0] = '\0';
    for (p = text;; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl != NULL)
            *nl = '\0';
        gw_gzip_accept_fold(&lines, p);
        line_bytes += strlen(p);
        if (n > 0)
            all[n++] = ',';
        memcpy(all + n, p, strlen(p) + 1);
        n += strlen(p);
        if (nl == NULL)
            break;
    }
    gw_gzip_accept_fold(&joined, all);
    if (n <= GW_MAX_ACCEPT_ENCODING_BYTES)
        check(gw_gzip_accepted(&lines) == gw_gzip_accepted(&joined), "lines are one list");
    if (n > GW_MAX_ACCEPT_ENCODING_BYTES)
        check(!gw_gzip_accepted(&joined), "over the bound: nothing accepted");
    if (line_bytes > GW_MAX_ACCEPT_ENCODING_BYTES)
        check(!gw_gzip_accepted(&lines), "over the bound, in lines: nothing accepted");
    /* A text without "gzip" and "*" never accepts gzip. */
    {
        struct gw_gzip_accept one;
        int mentions = 0;

        for (size_t i = 0; i + 3 < n; i++)
            mentions |= strncasecmp(all + i, "gzip", 4) == 0;
        mentions |= strchr(all, '*') != NULL;
        gw_gzip_accept_init(&one);
        gw_gzip_accept_fold(&one, all);
        if (!mentions)
            check(!gw_gzip_accepted(&one), "no gzip named, none accepted");
        gw_gzip_accept_init(&one);
        gw_gzip_accept_fold(&one, "gzip");
        check(gw_gzip_accepted(&one), "gzip accepted");
    }
    check_round_trip(data, size);
    free(all);
    free(text);
    return 0;
}

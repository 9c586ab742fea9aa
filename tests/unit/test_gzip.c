/*
 * Unit tests of src/gzip.c: the Accept-Encoding reading (weights, "*", identity, case, the
 * bound, malformed members, several lines) and the deflater (a gzip member zlib inflates back
 * to the very bytes, never larger than its input, a level changed between bodies).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "hcgw/err.h"
#include "hcgw/gzip.h"
#include "hcgw/limits.h"

struct accept_case {
    const char *value;               /* one Accept-Encoding line; NULL: none */
    bool gzip;
};

static bool accepts(const char *value)
{
    struct gw_gzip_accept acc;

    gw_gzip_accept_init(&acc);
    gw_gzip_accept_fold(&acc, value);
    return gw_gzip_accepted(&acc);
}

static void test_accept_encoding(void **state)
{
    static const struct accept_case cases[] = {
        {NULL, false},                          /* no header: nothing said, nothing compressed */
        {"", false},                            /* only the identity */
        {"gzip", true},
        {"GZIP", true},
        {"GZip", true},
        {"x-gzip", true},                       /* RFC 9110 section 8.4.1.3 */
        {"X-GZIP", true},
        {"gzip, deflate, br, zstd", true},      /* what browsers send */
        {"br, zstd", false},
        {"deflate", false},
        {"identity", false},
        {"gzip;q=0", false},
        {"gzip;q=0.0", false},
        {"gzip;q=0.000", false},
        {"gzip;Q=0", false},
        {"gzip;q=0.001", true},
        {"gzip;q=1", true},
        {"gzip;q=1.000", true},
        {"gzip;q=0.5", true},                   /* the identity, not named, is not preferred */
        {"gzip ; q=0.8", true},                 /* OWS around ";" */
        {"gzip;\tq=0.8", true},
        {"  gzip  ", true},
        {",,gzip,,", true},                     /* empty members are allowed */
        {"*", true},
        {"*;q=0.3", true},                      /* gzip and identity at 0.3: a tie, gzip */
        {"*;q=0", false},
        {"*;q=0, gzip", true},                  /* named beats "*" */
        {"gzip;q=0, *", false},
        {"*, gzip;q=0", false},
        {"identity;q=1, gzip;q=0.5", false},    /* the caller prefers the identity */
        {"gzip;q=0.5, identity;q=0.5", true},   /* a tie: gzip */
        {"gzip;q=1, identity;q=0.5", true},
        {"identity;q=0, gzip", true},
        {"*;q=0.5, gzip;q=0.2", false},         /* "*" stands for the identity too */
        {"*;q=0.2, gzip;q=0.5", true},
        {"gzip, gzip;q=0", true},               /* the first mention counts */
        {"gzip;q=0, gzip", false},
        /* Malformed members are ignored. */
        {"gzip;q=2", false},
        {"gzip;q=1.5", false},
        {"gzip;q=1.001", false},
        {"gzip;q=0.0001", false},
        {"gzip;q=", false},
        {"gzip;q=.5", false},
        {"gzip;q=abc", false},
        {"gzip;q = 0.5", false},
        {"gzip;level=9", false},
        {"gzip;q=0.5;x=y", false},
        {"gzip q=1", false},
        {"gzipp", false},
        {"gzi", false},
        {"g zip", false},
        {"\"gzip\"", false},
        {"gzip;q=abc, br, gzip;q=0.5", true},   /* the bad member does not hide a good one */
        {"x-gzip;q=0, gzip", false},            /* one coding: the first mention counts */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (accepts(cases[i].value) != cases[i].gzip)
            fail_msg("case %zu \"%s\": want %s", i, cases[i].value ? cases[i].value : "(none)",
                     cases[i].gzip ? "gzip" : "identity");
    }
}

/* Several lines are one list (RFC 9110 section 5.3). */
static void test_accept_lines(void **state)
{
    struct gw_gzip_accept acc;

    (void)state;
    gw_gzip_accept_init(&acc);
    gw_gzip_accept_fold(&acc, "identity");
    assert_false(gw_gzip_accepted(&acc));
    gw_gzip_accept_fold(&acc, "gzip");
    assert_true(gw_gzip_accepted(&acc));
    gw_gzip_accept_fold(&acc, "gzip;q=0"); /* named already */
    assert_true(gw_gzip_accepted(&acc));

    gw_gzip_accept_init(&acc);
    gw_gzip_accept_fold(&acc, "br");
    gw_gzip_accept_fold(&acc, NULL);       /* no line: changes nothing */
    gw_gzip_accept_fold(&acc, "x-gzip;q=0.9");
    assert_true(gw_gzip_accepted(&acc));
}

/* The bound: the lines together, counted as they come; past it nothing is compressed. */
static void test_accept_bound(void **state)
{
    char line[GW_MAX_ACCEPT_ENCODING_BYTES + 2];
    struct gw_gzip_accept acc;
    size_t n;

    (void)state;
    /* "gzip," then spaces to exactly the bound: read. */
    memset(line, ' ', sizeof(line));
    memcpy(line, "gzip,", 5);
    line[GW_MAX_ACCEPT_ENCODING_BYTES] = '\0';
    assert_true(accepts(line));
    /* One byte more: not read at all. */
    line[GW_MAX_ACCEPT_ENCODING_BYTES] = ' ';
    line[GW_MAX_ACCEPT_ENCODING_BYTES + 1] = '\0';
    assert_false(accepts(line));

    /* Two lines over the bound together: the second tips it, and nothing is compressed. */
    n = GW_MAX_ACCEPT_ENCODING_BYTES / 2 + 1;
    memset(line, ' ', n);
    memcpy(line, "gzip", 4);
    line[n] = '\0';
    gw_gzip_accept_init(&acc);
    gw_gzip_accept_fold(&acc, line);
    assert_true(gw_gzip_accepted(&acc));
    gw_gzip_accept_fold(&acc, line);
    assert_false(gw_gzip_accepted(&acc));
    gw_gzip_accept_fold(&acc, "gzip");
    assert_false(gw_gzip_accepted(&acc));
}

/* Inflate a gzip member; returns its length, or -1. */
static long gunzip(const char *in, size_t len, char *out, size_t cap)
{
    z_stream z;
    long n = -1;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    if (inflate(&z, Z_FINISH) == Z_STREAM_END && z.avail_in == 0)
        n = (long)z.total_out;
    inflateEnd(&z);
    return n;
}

/* A JSON-like body of @p len bytes, repetitive as a list of customers is. */
static char *sample(size_t len)
{
    char *s = malloc(len);
    size_t i;

    assert_non_null(s);
    for (i = 0; i < len; i++)
        s[i] = "{\"id\":1568834,\"name\":\"John Doe\",\"tags\":[]},"[i % 44];
    return s;
}

static void test_compress_round_trip(void **state)
{
    static const size_t sizes[] = {2, 40, 1024, 1500, 46383, 300000};
    static const int levels[] = {1, 6, 9, 1};  /* a level changed between bodies, and back */
    struct gw_gzip *gz = gw_gzip_new();
    char *back;
    size_t i, l;

    (void)state;
    assert_non_null(gz);
    back = malloc(300000);
    assert_non_null(back);
    for (l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
        for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            char *in = sample(sizes[i]);
            char *out = NULL;
            size_t out_len = 0;
            int rc = gw_gzip_compress(gz, levels[l], in, sizes[i], &out, &out_len);

            if (sizes[i] < 64) {
                /* Too small to gain from gzip's 18 bytes of frame: left as it is. */
                assert_int_equal(rc, 1);
                assert_null(out);
            } else {
                assert_int_equal(rc, 0);
                assert_true(out_len < sizes[i]);
                assert_true((unsigned char)out[0] == 0x1f && (unsigned char)out[1] == 0x8b);
                assert_int_equal(gunzip(out, out_len, back, 300000), (long)sizes[i]);
                assert_memory_equal(back, in, sizes[i]);
            }
            free(out);
            free(in);
        }
    }
    free(back);
    gw_gzip_free(gz);
    gw_gzip_free(NULL);
}

/* @p len pseudo-random bytes; with @p alphabet, each one of its characters. */
static char *noise(size_t len, const char *alphabet)
{
    char *s = malloc(len);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    size_t i;

    assert_non_null(s);
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s[i] = alphabet != NULL ? alphabet[(x >> 24) % strlen(alphabet)] : (char)(x >> 24);
    }
    return s;
}

/* Bytes gzip cannot shrink: the deflater says so, and allocates nothing for the caller; both
 * when the attempt fits its scratch and when it runs past it. */
static void test_compress_never_larger(void **state)
{
    static const size_t sizes[] = {4096, 3 * GW_GZIP_SCRATCH_BYTES};
    struct gw_gzip *gz = gw_gzip_new();
    size_t i;

    (void)state;
    assert_non_null(gz);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char *in = noise(sizes[i], NULL);
        char *out = (char *)1;
        size_t out_len = 99;

        assert_int_equal(gw_gzip_compress(gz, 9, in, sizes[i], &out, &out_len), 1);
        assert_null(out);
        assert_int_equal(out_len, 0);
        /* The stream is still good for the next body. */
        memset(in, 'a', sizes[i]);
        assert_int_equal(gw_gzip_compress(gz, 1, in, sizes[i], &out, &out_len), 0);
        assert_true(out_len < 64 + sizes[i] / 100);
        free(out);
        free(in);
    }
    gw_gzip_free(gz);
}

/* A gzip longer than the deflater's scratch (hex noise: about half its size) is gathered
 * across several passes and still inflates to the very bytes. */
static void test_compress_past_the_scratch(void **state)
{
    size_t len = 4 * GW_GZIP_SCRATCH_BYTES;
    char *in = noise(len, "0123456789abcdef");
    char *back = malloc(len);
    struct gw_gzip *gz = gw_gzip_new();
    char *out = NULL;
    size_t out_len = 0;

    (void)state;
    assert_non_null(gz);
    assert_non_null(back);
    assert_int_equal(gw_gzip_compress(gz, 6, in, len, &out, &out_len), 0);
    assert_true(out_len > GW_GZIP_SCRATCH_BYTES && out_len < len);
    assert_int_equal(gunzip(out, out_len, back, len), (long)len);
    assert_memory_equal(back, in, len);
    free(out);
    free(back);
    free(in);
    gw_gzip_free(gz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_accept_lines),
        cmocka_unit_test(test_accept_bound),
        cmocka_unit_test(test_compress_round_trip),
        cmocka_unit_test(test_compress_never_larger),
        cmocka_unit_test(test_compress_past_the_scratch),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

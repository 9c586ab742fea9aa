/*
 * Unit tests of src/buf.c: the bounded growable buffer. They pin down what its callers rely
 * on: nothing allocated before the first byte, the first allocation of the owner's size and
 * doubling after it, never a byte past the bound (and nothing changed by a refused append),
 * the NUL after the content, ownership handed over by gw_buf_take, and the wipe of a secret's
 * buffer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hcgw/buf.h"
#include "hcgw/err.h"

static void test_empty_until_first_byte(void **state)
{
    struct gw_buf b;

    (void)state;
    gw_buf_init(&b, 100, 16, 0);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    gw_buf_free(&b);                 /* never allocated: fine */
    assert_null(gw_buf_take(&b, NULL));

    /* A zeroed buffer that was never initialised may be freed too. */
    memset(&b, 0, sizeof(b));
    gw_buf_free(&b);
    assert_null(b.data);
}

static void test_first_size_then_doubling(void **state)
{
    struct gw_buf b;
    char chunk[40];

    (void)state;
    memset(chunk, 'x', sizeof(chunk));
    gw_buf_init(&b, 1000, 16, 0);
    assert_int_equal(gw_buf_append(&b, "abc", 3), 0);
    assert_int_equal(b.cap, 16);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    /* 3 + 12 + NUL = 16: still fits the first allocation. */
    assert_int_equal(gw_buf_append(&b, chunk, 12), 0);
    assert_int_equal(b.cap, 16);
    /* One more byte needs 17: doubled to 32. */
    assert_int_equal(gw_buf_append(&b, "y", 1), 0);
    assert_int_equal(b.cap, 32);
    /* 16 + 40 + 1 = 57: doubled as often as needed, in one step (32 -> 64). */
    assert_int_equal(gw_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b.cap, 64);
    assert_int_equal(b.len, 56);
    assert_int_equal(b.data[56], '\0');
    assert_int_equal(b.data[15], 'y');
    assert_int_equal(strlen(b.data), 56);
    gw_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_first_piece_bigger_than_first_size(void **state)
{
    struct gw_buf b;
    char chunk[100];

    (void)state;
    memset(chunk, 'z', sizeof(chunk));
    gw_buf_init(&b, 1000, 16, 0);
    /* 101 bytes needed: 16 doubled to 128 in one allocation. */
    assert_int_equal(gw_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b.cap, 128);
    gw_buf_free(&b);
}

static void test_bound(void **state)
{
    struct gw_buf b;
    char chunk[10];

    (void)state;
    memset(chunk, 'a', sizeof(chunk));
    gw_buf_init(&b, 25, 8, 0);
    assert_int_equal(gw_buf_append(&b, chunk, 10), 0);
    assert_int_equal(gw_buf_append(&b, chunk, 10), 0);
    /* 20 + 10 would pass 25: refused, nothing changed. */
    assert_int_equal(gw_buf_append(&b, chunk, 10), GW_ERR_BODY_TOO_LARGE);
    assert_int_equal(b.len, 20);
    assert_int_equal(b.data[20], '\0');
    /* Up to the bound exactly is fine, and the allocation never passes max + 1. */
    assert_int_equal(gw_buf_append(&b, chunk, 5), 0);
    assert_int_equal(b.len, 25);
    assert_int_equal(b.cap, 26);
    assert_int_equal(gw_buf_append(&b, "", 0), 0);
    assert_int_equal(gw_buf_append(&b, "b", 1), GW_ERR_BODY_TOO_LARGE);
    assert_int_equal(gw_buf_appendf(&b, "%d", 7), GW_ERR_BODY_TOO_LARGE);
    assert_int_equal(b.len, 25);
    assert_int_equal(b.data[25], '\0');
    /* A piece larger than the bound by itself (no wrap-around in the check). */
    gw_buf_reset(&b);
    assert_int_equal(gw_buf_append(&b, chunk, SIZE_MAX), GW_ERR_BODY_TOO_LARGE);
    assert_int_equal(b.len, 0);
    gw_buf_free(&b);
}

static void test_first_size_clamped_to_bound(void **state)
{
    struct gw_buf b;

    (void)state;
    gw_buf_init(&b, 4, 1024, 0);
    assert_int_equal(gw_buf_append(&b, "ab", 2), 0);
    assert_int_equal(b.cap, 5);
    gw_buf_free(&b);

    /* A bound of 0 holds only the NUL. */
    gw_buf_init(&b, 0, 0, 0);
    assert_int_equal(gw_buf_append(&b, "", 0), 0);
    assert_non_null(b.data);
    assert_int_equal(b.cap, 1);
    assert_string_equal(b.data, "");
    assert_int_equal(gw_buf_append(&b, "a", 1), GW_ERR_BODY_TOO_LARGE);
    gw_buf_free(&b);
}

static void test_appendf(void **state)
{
    struct gw_buf b;
    size_t i;

    (void)state;
    gw_buf_init(&b, 1000, 8, 0);
    assert_int_equal(gw_buf_appendf(&b, "%s=%d;", "a", 1), 0);
    assert_string_equal(b.data, "a=1;");
    assert_int_equal(b.cap, 8);
    /* Too long for the room left: grown and printed again, whole. */
    assert_int_equal(gw_buf_appendf(&b, "%s=%d;", "longer", 12345), 0);
    assert_string_equal(b.data, "a=1;longer=12345;");
    assert_int_equal(b.len, strlen("a=1;longer=12345;"));
    assert_int_equal(b.cap, 32);
    gw_buf_reset(&b);
    for (i = 0; i < 40; i++)
        assert_int_equal(gw_buf_appendf(&b, "%02zu-xxxxx,", i), 0);
    assert_int_equal(b.len, 360);
    for (i = 0; i < 40; i++) {
        char one[10];

        snprintf(one, sizeof(one), "%02zu-xxxxx,", i);
        assert_memory_equal(b.data + i * 9, one, 9);
    }
    assert_int_equal(b.data[360], '\0');

    /* Refused at the bound: the content and its NUL stay as they were. */
    gw_buf_free(&b);
    gw_buf_init(&b, 10, 4, 0);
    assert_int_equal(gw_buf_appendf(&b, "%s", "12345"), 0);
    assert_int_equal(gw_buf_appendf(&b, "%s", "123456"), GW_ERR_BODY_TOO_LARGE);
    assert_string_equal(b.data, "12345");
    assert_int_equal(gw_buf_appendf(&b, "%s", "12345"), 0);
    assert_string_equal(b.data, "1234512345");
    gw_buf_free(&b);
}

/* gw_buf_space and gw_buf_commit: read(2) straight into the buffer, as config.c reads a file. */
static void test_space_and_commit_from_pipe(void **state)
{
    struct gw_buf b;
    char src[300];
    int fds[2];
    char *at;
    size_t room;
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(src); i++)
        src[i] = (char)('a' + i % 26);
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], src, sizeof(src)), (ssize_t)sizeof(src));
    close(fds[1]);
    gw_buf_init(&b, 1000, 64, 0);
    for (;;) {
        ssize_t r;

        assert_int_equal(gw_buf_space(&b, &at, &room), 0);
        assert_true(room >= 1);
        assert_ptr_equal(at, b.data + b.len);
        assert_true(b.len + room + 1 <= b.cap);
        r = read(fds[0], at, room);
        assert_true(r >= 0);
        if (r == 0)
            break;
        gw_buf_commit(&b, (size_t)r);
    }
    close(fds[0]);
    assert_int_equal(b.len, sizeof(src));
    assert_memory_equal(b.data, src, sizeof(src));
    assert_int_equal(b.data[b.len], '\0');
    gw_buf_free(&b);

    /* At the bound there is no room: one byte past a file's bound tells it is too large. */
    gw_buf_init(&b, 3, 2, 0);
    assert_int_equal(gw_buf_space(&b, &at, &room), 0);
    assert_int_equal(room, 1);
    at[0] = 'x';
    gw_buf_commit(&b, 1);
    assert_int_equal(gw_buf_space(&b, &at, &room), 0);
    assert_int_equal(room, 2);
    memcpy(at, "yz", 2);
    gw_buf_commit(&b, 2);
    at = NULL;
    rc = gw_buf_space(&b, &at, &room);
    assert_int_equal(rc, GW_ERR_BODY_TOO_LARGE);
    assert_null(at);
    assert_string_equal(b.data, "xyz");
    gw_buf_free(&b);
}

static void test_take_hands_over_and_reuses(void **state)
{
    struct gw_buf b;
    size_t len = 0;
    char *p;

    (void)state;
    gw_buf_init(&b, 100, 8, 0);
    assert_int_equal(gw_buf_append(&b, "hello", 5), 0);
    p = gw_buf_take(&b, &len);
    assert_non_null(p);
    assert_int_equal(len, 5);
    assert_string_equal(p, "hello");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* The bound and the first size stay: the buffer starts over. */
    assert_int_equal(b.max, 100);
    assert_int_equal(gw_buf_append(&b, "again", 5), 0);
    assert_int_equal(b.cap, 8);
    assert_string_equal(b.data, "again");
    free(p); /* the caller owns it now; ASan would report a double free or a leak */
    gw_buf_free(&b);
}

static void test_truncate_and_reset_keep_memory(void **state)
{
    struct gw_buf b;
    char *before;

    (void)state;
    gw_buf_init(&b, 100, 32, 0);
    assert_int_equal(gw_buf_append(&b, "line one\nline two", 17), 0);
    before = b.data;
    gw_buf_truncate(&b, 9);
    assert_string_equal(b.data, "line one\n");
    gw_buf_truncate(&b, 50); /* longer than the content: nothing */
    assert_int_equal(b.len, 9);
    gw_buf_reset(&b);
    assert_ptr_equal(b.data, before);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(b.cap, 32);
    gw_buf_free(&b);
    gw_buf_reset(&b); /* on a buffer without memory: nothing */
    gw_buf_truncate(&b, 0);
}

static void test_wipe(void **state)
{
    struct gw_buf b;
    char chunk[20];
    size_t i;

    (void)state;
    memset(chunk, 's', sizeof(chunk));
    gw_buf_init(&b, 1000, 8, GW_BUF_WIPE);
    assert_int_equal(gw_buf_append(&b, "secret", 6), 0);
    /* Growing copies the bytes into a new block (the old one is wiped and freed). */
    assert_int_equal(gw_buf_append(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(b.len, 26);
    assert_memory_equal(b.data, "secret", 6);
    assert_memory_equal(b.data + 6, chunk, sizeof(chunk));
    assert_int_equal(b.data[26], '\0');
    /* What truncation and reset drop is zeroed, not just cut off. */
    gw_buf_truncate(&b, 3);
    for (i = 3; i < 26; i++)
        assert_int_equal(b.data[i], '\0');
    gw_buf_reset(&b);
    for (i = 0; i < 26; i++)
        assert_int_equal(b.data[i], '\0');
    gw_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_until_first_byte),
        cmocka_unit_test(test_first_size_then_doubling),
        cmocka_unit_test(test_first_piece_bigger_than_first_size),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_first_size_clamped_to_bound),
        cmocka_unit_test(test_appendf),
        cmocka_unit_test(test_space_and_commit_from_pipe),
        cmocka_unit_test(test_take_hands_over_and_reuses),
        cmocka_unit_test(test_truncate_and_reset_keep_memory),
        cmocka_unit_test(test_wipe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

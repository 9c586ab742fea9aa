/*
 * A temporary folder for the unit tests that write files (configurations, key files, token
 * files): tmpdir_make makes a fresh one in a cmocka group setup, tmpdir_group_teardown removes
 * it with everything in it, and tmpdir_path / tmpdir_write name and write the files inside.
 * Include it after <cmocka.h> (the helpers assert), in one test program each.
 */
#ifndef HCGW_TESTS_TMPDIR_H
#define HCGW_TESTS_TMPDIR_H

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* The folder of this test program ("" until tmpdir_make): /tmp/hcgw-test-NAME-XXXXXX, a NAME
 * of a few letters. Short, so that a path made of it plus a file name fits PATH_MAX. */
static char tmpdir[64];

/*
 * Make a fresh folder /tmp/hcgw-test-@p name-XXXXXX (mode 0700, as mkdtemp makes it) and keep
 * its path in tmpdir. For a group setup. Returns 0, or -1 when it cannot be made.
 */
static inline int tmpdir_make(const char *name)
{
    int n = snprintf(tmpdir, sizeof(tmpdir), "/tmp/hcgw-test-%s-XXXXXX", name);

    if (n < 0 || (size_t)n >= sizeof(tmpdir) || mkdtemp(tmpdir) == NULL) {
        tmpdir[0] = '\0';
        return -1;
    }
    return 0;
}

static inline int tmpdir_remove_entry(const char *path, const struct stat *st, int flag,
                                      struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A cmocka group teardown: remove the folder and all it holds. Returns 0 or -1. */
static inline int tmpdir_group_teardown(void **state)
{
    (void)state;
    if (tmpdir[0] == '\0')
        return 0;
    return nftw(tmpdir, tmpdir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The path of tmpdir/@p name, into @p path (@p pathsz bytes); it must fit. */
static inline void tmpdir_path(const char *name, char *path, size_t pathsz)
{
    assert_true((size_t)snprintf(path, pathsz, "%s/%s", tmpdir, name) < pathsz);
}

/* Write @p len bytes to tmpdir/@p name (created or replaced); its path goes to @p path. */
static inline void tmpdir_write(const char *name, const void *bytes, size_t len, char *path,
                                size_t pathsz)
{
    FILE *f;

    tmpdir_path(name, path, pathsz);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

#endif

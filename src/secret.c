/*
 * The HelpCrunch API key: found in the environment, a key file or the config (first match
 * wins), checked to be something that can go into an HTTP header, held in one heap buffer
 * that is wiped when freed, and masked out of any upstream text echoed to callers. No error
 * message, log line or answer built here ever contains the key; they say where it came from
 * and how to fix it instead.
 */
#include "hcgw/secret.h"
#include "hcgw/limits.h"

#include "hcgw/config.h"
#include "hcgw/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The longest key (secret.h: 1..4096 bytes). It belongs in limits.h; until it is there, this
 * fallback keeps secret.c and config.c in step.
 */

/* A key file holds the longest key plus one CRLF; more than that is not just a key. */
#define KEY_FILE_MAX_BYTES (GW_MAX_API_KEY_BYTES + 2)
_Static_assert(GW_MAX_REDIS_PASSWORD_BYTES <= GW_MAX_API_KEY_BYTES,
               "a password file is read into the buffer of a key file");

/* Room for one strerror_r text. */
#define ERRNO_TEXT_BYTES 128

#define ENV_KEY "HCGW_API_KEY"
#define ENV_KEY_FILE "HCGW_API_KEY_FILE"

/* What a secret is, for the reasons given when it cannot be loaded. */
struct kind {
    const char *noun;   /* "the HelpCrunch API key" */
    const char *word;   /* "key" */
    size_t max;         /* the longest value, in bytes (at most GW_MAX_API_KEY_BYTES) */
};

static const struct kind api_key = {"the HelpCrunch API key", "key", GW_MAX_API_KEY_BYTES};

struct gw_secret {
    char *key;    /* len bytes and a NUL; locked in RAM when the system allows */
    size_t len;
    bool locked;  /* mlock succeeded, so munlock before freeing */
    char *source; /* for a log line: "env HCGW_API_KEY", "file /run/...", "config" */
};

static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* A malloc'd formatted string, or NULL when out of memory. */
static char *vformat(const char *fmt, va_list ap)
{
    va_list again;
    char *s = NULL;
    int n;

    va_copy(again, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    if (n < 0)
        goto out;
    s = malloc((size_t)n + 1);
    if (!s)
        goto out;
    vsnprintf(s, (size_t)n + 1, fmt, again);
out:
    va_end(again);
    return s;
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

static void fail(char **error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Set *error (when error is not NULL) to a formatted one-line reason. Out of memory leaves it
 * NULL: the caller still learns from the NULL secret that loading failed.
 */
static void fail(char **error, const char *fmt, ...)
{
    va_list ap;

    if (!error)
        return;
    va_start(ap, fmt);
    *error = vformat(fmt, ap);
    va_end(ap);
}

static const char *errno_text(int err, char *buf, size_t bufsz)
{
    /* The GNU strerror_r (we build with _GNU_SOURCE); strerror is not thread-safe. */
    return strerror_r(err, buf, bufsz);
}

void gw_secret_wipe(void *p, size_t len)
{
    if (p && len)
        explicit_bzero(p, len);
}

/*
 * Check @p len bytes at @p key and make the secret. @p where names the source in a reason
 * ("HCGW_API_KEY", "key file /x (from HCGW_API_KEY_FILE)"); @p source is the label that
 * gw_secret_source returns. Returns the secret, or NULL with *error set.
 */
static struct gw_secret *make(const struct kind *kind, const char *key, size_t len,
                              const char *where, const char *source, char **error)
{
    struct gw_secret *s = NULL, *ret = NULL;

    if (len == 0) {
        fail(error, "%s is empty: it must hold %s", where, kind->noun);
        goto out;
    }
    if (len > kind->max) {
        fail(error, "%s: the %s is longer than %zu bytes; it must hold only the %s", where,
             kind->word, kind->max, kind->word);
        goto out;
    }
    /* The key goes into an HTTP header: a space, control byte or non-ASCII byte breaks it. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];

        if (c < 0x21 || c > 0x7e) {
            fail(error,
                 "%s: the %s contains a character that is not visible ASCII at byte %zu; "
                 "give the %s alone, without spaces, quotes or extra line breaks",
                 where, kind->word, i + 1, kind->word);
            goto out;
        }
    }
    s = calloc(1, sizeof *s);
    if (!s)
        goto fail_nomem;
    s->len = len;
    s->key = calloc(1, len + 1);
    if (!s->key)
        goto fail_nomem;
    /* Keep the key out of swap when allowed; without CAP_IPC_LOCK or room it still works. */
    s->locked = mlock(s->key, len + 1) == 0;
    memcpy(s->key, key, len);
    s->key[len] = '\0';
    s->source = strdup(source);
    if (!s->source)
        goto fail_nomem;
    ret = s;
    s = NULL;
    goto out;
fail_nomem:
    fail(error, "%s: out of memory", where);
out:
    gw_secret_free(s);
    return ret;
}

/* The key in the environment variable or config value @p value. */
static struct gw_secret *from_value(const char *value, const char *where, const char *source,
                                    char **error)
{
    return make(&api_key, value, strlen(value), where, source, error);
}

/*
 * Whether @p gid is this process's own group: its effective group or one of its supplementary
 * groups. Kubernetes mounts a Secret with the pod's fsGroup as the files' group, and gives the
 * process that group too.
 */
static bool own_group(gid_t gid)
{
    gid_t groups[GW_MAX_PROCESS_GROUPS];
    int n;

    if (gid == getegid())
        return true;
    n = getgroups(GW_MAX_PROCESS_GROUPS, groups);
    for (int i = 0; i < n; i++) {
        if (groups[i] == gid)
            return true;
    }
    return false;
}

bool gw_secret_file_shared(const struct stat *st)
{
    return (st->st_mode & S_IROTH) != 0 ||
           ((st->st_mode & S_IRGRP) != 0 && !own_group(st->st_gid));
}

/*
 * A key file that other users may read shares the key with them. Say so at every load, or,
 * with upstream.key_file_mode = "refuse", do not load it. Read by the file's group is no such
 * share when that group is the process's own (a Secret with fsGroup and defaultMode 0440).
 * Returns 0 when the key may be used.
 */
static int check_file_mode(const struct stat *st, const char *where, enum gw_key_file_mode mode,
                           const struct gw_log *log, char **error)
{
    unsigned perm = (unsigned)(st->st_mode & 07777);
    struct gw_logline l;
    char octal[8];

    if (!gw_secret_file_shared(st))
        return 0;
    if (mode == GW_KEY_FILE_REFUSE) {
        fail(error,
             "%s is readable by other users (mode %04o): chmod 600 it, or set "
             "upstream.key_file_mode = \"warn\"",
             where, perm);
        return -1;
    }
    snprintf(octal, sizeof octal, "%04o", perm);
    gw_log_begin(log, &l, GW_LOG_WARN,
                 "the key file is readable by other users: chmod 600 it "
                 "(upstream.key_file_mode = \"refuse\" makes this an error)");
    gw_log_str(&l, "key_file", where);
    gw_log_str(&l, "mode", octal);
    gw_log_end(&l);
    return 0;
}

/*
 * The key in the file at @p path, @p where naming it for a reason. Symbolic links are
 * followed: a Kubernetes secret volume is made of them, and the mode checked is the target's.
 */
static struct gw_secret *from_file(const struct kind *kind, const char *path, const char *where,
                                   enum gw_key_file_mode mode, const struct gw_log *log,
                                   char **error)
{
    char buf[KEY_FILE_MAX_BYTES + 1]; /* one byte more tells a file that is too large */
    char errbuf[ERRNO_TEXT_BYTES];
    struct gw_secret *ret = NULL;
    char *source = NULL;
    struct stat st;
    size_t n = 0;
    int fd;

    /* O_NONBLOCK so that a FIFO given by mistake fails below instead of hanging open(). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        fail(error, "%s: cannot open: %s", where, errno_text(errno, errbuf, sizeof errbuf));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        fail(error, "%s: cannot stat: %s", where, errno_text(errno, errbuf, sizeof errbuf));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(error, "%s is not a regular file: it must be a file that holds only the %s",
             where, kind->word);
        goto out;
    }
    if (check_file_mode(&st, where, mode, log, error) != 0)
        goto out;
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(error, "%s: cannot read: %s", where, errno_text(errno, errbuf, sizeof errbuf));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > kind->max + 2) {
        fail(error, "%s is too large (more than %zu bytes): a %s file holds only the %s and one "
             "line break", where, kind->max + 2, kind->word, kind->word);
        goto out;
    }
    /* Editors and `echo key > file` end the line; strip that one line break, nothing else. */
    if (n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n')
        n -= 2;
    else if (n >= 1 && buf[n - 1] == '\n')
        n -= 1;
    source = format("file %s", path);
    if (!source) {
        fail(error, "%s: out of memory", where);
        goto out;
    }
    ret = make(kind, buf, n, where, source, error);
out:
    gw_secret_wipe(buf, sizeof buf);
    free(source);
    if (fd >= 0)
        close(fd);
    return ret;
}

/*
 * How a reason names the key file @p path given by @p from. A value without a '/' may well be
 * the key itself, put in the file variable by mistake, so it is not echoed.
 */
static char *describe_file(const char *path, const char *from)
{
    if (!strchr(path, '/'))
        return format("the key file named by %s (name not shown: without a '/' it may be a key "
                      "given by mistake)",
                      from);
    return format("key file %s (from %s)", path, from);
}

struct gw_secret *gw_secret_load(const struct gw_config *cfg, const struct gw_log *log,
                                 char **error)
{
    const char *env_key = getenv(ENV_KEY);
    const char *env_file = getenv(ENV_KEY_FILE);
    const char *cfg_path = cfg && cfg->path ? cfg->path : "the config file";
    struct gw_secret *ret = NULL;
    char *where = NULL;

    if (error)
        *error = NULL;
    if (env_key) {
        if (!*env_key) {
            /* Set but empty is refused, not skipped: a later source would hide the mistake. */
            fail(error, ENV_KEY " is set but empty: set it to the key, or unset it");
            goto out;
        }
        ret = from_value(env_key, ENV_KEY, "env " ENV_KEY, error);
    } else if (env_file) {
        if (!*env_file) {
            fail(error,
                 ENV_KEY_FILE " is set but empty: set it to the path of the key file, or unset it");
            goto out;
        }
        where = describe_file(env_file, ENV_KEY_FILE);
        if (!where)
            goto fail_nomem;
        ret = from_file(&api_key, env_file, where,
                        cfg ? cfg->upstream.key_file_mode : GW_KEY_FILE_WARN, log, error);
    } else if (cfg && cfg->upstream.api_key) {
        where = format("upstream.api_key in %s", cfg_path);
        if (!where)
            goto fail_nomem;
        ret = from_value(cfg->upstream.api_key, where, "config", error);
    } else if (cfg && cfg->upstream.api_key_file) {
        char *from = format("upstream.api_key_file in %s", cfg_path);

        where = from ? describe_file(cfg->upstream.api_key_file, from) : NULL;
        free(from);
        if (!where)
            goto fail_nomem;
        ret = from_file(&api_key, cfg->upstream.api_key_file, where,
                        cfg->upstream.key_file_mode, log, error);
    } else {
        fail(error,
             "no HelpCrunch API key: set " ENV_KEY " or " ENV_KEY_FILE
             ", or upstream.api_key_file in %s",
             cfg_path);
    }
    goto out;
fail_nomem:
    fail(error, "out of memory while loading the HelpCrunch API key");
out:
    free(where);
    return ret;
}

struct gw_secret *gw_secret_load_password(const char *path, const char *where,
                                          enum gw_key_file_mode mode,
                                          const struct gw_log *log, char **error)
{
    static const struct kind password = {"the password", "password",
                                         GW_MAX_REDIS_PASSWORD_BYTES};

    if (error)
        *error = NULL;
    return from_file(&password, path, where, mode, log, error);
}

const char *gw_secret_value(const struct gw_secret *s)
{
    return s ? s->key : NULL;
}

size_t gw_secret_len(const struct gw_secret *s)
{
    return s ? s->len : 0;
}

const char *gw_secret_source(const struct gw_secret *s)
{
    return s ? s->source : NULL;
}

const char *gw_secret_file(const struct gw_secret *s)
{
    static const char prefix[] = "file ";

    if (s == NULL || s->source == NULL || strncmp(s->source, prefix, sizeof(prefix) - 1) != 0)
        return NULL;
    return s->source + sizeof(prefix) - 1;
}

bool gw_secret_same(const struct gw_secret *a, const struct gw_secret *b)
{
    return a != NULL && b != NULL && a->len == b->len && memcmp(a->key, b->key, a->len) == 0;
}

void gw_secret_free(struct gw_secret *s)
{
    if (!s)
        return;
    if (s->key) {
        gw_secret_wipe(s->key, s->len + 1);
        if (s->locked)
            munlock(s->key, s->len + 1);
        free(s->key);
    }
    free(s->source);
    free(s);
}

size_t gw_secret_redact(const struct gw_secret *s, char *text, size_t len)
{
    size_t count = 0;
    size_t at = 0; /* where the search resumes: occurrences do not overlap */

    if (!s || !s->key || s->len == 0 || !text)
        return 0;
    while (len - at >= s->len) {
        char *hit = memmem(text + at, len - at, s->key, s->len);

        if (!hit)
            break;
        memset(hit, '*', s->len);
        count++;
        at = (size_t)(hit - text) + s->len;
    }
    return count;
}

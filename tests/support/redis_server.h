/*
 * A real redis-server for the Redis unit tests (tests/unit/test_redis*.c): started by the test
 * on a free loopback port, in the test's temporary folder (tmpdir.h), with nothing saved to
 * disk, an admin user (default, with ADMIN_PASSWORD) for the test's own checks, an ACL user
 * (hcgw, with HCGW_PASSWORD) holding only what hcgw needs, as docs/configuration.md tells, and
 * one that may not run scripts (noeval, with HCGW_PASSWORD).
 * It can be paused (SIGSTOP), resumed, killed and started again on the same port.
 *
 * redis_server_available() says whether redis-server is installed: without it a test program
 * exits 77 (ctest: skipped), saying why. Include it after <cmocka.h> and tmpdir.h.
 */
#ifndef HCGW_TESTS_REDIS_SERVER_H
#define HCGW_TESTS_REDIS_SERVER_H

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REDIS_SERVER_BIN "redis-server"
#define ADMIN_PASSWORD "admin-pw-for-tests"
#define HCGW_PASSWORD "hcgw-pw-4-tests"
/* How long a start may take before the test fails. */
#define REDIS_SERVER_START_MS 10000

struct redis_server {
    pid_t pid;                       /* 0 when not running */
    int port;
    bool paused;
};

/* True when redis-server is on the PATH. */
static inline bool redis_server_available(void)
{
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    bool found = false;

    while (path != NULL && *path != '\0' && !found) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);

        if (len > 0 && (size_t)snprintf(buf, sizeof buf, "%.*s/%s", (int)len, path,
                                         REDIS_SERVER_BIN) < sizeof buf)
            found = access(buf, X_OK) == 0;
        path = colon ? colon + 1 : NULL;
    }
    return found;
}

/* A loopback TCP port that was free a moment ago (bound to port 0, then released). */
static inline int redis_server_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A blocking admin connection (the test's own checks), or NULL while it cannot connect. */
static inline redisContext *redis_server_admin(const struct redis_server *s)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply *r;

    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    r = redisCommand(c, "AUTH %s", ADMIN_PASSWORD);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r)
            freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* Run one admin command and return its reply (the caller frees it); it must be answered. */
static inline redisReply *redis_server_do(const struct redis_server *s, const char *fmt, ...)
{
    redisContext *c = redis_server_admin(s);
    redisReply *r;
    va_list ap;

    assert_non_null(c);
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

/*
 * Start redis-server on s->port (0: a free one, kept in s->port for a later restart), its
 * configuration and log in tmpdir, and wait until it answers.
 */
static inline void redis_server_start(struct redis_server *s)
{
    char conf[PATH_MAX], text[2048];
    struct timespec pause = {0, 20 * 1000000L};
    redisContext *c = NULL;
    int n;

    if (s->port == 0)
        s->port = redis_server_free_port();
    n = snprintf(text, sizeof text,
                 "port %d\n"
                 "bind 127.0.0.1\n"
                 "dir %s\n"
                 "logfile %s/redis-server.log\n"
                 "save \"\"\n"
                 "appendonly no\n"
                 "daemonize no\n"
                 "databases 4\n"
                 "user default on >" ADMIN_PASSWORD " ~* &* +@all\n"
                 /* What docs/configuration.md tells to grant hcgw's user. */
                 "user hcgw on >" HCGW_PASSWORD " ~hcgw:* resetchannels -@all +eval +evalsha "
                 "+get +set +del +pttl +time +select +ping\n"
                 /* A user who may not run scripts: the quota's error answers. */
                 "user noeval on >" HCGW_PASSWORD " ~hcgw:* resetchannels -@all +ping\n",
                 s->port, tmpdir, tmpdir);
    assert_true(n > 0 && (size_t)n < sizeof text);
    tmpdir_write("redis.conf", text, (size_t)n, conf, sizeof conf);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        /* Dies with the test, even when the test is killed (a ctest timeout). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execlp(REDIS_SERVER_BIN, REDIS_SERVER_BIN, conf, (char *)NULL);
        _exit(127);
    }
    s->paused = false;
    for (int waited = 0; c == NULL && waited < REDIS_SERVER_START_MS; waited += 20) {
        int status;

        assert_int_equal(waitpid(s->pid, &status, WNOHANG), 0); /* still running */
        c = redis_server_admin(s);
        if (c == NULL)
            nanosleep(&pause, NULL);
    }
    assert_non_null(c);
    redisFree(c);
}

/* Stop it (SIGKILL: no goodbye on its connections) and reap it. */
static inline void redis_server_kill(struct redis_server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    s->pid = 0;
    s->paused = false;
}

static inline void redis_server_pause(struct redis_server *s)
{
    assert_int_equal(kill(s->pid, SIGSTOP), 0);
    s->paused = true;
}

static inline void redis_server_resume(struct redis_server *s)
{
    assert_int_equal(kill(s->pid, SIGCONT), 0);
    s->paused = false;
}

#endif

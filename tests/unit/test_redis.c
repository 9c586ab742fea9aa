/*
 * Unit tests of src/redis.c against a real redis-server (tests/support/redis_server.h) on a
 * free loopback port, with a password and an ACL user: connect, AUTH and SELECT (by address
 * and by name), commands and their answers; a wrong password keeps it down with a reason that
 * never holds the password (nor does the log); a paused server (SIGSTOP) makes a command's
 * deadline fire once, takes the state down and, resumed, back up; the caller's own shorter
 * deadline times the command out without taking the connection down, and the late answer is
 * dropped; a killed server gives down at once, commands refused without waiting, and up again
 * when it comes back; the bounds on commands in flight and on an answer's size; cancel;
 * reconfigure. Exits 77 (skipped) when redis-server is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "hcgw/config.h"
#include "hcgw/err.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/loop.h"
#include "hcgw/redis.h"

#include "../support/tmpdir.h"
#include "../support/redis_server.h"
#include "../support/run_until.h"

/* No wait in a test lasts longer than this. */
#define GUARD_MS 15000u

static struct redis_server srv;
/* The password files, in tmpdir (whose path is shorter than 64 bytes). */
#define PW_PATH_BYTES 128
static char hcgw_pw[PW_PATH_BYTES], admin_pw[PW_PATH_BYTES], wrong_pw[PW_PATH_BYTES];

struct states {
    int ups, downs;
    char reason[GW_REDIS_ERROR_BYTES];
};

static void on_state(void *data, bool up, const char *reason)
{
    struct states *s = data;

    if (up) {
        s->ups++;
        assert_null(reason);
    } else {
        s->downs++;
        assert_non_null(reason);
        snprintf(s->reason, sizeof s->reason, "%s", reason);
    }
}

struct result {
    int calls;
    enum gw_redis_result result;
    int type;                        /* REDIS_REPLY_* of a reply */
    long long integer;
    char str[128];
};

static void on_result(void *data, enum gw_redis_result res, const struct redisReply *reply)
{
    struct result *r = data;

    r->calls++;
    r->result = res;
    if (res == GW_REDIS_REPLY) {
        assert_non_null(reply);
        r->type = reply->type;
        r->integer = reply->integer;
        if (reply->str)
            snprintf(r->str, sizeof r->str, "%.*s", (int)reply->len, reply->str);
    } else {
        assert_null(reply);
    }
}

/* The configuration of a test: redis = { url; @p keys }. */
static struct gw_config *config(const char *url, const char *keys)
{
    char path[PATH_MAX], text[4096];
    char *errors = NULL;
    struct gw_config *cfg;
    int n = snprintf(text, sizeof text, "redis = { url = \"%s\"; %s };\n", url, keys);

    assert_true(n > 0 && (size_t)n < sizeof text);
    tmpdir_write("test.conf", text, (size_t)n, path, sizeof path);
    cfg = gw_config_load(path, &errors);
    if (errors)
        print_error("%s", errors);
    assert_non_null(cfg);
    return cfg;
}

/* The usual one: the ACL user hcgw on 127.0.0.1, db 0, timeout 50 ms. */
static struct gw_config *hcgw_config(const char *more)
{
    char url[64], keys[1024];

    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", srv.port);
    snprintf(keys, sizeof keys, "username = \"hcgw\"; password_file = \"%s\"; %s", hcgw_pw,
             more ? more : "");
    return config(url, keys);
}

static int command(struct gw_redis *r, struct result *res, uint64_t deadline_ms, int argc, ...)
{
    const char *argv[8];
    size_t lens[8];
    va_list ap;

    assert_true(argc <= 8);
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        argv[i] = va_arg(ap, const char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    memset(res, 0, sizeof *res);
    return gw_redis_command(r, argc, argv, lens, deadline_ms, on_result, res, NULL);
}

static struct gw_redis *up_redis(struct gw_loop *loop, const struct gw_config *cfg,
                                 struct states *st, struct gw_log *log)
{
    struct gw_redis *r = gw_redis_new(loop, cfg, log, on_state, st);

    assert_non_null(r);
    assert_false(gw_redis_up(r)); /* it starts down, and connects on the loop */
    if (!RUN_UNTIL(loop, gw_redis_up(r), GUARD_MS))
        print_error("not up: %s\n", gw_redis_last_error(r));
    assert_true(gw_redis_up(r));
    assert_int_equal(st->ups, 1);
    return r;
}

static void test_connect_auth_commands(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = hcgw_config(NULL);
    struct states st = {0};
    struct gw_redis_stats stats;
    struct result res;
    struct gw_redis *r;

    (void)state;
    r = up_redis(loop, cfg, &st, NULL);
    assert_int_equal(command(r, &res, 0, 1, "PING"), 0);
    assert_int_equal(res.calls, 0); /* never from inside gw_redis_command */
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_int_equal(res.result, GW_REDIS_REPLY);
    assert_string_equal(res.str, "PONG");

    assert_int_equal(command(r, &res, 0, 3, "SET", "hcgw:test:k", "v1"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_string_equal(res.str, "OK");
    assert_int_equal(command(r, &res, 0, 2, "GET", "hcgw:test:k"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_int_equal(res.type, REDIS_REPLY_STRING);
    assert_string_equal(res.str, "v1");

    /* The ACL holds: another prefix is an error answer, and the connection stays up. */
    assert_int_equal(command(r, &res, 0, 2, "GET", "other:k"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_int_equal(res.result, GW_REDIS_REPLY);
    assert_int_equal(res.type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(res.str, "NOPERM"));
    assert_true(gw_redis_up(r));

    gw_redis_stats(r, &stats);
    assert_int_equal(stats.up, 1);
    assert_int_equal(stats.connects, 1);
    assert_int_equal(stats.answers, 4);
    assert_int_equal(stats.errors[GW_REDIS_ERR_REPLY], 1);
    {
        uint64_t n = 0;

        for (int i = 0; i <= GW_REDIS_DURATION_BUCKETS; i++)
            n += stats.duration_buckets[i];
        assert_int_equal(n, 4);
    }
    assert_int_equal(gw_redis_pending(r), 0);
    assert_string_equal(gw_redis_last_error(r), "");
    assert_int_equal(st.downs, 0);
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* By name (looked up on the loop), the default user (AUTH with the password alone), db 2. */
static void test_name_default_user_and_db(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct states st = {0};
    struct result res;
    struct gw_config *cfg;
    struct gw_redis *r;
    redisReply *reply;
    char url[64], keys[512];

    (void)state;
    snprintf(url, sizeof url, "redis://localhost:%d/2", srv.port);
    snprintf(keys, sizeof keys, "password_file = \"%s\";", admin_pw);
    cfg = config(url, keys);
    r = up_redis(loop, cfg, &st, NULL);
    assert_int_equal(command(r, &res, 0, 3, "SET", "hcgw:test:db", "two"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_string_equal(res.str, "OK");
    /* Each admin command is a new connection on db 0: the key is in db 2 only. */
    reply = redis_server_do(&srv, "EXISTS hcgw:test:db");
    assert_int_equal(reply->integer, 0);
    freeReplyObject(reply);
    {
        redisContext *c = redis_server_admin(&srv);

        assert_non_null(c);
        freeReplyObject(redisCommand(c, "SELECT 2"));
        reply = redisCommand(c, "GET hcgw:test:db");
        assert_non_null(reply);
        assert_string_equal(reply->str, "two");
        freeReplyObject(reply);
        redisFree(c);
    }
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

static void test_wrong_password(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct states st = {0};
    struct gw_redis_stats stats;
    struct result res;
    struct gw_config *cfg;
    struct gw_redis *r;
    struct gw_log *log;
    char url[64], keys[512], logpath[PATH_MAX], text[8192];
    int fd;
    ssize_t n;

    (void)state;
    tmpdir_path("wrong.log", logpath, sizeof logpath);
    fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    log = gw_log_new(fd, GW_LOG_DEBUG);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", srv.port);
    snprintf(keys, sizeof keys, "username = \"hcgw\"; password_file = \"%s\";", wrong_pw);
    cfg = config(url, keys);
    r = gw_redis_new(loop, cfg, log, on_state, &st);
    assert_non_null(r);
    assert_true(RUN_UNTIL(loop, gw_redis_last_error(r)[0] != '\0', GUARD_MS));
    assert_false(gw_redis_up(r));
    assert_int_equal(st.ups + st.downs, 0); /* never up, so no change */
    assert_non_null(strstr(gw_redis_last_error(r), "Redis refused AUTH: WRONGPASS"));
    assert_null(strstr(gw_redis_last_error(r), "wrong-password-x"));
    gw_redis_stats(r, &stats);
    assert_int_equal(stats.errors[GW_REDIS_ERR_AUTH], 1);
    assert_int_equal(stats.up, 0);
    /* Refused at once while down. */
    assert_int_equal(command(r, &res, 0, 1, "PING"), GW_ERR_UPSTREAM_UNAVAILABLE);
    /* It keeps trying, with backoff: a second refusal comes, and is not logged again. */
    assert_true(RUN_UNTIL(loop, (gw_redis_stats(r, &stats), stats.errors[GW_REDIS_ERR_AUTH] >= 2),
                          GUARD_MS));
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
    gw_log_free(log);
    close(fd);

    fd = open(logpath, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, text, sizeof text - 1);
    close(fd);
    assert_true(n > 0);
    text[n] = '\0';
    assert_non_null(strstr(text, "\"msg\":\"redis unavailable\""));
    assert_non_null(strstr(text, "\"kind\":\"auth\""));
    assert_null(strstr(text, "wrong-password-x"));
    assert_null(strstr(text, HCGW_PASSWORD));
    /* One line for the reason, however many attempts. */
    assert_null(strstr(strstr(text, "redis unavailable") + 1, "redis unavailable"));
}

static void test_paused_server(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = hcgw_config(NULL);
    struct states st = {0};
    struct gw_redis_stats stats;
    struct result res, res2;
    struct gw_redis *r;
    uint64_t t0;

    (void)state;
    r = up_redis(loop, cfg, &st, NULL);
    redis_server_pause(&srv);
    /* Deadlines count from the loop's cached now (refreshed once per iteration); refresh it
     * so that the deadline and t0 share one origin however long the pause took. */
    t0 = gw_clock_ms();
    gw_loop_update_time(loop);
    assert_int_equal(command(r, &res, 0, 1, "PING"), 0);
    assert_int_equal(command(r, &res2, 0, 1, "PING"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1 && res2.calls == 1, GUARD_MS));
    /* Not before timeout_ms (50). */
    assert_true(gw_clock_ms() - t0 >= 50);
    assert_int_equal(res.result, GW_REDIS_TIMEOUT);
    assert_int_equal(res2.result, GW_REDIS_TIMEOUT);
    assert_false(gw_redis_up(r));
    assert_int_equal(st.downs, 1);
    assert_string_equal(st.reason, "no answer within 50 ms (redis.timeout_ms)");
    gw_redis_stats(r, &stats);
    assert_int_equal(stats.errors[GW_REDIS_ERR_TIMEOUT], 1);
    assert_int_equal(stats.up, 0);
    assert_int_equal(gw_redis_pending(r), 0);
    assert_int_equal(command(r, &res, 0, 1, "PING"), GW_ERR_UPSTREAM_UNAVAILABLE);
    /* Paused, a new connection is accepted by the kernel, but its sign-in goes unanswered. */
    assert_true(RUN_UNTIL(loop, strstr(gw_redis_last_error(r), "sign-in") != NULL, GUARD_MS));
    redis_server_resume(&srv);
    assert_true(RUN_UNTIL(loop, gw_redis_up(r), GUARD_MS));
    assert_int_equal(st.ups, 2);
    assert_int_equal(command(r, &res, 0, 1, "PING"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_int_equal(res.result, GW_REDIS_REPLY);
    /* Each callback ran once. */
    assert_int_equal(res2.calls, 1);
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* The caller's deadline, shorter than timeout_ms: that command times out, the connection
 * stays, and its late answer is dropped; one cancelled gets no callback at all. */
static void test_caller_deadline_and_cancel(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = hcgw_config("timeout_ms = 3000;");
    struct states st = {0};
    struct gw_redis_stats stats;
    struct result res, late, cancelled;
    struct gw_redis_cmd *handle;
    struct gw_redis *r;
    const char *argv[] = {"PING"};
    const size_t lens[] = {4};

    (void)state;
    r = up_redis(loop, cfg, &st, NULL);
    redis_server_pause(&srv);
    assert_int_equal(command(r, &res, gw_loop_now(loop) + 30, 1, "PING"), 0);
    memset(&cancelled, 0, sizeof cancelled);
    assert_int_equal(gw_redis_command(r, 1, argv, lens, 0, on_result, &cancelled, &handle), 0);
    assert_non_null(handle);
    gw_redis_cancel(handle);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_int_equal(res.result, GW_REDIS_TIMEOUT);
    assert_true(gw_redis_up(r));
    assert_int_equal(gw_redis_pending(r), 2); /* both still in flight, unwanted */
    redis_server_resume(&srv);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(r) == 0, GUARD_MS));
    assert_int_equal(command(r, &late, 0, 1, "PING"), 0);
    assert_true(RUN_UNTIL(loop, late.calls == 1, GUARD_MS));
    assert_int_equal(res.calls, 1);
    assert_int_equal(cancelled.calls, 0);
    assert_true(gw_redis_up(r));
    assert_int_equal(st.downs, 0);
    gw_redis_stats(r, &stats);
    assert_int_equal(stats.errors[GW_REDIS_ERR_TIMEOUT], 0);
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

static void test_killed_server(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = hcgw_config(NULL);
    struct states st = {0};
    struct gw_redis_stats stats;
    struct result res;
    struct gw_redis *r;
    uint64_t t0;

    (void)state;
    r = up_redis(loop, cfg, &st, NULL);
    assert_int_equal(command(r, &res, 0, 1, "PING"), 0);
    redis_server_kill(&srv);
    assert_true(RUN_UNTIL(loop, st.downs == 1, GUARD_MS));
    assert_non_null(strstr(st.reason, "connection lost"));
    /* The command in flight ended with the connection. */
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_int_equal(res.result, GW_REDIS_DOWN);
    /* Refused at once, without waiting. */
    t0 = gw_clock_ms();
    assert_int_equal(command(r, &res, 0, 1, "PING"), GW_ERR_UPSTREAM_UNAVAILABLE);
    assert_true(gw_clock_ms() - t0 < 50);
    /* Attempts are refused by the kernel, each one at once. */
    assert_true(RUN_UNTIL(loop, (gw_redis_stats(r, &stats), stats.errors[GW_REDIS_ERR_CONNECT] >= 2),
                          GUARD_MS));
    assert_non_null(strstr(gw_redis_last_error(r), "cannot connect to 127.0.0.1"));
    assert_int_equal(stats.errors[GW_REDIS_ERR_CLOSED], 1);
    redis_server_start(&srv); /* the same port */
    assert_true(RUN_UNTIL(loop, gw_redis_up(r), GUARD_MS));
    assert_int_equal(st.ups, 2);
    assert_int_equal(st.downs, 1);
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* GW_REDIS_MAX_PENDING commands in flight, and no more. */
static void test_pending_bound(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = hcgw_config("timeout_ms = 5000;");
    struct states st = {0};
    struct gw_redis_stats stats;
    struct result *res = calloc(GW_REDIS_MAX_PENDING + 1, sizeof *res);
    struct gw_redis *r;
    int done;

    (void)state;
    assert_non_null(res);
    r = up_redis(loop, cfg, &st, NULL);
    redis_server_pause(&srv);
    for (int i = 0; i < GW_REDIS_MAX_PENDING; i++)
        assert_int_equal(command(r, &res[i], 0, 1, "PING"), 0);
    assert_int_equal(command(r, &res[GW_REDIS_MAX_PENDING], 0, 1, "PING"), GW_ERR_OVERLOADED);
    gw_redis_stats(r, &stats);
    assert_int_equal(stats.errors[GW_REDIS_ERR_OVERLOAD], 1);
    redis_server_resume(&srv);
    assert_true(RUN_UNTIL(loop, gw_redis_pending(r) == 0, GUARD_MS));
    done = 0;
    for (int i = 0; i < GW_REDIS_MAX_PENDING; i++)
        done += res[i].calls == 1 && res[i].result == GW_REDIS_REPLY;
    assert_int_equal(done, GW_REDIS_MAX_PENDING);
    assert_int_equal(res[GW_REDIS_MAX_PENDING].calls, 0);
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
    free(res);
}

/* An answer past GW_REDIS_MAX_REPLY_BYTES drops the connection; it comes back. */
static void test_answer_too_large(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = hcgw_config(NULL);
    struct states st = {0};
    struct gw_redis_stats stats;
    size_t big_len = GW_REDIS_MAX_REPLY_BYTES * 4;
    char *big = malloc(big_len + 1);
    struct result res;
    struct gw_redis *r;
    redisReply *reply;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    reply = redis_server_do(&srv, "SET hcgw:test:big %s", big);
    freeReplyObject(reply);
    free(big);
    r = up_redis(loop, cfg, &st, NULL);
    assert_int_equal(command(r, &res, 0, 2, "GET", "hcgw:test:big"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    assert_int_equal(res.result, GW_REDIS_DOWN);
    assert_int_equal(st.downs, 1);
    assert_string_equal(st.reason, "an answer larger than 65536 bytes");
    gw_redis_stats(r, &stats);
    assert_int_equal(stats.errors[GW_REDIS_ERR_PROTOCOL], 1);
    assert_true(RUN_UNTIL(loop, gw_redis_up(r), GUARD_MS));
    reply = redis_server_do(&srv, "DEL hcgw:test:big");
    freeReplyObject(reply);
    gw_redis_free(r);
    gw_config_free(cfg);
    gw_loop_free(loop);
}

/* A reload that changes the target reconnects; one that does not keeps the connection. */
static void test_reconfigure(void **state)
{
    struct gw_loop *loop = gw_loop_new();
    struct gw_config *cfg = hcgw_config(NULL);
    struct gw_config *same = hcgw_config("timeout_ms = 80;");
    struct gw_config *other = hcgw_config(NULL);
    struct states st = {0};
    struct result res;
    struct gw_redis *r;

    (void)state;
    r = up_redis(loop, cfg, &st, NULL);
    gw_redis_reconfigure(r, same);
    assert_true(gw_redis_up(r));
    assert_int_equal(st.downs, 0);
    /* other: the same values, but the same password read anew, and db 1. */
    other->redis.db = 1;
    gw_redis_reconfigure(r, other);
    assert_false(gw_redis_up(r));
    assert_int_equal(st.downs, 1);
    assert_string_equal(st.reason, "the redis settings changed: reconnecting");
    assert_true(RUN_UNTIL(loop, gw_redis_up(r), GUARD_MS));
    assert_int_equal(st.ups, 2);
    assert_int_equal(command(r, &res, 0, 1, "PING"), 0);
    assert_true(RUN_UNTIL(loop, res.calls == 1, GUARD_MS));
    /* A command in flight when freed is dropped, its callback not called. */
    assert_int_equal(command(r, &res, 0, 1, "PING"), 0);
    gw_redis_free(r);
    assert_int_equal(res.calls, 0);
    gw_config_free(cfg);
    gw_config_free(same);
    gw_config_free(other);
    gw_loop_free(loop);
}

static int group_setup(void **state)
{
    (void)state;
    if (tmpdir_make("redis") != 0)
        return -1;
    tmpdir_write("hcgw.pw", HCGW_PASSWORD "\n", strlen(HCGW_PASSWORD) + 1, hcgw_pw,
                 sizeof hcgw_pw);
    tmpdir_write("admin.pw", ADMIN_PASSWORD "\n", strlen(ADMIN_PASSWORD) + 1, admin_pw,
                 sizeof admin_pw);
    tmpdir_write("wrong.pw", "wrong-password-x\n", 17, wrong_pw, sizeof wrong_pw);
    chmod(hcgw_pw, 0600);
    chmod(admin_pw, 0600);
    chmod(wrong_pw, 0600);
    redis_server_start(&srv);
    return 0;
}

/* After each test, whatever it did: the server runs, not paused. */
static int test_teardown(void **state)
{
    (void)state;
    if (srv.paused)
        redis_server_resume(&srv);
    if (srv.pid == 0)
        redis_server_start(&srv);
    return 0;
}

static int group_teardown(void **state)
{
    redis_server_kill(&srv);
    return tmpdir_group_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_connect_auth_commands, test_teardown),
        cmocka_unit_test_teardown(test_name_default_user_and_db, test_teardown),
        cmocka_unit_test_teardown(test_wrong_password, test_teardown),
        cmocka_unit_test_teardown(test_paused_server, test_teardown),
        cmocka_unit_test_teardown(test_caller_deadline_and_cancel, test_teardown),
        cmocka_unit_test_teardown(test_killed_server, test_teardown),
        cmocka_unit_test_teardown(test_pending_bound, test_teardown),
        cmocka_unit_test_teardown(test_answer_too_large, test_teardown),
        cmocka_unit_test_teardown(test_reconfigure, test_teardown),
    };

    /* hiredis writes with write(2): a server gone makes EPIPE, not a signal (main.c ignores
     * SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    if (!redis_server_available()) {
        printf("skipped: %s is not installed (scripts/install-deps.sh installs it)\n",
               REDIS_SERVER_BIN);
        return 77;
    }
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/*
 * The upstream's sockets on a real loop, against a real HTTP server on loopback (a small one
 * of the test's own, on a thread, so that it can close connections when the test says).
 *
 * A pooled connection's socket stays registered with the loop between transfers (upstream.c,
 * "parked"). When libcurl closes such a socket, its descriptor number is free for the next
 * socket, and the kernel lowest-first rule hands it to the very next connection libcurl opens.
 * If the upstream still took that number for the parked socket (registered, with the mask it
 * had), it would not register the new one, and the call would hear nothing until its deadline.
 * These tests make libcurl close parked sockets and reuse their numbers, and check that every
 * call is answered and that the numbers were in fact reused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "hcgw/config.h"
#include "hcgw/log.h"
#include "hcgw/loop.h"
#include "hcgw/metrics.h"
#include "hcgw/secret.h"
#include "hcgw/upstream.h"

#include "../support/run_until.h"
#include "../support/tmpdir.h"

/* Generous: a call that is answered takes milliseconds; one whose socket is not watched waits
 * for its deadline, which is what the tests catch. */
#define CALL_TIMEOUT_MS 4000
#define ROUNDS 6

/* ---- the upstream: HTTP/1.1 keep-alive, every request answered 200 {} ---- */

static struct {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool close_after;     /* close each connection after its answer */
    atomic_int accepted;
    atomic_int answered;
} srv;

/* Serve one connection: requests with a Content-Length body (or none), until EOF. */
static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[8192];
    size_t have = 0;

    for (;;) {
        char *end = memmem(buf, have, "\r\n\r\n", 4);
        ssize_t n;

        if (end != NULL) {
            static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                         "Content-Length: 2\r\n\r\n{}";
            size_t head = (size_t)(end + 4 - buf);
            size_t body = 0;
            char *cl = memmem(buf, head, "Content-Length:", 15);

            if (cl != NULL)
                body = strtoul(cl + 15, NULL, 10);
            if (have < head + body)
                goto more;
            memmove(buf, buf + head + body, have - head - body);
            have -= head + body;
            if (write(fd, answer, sizeof(answer) - 1) != (ssize_t)(sizeof(answer) - 1))
                break;
            atomic_fetch_add(&srv.answered, 1);
            if (atomic_load(&srv.close_after))
                break;
            continue;
        }
    more:
        if (have == sizeof(buf))
            break;
        n = read(fd, buf + have, sizeof(buf) - have);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        int fd = accept(srv.listen_fd, NULL, NULL);
        pthread_t t;

        if (fd < 0)
            continue;
        atomic_fetch_add(&srv.accepted, 1);
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

static int srv_start(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);

    srv.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv.listen_fd < 0 || bind(srv.listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(srv.listen_fd, 16) != 0 ||
        getsockname(srv.listen_fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    return pthread_create(&srv.thread, NULL, serve, NULL);
}

static void srv_stop(void)
{
    int fd;

    atomic_store(&srv.stop, true);
    /* Wake accept() with one last connection. */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)srv.port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        (void)connect(fd, (struct sockaddr *)&a, sizeof(a));
        close(fd);
    }
    pthread_join(srv.thread, NULL);
    close(srv.listen_fd);
}

/* The descriptor of this process's one connection to the server, or -1 (none or several). */
static int client_fd(void)
{
    int found = -1;

    for (int fd = 0; fd < 1024; fd++) {
        struct sockaddr_in a;
        socklen_t len = sizeof(a);

        if (fd == srv.listen_fd)
            continue;
        if (getpeername(fd, (struct sockaddr *)&a, &len) != 0 || a.sin_family != AF_INET ||
            ntohs(a.sin_port) != srv.port)
            continue;
        /* The server's own ends have the server's port locally, not as their peer. */
        if (found >= 0)
            return -1;
        found = fd;
    }
    return found;
}

/* ---- hcgw's side ---- */

static struct gw_config *cfg;
static struct gw_secret *secret;
static struct gw_log *logger;
static struct gw_metrics_registry *registry;
static struct gw_loop *loop;
static struct gw_upstream *up;
static char url[128];

static enum gw_gate_verdict gate_admit(void *ctx, struct gw_call *call, uint64_t now_ms,
                                       uint64_t deadline_ms, uint64_t *wait_ms,
                                       long *retry_after_s)
{
    (void)ctx, (void)call, (void)now_ms, (void)deadline_ms, (void)wait_ms, (void)retry_after_s;
    return GW_GATE_GO;
}

static void gate_done_waiting(void *ctx, struct gw_call *call, uint64_t waited_ms)
{
    (void)ctx, (void)call, (void)waited_ms;
}

static void gate_answered(void *ctx, uint64_t now_ms, long status, long retry_after_s)
{
    (void)ctx, (void)now_ms, (void)status, (void)retry_after_s;
}

static long gate_retry_after(void *ctx, uint64_t now_ms)
{
    (void)ctx, (void)now_ms;
    return 0;
}

static void on_done(struct gw_call *call)
{
    *(bool *)call->data = true;
}

/*
 * One call, run to its end on the loop. A POST is not retryable: it goes on a fresh connection,
 * and with a pool of one libcurl first closes the idle (parked) one.
 */
static long call_once(const char *method)
{
    struct gw_call call;
    bool done = false;
    long status;

    memset(&call, 0, sizeof(call));
    call.method = method;
    call.url = url;
    call.retryable = strcmp(method, "GET") == 0;
    if (!call.retryable) {
        call.body = "{}";
        call.body_len = 2;
    }
    call.request_id = "test";
    gw_loop_update_time(loop);
    call.deadline_ms = gw_loop_now(loop) + CALL_TIMEOUT_MS;
    call.done = on_done;
    call.data = &done;
    assert_int_equal(gw_upstream_submit(up, &call), 0);
    assert_true(RUN_UNTIL(loop, done, CALL_TIMEOUT_MS * 3));
    status = call.out.failure == GW_OK ? call.out.status : -(long)call.out.failure;
    gw_call_release(&call);
    return status;
}

/* A worker's upstream on its own loop, with a pool of @p pool connections over @p shards multi
 * handles (0: upstream.pool_shards' default). */
static int setup_pool(int pool, int shards)
{
    static const struct gw_upstream_gate gate = {.admit = gate_admit,
                                                 .done_waiting = gate_done_waiting,
                                                 .answered = gate_answered,
                                                 .retry_after_s = gate_retry_after};
    char conf[512];
    char path[PATH_MAX];
    char *errors = NULL;

    unsetenv("HCGW_API_KEY");
    unsetenv("HCGW_API_KEY_FILE");
    memset(&srv, 0, sizeof(srv));
    if (tmpdir_make("upstream") != 0 || srv_start() != 0)
        return -1;
    /* No retries: every call is one attempt. */
    snprintf(conf, sizeof(conf),
             "upstream = { base_url = \"http://127.0.0.1:%d/v1\"; api_key = \"k\";"
             " max_connections = %d; pool_shards = %d; max_retries = 0; timeout_ms = %d; };\n"
             "quota = { requests_per_minute = 0; };\n"
             "log = { level = \"error\"; };\n",
             srv.port, pool, shards, CALL_TIMEOUT_MS);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/customers/1", srv.port);
    tmpdir_write("upstream.conf", conf, strlen(conf), path, sizeof(path));
    cfg = gw_config_load(path, &errors);
    if (errors != NULL) {
        print_error("%s", errors);
        free(errors);
        return -1;
    }
    secret = gw_secret_load(cfg, NULL, &errors);
    if (errors != NULL) {
        print_error("%s", errors);
        free(errors);
        return -1;
    }
    logger = gw_log_new(STDERR_FILENO, GW_LOG_ERROR);
    registry = gw_metrics_registry_new();
    loop = gw_loop_new();
    if (cfg == NULL || secret == NULL || logger == NULL || registry == NULL || loop == NULL)
        return -1;
    up = gw_upstream_new(loop, cfg, secret, gw_metrics_register(registry), &gate, logger);
    return up != NULL ? 0 : -1;
}

/* A pool of one connection: every call goes on the only connection there is. */
static int setup(void **state)
{
    (void)state;
    return setup_pool(1, 0);
}

/* Four connections over three multi handles: 2 + 1 + 1. */
static int setup_sharded(void **state)
{
    (void)state;
    return setup_pool(4, 3);
}

static int teardown(void **state)
{
    gw_upstream_free(up);
    gw_loop_free(loop);
    gw_metrics_registry_free(registry);
    gw_log_free(logger);
    gw_secret_free(secret);
    gw_config_free(cfg);
    srv_stop();
    return tmpdir_group_teardown(state);
}

/*
 * libcurl closes the parked connection itself (a fresh connection for a POST, the pool being
 * full), and the new connection's socket takes its number: each call is answered.
 */
static void test_closed_parked_number_reused(void **state)
{
    int reused = 0;

    (void)state;
    assert_int_equal(call_once("GET"), 200);
    for (int i = 0; i < ROUNDS; i++) {
        int before = client_fd();
        int after;

        assert_true(before >= 0);
        assert_int_equal(call_once("POST"), 200);
        after = client_fd();
        reused += after == before;
        assert_int_equal(call_once("GET"), 200); /* reuses the POST's connection */
        assert_int_equal(client_fd(), after);
    }
    /* The test is about reused numbers: it must have seen them. */
    assert_true(reused > 0);
    assert_int_equal(atomic_load(&srv.accepted), ROUNDS + 1);
}

/*
 * The upstream closes each connection after its answer: the parked socket hears the close
 * (and is unwatched), libcurl finds the connection dead at the next call and closes it, and
 * the next connection takes the number.
 */
static void test_peer_closed_parked_number_reused(void **state)
{
    int reused = 0;

    (void)state;
    atomic_store(&srv.close_after, true);
    assert_int_equal(call_once("GET"), 200);
    for (int i = 0; i < ROUNDS; i++) {
        int before;

        /* Let the close reach the loop while the socket is parked. */
        RUN_UNTIL(loop, false, 50);
        before = client_fd();
        assert_int_equal(call_once("GET"), 200);
        reused += before >= 0 && client_fd() == before;
    }
    assert_true(reused > 0);
    assert_int_equal(atomic_load(&srv.accepted), ROUNDS + 1);
    atomic_store(&srv.close_after, false);
}

/*
 * Twelve calls at once over three multi handles: they spread over the three, all are answered,
 * and the pool's bound holds for the three together (each multi handle has its share of it).
 */
static void test_shards_share_pool(void **state)
{
    struct gw_call calls[12];
    bool done[12];
    size_t i;

    (void)state;
    gw_loop_update_time(loop);
    for (i = 0; i < 12; i++) {
        memset(&calls[i], 0, sizeof(calls[i]));
        done[i] = false;
        calls[i].method = "GET";
        calls[i].url = url;
        calls[i].retryable = true;
        calls[i].request_id = "test";
        calls[i].deadline_ms = gw_loop_now(loop) + CALL_TIMEOUT_MS;
        calls[i].done = on_done;
        calls[i].data = &done[i];
        assert_int_equal(gw_upstream_submit(up, &calls[i]), 0);
    }
    for (i = 0; i < 12; i++) {
        assert_true(RUN_UNTIL(loop, done[i], CALL_TIMEOUT_MS * 3));
        assert_int_equal(calls[i].out.failure, GW_OK);
        assert_int_equal(calls[i].out.status, 200);
        gw_call_release(&calls[i]);
    }
    assert_true(atomic_load(&srv.accepted) >= 3);
    assert_true(atomic_load(&srv.accepted) <= 4);
    assert_int_equal(atomic_load(&srv.answered), 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_closed_parked_number_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_closed_parked_number_reused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shards_share_pool, setup_sharded, teardown),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}

/*
 * Unit tests of src/server.c as a library: two servers run in one process, each on its own
 * ephemeral loopback port with its own logger (a file each, at different levels), and real
 * HTTP goes to each with libcurl. Each one's /metrics counts only its own requests, each log
 * file gets only its own server's lines, and changing one logger's level (as a reload does)
 * leaves the other's alone. Nothing is left in flight at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "hcgw/config.h"
#include "hcgw/log.h"
#include "hcgw/secret.h"
#include "hcgw/server.h"

#include "../support/tmpdir.h"

/* How long a test waits for a line or a count to show up before it fails. */
#define WAIT_MS 5000
/* Room for one answer body (a /metrics text is a few KiB here). */
#define BODY_BYTES 65536

/* One server under test, with everything it needs and the file its logger writes to. */
struct running {
    struct gw_config *cfg;
    struct gw_secret *secret;
    struct gw_log *log;
    int log_fd;
    char log_path[PATH_MAX];
    struct gw_server *srv;
    int port;
};

/* Released by the teardown, so a failed assertion leaves no thread, socket or block behind. */
static struct running servers[2];
static char body[BODY_BYTES];
static size_t body_len;
static char file_text[BODY_BYTES];

static int group_setup(void **state)
{
    (void)state;
    /* The key comes from each test's configuration, not from the environment. */
    unsetenv("HCGW_API_KEY");
    unsetenv("HCGW_API_KEY_FILE");
    return tmpdir_make("server");
}

static void stop(struct running *r)
{
    if (r->srv != NULL) {
        gw_server_stop(r->srv);
        gw_server_wait(r->srv);
        gw_server_free(r->srv);
        r->srv = NULL;
    }
    gw_log_free(r->log);
    r->log = NULL;
    if (r->log_fd >= 0)
        close(r->log_fd);
    r->log_fd = -1;
    gw_secret_free(r->secret);
    r->secret = NULL;
    gw_config_free(r->cfg);
    r->cfg = NULL;
}

static int teardown(void **state)
{
    (void)state;
    stop(&servers[0]);
    stop(&servers[1]);
    return 0;
}

/* Start a server named @p name whose configuration says log.level = @p level. */
static void start(struct running *r, const char *name, const char *level)
{
    char conf[1024];
    char conf_path[PATH_MAX];
    char file[64];
    char *errors = NULL;
    enum gw_log_level lv;

    snprintf(conf, sizeof(conf),
             "listen = { address = \"127.0.0.1\"; port = 0; };\n"
             "server = { workers = 1; drain_timeout_ms = 1000; };\n"
             "upstream = { base_url = \"http://127.0.0.1:9\"; api_key = \"key-%s\"; };\n"
             "log = { level = \"%s\"; };\n",
             name, level);
    snprintf(file, sizeof(file), "%s.conf", name);
    tmpdir_write(file, conf, strlen(conf), conf_path, sizeof(conf_path));
    r->cfg = gw_config_load(conf_path, &errors);
    if (errors != NULL)
        print_error("%s", errors);
    assert_null(errors);
    assert_non_null(r->cfg);
    r->secret = gw_secret_load(r->cfg, NULL, &errors);
    assert_null(errors);
    assert_non_null(r->secret);

    snprintf(file, sizeof(file), "%s.log", name);
    tmpdir_path(file, r->log_path, sizeof(r->log_path));
    r->log_fd = open(r->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    assert_true(r->log_fd >= 0);
    assert_int_equal(gw_config_parse_level(level, &lv), 0);
    r->log = gw_log_new(r->log_fd, lv);
    assert_non_null(r->log);

    r->srv = gw_server_new(r->cfg, r->secret, r->log, &errors);
    if (errors != NULL)
        print_error("%s\n", errors);
    assert_null(errors);
    assert_non_null(r->srv);
    assert_int_equal(gw_server_start(r->srv), 0);
    r->port = gw_server_port(r->srv);
    assert_true(r->port > 0);
}

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
    size_t len = size * n;

    (void)user;
    if (len >= sizeof(body) - body_len)
        return 0;
    memcpy(body + body_len, data, len);
    body_len += len;
    body[body_len] = '\0';
    return len;
}

/* GET @p path from @p r with X-Request-Id @p id (NULL: none); the answer goes to body. */
static long get(const struct running *r, const char *path, const char *id)
{
    char url[256];
    char header[160];
    struct curl_slist *headers = NULL;
    CURL *h = curl_easy_init();
    long status = 0;
    CURLcode rc;

    assert_non_null(h);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", r->port, path);
    if (id != NULL) {
        snprintf(header, sizeof(header), "X-Request-Id: %s", id);
        headers = curl_slist_append(NULL, header);
        assert_non_null(headers);
    }
    body_len = 0;
    body[0] = '\0';
    assert_int_equal(curl_easy_setopt(h, CURLOPT_URL, url), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_NOPROXY, "*"), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body), CURLE_OK);
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK)
        fail_msg("GET %s: %s", url, curl_easy_strerror(rc));
    return status;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* How many times @p needle occurs in the log file of @p r now. */
static int count_in_log(const struct running *r, const char *needle)
{
    FILE *f = fopen(r->log_path, "rb");
    size_t n;
    int count = 0;

    assert_non_null(f);
    n = fread(file_text, 1, sizeof(file_text) - 1, f);
    fclose(f);
    assert_true(n < sizeof(file_text) - 1);
    file_text[n] = '\0';
    for (const char *p = strstr(file_text, needle); p != NULL; p = strstr(p + 1, needle))
        count++;
    return count;
}

/*
 * The access line is written when a request completes, which may be just after its answer
 * reached the client: wait (up to WAIT_MS) until @p needle occurs @p want times.
 */
static int wait_in_log(const struct running *r, const char *needle, int want)
{
    uint64_t until = now_ms() + WAIT_MS;
    int n = count_in_log(r, needle);

    while (n < want && now_ms() < until) {
        usleep(10000);
        n = count_in_log(r, needle);
    }
    return n;
}

/* The value of the series @p name in body (a /metrics text), or -1 when absent. */
static long long series(const char *name)
{
    size_t n = strlen(name);

    for (const char *p = body; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');

        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        p = eol != NULL ? eol + 1 : NULL;
    }
    return -1;
}

/*
 * /metrics of @p r until its healthz count is @p want (a request is counted when it
 * completes, just after its answer went out), up to WAIT_MS. Returns the last count seen.
 */
static long long healthz_count(const struct running *r, long long want)
{
    static const char name[] =
        "hcgw_requests_total{route=\"healthz\",method=\"GET\",status=\"200\"}";
    uint64_t until = now_ms() + WAIT_MS;
    long long v;

    for (;;) {
        assert_int_equal(get(r, "/metrics", NULL), 200);
        v = series(name);
        if (v < 0)
            v = 0;
        if (v >= want || now_ms() >= until)
            return v;
        usleep(10000);
    }
}

static void test_two_servers_in_one_process(void **state)
{
    struct running *a = &servers[0];
    struct running *b = &servers[1];
    char id[32];
    int i;

    (void)state;
    start(a, "a", "info");
    start(b, "b", "debug");
    assert_int_not_equal(a->port, b->port);

    for (i = 1; i <= 3; i++) {
        snprintf(id, sizeof(id), "a-%d", i);
        assert_int_equal(get(a, "/healthz", id), 200);
    }
    assert_int_equal(get(b, "/healthz", "b-1"), 200);

    /* Each /metrics counts only its own server's requests. */
    assert_int_equal(healthz_count(a, 3), 3);
    assert_int_equal(series("hcgw_in_flight"), 0);
    assert_int_equal(healthz_count(b, 1), 1);
    assert_int_equal(series("hcgw_in_flight"), 0);

    /* Each log file has its own server's access lines, and none of the other's. */
    for (i = 1; i <= 3; i++) {
        snprintf(id, sizeof(id), "\"request_id\":\"a-%d\"", i);
        assert_int_equal(wait_in_log(a, id, 1), 1);
    }
    assert_int_equal(wait_in_log(b, "\"request_id\":\"b-1\"", 1), 1);
    assert_int_equal(count_in_log(a, "\"request_id\":\"b-"), 0);
    assert_int_equal(count_in_log(b, "\"request_id\":\"a-"), 0);
    assert_int_equal(count_in_log(a, "\"msg\":\"access\",\"request_id\":\"a-"), 3);
    assert_int_equal(count_in_log(b, "\"msg\":\"access\",\"request_id\":\"b-"), 1);

    /* A's level goes up, as a reload would set it: A stops writing access lines, B does not. */
    gw_log_set_level(a->log, GW_LOG_WARN);
    assert_int_equal(gw_log_level(a->log), GW_LOG_WARN);
    assert_int_equal(gw_log_level(b->log), GW_LOG_DEBUG);
    assert_false(gw_log_enabled(a->log, GW_LOG_INFO));
    assert_true(gw_log_enabled(b->log, GW_LOG_DEBUG));
    assert_int_equal(get(a, "/healthz", "a-late"), 200);
    assert_int_equal(get(b, "/healthz", "b-late"), 200);
    /* Counted means completed: with one worker, its access line was decided before the
     * /metrics request that sees the count was served. */
    assert_int_equal(healthz_count(a, 4), 4);
    assert_int_equal(healthz_count(b, 2), 2);
    assert_int_equal(wait_in_log(b, "\"request_id\":\"b-late\"", 1), 1);
    assert_int_equal(count_in_log(a, "\"request_id\":\"a-late\""), 0);
    assert_int_equal(count_in_log(a, "\"request_id\":\"b-"), 0);
    assert_int_equal(count_in_log(b, "\"request_id\":\"a-"), 0);

    /* Stopping one leaves the other serving. */
    stop(a);
    assert_int_equal(get(b, "/healthz", "b-after"), 200);
    assert_int_equal(healthz_count(b, 3), 3);
    assert_int_equal(series("hcgw_in_flight"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_two_servers_in_one_process, teardown),
    };
    int rc;

    servers[0].log_fd = -1;
    servers[1].log_fd = -1;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, group_setup, tmpdir_group_teardown);
    curl_global_cleanup();
    return rc;
}

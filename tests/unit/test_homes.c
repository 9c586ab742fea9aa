/*
 * Unit tests of src/homes.c (contact homes) with the call layer of src/calls.c: two workers,
 * each a gw_loop with its own gw_calls, share one governor, one contact cache and one set of
 * mailboxes, and one test thread steps their loops by hand, so that each test decides exactly
 * when each "worker" runs. The upstream is the real hcgw-sim (its path comes from the build),
 * started once on an ephemeral loopback port and reset before each test; its control API
 * holds calls (a scripted delay_ms), counts them and lists them in arrival order.
 *
 * Calls are submitted on worker 0 for contacts whose home is worker 1 (and on worker 1 itself,
 * as a caller there would), so they are handed off: the tests follow the hand-off and the
 * answer's way back; a caller who leaves before its home ran the call, while the home runs the
 * copy (alone, or shared with a reader on the home), or once the answer is already back; a
 * caller's done that ends another caller whose answer came back in the same wake; a copy the
 * home serves from the cache; single flight, the line of writes and tag coalescing across the
 * two workers; a home that never answers (never woken, or holding the copy past the deadline);
 * a home that closes, gently or by force (the calls waiting in its inbox run on their callers'
 * worker, one of them from the cache); and cancel_all. Each test ends with every call ended
 * exactly once and nothing in flight; the teardown frees everything, so that ASan and
 * LeakSanitizer see any hand-off that was lost or freed twice.
 * Waits poll the loops or the simulator with a bound; nothing sleeps to synchronize.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "hcgw/cache.h"
#include "hcgw/calls.h"
#include "hcgw/config.h"
#include "hcgw/governor.h"
#include "hcgw/homes.h"
#include "hcgw/limits.h"
#include "hcgw/log.h"
#include "hcgw/loop.h"
#include "hcgw/metrics.h"
#include "hcgw/secret.h"
#include "hcgw/upstream.h"

#include "../support/tmpdir.h"

#ifndef HCGW_SIM_BIN
#error "HCGW_SIM_BIN (the path of the built hcgw-sim) must be defined by tests/CMakeLists.txt"
#endif

#define NWORKERS 2
/* The simulator's key for this run: a test key, never a real one. */
#define SIM_KEY "homes-test-key-0123456789"
/* Longest wait for anything the simulator or a loop should do (a failure, not a hang). */
#define WAIT_MS 5000
/* How long one loop iteration may block while the tests poll. */
#define STEP_MS 5
/* The calls' own deadline, far beyond any wait here unless a test sets a shorter one. */
#define CALL_TIMEOUT_MS 8000
/* How long a test watches for something that must not happen (a call that must not go). */
#define QUIET_MS 150
/* A hold on an upstream call long enough for what a test does meanwhile. */
#define HOLD_MS 600
/* The first id of the simulator's seed customers, and how many there are. */
#define SEED_FIRST 1568834u
#define SEED_COUNT 4
#define MAX_REQS 16

/* ---- the simulator ---- */

static struct {
    pid_t pid;
    int out_fd;
    int port;
    char base_url[64];
    char err_path[PATH_MAX];         /* its stderr, read for sanitizer reports when it stops */
} sim = {-1, -1, 0, "", ""};

/*
 * Start hcgw-sim on an ephemeral port and read the port from its one line on stdout. Its
 * stderr goes to a file in tmpdir (it reports there the held calls whose callers left).
 */
static int sim_start(void)
{
    int out[2];
    int err_fd;
    char line[512];
    size_t len = 0;
    uint64_t until = gw_clock_ms() + WAIT_MS;
    const char *p;
    struct pollfd pfd;
    ssize_t n;

    if ((size_t)snprintf(sim.err_path, sizeof(sim.err_path), "%s/sim.err", tmpdir) >=
        sizeof(sim.err_path))
        return -1;
    err_fd = open(sim.err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (err_fd < 0)
        return -1;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(err_fd);
        return -1;
    }
    sim.pid = fork();
    if (sim.pid < 0) {
        close(err_fd);
        return -1;
    }
    if (sim.pid == 0) {
        if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
            _exit(127);
        execl(HCGW_SIM_BIN, HCGW_SIM_BIN, "--port", "0", "--key", SIM_KEY, "--rate-limit", "0",
              "--quiet", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(err_fd);
    sim.out_fd = out[0];
    pfd.fd = sim.out_fd;
    pfd.events = POLLIN;
    while (memchr(line, '\n', len) == NULL && len < sizeof(line) - 1) {
        uint64_t now = gw_clock_ms();

        if (now >= until || poll(&pfd, 1, (int)(until - now)) <= 0)
            return -1;
        n = read(sim.out_fd, line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    line[len] = '\0';
    p = strstr(line, "\"port\":");
    if (p == NULL)
        return -1;
    sim.port = (int)strtol(p + 7, NULL, 10);
    if (sim.port <= 0)
        return -1;
    snprintf(sim.base_url, sizeof(sim.base_url), "http://127.0.0.1:%d/v1", sim.port);
    return 0;
}

/*
 * Stop it with SIGTERM. Returns 0 when it exited 0 and its stderr has no sanitizer report
 * (the report is printed), else -1.
 */
static int sim_stop(void)
{
    static char text[65536];
    int status = 0;
    int rc = -1;
    FILE *f;
    size_t n = 0;

    if (sim.pid > 0) {
        kill(sim.pid, SIGTERM);
        while (waitpid(sim.pid, &status, 0) < 0 && errno == EINTR)
            ;
        rc = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
        sim.pid = -1;
    }
    if (sim.out_fd >= 0)
        close(sim.out_fd);
    sim.out_fd = -1;
    f = sim.err_path[0] != '\0' ? fopen(sim.err_path, "rb") : NULL;
    if (f != NULL) {
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
    }
    text[n] = '\0';
    if (strstr(text, "Sanitizer") != NULL || strstr(text, "runtime error") != NULL) {
        print_error("hcgw-sim stderr:\n%s\n", text);
        rc = -1;
    }
    return rc;
}

struct growbuf {
    char *data;
    size_t len;
};

static size_t on_sim_body(char *data, size_t size, size_t n, void *user)
{
    struct growbuf *b = user;
    size_t len = size * n;
    char *p = realloc(b->data, b->len + len + 1);

    if (p == NULL)
        return 0;
    memcpy(p + b->len, data, len);
    b->len += len;
    p[b->len] = '\0';
    b->data = p;
    return len;
}

/* @p method @p path of the simulator's control API (blocking); returns the parsed answer. */
static json_object *sim_call(const char *method, const char *path, const char *body)
{
    char url[128];
    struct growbuf answer = {NULL, 0};
    CURL *h = curl_easy_init();
    long status = 0;
    CURLcode rc;
    json_object *json;

    assert_non_null(h);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", sim.port, path);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_URL, url), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_NOPROXY, "*"), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)WAIT_MS), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method), CURLE_OK);
    if (body != NULL)
        assert_int_equal(curl_easy_setopt(h, CURLOPT_POSTFIELDS, body), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_sim_body), CURLE_OK);
    assert_int_equal(curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer), CURLE_OK);
    rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK || status != 200) {
        free(answer.data);
        fail_msg("%s %s: %s, status %ld", method, path, curl_easy_strerror(rc), status);
    }
    json = answer.data != NULL ? json_tokener_parse(answer.data) : NULL;
    free(answer.data);
    assert_non_null(json);
    return json;
}

static void sim_reset(void)
{
    json_object_put(sim_call("POST", "/_sim/reset", "{}"));
}

/* The next /v1 call is held @p ms, then answered for real (a passthrough entry). */
static void sim_hold_next(int ms)
{
    char entry[64];

    snprintf(entry, sizeof(entry), "{\"delay_ms\":%d}", ms);
    json_object_put(sim_call("POST", "/_sim/script", entry));
}

/* /v1 calls the simulator has received since its last reset. */
static int sim_count(void)
{
    json_object *stats = sim_call("GET", "/_sim/stats", NULL);
    json_object *v;
    int n = -1;

    if (json_object_object_get_ex(stats, "requests", &v))
        n = json_object_get_int(v);
    json_object_put(stats);
    assert_true(n >= 0);
    return n;
}

/* The journal's calls, oldest first: "METHOD path body" lines, up to @p max. */
static int sim_journal(char lines[][256], int max)
{
    json_object *root = sim_call("GET", "/_sim/requests", NULL);
    json_object *list;
    json_object *e;
    json_object *m;
    json_object *p;
    json_object *b;
    int n;

    assert_true(json_object_object_get_ex(root, "requests", &list));
    n = (int)json_object_array_length(list);
    assert_true(n <= max);
    for (int i = 0; i < n; i++) {
        e = json_object_array_get_idx(list, (size_t)i);
        assert_true(json_object_object_get_ex(e, "method", &m));
        assert_true(json_object_object_get_ex(e, "path", &p));
        json_object_object_get_ex(e, "body", &b);
        snprintf(lines[i], 256, "%s %s %s", json_object_get_string(m), json_object_get_string(p),
                 b != NULL && json_object_is_type(b, json_type_string) ? json_object_get_string(b)
                                                                       : "");
    }
    json_object_put(root);
    return n;
}

/* ---- the two workers ---- */

static struct gw_config *cfg;
static struct gw_secret *secret;
static struct gw_log *logger;

struct worker {
    int index;
    struct gw_loop *loop;
    struct gw_calls *calls;
};

static struct {
    struct gw_metrics_registry *registry;
    struct gw_calls_shared shared;
    struct worker w[NWORKERS];
} world;

/* The worker whose loop the test is stepping now, -1 outside any step. */
static int stepping = -1;

/* What server.c's on_wake does for the homes: read this worker's mailbox. */
static void on_wake(void *data)
{
    struct worker *w = data;

    gw_homes_run(world.shared.homes, w->index);
}

static void world_new(void)
{
    memset(&world, 0, sizeof(world));
    world.registry = gw_metrics_registry_new();
    assert_non_null(world.registry);
    world.shared.governor = gw_governor_new(cfg);
    assert_non_null(world.shared.governor);
    world.shared.cache = gw_cache_new();
    assert_non_null(world.shared.cache);
    assert_int_equal(gw_cache_configure(world.shared.cache, cfg->cache.ttl_ms,
                                        cfg->cache.max_entries, cfg->cache.max_bytes),
                     0);
    world.shared.homes = gw_homes_new(NWORKERS);
    assert_non_null(world.shared.homes);
    for (int i = 0; i < NWORKERS; i++) {
        struct worker *w = &world.w[i];
        struct gw_metrics *m = gw_metrics_register(world.registry);

        assert_non_null(m);
        w->index = i;
        w->loop = gw_loop_new();
        assert_non_null(w->loop);
        w->calls = gw_calls_new(i, w->loop, cfg, secret, m, &world.shared, logger);
        assert_non_null(w->calls);
        gw_homes_attach(world.shared.homes, i, w->loop, w->calls);
        gw_loop_on_wake(w->loop, on_wake, w);
    }
}

/* One iteration of worker @p i's loop, blocking at most @p wait_ms. */
static void step(int i, int wait_ms)
{
    stepping = i;
    assert_true(gw_loop_run_once(world.w[i].loop, wait_ms) >= 0);
    stepping = -1;
}

/* Step the workers in @p mask (bit i: worker i), round after round, until @p cond holds. */
static bool run_until(unsigned mask, bool (*cond)(const void *), const void *arg, int max_ms)
{
    uint64_t until = gw_clock_ms() + (uint64_t)max_ms;

    while (!cond(arg)) {
        if (gw_clock_ms() >= until)
            return false;
        for (int i = 0; i < NWORKERS; i++) {
            if (mask & (1u << i))
                step(i, STEP_MS);
        }
    }
    return true;
}

/* Step the workers in @p mask for @p ms, whatever happens. */
static void run_for(unsigned mask, int ms)
{
    uint64_t until = gw_clock_ms() + (uint64_t)ms;

    while (gw_clock_ms() < until) {
        for (int i = 0; i < NWORKERS; i++) {
            if (mask & (1u << i))
                step(i, STEP_MS);
        }
    }
}

#define W0 1u
#define W1 2u
#define BOTH 3u

static size_t in_flight(int i)
{
    return gw_calls_in_flight(world.w[i].calls);
}

static size_t sent(int i)
{
    return gw_homes_sent(world.shared.homes, i);
}

/* ---- calls ---- */

struct req {
    struct gw_call call;
    char url[GW_MAX_UPSTREAM_URL];
    char body[256];
    char id[32];
    int ndone;                       /* times done ran */
    bool served;                     /* submit served it from the cache: done never runs */
    int done_on;                     /* the worker stepping when it ran, -1: outside a step */
    struct req *partner;             /* its done cancels this one, on worker 0, if still live */
};

static struct req reqs[MAX_REQS];
static int nreqs;

static void on_done(struct gw_call *call)
{
    struct req *r = call->data;

    r->ndone++;
    r->done_on = stepping;
    if (r->partner != NULL && r->partner->ndone == 0)
        gw_calls_cancel(world.w[0].calls, &r->partner->call, GW_ERR_INTERNAL);
}

static struct req *new_req(const char *method, enum gw_cache_role role, uint64_t cid,
                           const char *suffix, const char *body, enum gw_call_merge merge)
{
    struct req *r;

    assert_true(nreqs < MAX_REQS);
    r = &reqs[nreqs];
    memset(r, 0, sizeof(*r));
    snprintf(r->url, sizeof(r->url), "%s/customers/%llu%s", sim.base_url,
             (unsigned long long)cid, suffix);
    snprintf(r->id, sizeof(r->id), "homes-%d", nreqs);
    nreqs++;
    r->done_on = -2;
    r->call.method = method;
    r->call.url = r->url;
    if (body != NULL) {
        snprintf(r->body, sizeof(r->body), "%s", body);
        r->call.body = r->body;
        r->call.body_len = strlen(r->body);
    }
    r->call.retryable = strcmp(method, "GET") == 0;
    r->call.request_id = r->id;
    r->call.done = on_done;
    r->call.data = r;
    r->call.cache_role = role;
    r->call.contact_id = cid;
    r->call.max_age_ms = role == GW_CACHE_READ ? UINT64_MAX : 0;
    r->call.merge = merge;
    return r;
}

static struct req *read_req(uint64_t cid)
{
    return new_req("GET", GW_CACHE_READ, cid, "", NULL, GW_MERGE_NONE);
}

static struct req *patch_req(uint64_t cid, const char *name)
{
    char body[128];

    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
    return new_req("PATCH", GW_CACHE_WRITE, cid, "", body, GW_MERGE_NONE);
}

static struct req *tag_add_req(uint64_t cid, const char *tag)
{
    char body[128];

    snprintf(body, sizeof(body), "{\"tags\":[{\"name\":\"%s\"}]}", tag);
    return new_req("PUT", GW_CACHE_WRITE, cid, "/tags", body, GW_MERGE_TAGS_ADD);
}

/* Submit @p r on worker @p i with a deadline @p timeout_ms from now (that loop's now). */
static int submit_in(int i, struct req *r, uint64_t timeout_ms)
{
    gw_loop_update_time(world.w[i].loop);
    r->call.deadline_ms = gw_loop_now(world.w[i].loop) + timeout_ms;
    return gw_calls_submit(world.w[i].calls, &r->call);
}

static int submit(int i, struct req *r)
{
    return submit_in(i, r, CALL_TIMEOUT_MS);
}

static bool is_done(const void *arg)
{
    return ((const struct req *)arg)->ndone > 0;
}

static bool all_done(const void *arg)
{
    (void)arg;
    for (int i = 0; i < nreqs; i++) {
        if (reqs[i].ndone == 0 && !reqs[i].served)
            return false;
    }
    return true;
}

static bool sim_reached(const void *arg)
{
    return sim_count() >= *(const int *)arg;
}

static bool home_idle(const void *arg)
{
    (void)arg;
    return in_flight(1) == 0;
}

static bool all_idle(const void *arg)
{
    (void)arg;
    for (int i = 0; i < NWORKERS; i++) {
        if (in_flight(i) != 0)
            return false;
    }
    return true;
}

/* The worker stepped until the simulator has received @p n calls in all (it may hold them). */
static void until_sim_has(unsigned mask, int n)
{
    assert_true(run_until(mask, sim_reached, &n, WAIT_MS));
}

/* Ended once, on worker 0's loop, with HelpCrunch's 200 and the customer @p cid. */
static void assert_answered(const struct req *r, int on, uint64_t cid)
{
    char id[48];

    assert_int_equal(r->ndone, 1);
    assert_int_equal(r->done_on, on);
    assert_int_equal(r->call.out.failure, GW_OK);
    assert_int_equal(r->call.out.status, 200);
    assert_non_null(r->call.out.body);
    snprintf(id, sizeof(id), "\"id\":%llu", (unsigned long long)cid);
    assert_non_null(strstr(r->call.out.body, id));
}

/* Ended once, at once (outside any loop step), with @p err. */
static void assert_failed_now(const struct req *r, enum gw_err err)
{
    assert_int_equal(r->ndone, 1);
    assert_int_equal(r->done_on, -1);
    assert_int_equal(r->call.out.failure, err);
}

/*
 * The end of every test: each call ended exactly once, nothing in flight on either worker and
 * nothing handed off. Answers of abandoned hand-offs still on their way home are let in.
 */
static void assert_settled(void)
{
    for (int i = 0; i < nreqs; i++)
        assert_int_equal(reqs[i].ndone, reqs[i].served ? 0 : 1);
    assert_true(run_until(BOTH, all_idle, NULL, WAIT_MS));
    run_for(BOTH, 2 * STEP_MS);
    for (int i = 0; i < NWORKERS; i++) {
        assert_int_equal(in_flight(i), 0);
        assert_int_equal(sent(i), 0);
    }
    for (int i = 0; i < nreqs; i++)
        assert_int_equal(reqs[i].ndone, reqs[i].served ? 0 : 1);
}

/* A seed customer whose home is worker @p home (the @p nth such one, from 0). */
static uint64_t contact_of(int home, int nth)
{
    for (uint64_t id = SEED_FIRST; id < SEED_FIRST + SEED_COUNT; id++) {
        if (gw_homes_home_of(world.shared.homes, id) == home && nth-- == 0)
            return id;
    }
    fail_msg("no seed contact %d with home %d", nth, home);
    return 0;
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    char conf[1024];
    char path[PATH_MAX];
    char *errors = NULL;

    (void)state;
    unsetenv("HCGW_API_KEY");
    unsetenv("HCGW_API_KEY_FILE");
    if (tmpdir_make("homes") != 0 || sim_start() != 0)
        return -1;
    /* Two workers; no quota (the simulator's limit is off too), no retries: one call, one
     * upstream attempt, so that the simulator's counts are the calls' counts. */
    snprintf(conf, sizeof(conf),
             "listen = { address = \"127.0.0.1\"; port = 0; };\n"
             "server = { workers = %d; };\n"
             "upstream = { base_url = \"%s\"; api_key = \"%s\"; max_retries = 0;"
             " timeout_ms = %d; };\n"
             "quota = { requests_per_minute = 0; };\n"
             "cache = { ttl_ms = 60000; };\n"
             "coalesce = { tags = true; };\n"
             "log = { level = \"error\"; };\n",
             NWORKERS, sim.base_url, SIM_KEY, CALL_TIMEOUT_MS);
    tmpdir_write("homes.conf", conf, strlen(conf), path, sizeof(path));
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
    return cfg != NULL && secret != NULL && logger != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    int rc = sim_stop();

    gw_log_free(logger);
    gw_secret_free(secret);
    gw_config_free(cfg);
    if (rc != 0)
        print_error("hcgw-sim did not stop cleanly\n");
    return (tmpdir_group_teardown(state) == 0 && rc == 0) ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    nreqs = 0;
    sim_reset();
    world_new();
    return 0;
}

/*
 * Whatever a test left (it may have failed half way): every call ends, the homes close, and
 * everything is freed in the order the server frees it.
 */
static int teardown(void **state)
{
    (void)state;
    stepping = -1;
    for (int i = 0; i < NWORKERS; i++) {
        if (world.w[i].calls != NULL)
            gw_calls_cancel_all(world.w[i].calls, GW_ERR_SHUTTING_DOWN);
    }
    for (int i = 0; i < NWORKERS; i++) {
        if (world.shared.homes != NULL)
            gw_homes_close(world.shared.homes, i, true);
    }
    for (int i = 0; i < NWORKERS; i++) {
        gw_calls_free(world.w[i].calls);
        gw_loop_free(world.w[i].loop);
    }
    gw_homes_free(world.shared.homes);
    gw_governor_free(world.shared.governor);
    gw_cache_free(world.shared.cache);
    gw_metrics_registry_free(world.registry);
    for (int i = 0; i < nreqs; i++)
        gw_call_release(&reqs[i].call);
    memset(&world, 0, sizeof(world));
    nreqs = 0;
    return 0;
}

/* ---- the tests ---- */

/* A read handed to its home comes back: done once, on the caller's worker, with the answer. */
static void test_hand_off_read(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *r = read_req(cid);
    struct req *again;
    char journal[4][256];
    char want[64];

    (void)state;
    assert_int_equal(gw_homes_home_of(world.shared.homes, cid), 1);
    assert_int_equal(submit(0, r), 0);
    assert_int_equal(in_flight(0), 1);
    assert_int_equal(sent(0), 1);
    assert_int_equal(in_flight(1), 0);

    /* Its caller's worker alone cannot run it: it waits in the home's inbox. */
    run_for(W0, QUIET_MS);
    assert_int_equal(r->ndone, 0);
    assert_int_equal(sim_count(), 0);
    assert_int_equal(in_flight(0), 1);

    /* The home takes it at its next wake and runs the copy. */
    step(1, 0);
    assert_int_equal(in_flight(1), 1);
    assert_int_equal(r->ndone, 0);

    assert_true(run_until(BOTH, is_done, r, WAIT_MS));
    assert_answered(r, 0, cid);
    assert_int_equal(r->call.cache, GW_CACHE_MISS);
    assert_int_equal(r->call.attempts, 1);
    assert_int_equal(in_flight(0), 0);
    assert_int_equal(sent(0), 0);
    assert_int_equal(in_flight(1), 0);
    assert_int_equal(sim_journal(journal, 4), 1);
    snprintf(want, sizeof(want), "GET /v1/customers/%llu ", (unsigned long long)cid);
    assert_string_equal(journal[0], want);

    /* The home filled the shared cache: the next read is served on worker 0, not handed off. */
    again = read_req(cid);
    assert_int_equal(submit(0, again), GW_CALLS_SERVED);
    assert_int_equal(again->call.cache, GW_CACHE_HIT);
    assert_int_equal(sent(0), 0);
    again->served = true;
    assert_non_null(strstr(again->call.out.body, "\"id\""));
    assert_settled();
}

/* The caller leaves while its call still waits in the home's inbox: it never goes upstream. */
static void test_cancel_queued(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *r = read_req(cid);

    (void)state;
    assert_int_equal(submit(0, r), 0);
    gw_calls_cancel(world.w[0].calls, &r->call, GW_ERR_INTERNAL);
    assert_failed_now(r, GW_ERR_INTERNAL);
    assert_int_equal(in_flight(0), 0);
    assert_int_equal(sent(0), 0);

    /* The home sees the abandoned hop and sends it back unrun. */
    step(1, 0);
    assert_int_equal(in_flight(1), 0);
    run_for(W1, QUIET_MS);
    assert_int_equal(in_flight(1), 0);
    assert_int_equal(sim_count(), 0);

    /* Its sender frees it (LeakSanitizer would see it otherwise); done does not run again. */
    run_for(W0, 2 * STEP_MS);
    assert_int_equal(r->ndone, 1);
    assert_settled();
    assert_int_equal(sim_count(), 0);
}

/* The caller leaves while the home's copy is at HelpCrunch: the home cancels the copy. */
static void test_cancel_hosted(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *r = read_req(cid);

    (void)state;
    sim_hold_next(2 * WAIT_MS);
    assert_int_equal(submit(0, r), 0);
    until_sim_has(W1, 1);
    assert_int_equal(in_flight(1), 1);
    assert_int_equal(r->ndone, 0);

    gw_calls_cancel(world.w[0].calls, &r->call, GW_ERR_INTERNAL);
    assert_failed_now(r, GW_ERR_INTERNAL);
    assert_int_equal(in_flight(0), 0);
    assert_int_equal(sent(0), 0);

    /* The home's next wake cancels its copy (the simulator still holds the call). */
    step(1, 0);
    assert_int_equal(in_flight(1), 0);
    run_for(W0, 2 * STEP_MS);
    assert_int_equal(r->ndone, 1);
    assert_int_equal(sim_count(), 1);
    assert_settled();
}

/* The caller who left had started the home's flight: it goes on for a reader on the home. */
static void test_cancel_shared_copy(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *away = read_req(cid);
    struct req *stays = read_req(cid);

    (void)state;
    sim_hold_next(HOLD_MS);
    assert_int_equal(submit(0, away), 0);
    until_sim_has(W1, 1);
    assert_int_equal(submit(1, stays), 0);
    assert_int_equal(stays->call.cache, GW_CACHE_COLLAPSED);
    assert_int_equal(in_flight(1), 2);

    gw_calls_cancel(world.w[0].calls, &away->call, GW_ERR_INTERNAL);
    assert_failed_now(away, GW_ERR_INTERNAL);
    step(1, 0);
    assert_int_equal(in_flight(1), 1);

    assert_true(run_until(BOTH, is_done, stays, WAIT_MS));
    assert_answered(stays, 1, cid);
    assert_int_equal(sim_count(), 1);
    assert_settled();
}

/* The answer is already back in the caller's mailbox when the caller leaves: it is dropped. */
static void test_answer_to_nobody(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *r = read_req(cid);

    (void)state;
    assert_int_equal(submit(0, r), 0);
    step(1, 0);
    assert_int_equal(in_flight(1), 1);
    assert_true(run_until(W1, home_idle, NULL, WAIT_MS));
    assert_int_equal(r->ndone, 0);
    assert_int_equal(sent(0), 1);

    gw_calls_cancel(world.w[0].calls, &r->call, GW_ERR_INTERNAL);
    assert_failed_now(r, GW_ERR_INTERNAL);
    assert_null(r->call.out.body);
    run_for(W0, 2 * STEP_MS);
    assert_int_equal(r->ndone, 1);
    assert_int_equal(r->call.out.failure, GW_ERR_INTERNAL);
    assert_int_equal(sim_count(), 1);
    assert_settled();
}

/* Two answers come back in one wake, and the first caller's done ends the second caller. */
static void test_done_ends_another(void **state)
{
    struct req *a = read_req(contact_of(1, 0));
    struct req *b = read_req(contact_of(1, 1));
    struct req *won;
    struct req *lost;

    (void)state;
    a->partner = b;
    b->partner = a;
    assert_int_equal(submit(0, a), 0);
    assert_int_equal(submit(0, b), 0);
    step(1, 0);
    assert_int_equal(in_flight(1), 2);
    assert_true(run_until(W1, home_idle, NULL, WAIT_MS));
    assert_int_equal(a->ndone + b->ndone, 0);

    step(0, 0);
    won = a->call.out.failure == GW_OK ? a : b;
    lost = won == a ? b : a;
    assert_answered(won, 0, won->call.contact_id);
    assert_int_equal(lost->ndone, 1);
    assert_int_equal(lost->done_on, 0);
    assert_int_equal(lost->call.out.failure, GW_ERR_INTERNAL);
    assert_int_equal(sent(0), 0);
    assert_int_equal(sim_count(), 2);
    assert_settled();
}

/* The simulator's next new id after a reset (docs/simulator.md). */
#define NEW_ID (SEED_FIRST + SEED_COUNT)

/*
 * Create a customer (NEW_ID) on worker @p i, which runs it at once (creates are never handed
 * off) and stores the new customer in the cache.
 */
static void create_on(int i)
{
    struct req *create = new_req("POST", GW_CACHE_CREATE, 0, "", "{\"name\":\"homes-new\"}",
                                 GW_MERGE_NONE);
    char id[32];

    snprintf(create->url, sizeof(create->url), "%s/customers", sim.base_url);
    assert_int_equal(submit(i, create), 0);
    assert_int_equal(sent(i), 1); /* the read handed off before it, only */
    assert_true(run_until(1u << i, is_done, create, WAIT_MS));
    assert_int_equal(create->call.out.status, 201);
    assert_true(create->call.cache_stored);
    snprintf(id, sizeof(id), "\"id\":%llu", (unsigned long long)NEW_ID);
    assert_non_null(strstr(create->call.out.body, id));
}

/*
 * The home finds the contact in the cache when it takes the call (a contact created on the
 * caller's worker meanwhile): the copy is served there and the hit comes back.
 */
static void test_copy_served_at_home(void **state)
{
    const int home = gw_homes_home_of(world.shared.homes, NEW_ID);
    const int caller = 1 - home;
    struct req *r = read_req(NEW_ID);

    (void)state;
    assert_int_equal(submit(caller, r), 0);
    create_on(caller);
    step(home, 0);
    assert_int_equal(in_flight(home), 0);
    assert_true(run_until(1u << caller, is_done, r, WAIT_MS));
    assert_answered(r, caller, NEW_ID);
    assert_int_equal(r->call.cache, GW_CACHE_HIT);
    assert_non_null(strstr(r->call.out.body, "homes-new"));
    assert_int_equal(sim_count(), 1);
    assert_settled();
}

/*
 * A call bounced back by a home closed by force runs as a submit on its caller's worker would:
 * here the cache answers it (the contact was created meanwhile), and done still runs once.
 */
static void test_bounced_served_locally(void **state)
{
    const int home = gw_homes_home_of(world.shared.homes, NEW_ID);
    const int caller = 1 - home;
    struct req *r = read_req(NEW_ID);

    (void)state;
    assert_int_equal(submit(caller, r), 0);
    create_on(caller);
    assert_true(gw_homes_close(world.shared.homes, home, true));
    step(caller, 0);
    assert_answered(r, caller, NEW_ID);
    assert_int_equal(r->call.cache, GW_CACHE_HIT);
    assert_int_equal(sent(caller), 0);
    assert_int_equal(sim_count(), 1);
    assert_settled();
}

/* Reads of one contact from both workers while the first is held: one upstream call. */
static void test_single_flight_across_workers(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *a = read_req(cid);
    struct req *b = read_req(cid);
    struct req *c = read_req(cid);

    (void)state;
    sim_hold_next(HOLD_MS);
    assert_int_equal(submit(0, a), 0);
    until_sim_has(W1, 1);
    /* A caller on the home itself joins the copy's flight. */
    assert_int_equal(submit(1, b), 0);
    assert_int_equal(b->call.cache, GW_CACHE_COLLAPSED);
    /* So does a second caller on worker 0, once the home takes it. */
    assert_int_equal(submit(0, c), 0);
    assert_int_equal(sent(0), 2);

    assert_true(run_until(BOTH, all_done, NULL, WAIT_MS));
    assert_answered(a, 0, cid);
    assert_answered(b, 1, cid);
    assert_answered(c, 0, cid);
    assert_int_equal(a->call.cache, GW_CACHE_MISS);
    assert_int_equal(c->call.cache, GW_CACHE_COLLAPSED);
    assert_string_equal(a->call.out.body, b->call.out.body);
    assert_string_equal(a->call.out.body, c->call.out.body);
    assert_int_equal(sim_count(), 1);
    assert_settled();
}

/* The journal entry @p line is @p method of @p cid@p suffix and its body holds @p needle. */
static void assert_journal(const char *line, const char *method, uint64_t cid,
                           const char *suffix, const char *needle)
{
    char want[128];

    snprintf(want, sizeof(want), "%s /v1/customers/%llu%s ", method, (unsigned long long)cid,
             suffix);
    if (strncmp(line, want, strlen(want)) != 0 || strstr(line + strlen(want), needle) == NULL)
        fail_msg("journal entry \"%s\": want \"%s\" with \"%s\"", line, want, needle);
}

/* Writes of one contact from both workers go upstream one at a time, in their line's order. */
static void test_writes_in_one_line(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *w1 = patch_req(cid, "one");
    struct req *w2 = patch_req(cid, "two");
    struct req *w3 = patch_req(cid, "three");
    char journal[8][256];

    (void)state;
    sim_hold_next(HOLD_MS);
    assert_int_equal(submit(0, w1), 0);
    until_sim_has(W1, 1);
    assert_int_equal(submit(1, w2), 0);
    assert_int_equal(submit(0, w3), 0);
    step(1, 0);
    /* The home holds all three: one at HelpCrunch, two waiting in line behind it. */
    assert_int_equal(in_flight(1), 3);

    /* While the first is held, neither of the others goes. */
    run_for(BOTH, QUIET_MS);
    assert_int_equal(sim_count(), 1);
    assert_int_equal(w1->ndone + w2->ndone + w3->ndone, 0);

    assert_true(run_until(BOTH, all_done, NULL, WAIT_MS));
    assert_answered(w1, 0, cid);
    assert_answered(w2, 1, cid);
    assert_answered(w3, 0, cid);
    assert_non_null(strstr(w3->call.out.body, "\"name\":\"three\""));
    assert_int_equal(w1->call.coalesced, 1);
    assert_int_equal(w2->call.coalesced, 1);
    assert_int_equal(w3->call.coalesced, 1);
    assert_int_equal(sim_journal(journal, 8), 3);
    assert_journal(journal[0], "PATCH", cid, "", "\"one\"");
    assert_journal(journal[1], "PATCH", cid, "", "\"two\"");
    assert_journal(journal[2], "PATCH", cid, "", "\"three\"");
    assert_settled();
}

/* Tag additions from both workers that wait behind a held write merge into one call. */
static void test_tags_merge_across_workers(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *w = patch_req(cid, "held");
    struct req *t1 = tag_add_req(cid, "homes-a");
    struct req *t2 = tag_add_req(cid, "homes-b");
    char journal[8][256];

    (void)state;
    sim_hold_next(HOLD_MS);
    assert_int_equal(submit(0, w), 0);
    until_sim_has(W1, 1);
    assert_int_equal(submit(0, t1), 0);
    assert_int_equal(submit(1, t2), 0);
    step(1, 0);
    assert_int_equal(in_flight(1), 3);

    assert_true(run_until(BOTH, all_done, NULL, WAIT_MS));
    assert_answered(w, 0, cid);
    assert_answered(t1, 0, cid);
    assert_answered(t2, 1, cid);
    assert_int_equal(t1->call.coalesced, 2);
    assert_int_equal(t2->call.coalesced, 2);
    assert_non_null(strstr(t1->call.out.body, "homes-a"));
    assert_non_null(strstr(t1->call.out.body, "homes-b"));
    assert_int_equal(sim_journal(journal, 8), 2);
    assert_journal(journal[0], "PATCH", cid, "", "\"held\"");
    assert_journal(journal[1], "PUT", cid, "/tags", "homes-a");
    assert_journal(journal[1], "PUT", cid, "/tags", "homes-b");
    assert_settled();
}

/* A home that never runs: the caller's worker gives up shortly after the call's deadline. */
static void test_late_answer(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *r = read_req(cid);
    const uint64_t timeout = 100;
    uint64_t start = gw_clock_ms();

    (void)state;
    assert_int_equal(submit_in(0, r, timeout), 0);
    assert_true(run_until(W0, is_done, r, WAIT_MS));
    assert_int_equal(r->ndone, 1);
    assert_int_equal(r->done_on, 0);
    assert_int_equal(r->call.out.failure, GW_ERR_UPSTREAM_TIMEOUT);
    /* Not before the deadline and its grace (both in whole ms of the same clock). */
    assert_true(gw_clock_ms() - start >= timeout + GW_HANDOFF_GRACE_MS);
    assert_int_equal(in_flight(0), 0);
    assert_int_equal(sent(0), 0);

    /* The home wakes at last: the hop is abandoned, nothing runs for it. */
    step(1, 0);
    assert_int_equal(in_flight(1), 0);
    run_for(W1, QUIET_MS);
    assert_int_equal(sim_count(), 0);
    run_for(W0, 2 * STEP_MS);
    assert_int_equal(r->ndone, 1);
    assert_settled();
}

/* No answer by the deadline and its grace while the home runs the copy: the copy is cancelled. */
static void test_late_while_hosted(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *r = read_req(cid);

    (void)state;
    sim_hold_next(2 * WAIT_MS);
    assert_int_equal(submit_in(0, r, 100), 0);
    until_sim_has(W1, 1);
    assert_int_equal(in_flight(1), 1);
    assert_true(run_until(W0, is_done, r, WAIT_MS));
    assert_int_equal(r->done_on, 0);
    assert_int_equal(r->call.out.failure, GW_ERR_UPSTREAM_TIMEOUT);
    assert_int_equal(sent(0), 0);

    step(1, 0);
    assert_int_equal(in_flight(1), 0);
    run_for(W0, 2 * STEP_MS);
    assert_int_equal(r->ndone, 1);
    assert_int_equal(sim_count(), 1);
    assert_settled();
}

/* A home closes only when it hosts nothing; after that its contacts run on their callers. */
static void test_close_when_idle(void **state)
{
    uint64_t cid = contact_of(1, 0);
    struct req *r = read_req(cid);
    struct req *local;
    struct req *write;
    struct gw_call probe;
    int count;

    (void)state;
    sim_hold_next(HOLD_MS);
    assert_int_equal(submit(0, r), 0);
    /* Queued there. */
    assert_false(gw_homes_close(world.shared.homes, 1, false));
    until_sim_has(W1, 1);
    /* Hosted there. */
    assert_false(gw_homes_close(world.shared.homes, 1, false));
    assert_true(run_until(BOTH, is_done, r, WAIT_MS));
    assert_answered(r, 0, cid);
    assert_true(gw_homes_close(world.shared.homes, 1, false));

    /* Closed: gw_homes_send takes nothing more... */
    memset(&probe, 0, sizeof(probe));
    probe.method = "GET";
    probe.url = r->url;
    probe.request_id = "probe";
    probe.cache_role = GW_CACHE_READ;
    probe.contact_id = cid;
    assert_int_equal(gw_homes_send(world.shared.homes, 0, 1, &probe), 1);
    assert_null(probe.hop);
    assert_int_equal(sent(0), 0);

    /* ...so a read (fresh: past the cache) and a write of its contact run on worker 0 alone. */
    local = read_req(cid);
    local->call.max_age_ms = 0;
    assert_int_equal(submit(0, local), 0);
    write = patch_req(cid, "local");
    assert_int_equal(submit(0, write), 0);
    assert_int_equal(sent(0), 0);
    assert_int_equal(in_flight(0), 2);
    count = sim_count();
    assert_true(run_until(W0, all_done, NULL, WAIT_MS));
    assert_answered(local, 0, cid);
    assert_int_equal(local->call.cache, GW_CACHE_BYPASS);
    assert_answered(write, 0, cid);
    assert_non_null(strstr(write->call.out.body, "\"name\":\"local\""));
    assert_int_equal(sim_count(), count + 2);
    assert_int_equal(in_flight(1), 0);
    assert_settled();
}

/*
 * Closed by force: the calls still in the inbox go back and run on their caller's worker (a
 * read and a write), one whose caller left is only dropped, and the one the home already runs
 * still answers.
 */
static void test_force_close(void **state)
{
    uint64_t cid = contact_of(1, 0);
    uint64_t other = contact_of(1, 1);
    struct req *hosted = read_req(cid);
    struct req *queued = read_req(other);
    struct req *write = patch_req(other, "bounced");
    struct req *left = read_req(other);
    char journal[8][256];

    (void)state;
    sim_hold_next(HOLD_MS);
    assert_int_equal(submit(0, hosted), 0);
    until_sim_has(W1, 1);
    assert_int_equal(submit(0, queued), 0);
    assert_int_equal(submit(0, write), 0);
    assert_int_equal(submit(0, left), 0);
    gw_calls_cancel(world.w[0].calls, &left->call, GW_ERR_INTERNAL);
    assert_failed_now(left, GW_ERR_INTERNAL);
    assert_int_equal(sent(0), 3);

    assert_true(gw_homes_close(world.shared.homes, 1, true));
    /* The queued ones came back to run here; the hosted one still runs at its home. */
    assert_true(run_until(W0, is_done, queued, WAIT_MS));
    assert_true(run_until(W0, is_done, write, WAIT_MS));
    assert_answered(queued, 0, other);
    assert_int_equal(queued->call.cache, GW_CACHE_MISS);
    assert_answered(write, 0, other);
    assert_non_null(strstr(write->call.out.body, "\"name\":\"bounced\""));
    assert_int_equal(left->ndone, 1);
    assert_int_equal(hosted->ndone, 0);
    assert_int_equal(in_flight(1), 1);
    assert_int_equal(sim_count(), 3);

    assert_true(run_until(BOTH, is_done, hosted, WAIT_MS));
    assert_answered(hosted, 0, cid);
    assert_int_equal(sim_journal(journal, 8), 3);
    assert_settled();
}

/* cancel_all on the caller's worker ends every call it handed off, each once. */
static void test_cancel_all(void **state)
{
    uint64_t cid = contact_of(1, 0);
    uint64_t other = contact_of(1, 1);
    uint64_t mine = contact_of(0, 0);
    struct req *hosted = read_req(cid);
    struct req *write = patch_req(cid, "never");
    struct req *queued = read_req(other);
    struct req *local = read_req(mine);

    (void)state;
    sim_hold_next(2 * WAIT_MS);
    assert_int_equal(submit(0, hosted), 0);
    until_sim_has(W1, 1);
    sim_hold_next(2 * WAIT_MS);
    assert_int_equal(submit(0, local), 0);
    until_sim_has(W0, 2);
    assert_int_equal(submit(0, write), 0);
    assert_int_equal(submit(0, queued), 0);
    assert_int_equal(sent(0), 3);
    assert_int_equal(in_flight(0), 4);

    gw_calls_cancel_all(world.w[0].calls, GW_ERR_SHUTTING_DOWN);
    assert_failed_now(hosted, GW_ERR_SHUTTING_DOWN);
    assert_failed_now(write, GW_ERR_SHUTTING_DOWN);
    assert_failed_now(queued, GW_ERR_SHUTTING_DOWN);
    assert_failed_now(local, GW_ERR_SHUTTING_DOWN);
    assert_int_equal(sent(0), 0);
    assert_int_equal(in_flight(0), 0);

    /* The home cancels the copy it runs and runs none of the others. */
    step(1, 0);
    assert_int_equal(in_flight(1), 0);
    run_for(BOTH, QUIET_MS);
    assert_int_equal(sim_count(), 2);
    assert_settled();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hand_off_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_hosted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_shared_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_to_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_ends_another, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_served_at_home, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounced_served_locally, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_flight_across_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writes_in_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_merge_across_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_while_hosted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_when_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_force_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_all, setup, teardown),
    };
    int rc;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}

/*
 * Unit tests of src/metrics.c: blocks are registered as workers would register them, counted
 * into with gw_metrics_request (by route, method and status) and gw_metrics_observe, and the
 * rendered Prometheus text is checked twice: by a small validator of the exposition format
 * (HELP then TYPE once per family, samples only under their family, counters named _total,
 * histogram buckets ascending and cumulative and ending in +Inf equal to _count), and by the
 * exact value of each series the test expects. The quota governor's lines appear only when a
 * governor is set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hcgw/config.h"
#include "hcgw/governor.h"
#include "hcgw/limits.h"
#include "hcgw/metrics.h"
#include "hcgw/router.h"
#include "hcgw/version.h"

/* The statuses counted by name, written out independently of src/metrics.c. */
static const int named_statuses[GW_METRICS_STATUSES] = {200, 201, 204, 400, 401, 403, 404,
                                                        405, 409, 413, 415, 422, 429, 499,
                                                        500, 502, 503, 504, 414};
/* The histogram's upper bounds as rendered, in seconds. */
static const char *const bucket_labels[GW_METRICS_BUCKETS + 1] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5", "1", "2.5", "5", "10", "+Inf"};

/* The registry the tests count into, as a server's workers would (made by the group setup). */
static struct gw_metrics_registry *reg;

/* Released by the teardown, so a failed assertion leaks nothing. */
static char *rendered;
static struct gw_metrics_registry *other_reg; /* a second server's, in test_registries_apart */
static char *other_rendered;
static struct gw_governor *test_governor;

static int group_setup(void **state)
{
    (void)state;
    reg = gw_metrics_registry_new();
    return reg != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    gw_metrics_registry_free(reg);
    reg = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(rendered);
    rendered = NULL;
    free(other_rendered);
    other_rendered = NULL;
    gw_metrics_registry_free(other_reg);
    other_reg = NULL;
    gw_metrics_set_governor(reg, NULL);
    gw_governor_free(test_governor);
    test_governor = NULL;
    gw_metrics_reset(reg);
    return 0;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- a validator of the Prometheus text format (0.0.4), as much as hcgw uses ---- */

struct family {
    char name[96];
    char type[16];
};

static bool valid_name(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || !(s[0] == '_' || s[0] == ':' || (s[0] >= 'a' && s[0] <= 'z') ||
                    (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (i = 1; i < n; i++) {
        char c = s[i];
        if (!(c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What a histogram family showed so far. */
struct hist_state {
    int buckets;
    double last_le;
    double last_count;
    double inf_count;
    bool has_inf, has_sum, has_count;
    double count;
};

static void hist_close(const struct family *f, const struct hist_state *h)
{
    if (strcmp(f->type, "histogram") != 0)
        return;
    assert_true(h->has_inf);
    assert_true(h->has_sum);
    assert_true(h->has_count);
    assert_true(h->inf_count == h->count);
}

static void check_exposition(const char *text, size_t len)
{
    struct family fam[64];
    size_t n_fam = 0;
    struct family *cur = NULL;
    struct hist_state h;
    char help_name[96] = "";
    const char *p = text;

    assert_int_equal(strlen(text), len);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    memset(&h, 0, sizeof(h));
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t n = (size_t)(eol - p);
        char line[512];

        assert_non_null(eol);
        assert_true(n > 0 && n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = eol + 1;
        if (strncmp(line, "# HELP ", 7) == 0) {
            const char *name = line + 7;
            const char *sp = strchr(name, ' ');
            size_t i;
            assert_non_null(sp);
            assert_true(valid_name(name, (size_t)(sp - name)));
            assert_true(sp[1] != '\0'); /* a help text */
            assert_true((size_t)(sp - name) < sizeof(help_name));
            memcpy(help_name, name, (size_t)(sp - name));
            help_name[sp - name] = '\0';
            for (i = 0; i < n_fam; i++)
                assert_string_not_equal(fam[i].name, help_name); /* one family, one block */
            if (cur != NULL)
                hist_close(cur, &h);
            cur = NULL;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[96], type[16];
            assert_int_equal(sscanf(line + 7, "%95s %15s", name, type), 2);
            /* TYPE follows its HELP at once. */
            assert_null(cur);
            assert_string_equal(name, help_name);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0)
                assert_true(ends_with(name, "_total"));
            assert_true(n_fam < sizeof(fam) / sizeof(fam[0]));
            cur = &fam[n_fam++];
            snprintf(cur->name, sizeof(cur->name), "%s", name);
            snprintf(cur->type, sizeof(cur->type), "%s", type);
            memset(&h, 0, sizeof(h));
            help_name[0] = '\0';
            continue;
        }
        /* No other comments; every sample belongs to the family declared just above it. */
        assert_true(line[0] != '#');
        assert_non_null(cur);
        {
            size_t nl = strcspn(line, "{ ");
            char name[96];
            const char *val = strchr(line, ' ');
            char *end;
            double v;

            assert_true(nl < sizeof(name));
            memcpy(name, line, nl);
            name[nl] = '\0';
            assert_true(valid_name(name, nl));
            if (line[nl] == '{') {
                const char *close = strchr(line + nl, '}');
                assert_non_null(close);
                assert_ptr_equal(close + 1, val);
            }
            assert_non_null(val);
            v = strtod(val + 1, &end);
            assert_true(end != val + 1 && *end == '\0');
            assert_true(v >= 0.0 || strcmp(name, "hcgw_in_flight") == 0);
            if (strcmp(cur->type, "histogram") != 0) {
                assert_string_equal(name, cur->name);
                continue;
            }
            if (strncmp(name, cur->name, strlen(cur->name)) != 0)
                fail_msg("sample %s outside its family %s", name, cur->name);
            if (strcmp(name + strlen(cur->name), "_bucket") == 0) {
                const char *le = strstr(line, "{le=\"");
                double bound;
                assert_non_null(le);
                assert_false(h.has_inf || h.has_sum || h.has_count);
                bound = strncmp(le + 5, "+Inf\"", 5) == 0 ? INFINITY : strtod(le + 5, NULL);
                if (h.buckets > 0) {
                    assert_true(bound > h.last_le);      /* ascending bounds */
                    assert_true(v >= h.last_count);      /* cumulative counts */
                }
                h.buckets++;
                h.last_le = bound;
                h.last_count = v;
                if (isinf(bound)) {
                    h.has_inf = true;
                    h.inf_count = v;
                }
            } else if (strcmp(name + strlen(cur->name), "_sum") == 0) {
                assert_true(h.has_inf && !h.has_sum);
                h.has_sum = true;
            } else if (strcmp(name + strlen(cur->name), "_count") == 0) {
                assert_true(h.has_sum && !h.has_count);
                h.has_count = true;
                h.count = v;
            } else {
                fail_msg("unexpected histogram sample %s", name);
            }
        }
    }
    if (cur != NULL)
        hist_close(cur, &h);
    /* A HELP without its TYPE would be left over. */
    assert_string_equal(help_name, "");
}

/* Render, validate and keep the text (freed by the next render or the teardown). */
static const char *render(void)
{
    size_t len = 0;

    free(rendered);
    rendered = gw_metrics_render(reg, &len);
    assert_non_null(rendered);
    check_exposition(rendered, len);
    return rendered;
}

/* The value of the one sample whose name and labels are exactly @p series; false if none. */
static bool series(const char *text, const char *name, double *out)
{
    size_t n = strlen(name);
    const char *p = text;
    bool found = false;

    while ((p = strstr(p, name)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            assert_false(found); /* a series appears once */
            found = true;
            *out = strtod(p + n + 1, NULL);
        }
        p += n;
    }
    return found;
}

/* Assert @p name is present with value @p want (exact: counts are integers). */
static void expect(const char *text, const char *name, double want)
{
    double v = -1;

    if (!series(text, name, &v))
        fail_msg("no series %s", name);
    if (v != want)
        fail_msg("%s is %g, expected %g", name, v, want);
}

static void expect_requests(const char *text, const char *route, const char *method,
                            const char *status, double want)
{
    char name[160];

    snprintf(name, sizeof(name),
             "hcgw_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"}", route, method,
             status);
    expect(text, name, want);
}

static void expect_absent(const char *text, const char *name)
{
    double v;

    if (series(text, name, &v))
        fail_msg("unexpected series %s %g", name, v);
}

/* Check the cumulative buckets of histogram @p hist against per-bucket counts @p per. */
static void expect_histogram(const char *text, const char *hist, const uint64_t *per,
                             double sum_s)
{
    char name[160];
    double cum = 0;
    double v = -1;
    int i;

    for (i = 0; i <= GW_METRICS_BUCKETS; i++) {
        cum += (double)per[i];
        snprintf(name, sizeof(name), "%s_bucket{le=\"%s\"}", hist, bucket_labels[i]);
        expect(text, name, cum);
    }
    snprintf(name, sizeof(name), "%s_count", hist);
    expect(text, name, cum);
    snprintf(name, sizeof(name), "%s_sum", hist);
    assert_true(series(text, name, &v));
    assert_true(fabs(v - sum_s) < 1e-9);
}

/* ---- tests ---- */

static void test_empty_render(void **state)
{
    static const char *const families[] = {
        "# TYPE hcgw_build_info gauge\n",
        "# TYPE hcgw_requests_total counter\n",
        "# TYPE hcgw_request_duration_seconds histogram\n",
        "# TYPE hcgw_upstream_duration_seconds histogram\n",
        "# TYPE hcgw_upstream_attempts_total counter\n",
        "# TYPE hcgw_upstream_retries_total counter\n",
        "# TYPE hcgw_upstream_connections_total counter\n",
        "# TYPE hcgw_upstream_answers_total counter\n",
        "# TYPE hcgw_upstream_failures_total counter\n",
        "# TYPE hcgw_in_flight gauge\n",
    };
    static const char *const kinds[] = {"timeout", "unavailable", "bad_response", "auth",
                                        "rate_limited", "http_4xx", "http_5xx"};
    static const uint64_t zero[GW_METRICS_BUCKETS + 1];
    const char *text;
    char name[128];
    size_t i;

    (void)state;
    /* With no block at all, and with one zeroed block: the same empty text. */
    for (i = 0; i < 2; i++) {
        if (i == 1)
            assert_non_null(gw_metrics_register(reg));
        text = render();
        expect(text, "hcgw_build_info{version=\"" HCGW_VERSION "\",commit=\"" HCGW_COMMIT "\"}",
               1);
        assert_null(strstr(text, "hcgw_requests_total{"));
        expect_histogram(text, "hcgw_request_duration_seconds", zero, 0.0);
        expect_histogram(text, "hcgw_upstream_duration_seconds", zero, 0.0);
        expect(text, "hcgw_upstream_attempts_total", 0);
        expect(text, "hcgw_upstream_retries_total", 0);
        expect(text, "hcgw_upstream_connections_total", 0);
        expect(text, "hcgw_upstream_answers_total{http_version=\"1.0\"}", 0);
        expect(text, "hcgw_upstream_answers_total{http_version=\"1.1\"}", 0);
        expect(text, "hcgw_upstream_answers_total{http_version=\"2\"}", 0);
        expect(text, "hcgw_in_flight", 0);
        assert_int_equal(sizeof(kinds) / sizeof(kinds[0]), GW_UPFAIL__COUNT);
        for (size_t k = 0; k < GW_UPFAIL__COUNT; k++) {
            snprintf(name, sizeof(name), "hcgw_upstream_failures_total{kind=\"%s\"}", kinds[k]);
            expect(text, name, 0);
        }
        for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++)
            assert_non_null(strstr(text, families[f]));
        assert_null(strstr(text, "hcgw_quota_"));
    }
}

static void test_requests_by_route_and_status(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    const struct gw_route *get = gw_router_get(GW_ROUTE_CONTACT_GET);
    const struct gw_route *add = gw_router_get(GW_ROUTE_TAGS_ADD);
    uint64_t per[GW_METRICS_BUCKETS + 1] = {0};
    const char *text;
    int i;

    (void)state;
    assert_non_null(m);
    for (i = 0; i < 3; i++)
        gw_metrics_request(m, get, "GET", 200, 400);        /* le 0.0005 */
    gw_metrics_request(m, get, "GET", 404, 3000);           /* le 0.005 */
    gw_metrics_request(m, NULL, "PATCH", 404, 100);         /* le 0.0005 */
    gw_metrics_request(m, NULL, "PATCH", 404, 100);
    gw_metrics_request(m, add, "POST", 502, 20000000);      /* above 10 s: only +Inf */
    text = render();
    expect_requests(text, "contact_get", "GET", "200", 3);
    expect_requests(text, "contact_get", "GET", "404", 1);
    expect_requests(text, "unmatched", "PATCH", "404", 2);
    expect_requests(text, "tags_add", "POST", "502", 1);
    /* Nothing invented: counters that stayed 0 are not shown. */
    expect_absent(text, "hcgw_requests_total"
                        "{route=\"contact_get\",method=\"GET\",status=\"500\"}");
    expect_absent(text, "hcgw_requests_total"
                        "{route=\"tags_add\",method=\"POST\",status=\"200\"}");
    expect_absent(text, "hcgw_requests_total"
                        "{route=\"unmatched\",method=\"PATCH\",status=\"200\"}");
    expect_absent(text, "hcgw_requests_total"
                        "{route=\"unmatched\",method=\"GET\",status=\"404\"}");
    /* Every request is one observation of the request histogram, none of the upstream one. */
    per[0] = 5;
    per[3] = 1;
    per[GW_METRICS_BUCKETS] = 1;
    expect_histogram(text, "hcgw_request_duration_seconds", per,
                     (3 * 400 + 3000 + 2 * 100 + 20000000) / 1e6);
    expect(text, "hcgw_upstream_duration_seconds_count", 0);
}

static void test_every_status_and_other(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    const struct gw_route *hz = gw_router_get(GW_ROUTE_HEALTHZ);
    static const int others[] = {418, 0, -1, 302, 599, 100};
    const char *text;
    char status[16];
    size_t i;
    int k;

    (void)state;
    assert_non_null(m);
    /* Status i is counted i + 1 times, so a mix-up of two slots shows. */
    for (i = 0; i < GW_METRICS_STATUSES; i++) {
        for (k = 0; k <= (int)i; k++)
            gw_metrics_request(m, hz, "GET", named_statuses[i], 1);
    }
    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        gw_metrics_request(m, hz, "GET", others[i], 1);
    text = render();
    for (i = 0; i < GW_METRICS_STATUSES; i++) {
        snprintf(status, sizeof(status), "%d", named_statuses[i]);
        expect_requests(text, "healthz", "GET", status, (double)i + 1);
    }
    expect_requests(text, "healthz", "GET", "other", 6);
    expect_absent(text, "hcgw_requests_total{route=\"healthz\",method=\"GET\",status=\"418\"}");
    expect_absent(text, "hcgw_requests_total{route=\"healthz\",method=\"GET\",status=\"0\"}");
}

static void test_every_route_by_name(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    size_t n = 0;
    const struct gw_route *routes = gw_router_table(&n);
    const char *text;
    size_t i, k;

    (void)state;
    assert_non_null(m);
    assert_int_equal(n, GW_ROUTE__COUNT);
    /* Route i answered i + 1 times, so rows cannot be swapped unnoticed. */
    for (i = 0; i < n; i++) {
        for (k = 0; k <= i; k++)
            gw_metrics_request(m, &routes[i], routes[i].method, 201, 1);
    }
    for (k = 0; k < 40; k++)
        gw_metrics_request(m, NULL, "DELETE", 201, 1);
    text = render();
    for (i = 0; i < n; i++)
        expect_requests(text, routes[i].name, routes[i].method, "201", (double)i + 1);
    expect_requests(text, "unmatched", "DELETE", "201", 40);
}

static void test_methods_by_name_and_other(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    static const char *const named[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                        "OPTIONS"};
    /* Compared whole and case-sensitively; a caller's invented method is never a label. */
    static const char *const others[] = {"get", "BREW", "", "GETX", "PROPFIND", "DELETE "};
    const char *text;
    size_t i, k;

    (void)state;
    assert_non_null(m);
    assert_int_equal(sizeof(named) / sizeof(named[0]), GW_METRICS_METHODS);
    /* Method i is counted i + 1 times, so a mix-up of two slots shows. */
    for (i = 0; i < GW_METRICS_METHODS; i++) {
        for (k = 0; k <= i; k++)
            gw_metrics_request(m, NULL, named[i], 404, 1);
    }
    for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        gw_metrics_request(m, NULL, others[i], 404, 1);
    gw_metrics_request(m, NULL, NULL, 404, 1);
    text = render();
    for (i = 0; i < GW_METRICS_METHODS; i++)
        expect_requests(text, "unmatched", named[i], "404", (double)i + 1);
    expect_requests(text, "unmatched", "other", "404",
                    (double)(sizeof(others) / sizeof(others[0]) + 1));
    assert_null(strstr(text, "BREW"));
    assert_null(strstr(text, "method=\"get\""));
}

static void test_histogram_buckets(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    /* Each bound is inclusive (le): exactly on a bound counts in that bucket. */
    static const uint64_t obs[] = {0, 500, 501, 1000, 2500, 2501, 99999, 100000, 1000000,
                                   10000000, 10000001, 3600000000u};
    uint64_t per[GW_METRICS_BUCKETS + 1] = {0};
    uint64_t sum_us = 0;
    const char *text;
    size_t i;

    (void)state;
    assert_non_null(m);
    for (i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
        gw_metrics_observe(&m->upstream_seconds, obs[i]);
        sum_us += obs[i];
    }
    per[0] = 2;                   /* 0, 500 */
    per[1] = 2;                   /* 501, 1000 */
    per[2] = 1;                   /* 2500 */
    per[3] = 1;                   /* 2501 */
    per[7] = 2;                   /* 99999, 100000 */
    per[10] = 1;                  /* 1 s */
    per[13] = 1;                  /* 10 s */
    per[GW_METRICS_BUCKETS] = 2;  /* 10.000001 s, an hour */
    text = render();
    expect_histogram(text, "hcgw_upstream_duration_seconds", per, (double)sum_us / 1e6);
    expect(text, "hcgw_request_duration_seconds_count", 0);
    assert_int_equal(m->upstream_seconds.count, sizeof(obs) / sizeof(obs[0]));
}

static void test_two_blocks_summed(void **state)
{
    struct gw_metrics *a = gw_metrics_register(reg);
    struct gw_metrics *b = gw_metrics_register(reg);
    const struct gw_route *get = gw_router_get(GW_ROUTE_CONTACT_GET);
    uint64_t per[GW_METRICS_BUCKETS + 1] = {0};
    const char *text;
    int i;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    gw_metrics_request(a, get, "GET", 200, 100);
    gw_metrics_request(a, get, "GET", 200, 100);
    for (i = 0; i < 3; i++)
        gw_metrics_request(b, get, "GET", 200, 3000);
    gw_metrics_request(b, get, "GET", 500, 3000);
    gw_metrics_request(a, NULL, "PUT", 404, 100);
    for (i = 0; i < 4; i++)
        gw_metrics_inc(&a->upstream_attempts);
    for (i = 0; i < 6; i++)
        gw_metrics_inc(&b->upstream_attempts);
    gw_metrics_inc(&b->upstream_retries);
    gw_metrics_inc(&a->upstream_connections);
    gw_metrics_inc(&b->upstream_connections);
    gw_metrics_inc(&a->upstream_failures[GW_UPFAIL_TIMEOUT]);
    gw_metrics_inc(&b->upstream_failures[GW_UPFAIL_TIMEOUT]);
    gw_metrics_inc(&b->upstream_failures[GW_UPFAIL_TIMEOUT]);
    gw_metrics_inc(&b->upstream_failures[GW_UPFAIL_HTTP_5XX]);
    gw_metrics_add(&a->in_flight, 3);
    gw_metrics_add(&b->in_flight, -1);
    gw_metrics_observe(&a->upstream_seconds, 100);
    gw_metrics_observe(&b->upstream_seconds, 3000);
    gw_metrics_observe(&b->upstream_seconds, 3000);
    text = render();
    expect_requests(text, "contact_get", "GET", "200", 5);
    expect_requests(text, "contact_get", "GET", "500", 1);
    expect_requests(text, "unmatched", "PUT", "404", 1);
    expect(text, "hcgw_upstream_attempts_total", 10);
    expect(text, "hcgw_upstream_retries_total", 1);
    expect(text, "hcgw_upstream_connections_total", 2);
    expect(text, "hcgw_upstream_failures_total{kind=\"timeout\"}", 3);
    expect(text, "hcgw_upstream_failures_total{kind=\"http_5xx\"}", 1);
    expect(text, "hcgw_upstream_failures_total{kind=\"http_4xx\"}", 0);
    expect(text, "hcgw_in_flight", 2);
    per[0] = 3;
    per[3] = 4;
    expect_histogram(text, "hcgw_request_duration_seconds", per, (3 * 100 + 4 * 3000) / 1e6);
    memset(per, 0, sizeof(per));
    per[0] = 1;
    per[3] = 2;
    expect_histogram(text, "hcgw_upstream_duration_seconds", per, 6100 / 1e6);
}

static void test_reset_frees_blocks(void **state)
{
    struct gw_metrics *a = gw_metrics_register(reg);
    struct gw_metrics *b = gw_metrics_register(reg);
    const char *text;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    gw_metrics_request(a, NULL, "GET", 200, 1);
    gw_metrics_inc(&b->upstream_attempts);
    gw_metrics_reset(reg); /* LeakSanitizer reports the blocks at exit if they were kept */
    text = render();
    assert_null(strstr(text, "hcgw_requests_total{"));
    expect(text, "hcgw_upstream_attempts_total", 0);
    expect(text, "hcgw_request_duration_seconds_count", 0);
    /* Registering again starts from zero and counts only the new block. */
    a = gw_metrics_register(reg);
    assert_non_null(a);
    assert_int_equal(a->upstream_attempts, 0);
    gw_metrics_inc(&a->upstream_attempts);
    text = render();
    expect(text, "hcgw_upstream_attempts_total", 1);
    /* Reset with nothing registered is harmless. */
    gw_metrics_reset(reg);
    gw_metrics_reset(reg);
}

static void test_register_bounded_by_max_workers(void **state)
{
    size_t ok = 0;
    int i;

    (void)state;
    /* The contract: NULL when over GW_MAX_WORKERS blocks. */
    for (i = 0; i < 4 * GW_MAX_WORKERS; i++) {
        struct gw_metrics *m = gw_metrics_register(reg);
        if (m == NULL)
            break;
        ok++;
    }
    assert_int_equal(ok, GW_MAX_WORKERS);
}

static void test_no_governor_no_quota_lines(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    const char *text;

    (void)state;
    assert_non_null(m);
    gw_metrics_set_governor(reg, NULL);
    text = render();
    assert_null(strstr(text, "hcgw_quota_"));
}

static struct gw_governor *make_governor(int rpm)
{
    struct gw_config c = {0};

    c.quota.requests_per_minute = rpm;
    c.quota.burst = 10;
    c.quota.max_wait_ms = 5000;
    c.quota.cooldown_ms = 10000;
    test_governor = gw_governor_new(&c);
    assert_non_null(test_governor);
    return test_governor;
}

static void test_governor_quota_lines(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    struct gw_governor *g = make_governor(120);
    static const char *const quota_types[] = {
        "# TYPE hcgw_quota_enabled gauge\n",
        "# TYPE hcgw_quota_tokens gauge\n",
        "# TYPE hcgw_quota_queued gauge\n",
        "# TYPE hcgw_quota_waits_total counter\n",
        "# TYPE hcgw_quota_wait_seconds_total counter\n",
        "# TYPE hcgw_quota_rejections_total counter\n",
        "# TYPE hcgw_quota_upstream_429_total counter\n",
        "# TYPE hcgw_quota_cooldowns_total counter\n",
    };
    const char *text;
    uint64_t now, wait;
    long ra;
    double tokens = -1;
    size_t i;

    (void)state;
    assert_non_null(m);
    gw_metrics_set_governor(reg, g);
    text = render();
    for (i = 0; i < sizeof(quota_types) / sizeof(quota_types[0]); i++)
        assert_non_null(strstr(text, quota_types[i]));
    expect(text, "hcgw_quota_enabled", 1);
    assert_true(series(text, "hcgw_quota_tokens", &tokens));
    assert_true(tokens > 9.9 && tokens <= 10.0);
    expect(text, "hcgw_quota_queued", 0);
    expect(text, "hcgw_quota_waits_total", 0);
    expect(text, "hcgw_quota_wait_seconds_total", 0);
    expect(text, "hcgw_quota_rejections_total", 0);
    expect(text, "hcgw_quota_upstream_429_total", 0);
    expect(text, "hcgw_quota_cooldowns_total", 0);
    /* Spend the burst; the eleventh call waits for its slot. */
    now = mono_ms();
    for (i = 0; i < 10; i++)
        assert_int_equal(gw_governor_acquire(g, now, now + 60000, &wait, &ra), GW_GOV_GO);
    assert_int_equal(gw_governor_acquire(g, now, now + 60000, &wait, &ra), GW_GOV_WAIT);
    text = render();
    assert_true(series(text, "hcgw_quota_tokens", &tokens));
    assert_true(tokens < 0.5);
    expect(text, "hcgw_quota_queued", 1);
    expect(text, "hcgw_quota_waits_total", 1);
    gw_governor_done_waiting(g, 500);
    /* A 429 from HelpCrunch: a cooldown, and calls that cannot wait are refused. */
    gw_governor_on_429(g, now, 3);
    /* A second 429 inside that cooldown: counted, but no new cooldown is entered. */
    gw_governor_on_429(g, now, 1);
    assert_int_equal(gw_governor_acquire(g, now, now + 100, &wait, &ra), GW_GOV_REJECT);
    assert_int_equal(gw_governor_acquire(g, now, now + 100, &wait, &ra), GW_GOV_REJECT);
    text = render();
    expect(text, "hcgw_quota_queued", 0);
    expect(text, "hcgw_quota_wait_seconds_total", 0.5);
    expect(text, "hcgw_quota_upstream_429_total", 2);
    expect(text, "hcgw_quota_cooldowns_total", 1);
    expect(text, "hcgw_quota_rejections_total", 2);
    expect(text, "hcgw_quota_waits_total", 1);
    expect(text, "hcgw_quota_tokens", 0);
    /* Unset again: the lines go. */
    gw_metrics_set_governor(reg, NULL);
    text = render();
    assert_null(strstr(text, "hcgw_quota_"));
}

static void test_governor_off_shows_disabled(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    const char *text;

    (void)state;
    assert_non_null(m);
    gw_metrics_set_governor(reg, make_governor(0));
    text = render();
    expect(text, "hcgw_quota_enabled", 0);
    expect(text, "hcgw_quota_queued", 0);
    expect(text, "hcgw_quota_rejections_total", 0);
}

/* A histogram whose every bucket holds @p per, so that the cumulative counts do not wrap. */
static void fill_histogram(struct gw_histogram *h, uint64_t per)
{
    int i;

    for (i = 0; i <= GW_METRICS_BUCKETS; i++)
        h->buckets[i] = per;
    h->count = per * (GW_METRICS_BUCKETS + 1);
    h->sum_us = UINT64_MAX;
}

static void test_largest_render_within_bound(void **state)
{
    struct gw_metrics *m = gw_metrics_register(reg);
    const uint64_t per = UINT64_MAX / (GW_METRICS_BUCKETS + 1);
    size_t len;
    size_t r, k, s;

    (void)state;
    assert_non_null(m);
    /* Every series there can be, each with the widest value it can print. */
    for (r = 0; r <= GW_ROUTE__COUNT; r++)
        for (k = 0; k <= GW_METRICS_METHODS; k++)
            for (s = 0; s <= GW_METRICS_STATUSES; s++)
                m->requests[r][k][s] = UINT64_MAX;
    fill_histogram(&m->request_seconds, per);
    fill_histogram(&m->upstream_seconds, per);
    m->upstream_attempts = UINT64_MAX;
    m->upstream_retries = UINT64_MAX;
    m->upstream_connections = UINT64_MAX;
    for (k = 0; k < GW_UPFAIL__COUNT; k++)
        m->upstream_failures[k] = UINT64_MAX;
    m->in_flight = INT64_MIN;
    gw_metrics_set_governor(reg, make_governor(120));
    free(rendered);
    rendered = gw_metrics_render(reg, &len);
    assert_non_null(rendered);
    check_exposition(rendered, len);
    assert_non_null(strstr(rendered, "hcgw_quota_enabled 1\n"));
    /* The bound holds the largest render with room to spare (limits.h says how big it is). */
    assert_true(len < GW_MAX_METRICS_BYTES / 2);
    assert_true(len > 200 * 1024); /* about 256 KiB: many doublings of the first 8 KiB */
}

/* Two servers' registries: each renders its own blocks and governor only. */
static void test_registries_apart(void **state)
{
    struct gw_metrics *mine = gw_metrics_register(reg);
    struct gw_metrics *theirs;
    const struct gw_route *get = gw_router_get(GW_ROUTE_CONTACT_GET);
    size_t len;

    (void)state;
    other_reg = gw_metrics_registry_new();
    assert_non_null(other_reg);
    theirs = gw_metrics_register(other_reg);
    assert_non_null(mine);
    assert_non_null(theirs);
    gw_metrics_request(mine, get, "GET", 200, 100);
    gw_metrics_request(theirs, get, "GET", 200, 100);
    gw_metrics_request(theirs, get, "GET", 200, 100);
    gw_metrics_inc(&theirs->upstream_attempts);
    gw_metrics_set_governor(reg, make_governor(120));
    expect_requests(render(), "contact_get", "GET", "200", 1);
    expect(rendered, "hcgw_upstream_attempts_total", 0);
    assert_non_null(strstr(rendered, "hcgw_quota_enabled 1\n"));
    other_rendered = gw_metrics_render(other_reg, &len);
    assert_non_null(other_rendered);
    check_exposition(other_rendered, len);
    expect_requests(other_rendered, "contact_get", "GET", "200", 2);
    expect(other_rendered, "hcgw_upstream_attempts_total", 1);
    assert_null(strstr(other_rendered, "hcgw_quota_"));
    /* Resetting one leaves the other's counts. */
    gw_metrics_reset(other_reg);
    expect_requests(render(), "contact_get", "GET", "200", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_empty_render, teardown),
        cmocka_unit_test_teardown(test_requests_by_route_and_status, teardown),
        cmocka_unit_test_teardown(test_every_status_and_other, teardown),
        cmocka_unit_test_teardown(test_every_route_by_name, teardown),
        cmocka_unit_test_teardown(test_methods_by_name_and_other, teardown),
        cmocka_unit_test_teardown(test_histogram_buckets, teardown),
        cmocka_unit_test_teardown(test_two_blocks_summed, teardown),
        cmocka_unit_test_teardown(test_reset_frees_blocks, teardown),
        cmocka_unit_test_teardown(test_register_bounded_by_max_workers, teardown),
        cmocka_unit_test_teardown(test_no_governor_no_quota_lines, teardown),
        cmocka_unit_test_teardown(test_governor_quota_lines, teardown),
        cmocka_unit_test_teardown(test_governor_off_shows_disabled, teardown),
        cmocka_unit_test_teardown(test_largest_render_within_bound, teardown),
        cmocka_unit_test_teardown(test_registries_apart, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

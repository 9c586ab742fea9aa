/*
 * main.c: hcgw-sim's entry point: the command line, signals, start-up and an ordered
 * shutdown.
 *
 * hcgw-sim stands in for api.helpcrunch.com so that hcgw can be run and tested offline. It
 * prints one JSON line with the bound port on stdout (tests start it on port 0 and read that
 * line), serves until SIGTERM or SIGINT, then stops every thread, frees everything and exits 0,
 * so that LeakSanitizer can vouch for it in the test runs.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <hcgw/version.h>

#include "api.h"
#include "faults.h"
#include "limits.h"
#include "util.h"

#define DEFAULT_ADDRESS "127.0.0.1"
#define DEFAULT_PORT 8090
#define DEFAULT_KEY "sim-key"
#define DEFAULT_RATE_LIMIT 120ul /* HelpCrunch's documented 120 requests per minute */
#define KEY_ENV "HCGW_SIM_KEY"

/* getopt_long values of the options that have no short letter. */
#define OPT_SEED 0x100
#define OPT_KNOB 0x200 /* + the knob's index in faults.c's table */
#define N_BASE_OPTS 9 /* the fixed entries of long_opts below, without the terminator */
#define N_KNOBS_MAX 32 /* room for faults.c's table; checked at run time */

enum parse_result { PARSE_RUN, PARSE_EXIT_OK, PARSE_ERROR };

/* The signal handler only sets this flag; the main thread does the rest. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: hcgw-sim [options]\n"
            "An in-memory simulator of the HelpCrunch REST API v1 for offline runs and tests.\n"
            "\n"
            "  --address A        numeric IPv4 or IPv6 address to bind (default " DEFAULT_ADDRESS
            ")\n"
            "  --port N           TCP port, 0 for an ephemeral one (default %d)\n"
            "  --key KEY          API key expected as \"Authorization: Bearer KEY\"\n"
            "                     (default $" KEY_ENV ", else \"" DEFAULT_KEY "\")\n"
            "  --error-style S    new (generic invalid_request entry first) or old (default new)\n"
            "  --no-seed          start with no customers\n"
            "  --seed N           seed of the fault PRNG, for reproducible runs (default: time)\n"
            "  --quiet            no access log lines on stderr\n"
            "  --help, --version\n"
            "\n"
            "Fault knobs (also settable at run time with POST /_sim/faults):\n"
            "  --rate-limit N     requests per one-minute window, 0 = off (default %lu)\n"
            "  --retry-after      send Retry-After on 429 (HelpCrunch documents none)\n"
            "  --latency-ms N     added latency on every /v1 call (default 0)\n"
            "  --latency-jitter-ms N   plus a random 0..N ms (default 0)\n"
            "  --error-rate F     fraction of calls answered --error-status (default 0)\n"
            "  --error-status N   400..599 (default 503)\n"
            "  --error-next N     the next N calls get --error-status (default 0)\n"
            "  --hang-rate F, --close-rate F, --reset-rate F, --truncate-rate F,\n"
            "  --drip-rate F, --huge-rate F, --html-rate F, --bad-body-rate F\n"
            "                     fractions of calls hung, closed, reset mid-body, cut short,\n"
            "                     dripped, answered huge, with an HTML 502, with a non-JSON 200\n"
            "  --drip-interval-ms N   pause between dripped bytes (default 1000)\n"
            "  --huge-bytes N     size of a huge body (default 9437184)\n"
            "\n"
            "Control API under /_sim: GET stats, GET requests, POST reset, POST/DELETE script,\n"
            "GET/POST/DELETE faults. See docs/simulator.md.\n",
            DEFAULT_PORT, DEFAULT_RATE_LIMIT);
}

static int parse_number(const char *name, const char *text, unsigned long max,
                        unsigned long *out)
{
    long long v = 0;

    if (sim_parse_ll(text, &v) != 0 || v < 0 || (unsigned long long)v > max) {
        fprintf(stderr, "hcgw-sim: --%s must be an integer from 0 to %lu\n", name, max);
        return -1;
    }
    *out = (unsigned long)v;
    return 0;
}

/* The key travels in a header: it must be non-empty and free of spaces and control bytes. */
static int set_key(struct sim_options *opt, const char *key, const char *source)
{
    size_t i, n = strlen(key);

    for (i = 0; i < n; i++) {
        if ((unsigned char)key[i] <= ' ' || key[i] == 0x7f)
            break;
    }
    if (n == 0 || n >= sizeof(opt->key) || i < n) {
        fprintf(stderr, "hcgw-sim: the key from %s must be 1 to %zu printable characters "
                        "without spaces\n", source, sizeof(opt->key) - 1);
        return -1;
    }
    memcpy(opt->key, key, n + 1);
    return 0;
}

static int set_address(struct sim_options *opt, const char *address)
{
    unsigned char probe[sizeof(struct in6_addr)];
    size_t n = strlen(address);

    if (n >= sizeof(opt->address) || (inet_pton(AF_INET, address, probe) != 1 &&
                                      inet_pton(AF_INET6, address, probe) != 1)) {
        fprintf(stderr, "hcgw-sim: --address must be a numeric IPv4 or IPv6 address\n");
        return -1;
    }
    memcpy(opt->address, address, n + 1);
    return 0;
}

/* A seed for runs that give none: different every run, printed so that a run can be replayed.
 * Kept to 63 bits so that it can be given back through --seed or POST /_sim/faults. */
static uint64_t default_rng_seed(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
            ((uint64_t)getpid() << 32)) & (uint64_t)INT64_MAX;
}

/* The fixed options and then one per fault knob, named by faults.c's table. */
static int build_options(struct option *opts, size_t cap)
{
    static const struct option base[N_BASE_OPTS] = {
        {"address", required_argument, NULL, 'a'},
        {"port", required_argument, NULL, 'p'},
        {"key", required_argument, NULL, 'k'},
        {"error-style", required_argument, NULL, 'e'},
        {"no-seed", no_argument, NULL, 'S'},
        {"seed", required_argument, NULL, OPT_SEED},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
    };
    size_t i, n = N_BASE_OPTS, k = sim_knobs_count();

    if (n + k + 1 > cap)
        return -1;
    memcpy(opts, base, n * sizeof(*opts));
    for (i = 0; i < k; i++) {
        opts[n].name = sim_knobs_flag(i);
        opts[n].has_arg = sim_knobs_flag_has_arg(i) ? required_argument : no_argument;
        opts[n].flag = NULL;
        opts[n].val = OPT_KNOB + (int)i;
        n++;
    }
    memset(&opts[n], 0, sizeof(opts[n]));
    return 0;
}

static enum parse_result parse_args(int argc, char **argv, struct sim_options *opt)
{
    struct option long_opts[N_BASE_OPTS + N_KNOBS_MAX + 1];
    const char *env_key = getenv(KEY_ENV);
    unsigned long n = 0;
    long long seed = 0;
    bool key_given = false, seed_given = false;
    char err[160];
    int c;

    memset(opt, 0, sizeof(*opt));
    memcpy(opt->address, DEFAULT_ADDRESS, sizeof(DEFAULT_ADDRESS));
    memcpy(opt->key, DEFAULT_KEY, sizeof(DEFAULT_KEY));
    opt->port = DEFAULT_PORT;
    opt->error_style = SIM_ERRORS_NEW;
    opt->seed = true;
    sim_knobs_default(&opt->knobs, DEFAULT_RATE_LIMIT);
    if (build_options(long_opts, sizeof(long_opts) / sizeof(long_opts[0])) != 0) {
        fprintf(stderr, "hcgw-sim: too many fault knobs for the option table\n");
        return PARSE_ERROR;
    }

    for (;;) {
        c = getopt_long(argc, argv, "hV", long_opts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'a':
            if (set_address(opt, optarg) != 0)
                return PARSE_ERROR;
            break;
        case 'p':
            if (parse_number("port", optarg, 65535, &n) != 0)
                return PARSE_ERROR;
            opt->port = (uint16_t)n;
            break;
        case 'k':
            if (set_key(opt, optarg, "--key") != 0)
                return PARSE_ERROR;
            key_given = true;
            break;
        case 'e':
            if (strcmp(optarg, "new") == 0) {
                opt->error_style = SIM_ERRORS_NEW;
            } else if (strcmp(optarg, "old") == 0) {
                opt->error_style = SIM_ERRORS_OLD;
            } else {
                fprintf(stderr, "hcgw-sim: --error-style must be new or old\n");
                return PARSE_ERROR;
            }
            break;
        case 'S':
            opt->seed = false;
            break;
        case OPT_SEED:
            if (sim_parse_ll(optarg, &seed) != 0 || seed < 0) {
                fprintf(stderr, "hcgw-sim: --seed must be an integer from 0 to %lld\n",
                        (long long)INT64_MAX);
                return PARSE_ERROR;
            }
            seed_given = true;
            break;
        case 'q':
            opt->quiet = true;
            break;
        case 'h':
            usage(stdout);
            return PARSE_EXIT_OK;
        case 'V':
            printf("hcgw-sim %s (%s)\n", HCGW_VERSION, HCGW_COMMIT);
            return PARSE_EXIT_OK;
        default:
            if (c >= OPT_KNOB && (size_t)(c - OPT_KNOB) < sim_knobs_count()) {
                if (sim_knobs_set_flag(&opt->knobs, (size_t)(c - OPT_KNOB), optarg, err,
                                       sizeof(err)) != 0) {
                    fprintf(stderr, "hcgw-sim: %s\n", err);
                    return PARSE_ERROR;
                }
                break;
            }
            usage(stderr);
            return PARSE_ERROR;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hcgw-sim: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return PARSE_ERROR;
    }
    if (sim_knobs_check(&opt->knobs, err, sizeof(err)) != 0) {
        fprintf(stderr, "hcgw-sim: %s\n", err);
        return PARSE_ERROR;
    }
    opt->rng_seed = seed_given ? (uint64_t)seed : default_rng_seed();
    /* The environment sets the key only when the command line did not. */
    if (!key_given && env_key != NULL && set_key(opt, env_key, KEY_ENV) != 0)
        return PARSE_ERROR;
    return PARSE_RUN;
}

/* One thread and one descriptor per connection: make room for SIM_CONNECTION_LIMIT of them
 * when the hard limit allows it. Best effort; MHD refuses the excess otherwise. */
static void raise_fd_limit(void)
{
    const rlim_t want = SIM_CONNECTION_LIMIT + SIM_FD_SPARE;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Installs the handlers and blocks both signals in every thread; *wait_mask is what the main
 * thread waits with. Blocking them before MHD starts its threads (which inherit the mask)
 * guarantees delivery to the main thread, and sigsuspend closes the race a check-then-pause
 * loop would have. */
static int setup_signals(sigset_t *wait_mask)
{
    struct sigaction sa;
    sigset_t block;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_signal;
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    /* A client that hangs up mid-answer must not kill the simulator. */
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        return -1;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &block, wait_mask) != 0)
        return -1;
    sigdelset(wait_mask, SIGTERM);
    sigdelset(wait_mask, SIGINT);
    return 0;
}

int main(int argc, char **argv)
{
    struct sim_options opt;
    struct sim_api *api = NULL;
    sigset_t wait_mask;
    char err[256];
    int rc = 1;

    switch (parse_args(argc, argv, &opt)) {
    case PARSE_EXIT_OK:
        rc = 0;
        goto out;
    case PARSE_ERROR:
        rc = 2;
        goto out;
    case PARSE_RUN:
        break;
    }
    raise_fd_limit();
    if (setup_signals(&wait_mask) != 0) {
        fprintf(stderr, "{\"msg\":\"fatal\",\"error\":\"cannot install signal handlers\"}\n");
        goto out;
    }
    api = sim_api_start(&opt, err, sizeof(err));
    if (api == NULL) {
        /* err holds only fixed text and a numeric address: safe inside a JSON string. */
        fprintf(stderr, "{\"msg\":\"fatal\",\"error\":\"%s\"}\n", err);
        goto out;
    }
    /* The address was checked numeric, so it needs no JSON escaping. */
    printf("{\"msg\":\"listening\",\"address\":\"%s\",\"port\":%u,\"seed\":%llu}\n",
           opt.address, (unsigned)sim_api_port(api), (unsigned long long)opt.rng_seed);
    fflush(stdout);
    while (!stop_requested)
        sigsuspend(&wait_mask);
    rc = 0;
out:
    sim_api_stop(api);
    explicit_bzero(opt.key, sizeof(opt.key));
    return rc;
}

/*
 * hcgw: the command line, the signals, and the order of start and shutdown. Everything else is
 * in the library; this file only decides what runs and in which order:
 *   arguments → config → key → logs → curl_global_init → server → signals → drain → free.
 * Signal handlers only set a flag; the main thread waits in sigsuspend and does the work.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <libconfig.h>
#include <microhttpd.h>

#include "hcgw/config.h"
#include "hcgw/log.h"
#include "hcgw/secret.h"
#include "hcgw/server.h"
#include "hcgw/version.h"

static volatile sig_atomic_t got_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    got_stop = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: hcgw [-c FILE] [--check-config] [--version] [--help]\n"
            "A gateway in front of the HelpCrunch REST API.\n"
            "\n"
            "  -c, --config FILE   configuration file (default " GW_CONFIG_DEFAULT_PATH ")\n"
            "  -t, --check-config  check the configuration and the API key, then exit:\n"
            "                      0 and \"configuration OK\", or 1 and one line per problem\n"
            "  -V, --version       print the version, commit and library versions\n"
            "  -h, --help          print this help\n"
            "\n"
            "Environment: HCGW_API_KEY (the key) or HCGW_API_KEY_FILE (a file holding it)\n"
            "override upstream.api_key / upstream.api_key_file.\n"
            "Signals: SIGTERM or SIGINT drain in-flight requests and exit 0.\n");
}

static void version(void)
{
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

    printf("hcgw %s (commit %s)\n", HCGW_VERSION, HCGW_COMMIT);
    printf("libmicrohttpd %s, libcurl %s (%s), json-c %s, libconfig %d.%d.%d\n",
           MHD_get_version(), cv->version, cv->ssl_version ? cv->ssl_version : "no TLS",
           json_c_version(), LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = GW_CONFIG_DEFAULT_PATH;
    bool check_only = false;
    struct gw_config *cfg = NULL;
    struct gw_secret *secret = NULL;
    struct gw_server *srv = NULL;
    char *errors = NULL;
    struct sigaction sa;
    sigset_t block, old;
    int rc = 1;
    int c;

    while ((c = getopt_long(argc, argv, "c:tVh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'V':
            version();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hcgw: unexpected argument '%s' (see hcgw --help)\n", argv[optind]);
        return 2;
    }

    cfg = gw_config_load(path, &errors);
    if (cfg == NULL) {
        fputs(errors != NULL ? errors : "hcgw: cannot load the configuration\n", stderr);
        goto out;
    }
    secret = gw_secret_load(cfg, &errors);
    if (secret == NULL) {
        if (check_only)
            fprintf(stderr, "%s:0: upstream.api_key: %s\n", path, errors ? errors : "no key");
        else
            fprintf(stderr, "hcgw: %s\n", errors ? errors : "no HelpCrunch API key");
        goto out;
    }
    if (check_only) {
        printf("configuration OK\n");
        rc = 0;
        goto out;
    }

    gw_log_set_level(cfg->log.level);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        gw_logf(GW_LOG_ERROR, "curl_global_init failed");
        goto out;
    }

    /* Block the stop signals before the workers exist, so that they inherit the mask and only
     * the main thread, in sigsuspend, ever takes them. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    srv = gw_server_new(cfg, secret, &errors);
    if (srv == NULL) {
        gw_logf(GW_LOG_ERROR, "%s", errors ? errors : "cannot start the server");
        goto out_curl;
    }
    if (gw_server_start(srv) != 0) {
        gw_logf(GW_LOG_ERROR, "cannot start the worker threads");
        goto out_curl;
    }
    {
        struct gw_logline l;
        gw_log_begin(&l, GW_LOG_INFO, "listening");
        gw_log_str(&l, "address", cfg->listen.address);
        gw_log_int(&l, "port", gw_server_port(srv));
        gw_log_str(&l, "upstream", cfg->upstream.base_url);
        gw_log_str(&l, "key_source", gw_secret_source(secret));
        gw_log_str(&l, "version", HCGW_VERSION);
        gw_log_end(&l);
    }

    while (!got_stop)
        sigsuspend(&old);
    gw_logf(GW_LOG_INFO, "stopping: draining in-flight requests (at most %ld ms)",
            cfg->server.drain_timeout_ms);
    gw_server_stop(srv);
    gw_server_wait(srv);
    gw_logf(GW_LOG_INFO, "stopped");
    rc = 0;

out_curl:
    gw_server_free(srv);
    curl_global_cleanup();
out:
    free(errors);
    gw_secret_free(secret);
    gw_config_free(cfg);
    return rc;
}

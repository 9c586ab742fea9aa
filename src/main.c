/*
 * hcgw: the command line, the signals, and the order of start and shutdown. Everything else is
 * in the library; this file only decides what runs and in which order:
 *   arguments → logger → config → key → curl_global_init → server → signals → drain → free.
 * Signal handlers only set a flag; the main thread waits in sigsuspend and does the work.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <libconfig.h>
#include <microhttpd.h>

#include "hcgw/auth.h"
#include "hcgw/config.h"
#include "hcgw/log.h"
#include "hcgw/secret.h"
#include "hcgw/server.h"
#include "hcgw/tables.h"
#include "hcgw/text.h"
#include "hcgw/tls.h"
#include "hcgw/version.h"

static volatile sig_atomic_t got_stop;
static volatile sig_atomic_t got_reload;

static void on_stop_signal(int sig)
{
    (void)sig;
    got_stop = 1;
}

static void on_reload_signal(int sig)
{
    (void)sig;
    got_reload = 1;
}

/** How long a key rotation gets to settle after the first inotify event, in microseconds. */
#define MAIN_KEY_SETTLE_US 50000
/** Bytes of inotify events read at once; events are only a hint to re-read the key file. */
#define MAIN_INOTIFY_BUF 4096

/* What runs now; a reload replaces both, and frees the old ones once no worker uses them. */
struct running {
    const char *path;
    struct gw_log *log;
    struct gw_config *cfg;
    struct gw_secret *secret;
    struct gw_server *srv;
    int inotify_fd;           /* -1 when the key does not come from a file */
    char watched_dir[PATH_MAX];
};

/*
 * Watch the folder that holds the key file, not the file: a Kubernetes Secret volume rotates
 * by swapping a symlink ("..data") inside its folder, which never touches the file's own
 * inode, and an editor or `mv` replaces the file by renaming another one over it.
 */
static void watch_key_dir(struct running *r)
{
    const char *file = gw_secret_file(r->secret);
    const char *slash;
    size_t n;

    if (file == NULL) {
        if (r->inotify_fd >= 0) {
            close(r->inotify_fd);
            r->inotify_fd = -1;
            r->watched_dir[0] = '\0';
        }
        return;
    }
    slash = strrchr(file, '/');
    n = slash == NULL ? 1 : slash == file ? 1 : (size_t)(slash - file);
    if (n >= sizeof(r->watched_dir))
        return;
    if (r->inotify_fd >= 0 && strncmp(r->watched_dir, slash == NULL ? "." : file, n) == 0 &&
        r->watched_dir[n] == '\0')
        return; /* already watching that folder */
    if (r->inotify_fd >= 0)
        close(r->inotify_fd);
    memcpy(r->watched_dir, slash == NULL ? "." : file, n);
    r->watched_dir[n] = '\0';
    r->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->inotify_fd < 0 ||
        inotify_add_watch(r->inotify_fd, r->watched_dir,
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                              IN_ATTRIB | IN_MODIFY) < 0) {
        gw_logf(r->log, GW_LOG_WARN, "cannot watch %s for key rotation (%s); send SIGHUP "
                                     "after a rotation instead", r->watched_dir, strerror(errno));
        if (r->inotify_fd >= 0)
            close(r->inotify_fd);
        r->inotify_fd = -1;
        r->watched_dir[0] = '\0';
        return;
    }
    gw_logf(r->log, GW_LOG_INFO, "watching %s for key rotation", r->watched_dir);
}

/*
 * hcgw holds write access to every contact of the account, so whoever reaches it holds that
 * power. Serving beyond this machine with no client named is therefore refused, unless
 * auth = "none" says on purpose that a mesh decides who may call. Returns NULL when @p cfg may
 * serve on @p address, else the reason (which follows "listen.address: ADDRESS ").
 */
static const char *exposure_problem(const struct gw_config *cfg, const char *address)
{
    if (gw_config_is_loopback(address) || cfg->auth.nclients > 0 ||
        cfg->auth.mode == GW_AUTH_MODE_NONE)
        return NULL;
    return "is not a loopback address and no clients are configured, so anyone who can reach "
           "it could use the HelpCrunch key; configure clients, or set auth = \"none\" when a "
           "mesh enforces who may call";
}

/* A TLS key file that others may read, as the API key file's: at every load (tls.h). */
static void warn_tls_key(const struct gw_log *log, const struct gw_config *cfg)
{
    struct gw_tls_info info;
    struct gw_logline l;

    if (cfg->listen.tls.creds == NULL)
        return;
    gw_tls_creds_info(cfg->listen.tls.creds, &info);
    if (!info.key_shared)
        return;
    gw_log_begin(log, &l, GW_LOG_WARN,
                 "the TLS key file is readable by other users: chmod 600 it "
                 "(upstream.key_file_mode = \"refuse\" makes this an error)");
    gw_log_str(&l, "key_file", cfg->listen.tls.key_file);
    gw_log_end(&l);
}

/* A Redis password file that others may read, as the API key file's: at every load. */
static void warn_redis_password(const struct gw_log *log, const struct gw_config *cfg)
{
    struct gw_logline l;

    if (!cfg->redis.password_shared)
        return;
    gw_log_begin(log, &l, GW_LOG_WARN,
                 "the Redis password file is readable by other users: chmod 600 it "
                 "(upstream.key_file_mode = \"refuse\" makes this an error)");
    gw_log_str(&l, "password_file", cfg->redis.password_file);
    gw_log_end(&l);
}

/* The warnings of a start that the secure defaults allow only because the file says so. */
static void warn_insecure(const struct gw_log *log, const struct gw_config *cfg)
{
    struct gw_logline l;

    if (cfg->auth.mode == GW_AUTH_MODE_NONE) {
        gw_log_begin(log, &l, GW_LOG_WARN,
                     "auth = \"none\": hcgw checks no caller; anyone who can reach it may use the "
                     "HelpCrunch key, so the mesh must enforce who may call");
        gw_log_str(&l, "address", cfg->listen.address);
        gw_log_end(&l);
    }
    warn_tls_key(log, cfg);
    warn_redis_password(log, cfg);
    if (gw_config_url_in_clear(cfg->upstream.base_url)) {
        gw_log_begin(log, &l, GW_LOG_WARN,
                     "upstream.allow_insecure_http: the key goes in clear over plain http to a "
                     "host that is not loopback");
        gw_log_str(&l, "upstream", cfg->upstream.base_url);
        gw_log_end(&l);
    }
}

/* What the listener serves, at a start and after a reload: never anything of the key. */
static void log_tls(const struct gw_log *log, const struct gw_config *cfg)
{
    struct gw_tls_info info;
    struct gw_logline l;

    if (cfg->listen.tls.creds == NULL)
        return;
    gw_tls_creds_info(cfg->listen.tls.creds, &info);
    gw_log_begin(log, &l, GW_LOG_INFO, "TLS certificate loaded");
    gw_log_str(&l, "cert_file", cfg->listen.tls.cert_file);
    gw_log_str(&l, "serial", info.serial);
    gw_log_int(&l, "not_after", (long long)info.not_after);
    gw_log_int(&l, "chain", (long long)info.chain);
    if (cfg->listen.tls.client_ca_file != NULL)
        gw_log_str(&l, "client_ca_file", cfg->listen.tls.client_ca_file);
    gw_log_end(&l);
}

static void log_problems(const struct gw_log *log, const char *what, const char *text)
{
    const char *p = text;

    while (p != NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        struct gw_logline l;
        gw_log_begin(log, &l, GW_LOG_ERROR, what);
        gw_log_strn(&l, "problem", p, n);
        gw_log_end(&l);
        p = nl ? nl + 1 : NULL;
    }
}

/*
 * Re-read the configuration (whole reload, SIGHUP) or only the key (its file changed), and
 * switch the server to them. Anything invalid is refused with log lines and the running
 * configuration stays. The old key is wiped once no worker can use it any more.
 */
static void reload(struct running *r, bool whole)
{
    struct gw_config *cfg = r->cfg;
    struct gw_secret *secret = NULL;
    char *errors = NULL;

    if (whole) {
        cfg = gw_config_load(r->path, &errors);
        if (cfg == NULL) {
            log_problems(r->log,
                         "reload refused: the configuration has problems; the running one stays",
                         errors ? errors : "cannot load the configuration");
            goto out;
        }
        /* The listening address stays until the next start, so it is the running one's. */
        if (exposure_problem(cfg, r->cfg->listen.address) != NULL) {
            struct gw_logline l;
            gw_log_begin(r->log, &l, GW_LOG_ERROR,
                         "reload refused: the configuration has problems; the running one stays");
            gw_log_str(&l, "problem", "listen.address: not loopback and no clients configured");
            gw_log_str(&l, "address", r->cfg->listen.address);
            gw_log_end(&l);
            goto out;
        }
        /* Each worker's Redis connection lives as long as the process. */
        if ((cfg->redis.url == NULL) != (r->cfg->redis.url == NULL)) {
            struct gw_logline l;
            gw_log_begin(r->log, &l, GW_LOG_ERROR,
                         "reload refused: the configuration has problems; the running one stays");
            gw_log_str(&l, "problem", "redis: a redis group added or removed takes a restart");
            gw_log_end(&l);
            goto out;
        }
        /* The listener is HTTPS or plain HTTP for the life of the process. */
        if ((cfg->listen.tls.creds == NULL) != (r->cfg->listen.tls.creds == NULL)) {
            struct gw_logline l;
            gw_log_begin(r->log, &l, GW_LOG_ERROR,
                         "reload refused: the configuration has problems; the running one stays");
            gw_log_str(&l, "problem", "listen.tls: turning TLS on or off takes a restart");
            gw_log_end(&l);
            goto out;
        }
        /* A pooled connection keeps the protocol it negotiated, and libcurl reuses an
         * HTTP/1.1 one for a call that would take HTTP/2: a change could only half apply. */
        if (cfg->upstream.http_version != r->cfg->upstream.http_version) {
            struct gw_logline l;
            gw_log_begin(r->log, &l, GW_LOG_ERROR,
                         "reload refused: the configuration has problems; the running one stays");
            gw_log_str(&l, "problem", "upstream.http_version: changing it takes a restart");
            gw_log_end(&l);
            goto out;
        }
        warn_insecure(r->log, cfg);
    }
    secret = gw_secret_load(cfg, r->log, &errors);
    if (secret == NULL) {
        log_problems(r->log, "reload refused: no usable key; the running key stays",
                     errors ? errors : "no key");
        goto out;
    }
    if (!whole && gw_secret_same(secret, r->secret))
        goto out; /* the folder changed, the key did not */
    if (gw_server_reload(r->srv, cfg, secret) != 0) {
        /* Some worker may still use the old ones: keep them (a small leak beats a crash). */
        gw_logf(r->log, GW_LOG_ERROR, "reload: not every worker took the new configuration");
        r->cfg = cfg;
        r->secret = secret;
        cfg = NULL;
        secret = NULL;
        goto out;
    }
    gw_log_set_level(r->log, cfg->log.level);
    gw_secret_free(r->secret);
    r->secret = secret;
    secret = NULL;
    if (whole) {
        gw_config_free(r->cfg);
        r->cfg = cfg;
    }
    cfg = r->cfg;
    {
        struct gw_logline l;
        gw_log_begin(r->log, &l, GW_LOG_INFO, whole ? "configuration reloaded" : "key reloaded");
        gw_log_str(&l, "key_source", gw_secret_source(r->secret));
        gw_log_end(&l);
    }
    if (whole)
        log_tls(r->log, cfg);
    watch_key_dir(r);
out:
    if (whole && cfg != r->cfg)
        gw_config_free(cfg);
    gw_secret_free(secret);
    free(errors);
}

/* Drain inotify; true when anything happened in the watched folder. */
static bool key_dir_changed(int fd)
{
    char buf[MAIN_INOTIFY_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool any = false;

    while (read(fd, buf, sizeof(buf)) > 0)
        any = true;
    return any;
}

/** getopt_long's values for the long options without a short form. */
#define MAIN_OPT_PROBE 256
#define MAIN_OPT_DUMP_TABLES 257
/** How long `--probe` waits for the whole answer, in milliseconds. */
#define MAIN_PROBE_TIMEOUT_MS 2000L

/* The probe reads no body: a health answer is judged by its status alone. */
static size_t probe_discard(char *data, size_t size, size_t n, void *user)
{
    (void)data;
    (void)user;
    return size * n;
}

/*
 * `hcgw --probe URL`: one GET, for a container HEALTHCHECK or any other supervisor that has no
 * curl. It needs no configuration and no key, uses no proxy (a health check of the local
 * process must not go through one), follows no redirect, and gives up after two seconds.
 * Prints one line; returns 0 for a 2xx answer and 1 for anything else.
 */
static int probe(const char *url)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *h = NULL;
    CURLcode res = CURLE_FAILED_INIT;
    long status = 0;
    int rc = 1;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "hcgw: probe %s: curl_global_init failed\n", url);
        goto out_global;
    }
    h = curl_easy_init();
    if (h == NULL ||
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*") != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, MAIN_PROBE_TIMEOUT_MS) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_USERAGENT, "hcgw-probe/" HCGW_VERSION) != CURLE_OK ||
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, probe_discard) != CURLE_OK) {
        fprintf(stderr, "hcgw: probe %s: cannot set up the request\n", url);
        goto out;
    }
    res = curl_easy_perform(h);
    if (res != CURLE_OK) {
        fprintf(stderr, "hcgw: probe %s: %s\n", url,
                errbuf[0] != '\0' ? errbuf : curl_easy_strerror(res));
        goto out;
    }
    if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    if (status >= 200 && status <= 299) {
        printf("probe %s: HTTP %ld\n", url, status);
        rc = 0;
    } else {
        fprintf(stderr, "hcgw: probe %s: HTTP %ld, not 2xx\n", url, status);
    }
out:
    curl_easy_cleanup(h);
    curl_global_cleanup();
out_global:
    return rc;
}

/*
 * `hcgw --dump-tables`: the route and error tables as JSON on stdout (tables.h), for tests and
 * tools that must know what this very binary serves. No configuration, no key, no network.
 */
static int dump_tables(void)
{
    json_object *tables = gw_tables_dump();
    const char *text;
    int rc = 1;

    if (tables == NULL) {
        fprintf(stderr, "hcgw: --dump-tables: out of memory\n");
        goto out;
    }
    text = json_object_to_json_string_ext(tables, JSON_C_TO_STRING_PRETTY |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE);
    if (text == NULL || printf("%s\n", text) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "hcgw: --dump-tables: cannot write the tables\n");
        goto out;
    }
    rc = 0;
out:
    json_object_put(tables);
    return rc;
}

/*
 * `hcgw token new NAME`: a new client token and the clients entry that admits it. The token
 * goes to stdout only, once: hcgw keeps its SHA-256, never the token, so this is the one place
 * it is ever seen. `hcgw token hash` prints the SHA-256 of a token read from stdin (one
 * trailing line break dropped), for tokens made elsewhere. Returns the exit status.
 */
static int token_command(int argc, char **argv)
{
    char token[GW_TOKEN_CHARS + 1];
    char buf[GW_MAX_TOKEN_BYTES + 3];
    unsigned char hash[GW_SHA256_BYTES];
    char hex[GW_SHA256_HEX + 1];
    size_t n = 0;
    int rc = 1;

    if (argc == 3 && strcmp(argv[1], "new") == 0) {
        if (!gw_auth_valid_client_name(argv[2])) {
            fprintf(stderr, "hcgw: token new: the name must be 1 to %d characters of "
                            "A-Z a-z 0-9 . _ -\n", GW_MAX_CLIENT_NAME);
            goto out;
        }
        if (gw_auth_token_new(token, hash) != 0) {
            fprintf(stderr, "hcgw: token new: cannot get random bytes: %s\n", strerror(errno));
            goto out;
        }
        gw_text_hex_encode(hash, sizeof(hash), hex);
        printf("# A new token for client \"%s\". This is the only place it is shown: give it\n"
               "# to that client (it sends \"Authorization: Bearer <token>\"); keep no copy.\n"
               "# hcgw's configuration holds only its SHA-256.\n"
               "token: %s\n"
               "token_sha256: %s\n"
               "\n"
               "# For hcgw.conf (into an existing clients list, take the { ... } entry alone).\n"
               "# Edit routes: route names, \"METHOD /pattern\" or \"*\" (see docs/security.md).\n"
               "clients = (\n"
               "  { name = \"%s\";\n"
               "    token_sha256 = \"%s\";\n"
               "    routes = [ \"contact_get\" ]; }\n"
               ");\n",
               argv[2], token, hex, argv[2], hex);
        rc = fflush(stdout) == 0 ? 0 : 1;
    } else if (argc == 2 && strcmp(argv[1], "hash") == 0) {
        n = fread(buf, 1, sizeof(buf) - 1, stdin);
        if (n > 0 && buf[n - 1] == '\n')
            n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
        buf[n] = '\0';
        if (n == 0 || n > GW_MAX_TOKEN_BYTES || strlen(buf) != n) {
            fprintf(stderr, "hcgw: token hash: give 1 to %d bytes of token on stdin\n",
                    GW_MAX_TOKEN_BYTES);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e) {
                fprintf(stderr, "hcgw: token hash: a token is visible ASCII without spaces\n");
                goto out;
            }
        }
        if (gw_auth_sha256(buf, n, hash) != 0) {
            fprintf(stderr, "hcgw: token hash: SHA-256 failed\n");
            goto out;
        }
        gw_text_hex_encode(hash, sizeof(hash), hex);
        printf("%s\n", hex);
        rc = 0;
    } else {
        fprintf(stderr, "Usage: hcgw token new NAME | hcgw token hash < TOKEN_FILE\n");
        rc = 2;
    }
out:
    gw_secret_wipe(token, sizeof(token));
    gw_secret_wipe(buf, sizeof(buf));
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: hcgw [-c FILE] [--check-config] [--probe URL] [--dump-tables] [--version]\n"
            "            [--help]\n"
            "A gateway in front of the HelpCrunch REST API.\n"
            "\n"
            "  -c, --config FILE   configuration file (default " GW_CONFIG_DEFAULT_PATH ")\n"
            "  -t, --check-config  check the configuration and the API key, then exit:\n"
            "                      0 and \"configuration OK\", or 1 and one line per problem\n"
            "      --probe URL     GET URL (2 s, no proxy; no config or key needed) and\n"
            "                      exit 0 on a 2xx answer, else 1: a container health check\n"
            "      --dump-tables   print the route and error tables as JSON and exit (no\n"
            "                      config or key needed)\n"
            "  -V, --version       print the version, commit and library versions\n"
            "  -h, --help          print this help\n"
            "\n"
            "       hcgw token new NAME   print a new client token, its SHA-256 and a clients\n"
            "                             entry for the configuration\n"
            "       hcgw token hash       print the SHA-256 of a token read from stdin\n"
            "\n"
            "Environment: HCGW_API_KEY (the key) or HCGW_API_KEY_FILE (a file holding it)\n"
            "override upstream.api_key / upstream.api_key_file.\n"
            "Signals: SIGTERM or SIGINT drain in-flight requests and exit 0; SIGHUP re-reads\n"
            "the configuration and the key (a changed key file is also noticed by itself).\n");
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
        {"probe", required_argument, NULL, MAIN_OPT_PROBE},
        {"dump-tables", no_argument, NULL, MAIN_OPT_DUMP_TABLES},
        {NULL, 0, NULL, 0}};
    const char *probe_url = NULL;
    const char *path = GW_CONFIG_DEFAULT_PATH;
    bool check_only = false;
    bool dump = false;
    struct gw_config *cfg = NULL;
    struct gw_secret *secret = NULL;
    struct gw_server *srv = NULL;
    struct gw_log *log = NULL;
    char *errors = NULL;
    struct sigaction sa;
    struct running run;
    sigset_t block, old;
    int rc = 1;
    int c;

    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return token_command(argc - 1, argv + 1);
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
        case MAIN_OPT_PROBE:
            probe_url = optarg;
            break;
        case MAIN_OPT_DUMP_TABLES:
            dump = true;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hcgw: unexpected argument '%s' (see hcgw --help)\n", argv[optind]);
        return 2;
    }
    if (dump)
        return dump_tables();
    if (probe_url != NULL)
        return probe(probe_url);

    /* On stderr at info until the configuration names a level; the server logs through it. */
    log = gw_log_new(2, GW_LOG_INFO);
    if (log == NULL) {
        fputs("hcgw: out of memory\n", stderr);
        goto out;
    }
    cfg = gw_config_load(path, &errors);
    if (cfg == NULL) {
        fputs(errors != NULL ? errors : "hcgw: cannot load the configuration\n", stderr);
        goto out;
    }
    secret = gw_secret_load(cfg, log, &errors);
    if (secret == NULL) {
        if (check_only)
            fprintf(stderr, "%s:0: upstream.api_key: %s\n", path, errors ? errors : "no key");
        else
            fprintf(stderr, "hcgw: %s\n", errors ? errors : "no HelpCrunch API key");
        goto out;
    }
    if (exposure_problem(cfg, cfg->listen.address) != NULL) {
        fprintf(stderr, "%s:0: listen.address: %s %s\n", path, cfg->listen.address,
                exposure_problem(cfg, cfg->listen.address));
        goto out;
    }
    if (check_only) {
        warn_tls_key(log, cfg);
        printf("configuration OK\n");
        rc = 0;
        goto out;
    }

    gw_log_set_level(log, cfg->log.level);
    warn_insecure(log, cfg);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        gw_logf(log, GW_LOG_ERROR, "curl_global_init failed");
        goto out;
    }

    /* Block the stop signals before the workers exist, so that they inherit the mask and only
     * the main thread, in sigsuspend, ever takes them. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_reload_signal;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    srv = gw_server_new(cfg, secret, log, &errors);
    if (srv == NULL) {
        gw_logf(log, GW_LOG_ERROR, "%s", errors ? errors : "cannot start the server");
        goto out_curl;
    }
    if (gw_server_start(srv) != 0) {
        gw_logf(log, GW_LOG_ERROR, "cannot start the worker threads");
        goto out_curl;
    }
    {
        struct gw_logline l;
        gw_log_begin(log, &l, GW_LOG_INFO, "listening");
        gw_log_str(&l, "address", cfg->listen.address);
        gw_log_int(&l, "port", gw_server_port(srv));
        gw_log_str(&l, "upstream", cfg->upstream.base_url);
        gw_log_str(&l, "key_source", gw_secret_source(secret));
        gw_log_str(&l, "scheme", cfg->listen.tls.creds != NULL ? "https" : "http");
        gw_log_str(&l, "version", HCGW_VERSION);
        gw_log_end(&l);
    }
    log_tls(log, cfg);

    memset(&run, 0, sizeof(run));
    run.path = path;
    run.log = log;
    run.cfg = cfg;
    run.secret = secret;
    run.srv = srv;
    run.inotify_fd = -1;
    watch_key_dir(&run);
    /* Wait for a signal or a change in the key's folder; ppoll unblocks the signals only
     * while it waits, so none is lost between the checks and the wait. */
    while (!got_stop) {
        struct pollfd pfd = {run.inotify_fd, POLLIN, 0};
        int n = ppoll(&pfd, run.inotify_fd >= 0 ? 1 : 0, NULL, &old);
        if (got_stop)
            break;
        if (got_reload) {
            got_reload = 0;
            gw_logf(log, GW_LOG_INFO, "SIGHUP: reloading %s", path);
            reload(&run, true);
        } else if (n > 0 && (pfd.revents & POLLIN) && key_dir_changed(run.inotify_fd)) {
            /* A rotation writes several entries; let it settle before reading the key. */
            usleep(MAIN_KEY_SETTLE_US);
            key_dir_changed(run.inotify_fd);
            reload(&run, false);
        }
    }
    cfg = run.cfg;
    secret = run.secret;
    if (run.inotify_fd >= 0)
        close(run.inotify_fd);
    gw_logf(log, GW_LOG_INFO, "stopping: draining in-flight requests (at most %ld ms)",
            cfg->server.drain_timeout_ms);
    gw_server_stop(srv);
    gw_server_wait(srv);
    gw_logf(log, GW_LOG_INFO, "stopped");
    rc = 0;

out_curl:
    gw_server_free(srv);
    curl_global_cleanup();
out:
    free(errors);
    gw_secret_free(secret);
    gw_config_free(cfg);
    gw_log_free(log);
    return rc;
}

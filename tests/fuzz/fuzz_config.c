/*
 * libFuzzer target: the configuration loader. Each input is written to a memfd and loaded by
 * path (/proc/self/fd/N), exactly as hcgw -c reads a file, then freed. Properties besides
 * memory safety:
 *   - a load gives a config or a problem text, never neither;
 *   - every problem line reads "PATH:LINE: key: reason";
 *   - a config that loads keeps the secure defaults: its base URL is http(s) without a trailing
 *     slash, and plain http to a host that is not loopback only with allow_insecure_http;
 *     every bounded key lies inside its bounds.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fd = -1;
static char path[64];

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: property broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = memfd_create("hcgw-fuzz.conf", MFD_CLOEXEC);
    check(fd >= 0, "memfd_create");
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

static void check_problems(const char *errors)
{
    size_t plen = strlen(path);
    const char *line = errors;

    check(*errors != '\0', "a refusal says why");
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        const char *p = line + plen;

        check(nl != NULL, "every problem line ends with a newline");
        check(strncmp(line, path, plen) == 0 && *p == ':', "a problem starts with the path");
        p++;
        check(*p >= '0' && *p <= '9', "then a line number");
        while (*p >= '0' && *p <= '9')
            p++;
        check(p[0] == ':' && p[1] == ' ' && p < nl, "then ': '");
        line = nl + 1;
    }
}

static void check_config(const struct gw_config *cfg)
{
    const char *url = cfg->upstream.base_url;
    size_t n = strlen(url);

    check(strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0,
          "base_url is http(s)");
    check(n > 0 && url[n - 1] != '/', "base_url has no trailing slash");
    check(!gw_config_url_in_clear(url) || cfg->upstream.allow_insecure_http,
          "the key goes in clear only with allow_insecure_http");
    check(cfg->listen.port >= 0 && cfg->listen.port <= 65535, "listen.port bounds");
    check(cfg->server.workers >= 0 && cfg->server.workers <= GW_MAX_WORKERS, "workers bounds");
    check(cfg->upstream.timeout_ms >= 1 && cfg->upstream.connect_timeout_ms >= 1,
          "timeouts are positive");
    check(cfg->upstream.retry_base_ms <= cfg->upstream.retry_max_ms, "retry base <= max");
    check(cfg->limits.max_body_bytes >= 1, "max_body_bytes bounds");
    check(cfg->upstream.key_file_mode == GW_KEY_FILE_WARN ||
              cfg->upstream.key_file_mode == GW_KEY_FILE_REFUSE,
          "key_file_mode is one of two");
    check(cfg->upstream.api_key == NULL || cfg->upstream.api_key_file == NULL,
          "api_key or api_key_file, not both");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_config *cfg;
    char *errors = NULL;

    if (size > GW_MAX_CONFIG_BYTES + 1)
        return 0;
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    cfg = gw_config_load(path, &errors);
    check((cfg != NULL) != (errors != NULL), "a config or problems, not both, not neither");
    if (cfg != NULL)
        check_config(cfg);
    else
        check_problems(errors);
    free(errors);
    gw_config_free(cfg);
    return 0;
}

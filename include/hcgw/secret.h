/*
 * The HelpCrunch API key: where it comes from (environment, key file, config), how it is held
 * (one heap copy, wiped when freed) and how it is kept out of logs and answers. Redis's
 * password (redis.password_file) is read and held by the same rules.
 */
#ifndef HCGW_SECRET_H
#define HCGW_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include <sys/stat.h>

#include "hcgw/config.h"

struct gw_config;
struct gw_log;
struct gw_secret;

/**
 * Resolve the key, first match wins: environment HCGW_API_KEY, environment HCGW_API_KEY_FILE,
 * upstream.api_key, upstream.api_key_file. A key file's trailing newline (LF or CRLF) is
 * stripped. The key must be 1..4096 bytes of visible ASCII (0x21..0x7e), since it goes into an
 * HTTP header. A key file readable by group or other gets a warning line in @p log (NULL: none)
 * at every load, or is refused when cfg's upstream.key_file_mode is "refuse". Returns a new
 * secret, or NULL with a malloc'd one-line reason in *error (which never contains the key; the
 * caller frees it). No key at all is an error that says how to give one.
 */
struct gw_secret *gw_secret_load(const struct gw_config *cfg, const struct gw_log *log,
                                 char **error);

/**
 * Load a password (Redis's, redis.password_file) from the file at @p path by the rules of a key
 * file: a regular file, one trailing line break stripped, 1..GW_MAX_REDIS_PASSWORD_BYTES bytes
 * of visible ASCII, held like the key (one buffer, locked in RAM when allowed, wiped when
 * freed). @p where names the file in a reason ("redis.password_file /run/x"). A file readable
 * by group or other is refused with @p mode GW_KEY_FILE_REFUSE, else warned about in @p log
 * (NULL: not). Returns a new secret, or NULL with a malloc'd one-line reason in *error that
 * never contains the password (the caller frees it). Any thread.
 */
struct gw_secret *gw_secret_load_password(const char *path, const char *where,
                                          enum gw_key_file_mode mode,
                                          const struct gw_log *log, char **error);

/**
 * True when the file that @p st describes may be read by users other than its owner and the
 * process's own groups (other read, or group read by a group the process is not in: a
 * Kubernetes Secret with fsGroup and mode 0440 is not shared), so that a secret in it is
 * shared with them: the rule that upstream.key_file_mode applies to the key file,
 * redis.password_file and listen.tls.key_file. Any thread.
 */
bool gw_secret_file_shared(const struct stat *st);

/** The key bytes (NUL-terminated) owned by @p s; valid until gw_secret_free. */
const char *gw_secret_value(const struct gw_secret *s);

/** Length of the key in bytes. */
size_t gw_secret_len(const struct gw_secret *s);

/** Where the key came from, for a log line: "env HCGW_API_KEY", "file /run/...", "config". */
const char *gw_secret_source(const struct gw_secret *s);

/** The path of the key file the key came from, or NULL when it came from elsewhere. */
const char *gw_secret_file(const struct gw_secret *s);

/** True when both hold the same key (both non-NULL). */
bool gw_secret_same(const struct gw_secret *a, const struct gw_secret *b);

/** Wipe the key from memory and free @p s. Accepts NULL. */
void gw_secret_free(struct gw_secret *s);

/**
 * Wipe @p len bytes at @p p in a way the compiler cannot elide (explicit_bzero).
 */
void gw_secret_wipe(void *p, size_t len);

/**
 * Replace every occurrence of the key in @p text (in place, @p len bytes) with '*'.
 * Returns the number of occurrences replaced. Used on any upstream text echoed to callers.
 */
size_t gw_secret_redact(const struct gw_secret *s, char *text, size_t len);

#endif

/*
 * TLS on the listener (listen.tls): the server's certificate chain and private key, and the CAs
 * that sign client certificates, read and checked whenever a configuration is loaded (so that
 * --check-config and a reload refuse what a start would refuse), then served through
 * libmicrohttpd's TLS, which is GnuTLS. Each handshake takes the pair of the configuration its
 * worker runs at that moment: after a reload, new connections get the new pair while those
 * already open keep theirs. With a client CA file, a client certificate is asked for (not
 * required) and verified during the handshake: one that does not verify ends the handshake. Its
 * URI and DNS names may then name a client (auth.h).
 */
#ifndef HCGW_TLS_H
#define HCGW_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#include "hcgw/config.h"
#include "hcgw/limits.h"

struct gw_log;
struct gw_tls_creds;

/**
 * The listener's GnuTLS priorities: TLS 1.3 and 1.2 only, with GnuTLS's NORMAL choice of
 * ciphers, groups and signatures.
 */
#define GW_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
/** Hex digits of the longest certificate serial number (RFC 5280: 20 octets). */
#define GW_TLS_SERIAL_HEX 40
/** The libmicrohttpd options of a TLS listener (gw_tls_mhd_options), MHD_OPTION_END included. */
#define GW_TLS_MHD_OPTIONS 3

/** Which file of listen.tls a load failed on. */
enum gw_tls_file {
    GW_TLS_FILE_CERT,        /* listen.tls.cert_file */
    GW_TLS_FILE_KEY,         /* listen.tls.key_file (also: it does not match the certificate) */
    GW_TLS_FILE_CLIENT_CA    /* listen.tls.client_ca_file */
};

/** What a loaded pair is, for log lines and the metrics. Holds no key material. */
struct gw_tls_info {
    char serial[GW_TLS_SERIAL_HEX + 1]; /* the server certificate's serial number, lower hex */
    int64_t not_after;                  /* when it expires, in seconds since the epoch */
    unsigned chain;                     /* certificates in cert_file, the server's first */
    bool client_cas;                    /* client_ca_file was given */
    bool key_shared;                    /* key_file may be read by group or other (warn mode) */
};

/** What the client certificate of a connection names (gw_tls_peer_get). */
struct gw_tls_peer {
    bool presented;                     /* a certificate was presented (and so verified) */
    bool unreadable;                    /* more names than fit below: it names no one */
    unsigned count;                     /* names[0..count) */
    const char *names[GW_MAX_TLS_PEER_NAMES]; /* its URI and DNS names, pointing into text */
    char text[GW_MAX_TLS_PEER_TEXT];
};

/**
 * NULL when this libmicrohttpd can serve TLS with a certificate callback, else why not (a
 * sentence for a problem line). Any thread.
 */
const char *gw_tls_unsupported(void);

/**
 * Read and check listen.tls: @p cert_file holds the server's certificate then its
 * intermediates (PEM, at most GW_MAX_TLS_CHAIN, in order); @p key_file its private key (PEM,
 * unencrypted: PKCS#8, PKCS#1 or SEC 1), which must match the first certificate; @p ca_file
 * (NULL: none) the CAs whose client certificates are accepted (PEM). Each is a regular file of
 * at most GW_MAX_TLS_FILE_BYTES. An expired server certificate is refused. A key file that
 * group or other may read is refused with @p mode GW_KEY_FILE_REFUSE, and only marked in the
 * info (key_shared) otherwise, for the caller to warn about. The key's bytes are wiped from
 * every buffer this reads them into; none is ever in a reason.
 *
 * Returns 0 with the creds in *out, or -1 with the file at fault in *which and a malloc'd
 * one-line reason in *error (NULL when out of memory). Any thread.
 */
int gw_tls_creds_load(const char *cert_file, const char *key_file, const char *ca_file,
                      enum gw_key_file_mode mode, struct gw_tls_creds **out,
                      enum gw_tls_file *which, char **error);

/** Free creds, wiping the key. Accepts NULL. No handshake may be using them (see above). */
void gw_tls_creds_free(struct gw_tls_creds *c);

/** What @p c holds, for log lines and metrics. */
void gw_tls_creds_info(const struct gw_tls_creds *c, struct gw_tls_info *info);

/**
 * Fill @p opts with the options that make a libmicrohttpd daemon started with MHD_USE_TLS
 * serve the creds of its worker's configuration (gw_tls_bind_thread): the certificate
 * callback and GW_TLS_PRIORITIES, then MHD_OPTION_END. Pass them with MHD_OPTION_ARRAY.
 */
void gw_tls_mhd_options(struct MHD_OptionItem opts[GW_TLS_MHD_OPTIONS]);

/**
 * Tell the calling thread where its configuration is: @p cfg points at the worker's current
 * configuration pointer, read at each handshake (a reload swaps it on this very thread), whose
 * listen.tls.creds the handshake uses. Refused client certificates are logged to @p log. Call
 * at the start of a worker thread that runs a TLS daemon, before its first MHD_run; both must
 * outlive the thread's last MHD_run. A handshake on a thread that was not bound fails.
 */
void gw_tls_bind_thread(const struct gw_config *const *cfg, const struct gw_log *log);

/**
 * What the client certificate of @p conn names: whether one was presented, and its URI and
 * DNS subject alternative names that may be identities (1..GW_MAX_IDENTITY_BYTES of visible
 * ASCII; others are left out). A certificate is only ever presented when the handshake asked
 * for one, and then it was verified against the client CAs before the first request. A
 * connection without TLS presents none. Worker thread, during a request.
 */
void gw_tls_peer_get(struct MHD_Connection *conn, struct gw_tls_peer *peer);

#endif

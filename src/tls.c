/*
 * TLS on the listener (tls.h). libmicrohttpd speaks TLS through GnuTLS, so GnuTLS's own types
 * are used here, and only here: the rest of hcgw sees opaque creds and a peer's names.
 *
 * A loaded pair is kept as DER: the chain's certificates and the key (PKCS#8). At each
 * handshake the certificate callback makes the session its own copies, which GnuTLS frees with
 * the session (GNUTLS_CERT_RETR_DEINIT_ALL). So a pair is only read while a handshake is
 * being started on a worker's thread, through the configuration that worker runs; a reload
 * swaps that configuration on the worker's own thread, and the old one (and its pair) is freed
 * only once every worker has taken the new one. No lock, no reference count, and a connection
 * keeps the pair it was opened with for as long as it lives.
 *
 * Client certificates. libmicrohttpd asks for one only when it was given a trust list at start,
 * which a reload could not change; so the callback, which GnuTLS runs while it reads the
 * ClientHello (before the server's CertificateRequest), asks for one itself when the current
 * configuration has client CAs, and sets a verify function that GnuTLS runs as soon as the
 * client's certificate has come: a chain that does not verify against those CAs, for client
 * authentication, ends the handshake. A client that sends none is let in, to present a token.
 */
#include "hcgw/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "hcgw/auth.h"
#include "hcgw/buf.h"
#include "hcgw/err.h"
#include "hcgw/log.h"
#include "hcgw/secret.h"

/* Room for one strerror_r text. */
#define TLS_ERRNO_BYTES 128
/* The first allocation when a file is read; it doubles up to GW_MAX_TLS_FILE_BYTES. */
#define TLS_READ_FIRST 4096
/* A SHA-256 key id. */
#define TLS_KEY_ID_BYTES 32

struct gw_tls_creds {
    gnutls_datum_t chain[GW_MAX_TLS_CHAIN]; /* DER, the server's certificate first */
    unsigned nchain;
    gnutls_datum_t key;                     /* PKCS#8 DER, unencrypted; wiped when freed */
    gnutls_x509_trust_list_t cas;           /* client CAs, or NULL */
    struct gw_tls_info info;
};

/* The worker this thread runs (gw_tls_bind_thread). */
static __thread const struct gw_config *const *thread_cfg;
static __thread const struct gw_log *thread_log;

const char *gw_tls_unsupported(void)
{
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return "this libmicrohttpd was built without TLS";
    if (MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK2) != MHD_YES)
        return "this libmicrohttpd cannot change certificates while it runs "
               "(no MHD_OPTION_HTTPS_CERT_CALLBACK2)";
    return NULL;
}

static void fail(char **error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(char **error, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    *error = strdup(buf);
}

/*
 * Read the whole regular file at @p path into @p text (which the caller initialised, with its
 * bound and GW_BUF_WIPE when it may hold a key), with the rules of every file hcgw reads a
 * secret from: O_NONBLOCK so that a FIFO is refused instead of hanging, regular files only.
 * Its status goes to *st. Returns 0, or -1 with a reason in *error.
 */
static int read_file(const char *path, struct gw_buf *text, struct stat *st, char **error)
{
    char errbuf[TLS_ERRNO_BYTES];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int rc = -1;

    if (fd < 0) {
        fail(error, "cannot read %s: %s", path, strerror_r(errno, errbuf, sizeof errbuf));
        goto out;
    }
    if (fstat(fd, st) != 0) {
        fail(error, "cannot read %s: %s", path, strerror_r(errno, errbuf, sizeof errbuf));
        goto out;
    }
    if (!S_ISREG(st->st_mode)) {
        fail(error, "%s is not a regular file", path);
        goto out;
    }
    for (;;) {
        char *at;
        size_t room;
        ssize_t r;
        int sp = gw_buf_space(text, &at, &room);

        if (sp == GW_ERR_BODY_TOO_LARGE) {
            fail(error, "%s is larger than %d bytes", path, GW_MAX_TLS_FILE_BYTES);
            goto out;
        }
        if (sp != 0) {
            fail(error, "%s: out of memory", path);
            goto out;
        }
        r = read(fd, at, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(error, "cannot read %s: %s", path, strerror_r(errno, errbuf, sizeof errbuf));
            goto out;
        }
        if (r == 0)
            break;
        gw_buf_commit(text, (size_t)r);
    }
    if (text->len == 0) {
        fail(error, "%s is empty", path);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static gnutls_datum_t datum_of(const struct gw_buf *b)
{
    gnutls_datum_t d = {(unsigned char *)b->data, (unsigned int)b->len};

    return d;
}

/* The chain in cert_file: PEM certificates, the server's first, each issued by the next. */
static int load_chain(struct gw_tls_creds *c, const char *path, gnutls_x509_crt_t *leaf,
                      char **error)
{
    struct gw_buf text;
    struct stat st;
    gnutls_x509_crt_t *crts = NULL;
    unsigned n = 0;
    gnutls_datum_t d;
    int ret;
    int rc = -1;

    gw_buf_init(&text, GW_MAX_TLS_FILE_BYTES, TLS_READ_FIRST, 0);
    if (read_file(path, &text, &st, error) != 0)
        goto out;
    d = datum_of(&text);
    ret = gnutls_x509_crt_list_import2(&crts, &n, &d, GNUTLS_X509_FMT_PEM,
                                       GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
    if (ret == GNUTLS_E_CERTIFICATE_LIST_UNSORTED) {
        fail(error, "%s: the certificates are not in order: the server's first, then each "
                    "one's issuer", path);
        goto out;
    }
    if (ret < 0 || n == 0) {
        fail(error, "%s holds no PEM certificate (%s)", path,
             ret < 0 ? gnutls_strerror(ret) : "none found");
        goto out;
    }
    if (n > GW_MAX_TLS_CHAIN) {
        fail(error, "%s holds %u certificates, more than %d", path, n, GW_MAX_TLS_CHAIN);
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        ret = gnutls_x509_crt_export2(crts[i], GNUTLS_X509_FMT_DER, &c->chain[i]);
        if (ret < 0) {
            fail(error, "%s: %s", path, gnutls_strerror(ret));
            goto out;
        }
        c->nchain++;
    }
    *leaf = crts[0];
    crts[0] = NULL;
    rc = 0;
out:
    for (unsigned i = 0; i < n; i++) {
        if (crts[i] != NULL)
            gnutls_x509_crt_deinit(crts[i]);
    }
    gnutls_free(crts);
    gw_buf_free(&text);
    return rc;
}

/*
 * The key in key_file, which must be the key of @p leaf: their public keys' SHA-256 ids are
 * compared. Kept as unencrypted PKCS#8 DER, whatever the file's PEM form was.
 */
static int load_key(struct gw_tls_creds *c, const char *path, gnutls_x509_crt_t leaf,
                    enum gw_key_file_mode mode, char **error)
{
    unsigned char key_id[TLS_KEY_ID_BYTES], crt_id[TLS_KEY_ID_BYTES];
    size_t key_id_len = sizeof key_id, crt_id_len = sizeof crt_id;
    gnutls_x509_privkey_t key = NULL;
    struct gw_buf text;
    struct stat st;
    gnutls_datum_t d;
    int ret;
    int rc = -1;

    gw_buf_init(&text, GW_MAX_TLS_FILE_BYTES, TLS_READ_FIRST, GW_BUF_WIPE);
    if (read_file(path, &text, &st, error) != 0)
        goto out;
    if (gw_secret_file_shared(&st)) {
        if (mode == GW_KEY_FILE_REFUSE) {
            fail(error, "%s is readable by other users (mode %04o): chmod 600 it, or set "
                        "upstream.key_file_mode = \"warn\"", path,
                 (unsigned)(st.st_mode & 07777));
            goto out;
        }
        c->info.key_shared = true;
    }
    if (gnutls_x509_privkey_init(&key) < 0) {
        fail(error, "%s: out of memory", path);
        goto out;
    }
    d = datum_of(&text);
    ret = gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (ret < 0) {
        /* GnuTLS's reason only: it never quotes the key. */
        fail(error, "%s holds no unencrypted PEM private key (%s)", path, gnutls_strerror(ret));
        goto out;
    }
    if (gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, key_id, &key_id_len) < 0 ||
        gnutls_x509_crt_get_key_id(leaf, GNUTLS_KEYID_USE_SHA256, crt_id, &crt_id_len) < 0 ||
        key_id_len != crt_id_len || memcmp(key_id, crt_id, key_id_len) != 0) {
        fail(error, "%s does not match the certificate of listen.tls.cert_file (the first "
                    "certificate there must be the one this key signs for)", path);
        goto out;
    }
    ret = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_DER, NULL, GNUTLS_PKCS_PLAIN,
                                            &c->key);
    if (ret < 0) {
        fail(error, "%s: %s", path, gnutls_strerror(ret));
        goto out;
    }
    rc = 0;
out:
    gnutls_x509_privkey_deinit(key);
    gw_buf_free(&text);
    return rc;
}

/* The client CAs: every PEM certificate in the file is trusted to sign client certificates. */
static int load_cas(struct gw_tls_creds *c, const char *path, char **error)
{
    struct gw_buf text;
    struct stat st;
    gnutls_datum_t d;
    int ret;
    int rc = -1;

    gw_buf_init(&text, GW_MAX_TLS_FILE_BYTES, TLS_READ_FIRST, 0);
    if (read_file(path, &text, &st, error) != 0)
        goto out;
    if (gnutls_x509_trust_list_init(&c->cas, 0) < 0) {
        c->cas = NULL;
        fail(error, "%s: out of memory", path);
        goto out;
    }
    d = datum_of(&text);
    ret = gnutls_x509_trust_list_add_trust_mem(c->cas, &d, NULL, GNUTLS_X509_FMT_PEM, 0, 0);
    if (ret <= 0) {
        fail(error, "%s holds no PEM certificate (%s)", path,
             ret < 0 ? gnutls_strerror(ret) : "none found");
        goto out;
    }
    c->info.client_cas = true;
    rc = 0;
out:
    gw_buf_free(&text);
    return rc;
}

static void set_info(struct gw_tls_creds *c, gnutls_x509_crt_t leaf)
{
    unsigned char serial[GW_TLS_SERIAL_HEX / 2];
    size_t len = sizeof serial;

    c->info.chain = c->nchain;
    c->info.not_after = (int64_t)gnutls_x509_crt_get_expiration_time(leaf);
    if (gnutls_x509_crt_get_serial(leaf, serial, &len) < 0)
        len = 0;
    for (size_t i = 0; i < len; i++)
        snprintf(c->info.serial + 2 * i, 3, "%02x", serial[i]);
}

int gw_tls_creds_load(const char *cert_file, const char *key_file, const char *ca_file,
                      enum gw_key_file_mode mode, struct gw_tls_creds **out,
                      enum gw_tls_file *which, char **error)
{
    struct gw_tls_creds *c = calloc(1, sizeof *c);
    gnutls_x509_crt_t leaf = NULL;
    int rc = -1;

    *out = NULL;
    *error = NULL;
    *which = GW_TLS_FILE_CERT;
    if (c == NULL)
        goto out;
    if (load_chain(c, cert_file, &leaf, error) != 0)
        goto out;
    set_info(c, leaf);
    if (c->info.not_after <= (int64_t)time(NULL)) {
        char when[32];
        time_t t = (time_t)c->info.not_after;
        struct tm tm;

        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        fail(error, "%s: the certificate expired at %s", cert_file, when);
        goto out;
    }
    *which = GW_TLS_FILE_KEY;
    if (load_key(c, key_file, leaf, mode, error) != 0)
        goto out;
    *which = GW_TLS_FILE_CLIENT_CA;
    if (ca_file != NULL && load_cas(c, ca_file, error) != 0)
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (leaf != NULL)
        gnutls_x509_crt_deinit(leaf);
    gw_tls_creds_free(c);
    return rc;
}

void gw_tls_creds_free(struct gw_tls_creds *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->nchain; i++)
        gnutls_free(c->chain[i].data);
    if (c->key.data != NULL) {
        gnutls_memset(c->key.data, 0, c->key.size);
        gnutls_free(c->key.data);
    }
    if (c->cas != NULL)
        gnutls_x509_trust_list_deinit(c->cas, 1);
    free(c);
}

void gw_tls_creds_info(const struct gw_tls_creds *c, struct gw_tls_info *info)
{
    *info = c->info;
}

/* ---- handshakes ---- */

static const struct gw_tls_creds *thread_creds(void)
{
    const struct gw_config *cfg = thread_cfg != NULL ? *thread_cfg : NULL;

    return cfg != NULL ? cfg->listen.tls.creds : NULL;
}

/*
 * GnuTLS runs this once the client's certificate message has come (with or without one), while
 * the handshake waits: 0 lets it go on, anything else ends it. Verified against the client CAs
 * of the configuration the worker runs now, for client authentication (a certificate whose
 * extended key usage leaves that out is refused), at the current time.
 */
static int verify_peer(gnutls_session_t session)
{
    static const char *const purpose = GNUTLS_KP_TLS_WWW_CLIENT;
    const struct gw_tls_creds *c = thread_creds();
    gnutls_typed_vdata_st vdata = {GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)purpose, 0};
    gnutls_x509_crt_t crts[GW_MAX_TLS_CHAIN];
    const gnutls_datum_t *peers;
    unsigned n = 0, imported = 0, status = 0;
    const char *why = NULL;
    int rc = -1;

    peers = gnutls_certificate_get_peers(session, &n);
    if (peers == NULL || n == 0) {
        rc = 0; /* none presented: a token may still name the caller */
        goto out;
    }
    if (c == NULL || c->cas == NULL) {
        why = "no client CAs are configured any more";
        goto out;
    }
    if (n > GW_MAX_TLS_CHAIN) {
        why = "the chain is too long";
        goto out;
    }
    for (; imported < n; imported++) {
        if (gnutls_x509_crt_init(&crts[imported]) < 0)
            break;
        if (gnutls_x509_crt_import(crts[imported], &peers[imported], GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(crts[imported]);
            break;
        }
    }
    if (imported < n) {
        why = "a certificate of the chain cannot be read";
        goto out;
    }
    if (gnutls_x509_trust_list_verify_crt2(c->cas, crts, n, &vdata, 1, 0, &status, NULL) < 0) {
        why = "it cannot be verified";
        goto out;
    }
    if (status != 0) {
        why = (status & GNUTLS_CERT_SIGNER_NOT_FOUND) ? "not signed by a client CA"
              : (status & GNUTLS_CERT_EXPIRED)        ? "expired"
              : (status & GNUTLS_CERT_NOT_ACTIVATED)  ? "not yet valid"
              : (status & GNUTLS_CERT_PURPOSE_MISMATCH)
                  ? "not for client authentication (extended key usage)"
                  : "it does not verify";
        goto out;
    }
    rc = 0;
out:
    for (unsigned i = 0; i < imported; i++)
        gnutls_x509_crt_deinit(crts[i]);
    if (why != NULL && thread_log != NULL) {
        struct gw_logline l;

        gw_log_begin(thread_log, &l, GW_LOG_WARN, "client certificate refused at the handshake");
        gw_log_str(&l, "reason", why);
        gw_log_end(&l);
    }
    return rc;
}

/*
 * MHD_OPTION_HTTPS_CERT_CALLBACK2 (GnuTLS's retrieve function 3): the session's own copy of
 * the current pair, which GnuTLS frees with the session; and, with client CAs, the request
 * for a client certificate and its verification.
 */
static int cert_callback(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                         gnutls_pcert_st **certs, unsigned int *ncerts,
                         gnutls_ocsp_data_st **ocsp, unsigned int *nocsp,
                         gnutls_privkey_t *privkey, unsigned int *flags)
{
    const struct gw_tls_creds *c = thread_creds();
    gnutls_pcert_st *pcerts = NULL;
    gnutls_privkey_t key = NULL;
    unsigned done = 0;
    int rc = -1;

    (void)info;
    if (c == NULL)
        goto out;
    pcerts = gnutls_calloc(c->nchain, sizeof *pcerts);
    if (pcerts == NULL)
        goto out;
    for (; done < c->nchain; done++) {
        if (gnutls_pcert_import_x509_raw(&pcerts[done], &c->chain[done], GNUTLS_X509_FMT_DER,
                                         0) < 0)
            goto out;
    }
    if (gnutls_privkey_init(&key) < 0) {
        key = NULL;
        goto out;
    }
    if (gnutls_privkey_import_x509_raw(key, &c->key, GNUTLS_X509_FMT_DER, NULL, 0) < 0)
        goto out;
    if (c->cas != NULL) {
        gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUEST);
        gnutls_session_set_verify_function(session, verify_peer);
    }
    *certs = pcerts;
    *ncerts = c->nchain;
    *ocsp = NULL;
    *nocsp = 0;
    *privkey = key;
    *flags = GNUTLS_CERT_RETR_DEINIT_ALL;
    pcerts = NULL;
    key = NULL;
    rc = 0;
out:
    for (unsigned i = 0; pcerts != NULL && i < done; i++)
        gnutls_pcert_deinit(&pcerts[i]);
    gnutls_free(pcerts);
    if (key != NULL)
        gnutls_privkey_deinit(key);
    return rc;
}

void gw_tls_mhd_options(struct MHD_OptionItem opts[GW_TLS_MHD_OPTIONS])
{
    gnutls_certificate_retrieve_function3 *cb = cert_callback;

    opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK2, 0, (void *)cb};
    opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                      (void *)GW_TLS_PRIORITIES};
    opts[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
}

void gw_tls_bind_thread(const struct gw_config *const *cfg, const struct gw_log *log)
{
    thread_cfg = cfg;
    thread_log = log;
}

/* ---- the client certificate of a request ---- */

static bool identity_like(const char *s, size_t len)
{
    bool ok = len > 0 && len <= GW_MAX_IDENTITY_BYTES && strlen(s) == len;

    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)s[i] >= 0x21 && (unsigned char)s[i] <= 0x7e;
    return ok;
}

void gw_tls_peer_get(struct MHD_Connection *conn, struct gw_tls_peer *peer)
{
    const union MHD_ConnectionInfo *ci;
    const gnutls_datum_t *peers;
    gnutls_x509_crt_t crt = NULL;
    char name[GW_MAX_IDENTITY_BYTES + 1];
    size_t used = 0;
    unsigned n = 0;

    peer->presented = false;
    peer->unreadable = false;
    peer->count = 0;
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL)
        goto out;
    peers = gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session, &n);
    if (peers == NULL || n == 0)
        goto out;
    peer->presented = true;
    if (gnutls_x509_crt_init(&crt) < 0) {
        crt = NULL;
        peer->unreadable = true;
        goto out;
    }
    if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) < 0) {
        peer->unreadable = true;
        goto out;
    }
    for (unsigned seq = 0;; seq++) {
        size_t len = sizeof name - 1;
        int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, name, &len, NULL);

        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
            continue; /* longer than any identity: it names no client */
        if (type < 0) {
            peer->unreadable = true;
            break;
        }
        if (type != GNUTLS_SAN_URI && type != GNUTLS_SAN_DNSNAME)
            continue;
        name[len < sizeof name ? len : sizeof name - 1] = '\0';
        if (!identity_like(name, len))
            continue;
        if (peer->count == GW_MAX_TLS_PEER_NAMES || used + len + 1 > sizeof peer->text) {
            peer->unreadable = true;
            break;
        }
        memcpy(peer->text + used, name, len + 1);
        peer->names[peer->count++] = peer->text + used;
        used += len + 1;
    }
out:
    if (peer->unreadable)
        peer->count = 0;
    if (crt != NULL)
        gnutls_x509_crt_deinit(crt);
}

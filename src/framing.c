/*
 * HTTP/1.1 request framing: what libmicrohttpd 0.9.75 lets through that a proxy in front of
 * hcgw may read differently. A request whose body length two parties can disagree on (two
 * Content-Lengths, Content-Length beside Transfer-Encoding, a Transfer-Encoding that is not
 * plain chunked) or whose bytes libmicrohttpd silently cuts (a NUL) or accepts where others do
 * not (a bare LF, an obs-fold) is the raw material of request smuggling: the bytes one party
 * takes for the body, the other takes for a second request, which would then reach HelpCrunch
 * with nobody's checks. hcgw refuses every such request (400 malformed_request) and closes the
 * connection, so no byte after it is ever read as a request.
 */
#include "hcgw/framing.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "hcgw/err.h"
#include "hcgw/limits.h"

/* RFC 9110 tchar: the characters of a field name. */
static bool is_token(const char *s)
{
    static const char punct[] = "!#$%&'*+-.^_`|~";
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(punct, c) != NULL))
            return false;
    }
    return i > 0;
}

void gw_framing_add(struct gw_framing *f, const char *name, const char *value)
{
    if (name == NULL || !is_token(name))
        f->bad_name = true;
    if (name == NULL || value == NULL)
        return;
    if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->content_length++;
    } else if (strcasecmp(name, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        /* libmicrohttpd decodes chunked only for exactly this value, and for anything else
         * reads the body until the connection closes: both sides must agree, so only it. */
        if (strcasecmp(value, "chunked") != 0)
            f->te_not_chunked = true;
    } else if (strcasecmp(name, MHD_HTTP_HEADER_HOST) == 0) {
        f->host++;
    } else if (strcasecmp(name, MHD_HTTP_HEADER_CONTENT_TYPE) == 0) {
        f->content_type++;
    }
}

int gw_framing_verdict(const struct gw_framing *f)
{
    if (f->bad_name || f->content_length > 1 || f->transfer_encoding > 1 || f->host > 1 ||
        f->content_type > 1 || f->te_not_chunked ||
        (f->transfer_encoding > 0 && f->content_length > 0))
        return GW_ERR_MALFORMED_REQUEST;
    return 0;
}

/* What one pass over the header fields found. */
struct scan {
    struct gw_framing f;
    bool bad;           /* a field that was not parsed in place from one well-formed line */
};

/* Is @p p (@p n bytes) only blanks (SP, HTAB)? */
static bool blanks(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t')
            return false;
    }
    return true;
}

/*
 * One header field. libmicrohttpd 0.9.75 parses "name: value CRLF" in place: the colon becomes
 * a NUL, blanks after it are skipped, and the CR and LF each become a NUL. So, for a field that
 * came from one well-formed line, the value starts right after its name's NUL and blanks, and
 * the byte after the value's NUL is a NUL too (the former LF). A bare LF leaves one NUL and the
 * next line's first byte there; a NUL inside the value leaves the rest of the value there; an
 * obs-fold continuation makes libmicrohttpd copy the name elsewhere. The bytes read all lie in
 * the connection's read buffer, between a name and its value or at the value's line end, and
 * the value's line is always followed by at least the empty line that ends the header.
 */
static enum MHD_Result scan_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct scan *s = cls;
    size_t klen;
    size_t vlen;
    uintptr_t k;
    uintptr_t v;

    (void)kind;
    if (key == NULL || value == NULL) {
        s->bad = true;
        return MHD_NO;
    }
    gw_framing_add(&s->f, key, value);
    klen = strlen(key);
    vlen = strlen(value);
    k = (uintptr_t)key;
    v = (uintptr_t)value;
    if (v < k + klen + 1 || v - k > GW_MAX_HEADER_BYTES ||
        !blanks(key + klen + 1, (size_t)(v - (k + klen + 1))) || value[vlen + 1] != '\0') {
        s->bad = true;
        return MHD_NO;
    }
    return MHD_YES;
}

/*
 * The request line "METHOD SP target SP version CRLF", parsed in place the same way: the first
 * space after the method and the space before the version became NULs. A NUL inside the method
 * or the target shortens the string libmicrohttpd hands out; the pointers still show where each
 * part really ends. @p target_len is what the URI callback saw.
 */
static bool request_line_ok(const char *method, const char *url, const char *version,
                            size_t target_len)
{
    uintptr_t m = (uintptr_t)method;
    uintptr_t u = (uintptr_t)url;
    uintptr_t ver = (uintptr_t)version;
    size_t mlen;
    size_t vlen;

    /* Without a version libmicrohttpd points at a constant "", not into the buffer, and has
     * refused the request anyway; nothing to read then. */
    if (method == NULL || url == NULL || version == NULL || version[0] == '\0')
        return true;
    if (u <= m || ver <= u || ver - m > GW_MAX_HEADER_BYTES)
        return false;
    /* The method ends at the first space; only more spaces may lie between it and the target. */
    mlen = strlen(method);
    if (u < m + mlen + 1 || !blanks(method + mlen + 1, (size_t)(u - (m + mlen + 1))))
        return false;
    /* The target runs to the NUL before the version. */
    if (target_len != (size_t)-1 && target_len != (size_t)(ver - 1 - u))
        return false;
    /* CRLF left two NULs after the version; a bare LF one, then the first header's first byte. */
    vlen = strlen(version);
    return version[vlen + 1] == '\0';
}

int gw_framing_check(struct MHD_Connection *conn, const char *method, const char *url,
                     const char *version, size_t target_len)
{
    struct scan s;

    memset(&s, 0, sizeof(s));
    if (!request_line_ok(method, url, version, target_len))
        return GW_ERR_MALFORMED_REQUEST;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_field, &s);
    if (s.bad)
        return GW_ERR_MALFORMED_REQUEST;
    return gw_framing_verdict(&s.f);
}

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
    bool ambiguous = f->bad_name || f->content_length > 1 || f->transfer_encoding > 1 ||
                     f->host > 1 || f->content_type > 1 || f->te_not_chunked ||
                     (f->transfer_encoding > 0 && f->content_length > 0);

    return ambiguous ? GW_ERR_MALFORMED_REQUEST : 0;
}

/* What one pass over the header fields found. */
struct scan {
    struct gw_framing f;
    size_t bytes;       /* the header lines the fields account for, each with its CRLF */
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
 * The blanks between a value's end and its line's CR, which libmicrohttpd 1.0 leaves out of
 * the value: it puts the value's NUL on the first of them and leaves the rest, and the CR, as
 * they were. @p end is the value's NUL. 0.9.75 puts that NUL on the CR itself (and the LF after
 * it is a LF or a NUL): no blank follows, and none is counted.
 */
static size_t trailing_blanks(const char *end)
{
    const char *t = end + 1;

    while (*t == ' ' || *t == '\t')
        t++;
    return *t == '\r' ? (size_t)(t - end) : 0;
}

/*
 * One header field. libmicrohttpd 0.9.75 parses "name: value CRLF" in place, in its read
 * buffer: the colon becomes a NUL, blanks after it are skipped, the CR and LF become NULs. So a
 * field that came from one well-formed line has its value right after its name's NUL and
 * blanks, and its line is (value end - name) + 2 bytes long. An obs-fold continuation makes
 * libmicrohttpd copy the name elsewhere, which breaks that adjacency. The only bytes read are
 * the blanks between a name and its value, and (trailing_blanks) those after it, up to its CR
 * (1.0 leaves trailing blanks out of the value; the line's length counts them).
 */
static enum MHD_Result scan_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct scan *s = cls;
    size_t klen;
    size_t vlen;
    size_t tail;
    uintptr_t k;
    uintptr_t v;

    (void)kind;
    if (key == NULL || value == NULL) {
        s->bad = true;
        goto out;
    }
    gw_framing_add(&s->f, key, value);
    klen = strlen(key);
    vlen = strlen(value);
    k = (uintptr_t)key;
    v = (uintptr_t)value;
    /* A bare CR inside a value is one more way to end a line for somebody else (RFC 9110 5.5). */
    if (v < k + klen + 1 || v - k > GW_MAX_HEADER_BYTES ||
        !blanks(key + klen + 1, (size_t)(v - (k + klen + 1))) || memchr(value, '\r', vlen)) {
        s->bad = true;
        goto out;
    }
    tail = trailing_blanks(value + vlen);
    /* "chunked " is a value 0.9.75 does not decode as chunked and 1.0 does: refused on both. */
    if (tail > 0 && strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        s->f.te_not_chunked = true;
    s->bytes += (size_t)(v - k) + vlen + 2 + tail;
out:
    return s->bad ? MHD_NO : MHD_YES;
}

/*
 * The whole header section, "METHOD SP target SP version CRLF *(field-line CRLF) CRLF", must be
 * exactly what the parts libmicrohttpd hands out account for: libmicrohttpd reports how many
 * bytes the section took, and the request line and every stored field line are measured with
 * CRLF endings. Any byte they do not account for is a byte libmicrohttpd read past silently:
 * a NUL that cut a method, target or value short, a bare LF (one byte where CRLF takes two), a
 * line it dropped, or a line starting with ':' (0.9.75 zeroes the colon, takes the line for the
 * blank one that ends the header, and reads what follows as body or as the next request: a
 * request hidden inside a request). The method must also be followed by exactly one space.
 */
int gw_framing_check(struct MHD_Connection *conn, const char *method, const char *url,
                     const char *version, size_t target_len)
{
    const union MHD_ConnectionInfo *ci;
    struct scan s;
    uintptr_t m;
    uintptr_t u;
    uintptr_t ver;
    int rc = GW_ERR_MALFORMED_REQUEST;

    /* Without a version libmicrohttpd points at a constant "", not into its buffer, and has
     * refused the request itself; there is nothing to measure. */
    if (method == NULL || url == NULL || version == NULL || version[0] == '\0') {
        rc = 0;
        goto out;
    }
    m = (uintptr_t)method;
    u = (uintptr_t)url;
    ver = (uintptr_t)version;
    if (u != m + strlen(method) + 1 || ver <= u || ver - m > GW_MAX_HEADER_BYTES)
        goto out;
    /* The target runs to the NUL that replaced the space before the version. */
    if (target_len != (size_t)-1 && target_len != (size_t)(ver - 1 - u))
        goto out;
    memset(&s, 0, sizeof(s));
    s.bytes = (size_t)(ver - m) + strlen(version) + 2;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_field, &s);
    if (s.bad)
        goto out;
    s.bytes += 2; /* the blank line */
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (ci == NULL || ci->header_size != s.bytes)
        goto out;
    rc = gw_framing_verdict(&s.f);
out:
    return rc;
}

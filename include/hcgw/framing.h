/*
 * The HTTP/1.1 framing checks libmicrohttpd 0.9.75 (Debian 12's) does not make itself. It reads
 * the body by the first Content-Length of several, by chunked when any Transfer-Encoding says
 * so even beside a Content-Length, keeps the connection open after such a request, and cuts a
 * request line or header value at a NUL byte. Each of these lets a request mean one thing to a
 * proxy in front of hcgw and another to hcgw (request smuggling), so hcgw refuses them with
 * 400 malformed_request and closes the connection. Pure functions plus one reader of an MHD
 * connection; the worker's thread.
 */
#ifndef HCGW_FRAMING_H
#define HCGW_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;

/** What the framing check counts over a request's header fields. Zero it before the first add. */
struct gw_framing {
    unsigned content_length;     /* Content-Length fields */
    unsigned transfer_encoding;  /* Transfer-Encoding fields */
    unsigned host;               /* Host fields */
    unsigned content_type;       /* Content-Type fields */
    bool te_not_chunked;         /* a Transfer-Encoding value other than "chunked" */
    bool bad_name;               /* a field name that is not an RFC 9110 token */
};

/**
 * Count one header field @p name: @p value (NUL-terminated, as libmicrohttpd stores them).
 * Field names compare case-insensitively. Never fails.
 */
void gw_framing_add(struct gw_framing *f, const char *name, const char *value);

/**
 * The verdict on the fields counted in @p f: 0 when the body's framing is unambiguous, else
 * GW_ERR_MALFORMED_REQUEST: more than one Content-Length, Transfer-Encoding, Host or
 * Content-Type; a Transfer-Encoding other than exactly "chunked" (any case); Transfer-Encoding
 * together with Content-Length; a field name that is not a token (an obs-fold continuation
 * that libmicrohttpd glued onto a name, a space before the colon).
 */
int gw_framing_verdict(const struct gw_framing *f);

/**
 * Check the request of @p conn at its first access-handler call, where @p method, @p url and
 * @p version are the access handler's arguments and @p target_len is the length of the request
 * target libmicrohttpd reported to the URI callback (strlen of it, path and query), or
 * (size_t)-1 when unknown. Besides gw_framing_verdict over every header field, the header
 * section must be exactly "METHOD SP target SP version CRLF *(field-line CRLF) CRLF" as the
 * parts libmicrohttpd hands out account for it, which refuses a NUL in the method, the target
 * or a field, a bare LF, a bare CR in a value, an obs-fold, more than one space after the method,
 * and a line libmicrohttpd 0.9.75 skipped or took for the end of the header (one that starts
 * with ':'). This measures libmicrohttpd's read buffer, where 0.9.75 parses each line in place;
 * it reads no byte outside it. Returns 0 or GW_ERR_MALFORMED_REQUEST.
 */
int gw_framing_check(struct MHD_Connection *conn, const char *method, const char *url,
                     const char *version, size_t target_len);

#endif

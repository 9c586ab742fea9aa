"""Hostile input, proved (issue 4, section 3): a table of malformed and malicious requests, each
sent as raw bytes on its own connection.

For every entry:
- every status line hcgw sends on that connection is a 4xx (505 only where the entry is about
  the HTTP version, which is libmicrohttpd's own correct answer), or the connection is closed
  without an answer (unparseable HTTP). Entries whose body is incomplete on purpose may also
  just get no answer before the client gives up (the read is bounded by a timeout);
- nothing reaches the simulator: its request count is read after every entry and must not
  move across the whole table. Smuggling entries carry a second, valid request
  (GET /contacts/1568834) where a server that framed the first one wrongly would read it, so a
  framing bug shows up as a call here;
- hcgw stays up: /healthz answers 200 after every batch, and at the end it exits 0 with no
  sanitizer report and without the key in its logs (GatewayCase.tearDownClass).

The table covers bad ids, bad percent escapes, NUL and CRLF in names, invalid UTF-8, overlong
request lines, huge headers, trace context past its bounds, wrong methods, bad JSON, deep JSON
nesting, duplicate and conflicting headers, chunked bodies that lie, request smuggling (CL.TE,
TE.CL, obfuscated Transfer-Encoding), HTTP/0.9 and the HTTP/2 preface, absolute-form targets,
header lines without a colon and bare LF line ends, HEAD where no GET is, and CORS preflights
(the gateway has a cors group) from origins not allowed or with odd Origin and
Access-Control-Request-Method values: long, empty, repeated, not a method, not ASCII.
"""
import collections
import re
import select
import socket
import time
import unittest

import harness
from harness import GatewayCase

C = "1568834"
HOST = b"Host: hcgw\r\n"
# The one origin the gateway's cors group allows.
ALLOWED = b"http://127.0.0.1:8000"
JSON_CT = b"Content-Type: application/json\r\n"

# A request that reaches HelpCrunch if anything ever reads it as a request of its own.
SMUGGLED = b"GET /contacts/" + C.encode() + b" HTTP/1.1\r\nHost: hcgw\r\n\r\n"

Case = collections.namedtuple("Case", "name data incomplete version")

# Anywhere: a pipelined answer follows the body before it without a line break.
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")
BATCH = 25
# After a whole answer, how long to wait for more bytes (a second answer, to a request hidden in
# the first). Short: a hidden request that is answered later still shows in the simulator's
# count, which is read after every entry and once more at the end.
GRACE = 0.15


def case(name, data, incomplete=False, version=False):
    return Case(name, data, incomplete, version)


def req(method, target, headers=b"", body=b"", version=b"HTTP/1.1", host=True, length=None):
    """A request line, Host, @p headers (raw, each ending CRLF), a Content-Length for a body
    (unless @p length is False), the blank line and @p body."""
    head = method + b" " + target + b" " + version + b"\r\n"
    if host:
        head += HOST
    head += headers
    if body and length is None:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def build_table():
    t = []
    b = lambda s: s.encode("latin-1") if isinstance(s, str) else s  # noqa: E731

    # ---- bad ids, on several routes (with a valid body where the route takes one)
    ids = ["0", "00", "01", "-1", "+1", "1.0", "1e3", "0x10", "12345678901234567890",
           "99999999999999999999", "abc", "1a", "a1", "%31", "%2e%2e", "..", ".", "1%00",
           "1%0d%0a", "1;x", "1,2", "1%20", "%EF%BC%91", "1@evil.com", "%40evil", "1%23x",
           "1%3Fx", "1%2F2", "..%2F..%2Fadmin", "\u0661".encode("utf-8").decode("latin-1")]
    for i in ids:
        t.append(case("id %r GET" % i, req(b"GET", b("/contacts/" + i))))
        t.append(case("id %r PUT block" % i, req(b"PUT", b("/contacts/%s/block" % i))))
    for i in ids[:8]:
        t.append(case("id %r DELETE tag" % i, req(b"DELETE", b("/contacts/%s/tags/Lead" % i))))
        t.append(case("id %r POST tags" % i, req(b"POST", b("/contacts/%s/tags" % i), JSON_CT,
                                                 b'{"tags":["x"]}')))
        t.append(case("id %r PATCH" % i, req(b"PATCH", b("/contacts/" + i), JSON_CT,
                                             b'{"notes":"n"}')))

    # ---- bad percent escapes and bad names in {name}
    names = ["%", "%2", "%zz", "%g0", "%%", "a%", "%0", "%-1", "%+1", "%u0041", "%C0%AF",
             "%ED%A0%80", "%F4%90%80%80", "%FF", "%80", "%E2%82", "%00", "a%00b", "%0D%0A",
             "a%0D%0AX-Injected:%201", "%0A", "%09", "%7F", "%C2%80", "%C2%9F", "a" * 101,
             "%C3%A9" * 101]
    for n in names:
        for m in (b"PUT", b"DELETE"):
            t.append(case("name %r %s" % (n[:20], m.decode()),
                          req(m, b("/contacts/%s/tags/%s" % (C, n)))))

    # ---- NUL, CR and LF where HTTP allows none (raw bytes)
    raw_lines = [
        ("NUL in id", b"GET /contacts/" + C.encode() + b"\x00 HTTP/1.1\r\n" + HOST + b"\r\n"),
        ("NUL in name", b"PUT /contacts/" + C.encode() + b"/tags/a\x00b HTTP/1.1\r\n" + HOST +
         b"\r\n"),
        ("NUL ends name", b"PUT /contacts/" + C.encode() + b"/tags/Lead\x00 HTTP/1.1\r\n" + HOST +
         b"\r\n"),
        ("NUL in method", b"GET\x00X /contacts/" + C.encode() + b" HTTP/1.1\r\n" + HOST + b"\r\n"),
        ("NUL in version", b"GET /contacts/" + C.encode() + b" HTTP/1.1\x00\r\n" + HOST + b"\r\n"),
        ("NUL in header value", req(b"GET", b"/contacts/" + C.encode(), b"X-A: a\x00b\r\n")),
        ("NUL in Content-Type", req(b"POST", b"/contacts/search",
                                   b"Content-Type: application/json\x00x\r\n", b"{}")),
        ("NUL in header name", req(b"GET", b"/contacts/" + C.encode(), b"X-\x00A: b\r\n")),
        ("CRLF in name", b"PUT /contacts/" + C.encode() + b"/tags/a\r\nX-Injected: 1 HTTP/1.1\r\n"
         + HOST + b"\r\n"),
        ("LF in name", b"PUT /contacts/" + C.encode() + b"/tags/a\nb HTTP/1.1\r\n" + HOST +
         b"\r\n"),
        ("CR in name", b"PUT /contacts/" + C.encode() + b"/tags/a\rb HTTP/1.1\r\n" + HOST +
         b"\r\n"),
        ("CR in header value", req(b"GET", b"/contacts/" + C.encode(), b"X-A: a\rb\r\n")),
        ("tab in name", b"PUT /contacts/" + C.encode() + b"/tags/a\tb HTTP/1.1\r\n" + HOST +
         b"\r\n"),
        ("space in name", b"PUT /contacts/" + C.encode() + b"/tags/a b HTTP/1.1\r\n" + HOST +
         b"\r\n"),
        ("DEL in name", req(b"PUT", b"/contacts/" + C.encode() + b"/tags/a\x7fb")),
        ("C0 in name", req(b"PUT", b"/contacts/" + C.encode() + b"/tags/a\x01b")),
    ]
    t += [case(n, d) for n, d in raw_lines]

    # ---- invalid UTF-8: raw in the name, and in JSON bodies
    for raw in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xfe\xff",
                b"\xf8\x88\x80\x80\x80", b"a\xc3", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\xc2\x85"):
        t.append(case("raw name %r" % raw, req(b"PUT", b"/contacts/" + C.encode() + b"/tags/" +
                                                raw)))
    for body in (b'{"tags":["\xff"]}', b'{"tags":["\xc0\xaf"]}', b'{"tags":["\xed\xa0\x80"]}',
                 b'{"tags":[{"name":"a\xe2\x82"}]}'):
        t.append(case("utf8 tags %r" % body, req(b"POST", b"/contacts/" + C.encode() + b"/tags",
                                                 JSON_CT, body)))
    for body in (b'{"name":"\xc0\xaf"}', b'{"\xff":1}', b'{"name":"\xf4\x90\x80\x80"}'):
        t.append(case("utf8 create %r" % body, req(b"POST", b"/contacts", JSON_CT, body)))
    t.append(case("utf8 search", req(b"POST", b"/contacts/search", JSON_CT,
                                     b'{"filter":[{"value":"\xed\xbf\xbf"}]}')))

    # ---- overlong request lines
    t.append(case("path 3000", req(b"GET", b"/contacts/" + b"1" * 3000)))
    t.append(case("path 40000", req(b"GET", b"/contacts/" + b"1" * 40000)))
    t.append(case("name 3000", req(b"PUT", b"/contacts/" + C.encode() + b"/tags/" + b"a" * 3000)))
    t.append(case("query 40000", req(b"GET", b"/contacts?limit=" + b"1" * 40000)))
    t.append(case("method 10000", req(b"G" * 10000, b"/contacts/" + C.encode())))
    t.append(case("version 5000", req(b"GET", b"/contacts/" + C.encode(), version=b"H" * 5000),
                  version=True))
    t.append(case("spaces 5000", b"GET " + b" " * 5000 + b"/contacts/" + C.encode() +
                  b" HTTP/1.1\r\n" + HOST + b"\r\n"))

    # ---- huge headers
    t.append(case("header 40 KiB", req(b"GET", b"/contacts/" + C.encode(),
                                       b"X-Big: " + b"a" * 40960 + b"\r\n")))
    t.append(case("2000 headers", req(b"GET", b"/contacts/" + C.encode(),
                                      b"".join(b"X-H%d: v\r\n" % i for i in range(2000)))))
    t.append(case("header name 40 KiB", req(b"GET", b"/contacts/" + C.encode(),
                                            b"X" * 40960 + b": v\r\n")))
    t.append(case("cookie 40 KiB", req(b"GET", b"/contacts/" + C.encode(),
                                       b"Cookie: " + b"a=b; " * 8192 + b"\r\n")))

    # ---- trace context past its bounds. It is advisory (a bad one is replaced, not refused),
    # so only the header memory refuses it (431); within it, on a request refused anyway, it
    # changes nothing about the refusal and nothing goes upstream.
    tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    t.append(case("traceparent 40 KiB", req(b"GET", b"/contacts/" + C.encode(),
                                            b"traceparent: " + tp + b"-" + b"a" * 40960 +
                                            b"\r\n")))
    t.append(case("tracestate 40 KiB", req(b"GET", b"/contacts/" + C.encode(),
                                           b"traceparent: " + tp + b"\r\ntracestate: " +
                                           b"k=v," * 10240 + b"\r\n")))
    t.append(case("traceparent 8 KiB, bad id", req(b"GET", b"/contacts/0",
                                                   b"traceparent: cc" + tp[2:] + b"-" +
                                                   b"f" * 8192 + b"\r\n")))
    t.append(case("tracestate 1000 members, bad id",
                  req(b"GET", b"/contacts/0", b"traceparent: " + tp + b"\r\ntracestate: " +
                      b",".join(b"k%d=v" % i for i in range(1000)) + b"\r\n")))
    t.append(case("traceparent 50 times, bad id",
                  req(b"GET", b"/contacts/0", (b"traceparent: " + tp + b"\r\n") * 50)))
    t.append(case("traceparent NUL and CR", req(b"GET", b"/contacts/" + C.encode(),
                                                b"traceparent: 00-\x00\r-x\r\n")))

    # ---- wrong methods
    for m, target in ((b"FOO", C), (b"TRACE", C), (b"OPTIONS", C), (b"head", C),
                      (b"get", C), (b"Get", C), (b"PROPFIND", C), (b"POST", C),
                      (b"CONNECTX", C), (b"M" * 100, C)):
        t.append(case("method %r" % m[:10], req(m, b"/contacts/" + target.encode())))
    for m, path in ((b"PATCH", b"/contacts"), (b"DELETE", b"/contacts"),
                    (b"PUT", b"/contacts/search"), (b"GET", b"/contacts/%s/tags/Lead" % C.encode()),
                    (b"POST", b"/healthz"), (b"DELETE", b"/metrics"), (b"PUT", b"/readyz"),
                    (b"GET", b"/contacts/%s/block" % C.encode()),
                    (b"HEAD", b"/contacts/search"), (b"HEAD", b"/contacts/%s/block" % C.encode()),
                    (b"HEAD", b"/contacts/%s/tags/Lead" % C.encode())):
        t.append(case("method %s %s" % (m.decode(), path.decode()), req(m, path)))
    t.append(case("OPTIONS *", req(b"OPTIONS", b"*")))
    t.append(case("CONNECT authority", req(b"CONNECT", b"api.helpcrunch.com:443")))
    t.append(case("tab after method", b"GET\t/contacts/" + C.encode() + b" HTTP/1.1\r\n" + HOST +
                  b"\r\n"))

    # ---- bad JSON (and bad media types) on the body routes
    tags = b"/contacts/" + C.encode() + b"/tags"
    for body in (b"{", b"}", b"[]", b"null", b"true", b"1", b'"x"', b'{"tags":}',
                 b"{'tags':['a']}", b'{"tags":[NaN]}', b'{"tags":["a"]} garbage',
                 b'{"tags":["a",]}', b'{"tags":["a"]', b'/*c*/{"tags":["a"]}',
                 b'{"tags":["a"]}\x00', b'\xef\xbb\xbf{"tags":["a"]}', b'{"tags":[]}',
                 b'{"tags":["a"],"x":1}', b'{"tags":"a"}', b'{"tags":[1]}',
                 b'{"tags":[{"name":"a","color":"red"}]}', b'{"tags":[{"name":"a","x":1}]}',
                 b'{"tags":["\\u0000"]}', b'{"tags":["a\\x41"]}', b'{"tags":["' + b"a" * 101 +
                 b'"]}', b'{"tags":[' + b'"a",' * 100 + b'"a"]}', b'{"tags":["a\tb"]}',
                 b'{"tags":[{"name":null}]}'):
        t.append(case("tags body %r" % body[:30], req(b"POST", tags, JSON_CT, body)))
    t.append(case("tags body empty", req(b"POST", tags, JSON_CT + b"Content-Length: 0\r\n")))
    for body in (b"[]", b'"str"', b'{"a":1e999}', b'{"a":01}', b'{"a":.5}', b'{"a":"\x01"}',
                 b'{"a":"\\q"}', b'{"a":1,}', b'{"a" 1}', b'{"a":infinity}'):
        t.append(case("create body %r" % body, req(b"POST", b"/contacts", JSON_CT, body)))
    for body in (b'{"limit":0}', b'{"limit":101}', b'{"limit":"5"}', b'{"offset":-1}',
                 b'{"filter":{}}', b'{"filter":[1]}', b'{"comparison":"XOR"}', b'{"limit":1.5}'):
        t.append(case("search body %r" % body, req(b"POST", b"/contacts/search", JSON_CT, body)))
    t.append(case("patch array", req(b"PATCH", b"/contacts/" + C.encode(), JSON_CT, b"[1]")))
    for ct in (b"text/plain", b"application/jsonx", b"application/x-www-form-urlencoded",
               b"multipart/form-data; boundary=x", b"", b"json"):
        t.append(case("content type %r" % ct, req(b"POST", b"/contacts/search",
                                                  b"Content-Type: " + ct + b"\r\n", b"{}")))
    t.append(case("no content type", req(b"POST", b"/contacts/search", b"", b"{}")))

    # ---- deep JSON nesting
    for depth in (33, 100, 1000, 30000):
        t.append(case("tags nested %d" % depth, req(b"POST", tags, JSON_CT,
                                                   b'{"tags":' + b"[" * depth + b"]" * depth +
                                                   b"}")))
        t.append(case("create nested %d" % depth, req(b"POST", b"/contacts", JSON_CT,
                                                     b'{"a":' * depth + b"1" + b"}" * depth)))
    t.append(case("search nested 5000", req(b"POST", b"/contacts/search", JSON_CT,
                                            b'{"filter":[' + b"{" * 5000 + b"}" * 5000 +
                                            b"]}")))
    t.append(case("unclosed nesting", req(b"PATCH", b"/contacts/" + C.encode(), JSON_CT,
                                          b"[" * 20000)))

    # ---- duplicate and conflicting headers (each also carries a smuggled request)
    search = b"/contacts/search"
    dup = [
        ("two Content-Length, 0 then n", b"Content-Length: 0\r\nContent-Length: %d\r\n"
         % len(SMUGGLED), SMUGGLED),
        ("two Content-Length, n then 0", b"Content-Length: %d\r\nContent-Length: 0\r\n"
         % len(SMUGGLED), SMUGGLED),
        ("two equal Content-Length", b"Content-Length: 2\r\nContent-Length: 2\r\n",
         b"{}" + SMUGGLED),
        ("two Host", b"Host: other\r\nContent-Length: 2\r\n", b"{}"),
        ("two Content-Type", b"Content-Type: text/plain\r\nContent-Length: 2\r\n", b"{}"),
        ("Content-Length list", b"Content-Length: 2, 2\r\n", b"{}"),
        ("Content-Length negative", b"Content-Length: -1\r\n", b"{}"),
        ("Content-Length plus", b"Content-Length: +2\r\n", b"{}"),
        ("Content-Length hex", b"Content-Length: 0x2\r\n", b"{}"),
        ("Content-Length huge", b"Content-Length: 99999999999999999999999\r\n", b"{}"),
        ("Content-Length empty", b"Content-Length: \r\n", b"{}"),
        ("Content-Length letters", b"Content-Length: two\r\n", b"{}"),
        ("Content-Length space inside", b"Content-Length: 1 2\r\n", b"{}"),
        ("Content-Length too large", b"Content-Length: 99999999\r\n", b"{}"),
    ]
    for name, headers, body in dup:
        t.append(case(name, req(b"POST", search, JSON_CT + headers, body, length=False)))
    t.append(case("two Host on GET", req(b"GET", b"/contacts/" + C.encode(), b"Host: b\r\n")))
    t.append(case("no Host", req(b"GET", b"/contacts/" + C.encode(), host=False)))
    t.append(case("empty Host twice", req(b"GET", b"/contacts/" + C.encode(),
                                          b"Host: \r\n", host=True)))

    # ---- chunked bodies that lie (the outer request is refused anyway: its id is 0)
    bad_tags = b"/contacts/0/tags"
    te = JSON_CT + b"Transfer-Encoding: chunked\r\n"
    lies = [
        ("chunk longer than data", b"20\r\n{}\r\n0\r\n\r\n", True),
        ("chunk shorter than data", b"1\r\n{}\r\n0\r\n\r\n", False),
        ("no last chunk", chunk(b"{}"), True),
        ("no final CRLF", chunk(b"{}") + b"0\r\n", True),
        ("non-hex size", b"zz\r\n{}\r\n0\r\n\r\n", False),
        ("negative size", b"-2\r\n{}\r\n0\r\n\r\n", False),
        ("0x size", b"0x2\r\n{}\r\n0\r\n\r\n", False),
        ("huge size", b"ffffffffffffffffff\r\n{}\r\n0\r\n\r\n", False),
        ("size then space", b"2 \r\n{}\r\n0\r\n\r\n", False),
        ("no CRLF after data", b"2\r\n{}0\r\n\r\n", False),
        ("size 64 hex digits", b"0" * 63 + b"2\r\n{}\r\n0\r\n\r\n", False),
        ("bad trailer", chunk(b"{}") + b"0\r\nbroken trailer\r\n\r\n", False),
        ("LF-only chunk lines", b"2\n{}\n0\n\n", True),
        ("smuggle after last chunk", b"1\r\n{}\r\n0\r\n\r\n" + SMUGGLED, False),
    ]
    for name, body, incomplete in lies:
        t.append(case("chunked: " + name, req(b"POST", bad_tags, te, body, length=False),
                      incomplete=incomplete))

    # ---- request smuggling: two framings of one request, the second hiding a request
    cl_te_body = b"0\r\n\r\n" + SMUGGLED
    te_cl_chunk = chunk(SMUGGLED) + b"0\r\n\r\n"
    smuggling = [
        ("CL.TE", b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(cl_te_body),
         cl_te_body),
        ("TE.CL", b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", te_cl_chunk),
        ("CL.TE with xchunked", b"Content-Length: %d\r\nTransfer-Encoding: xchunked\r\n"
         % len(cl_te_body), cl_te_body),
        ("TE space before colon", b"Transfer-Encoding : chunked\r\nContent-Length: %d\r\n"
         % len(cl_te_body), cl_te_body),
        ("TE xchunked", b"Transfer-Encoding: xchunked\r\n", cl_te_body),
        ("TE chunked trailing space", b"Transfer-Encoding: chunked \r\n", cl_te_body),
        ("TE CHUNKED, identity", b"Transfer-Encoding: CHUNKED, identity\r\n", cl_te_body),
        ("TE identity", b"Transfer-Encoding: identity\r\nContent-Length: %d\r\n"
         % len(cl_te_body), cl_te_body),
        ("TE gzip, chunked", b"Transfer-Encoding: gzip, chunked\r\n", cl_te_body),
        ("TE twice, chunked first", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
         cl_te_body),
        ("TE twice, chunked last", b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n",
         cl_te_body),
        ("TE chunked, chunked", b"Transfer-Encoding: chunked, chunked\r\n", cl_te_body),
        ("TE vertical tab", b"Transfer-Encoding: \x0bchunked\r\n", cl_te_body),
        ("TE underscore name", b"Transfer_Encoding: chunked\r\nContent-Length: %d\r\n"
         % len(cl_te_body), cl_te_body),
        ("TE obs-fold after other", b"X-A: y\r\n Transfer-Encoding: chunked\r\n"
         b"Content-Length: %d\r\n" % len(cl_te_body), cl_te_body),
        ("TE value folded", b"Transfer-Encoding: x\r\n chunked\r\n", cl_te_body),
        ("TE leading line fold", b" Transfer-Encoding: chunked\r\nContent-Length: %d\r\n"
         % len(cl_te_body), cl_te_body),
        ("TE NUL inside", b"Transfer-Encoding: chunked\x00x\r\n", cl_te_body),
        ("TE bare-LF split", b"X-A: y\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n"
         % len(cl_te_body), cl_te_body),
        ("CL bare-LF split", b"X-A: y\nContent-Length: 0\r\n", SMUGGLED),
    ]
    for name, headers, body in smuggling:
        t.append(case("smuggle " + name, req(b"POST", bad_tags, JSON_CT + headers, body,
                                             length=False)))

    # ---- CORS preflights (OPTIONS with Origin and Access-Control-Request-Method) that must be
    # refused: 403 from an origin not allowed, 400 for a method that is none, 404 for no path
    cid = b"/contacts/" + C.encode()

    def preflight(origin, method=b"PUT", target=cid, more=b""):
        return req(b"OPTIONS", target, b"Origin: " + origin + b"\r\n" +
                   b"Access-Control-Request-Method: " + method + b"\r\n" + more)

    for name, origin in (("evil", b"https://evil.example"), ("null", b"null"), ("star", b"*"),
                         ("empty", b""), ("trailing slash", ALLOWED + b"/"),
                         ("upper case", ALLOWED.upper()), ("other port", ALLOWED[:-1] + b"1"),
                         ("path", ALLOWED + b"/app"), ("user", b"http://a@127.0.0.1:8000"),
                         ("suffix", ALLOWED + b".evil.example"), ("prefix", b"x" + ALLOWED),
                         ("8 KiB", b"https://" + b"a" * 8192), ("14 KiB", b"h" * 14336),
                         ("latin-1", b"https://\xe9vil.example"),
                         ("bytes", bytes(range(0x80, 0xff))),
                         ("comma list", ALLOWED + b", " + ALLOWED), ("tab inside", b"http://a\tb")):
        t.append(case("preflight origin " + name, preflight(origin)))
    t.append(case("preflight two origins", preflight(ALLOWED, more=b"Origin: " + ALLOWED +
                                                     b"\r\n")))
    t.append(case("preflight evil origin, unknown path", preflight(b"https://evil.example",
                                                                   target=b"/nope")))
    for name, method in (("empty", b""), ("list", b"PUT, DELETE"), ("space", b"P T"),
                         ("33 bytes", b"A" * 33), ("8 KiB", b"M" * 8192),
                         ("parenthesis", b"(PUT)"), ("slash", b"GET/1"), ("non-ASCII", b"\xc3\xa9"),
                         ("high bytes", bytes(range(0x80, 0xa0))), ("quote", b'"PUT"')):
        t.append(case("preflight method " + name, preflight(ALLOWED, method)))
    t.append(case("preflight two methods", preflight(
        ALLOWED, more=b"Access-Control-Request-Method: DELETE\r\n")))
    t.append(case("preflight unknown path", preflight(ALLOWED, target=b"/nope")))
    t.append(case("preflight asterisk", preflight(ALLOWED, target=b"*")))
    t.append(case("preflight path 3000", preflight(ALLOWED, target=b"/contacts/" + b"1" * 3000)))
    t.append(case("preflight body too large", preflight(ALLOWED, more=b"Content-Length: 99999999"
                                                                  b"\r\n")))
    t.append(case("preflight no origin", req(b"OPTIONS", cid,
                                             b"Access-Control-Request-Method: PUT\r\n")))
    t.append(case("preflight no method", req(b"OPTIONS", cid, b"Origin: " + ALLOWED + b"\r\n")))
    t.append(case("origin on a refused GET", req(b"GET", b"/contacts/0",
                                                 b"Origin: " + ALLOWED + b"\r\n")))

    # ---- HTTP versions and request forms
    t += [
        case("HTTP/0.9", b"GET /contacts/" + C.encode() + b"\r\n"),
        case("HTTP/0.9 then blank", b"GET /contacts/" + C.encode() + b"\r\n\r\n"),
        case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", version=True),
        case("HTTP/2.0 version", req(b"GET", b"/contacts/" + C.encode(), version=b"HTTP/2.0"),
             version=True),
        case("HTTP/9.9 version", req(b"GET", b"/contacts/" + C.encode(), version=b"HTTP/9.9"),
             version=True),
        case("HTTP/1 version", req(b"GET", b"/contacts/" + C.encode(), version=b"HTTP/1"),
             version=True),
        case("HTTP/1.1x version", req(b"GET", b"/contacts/" + C.encode(), version=b"HTTP/1.1x"),
             version=True),
        case("HTTPS/1.1 version", req(b"GET", b"/contacts/" + C.encode(), version=b"HTTPS/1.1"),
             version=True),
        case("lowercase version", req(b"GET", b"/contacts/" + C.encode(), version=b"http/1.1"),
             version=True),
        case("absolute form", req(b"GET", b"http://evil.example/contacts/" + C.encode())),
        case("absolute form upstream", req(b"GET", b"https://api.helpcrunch.com/v1/customers/"
                                                  + C.encode())),
        case("absolute form self", req(b"GET", b"http://hcgw/contacts/" + C.encode())),
        case("network-path form", req(b"GET", b"//evil.example/contacts/" + C.encode())),
        case("relative target", req(b"GET", b"contacts/" + C.encode())),
        case("dot segments", req(b"GET", b"/x/../contacts/" + C.encode())),
        case("dot segment after", req(b"GET", b"/contacts/" + C.encode() + b"/..")),
        case("encoded slash route", req(b"GET", b"/contacts%2F" + C.encode())),
        case("backslash route", req(b"GET", b"/contacts\\" + C.encode())),
        case("asterisk target", req(b"GET", b"*")),
        case("header without colon", req(b"GET", b"/contacts/" + C.encode(),
                                          b"Broken header line\r\n")),
        case("header empty name", req(b"GET", b"/contacts/" + C.encode(), b": value\r\n")),
        case("header empty name first", b"GET /contacts/" + C.encode() + b" HTTP/1.1\r\n"
             b": value\r\n" + HOST + b"\r\n"),
        # libmicrohttpd 0.9.75 takes a line that starts with ':' for the end of the header and
        # reads what follows as the next request: one request for a proxy, two for it.
        case("colon line hides a request", b"GET /healthz HTTP/1.1\r\n" + HOST + b": x\r\n" +
             SMUGGLED),
        case("bare colon line hides a request", b"GET /healthz HTTP/1.1\r\n" + HOST +
             b":\r\n" + SMUGGLED),
        case("colon line in a body request", b"POST /contacts/0/tags HTTP/1.1\r\n" + HOST +
             JSON_CT + b":\r\nContent-Length: 2\r\n\r\n{}" + SMUGGLED),
        case("bare LF everywhere", b"GET /contacts/" + C.encode() + b" HTTP/1.1\nHost: h\n\n"),
        case("bare LF request line", b"GET /contacts/" + C.encode() + b" HTTP/1.1\n" + HOST +
             b"\r\n"),
        case("bare LF after header", b"GET /contacts/" + C.encode() + b" HTTP/1.1\r\nHost: h\n"
             b"X-A: b\r\n\r\n"),
        case("bare CR line ends", b"GET /contacts/" + C.encode() + b" HTTP/1.1\rHost: h\r\r",
             incomplete=True),
        case("only CRLFs", b"\r\n\r\n\r\n\r\n", incomplete=True),
        case("TLS client hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 64,
             incomplete=True),
        case("NUL bytes", b"\x00" * 64, incomplete=True),
        case("binary garbage", bytes(range(256)) * 4),
        case("request line only spaces", b"   \r\n\r\n", incomplete=True),
    ]
    return t


def exchange(port, data, timeout):
    """Send @p data on a new connection, read every byte hcgw sends until it closes, the read
    times out, or a whole answer has come and nothing more follows for GRACE seconds. Returns
    (bytes, how it ended: "closed" | "timeout" | "idle")."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    end = "timeout"
    try:
        try:
            sock.sendall(data)
        except OSError:
            pass  # hcgw may answer and close while the rest is still being sent
        deadline = time.monotonic() + timeout
        while True:
            wait = deadline - time.monotonic()
            if complete_answer(buf):
                wait = min(wait, GRACE)
            if wait <= 0:
                end = "idle" if complete_answer(buf) else "timeout"
                break
            r, _, _ = select.select([sock], [], [], wait)
            if not r:
                end = "idle" if complete_answer(buf) else "timeout"
                break
            try:
                chunk_ = sock.recv(65536)
            except ConnectionResetError:
                end = "closed"
                break
            if not chunk_:
                end = "closed"
                break
            buf += chunk_
    finally:
        sock.close()
    return buf, end


def complete_answer(buf):
    """True when @p buf holds at least one whole answer (headers and Content-Length body)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    m = re.search(rb"\r\ncontent-length: *(\d+)", buf[:head_end].lower())
    length = int(m.group(1)) if m else 0
    return len(buf) >= head_end + 4 + length


class HostileTest(GatewayCase):
    conf_groups = {"limits": {"header_timeout_ms": 3000, "connection_timeout_ms": 2000},
                   "cors": {"allow_origins": [ALLOWED.decode()]}}

    def healthz(self):
        r = harness.http_request(self.gw.port, "GET", "/healthz", timeout=10)
        self.assertEqual(r.status, 200, "hcgw stopped answering")

    def test_hostile_table(self):
        table = build_table()
        self.assertGreaterEqual(len(table), 200)
        self.assertEqual(len({c.name for c in table}), len(table), "names are unique")
        start = self.sim.count()
        logged_before = len(self.gw.access_lines())
        outcomes = collections.Counter()
        failures = []
        for i, c in enumerate(table):
            before = self.sim.count()
            buf, end = exchange(self.gw.port, c.data, 4.5 if c.incomplete else 10.0)
            statuses = [int(s) for s in STATUS_LINE.findall(buf)]
            allowed = lambda s: 400 <= s <= 499 or (c.version and s == 505)  # noqa: E731
            problem = None
            if self.sim.count() != before:
                problem = "reached the simulator"
            elif buf and not statuses:
                problem = "bytes without a status line: %r" % buf[:120]
            elif any(not allowed(s) for s in statuses):
                problem = "statuses %s" % statuses
            elif not statuses and end == "timeout" and not c.incomplete:
                problem = "no answer and the connection stayed open"
            if self.sim.key.encode() in buf:
                problem = "the key in an answer"
            if problem:
                failures.append("%s: %s" % (c.name, problem))
            outcomes["%s/%s" % (statuses[0] if statuses else "-", end)] += 1
            if (i + 1) % BATCH == 0 or i + 1 == len(table):
                self.healthz()
        self.assertEqual(failures, [], "\n".join(failures))
        self.assertEqual(self.sim.count(), start, "the table reached the simulator")
        self.healthz()
        # What the table got, for the log: status/how the connection ended.
        print("\n%d hostile requests: %s" % (len(table), dict(sorted(outcomes.items()))))
        # Every refusal hcgw made itself was logged once: the access lines hold no 2xx.
        ok = [a for a in self.gw.access_lines()[logged_before:]
              if 200 <= a.get("status", 0) <= 299 and a.get("route") not in ("healthz", None)]
        self.assertEqual(ok, [])

    def test_pipelined_valid_requests_still_work(self):
        # The framing checks refuse ambiguity, not keep-alive: two well-formed requests in one
        # write get two answers, and both reach HelpCrunch.
        before = self.sim.count()
        data = (b"GET /contacts/" + C.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n" +
                b"PUT /contacts/" + C.encode() + b"/tags/Piped HTTP/1.1\r\nHost: h\r\n"
                b"Connection: close\r\n\r\n")
        buf, end = exchange(self.gw.port, data, 10.0)
        self.assertEqual([int(s) for s in STATUS_LINE.findall(buf)], [200, 200], buf[:300])
        self.assertEqual(self.sim.count(), before + 2)

    def test_chunked_body_with_any_case_still_works(self):
        # "chunked" is case-insensitive, and one Transfer-Encoding without Content-Length is
        # the ordinary way to send a body of unknown length.
        body = b'{"tags":["Chunky"]}'
        data = (b"POST /contacts/" + C.encode() + b"/tags HTTP/1.1\r\nHost: h\r\n" + JSON_CT +
                b"Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n" + chunk(body) +
                b"0\r\n\r\n")
        buf, end = exchange(self.gw.port, data, 10.0)
        self.assertEqual([int(s) for s in STATUS_LINE.findall(buf)], [200], buf[:300])

    def test_large_headers_sent_in_pieces_still_work(self):
        # The framing check measures libmicrohttpd's buffer: 10 KiB of headers in 50 lines (of
        # the 16 KiB bound, of which each header line also takes some for its bookkeeping) that
        # arrive in many small reads (so the buffer grows under them) are still measured right.
        headers = b"".join(b"X-H%03d: %s\r\n" % (i, b"v" * 200) for i in range(50))
        data = (b"GET /contacts/" + C.encode() + b" HTTP/1.1\r\nHost: h\r\n" + headers +
                b"X-Empty:\r\nX-Spaces:   padded   \r\nConnection: close\r\n\r\n")
        sock = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
        buf = b""
        try:
            for i in range(0, len(data), 700):
                sock.sendall(data[i:i + 700])
                time.sleep(0.002)
            while True:
                chunk_ = sock.recv(65536)
                if not chunk_:
                    break
                buf += chunk_
        finally:
            sock.close()
        self.assertEqual([int(s) for s in STATUS_LINE.findall(buf)], [200], buf[:300])

    def test_malformed_answer_is_the_envelope_and_closes(self):
        data = (b"POST /contacts/search HTTP/1.1\r\nHost: h\r\n" + JSON_CT +
                b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}" + SMUGGLED)
        mark = self.gw.proc.mark()
        buf, end = exchange(self.gw.port, data, 10.0)
        self.assertEqual(end, "closed")
        head, _, body = buf.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
        self.assertIn(b"\r\nConnection: close", head)
        self.assertIn(b"\r\nX-Content-Type-Options: nosniff", head)
        self.assertIn(b'"code":"malformed_request"', body)
        self.assertEqual(len(STATUS_LINE.findall(buf)), 1)
        line = harness.wait_access(self.gw, re.search(rb'"request_id":"([0-9a-f]+)"',
                                                      body).group(1).decode(), mark)
        self.assertEqual((line["status"], line["code"]), (400, "malformed_request"))


if __name__ == "__main__":
    unittest.main()

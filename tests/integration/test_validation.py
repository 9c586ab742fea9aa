"""Validation before any upstream call, over real HTTP.

Every rule of the contract's "Validation" paragraph, the unknown-path and wrong-method answers,
the list query and the request id. Each refused request must get the right 4xx envelope (its
request_id equal to the X-Request-Id header, no upstream_status, no details) and must cost no
call to HelpCrunch: each one runs inside assertNoUpstreamCall. Where a rule has a boundary, the
value just inside it is shown to reach the simulator, so a validator that refuses everything
cannot pass.
"""
import http.client
import json
import random
import re
import socket
import time
import unicodedata
import unittest

import harness
from harness import GatewayCase

# A small body bound keeps the 413 cases cheap; the boundary tests derive from this value.
MAX_BODY = 4096

# Seed customers of hcgw-sim (docs/simulator.md): one with tags, one without.
CONTACT = "1568834"
OTHER = "1568835"

ID_ALLOWED = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

GOOD_TAGS = {"tags": ["x"]}

# Every route that has an {id}, with a body it accepts (None: the route takes no body).
ID_ROUTES = [
    ("GET", "/contacts/{id}", None),
    ("PATCH", "/contacts/{id}", {"notes": "n"}),
    ("DELETE", "/contacts/{id}", None),
    ("GET", "/contacts/{id}/tags", None),
    ("POST", "/contacts/{id}/tags", GOOD_TAGS),
    ("DELETE", "/contacts/{id}/tags", GOOD_TAGS),
    ("PUT", "/contacts/{id}/tags/Lead", None),
    ("DELETE", "/contacts/{id}/tags/Lead", None),
    ("PUT", "/contacts/{id}/block", None),
    ("DELETE", "/contacts/{id}/block", None),
]

# Routes that take a JSON body, with a body each accepts.
BODY_ROUTES = [
    ("POST", "/contacts/%s/tags" % CONTACT, GOOD_TAGS),
    ("DELETE", "/contacts/%s/tags" % CONTACT, GOOD_TAGS),
    ("PATCH", "/contacts/%s" % CONTACT, {"notes": "n"}),
    ("POST", "/contacts", {"name": "Media Type"}),
    ("POST", "/contacts/search", {"filter": [{"field": "customers.email", "operator": "~",
                                              "value": "gmail"}]}),
]

JSON = {"Content-Type": "application/json"}


def nested(depth):
    """A JSON object whose containers nest @p depth deep, the root object included."""
    return '{"customData":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def reference_tag(segment):
    """The contract's reading of a {name} path segment: the decoded name, or None if invalid."""
    out = bytearray()
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "%":
            hx = segment[i + 1:i + 3]
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", hx):
                return None
            out.append(int(hx, 16))
            i += 3
        else:
            out += c.encode("utf-8")
            i += 1
    try:
        name = out.decode("utf-8")  # strict: no surrogates, no overlong forms
    except UnicodeDecodeError:
        return None
    if not 1 <= len(name) <= 100:
        return None
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return None
    return name


def raw_exchange(port, data, method, timeout=30):
    """Send @p data as it is and read one answer; None when the connection closes without one."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer early and close while the rest is still being sent
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            return None
        return harness.Response(resp.status, resp.getheaders(), body)
    finally:
        sock.close()


def chunked(body, size=1000):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


class ValidationTest(GatewayCase):
    conf_groups = {"limits": {"max_body_bytes": MAX_BODY}}

    # ---- helpers

    def assertCommonHeaders(self, r):
        rid = r.header("X-Request-Id")
        self.assertIsNotNone(rid, "no X-Request-Id")
        self.assertRegex(rid, ID_ALLOWED)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertIsNone(r.header("Server"))

    def assertRejected(self, r, status, code):
        err = self.assertEnvelope(r, status, code)
        self.assertNotIn("details", err)
        self.assertCommonHeaders(r)
        return err

    def rejected(self, method, path, status, code, body=None, headers=None):
        """Send a request that must be refused locally, without any upstream call."""
        r = self.assertNoUpstreamCall(lambda: self.req(method, path, body, headers))
        self.assertRejected(r, status, code)
        return r

    def raw(self, data, method):
        r = raw_exchange(self.gw.port, data, method)
        if r is not None:
            self.assertNotIn(self.sim.key.encode(), r.body)
            for _, v in r.headers:
                self.assertNotIn(self.sim.key, v)
        return r

    def access_lines_for(self, rid, count=1, timeout=5.0):
        """The access lines of request id @p rid, once @p count of them are there (they are
        written at completion, maybe just after the answer) or the wait is over."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [o for o in self.gw.access_lines() if o.get("request_id") == rid]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def assertReachedSim(self, fn):
        before = self.sim.count()
        r = fn()
        self.assertEqual(self.sim.count(), before + 1, "expected exactly one upstream call: %r" % r)
        return r

    # ---- {id}

    def test_invalid_contact_ids_on_every_route(self):
        bad_ids = ["0", "00", "01", "-1", "+1", "1a", "1.0", "0x1", "1e3", "1" * 20, "9" * 25,
                   "%31", "%2B1", "1%00", "%EF%BC%91", "search"]
        for method, pattern, body in ID_ROUTES:
            for bad in bad_ids:
                path = pattern.replace("{id}", bad)
                if bad == "search" and pattern == "/contacts/{id}":
                    continue  # "/contacts/search" is a route of its own
                with self.subTest(method=method, path=path):
                    self.rejected(method, path, 400, "invalid_contact_id", body,
                                  JSON if body is not None else None)

    def test_nineteen_digit_ids_reach_helpcrunch(self):
        for cid in ("1234567890123456789", "9999999999999999999"):
            for method, pattern, body in ID_ROUTES:
                path = pattern.replace("{id}", cid)
                with self.subTest(method=method, path=path):
                    self.sim.reset()
                    r = self.assertReachedSim(lambda: self.req(
                        method, path, body, JSON if body is not None else None))
                    self.assertEnvelope(r, 404, "not_found", upstream_status=404)
                    self.assertTrue(self.sim.last()["path"].startswith("/v1/customers/" + cid))

    # ---- {name}

    def test_invalid_tag_names(self):
        bad = ["%zz", "%4", "a%4", "%", "a%", "%g0", "%00", "a%00b", "%0A", "%0D", "%09", "%1F",
               "%7F", "%C2%80", "%C2%9F", "%C3%28", "%C3", "%E2%82", "%ED%A0%80", "%ED%BF%BF",
               "%C0%AF", "%C1%BF", "%E0%80%AF", "%F0%80%80%AF", "%F4%90%80%80", "%F5%80%80%80",
               "%FF", "%80", "a" * 101, "%C3%A9" * 101, "%F0%9F%98%80" * 101, "a" * 1500]
        for seg in bad:
            self.assertIsNone(reference_tag(seg), seg)  # the table itself follows the contract
            for method in ("PUT", "DELETE"):
                with self.subTest(method=method, segment=seg[:40]):
                    self.rejected(method, "/contacts/%s/tags/%s" % (CONTACT, seg), 400,
                                  "invalid_tag")

    def test_invalid_tag_names_raw_bytes(self):
        # Bytes no HTTP library sends unencoded: raw control characters and non-UTF-8 bytes.
        for seg in (b"\xff", b"a\x01b", b"a\x7fb", b"\xc3\x28", b"\xed\xa0\x80", b"\xc2\x85"):
            with self.subTest(segment=seg):
                data = (b"PUT /contacts/" + CONTACT.encode() + b"/tags/" + seg +
                        b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                r = self.assertNoUpstreamCall(lambda: self.raw(data, "PUT"))
                self.assertIsNotNone(r, "connection closed without an answer")
                self.assertRejected(r, 400, "invalid_tag")

    def test_longest_tag_names_are_accepted(self):
        cases = [("a" * 100, "a" * 100),
                 ("%C3%A9" * 100, "\u00e9" * 100),            # 100 two-byte characters
                 ("%E2%82%AC" * 100, "\u20ac" * 100),         # 100 three-byte characters
                 ("%F0%9F%98%80" * 100, "\U0001F600" * 100)]  # 100 four-byte characters
        for seg, name in cases:
            with self.subTest(name=name[:3]):
                self.sim.reset()
                self.assertReachedSim(lambda: self.req(
                    "PUT", "/contacts/%s/tags/%s" % (CONTACT, seg)))
                call = self.sim.last()
                self.assertEqual(call["method"], "PUT")
                self.assertEqual(json.loads(call["body"]), {"tags": [{"name": name}]})
        # Short enough for HelpCrunch's own bound too: it is stored as sent.
        self.sim.reset()
        r = self.req("PUT", "/contacts/%s/tags/%s" % (CONTACT, "%C3%A9" * 100))
        self.assertEqual(r.status, 200, r)
        self.assertIn("\u00e9" * 100, [t["name"] for t in r.json()["tags"]])

    def test_tag_segments_against_reference_decoder(self):
        """Random segments built from tricky pieces: hcgw must refuse exactly those the contract
        refuses, and send every other one as exactly the decoded name."""
        good = ["a", "Z", "0", "+", "~", "-", ".", "%2F", "%25", "%20", "%2B", "%22", "%5C",
                "%7E", "%C3%A9", "%c3%a9", "%E2%82%AC", "%F0%9F%98%80", "%C2%A0", "%EF%BF%BF"]
        bad = ["%", "%C3", "%A9", "%80", "%ED%A0", "%BF", "%c2%85", "%7f", "%0", "%g1", "%00",
               "%0a", "%C1", "%FE", "%F4%90", "%E2%82"]
        rng = random.Random(20240602)
        segments = set()
        while len(segments) < 150:
            segments.add("".join(rng.choice(good) if rng.random() < 0.85 else rng.choice(bad)
                                 for _ in range(rng.randint(1, 8))))
        valid = [seg for seg in segments if reference_tag(seg) is not None]
        # The mix must exercise both answers, or the comparison below proves little.
        self.assertGreater(len(valid), 30)
        self.assertGreater(len(segments) - len(valid), 30)
        for seg in sorted(segments):
            want = reference_tag(seg)
            with self.subTest(segment=seg, want=want):
                self.sim.reset()
                if want is None:
                    self.rejected("PUT", "/contacts/%s/tags/%s" % (CONTACT, seg), 400,
                                  "invalid_tag")
                else:
                    self.assertReachedSim(lambda: self.req(
                        "PUT", "/contacts/%s/tags/%s" % (CONTACT, seg)))
                    self.assertEqual(json.loads(self.sim.last()["body"]),
                                     {"tags": [{"name": want}]})

    # ---- bodies

    def test_invalid_tags_bodies(self):
        bodies = {
            "not json": "tags please",
            "trailing garbage": '{"tags":["a"]} x',
            "second value": '{"tags":["a"]}{"tags":["b"]}',
            "array instead of object": '["a"]',
            "string": '"a"',
            "null": "null",
            "empty": "",
            "whitespace only": "  \n",
            "no tags member": '{"tag":["a"]}',
            "tags not an array": '{"tags":"a"}',
            "tags null": '{"tags":null}',
            "no tags": '{"tags":[]}',
            "101 tags": json.dumps({"tags": ["t%d" % i for i in range(101)]}),
            "number as tag": '{"tags":[1]}',
            "null as tag": '{"tags":[null]}',
            "nested array as tag": '{"tags":[["a"]]}',
            "object without name": '{"tags":[{"color":"#ffffff"}]}',
            "name not a string": '{"tags":[{"name":5}]}',
            "unknown key in a tag": '{"tags":[{"name":"a","colour":"#ffffff"}]}',
            "bad colour word": '{"tags":[{"name":"a","color":"red"}]}',
            "bad colour no hash": '{"tags":[{"name":"a","color":"ffffff"}]}',
            "bad colour 5 digits": '{"tags":[{"name":"a","color":"#fffff"}]}',
            "bad colour non-hex": '{"tags":[{"name":"a","color":"#gggggg"}]}',
            "bad colour too long": '{"tags":[{"name":"a","color":"#fffffff"}]}',
            "colour not a string": '{"tags":[{"name":"a","color":16777215}]}',
            "single quotes": "{'tags':['a']}",
            "trailing comma": '{"tags":["a",]}',
            "invalid UTF-8": b'{"tags":["\xff"]}',
            "overlong UTF-8": b'{"tags":["\xc0\xaf"]}',
        }
        for method in ("POST", "DELETE"):
            for label, body in bodies.items():
                with self.subTest(method=method, body=label):
                    self.rejected(method, "/contacts/%s/tags" % CONTACT, 400, "invalid_body",
                                  body, JSON)

    def test_invalid_names_in_tags_bodies(self):
        # A name in a body follows the {name} rules, and is refused with the same code.
        names = {
            "empty name": '{"tags":[""]}',
            "empty name in object": '{"tags":[{"name":""}]}',
            "101 characters": json.dumps({"tags": ["a" * 101]}),
            "101 two-byte characters": json.dumps({"tags": ["\u00e9" * 101]}),
            "control character": '{"tags":["a\\u0001b"]}',
            "newline": '{"tags":["a\\nb"]}',
            "NUL escape": '{"tags":["a\\u0000b"]}',
            "DEL": '{"tags":["a\\u007fb"]}',
            "C1 control": '{"tags":[{"name":"a\\u0085b","color":"#fff"}]}',
            "bad name after a good one": '{"tags":["ok",{"name":"\\u009f"}]}',
        }
        for method in ("POST", "DELETE"):
            for label, body in names.items():
                with self.subTest(method=method, body=label):
                    self.rejected(method, "/contacts/%s/tags" % CONTACT, 400, "invalid_tag",
                                  body, JSON)

    def test_valid_tags_body_boundaries_are_accepted(self):
        cases = {
            "one name": {"tags": ["a"]},
            "100 tags": {"tags": ["t%d" % i for i in range(100)]},
            "100-character name": {"tags": ["b" * 100]},
            "short colour": {"tags": [{"name": "c", "color": "#abc"}]},
            "upper-case colour": {"tags": [{"name": "d", "color": "#ABCDEF"}]},
        }
        for label, body in cases.items():
            with self.subTest(body=label):
                self.sim.reset()
                # OTHER has no tags yet, so 100 new ones stay within HelpCrunch's own bound.
                r = self.assertReachedSim(lambda: self.req(
                    "POST", "/contacts/%s/tags" % OTHER, body))
                self.assertEqual(r.status, 200, r)
                sent = json.loads(self.sim.last()["body"])
                want = [t if isinstance(t, str) else t["name"] for t in body["tags"]]
                self.assertEqual([t["name"] for t in sent["tags"]], want)

    def test_invalid_object_bodies(self):
        bodies = {
            "not json": "name=x",
            "trailing garbage": '{"name":"x"} x',
            "two objects": '{"name":"x"}{"name":"y"}',
            "array instead of object": '[{"name":"x"}]',
            "string": '"x"',
            "number": "42",
            "null": "null",
            "true": "true",
            "empty": "",
            "unclosed": '{"name":"x"',
            "NaN": '{"a":NaN}',
            "leading zero": '{"a":01}',
            "too large a number": '{"a":1e999}',
            "raw control character": '{"a":"x\ty"}',
            "invalid UTF-8": b'{"name":"\xff"}',
            "NUL byte": b'{"name":"x"}\x00',
            "depth 33": nested(33),
        }
        for method, path in (("PATCH", "/contacts/%s" % CONTACT), ("POST", "/contacts"),
                             ("POST", "/contacts/search")):
            for label, body in bodies.items():
                with self.subTest(method=method, path=path, body=label):
                    self.rejected(method, path, 400, "invalid_body", body, JSON)

    def test_depth_32_is_accepted(self):
        # The bound is 32 levels: the deepest allowed body reaches HelpCrunch as it was sent.
        body = nested(32)
        self.assertReachedSim(lambda: self.req("PATCH", "/contacts/%s" % CONTACT, body, JSON))
        self.assertEqual(self.sim.last()["body"], body)

    # ---- media type

    def test_unsupported_media_type(self):
        types = [None, "text/plain", "application/jsonx", "application/json-patch+json",
                 "application/x-www-form-urlencoded", "json", "text/json", "application/",
                 "multipart/form-data; boundary=x"]
        for method, path, body in BODY_ROUTES:
            for ctype in types:
                with self.subTest(method=method, path=path, content_type=ctype):
                    headers = {} if ctype is None else {"Content-Type": ctype}
                    self.rejected(method, path, 415, "unsupported_media_type",
                                  json.dumps(body), headers)

    def test_json_media_type_with_parameters_is_accepted(self):
        for ctype in ("application/json; charset=utf-8", "application/json;charset=UTF-8",
                      "Application/JSON"):
            with self.subTest(content_type=ctype):
                self.sim.reset()
                r = self.assertReachedSim(lambda: self.req(
                    "POST", "/contacts/%s/tags" % CONTACT, '{"tags":["m"]}',
                    {"Content-Type": ctype}))
                self.assertEqual(r.status, 200, r)

    # ---- body size

    def padded_patch(self, size):
        """A valid PATCH body of exactly @p size bytes."""
        head, tail = '{"notes":"', '"}'
        return head + "n" * (size - len(head) - len(tail)) + tail

    def test_body_at_the_limit_is_accepted(self):
        body = self.padded_patch(MAX_BODY)
        self.assertEqual(len(body), MAX_BODY)
        r = self.assertReachedSim(lambda: self.req("PATCH", "/contacts/%s" % CONTACT, body, JSON))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim.last()["body"], body)

    def test_body_too_large_with_content_length(self):
        body = self.padded_patch(MAX_BODY + 1)
        self.rejected("PATCH", "/contacts/%s" % CONTACT, 413, "body_too_large", body, JSON)
        tags = json.dumps({"tags": ["x" * 50] * 100})  # a valid shape, just too big
        self.assertGreater(len(tags), MAX_BODY)
        self.rejected("POST", "/contacts/%s/tags" % CONTACT, 413, "body_too_large", tags, JSON)
        # Far too large: answered at the headers; the connection may be cut while the client
        # is still sending, so the answer is read from a raw socket that tolerates that.
        big = self.padded_patch(64 * MAX_BODY).encode()
        data = (b"POST /contacts HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(big)) + big
        r = self.assertNoUpstreamCall(lambda: self.raw(data, "POST"))
        if r is not None:
            self.assertRejected(r, 413, "body_too_large")
        self.assertEqual(self.req("GET", "/healthz").status, 200)

    def chunked_request(self, body):
        return (b"PATCH /contacts/" + CONTACT.encode() + b" HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n" + chunked(body))

    def test_chunked_body_within_the_limit_is_accepted(self):
        body = self.padded_patch(MAX_BODY).encode()
        r = self.assertReachedSim(lambda: self.raw(self.chunked_request(body), "PATCH"))
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim.last()["body"].encode(), body)

    def test_empty_chunked_body(self):
        data = (b"POST /contacts/" + CONTACT.encode() + b"/tags HTTP/1.1\r\nHost: test\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n0\r\n\r\n")
        r = self.assertNoUpstreamCall(lambda: self.raw(data, "POST"))
        self.assertIsNotNone(r, "connection closed without an answer")
        self.assertRejected(r, 400, "invalid_body")

    def test_chunked_body_just_over_the_limit(self):
        body = self.padded_patch(MAX_BODY + 1).encode()
        r = self.assertNoUpstreamCall(lambda: self.raw(self.chunked_request(body), "PATCH"))
        self.assertIsNotNone(r, "connection closed without an answer")
        self.assertRejected(r, 413, "body_too_large")

    def test_chunked_body_far_over_the_limit(self):
        body = self.padded_patch(3 * 1024 * 1024).encode()
        r = self.assertNoUpstreamCall(lambda: self.raw(self.chunked_request(body), "PATCH"))
        if r is not None:  # a client that keeps sending may be cut off instead
            self.assertRejected(r, 413, "body_too_large")
        # Either way the gateway is still serving.
        self.assertEqual(self.req("GET", "/healthz").status, 200)

    # ---- paths and methods

    def test_unknown_paths(self):
        paths = ["/", "/contacts/1/", "//contacts", "/nope", "/contacts/%s/" % CONTACT,
                 "/contacts/%s/tags/" % CONTACT, "/contacts/%s/tags/a/b" % CONTACT,
                 "/contacts/%s/x" % CONTACT, "/contacts//tags", "/contacts/%s//tags" % CONTACT,
                 "/Contacts", "/contacts/", "/healthz/", "/v1/customers/%s" % CONTACT,
                 "/customers/%s" % CONTACT, "/contacts/%s/block/x" % CONTACT]
        for path in paths:
            for method in ("GET", "POST", "PUT", "DELETE"):
                with self.subTest(method=method, path=path):
                    self.rejected(method, path, 404, "route_not_found")

    def test_wrong_methods(self):
        cid = CONTACT
        cases = [
            ("GET", "/contacts/search", "POST"),
            ("PUT", "/contacts/search", "POST"),
            ("POST", "/contacts/1", "GET, HEAD, PATCH, DELETE"),
            ("PUT", "/contacts/%s" % cid, "GET, HEAD, PATCH, DELETE"),
            ("PATCH", "/contacts/%s/tags" % cid, {"POST", "DELETE", "GET", "HEAD"}),
            ("PUT", "/contacts/%s/tags" % cid, {"POST", "DELETE", "GET", "HEAD"}),
            ("GET", "/contacts/%s/tags/Lead" % cid, {"PUT", "DELETE"}),
            ("POST", "/contacts/%s/tags/Lead" % cid, {"PUT", "DELETE"}),
            ("GET", "/contacts/%s/block" % cid, {"PUT", "DELETE"}),
            ("POST", "/contacts/%s/block" % cid, {"PUT", "DELETE"}),
            ("DELETE", "/contacts", {"GET", "HEAD", "POST"}),
            ("PATCH", "/contacts", {"GET", "HEAD", "POST"}),
            ("POST", "/healthz", {"GET", "HEAD"}),
            ("DELETE", "/readyz", {"GET", "HEAD"}),
            ("PUT", "/metrics", {"GET", "HEAD"}),
        ]
        for method, path, allow in cases:
            with self.subTest(method=method, path=path):
                r = self.rejected(method, path, 405, "method_not_allowed")
                got = r.header("Allow")
                self.assertIsNotNone(got, "405 without an Allow header")
                if isinstance(allow, str):
                    self.assertEqual(got, allow)
                else:
                    parts = got.split(", ")
                    self.assertEqual(len(parts), len(set(parts)), got)
                    self.assertEqual(set(parts), allow)

    # ---- the list query

    def test_bad_list_query(self):
        queries = ["limit=abc", "limit=-1", "limit=+1", "limit=1.5", "limit=", "limit",
                   "limit=1&limit=2", "limit=%zz", "offset=abc", "offset=-1", "offset=",
                   "foo=1", "limit=1&foo=1", "&", "limit=1&"]
        for q in queries:
            with self.subTest(query=q):
                self.rejected("GET", "/contacts?" + q, 400, "invalid_query")

    # ---- request id

    def test_valid_request_id_is_kept(self):
        ids = ["abc", "1", "A-Z_a.z:0-9", "x" * 128, "req:2024-06-02T10.00.00_1",
               "...", "-", "::", "0123456789" * 12 + "abcdefgh"]
        tags = "/contacts/%s/tags" % CONTACT
        routes = [("GET", "/nope", None, None, 404),
                  ("GET", "/contacts/0", None, None, 400),
                  ("GET", "/contacts/search", None, None, 405),
                  ("POST", tags, '{"tags":["a"]}', {"Content-Type": "text/plain"}, 415),
                  ("POST", tags, '{"tags":["%s"]}' % ("a" * MAX_BODY), JSON, 413),
                  ("GET", "/contacts/%s" % CONTACT, None, None, 200),
                  ("GET", "/healthz", None, None, 200)]
        for rid in ids:
            for method, path, body, headers, status in routes:
                with self.subTest(request_id=rid, method=method, path=path, status=status):
                    hdrs = dict(headers or {})
                    hdrs["X-Request-Id"] = rid
                    r = self.req(method, path, body, hdrs)
                    self.assertEqual(r.status, status, r)
                    self.assertEqual(r.header("X-Request-Id"), rid)
                    if status >= 400:
                        self.assertEqual(r.json()["error"]["request_id"], rid)
        for rid in ids:
            with self.subTest(request_id=rid, log=True):
                lines = self.access_lines_for(rid, count=len(routes))
                self.assertEqual(len(lines), len(routes), lines)

    def test_invalid_request_id_is_replaced(self):
        ids = ["x" * 129, "a b", "a/b", "", "a,b", "a;b", 'a"b', "{x}", "a+b", "a=b", "\u00e9",
               "a%20b", "a\\b", "0123456789" * 13]
        for rid in ids:
            with self.subTest(request_id=rid):
                r = self.req("GET", "/nope", headers={"X-Request-Id": rid})
                self.assertEnvelope(r, 404, "route_not_found")
                got = r.header("X-Request-Id")
                self.assertNotEqual(got, rid)
                self.assertRegex(got, r"^[0-9a-f]{32}$")  # a generated id
                self.assertEqual(len(self.access_lines_for(got)), 1)
        logged = {o.get("request_id") for o in self.gw.access_lines()}
        for rid in ids:
            self.assertNotIn(rid, logged)

    def test_generated_request_ids_are_unique(self):
        seen = set()
        for _ in range(30):
            r = self.req("GET", "/nope")
            rid = r.header("X-Request-Id")
            self.assertRegex(rid, r"^[0-9a-f]{32}$")
            self.assertEqual(r.json()["error"]["request_id"], rid)
            seen.add(rid)
        self.assertEqual(len(seen), 30)

    # ---- the access line of a refused request

    def test_refused_request_is_logged_once(self):
        cases = [("GET", "/contacts/01", None, None, 400),
                 ("PUT", "/contacts/%s/tags/%%zz" % CONTACT, None, None, 400),
                 ("POST", "/contacts/%s/tags" % CONTACT, '{"tags":[]}', JSON, 400),
                 ("POST", "/contacts/%s/tags" % CONTACT, '{"tags":["a"]}',
                  {"Content-Type": "text/plain"}, 415),
                 ("GET", "/contacts/search", None, None, 405),
                 ("GET", "/nope", None, None, 404),
                 ("GET", "/contacts?limit=x", None, None, 400)]
        tag = "%08x" % random.getrandbits(32)
        for i, (method, path, body, headers, status) in enumerate(cases):
            with self.subTest(method=method, path=path):
                rid = "refused-%s-%d" % (tag, i)
                hdrs = dict(headers or {})
                hdrs["X-Request-Id"] = rid
                r = self.assertNoUpstreamCall(lambda: self.req(method, path, body, hdrs))
                self.assertEqual(r.status, status, r)
                lines = self.access_lines_for(rid)
                self.assertEqual(len(lines), 1, lines)
                line = lines[0]
                self.assertEqual(line["method"], method)
                self.assertEqual(line["status"], status)
                self.assertEqual(line["attempts"], 0)
                self.assertIsNone(line.get("upstream_status"))
                self.assertGreaterEqual(line["duration_ms"], 0)


if __name__ == "__main__":
    unittest.main()

"""HEAD (RFC 9110 section 9.3.2), over real HTTP: every GET route answers HEAD with the status and
headers GET gives, Content-Length of GET's body included, and no body.

- Each GET route (/healthz, /readyz, /metrics, /openapi.yaml, /contacts, /contacts/{id},
  /contacts/{id}/tags): the same status and the same headers as a GET sent with the same
  X-Request-Id (but Date, and for /metrics the length of a text that counts the requests
  themselves), no byte after the header block on the wire.
- Errors too: an invalid id (400), a missing contact (404), with the envelope's length.
- A HEAD of a contact read costs what a GET costs: an upstream GET on a miss (with the cache
  off, every time), a cache hit otherwise, with the same ETag and Age a GET would get; a HEAD
  with If-None-Match naming the ETag is a 304.
- HEAD where GET is not served (/contacts/search, /contacts/{id}/block, a tag path): 405 with
  Allow, no upstream call.
- Logged and counted as method HEAD on the GET's route; a client may HEAD what it may GET,
  and nothing else.
"""
import hashlib
import re
import socket
import unittest

import harness
from harness import GatewayCase, wait_access

CID = "1568834"          # a seed customer of the simulator (tags vip and Lead)
GET_ROUTES = {
    "healthz": "/healthz",
    "readyz": "/readyz",
    "metrics": "/metrics",
    "openapi": "/openapi.yaml",
    "contacts_list": "/contacts?limit=2",
    "contact_get": "/contacts/" + CID,
    "tags_get": "/contacts/%s/tags" % CID,
}
# Headers that may differ between two answers to the same request.
VOLATILE = {"date"}


def raw_head(port, target, extra=b""):
    """HEAD @p target with Connection: close; returns (status, {header: value}, bytes after the
    header block), reading until hcgw closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    buf = b""
    try:
        sock.sendall(b"HEAD " + target.encode() + b" HTTP/1.1\r\nHost: h\r\n" + extra +
                     b"Connection: close\r\n\r\n")
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def header_map(r, drop=()):
    return {k.lower(): v for k, v in r.headers if k.lower() not in VOLATILE | set(drop)}


class HeadTest(GatewayCase):
    """The cache off (the harness default): every contact read reaches the simulator."""

    def pair(self, target, rid):
        get = self.req("GET", target, headers={"X-Request-Id": rid})
        head = self.req("HEAD", target, headers={"X-Request-Id": rid})
        return get, head

    def test_every_get_route(self):
        for route, target in GET_ROUTES.items():
            with self.subTest(route=route):
                get, head = self.pair(target, "head-" + route)
                self.assertEqual(head.status, get.status)
                self.assertEqual(head.body, b"")
                self.assertGreater(len(get.body), 0)
                if route == "metrics":
                    # Its text counts the GET just answered: the same headers, another length.
                    self.assertEqual(header_map(head, ["content-length"]),
                                     header_map(get, ["content-length"]))
                    self.assertRegex(head.header("Content-Length"), r"^[1-9][0-9]*$")
                else:
                    self.assertEqual(header_map(head), header_map(get))
                    self.assertEqual(head.header("Content-Length"), str(len(get.body)))

    def test_no_body_on_the_wire(self):
        for route, target in GET_ROUTES.items():
            with self.subTest(route=route):
                status, headers, rest = raw_head(self.gw.port, target)
                self.assertEqual(status, 200)
                self.assertEqual(rest, b"")
                self.assertRegex(headers.get("content-length", ""), r"^[1-9][0-9]*$")

    def test_errors(self):
        for target, status, code in (("/contacts/0", 400, "invalid_contact_id"),
                                     ("/contacts/999999999", 404, "not_found"),
                                     ("/contacts/abc/tags", 400, "invalid_contact_id"),
                                     ("/contacts?limit=x", 400, "invalid_query"),
                                     ("/nope", 404, "route_not_found")):
            with self.subTest(target=target):
                get, head = self.pair(target, "head-err")
                self.assertEnvelope(get, status, code, upstream_status=get.json()["error"]
                                    .get("upstream_status"))
                self.assertEqual(head.status, status)
                self.assertEqual(head.body, b"")
                self.assertEqual(header_map(head), header_map(get))
                self.assertEqual(head.header("Content-Length"), str(len(get.body)))

    def test_upstream_call_like_get(self):
        before = self.sim.count()
        r = self.req("HEAD", "/contacts/" + CID)
        self.assertEqual(r.status, 200)
        self.assertEqual(self.sim.count(), before + 1)
        self.assertEqual(self.sim.last()["method"], "GET")
        r = self.req("HEAD", "/contacts")
        self.assertEqual(self.sim.count(), before + 2)
        self.assertEqual(self.sim.last()["method"], "GET")

    def test_405_where_get_is_not_served(self):
        for target, allow in (("/contacts/search", "POST"),
                              ("/contacts/%s/block" % CID, "PUT, DELETE"),
                              ("/contacts/%s/tags/Lead" % CID, "DELETE, PUT")):
            with self.subTest(target=target):
                r = self.assertNoUpstreamCall(lambda: self.req("HEAD", target))
                self.assertEqual(r.status, 405)
                self.assertEqual(r.body, b"")
                self.assertEqual(r.header("Allow"), allow)
                self.assertEqual(r.header("Content-Type"), "application/json")
                get = self.req("PATCH", target)   # the same envelope, with its body
                self.assertEnvelope(get, 405, "method_not_allowed")
                self.assertEqual(r.header("Content-Length"), str(len(get.body)))

    def test_logged_and_counted_as_head(self):
        mark = self.gw.proc.mark()
        self.req("HEAD", "/contacts/" + CID, headers={"X-Request-Id": "head-log"})
        line = wait_access(self.gw, "head-log", mark)
        self.assertEqual((line["method"], line["route"], line["status"]),
                         ("HEAD", "contact_get", 200))
        self.assertEqual(line["attempts"], 1)
        text = self.req("GET", "/metrics").body.decode()
        m = re.search(r'^hcgw_requests_total\{route="contact_get",method="HEAD",status="200"\} '
                      r'(\d+)$', text, re.M)
        self.assertIsNotNone(m, "no HEAD series for contact_get")
        self.assertGreaterEqual(int(m.group(1)), 1)


class HeadAuthTest(GatewayCase):
    """A HEAD is its GET's route for the client's permissions too."""

    TOKEN = "head-lister-token-0123456789"

    @classmethod
    def setUpClass(cls):
        cls.sim = harness.Sim()
        top = ('clients = ( { name = "lister"; token_sha256 = "%s"; '
               'routes = [ "contacts_list" ]; } );\n'
               % hashlib.sha256(cls.TOKEN.encode()).hexdigest())
        try:
            cls.gw = harness.Gateway(cls.sim, conf=harness.conf_with_top_level(
                cls.sim.base_url, top))
        except BaseException:
            cls.sim.stop()
            raise

    def test_permission_is_the_gets(self):
        auth = {"Authorization": "Bearer " + self.TOKEN}
        self.assertEqual(self.req("HEAD", "/contacts", headers=auth).status, 200)
        r = self.assertNoUpstreamCall(lambda: self.req("HEAD", "/contacts/" + CID, headers=auth))
        self.assertEqual((r.status, r.body), (403, b""))
        r = self.assertNoUpstreamCall(lambda: self.req("HEAD", "/contacts"))
        self.assertEqual((r.status, r.header("WWW-Authenticate")), (401, 'Bearer realm="hcgw"'))
        # hcgw's own routes need no credential, HEAD or GET.
        self.assertEqual(self.req("HEAD", "/healthz").status, 200)


class HeadCacheTest(GatewayCase):
    """The cache on: a HEAD is a read like a GET, a miss filling it and a hit costing nothing."""

    conf_groups = {"cache": {"ttl_ms": 60000}}

    def test_miss_then_hits(self):
        target = "/contacts/%s" % CID
        before = self.sim.count()
        miss = self.req("HEAD", target)
        self.assertEqual(miss.status, 200)
        self.assertEqual(self.sim.count(), before + 1)
        self.assertEqual(miss.header("Cache-Status"), "hcgw; fwd=miss; stored")
        # The GET is served from what the HEAD brought, with the same ETag.
        get = self.assertNoUpstreamCall(lambda: self.req("GET", target))
        self.assertRegex(get.header("Cache-Status"), r"^hcgw; hit; ttl=\d+$")
        self.assertEqual(get.header("ETag"), miss.header("ETag"))
        self.assertEqual(miss.header("Content-Length"), str(len(get.body)))
        hit = self.assertNoUpstreamCall(lambda: self.req("HEAD", target))
        self.assertEqual(hit.status, 200)
        self.assertEqual(hit.body, b"")
        for name in ("ETag", "Content-Length", "Content-Type", "Cache-Control"):
            self.assertEqual(hit.header(name), get.header(name), name)
        self.assertRegex(hit.header("Cache-Status"), r"^hcgw; hit; ttl=\d+$")
        self.assertRegex(hit.header("Age"), r"^\d+$")

    def test_not_modified(self):
        target = "/contacts/%s/tags" % CID
        etag = self.req("GET", target).header("ETag")
        self.assertIsNotNone(etag)
        r = self.assertNoUpstreamCall(lambda: self.req("HEAD", target,
                                                       headers={"If-None-Match": etag}))
        self.assertEqual(r.status, 304)
        self.assertEqual(r.header("ETag"), etag)
        self.assertEqual(r.body, b"")
        status, _, rest = raw_head(self.gw.port, target,
                                   b"If-None-Match: " + etag.encode() + b"\r\n")
        self.assertEqual((status, rest), (304, b""))


if __name__ == "__main__":
    unittest.main()

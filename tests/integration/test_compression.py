"""Compression, both ways (conf "compression"; docs/configuration.md, "Compression";
docs/contract.md, "Compression").

To callers: an answer of compression.min_bytes (1 KiB) or more goes gzip-compressed when the
caller's Accept-Encoding accepts gzip (weights, "*", identity, case, several lines, a bound),
with Content-Encoding: gzip, and decompresses to exactly the bytes an identity answer carries;
every answer of a route but the probes' says Vary: Accept-Encoding, compressed or not; a read's
ETag differs between the two representations and If-None-Match gets its 304 for either one;
errors are compressed too when large; the settings turn each side off.

From HelpCrunch: hcgw asks for gzip, takes a compressed answer (decoded, checked and, when its
own caller asks, compressed again), refuses a broken or unknown encoding with 502
upstream_bad_response, and cuts a compression bomb (about 1 MB of gzip that inflates to 1 GiB)
at limits.max_upstream_body_bytes: 502 upstream_bad_response with its memory bounded.

http.client never decompresses: the tests see the bytes on the wire.
"""
import gzip
import http.client
import json
import os
import socket
import unittest
import uuid

from harness import GatewayCase, http_request, wait_access

JOHN = 1568834          # seeded by hcgw-sim: about 860 bytes, under the 1 KiB default
LIST = "/contacts?limit=100"  # the four seed customers: about 3.5 KB
GZIP = {"Accept-Encoding": "gzip"}
MIB = 1024 * 1024
BOMB_BYTES = 1024 * MIB  # what the bomb inflates to
RSS_BOUND = 64 * MIB     # what hcgw's resident memory may grow by while it meets one


def vary_fields(r):
    """The fields the answer's Vary names (every Vary line), lower-cased."""
    fields = []
    for k, v in r.headers:
        if k.lower() == "vary":
            fields += [f.strip().lower() for f in v.split(",") if f.strip()]
    return fields


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


class CompressionCase(GatewayCase):
    """Helpers shared by the classes below."""

    def sim_direct(self, method, path, body=None):
        r = http_request(self.sim.port, method, "/v1" + path, body,
                         {"Authorization": "Bearer " + self.sim.key})
        self.assertLess(r.status, 300, r)
        return r.json()

    def big_contact(self):
        """A contact whose customer is well over 1 KiB."""
        return self.sim_direct("POST", "/customers", {
            "name": "gzip-" + uuid.uuid4().hex[:8],
            "notes": "A long note that repeats itself. " * 80})["id"]

    def assertGzip(self, r, identity_body=None):
        """r is gzip-compressed, and decompresses to identity_body when given."""
        self.assertEqual(r.header("Content-Encoding"), "gzip", r.headers)
        self.assertIn("accept-encoding", vary_fields(r))
        self.assertEqual(int(r.header("Content-Length")), len(r.body))
        plain = gzip.decompress(r.body)
        self.assertLess(len(r.body), len(plain))
        if identity_body is not None:
            self.assertEqual(plain, identity_body)
        return plain

    def assertIdentity(self, r, vary=True):
        self.assertIsNone(r.header("Content-Encoding"), r.headers)
        if vary:
            self.assertIn("accept-encoding", vary_fields(r))
        else:
            self.assertNotIn("accept-encoding", vary_fields(r))


class AnswersTest(CompressionCase):
    """Compression on (the defaults), the contact cache off (the harness's)."""

    def test_list_goes_gzip_and_decompresses_to_the_identity_bytes(self):
        plain = self.req("GET", LIST)
        self.assertEqual(plain.status, 200, plain)
        self.assertGreater(len(plain.body), 1024)
        self.assertIdentity(plain)
        self.assertEqual(plain.json()["total"], 4)
        r = self.req("GET", LIST, headers=GZIP)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertGzip(r, plain.body)
        # gzip's header says which level made it: 4 (XFL) for the fastest, the default 1.
        self.assertEqual(r.body[8], 4)
        # The same answer goes the same way on one keep-alive connection, again and again.
        hc = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=30)
        try:
            for accept in (True, False, True):
                hc.request("GET", LIST, headers=GZIP if accept else {})
                resp = hc.getresponse()
                body = resp.read()
                self.assertEqual(resp.status, 200)
                if accept:
                    self.assertEqual(resp.getheader("Content-Encoding"), "gzip")
                    body = gzip.decompress(body)
                self.assertEqual(body, plain.body)
        finally:
            hc.close()

    def test_accept_encoding_variants(self):
        plain = self.req("GET", LIST).body
        cases = [
            ("gzip", True), ("GZIP", True), ("x-gzip", True), ("gzip, deflate, br, zstd", True),
            ("deflate, gzip;q=0.5", True), ("gzip ; q=0.8", True), ("*", True),
            ("*;q=0, gzip", True), ("gzip;q=1, identity;q=0.5", True),
            ("identity;q=0, gzip", True),
            ("gzip;q=0", False), ("gzip;q=0.000", False), ("GZIP;Q=0", False),
            ("*;q=0", False), ("gzip;q=0, *", False), ("identity", False), ("br, zstd", False),
            ("deflate", False), ("", False), ("identity;q=1, gzip;q=0.5", False),
            ("gzip;q=2", False), ("gzip;level=9", False), ("gzipp", False),
            ("gzip, " + "x" * 300, False),  # over the bound (GW_MAX_ACCEPT_ENCODING_BYTES)
        ]
        for value, want in cases:
            with self.subTest(accept_encoding=value):
                r = self.req("GET", LIST, headers={"Accept-Encoding": value})
                self.assertEqual(r.status, 200, r)
                if want:
                    self.assertGzip(r, plain)
                else:
                    self.assertIdentity(r)
                    self.assertEqual(r.body, plain)

    def test_several_accept_encoding_lines_are_one_list(self):
        def raw(lines):
            head = "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n" % (
                LIST, "".join("Accept-Encoding: %s\r\n" % v for v in lines))
            sock = socket.create_connection(("127.0.0.1", self.gw.port), timeout=30)
            data = b""
            try:
                sock.sendall(head.encode())
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            finally:
                sock.close()
            header, _, body = data.partition(b"\r\n\r\n")
            return header.decode().lower(), body

        header, body = raw(["identity", "gzip"])
        self.assertIn("content-encoding: gzip", header)
        self.assertEqual(json.loads(gzip.decompress(body))["total"], 4)
        header, body = raw(["gzip;q=0", "gzip"])  # the first mention counts
        self.assertNotIn("content-encoding", header)
        self.assertEqual(json.loads(body)["total"], 4)

    def test_small_answer_goes_as_it_is_but_still_varies(self):
        r = self.req("GET", "/contacts/%d" % JOHN, headers=GZIP)
        self.assertEqual(r.status, 200, r)
        self.assertLess(len(r.body), 1024)
        self.assertIdentity(r)
        self.assertEqual(r.json()["id"], JOHN)
        # A small error too (its row's headers are all there).
        r = self.req("GET", "/contacts/12x", headers=GZIP)
        self.assertEnvelope(r, 400, "invalid_contact_id")
        self.assertIdentity(r)

    def test_probes_neither_compress_nor_vary(self):
        for path in ("/healthz", "/readyz"):
            with self.subTest(path=path):
                r = self.req("GET", path, headers=GZIP)
                self.assertEqual(r.status, 200, r)
                self.assertIdentity(r, vary=False)
        # An unknown path is no route's: nothing to vary on either.
        r = self.req("GET", "/nowhere", headers=GZIP)
        self.assertEnvelope(r, 404, "route_not_found")
        self.assertIdentity(r, vary=False)

    def test_metrics_and_openapi(self):
        r = self.req("GET", "/openapi.yaml", headers=GZIP)
        self.assertEqual(r.status, 200, r)
        with open(os.path.join(os.environ.get("HCGW_SOURCE_DIR", "../.."),
                               "docs", "openapi.yaml"), "rb") as f:
            self.assertGzip(r, f.read())
        self.assertEqual(r.header("Content-Type"), "application/yaml")
        r = self.req("GET", "/metrics", headers=GZIP)
        self.assertEqual(r.status, 200, r)
        text = self.assertGzip(r).decode()
        self.assertIn("# TYPE hcgw_requests_total counter", text)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))

    def test_a_large_error_envelope_is_compressed(self):
        errors = [{"code": "field_%d" % i, "message": "This value is not valid. " * 12}
                  for i in range(16)]
        self.sim.script({"status": 400, "json": {"errors": errors}, "count": 2})
        plain = self.req("POST", "/contacts", {"name": "x"})
        err = self.assertEnvelope(plain, 400, "invalid_request", upstream_status=400)
        self.assertGreater(len(plain.body), 1024)
        self.assertIdentity(plain)
        r = self.req("POST", "/contacts", {"name": "x"}, headers=GZIP)
        self.assertEqual(r.status, 400, r)
        env = json.loads(self.assertGzip(r))["error"]
        self.assertEqual(env["code"], "invalid_request")
        self.assertEqual(env["details"], err["details"])
        self.assertEqual(env["request_id"], r.header("X-Request-Id"))

    def test_etag_names_the_representation_and_304_works_for_both(self):
        cid = self.big_contact()
        path = "/contacts/%d" % cid
        plain = self.req("GET", path)
        self.assertEqual(plain.status, 200, plain)
        self.assertGreater(len(plain.body), 1024)
        self.assertIdentity(plain)
        e_id = plain.header("ETag")
        r = self.req("GET", path, headers=GZIP)
        self.assertGzip(r, plain.body)
        e_gz = r.header("ETag")
        # RFC 9110 section 8.8.3: two representations, two strong ETags.
        self.assertRegex(e_id, r'^"[0-9a-f]{32}"$')
        self.assertEqual(e_gz, e_id[:-1] + '-gz"')

        def get(inm, accept):
            h = {"If-None-Match": inm}
            if accept:
                h.update(GZIP)
            return self.req("GET", path, headers=h)

        # Each representation revalidates as itself: 304 with its own ETag, Vary, no body.
        for inm, accept, etag in ((e_id, False, e_id), (e_gz, True, e_gz),
                                  ("W/" + e_gz, True, e_gz), ('"x", %s, %s' % (e_id, e_gz),
                                                              True, e_gz),
                                  ('%s, "y"' % e_id, False, e_id), ("*", True, e_gz)):
            with self.subTest(inm=inm, gzip=accept):
                r = get(inm, accept)
                self.assertEqual(r.status, 304, r)
                self.assertEqual(r.body, b"")
                self.assertEqual(r.header("ETag"), etag)
                self.assertIn("accept-encoding", vary_fields(r))
                self.assertIsNone(r.header("Content-Encoding"))
        # The other representation's ETag does not match: the full answer, the caller's way.
        r = get(e_id, True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("ETag"), e_gz)
        self.assertGzip(r, plain.body)
        r = get(e_gz, False)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("ETag"), e_id)
        self.assertEqual(r.body, plain.body)

    def test_tags_read_of_a_big_contact(self):
        cid = self.big_contact()
        tags = ["tag-%03d-%s" % (i, "t" * 40) for i in range(30)]
        self.sim_direct("PUT", "/customers/%d/tags" % cid,
                        {"tags": [{"name": t} for t in tags]})
        plain = self.req("GET", "/contacts/%d/tags" % cid)
        self.assertGreater(len(plain.body), 1024)
        r = self.req("GET", "/contacts/%d/tags" % cid, headers=GZIP)
        self.assertGzip(r, plain.body)
        self.assertEqual(r.header("ETag"), plain.header("ETag")[:-1] + '-gz"')

    def test_head_gives_the_get_headers(self):
        r = self.req("HEAD", LIST, headers=GZIP)
        if r.status == 405:
            self.skipTest("HEAD is not served by this build")
        got = self.req("GET", LIST, headers=GZIP)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"")
        for name in ("Content-Encoding", "Content-Length", "Vary", "Content-Type"):
            self.assertEqual(r.header(name), got.header(name), name)


class CachedTest(CompressionCase):
    """The contact cache on: a hit is compressed like a miss, and revalidates without a call."""

    conf_groups = {"cache": {"ttl_ms": 60000, "max_entries": 1000, "max_bytes": 4 * MIB}}

    def setUp(self):
        # No reset: it would hand out the ids of contacts hcgw still holds.
        self.sim.call("DELETE", "/_sim/script")

    def test_hit_and_revalidation(self):
        cid = self.big_contact()
        path = "/contacts/%d" % cid
        miss = self.req("GET", path, headers=GZIP)
        self.assertEqual(miss.status, 200, miss)
        self.assertTrue(miss.header("Cache-Status").startswith("hcgw; fwd=miss"))
        plain = self.assertGzip(miss)
        e_gz = miss.header("ETag")
        self.assertTrue(e_gz.endswith('-gz"'), e_gz)
        calls = self.sim.count()
        hit = self.req("GET", path, headers=GZIP)
        self.assertTrue(hit.header("Cache-Status").startswith("hcgw; hit"), hit.headers)
        self.assertEqual(hit.header("ETag"), e_gz)
        self.assertGzip(hit, plain)
        ident = self.req("GET", path)
        self.assertEqual(ident.body, plain)
        self.assertEqual(ident.header("ETag"), e_gz[:-4] + '"')
        rid = uuid.uuid4().hex
        mark = self.gw.proc.mark()
        r = self.req("GET", path, headers={"If-None-Match": e_gz, "Accept-Encoding": "gzip",
                                           "X-Request-Id": rid})
        self.assertEqual(r.status, 304, r)
        self.assertEqual(r.header("ETag"), e_gz)
        self.assertEqual(wait_access(self.gw, rid, mark).get("cache"), "revalidated")
        r = self.req("GET", path, headers={"If-None-Match": ident.header("ETag")})
        self.assertEqual(r.status, 304, r)
        self.assertEqual(self.sim.count(), calls, "a hit called HelpCrunch")


class UpstreamTest(CompressionCase):
    """hcgw asks HelpCrunch for gzip and bounds what an answer inflates to."""

    def gzip_knob(self, on):
        r = http_request(self.sim.port, "POST", "/_sim/faults", {"gzip": on})
        self.assertEqual(r.status, 200, r)

    def test_hcgw_asks_for_gzip(self):
        self.req("GET", "/contacts/%d" % JOHN)
        self.assertEqual(self.sim.last()["accept_encoding"], "gzip")

    def test_a_compressed_answer_is_decoded_checked_and_encoded_again(self):
        plain = self.req("GET", LIST)
        one = self.req("GET", "/contacts/%d" % JOHN)
        self.gzip_knob(True)
        before = self.sim.stats()["encoded"]
        r = self.req("GET", LIST)
        self.assertEqual(r.status, 200, r)
        self.assertIdentity(r)
        self.assertEqual(r.body, plain.body)
        r = self.req("GET", LIST, headers=GZIP)
        self.assertGzip(r, plain.body)
        r = self.req("GET", "/contacts/%d" % JOHN)
        self.assertEqual(r.body, one.body)
        self.assertEqual(r.header("ETag"), one.header("ETag"))
        # A write's answer, and an error's, come compressed too.
        r = self.req("PUT", "/contacts/%d/tags/gzipped" % JOHN)
        self.assertEqual(r.status, 200, r)
        self.assertIn("gzipped", [t["name"] for t in r.json()["tags"]])
        r = self.req("GET", "/contacts/999999")
        self.assertEnvelope(r, 404, "not_found", upstream_status=404)
        self.assertEqual(self.sim.stats()["encoded"], before + 5,
                         "HelpCrunch's answers were not all gzip")

    def test_a_body_that_is_not_the_gzip_it_says_is_a_bad_response(self):
        self.sim.script({"body": '{"id":1568834}', "headers": {"Content-Encoding": "gzip"}})
        r = self.req("GET", "/contacts/%d" % JOHN)
        self.assertEnvelope(r, 502, "upstream_bad_response")
        self.assertEqual(self.sim.count(), 1, "a broken encoding is not a transient failure")
        self.assertEqual(self.req("GET", "/contacts/%d" % JOHN).status, 200)

    def test_an_encoding_hcgw_did_not_ask_for_is_a_bad_response(self):
        # A well-formed deflate body, which libcurl could decode: refused all the same, as
        # hcgw asks for gzip only (other decoders, such as zstd's, hold windows of many MiB).
        self.sim.script({"json": {"id": JOHN, "name": "x"}, "encoding": "deflate"})
        r = self.req("GET", "/contacts/%d" % JOHN)
        self.assertEnvelope(r, 502, "upstream_bad_response")
        self.assertEqual(self.sim.stats()["encoded"], 1)
        for coding in ("br", "zstd", "compress", "gzip, br"):
            with self.subTest(coding=coding):
                self.sim.script({"json": {"id": JOHN}, "headers": {"Content-Encoding": coding}})
                r = self.req("GET", "/contacts/%d" % JOHN)
                self.assertEnvelope(r, 502, "upstream_bad_response")
        self.sim.script({"json": {"id": JOHN, "name": "x"},
                         "headers": {"Content-Encoding": "identity"}})
        self.assertEqual(self.req("GET", "/contacts/%d" % JOHN).status, 200)

    def test_a_compression_bomb_is_cut_with_memory_bounded(self):
        pid = self.gw.proc.proc.pid
        # Warm up: the worker's buffers, curl handle and deflater exist before the baseline.
        for _ in range(3):
            self.assertEqual(self.req("GET", LIST, headers=GZIP).status, 200)
        before = rss_bytes(pid)
        self.sim.script({"action": "huge", "size": BOMB_BYTES, "encoding": "gzip"})
        rid = uuid.uuid4().hex
        mark = self.gw.proc.mark()
        r = self.req("GET", "/contacts/%d" % JOHN, headers={"X-Request-Id": rid}, timeout=120)
        after = rss_bytes(pid)
        self.assertEnvelope(r, 502, "upstream_bad_response")
        line = wait_access(self.gw, rid, mark)
        self.assertEqual(line["code"], "upstream_bad_response")
        self.assertEqual(line["attempts"], 1, "a bomb is not a transient failure")
        self.assertEqual(self.sim.stats()["encoded"], 1, "the simulator sent no bomb")
        print("bomb: hcgw's resident memory %.1f -> %.1f MiB" % (before / MIB, after / MIB))
        self.assertLess(after - before, RSS_BOUND,
                        "hcgw's resident memory grew by %.1f MiB" % ((after - before) / MIB))
        # hcgw goes on serving.
        self.assertEqual(self.req("GET", "/contacts/%d" % JOHN).status, 200)


class OffTest(CompressionCase):
    """compression.gzip and compression.upstream off: as before the feature."""

    conf_groups = {"compression": {"gzip": False, "upstream": False}}

    def test_no_gzip_no_vary(self):
        for h in (GZIP, {"Accept-Encoding": "*"}, {}):
            r = self.req("GET", LIST, headers=h)
            self.assertEqual(r.status, 200, r)
            self.assertIdentity(r, vary=False)
            self.assertEqual(r.json()["total"], 4)

    def test_hcgw_does_not_ask_and_does_not_decode(self):
        self.req("GET", "/contacts/%d" % JOHN)
        self.assertIsNone(self.sim.last()["accept_encoding"])
        # A gzip body hcgw did not ask for is not decoded: not a customer, not passed on.
        self.sim.script({"json": {"id": JOHN, "name": "x"}, "encoding": "gzip"})
        r = self.req("GET", "/contacts/%d" % JOHN)
        self.assertEnvelope(r, 502, "upstream_bad_response", upstream_status=200)


class WithCorsTest(CompressionCase):
    """Compression beside CORS: one Vary header names both fields."""

    APP = "http://127.0.0.1:8000"
    conf_groups = {"cors": {"allow_origins": [APP]}}

    def test_one_vary_line(self):
        for h in ({"Origin": self.APP, "Accept-Encoding": "gzip"}, {"Accept-Encoding": "gzip"},
                  {}):
            with self.subTest(headers=h):
                r = self.req("GET", LIST, headers=h)
                self.assertEqual(r.status, 200, r)
                lines = [v for k, v in r.headers if k.lower() == "vary"]
                self.assertEqual(lines, ["Origin, Accept-Encoding"])
                self.assertEqual(r.header("Content-Encoding"),
                                 "gzip" if "Accept-Encoding" in h else None)
        # A preflight's answer is not a body of the route: Vary: Origin alone.
        r = self.req("OPTIONS", LIST, headers={"Origin": self.APP, "Accept-Encoding": "gzip",
                                               "Access-Control-Request-Method": "GET"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual([v for k, v in r.headers if k.lower() == "vary"], ["Origin"])


class SettingsTest(CompressionCase):
    """compression.min_bytes and compression.level."""

    conf_groups = {"compression": {"min_bytes": 200, "level": 9}}

    def test_min_bytes_and_level(self):
        plain = self.req("GET", "/contacts/%d" % JOHN)
        self.assertGreater(len(plain.body), 200)
        r = self.req("GET", "/contacts/%d" % JOHN, headers=GZIP)
        self.assertGzip(r, plain.body)
        # gzip's header says which level: 2 (XFL) for the slowest, best compression.
        self.assertEqual(r.body[8], 2)
        small = self.req("GET", "/healthz", headers=GZIP)
        self.assertIdentity(small, vary=False)


if __name__ == "__main__":
    unittest.main()

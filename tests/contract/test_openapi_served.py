"""GET /openapi.yaml: the running gateway serves docs/openapi.yaml, byte for byte, as it was
built into the binary (cmake/embed.cmake), as application/yaml with the headers of every
answer, to callers without credentials even when clients are configured (it is hcgw's own
route, like /healthz), and only to GET.

A build made before the document changed serves the old one: rebuild, then run this.
"""
import hashlib
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Gateway, GatewayCase, Sim, assert_clean_stderr, full_conf  # noqa: E402

SOURCE_DIR = os.path.abspath(os.environ.get("HCGW_SOURCE_DIR", os.path.join(HERE, "..", "..")))
DOC = os.path.join(SOURCE_DIR, "docs", "openapi.yaml")


def document():
    with open(DOC, "rb") as f:
        return f.read()


class ServedTest(GatewayCase):

    def test_served_byte_for_byte(self):
        r = self.assertNoUpstreamCall(lambda: self.req("GET", "/openapi.yaml",
                                                       headers={"X-Request-Id": "doc-1"}))
        self.assertEqual(r.status, 200, r)
        want = document()
        self.assertEqual(len(r.body), len(want), "served %d bytes, docs/openapi.yaml has %d"
                         % (len(r.body), len(want)))
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(want).hexdigest(),
                         "the served document differs from docs/openapi.yaml (rebuild?)")
        self.assertEqual(r.body, want)
        self.assertEqual(r.header("Content-Type"), "application/yaml")
        self.assertEqual(r.header("Content-Length"), str(len(want)))
        self.assertEqual(r.header("X-Request-Id"), "doc-1")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertIsNone(r.header("Server"))
        # The same bytes every time (a copy per answer, nothing consumed).
        self.assertEqual(self.req("GET", "/openapi.yaml").body, want)

    def test_only_get_and_head(self):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with self.subTest(method=method):
                r = self.req(method, "/openapi.yaml")
                self.assertEnvelope(r, 405, "method_not_allowed")
                self.assertEqual(r.header("Allow"), "GET, HEAD")
        for path in ("/openapi.json", "/openapi.yaml/", "/openapi"):
            with self.subTest(path=path):
                self.assertEnvelope(self.req("GET", path), 404, "route_not_found")

    def test_logged_as_its_route(self):
        mark = self.gw.proc.mark()
        r = self.req("GET", "/openapi.yaml", headers={"X-Request-Id": "doc-log"})
        self.assertEqual(r.status, 200)
        line = self.gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "access"
                                      and o.get("request_id") == "doc-log", stream="err",
                                      since=mark)
        self.assertEqual(line["route"], "openapi")
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["attempts"], 0)


class ServedWithClientsTest(unittest.TestCase):
    """With clients configured, the document needs no credential (and a contact route does)."""

    def test_no_credential_needed(self):
        sim = Sim()
        gw = None
        try:
            conf = full_conf(sim.base_url) + (
                'auth = "clients";\nclients = ( { name = "c"; token_sha256 = "%s"; '
                'routes = [ "*" ]; } );\n' % hashlib.sha256(b"served-test-token").hexdigest())
            gw = Gateway(sim, conf=conf)
            r = gw.request("GET", "/openapi.yaml")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, document())
            self.assertEqual(gw.request("GET", "/contacts/1568834").status, 401)
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, sim.key)
            self.assertEqual(sim.stop(), 0)


if __name__ == "__main__":
    unittest.main()

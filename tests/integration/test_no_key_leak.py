"""The key never leaves hcgw except in the Authorization header of its upstream calls
(issue 4: "a test that greps every log line and every response of the whole suite for the key").

One hcgw runs at log level debug with a distinctive canary key, in front of a simulator that
knows it. A broad set of requests goes through it: every route's success, every local refusal
(404, 405, 400 of each kind, 413, 414, 415, malformed framing), every upstream failure (400,
401 and 403 whose message echoes the key, 404, 409, 422, 429, 5xx with the key in an HTML page,
a closed, truncated, huge or non-JSON answer, a timeout), retries (logged at debug), a real 401
after the simulator revoked the key, /metrics, and a reload. Then:

- no answer, body or header, holds the key, in the clear or base64- or hex-encoded;
- no line hcgw wrote (stdout or stderr, debug included) holds it, in any of those forms;
- where HelpCrunch echoed the key in an error that hcgw passes on, the detail is there with
  the key masked (so the check above is not passing only because details were dropped).

The rest of the suite: harness.py checks every hcgw any test starts (through Proc, through
GatewayCase, or through subprocess.run for the command-line tests) for the keys that test
used, at every stop, and fails the test run when one shows up (see the end of harness.py).
"""
import base64
import http.client
import json
import os
import signal
import socket
import unittest

import harness
from harness import Gateway, Sim

CANARY = "hcgwCANARY-4f9e2a7c1b8d3e6f0a5c9b2d7e4f1a3c"
C = "1568834"

FORMS = {
    "plain": CANARY.encode(),
    "base64": base64.b64encode(CANARY.encode()),
    "bearer-base64": base64.b64encode(("Bearer " + CANARY).encode()),
    "hex": CANARY.encode().hex().encode(),
    "HEX": CANARY.encode().hex().upper().encode(),
}


class NoKeyLeakTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(key=CANARY)
        try:
            cls.gw = Gateway(cls.sim, conf={
                "log": {"level": "debug"},
                "upstream": {"timeout_ms": 1500, "max_retries": 2, "retry_base_ms": 10,
                             "retry_max_ms": 50, "auth_failure_unready_ms": 1000},
                "limits": {"max_body_bytes": 4096}})
        except BaseException:
            cls.sim.stop()
            raise
        cls.answers = []

    @classmethod
    def tearDownClass(cls):
        rc_gw = cls.gw.stop()
        rc_sim = cls.sim.stop()
        tc = unittest.TestCase()
        harness.assert_clean_stderr(tc, cls.gw.proc, CANARY)
        tc.assertEqual(rc_gw, 0)
        tc.assertEqual(rc_sim, 0)

    def setUp(self):
        self.sim.reset()

    # ---- helpers

    def assertNoKey(self, data, where):
        for form, needle in FORMS.items():
            self.assertNotIn(needle, data, "the key (%s) in %s" % (form, where))

    def req(self, method, path, body=None, headers=None):
        r = self.gw.request(method, path, body, headers, timeout=30)
        self.assertNoKey(r.body, "the body of %s %s" % (method, path))
        for k, v in r.headers:
            self.assertNoKey(("%s: %s" % (k, v)).encode(), "a header of %s %s" % (method, path))
        self.answers.append(r)
        return r

    def raw(self, data):
        sock = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
        buf = b""
        try:
            sock.sendall(data)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
        finally:
            sock.close()
        self.assertNoKey(buf, "a raw answer")
        return buf

    def script(self, entries):
        self.sim.script(entries)

    # ---- the requests

    def test_1_every_route_succeeds(self):
        for method, path, body in [
                ("GET", "/contacts/" + C, None), ("GET", "/contacts/%s/tags" % C, None),
                ("GET", "/contacts?limit=2", None),
                ("POST", "/contacts/search", {"filter": [{"field": "customers.name",
                                                          "operator": "~", "value": "o"}]}),
                ("PUT", "/contacts/%s/tags/Leak" % C, None),
                ("DELETE", "/contacts/%s/tags/Leak" % C, None),
                ("POST", "/contacts/%s/tags" % C, {"tags": ["A", {"name": "B", "color": "#abc"}]}),
                ("DELETE", "/contacts/%s/tags" % C, {"tags": ["A", "B"]}),
                ("PATCH", "/contacts/" + C, {"notes": "no key here"}),
                ("PUT", "/contacts/%s/block" % C, None), ("DELETE", "/contacts/%s/block" % C, None),
                ("GET", "/healthz", None), ("GET", "/readyz", None), ("GET", "/metrics", None)]:
            with self.subTest(method=method, path=path):
                r = self.req(method, path, body)
                self.assertLess(r.status, 300, r)
        created = self.req("POST", "/contacts", {"name": "Leak Test"})
        self.assertEqual(created.status, 201, created)
        self.assertEqual(self.req("DELETE", "/contacts/%d" % created.json()["id"]).status, 204)

    def test_2_every_local_refusal(self):
        json_ct = {"Content-Type": "application/json"}
        for method, path, body, headers, status in [
                ("GET", "/nope", None, None, 404), ("PATCH", "/contacts", None, None, 405),
                ("GET", "/contacts/0", None, None, 400), ("PUT", "/contacts/1/tags/%FF", None,
                                                          None, 400),
                ("POST", "/contacts", "[", json_ct, 400), ("GET", "/contacts?limit=x", None,
                                                            None, 400),
                ("POST", "/contacts", "{}", {"Content-Type": "text/plain"}, 415),
                ("POST", "/contacts", "x" * 5000, json_ct, 413),
                ("GET", "/contacts/" + "1" * 3000, None, None, 414)]:
            with self.subTest(method=method, path=path[:40]):
                self.assertEqual(self.req(method, path, body, headers).status, status)
        # A caller's own Authorization header is neither used nor echoed.
        self.assertEqual(self.req("GET", "/contacts/" + C,
                                  headers={"Authorization": "Bearer not-the-key"}).status, 200)
        self.assertIn(b"HTTP/1.1 400", self.raw(
            b"GET /contacts/1 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 5\r\n"
            b"\r\n"))
        self.assertIn(b"HTTP/1.1 400", self.raw(b"GET /healthz HTTP/1.1\r\nBroken\r\n\r\n"))

    def test_3_upstream_errors_that_echo_the_key(self):
        echo = "your token %s is not valid for this account" % CANARY
        cases = [
            (400, {"errors": [{"code": "invalid_request", "message": "x"},
                              {"code": "token", "message": echo}]}, 400, True),
            (404, {"errors": [{"code": "not_found", "message": echo}]}, 404, True),
            (409, {"message": echo, "success": False, "code": "conflict", "errors": echo}, 409,
             True),
            (422, {"message": "x", "success": False, "code": 1,
                   "errors": {"token": [echo], CANARY: "field named after the key"}}, 422, True),
            (401, {"errors": [{"code": "unauthorized", "message": echo}]}, 502, False),
            (403, {"message": echo, "success": False, "code": "forbidden"}, 502, False),
            (429, {"errors": [{"code": "too_many_requests", "message": echo}]}, 429, False),
            (418, {"errors": [{"code": "teapot", "message": echo}]}, 502, False),
        ]
        for upstream, body, status, kept in cases:
            with self.subTest(upstream=upstream):
                self.sim.reset()
                entry = {"status": upstream, "json": body, "count": 3}
                if upstream == 429:
                    entry["headers"] = {"Retry-After": "1"}
                self.script([entry])
                r = self.req("POST", "/contacts/search", {"filter": []})
                self.assertEqual(r.status, status, r)
                text = r.body.decode()
                if kept:
                    # The detail is there, the key masked with as many '*'.
                    self.assertIn("*" * len(CANARY), text)
        # HTML and text bodies (5xx pages of a proxy) that print the key, on retried GETs.
        self.sim.reset()
        self.script([{"status": 503, "body": "<html>key=%s</html>" % CANARY,
                      "content_type": "text/html", "count": 2},
                     {"status": 502, "body": "Bearer " + CANARY, "content_type": "text/plain"}])
        self.assertEqual(self.req("GET", "/contacts/" + C).status, 502)

    def test_4_broken_answers_retries_and_timeouts(self):
        for entries, status in [
                # A large count: libcurl silently re-sends on each pooled connection found
                # closed, and each re-send takes an entry.
                ([{"action": "close", "count": 1000}], 502),
                ([{"action": "truncate", "json": {"id": 1, "k": CANARY}, "count": 1000}], 502),
                ([{"status": 200, "body": "not json " + CANARY}], 502),
                ([{"action": "huge", "size": 9000000}], 502),
                ([{"status": 503, "body": CANARY}, {"status": 504}], 200),  # retried, then 200
                ([{"action": "hang"}], 504)]:
            with self.subTest(entries=json.dumps(entries)[:60]):
                self.sim.reset()
                self.script(entries)
                self.assertEqual(self.req("GET", "/contacts/" + C).status, status)

    def test_5_real_401_after_the_key_is_revoked_and_a_reload(self):
        self.sim.call("POST", "/_sim/keys", {"keys": ["some-other-key-0000"]})
        r = self.req("GET", "/contacts/" + C)
        self.assertEqual((r.status, r.json()["error"]["code"]), (502, "upstream_auth_failed"))
        self.assertEqual(self.req("GET", "/readyz").status, 503)
        self.sim.reset()  # the canary is valid again
        mark = self.gw.proc.mark()
        self.gw.proc.proc.send_signal(signal.SIGHUP)
        self.gw.proc.wait_line(lambda o: isinstance(o, dict)
                               and o.get("msg") == "configuration reloaded", stream="err",
                               since=mark)
        self.assertEqual(self.req("GET", "/contacts/" + C).status, 200)

    def test_6_no_log_line_holds_the_key(self):
        # Runs last (the names are ordered): everything above has been logged by now.
        self.assertEqual(self.req("GET", "/healthz").status, 200)
        lines = self.gw.proc.err + self.gw.proc.out
        self.assertGreater(len(lines), 50)
        for line in lines:
            self.assertNoKey(line.encode(), "hcgw's log line %r" % line[:200])
        # Debug logging was on and saw the retries, and every answer had its access line.
        msgs = [o.get("msg") for o in self.gw.proc.json_lines()]
        self.assertIn("upstream retry", msgs)
        self.assertGreaterEqual(msgs.count("access"), len(self.answers))


if __name__ == "__main__":
    unittest.main()

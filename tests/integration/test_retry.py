"""Retries (docs/contract.md, "Retries"): only routes whose internal method is idempotent (GET,
PUT, DELETE), only after a connect failure, a cut connection, 429, 502, 503 or 504, never more
than upstream.max_retries, honouring Retry-After, all inside one upstream.timeout_ms deadline.

Attempts are counted twice: by the simulator (its request counter) and by hcgw (the access
line's "attempts"). A cut connection is scripted as "truncate" (half an answer, then close),
because libcurl itself silently re-sends an idempotent request once when a reused keep-alive
connection is closed before any byte of the answer ("close"); POST and PATCH use fresh
connections so that this never happens to them (test_cut_without_answer_on_a_post).
"""
import socket
import time
import unittest
import uuid

from harness import ConfCase, Gateway, assert_clean_stderr, full_conf, wait_access

CUSTOMER = 1568834  # seeded by hcgw-sim
C = "/contacts/%d" % CUSTOMER
FALLBACK_S = 7

# Every route whose internal method is GET, PUT or DELETE, and what it sends upstream.
IDEMPOTENT = [
    ("GET", C, None),
    ("GET", C + "/tags", None),
    ("GET", "/contacts?limit=2", None),
    ("PUT", C + "/tags/vip", None),
    ("DELETE", C + "/tags/vip", None),
    ("DELETE", C + "/tags", {"tags": ["vip"]}),
    ("PUT", C + "/block", None),
    ("DELETE", C + "/block", None),
    ("DELETE", C, None),
]
# POST and PATCH routes: never retried, whatever the upstream verb (tags_add sends a PUT).
NOT_IDEMPOTENT = [
    ("POST", "/contacts", {"name": "Retry Test"}),
    ("POST", "/contacts/search", {"filter": [{"field": "customers.email", "operator": "~",
                                              "value": "example"}]}),
    ("POST", C + "/tags", {"tags": ["vip"]}),
    ("PATCH", C, {"name": "Patched"}),
]
SUCCESS = {"GET": (200,), "PUT": (200,), "DELETE": (200, 204), "POST": (200, 201),
           "PATCH": (200,)}


class RetryCase(ConfCase):
    conf_groups = {"upstream": {"timeout_ms": 4000, "max_retries": 2, "retry_base_ms": 20,
                                "retry_max_ms": 100, "retry_after_fallback_s": FALLBACK_S}}

    def send(self, method, path, body=None, script=None):
        """Reset the simulator, queue `script`, send one request; return (response, upstream
        calls the simulator saw, the request's access line, seconds taken)."""
        self.sim.reset()
        if script is not None:
            self.sim.script(script)
        rid = "retry-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        t0 = time.monotonic()
        r = self.req(method, path, body, headers={"X-Request-Id": rid})
        elapsed = time.monotonic() - t0
        line = wait_access(self.gw, rid, mark)
        return r, self.sim.count(), line, elapsed

    def assertAttempts(self, calls, line, n):
        self.assertEqual(line["attempts"], n, line)
        self.assertEqual(calls, n, "upstream calls the simulator saw")


class RetryWhenTest(RetryCase):
    """Which failures are retried, on which routes."""

    def test_get_503_once_then_success(self):
        r, calls, line, _ = self.send("GET", C, script={"status": 503, "json": {"errors": []}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["id"], CUSTOMER)
        self.assertAttempts(calls, line, 2)
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["upstream_status"], 200)

    def test_transient_statuses_are_retried_on_every_idempotent_route(self):
        for status in (429, 502, 503, 504):
            for method, path, body in IDEMPOTENT:
                with self.subTest(status=status, method=method, path=path):
                    r, calls, line, _ = self.send(method, path, body,
                                                  {"status": status, "body": "busy",
                                                   "content_type": "text/plain"})
                    self.assertIn(r.status, SUCCESS[method], r)
                    self.assertAttempts(calls, line, 2)

    def test_cut_connection_is_retried(self):
        r, calls, line, _ = self.send("GET", C, script={"action": "truncate"})
        self.assertEqual(r.status, 200, r)
        self.assertAttempts(calls, line, 2)

    def test_cut_connection_without_answer_is_retried(self):
        # Two cuts, then the real answer. libcurl may take the first cut itself (on a reused
        # connection it re-sends once, unseen by hcgw); hcgw retries the rest.
        r, calls, line, _ = self.send("GET", C, script={"action": "close", "count": 2})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(calls, 3)
        self.assertIn(line["attempts"], (2, 3), line)

    def test_connect_failure_is_retried(self):
        # A gateway in front of a port nobody listens on: every attempt is refused.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        gw = Gateway(self.sim, conf=full_conf("http://127.0.0.1:%d/v1" % port,
                                             upstream={"max_retries": 4}))
        try:
            for method, path, body, attempts in (("GET", C, None, 5),
                                                 ("DELETE", C + "/tags/vip", None, 5),
                                                 ("POST", "/contacts", {"name": "A"}, 1),
                                                 ("PATCH", C, {"name": "A"}, 1)):
                with self.subTest(method=method):
                    rid = "refused-" + uuid.uuid4().hex
                    mark = gw.proc.mark()
                    r = gw.request(method, path, body, headers={"X-Request-Id": rid})
                    self.assertEnvelope(r, 502, "upstream_unavailable")
                    self.assertEqual(wait_access(gw, rid, mark)["attempts"], attempts)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)

    def test_connect_timeout_is_retried_inside_the_deadline(self):
        # A listener whose accept queue is full: the kernel drops SYNs, so connecting hangs
        # until connect_timeout_ms, a connect failure that another attempt may cure.
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        fillers = []
        gw = None
        try:
            for _ in range(3):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                fillers.append(c)
            time.sleep(0.2)
            probe = socket.socket()
            probe.settimeout(0.5)
            try:
                probe.connect(("127.0.0.1", port))
                self.skipTest("this kernel completes connections to a full accept queue")
            except socket.timeout:
                pass
            finally:
                probe.close()
            gw = Gateway(self.sim, conf=full_conf("http://127.0.0.1:%d/v1" % port, upstream={
                "timeout_ms": 4000, "connect_timeout_ms": 300, "max_retries": 2}))
            rid = "blackhole-" + uuid.uuid4().hex
            mark = gw.proc.mark()
            t0 = time.monotonic()
            r = gw.request("GET", C, headers={"X-Request-Id": rid})
            elapsed = time.monotonic() - t0
            self.assertEnvelope(r, 502, "upstream_unavailable")
            self.assertEqual(wait_access(gw, rid, mark)["attempts"], 3)
            self.assertGreaterEqual(elapsed, 0.8)  # three connect timeouts of 300 ms
            self.assertLess(elapsed, 3.0)          # well inside the 4 s deadline
            # A connect timeout longer than what is left of the deadline: 504 at the deadline.
            gw2 = Gateway(self.sim, conf=full_conf("http://127.0.0.1:%d/v1" % port, upstream={
                "timeout_ms": 500, "connect_timeout_ms": 5000, "max_retries": 2}))
            try:
                t0 = time.monotonic()
                r = gw2.request("GET", C)
                self.assertEnvelope(r, 504, "upstream_timeout")
                self.assertLess(time.monotonic() - t0, 0.5 + 1.5)
            finally:
                self.assertEqual(gw2.stop(), 0)
                assert_clean_stderr(self, gw2.proc, self.sim.key)
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, self.sim.key)
            for c in fillers:
                c.close()
            lsock.close()

    def test_post_and_patch_are_never_retried(self):
        for entry, status, code in (({"status": 503}, 502, "upstream_error"),
                                    ({"status": 502}, 502, "upstream_error"),
                                    ({"status": 504}, 502, "upstream_error"),
                                    ({"status": 429}, 429, "rate_limited"),
                                    ({"action": "truncate"}, 502, "upstream_unavailable")):
            for method, path, body in NOT_IDEMPOTENT:
                with self.subTest(entry=entry, method=method, path=path):
                    script = dict(entry, count=5)
                    r, calls, line, _ = self.send(method, path, body, script)
                    self.assertEnvelope(r, status, code,
                                        upstream_status=entry.get("status"))
                    self.assertAttempts(calls, line, 1)

    def test_post_create_with_503_is_answered_after_one_attempt(self):
        r, calls, line, _ = self.send("POST", "/contacts", {"name": "Once"},
                                      {"status": 503, "json": {"errors": []}, "count": 5})
        self.assertEnvelope(r, 502, "upstream_error", upstream_status=503)
        self.assertAttempts(calls, line, 1)
        by_route = self.sim.stats()["by_route"]
        self.assertEqual(by_route.get("POST /customers"), 1, by_route)

    def test_cut_without_answer_on_a_post(self):
        # hcgw makes one attempt, on a fresh connection (docs/contract.md), so libcurl's own
        # re-send on a dead pooled connection cannot happen: HelpCrunch sees it exactly once.
        for method, path, body in NOT_IDEMPOTENT:
            with self.subTest(method=method, path=path):
                r, calls, line, _ = self.send(method, path, body, {"action": "close",
                                                                   "count": 5})
                self.assertEnvelope(r, 502, "upstream_unavailable")
                self.assertEqual(line["attempts"], 1)
                self.assertEqual(calls, 1)

    def test_non_transient_answers_are_not_retried(self):
        for status in (400, 401, 403, 404, 409, 418, 422, 500, 501, 505):
            with self.subTest(status=status):
                r, calls, line, _ = self.send("GET", C, script={"status": status, "count": 5,
                                                                "json": {"errors": []}})
                self.assertNotEqual(r.status, 200, r)
                self.assertEqual(r.json()["error"]["upstream_status"], status)
                self.assertAttempts(calls, line, 1)

    def test_bad_or_oversized_2xx_is_not_retried(self):
        for entry in ({"status": 200, "body": "<html></html>", "content_type": "text/html"},
                      {"action": "huge", "size": 9 * 1024 * 1024}):
            with self.subTest(entry=entry):
                r, calls, line, _ = self.send("GET", C, script=dict(entry, count=5))
                self.assertEqual(r.json()["error"]["code"], "upstream_bad_response")
                self.assertAttempts(calls, line, 1)


class RetryHowMuchTest(RetryCase):
    """How many retries, how long between them, and the one deadline."""

    def test_at_most_max_retries_then_the_last_answer_is_mapped(self):
        for entry, status, code in (({"status": 503}, 502, "upstream_error"),
                                    ({"status": 502}, 502, "upstream_error"),
                                    ({"status": 504}, 502, "upstream_error"),
                                    ({"status": 429}, 429, "rate_limited"),
                                    ({"action": "truncate"}, 502, "upstream_unavailable")):
            with self.subTest(entry=entry):
                r, calls, line, _ = self.send("GET", C, script=dict(entry, count=10))
                self.assertEnvelope(r, status, code, upstream_status=entry.get("status"))
                self.assertAttempts(calls, line, 3)

    def test_the_last_answer_is_the_one_mapped(self):
        # 503, 503, then a 404 on the last allowed attempt: the caller gets the 404.
        r, calls, line, _ = self.send("GET", C, script=[
            {"status": 503, "count": 2},
            {"status": 404, "json": {"errors": [{"code": "entity_not_found",
                                                 "message": "Customer not found"}]}}])
        self.assertEnvelope(r, 404, "not_found", upstream_status=404)
        self.assertAttempts(calls, line, 3)
        # and a success on the last allowed attempt is a success
        r, calls, line, _ = self.send("GET", C, script={"status": 502, "count": 2})
        self.assertEqual(r.status, 200, r)
        self.assertAttempts(calls, line, 3)

    def test_retries_show_in_the_metrics(self):
        def retries():
            text = self.req("GET", "/metrics").body.decode()
            for row in text.splitlines():
                if row.startswith("hcgw_upstream_retries_total "):
                    return int(row.split()[1])
            self.fail("no hcgw_upstream_retries_total")
        before = retries()
        self.send("GET", C, script={"status": 503, "count": 10})
        self.assertEqual(retries() - before, 2)

    def test_retry_after_is_honoured(self):
        r, calls, line, elapsed = self.send("GET", C, script={
            "status": 429, "headers": {"Retry-After": "1"}, "json": {"errors": []}})
        self.assertEqual(r.status, 200, r)
        self.assertAttempts(calls, line, 2)
        # The retry came about a second later (retry_max_ms is only 100 ms).
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 3.0)

    def test_retry_after_on_a_503_is_honoured(self):
        r, calls, line, elapsed = self.send("PUT", C + "/tags/vip", script={
            "status": 503, "headers": {"Retry-After": "1"}})
        self.assertEqual(r.status, 200, r)
        self.assertAttempts(calls, line, 2)
        self.assertGreaterEqual(elapsed, 0.9)

    def test_retry_after_beyond_the_deadline_stops_retrying(self):
        r, calls, line, elapsed = self.send("GET", C, script={
            "status": 429, "headers": {"Retry-After": "30"}, "count": 10})
        self.assertEnvelope(r, 429, "rate_limited", upstream_status=429)
        self.assertEqual(r.header("Retry-After"), "30")
        self.assertAttempts(calls, line, 1)
        self.assertLess(elapsed, 2.0, "hcgw waited for a retry it could not make")

    def test_without_retry_after_backoff_is_short(self):
        # retry_max_ms = 100: three attempts of a 503 take far less than a second.
        r, calls, line, elapsed = self.send("GET", C, script={"status": 503, "count": 10})
        self.assertAttempts(calls, line, 3)
        self.assertLess(elapsed, 1.5)


class RetryLogTest(RetryCase):
    """The request id is in every log line of its request, the debug line of a retry too."""
    conf_groups = dict(RetryCase.conf_groups, log={"level": "debug"})

    def test_retry_lines_carry_the_request_id(self):
        r, calls, line, _ = self.send("GET", C, script={"status": 503, "count": 2})
        self.assertEqual(r.status, 200, r)
        self.assertAttempts(calls, line, 3)
        rid = line["request_id"]
        mine = [l for l in self.gw.proc.json_lines() if l.get("request_id") == rid]
        retries = [l for l in mine if l.get("level") == "debug"]
        self.assertEqual(len(retries), 2, mine)
        # Nothing about this request was logged without its id.
        anonymous = [l for l in self.gw.proc.json_lines()
                     if "request_id" not in l and "retry" in l.get("msg", "")]
        self.assertEqual(anonymous, [])


class NoRetryConfigTest(ConfCase):
    conf_groups = {"upstream": {"max_retries": 0}}

    def test_max_retries_zero_makes_one_attempt(self):
        for entry in ({"status": 503}, {"status": 429}, {"action": "truncate"}):
            with self.subTest(entry=entry):
                self.sim.reset()
                self.sim.script(dict(entry, count=5))
                rid = "noretry-" + uuid.uuid4().hex
                mark = self.gw.proc.mark()
                r = self.req("GET", C, headers={"X-Request-Id": rid})
                self.assertNotEqual(r.status, 200)
                self.assertEqual(self.sim.count(), 1)
                self.assertEqual(wait_access(self.gw, rid, mark)["attempts"], 1)


class OneDeadlineTest(RetryCase):
    """timeout_ms covers every attempt and every wait together."""
    TIMEOUT_MS = 1000
    conf_groups = {"upstream": {"timeout_ms": TIMEOUT_MS, "connect_timeout_ms": 500,
                                "max_retries": 5, "retry_base_ms": 10, "retry_max_ms": 20}}

    def test_slow_failures_and_retries_share_one_deadline(self):
        # Each attempt takes 700 ms and fails with 503. A per-attempt timeout would allow six
        # attempts (4.2 s); one deadline allows the first and part of the second.
        r, calls, line, elapsed = self.send("GET", C, script={
            "status": 503, "delay_ms": 700, "count": 10})
        self.assertEnvelope(r, 504, "upstream_timeout")
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, self.TIMEOUT_MS / 1000.0 + 1.5)
        self.assertAttempts(calls, line, 2)

    def test_a_wait_that_would_cross_the_deadline_is_not_made(self):
        # Retry-After: 1 s from an answer at ~0 ms with a 1 s deadline: answered at once.
        r, calls, line, elapsed = self.send("GET", C, script={
            "status": 503, "headers": {"Retry-After": "1"}, "count": 10})
        self.assertEnvelope(r, 502, "upstream_error", upstream_status=503)
        self.assertAttempts(calls, line, 1)
        self.assertLess(elapsed, 0.8)

    def test_many_fast_failures_stay_inside_the_deadline(self):
        r, calls, line, elapsed = self.send("GET", C, script={
            "action": "truncate", "delay_ms": 50, "count": 20})
        self.assertEnvelope(r, 502, "upstream_unavailable")
        self.assertAttempts(calls, line, 6)
        self.assertLess(elapsed, self.TIMEOUT_MS / 1000.0 + 1.0)


if __name__ == "__main__":
    unittest.main()

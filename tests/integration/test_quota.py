"""The quota governor (conf "quota"; docs/configuration.md, "Quota, retries and what each failure
looks like"): one token bucket for every upstream call; a call that finds no token waits its
turn, or is answered 429 at once with a Retry-After and no upstream call; a 429 from HelpCrunch
pauses the whole process; retries draw from the same bucket; /readyz turns 503 while the key was
refused recently.

Timing bounds here are loose sanity bounds on behaviour (did it wait for the cooldown at all?),
not benchmarks.
"""
import threading
import time
import unittest
import uuid

from harness import GatewayCase, Sim, Gateway, assert_clean_stderr, wait_access

C = "/contacts/1568834"


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not found" % name)


class BurstTest(unittest.TestCase):
    """500 requests from 50 clients against a simulator that enforces HelpCrunch's own limit
    (120 a minute): the governor keeps HelpCrunch's 429s at zero and answers every request,
    either with success or with an honest 429 that spent no upstream call."""

    def test_burst_of_500_earns_no_upstream_429(self):
        sim = Sim(extra=["--rate-limit", "120"])
        # The harness starts the simulator with --rate-limit 0 first; the later flag wins.
        gw = None
        try:
            gw = Gateway(sim, conf={"quota": {"requests_per_minute": 120, "burst": 10,
                                              "max_wait_ms": 3000}})
            results = []
            lock = threading.Lock()

            def client(n):
                for _ in range(n):
                    r = gw.request("GET", C, timeout=30)
                    with lock:
                        results.append(r)

            threads = [threading.Thread(target=client, args=(10,)) for _ in range(50)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            elapsed = time.monotonic() - t0
            self.assertEqual(len(results), 500, "every request answered")
            ok = [r for r in results if r.status == 200]
            limited = [r for r in results if r.status == 429]
            self.assertEqual(len(ok) + len(limited), 500,
                             {r.status for r in results if r.status not in (200, 429)})
            for r in limited:
                err = r.json()["error"]
                self.assertEqual(err["code"], "rate_limited")
                self.assertNotIn("upstream_status", err, "a local 429 spent no upstream call")
                self.assertGreaterEqual(int(r.header("Retry-After")), 1)
            stats = sim.stats()
            self.assertEqual(stats["rate_limited"], 0, "HelpCrunch answered 429")
            self.assertEqual(stats["requests"], len(ok), "one upstream call per success")
            # The bucket allowed its burst and then its rate, no more and not much less: 120
            # in any minute with the burst included is one call every 60 s / 111 after it.
            # The quota was spent, not wasted.
            rate = 111 / 60.0
            self.assertGreaterEqual(len(ok), 10 + int(rate * elapsed * 0.7))
            self.assertLessEqual(len(ok), 10 + int(rate * elapsed) + 2)
            m = gw.request("GET", "/metrics").body.decode()
            self.assertEqual(metric(m, "hcgw_quota_rejections_total"), len(limited))
            self.assertEqual(metric(m, "hcgw_quota_upstream_429_total"), 0)
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, sim.key)
            self.assertEqual(sim.stop(), 0)


class LocalRejectTest(GatewayCase):
    conf_groups = {"quota": {"requests_per_minute": 60, "burst": 1, "max_wait_ms": 0}}

    def test_no_token_and_no_wait_is_an_immediate_429(self):
        time.sleep(1.1)  # a full bucket whatever ran before
        self.assertEqual(self.req("GET", C).status, 200)
        before = self.sim.count()
        r = self.req("GET", C)
        err = self.assertEnvelope(r, 429, "rate_limited")
        self.assertEqual(self.sim.count(), before, "no upstream call was spent")
        self.assertIn(r.header("Retry-After"), ("1",))
        self.assertNotIn("details", err)


class WaitAndRetryTest(GatewayCase):
    conf_groups = {"quota": {"requests_per_minute": 60, "burst": 1, "max_wait_ms": 4000,
                             "cooldown_ms": 1500},
                   "upstream": {"timeout_ms": 8000, "max_retries": 2, "retry_base_ms": 20,
                                "retry_max_ms": 40}}

    def setUp(self):
        super().setUp()
        time.sleep(1.1)  # the bucket refills one token a second

    def test_waiting_callers_are_served_in_turn(self):
        # Three at once with one token: one goes, the others wait ~1 s and ~2 s, none refused.
        results = []

        def one():
            t0 = time.monotonic()
            r = self.gw.request("GET", C)
            results.append((r.status, time.monotonic() - t0))

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(sorted(s for s, _ in results), [200, 200, 200])
        waits = sorted(d for _, d in results)
        self.assertGreater(waits[2], 1.5, "the third waited for its slot")
        self.assertEqual(self.sim.count(), 3)

    def test_retries_draw_tokens_from_the_same_bucket(self):
        self.sim.script({"status": 503, "json": {"errors": []}})
        rid = "quota-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        t0 = time.monotonic()
        r = self.req("GET", C, headers={"X-Request-Id": rid})
        took = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        self.assertEqual(wait_access(self.gw, rid, mark)["attempts"], 2)
        self.assertGreater(took, 0.8, "the retry waited for a token, not just the backoff")

    def test_upstream_429_pauses_every_caller(self):
        # HelpCrunch says 429, Retry-After 2: the caller that got it retries after the pause,
        # and a second caller arriving meanwhile waits for the pause too.
        self.sim.script({"status": 429, "headers": {"Retry-After": "2"},
                         "json": {"errors": [{"code": "too_many_requests", "message": "x"}]}})
        results = {}

        def first():
            t0 = time.monotonic()
            results["first"] = (self.gw.request("GET", C), time.monotonic() - t0)

        t = threading.Thread(target=first)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        second = self.gw.request("GET", C)
        second_took = time.monotonic() - t0
        t.join(30)
        r1, took1 = results["first"]
        self.assertEqual(r1.status, 200, r1)
        self.assertEqual(second.status, 200, second)
        self.assertGreater(took1, 1.8)
        self.assertGreater(second_took, 1.2, "the second caller waited for the cooldown")
        m = self.gw.request("GET", "/metrics").body.decode()
        self.assertGreaterEqual(metric(m, "hcgw_quota_upstream_429_total"), 1)
        self.assertGreaterEqual(metric(m, "hcgw_quota_cooldowns_total"), 1)

    def test_a_cooldown_holds_back_calls_already_waiting_for_a_slot(self):
        # The first call's 429 (Retry-After 3) comes 0.5 s after it left; a second call reserved
        # the next slot (about 1 s) before that. It must not go when that slot comes due, in
        # the middle of the cooldown: it waits for the cooldown's end (about 3.5 s).
        self.sim.script({"status": 429, "count": 1, "delay_ms": 500,
                         "headers": {"Retry-After": "3"},
                         "json": {"errors": [{"code": "too_many_requests", "message": "x"}]}})
        results = {}

        def first():
            results["first"] = self.gw.request("POST", "/contacts", {"name": "Cooldown"})

        t = threading.Thread(target=first)
        t.start()
        time.sleep(0.15)
        t0 = time.monotonic()
        second = self.gw.request("GET", C)
        second_took = time.monotonic() - t0
        t.join(30)
        self.assertEnvelope(results["first"], 429, "rate_limited", upstream_status=429)
        self.assertEqual(second.status, 200, second)
        self.assertGreater(second_took, 2.5, "the waiting call went during the cooldown")
        self.assertEqual(self.sim.count(), 2)

    def test_upstream_429_without_retry_after_uses_the_configured_cooldown(self):
        self.sim.script({"status": 429, "count": 1, "json": {"errors": []}})
        t0 = time.monotonic()
        r = self.req("POST", "/contacts", {"name": "Quota"})  # POST: not retried
        self.assertEnvelope(r, 429, "rate_limited", upstream_status=429)
        # The cooldown (1.5 s) is what the caller is told to wait.
        self.assertIn(r.header("Retry-After"), ("1", "2"))
        r2 = self.req("GET", C)
        self.assertEqual(r2.status, 200)
        self.assertGreater(time.monotonic() - t0, 1.2, "the next call waited for the cooldown")

    def test_metrics_show_the_bucket(self):
        m = self.req("GET", "/metrics").body.decode()
        self.assertEqual(metric(m, "hcgw_quota_enabled"), 1)
        self.assertGreaterEqual(metric(m, "hcgw_quota_tokens"), 0)
        self.assertEqual(metric(m, "hcgw_quota_queued"), 0)
        for name in ("hcgw_quota_waits_total", "hcgw_quota_rejections_total",
                     "hcgw_quota_upstream_429_total", "hcgw_quota_cooldowns_total",
                     "hcgw_quota_wait_seconds_total"):
            metric(m, name)


class ReadinessAfterAuthFailureTest(GatewayCase):
    conf_groups = {"upstream": {"auth_failure_unready_ms": 1500}}

    def test_readyz_turns_503_after_a_401_and_recovers(self):
        self.assertEqual(self.req("GET", "/readyz").status, 200)
        self.sim.script({"status": 401, "json": {"errors": [{"code": "unauthorized",
                                                             "message": "Invalid token"}]}})
        self.assertEnvelope(self.req("GET", C), 502, "upstream_auth_failed", upstream_status=401)
        r = self.req("GET", "/readyz")
        self.assertEnvelope(r, 503, "upstream_auth_failed")
        self.assertEqual(self.req("GET", "/healthz").status, 200, "liveness is not readiness")
        time.sleep(1.7)
        self.assertEqual(self.req("GET", "/readyz").status, 200)


class KeyRefusedTest(GatewayCase):
    """By default a refused key does not make the replica unready (every replica would drop out
    of the Service together); the gauge and one log line per change say it instead."""

    def test_readiness_stays_local_and_the_gauge_tells(self):
        def gauge():
            return metric(self.req("GET", "/metrics").body.decode(), "hcgw_upstream_key_refused")

        self.assertEqual(gauge(), 0)
        mark = self.gw.proc.mark()
        self.sim.script({"status": 401, "count": 2,
                         "json": {"errors": [{"code": "unauthorized", "message": "Invalid token"}]}})
        for _ in range(2):
            self.assertEnvelope(self.req("GET", C), 502, "upstream_auth_failed",
                                upstream_status=401)
        self.assertEqual(self.req("GET", "/readyz").status, 200, "readiness is local")
        self.assertEqual(gauge(), 1)
        self.assertEqual(self.req("GET", C).status, 200)
        self.assertEqual(gauge(), 0)
        self.gw.proc.wait_line(lambda o: isinstance(o, dict) and
                               o.get("msg") == "HelpCrunch accepts the API key again",
                               stream="err", since=mark)
        refused = [o for o in self.gw.proc.json_lines()
                   if isinstance(o, dict) and o.get("msg", "").startswith(
                       "HelpCrunch refused the API key")]
        self.assertEqual(len(refused), 1, "one line per change, not per answer")
        self.assertEqual(refused[0]["level"], "error")
        self.assertEqual(refused[0]["upstream_status"], 401)


if __name__ == "__main__":
    unittest.main()

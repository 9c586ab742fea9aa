"""Every upstream fault of hcgw-sim's knobs (docs/simulator.md, "/_sim/faults"), driven through
hcgw: each test sets a knob, sends a request through the gateway, and checks

  (a) the envelope row of docs/contract.md (status, code, upstream_status),
  (b) that the one upstream.timeout_ms deadline held (a loose sanity bound, not a benchmark),
  (c) the upstream attempts: the simulator's request count and the access line's "attempts",
      against the retry policy (GET retried up to max_retries on a transient failure; POST
      never), and the simulator's own count of the fault it applied,
  (d) that hcgw serves the next request once the knob is cleared.

test_mapping.py and test_retry.py already script one-shot answers for every mapping row; the
knobs here are persistent (every attempt, retries included, meets the fault) and add what a
script cannot say: hung calls, resets, jitter, a fraction of calls, the simulator's own rate
limiter with and without Retry-After, and a mixed run from many threads.
"""
import socket
import threading
import time
import unittest
import uuid

from harness import (Gateway, GatewayCase, Sim, assert_clean_stderr, http_request,
                     wait_access)

CUSTOMER = 1568834  # seeded by hcgw-sim
C = "/contacts/%d" % CUSTOMER
CREATE = ("POST", "/contacts", {"name": "Fault Test"})
TIMEOUT_MS = 800
TIMEOUT_S = TIMEOUT_MS / 1000.0
MARGIN_S = 1.5        # the deadline holds: answered within timeout_ms + this
MAX_RETRIES = 2
FALLBACK_S = 7        # upstream.retry_after_fallback_s (not the default 10)
DEFAULT_UPSTREAM_BODY = 8 * 1024 * 1024  # limits.max_upstream_body_bytes, left at its default
RATES = ("error_rate", "hang_rate", "close_rate", "reset_rate", "truncate_rate", "drip_rate",
         "huge_rate", "html_rate", "bad_body_rate")
FAULT_CONF = {
    "upstream": {"timeout_ms": TIMEOUT_MS, "connect_timeout_ms": 500,
                 "max_retries": MAX_RETRIES, "retry_base_ms": 20, "retry_max_ms": 100,
                 "retry_after_fallback_s": FALLBACK_S},
    "quota": {"requests_per_minute": 0},
}
# The contract's 5xx rows that errors, cut connections and latency can lead to.
FIVE_XX = {(502, "upstream_error"), (502, "upstream_unavailable"), (504, "upstream_timeout")}


class Outcome:
    """One request through hcgw, and what the simulator saw meanwhile."""

    def __init__(self, response, line, elapsed, calls, faults, rate_limited):
        self.r = response
        self.line = line
        self.elapsed = elapsed
        self.calls = calls          # /v1 calls the simulator received
        self.faults = faults        # its fault counters, as deltas
        self.rate_limited = rate_limited


class FaultCase(GatewayCase):
    conf_groups = FAULT_CONF

    def set_faults(self, **knobs):
        r = http_request(self.sim.port, "POST", "/_sim/faults", knobs)
        self.assertEqual(r.status, 200, r)
        knobs_now = r.json()
        for k, v in knobs.items():
            self.assertEqual(knobs_now[k], v, "the simulator did not take %s" % k)
        return knobs_now

    def knobs(self):
        return self.sim.call("GET", "/_sim/faults")

    def send(self, method="GET", path=C, body=None):
        before = self.sim.stats()
        rid = "fault-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        t0 = time.monotonic()
        r = self.req(method, path, body, headers={"X-Request-Id": rid},
                     timeout=TIMEOUT_S + 30)
        elapsed = time.monotonic() - t0
        line = wait_access(self.gw, rid, mark)
        after = self.sim.stats()
        self.assertEqual(r.header("X-Request-Id"), rid)
        faults = {k: after["faults"][k] - before["faults"][k] for k in after["faults"]}
        return Outcome(r, line, elapsed, after["requests"] - before["requests"], faults,
                       after["rate_limited"] - before["rate_limited"])

    # (b) the deadline
    def assertDeadlineHeld(self, o):
        self.assertLess(o.elapsed, TIMEOUT_S + MARGIN_S, "the deadline did not hold")

    def assertTimedOut(self, o):
        self.assertEnvelope(o.r, 504, "upstream_timeout")
        self.assertGreaterEqual(o.elapsed, TIMEOUT_S * 0.9, "answered 504 before the deadline")
        self.assertDeadlineHeld(o)
        self.assertEqual(o.line["status"], 504)
        self.assertNotIn("upstream_status", o.line)

    # (c) the attempts
    def assertAttempts(self, o, n, calls=None):
        self.assertEqual(o.line["attempts"], n, o.line)
        if calls is None:
            self.assertEqual(o.calls, n, "upstream calls the simulator saw")
        else:
            self.assertIn(o.calls, calls, "upstream calls the simulator saw")

    # (d) the next request
    def assertServesNext(self):
        cleared = http_request(self.sim.port, "DELETE", "/_sim/faults").json()
        for rate in RATES:
            self.assertEqual(cleared[rate], 0, "the knobs were not cleared")
        r = self.req("GET", C, timeout=TIMEOUT_S + 30)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["id"], CUSTOMER)

    def assertOk(self, o):
        self.assertEqual(o.r.status, 200, o.r)
        self.assertEqual(o.r.json()["id"], CUSTOMER)
        self.assertEqual(o.line["status"], 200)


class LatencyTest(FaultCase):

    def test_fixed_latency_below_the_deadline(self):
        self.set_faults(latency_ms=300)
        o = self.send()
        self.assertOk(o)
        self.assertGreaterEqual(o.elapsed, 0.3, "the latency was not applied")
        self.assertDeadlineHeld(o)
        self.assertAttempts(o, 1)
        self.assertEqual(o.faults["latency"], 1)
        self.assertServesNext()
        # Cleared means cleared: the next answer is not slowed down any more.
        o = self.send()
        self.assertOk(o)
        self.assertLess(o.elapsed, 0.3)
        self.assertEqual(o.faults["latency"], 0)

    def test_latency_beyond_the_deadline(self):
        self.set_faults(latency_ms=3000)
        o = self.send()
        self.assertTimedOut(o)
        self.assertAttempts(o, 1)
        self.assertServesNext()

    def test_random_latency(self):
        # 400..1200 ms against an 800 ms deadline: about half are answered, half time out,
        # and none is late. Sent in parallel so that the test takes one deadline, not sixteen.
        self.set_faults(latency_ms=400, latency_jitter_ms=800, seed=20240601)
        n = 16
        results = [None] * n
        mark = self.gw.proc.mark()

        def one(i):
            rid = "jitter-%d-%s" % (i, uuid.uuid4().hex)
            t0 = time.monotonic()
            r = self.gw.request("GET", C, headers={"X-Request-Id": rid}, timeout=30)
            results[i] = (rid, r, time.monotonic() - t0)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        outcomes = set()
        for rid, r, elapsed in results:
            self.assertLess(elapsed, TIMEOUT_S + MARGIN_S, "the deadline did not hold")
            if r.status == 200:
                self.assertEqual(r.json()["id"], CUSTOMER)
                self.assertGreaterEqual(elapsed, 0.4, "the fixed part of the latency is missing")
            else:
                self.assertEnvelope(r, 504, "upstream_timeout")
            outcomes.add(r.status)
            self.assertEqual(wait_access(self.gw, rid, mark)["attempts"], 1)
        self.assertEqual(outcomes, {200, 504}, "the jitter did not spread the latency")
        stats = self.sim.stats()
        self.assertEqual(stats["requests"], n)
        self.assertEqual(stats["faults"]["latency"], n)
        self.assertServesNext()


class ErrorTest(FaultCase):

    def test_errors_for_fewer_calls_than_the_retries(self):
        self.set_faults(error_next=MAX_RETRIES)
        o = self.send()
        self.assertOk(o)
        self.assertAttempts(o, MAX_RETRIES + 1)
        self.assertEqual(o.faults["error"], MAX_RETRIES)
        self.assertEqual(o.line["upstream_status"], 200)
        self.assertDeadlineHeld(o)
        self.assertEqual(self.knobs()["error_next"], 0)
        self.assertServesNext()

    def test_errors_for_more_calls_than_the_retries(self):
        self.set_faults(error_next=MAX_RETRIES + 3)
        o = self.send()
        self.assertEnvelope(o.r, 502, "upstream_error", upstream_status=503)
        self.assertAttempts(o, MAX_RETRIES + 1)
        self.assertEqual(o.faults["error"], MAX_RETRIES + 1)
        self.assertDeadlineHeld(o)
        self.assertEqual(self.knobs()["error_next"], 2)
        # A POST meets the next one and is never retried.
        o = self.send(*CREATE)
        self.assertEnvelope(o.r, 502, "upstream_error", upstream_status=503)
        self.assertAttempts(o, 1)
        self.assertEqual(self.knobs()["error_next"], 1)
        self.assertServesNext()

    def test_error_rate_one(self):
        # 503 and 504 are transient (retried), 500 is not; POST is never retried.
        for status, method, path, body, attempts in (
                (503, "GET", C, None, MAX_RETRIES + 1),
                (504, "GET", C, None, MAX_RETRIES + 1),
                (500, "GET", C, None, 1),
                (503,) + CREATE + (1,)):
            with self.subTest(status=status, method=method):
                self.sim.reset()
                self.set_faults(error_rate=1.0, error_status=status)
                o = self.send(method, path, body)
                err = self.assertEnvelope(o.r, 502, "upstream_error", upstream_status=status)
                self.assertNotIn("details", err)
                self.assertAttempts(o, attempts)
                self.assertEqual(o.faults["error"], attempts)
                self.assertDeadlineHeld(o)
                self.assertServesNext()


class RateLimitTest(FaultCase):
    """The simulator's own per-minute limiter, lowered at run time to one call a minute."""

    def spend_the_window(self):
        o = self.send()
        self.assertOk(o)

    def test_429_with_retry_after(self):
        self.set_faults(rate_limit=1, retry_after=True)
        self.spend_the_window()
        o = self.send()
        self.assertEnvelope(o.r, 429, "rate_limited", upstream_status=429)
        # HelpCrunch's Retry-After (the rest of the minute) is passed on, and it is beyond the
        # deadline, so no retry is made.
        retry_after = o.r.header("Retry-After")
        self.assertIsNotNone(retry_after)
        self.assertTrue(50 <= int(retry_after) <= 60, retry_after)
        self.assertAttempts(o, 1)
        self.assertEqual(o.rate_limited, 1)
        self.assertLess(o.elapsed, TIMEOUT_S, "hcgw waited for a retry it could not make")
        self.assertServesNext()

    def test_429_without_retry_after(self):
        self.set_faults(rate_limit=1, retry_after=False)
        self.spend_the_window()
        o = self.send()
        self.assertEnvelope(o.r, 429, "rate_limited", upstream_status=429)
        self.assertEqual(o.r.header("Retry-After"), str(FALLBACK_S))
        self.assertAttempts(o, MAX_RETRIES + 1)
        self.assertEqual(o.rate_limited, MAX_RETRIES + 1)
        self.assertDeadlineHeld(o)
        # and a POST is refused at once, once
        o = self.send(*CREATE)
        self.assertEnvelope(o.r, 429, "rate_limited", upstream_status=429)
        self.assertAttempts(o, 1)
        self.assertServesNext()


class HangTest(FaultCase):

    def test_hang_forever(self):
        self.set_faults(hang_rate=1.0)
        o = self.send()
        self.assertTimedOut(o)
        self.assertAttempts(o, 1)
        self.assertEqual(o.faults["hang"], 1)
        self.assertServesNext()
        # The hung call is still hung in the simulator; tearDownClass checks that it stops
        # cleanly anyway, and test_simulator_stops_with_hung_calls does it on its own.

    def test_simulator_stops_with_hung_calls(self):
        # A simulator started with the flag, so that the command-line side is covered too.
        sim = Sim(extra=["--hang-rate", "1"])
        gw = None
        raw = None
        try:
            self.assertEqual(sim.call("GET", "/_sim/faults")["hang_rate"], 1)
            gw = Gateway(sim, conf=FAULT_CONF)
            t0 = time.monotonic()
            r = gw.request("GET", C)
            self.assertEnvelope(r, 504, "upstream_timeout")
            self.assertLess(time.monotonic() - t0, TIMEOUT_S + MARGIN_S)
            # One more hung call, straight to the simulator and still open when it stops.
            raw = socket.create_connection(("127.0.0.1", sim.port), timeout=10)
            raw.sendall(b"GET /v1/customers/1568834 HTTP/1.1\r\nHost: sim\r\n"
                        b"Authorization: Bearer " + sim.key.encode() + b"\r\n\r\n")
            deadline = time.monotonic() + 5
            while sim.stats()["faults"]["hang"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(sim.stats()["faults"]["hang"], 2)
            t0 = time.monotonic()
            rc = sim.stop()
            self.assertEqual(rc, 0, "hcgw-sim exit status with hung calls")
            self.assertLess(time.monotonic() - t0, 5.0, "hung calls held the simulator up")
            assert_clean_stderr(self, sim.proc)
            # The hung call was closed without an answer.
            self.assertEqual(raw.recv(4096), b"")
            # hcgw goes on answering, now that its upstream is gone, with the contract's row.
            r = gw.request("GET", C)
            self.assertEnvelope(r, 502, "upstream_unavailable")
        finally:
            if raw is not None:
                raw.close()
            if sim.proc.proc.poll() is None:
                sim.stop()
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, sim.key)


class QueuedHangTest(FaultCase):
    """Hung calls with more requests than upstream connections: the rest wait in libcurl's queue
    for a connection, and each must still be answered at its own deadline."""
    conf_groups = dict(FAULT_CONF, upstream=dict(FAULT_CONF["upstream"], max_connections=1))
    PRECISION_S = 0.1  # tighter than MARGIN_S on purpose: this is about the deadline itself

    # libcurl 7.88 does not time out transfers queued by CURLMOPT_MAX_HOST_CONNECTIONS, and
    # when it starts one whose CURLOPT_TIMEOUT_MS has already passed it notices only at its next
    # timer (~200 ms late); hcgw therefore holds each call's deadline with a timer of its own.
    def test_queued_calls_time_out_at_their_own_deadline(self):
        self.set_faults(hang_rate=1.0)
        results = [None] * 3

        def one(i):
            t0 = time.monotonic()
            r = self.gw.request("GET", C, timeout=30)
            results[i] = (r, time.monotonic() - t0)

        threads = []
        for i in range(3):
            threads.append(threading.Thread(target=one, args=(i,)))
            threads[-1].start()
            time.sleep(0.02)  # the first holds the only connection; the others queue
        for t in threads:
            t.join(30)
        for r, elapsed in results:
            self.assertEnvelope(r, 504, "upstream_timeout")
            self.assertGreaterEqual(elapsed, TIMEOUT_S * 0.9)
            self.assertLess(elapsed, TIMEOUT_S + self.PRECISION_S,
                            "a queued call was answered after its deadline")

    def test_queued_calls_are_answered(self):
        # What holds today, bug or not: every queued call gets its 504, within the margin, and
        # the pool serves again afterwards.
        self.set_faults(hang_rate=1.0)
        results = [None] * 4

        def one(i):
            t0 = time.monotonic()
            r = self.gw.request("GET", C, timeout=30)
            results[i] = (r, time.monotonic() - t0)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for r, elapsed in results:
            self.assertEnvelope(r, 504, "upstream_timeout")
            self.assertLess(elapsed, TIMEOUT_S + MARGIN_S, "the deadline did not hold")
        self.assertLessEqual(self.sim.stats()["faults"]["hang"], 4)
        self.assertServesNext()


class CutTest(FaultCase):
    """Connections closed before an answer, reset mid-body, or cut short."""

    def test_close_before_answering(self):
        self.set_faults(close_rate=1.0)
        o = self.send()
        self.assertEnvelope(o.r, 502, "upstream_unavailable")
        self.assertNotIn("upstream_status", o.line)
        # libcurl re-sends once on its own when a reused connection turns out dead before any
        # byte (docs/contract.md): that one is not an attempt, but the simulator sees it.
        self.assertAttempts(o, MAX_RETRIES + 1, calls=(MAX_RETRIES + 1, MAX_RETRIES + 2))
        self.assertEqual(o.faults["close"], o.calls)
        self.assertDeadlineHeld(o)
        # POST: one attempt on a fresh connection, so HelpCrunch sees it exactly once.
        o = self.send(*CREATE)
        self.assertEnvelope(o.r, 502, "upstream_unavailable")
        self.assertAttempts(o, 1)
        self.assertServesNext()

    def test_reset_mid_body(self):
        self.set_faults(reset_rate=1.0)
        o = self.send()
        self.assertEnvelope(o.r, 502, "upstream_unavailable")
        self.assertNotIn("upstream_status", o.line)
        self.assertAttempts(o, MAX_RETRIES + 1)
        self.assertEqual(o.faults["reset"], MAX_RETRIES + 1)
        self.assertDeadlineHeld(o)
        o = self.send(*CREATE)
        self.assertEnvelope(o.r, 502, "upstream_unavailable")
        self.assertAttempts(o, 1)
        self.assertServesNext()

    def test_truncated_body(self):
        self.set_faults(truncate_rate=1.0)
        o = self.send()
        self.assertEnvelope(o.r, 502, "upstream_unavailable")
        self.assertAttempts(o, MAX_RETRIES + 1)
        self.assertEqual(o.faults["truncate"], MAX_RETRIES + 1)
        self.assertDeadlineHeld(o)
        self.assertServesNext()


class BadAnswerTest(FaultCase):
    """Answers that arrive whole but are wrong: not JSON, an HTML page, too big, too slow."""

    def test_non_json_200_body(self):
        self.set_faults(bad_body_rate=1.0)
        o = self.send()
        self.assertEqual(o.r.status, 502, o.r)
        err = o.r.json()["error"]
        self.assertEqual(err["code"], "upstream_bad_response")
        self.assertIn(err.get("upstream_status"), (None, 200), err)
        self.assertNotIn("details", err)
        self.assertAttempts(o, 1)  # a 2xx is not transient, whatever its body
        self.assertEqual(o.faults["bad_body"], 1)
        self.assertDeadlineHeld(o)
        self.assertServesNext()

    def test_html_error_page(self):
        self.set_faults(html_rate=1.0)
        o = self.send()
        err = self.assertEnvelope(o.r, 502, "upstream_error", upstream_status=502)
        self.assertNotIn("details", err)
        self.assertNotIn(b"<html", o.r.body)
        self.assertAttempts(o, MAX_RETRIES + 1)  # 502 is transient
        self.assertEqual(o.faults["html"], MAX_RETRIES + 1)
        self.assertDeadlineHeld(o)
        self.assertServesNext()

    def test_huge_body(self):
        # The simulator's default huge body is over hcgw's default bound.
        self.assertGreater(self.set_faults(huge_rate=1.0)["huge_bytes"], DEFAULT_UPSTREAM_BODY)
        o = self.send()
        self.assertEqual(o.r.status, 502, o.r)
        self.assertEqual(o.r.json()["error"]["code"], "upstream_bad_response")
        self.assertLess(len(o.r.body), 4096, "the huge body leaked through")
        self.assertAttempts(o, 1)
        self.assertEqual(o.faults["huge"], 1)
        self.assertDeadlineHeld(o)
        self.assertServesNext()

    def test_slow_drip_longer_than_the_deadline(self):
        # About 95 bytes at one per 100 ms: some 9 s, against an 800 ms deadline.
        self.set_faults(drip_rate=1.0, drip_interval_ms=100)
        o = self.send()
        self.assertTimedOut(o)
        self.assertAttempts(o, 1)
        self.assertEqual(o.faults["drip"], 1)
        self.assertServesNext()


class ControlTest(FaultCase):
    """The knobs themselves, as far as the tests above rely on them."""

    def post(self, body):
        return http_request(self.sim.port, "POST", "/_sim/faults", body)

    def test_only_the_given_knobs_change_and_bad_ones_change_nothing(self):
        start = self.knobs()
        self.assertEqual({start[r] for r in RATES}, {0})
        self.assertEqual(start["error_status"], 503)
        now = self.set_faults(error_rate=0.25)
        self.assertEqual(dict(now, error_rate=0), start)
        for bad in ({"error_rte": 0.5}, {"close_rate": 1.5}, {"close_rate": "0.5"},
                    {"error_status": 200}, {"close_rate": 0.8}, [1], {"latency_ms": -1}):
            with self.subTest(bad=bad):
                r = self.post(bad)
                self.assertEqual(r.status, 400, r)
                self.assertIn("error", r.json())
                self.assertEqual(self.knobs(), now, "a refused update changed something")
        # DELETE and /_sim/reset both put the knobs back to their start values.
        self.assertEqual(http_request(self.sim.port, "DELETE", "/_sim/faults").json(), start)
        self.set_faults(hang_rate=0.5)
        self.sim.reset()
        self.assertEqual(self.knobs(), start)
        self.assertEqual(set(self.sim.stats()["faults"].values()), {0})

    def test_a_script_entry_wins_over_the_knobs(self):
        self.set_faults(error_rate=1.0)
        self.sim.script({"status": 200, "json": {"id": CUSTOMER, "name": "Scripted"}})
        o = self.send()
        self.assertOk(o)
        self.assertEqual(o.r.json()["name"], "Scripted")
        self.assertAttempts(o, 1)
        self.assertEqual(o.faults["error"], 0)
        self.assertEqual(self.sim.stats()["scripted"], 1)

    def test_a_seed_replays_the_same_faults(self):
        auth = {"Authorization": "Bearer " + self.sim.key}

        def run():
            self.set_faults(seed=4242, error_rate=0.5, latency_jitter_ms=5)
            return [http_request(self.sim.port, "GET", "/v1/customers/%d" % CUSTOMER,
                                 headers=auth).status for _ in range(24)]
        first = run()
        self.assertEqual(set(first), {200, 503})
        self.assertEqual(run(), first)

    def test_a_reset_is_a_tcp_reset(self):
        # Through hcgw a reset and a truncate look alike (upstream_unavailable); straight to
        # the simulator the difference shows: part of the body, then ECONNRESET, not an EOF.
        self.set_faults(reset_rate=1.0)
        s = socket.create_connection(("127.0.0.1", self.sim.port), timeout=10)
        got = b""
        try:
            s.sendall(b"GET /v1/customers/1568834 HTTP/1.1\r\nHost: sim\r\n\r\n")
            with self.assertRaises(ConnectionResetError):
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
        finally:
            s.close()
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), got)
        length = int([h.split(b":")[1] for h in head.split(b"\r\n")
                      if h.lower().startswith(b"content-length:")][0])
        self.assertTrue(0 < len(body) < length, got)

    def test_scripted_hang_and_reset(self):
        # The two actions the knobs brought to /_sim/script as well.
        self.sim.script({"action": "reset"})
        o = self.send()
        self.assertOk(o)
        self.assertAttempts(o, 2)
        self.sim.script({"action": "hang"})
        o = self.send()
        self.assertTimedOut(o)
        self.assertAttempts(o, 1)


class MixedFaultsTest(FaultCase):
    """Errors, closed connections and jitter together, from many threads at once."""
    SIM_FLAGS = ["--error-rate", "0.3", "--close-rate", "0.1", "--latency-jitter-ms", "50",
                 "--seed", "1234"]
    THREADS = 10
    PER_THREAD = 10

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim(extra=cls.SIM_FLAGS)
        try:
            cls.gw = Gateway(cls.sim, conf=cls.conf_groups, workers=cls.workers)
        except BaseException:
            cls.sim.stop()
            raise

    def test_every_request_is_answered_once(self):
        knobs = self.knobs()  # the flags survive /_sim/reset: they are the start values
        self.assertEqual((knobs["error_rate"], knobs["close_rate"], knobs["latency_jitter_ms"],
                          knobs["seed"]), (0.3, 0.1, 50, 1234))
        results = {}
        lock = threading.Lock()
        mark = self.gw.proc.mark()

        def worker(t):
            for i in range(self.PER_THREAD):
                rid = "mixed-%d-%d-%s" % (t, i, uuid.uuid4().hex[:8])
                t0 = time.monotonic()
                try:
                    r = self.gw.request("GET", C, headers={"X-Request-Id": rid}, timeout=30)
                except Exception as e:  # noqa: BLE001 - a lost answer is what is tested
                    r = e
                with lock:
                    results[rid] = (r, time.monotonic() - t0)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(self.THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        total = self.THREADS * self.PER_THREAD
        self.assertEqual(len(results), total)
        ok = 0
        attempts = 0
        for rid, (r, elapsed) in results.items():
            self.assertNotIsInstance(r, Exception, "request %s got no answer: %r" % (rid, r))
            self.assertEqual(r.header("X-Request-Id"), rid)
            self.assertLess(elapsed, TIMEOUT_S + MARGIN_S, "the deadline did not hold")
            if r.status == 200:
                self.assertEqual(r.json()["id"], CUSTOMER)
                ok += 1
            else:
                err = self.assertEnvelope(r, r.status, r.json()["error"]["code"],
                                          r.json()["error"].get("upstream_status"))
                self.assertIn((r.status, err["code"]), FIVE_XX, r)
            attempts += wait_access(self.gw, rid, mark)["attempts"]
        # Exactly one access line per request: none lost, none doubled.
        ids = [a.get("request_id") for a in self.gw.access_lines()
               if str(a.get("request_id")).startswith("mixed-")]
        self.assertEqual(sorted(ids), sorted(results))
        # A call fails three times running with p = 0.4^3, about 6 in 100.
        self.assertGreaterEqual(ok, 80, "too few successes for 40% faults and 2 retries")
        self.assertLess(ok, total, "no request met three faults in a row; were they applied?")
        stats = self.sim.stats()
        calls, faults = stats["requests"], stats["faults"]
        # Every attempt reached the simulator; libcurl may re-send a call closed on a reused
        # connection once more on its own.
        self.assertGreaterEqual(calls, attempts)
        self.assertLessEqual(calls, attempts + faults["close"])
        self.assertTrue(0.15 <= faults["error"] / calls <= 0.45, faults)
        self.assertTrue(0.02 <= faults["close"] / calls <= 0.25, faults)
        self.assertGreater(faults["latency"], calls * 0.8)
        # Afterwards hcgw is healthy. The knobs came from the command line, so DELETE would
        # restore them: they are turned off explicitly.
        self.set_faults(error_rate=0.0, close_rate=0.0, latency_jitter_ms=0)
        for path in ("/healthz", C):
            r = self.req("GET", path)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(self.sim.stats()["faults"]["error"], faults["error"])


if __name__ == "__main__":
    unittest.main()

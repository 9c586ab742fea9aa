"""The access line's upstream_ms (docs/contract.md, "Logs"): the time of all the request's
attempts at HelpCrunch, the waits between them left out, whatever ended each attempt: an
answer, the upstream.timeout_ms deadline, the caller hanging up (499), or the drain timeout
(503 shutting_down). The histogram hcgw_upstream_duration_seconds counts a timed-out attempt
with the same time.

Every timed-out attempt is cut at the deadline by hcgw's own timer or by libcurl's, whichever
runs first; each timeout case is therefore tried several times.
"""
import signal
import socket
import threading
import time
import unittest
import uuid

from harness import (ConfCase, Gateway, Sim, assert_clean_stderr, full_conf, http_request,
                     wait_access)

C = "/contacts/1568834"
TIMEOUT_MS = 300
TRIES = 8
# The loop's clock counts whole milliseconds and is read once per pass of the loop, so an
# attempt's time may be a few milliseconds off, and even a little over the request's
# duration_ms (more on a busy machine): the bounds below allow for it.
SLACK_MS = 10
OVER_MS = 50
SLOW = {"delay_ms": 1500}  # answers long after any deadline here


def metric(text, name):
    """The value of an unlabelled Prometheus sample `name`."""
    for row in text.splitlines():
        if row.startswith(name + " "):
            return float(row.split()[-1])
    raise AssertionError("no metric %s in:\n%s" % (name, text[:2000]))


def upstream_seconds_sum(port):
    text = http_request(port, "GET", "/metrics", timeout=10).body.decode()
    return metric(text, "hcgw_upstream_duration_seconds_sum")


def wait_for_upstream_calls(testcase, sim, n, timeout=10.0):
    """Wait until the simulator has seen n calls (hcgw's attempt is in flight)."""
    deadline = time.monotonic() + timeout
    while sim.count() < n and time.monotonic() < deadline:
        time.sleep(0.02)
    testcase.assertEqual(sim.count(), n, "the call never reached HelpCrunch")


class TimedOutAttemptTest(ConfCase):
    conf_groups = {"upstream": {"timeout_ms": TIMEOUT_MS, "max_retries": 2,
                                "retry_base_ms": 20, "retry_max_ms": 40}}

    def send(self, script):
        self.sim.reset()
        self.sim.script(script)
        rid = "uptime-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        r = self.req("GET", C, headers={"X-Request-Id": rid})
        return r, wait_access(self.gw, rid, mark)

    def test_a_timed_out_attempt_counts_its_time(self):
        before = upstream_seconds_sum(self.gw.port)
        total_ms = 0.0
        for _ in range(TRIES):
            r, line = self.send(SLOW)
            self.assertEnvelope(r, 504, "upstream_timeout")
            self.assertEqual(line["attempts"], 1, line)
            self.assertGreaterEqual(line["upstream_ms"], TIMEOUT_MS - SLACK_MS, line)
            self.assertLessEqual(line["upstream_ms"], line["duration_ms"] + OVER_MS, line)
            total_ms += line["upstream_ms"]
        # The access lines and the histogram count the same attempts, with the same time.
        counted = upstream_seconds_sum(self.gw.port) - before
        self.assertAlmostEqual(counted, total_ms / 1000.0, delta=0.001 * TRIES)

    def test_a_retry_that_timed_out_adds_its_time_to_the_first_attempt(self):
        # The first attempt takes 50 ms and gets a 503; after a wait of 10..20 ms (more on a
        # busy machine) the retry runs until the deadline. upstream_ms is both attempts, the
        # wait left out: most of the 300 ms, far more than the first attempt alone.
        first = {"status": 503, "json": {"errors": []}, "delay_ms": 50}
        for _ in range(TRIES // 2):
            r, line = self.send([first, SLOW])
            self.assertEnvelope(r, 504, "upstream_timeout")
            self.assertEqual(line["attempts"], 2, line)
            self.assertGreaterEqual(line["upstream_ms"], TIMEOUT_MS - 100, line)
            self.assertLessEqual(line["upstream_ms"], line["duration_ms"] + OVER_MS, line)


class CancelledAttemptTest(ConfCase):
    conf_groups = {"upstream": {"timeout_ms": 20000}}

    def test_a_caller_who_hangs_up_is_logged_499_with_the_attempt_time(self):
        self.sim.script({"action": "hang"})
        rid = "uptime-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        sock = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
        sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n"
                      % (C, rid)).encode())
        wait_for_upstream_calls(self, self.sim, 1)
        time.sleep(0.4)
        sock.close()
        line = wait_access(self.gw, rid, mark)
        self.assertEqual(line["status"], 499, line)
        self.assertEqual(line["attempts"], 1, line)
        self.assertGreaterEqual(line["upstream_ms"], 400 - SLACK_MS, line)
        self.assertLessEqual(line["upstream_ms"], line["duration_ms"] + OVER_MS, line)


class DrainCutAttemptTest(unittest.TestCase):
    def test_a_call_cut_by_the_drain_timeout_is_logged_with_the_attempt_time(self):
        drain_ms = 300
        sim = Sim()
        gw = Gateway(sim, conf=full_conf(sim.base_url, server={"drain_timeout_ms": drain_ms},
                                         upstream={"timeout_ms": 20000}))
        result = {}
        rid = "uptime-" + uuid.uuid4().hex

        def call():
            try:
                result["r"] = http_request(gw.port, "GET", C, headers={"X-Request-Id": rid})
            except OSError as e:
                result["r"] = e

        try:
            sim.script({"action": "hang"})
            caller = threading.Thread(target=call, daemon=True)
            caller.start()
            wait_for_upstream_calls(self, sim, 1)
            gw.proc.proc.send_signal(signal.SIGTERM)
            caller.join(15)
            self.assertEqual(gw.proc.proc.wait(15), 0, gw.proc.stderr_text()[-2000:])
            self.assertEqual(getattr(result.get("r"), "status", None), 503, result)
            lines = [l for l in gw.access_lines() if l.get("request_id") == rid]
            self.assertEqual(len(lines), 1, gw.proc.stderr_text()[-2000:])
            line = lines[0]
            self.assertEqual((line["status"], line.get("code")), (503, "shutting_down"), line)
            self.assertEqual(line["attempts"], 1, line)
            self.assertGreaterEqual(line["upstream_ms"], drain_ms - SLACK_MS, line)
            self.assertLessEqual(line["upstream_ms"], line["duration_ms"] + OVER_MS, line)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, sim.key)
            self.assertEqual(sim.stop(), 0)


if __name__ == "__main__":
    unittest.main()

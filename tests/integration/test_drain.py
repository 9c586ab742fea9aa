"""The drain's bound (docs/contract.md, "Command line", the signals): after SIGTERM, hcgw exits
within server.drain_timeout_ms, plus a little, whatever its connections hold. A request whose
headers are half sent, or whose body was cut short, cannot finish on its own: hcgw waits for it
until the deadline, not past it. A request still waiting on HelpCrunch at the deadline gets its
503 shutting_down before hcgw exits.

Two clocks hold the bound, each with a margin for a loaded machine, both below the second by
which the drain once overran it whenever such a request was open: hcgw's own log lines time the
drain (from "stopping" to "stopped"), and the client sees its unfinished request closed. The
process's exit is only checked to follow soon: in the sanitizer build that the tests run, the
leak check at exit alone takes 0.2 s, and over a second on a busy machine.
"""
import http.client
import signal
import socket
import threading
import time
import unittest
from datetime import datetime, timezone

from harness import Gateway, Response, SimCase, assert_clean_stderr, full_conf, http_request

C = "/contacts/1568834"
DRAIN_MARGIN_S = 0.25
CLOSE_MARGIN_S = 0.4
EXIT_MARGIN_S = 5.0
DRAINS_MS = (0, 1000)

# What a client has sent when hcgw is told to stop: never a whole request.
PARTIAL = {
    "headers": b"GET " + C.encode() + b" HTTP/1.1\r\nHost: x\r\nAccept: appl",
    "body": (b"PATCH " + C.encode() + b" HTTP/1.1\r\nHost: x\r\n"
             b"Content-Type: application/json\r\nContent-Length: 64\r\n\r\n{\"name\":"),
}


def open_with_partial_request(port, partial):
    """A keep-alive connection that hcgw has served once (so it is surely accepted and read),
    then the start of a second request that never ends."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b'{"status":"ok"}' not in got:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("hcgw closed the connection: %r" % got)
        got += chunk
    sock.sendall(partial)
    return sock


def log_time(line):
    """The time of a log line, in seconds since the epoch (its "ts" is UTC, in milliseconds)."""
    when = datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return when.replace(tzinfo=timezone.utc).timestamp()


def read_to_end(sock):
    """Everything hcgw sends on @p sock until it closes it."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    return data


class DrainBoundTest(SimCase):
    def start(self, drain_ms):
        return Gateway(self.sim, conf=full_conf(self.sim.base_url,
                                                server={"drain_timeout_ms": drain_ms},
                                                upstream={"timeout_ms": 20000}))

    def stop_within_bound(self, gw, drain_ms, socks):
        """SIGTERM; hcgw must drain within drain_ms (its log lines), close each of @p socks
        (connections with an unfinished request) without an answer, and exit 0."""
        bound = drain_ms / 1000.0
        t0 = time.monotonic()
        gw.proc.proc.send_signal(signal.SIGTERM)
        for sock in socks:
            self.assertEqual(read_to_end(sock), b"")
        closed = time.monotonic() - t0
        rc = gw.proc.proc.wait(30)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, gw.proc.stderr_text()[-2000:])
        lines = gw.proc.json_lines()
        begun = [l for l in lines if str(l.get("msg", "")).startswith("stopping")]
        ended = [l for l in lines if l.get("msg") == "stopped"]
        self.assertEqual((len(begun), len(ended)), (1, 1), gw.proc.stderr_text()[-2000:])
        drained = log_time(ended[0]) - log_time(begun[0])
        self.assertLess(drained, bound + DRAIN_MARGIN_S,
                        "drained in %.3f s, the bound is %.3f s" % (drained, bound))
        self.assertLess(closed, bound + CLOSE_MARGIN_S,
                        "unfinished requests closed %.3f s after SIGTERM" % closed)
        self.assertLess(took, bound + EXIT_MARGIN_S, "exit %.3f s after SIGTERM" % took)
        return drained

    def test_an_unfinished_request_does_not_hold_the_drain_past_its_bound(self):
        for drain_ms in DRAINS_MS:
            for kind, partial in PARTIAL.items():
                with self.subTest(drain_timeout_ms=drain_ms, request=kind):
                    gw = self.start(drain_ms)
                    try:
                        sock = open_with_partial_request(gw.port, partial)
                        time.sleep(0.3)  # hcgw reads the partial request meanwhile
                        drained = self.stop_within_bound(gw, drain_ms, [sock])
                        # It waited for the request until the deadline (the log's clock
                        # counts whole milliseconds), then closed it without an answer (the
                        # answer to /healthz came before).
                        self.assertGreaterEqual(drained, drain_ms / 1000.0 - 0.002)
                    finally:
                        self.assertEqual(gw.stop(), 0)
                        assert_clean_stderr(self, gw.proc, self.sim.key)

    def test_a_call_cut_at_the_deadline_is_answered_and_the_bound_holds(self):
        # A request waiting on HelpCrunch beside the unfinished ones: at the deadline it gets
        # 503 shutting_down (the answer is written before hcgw exits), and the unfinished
        # requests still do not hold the exit.
        for drain_ms in DRAINS_MS:
            with self.subTest(drain_timeout_ms=drain_ms):
                self.sim.reset()
                self.sim.script({"action": "hang"})
                gw = self.start(drain_ms)
                result = {}

                def call():
                    try:
                        result["r"] = http_request(gw.port, "GET", C, timeout=30)
                    except (OSError, http.client.HTTPException) as e:
                        result["r"] = e

                try:
                    socks = [open_with_partial_request(gw.port, p) for p in PARTIAL.values()]
                    caller = threading.Thread(target=call, daemon=True)
                    caller.start()
                    deadline = time.monotonic() + 10
                    while self.sim.count() < 1 and time.monotonic() < deadline:
                        time.sleep(0.02)
                    self.assertEqual(self.sim.count(), 1, "the call never reached HelpCrunch")
                    time.sleep(0.1)
                    self.stop_within_bound(gw, drain_ms, socks)
                    caller.join(10)
                    r = result.get("r")
                    self.assertIsInstance(r, Response, r)
                    self.assertEqual(r.status, 503, r)
                    self.assertEqual(r.json()["error"]["code"], "shutting_down")
                finally:
                    self.assertEqual(gw.stop(), 0)
                    assert_clean_stderr(self, gw.proc, self.sim.key)


if __name__ == "__main__":
    unittest.main()

"""The engine (docs/contract.md, "Command line", "The key", "Bounds"): requests waiting on a slow
HelpCrunch do not block anything else; upstream connections are kept alive and reused; SIGTERM
drains; the command line; the key sources; several workers; the key never leaks.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from harness import (FROM_START, HCGW_BIN, START_TIMEOUT, ConfCase, Gateway, Proc, Sim,
                     SimCase, assert_clean_stderr, full_conf, http_request, listening_port, wait_access)

CUSTOMER = 1568834  # seeded by hcgw-sim
C = "/contacts/%d" % CUSTOMER


def metric(text, name):
    """The value of an unlabelled (or fully labelled) Prometheus sample `name`."""
    for row in text.splitlines():
        if row.startswith(name + " "):
            return float(row.split()[-1])
    raise AssertionError("no metric %s in:\n%s" % (name, text[:2000]))


def get_metrics(port):
    return http_request(port, "GET", "/metrics", timeout=10).body.decode()


def wait_in_flight(testcase, port, n, timeout=15.0):
    """Wait until hcgw_in_flight reaches n (the requests are all suspended upstream)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = metric(get_metrics(port), "hcgw_in_flight")
        if seen >= n:
            return
        time.sleep(0.05)
    testcase.fail("hcgw_in_flight reached only %s of %d" % (seen, n))


class Fleet:
    """Requests sent at once from threads; each result is a Response or an exception."""

    def __init__(self, port, n, method="GET", path=C, timeout=60):
        self.results = [None] * n
        self.done = [None] * n
        self.threads = [threading.Thread(target=self._one, args=(port, i, method, path, timeout),
                                         daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _one(self, port, i, method, path, timeout):
        try:
            self.results[i] = http_request(port, method, path, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            self.results[i] = e
        self.done[i] = time.monotonic()

    def finished(self):
        return sum(1 for t in self.threads if not t.is_alive())

    def join(self, timeout=90):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return self.results


class NonBlockingTest(ConfCase):
    """Hundreds of slow upstream calls in flight; local answers still come at once."""
    N = 200
    DELAY_MS = 3000
    # 200 calls through a pool of 64 connections take about four rounds of 3 s.
    conf_groups = {"upstream": {"timeout_ms": 40000, "max_connections": 64}}

    def test_slow_upstream_blocks_nothing_else(self):
        self.sim.script({"delay_ms": self.DELAY_MS, "action": "passthrough", "count": self.N})
        fleet = Fleet(self.gw.port, self.N, timeout=60)
        try:
            wait_in_flight(self, self.gw.port, self.N)
            for path, status in (("/healthz", 200), ("/readyz", 200), ("/contacts/0", 400),
                                 ("/nope", 404), ("/metrics", 200)):
                with self.subTest(path=path):
                    t0 = time.monotonic()
                    r = self.req("GET", path, timeout=10)
                    elapsed = time.monotonic() - t0
                    self.assertEqual(r.status, status, r)
                    self.assertLess(elapsed, 1.0, "a local answer waited on the slow upstream")
            if fleet.finished() > self.N // 2:
                self.fail("the slow requests were not pending while local ones were answered")
        finally:
            results = fleet.join(90)
        statuses = [getattr(r, "status", r) for r in results]
        self.assertEqual(statuses, [200] * self.N)
        self.assertEqual(self.sim.count(), self.N)
        self.assertEqual(metric(get_metrics(self.gw.port), "hcgw_in_flight"), 0)


class PoolLimitTest(ConfCase):
    """upstream.max_connections bounds the pool; calls queued for a connection keep their
    deadline."""
    TIMEOUT_MS = 1000
    conf_groups = {"upstream": {"timeout_ms": TIMEOUT_MS, "max_connections": 1,
                                "max_retries": 0}}

    def test_queued_calls_keep_their_deadline(self):
        n = 10
        self.sim.script({"delay_ms": 5000, "count": n})
        t0 = time.monotonic()
        fleet = Fleet(self.gw.port, n, timeout=30)
        results = fleet.join(30)
        for r in results:
            self.assertEqual(getattr(r, "status", r), 504, r)
            self.assertEqual(r.json()["error"]["code"], "upstream_timeout")
        self.assertLess(max(fleet.done) - t0, self.TIMEOUT_MS / 1000.0 + 1.5)
        # One connection at a time: most calls never left the queue before their deadline
        # (with a pool of 10 or more, all ten would have reached HelpCrunch).
        self.assertLessEqual(self.sim.count(), n // 2)


class ClientGoneTest(ConfCase):
    """A caller that hangs up while its request waits on HelpCrunch: the access line says 499,
    and the upstream call is abandoned rather than finished (or retried) for nobody."""
    conf_groups = {"upstream": {"timeout_ms": 10000, "max_retries": 2}}

    def hang_up_after(self, seconds, rid):
        s = socket.create_connection(("127.0.0.1", self.gw.port))
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n" % (C, rid))
                  .encode())
        wait_in_flight(self, self.gw.port, 1)
        time.sleep(seconds)
        s.close()
        return time.monotonic()

    def test_hang_up_during_a_slow_answer(self):
        self.sim.script({"delay_ms": 3000})
        rid = "gone-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        closed = self.hang_up_after(0.2, rid)
        line = wait_access(self.gw, rid, mark, timeout=10)
        self.assertEqual(line["status"], 499, line)
        self.assertLess(time.monotonic() - closed, 2.0, "the call went on for nobody")
        self.assertEqual(metric(get_metrics(self.gw.port), "hcgw_in_flight"), 0)
        # the gateway is fine afterwards
        self.assertEqual(self.req("GET", C).status, 200)

    def test_hang_up_during_a_retry_wait(self):
        self.sim.script({"status": 503, "headers": {"Retry-After": "2"}})
        rid = "gone-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        self.hang_up_after(0.3, rid)
        line = wait_access(self.gw, rid, mark, timeout=10)
        self.assertEqual(line["status"], 499, line)
        time.sleep(2.0)
        self.assertEqual(self.sim.count(), 1, "a retry was sent for a caller who had left")

    def test_many_callers_hang_up(self):
        self.sim.script({"delay_ms": 2000, "count": 20})
        socks = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", self.gw.port))
            s.sendall(b"GET " + C.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        wait_in_flight(self, self.gw.port, 20)
        for s in socks[::2]:
            s.close()
        time.sleep(2.5)
        for s in socks[1::2]:  # the others still get their answers
            head = s.recv(65536)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:100])
            s.close()
        lines = [l for l in self.gw.access_lines() if l.get("route") == "contact_get"]
        self.assertEqual(sorted(l["status"] for l in lines[-20:]), [200] * 10 + [499] * 10)


class KeepAliveTest(ConfCase):
    """The curl multi handle's connection cache is a pool, not a connect per request."""

    def test_sequential_requests_reuse_upstream_connections(self):
        self.assertEqual(self.req("GET", C).status, 200)  # the pool may open its first one here
        up_before = metric(get_metrics(self.gw.port), "hcgw_upstream_connections_total")
        before = self.sim.stats()["connections"]
        for i in range(50):
            path = C if i % 2 else "/contacts?limit=1"
            self.assertEqual(self.req("GET", path).status, 200)
        # Every stats call of this test is a connection of its own: one, the line below.
        opened = self.sim.stats()["connections"] - before - 1
        self.assertLessEqual(opened, 2, "hcgw opened %d upstream connections for 50 calls"
                             % opened)
        up_opened = metric(get_metrics(self.gw.port), "hcgw_upstream_connections_total") \
            - up_before
        self.assertLessEqual(up_opened, 2)
        self.assertEqual(self.sim.count(), 51)

    def test_a_cut_pooled_connection_is_replaced(self):
        self.assertEqual(self.req("GET", C).status, 200)
        self.sim.script({"action": "truncate"})
        self.assertEqual(self.req("GET", C).status, 200)  # retried on a new connection
        before = self.sim.stats()["connections"]
        for _ in range(10):
            self.assertEqual(self.req("GET", C).status, 200)
        self.assertLessEqual(self.sim.stats()["connections"] - before - 1, 1)


class DrainTest(SimCase):
    """SIGTERM: stop accepting, let in-flight requests finish (bounded by drain_timeout_ms)."""

    def start(self, drain_ms):
        return Gateway(self.sim, conf=full_conf(self.sim.base_url,
                                                server={"drain_timeout_ms": drain_ms},
                                                upstream={"timeout_ms": 20000}))

    def refused_or_shutting_down(self, port):
        """A new connection after SIGTERM is refused, or answered 503 shutting_down."""
        try:
            r = http_request(port, "GET", C, timeout=5)
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
            return
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["error"]["code"], "shutting_down")

    def test_in_flight_requests_finish_after_sigterm(self):
        gw = self.start(5000)
        fleet = None
        try:
            # A keep-alive connection opened before the signal.
            idle = socket.create_connection(("127.0.0.1", gw.port))
            self.sim.script({"delay_ms": 1500, "count": 5})
            fleet = Fleet(gw.port, 5)
            wait_in_flight(self, gw.port, 5)
            t0 = time.monotonic()
            gw.proc.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            self.refused_or_shutting_down(gw.port)
            # A request on the connection opened before: 503 shutting_down, then closed.
            idle.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = idle.recv(65536).decode("latin-1")
            idle.close()
            self.assertTrue(head.startswith("HTTP/1.1 503"), head)
            self.assertIn("shutting_down", head)
            self.assertRegex(head.lower(), r"connection: *close")
            results = fleet.join(30)
            for r in results:
                self.assertEqual(getattr(r, "status", r), 200, r)
            rc = gw.proc.proc.wait(10)
            elapsed = time.monotonic() - t0
            self.assertEqual(rc, 0, gw.proc.stderr_text()[-2000:])
            # It waited for the slow ones (~1.5 s), and not for the whole drain timeout.
            self.assertLess(elapsed, 5.0 + 2.0)
            self.assertEqual(self.sim.count(), 5)
            lines = [l for l in gw.access_lines() if l.get("route") == "contact_get"]
            self.assertEqual([l["status"] for l in lines], [200] * 5)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)

    def test_drain_timeout_answers_503_and_exits_0(self):
        drain_ms = 500
        gw = self.start(drain_ms)
        try:
            self.sim.script({"delay_ms": 4000, "count": 3})
            fleet = Fleet(gw.port, 3)
            wait_in_flight(self, gw.port, 3)
            t0 = time.monotonic()
            gw.proc.proc.send_signal(signal.SIGTERM)
            results = fleet.join(15)
            answered = time.monotonic() - t0
            for r in results:
                self.assertEqual(getattr(r, "status", r), 503, r)
                err = r.json()["error"]
                self.assertEqual(err["code"], "shutting_down")
                self.assertEqual(err["request_id"], r.header("X-Request-Id"))
            # At the drain timeout, not at the end of the 4 s upstream delay.
            self.assertLess(answered, drain_ms / 1000.0 + 1.5)
            rc = gw.proc.proc.wait(10)
            self.assertEqual(rc, 0, gw.proc.stderr_text()[-2000:])
            self.assertLess(time.monotonic() - t0, drain_ms / 1000.0 + 3.0)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)

    def test_an_answer_still_being_sent_is_sent_whole(self):
        # The drain ends when every request is complete, not when HelpCrunch has answered: a
        # large answer still in the socket when the upstream call ends is not cut off.
        size = 16 * 1024 * 1024
        gw = Gateway(self.sim, conf=full_conf(
            self.sim.base_url, server={"drain_timeout_ms": 10000},
            upstream={"timeout_ms": 20000},
            limits={"max_upstream_body_bytes": 2 * size}))
        try:
            self.sim.script({"action": "huge", "size": size, "delay_ms": 800})
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
            conn.request("GET", C)
            wait_in_flight(self, gw.port, 1)
            gw.proc.proc.send_signal(signal.SIGTERM)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            time.sleep(1.0)  # a slow reader: hcgw has long had HelpCrunch's whole answer
            body = resp.read()
            conn.close()
            self.assertEqual(len(body), size)
            self.assertTrue(body.endswith(b'"}'))
            self.assertEqual(gw.proc.proc.wait(15), 0)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)

    def test_sigint_when_idle_exits_at_once(self):
        gw = self.start(5000)
        try:
            self.assertEqual(gw.request("GET", C).status, 200)
            t0 = time.monotonic()
            gw.proc.proc.send_signal(signal.SIGINT)
            self.assertEqual(gw.proc.proc.wait(10), 0)
            self.assertLess(time.monotonic() - t0, 2.0)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)


def run_hcgw(args, env, timeout=20):
    return subprocess.run([HCGW_BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env, timeout=timeout)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HCGW_API_KEY", "HCGW_API_KEY_FILE")}
    env.update(extra)
    return env


class CommandLineTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hcgw-cli-")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        return path

    def test_version(self):
        for flag in ("--version", "-V"):
            p = run_hcgw([flag], clean_env())
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout, r"^hcgw \d+\.\d+\.\d+")

    def test_help(self):
        for flag in ("--help", "-h"):
            p = run_hcgw([flag], clean_env())
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("--check-config", p.stdout)
            self.assertIn("-c", p.stdout)

    def test_dump_tables(self):
        # The tables come from the binary alone: the configuration named is never read.
        missing = os.path.join(self.dir, "missing.conf")
        p = run_hcgw(["--dump-tables", "-c", missing], clean_env())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        tables = json.loads(p.stdout)
        routes = {r["name"]: r for r in tables["routes"]}
        self.assertEqual(len(routes), len(tables["routes"]))
        self.assertEqual(routes["contact_create"]["method"], "POST")
        self.assertEqual(routes["contact_create"]["success_status"], 201)
        self.assertIsNone(routes["healthz"]["up_path"])
        codes = {e["code"]: e["status"] for e in tables["errors"]}
        self.assertEqual(codes["upstream_timeout"], 504)

    def test_unknown_option(self):
        p = run_hcgw(["--frobnicate"], clean_env())
        self.assertNotEqual(p.returncode, 0)

    def test_check_config_good(self):
        path = self.write("good.conf", full_conf("http://127.0.0.1:9/v1"))
        for args in (["--check-config", "-c", path], ["-t", "-c", path]):
            p = run_hcgw(args, clean_env(HCGW_API_KEY="k-" + uuid.uuid4().hex))
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout.strip(), "configuration OK")

    def test_check_config_the_reference_file(self):
        src = os.environ.get("HCGW_SOURCE_DIR", os.path.abspath("../.."))
        p = run_hcgw(["--check-config", "-c", os.path.join(src, "conf", "hcgw.conf")],
                     clean_env(HCGW_API_KEY="k-" + uuid.uuid4().hex))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration OK", p.stdout)

    BAD = ('listen = { address = "127.0.0.1"; port = 0; };\n'      # 1
           'server = {\n'                                           # 2
           '  workers = 1;\n'                                       # 3
           '  drain_timeout_ms = "soon";\n'                         # 4 wrong type
           '};\n'                                                   # 5
           'upstream = {\n'                                         # 6
           '  base_url = "http://127.0.0.1:9/v1";\n'                # 7
           '  max_retrys = 3;\n'                                    # 8 unknown key
           '  timeout_ms = true;\n'                                 # 9 wrong type
           '};\n'                                                   # 10
           'colour = "blue";\n')                                    # 11 unknown key

    def check_problems(self, path, stderr):
        pattern = re.compile(r"^(.+):(\d+): ([A-Za-z0-9_.\[\]]+): (.+)$")
        problems = {}
        for line in stderr.splitlines():
            if not line.strip():
                continue
            m = pattern.match(line)
            self.assertIsNotNone(m, "not FILE:LINE: key: reason: %r" % line)
            self.assertEqual(m.group(1), path)
            problems[m.group(3)] = int(m.group(2))
        self.assertEqual(problems, {"server.drain_timeout_ms": 4, "upstream.max_retrys": 8,
                                    "upstream.timeout_ms": 9, "colour": 11}, stderr)

    def test_check_config_reports_every_problem_with_its_line(self):
        path = self.write("bad.conf", self.BAD)
        p = run_hcgw(["--check-config", "-c", path], clean_env(HCGW_API_KEY="k-x"))
        self.assertEqual(p.returncode, 1)
        self.assertNotIn("configuration OK", p.stdout)
        self.check_problems(path, p.stderr)

    def test_a_bad_config_does_not_start(self):
        path = self.write("bad.conf", self.BAD)
        p = run_hcgw(["-c", path], clean_env(HCGW_API_KEY="k-x"))
        self.assertEqual(p.returncode, 1)
        self.assertNotIn('"listening"', p.stderr)
        self.check_problems(path, p.stderr)

    def test_missing_config_file(self):
        p = run_hcgw(["--check-config", "-c", os.path.join(self.dir, "absent.conf")],
                     clean_env(HCGW_API_KEY="k-x"))
        self.assertEqual(p.returncode, 1)
        self.assertIn("absent.conf", p.stderr)

    def test_no_key_refuses_to_start(self):
        path = self.write("nokey.conf", full_conf("http://127.0.0.1:9/v1"))
        p = run_hcgw(["-c", path], clean_env())
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn('"listening"', p.stderr)
        self.assertIn("key", p.stderr.lower())
        self.assertIn("HCGW_API_KEY", p.stderr)
        p = run_hcgw(["--check-config", "-c", path], clean_env())
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"(?m)^%s:\d+: upstream\.api_key: .+$" % re.escape(path))


class StartedGateway:
    """hcgw started with exactly the environment given (Gateway always sets HCGW_API_KEY)."""

    def __init__(self, conf_text, env, directory):
        self.conf_path = os.path.join(directory, "hcgw-%s.conf" % uuid.uuid4().hex[:8])
        with open(self.conf_path, "w") as f:
            f.write(conf_text)
        self.proc = Proc([HCGW_BIN, "-c", self.conf_path], env=env)
        self.listening = self.proc.wait_line(listening_port, timeout=START_TIMEOUT,
                                             since=FROM_START)
        self.port = self.listening["port"]

    def request(self, method, path, body=None, headers=None):
        return http_request(self.port, method, path, body, headers)

    def stop(self):
        return self.proc.stop()


class KeySourceTest(unittest.TestCase):
    """HCGW_API_KEY, then HCGW_API_KEY_FILE, then upstream.api_key / api_key_file."""

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim()
        cls.dir = tempfile.mkdtemp(prefix="hcgw-key-")

    @classmethod
    def tearDownClass(cls):
        assert cls.sim.stop() == 0

    def setUp(self):
        self.sim.reset()

    def key_file(self, content):
        path = os.path.join(self.dir, "key-" + uuid.uuid4().hex[:8])
        with open(path, "w", newline="") as f:
            f.write(content)
        return path

    def run_with(self, env, conf_extra=None, expect_status=200):
        gw = StartedGateway(full_conf(self.sim.base_url, **(conf_extra or {})), env, self.dir)
        try:
            r = gw.request("GET", C)
            self.assertEqual(r.status, expect_status, r)
            return gw.listening, r
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)

    def test_key_file_with_a_trailing_newline(self):
        for ending in ("\n", "\r\n", ""):
            with self.subTest(ending=repr(ending)):
                self.sim.reset()
                path = self.key_file(self.sim.key + ending)
                listening, _ = self.run_with(clean_env(HCGW_API_KEY_FILE=path))
                # The simulator accepted it: the line break was not part of the key.
                self.assertEqual(self.sim.last()["authorization"], "Bearer " + self.sim.key)
                self.assertEqual(listening.get("key_source"), "file " + path)

    def test_env_key_overrides_the_key_file(self):
        path = self.key_file("wrong-key-" + uuid.uuid4().hex + "\n")
        self.run_with(clean_env(HCGW_API_KEY=self.sim.key, HCGW_API_KEY_FILE=path))
        self.assertEqual(self.sim.last()["authorization"], "Bearer " + self.sim.key)
        # and the file alone is really used: its wrong key is refused upstream
        _, r = self.run_with(clean_env(HCGW_API_KEY_FILE=path), expect_status=502)
        self.assertEqual(r.json()["error"]["code"], "upstream_auth_failed")

    def test_key_file_from_the_config(self):
        path = self.key_file(self.sim.key + "\n")
        self.run_with(clean_env(), {"upstream": {"api_key_file": path}})
        # The environment's file wins over the config's.
        wrong = self.key_file("wrong-" + uuid.uuid4().hex)
        _, r = self.run_with(clean_env(HCGW_API_KEY_FILE=wrong),
                             {"upstream": {"api_key_file": path}}, expect_status=502)
        self.assertEqual(r.json()["error"]["code"], "upstream_auth_failed")

    def test_an_empty_key_file_refuses_to_start(self):
        path = self.key_file("\n")
        conf = os.path.join(self.dir, "empty.conf")
        with open(conf, "w") as f:
            f.write(full_conf(self.sim.base_url))
        p = run_hcgw(["-c", conf], clean_env(HCGW_API_KEY_FILE=path))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("key", p.stderr.lower())


class TwoWorkersTest(ConfCase):
    conf_groups = {"server": {"workers": 2}}

    def test_requests_succeed_and_metrics_sum_both_workers(self):
        n = 40
        before = get_metrics(self.gw.port)
        fleet = Fleet(self.gw.port, n)
        statuses = [getattr(r, "status", r) for r in fleet.join(60)]
        self.assertEqual(statuses, [200] * n)
        for _ in range(n):  # and sequentially, each on a new connection
            self.assertEqual(self.req("GET", C).status, 200)
        # A request is counted when it completes, which can be just after its client has the
        # answer: wait until all 2n access lines are there before reading the counters.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(
                [l for l in self.gw.access_lines() if l.get("route") == "contact_get"]) < 2 * n:
            time.sleep(0.05)
        text = get_metrics(self.gw.port)
        key = 'hcgw_requests_total{route="contact_get",method="GET",status="200"}'
        self.assertEqual(metric(text, key) - (metric(before, key) if key in before else 0),
                         2 * n)
        self.assertEqual(metric(text, "hcgw_upstream_attempts_total")
                         - metric(before, "hcgw_upstream_attempts_total"), 2 * n)
        self.assertEqual(self.sim.count(), 2 * n)
        self.assertEqual(len([l for l in self.gw.access_lines()
                              if l.get("route") == "contact_get"]), 2 * n)


class KeyNeverLeaksTest(ConfCase):
    """Debug logging, errors that echo the key, retries: the key is in no log line (checked at
    teardown, like every class) and in no /metrics text."""
    conf_groups = {"log": {"level": "debug"},
                   "upstream": {"max_retries": 2, "retry_base_ms": 10, "retry_max_ms": 20}}

    def test_key_not_in_metrics_or_debug_logs(self):
        key = self.sim.key
        self.sim.script([{"status": 503, "body": "key " + key, "content_type": "text/plain"},
                         {"status": 400, "json": {"errors": [{"code": key, "message": key}]}}])
        self.assertEqual(self.req("GET", C).status, 400)
        self.assertEqual(self.req("GET", C, headers={"Authorization": "Bearer " + key}).status,
                         200)
        self.assertEqual(self.req("GET", C + "?" + key).status, 200)
        text = self.req("GET", "/metrics").body.decode()
        self.assertNotIn(key, text)
        self.assertIn("hcgw_upstream_attempts_total", text)
        # Debug logging was really on, so the teardown check covers debug lines too.
        self.assertTrue(any(l.get("level") == "debug" for l in self.gw.proc.json_lines()),
                        "no debug line was written")
        self.assertNotIn(key, self.gw.proc.stderr_text())


if __name__ == "__main__":
    unittest.main()

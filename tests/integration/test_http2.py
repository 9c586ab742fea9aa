"""HTTP/2 to the upstream (upstream.http_version), against a real HTTP/2 server: Debian's nginx
(nginx-light, which has http_v2 and ssl), started by the test in front of hcgw-sim with a
throwaway CA that openssl makes for it. nginx listens three ways, all proxying to the simulator
over HTTP/1.1:

- TLS with h2 offered by ALPN (`listen … ssl http2`),
- TLS with HTTP/1.1 only,
- plain HTTP,

and logs, per request, the port, `$server_protocol` (what hcgw spoke) and `$connection` (the
connection's serial number: distinct values are the connections hcgw opened).

What is asserted:
- "2" over TLS: nginx saw HTTP/2.0; hcgw's access line says upstream_http_version "2" and
  /metrics counts the answers under http_version="2"; 40 calls at once (each held 400 ms by the
  simulator) shared at most two connections.
- "1.1" (the default) over the same h2-offering port: nginx saw HTTP/1.1 only (libcurl's own
  default would be h2 there), and the same 40 calls took many connections.
- The answers, errors included, are byte-identical between "1.1" and "2"; a 429 with
  Retry-After and a 503 then 200 (a retry) through HTTP/2 are mapped as with HTTP/1.1.
- An answer the server gives before it has read the request body (a 429 at once, then the
  stream reset with NO_ERROR) reaches the caller as the 429 it is, over HTTP/2 too.
- "2" against a TLS server without h2 falls back to HTTP/1.1; against a plain http:// URL it
  stays HTTP/1.1 (no h2c upgrade, no prior knowledge).
- --check-config takes "1.1" and "2" and refuses anything else; a reload that changes the key
  is refused (logged) and the running protocol stays.

Skipped, with one line, where nginx or openssl is missing (scripts/install-deps.sh installs both).
"""
import collections
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import harness
from harness import (FROM_START, Gateway, Proc, Sim, assert_clean_stderr, full_conf,
                     http_request, metric_value, wait_access)
from test_tls import make_ca, make_cert

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)),
                                      None)
CUSTOMER = 1568834  # seeded by hcgw-sim
C = "/contacts/%d" % CUSTOMER
BURST = 40          # calls sent at once in the connection tests
HOLD_MS = 400       # how long the simulator holds each of them
EARLY_THREADS, EARLY_EACH = 50, 40  # callers at once, and calls each, for the early answers

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format h2test '$server_port $server_protocol $connection $status $request_method $uri';
    access_log {dir}/access.log h2test;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_body_buffer_size 64k;
    keepalive_timeout 120s;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{h2} ssl http2;
        listen 127.0.0.1:{h1} ssl;
        listen 127.0.0.1:{plain};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        # HelpCrunch's 429 as an API in a hurry gives it: before the request body is read,
        # which over HTTP/2 ends the stream with RST_STREAM NO_ERROR (RFC 9113, 8.1).
        location /early/ {{
            add_header Retry-After 30 always;
            return 429 '{{"errors":[]}}';
        }}
        location / {{
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx in front of the simulator: h2 over TLS, HTTP/1.1 over TLS, and plain HTTP."""

    def __init__(self, sim_port):
        self.dir = tempfile.mkdtemp(prefix="hcgw-h2-")
        # Run as root, nginx's workers run as nobody and must reach the temp folders inside.
        os.chmod(self.dir, 0o711)
        self.ca = make_ca(self.dir, "ca")
        cert, key = make_cert(self.dir, "srv", self.ca, "IP:127.0.0.1,DNS:localhost",
                              "serverAuth")
        self.log = os.path.join(self.dir, "access.log")
        last = None
        for _ in range(5):  # a port taken between free_port() and nginx's bind: try others
            self.h2, self.h1, self.plain = free_port(), free_port(), free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(dir=self.dir, sim=sim_port, h2=self.h2, h1=self.h1,
                                          plain=self.plain, cert=cert, key=key))
            self.proc = Proc([NGINX, "-p", self.dir, "-c", conf, "-g", "daemon off;"])
            if self._wait_listening():
                return
            last = self._error_log()
            self.proc.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        raise AssertionError("nginx did not start: " + last)

    def _error_log(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def _wait_listening(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.proc.poll() is not None:
                return False
            try:
                for port in (self.h2, self.h1, self.plain):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def url(self, which):
        port = {"h2": self.h2, "h1": self.h1, "plain": self.plain}[which]
        return "%s://127.0.0.1:%d/v1" % ("http" if which == "plain" else "https", port)

    def mark(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def lines(self, since=0, wait_for=0, timeout=10.0):
        """The access lines written after the mark `since`, as dicts; waits (up to timeout) for
        at least wait_for of them: nginx writes a line when its answer is sent."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log) as f:
                f.seek(since)
                text = f.read()
            out = []
            for line in text.splitlines():
                port, proto, conn, status, method, uri = line.split(" ", 5)
                out.append(dict(port=int(port), proto=proto, conn=int(conn), status=int(status),
                                method=method, uri=uri))
            if len(out) >= wait_for or time.monotonic() > deadline:
                return out
            time.sleep(0.05)

    def stop(self):
        rc = self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc


@unittest.skipUnless(NGINX and shutil.which("openssl"),
                     "needs nginx (nginx-light) and openssl (scripts/install-deps.sh)")
class Http2Test(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim()
        try:
            cls.nginx = Nginx(cls.sim.port)
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        rc_ng = cls.nginx.stop()
        rc = cls.sim.stop()
        assert_clean_stderr(unittest.TestCase(), cls.sim.proc)
        assert rc == 0, "hcgw-sim exit status %r" % rc
        assert rc_ng == 0, "nginx exit status %r" % rc_ng

    def setUp(self):
        self.sim.reset()

    def gateway(self, which="h2", version=None, base_url=False, **upstream):
        """hcgw in front of one of nginx's listeners; base_url=None: its /early/ location."""
        up = dict(upstream)
        if which != "plain":
            up["ca_file"] = self.nginx.ca[0]
        if version is not None:
            up["http_version"] = version
        url = self.nginx.url(which)
        if base_url is None:
            url = url.replace("/v1", "/early/v1")
        gw = Gateway(self.sim, conf=full_conf(url, upstream=up))
        self.addCleanup(self.stop_gateway, gw)
        return gw

    def stop_gateway(self, gw):
        rc = gw.stop()
        assert_clean_stderr(self, gw.proc, self.sim.key)
        self.assertEqual(rc, 0, gw.proc.stderr_text()[-3000:])

    def get(self, gw, path, rid=None, **kw):
        rid = rid or "h2-" + uuid.uuid4().hex
        mark = gw.proc.mark()
        r = gw.request("GET", path, headers={"X-Request-Id": rid}, **kw)
        return r, wait_access(gw, rid, mark)

    def answers(self, gw, version):
        text = gw.request("GET", "/metrics").body.decode()
        return metric_value(text.replace('{http_version="%s"}' % version, "_v"),
                            "hcgw_upstream_answers_total_v")

    def burst(self, gw):
        """BURST calls at once, each held HOLD_MS by the simulator: the distinct connections
        nginx saw them on, and the protocols."""
        self.sim.call("POST", "/_sim/faults", {"latency_ms": HOLD_MS})
        mark = self.nginx.mark()
        results = [None] * BURST

        def one(i):
            results[i] = gw.request("GET", "/contacts/%d" % CUSTOMER, timeout=60).status

        threads = [threading.Thread(target=one, args=(i,)) for i in range(BURST)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        self.sim.call("DELETE", "/_sim/faults")
        self.assertEqual(results, [200] * BURST)
        lines = self.nginx.lines(mark, wait_for=BURST)
        self.assertEqual(len(lines), BURST, lines)
        return {l["conn"] for l in lines}, {l["proto"] for l in lines}

    # ---- the protocol on the wire

    def test_2_speaks_http2_and_says_so(self):
        gw = self.gateway("h2", "2")
        mark = self.nginx.mark()
        r, line = self.get(gw, C)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["id"], CUSTOMER)
        seen = self.nginx.lines(mark, wait_for=1)
        self.assertEqual([(l["proto"], l["port"]) for l in seen], [("HTTP/2.0", self.nginx.h2)])
        self.assertEqual(line.get("upstream_http_version"), "2", line)
        self.assertEqual(self.answers(gw, "2"), 1)
        self.assertEqual(self.answers(gw, "1.1"), 0)

    def test_1_1_is_the_default_and_speaks_http1_to_an_h2_server(self):
        gw = self.gateway("h2")  # no http_version: the default
        mark = self.nginx.mark()
        r, line = self.get(gw, C)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([l["proto"] for l in self.nginx.lines(mark, wait_for=1)], ["HTTP/1.1"])
        self.assertEqual(line.get("upstream_http_version"), "1.1", line)
        self.assertEqual(self.answers(gw, "1.1"), 1)
        self.assertEqual(self.answers(gw, "2"), 0)

    def test_2_multiplexes_a_burst_on_few_connections(self):
        gw = self.gateway("h2", "2")
        conns, protos = self.burst(gw)
        self.assertEqual(protos, {"HTTP/2.0"})
        self.assertLessEqual(len(conns), 2, "HTTP/2 calls spread over %d connections"
                             % len(conns))
        metrics = gw.request("GET", "/metrics").body.decode()
        self.assertLessEqual(metric_value(metrics, "hcgw_upstream_connections_total"), 2)

    def test_1_1_takes_a_connection_per_call_in_flight(self):
        gw = self.gateway("h2", "1.1")
        conns, protos = self.burst(gw)
        self.assertEqual(protos, {"HTTP/1.1"})
        # BURST calls held at once need BURST connections; a loaded machine may let a few
        # finish before others start, so the bound is generous.
        self.assertGreaterEqual(len(conns), BURST // 4, conns)

    def test_2_falls_back_to_1_1_where_the_server_has_no_h2(self):
        gw = self.gateway("h1", "2")
        mark = self.nginx.mark()
        r, line = self.get(gw, C)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([l["proto"] for l in self.nginx.lines(mark, wait_for=1)], ["HTTP/1.1"])
        self.assertEqual(line.get("upstream_http_version"), "1.1", line)
        self.assertEqual(self.answers(gw, "1.1"), 1)

    def test_2_over_plain_http_stays_1_1(self):
        gw = self.gateway("plain", "2")
        mark = self.nginx.mark()
        r, line = self.get(gw, C)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([l["proto"] for l in self.nginx.lines(mark, wait_for=1)], ["HTTP/1.1"])
        self.assertEqual(line.get("upstream_http_version"), "1.1", line)

    # ---- the same answers either way

    def test_answers_are_byte_identical(self):
        g1 = self.gateway("h2", "1.1")
        g2 = self.gateway("h2", "2")
        cases = [("GET", C, None), ("GET", C + "/tags", None), ("GET", "/contacts?limit=3", None),
                 ("GET", "/contacts/999999999", None),
                 ("POST", "/contacts/search", {"filter": [{"field": "customers.email",
                                                           "operator": "~",
                                                           "value": "example"}]}),
                 ("PUT", C + "/tags/h2test", None), ("DELETE", C + "/tags/h2test", None)]
        for method, path, body in cases:
            with self.subTest(method=method, path=path):
                got = []
                for gw in (g1, g2):
                    self.sim.reset()
                    r = gw.request(method, path, body, headers={"X-Request-Id": "same-id"})
                    got.append((r.status, r.header("Content-Type"), r.header("ETag"), r.body))
                self.assertEqual(got[0], got[1])
        mark = self.nginx.mark()
        for gw in (g1, g2):
            gw.request("GET", C)
        self.assertEqual(sorted(l["proto"] for l in self.nginx.lines(mark, wait_for=2)),
                         ["HTTP/1.1", "HTTP/2.0"])

    def test_errors_and_retries_through_http2(self):
        self.maxDiff = None
        got = {}
        for version in ("1.1", "2"):
            gw = self.gateway("h2", version, max_retries=2, retry_base_ms=20, retry_max_ms=100)
            # HelpCrunch's 429 with Retry-After beyond the deadline: passed on, not retried.
            self.sim.reset()
            self.sim.script({"status": 429, "headers": {"Retry-After": "30"},
                             "json": {"errors": []}, "count": 5})
            r429, l429 = self.get(gw, C, rid="h2-429")
            # A 503, then the answer: retried once.
            self.sim.reset()
            mark = self.nginx.mark()
            self.sim.script({"status": 503, "json": {"errors": []}})
            r503, l503 = self.get(gw, C, rid="h2-503")
            protos = {l["proto"] for l in self.nginx.lines(mark, wait_for=2)}
            got[version] = (r429.status, r429.header("Retry-After"), r429.body,
                            l429["attempts"], r503.status, r503.body, l503["attempts"])
            self.assertEqual(protos, {"HTTP/2.0" if version == "2" else "HTTP/1.1"})
        self.assertEqual(got["2"], got["1.1"])
        self.assertEqual(got["2"][0], 429)
        self.assertEqual(got["2"][1], "30")
        self.assertEqual(got["2"][4], 200)
        self.assertEqual(got["2"][6], 2)

    def test_an_answer_before_the_body_is_the_answer_over_http2(self):
        # nginx answers each DELETE (its body unread) at once and resets the stream; libcurl
        # 7.88 reports some of those as stream errors, which hcgw must not turn into 502s.
        # Many calls at once, for the race to show: about 1 in 200 without the handling.
        gw = self.gateway("h2", "2", base_url=None)
        statuses = collections.Counter()
        lock = threading.Lock()

        def one(k):
            for i in range(EARLY_EACH):
                r = gw.request("DELETE", "/contacts/%d/tags/t%d" % (CUSTOMER + k, i), timeout=60)
                with lock:
                    statuses[(r.status, r.header("Retry-After"))] += 1

        mark = self.nginx.mark()
        threads = [threading.Thread(target=one, args=(k,)) for k in range(EARLY_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(dict(statuses), {(429, "30"): EARLY_THREADS * EARLY_EACH})
        seen = self.nginx.lines(mark, wait_for=EARLY_THREADS * EARLY_EACH)
        self.assertEqual({l["proto"] for l in seen}, {"HTTP/2.0"})
        self.assertEqual({l["status"] for l in seen}, {429})

    # ---- the key itself

    def run_check(self, value):
        d = tempfile.mkdtemp(prefix="hcgw-h2conf-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "hcgw.conf")
        with open(path, "w") as f:
            f.write('upstream = { base_url = "https://127.0.0.1:1/v1"; api_key = "k-0123456789";'
                    ' http_version = %s; };\n' % value)
        r = subprocess.run([harness.HCGW_BIN, "--check-config", "-c", path], capture_output=True,
                           text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr, path

    def test_check_config_takes_1_1_and_2_only(self):
        for value in ('"1.1"', '"2"'):
            with self.subTest(value=value):
                rc, out, _ = self.run_check(value)
                self.assertEqual((rc, out.strip()), (0, "configuration OK"))
        for value in ('"2.0"', '"h2"', '"3"', '"1.0"', '""', "2", "1.1"):
            with self.subTest(value=value):
                rc, out, path = self.run_check(value)
                self.assertEqual(rc, 1, out)
                self.assertIn("%s:1: upstream.http_version: " % path, out)

    def test_a_reload_that_changes_it_is_refused(self):
        gw = self.gateway("h2", "2")
        self.get(gw, C)
        with open(gw.conf_path) as f:
            text = f.read()
        self.assertIn('http_version = "2"', text)
        with open(gw.conf_path, "w") as f:
            f.write(text.replace('http_version = "2"', 'http_version = "1.1"'))
        mark = gw.proc.mark()
        gw.proc.proc.send_signal(signal.SIGHUP)
        line = gw.proc.wait_line(lambda o: isinstance(o, dict)
                                 and str(o.get("msg", "")).startswith("reload refused"),
                                 since=mark)
        self.assertIn("upstream.http_version", line.get("problem", ""), line)
        mark = self.nginx.mark()
        r, access = self.get(gw, C)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([l["proto"] for l in self.nginx.lines(mark, wait_for=1)], ["HTTP/2.0"])


if __name__ == "__main__":
    unittest.main()

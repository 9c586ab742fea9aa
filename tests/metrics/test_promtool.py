"""/metrics after real traffic, checked by Prometheus' own linter and against docs/operations.md.

Two workers with the quota governor on serve a mix of traffic: successes on several routes,
local 4xx, a retried HelpCrunch 503, upstream timeouts and 5xx, quota waits. Then:
- `promtool check metrics` (Debian package prometheus) finds nothing to complain about, on
  that scrape and on the scrape of a fresh gateway;
- every family the issue asks for is there with its type and labels: requests by route,
  method and status; request and upstream-attempt latency histograms; upstream attempts,
  retries and failures by kind; in-flight; the quota's tokens, queue and waits; build info;
- the values follow the traffic (counts per route and method, retries, failure kinds, quota
  waits; every answered request is one observation of the request histogram, every attempt
  one of the upstream histogram);
- the "Metrics" section of docs/operations.md lists exactly the families /metrics exposes;
- the alert rules of its "Alert rules" section pass `promtool check rules` and name only
  families that exist;
- with a redis group, and with listen.tls, the families docs/operations.md marks as theirs
  are there too, and lint clean.
"""
import http.client
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import (FROM_START, Gateway, Proc, Sim, assert_clean_stderr, full_conf,  # noqa: E402
                     listening_port)
import redis_server  # noqa: E402
import test_tls  # noqa: E402

SOURCE_DIR = os.path.abspath(os.environ.get("HCGW_SOURCE_DIR", os.path.join(HERE, "..", "..")))
JOHN = "1568834"
JANE = "1568835"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{family: type}, and [(name, {labels}, value)] of the exposition text."""
    types = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            samples.append((m.group(1), dict(LABEL.findall(m.group(2) or "")),
                            float(m.group(3))))
    return types, samples


def value(samples, name, **labels):
    hits = [v for n, l, v in samples if n == name and all(l.get(k) == w
                                                          for k, w in labels.items())]
    return sum(hits) if hits else None


OPERATIONS = os.path.join(SOURCE_DIR, "docs", "operations.md")


def promtool(text, *args):
    """`promtool check metrics` on text, or `promtool ARGS...` when args are given."""
    exe = shutil.which("promtool")
    if exe is None:
        raise AssertionError("promtool not found: install the Debian package prometheus "
                             "(scripts/install-deps.sh does)")
    return subprocess.run([exe, *(args or ("check", "metrics"))], input=text,
                          capture_output=True, text=True, timeout=60)


def operations_section(title):
    """The text of a "## title" section of docs/operations.md."""
    with open(OPERATIONS, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), text, re.S | re.M)
    assert m, "docs/operations.md has no \"## %s\" section" % title
    return m.group(1)


def documented_metrics(redis=False, tls=False):
    """The metric names the "Metrics" section of docs/operations.md lists (the first cell of
    each table row); those whose row says "with a `redis` group only" only when @p redis, and
    those whose row says "with `listen.tls` only" only when @p tls."""
    names = set()
    for row in re.findall(r"^\| `((?:hcgw|process)_[a-z0-9_]+)` \|(.*)$", operations_section("Metrics"),
                          re.M):
        if not redis and "with a `redis` group only" in row[1]:
            continue
        if not tls and "with `listen.tls` only" in row[1]:
            continue
        names.add(row[0])
    return names


class PromtoolTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim()
        try:
            cls.gw = Gateway(cls.sim, conf={
                "server": {"workers": 2},
                "upstream": {"timeout_ms": 600, "max_retries": 2, "retry_base_ms": 10,
                             "retry_max_ms": 20},
                # A slot every 50 ms after a burst of 2: concurrent calls wait their turn.
                "quota": {"requests_per_minute": 1200, "burst": 2, "max_wait_ms": 5000}})
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        tc = unittest.TestCase()
        assert_clean_stderr(tc, cls.gw.proc, cls.sim.key)
        tc.assertEqual(rc, 0)
        tc.assertEqual(cls.sim.stop(), 0)

    def scrape(self):
        r = self.gw.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return r.body.decode("utf-8")

    def assertPromtoolClean(self, text):
        p = promtool(text)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                         "promtool check metrics:\n%s%s\n--- the text:\n%s"
                         % (p.stdout, p.stderr, text))

    def test_process_families(self):
        # As Prometheus's client libraries name them, with values that fit this process.
        text = self.scrape()
        values = {}
        for line in text.splitlines():
            if line.startswith("process_"):
                name, value = line.split()
                values[name] = float(value)
        self.assertEqual(set(values), {"process_cpu_seconds_total", "process_resident_memory_bytes",
                                       "process_virtual_memory_bytes", "process_start_time_seconds",
                                       "process_open_fds", "process_max_fds"})
        self.assertGreater(values["process_cpu_seconds_total"], 0)
        self.assertGreater(values["process_resident_memory_bytes"], 1 << 20)
        self.assertGreater(values["process_virtual_memory_bytes"],
                           values["process_resident_memory_bytes"])
        # Started within the test run, not at the epoch nor in the future.
        self.assertLess(abs(values["process_start_time_seconds"] - time.time()), 600)
        self.assertLessEqual(values["process_start_time_seconds"], time.time() + 1)
        self.assertGreater(values["process_open_fds"], 3)
        self.assertLess(values["process_open_fds"], values["process_max_fds"])
        with open("/proc/%d/stat" % self.gw.proc.proc.pid) as f:
            self.assertIn(str(self.gw.proc.proc.pid), f.read())  # the gateway's own process
        # Stable between scrapes.
        again = [l for l in self.scrape().splitlines()
                 if l.startswith("process_start_time_seconds ")]
        self.assertEqual(float(again[0].split()[1]), values["process_start_time_seconds"])

    def test_fresh_and_after_traffic(self):
        # A fresh gateway (only the scrape itself is to come) already lints clean.
        self.assertPromtoolClean(self.scrape())

        gw, sim = self.gw, self.sim
        statuses = []
        for _ in range(3):
            statuses.append(gw.request("GET", "/contacts/" + JOHN).status)
        statuses.append(gw.request("PUT", "/contacts/%s/tags/Lead" % JANE).status)
        statuses.append(gw.request("POST", "/contacts/search",
                                   {"filter": [{"field": "customers.id", "operator": "=",
                                                "value": int(JOHN)}]}).status)
        statuses.append(gw.request("GET", "/healthz").status)
        self.assertEqual(statuses, [200] * 6)
        self.assertEqual(gw.request("GET", "/nope").status, 404)
        self.assertEqual(gw.request("PATCH", "/nope").status, 404)
        self.assertEqual(gw.request("BREW", "/contacts").status, 405)
        self.assertEqual(gw.request("GET", "/contacts/0").status, 400)
        # A retry: HelpCrunch's 503, then the real answer.
        sim.script({"status": 503, "json": {"errors": []}})
        self.assertEqual(gw.request("GET", "/contacts/" + JOHN).status, 200)
        # Failures by kind: a retryable 5xx on every attempt, and a hang past the deadline.
        sim.script({"status": 503, "json": {"errors": []}, "count": 3})
        self.assertEqual(gw.request("GET", "/contacts/" + JANE).status, 502)
        sim.script({"action": "hang"})
        self.assertEqual(gw.request("POST", "/contacts", {"name": "slow"}).status, 504)
        # Quota waits: more calls at once than the burst.
        out = []
        threads = [threading.Thread(target=lambda: out.append(
            gw.request("GET", "/contacts/" + JOHN).status)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(out, [200] * 6)

        text = self.scrape()
        self.assertPromtoolClean(text)
        types, samples = parse(text)

        # The families the issue asks for, with their types.
        want = {
            "hcgw_build_info": "gauge",
            "hcgw_requests_total": "counter",
            "hcgw_request_duration_seconds": "histogram",
            "hcgw_upstream_duration_seconds": "histogram",
            "hcgw_upstream_attempts_total": "counter",
            "hcgw_upstream_retries_total": "counter",
            "hcgw_upstream_failures_total": "counter",
            "hcgw_in_flight": "gauge",
            "hcgw_quota_tokens": "gauge",
            "hcgw_quota_queued": "gauge",
            "hcgw_quota_waits_total": "counter",
        }
        for name, typ in want.items():
            self.assertEqual(types.get(name), typ, name)

        build = [l for n, l, _ in samples if n == "hcgw_build_info"]
        self.assertEqual(len(build), 1)
        self.assertLessEqual({"version", "commit"}, set(build[0]))
        for n, labels, _ in samples:
            if n == "hcgw_requests_total":
                self.assertEqual(set(labels), {"route", "method", "status"}, labels)
            if n == "hcgw_upstream_failures_total":
                self.assertEqual(set(labels), {"kind"}, labels)

        # Requests by route, method and status (the two workers summed).
        self.assertEqual(value(samples, "hcgw_requests_total", route="contact_get",
                               method="GET", status="200"), 3 + 1 + 6)
        self.assertEqual(value(samples, "hcgw_requests_total", route="contact_get",
                               method="GET", status="400"), 1)
        self.assertEqual(value(samples, "hcgw_requests_total", route="contact_get",
                               method="GET", status="502"), 1)
        self.assertEqual(value(samples, "hcgw_requests_total", route="tag_put",
                               method="PUT", status="200"), 1)
        self.assertEqual(value(samples, "hcgw_requests_total", route="contact_create",
                               method="POST", status="504"), 1)
        self.assertEqual(value(samples, "hcgw_requests_total", route="unmatched",
                               method="GET", status="404"), 1)
        self.assertEqual(value(samples, "hcgw_requests_total", route="unmatched",
                               method="PATCH", status="404"), 1)
        # A method nobody counts by name is "other", never the caller's text.
        self.assertEqual(value(samples, "hcgw_requests_total", route="unmatched",
                               method="other", status="405"), 1)
        self.assertNotIn("BREW", text)
        self.assertGreaterEqual(value(samples, "hcgw_requests_total", route="metrics",
                                      method="GET", status="200"), 1)

        # Upstream attempts, retries and failures by kind.
        attempts = value(samples, "hcgw_upstream_attempts_total")
        self.assertEqual(attempts, sim.count())
        self.assertGreaterEqual(value(samples, "hcgw_upstream_retries_total"), 1 + 2)
        self.assertGreaterEqual(value(samples, "hcgw_upstream_failures_total", kind="http_5xx"),
                                1 + 3)
        self.assertEqual(value(samples, "hcgw_upstream_failures_total", kind="timeout"), 1)
        self.assertEqual(value(samples, "hcgw_in_flight"), 0)

        # Histograms: one observation per answered request, one per upstream attempt.
        answered = value(samples, "hcgw_requests_total")
        self.assertEqual(value(samples, "hcgw_request_duration_seconds_count"), answered)
        self.assertEqual(value(samples, "hcgw_request_duration_seconds_bucket", le="+Inf"),
                         answered)
        self.assertEqual(value(samples, "hcgw_upstream_duration_seconds_count"), attempts)
        self.assertGreater(value(samples, "hcgw_upstream_duration_seconds_sum"), 0.5,
                           "the hung attempt alone lasted the 600 ms deadline")

        # The quota: calls waited for their slot; nothing waits now.
        self.assertGreaterEqual(value(samples, "hcgw_quota_waits_total"), 1)
        self.assertEqual(value(samples, "hcgw_quota_queued"), 0)
        self.assertEqual(value(samples, "hcgw_quota_enabled"), 1)

        # docs/operations.md lists exactly what /metrics exposes (without a redis group).
        self.assertEqual(documented_metrics(), set(types),
                         "the Metrics section of docs/operations.md and /metrics differ")

        # Its alert rules are valid and name only families that exist.
        blocks = re.findall(r"^```yaml\n(.*?)^```", operations_section("Alert rules"),
                            re.S | re.M)
        self.assertEqual(len(blocks), 1, "one YAML block of rules")
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as rules:
            rules.write(blocks[0])
            rules.flush()
            p = promtool("", "check", "rules", rules.name)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: ", p.stdout)
        named = {re.sub(r"_(bucket|sum|count)$", "", n)
                 for n in re.findall(r"\b(hcgw_[a-z0-9_]+)", blocks[0])}
        self.assertTrue(named, "the rules name no hcgw metric")
        # (a rule on a Redis or TLS family names one that /metrics shows with a redis group
        # or listen.tls: RedisMetricsTest and TlsMetricsTest check those against a real scrape)
        self.assertLessEqual(named, set(types) | documented_metrics(redis=True, tls=True),
                             "the rules name metrics /metrics lacks")


class RedisMetricsTest(unittest.TestCase):
    """With a redis group (a real redis-server): the Redis families lint clean and are exactly
    the rows docs/operations.md marks "with a `redis` group only"."""

    def test_redis_families(self):
        redis = redis_server.Redis()
        sim = Sim()
        gw = None
        try:
            gw = Gateway(sim, conf=full_conf(sim.base_url, server={"workers": 2},
                                             quota={"requests_per_minute": 1200},
                                             redis=redis.group()))
            for _ in range(50):
                text = gw.request("GET", "/metrics").body.decode()
                if "hcgw_quota_shared 1" in text:
                    break
                import time
                time.sleep(0.1)
            self.assertEqual(gw.request("GET", "/contacts/" + JOHN).status, 200)
            text = gw.request("GET", "/metrics").body.decode()
            p = promtool(text)
            self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""), text)
            types, samples = parse(text)
            self.assertEqual(documented_metrics(redis=True), set(types))
            self.assertEqual(value(samples, "hcgw_redis_up"), 1)
            self.assertEqual(value(samples, "hcgw_quota_shared"), 1)
            self.assertGreaterEqual(value(samples, "hcgw_quota_shared_decisions_total"), 1)
            self.assertGreaterEqual(value(samples, "hcgw_redis_duration_seconds_count"), 1)
            self.assertEqual(types["hcgw_redis_duration_seconds"], "histogram")
            for op in ("begin", "complete", "abandon"):
                self.assertEqual(value(samples, "hcgw_idempotency_fallbacks_total", op=op), 0)
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, sim.key)
            sim.stop()
            redis.close()


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class TlsMetricsTest(unittest.TestCase):
    """With listen.tls: the certificate's expiry lints clean, is the one family the rows marked
    "with `listen.tls` only" add, and is the notAfter of the certificate served."""

    def test_tls_family(self):
        pki = test_tls.Pki()
        sim = Sim()
        gw = None
        try:
            path = pki.path("metrics.conf")
            with open(path, "w") as f:
                f.write(test_tls.tls_conf(sim, pki.srv[0], pki.srv[1], top_level=""))
            env = {k: v for k, v in os.environ.items()
                   if k not in ("HCGW_API_KEY", "HCGW_API_KEY_FILE")}
            env["HCGW_API_KEY"] = sim.key
            gw = Proc([harness.HCGW_BIN, "-c", path], env=env)
            port = gw.wait_line(listening_port, since=FROM_START)["port"]
            conn = http.client.HTTPSConnection(
                "127.0.0.1", port, context=ssl.create_default_context(cafile=pki.ca[0]),
                timeout=30)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
            conn.close()
            p = promtool(text)
            self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""), text)
            types, samples = parse(text)
            self.assertEqual(documented_metrics(tls=True), set(types))
            self.assertEqual(types["hcgw_tls_cert_not_after_seconds"], "gauge")
            line = gw.wait_line(lambda o: isinstance(o, dict)
                                and o.get("msg") == "TLS certificate loaded", since=FROM_START)
            self.assertEqual(value(samples, "hcgw_tls_cert_not_after_seconds"),
                             line["not_after"])
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw, sim.key)
            sim.stop()
            pki.remove()

"""Test harness: start hcgw-sim and hcgw on ephemeral loopback ports and talk real HTTP.

Binaries come from the environment that ctest sets (HCGW_BIN, HCGW_SIM_BIN). Every process is
stopped with SIGTERM at the end and must exit 0; its stderr is kept, must not hold a sanitizer
report, and (for hcgw) must never contain the API key.
"""
import http.client
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

HCGW_BIN = os.environ.get("HCGW_BIN", "../../build/asan/hcgw")
SIM_BIN = os.environ.get("HCGW_SIM_BIN", "../../build/asan/hcgw-sim")
SOURCE_DIR = os.environ.get("HCGW_SOURCE_DIR", os.path.abspath("../.."))
START_TIMEOUT = 15.0
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Proc:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.out = []
        self.err = []
        self._cv = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.out),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.err),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream, sink):
        for raw in iter(stream.readline, b""):
            with self._cv:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()

    def wait_line(self, pred, timeout=START_TIMEOUT, stream="both"):
        """Wait for a line (JSON-decoded when possible) for which pred is true; return it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                lines = (self.out + self.err) if stream == "both" else getattr(self, stream)
                for line in lines[seen:]:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        obj = line
                    if pred(obj):
                        return obj
                seen = 0  # lists from two streams interleave: rescan (they are short at start)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError("%s: line not seen; stderr:\n%s"
                                         % (self.argv[0], "\n".join(self.err[-30:])))
                self._cv.wait(min(left, 0.2))

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("%s did not stop within %ss" % (self.argv[0], timeout))
        for t in self._threads:
            t.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc

    def stderr_text(self):
        with self._cv:
            return "\n".join(self.err)

    def json_lines(self):
        """hcgw's stderr lines that are JSON objects."""
        res = []
        with self._cv:
            for line in self.err:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    res.append(obj)
        return res


def listening_port(obj):
    return isinstance(obj, dict) and obj.get("msg") == "listening" and "port" in obj


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


def http_request(port, method, path, body=None, headers=None, timeout=30):
    """One request on a new connection. `body` may be bytes, str, or an object (sent as JSON)."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.getheaders(), data)
    finally:
        conn.close()


class Sim:
    """hcgw-sim on an ephemeral port."""

    def __init__(self, key="sim-test-key-0123456789", extra=()):
        self.key = key
        self.proc = Proc([SIM_BIN, "--port", "0", "--key", key, "--rate-limit", "0"]
                         + list(extra))
        self.port = self.proc.wait_line(listening_port, stream="out")["port"]

    @property
    def base_url(self):
        return "http://127.0.0.1:%d/v1" % self.port

    def call(self, method, path, body=None):
        r = http_request(self.port, method, path, body)
        return r.json() if r.body else None

    def stats(self):
        return self.call("GET", "/_sim/stats")

    def count(self):
        return self.stats()["requests"]

    def requests(self):
        return self.call("GET", "/_sim/requests")["requests"]

    def last(self):
        reqs = self.requests()
        return reqs[-1] if reqs else None

    def script(self, entries):
        return self.call("POST", "/_sim/script", entries)

    def reset(self):
        return self.call("POST", "/_sim/reset", {})

    def stop(self):
        return self.proc.stop()


class Gateway:
    """hcgw with a config written for the test, in front of a simulator."""

    def __init__(self, sim, key=None, conf=None, env_extra=None, workers=1):
        """conf: None for the harness defaults, a dict of groups to override them
        ({"limits": {"max_body_bytes": 1024}}), or a whole config file as a string."""
        self.sim = sim
        self.key = key if key is not None else sim.key
        self.dir = tempfile.mkdtemp(prefix="hcgw-test-")
        self.conf_path = os.path.join(self.dir, "hcgw.conf")
        if conf is None or isinstance(conf, dict):
            groups = dict(conf or {})
            groups.setdefault("server", {}).setdefault("workers", workers)
            text = full_conf(sim.base_url, **groups)
        else:
            text = conf
        with open(self.conf_path, "w") as f:
            f.write(text)
        env = dict(os.environ)
        env.pop("HCGW_API_KEY_FILE", None)
        if self.key:
            env["HCGW_API_KEY"] = self.key
        else:
            env.pop("HCGW_API_KEY", None)  # the key comes from the config's key file
        env.update(env_extra or {})
        self.proc = Proc([HCGW_BIN, "-c", self.conf_path], env=env)
        self.port = self.proc.wait_line(listening_port)["port"]

    def request(self, method, path, body=None, headers=None, timeout=30):
        return http_request(self.port, method, path, body, headers, timeout)

    def stop(self):
        return self.proc.stop()

    def access_lines(self):
        return [o for o in self.proc.json_lines() if o.get("msg") == "access"]


def assert_clean_stderr(testcase, proc, key=None):
    text = proc.stderr_text()
    for mark in SANITIZER_MARKS:
        testcase.assertNotIn(mark, text, "sanitizer report in %s stderr" % proc.argv[0])
    if key:
        testcase.assertNotIn(key, text, "the API key appeared in %s's logs" % proc.argv[0])


class GatewayCase(unittest.TestCase):
    """One simulator and one hcgw for the whole class; both must stop cleanly at the end."""

    conf_groups = {}
    workers = 1

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim()
        try:
            cls.gw = Gateway(cls.sim, conf=cls.conf_groups, workers=cls.workers)
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        rc_gw = cls.gw.stop()
        rc_sim = cls.sim.stop()
        tc = unittest.TestCase()
        assert_clean_stderr(tc, cls.gw.proc, cls.sim.key)
        assert_clean_stderr(tc, cls.sim.proc)
        tc.assertEqual(rc_gw, 0, "hcgw exit status; stderr tail:\n" + cls.gw.proc.stderr_text()[-3000:])
        tc.assertEqual(rc_sim, 0, "hcgw-sim exit status")
        # Every response carried the key? Never: checked per test through assert_no_key.

    def setUp(self):
        self.sim.reset()

    def req(self, method, path, body=None, headers=None, timeout=30):
        r = self.gw.request(method, path, body, headers, timeout)
        self.assertNotIn(self.sim.key.encode(), r.body, "the API key appeared in a response")
        for k, v in r.headers:
            self.assertNotIn(self.sim.key, v, "the API key appeared in a response header")
        return r

    def assertEnvelope(self, r, status, code, upstream_status=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        err = r.json()["error"]
        self.assertEqual(err["status"], status)
        self.assertEqual(err["code"], code, r)
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"])
        self.assertEqual(err["request_id"], r.header("X-Request-Id"))
        if upstream_status is None:
            self.assertNotIn("upstream_status", err)
        else:
            self.assertEqual(err.get("upstream_status"), upstream_status)
        return err

    def assertNoUpstreamCall(self, fn):
        """Run fn and assert the simulator saw no API call meanwhile."""
        before = self.sim.count()
        result = fn()
        self.assertEqual(self.sim.count(), before, "an upstream call was spent")
        return result


# ---- helpers added for tests that need their own [upstream], [server] or [limits] values ----
# The harness defaults of every hcgw the tests start; full_conf overrides them per group.
CONF_DEFAULTS = {
    "listen": {"address": "127.0.0.1", "port": 0},
    "server": {"workers": 1, "drain_timeout_ms": 5000},
    "upstream": {"timeout_ms": 5000, "connect_timeout_ms": 1000, "max_retries": 2,
                 "retry_base_ms": 20, "retry_max_ms": 200},
}




def full_conf(base_url, **groups):
    """A whole hcgw config: the harness defaults with base_url, overridden per group by dicts,
    e.g. full_conf(sim.base_url, upstream={"timeout_ms": 500}, limits={"max_in_flight": 10}).
    The quota governor is off unless a quota group is given, so that its budget shapes only
    the tests that are about it."""
    merged = {g: dict(v) for g, v in CONF_DEFAULTS.items()}
    merged["upstream"]["base_url"] = base_url
    if "quota" not in groups:
        merged["quota"] = {"requests_per_minute": 0}
    for group, values in groups.items():
        merged.setdefault(group, {}).update(values or {})
    lines = []
    for group, values in merged.items():
        items = " ".join("%s = %s;" % (k, json.dumps(v) if isinstance(v, str) else
                                       ("true" if v is True else "false" if v is False else v))
                         for k, v in values.items())
        lines.append("%s = { %s };" % (group, items))
    return "\n".join(lines) + "\n"


# Kept for the tests written against it: GatewayCase now takes conf_groups itself.
ConfCase = GatewayCase


def wait_access(gw, request_id, timeout=5.0):
    """The access line of the request with this X-Request-Id. hcgw writes it when the response
    has been sent, so it may land just after the client has read the answer: wait for it."""
    return gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "access"
                             and o.get("request_id") == request_id, timeout=timeout,
                             stream="err")


def conf_with_top_level(base_url, top_level="", **groups):
    """A whole config: full_conf(base_url, **groups) followed by libconfig text for top-level
    keys that are not groups and so cannot be given as dicts: auth, trust_mesh_identity,
    mesh_identity_header and the clients list (clients = ( { … }, … );)."""
    return full_conf(base_url, **groups) + top_level + "\n"

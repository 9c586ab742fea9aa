"""Test harness: start hcgw-sim and hcgw on ephemeral loopback ports and talk real HTTP.

Binaries come from the environment that ctest sets (HCGW_BIN, HCGW_SIM_BIN). Every process is
stopped with SIGTERM at the end and must exit 0; its stderr is kept, must not hold a sanitizer
report, and (for hcgw) must never contain the API key.

Waiting for a log line: a wait sees only the lines written after a mark, so that it cannot
match a line of an earlier request or test. Take the mark before the action whose line you
wait for, so that a line written between the action and the wait is not missed:

    mark = gw.proc.mark()
    r = gw.request("GET", "/contacts/1", headers={"X-Request-Id": rid})
    line = wait_access(gw, rid, mark)

Without a mark, wait_line takes one when it begins.
"""
import collections
import fcntl
import http.client
import json
import os
import select
import signal
import socket
import struct
import subprocess
import termios
import tempfile
import threading
import time
import unittest

HCGW_BIN = os.environ.get("HCGW_BIN", "../../build/asan/hcgw")
SIM_BIN = os.environ.get("HCGW_SIM_BIN", "../../build/asan/hcgw-sim")
SOURCE_DIR = os.environ.get("HCGW_SOURCE_DIR", os.path.abspath("../.."))
START_TIMEOUT = 15.0
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# A position in a process's output (Proc.mark): `index` lines had been collected, and `out`
# and `err` bytes had been written to each stream. A line is after the mark when it starts at
# or past the mark's byte offset in its own stream.
LogMark = collections.namedtuple("LogMark", "index out err")
# The very beginning of a process's output: for the lines a process writes as it starts.
FROM_START = LogMark(0, 0, 0)


class Proc:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.out = []
        self.err = []
        # Every line of both streams in the order read: (stream, its first byte's offset in
        # that stream, text). _read: the bytes of each stream read so far.
        self.lines = []
        self._read = {"out": 0, "err": 0}
        self._cv = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, "out"),
                                          daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, "err"),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream, name):
        """Reads one stream. It reads and files under the lock, so that mark() sees either the
        bytes still in the pipe or the lines made of them, never bytes in between."""
        fd = stream.fileno()
        sink = getattr(self, name)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        partial = b""
        start = 0
        while True:
            poller.poll()
            with self._cv:
                try:
                    data = os.read(fd, 65536)  # readable: it does not block
                except OSError:  # closed by stop() after its wait for this thread
                    data = b""
                if not data and partial:
                    data = b"\n"  # a last line with no newline
                if not data:
                    self._cv.notify_all()
                    return
                partial += data
                *whole, partial = partial.split(b"\n")
                for raw in whole:
                    text = raw.decode("utf-8", "replace")
                    sink.append(text)
                    self.lines.append((name, start, text))
                    start += len(raw) + 1
                self._read[name] += len(data)
                self._cv.notify_all()

    def _unread(self, stream):
        """Bytes written to a stream that its pump has not read yet."""
        try:
            buf = fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):  # closed: the process was stopped
            return 0
        return struct.unpack("i", buf)[0]

    def mark(self):
        """The position of the output now, for wait_line(since=...): every line written from
        now on is after it, every line written before is not. Take it before the action whose
        line a test waits for."""
        with self._cv:
            return LogMark(len(self.lines), self._read["out"] + self._unread(self.proc.stdout),
                           self._read["err"] + self._unread(self.proc.stderr))

    def wait_line(self, pred, timeout=START_TIMEOUT, stream="both", since=None):
        """Wait for a line written after the mark `since` (default: a mark taken now, as the
        wait begins; FROM_START for the whole output) for which pred is true, and return it
        (JSON-decoded when it is JSON). stream: "out", "err" or "both"."""
        if since is None:
            since = self.mark()
        deadline = time.monotonic() + timeout
        seen = since.index  # lines before it were read before the mark was taken
        with self._cv:
            while True:
                for name, start, line in self.lines[seen:]:
                    if (stream != "both" and name != stream) or start < getattr(since, name):
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        obj = line
                    if pred(obj):
                        return obj
                seen = len(self.lines)
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


def send_raw(port, data, address="127.0.0.1", timeout=10):
    """Send raw bytes on a new connection and return all the server sends until it closes."""
    sock = socket.create_connection((address, port), timeout=timeout)
    chunks = []
    try:
        sock.sendall(data)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    return b"".join(chunks)


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
        self.port = self.proc.wait_line(listening_port, stream="out",
                                        since=FROM_START)["port"]

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
        self.port = self.proc.wait_line(listening_port, since=FROM_START)["port"]

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


class SimCase(unittest.TestCase):
    """One simulator for the whole class, reset before each test; it must stop cleanly at the
    end. For tests that start their own hcgw (or none)."""

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim()

    @classmethod
    def tearDownClass(cls):
        rc = cls.sim.stop()
        assert_clean_stderr(unittest.TestCase(), cls.sim.proc)
        assert rc == 0, "hcgw-sim exit status %r" % rc

    def setUp(self):
        self.sim.reset()


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
    A list of strings becomes a libconfig array: cors={"allow_origins": ["https://a.example"]}.
    The quota governor is off unless a quota group is given, so that its budget shapes only
    the tests that are about it; so is the contact cache (cache.ttl_ms = 0), so that the tests
    that count upstream calls or reset the simulator between tests (which brings back contacts
    hcgw would still hold) see every read reach it, and only the tests about the cache see it."""
    merged = {g: dict(v) for g, v in CONF_DEFAULTS.items()}
    merged["upstream"]["base_url"] = base_url
    if "quota" not in groups:
        merged["quota"] = {"requests_per_minute": 0}
    if "cache" not in groups:
        merged["cache"] = {"ttl_ms": 0}
    for group, values in groups.items():
        merged.setdefault(group, {}).update(values or {})
    lines = []
    for group, values in merged.items():
        lines.append("%s = %s;" % (group, _conf_value(values)))
    return "\n".join(lines) + "\n"


def _conf_value(v):
    """A value as libconfig text; a dict is a group (listen = { tls = { … }; })."""
    if isinstance(v, dict):
        return "{ %s }" % " ".join("%s = %s;" % (k, _conf_value(x)) for k, x in v.items())
    if isinstance(v, (str, list)):
        return json.dumps(v)  # a list of strings or numbers: a libconfig array
    return "true" if v is True else "false" if v is False else str(v)


# Kept for the tests written against it: GatewayCase now takes conf_groups itself.
ConfCase = GatewayCase


def metric_value(text, name):
    """The value of the unlabelled sample @p name in the /metrics text @p text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not found" % name)


def wait_metric(gw, name, value, timeout=20.0):
    """Poll gw's /metrics until the sample @p name is @p value; returns that /metrics text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = gw.request("GET", "/metrics").body.decode()
        if metric_value(text, name) == value:
            return text
        time.sleep(0.1)
    raise AssertionError("%s never became %s" % (name, value))


def wait_access(gw, request_id, since, timeout=5.0):
    """The access line of the request with this X-Request-Id, written after the mark `since`
    (gw.proc.mark(), taken before the request was sent). hcgw writes it when the response has
    been sent, so it may land just before or just after the client has read the answer."""
    return gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "access"
                             and o.get("request_id") == request_id, timeout=timeout,
                             stream="err", since=since)


def conf_with_top_level(base_url, top_level="", **groups):
    """A whole config: full_conf(base_url, **groups) followed by libconfig text for top-level
    keys that are not groups and so cannot be given as dicts: auth, trust_mesh_identity,
    mesh_identity_header and the clients list (clients = ( { … }, … );)."""
    return full_conf(base_url, **groups) + top_level + "\n"


# ---- The suite-wide key check (issue 4: "grep every log line and every response for the key") --
# Every hcgw that any test starts, through Gateway, Proc or subprocess.run, has its stdout and
# stderr checked when it stops or exits, and every answer read from it through http_request
# (Gateway.request included) is checked as it arrives, for every key this test program has
# used: the HCGW_API_KEY of that hcgw's environment, each simulator's key, and each key given
# to a simulator's /_sim/keys. A hit is printed at once (without the key) and fails the whole
# test program at exit, with status 1, whatever the test that started hcgw does with errors:
# raising inside a stop() could skip the cleanup of its caller and leave processes behind.
import atexit as _atexit
import sys as _sys

_KEYS = set()
_KEY_LEAKS = []
_HCGW_PORTS = set()
_MIN_KEY_LEN = 8  # shorter test keys ("k-x") would match ordinary text by chance


def _note_key(key):
    if isinstance(key, str) and len(key) >= _MIN_KEY_LEN:
        _KEYS.add(key)


def _is_hcgw(argv):
    return bool(argv) and os.path.basename(str(argv[0])) == os.path.basename(HCGW_BIN)


def _leak(where, key):
    msg = "harness: the API key (%s…, %d bytes) appeared in %s" % (key[:4], len(key), where)
    _KEY_LEAKS.append(msg)
    _sys.stderr.write(msg + "\n")


def _check_text(text, where, env=None):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    keys = set(_KEYS)
    env_key = (env if env is not None else os.environ).get("HCGW_API_KEY")
    if env_key and len(env_key) >= _MIN_KEY_LEN:
        keys.add(env_key)
    for key in keys:
        if key in (text or ""):
            _leak(where, key)


_orig_sim_init = Sim.__init__


def _sim_init(self, *args, **kwargs):
    _orig_sim_init(self, *args, **kwargs)
    _note_key(self.key)


Sim.__init__ = _sim_init

_orig_sim_call = Sim.call


def _sim_call(self, method, path, body=None):
    if path == "/_sim/keys" and isinstance(body, dict):
        for key in body.get("keys") or ():
            _note_key(key)
    return _orig_sim_call(self, method, path, body)


Sim.call = _sim_call

_orig_proc_init = Proc.__init__


def _proc_init(self, argv, env=None):
    self._key_env = env
    _orig_proc_init(self, argv, env)


Proc.__init__ = _proc_init

_orig_wait_line = Proc.wait_line


def _wait_line(self, pred, *args, **kwargs):
    line = _orig_wait_line(self, pred, *args, **kwargs)
    if _is_hcgw(self.argv) and listening_port(line):
        _HCGW_PORTS.add(line["port"])
        self._key_port = line["port"]
    return line


Proc.wait_line = _wait_line

_orig_proc_stop = Proc.stop


def _proc_stop(self, *args, **kwargs):
    try:
        return _orig_proc_stop(self, *args, **kwargs)
    finally:
        if _is_hcgw(self.argv):
            _HCGW_PORTS.discard(getattr(self, "_key_port", None))
            with self._cv:
                text = "\n".join(self.out + self.err)
            _check_text(text, "the output of %s" % " ".join(self.argv), self._key_env)


Proc.stop = _proc_stop

_orig_http_request = http_request


def http_request(port, method, path, body=None, headers=None, timeout=30):  # noqa: F811
    r = _orig_http_request(port, method, path, body, headers, timeout)
    if port in _HCGW_PORTS:
        where = "hcgw's answer to %s %s" % (method, path[:80])
        _check_text(r.body, where)
        _check_text("\n".join("%s: %s" % kv for kv in r.headers), where)
    return r


_orig_subprocess_run = subprocess.run


def _subprocess_run(*args, **kwargs):
    result = _orig_subprocess_run(*args, **kwargs)
    argv = args[0] if args else kwargs.get("args")
    if isinstance(argv, (list, tuple)) and _is_hcgw(argv):
        for stream in (result.stdout, result.stderr):
            if stream:
                _check_text(stream, "the output of %s" % " ".join(map(str, argv)),
                            kwargs.get("env"))
    return result


subprocess.run = _subprocess_run


@_atexit.register
def _fail_on_key_leaks():
    if _KEY_LEAKS:
        _sys.stderr.write("harness: %d key leak(s); failing the run:\n  %s\n"
                          % (len(_KEY_LEAKS), "\n  ".join(_KEY_LEAKS)))
        _sys.stderr.flush()
        os._exit(1)

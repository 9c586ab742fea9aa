"""The compose topology with Redis, run for real from the shipped files, without a container
(ctest label "deploy"): deploy/redis's start script renders the ACL from users.acl.in and the
compose password file and starts Debian's redis-server with deploy/redis/redis.conf on a free
loopback port; two hcgw processes run deploy/compose/hcgw.conf (its addresses moved to
loopback: the listening port, hcgw-sim's URL, Redis's URL, the password file's path) in front
of hcgw-sim. It checks that:

- the rendered ACL holds the password's SHA-256 and no comment, is readable by its owner only,
  and the password is on no command line;
- hcgw-redis-probe passes with the password and fails with another;
- both replicas sign in as the ACL user and share the account's bucket (hcgw_quota_shared 1,
  and each answers an upstream call through it), and the password is in no log line;
- the ACL user can do what hcgw needs on its own keys and nothing else: no FLUSHALL, CONFIG,
  KEYS, SCAN, SELECT, INFO, ACL, SHUTDOWN or SUBSCRIBE, no key outside the prefix (directly or
  from a script), and the default user is off;
- Redis stopped: both replicas still answer, from their fallback buckets (hcgw_quota_shared
  0), and Redis left nothing on disk; started again from the same files, empty: both go back
  to the shared bucket.

Skipped (unittest.SkipTest; ctest counts it passed) where redis-server is not installed.
"""
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HCGW_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

from harness import Gateway, Sim, assert_clean_stderr  # noqa: E402
from redis_server import free_port  # noqa: E402
from resp import Resp, RespError  # noqa: E402

REDIS_DIR = os.path.join(SRC, "deploy", "redis")
COMPOSE_DIR = os.path.join(SRC, "deploy", "compose")
START_S = 30          # generous: for Redis to start, a replica to sign in or fall back
RATE = 120            # the simulator's limit: the account's


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not in /metrics" % name)


def substitute(text, pattern, repl):
    """re.sub that must replace exactly once: a changed compose hcgw.conf fails here, loudly,
    instead of silently testing something else."""
    out, n = re.subn(pattern, repl, text)
    if n != 1:
        raise AssertionError("deploy/compose/hcgw.conf: %r matched %d times" % (pattern, n))
    return out


class RedisTopologyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise unittest.SkipTest("redis-server is not installed (scripts/install-deps.sh)")
        cls.tmp = tempfile.mkdtemp(prefix="hcgw-redis-topology-")
        cls.acl_dir = os.path.join(cls.tmp, "acl")
        cls.data_dir = os.path.join(cls.tmp, "data")
        os.mkdir(cls.acl_dir)
        os.mkdir(cls.data_dir)
        # The compose throwaway, as a secret file of hcgw's own (0600: no warning).
        with open(os.path.join(COMPOSE_DIR, "dev-redis-password")) as f:
            cls.password = f.read().rstrip("\n")
        cls.password_file = os.path.join(cls.tmp, "hcgw-redis-password")
        with open(cls.password_file, "w") as f:
            f.write(cls.password + "\n")
        os.chmod(cls.password_file, 0o600)
        cls.port = free_port()
        cls.redis = None
        cls.redis_log = os.path.join(cls.tmp, "redis.log")
        cls.start_redis()
        with open(os.path.join(COMPOSE_DIR, "dev-api-key")) as f:
            key = f.read().strip()
        cls.sim = Sim(key=key, extra=["--rate-limit", str(RATE)])
        with open(os.path.join(COMPOSE_DIR, "hcgw.conf")) as f:
            conf = f.read()
        conf = substitute(conf, r'address = "0\.0\.0\.0"; port = 8080;',
                          'address = "127.0.0.1"; port = 0;')
        conf = substitute(conf, r'"http://hcgw-sim:8090/v1"', '"%s"' % cls.sim.base_url)
        conf = substitute(conf, r'"redis://redis:6379/0"', '"redis://127.0.0.1:%d/0"' % cls.port)
        conf = substitute(conf, r'"/run/secrets/hcgw-redis-password"', '"%s"' % cls.password_file)
        cls.gws = []
        for _ in range(2):
            cls.gws.append(Gateway(cls.sim, conf=conf))

    @classmethod
    def start_redis(cls):
        env = dict(os.environ, HCGW_REDIS_PASSWORD_FILE=cls.password_file,
                   HCGW_REDIS_CONF_DIR=REDIS_DIR, HCGW_REDIS_ACL_DIR=cls.acl_dir)
        with open(cls.redis_log, "ab") as log:
            cls.redis = subprocess.Popen(
                [os.path.join(REDIS_DIR, "hcgw-redis-start"), "--port", str(cls.port),
                 "--bind", "127.0.0.1", "--dir", cls.data_dir],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if cls.probe(cls.password_file) == 0:
                return
            if cls.redis.poll() is not None:
                break
            time.sleep(0.1)
        with open(cls.redis_log) as f:
            raise AssertionError("Redis did not start from deploy/redis:\n" + f.read()[-3000:])

    @classmethod
    def stop_redis(cls):
        if cls.redis is not None and cls.redis.poll() is None:
            cls.redis.send_signal(signal.SIGTERM)
            cls.redis.wait(30)
        cls.redis = None

    @classmethod
    def probe(cls, password_file):
        env = dict(os.environ, HCGW_REDIS_PASSWORD_FILE=password_file,
                   HCGW_REDIS_PORT=str(cls.port))
        return subprocess.run([os.path.join(REDIS_DIR, "hcgw-redis-probe")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30).returncode

    @classmethod
    def tearDownClass(cls):
        problems = []
        for gw in getattr(cls, "gws", []):
            rc = gw.stop()
            text = gw.proc.stderr_text() + "\n".join(gw.proc.out)
            if rc != 0:
                problems.append("hcgw exited %d: %s" % (rc, gw.proc.stderr_text()[-2000:]))
            if cls.password in text:
                problems.append("the Redis password appeared in hcgw's output")
        if getattr(cls, "sim", None) is not None and cls.sim.stop() != 0:
            problems.append("hcgw-sim did not stop cleanly")
        cls.stop_redis()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if problems:
            raise AssertionError("; ".join(problems))

    def client(self, user="hcgw", password=None):
        c = Resp(self.port)
        self.addCleanup(c.close)
        if user is not None:
            self.assertEqual(c("AUTH", user, password or self.password), "OK")
        return c

    def shared(self, gw, value, timeout=START_S):
        """Waits for hcgw_quota_shared to be `value`; returns the metrics text."""
        deadline = time.monotonic() + timeout
        while True:
            text = gw.request("GET", "/metrics").body.decode()
            if metric(text, "hcgw_quota_shared") == value or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(metric(text, "hcgw_quota_shared"), value,
                         "hcgw_quota_shared never became %d" % value)
        return text

    def test_acl_rendered_from_the_template(self):
        with open(os.path.join(self.acl_dir, "users.acl")) as f:
            acl = f.read()
        mode = stat.S_IMODE(os.stat(os.path.join(self.acl_dir, "users.acl")).st_mode)
        self.assertEqual(mode, 0o600, "the rendered ACL is its owner's alone")
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        self.assertIn("#" + digest, acl)
        self.assertNotIn(self.password, acl)
        self.assertNotIn("@HCGW_REDIS_PASSWORD_SHA256@", acl)
        self.assertEqual([ln for ln in acl.splitlines() if ln and not ln.startswith("user ")],
                         [], "an ACL file has only user lines")
        with open("/proc/%d/cmdline" % self.redis.pid, "rb") as f:
            argv = f.read()
        self.assertIn(b"redis-server", argv, "the script became redis-server (exec)")
        self.assertNotIn(self.password.encode(), argv)

    def test_probe_needs_the_password(self):
        self.assertEqual(self.probe(self.password_file), 0)
        wrong = os.path.join(self.tmp, "wrong-password")
        with open(wrong, "w") as f:
            f.write("not-the-password\n")
        self.assertNotEqual(self.probe(wrong), 0)

    def test_both_replicas_share_the_bucket(self):
        for i, gw in enumerate(self.gws):
            before = metric(self.shared(gw, 1), "hcgw_quota_shared_decisions_total")
            r = gw.request("GET", "/contacts/1568834", headers={"Cache-Control": "no-cache"})
            self.assertEqual(r.status, 200, r)
            m = gw.request("GET", "/metrics").body.decode()
            self.assertEqual(metric(m, "hcgw_redis_up"), 1)
            self.assertGreater(metric(m, "hcgw_quota_shared_decisions_total"), before,
                               "replica %d's upstream call asked the shared bucket" % i)
            self.assertNotIn('hcgw_redis_errors_total{kind="auth"} 1', m)
            assert_clean_stderr(self, gw.proc, self.sim.key)
            self.assertNotIn(self.password, gw.proc.stderr_text())

    def test_acl_user_has_what_hcgw_needs(self):
        c = self.client()
        self.assertEqual(c("PING"), "PONG")
        self.assertEqual(c("SET", "hcgw:test:a", "1", "PX", "60000"), "OK")
        self.assertEqual(c("GET", "hcgw:test:a"), "1")
        self.assertEqual(c("INCR", "hcgw:test:n"), 1)
        self.assertEqual(c("PEXPIRE", "hcgw:test:n", "60000"), 1)
        self.assertGreater(c("PTTL", "hcgw:test:n"), 0)
        self.assertEqual(c("DEL", "hcgw:test:a", "hcgw:test:n"), 2)
        self.assertEqual(len(c("TIME")), 2)
        script = "redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000) return redis.call('GET', KEYS[1])"
        self.assertEqual(c("EVAL", script, 1, "hcgw:test:s", "v"), "v")
        sha = hashlib.sha1(script.encode()).hexdigest()
        self.assertEqual(c("EVALSHA", sha, 1, "hcgw:test:s", "w"), "w")

    def test_acl_user_has_nothing_else(self):
        c = self.client()
        refused = [("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "maxmemory"),
                   ("CONFIG", "SET", "save", "60 1"), ("KEYS", "*"), ("SCAN", "0"),
                   ("SELECT", "0"), ("INFO",), ("ACL", "LIST"), ("SHUTDOWN",),
                   ("DEBUG", "SLEEP", "0"), ("MONITOR",), ("CLIENT", "LIST"),
                   ("SCRIPT", "FLUSH"), ("SAVE",), ("BGSAVE",), ("SUBSCRIBE", "news"),
                   ("PUBLISH", "news", "x"), ("MODULE", "LIST"), ("REPLICAOF", "NO", "ONE"),
                   ("GET", "other:key"), ("SET", "other:key", "1"), ("DEL", "other:key"),
                   ("EVAL", "return 1", 1, "other:key")]
        for cmd in refused:
            with self.assertRaises(RespError, msg="%s was allowed" % (cmd,)) as e:
                c(*cmd)
            self.assertRegex(str(e.exception), r"^(NOPERM|ERR)", cmd)
        # A script runs with the user's rights: no command or key beyond them.
        for script, keys in (("return redis.call('FLUSHALL')", []),
                             ("return redis.call('SET', 'other:key', '1')", []),
                             ("return redis.call('GET', KEYS[1])", ["other:key"]),
                             ("return redis.call('CONFIG', 'GET', 'dir')", [])):
            with self.assertRaises(RespError, msg="script %r ran" % script):
                c("EVAL", script, len(keys), *keys)
        self.assertEqual(c("PING"), "PONG", "the connection is still fine")

    def test_default_user_is_off(self):
        c = self.client(user=None)
        with self.assertRaisesRegex(RespError, "NOAUTH"):
            c("GET", "hcgw:x")
        for args in (("AUTH", "anything"), ("AUTH", "default", ""), ("AUTH", "default", "x"),
                     ("AUTH", "hcgw", "not-the-password")):
            with self.assertRaisesRegex(RespError, "WRONGPASS"):
                c(*args)

    def test_zz_redis_away_then_back(self):
        # Last (unittest runs in name order): it restarts Redis under the other tests' feet.
        for gw in self.gws:
            self.shared(gw, 1)
        self.stop_redis()
        self.assertEqual(os.listdir(self.data_dir), [], "Redis wrote nothing to disk")
        for gw in self.gws:
            self.shared(gw, 0)
            r = gw.request("GET", "/contacts/1568834", headers={"Cache-Control": "no-cache"})
            self.assertEqual(r.status, 200, "answered from the fallback bucket: %r" % r)
        self.start_redis()
        for gw in self.gws:
            self.shared(gw, 1)
        self.assertEqual(self.sim.stats()["rate_limited"], 0)
        with open(self.redis_log) as f:
            self.assertNotIn(self.password, f.read())


if __name__ == "__main__":
    unittest.main()

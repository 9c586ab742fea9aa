"""The contact cache shared through Redis (docs/configuration.md, "The cache in Redis"), with a
real redis-server (redis_server.py):

- every rule of the local cache (test_cache.py) holds with the entries in Redis: the same test
  classes run again with a redis group;
- several replicas, one Redis: a read on B after a write on A sees the write without an
  upstream read; a hit on any replica saves the call for all; a read's answer that began before
  a write on another replica ended is not stored;
- Redis away: nothing is served from a cache (every read is an upstream call), answers go on;
  a write made while Redis was away retires every entry when Redis is back (the epoch moves),
  so no replica serves the state from before it.
"""
import threading
import time
import unittest
import uuid

import redis_server
import test_cache
from harness import Gateway, Sim, assert_clean_stderr, full_conf, http_request, wait_access, \
    wait_metric

REDIS = None


def setUpModule():
    global REDIS
    REDIS = redis_server.Redis()  # started


def tearDownModule():
    if REDIS is not None:
        REDIS.close()


def metric(text, name):
    return test_cache.metric(text, name)


def with_redis(cls):
    """@p cls of test_cache.py, its gateway with a redis group: the entries live in Redis."""

    class Shared(cls):
        @classmethod
        def setUpClass(klass):
            REDIS.command("FLUSHALL")
            klass.conf_groups = dict(test_cache.CACHE_ON)
            klass.conf_groups["redis"] = REDIS.group(expected_replicas=1)
            super().setUpClass()

    Shared.__name__ = Shared.__qualname__ = "Shared" + cls.__name__
    return Shared


# The local cache's rules, again with Redis (the LRU bounds and hcgw_cache_entries are the
# local table's: MetricsTest and OffAndReloadTest stay in test_cache.py).
SharedHitTest = with_redis(test_cache.HitTest)
SharedConditionalTest = with_redis(test_cache.ConditionalTest)
SharedCacheControlTest = with_redis(test_cache.CacheControlTest)
SharedWriteThroughTest = with_redis(test_cache.WriteThroughTest)
SharedReadYourWritesAcrossWorkersTest = with_redis(test_cache.ReadYourWritesAcrossWorkersTest)
SharedSingleFlightTest = with_redis(test_cache.SingleFlightTest)


class FleetCase(unittest.TestCase):
    """Two or three replicas in front of one hcgw-sim, one Redis."""

    def setUp(self):
        if REDIS.proc is None:
            REDIS.start()
        REDIS.command("FLUSHALL")
        self.sim = Sim()
        self.gws = []

    def tearDown(self):
        if REDIS.proc is None:
            REDIS.start()
        for gw in self.gws:
            rc = gw.stop()
            assert_clean_stderr(self, gw.proc, self.sim.key)
            self.assertNotIn(redis_server.HCGW_PASSWORD, gw.proc.stderr_text())
            self.assertEqual(rc, 0, gw.proc.stderr_text()[-2000:])
        self.assertEqual(self.sim.stop(), 0)

    def gateway(self, workers=1):
        conf = full_conf(self.sim.base_url, cache={"ttl_ms": 60000},
                         redis=REDIS.group(expected_replicas=2))
        gw = Gateway(self.sim, conf=conf, workers=workers)
        self.gws.append(gw)
        self.wait_serving(gw, 1)
        return gw

    def wait_serving(self, gw, value, timeout=20):
        return wait_metric(gw, "hcgw_cache_shared", value, timeout)

    def new_contact(self):
        r = http_request(self.sim.port, "POST", "/v1/customers",
                         {"name": "shared-" + uuid.uuid4().hex[:8]},
                         {"Authorization": "Bearer " + self.sim.key})
        self.assertEqual(r.status, 201)
        return r.json()["id"]

    def gets(self):
        return self.sim.stats()["by_route"].get("GET /customers/{id}", 0)

    def get(self, gw, path, headers=None):
        rid = uuid.uuid4().hex
        mark = gw.proc.mark()
        h = {"X-Request-Id": rid}
        h.update(headers or {})
        r = gw.request("GET", path, headers=h)
        return r, wait_access(gw, rid, mark)


class FleetTest(FleetCase):
    def test_a_hit_on_any_replica_saves_the_call_for_all(self):
        a, b, c = self.gateway(), self.gateway(), self.gateway()
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        r, line = self.get(a, path)
        self.assertEqual((r.status, line["cache"]), (200, "miss"))
        self.assertEqual(r.header("Cache-Status"), "hcgw; fwd=miss; stored")
        n = self.gets()
        for gw in (b, c, a):
            r2, line = self.get(gw, path)
            self.assertEqual((r2.status, line["cache"]), (200, "hit"))
            self.assertEqual(r2.body, r.body)
            self.assertEqual(r2.header("ETag"), r.header("ETag"))
            self.assertTrue(r2.header("Cache-Status").startswith("hcgw; hit; ttl="))
            self.assertIsNotNone(r2.header("Age"))
        self.assertEqual(self.gets(), n, "three hits, no upstream read")
        m = b.request("GET", "/metrics").body.decode()
        self.assertGreaterEqual(metric(m, 'hcgw_cache_shared_operations_total{result="hit"}'), 1)

    def test_a_read_on_b_after_a_write_on_a_sees_the_write_without_a_call(self):
        a, b = self.gateway(), self.gateway()
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        for gw in (a, b):
            self.assertEqual(gw.request("GET", path).status, 200)  # an entry from before
        for i in range(10):
            name = "n%d" % i
            if i % 2:
                r = a.request("PATCH", path, {"name": name})
                self.assertEqual(r.status, 200, r)
                n = self.gets()
                r2, line = self.get(b, path)
                self.assertEqual(r2.json()["name"], name, i)
            else:
                r = a.request("PUT", path + "/tags/" + name)
                self.assertEqual(r.status, 200, r)
                n = self.gets()
                r2, line = self.get(b, path + "/tags")
                self.assertIn(name, [t["name"] for t in r2.json()["tags"]], i)
            self.assertEqual(line["cache"], "hit", i)
            self.assertEqual(self.gets(), n, "the write's answer served B: no upstream read")

    def test_a_delete_on_a_evicts_for_b(self):
        a, b = self.gateway(), self.gateway()
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.assertEqual(b.request("GET", path).status, 200)
        self.assertEqual(a.request("DELETE", path).status, 204)
        r, line = self.get(b, path)
        self.assertEqual((r.status, line["cache"]), (404, "miss"))

    def test_a_read_that_began_before_a_write_elsewhere_is_not_stored(self):
        # B's read is slow (the simulator holds it 1.5 s) and begins before A's write; A's write
        # ends first. B's answer (from before the write, maybe) must not become the entry:
        # C, reading after both, sees the write.
        a, b, c = self.gateway(), self.gateway(), self.gateway()
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.sim.script({"delay_ms": 1500, "count": 1})
        slow = {}

        def read_b():
            slow["r"] = b.request("GET", path, headers={"Cache-Control": "no-cache"})

        t = threading.Thread(target=read_b)
        t.start()
        time.sleep(0.4)
        r = a.request("PATCH", path, {"name": "after"})
        self.assertEqual(r.status, 200, r)
        t.join(30)
        self.assertEqual(slow["r"].status, 200)
        r, line = self.get(c, path)
        self.assertEqual(r.json()["name"], "after")
        m = b.request("GET", "/metrics").body.decode()
        self.assertGreaterEqual(metric(m, 'hcgw_cache_shared_operations_total{result="refused"}'),
                                1, "B's read was refused by the write mark")


class RedisAwayTest(FleetCase):
    def test_nothing_is_served_while_redis_is_away_and_answers_go_on(self):
        a = self.gateway()
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.assertEqual(a.request("GET", path).status, 200)
        self.assertEqual(self.get(a, path)[1]["cache"], "hit")
        REDIS.stop()
        self.wait_serving(a, 0)
        n = self.gets()
        for _ in range(3):
            r, line = self.get(a, path)
            self.assertEqual(r.status, 200)
            self.assertEqual(line["cache"], "miss")
        self.assertEqual(self.gets(), n + 3, "no cache while Redis is away")
        REDIS.start()
        self.wait_serving(a, 1)

    def test_a_write_redis_missed_retires_every_entry(self):
        # A and B share an entry; Redis's link is cut (stopped), A writes, Redis comes back with
        # its data (the entry from before A's write is still there: a restart that kept it,
        # like a partition between A and Redis). B must not serve it: A moves the epoch before
        # anything is served again.
        a, b = self.gateway(), self.gateway()
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.assertEqual(a.request("GET", path).status, 200)
        self.assertEqual(self.get(b, path)[1]["cache"], "hit")
        REDIS.pause()
        try:
            r = a.request("PATCH", path, {"name": "while-away"})
            self.assertEqual(r.status, 200, r)
        finally:
            REDIS.resume()
        # A knows it lost a write: it serves nothing until the epoch moved; it moves as soon
        # as A is asked again with Redis up.
        self.wait_serving(a, 1)
        r, line = self.get(b, path)
        self.assertEqual(r.json()["name"], "while-away")
        m = a.request("GET", "/metrics").body.decode()
        self.assertGreaterEqual(metric(m, "hcgw_cache_shared_epochs_total"), 1)


class RefusedTest(FleetCase):
    def test_an_acl_without_the_cache_keeps_the_shared_quota(self):
        # The ACL of a quota-only setup: the cache's scripts are refused (NOPERM). The cache
        # stands aside with one log line; the connection and the shared quota stay.
        import os
        import tempfile
        REDIS.command("ACL", "SETUSER", "quotaonly", "on", ">quota-only-password-0123",
                      "~hcgw:*", "resetchannels", "-@all", "+eval", "+evalsha", "+get", "+set",
                      "+pttl", "+time", "+ping")
        pwdir = tempfile.mkdtemp(prefix="hcgw-pw-")
        pw = os.path.join(pwdir, "password")
        with open(pw, "w") as f:
            f.write("quota-only-password-0123\n")
        os.chmod(pw, 0o600)
        group = REDIS.group(expected_replicas=2, username="quotaonly", password_file=pw)
        conf = full_conf(self.sim.base_url, cache={"ttl_ms": 60000},
                         quota={"requests_per_minute": 600, "burst": 10},
                         redis=group)
        gw = Gateway(self.sim, conf=conf)
        self.gws.append(gw)
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        n = self.gets()
        for _ in range(3):
            r, line = self.get(gw, path)
            self.assertEqual(r.status, 200)
        self.assertEqual(self.gets(), n + 3, "no entry is served")
        m = gw.request("GET", "/metrics").body.decode()
        self.assertEqual(metric(m, "hcgw_cache_shared"), 0)
        self.assertEqual(metric(m, "hcgw_redis_up"), 1, "the connection stays")
        self.assertEqual(metric(m, "hcgw_quota_shared"), 1, "and the shared quota on it")
        self.assertGreater(metric(m, "hcgw_quota_shared_decisions_total"), 0)
        lines = [o for o in gw.proc.json_lines()
                 if o.get("msg", "").startswith("Redis refused the shared contact cache")]
        self.assertEqual(len(lines), 1, "one line, not one per read")
        # Redis 7 (Debian 12) says "can't run this command"; Redis 8 (Debian 13) "has no
        # permissions to run the 'hmget' command".
        self.assertRegex(lines[0]["error"], r"can't run this command|no permissions to run")
        self.assertNotIn("quota-only-password-0123", gw.proc.stderr_text())


if __name__ == "__main__":
    unittest.main()

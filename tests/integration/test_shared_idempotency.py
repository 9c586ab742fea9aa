"""Idempotency-Key across replicas (docs/configuration.md, "Idempotency keys across replicas"):
two hcgw processes with one Redis (a real redis-server, redis_server.py) in front of one
hcgw-sim. Each replica has its own local table, so every check below fails without the records
in Redis (the second replica would create the contact again):

- a key used on A is replayed on B (status, body, Idempotent-Replayed: true), with one
  upstream create for both; another body on B is 422 idempotency_key_reused;
- while A's create with a key is still running (the simulator holds it), the key on B is 409
  idempotency_key_in_progress, without an upstream call;
- A's create times out after the simulator applied it (an unknown outcome): the retry on B
  searches HelpCrunch, answers 201 with the contact A's attempt made, and creates nothing;
- Redis away: a create with a key still works (the replica's own table decides, and
  hcgw_idempotency_fallbacks_total says so); once Redis is back, what that table kept is
  replayed, and shared with the other replica.
- A replica stopped (SIGTERM) while a create waits on a frozen Redis: the create is answered
  503 shutting_down at the drain deadline, nothing is sent upstream, and hcgw exits cleanly.
"""
import json
import re
import threading
import time
import unittest
import uuid

import redis_server
from harness import Gateway, Sim, assert_clean_stderr, full_conf, http_request, wait_access

CREATE = "/contacts"
UP_WAIT_S = 20


def key():
    return "k-" + uuid.uuid4().hex


def person(tag=None):
    tag = tag or uuid.uuid4().hex[:12]
    return {"name": "Ann " + tag, "email": "ann-%s@example.com" % tag}


def sample(text, name, **labels):
    """The value of the sample of family @p name with these labels, or None."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    pattern = r"^%s%s (\S+)$" % (re.escape(name), re.escape("{%s}" % want) if want else "")
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


class TwoReplicasCase(unittest.TestCase):
    """One Redis, one simulator and two replicas (A and B) for the class."""

    upstream = {}

    @classmethod
    def setUpClass(cls):
        cls.redis = redis_server.Redis()
        cls.sim = None
        cls.gws = []
        try:
            cls.sim = Sim()
            for _ in range(2):
                conf = full_conf(cls.sim.base_url, upstream=cls.upstream,
                                 redis=cls.redis.group(timeout_ms=200))
                cls.gws.append(Gateway(cls.sim, conf=conf))
        except BaseException:
            cls.stop_all()
            raise
        cls.a, cls.b = cls.gws

    @classmethod
    def stop_all(cls):
        tc = unittest.TestCase()
        for gw in cls.gws:
            rc = gw.stop()
            assert_clean_stderr(tc, gw.proc, cls.sim.key)
            tc.assertNotIn(redis_server.HCGW_PASSWORD, gw.proc.stderr_text())
            tc.assertEqual(rc, 0, gw.proc.stderr_text()[-2000:])
        if cls.sim is not None:
            tc.assertEqual(cls.sim.stop(), 0)
        cls.redis.close()

    @classmethod
    def tearDownClass(cls):
        cls.stop_all()

    def setUp(self):
        if self.redis.proc is None:
            self.redis.start()
        self.sim.reset()
        for gw in self.gws:
            self.wait_redis_up(gw)

    def wait_redis_up(self, gw):
        deadline = time.monotonic() + UP_WAIT_S
        while time.monotonic() < deadline:
            if sample(self.scrape(gw), "hcgw_redis_up") == 1:
                return
            time.sleep(0.1)
        self.fail("hcgw never connected to Redis")

    def scrape(self, gw):
        return gw.request("GET", "/metrics").body.decode()

    def fallbacks(self, gw, op):
        return sample(self.scrape(gw), "hcgw_idempotency_fallbacks_total", op=op)

    def create(self, gw, body, idem, rid=None):
        hdrs = {"Content-Type": "application/json", "X-Request-Id": rid or uuid.uuid4().hex,
                "Idempotency-Key": idem}
        r = gw.request("POST", CREATE, json.dumps(body), hdrs)
        self.assertNotIn(self.sim.key.encode(), r.body)
        return r

    def create_logged(self, gw, body, idem):
        """create, and its access line."""
        rid = uuid.uuid4().hex
        mark = gw.proc.mark()
        r = self.create(gw, body, idem, rid)
        return r, wait_access(gw, rid, mark)

    def creates(self):
        return [c for c in self.sim.requests()
                if c["method"] == "POST" and c["path"] == "/v1/customers"]

    def searches(self):
        return [c for c in self.sim.requests()
                if c["method"] == "POST" and c["path"] == "/v1/customers/search"]

    def found_by(self, field, value):
        r = http_request(self.sim.port, "POST", "/v1/customers/search",
                         {"filter": [{"field": "customers." + field, "operator": "=",
                                      "value": value}]},
                         {"Authorization": "Bearer " + self.sim.key})
        self.assertEqual(r.status, 200, r)
        return r.json()["data"]

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json()["error"]["code"], code, r)


class SharedIdempotencyTest(TwoReplicasCase):

    def test_a_then_b_replays_one_create(self):
        k, body = key(), person()
        first, line = self.create_logged(self.a, body, k)
        self.assertEqual(first.status, 201, first)
        self.assertIsNone(first.header("Idempotent-Replayed"))
        self.assertEqual(line["idempotency"], "stored")
        for gw in (self.b, self.a, self.b):
            again, line = self.create_logged(gw, body, k)
            self.assertEqual(again.status, 201, again)
            self.assertEqual(again.header("Idempotent-Replayed"), "true")
            self.assertEqual(again.body, first.body)
            self.assertEqual(line["idempotency"], "replayed")
            self.assertEqual(line["attempts"], 0)
        self.assertEqual(len(self.creates()), 1, "one upstream create for four requests")
        self.assertEqual(len(self.found_by("email", body["email"])), 1)
        # Another body with the key, on either replica: 422, no upstream call.
        before = self.sim.count()
        for gw in (self.b, self.a):
            r, line = self.create_logged(gw, dict(body, name="Someone else"), k)
            self.assertError(r, 422, "idempotency_key_reused")
            self.assertEqual(line["idempotency"], "reused")
        self.assertEqual(self.sim.count(), before)
        # Redis answered every step.
        for gw in self.gws:
            for op in ("begin", "complete", "abandon"):
                self.assertEqual(self.fallbacks(gw, op), 0, op)
        self.assertEqual(sample(self.scrape(self.b), "hcgw_idempotency_replays_total"), 2)

    def test_in_progress_on_the_other_replica_is_409(self):
        k, body = key(), person()
        self.sim.script({"delay_ms": 1500})
        results = {}
        t = threading.Thread(target=lambda: results.setdefault("a", self.create(self.a, body, k)))
        t.start()
        # Wait until A's create reached the simulator, then send the key to B.
        deadline = time.monotonic() + 10
        while not self.creates() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(self.creates()), 1, "A's create never reached the simulator")
        before = self.sim.count()
        r, line = self.create_logged(self.b, body, k)
        self.assertError(r, 409, "idempotency_key_in_progress")
        self.assertEqual(line["idempotency"], "in_progress")
        self.assertEqual(self.sim.count(), before, "B spent an upstream call")
        t.join(30)
        self.assertEqual(results["a"].status, 201, results["a"])
        again = self.create(self.b, body, k)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.body, results["a"].body)
        self.assertEqual(len(self.creates()), 1)

    def test_redis_away_falls_back_then_shares(self):
        k, body = key(), person()
        self.redis.stop()
        try:
            first = self.create(self.a, body, k)
            self.assertEqual(first.status, 201, first)
            again = self.create(self.a, body, k)
            self.assertEqual(again.header("Idempotent-Replayed"), "true")
            self.assertEqual(again.body, first.body)
            self.assertGreaterEqual(self.fallbacks(self.a, "begin"), 2)
            self.assertEqual(sample(self.scrape(self.a), "hcgw_redis_up"), 0)
        finally:
            self.redis.start()
        for gw in self.gws:
            self.wait_redis_up(gw)
        # Redis came back empty: A's table still has the answer, replays it, and shares it.
        before = self.fallbacks(self.a, "begin")
        r = self.create(self.a, body, k)
        self.assertEqual(r.header("Idempotent-Replayed"), "true")
        self.assertEqual(self.fallbacks(self.a, "begin"), before)
        r = self.create(self.b, body, k)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.header("Idempotent-Replayed"), "true")
        self.assertEqual(r.body, first.body)
        self.assertEqual(len(self.creates()), 1)


class RecoveryAcrossReplicasTest(TwoReplicasCase):
    """A's create times out after the simulator applied it; the retry goes to B."""

    upstream = {"timeout_ms": 400, "max_retries": 0}

    def test_retry_on_b_finds_the_contact_a_made(self):
        for field in ("email", "userId"):
            with self.subTest(field=field):
                self.sim.reset()
                k, body = key(), person()
                if field == "userId":
                    body["userId"] = "u-" + uuid.uuid4().hex[:10]
                # The simulator applies the create after 1 s; A gives up at 400 ms.
                self.sim.script({"delay_ms": 1000})
                first, line = self.create_logged(self.a, body, k)
                self.assertEqual(first.status, 504, first)
                self.assertEqual(first.json()["error"]["code"], "upstream_timeout")
                self.assertEqual(line["idempotency"], "unknown")
                deadline = time.monotonic() + 10
                applied = []
                while not applied and time.monotonic() < deadline:
                    applied = self.found_by(field, body[field])
                    if not applied:
                        time.sleep(0.05)
                self.assertEqual(len(applied), 1, "the simulator never applied the create")
                searched = len(self.searches())  # this test's own, looking for it
                again, line = self.create_logged(self.b, body, k)
                self.assertEqual(again.status, 201, again)
                self.assertEqual(again.json()["id"], applied[0]["id"])
                self.assertIsNone(again.header("Idempotent-Replayed"))
                self.assertEqual(line["idempotency"], "recovered")
                self.assertEqual(line["upstream_status"], 200)
                self.assertEqual(line["attempts"], 1)
                searches = self.searches()
                self.assertEqual(len(searches), searched + 1, "B searched once")
                self.assertEqual(json.loads(searches[-1]["body"]),
                                 {"filter": [{"field": "customers." + field, "operator": "=",
                                              "value": body[field]}], "limit": 100})
                # One create sent, one contact in the simulator.
                self.assertEqual(len(self.creates()), 1)
                self.assertEqual(len(self.found_by(field, body[field])), 1)
                # From now on the recovered answer is replayed, on A too.
                third = self.create(self.a, body, k)
                self.assertEqual(third.header("Idempotent-Replayed"), "true")
                self.assertEqual(third.json()["id"], applied[0]["id"])
                self.assertEqual(len(self.creates()), 1)


class StopWhileWaitingTest(unittest.TestCase):

    def test_sigterm_while_a_create_waits_on_redis(self):
        redis = redis_server.Redis()
        sim = None
        gw = None
        try:
            sim = Sim()
            # Redis's deadline far beyond the drain's: only the drain ends the wait.
            gw = Gateway(sim, conf=full_conf(sim.base_url, server={"drain_timeout_ms": 300},
                                             redis=redis.group(timeout_ms=8000)))
            deadline = time.monotonic() + UP_WAIT_S
            while sample(gw.request("GET", "/metrics").body.decode(), "hcgw_redis_up") != 1:
                self.assertLess(time.monotonic(), deadline, "hcgw never connected to Redis")
                time.sleep(0.1)
            redis.pause()
            results = {}

            def create():
                results["r"] = gw.request(
                    "POST", CREATE, json.dumps(person()),
                    {"Content-Type": "application/json", "Idempotency-Key": key()})

            t = threading.Thread(target=create)
            t.start()
            # Let the create reach hcgw and wait on Redis (a late one gets the same 503).
            time.sleep(1.0)
            rc = gw.stop()
            t.join(30)
            self.assertEqual(rc, 0, gw.proc.stderr_text()[-2000:])
            assert_clean_stderr(self, gw.proc, sim.key)
            r = results["r"]
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["error"]["code"], "shutting_down")
            self.assertEqual(sim.count(), 0, "nothing goes upstream")
        finally:
            redis.resume()
            if gw is not None and gw.proc.proc.poll() is None:
                gw.stop()
            if sim is not None:
                self.assertEqual(sim.stop(), 0)
            redis.close()


if __name__ == "__main__":
    unittest.main()

"""The contact cache (conf "cache"; docs/configuration.md, "The contact cache"): reads of a
contact served from hcgw's cache cost no upstream call; Cache-Status, Age, ETag and 304;
Cache-Control no-cache and max-age; hcgw's own writes refresh the entry (read-your-writes, across
workers); a delete evicts; errors are not stored; metrics; settings applied on reload.

Every test uses contacts of its own (created on the simulator directly, not through hcgw), since
the cache outlives the simulator's reset between tests. hcgw-sim counts the calls it was sent.
"""
import json
import os
import re
import signal
import socket
import threading
import time
import unittest
import uuid

from harness import GatewayCase, Gateway, Sim, assert_clean_stderr, full_conf, http_request, \
    wait_access

CACHE_ON = {"cache": {"ttl_ms": 60000, "max_entries": 1000, "max_bytes": 1048576}}


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not found" % name)


class CacheCase(GatewayCase):
    conf_groups = CACHE_ON

    def setUp(self):
        # No simulator reset between tests: it would hand out the ids of earlier tests' contacts
        # again, which hcgw still holds. Tests count calls as differences.
        self.sim.call("DELETE", "/_sim/script")

    def sim_direct(self, method, path, body=None):
        """A call on the simulator itself, as if made outside hcgw (HelpCrunch's own UI)."""
        r = http_request(self.sim.port, method, "/v1" + path, body,
                         {"Authorization": "Bearer " + self.sim.key})
        self.assertLess(r.status, 300, r)
        return r.json() if method != "DELETE" else None

    def new_contact(self, **fields):
        fields.setdefault("name", "cache-" + uuid.uuid4().hex[:8])
        return self.sim_direct("POST", "/customers", fields)["id"]

    def gets(self):
        return self.sim.stats()["by_route"].get("GET /customers/{id}", 0)

    def get(self, path, headers=None):
        rid = uuid.uuid4().hex
        mark = self.gw.proc.mark()
        h = {"X-Request-Id": rid}
        h.update(headers or {})
        r = self.req("GET", path, headers=h)
        line = wait_access(self.gw, rid, mark)
        return r, line


class HitTest(CacheCase):
    def test_second_read_is_a_hit_with_age_and_same_etag(self):
        cid = self.new_contact()
        before = self.gets()
        r1, l1 = self.get("/contacts/%d" % cid)
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.header("Cache-Status"), "hcgw; fwd=miss; stored")
        self.assertIsNone(r1.header("Age"))
        self.assertRegex(r1.header("ETag"), r'^"[0-9a-f]{32}"$')
        self.assertEqual(l1["cache"], "miss")
        self.assertEqual(self.gets(), before + 1)
        r2, l2 = self.get("/contacts/%d" % cid)
        self.assertEqual(self.gets(), before + 1, "the second read cost no upstream call")
        self.assertEqual(r2.status, 200)
        self.assertEqual(r2.body, r1.body)
        self.assertEqual(r2.header("ETag"), r1.header("ETag"))
        self.assertRegex(r2.header("Cache-Status"), r"^hcgw; hit; ttl=(59|60)$")
        self.assertIn(r2.header("Age"), ("0", "1"))
        self.assertEqual(l2["cache"], "hit")
        self.assertEqual(l2["attempts"], 0)
        self.assertNotIn("upstream_status", l2)
        # What hcgw tells caches downstream: its own cache is private to it.
        self.assertEqual(r2.header("Cache-Control"), "no-store")

    def test_tags_served_from_the_same_entry(self):
        cid = self.new_contact()
        self.sim_direct("PUT", "/customers/%d/tags" % cid, {"tags": [{"name": "Lead"}]})
        before = self.gets()
        r1, l1 = self.get("/contacts/%d/tags" % cid)
        self.assertEqual(r1.status, 200)
        self.assertEqual(l1["cache"], "miss")
        r2, l2 = self.get("/contacts/%d" % cid)
        r3, l3 = self.get("/contacts/%d/tags" % cid)
        self.assertEqual(self.gets(), before + 1, "one upstream call served all three")
        self.assertEqual((l2["cache"], l3["cache"]), ("hit", "hit"))
        self.assertEqual(r3.body, r1.body)
        self.assertEqual([t["name"] for t in r3.json()["tags"]], ["Lead"])
        self.assertEqual(r2.json()["tags"], r3.json()["tags"])
        # The tags answer has its own ETag: the hash of its own body.
        self.assertNotEqual(r3.header("ETag"), r2.header("ETag"))

    def test_errors_are_not_stored(self):
        before = self.gets()
        for _ in range(2):
            r, line = self.get("/contacts/999999999")
            self.assertEnvelope(r, 404, "not_found", 404)
            self.assertEqual(line["cache"], "miss")
            self.assertIsNone(r.header("Cache-Status"))
        self.assertEqual(self.gets(), before + 2, "a 404 is asked for again")


class ConditionalTest(CacheCase):
    def test_if_none_match_of_a_fresh_entry_is_304_without_a_call(self):
        cid = self.new_contact()
        r1, _ = self.get("/contacts/%d" % cid)
        before = self.gets()
        r2, l2 = self.get("/contacts/%d" % cid, {"If-None-Match": r1.header("ETag")})
        self.assertEqual(r2.status, 304)
        self.assertEqual(r2.body, b"")
        self.assertEqual(r2.header("ETag"), r1.header("ETag"))
        self.assertRegex(r2.header("Cache-Status"), r"^hcgw; hit; ttl=")
        self.assertEqual(l2["cache"], "revalidated")
        self.assertEqual(l2["status"], 304)
        self.assertEqual(self.gets(), before)
        r3, l3 = self.get("/contacts/%d" % cid, {"If-None-Match": '"nope", W/"other"'})
        self.assertEqual(r3.status, 200)
        self.assertEqual(r3.body, r1.body)
        self.assertEqual(l3["cache"], "hit")

    def test_a_changed_contact_has_a_new_etag(self):
        cid = self.new_contact()
        r1, _ = self.get("/contacts/%d" % cid)
        self.req("PATCH", "/contacts/%d" % cid, {"name": "renamed"})
        r2, l2 = self.get("/contacts/%d" % cid, {"If-None-Match": r1.header("ETag")})
        self.assertEqual(r2.status, 200, "the old ETag no longer matches")
        self.assertEqual(r2.json()["name"], "renamed")
        self.assertNotEqual(r2.header("ETag"), r1.header("ETag"))


class CacheControlTest(CacheCase):
    def test_no_cache_forces_a_call_and_refreshes(self):
        cid = self.new_contact(name="before")
        self.get("/contacts/%d" % cid)
        # Changed outside hcgw: the cache does not know, for up to ttl_ms.
        self.sim_direct("PATCH", "/customers/%d" % cid, {"name": "outside"})
        r, line = self.get("/contacts/%d" % cid)
        self.assertEqual((r.json()["name"], line["cache"]), ("before", "hit"))
        for cc in ("no-cache", "max-age=0"):
            before = self.gets()
            r, line = self.get("/contacts/%d" % cid, {"Cache-Control": cc})
            self.assertEqual(self.gets(), before + 1, cc)
            self.assertEqual(r.json()["name"], "outside")
            self.assertEqual(r.header("Cache-Status"), "hcgw; fwd=request; stored")
            self.assertEqual(line["cache"], "bypass")
        r, line = self.get("/contacts/%d" % cid)
        self.assertEqual((r.json()["name"], line["cache"]), ("outside", "hit"))

    def test_max_age_limits_the_age_accepted(self):
        cid = self.new_contact()
        self.get("/contacts/%d" % cid)
        time.sleep(1.3)
        before = self.gets()
        r, line = self.get("/contacts/%d" % cid, {"Cache-Control": "max-age=60"})
        self.assertEqual(line["cache"], "hit")
        self.assertIn(r.header("Age"), ("1", "2"))
        self.assertEqual(self.gets(), before)
        r, line = self.get("/contacts/%d" % cid, {"Cache-Control": "max-age=1"})
        self.assertEqual(line["cache"], "miss", "older than 1 s: asked again")
        self.assertEqual(r.header("Cache-Status"), "hcgw; fwd=miss; stored")
        self.assertEqual(self.gets(), before + 1)
        r, line = self.get("/contacts/%d" % cid, {"Cache-Control": "max-age=1"})
        self.assertEqual(line["cache"], "hit", "the refreshed entry is young")


class WriteThroughTest(CacheCase):
    def test_writes_refresh_the_entry(self):
        cid = self.new_contact()
        self.get("/contacts/%d" % cid)
        path = "/contacts/%d" % cid
        writes = [
            ("PUT", path + "/tags/Lead", None, lambda c: "Lead" in [t["name"] for t in c["tags"]]),
            ("POST", path + "/tags", {"tags": ["PPC", "VIP"]},
             lambda c: {"PPC", "VIP"} <= {t["name"] for t in c["tags"]}),
            ("DELETE", path + "/tags/Lead", None,
             lambda c: "Lead" not in [t["name"] for t in c["tags"]]),
            ("DELETE", path + "/tags", {"tags": ["PPC"]},
             lambda c: [t["name"] for t in c["tags"]] == ["VIP"]),
            ("PATCH", path, {"name": "patched"}, lambda c: c["name"] == "patched"),
            ("PUT", path + "/block", None, lambda c: c["blocked"] is True),
            ("DELETE", path + "/block", None, lambda c: c["blocked"] is False),
        ]
        for method, p, body, check in writes:
            w = self.req(method, p, body)
            self.assertEqual(w.status, 200, (method, p, w))
            before = self.sim.count()
            r, line = self.get(path)
            self.assertEqual(line["cache"], "hit", (method, p))
            self.assertEqual(self.sim.count(), before)
            self.assertTrue(check(r.json()), (method, p, r.json()))
            self.assertEqual(r.body, w.body, "the read answers what the write answered")

    def test_create_stores_under_the_new_id(self):
        w = self.req("POST", "/contacts", {"name": "created-" + uuid.uuid4().hex[:6]})
        self.assertEqual(w.status, 201)
        cid = w.json()["id"]
        before = self.sim.count()
        r, line = self.get("/contacts/%d" % cid)
        self.assertEqual(line["cache"], "hit")
        self.assertEqual(self.sim.count(), before)
        self.assertEqual(r.body, w.body)

    def test_a_failed_write_drops_the_entry(self):
        cid = self.new_contact()
        self.get("/contacts/%d" % cid)
        self.sim.script({"status": 500, "json": {"errors": [{"code": "x", "message": "x"}]},
                         "count": 5})
        w = self.req("PATCH", "/contacts/%d" % cid, {"name": "maybe"})
        self.assertGreaterEqual(w.status, 500)
        self.sim.call("DELETE", "/_sim/script")
        r, line = self.get("/contacts/%d" % cid)
        self.assertEqual(line["cache"], "miss", "whether the write went through is unknown")

    def test_delete_evicts(self):
        cid = self.new_contact()
        self.get("/contacts/%d" % cid)
        self.assertEqual(self.req("DELETE", "/contacts/%d" % cid).status, 204)
        r, line = self.get("/contacts/%d" % cid)
        self.assertEqual(line["cache"], "miss")
        self.assertEnvelope(r, 404, "not_found", 404)

    def test_delete_that_finds_nothing_evicts_too(self):
        cid = self.new_contact()
        self.get("/contacts/%d" % cid)
        self.sim_direct("DELETE", "/customers/%d" % cid)
        d = self.req("DELETE", "/contacts/%d" % cid)
        self.assertEnvelope(d, 404, "not_found", 404)
        r, line = self.get("/contacts/%d" % cid)
        self.assertEqual(line["cache"], "miss")
        self.assertEqual(r.status, 404)


class MetricsTest(CacheCase):
    def test_metrics(self):
        def m():
            return self.req("GET", "/metrics").body.decode()
        cid = self.new_contact()
        t0 = m()
        r, _ = self.get("/contacts/%d" % cid)
        self.get("/contacts/%d" % cid)
        self.get("/contacts/%d" % cid, {"If-None-Match": r.header("ETag")})
        self.get("/contacts/%d" % cid, {"Cache-Control": "no-cache"})
        t1 = m()
        for result, n in (("hit", 1), ("miss", 1), ("bypass", 1), ("revalidated", 1)):
            name = 'hcgw_cache_lookups_total{result="%s"}' % result
            self.assertEqual(metric(t1, name) - metric(t0, name), n, result)
        for reason, n in (("cache", 1), ("not_modified", 1)):
            name = 'hcgw_upstream_calls_saved_total{reason="%s"}' % reason
            self.assertEqual(metric(t1, name) - metric(t0, name), n, reason)
        self.assertGreaterEqual(metric(t1, "hcgw_cache_entries"), 1)
        self.assertGreater(metric(t1, "hcgw_cache_bytes"), len(r.body))


class ReadYourWritesAcrossWorkersTest(CacheCase):
    """Four workers, each with its own loop, one cache: a read that starts after a write was
    answered sees it, whichever worker serves either."""
    workers = 4

    def test_each_read_after_a_write_sees_it(self):
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        for i in range(40):
            self.assertEqual(self.req("GET", path).status, 200)
            name = "n%d" % i
            if i % 2:
                self.assertEqual(self.req("PATCH", path, {"name": name}).status, 200)
                self.assertEqual(self.req("GET", path).json()["name"], name, i)
            else:
                self.assertEqual(self.req("PUT", path + "/tags/" + name).status, 200)
                tags = [t["name"] for t in self.req("GET", path + "/tags").json()["tags"]]
                self.assertIn(name, tags, i)


class SingleFlightTest(CacheCase):
    """Concurrent reads of one contact that miss share one upstream call (per worker: one
    worker here); each caller gets the same status and body, an error envelope with its own
    request_id; a caller who hangs up does not cancel the call the others wait on."""

    def concurrent_gets(self, path, n, delay_ms):
        self.sim.script({"delay_ms": delay_ms})
        rids = [uuid.uuid4().hex for _ in range(n)]
        results = {}
        mark = self.gw.proc.mark()

        def one(rid):
            results[rid] = self.req("GET", path, headers={"X-Request-Id": rid})

        threads = [threading.Thread(target=one, args=(rid,)) for rid in rids]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(30)
        lines = [wait_access(self.gw, rid, mark) for rid in rids]
        return [results[rid] for rid in rids], lines

    def test_concurrent_misses_share_one_call(self):
        cid = self.new_contact()
        before = self.gets()
        rs, lines = self.concurrent_gets("/contacts/%d" % cid, 5, 800)
        self.assertEqual(self.gets(), before + 1, "five readers, one upstream call")
        self.assertEqual({r.status for r in rs}, {200})
        self.assertEqual(len({r.body for r in rs}), 1, "the same body for each")
        self.assertEqual(sorted(l["cache"] for l in lines), ["collapsed"] * 4 + ["miss"])
        self.assertEqual(sorted(r.header("Cache-Status") for r in rs),
                         ["hcgw; fwd=miss; collapsed"] * 4 + ["hcgw; fwd=miss; stored"])
        self.assertEqual(sorted(l["attempts"] for l in lines), [0, 0, 0, 0, 1])
        metrics = self.req("GET", "/metrics").body.decode()
        self.assertGreaterEqual(
            metric(metrics, 'hcgw_upstream_calls_saved_total{reason="collapsed"}'), 4)
        self.assertEqual(metric(metrics, "hcgw_in_flight"), 0)

    def test_a_shared_error_has_each_callers_request_id(self):
        self.sim.script({"status": 404, "delay_ms": 800,
                         "json": {"errors": [{"code": "not_found", "message": "gone"}]}})
        before = self.gets()
        rs, lines = self.concurrent_gets("/contacts/%d" % 999999998, 4, 0)
        self.assertEqual(self.gets(), before + 1)
        ids = set()
        for r in rs:
            err = self.assertEnvelope(r, 404, "not_found", 404)
            ids.add(err["request_id"])
        self.assertEqual(len(ids), 4, "each envelope names its own caller's request")
        self.assertEqual(sorted(l["cache"] for l in lines), ["collapsed"] * 3 + ["miss"])

    def test_a_caller_who_hangs_up_does_not_cancel_the_shared_call(self):
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.sim.script({"delay_ms": 1500})
        before = self.gets()
        mark = self.gw.proc.mark()
        leader_rid = uuid.uuid4().hex
        sock = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
        sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n\r\n"
                      % (path, leader_rid)).encode())
        deadline = time.monotonic() + 5
        while self.gets() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.req("GET", path)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        sock.close()  # the caller who started the call hangs up
        leader = wait_access(self.gw, leader_rid, mark)
        self.assertEqual(leader["status"], 499)
        for t in threads:
            t.join(30)
        self.assertEqual([r.status for r in results], [200, 200, 200])
        self.assertEqual(results[0].json()["id"], cid)
        self.assertEqual(self.gets(), before + 1, "one call, not cancelled, not repeated")
        r, line = self.get(path)
        self.assertEqual(line["cache"], "hit", "the shared call's answer was stored")
        metrics = self.req("GET", "/metrics").body.decode()
        self.assertEqual(metric(metrics, "hcgw_in_flight"), 0)

    def test_a_read_after_a_write_does_not_join_an_older_read(self):
        cid = self.new_contact(name="old")
        path = "/contacts/%d" % cid
        # A slow read starts; a write to the contact is answered meanwhile; a read that starts
        # after the write's answer must not join the older read (nor see the old name).
        self.sim.script({"delay_ms": 1000})
        slow = []
        t = threading.Thread(target=lambda: slow.append(self.req("GET", path)))
        t.start()
        time.sleep(0.3)
        self.assertEqual(self.req("PATCH", path, {"name": "new"}).status, 200)
        r, line = self.get(path)
        self.assertEqual(r.json()["name"], "new")
        self.assertNotEqual(line["cache"], "collapsed")
        t.join(30)


class OffAndReloadTest(unittest.TestCase):
    def test_reload_applies_the_settings(self):
        sim = Sim()
        gw = None
        try:
            gw = Gateway(sim, conf={"cache": {"ttl_ms": 60000}})
            path = "/contacts/1568834"
            gw.request("GET", path)
            n = sim.count()
            self.assertEqual(gw.request("GET", path).header("Cache-Status")[:9], "hcgw; hit")
            self.assertEqual(sim.count(), n)

            def reload(cache):
                with open(gw.conf_path, "w") as f:
                    f.write(full_conf(sim.base_url, cache=cache))
                mark = gw.proc.mark()
                gw.proc.proc.send_signal(signal.SIGHUP)
                gw.proc.wait_line(lambda o: isinstance(o, dict)
                                  and o.get("msg") == "configuration reloaded", stream="err",
                                  since=mark)

            reload({"ttl_ms": 0})
            metrics = gw.request("GET", "/metrics").body.decode()
            self.assertEqual(metric(metrics, "hcgw_cache_entries"), 0, "off: nothing kept")
            for _ in range(2):
                r = gw.request("GET", path)
                self.assertEqual(r.status, 200)
                self.assertIsNone(r.header("Cache-Status"), "no cache, no Cache-Status")
                self.assertIsNotNone(r.header("ETag"))
            self.assertEqual(sim.count(), n + 2, "off: every read is a call")
            reload({"ttl_ms": 60000, "max_entries": 2})
            for cid in (1568834, 1568835, 1568836):
                gw.request("GET", "/contacts/%d" % cid)
            metrics = gw.request("GET", "/metrics").body.decode()
            self.assertEqual(metric(metrics, "hcgw_cache_entries"), 2, "max_entries applies")
            n = sim.count()
            gw.request("GET", "/contacts/1568834")
            self.assertEqual(sim.count(), n + 1, "the least recently used went")
            reload({"ttl_ms": 300})
            gw.request("GET", "/contacts/1568835")
            n = sim.count()
            time.sleep(0.5)
            gw.request("GET", "/contacts/1568835")
            self.assertEqual(sim.count(), n + 1, "older than ttl_ms: asked again")
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, sim.key)
            sim.stop()


if __name__ == "__main__":
    unittest.main()

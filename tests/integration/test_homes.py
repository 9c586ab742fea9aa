"""Contact homes (docs/architecture.md, "Contact homes"): with several workers, a contact's reads
that miss the cache and all its writes run on the contact's home worker, so that single flight,
the line of writes and tag coalescing hold for the whole gateway, whichever worker a caller's
connection landed on (the kernel spreads connections over workers through SO_REUSEPORT).

Each test opens many connections at once: with two workers, all of them landing on one worker
has a chance of 2^-(n-1), so a per-worker line or flight would show as extra upstream calls.
The single flight, ordering and coalescing suites also run whole with two and three workers.
"""
import json
import signal
import socket
import threading
import time
import unittest
import uuid

import test_cache
import test_order
from harness import Gateway, Sim, assert_clean_stderr, full_conf, http_request, wait_access


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not found" % name)


class SingleFlightTwoWorkers(test_cache.SingleFlightTest):
    workers = 2


class OrderThreeWorkers(test_order.OrderTest):
    workers = 3


class CoalesceTwoWorkers(test_order.CoalesceTest):
    workers = 2


class ManyConnectionsTest(test_cache.CacheCase):
    """Sixteen callers at once, each on its own connection, over two workers."""
    workers = 2
    conf_groups = dict(test_cache.CACHE_ON, coalesce={"tags": True})
    N = 16

    def calls_to(self, cid):
        prefix = "/v1/customers/%d" % cid
        return [c for c in self.sim.requests() if c["path"].startswith(prefix)]

    def at_once(self, requests):
        """Send every (method, path, body) at once, each on its own connection."""
        rids = [uuid.uuid4().hex for _ in requests]
        results = {}
        mark = self.gw.proc.mark()
        barrier = threading.Barrier(len(requests))

        def one(i):
            method, path, body = requests[i]
            barrier.wait(10)
            results[i] = self.req(method, path, body, headers={"X-Request-Id": rids[i]})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        lines = [wait_access(self.gw, rid, mark) for rid in rids]
        return [results[i] for i in range(len(requests))], lines

    def test_reads_on_both_workers_share_one_call(self):
        cid = self.new_contact()
        self.sim.script({"delay_ms": 800})
        before = self.gets()
        rs, lines = self.at_once([("GET", "/contacts/%d" % cid, None)] * self.N)
        self.assertEqual(self.gets(), before + 1, "sixteen readers on two workers, one call")
        self.assertEqual({r.status for r in rs}, {200})
        self.assertEqual(len({r.body for r in rs}), 1)
        self.assertEqual(sorted(l["cache"] for l in lines),
                         ["collapsed"] * (self.N - 1) + ["miss"])
        self.assertEqual(sum(l["attempts"] for l in lines), 1)
        metrics = self.req("GET", "/metrics").body.decode()
        self.assertEqual(metric(metrics, "hcgw_in_flight"), 0)

    def test_tag_adds_on_both_workers_wait_in_one_line_and_merge(self):
        cid = self.new_contact()
        base = "/contacts/%d/tags/" % cid
        # The first add is held upstream; the others arrive while it is held, on both workers,
        # and wait behind it in the contact's one line, where they merge into one call.
        self.sim.script({"delay_ms": 1500})
        first = []
        t = threading.Thread(target=lambda: first.append(self.req("PUT", base + "first")))
        t.start()
        deadline = time.monotonic() + 5
        while not self.calls_to(cid) and time.monotonic() < deadline:
            time.sleep(0.02)
        names = ["t%02d" % i for i in range(self.N)]
        rs, lines = self.at_once([("PUT", base + n, None) for n in names])
        t.join(30)
        self.assertEqual(first[0].status, 200)
        self.assertEqual({r.status for r in rs}, {200})
        calls = self.calls_to(cid)
        self.assertEqual(len(calls), 2, "the held add, then one merged call: %r" %
                         [c["body"] for c in calls])
        merged = sorted(t["name"] for t in json.loads(calls[1]["body"])["tags"])
        self.assertEqual(merged, names)
        self.assertEqual({l["coalesced"] for l in lines}, {self.N})
        final = {t["name"] for t in rs[-1].json()["tags"]}
        self.assertTrue(set(names) | {"first"} <= final)

    def test_adds_and_removes_keep_their_order_across_workers(self):
        cid = self.new_contact()
        path = "/contacts/%d/tags/x" % cid
        # add, remove, add, remove, ... sent one after another, each on a new connection (so
        # on either worker), while the first is held: they reach HelpCrunch in that order.
        self.sim.script({"delay_ms": 1000})
        results = []
        t = threading.Thread(target=lambda: results.append(self.req("PUT", path)))
        t.start()
        deadline = time.monotonic() + 5
        while not self.calls_to(cid) and time.monotonic() < deadline:
            time.sleep(0.02)
        methods = ["DELETE", "PUT"] * 4
        threads = []
        for m in methods:
            th = threading.Thread(target=lambda m=m: results.append(self.req(m, path)))
            th.start()
            threads.append(th)
            time.sleep(0.05)
        for th in [t] + threads:
            th.join(30)
        self.assertEqual({r.status for r in results}, {200})
        sent = [c["method"] for c in self.calls_to(cid)]
        self.assertEqual(sent, ["PUT"] + methods)
        tags = [x["name"] for x in self.sim_direct("GET", "/customers/%d" % cid)["tags"]]
        self.assertIn("x", tags, "the last write, an add, was applied last")

    def test_callers_who_hang_up_leave_the_others_their_answer(self):
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.sim.script({"delay_ms": 1500})
        before = self.gets()
        socks = []
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
            socks.append(s)
        deadline = time.monotonic() + 5
        while self.gets() == before and time.monotonic() < deadline:
            time.sleep(0.02)
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.req("GET", path)))
                   for _ in range(8)]
        for th in threads:
            th.start()
        time.sleep(0.3)
        for s in socks:
            s.close()
        for th in threads:
            th.join(30)
        self.assertEqual([r.status for r in results], [200] * 8)
        self.assertEqual(self.gets(), before + 1, "one call, not cancelled, not repeated")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            metrics = self.req("GET", "/metrics").body.decode()
            if metric(metrics, "hcgw_in_flight") == 0:
                break
            time.sleep(0.05)
        self.assertEqual(metric(metrics, "hcgw_in_flight"), 0)


class DrainTest(unittest.TestCase):
    def test_sigterm_waits_for_calls_handed_to_another_worker(self):
        sim = Sim()
        gw = None
        try:
            conf = full_conf(sim.base_url, server={"workers": 2, "drain_timeout_ms": 5000},
                             cache={"ttl_ms": 60000})
            gw = Gateway(sim, conf=conf, workers=2)
            cid = http_request(sim.port, "POST", "/v1/customers", {"name": "drain"},
                               {"Authorization": "Bearer " + sim.key}).json()["id"]
            sim.script({"delay_ms": 1000})
            results = []
            threads = [threading.Thread(target=lambda i=i: results.append(gw.request(
                "PUT", "/contacts/%d/tags/d%d" % (cid, i), None, None, 30)))
                for i in range(12)]
            for th in threads:
                th.start()
            deadline = time.monotonic() + 5
            while sim.count() == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
            gw.proc.proc.send_signal(signal.SIGTERM)
            for th in threads:
                th.join(30)
            self.assertEqual(sorted(r.status for r in results), [200] * 12,
                             [r.body for r in results if r.status != 200])
            rc = gw.stop()
            gw_stderr = gw.proc
            gw = None
            self.assertEqual(rc, 0)
            assert_clean_stderr(self, gw_stderr, sim.key)
        finally:
            if gw is not None:
                gw.stop()
            sim.stop()


if __name__ == "__main__":
    unittest.main()

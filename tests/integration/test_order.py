"""One contact, one line (docs/configuration.md, "One contact, one line"): writes to one contact
reach HelpCrunch one at a time, in arrival order; tag writes of one kind that wait together go
as one call (coalesce.tags), each caller answered with the customer it returned; a merged call
refused with 400 goes again item by item; a caller who hangs up while in line leaves it without
an upstream call; a write in line keeps its deadline; coalesce.tags applies on reload.

hcgw-sim holds the first write of each test with a scripted delay (its journal records a call
when it arrives, before the delay), so that the writes sent after it wait in line.
"""
import json
import signal
import socket
import threading
import time
import unittest
import uuid

from harness import GatewayCase, Gateway, Sim, assert_clean_stderr, full_conf, http_request, \
    wait_access

HOLD_MS = 1500


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not found" % name)


class LineCase(GatewayCase):
    def new_contact(self, tags=()):
        r = http_request(self.sim.port, "POST", "/v1/customers",
                         {"name": "order-" + uuid.uuid4().hex[:8]},
                         {"Authorization": "Bearer " + self.sim.key})
        self.assertEqual(r.status, 201, r)
        cid = r.json()["id"]
        if tags:
            r = http_request(self.sim.port, "PUT", "/v1/customers/%d/tags" % cid,
                             {"tags": [{"name": t} for t in tags]},
                             {"Authorization": "Bearer " + self.sim.key})
            self.assertEqual(r.status, 200, r)
        return cid

    def calls_to(self, cid):
        """The journal's calls to the contact's customer, oldest first."""
        prefix = "/v1/customers/%d" % cid
        return [c for c in self.sim.requests() if c["path"].startswith(prefix)]

    def wait_calls(self, cid, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.calls_to(cid)) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertGreaterEqual(len(self.calls_to(cid)), n)

    def in_line(self, cid, writes, gap=0.1, hold_ms=HOLD_MS):
        """Send writes[0] (held upstream for hold_ms), then the others one after another while
        it is held. Returns their responses and access lines, in the order of `writes`."""
        self.sim.script({"delay_ms": hold_ms})
        before = len(self.calls_to(cid))
        mark = self.gw.proc.mark()
        rids = [uuid.uuid4().hex for _ in writes]
        results = {}

        def one(i):
            method, path, body = writes[i]
            results[i] = self.req(method, path, body, headers={"X-Request-Id": rids[i]})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(writes))]
        threads[0].start()
        self.wait_calls(cid, before + 1)
        for t in threads[1:]:
            t.start()
            time.sleep(gap)
        for t in threads:
            t.join(30)
        lines = [wait_access(self.gw, rid, mark) for rid in rids]
        return [results[i] for i in range(len(writes))], lines

    @staticmethod
    def names(call):
        return [t["name"] for t in json.loads(call["body"])["tags"]]

    def assertInFlightZero(self):
        metrics = self.req("GET", "/metrics").body.decode()
        self.assertEqual(metric(metrics, "hcgw_in_flight"), 0)


class OrderTest(LineCase):
    def test_two_writes_to_one_contact_go_one_at_a_time_in_arrival_order(self):
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.sim.script({"delay_ms": HOLD_MS})
        before = len(self.calls_to(cid))
        first = []
        t1 = threading.Thread(target=lambda: first.append(
            self.req("PATCH", path, {"name": "first"})))
        t1.start()
        self.wait_calls(cid, before + 1)
        second = []
        t2 = threading.Thread(target=lambda: second.append(
            self.req("PATCH", path, {"name": "second"})))
        t2.start()
        time.sleep(0.5)
        self.assertEqual(len(self.calls_to(cid)), before + 1,
                         "the second write waits while the first is upstream")
        t1.join(30)
        t2.join(30)
        self.assertEqual(first[0].status, 200)
        self.assertEqual(second[0].status, 200)
        calls = self.calls_to(cid)[before:]
        self.assertEqual([json.loads(c["body"])["name"] for c in calls], ["first", "second"])
        self.assertEqual(second[0].json()["name"], "second")
        r = http_request(self.sim.port, "GET", "/v1/customers/%d" % cid, None,
                         {"Authorization": "Bearer " + self.sim.key})
        self.assertEqual(r.json()["name"], "second", "the last to arrive is the last applied")
        self.assertInFlightZero()

    def test_other_contacts_do_not_wait(self):
        held = self.new_contact()
        other = self.new_contact()
        self.sim.script({"delay_ms": HOLD_MS})
        t = threading.Thread(target=lambda: self.req("PATCH", "/contacts/%d" % held,
                                                     {"name": "slow"}))
        t.start()
        self.wait_calls(held, 1)
        started = time.monotonic()
        r = self.req("PATCH", "/contacts/%d" % other, {"name": "quick"})
        self.assertEqual(r.status, 200)
        self.assertLess(time.monotonic() - started, HOLD_MS / 1000.0,
                        "a write to another contact did not wait for the held one")
        t.join(30)


class CoalesceTest(LineCase):
    def test_tag_adds_that_wait_together_go_as_one_call(self):
        cid = self.new_contact()
        base = "/contacts/%d/tags" % cid
        before = self.req("GET", "/metrics").body.decode()
        saved0 = metric(before, 'hcgw_upstream_calls_saved_total{reason="coalesced"}')
        rs, lines = self.in_line(cid, [
            ("PUT", base + "/t0", None),
            ("PUT", base + "/t1", None),
            ("POST", base, {"tags": ["t2", {"name": "t3", "color": "#ff0000"}]}),
            ("PUT", base + "/t4", None),
        ])
        calls = self.calls_to(cid)
        self.assertEqual(len(calls), 2, "one call for the held write, one for the others")
        self.assertEqual(self.names(calls[0]), ["t0"])
        self.assertEqual(self.names(calls[1]), ["t1", "t2", "t3", "t4"])
        self.assertEqual(json.loads(calls[1]["body"])["tags"][2], {"name": "t3", "color": "#ff0000"})
        self.assertEqual([r.status for r in rs], [200] * 4)
        for r in rs[1:]:
            self.assertEqual(r.body, rs[1].body, "every caller gets the customer the call returned")
        tags = {t["name"] for t in rs[3].json()["tags"]}
        self.assertTrue({"t0", "t1", "t2", "t3", "t4"} <= tags, tags)
        self.assertEqual([l["coalesced"] for l in lines], [1, 3, 3, 3])
        self.assertEqual(sorted(l["attempts"] for l in lines[1:]), [0, 0, 1])
        after = self.req("GET", "/metrics").body.decode()
        self.assertEqual(
            metric(after, 'hcgw_upstream_calls_saved_total{reason="coalesced"}') - saved0, 2)
        self.assertInFlightZero()

    def test_removals_merge_with_removals(self):
        cid = self.new_contact(tags=("a", "b", "c", "d"))
        base = "/contacts/%d/tags" % cid
        rs, _ = self.in_line(cid, [
            ("DELETE", base + "/a", None),
            ("DELETE", base + "/b", None),
            ("DELETE", base, {"tags": ["c", "d"]}),
        ])
        calls = self.calls_to(cid)[1:]
        self.assertEqual([(c["method"], self.names(c)) for c in calls],
                         [("DELETE", ["a"]), ("DELETE", ["b", "c", "d"])])
        self.assertEqual([r.status for r in rs], [200] * 3)
        self.assertEqual(rs[2].json()["tags"], [])

    def test_kinds_never_cross_and_an_add_never_passes_a_remove(self):
        cid = self.new_contact(tags=("x",))
        base = "/contacts/%d/tags" % cid
        rs, lines = self.in_line(cid, [
            ("PUT", base + "/t0", None),
            ("PUT", base + "/a", None),
            ("DELETE", base + "/a", None),
            ("PUT", base + "/b", None),
            ("DELETE", base + "/x", None),
        ])
        calls = self.calls_to(cid)[1:]
        self.assertEqual([(c["method"], self.names(c)) for c in calls],
                         [("PUT", ["t0"]), ("PUT", ["a"]), ("DELETE", ["a"]), ("PUT", ["b"]),
                          ("DELETE", ["x"])], "one call each, in arrival order")
        self.assertEqual([r.status for r in rs], [200] * 5)
        self.assertEqual([l["coalesced"] for l in lines], [1] * 5)
        self.assertEqual(sorted(t["name"] for t in rs[4].json()["tags"]), ["b", "t0"])

    def test_at_most_100_tags_in_one_call(self):
        cid = self.new_contact()
        base = "/contacts/%d/tags" % cid
        # Removals (of tags it does not have: HelpCrunch keeps at most 100 on a contact).
        rs, _ = self.in_line(cid, [
            ("DELETE", base + "/t0", None),
            ("DELETE", base, {"tags": ["a%d" % i for i in range(60)]}),
            ("DELETE", base, {"tags": ["b%d" % i for i in range(50)]}),
            ("DELETE", base, {"tags": ["c%d" % i for i in range(40)]}),
        ], hold_ms=2500)
        calls = self.calls_to(cid)
        self.assertEqual([len(self.names(c)) for c in calls], [1, 60, 90],
                         "the 50 did not fit with the 60; the 40 joined the 50")
        self.assertEqual([r.status for r in rs], [200] * 4)

    def test_a_merged_call_refused_with_400_goes_item_by_item(self):
        cid = self.new_contact()
        base = "/contacts/%d/tags" % cid
        refusal = {"status": 400, "json": {"errors": [{"code": "invalid", "message": "bad tag"}]}}
        # The held call; the merged call (refused); then the first item alone (refused too);
        # the second alone goes through to the store.
        self.sim.script([{"delay_ms": HOLD_MS}, refusal, refusal])
        before = len(self.calls_to(cid))
        mark = self.gw.proc.mark()
        rids = [uuid.uuid4().hex for _ in range(3)]
        results = {}

        def one(i, method, path):
            results[i] = self.req(method, path, headers={"X-Request-Id": rids[i]})

        threads = [threading.Thread(target=one, args=(i, "PUT", base + "/t%d" % i))
                   for i in range(3)]
        threads[0].start()
        self.wait_calls(cid, before + 1)
        for t in threads[1:]:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join(30)
        calls = self.calls_to(cid)[before:]
        self.assertEqual([self.names(c) for c in calls], [["t0"], ["t1", "t2"], ["t1"], ["t2"]])
        self.assertEqual(results[0].status, 200)
        self.assertEnvelope(results[1], 400, "invalid_request", 400)
        self.assertEqual(results[2].status, 200)
        self.assertIn("t2", [t["name"] for t in results[2].json()["tags"]])
        lines = [wait_access(self.gw, rid, mark) for rid in rids]
        self.assertEqual([l["coalesced"] for l in lines], [1, 1, 1])
        self.assertInFlightZero()

    def test_a_caller_who_hangs_up_in_line_leaves_without_a_call(self):
        cid = self.new_contact()
        base = "/contacts/%d/tags" % cid
        self.sim.script({"delay_ms": HOLD_MS})
        first = []
        t = threading.Thread(target=lambda: first.append(self.req("PUT", base + "/t0")))
        t.start()
        self.wait_calls(cid, 1)
        mark = self.gw.proc.mark()
        rid = uuid.uuid4().hex
        sock = socket.create_connection(("127.0.0.1", self.gw.port), timeout=10)
        sock.sendall(("PUT %s/gone HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n"
                      "Content-Length: 0\r\n\r\n" % (base, rid)).encode())
        time.sleep(0.3)
        sock.close()
        line = wait_access(self.gw, rid, mark)
        self.assertEqual(line["status"], 499)
        t.join(30)
        self.assertEqual(first[0].status, 200)
        time.sleep(0.3)
        self.assertEqual([self.names(c) for c in self.calls_to(cid)], [["t0"]],
                         "the caller who left cost no upstream call")
        self.assertInFlightZero()


class OwnGatewayTest(unittest.TestCase):
    """Tests that need an hcgw of their own: a quota, a reload."""

    def reload(self, gw, sim, **groups):
        with open(gw.conf_path, "w") as f:
            f.write(full_conf(sim.base_url, **groups))
        mark = gw.proc.mark()
        gw.proc.proc.send_signal(signal.SIGHUP)
        gw.proc.wait_line(lambda o: isinstance(o, dict)
                          and o.get("msg") == "configuration reloaded", stream="err", since=mark)

    def run_with(self, fn, conf):
        sim = Sim()
        gw = None
        try:
            gw = Gateway(sim, conf=conf)
            fn(sim, gw)
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, sim.key)
            sim.stop()

    def test_coalesce_tags_applies_on_reload(self):
        def body(sim, gw):
            case = LineCase()
            case.sim, case.gw = sim, gw
            cid = case.new_contact()
            base = "/contacts/%d/tags" % cid
            writes = [("PUT", base + "/t%d" % i, None) for i in range(3)]
            case.in_line(cid, writes)
            self.assertEqual([len(case.names(c)) for c in case.calls_to(cid)], [1, 2])
            self.reload(gw, sim, coalesce={"tags": False})
            writes = [("PUT", base + "/u%d" % i, None) for i in range(3)]
            rs, lines = case.in_line(cid, writes)
            self.assertEqual([case.names(c) for c in case.calls_to(cid)[2:]],
                             [["u0"], ["u1"], ["u2"]], "off: one call each, still in order")
            self.assertEqual([r.status for r in rs], [200] * 3)
            self.assertEqual([l["coalesced"] for l in lines], [1, 1, 1])
        self.run_with(body, {"coalesce": {"tags": True}})

    def test_tag_writes_join_one_that_waits_for_its_quota_slot(self):
        def body(sim, gw):
            case = LineCase()
            case.sim, case.gw = sim, gw
            other = case.new_contact()
            cid = case.new_contact()
            base = "/contacts/%d/tags" % cid
            # The one slot of the bucket goes to another contact's write; the first tag write
            # of this contact then waits about a second for its slot, with nothing ahead of it.
            self.assertEqual(gw.request("PUT", "/contacts/%d/tags/x" % other).status, 200)
            mark = gw.proc.mark()
            rids = [uuid.uuid4().hex for _ in range(3)]
            results = {}

            def one(i):
                results[i] = gw.request("PUT", base + "/t%d" % i, None, {"X-Request-Id": rids[i]})

            threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
                time.sleep(0.1)
            for t in threads:
                t.join(30)
            self.assertEqual([results[i].status for i in range(3)], [200] * 3)
            self.assertEqual([case.names(c) for c in case.calls_to(cid)], [["t0", "t1", "t2"]],
                             "the writes that came while the first waited for its slot joined it")
            lines = [wait_access(gw, rid, mark) for rid in rids]
            self.assertEqual([l["coalesced"] for l in lines], [3, 3, 3])
        self.run_with(body, {"quota": {"requests_per_minute": 60, "burst": 1,
                                       "max_wait_ms": 5000}})

    def test_a_caller_who_leaves_a_waiting_merged_call_takes_its_tags_out(self):
        def body(sim, gw):
            case = LineCase()
            case.sim, case.gw = sim, gw
            other = case.new_contact()
            cid = case.new_contact()
            base = "/contacts/%d/tags" % cid
            self.assertEqual(gw.request("PUT", "/contacts/%d/tags/x" % other).status, 200)
            mark = gw.proc.mark()
            results = {}
            t0 = threading.Thread(target=lambda: results.update(t0=gw.request("PUT", base + "/t0")))
            t0.start()
            time.sleep(0.1)
            rid = uuid.uuid4().hex
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            sock.sendall(("PUT %s/gone HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n"
                          "Content-Length: 0\r\n\r\n" % (base, rid)).encode())
            time.sleep(0.1)
            t2 = threading.Thread(target=lambda: results.update(t2=gw.request("PUT", base + "/t2")))
            t2.start()
            time.sleep(0.1)
            sock.close()
            self.assertEqual(wait_access(gw, rid, mark)["status"], 499)
            t0.join(30)
            t2.join(30)
            self.assertEqual(results["t0"].status, 200)
            self.assertEqual(results["t2"].status, 200)
            self.assertEqual([case.names(c) for c in case.calls_to(cid)], [["t0", "t2"]])
            self.assertNotIn("gone", [t["name"] for t in results["t2"].json()["tags"]])
        self.run_with(body, {"quota": {"requests_per_minute": 60, "burst": 1,
                                       "max_wait_ms": 5000}})

    def test_a_write_in_line_keeps_its_deadline(self):
        def body(sim, gw):
            case = LineCase()
            case.sim, case.gw = sim, gw
            cid = case.new_contact()
            path = "/contacts/%d" % cid
            sim.script({"delay_ms": 3000})
            first = []
            t = threading.Thread(target=lambda: first.append(
                gw.request("PATCH", path, {"name": "slow"})))
            t.start()
            case.wait_calls(cid, 1)
            # From now on a call has 500 ms: the write in line cannot wait for the held one.
            self.reload(gw, sim, upstream={"timeout_ms": 500})
            started = time.monotonic()
            r = gw.request("PATCH", path, {"name": "late"})
            waited = time.monotonic() - started
            self.assertEqual(r.status, 504, r)
            self.assertEqual(r.json()["error"]["code"], "upstream_timeout")
            self.assertLess(waited, 2.5, "it ended at its own deadline, not the held call's")
            t.join(30)
            self.assertEqual(first[0].status, 200)
            self.assertEqual([json.loads(c["body"])["name"] for c in case.calls_to(cid)],
                             ["slow"], "the write that timed out in line was never sent")
        self.run_with(body, {"upstream": {"timeout_ms": 5000}})


if __name__ == "__main__":
    unittest.main()

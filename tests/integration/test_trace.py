"""W3C Trace Context (issue 13, part 2), through real HTTP to hcgw and hcgw-sim.

- A valid traceparent goes on: the access (and audit) line has the caller's trace_id, a new
  span_id of hcgw's own and the caller's span as parent_span_id.
- A malformed one (bad length, uppercase hex, zero ids, version ff, garbage, two of them, one
  too long) is replaced by a new trace, "traceparent":"invalid" says so, and the request is
  answered as it would be without it: trace context never earns a 4xx.
- None: hcgw starts a trace, and the request id it makes up is that trace's id.
- upstream.propagate_trace off (the default): no traceparent or tracestate reaches the
  simulator, whatever the caller sent. On: each attempt sends a child traceparent (the trace-id
  and flags of the caller's, a parent-id of its own, new at every retry) and the caller's
  tracestate when it was valid; a call made for several callers (single flight, a contact's
  home on another worker) carries the trace of the caller who started it; a reload turns it on.
"""
import http.client
import re
import signal
import threading
import time
import unittest
import uuid

import harness
from harness import GatewayCase, Gateway, Sim, full_conf, wait_access

C = "1568834"
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"
VALID = "00-%s-%s-01" % (TID, PID)
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

MALFORMED = {
    "too short": "00-%s-%s-0" % (TID, PID),
    "too long": "00-%s-%s-011" % (TID, PID),
    "trace-id too short": "00-%s-%s-01" % (TID[:-1], PID),
    "uppercase trace-id": "00-%s-%s-01" % (TID.upper(), PID),
    "uppercase parent-id": "00-%s-%s-01" % (TID, PID.upper()),
    "zero trace-id": "00-%s-%s-01" % ("0" * 32, PID),
    "zero parent-id": "00-%s-%s-01" % (TID, "0" * 16),
    "version ff": "ff-%s-%s-01" % (TID, PID),
    "version 00 with more": "00-%s-%s-01-more" % (TID, PID),
    "garbage": "hello, world",
    "empty": "",
    "over the bound": "cc-%s-%s-01-%s" % (TID, PID, "x" * 4000),
}


def get_with(port, path, headers):
    """GET with @p headers, a list of (name, value) pairs that may repeat a name."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return harness.Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


class TraceCase(GatewayCase):
    def send(self, method, path, headers=None, body=None):
        """Send with a fresh X-Request-Id; returns (response, its access line)."""
        rid = uuid.uuid4().hex
        h = {"X-Request-Id": rid}
        h.update(headers or {})
        mark = self.gw.proc.mark()
        r = self.req(method, path, body, headers=h)
        return r, wait_access(self.gw, rid, mark)

    def assertStarted(self, line, invalid=False):
        """The line is of a trace hcgw started (replacing an invalid traceparent or not)."""
        self.assertRegex(line["trace_id"], HEX32)
        self.assertRegex(line["span_id"], HEX16)
        self.assertNotEqual(line["trace_id"], "0" * 32)
        self.assertNotEqual(line["trace_id"], TID)
        self.assertNotIn("parent_span_id", line)
        if invalid:
            self.assertEqual(line.get("traceparent"), "invalid", line)
        else:
            self.assertNotIn("traceparent", line)


class TraceTest(TraceCase):
    """The default: trace context read and logged, nothing of it sent upstream."""

    def test_a_valid_traceparent_goes_on_with_a_span_of_hcgws(self):
        r, line = self.send("GET", "/contacts/" + C, {"traceparent": VALID})
        self.assertEqual(r.status, 200)
        self.assertEqual(line["trace_id"], TID)
        self.assertEqual(line["parent_span_id"], PID)
        self.assertRegex(line["span_id"], HEX16)
        self.assertNotEqual(line["span_id"], PID)
        self.assertNotIn("traceparent", line)
        # Each request of the trace is a span of its own.
        _, again = self.send("GET", "/contacts/" + C, {"traceparent": VALID})
        self.assertEqual(again["trace_id"], TID)
        self.assertNotEqual(again["span_id"], line["span_id"])

    def test_header_names_in_any_case_and_whitespace_around_the_value(self):
        r, line = self.send("GET", "/contacts/" + C, {"TraceParent": " \t" + VALID + "\t "})
        self.assertEqual(r.status, 200)
        self.assertEqual(line["trace_id"], TID)

    def test_a_future_version_is_read_for_the_fields_it_shares(self):
        _, line = self.send("GET", "/contacts/" + C,
                            {"traceparent": "cc-%s-%s-01-future-fields" % (TID, PID)})
        self.assertEqual(line["trace_id"], TID)
        self.assertEqual(line["parent_span_id"], PID)

    def test_a_malformed_traceparent_is_replaced_and_the_request_answered(self):
        _, plain = self.send("GET", "/contacts/" + C)
        for name, value in MALFORMED.items():
            with self.subTest(name):
                r, line = self.send("GET", "/contacts/" + C, {"traceparent": value})
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, self.req("GET", "/contacts/" + C).body)
                self.assertStarted(line, invalid=True)
        self.assertStarted(plain)

    def test_two_traceparent_headers_are_neither_trusted(self):
        rid = uuid.uuid4().hex
        mark = self.gw.proc.mark()
        other = "00-%s-%s-01" % ("1" * 32, PID)
        r = get_with(self.gw.port, "/contacts/" + C,
                     [("X-Request-Id", rid), ("traceparent", VALID), ("traceparent", other)])
        self.assertEqual(r.status, 200)
        line = wait_access(self.gw, rid, mark)
        self.assertStarted(line, invalid=True)
        self.assertNotEqual(line["trace_id"], "1" * 32)

    def test_none_starts_a_trace_named_by_the_request_id(self):
        mark = self.gw.proc.mark()
        r = self.req("GET", "/contacts/" + C)
        self.assertEqual(r.status, 200)
        rid = r.header("X-Request-Id")
        self.assertRegex(rid, HEX32, "X-Request-Id keeps its form")
        line = wait_access(self.gw, rid, mark)
        self.assertStarted(line)
        self.assertEqual(line["trace_id"], rid, "a trace hcgw starts is its request id")
        # A caller's X-Request-Id stays the caller's: the trace is another id.
        r2, line2 = self.send("GET", "/contacts/" + C)
        self.assertStarted(line2)
        self.assertNotEqual(line2["trace_id"], line2["request_id"])
        self.assertNotEqual(line2["trace_id"], line["trace_id"])
        # A caller's trace gets a request id of its own: one trace spans many requests.
        mark = self.gw.proc.mark()
        r3 = self.req("GET", "/contacts/" + C, headers={"traceparent": VALID})
        line3 = wait_access(self.gw, r3.header("X-Request-Id"), mark)
        self.assertEqual(line3["trace_id"], TID)
        self.assertNotEqual(r3.header("X-Request-Id"), TID)

    def test_errors_and_local_answers_carry_a_trace_too(self):
        r, line = self.send("GET", "/contacts/abc", {"traceparent": VALID})
        self.assertEnvelope(r, 400, "invalid_contact_id")
        self.assertEqual(line["trace_id"], TID)
        r, line = self.send("GET", "/healthz", {"traceparent": MALFORMED["garbage"]})
        self.assertEqual(r.status, 200)
        self.assertStarted(line, invalid=True)

    def test_the_audit_line_of_a_write_has_the_same_trace(self):
        rid = uuid.uuid4().hex
        mark = self.gw.proc.mark()
        r = self.req("PUT", "/contacts/%s/tags/traced" % C,
                     headers={"X-Request-Id": rid, "traceparent": VALID})
        self.assertEqual(r.status, 200)
        access = wait_access(self.gw, rid, mark)
        audit = self.gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "audit"
                                       and o.get("request_id") == rid, stream="err", since=mark)
        for key in ("trace_id", "span_id", "parent_span_id"):
            self.assertEqual(audit[key], access[key], key)
        self.assertEqual(audit["trace_id"], TID)

    def test_nothing_goes_upstream_by_default(self):
        r, line = self.send("GET", "/contacts/" + C,
                            {"traceparent": VALID, "tracestate": "congo=t61rcWkgMzE"})
        self.assertEqual(r.status, 200)
        call = self.sim.last()
        self.assertEqual(call["path"], "/v1/customers/" + C)
        self.assertIsNone(call["traceparent"])
        self.assertIsNone(call["tracestate"])
        self.send("GET", "/contacts/" + C)
        self.assertIsNone(self.sim.last()["traceparent"])

    def test_a_bad_or_long_tracestate_is_no_reason_to_refuse(self):
        for state in ("foo=1,foo=2", "FOO=1", "a=" + "v" * 600,
                      ",".join("k%d=1" % i for i in range(40))):
            r, line = self.send("GET", "/contacts/" + C,
                                {"traceparent": VALID, "tracestate": state})
            self.assertEqual(r.status, 200)
            self.assertEqual(line["trace_id"], TID)


class PropagateTest(TraceCase):
    """upstream.propagate_trace = true: HelpCrunch gets a child of hcgw's span."""
    conf_groups = {"upstream": {"propagate_trace": True}}

    def upstream_parent(self, call):
        m = TRACEPARENT.match(call["traceparent"] or "")
        self.assertIsNotNone(m, call["traceparent"])
        return m.groups()

    def test_a_child_traceparent_and_the_tracestate_reach_upstream(self):
        r, line = self.send("GET", "/contacts/" + C,
                            {"traceparent": "00-%s-%s-00" % (TID, PID),
                             "tracestate": "congo=t61rcWkgMzE , rojo=00f067aa0ba902b7"})
        self.assertEqual(r.status, 200)
        call = self.sim.last()
        tid, pid, flags = self.upstream_parent(call)
        self.assertEqual(tid, TID)
        self.assertNotEqual(pid, PID, "a new parent-id: the caller's span is not hcgw's call")
        self.assertNotEqual(pid, line["span_id"], "the attempt is a child of hcgw's span")
        self.assertEqual(flags, "00", "the caller's flags are kept")
        self.assertEqual(call["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        # The sampled flag is kept as well; reserved flags are not passed on.
        self.send("GET", "/contacts/" + C, {"traceparent": "00-%s-%s-09" % (TID, PID)})
        tid, _, flags = self.upstream_parent(self.sim.last())
        self.assertEqual((tid, flags), (TID, "01"))
        self.assertIsNone(self.sim.last()["tracestate"])

    def test_a_trace_hcgw_starts_goes_upstream(self):
        mark = self.gw.proc.mark()
        r = self.req("GET", "/contacts/" + C, headers={"tracestate": "congo=1"})
        self.assertEqual(r.status, 200)
        line = wait_access(self.gw, r.header("X-Request-Id"), mark)
        tid, pid, flags = self.upstream_parent(self.sim.last())
        self.assertEqual(tid, line["trace_id"])
        self.assertEqual(tid, r.header("X-Request-Id"))
        self.assertEqual(flags, "01")
        self.assertIsNone(self.sim.last()["tracestate"], "a tracestate needs its traceparent")

    def test_a_malformed_traceparent_starts_a_new_trace_without_its_tracestate(self):
        for name in ("uppercase trace-id", "zero parent-id", "version ff", "garbage"):
            with self.subTest(name):
                r, line = self.send("GET", "/contacts/" + C,
                                    {"traceparent": MALFORMED[name], "tracestate": "congo=1"})
                self.assertEqual(r.status, 200)
                call = self.sim.last()
                tid, _, _ = self.upstream_parent(call)
                self.assertEqual(tid, line["trace_id"])
                self.assertNotEqual(tid, TID)
                self.assertIsNone(call["tracestate"])

    def test_an_invalid_tracestate_is_dropped_and_the_trace_kept(self):
        self.send("GET", "/contacts/" + C, {"traceparent": VALID, "tracestate": "foo=1,foo=2"})
        call = self.sim.last()
        self.assertEqual(self.upstream_parent(call)[0], TID)
        self.assertIsNone(call["tracestate"])

    def test_each_attempt_is_a_span_of_its_own(self):
        self.sim.script([{"status": 503}])
        r, line = self.send("GET", "/contacts/" + C, {"traceparent": VALID})
        self.assertEqual(r.status, 200)
        self.assertEqual(line["attempts"], 2)
        calls = self.sim.requests()[-2:]
        parents = [self.upstream_parent(c) for c in calls]
        self.assertEqual({p[0] for p in parents}, {TID})
        self.assertNotEqual(parents[0][1], parents[1][1], "a retry is a new span")

    def test_writes_carry_it_too(self):
        r, line = self.send("PUT", "/contacts/%s/tags/traced" % C,
                            {"traceparent": VALID, "tracestate": "congo=1"})
        self.assertEqual(r.status, 200)
        call = self.sim.last()
        self.assertEqual(call["method"], "PUT")
        self.assertEqual(self.upstream_parent(call)[0], TID)
        self.assertEqual(call["tracestate"], "congo=1")


class SharedCallsTest(TraceCase):
    """Calls made for several callers carry the trace of the caller who started them: a read
    others join (single flight), and, over two workers, calls handed to a contact's home."""
    workers = 2
    conf_groups = {"upstream": {"propagate_trace": True},
                   "cache": {"ttl_ms": 60000, "max_entries": 1000, "max_bytes": 1048576}}

    def setUp(self):
        # No reset: hcgw's cache still holds earlier tests' contacts, which a reset would
        # hand out again. Each test reads contacts of its own.
        self.sim.call("DELETE", "/_sim/script")

    def new_contact(self):
        r = harness.http_request(self.sim.port, "POST", "/v1/customers",
                                 {"name": "trace-" + uuid.uuid4().hex[:8]},
                                 headers={"Authorization": "Bearer " + self.sim.key})
        self.assertEqual(r.status, 201, r)
        return r.json()["id"]

    def calls_to(self, cid):
        path = "/v1/customers/%d" % cid
        return [c for c in self.sim.requests() if c["path"] == path]

    @staticmethod
    def trace_of(i):
        return "%032x" % (0xabc000 + i)

    def test_a_shared_read_carries_the_trace_of_the_caller_who_started_it(self):
        cid = self.new_contact()
        path = "/contacts/%d" % cid
        self.sim.script({"delay_ms": 1500})
        first = []
        t = threading.Thread(target=lambda: first.append(self.send(
            "GET", path, {"traceparent": "00-%s-%s-01" % (self.trace_of(0), PID)})))
        t.start()
        deadline = time.monotonic() + 10
        while not self.calls_to(cid) and time.monotonic() < deadline:
            time.sleep(0.02)
        others = []
        threads = [threading.Thread(target=lambda i=i: others.append(self.send(
            "GET", path, {"traceparent": "00-%s-%s-01" % (self.trace_of(i), PID)})))
            for i in range(1, 5)]
        for th in threads:
            th.start()
        for th in threads + [t]:
            th.join(30)
        calls = self.calls_to(cid)
        self.assertEqual(len(calls), 1, "one call for all the readers")
        self.assertIsNotNone(calls[0]["traceparent"], "the shared call carries a trace")
        self.assertEqual(calls[0]["traceparent"][3:35], self.trace_of(0))
        self.assertEqual(first[0][1]["cache"], "miss")
        for r, line in others:
            self.assertEqual(r.status, 200)
            self.assertEqual(line["cache"], "collapsed")
            self.assertNotEqual(line["trace_id"], self.trace_of(0), "each keeps its own trace")

    def test_calls_handed_to_a_contacts_home_keep_their_trace(self):
        # Sixteen reads of eight contacts, each on its own connection: with two workers, the
        # kernel lands some on the worker that is not their contact's home, which hands the
        # call over (homes.c). Each asks for a fresh answer (no-cache), so none joins another's
        # call: every request makes its own, which carries that request's trace.
        cids = [self.new_contact() for _ in range(8)]
        results = {}
        barrier = threading.Barrier(16)

        def one(i):
            barrier.wait(10)
            results[i] = self.req("GET", "/contacts/%d" % cids[i % 8],
                                  headers={"traceparent": "00-%s-%s-01"
                                           % (self.trace_of(100 + i), PID),
                                           "Cache-Control": "no-cache"})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        self.assertEqual({r.status for r in results.values()}, {200})
        for k, cid in enumerate(cids):
            sent = {self.trace_of(100 + k), self.trace_of(108 + k)}
            calls = self.calls_to(cid)
            got = sorted((c["traceparent"] or "no traceparent")[3:35] for c in calls)
            self.assertEqual(got, sorted(sent))


class ReloadTest(unittest.TestCase):
    def test_a_reload_turns_propagation_on_and_off(self):
        sim = Sim()
        gw = None
        try:
            gw = Gateway(sim)
            path = "/contacts/" + C

            def reload(on):
                with open(gw.conf_path, "w") as f:
                    f.write(full_conf(sim.base_url, upstream={"propagate_trace": on}))
                mark = gw.proc.mark()
                gw.proc.proc.send_signal(signal.SIGHUP)
                gw.proc.wait_line(lambda o: isinstance(o, dict)
                                  and o.get("msg") == "configuration reloaded", stream="err",
                                  since=mark)

            gw.request("GET", path, headers={"traceparent": VALID})
            self.assertIsNone(sim.last()["traceparent"])
            reload(True)
            gw.request("GET", path, headers={"traceparent": VALID, "tracestate": "a=1"})
            self.assertEqual(sim.last()["traceparent"][3:35], TID)
            self.assertEqual(sim.last()["tracestate"], "a=1")
            reload(False)
            gw.request("GET", path, headers={"traceparent": VALID, "tracestate": "a=1"})
            self.assertIsNone(sim.last()["traceparent"])
            self.assertIsNone(sim.last()["tracestate"])
        finally:
            rc = gw.stop() if gw is not None else 0
            sim.stop()
            self.assertEqual(rc, 0)
            if gw is not None:
                harness.assert_clean_stderr(self, gw.proc, sim.key)


if __name__ == "__main__":
    unittest.main()

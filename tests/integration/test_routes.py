"""Every route of the table, happy path, over real HTTP.

For each route: hcgw's status and body (compared with what the simulator itself answers for the
same state, fetched directly with the key), the one upstream call the simulator recorded
(method, path, query, JSON body, and the headers hcgw must set: the gateway's Bearer key, never
the caller's, Accept, Content-Type and User-Agent), the response headers every answer carries,
and the one access log line each request produces. The local routes /healthz, /readyz and
/metrics are covered too, metrics counters included.
"""
import http.client
import json
import re
import time
import unittest
import urllib.parse

import harness
from harness import GatewayCase

ID_ALLOWED = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CALLER_AUTH = "Bearer caller-token"
ANY = object()  # upstream_call: do not check the body
METRIC_LINE = re.compile(r"^hcgw_requests_total\{([^}]*)\} (\d+(?:\.\d+)?)$")


class RoutesTest(GatewayCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The simulator's seed, read once directly: tests pick customers by what they hold,
        # and setUp's reset brings this same seed back before every test.
        r = harness.http_request(cls.sim.port, "GET", "/v1/customers?limit=100",
                                 headers={"Authorization": "Bearer " + cls.sim.key})
        seed = json.loads(r.body)["data"]
        cls.tagged = next(c for c in seed if len(c.get("tags") or []) >= 2)
        cls.untagged = next(c for c in seed if not c.get("tags") and c["blocked"])
        cls.unblocked = next(c for c in seed if not c["blocked"] and c["id"] != cls.tagged["id"])
        cls.seed = seed

    # ---- helpers

    def direct(self, method, path, body=None):
        """Ask the simulator itself, with the key, what HelpCrunch answers."""
        return harness.http_request(self.sim.port, method, "/v1" + path, body,
                                    {"Authorization": "Bearer " + self.sim.key})

    def customer_bytes(self, cid):
        r = self.direct("GET", "/customers/%s" % cid)
        self.assertEqual(r.status, 200, r)
        return r.body

    def assertCommonHeaders(self, r):
        rid = r.header("X-Request-Id")
        self.assertIsNotNone(rid, "no X-Request-Id")
        self.assertRegex(rid, ID_ALLOWED)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertIsNone(r.header("Server"))

    def assertJsonAnswer(self, r, status):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertCommonHeaders(r)
        return r.json()

    def upstream_call(self, method, path, body=None, query=""):
        """Assert HelpCrunch saw exactly one call, this one, with hcgw's headers; return it."""
        calls = self.sim.requests()
        self.assertEqual(len(calls), 1, calls)
        c = calls[0]
        self.assertEqual((c["method"], c["path"]), (method, path))
        if query is not None:
            self.assertEqual(c["query"], query)
        self.assertEqual(c["authorization"], "Bearer " + self.sim.key)
        self.assertEqual(c["accept"], "application/json")
        self.assertEqual(c["content_type"], "application/json")
        self.assertTrue((c["user_agent"] or "").startswith("hcgw/"), c["user_agent"])
        if body is ANY:
            pass
        elif body is None:
            self.assertEqual(c["body"], "")
        else:
            self.assertEqual(json.loads(c["body"]), body)
        return c

    def access_lines_for(self, rid, count=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            lines = [o for o in self.gw.access_lines() if o.get("request_id") == rid]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def assertAccessLine(self, r, method, contact_id, upstream_status=None, attempts=1):
        """The one access line of response @p r; returns it."""
        rid = r.header("X-Request-Id")
        lines = self.access_lines_for(rid)
        self.assertEqual(len(lines), 1, "access lines for %s: %r" % (rid, lines))
        line = lines[0]
        self.assertIn("ts", line)
        self.assertEqual(line["method"], method)
        self.assertIsInstance(line["route"], str)
        self.assertTrue(line["route"])
        if contact_id is None:
            self.assertIsNone(line.get("contact_id"))
        else:
            self.assertEqual(str(line["contact_id"]), str(contact_id))
        self.assertEqual(line["status"], r.status)
        self.assertEqual(line.get("upstream_status"), upstream_status)
        self.assertEqual(line["attempts"], attempts)
        self.assertIsInstance(line["duration_ms"], (int, float))
        self.assertGreaterEqual(line["duration_ms"], 0)
        return line

    # ---- single tags

    def test_put_tag(self):
        cid = self.untagged["id"]
        r = self.req("PUT", "/contacts/%s/tags/Lead" % cid, headers={"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 200)
        self.upstream_call("PUT", "/v1/customers/%s/tags" % cid, {"tags": [{"name": "Lead"}]})
        self.assertEqual(customer["id"], cid)
        self.assertIn("Lead", [t["name"] for t in customer["tags"]])
        self.assertEqual(r.body, self.customer_bytes(cid))
        self.assertAccessLine(r, "PUT", cid, upstream_status=200)

    def test_delete_tag(self):
        cid = self.tagged["id"]
        name = self.tagged["tags"][-1]["name"]
        self.assertRegex(name, r"^[A-Za-z0-9]+$")  # usable as a path segment as it is
        r = self.req("DELETE", "/contacts/%s/tags/%s" % (cid, name),
                     headers={"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 200)
        self.upstream_call("DELETE", "/v1/customers/%s/tags" % cid, {"tags": [{"name": name}]})
        self.assertNotIn(name, [t["name"] for t in customer["tags"]])
        self.assertEqual(len(customer["tags"]), len(self.tagged["tags"]) - 1)
        self.assertEqual(r.body, self.customer_bytes(cid))
        self.assertAccessLine(r, "DELETE", cid, upstream_status=200)

    def test_tag_names_are_decoded_and_json_escaped(self):
        cid = self.untagged["id"]
        cases = [
            ("a%2Fb", "a/b"),
            ("%2F", "/"),
            ("a+b", "a+b"),
            ("Lead%20Gen", "Lead Gen"),
            ("100%25", "100%"),
            ("%C3%A9t%C3%A9", "\u00e9t\u00e9"),
            ("%c3%a9", "\u00e9"),
            ("%E2%9C%93", "\u2713"),
            ("%F0%9F%8F%B7", "\U0001F3F7"),
            ("%D0%9B%D0%B8%D0%B4", "\u041b\u0438\u0434"),
            ("%22q%22%5C", '"q"\\'),
            ("%7B%22x%22%3A1%7D", '{"x":1}'),
            ("a%3Fb", "a?b"),
            ("a%23b", "a#b"),
            ("%3Bx%3Dy", ";x=y"),
            ("..", ".."),
            ("~a-b_c.d", "~a-b_c.d"),
            ("x" * 100, "x" * 100),
        ]
        for seg, name in cases:
            with self.subTest(segment=seg):
                self.sim.reset()
                r = self.req("PUT", "/contacts/%s/tags/%s" % (cid, seg))
                customer = self.assertJsonAnswer(r, 200)
                self.upstream_call("PUT", "/v1/customers/%s/tags" % cid,
                                   {"tags": [{"name": name}]})
                self.assertIn(name, [t["name"] for t in customer["tags"]])
                # And the same segment removes exactly that tag again.
                self.sim.reset()
                self.direct("PUT", "/customers/%s/tags" % cid, {"tags": [{"name": name}]})
                before = self.sim.count()
                r = self.req("DELETE", "/contacts/%s/tags/%s" % (cid, seg))
                customer = self.assertJsonAnswer(r, 200)
                self.assertEqual(self.sim.count(), before + 1)
                call = self.sim.last()
                self.assertEqual((call["method"], call["path"]),
                                 ("DELETE", "/v1/customers/%s/tags" % cid))
                self.assertEqual(json.loads(call["body"]), {"tags": [{"name": name}]})
                self.assertNotIn(name, [t["name"] for t in customer["tags"]])

    # ---- tags bodies

    def test_post_tags(self):
        cid = self.untagged["id"]
        body = {"tags": ["a", {"name": "b", "color": "#00ff00"}, {"name": "c"},
                         {"name": "d", "color": "#abc"}]}
        r = self.req("POST", "/contacts/%s/tags" % cid, body, {"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 200)
        self.upstream_call("PUT", "/v1/customers/%s/tags" % cid,
                           {"tags": [{"name": "a"}, {"name": "b", "color": "#00ff00"},
                                     {"name": "c"}, {"name": "d", "color": "#abc"}]})
        by_name = {t["name"]: t for t in customer["tags"]}
        self.assertEqual(set(by_name), {"a", "b", "c", "d"})
        self.assertEqual(by_name["b"]["color"], "#00ff00")
        self.assertEqual(r.body, self.customer_bytes(cid))
        self.assertAccessLine(r, "POST", cid, upstream_status=200)

    def test_post_tags_unicode_and_escapes(self):
        cid = self.untagged["id"]
        names = ["\u00e9t\u00e9", "a/b", "a+b", 'q"\\', "\U0001F3F7", "\u2028"]
        r = self.req("POST", "/contacts/%s/tags" % cid, {"tags": names})
        customer = self.assertJsonAnswer(r, 200)
        self.upstream_call("PUT", "/v1/customers/%s/tags" % cid,
                           {"tags": [{"name": n} for n in names]})
        self.assertEqual([t["name"] for t in customer["tags"]], names)

    def test_delete_tags_with_body(self):
        cid = self.tagged["id"]
        first, second = self.tagged["tags"][0], self.tagged["tags"][1]
        body = {"tags": [first["name"], {"name": second["name"], "color": second["color"]}]}
        r = self.req("DELETE", "/contacts/%s/tags" % cid, body, {"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 200)
        call = self.upstream_call("DELETE", "/v1/customers/%s/tags" % cid, ANY)
        # HelpCrunch removes by name; whether a colour rides along is not its concern.
        sent = json.loads(call["body"])
        self.assertEqual([t["name"] for t in sent["tags"]], [first["name"], second["name"]])
        remaining = [t["name"] for t in customer["tags"]]
        self.assertNotIn(first["name"], remaining)
        self.assertNotIn(second["name"], remaining)
        self.assertEqual(r.body, self.customer_bytes(cid))
        self.assertAccessLine(r, "DELETE", cid, upstream_status=200)

    def test_get_tags(self):
        for c in (self.tagged, self.untagged):
            with self.subTest(contact=c["id"]):
                self.sim.reset()
                r = self.req("GET", "/contacts/%s/tags" % c["id"],
                             headers={"Authorization": CALLER_AUTH})
                got = self.assertJsonAnswer(r, 200)
                self.upstream_call("GET", "/v1/customers/%s" % c["id"])
                customer = json.loads(self.customer_bytes(c["id"]))
                self.assertEqual(got, {"tags": customer["tags"]})
                self.assertAccessLine(r, "GET", c["id"], upstream_status=200)

    def test_get_tags_after_changes(self):
        cid = self.untagged["id"]
        self.direct("PUT", "/customers/%s/tags" % cid,
                    {"tags": [{"name": "x", "color": "#123456"}, {"name": "\u00e9"}]})
        got = self.assertJsonAnswer(self.req("GET", "/contacts/%s/tags" % cid), 200)
        self.assertEqual(got, {"tags": json.loads(self.customer_bytes(cid))["tags"]})
        self.assertEqual([t["name"] for t in got["tags"]], ["x", "\u00e9"])

    # ---- one contact

    def test_get_contact(self):
        for c in self.seed:
            with self.subTest(contact=c["id"]):
                self.sim.reset()
                r = self.req("GET", "/contacts/%s" % c["id"],
                             headers={"Authorization": CALLER_AUTH})
                self.assertJsonAnswer(r, 200)
                self.upstream_call("GET", "/v1/customers/%s" % c["id"])
                self.assertEqual(r.body, self.customer_bytes(c["id"]))
                self.assertAccessLine(r, "GET", c["id"], upstream_status=200)

    def test_patch_contact(self):
        cid = self.tagged["id"]
        body = {"name": "Johnny D\u00f6e", "company": None, "customData": {"plan": "pro"}}
        r = self.req("PATCH", "/contacts/%s" % cid, body, {"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 200)
        self.upstream_call("PATCH", "/v1/customers/%s" % cid, body)
        self.assertEqual(customer["name"], "Johnny D\u00f6e")
        self.assertIsNone(customer["company"])
        self.assertEqual(r.body, self.customer_bytes(cid))
        self.assertAccessLine(r, "PATCH", cid, upstream_status=200)

    def test_block(self):
        cid = self.unblocked["id"]
        r = self.req("PUT", "/contacts/%s/block" % cid, headers={"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 200)
        self.upstream_call("PATCH", "/v1/customers/%s" % cid, {"blocked": True})
        self.assertIs(customer["blocked"], True)
        self.assertEqual(r.body, self.customer_bytes(cid))
        self.assertAccessLine(r, "PUT", cid, upstream_status=200)

    def test_unblock(self):
        cid = self.untagged["id"]  # blocked in the seed
        r = self.req("DELETE", "/contacts/%s/block" % cid, headers={"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 200)
        self.upstream_call("PATCH", "/v1/customers/%s" % cid, {"blocked": False})
        self.assertIs(customer["blocked"], False)
        self.assertEqual(r.body, self.customer_bytes(cid))
        self.assertAccessLine(r, "DELETE", cid, upstream_status=200)

    def test_block_then_unblock_same_contact(self):
        cid = self.unblocked["id"]
        self.assertIs(self.assertJsonAnswer(
            self.req("PUT", "/contacts/%s/block" % cid), 200)["blocked"], True)
        self.assertIs(json.loads(self.customer_bytes(cid))["blocked"], True)
        self.assertIs(self.assertJsonAnswer(
            self.req("DELETE", "/contacts/%s/block" % cid), 200)["blocked"], False)
        self.assertIs(json.loads(self.customer_bytes(cid))["blocked"], False)

    def test_delete_contact(self):
        cid = self.unblocked["id"]
        r = self.req("DELETE", "/contacts/%s" % cid, headers={"Authorization": CALLER_AUTH})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertIn(r.header("Content-Length"), (None, "0"))
        self.assertCommonHeaders(r)
        self.upstream_call("DELETE", "/v1/customers/%s" % cid)
        self.assertEqual(self.direct("GET", "/customers/%s" % cid).status, 404)
        self.assertAccessLine(r, "DELETE", cid, upstream_status=200)

    # ---- the collection

    def test_create_contact(self):
        body = {"name": "Grace Hopper", "email": "grace@example.com", "userId": "user_grace",
                "customData": {"rank": "admiral"}}
        r = self.req("POST", "/contacts", body, {"Authorization": CALLER_AUTH})
        customer = self.assertJsonAnswer(r, 201)
        self.upstream_call("POST", "/v1/customers", body)
        self.assertEqual(customer["name"], "Grace Hopper")
        self.assertNotIn(customer["id"], [c["id"] for c in self.seed])
        self.assertEqual(r.body, self.customer_bytes(customer["id"]))
        self.assertAccessLine(r, "POST", None, upstream_status=201)

    def test_search(self):
        body = {"filter": [{"field": "customers.email", "operator": "~", "value": "gmail"}],
                "comparison": "AND", "limit": 5, "offset": 0}
        r = self.req("POST", "/contacts/search", body, {"Authorization": CALLER_AUTH})
        got = self.assertJsonAnswer(r, 200)
        self.upstream_call("POST", "/v1/customers/search", body)
        self.assertEqual(r.body, self.direct("POST", "/customers/search", body).body)
        want = sorted(c["id"] for c in self.seed if "gmail" in (c.get("email") or ""))
        self.assertTrue(want)
        self.assertEqual(sorted(c["id"] for c in got["data"]), want)
        self.assertAccessLine(r, "POST", None, upstream_status=200)

    def test_search_by_tag(self):
        name = self.tagged["tags"][0]["name"]
        body = {"filter": [{"field": "customers.tagsData", "operator": "=",
                            "value": [{"name": name}]}]}
        r = self.req("POST", "/contacts/search", body)
        got = self.assertJsonAnswer(r, 200)
        self.upstream_call("POST", "/v1/customers/search", body)
        self.assertIn(self.tagged["id"], [c["id"] for c in got["data"]])
        self.assertEqual(r.body, self.direct("POST", "/customers/search", body).body)

    def list_query(self, call):
        q = urllib.parse.parse_qs(call["query"], keep_blank_values=True, strict_parsing=True)
        self.assertLessEqual(set(q), {"limit", "offset", "sort", "order"}, call["query"])
        for k, v in q.items():
            self.assertEqual(len(v), 1, call["query"])
        return {k: v[0] for k, v in q.items()}

    def test_list_contacts(self):
        cases = [
            ("", "100", "0"),
            ("?limit=0", "1", "0"),
            ("?limit=1", "1", "0"),
            ("?limit=2", "2", "0"),
            ("?limit=100", "100", "0"),
            ("?limit=101", "100", "0"),
            ("?limit=500", "100", "0"),
            ("?limit=000", "1", "0"),
            ("?offset=2", "100", "2"),
            ("?offset=0", "100", "0"),
            ("?limit=2&offset=1", "2", "1"),
            ("?offset=1&limit=2", "2", "1"),
            ("?offset=1000", "100", "1000"),
        ]
        for query, limit, offset in cases:
            with self.subTest(query=query):
                self.sim.reset()
                r = self.req("GET", "/contacts" + query, headers={"Authorization": CALLER_AUTH})
                got = self.assertJsonAnswer(r, 200)
                call = self.upstream_call("GET", "/v1/customers", query=None)
                sent = self.list_query(call)
                self.assertEqual(sent["limit"], limit)
                self.assertEqual(sent.get("offset", "0"), offset)
                # Byte for byte what HelpCrunch answers to that very query.
                self.assertEqual(r.body, self.direct("GET", "/customers?" + call["query"]).body)
                self.assertEqual(got["total"], len(self.seed))
                self.assertEqual(len(got["data"]),
                                 max(0, min(int(limit), len(self.seed) - int(offset))))
                self.assertAccessLine(r, "GET", None, upstream_status=200)

    def test_list_limit_clamped_whatever_its_length(self):
        # "limit clamped to 1..100": a limit far above 100 is a page of 100, not an error.
        for limit in ("12345678901", "99999999999999999999", "0" * 30 + "5"):
            with self.subTest(limit=limit):
                self.sim.reset()
                r = self.req("GET", "/contacts?limit=" + limit)
                self.assertJsonAnswer(r, 200)
                call = self.upstream_call("GET", "/v1/customers", query=None)
                self.assertEqual(self.list_query(call)["limit"],
                                 str(max(1, min(100, int(limit)))))

    # ---- headers and the key on every route

    def all_routes(self):
        """(method, path, body, hcgw status, upstream method, upstream path) for every route."""
        t, u, b = self.tagged["id"], self.untagged["id"], self.unblocked["id"]
        return [
            ("DELETE", "/contacts/%s/tags/%s" % (t, self.tagged["tags"][0]["name"]), None, 200,
             "DELETE", "/v1/customers/%s/tags" % t),
            ("PUT", "/contacts/%s/tags/New" % u, None, 200, "PUT", "/v1/customers/%s/tags" % u),
            ("POST", "/contacts/%s/tags" % u, {"tags": ["n"]}, 200,
             "PUT", "/v1/customers/%s/tags" % u),
            ("DELETE", "/contacts/%s/tags" % t, {"tags": ["n"]}, 200,
             "DELETE", "/v1/customers/%s/tags" % t),
            ("GET", "/contacts/%s/tags" % t, None, 200, "GET", "/v1/customers/%s" % t),
            ("GET", "/contacts/%s" % t, None, 200, "GET", "/v1/customers/%s" % t),
            ("PATCH", "/contacts/%s" % t, {"notes": "n"}, 200, "PATCH", "/v1/customers/%s" % t),
            ("PUT", "/contacts/%s/block" % b, None, 200, "PATCH", "/v1/customers/%s" % b),
            ("DELETE", "/contacts/%s/block" % u, None, 200, "PATCH", "/v1/customers/%s" % u),
            ("GET", "/contacts?limit=2", None, 200, "GET", "/v1/customers"),
            ("POST", "/contacts/search",
             {"filter": [{"field": "customers.id", "operator": "=", "value": t}]}, 200,
             "POST", "/v1/customers/search"),
            ("POST", "/contacts", {"name": "N"}, 201, "POST", "/v1/customers"),
            ("DELETE", "/contacts/%s" % b, None, 204, "DELETE", "/v1/customers/%s" % b),
        ]

    def test_caller_authorization_is_never_forwarded(self):
        for auth in (CALLER_AUTH, "Basic dXNlcjpwYXNz", "Bearer " + "z" * 40):
            for method, path, body, status, up_method, up_path in self.all_routes():
                with self.subTest(auth=auth, method=method, path=path):
                    self.sim.reset()
                    r = self.req(method, path, body, {"Authorization": auth})
                    self.assertEqual(r.status, status, r)
                    self.assertCommonHeaders(r)
                    call = self.upstream_call(up_method, up_path, ANY, query=None)
                    self.assertNotIn(auth.split(" ", 1)[1], json.dumps(call))

    def test_every_route_is_logged_once(self):
        routes = self.all_routes()
        names = {}
        for method, path, body, status, up_method, up_path in routes:
            with self.subTest(method=method, path=path):
                self.sim.reset()
                r = self.req(method, path, body)
                self.assertEqual(r.status, status, r)
                cid = path.split("/")[2].split("?")[0] if path.count("/") >= 2 else None
                if cid is not None and not cid.isdigit():
                    cid = None
                line = self.assertAccessLine(r, method, cid,
                                             upstream_status=201 if status == 201 else 200)
                names[(method, path.split("?")[0])] = line["route"]
        # Each route has a name of its own in the log.
        self.assertEqual(len(set(names.values())), len(routes), names)

    # ---- local routes

    def test_healthz(self):
        r = self.assertNoUpstreamCall(lambda: self.req("GET", "/healthz"))
        self.assertIsInstance(self.assertJsonAnswer(r, 200), dict)
        self.assertAccessLine(r, "GET", None, attempts=0)

    def test_readyz(self):
        r = self.assertNoUpstreamCall(lambda: self.req("GET", "/readyz"))
        self.assertIsInstance(self.assertJsonAnswer(r, 200), dict)
        self.assertAccessLine(r, "GET", None, attempts=0)

    def metrics(self):
        r = self.assertNoUpstreamCall(lambda: self.req("GET", "/metrics"))
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"), r.header("Content-Type"))
        self.assertCommonHeaders(r)
        text = r.body.decode("utf-8")
        self.assertIn("hcgw_requests_total", text)
        counts = {}
        for line in text.splitlines():
            m = METRIC_LINE.match(line)
            if m:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
                counts[(labels.get("route"), labels.get("status"))] = float(m.group(2))
        return r, counts

    def test_metrics_count_requests(self):
        cid = self.tagged["id"]
        _, before = self.metrics()
        r1 = self.req("GET", "/contacts/%s" % cid)
        r2 = self.req("GET", "/contacts/%s" % cid)
        r3 = self.req("GET", "/contacts/%s/tags" % cid)
        r4 = self.req("GET", "/healthz")
        for r in (r1, r2, r3, r4):
            self.assertEqual(r.status, 200, r)
        get_name = self.assertAccessLine(r1, "GET", cid, upstream_status=200)["route"]
        self.assertEqual(self.assertAccessLine(r2, "GET", cid, upstream_status=200)["route"],
                         get_name)
        tags_name = self.assertAccessLine(r3, "GET", cid, upstream_status=200)["route"]
        health_name = self.assertAccessLine(r4, "GET", None, attempts=0)["route"]
        _, after = self.metrics()
        self.assertEqual(after.get((get_name, "200"), 0) - before.get((get_name, "200"), 0), 2)
        self.assertEqual(after.get((tags_name, "200"), 0) - before.get((tags_name, "200"), 0), 1)
        self.assertGreaterEqual(after.get((health_name, "200"), 0)
                                - before.get((health_name, "200"), 0), 1)

    # ---- one connection, many requests

    def test_keep_alive_connection_serves_each_request_once(self):
        cid = self.tagged["id"]
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=30)
        seen = []
        try:
            plan = [("GET", "/contacts/%s" % cid, None, {}, 200),
                    ("GET", "/nope", None, {}, 404),
                    ("POST", "/contacts/%s/tags" % cid, '{"tags":[]}',
                     {"Content-Type": "application/json"}, 400),
                    ("PUT", "/contacts/%s/tags/Kept" % cid, None, {}, 200),
                    ("GET", "/contacts/%s/tags" % cid, None, {}, 200),
                    ("GET", "/healthz", None, {}, 200)]
            for i, (method, path, body, headers, status) in enumerate(plan):
                hdrs = dict(headers)
                hdrs["X-Request-Id"] = "keepalive-%d-%s" % (i, self.id().rsplit(".", 1)[-1])
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                r = harness.Response(resp.status, resp.getheaders(), data)
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.header("X-Request-Id"), hdrs["X-Request-Id"])
                self.assertNotIn(self.sim.key.encode(), data)
                seen.append(r)
        finally:
            conn.close()
        self.assertIn("Kept", [t["name"] for t in seen[4].json()["tags"]])
        for r in seen:
            self.assertEqual(len(self.access_lines_for(r.header("X-Request-Id"))), 1)
        # Only the routes that reach HelpCrunch called it: get, put tag, get tags.
        self.assertEqual(self.sim.count(), 3)


if __name__ == "__main__":
    unittest.main()

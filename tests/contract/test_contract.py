"""The contract test: hcgw's real answers against docs/openapi.yaml.

Replays requests through real hcgw processes in front of hcgw-sim (through the integration
harness): every operation's success, and the error answers of docs/contract.md, local and
upstream (the simulator is scripted to fail the way HelpCrunch or the network can), with a
gateway for each kind of setup (defaults, short deadlines without retries, a quota governor,
client credentials, a drain, a cors group with a client bound to an origin). Each exchange is
checked here for the status and code this test expects (so that the replay really covers what
it claims), recorded as it went over the wire,
and written to a JSON file; validate.mjs then checks the document against hcgw's own tables
(routes and error codes, as `hcgw --dump-tables` prints them) and every recorded exchange
against the document (see its header), and fails on any drift. A last test checks that
validate.mjs does fail: it runs it on deliberately drifted copies of the document.

Needs Node.js and tests/contract/node_modules (`npm ci` here; tests/contract/deps.sh, which
ctest runs first as a fixture). Environment: HCGW_BIN, HCGW_SIM_BIN, HCGW_SOURCE_DIR as for the
integration tests, HCGW_CONTRACT_OUT (a folder for exchanges.json; a temporary one if unset).
"""
import base64
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import Gateway, Sim, assert_clean_stderr, full_conf  # noqa: E402

SOURCE_DIR = os.path.abspath(os.environ.get("HCGW_SOURCE_DIR", os.path.join(HERE, "..", "..")))
DOC = os.path.join(SOURCE_DIR, "docs", "openapi.yaml")
VALIDATOR = os.path.join(HERE, "validate.mjs")

# Seed customers of hcgw-sim (docs/simulator.md).
JOHN = "1568834"    # tags vip and Lead
JANE = "1568835"    # blocked, no tags
MAX = "1568836"
ADA = "1568837"

# Error codes no black-box request can bring about.
NOT_EXERCISED = ["internal_error"]

MAX_BODY = 4096
READER_TOKEN = "contract-reader-token-0123456789"
BROWSER_TOKEN = "contract-browser-token-0123456789"
APP = "https://crm.example.com"          # the origin the cors gateway allows
OPS = "https://ops.example.com"          # allowed too, but not for the browser client
EVIL = "https://evil.example"
JSON_CT = {"Content-Type": "application/json"}

SEARCH = {"filter": [{"field": "customers.email", "operator": "~", "value": "gmail"}],
          "comparison": "AND", "limit": 5, "offset": 0}
HC_ERROR = {"errors": [{"code": "invalid_request", "message": "Invalid request"},
                       {"code": "email", "message": "This value is not a valid email."}]}


class Recorder:
    """Sends requests, checks the expected status and code, and keeps every exchange."""

    def __init__(self, testcase):
        self.tc = testcase
        self.exchanges = []

    def keep(self, name, method, target, req_headers, req_body, r):
        self.exchanges.append({
            "name": name, "method": method, "target": target,
            "req_headers": dict(req_headers),
            "req_body_b64": None if req_body is None else base64.b64encode(req_body).decode(),
            "status": r.status,
            "headers": [[k, v] for k, v in r.headers],
            "body_b64": base64.b64encode(r.body).decode(),
        })

    def expect(self, name, r, status, code=None):
        self.tc.assertEqual(r.status, status, "%s: %r" % (name, r))
        if code is not None:
            self.tc.assertEqual(r.json()["error"]["code"], code, "%s: %r" % (name, r))

    def send(self, gw, name, method, target, body=None, headers=None, status=200, code=None):
        """One request on a new connection. @p body: bytes, str, or an object sent as JSON."""
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode("utf-8")
        r = harness.http_request(gw.port, method, target, body, hdrs)
        self.keep(name, method, target, hdrs, body, r)
        self.expect(name, r, status, code)
        return r

    def send_on(self, conn, name, method, target, headers=None):
        """One request on an open keep-alive connection @p conn (no body)."""
        hdrs = dict(headers or {})
        conn.request(method, target, headers=hdrs)
        resp = conn.getresponse()
        r = harness.Response(resp.status, resp.getheaders(), resp.read())
        self.keep(name, method, target, hdrs, None, r)
        return r

    def send_raw(self, port, name, method, target, req_headers, data, status, code):
        """@p data as it is on a new connection; @p req_headers is what it says, for the record."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            sock.sendall(data)
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            r = harness.Response(resp.status, resp.getheaders(), resp.read())
        finally:
            sock.close()
        self.keep(name, method, target, req_headers, None, r)
        self.expect(name, r, status, code)
        return r


def run_validator(exchanges=None, mutate=None):
    cmd = ["node", VALIDATOR, "--doc", DOC, "--source", SOURCE_DIR,
           "--hcgw", os.path.abspath(harness.HCGW_BIN), "--not-exercised", ",".join(NOT_EXERCISED)]
    if exchanges is not None:
        cmd += ["--exchanges", exchanges]
    if mutate is not None:
        cmd += ["--mutate", mutate]
    return subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=120)


class ContractTest(unittest.TestCase):
    exchanges_path = None

    @classmethod
    def setUpClass(cls):
        # Not a skip: a contract check that silently does not run is no check.
        if not os.path.isdir(os.path.join(HERE, "node_modules", "ajv")):
            raise AssertionError("tests/contract/node_modules is missing: run "
                                 "tests/contract/deps.sh (npm ci)")
        out = os.environ.get("HCGW_CONTRACT_OUT") or tempfile.mkdtemp(prefix="hcgw-contract-")
        os.makedirs(out, exist_ok=True)
        rec = Recorder(unittest.TestCase())
        cls.replay(rec)
        cls.exchanges_path = os.path.join(out, "exchanges.json")
        with open(cls.exchanges_path, "w") as f:
            json.dump(rec.exchanges, f, indent=1)
        cls.count = len(rec.exchanges)

    # ---- the replay, one gateway per setup

    @classmethod
    def replay(cls, rec):
        for scenario in (cls.main_gateway, cls.cache_gateway, cls.fast_gateway,
                         cls.quota_gateway, cls.auth_gateway, cls.drain_gateway,
                         cls.cors_gateway):
            sim = Sim()
            gw = None
            try:
                gw = scenario(rec, sim)
            finally:
                tc = unittest.TestCase()
                if gw is not None:
                    rc = gw.stop()
                    assert_clean_stderr(tc, gw.proc, sim.key)
                    tc.assertEqual(rc, 0, "hcgw exit status; stderr tail:\n"
                                   + gw.proc.stderr_text()[-3000:])
                tc.assertEqual(sim.stop(), 0)

    @staticmethod
    def main_gateway(rec, sim):
        """Defaults (quota off), a small body bound: successes, local 4xx, mapped upstream 4xx."""
        gw = Gateway(sim, conf={"limits": {"max_body_bytes": MAX_BODY},
                                "upstream": {"auth_failure_unready_ms": 60000}})
        s = rec.send
        # Local routes.
        s(gw, "healthz", "GET", "/healthz")
        s(gw, "readyz", "GET", "/readyz")
        s(gw, "metrics", "GET", "/metrics")
        s(gw, "openapi", "GET", "/openapi.yaml")
        # Every upstream route's success.
        s(gw, "get with a caller id", "GET", "/contacts/" + JOHN,
          headers={"X-Request-Id": "contract-get-1"})
        s(gw, "get with an invalid caller id", "GET", "/contacts/" + JOHN,
          headers={"X-Request-Id": "not valid!"})
        s(gw, "get in a caller's trace", "GET", "/contacts/" + JOHN,
          headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                   "tracestate": "congo=t61rcWkgMzE"})
        s(gw, "get with a malformed traceparent", "GET", "/contacts/" + JOHN,
          headers={"traceparent": "not a trace", "tracestate": "Bad Key=1"})
        s(gw, "tags get", "GET", "/contacts/%s/tags" % JOHN)
        s(gw, "tags get, none", "GET", "/contacts/%s/tags" % JANE)
        hundred = {"tags": ["t%d" % i for i in range(100)]}
        s(gw, "tags add, 100 tags", "POST", "/contacts/%s/tags" % JANE, hundred)
        s(gw, "tags remove, 100 tags", "DELETE", "/contacts/%s/tags" % JANE, hundred)
        s(gw, "tag put", "PUT", "/contacts/%s/tags/Lead" % JANE)
        s(gw, "tag put, slash", "PUT", "/contacts/%s/tags/Q3%%2FEMEA" % JANE)
        s(gw, "tag put, 100 characters", "PUT", "/contacts/%s/tags/%s" % (JANE, "x" * 100))
        s(gw, "tag put, unicode", "PUT", "/contacts/%s/tags/%%C3%%A9t%%C3%%A9" % JANE)
        s(gw, "tag delete", "DELETE", "/contacts/%s/tags/vip" % JOHN)
        s(gw, "tags add", "POST", "/contacts/%s/tags" % JANE,
          {"tags": ["a", {"name": "b", "color": "#00ff00"}, {"name": "c", "color": "#abc"}]})
        s(gw, "tags remove", "DELETE", "/contacts/%s/tags" % JANE,
          {"tags": ["a", {"name": "b", "color": "#00ff00"}]})
        s(gw, "patch", "PATCH", "/contacts/" + MAX, {"company": "ACME", "notes": None,
                                                     "customData": {"plan": "pro"}})
        s(gw, "block", "PUT", "/contacts/%s/block" % MAX)
        s(gw, "unblock", "DELETE", "/contacts/%s/block" % JANE)
        s(gw, "list", "GET", "/contacts")
        s(gw, "list, every parameter", "GET",
          "/contacts?limit=2&offset=1&sort=customers.lastSeen&order=desc")
        s(gw, "list, limit clamped", "GET", "/contacts?limit=500")
        # gzip to a caller that accepts it: the bodies are checked as they inflate.
        gz = {"Accept-Encoding": "gzip"}
        for name, target in (("list, gzip", "/contacts"), ("metrics, gzip", "/metrics"),
                             ("openapi, gzip", "/openapi.yaml")):
            r = s(gw, name, "GET", target, headers=gz)
            rec.tc.assertEqual(r.header("Content-Encoding"), "gzip", name)
        s(gw, "head, gzip", "HEAD", "/contacts", headers=gz)
        s(gw, "search, gzip", "POST", "/contacts/search", SEARCH, headers=gz)
        s(gw, "search", "POST", "/contacts/search", SEARCH)
        s(gw, "search by tag", "POST", "/contacts/search",
          {"filter": [{"field": "customers.tagsData", "operator": "=",
                       "value": [{"name": "PPC"}]}]})
        s(gw, "create", "POST", "/contacts",
          {"name": "Grace Hopper", "email": "grace@example.com", "userId": "u_grace"}, status=201)
        s(gw, "delete", "DELETE", "/contacts/" + ADA, status=204)
        ContractTest.idempotency(rec, gw, sim)
        # HEAD of every GET route: the GET's answer without its body.
        for target in ("/healthz", "/readyz", "/metrics", "/openapi.yaml", "/contacts?limit=2",
                       "/contacts/" + JOHN, "/contacts/%s/tags" % JOHN):
            s(gw, "head", "HEAD", target)
        s(gw, "head, bad id", "HEAD", "/contacts/0", status=400)
        s(gw, "head, no such contact", "HEAD", "/contacts/999999", status=404)
        s(gw, "head, bad query", "HEAD", "/contacts?limit=x", status=400)
        s(gw, "head, no GET here", "HEAD", "/contacts/search", status=405)
        s(gw, "head, no route", "HEAD", "/nope", status=404)
        # Without a cors group, OPTIONS is no method of hcgw's.
        s(gw, "preflight, no cors group", "OPTIONS", "/contacts/" + JOHN,
          headers={"Origin": APP, "Access-Control-Request-Method": "PATCH"}, status=405,
          code="method_not_allowed")

        # Local refusals, no upstream call.
        for target in ("/contacts/0", "/contacts/abc", "/contacts/01",
                       "/contacts/12345678901234567890"):
            s(gw, "bad id " + target, "GET", target, status=400, code="invalid_contact_id")
        s(gw, "bad id on a tag route", "PUT", "/contacts/0/tags/x", status=400,
          code="invalid_contact_id")
        for seg in ("%00", "%ZZ", "a%", "%C3%28", "x" * 101, "%7F"):
            s(gw, "bad tag " + seg[:10], "PUT", "/contacts/%s/tags/%s" % (JOHN, seg),
              status=400, code="invalid_tag")
        tags = "/contacts/%s/tags" % JOHN
        for body in ({"tags": []}, {"tags": ["ok"], "x": 1},
                     {"tags": [{"name": "a", "color": "red"}]},
                     {"tags": [{"name": "a", "size": 1}]}, {"tags": "a"},
                     {"tags": ["t"] * 101}, "not json", "[1]"):
            s(gw, "bad tags body", "POST", tags, body, JSON_CT if isinstance(body, str) else None,
              status=400, code="invalid_body")
        s(gw, "bad tag in a body", "POST", tags, {"tags": ["a\u0001"]}, status=400,
          code="invalid_tag")
        s(gw, "bad tag in a remove body", "DELETE", tags, {"tags": [{"name": ""}]}, status=400,
          code="invalid_tag")
        s(gw, "patch, not an object", "PATCH", "/contacts/" + JOHN, "[1]", JSON_CT, status=400,
          code="invalid_body")
        s(gw, "create, trailing bytes", "POST", "/contacts", '{"name":"x"} x', JSON_CT,
          status=400, code="invalid_body")
        for body in ({"limit": 101}, {"limit": 0}, {"offset": -1}, {"comparison": "XOR"},
                     {"filter": [1]}, {"filter": {"field": "x"}}, {"limit": "5"}):
            s(gw, "bad search", "POST", "/contacts/search", body, status=400,
              code="invalid_body")
        for query in ("limit=abc", "foo=1", "limit=1&limit=2", "sort=name", "order=up",
                      "offset=2147483648", "offset=-1"):
            s(gw, "bad query " + query, "GET", "/contacts?" + query, status=400,
              code="invalid_query")
        for target in ("/nope", "/contacts/1/tags/a/b", "/openapi.json", "/contacts/",
                       "/Contacts"):
            s(gw, "no route", "GET", target, status=404, code="route_not_found")
        for method, target in (("PATCH", "/contacts"), ("GET", "/contacts/search"),
                               ("POST", "/healthz"), ("PUT", "/contacts/" + JOHN),
                               ("GET", "/contacts/%s/block" % JOHN),
                               ("POST", "/contacts/%s/tags/x" % JOHN),
                               ("DELETE", "/openapi.yaml")):
            s(gw, "wrong method", method, target, status=405, code="method_not_allowed")
        s(gw, "body too large", "PATCH", "/contacts/" + JOHN,
          {"notes": "x" * MAX_BODY}, status=413, code="body_too_large")
        s(gw, "body too large on a local route", "GET", "/healthz", "x" * (MAX_BODY + 1),
          status=413, code="body_too_large")
        s(gw, "text/plain body", "POST", "/contacts", '{"name":"x"}',
          {"Content-Type": "text/plain"}, status=415, code="unsupported_media_type")
        s(gw, "no content type", "POST", tags, b'{"tags":["x"]}', status=415,
          code="unsupported_media_type")
        s(gw, "uri too long", "GET", "/contacts/%s?x=%s" % (JOHN, "a" * 2100), status=414,
          code="uri_too_long")
        s(gw, "uri too long, no route", "GET", "/%s" % ("b" * 2100), status=414,
          code="uri_too_long")
        rec.send_raw(gw.port, "two Content-Length", "POST", "/contacts",
                     {"Content-Type": "application/json", "Content-Length": "2"},
                     b"POST /contacts HTTP/1.1\r\nHost: contract\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                     b"Content-Length: 2\r\n\r\n{}", 400, "malformed_request")
        rec.send_raw(gw.port, "Transfer-Encoding with Content-Length", "GET", "/nope",
                     {"Transfer-Encoding": "chunked", "Content-Length": "5"},
                     b"GET /nope HTTP/1.1\r\nHost: contract\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400, "malformed_request")

        # HelpCrunch's own answers, mapped.
        s(gw, "no such contact", "GET", "/contacts/999999", status=404, code="not_found")
        s(gw, "HelpCrunch refuses a field", "POST", "/contacts",
          {"name": "X", "blocked": "yes"}, status=400, code="invalid_request")
        sim.script({"status": 409, "json": {"errors": [{"code": "conflict",
                                                        "message": "Conflict"}]}})
        s(gw, "conflict", "PATCH", "/contacts/" + JOHN, {"name": "y"}, status=409,
          code="conflict")
        sim.script({"status": 422, "json": HC_ERROR})
        s(gw, "422", "POST", "/contacts/search", SEARCH, status=422, code="invalid_request")
        sim.script({"status": 400, "json": HC_ERROR})
        s(gw, "400 on a tag route", "PUT", "/contacts/%s/tags/x" % JOHN, status=400,
          code="invalid_request")
        sim.script({"status": 404, "json": {"errors": [{"code": "entity_not_found",
                                                        "message": "Customer not found"}]}})
        s(gw, "404 on search", "POST", "/contacts/search", SEARCH, status=404, code="not_found")
        # Last on this gateway: a refused key makes /readyz 503 for a minute.
        sim.script({"status": 401, "json": {"errors": [{"code": "unauthorized",
                                                        "message": "Invalid token"}]}})
        s(gw, "key refused", "POST", "/contacts", {"name": "Z"}, status=502,
          code="upstream_auth_failed")
        s(gw, "not ready after a refused key", "GET", "/readyz", status=503,
          code="upstream_auth_failed")
        return gw

    @staticmethod
    def idempotency(rec, gw, sim):
        """Idempotency-Key on a create: stored, replayed (bare and quoted), another body, bad
        keys, a HelpCrunch 422 kept and replayed, a key in progress."""
        s = rec.send
        body = {"name": "Ida", "email": "ida@example.com"}
        key = {"Idempotency-Key": "contract-create-1"}
        s(gw, "create with a key", "POST", "/contacts", body, key, status=201)
        r = s(gw, "create replayed", "POST", "/contacts", body, key, status=201)
        rec.tc.assertEqual(r.header("Idempotent-Replayed"), "true")
        s(gw, "create replayed, quoted key", "POST", "/contacts", body,
          {"Idempotency-Key": '"contract-create-1"'}, status=201)
        s(gw, "key with another body", "POST", "/contacts", dict(body, name="Other"), key,
          status=422, code="idempotency_key_reused")
        for bad in ("", "a b", "x" * 256, '"unterminated'):
            s(gw, "bad idempotency key", "POST", "/contacts", body, {"Idempotency-Key": bad},
              status=400, code="invalid_idempotency_key")
        key = {"Idempotency-Key": "contract-create-2"}
        sim.script({"status": 422, "json": HC_ERROR})
        s(gw, "HelpCrunch 422 kept", "POST", "/contacts", {"name": "Y"}, key, status=422,
          code="invalid_request")
        r = s(gw, "HelpCrunch 422 replayed", "POST", "/contacts", {"name": "Y"}, key,
              status=422, code="invalid_request")
        rec.tc.assertEqual(r.header("Idempotent-Replayed"), "true")
        key = {"Idempotency-Key": "contract-create-3"}
        sim.script({"status": 400, "json": HC_ERROR})
        s(gw, "HelpCrunch 400 kept", "POST", "/contacts", {"name": "Z"}, key, status=400,
          code="invalid_request")
        s(gw, "HelpCrunch 400 replayed", "POST", "/contacts", {"name": "Z"}, key, status=400,
          code="invalid_request")
        # A key whose first request still runs.
        key = {"Idempotency-Key": "contract-create-4"}
        sim.script({"delay_ms": 1000})
        before = sim.count()
        first = []
        t = threading.Thread(target=lambda: first.append(
            harness.http_request(gw.port, "POST", "/contacts", json.dumps(body),
                                 dict(key, **JSON_CT))))
        t.start()
        deadline = time.monotonic() + 5
        while sim.count() <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        s(gw, "key in progress", "POST", "/contacts", body, key, status=409,
          code="idempotency_key_in_progress")
        t.join(30)
        rec.keep("key's first request", "POST", "/contacts", dict(key, **JSON_CT),
                 json.dumps(body).encode(), first[0])
        rec.expect("key's first request", first[0], 201)

    @staticmethod
    def fast_gateway(rec, sim):
        """Short deadline, no retries, one request in flight: 502 variants, 504, 503 overloaded."""
        gw = Gateway(sim, conf={"upstream": {"timeout_ms": 800, "max_retries": 0},
                                "limits": {"max_in_flight": 1}})
        s = rec.send
        sim.script({"status": 500, "json": {"errors": [{"code": "x", "message": "boom"}]}})
        s(gw, "HelpCrunch 500", "GET", "/contacts/" + JOHN, status=502, code="upstream_error")
        sim.script({"status": 503, "body": "<html>Bad gateway</html>",
                    "content_type": "text/html"})
        s(gw, "proxy 503 page", "DELETE", "/contacts/%s/tags/vip" % JOHN, status=502,
          code="upstream_error")
        sim.script({"status": 418, "json": {}})
        s(gw, "HelpCrunch 418", "POST", "/contacts/search", SEARCH, status=502,
          code="upstream_error")
        sim.script({"status": 200, "body": "not json"})
        s(gw, "2xx not JSON", "GET", "/contacts/" + JOHN, status=502,
          code="upstream_bad_response")
        sim.script({"status": 200, "json": {"total": 1}})
        s(gw, "list without data", "GET", "/contacts", status=502, code="upstream_bad_response")
        sim.script({"status": 200, "json": {"tags": "vip"}})
        s(gw, "tags not an array", "GET", "/contacts/%s/tags" % JOHN, status=502,
          code="upstream_bad_response")
        # A POST goes on a fresh connection, which libcurl does not quietly re-send on.
        sim.script({"action": "close"})
        s(gw, "connection closed", "POST", "/contacts/search", SEARCH, status=502,
          code="upstream_unavailable")
        # One call hangs until the deadline; meanwhile the worker is at max_in_flight.
        sim.script({"action": "hang"})
        before = sim.count()
        hung = []
        t = threading.Thread(target=lambda: hung.append(
            harness.http_request(gw.port, "GET", "/contacts/" + JOHN)))
        t.start()
        deadline = time.monotonic() + 5
        while sim.count() <= before and time.monotonic() < deadline:
            time.sleep(0.01)
        s(gw, "overloaded", "GET", "/contacts/" + JANE, status=503, code="overloaded")
        t.join(30)
        rec.keep("upstream timeout", "GET", "/contacts/" + JOHN, {}, None, hung[0])
        rec.expect("upstream timeout", hung[0], 504, "upstream_timeout")
        # A create that timed out after HelpCrunch made the contact, found again by its key.
        body = {"name": "Late", "email": "late@example.com"}
        key = {"Idempotency-Key": "contract-late-1"}
        sim.script({"delay_ms": 1500})
        s(gw, "create timed out", "POST", "/contacts", body, key, status=504,
          code="upstream_timeout")
        search = {"filter": [{"field": "customers.email", "operator": "=",
                              "value": body["email"]}]}
        deadline = time.monotonic() + 10
        auth = {"Authorization": "Bearer " + sim.key}
        while not harness.http_request(sim.port, "POST", "/v1/customers/search", search,
                                       auth).json()["data"] and time.monotonic() < deadline:
            time.sleep(0.05)
        s(gw, "create recovered", "POST", "/contacts", body, key, status=201)
        return gw

    @staticmethod
    def quota_gateway(rec, sim):
        """The quota governor: HelpCrunch's 429 passed on, then a local 429 in the cooldown."""
        gw = Gateway(sim, conf={"upstream": {"max_retries": 0},
                                "quota": {"requests_per_minute": 60, "burst": 1,
                                          "max_wait_ms": 100, "cooldown_ms": 5000}})
        sim.script({"status": 429, "headers": {"Retry-After": "3"},
                    "json": {"errors": [{"code": "too_many_requests",
                                         "message": "You have exceeded your requests limit"}]}})
        rec.send(gw, "HelpCrunch 429", "POST", "/contacts/search", SEARCH, status=429,
                 code="rate_limited")
        before = sim.count()
        rec.send(gw, "local 429 in the cooldown", "GET", "/contacts/" + JOHN, status=429,
                 code="rate_limited")
        rec.tc.assertEqual(sim.count(), before, "a local 429 spent an upstream call")
        return gw

    @staticmethod
    def auth_gateway(rec, sim):
        """Client credentials: 401 without one, 403 for a route the client may not call."""
        digest = hashlib.sha256(READER_TOKEN.encode()).hexdigest()
        conf = full_conf(sim.base_url) + (
            'auth = "clients";\nclients = ( { name = "reader"; token_sha256 = "%s"; '
            'routes = [ "contact_get" ]; } );\n' % digest)
        gw = Gateway(sim, conf=conf)
        good = {"Authorization": "Bearer " + READER_TOKEN}
        s = rec.send
        s(gw, "client allowed", "GET", "/contacts/" + JOHN, headers=good)
        s(gw, "no credential", "GET", "/contacts/" + JOHN, status=401, code="unauthenticated")
        s(gw, "wrong token", "GET", "/contacts/" + JOHN,
          headers={"Authorization": "Bearer wrong-token"}, status=401, code="unauthenticated")
        s(gw, "not Bearer", "GET", "/contacts/" + JOHN,
          headers={"Authorization": "Basic dXNlcjpwYXNz"}, status=401, code="unauthenticated")
        s(gw, "no credential, no route", "GET", "/nope", status=401, code="unauthenticated")
        s(gw, "route not allowed", "POST", "/contacts", {"name": "N"}, headers=good,
          status=403, code="forbidden")
        s(gw, "route not allowed, tag", "PUT", "/contacts/%s/tags/x" % JOHN, headers=good,
          status=403, code="forbidden")
        s(gw, "public without a credential", "GET", "/healthz")
        s(gw, "document without a credential", "GET", "/openapi.yaml")
        return gw

    @staticmethod
    def cors_gateway(rec, sim):
        """A cors group and a client bound to one origin: preflights of every path, refusals,
        answers to an allowed origin."""
        digest = hashlib.sha256(BROWSER_TOKEN.encode()).hexdigest()
        conf = full_conf(sim.base_url, cors={"allow_origins": [APP, OPS], "max_age_s": 300}) + (
            'clients = ( { name = "browser"; token_sha256 = "%s"; routes = [ "*" ]; '
            'origins = [ "%s" ]; } );\n' % (digest, APP))
        gw = Gateway(sim, conf=conf)
        s = rec.send

        def pf(origin, method="PUT", **more):
            return dict({"Origin": origin, "Access-Control-Request-Method": method}, **more)

        for target in ("/contacts/%s/tags/Lead" % JOHN, "/contacts/%s/tags" % JOHN,
                       "/contacts/%s/block" % JOHN, "/contacts/search", "/contacts/" + JOHN,
                       "/contacts", "/healthz", "/readyz", "/metrics", "/openapi.yaml"):
            s(gw, "preflight", "OPTIONS", target, status=204,
              headers=pf(APP, **{"Access-Control-Request-Headers": "authorization"}))
        s(gw, "preflight, method the path lacks", "OPTIONS", "/contacts/search",
          headers=pf(OPS, "DELETE"), status=204)
        s(gw, "preflight, other origin", "OPTIONS", "/contacts/" + JOHN, headers=pf(EVIL),
          status=403, code="cors_origin_not_allowed")
        s(gw, "preflight, other origin, no route", "OPTIONS", "/nope", headers=pf(EVIL),
          status=403, code="cors_origin_not_allowed")
        s(gw, "preflight, no route", "OPTIONS", "/nope", headers=pf(APP), status=404,
          code="route_not_found")
        s(gw, "preflight, bad method", "OPTIONS", "/contacts/" + JOHN, headers=pf(APP, "P T"),
          status=400, code="invalid_preflight")
        s(gw, "OPTIONS, not a preflight", "OPTIONS", "/contacts/" + JOHN,
          headers={"Origin": APP, "Authorization": "Bearer " + BROWSER_TOKEN}, status=405,
          code="method_not_allowed")
        good = {"Authorization": "Bearer " + BROWSER_TOKEN}
        s(gw, "read from the client's origin", "GET", "/contacts/" + JOHN,
          headers=dict(good, Origin=APP))
        s(gw, "write from the client's origin", "PUT", "/contacts/%s/tags/Web" % JANE,
          headers=dict(good, Origin=APP))
        s(gw, "head from the client's origin", "HEAD", "/contacts/" + JOHN,
          headers=dict(good, Origin=APP))
        s(gw, "error to an allowed origin", "GET", "/contacts/0",
          headers=dict(good, Origin=APP), status=400, code="invalid_contact_id")
        s(gw, "401 to an allowed origin", "GET", "/contacts/" + JOHN, headers={"Origin": APP},
          status=401, code="unauthenticated")
        s(gw, "the client's token from another origin", "PUT", "/contacts/%s/tags/Web" % JANE,
          headers=dict(good, Origin=OPS), status=403, code="cors_origin_not_allowed")
        s(gw, "the client's token from another origin, no route", "GET", "/nope",
          headers=dict(good, Origin=EVIL), status=403, code="cors_origin_not_allowed")
        s(gw, "an origin not allowed, public route", "GET", "/healthz",
          headers={"Origin": EVIL})
        return gw

    @staticmethod
    def cache_gateway(rec, sim):
        """The contact cache on: misses, hits with Age, 304 from If-None-Match, a forced
        refresh; the answers' Cache-Status, ETag and Age against the document."""
        gw = Gateway(sim, conf={"cache": {"ttl_ms": 60000}, "compression": {"min_bytes": 256}})
        s = rec.send
        got = s(gw, "cache miss", "GET", "/contacts/" + JOHN)
        s(gw, "cache hit", "GET", "/contacts/" + JOHN)
        s(gw, "cache 304", "GET", "/contacts/" + JOHN,
          headers={"If-None-Match": got.header("ETag")}, status=304)
        s(gw, "cache refresh", "GET", "/contacts/" + JOHN, headers={"Cache-Control": "no-cache"})
        s(gw, "cache max-age", "GET", "/contacts/" + JOHN, headers={"Cache-Control": "max-age=5"})
        tags = s(gw, "cache tags hit", "GET", "/contacts/%s/tags" % JOHN)
        s(gw, "cache tags 304", "GET", "/contacts/%s/tags" % JOHN,
          headers={"If-None-Match": tags.header("ETag")}, status=304)
        s(gw, "cache write-through", "PUT", "/contacts/%s/tags/Lead" % JANE)
        s(gw, "cache after a write", "GET", "/contacts/" + JANE)
        s(gw, "cache not found", "GET", "/contacts/999999999", status=404, code="not_found")
        # gzip (a customer is over 256 bytes): the gzip representation and its own ETag.
        gz = {"Accept-Encoding": "gzip"}
        zipped = s(gw, "cache hit, gzip", "GET", "/contacts/" + JOHN, headers=gz)
        rec.tc.assertTrue(zipped.header("ETag").endswith('-gz"'), zipped.headers)
        s(gw, "cache 304, gzip", "GET", "/contacts/" + JOHN,
          headers={"If-None-Match": zipped.header("ETag"), "Accept-Encoding": "gzip"},
          status=304)
        s(gw, "cache refresh, gzip", "GET", "/contacts/" + JOHN,
          headers={"Cache-Control": "no-cache", "Accept-Encoding": "gzip"})
        return gw

    @staticmethod
    def drain_gateway(rec, sim):
        """SIGTERM with a request in flight: new requests on open connections get 503."""
        gw = Gateway(sim, conf={"server": {"drain_timeout_ms": 5000}})
        conns = [http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30) for _ in range(2)]
        try:
            for c in conns:
                rec.expect("keep-alive", rec.send_on(c, "before the drain", "GET", "/healthz"),
                           200)
            sim.script({"delay_ms": 1500})
            before = sim.count()
            slow = []
            t = threading.Thread(target=lambda: slow.append(
                harness.http_request(gw.port, "GET", "/contacts/" + JOHN)))
            t.start()
            deadline = time.monotonic() + 5
            while sim.count() <= before and time.monotonic() < deadline:
                time.sleep(0.01)
            gw.proc.proc.send_signal(signal.SIGTERM)
            for c, target in zip(conns, ("/readyz", "/healthz")):
                # The drain starts a moment after the signal: ask until it shows.
                deadline = time.monotonic() + 5
                while True:
                    r = rec.send_on(c, "during the drain", "GET", target)
                    if r.status != 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
                rec.expect("during the drain " + target, r, 503, "shutting_down")
            t.join(30)
            rec.keep("in flight at the drain", "GET", "/contacts/" + JOHN, {}, None, slow[0])
            rec.expect("in flight at the drain", slow[0], 200)
        finally:
            for c in conns:
                c.close()
        return gw

    # ---- the checks

    def test_document_matches_the_code_and_every_answer(self):
        p = run_validator(self.exchanges_path)
        self.assertEqual(p.returncode, 0, "validate.mjs found drift between docs/openapi.yaml "
                         "and hcgw (%d exchanges in %s):\n%s%s"
                         % (self.count, self.exchanges_path, p.stdout, p.stderr))
        self.assertIn("0 problems", p.stdout)

    def test_drift_is_caught(self):
        # Each mutation is a drift the validator must report: a code or route gone from the
        # document, a wrong success status, a changed security header, a constraint tighter or
        # looser than hcgw's, a renamed field.
        mutations = {
            "drop-code-rate_limited": "rate_limited",
            "drop-path-block": "contact_block",
            "create-answers-200": "201",
            "nosniff-changed": "X-Content-Type-Options",
            "tag-name-shorter": "hcgw took it, the document refuses",
            "list-total-renamed": "count",
            "search-limit-looser": "hcgw refused the body, the document accepts it",
            "drop-preflight-healthz": "OPTIONS /healthz (its CORS preflight) is not in the "
                                      "document",
            "drop-head-contact": "HEAD /contacts/{id} (the HEAD of contact_get) is not in the "
                                 "document",
        }
        for name, needle in mutations.items():
            with self.subTest(mutation=name):
                p = run_validator(self.exchanges_path, mutate=name)
                self.assertEqual(p.returncode, 1, "mutation %s passed:\n%s%s"
                                 % (name, p.stdout, p.stderr))
                self.assertIn(needle, p.stderr)


if __name__ == "__main__":
    unittest.main()

"""Browsers as callers (CORS), over real HTTP: every rule of docs/contract.md "Browsers (CORS)".

- No cors group: OPTIONS stays a 405 and no answer carries a CORS header or Vary: Origin.
- A preflight (OPTIONS with Origin and Access-Control-Request-Method) for a known path from an
  allowed origin: 204 with Access-Control-Allow-Origin (that origin), -Allow-Methods (the path's,
  as its Allow), -Allow-Headers, -Max-Age and Vary: Origin, no body, no credential needed and no
  upstream call; from any other origin (a near miss, "null", two Origin headers): 403
  cors_origin_not_allowed without a CORS header; for an unknown path 404 route_not_found; a
  malformed Access-Control-Request-Method 400 invalid_preflight. Never
  Access-Control-Allow-Credentials.
- Every answer to an allowed origin, errors included (401, 404, 405, 429), carries
  Access-Control-Allow-Origin, -Expose-Headers and Vary: Origin; an Origin not allowed gets
  none of them (the browser keeps the answer from the script), and its request is served.
- "*" (no clients): every origin is answered "*".
- A client's origins: its token from another origin is 403 cors_origin_not_allowed with no
  upstream call (CORS headers only when cors.allow_origins holds that origin), logged with
  auth "origin_not_allowed"; from its own origin or without Origin, served.
- A reload applies a new cors group; --check-config refuses "*" with clients, with its reason.
"""
import hashlib
import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Gateway, GatewayCase, Sim, assert_clean_stderr, wait_access

CID = "1568834"          # a seed customer of the simulator (tags vip and Lead)
APP = "http://127.0.0.1:8000"
OPS = "https://ops.example.com"
EVIL = "https://evil.example"
ALLOW_HEADERS = ("authorization, content-type, x-request-id, idempotency-key, traceparent, "
                 "tracestate, cache-control, if-none-match")
EXPOSE_HEADERS = "X-Request-Id, Retry-After, ETag, Age, Cache-Status, Idempotent-Replayed"
CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
                "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                "Access-Control-Max-Age", "Access-Control-Allow-Credentials")
# Every known path, with one concrete target and the methods its Allow (and a preflight) names.
PATHS = {
    "/contacts/{id}/tags/{name}": ("/contacts/%s/tags/Lead" % CID, "DELETE, PUT"),
    "/contacts/{id}/tags": ("/contacts/%s/tags" % CID, "POST, DELETE, GET, HEAD"),
    "/contacts/{id}": ("/contacts/%s" % CID, "GET, HEAD, PATCH, DELETE"),
    "/contacts/{id}/block": ("/contacts/%s/block" % CID, "PUT, DELETE"),
    "/contacts/search": ("/contacts/search", "POST"),
    "/contacts": ("/contacts", "GET, HEAD, POST"),
    "/healthz": ("/healthz", "GET, HEAD"),
    "/readyz": ("/readyz", "GET, HEAD"),
    "/metrics": ("/metrics", "GET, HEAD"),
    "/openapi.yaml": ("/openapi.yaml", "GET, HEAD"),
}
TOKENS = {"crm": "crm-browser-token-0123456789", "ops": "ops-service-token-0123456789"}


def vary(r):
    """The fields of the answer's one Vary header, lower-cased (compression may name
    Accept-Encoding there too)."""
    lines = [v for k, v in r.headers if k.lower() == "vary"]
    assert len(lines) <= 1, "more than one Vary header: %r" % lines
    return [f.strip().lower() for f in lines[0].split(",")] if lines else []


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def preflight_headers(origin, method="PUT", **extra):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    h.update(extra)
    return h


class CorsCase(GatewayCase):
    """Helpers for the classes below: what an answer carries of CORS."""

    def assertNoCors(self, r):
        for name in CORS_HEADERS:
            self.assertIsNone(r.header(name), "%s on %r" % (name, r))

    def assertCors(self, r, origin):
        self.assertEqual(r.header("Access-Control-Allow-Origin"), origin, r)
        self.assertEqual(r.header("Access-Control-Expose-Headers"), EXPOSE_HEADERS)
        self.assertIn("origin", vary(r))
        self.assertIsNone(r.header("Access-Control-Allow-Credentials"))

    def assertPreflight(self, r, origin, methods, max_age="600"):
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertIsNone(r.header("Content-Type"))
        self.assertCors(r, origin)
        self.assertEqual(r.header("Access-Control-Allow-Methods"), methods)
        self.assertEqual(r.header("Access-Control-Allow-Headers"), ALLOW_HEADERS)
        self.assertEqual(r.header("Access-Control-Max-Age"), max_age)
        self.assertRegex(r.header("X-Request-Id") or "", r"^[0-9a-f]{32}$")
        self.assertEqual(r.header("Cache-Control"), "no-store")


class NoGroupTest(CorsCase):
    """Without a cors group nothing changes: no CORS header, OPTIONS is a 405."""

    def test_preflight_is_405(self):
        r = self.assertNoUpstreamCall(lambda: self.req(
            "OPTIONS", "/contacts/%s/tags/Lead" % CID, headers=preflight_headers(APP)))
        self.assertEnvelope(r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "DELETE, PUT")
        self.assertNoCors(r)
        self.assertNotIn("origin", vary(r))

    def test_answers_carry_nothing(self):
        for method, path in (("GET", "/contacts/" + CID), ("GET", "/contacts/0"),
                             ("GET", "/healthz")):
            with self.subTest(path=path):
                r = self.req(method, path, headers={"Origin": APP})
                self.assertNoCors(r)
                self.assertNotIn("origin", vary(r))


class PreflightTest(CorsCase):
    conf_groups = {"cors": {"allow_origins": [APP, OPS], "max_age_s": 900}}

    def test_every_known_path(self):
        for pattern, (target, methods) in PATHS.items():
            for origin in (APP, OPS):
                with self.subTest(path=pattern, origin=origin):
                    r = self.assertNoUpstreamCall(lambda: self.req(
                        "OPTIONS", target, headers=preflight_headers(
                            origin, "DELETE",
                            **{"Access-Control-Request-Headers": "authorization,content-type"})))
                    self.assertPreflight(r, origin, methods, "900")

    def test_methods_match_allow(self):
        # The preflight names what a 405 names: one list of the path's methods.
        for pattern, (target, methods) in PATHS.items():
            with self.subTest(path=pattern):
                r = self.req("TRACE", target)
                self.assertEqual(r.status, 405)
                self.assertEqual(r.header("Allow"), methods)

    def test_method_the_path_lacks(self):
        # The browser compares the method with the list and refuses the call itself.
        r = self.req("OPTIONS", "/contacts/search", headers=preflight_headers(APP, "PATCH"))
        self.assertPreflight(r, APP, "POST", "900")

    def test_logged(self):
        mark = self.gw.proc.mark()
        self.req("OPTIONS", "/contacts/" + CID,
                 headers=preflight_headers(APP, "PATCH", **{"X-Request-Id": "pf-1"}))
        line = wait_access(self.gw, "pf-1", mark)
        self.assertEqual((line["method"], line["status"], line["origin"]), ("OPTIONS", 204, APP))
        self.assertIsNone(line["route"])
        self.assertNotIn("code", line)

    def test_other_origins_are_403(self):
        others = (EVIL, "null", APP + "/", APP.upper(), "http://127.0.0.1:8001",
                  "http://localhost:8000", "https://127.0.0.1:8000", " " + APP + "x", "x" * 4000)
        for origin in others:
            with self.subTest(origin=origin[:40]):
                r = self.assertNoUpstreamCall(lambda: self.req(
                    "OPTIONS", "/contacts/" + CID, headers=preflight_headers(origin)))
                self.assertEnvelope(r, 403, "cors_origin_not_allowed")
                self.assertNoCors(r)
                self.assertIn("origin", vary(r))

    def test_unknown_path(self):
        for target in ("/nope", "/contacts/%s/tags/a/b" % CID, "/contacts/"):
            with self.subTest(target=target):
                r = self.req("OPTIONS", target, headers=preflight_headers(APP))
                self.assertEnvelope(r, 404, "route_not_found")
                self.assertCors(r, APP)
                # From an origin not allowed, not even the 404.
                r = self.req("OPTIONS", target, headers=preflight_headers(EVIL))
                self.assertEnvelope(r, 403, "cors_origin_not_allowed")

    def test_bad_request_method(self):
        for method in ("", "PUT, DELETE", "P T", "(PUT)", "A" * 33, "PUT;x"):
            with self.subTest(method=method):
                r = self.assertNoUpstreamCall(lambda: self.req(
                    "OPTIONS", "/contacts/" + CID, headers=preflight_headers(APP, method)))
                self.assertEnvelope(r, 400, "invalid_preflight")
                self.assertCors(r, APP)
        # The longest method token hcgw reads.
        r = self.req("OPTIONS", "/contacts/" + CID, headers=preflight_headers(APP, "A" * 32))
        self.assertEqual(r.status, 204)

    def test_repeated_headers(self):
        # Two Origin headers name no origin; two request methods are no method.
        head = ("OPTIONS /contacts/%s HTTP/1.1\r\nHost: h\r\nOrigin: %s\r\nOrigin: %s\r\n"
                "Access-Control-Request-Method: PUT\r\nConnection: close\r\n\r\n"
                % (CID, APP, APP))
        out = harness.send_raw(self.gw.port, head.encode())
        self.assertTrue(out.startswith(b"HTTP/1.1 403 "), out[:200])
        self.assertIn(b'"code":"cors_origin_not_allowed"', out)
        self.assertNotIn(b"Access-Control-Allow-Origin", out)
        head = ("OPTIONS /contacts/%s HTTP/1.1\r\nHost: h\r\nOrigin: %s\r\n"
                "Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Method: PUT\r\n"
                "Connection: close\r\n\r\n" % (CID, APP))
        out = harness.send_raw(self.gw.port, head.encode())
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:200])
        self.assertIn(b'"code":"invalid_preflight"', out)

    def test_options_that_is_no_preflight(self):
        # Without Access-Control-Request-Method (or without Origin) OPTIONS is a method hcgw
        # does not serve: 405, with the CORS headers when the origin is allowed.
        r = self.req("OPTIONS", "/contacts/" + CID, headers={"Origin": APP})
        self.assertEnvelope(r, 405, "method_not_allowed")
        self.assertCors(r, APP)
        r = self.req("OPTIONS", "/contacts/" + CID,
                     headers={"Access-Control-Request-Method": "PUT"})
        self.assertEnvelope(r, 405, "method_not_allowed")
        self.assertNoCors(r)

    def test_preflight_with_a_body(self):
        # Read (bounded) and dropped; the connection stays usable.
        r = self.req("OPTIONS", "/contacts/" + CID, body=b"{}",
                     headers=preflight_headers(APP, Connection="keep-alive"))
        self.assertPreflight(r, APP, "GET, HEAD, PATCH, DELETE", "900")

    def test_too_long(self):
        r = self.req("OPTIONS", "/contacts/%s?x=%s" % (CID, "a" * 2100),
                     headers=preflight_headers(APP))
        self.assertEnvelope(r, 414, "uri_too_long")
        self.assertCors(r, APP)


class AnswersTest(CorsCase):
    conf_groups = {"cors": {"allow_origins": [APP]},
                   "upstream": {"max_retries": 0}}

    def test_success_and_errors_name_the_origin(self):
        cases = [("GET", "/contacts/" + CID, None, 200),
                 ("PUT", "/contacts/%s/tags/Web" % CID, None, 200),
                 ("GET", "/contacts/999999999", None, 404),
                 ("GET", "/contacts/0", None, 400),
                 ("PATCH", "/contacts", None, 405),
                 ("POST", "/contacts", {"name": "x", "email": 5}, None),
                 ("GET", "/healthz", None, 200),
                 ("GET", "/nope", None, 404)]
        for method, path, body, status in cases:
            with self.subTest(method=method, path=path):
                r = self.req(method, path, body, headers={"Origin": APP})
                if status is not None:
                    self.assertEqual(r.status, status, r)
                self.assertCors(r, APP)

    def test_rate_limited_envelope_is_readable(self):
        self.sim.script({"status": 429, "headers": {"Retry-After": "7"},
                         "json": {"errors": [{"code": "too_many_requests", "message": "slow"}]}})
        r = self.req("GET", "/contacts/" + CID, headers={"Origin": APP})
        self.assertEnvelope(r, 429, "rate_limited", upstream_status=429)
        self.assertCors(r, APP)
        self.assertIn("Retry-After", r.header("Access-Control-Expose-Headers"))
        self.assertEqual(r.header("Retry-After"), "7")

    def test_origin_not_allowed_is_served_without_cors(self):
        # Not a preflight: answered (the browser keeps it from the script), no CORS header.
        for origin in (EVIL, "null", APP + "/"):
            with self.subTest(origin=origin):
                before = self.sim.count()
                r = self.req("GET", "/contacts/" + CID, headers={"Origin": origin})
                self.assertEqual(r.status, 200)
                self.assertEqual(self.sim.count(), before + 1)
                self.assertNoCors(r)
                self.assertIn("origin", vary(r))

    def test_no_origin(self):
        r = self.req("GET", "/contacts/" + CID)
        self.assertEqual(r.status, 200)
        self.assertNoCors(r)
        self.assertIn("origin", vary(r))

    def test_origin_logged(self):
        mark = self.gw.proc.mark()
        self.req("GET", "/healthz", headers={"Origin": EVIL, "X-Request-Id": "org-1"})
        self.assertEqual(wait_access(self.gw, "org-1", mark)["origin"], EVIL)
        mark = self.gw.proc.mark()
        self.req("GET", "/healthz", headers={"X-Request-Id": "org-2"})
        self.assertNotIn("origin", wait_access(self.gw, "org-2", mark))


class StarTest(CorsCase):
    conf_groups = {"cors": {"allow_origins": ["*"], "max_age_s": 0}}

    def test_every_origin(self):
        for origin in (APP, EVIL, "null"):
            with self.subTest(origin=origin):
                r = self.req("OPTIONS", "/contacts", headers=preflight_headers(origin, "POST"))
                self.assertPreflight(r, "*", "GET, HEAD, POST", "0")
                r = self.req("GET", "/contacts/" + CID, headers={"Origin": origin})
                self.assertCors(r, "*")
        self.assertNoCors(self.req("GET", "/contacts/" + CID))


class ClientOriginsTest(CorsCase):
    """clients: crm may be used from APP only; ops from any origin of the list."""

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim()
        top = ('clients = (\n'
               '  { name = "crm"; token_sha256 = "%s"; routes = [ "*" ]; origins = [ "%s" ]; },\n'
               '  { name = "ops"; token_sha256 = "%s"; routes = [ "*" ]; }\n'
               ');\n' % (sha(TOKENS["crm"]), APP, sha(TOKENS["ops"])))
        conf = harness.conf_with_top_level(
            cls.sim.base_url, top, cors={"allow_origins": [APP, OPS]})
        try:
            cls.gw = Gateway(cls.sim, conf=conf)
        except BaseException:
            cls.sim.stop()
            raise

    def call(self, method, path, client=None, origin=None, rid=None, body=None):
        h = {}
        if client:
            h["Authorization"] = "Bearer " + TOKENS[client]
        if origin:
            h["Origin"] = origin
        if rid:
            h["X-Request-Id"] = rid
        return self.req(method, path, body, headers=h)

    def test_preflight_needs_no_credential(self):
        r = self.assertNoUpstreamCall(lambda: self.req(
            "OPTIONS", "/contacts/%s/tags/Web" % CID, headers=preflight_headers(OPS)))
        self.assertPreflight(r, OPS, "DELETE, PUT")

    def test_own_origin(self):
        r = self.call("PUT", "/contacts/%s/tags/Web" % CID, "crm", APP)
        self.assertEqual(r.status, 200, r)
        self.assertCors(r, APP)

    def test_no_origin_is_not_checked(self):
        r = self.call("GET", "/contacts/" + CID, "crm")
        self.assertEqual(r.status, 200, r)
        self.assertNoCors(r)

    def test_other_listed_origin_is_403_readable(self):
        mark = self.gw.proc.mark()
        r = self.assertNoUpstreamCall(lambda: self.call(
            "PUT", "/contacts/%s/tags/Web" % CID, "crm", OPS, "co-1"))
        self.assertEnvelope(r, 403, "cors_origin_not_allowed")
        # OPS is in cors.allow_origins: the script may read why it was refused.
        self.assertCors(r, OPS)
        line = wait_access(self.gw, "co-1", mark)
        self.assertEqual((line["client"], line["auth"], line["code"]),
                         ("crm", "origin_not_allowed", "cors_origin_not_allowed"))
        audit = self.gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "audit"
                                       and o.get("request_id") == "co-1", since=mark)
        self.assertEqual((audit["status"], audit["auth"]), (403, "origin_not_allowed"))

    def test_unlisted_origin_is_403_without_cors(self):
        r = self.assertNoUpstreamCall(lambda: self.call("GET", "/contacts/" + CID, "crm", EVIL))
        self.assertEnvelope(r, 403, "cors_origin_not_allowed")
        self.assertNoCors(r)

    def test_repeated_origin_is_403(self):
        head = ("GET /contacts/%s HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s\r\n"
                "Origin: %s\r\nOrigin: %s\r\nConnection: close\r\n\r\n"
                % (CID, TOKENS["crm"], APP, APP))
        before = self.sim.count()
        out = harness.send_raw(self.gw.port, head.encode())
        self.assertTrue(out.startswith(b"HTTP/1.1 403 "), out[:200])
        self.assertIn(b'"code":"cors_origin_not_allowed"', out)
        self.assertEqual(self.sim.count(), before)

    def test_origin_before_route_permission(self):
        # crm may call every route; the origin is refused first, whatever the route.
        r = self.call("POST", "/contacts/search", "crm", OPS, body={"limit": 1})
        self.assertEnvelope(r, 403, "cors_origin_not_allowed")

    def test_client_without_origins(self):
        for origin in (APP, OPS):
            r = self.call("GET", "/contacts/" + CID, "ops", origin)
            self.assertEqual(r.status, 200, r)
            self.assertCors(r, origin)
        r = self.call("GET", "/contacts/" + CID, "ops", EVIL)
        self.assertEqual(r.status, 200, r)
        self.assertNoCors(r)

    def test_unauthenticated_is_readable(self):
        r = self.assertNoUpstreamCall(lambda: self.call("GET", "/contacts/" + CID, None, APP))
        self.assertEnvelope(r, 401, "unauthenticated")
        self.assertCors(r, APP)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="hcgw"')

    def test_public_routes_from_any_origin(self):
        r = self.call("GET", "/healthz", None, EVIL)
        self.assertEqual(r.status, 200)
        self.assertNoCors(r)


class LongOriginTest(CorsCase):
    """The longest origin the configuration takes (267 bytes) is named; an Origin that starts
    with it and goes on names nothing, for the answer and for a client's origins alike."""

    LONGEST = "https://" + "a" * 253 + ":18443"

    @classmethod
    def setUpClass(cls):
        cls.sim = Sim()
        top = ('clients = ( { name = "crm"; token_sha256 = "%s"; routes = [ "*" ]; '
               'origins = [ "%s" ]; } );\n' % (sha(TOKENS["crm"]), cls.LONGEST))
        conf = harness.conf_with_top_level(cls.sim.base_url, top,
                                           cors={"allow_origins": [cls.LONGEST]})
        try:
            cls.gw = Gateway(cls.sim, conf=conf)
        except BaseException:
            cls.sim.stop()
            raise

    def test_longest_and_longer(self):
        self.assertEqual(len(self.LONGEST), 267)
        auth = {"Authorization": "Bearer " + TOKENS["crm"]}
        r = self.req("GET", "/contacts/" + CID, headers=dict(auth, Origin=self.LONGEST))
        self.assertEqual(r.status, 200, r)
        self.assertCors(r, self.LONGEST)
        r = self.req("OPTIONS", "/contacts", headers=preflight_headers(self.LONGEST))
        self.assertPreflight(r, self.LONGEST, "GET, HEAD, POST")
        for longer in (self.LONGEST + "0", self.LONGEST + "/" + "x" * 1000):
            with self.subTest(longer=len(longer)):
                mark = self.gw.proc.mark()
                r = self.assertNoUpstreamCall(lambda: self.req(
                    "GET", "/contacts/" + CID,
                    headers=dict(auth, Origin=longer, **{"X-Request-Id": "long-1"})))
                self.assertEnvelope(r, 403, "cors_origin_not_allowed")
                self.assertNoCors(r)
                # Logged cut to the bound.
                self.assertEqual(wait_access(self.gw, "long-1", mark)["origin"], self.LONGEST)
                r = self.req("OPTIONS", "/contacts", headers=preflight_headers(longer))
                self.assertEnvelope(r, 403, "cors_origin_not_allowed")


def run_hcgw(args, env_key):
    env = dict(os.environ)
    env.pop("HCGW_API_KEY_FILE", None)
    env["HCGW_API_KEY"] = env_key
    return subprocess.run([harness.HCGW_BIN] + args, capture_output=True, text=True, env=env,
                          timeout=30)


class ConfigTest(unittest.TestCase):
    def write(self, text):
        path = os.path.join(tempfile.mkdtemp(prefix="hcgw-cors-"), "hcgw.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_check_config_refuses_star_with_clients(self):
        path = self.write('cors = { allow_origins = [ "*" ]; };\n'
                          'clients = ( { name = "a"; token_sha256 = "%s"; routes = [ "*" ]; } );\n'
                          % sha("t"))
        r = run_hcgw(["--check-config", "-c", path], "k-0123456789")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn('%s:1: cors.allow_origins: "*" is refused while clients are configured: a '
                      "page of any site could then call hcgw with a client's token; list the "
                      "origins of the browser apps" % path, r.stderr.splitlines())

    def test_check_config_reports_origin_problems(self):
        path = self.write('cors = { allow_origins = [ "https://CRM.example.com",\n'
                          '                           "https://crm.example.com:443" ]; };\n')
        r = run_hcgw(["--check-config", "-c", path], "k-0123456789")
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.splitlines()
        self.assertIn('%s:1: cors.allow_origins: "https://CRM.example.com" must be in lower case, '
                      "as browsers send it" % path, lines)
        self.assertIn('%s:2: cors.allow_origins: "https://crm.example.com:443" must leave out '
                      ":443, the scheme's default port, as browsers do" % path, lines)

    def test_check_config_accepts(self):
        path = self.write('cors = { allow_origins = [ "https://crm.example.com" ]; '
                          'max_age_s = 7200; };\n')
        r = run_hcgw(["--check-config", "-c", path], "k-0123456789")
        self.assertEqual((r.returncode, r.stdout), (0, "configuration OK\n"), r.stderr)


class ReloadTest(CorsCase):
    conf_groups = {"cors": {"allow_origins": [APP]}}

    def reload(self, text):
        with open(self.gw.conf_path, "w") as f:
            f.write(text)
        mark = self.gw.proc.mark()
        self.gw.proc.proc.send_signal(signal.SIGHUP)
        line = self.gw.proc.wait_line(
            lambda o: isinstance(o, dict) and o.get("msg") in ("configuration reloaded",
                                                               "reload refused: the configuration "
                                                               "has problems; the running one "
                                                               "stays"),
            stream="err", since=mark)
        return line["msg"]

    def until(self, fn, want):
        # The worker takes the new configuration at its next loop turn: allow it a moment.
        deadline = time.monotonic() + 5
        while True:
            r = fn()
            if r.status == want or time.monotonic() > deadline:
                return r
            time.sleep(0.05)

    def test_reload_applies_the_group(self):
        pf = lambda origin: self.req("OPTIONS", "/contacts",  # noqa: E731
                                     headers=preflight_headers(origin, "POST"))
        self.assertEqual(pf(APP).status, 204)
        self.assertEqual(pf(OPS).status, 403)
        self.assertEqual(self.reload(harness.full_conf(
            self.sim.base_url, cors={"allow_origins": [OPS], "max_age_s": 60})),
            "configuration reloaded")
        r = self.until(lambda: pf(OPS), 204)
        self.assertPreflight(r, OPS, "GET, HEAD, POST", "60")
        self.assertEqual(pf(APP).status, 403)
        # A refused file keeps the running group.
        self.assertNotEqual(self.reload(harness.full_conf(
            self.sim.base_url, cors={"allow_origins": [OPS + "/"]})), "configuration reloaded")
        self.assertEqual(pf(OPS).status, 204)
        # Without the group, OPTIONS is a 405 again and nothing names an origin.
        self.assertEqual(self.reload(harness.full_conf(self.sim.base_url)),
                         "configuration reloaded")
        r = self.until(lambda: pf(OPS), 405)
        self.assertEqual(r.status, 405)
        self.assertIsNone(self.req("GET", "/healthz", headers={"Origin": OPS})
                          .header("Access-Control-Allow-Origin"))


if __name__ == "__main__":
    unittest.main()

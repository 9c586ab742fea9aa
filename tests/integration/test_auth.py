"""Callers and permissions, over real HTTP: the clients list, bearer tokens, mesh identities.

Each refusal (401 unauthenticated with WWW-Authenticate: Bearer, 403 forbidden) is checked for
its envelope, for spending no upstream call (the simulator's count), and for its access line
(client, auth reason, code). Allowed requests name their client in the access line; every
write route also writes an audit line (client, route, contact id, status, request id), refused
ones included. A caller's token never reaches the simulator (its journal records the
Authorization hcgw sent) and never appears in any log line. `hcgw token new` makes a token whose
printed clients entry, pasted into a config, admits it. The gateway without clients stays open.
"""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import Gateway, Sim, assert_clean_stderr, wait_access

CID = "1568834"          # a seed customer of the simulator
MISSING_CID = "999999999"
BILLING_URI = "spiffe://cluster.local/ns/billing/sa/billing"
EVIL_URI = "spiffe://cluster.local/ns/evil/sa/evil"

# Every token any test sends, right or wrong: none may ever show up in a log line or upstream.
TOKENS = {
    "billing": "tok-billing-5xQw9rT2",
    "admin": "tok-admin-Zk2Lp0aa",
    "reader": "tok-reader-Mm81vvQ",
    "wrong": "tok-wrong-Hh3Hh3Hh3",
    "old": "tok-old-Rt66Rt66",
    "new": "tok-new-Qa55Qa55",
}
SEARCH = {"filter": [{"field": "customers.email", "operator": "~", "value": "example"}]}
WRITE_ROUTES = ("tag_put", "tag_delete", "tags_add", "tags_remove", "contact_patch",
                "contact_block", "contact_unblock", "contact_delete", "contact_create")


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


def entry(name, routes, token=None, identity=None, token_file=None):
    """One clients entry as libconfig text."""
    parts = ['name = "%s";' % name]
    if token is not None:
        parts.append('token_sha256 = "%s";' % sha(token))
    if token_file is not None:
        parts.append('token_file = "%s";' % token_file)
    if identity is not None:
        parts.append('identity = "%s";' % identity)
    parts.append("routes = [ %s ];" % ", ".join(json.dumps(r) for r in routes))
    return "{ %s }" % " ".join(parts)


def clients_text(entries, **top):
    """Top-level text: the given keys (auth, trust_mesh_identity, ...) and the clients list."""
    lines = []
    for k, v in top.items():
        lines.append("%s = %s;" % (k, "true" if v is True else "false" if v is False
                                   else json.dumps(v)))
    lines.append("clients = (\n  %s\n);" % ",\n  ".join(entries))
    return "\n".join(lines)


def raw_request(port, head):
    """Send raw request bytes (head ends with the blank line) on a new connection that the
    request asks to close; return (status, headers text, body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(head.encode("latin-1"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head_part, _, body = data.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1])
    return status, head_part.decode("latin-1"), body


class AuthCase(unittest.TestCase):
    """A simulator and a gateway with `top_level` (clients etc.) for the whole class."""

    top_level = ""
    _rid = 0

    @classmethod
    def make_top_level(cls, tmpdir):
        return cls.top_level

    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.mkdtemp(prefix="hcgw-auth-")
        cls.sim = Sim()
        try:
            conf = harness.conf_with_top_level(cls.sim.base_url, cls.make_top_level(cls.tmpdir))
            cls.gw = Gateway(cls.sim, conf=conf)
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        rc_gw = cls.gw.stop()
        rc_sim = cls.sim.stop()
        tc = unittest.TestCase()
        assert_clean_stderr(tc, cls.gw.proc, cls.sim.key)
        assert_clean_stderr(tc, cls.sim.proc)
        text = cls.gw.proc.stderr_text() + "\n".join(cls.gw.proc.out)
        for name, token in TOKENS.items():
            tc.assertNotIn(token, text, "the %s token appeared in hcgw's output" % name)
        tc.assertEqual(rc_gw, 0, "hcgw exit status; stderr tail:\n" + text[-3000:])
        tc.assertEqual(rc_sim, 0, "hcgw-sim exit status")

    def setUp(self):
        self.sim.reset()
        self.marks = {}  # request id -> the log mark taken before call() sent it

    # ---- helpers

    def next_rid(self):
        AuthCase._rid += 1
        return "auth-%s-%d" % (type(self).__name__, AuthCase._rid)

    def call(self, method, path, token=None, body=None, headers=None):
        """One request with a fresh X-Request-Id; returns (response, its access line)."""
        rid = self.next_rid()
        hdrs = {"X-Request-Id": rid}
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        hdrs.update(headers or {})
        mark = self.marks[rid] = self.gw.proc.mark()
        r = self.gw.request(method, path, body, hdrs)
        self.assertNotIn(self.sim.key.encode(), r.body)
        for t in TOKENS.values():
            self.assertNotIn(t.encode(), r.body, "a token was echoed in a response")
            for _, v in r.headers:
                self.assertNotIn(t, v, "a token was echoed in a response header")
        return r, wait_access(self.gw, rid, mark)

    def audit_line(self, rid, timeout=5.0):
        """The audit line of a request that call() sent, written after its mark."""
        return self.gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "audit"
                                      and o.get("request_id") == rid, timeout=timeout,
                                      stream="err", since=self.marks[rid])

    def audit_lines(self, rid):
        """Audit lines of @rid, after a later request has been logged (one worker writes its
        lines in order, so an audit line of @rid would be in by then)."""
        self.call("GET", "/healthz")
        return [o for o in self.gw.proc.json_lines()
                if o.get("msg") == "audit" and o.get("request_id") == rid]

    def assertRefused(self, r, access, status, reason, client=None):
        code = {401: "unauthenticated", 403: "forbidden"}[status]
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        err = r.json()["error"]
        self.assertEqual(err["status"], status)
        self.assertEqual(err["code"], code)
        self.assertTrue(err["message"])
        self.assertEqual(err["request_id"], r.header("X-Request-Id"))
        self.assertNotIn("upstream_status", err)
        if status == 401:
            self.assertRegex(r.header("WWW-Authenticate") or "", r"^Bearer\b")
        else:
            self.assertIsNone(r.header("WWW-Authenticate"))
        self.assertEqual(access["status"], status)
        self.assertEqual(access["code"], code)
        self.assertEqual(access["auth"], reason)
        self.assertIn("client", access)
        self.assertEqual(access["client"], client)
        self.assertEqual(access["attempts"], 0)
        self.assertNotIn("upstream_status", access)

    def refused(self, method, path, status, reason, token=None, body=None, headers=None,
                client=None):
        before = self.sim.count()
        r, access = self.call(method, path, token, body, headers)
        self.assertRefused(r, access, status, reason, client)
        self.assertEqual(self.sim.count(), before, "a refused request spent an upstream call")
        return r, access

    def allowed(self, method, path, token=None, client=None, body=None, headers=None,
                status=200):
        r, access = self.call(method, path, token, body, headers)
        self.assertEqual(r.status, status, r)
        self.assertEqual(access["client"], client)
        self.assertNotIn("auth", access)
        return r, access


class ClientsTest(AuthCase):
    """Tokens only (trust_mesh_identity off): billing has three routes, admin "*", reader's
    hash comes from a token_file."""

    @classmethod
    def make_top_level(cls, tmpdir):
        path = os.path.join(tmpdir, "reader.sha256")
        with open(path, "w") as f:
            f.write(sha(TOKENS["reader"]) + "\n")
        return clients_text([
            entry("billing", ["tag_put", "tag_delete", "GET /contacts/{id}"],
                  token=TOKENS["billing"], identity=BILLING_URI),
            entry("admin", ["*"], token=TOKENS["admin"]),
            entry("reader", ["contact_get", "contacts_list"], token_file=path),
        ])

    def test_no_credential_is_401(self):
        for method, path, body in (("GET", "/contacts/" + CID, None),
                                   ("PUT", "/contacts/%s/tags/Lead" % CID, None),
                                   ("POST", "/contacts", {"name": "Ann"}),
                                   ("GET", "/contacts", None),
                                   ("GET", "/contacts/0", None),    # before validation
                                   ("GET", "/no/such/route", None),
                                   ("PATCH", "/healthz", None)):    # not the public route
            with self.subTest(method=method, path=path):
                self.refused(method, path, 401, "no_credential", body=body)

    def test_wrong_credential_is_401(self):
        path = "/contacts/" + CID
        self.refused("GET", path, 401, "bad_token", token=TOKENS["wrong"])
        # The stored hash is not a credential, nor is a near miss.
        self.refused("GET", path, 401, "bad_token", token=sha(TOKENS["billing"]))
        self.refused("GET", path, 401, "bad_token", token=TOKENS["billing"] + "x")
        self.refused("GET", path, 401, "bad_token", token=TOKENS["billing"].upper())
        for value in ("Basic YmlsbGluZzpwdw==", TOKENS["billing"], "Bearer",
                      "Bearer a b", "Token " + TOKENS["billing"]):
            with self.subTest(authorization=value):
                self.refused("GET", path, 401, "malformed_authorization",
                             headers={"Authorization": value})

    def test_repeated_authorization_is_401(self):
        before = self.sim.count()
        for second in (TOKENS["billing"], TOKENS["wrong"]):
            rid = self.next_rid()
            mark = self.gw.proc.mark()
            status, head, body = raw_request(
                self.gw.port,
                "GET /contacts/%s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n"
                "Authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n"
                "Connection: close\r\n\r\n" % (CID, rid, TOKENS["billing"], second))
            self.assertEqual(status, 401, body)
            self.assertEqual(json.loads(body)["error"]["code"], "unauthenticated")
            self.assertEqual(wait_access(self.gw, rid, mark)["auth"], "malformed_authorization")
        self.assertEqual(self.sim.count(), before)

    def test_right_token_is_allowed(self):
        r, access = self.allowed("GET", "/contacts/" + CID, TOKENS["billing"], "billing")
        self.assertEqual(str(r.json()["id"]), CID)
        self.assertEqual(access["route"], "contact_get")
        self.assertEqual(access["attempts"], 1)
        # The scheme is case-insensitive.
        self.allowed("GET", "/contacts/" + CID, client="billing",
                     headers={"Authorization": "bearer " + TOKENS["billing"]})
        self.allowed("PUT", "/contacts/%s/tags/Lead" % CID, TOKENS["billing"], "billing")
        self.allowed("DELETE", "/contacts/%s/tags/Lead" % CID, TOKENS["billing"], "billing")

    def test_route_not_allowed_is_403(self):
        tok = TOKENS["billing"]
        self.refused("GET", "/contacts", 403, "route_not_allowed", tok, client="billing")
        self.refused("GET", "/contacts/%s/tags" % CID, 403, "route_not_allowed", tok,
                     client="billing")
        self.refused("DELETE", "/contacts/" + CID, 403, "route_not_allowed", tok,
                     client="billing")
        # Forbidden before validation: a client learns nothing of a route it may not call.
        self.refused("PATCH", "/contacts/0", 403, "route_not_allowed", tok, body={"a": 1},
                     client="billing")
        self.refused("POST", "/contacts/%s/tags" % CID, 403, "route_not_allowed", tok,
                     body={"tags": ["x"]}, client="billing")
        self.refused("POST", "/contacts/%s/tags" % CID, 403, "route_not_allowed", tok,
                     body="not json", headers={"Content-Type": "text/plain"}, client="billing")

    def test_403_keeps_the_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        try:
            hdrs = {"Authorization": "Bearer " + TOKENS["billing"],
                    "Content-Type": "application/json"}
            conn.request("POST", "/contacts/%s/tags" % CID, body='{"tags":["x"]}', headers=hdrs)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 403)
            conn.request("GET", "/contacts/" + CID, headers=hdrs)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        finally:
            conn.close()

    def test_star_allows_every_route(self):
        tok = TOKENS["admin"]
        self.allowed("GET", "/contacts?limit=2", tok, "admin")
        self.allowed("GET", "/contacts/%s/tags" % CID, tok, "admin")
        self.allowed("POST", "/contacts/search", tok, "admin", body=SEARCH)
        self.allowed("POST", "/contacts/%s/tags" % CID, tok, "admin", body={"tags": ["x"]})
        self.allowed("PUT", "/contacts/%s/block" % CID, tok, "admin")
        self.allowed("POST", "/contacts", tok, "admin",
                     body={"name": "Ann", "email": "ann@example.com"}, status=201)
        self.allowed("DELETE", "/contacts/" + CID, tok, "admin", status=204)

    def test_token_file_client(self):
        self.allowed("GET", "/contacts/" + CID, TOKENS["reader"], "reader")
        self.allowed("GET", "/contacts?limit=1", TOKENS["reader"], "reader")
        self.refused("PUT", "/contacts/%s/tags/Lead" % CID, 403, "route_not_allowed",
                     TOKENS["reader"], client="reader")

    def test_public_routes_need_no_credential(self):
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.yaml"):
            for token in (None, TOKENS["wrong"]):
                with self.subTest(path=path, token=token):
                    r, access = self.call("GET", path, token)
                    self.assertEqual(r.status, 200, r)
                    self.assertIsNone(access["client"])
                    self.assertNotIn("auth", access)

    def test_unknown_route_with_a_valid_token_is_404(self):
        r, access = self.call("GET", "/no/such/route", TOKENS["billing"])
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["error"]["code"], "route_not_found")
        self.assertEqual(access["client"], "billing")
        r, _ = self.call("GET", "/contacts/search", TOKENS["admin"])
        self.assertEqual(r.status, 405)

    def test_mesh_identity_ignored_when_not_trusted(self):
        xfcc = "By=spiffe://cluster.local/ns/hcgw/sa/hcgw;URI=" + BILLING_URI
        self.refused("GET", "/contacts/" + CID, 401, "no_credential",
                     headers={"X-Forwarded-Client-Cert": xfcc})

    def test_audit_lines_for_every_write(self):
        tok = TOKENS["admin"]
        writes = [
            ("tag_put", "PUT", "/contacts/%s/tags/Lead" % CID, None, 200, CID),
            ("tag_delete", "DELETE", "/contacts/%s/tags/Lead" % CID, None, 200, CID),
            ("tags_add", "POST", "/contacts/%s/tags" % CID, {"tags": ["a"]}, 200, CID),
            ("tags_remove", "DELETE", "/contacts/%s/tags" % CID, {"tags": ["a"]}, 200, CID),
            ("contact_patch", "PATCH", "/contacts/" + CID, {"company": "ACME"}, 200, CID),
            ("contact_block", "PUT", "/contacts/%s/block" % CID, None, 200, CID),
            ("contact_unblock", "DELETE", "/contacts/%s/block" % CID, None, 200, CID),
            ("contact_create", "POST", "/contacts", {"name": "Bo", "email": "bo@example.com"},
             201, None),
            ("contact_delete", "DELETE", "/contacts/" + CID, None, 204, CID),
        ]
        self.assertEqual(sorted(w[0] for w in writes), sorted(WRITE_ROUTES))
        for route, method, path, body, status, cid in writes:
            with self.subTest(route=route):
                r, access = self.allowed(method, path, tok, "admin", body=body, status=status)
                audit = self.audit_line(access["request_id"])
                self.assertEqual(audit["client"], "admin")
                self.assertEqual(audit["route"], route)
                self.assertEqual(audit["contact_id"], cid)
                self.assertEqual(audit["status"], status)
                self.assertEqual(audit["level"], "info")
                self.assertNotIn("auth", audit)
                self.assertNotIn("code", audit)

    def test_audit_lines_for_failed_and_refused_writes(self):
        # HelpCrunch said no.
        r, access = self.call("PATCH", "/contacts/" + MISSING_CID, TOKENS["admin"],
                              body={"company": "x"})
        self.assertEqual(r.status, 404)
        audit = self.audit_line(access["request_id"])
        self.assertEqual((audit["client"], audit["route"], audit["contact_id"], audit["status"],
                          audit["code"], audit["upstream_status"]),
                         ("admin", "contact_patch", MISSING_CID, 404, "not_found", 404))
        # A client that may not.
        _, access = self.refused("DELETE", "/contacts/" + CID, 403, "route_not_allowed",
                                 TOKENS["billing"], client="billing")
        audit = self.audit_line(access["request_id"])
        self.assertEqual((audit["client"], audit["route"], audit["contact_id"], audit["status"],
                          audit["code"], audit["auth"]),
                         ("billing", "contact_delete", CID, 403, "forbidden", "route_not_allowed"))
        # Nobody at all.
        _, access = self.refused("PUT", "/contacts/%s/tags/Lead" % CID, 401, "no_credential")
        audit = self.audit_line(access["request_id"])
        self.assertEqual((audit["client"], audit["route"], audit["status"], audit["auth"]),
                         (None, "tag_put", 401, "no_credential"))

    def test_no_audit_line_for_reads(self):
        for method, path, body in (("GET", "/contacts/" + CID, None),
                                   ("GET", "/contacts?limit=1", None),
                                   ("GET", "/contacts/%s/tags" % CID, None),
                                   ("POST", "/contacts/search", SEARCH)):
            with self.subTest(path=path):
                _, access = self.allowed(method, path, TOKENS["admin"], "admin", body=body)
                self.assertEqual(self.audit_lines(access["request_id"]), [])

    def test_token_never_reaches_upstream(self):
        self.allowed("GET", "/contacts/" + CID, TOKENS["billing"], "billing")
        self.allowed("PUT", "/contacts/%s/tags/Lead" % CID, TOKENS["billing"], "billing")
        self.allowed("POST", "/contacts", TOKENS["admin"], "admin",
                     body={"name": "Cy", "email": "cy@example.com"}, status=201)
        reqs = self.sim.requests()
        self.assertEqual(len(reqs), 3)
        for rec in reqs:
            self.assertEqual(rec["authorization"], "Bearer " + self.sim.key)
        dump = json.dumps(reqs)
        for token in TOKENS.values():
            self.assertNotIn(token, dump)
            self.assertNotIn(sha(token), dump)

    def test_token_never_logged(self):
        self.call("GET", "/contacts/" + CID, TOKENS["billing"])
        self.call("GET", "/contacts/" + CID, TOKENS["wrong"])
        self.call("GET", "/contacts/" + CID, headers={"Authorization": "Basic " + TOKENS["wrong"]})
        self.call("GET", "/contacts", TOKENS["billing"])
        text = self.gw.proc.stderr_text()
        for token in TOKENS.values():
            self.assertNotIn(token, text)
            self.assertNotIn(sha(token), text)


class MeshXfccTest(AuthCase):
    """trust_mesh_identity on, the default header (X-Forwarded-Client-Cert)."""

    top_level = clients_text([
        entry("billing-mesh", ["tag_put", "GET /contacts/{id}"], identity=BILLING_URI),
        entry("admin", ["*"], token=TOKENS["admin"]),
    ], trust_mesh_identity=True)

    def xfcc(self, *uris):
        return ",".join('By=spiffe://cluster.local/ns/hcgw/sa/hcgw;Hash=4f1a;'
                        'Subject="CN=caller,OU=a;b=c";URI=%s' % u for u in uris)

    def test_identity_is_honoured(self):
        h = {"X-Forwarded-Client-Cert": self.xfcc(BILLING_URI)}
        self.allowed("GET", "/contacts/" + CID, client="billing-mesh", headers=h)
        _, access = self.allowed("PUT", "/contacts/%s/tags/Lead" % CID, client="billing-mesh",
                                 headers=h)
        audit = self.audit_line(access["request_id"])
        self.assertEqual(audit["client"], "billing-mesh")
        self.refused("GET", "/contacts", 403, "route_not_allowed", headers=h,
                     client="billing-mesh")

    def test_last_element_decides(self):
        # A caller can send its own XFCC; a mesh that appends puts the real peer last.
        self.refused("GET", "/contacts/" + CID, 401, "unknown_identity",
                     headers={"X-Forwarded-Client-Cert": self.xfcc(BILLING_URI, EVIL_URI)})
        self.allowed("GET", "/contacts/" + CID, client="billing-mesh",
                     headers={"X-Forwarded-Client-Cert": self.xfcc(EVIL_URI, BILLING_URI)})

    def test_bad_xfcc(self):
        for value in ("By=spiffe://cluster.local/ns/hcgw/sa/hcgw;Hash=4f1a",
                      BILLING_URI,
                      "URI=%s;URI=%s" % (BILLING_URI, BILLING_URI),
                      'URI="%s' % BILLING_URI,
                      'Subject="URI=%s"' % BILLING_URI):
            with self.subTest(xfcc=value):
                self.refused("GET", "/contacts/" + CID, 401, "bad_identity_header",
                             headers={"X-Forwarded-Client-Cert": value})

    def test_repeated_xfcc_is_401(self):
        before = self.sim.count()
        rid = self.next_rid()
        mark = self.gw.proc.mark()
        status, _, body = raw_request(
            self.gw.port,
            "GET /contacts/%s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n"
            "X-Forwarded-Client-Cert: URI=%s\r\nX-Forwarded-Client-Cert: URI=%s\r\n"
            "Connection: close\r\n\r\n" % (CID, rid, BILLING_URI, BILLING_URI))
        self.assertEqual(status, 401, body)
        self.assertEqual(wait_access(self.gw, rid, mark)["auth"], "bad_identity_header")
        self.assertEqual(self.sim.count(), before)

    def test_token_decides_over_identity(self):
        h = {"X-Forwarded-Client-Cert": self.xfcc(BILLING_URI)}
        self.allowed("GET", "/contacts?limit=1", TOKENS["admin"], "admin", headers=h)
        self.refused("GET", "/contacts/" + CID, 401, "bad_token", TOKENS["wrong"], headers=h)

    def test_other_headers_are_no_identity(self):
        self.refused("GET", "/contacts/" + CID, 401, "no_credential",
                     headers={"X-Client-Id": BILLING_URI})


class MeshHeaderTest(AuthCase):
    """trust_mesh_identity on with mesh_identity_header = "X-Client-Id": the whole value."""

    top_level = clients_text([
        entry("svc", ["GET /contacts/{id}"], identity="billing-svc"),
    ], trust_mesh_identity=True, mesh_identity_header="X-Client-Id")

    def test_header_value_is_the_identity(self):
        self.allowed("GET", "/contacts/" + CID, client="svc", headers={"x-client-id": "billing-svc"})
        self.refused("GET", "/contacts?limit=1", 403, "route_not_allowed",
                     headers={"X-Client-Id": "billing-svc"}, client="svc")
        self.refused("GET", "/contacts/" + CID, 401, "unknown_identity",
                     headers={"X-Client-Id": "billing-svc2"})
        # XFCC is not read when another header is configured.
        self.refused("GET", "/contacts/" + CID, 401, "no_credential",
                     headers={"X-Forwarded-Client-Cert": "URI=billing-svc"})

    def test_repeated_header_is_401(self):
        rid = self.next_rid()
        mark = self.gw.proc.mark()
        status, _, _ = raw_request(
            self.gw.port,
            "GET /contacts/%s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\n"
            "X-Client-Id: billing-svc\r\nX-Client-Id: billing-svc\r\n"
            "Connection: close\r\n\r\n" % (CID, rid))
        self.assertEqual(status, 401)
        self.assertEqual(wait_access(self.gw, rid, mark)["auth"], "bad_identity_header")


class OpenGatewayTest(AuthCase):
    """No clients: hcgw is open, as before, and its lines say there was no client."""

    top_level = ""

    def test_open_without_clients(self):
        _, access = self.allowed("GET", "/contacts/" + CID)
        self.assertIsNone(access["client"])
        # A token is neither needed nor checked.
        self.allowed("GET", "/contacts/" + CID, TOKENS["wrong"])
        _, access = self.allowed("PUT", "/contacts/%s/tags/Lead" % CID)
        audit = self.audit_line(access["request_id"])
        self.assertEqual((audit["client"], audit["route"], audit["contact_id"], audit["status"]),
                         (None, "tag_put", CID, 200))
        self.assertEqual(self.sim.last()["authorization"], "Bearer " + self.sim.key)


class AuthNoneTest(AuthCase):
    """auth = "none": no checks at all."""

    top_level = 'auth = "none";'

    def test_auth_none_is_open(self):
        _, access = self.allowed("DELETE", "/contacts/" + CID, status=204)
        self.assertIsNone(access["client"])


def run_hcgw(args, stdin=None, cwd=None, env_key=None):
    env = dict(os.environ)
    env.pop("HCGW_API_KEY_FILE", None)
    if env_key:
        env["HCGW_API_KEY"] = env_key
    return subprocess.run([harness.HCGW_BIN] + args, input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=30)


class TokenToolTest(unittest.TestCase):
    """`hcgw token new NAME` and `hcgw token hash`, and --check-config on client problems."""

    def parse(self, out):
        token = re.search(r"^token: (\S+)$", out, re.M).group(1)
        digest = re.search(r"^token_sha256: ([0-9a-f]{64})$", out, re.M).group(1)
        block = re.search(r"^clients = \(\n.*?^\);$", out, re.M | re.S).group(0)
        return token, digest, block

    def test_token_new(self):
        cwd = tempfile.mkdtemp(prefix="hcgw-token-")
        a = run_hcgw(["token", "new", "ci-bot"], cwd=cwd)
        b = run_hcgw(["token", "new", "ci-bot"], cwd=cwd)
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(a.stderr, "")
        ta, da, block = self.parse(a.stdout)
        tb, db, _ = self.parse(b.stdout)
        self.assertRegex(ta, r"^[A-Za-z0-9_-]{43}$")   # 32 random bytes, base64url
        self.assertEqual(da, sha(ta))
        self.assertNotEqual(ta, tb)
        self.assertNotEqual(da, db)
        self.assertIn('name = "ci-bot";', block)
        self.assertIn('token_sha256 = "%s";' % da, block)
        self.assertNotIn(ta, block)
        self.assertEqual(os.listdir(cwd), [], "token new wrote a file")
        r = run_hcgw(["token", "new", "no spaces"])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertEqual(run_hcgw(["token", "new"]).returncode, 2)
        self.assertEqual(run_hcgw(["token", "old", "x"]).returncode, 2)

    def test_token_hash(self):
        r = run_hcgw(["token", "hash"], stdin=TOKENS["admin"] + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), sha(TOKENS["admin"]))
        self.assertEqual(run_hcgw(["token", "hash"], stdin="").returncode, 1)
        self.assertEqual(run_hcgw(["token", "hash"], stdin="a b\n").returncode, 1)

    def test_printed_entry_admits_the_token(self):
        out = run_hcgw(["token", "new", "ci-bot"])
        self.assertEqual(out.returncode, 0, out.stderr)
        token, _, block = self.parse(out.stdout)
        sim = Sim()
        gw = None
        try:
            conf = harness.conf_with_top_level(sim.base_url, block)
            path = os.path.join(tempfile.mkdtemp(prefix="hcgw-token-"), "hcgw.conf")
            with open(path, "w") as f:
                f.write(conf)
            check = run_hcgw(["--check-config", "-c", path], env_key=sim.key)
            self.assertEqual((check.returncode, check.stdout), (0, "configuration OK\n"),
                             check.stderr)
            gw = Gateway(sim, conf=conf)
            mark = gw.proc.mark()
            r = gw.request("GET", "/contacts/" + CID,
                           headers={"Authorization": "Bearer " + token, "X-Request-Id": "tt-1"})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(wait_access(gw, "tt-1", mark)["client"], "ci-bot")
            self.assertEqual(sim.last()["authorization"], "Bearer " + sim.key)
            r = gw.request("GET", "/contacts/" + CID)
            self.assertEqual(r.status, 401)
            r = gw.request("GET", "/contacts?limit=1", headers={"Authorization": "Bearer " + token})
            self.assertEqual(r.status, 403)   # the printed entry allows contact_get only
        finally:
            rc = gw.stop() if gw else 0
            sim.stop()
        self.assertEqual(rc, 0)
        self.assertNotIn(token, gw.proc.stderr_text())
        assert_clean_stderr(self, gw.proc, sim.key)

    def test_check_config_reports_client_problems(self):
        path = os.path.join(tempfile.mkdtemp(prefix="hcgw-token-"), "hcgw.conf")
        with open(path, "w") as f:
            f.write('clients = (\n'
                    '  { name = "a"; token_sha256 = "%s"; routes = [ "tag_putt" ]; },\n'
                    '  { name = "a"; token_sha256 = "xyz"; routes = [ "*" ]; }\n'
                    ');\n' % sha("t"))
        r = run_hcgw(["--check-config", "-c", path], env_key="k")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        lines = r.stderr.splitlines()
        self.assertIn('%s:2: clients[0].routes: unknown route "tag_putt": give a route name '
                      '(tag_put), "METHOD /pattern" (GET /contacts/{id}) or "*"' % path, lines)
        self.assertIn("%s:3: clients[1].token_sha256: must be the 64 hex digits of the token's "
                      "SHA-256 (hcgw token new prints one)" % path, lines)
        self.assertIn('%s:3: clients[1].name: duplicate client name "a" (also clients[0])'
                      % path, lines)


class ReloadTest(AuthCase):
    """SIGHUP with a new clients list: the new token works and the old one is refused."""

    @classmethod
    def make_top_level(cls, tmpdir):
        return clients_text([entry("rotating", ["contact_get"], token=TOKENS["old"])])

    def test_reload_swaps_clients(self):
        self.allowed("GET", "/contacts/" + CID, TOKENS["old"], "rotating")
        with open(self.gw.conf_path, "w") as f:
            f.write(harness.conf_with_top_level(self.sim.base_url, clients_text(
                [entry("rotating", ["contact_get"], token=TOKENS["new"])])))
        mark = self.gw.proc.mark()
        self.gw.proc.proc.send_signal(signal.SIGHUP)
        self.gw.proc.wait_line(lambda o: isinstance(o, dict)
                               and o.get("msg") == "configuration reloaded", stream="err",
                               since=mark)
        # The worker takes the new configuration at its next loop turn: allow it a moment.
        deadline = time.monotonic() + 5
        while True:
            r, _ = self.call("GET", "/contacts/" + CID, TOKENS["new"])
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r.status, 200, r)
        self.refused("GET", "/contacts/" + CID, 401, "bad_token", TOKENS["old"])


if __name__ == "__main__":
    unittest.main()

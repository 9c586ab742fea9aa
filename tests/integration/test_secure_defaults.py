"""The secure defaults of issue 4, section 2, over a real hcgw (docs/contract.md, "Secure
defaults"). Each rule is shown both ways: what it refuses, and that the documented way out
(auth = "none", allow_insecure_http, chmod 600, a CA file) is accepted.

- Listening beyond loopback with no clients is refused at start and by --check-config, with one
  line naming the key; auth = "none" (or a client) lets it start, auth = "none" with a warning
  at every start; a reload cannot take the last client away.
- http:// to a host that is not loopback is refused; allow_insecure_http = true allows it (with a
  warning); http to 127.0.0.1 (the simulator) needs nothing.
- A key file other users can read gets a warning (default) or a refusal (key_file_mode =
  "refuse"); 0600 gets neither.
- TLS to HelpCrunch verifies the peer and the host name, always; upstream.ca_file replaces the
  trusted CAs. Shown against a local TLS server with certificates made by openssl for the test.
- Every answer carries X-Content-Type-Options: nosniff and Cache-Control: no-store, and no
  answer has a Server header.
- The key goes through an egress proxy only when upstream.proxy names one: http_proxy,
  https_proxy and all_proxy in hcgw's environment are ignored (a proxy nobody configured for
  the key never sees it); with upstream.proxy the calls go to that proxy.
- Path parameters cannot steer the upstream URL: "..", "%2e%2e", "//", "@", "?", "#" in {id}
  are refused locally, and in {name} they only ever land JSON-escaped in the body, the upstream
  path being exactly /v1/customers/<id>/tags.
"""
import hashlib
import http.server
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import unittest

import harness
from harness import GatewayCase, Proc, Sim, full_conf, listening_port

CONTACT = "1568834"

LISTEN_REFUSAL = ("is not a loopback address and no clients are configured, so anyone who can "
                  "reach it could use the HelpCrunch key; configure clients, or set auth = "
                  "\"none\" when a mesh enforces who may call")
HTTP_REFUSAL = ("upstream.base_url: http:// to a non-loopback host sends the key in clear; use "
                "https or set upstream.allow_insecure_http = true")
AUTH_NONE_WARNING = "auth = \"none\": hcgw checks no caller"
INSECURE_WARNING = "upstream.allow_insecure_http: the key goes in clear"
KEY_MODE_WARNING = "the key file is readable by other users: chmod 600 it"
FOREIGN_GID = 54321  # a group the tests' processes are not in

# A client entry, so that a listen beyond loopback has someone named to call it.
TOKEN = "secure-defaults-client-token-0123456789abcdef"
CLIENTS = ('clients = ( { name = "tester"; token_sha256 = "%s"; routes = [ "*" ]; } );\n'
           % hashlib.sha256(TOKEN.encode()).hexdigest())


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HCGW_API_KEY", "HCGW_API_KEY_FILE")}
    env.update(extra)
    return env


def run_hcgw(args, env, timeout=30):
    return subprocess.run([harness.HCGW_BIN] + args, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=timeout)


class ConfDir:
    """A temporary folder for config, key and certificate files."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hcgw-secure-")

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class StartupTest(harness.SimCase):
    """Start-up refusals and warnings: hcgw is started (and --check-config run) directly."""

    def setUp(self):
        self.files = ConfDir()
        self.addCleanup(self.files.remove)

    def conf(self, text, name="hcgw.conf"):
        return self.files.write(name, text)

    def assertRefused(self, path, line_tail, env=None, start_prefix=None):
        """--check-config and a start both exit 1 with exactly one line that ends so. The line
        starts "FILE:" (or, at a start, @p start_prefix when given)."""
        env = env or clean_env(HCGW_API_KEY=self.sim.key)
        for args in (["--check-config", "-c", path], ["-c", path]):
            with self.subTest(args=args[0]):
                p = run_hcgw(args, env)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertEqual(p.stdout, "")
                lines = [l for l in p.stderr.splitlines() if l]
                self.assertEqual(len(lines), 1, p.stderr)
                prefix = start_prefix if start_prefix and args[0] == "-c" else path + ":"
                self.assertTrue(lines[0].startswith(prefix), lines[0])
                self.assertTrue(lines[0].endswith(line_tail), lines[0])
                self.assertNotIn(self.sim.key, p.stderr)
                for mark in harness.SANITIZER_MARKS:
                    self.assertNotIn(mark, p.stderr)

    def start(self, path, env=None):
        """Start hcgw; return the process once it listens."""
        proc = Proc([harness.HCGW_BIN, "-c", path],
                    env=env or clean_env(HCGW_API_KEY=self.sim.key))
        try:
            line = proc.wait_line(listening_port, since=harness.FROM_START)
        except BaseException:
            proc.stop(signal.SIGKILL)
            raise
        return proc, line["port"]

    def stop_clean(self, proc):
        rc = proc.stop()
        harness.assert_clean_stderr(self, proc, self.sim.key)
        self.assertEqual(rc, 0, proc.stderr_text()[-2000:])

    def warnings(self, proc):
        return [o for o in proc.json_lines() if o.get("level") == "warn"]

    def healthz(self, port, address="127.0.0.1"):
        return harness.send_raw(
            port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", address)

    # ---- listening beyond loopback

    def test_non_loopback_listen_without_clients_is_refused(self):
        for address in ("0.0.0.0", "::"):
            with self.subTest(address=address):
                path = self.conf(full_conf(self.sim.base_url,
                                           listen={"address": address, "port": 0}))
                self.assertRefused(path, "listen.address: %s %s" % (address, LISTEN_REFUSAL))

    def test_loopback_listen_without_clients_starts_without_warning(self):
        for address in ("127.0.0.1", "::1"):
            with self.subTest(address=address):
                path = self.conf(full_conf(self.sim.base_url,
                                           listen={"address": address, "port": 0}))
                self.assertEqual(run_hcgw(["--check-config", "-c", path],
                                          clean_env(HCGW_API_KEY=self.sim.key)).returncode, 0)
                proc, port = self.start(path)
                self.assertIn(b"200 OK", self.healthz(port, address))
                self.assertEqual(self.warnings(proc), [])
                self.stop_clean(proc)

    def test_auth_none_allows_it_with_a_warning_at_every_start(self):
        path = self.conf(full_conf(self.sim.base_url, listen={"address": "0.0.0.0", "port": 0})
                         + 'auth = "none";\n')
        p = run_hcgw(["--check-config", "-c", path], clean_env(HCGW_API_KEY=self.sim.key))
        self.assertEqual((p.returncode, p.stdout), (0, "configuration OK\n"), p.stderr)
        for _ in range(2):
            proc, port = self.start(path)
            self.assertIn(b"200 OK", self.healthz(port))
            warned = [w for w in self.warnings(proc) if AUTH_NONE_WARNING in w["msg"]]
            self.assertEqual(len(warned), 1, proc.stderr_text())
            self.assertEqual(warned[0]["address"], "0.0.0.0")
            self.stop_clean(proc)

    def test_a_client_allows_it_and_a_reload_cannot_remove_the_last_one(self):
        base = full_conf(self.sim.base_url, listen={"address": "0.0.0.0", "port": 0})
        path = self.conf(base + CLIENTS)
        proc, port = self.start(path)
        self.assertEqual([w for w in self.warnings(proc) if AUTH_NONE_WARNING in w["msg"]], [])
        # SIGHUP with the clients gone: refused, the running configuration stays.
        self.conf(base)
        mark = proc.mark()
        proc.proc.send_signal(signal.SIGHUP)
        refused = proc.wait_line(lambda o: isinstance(o, dict)
                                 and o.get("msg", "").startswith("reload refused"), since=mark)
        self.assertIn("no clients configured", refused.get("problem", ""))
        self.assertIn(b"200 OK", self.healthz(port))
        self.stop_clean(proc)

    # ---- plain http to HelpCrunch

    def test_http_to_a_remote_host_is_refused(self):
        for url in ("http://192.0.2.1:9/v1", "http://api.helpcrunch.com/v1",
                    "http://[2001:db8::1]/v1"):
            with self.subTest(url=url):
                path = self.conf('upstream = {\n  base_url = "%s";\n};\n' % url)
                self.assertRefused(path, ":2: " + HTTP_REFUSAL)

    def test_allow_insecure_http_allows_it_with_a_warning(self):
        path = self.conf(full_conf("http://192.0.2.1:9/v1",
                                   upstream={"allow_insecure_http": True}))
        p = run_hcgw(["--check-config", "-c", path], clean_env(HCGW_API_KEY=self.sim.key))
        self.assertEqual((p.returncode, p.stdout), (0, "configuration OK\n"), p.stderr)
        proc, port = self.start(path)
        warned = [w for w in self.warnings(proc) if INSECURE_WARNING in w["msg"]]
        self.assertEqual(len(warned), 1, proc.stderr_text())
        self.assertEqual(warned[0]["upstream"], "http://192.0.2.1:9/v1")
        self.stop_clean(proc)

    def test_http_to_loopback_needs_nothing(self):
        path = self.conf(full_conf(self.sim.base_url))
        p = run_hcgw(["--check-config", "-c", path], clean_env(HCGW_API_KEY=self.sim.key))
        self.assertEqual(p.returncode, 0, p.stderr)
        proc, port = self.start(path)
        r = harness.http_request(port, "GET", "/contacts/" + CONTACT)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.warnings(proc), [])
        self.stop_clean(proc)

    # ---- the key file's mode

    def key_file_conf(self, mode, key_file_mode=None, gid=None):
        key_path = self.files.write("api.key", self.sim.key + "\n", mode)
        if gid is not None:
            os.chown(key_path, -1, gid)
        upstream = {"api_key_file": key_path}
        if key_file_mode:
            upstream["key_file_mode"] = key_file_mode
        return key_path, self.conf(full_conf(self.sim.base_url, upstream=upstream))

    def test_key_file_readable_by_others_warns_by_default(self):
        key_path, path = self.key_file_conf(0o644)
        p = run_hcgw(["--check-config", "-c", path], clean_env())
        self.assertEqual((p.returncode, p.stdout), (0, "configuration OK\n"), p.stderr)
        self.assertIn(KEY_MODE_WARNING, p.stderr)
        proc, port = self.start(path, env=clean_env())
        warned = [w for w in self.warnings(proc) if KEY_MODE_WARNING in w["msg"]]
        self.assertEqual(len(warned), 1, proc.stderr_text())
        self.assertEqual(warned[0]["mode"], "0644")
        self.assertIn(key_path, warned[0]["key_file"])
        r = harness.http_request(port, "GET", "/contacts/" + CONTACT)
        self.assertEqual(r.status, 200, r)  # the key is used
        self.stop_clean(proc)

    def test_key_file_readable_by_others_is_refused_on_request(self):
        # 0640 of another group than the process's: that group's members may read the key.
        foreign = [(0o640, FOREIGN_GID)] if os.geteuid() == 0 else []
        for mode, gid in [(0o644, None), (0o604, None)] + foreign:
            with self.subTest(mode=oct(mode), gid=gid):
                key_path, path = self.key_file_conf(mode, "refuse", gid)
                # --check-config says FILE:0: upstream.api_key: …, a start hcgw: … (main.c).
                self.assertRefused(
                    path, "key file %s (from upstream.api_key_file in %s) is "
                    "readable by other users (mode %04o): chmod 600 it, or set "
                    "upstream.key_file_mode = \"warn\"" % (key_path, path, mode), env=clean_env(),
                    start_prefix="hcgw: key file ")

    def test_redis_password_file_readable_by_others_warns(self):
        # The password file follows the key file's rule; the warning names the file, never the
        # password. (No Redis is needed: the warning comes at the load.)
        secret = "redis-password-never-logged-0123"
        pw = self.files.write("redis.password", secret + "\n", 0o644)
        path = self.conf(full_conf(self.sim.base_url,
                                   redis={"url": "redis://127.0.0.1:1/0", "password_file": pw}))
        proc, _ = self.start(path)
        warned = [w for w in self.warnings(proc)
                  if "the Redis password file is readable by other users" in w["msg"]]
        self.assertEqual(len(warned), 1, proc.stderr_text())
        self.assertEqual(warned[0]["password_file"], pw)
        self.assertNotIn(secret, proc.stderr_text())
        self.stop_clean(proc)
        os.chmod(pw, 0o600)
        proc, _ = self.start(path)
        self.assertFalse([w for w in self.warnings(proc) if "Redis password" in w["msg"]])
        self.stop_clean(proc)

    def test_key_file_of_the_process_group_is_fine(self):
        # What Kubernetes mounts with fsGroup and defaultMode 0440: the file's group is the
        # process's own. No warning, even with "refuse".
        key_path, path = self.key_file_conf(0o440, "refuse", os.getegid())
        p = run_hcgw(["--check-config", "-c", path], clean_env())
        self.assertEqual((p.returncode, p.stdout), (0, "configuration OK\n"), p.stderr)
        self.assertNotIn(KEY_MODE_WARNING, p.stderr)

    def test_private_key_file_is_fine(self):
        for key_file_mode in (None, "refuse"):
            with self.subTest(key_file_mode=key_file_mode):
                key_path, path = self.key_file_conf(0o600, key_file_mode)
                proc, port = self.start(path, env=clean_env())
                self.assertEqual(self.warnings(proc), [])
                self.assertEqual(harness.http_request(port, "GET", "/contacts/" + CONTACT).status,
                                 200)
                self.stop_clean(proc)

    # ---- ca_file

    def test_missing_ca_file_is_refused(self):
        path = self.conf(full_conf(self.sim.base_url, upstream={"ca_file": "/nonexistent/ca.pem"}))
        self.assertRefused(path, "upstream.ca_file: cannot read /nonexistent/ca.pem: No such "
                                 "file or directory")

    def test_existing_ca_file_is_accepted(self):
        ca = self.files.write("ca.pem", "not a certificate\n", 0o644)
        path = self.conf(full_conf(self.sim.base_url, upstream={"ca_file": ca}))
        p = run_hcgw(["--check-config", "-c", path], clean_env(HCGW_API_KEY=self.sim.key))
        self.assertEqual((p.returncode, p.stdout), (0, "configuration OK\n"), p.stderr)


# ---- TLS: a local HTTPS stand-in for HelpCrunch with certificates made for the test ----

def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 signed by it, one for another name, and an
    unrelated CA. Returns a dict of paths."""
    p = {k: os.path.join(d, k) for k in ("ca.pem", "ca.key", "other-ca.pem", "other-ca.key",
                                        "srv.pem", "srv.key", "wrong.pem", "wrong.key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", p[name + ".key"], "-out", p[name + ".pem"],
                "-days", "2", "-subj", "/CN=hcgw test %s" % name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, san in (("srv", "IP:127.0.0.1"), ("wrong", "DNS:other.example")):
        csr = os.path.join(d, name + ".csr")
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        openssl("req", *ec, "-keyout", p[name + ".key"], "-out", csr, "-subj", "/CN=" + name)
        openssl("x509", "-req", "-in", csr, "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
                "-CAcreateserial", "-out", p[name + ".pem"], "-days", "2", "-extfile", ext)
    return p


class TlsUpstream:
    """HTTPS on 127.0.0.1 answering GET /v1/customers/<id> with a customer; counts calls."""

    def __init__(self, cert, key):
        self.calls = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.calls += 1
                body = json.dumps({"id": int(CONTACT), "name": "TLS", "tags": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@unittest.skipUnless(shutil.which("openssl"), "needs the openssl command")
class TlsVerificationTest(unittest.TestCase):
    """hcgw verifies HelpCrunch's certificate chain and host name; ca_file is what it trusts."""

    @classmethod
    def setUpClass(cls):
        cls.files = ConfDir()
        cls.pki = make_pki(cls.files.dir)
        cls.good = TlsUpstream(cls.pki["srv.pem"], cls.pki["srv.key"])
        cls.wrong = TlsUpstream(cls.pki["wrong.pem"], cls.pki["wrong.key"])

    @classmethod
    def tearDownClass(cls):
        cls.good.stop()
        cls.wrong.stop()
        cls.files.remove()

    def call_through(self, port, ca_file):
        upstream = {"max_retries": 0}
        if ca_file:
            upstream["ca_file"] = ca_file
        path = self.files.write("hcgw-%d.conf" % port,
                                full_conf("https://127.0.0.1:%d/v1" % port, upstream=upstream))
        proc = Proc([harness.HCGW_BIN, "-c", path], env=clean_env(HCGW_API_KEY="tls-test-key"))
        try:
            gw_port = proc.wait_line(listening_port, since=harness.FROM_START)["port"]
            r = harness.http_request(gw_port, "GET", "/contacts/" + CONTACT)
        finally:
            rc = proc.stop()
        harness.assert_clean_stderr(self, proc, "tls-test-key")
        self.assertEqual(rc, 0)
        return r

    def assertUnavailable(self, r):
        self.assertEqual(r.status, 502, r)
        self.assertEqual(r.json()["error"]["code"], "upstream_unavailable")
        self.assertNotIn("upstream_status", r.json()["error"])

    def test_trusted_ca_file_is_used(self):
        before = self.good.calls
        r = self.call_through(self.good.port, self.pki["ca.pem"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["name"], "TLS")
        self.assertEqual(self.good.calls, before + 1)

    def test_unknown_ca_is_refused(self):
        # The system's CAs do not know the test CA: the peer is verified by default.
        before = self.good.calls
        self.assertUnavailable(self.call_through(self.good.port, None))
        # Another CA in ca_file: the chain does not verify either.
        self.assertUnavailable(self.call_through(self.good.port, self.pki["other-ca.pem"]))
        # A ca_file that holds no certificate at all: nothing is trusted.
        bogus = self.files.write("bogus.pem", "not a certificate\n", 0o644)
        self.assertUnavailable(self.call_through(self.good.port, bogus))
        self.assertEqual(self.good.calls, before, "no request went over an unverified TLS")

    def test_host_name_is_verified(self):
        # Signed by the trusted CA, but for another name than 127.0.0.1.
        before = self.wrong.calls
        self.assertUnavailable(self.call_through(self.wrong.port, self.pki["ca.pem"]))
        self.assertEqual(self.wrong.calls, before)

    def test_plain_http_endpoint_under_https_is_unavailable(self):
        # https:// to something that does not speak TLS (the simulator).
        sim = Sim()
        try:
            path = self.files.write("plain.conf", full_conf(
                "https://127.0.0.1:%d/v1" % sim.port,
                upstream={"max_retries": 0, "ca_file": self.pki["ca.pem"]}))
            proc = Proc([harness.HCGW_BIN, "-c", path], env=clean_env(HCGW_API_KEY=sim.key))
            try:
                port = proc.wait_line(listening_port, since=harness.FROM_START)["port"]
                self.assertUnavailable(harness.http_request(port, "GET", "/contacts/" + CONTACT))
            finally:
                self.assertEqual(proc.stop(), 0)
            harness.assert_clean_stderr(self, proc, sim.key)
        finally:
            sim.stop()


# ---- response headers and path parameters, against one hcgw ----

class HeadersAndPathsTest(GatewayCase):
    conf_groups = {"limits": {"max_body_bytes": 1024}}

    def assertHardenedHeaders(self, r, what):
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff", what)
        self.assertEqual(r.header("Cache-Control"), "no-store", what)
        self.assertIsNone(r.header("Server"), what)

    def test_every_answer_has_the_headers_and_no_server(self):
        self.sim.script([{"status": 503, "body": "{}"}])  # one upstream error, not retried away
        cases = [
            ("GET", "/contacts/" + CONTACT, None, {}, 200),
            ("GET", "/contacts/%s/tags" % CONTACT, None, {}, 200),
            ("POST", "/contacts", {"name": "Headers"}, {}, 201),
            ("GET", "/contacts?limit=1", None, {}, 200),
            ("GET", "/contacts/0", None, {}, 400),
            ("GET", "/nope", None, {}, 404),
            ("PATCH", "/contacts", None, {}, 405),
            ("POST", "/contacts/search", "x" * 2048, {"Content-Type": "application/json"}, 413),
            ("POST", "/contacts/search", "{}", {"Content-Type": "text/plain"}, 415),
            ("GET", "/contacts/999999999", None, {}, 404),
            ("GET", "/healthz", None, {}, 200),
            ("GET", "/readyz", None, {}, 200),
            ("GET", "/metrics", None, {}, 200),
        ]
        # The one scripted 503 goes to the first upstream call: retried, then the 200 comes.
        for method, path, body, headers, status in cases:
            with self.subTest(method=method, path=path):
                r = self.req(method, path, body, headers)
                self.assertEqual(r.status, status, r)
                self.assertHardenedHeaders(r, "%s %s" % (method, path))
        # A delete: 204 with no body, headers all the same.
        created = self.req("POST", "/contacts", {"name": "Gone"}).json()
        r = self.req("DELETE", "/contacts/%d" % created["id"])
        self.assertEqual(r.status, 204, r)
        self.assertHardenedHeaders(r, "DELETE")
        # An upstream error that is passed on.
        self.sim.script([{"status": 500, "body": "{}"}] * 3)
        r = self.req("POST", "/contacts/search", {"filter": []})
        self.assertEqual(r.status, 502, r)
        self.assertHardenedHeaders(r, "502")

    def test_no_server_header_even_from_libmicrohttpd(self):
        # libmicrohttpd answers a malformed request line itself; it names no server either.
        data = harness.send_raw(self.gw.port,
                                b"GET /healthz HTTP/1.1\r\nBroken header line\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:100])
        self.assertNotIn(b"\r\nserver:", data.lower())

    # ---- path parameters

    def test_steering_characters_in_id_are_refused_locally(self):
        ids = ["..", "%2e%2e", "%2E%2E", "..%2F..%2Fadmin", "%2F%2Fevil.example", "1568834@evil",
               "%40evil.example", "1568834%3Fx%3D1", "1568834%23frag", "1568834%2F..",
               "1568834%00", "%31568834", "1568834;x", "1568834.json", "-1", "+1568834",
               "1568834%20", "0x17f042", "%EF%BC%91"]
        routes = ["/contacts/%s", "/contacts/%s/tags", "/contacts/%s/block"]
        for seg in ids:
            for pattern in routes:
                method = "PUT" if pattern.endswith("block") else "GET"
                path = pattern % seg
                with self.subTest(path=path):
                    r = self.assertNoUpstreamCall(lambda: self.req(method, path))
                    self.assertEqual(r.status, 400, r)
                    self.assertEqual(r.json()["error"]["code"], "invalid_contact_id")
        # "//" empties a segment: no route has that shape. A raw '#' stays in the segment.
        for path in ("//contacts/" + CONTACT, "/contacts//" + CONTACT, "/contacts/%s//tags"
                     % CONTACT, "/contacts/1568834#x", "/contacts/#/tags"):
            with self.subTest(path=path):
                r = self.assertNoUpstreamCall(lambda: self.raw_get(path))
                self.assertIn(r[0], (400, 404), r)

    def raw_get(self, path):
        data = harness.send_raw(self.gw.port, b"GET " + path.encode() +
                                b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
        return status, data

    def test_raw_question_mark_ends_the_id_and_the_query_is_not_forwarded(self):
        # '?' starts the query: the id is what comes before it, and a route without a query
        # drops it. The upstream URL is the contact's, nothing more.
        self.sim.reset()
        r = self.req("GET", "/contacts/%s?/../../admin=1&x=@evil#y" % CONTACT)
        self.assertEqual(r.status, 200, r)
        last = self.sim.last()
        self.assertEqual((last["path"], last["query"]), ("/v1/customers/" + CONTACT, ""))

    def test_steering_characters_in_name_only_land_in_the_body(self):
        names = [
            ("..", ".."), ("%2e%2e", ".."), ("%2E%2E%2F%2E%2E", "../.."),
            ("%2F%2F", "//"), ("a%2F..%2F..%2Fadmin", "a/../../admin"), ("@", "@"),
            ("%40evil.example", "@evil.example"), ("user@evil.example", "user@evil.example"),
            ("%3F", "?"), ("a%3Fb%3Dc", "a?b=c"), ("%23", "#"), ("a%23b", "a#b"),
            ("..%5C..%5Cwin", "..\\..\\win"), ("%25", "%"), ("%252e%252e", "%2e%2e"),
            ("%22%7D%5D%2C%22x%22%3A%5B%7B", "\"}],\"x\":[{"), ("%5Cu0000", "\\u0000"),
            ("http%3A%2F%2Fevil.example%2F", "http://evil.example/"), ("+", "+"),
        ]
        for seg, name in names:
            for method in ("PUT", "DELETE"):
                with self.subTest(method=method, seg=seg):
                    self.sim.reset()
                    r = self.req(method, "/contacts/%s/tags/%s" % (CONTACT, seg))
                    self.assertEqual(r.status, 200, r)
                    last = self.sim.last()
                    self.assertEqual(last["method"], method)
                    self.assertEqual(last["path"], "/v1/customers/%s/tags" % CONTACT)
                    self.assertEqual(last["query"], "")
                    self.assertEqual(json.loads(last["body"]), {"tags": [{"name": name}]})
                    self.assertEqual(self.sim.count(), 1)


class RecordingProxy:
    """A forward proxy stand-in on loopback: it records each request it gets (absolute-form
    target and headers) and answers it itself with a customer, so a test can tell whether hcgw
    went through it."""

    CUSTOMER = json.dumps({"id": int(CONTACT), "name": "Via Proxy"}).encode()

    def __init__(self):
        self.seen = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.seen.append({"target": self.path,
                                   "authorization": self.headers.get("Authorization")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.CUSTOMER)))
                self.end_headers()
                self.wfile.write(outer.CUSTOMER)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.sim = Sim()
        self.proxy = RecordingProxy()
        self.gw = None

    def tearDown(self):
        if self.gw is not None:
            self.gw.stop()
            harness.assert_clean_stderr(self, self.gw.proc, self.sim.key)
        self.proxy.stop()
        self.sim.stop()

    def test_proxy_variables_of_the_environment_are_ignored(self):
        env = {name: self.proxy.url for name in
               ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY")}
        env.update(no_proxy="", NO_PROXY="")
        self.gw = harness.Gateway(self.sim, env_extra=env)
        before = self.sim.count()
        r = self.gw.request("GET", "/contacts/" + CONTACT)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.proxy.seen, [], "hcgw used a proxy from its environment")
        self.assertEqual(self.sim.count(), before + 1, "the call did not reach the simulator")

    def test_configured_proxy_carries_the_calls(self):
        # The simulator is plain http, which a proxy may carry only when allowed on purpose.
        self.gw = harness.Gateway(self.sim, conf={"upstream": {"proxy": self.proxy.url,
                                                               "allow_insecure_http": True}})
        before = self.sim.count()
        r = self.gw.request("GET", "/contacts/" + CONTACT)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["name"], "Via Proxy")
        self.assertEqual(len(self.proxy.seen), 1)
        # A forward proxy gets the absolute URL of the upstream call, with the key.
        self.assertEqual(self.proxy.seen[0]["target"],
                         "%s/customers/%s" % (self.sim.base_url, CONTACT))
        self.assertEqual(self.proxy.seen[0]["authorization"], "Bearer " + self.sim.key)
        self.assertEqual(self.sim.count(), before, "the call went around the proxy")

"""TLS on the listener (listen.tls), over real HTTPS with a throwaway PKI that openssl makes for
the test: a CA, a second unrelated CA, server certificates for 127.0.0.1 and client
certificates with URI and DNS names.

- HTTPS is served (TLS 1.2 or 1.3 only), and plain HTTP to the same port gets no HTTP answer.
- A client certificate signed by listen.tls.client_ca_file names the client whose identity is
  one of its URI or DNS names, and that client's permissions apply; one from the other CA,
  carrying the very same name, is refused at the handshake and never reaches a request.
- SIGHUP reads the pair again: new connections see the new certificate's serial, a connection
  opened before keeps the old one, and a pair that does not match is refused at the reload
  (logged) while the running one stays.
- --check-config reads the files: missing, not PEM, mismatched, expired, a key file others may
  read under key_file_mode = "refuse", each is one FILE:LINE line naming the key at fault.
- The private key is never in any output.
"""
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import unittest

import harness
from harness import FROM_START, Proc, Sim, assert_clean_stderr, full_conf, listening_port
from test_auth import entry

CID = "1568834"  # a seed customer of the simulator
BILLING_URI = "spiffe://hcgw.test/ns/billing/sa/billing"
REPORTS_DNS = "reports.hcgw.test"
TOKEN = "tls-test-token-Hq7Lm2Zp"
API_KEY = "tls-listener-test-key-0123456789"


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def make_ca(d, name):
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    openssl("req", "-x509", *EC, "-keyout", key, "-out", cert, "-days", "2",
            "-subj", "/CN=hcgw test " + name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    os.chmod(key, 0o600)
    return cert, key


def make_cert(d, name, ca, san, usage, days="2"):
    """A certificate for `san` (openssl's subjectAltName syntax) signed by the CA `ca` (a pair
    of paths). Returns (cert, key)."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    csr, ext = os.path.join(d, name + ".csr"), os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=%s\n"
                % (san, usage))
    openssl("req", *EC, "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-out", cert, "-days", days, "-extfile", ext)
    os.chmod(key, 0o600)
    return cert, key


def serial_of(cert):
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", cert], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return int(out.strip().split("=", 1)[1], 16)


def key_lines(key):
    """The base64 lines of a PEM key: none may show up in any output."""
    with open(key) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("-----")]


class Pki:
    """Everything the tests use, made once per test class in a temporary folder."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hcgw-tls-")
        d = self.dir
        self.ca = make_ca(d, "ca")
        self.other_ca = make_ca(d, "other-ca")
        self.srv = make_cert(d, "srv", self.ca, "IP:127.0.0.1", "serverAuth")
        self.srv2 = make_cert(d, "srv2", self.ca, "IP:127.0.0.1", "serverAuth")
        self.expired = make_cert(d, "expired", self.ca, "IP:127.0.0.1", "serverAuth", days="0")
        self.billing = make_cert(d, "billing", self.ca, "URI:" + BILLING_URI, "clientAuth")
        self.reports = make_cert(d, "reports", self.ca, "DNS:" + REPORTS_DNS, "clientAuth")
        self.stranger = make_cert(d, "stranger", self.ca, "URI:spiffe://hcgw.test/nobody",
                                  "clientAuth")
        # The other CA's certificate carries billing's very name: only the CA tells them apart.
        self.forged = make_cert(d, "forged", self.other_ca, "URI:" + BILLING_URI, "clientAuth")
        # Signed by the right CA, but for servers only.
        self.server_only = make_cert(d, "server-only", self.ca, "URI:" + BILLING_URI,
                                     "serverAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_conf(sim, cert, key, client_ca=None, top_level=None, **groups):
    tls = {"cert_file": cert, "key_file": key}
    if client_ca is not None:
        tls["client_ca_file"] = client_ca
    if top_level is None:
        clients = [entry("admin", ["*"], token=TOKEN)]
        if client_ca is not None:
            clients += [entry("billing", ["contact_get"], identity=BILLING_URI),
                        entry("reports", ["contacts_list"], identity=REPORTS_DNS)]
        top_level = "clients = (\n  %s\n);\n" % ",\n  ".join(clients)
    return full_conf(sim.base_url, listen={"address": "127.0.0.1", "port": 0, "tls": tls},
                     **groups) + top_level


def client_context(ca, cert=None, max_version=None):
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def https(port, ctx, method, path, headers=None, timeout=30):
    """One request on a new HTTPS connection: (status, body, the server certificate's serial,
    the TLS version)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        # Before the answer: one that closes the connection takes the socket with it.
        serial = int(conn.sock.getpeercert()["serialNumber"], 16)
        version = conn.sock.version()
        r = conn.getresponse()
        return r.status, r.read(), serial, version
    finally:
        conn.close()


# What a client sees when the server ends the handshake: an alert (ssl.SSLError), or the
# connection closed (ConnectionError, http.client.RemoteDisconnected).
REFUSED = (OSError, http.client.HTTPException)


def is_msg(msg):
    return lambda o: isinstance(o, dict) and o.get("msg") == msg


class TlsCase(unittest.TestCase):
    pki = None

    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("needs the openssl command (scripts/install-deps.sh)")
        cls.pki = Pki()
        cls.sim = Sim()

    @classmethod
    def tearDownClass(cls):
        rc = cls.sim.stop()
        assert_clean_stderr(unittest.TestCase(), cls.sim.proc)
        cls.pki.remove()
        assert rc == 0, "hcgw-sim exit status %r" % rc

    def write_conf(self, text, name="hcgw.conf"):
        path = self.pki.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, conf_path):
        proc = Proc([harness.HCGW_BIN, "-c", conf_path], env=self.env())
        try:
            port = proc.wait_line(listening_port, since=FROM_START)["port"]
        except BaseException:
            proc.stop(signal.SIGKILL)
            raise
        return proc, port

    def stop_clean(self, proc, keys=()):
        rc = proc.stop()
        assert_clean_stderr(self, proc, API_KEY)
        text = proc.stderr_text() + "\n".join(proc.out)
        for key in keys:
            for line in key_lines(key):
                self.assertNotIn(line, text, "private key material in hcgw's output")
        self.assertEqual(rc, 0, proc.stderr_text()[-2000:])

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("HCGW_API_KEY", "HCGW_API_KEY_FILE")}
        env["HCGW_API_KEY"] = API_KEY
        return env


class ServeTest(TlsCase):
    """One hcgw serving HTTPS with client certificates, and clients named by them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            path = os.path.join(cls.pki.dir, "serve.conf")
            with open(path, "w") as f:
                f.write(tls_conf(cls.sim, cls.pki.srv[0], cls.pki.srv[1], cls.pki.ca[0],
                                 server={"workers": 2}))
            env = {k: v for k, v in os.environ.items()
                   if k not in ("HCGW_API_KEY", "HCGW_API_KEY_FILE")}
            env["HCGW_API_KEY"] = cls.sim.key
            cls.gw = Proc([harness.HCGW_BIN, "-c", path], env=env)
            cls.port = cls.gw.wait_line(listening_port, since=FROM_START)["port"]
        except BaseException:
            cls.sim.stop()
            cls.pki.remove()
            raise

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        tc = unittest.TestCase()
        assert_clean_stderr(tc, cls.gw, cls.sim.key)
        text = cls.gw.stderr_text()
        for line in key_lines(cls.pki.srv[1]):
            tc.assertNotIn(line, text, "private key material in hcgw's output")
        tc.assertEqual(rc, 0, text[-2000:])
        super().tearDownClass()

    def setUp(self):
        self.sim.reset()

    def ctx(self, cert=None, max_version=None):
        return client_context(self.pki.ca[0], cert, max_version)

    def access(self, rid, mark):
        return self.gw.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "access"
                                 and o.get("request_id") == rid, stream="err", since=mark)

    def test_https_is_served_with_tls_1_2_or_later(self):
        status, body, serial, version = https(self.port, self.ctx(), "GET", "/healthz")
        self.assertEqual(status, 200, body)
        self.assertEqual(serial, serial_of(self.pki.srv[0]))
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        status, _, _, version = https(self.port, self.ctx(max_version=ssl.TLSVersion.TLSv1_2),
                                      "GET", "/healthz")
        self.assertEqual((status, version), (200, "TLSv1.2"))

    def test_tls_before_1_2_is_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.pki.ca[0])
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError) as e:
            self.skipTest("this OpenSSL cannot offer TLS 1.1: %s" % e)
        with self.assertRaises(REFUSED) as cm:
            https(self.port, ctx, "GET", "/healthz")
        self.assertNotIn("NO_PROTOCOLS_AVAILABLE", str(cm.exception),
                         "the client never offered TLS 1.1; the test proves nothing")

    def test_plain_http_to_the_https_port_gets_no_http_answer(self):
        mark = self.gw.mark()
        data = harness.send_raw(self.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
                                           b"Connection: close\r\n\r\n")
        self.assertFalse(data.startswith(b"HTTP/"), data[:100])
        self.gw.wait_line(is_msg("TLS handshake failed"), since=mark)
        # The listener still serves HTTPS afterwards.
        self.assertEqual(https(self.port, self.ctx(), "GET", "/healthz")[0], 200)

    def test_uri_name_of_a_client_certificate_names_its_client(self):
        mark = self.gw.mark()
        status, body, _, _ = https(self.port, self.ctx(self.pki.billing), "GET",
                                   "/contacts/" + CID, {"X-Request-Id": "tls-uri-1"})
        self.assertEqual(status, 200, body)
        line = self.access("tls-uri-1", mark)
        self.assertEqual(line["client"], "billing")
        # Its permissions apply: billing may read a contact, not list contacts.
        before = self.sim.count()
        status, body, _, _ = https(self.port, self.ctx(self.pki.billing), "GET", "/contacts",
                                   {"X-Request-Id": "tls-uri-2"})
        self.assertEqual(status, 403, body)
        self.assertEqual(self.sim.count(), before, "a refused request reached HelpCrunch")

    def test_dns_name_of_a_client_certificate_names_its_client(self):
        mark = self.gw.mark()
        status, body, _, _ = https(self.port, self.ctx(self.pki.reports), "GET", "/contacts",
                                   {"X-Request-Id": "tls-dns-1"})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.access("tls-dns-1", mark)["client"], "reports")
        status, body, _, _ = https(self.port, self.ctx(self.pki.reports), "GET",
                                   "/contacts/" + CID)
        self.assertEqual(status, 403, body)

    def test_certificate_from_another_ca_is_refused_at_the_handshake(self):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            with self.subTest(version=version.name):
                mark = self.gw.mark()
                before = self.sim.count()
                with self.assertRaises(REFUSED):
                    https(self.port, self.ctx(self.pki.forged, version), "GET",
                          "/contacts/" + CID, {"X-Request-Id": "tls-forged"})
                line = self.gw.wait_line(is_msg("client certificate refused at the handshake"),
                                         since=mark)
                self.assertEqual(line["reason"], "not signed by a client CA")
                self.assertEqual(self.sim.count(), before)
        self.assertFalse([o for o in self.gw.json_lines() if o.get("request_id") == "tls-forged"],
                         "a request came through a refused handshake")

    def test_certificate_not_for_client_authentication_is_refused(self):
        mark = self.gw.mark()
        with self.assertRaises(REFUSED):
            https(self.port, self.ctx(self.pki.server_only), "GET", "/contacts/" + CID)
        line = self.gw.wait_line(is_msg("client certificate refused at the handshake"),
                                 since=mark)
        self.assertIn("client authentication", line["reason"])

    def test_certificate_that_names_no_client_is_401(self):
        mark = self.gw.mark()
        before = self.sim.count()
        status, body, _, _ = https(self.port, self.ctx(self.pki.stranger), "GET",
                                   "/contacts/" + CID, {"X-Request-Id": "tls-stranger"})
        self.assertEqual(status, 401, body)
        self.assertEqual(self.access("tls-stranger", mark)["auth"],
                         "unknown_client_certificate")
        self.assertEqual(self.sim.count(), before)

    def test_without_a_certificate_a_token_names_the_client(self):
        mark = self.gw.mark()
        status, body, _, _ = https(self.port, self.ctx(), "GET", "/contacts",
                                   {"Authorization": "Bearer " + TOKEN, "X-Request-Id": "tls-t"})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.access("tls-t", mark)["client"], "admin")
        status, body, _, _ = https(self.port, self.ctx(), "GET", "/contacts/" + CID)
        self.assertEqual(status, 401, body)

    def test_a_token_decides_over_a_certificate(self):
        mark = self.gw.mark()
        status, body, _, _ = https(self.port, self.ctx(self.pki.billing), "GET", "/contacts",
                                   {"Authorization": "Bearer " + TOKEN, "X-Request-Id": "tls-b"})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.access("tls-b", mark)["client"], "admin")

    def test_metrics_show_the_certificate_expiry(self):
        status, body, _, _ = https(self.port, self.ctx(), "GET", "/metrics")
        self.assertEqual(status, 200)
        out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", self.pki.srv[0],
                              "-dateopt", "iso_8601"], capture_output=True, text=True)
        lines = [l for l in body.decode().splitlines()
                 if l.startswith("hcgw_tls_cert_not_after_seconds ")]
        self.assertEqual(len(lines), 1, body[-500:])
        not_after = int(lines[0].split()[1])
        line = self.gw.wait_line(is_msg("TLS certificate loaded"), since=FROM_START)
        self.assertEqual(line["not_after"], not_after)
        self.assertEqual(int(line["serial"], 16), serial_of(self.pki.srv[0]))
        if out.returncode == 0:  # -dateopt is OpenSSL 3
            import datetime
            end = datetime.datetime.strptime(out.stdout.strip().split("=", 1)[1],
                                             "%Y-%m-%d %H:%M:%SZ")
            self.assertEqual(int(end.replace(tzinfo=datetime.timezone.utc).timestamp()),
                             not_after)


class ReloadTest(TlsCase):
    """SIGHUP and the pair: each test starts its own hcgw over files it may replace."""

    def setUp(self):
        self.sim.reset()
        self.cert = self.pki.path("live.pem")
        self.key = self.pki.path("live.key")
        self.install(self.pki.srv)

    def install(self, pair):
        """Replace the live files the way a rotation does: a new file renamed over the old."""
        for src, dst in zip(pair, (self.cert, self.key)):
            tmp = dst + ".new"
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, dst)

    def ctx(self):
        return client_context(self.pki.ca[0])

    def reload(self, proc, msg):
        mark = proc.mark()
        proc.proc.send_signal(signal.SIGHUP)
        return proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg", "").startswith(msg),
                              since=mark)

    def test_sighup_serves_the_new_pair_to_new_connections(self):
        # Two workers, each with its own daemon: every new connection, whichever worker the
        # kernel gives it to, gets the new pair.
        proc, port = self.start(self.write_conf(tls_conf(self.sim, self.cert, self.key,
                                                         server={"workers": 2})))
        try:
            old = serial_of(self.pki.srv[0])
            new = serial_of(self.pki.srv2[0])
            self.assertNotEqual(old, new)
            self.assertEqual(https(port, self.ctx(), "GET", "/healthz")[2], old)
            # A connection opened before the reload keeps its pair.
            kept = http.client.HTTPSConnection("127.0.0.1", port, context=self.ctx(),
                                               timeout=30)
            kept.request("GET", "/healthz")
            self.assertEqual(kept.getresponse().read(), b'{"status":"ok"}')
            self.install(self.pki.srv2)
            line = self.reload(proc, "TLS certificate loaded")
            self.assertEqual(int(line["serial"], 16), new)
            for _ in range(8):
                status, _, serial, _ = https(port, self.ctx(), "GET", "/healthz")
                self.assertEqual((status, serial), (200, new))
            kept.request("GET", "/healthz")
            r = kept.getresponse()
            self.assertEqual(r.status, 200)
            r.read()
            self.assertEqual(int(kept.sock.getpeercert()["serialNumber"], 16), old)
            kept.close()
        finally:
            self.stop_clean(proc, (self.pki.srv[1], self.pki.srv2[1]))

    def test_a_bad_pair_at_reload_is_refused_and_the_old_one_kept(self):
        proc, port = self.start(self.write_conf(tls_conf(self.sim, self.cert, self.key)))
        try:
            old = serial_of(self.pki.srv[0])
            # The new certificate with the old key: a half-done rotation.
            shutil.copyfile(self.pki.srv2[0], self.cert)
            line = self.reload(proc, "reload refused")
            self.assertIn("listen.tls.key_file", line["problem"])
            self.assertIn("does not match the certificate", line["problem"])
            status, _, serial, _ = https(port, self.ctx(), "GET", "/healthz")
            self.assertEqual((status, serial), (200, old))
            # A key file that is gone.
            self.install(self.pki.srv)
            os.unlink(self.key)
            line = self.reload(proc, "reload refused")
            self.assertIn("listen.tls.key_file", line["problem"])
            self.assertIn("No such file", line["problem"])
            self.assertEqual(https(port, self.ctx(), "GET", "/healthz")[2], old)
            # Mended: the next reload takes it.
            self.install(self.pki.srv2)
            line = self.reload(proc, "TLS certificate loaded")
            self.assertEqual(https(port, self.ctx(), "GET", "/healthz")[2],
                             serial_of(self.pki.srv2[0]))
        finally:
            self.stop_clean(proc, (self.pki.srv[1], self.pki.srv2[1]))

    def test_turning_tls_off_takes_a_restart(self):
        path = self.write_conf(tls_conf(self.sim, self.cert, self.key))
        proc, port = self.start(path)
        try:
            self.write_conf(full_conf(self.sim.base_url), os.path.basename(path))
            line = self.reload(proc, "reload refused")
            self.assertIn("listen.tls: turning TLS on or off takes a restart", line["problem"])
            self.assertEqual(https(port, self.ctx(), "GET", "/healthz")[0], 200)
        finally:
            self.stop_clean(proc, (self.pki.srv[1],))


class CheckConfigTest(TlsCase):
    """--check-config reads listen.tls's files and says which key is wrong."""

    def check(self, text, env=None):
        path = self.write_conf(text, "check.conf")
        p = subprocess.run([harness.HCGW_BIN, "--check-config", "-c", path],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=env or self.env(), timeout=30)
        for mark in harness.SANITIZER_MARKS:
            self.assertNotIn(mark, p.stderr)
        for key in (self.pki.srv[1], self.pki.srv2[1]):
            for line in key_lines(key):
                self.assertNotIn(line, p.stdout + p.stderr)
        return path, p

    def assertRefused(self, text, key, reason):
        path, p = self.check(text)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        lines = [l for l in p.stderr.splitlines() if l]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertRegex(lines[0], r"^%s:\d+: %s: " % (path, key))
        self.assertIn(reason, lines[0])

    def test_a_good_pair_passes(self):
        _, p = self.check(tls_conf(self.sim, self.pki.srv[0], self.pki.srv[1], self.pki.ca[0]))
        self.assertEqual((p.returncode, p.stdout), (0, "configuration OK\n"), p.stderr)

    def test_missing_files(self):
        missing = self.pki.path("nothing-here.pem")
        self.assertRefused(tls_conf(self.sim, missing, self.pki.srv[1]),
                           "listen.tls.cert_file", "No such file or directory")
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], missing),
                           "listen.tls.key_file", "No such file or directory")
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], self.pki.srv[1], missing),
                           "listen.tls.client_ca_file", "No such file or directory")

    @unittest.skipIf(os.geteuid() == 0, "root reads a file of mode 000")
    def test_unreadable_key_file(self):
        key = self.pki.path("unreadable.key")
        shutil.copyfile(self.pki.srv[1], key)
        os.chmod(key, 0)
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], key),
                           "listen.tls.key_file", "Permission denied")

    def test_files_that_are_not_pem(self):
        junk = self.pki.path("junk.txt")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        os.chmod(junk, 0o600)
        self.assertRefused(tls_conf(self.sim, junk, self.pki.srv[1]),
                           "listen.tls.cert_file", "holds no PEM certificate")
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], junk),
                           "listen.tls.key_file", "holds no unencrypted PEM private key")
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], self.pki.srv[1], junk),
                           "listen.tls.client_ca_file", "holds no PEM certificate")
        # The key where the certificate should be, and the other way round.
        self.assertRefused(tls_conf(self.sim, self.pki.srv[1], self.pki.srv[0]),
                           "listen.tls.cert_file", "holds no PEM certificate")

    def test_a_key_that_does_not_match_the_certificate(self):
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], self.pki.srv2[1]),
                           "listen.tls.key_file", "does not match the certificate")

    def test_an_expired_certificate(self):
        self.assertRefused(tls_conf(self.sim, *self.pki.expired),
                           "listen.tls.cert_file", "the certificate expired at")

    def test_cert_and_key_are_both_needed(self):
        text = full_conf(self.sim.base_url,
                         listen={"port": 0, "tls": {"cert_file": self.pki.srv[0]}})
        self.assertRefused(text, "listen.tls", "needs cert_file")
        text = full_conf(self.sim.base_url, listen={"port": 0, "tls": {"cert": "x"}})
        path, p = self.check(text)
        self.assertEqual(p.returncode, 1)
        self.assertIn("listen.tls.cert: unknown key", p.stderr)
        path, p = self.check(full_conf(self.sim.base_url, listen={"port": 0, "tls": 1}))
        self.assertEqual(p.returncode, 1)
        self.assertIn("listen.tls: expected a group", p.stderr)

    def test_key_file_readable_by_others(self):
        key = self.pki.path("shared.key")
        shutil.copyfile(self.pki.srv[1], key)
        os.chmod(key, 0o644)
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], key,
                                    upstream={"key_file_mode": "refuse"}),
                           "listen.tls.key_file", "readable by other users (mode 0644)")
        # The default warns, at --check-config and at every start, and serves.
        _, p = self.check(tls_conf(self.sim, self.pki.srv[0], key))
        self.assertEqual((p.returncode, p.stdout), (0, "configuration OK\n"), p.stderr)
        self.assertIn("the TLS key file is readable by other users", p.stderr)
        path = self.write_conf(tls_conf(self.sim, self.pki.srv[0], key))
        proc, port = self.start(path)
        try:
            line = proc.wait_line(lambda o: isinstance(o, dict) and o.get("level") == "warn"
                                  and "TLS key file is readable" in o.get("msg", ""),
                                  since=FROM_START)
            self.assertEqual(line["key_file"], key)
            ctx = client_context(self.pki.ca[0])
            self.assertEqual(https(port, ctx, "GET", "/healthz")[0], 200)
        finally:
            self.stop_clean(proc, (key,))

    def test_identity_clients_need_a_way_to_be_named(self):
        clients = "clients = ( %s );\n" % entry("billing", ["*"], identity=BILLING_URI)
        # With client CAs a certificate can name it: no mesh needed.
        _, p = self.check(tls_conf(self.sim, self.pki.srv[0], self.pki.srv[1], self.pki.ca[0],
                                   top_level=clients))
        self.assertEqual(p.returncode, 0, p.stderr)
        # Without them (nor trust_mesh_identity) nothing could.
        self.assertRefused(tls_conf(self.sim, self.pki.srv[0], self.pki.srv[1],
                                    top_level=clients),
                           r"clients\[0\].identity", "listen.tls.client_ca_file")


if __name__ == "__main__":
    unittest.main()

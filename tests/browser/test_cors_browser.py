#!/usr/bin/env python3
"""CORS in a real browser (ctest label "browser"): headless Chromium calls hcgw with fetch().

hcgw-sim and hcgw run as in the integration tests (tests/integration/harness.py), hcgw with a
cors group that allows one origin and a client whose token may be used from that origin only.
Two small Python HTTP servers on other loopback ports serve the same page: one is that allowed
origin, the other is not. The page's script calls hcgw with fetch(), each call as a page of a
browser app would make it, and writes what it could read into the page as JSON; Chromium
(`chromium --headless=new --dump-dom`) prints the page once the script is done, and the test
reads the results from it:

- from the allowed origin: a contact read with the client's token (200, the body and the
  exposed X-Request-Id and ETag readable), a tag write with the token (200; the simulator
  receives the PUT), and error envelopes read by the script: an invalid id (400
  invalid_contact_id) and a call without the token (401 unauthenticated);
- from the other origin: the same calls all fail in the browser (fetch rejects), the tag write
  never reaches the simulator, and hcgw refused the browser's preflight with 403
  cors_origin_not_allowed (its access line says so);
- the allowed page's preflight was answered 204 by hcgw, and no preflight reached HelpCrunch.

Chromium is Debian's `chromium` package (scripts/install-deps.sh installs it); HCGW_CHROMIUM
names another binary. When there is none, or it cannot render a page here, the test prints one
"skip - ..." line saying why and exits 77 (ctest: skipped); from then on every problem is a
failure. Environment as for the integration tests: HCGW_BIN, HCGW_SIM_BIN, HCGW_SOURCE_DIR.
"""
import hashlib
import html
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import Gateway, Sim, assert_clean_stderr  # noqa: E402

CID = "1568834"                       # a seed customer of hcgw-sim (tags vip and Lead)
TOKEN = "browser-app-token-0123456789abcdef"
TAG = "FromBrowser"
# How long Chromium may take for one page, all its calls included (a loaded 2-core machine
# with sanitizers on): generous, since the page ends as soon as its script is done.
CHROMIUM_TIMEOUT_S = 120
# Chromium's virtual clock: the page's script may run this long (ms of page time; network
# waits do not count against it).
VIRTUAL_TIME_BUDGET_MS = 60000

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>hcgw from a browser app</title></head>
<body><pre id="out">pending</pre>
<script>
const GW = %(gw)s, TOKEN = %(token)s, CID = %(cid)s, TAG = %(tag)s;
async function call(name, path, init) {
  try {
    const r = await fetch(GW + path, init);
    const text = await r.text();
    let body = null;
    try { body = JSON.parse(text); } catch (e) { body = text; }
    return {status: r.status, request_id: r.headers.get("X-Request-Id"),
            etag: r.headers.get("ETag"), body: body};
  } catch (e) {
    return {failed: String(e)};
  }
}
async function main() {
  const auth = {"Authorization": "Bearer " + TOKEN};
  const out = {origin: location.origin};
  out.read = await call("read", "/contacts/" + CID,
                        {headers: Object.assign({"X-Request-Id": "browser-read"}, auth)});
  out.write = await call("write", "/contacts/" + CID + "/tags/" + TAG,
                         {method: "PUT", headers: auth});
  out.invalid = await call("invalid", "/contacts/0", {headers: auth});
  out.unauthenticated = await call("unauthenticated", "/contacts/" + CID,
                                   {headers: {"X-Request-Id": "browser-no-token"}});
  document.getElementById("out").textContent = JSON.stringify(out);
}
main();
</script></body></html>
"""


def find_chromium():
    """The Chromium binary, or None."""
    named = os.environ.get("HCGW_CHROMIUM")
    if named:
        return shutil.which(named)
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(binary, url, profile):
    """Load @p url headless and return (returncode, the DOM after the script, stderr tail)."""
    argv = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--user-data-dir=" + profile, "--virtual-time-budget=%d" % VIRTUAL_TIME_BUDGET_MS,
            "--dump-dom", url]
    # Its own process group, so that every process it starts ends with it.
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out, "timed out after %d s; %s" % (CHROMIUM_TIMEOUT_S, err[-2000:])
    return p.returncode, out, err[-2000:]


def chromium_works(binary):
    """Why Chromium cannot render a page here, or None when it can."""
    with tempfile.TemporaryDirectory(prefix="hcgw-chromium-") as profile:
        url = "data:text/html,<p id=x>ok</p><script>x.textContent='rendered'</script>"
        rc, out, err = run_chromium(binary, url, profile)
    if rc == 0 and "rendered" in (out or ""):
        return None
    return "%s exits %s on a trivial page: %s" % (binary, rc, (err or "").strip()[-300:])


class PageServer:
    """A tiny HTTP server on a free loopback port that serves one page at /: another origin."""

    def __init__(self):
        page = {"html": b""}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                body = page["html"] if self.path == "/" else b"not here\n"
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.page = page
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, gw_port):
        self.page["html"] = (PAGE % {
            "gw": json.dumps("http://127.0.0.1:%d" % gw_port), "token": json.dumps(TOKEN),
            "cid": json.dumps(CID), "tag": json.dumps(TAG)}).encode()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def page_results(dom):
    m = re.search(r'<pre id="out">(.*?)</pre>', dom or "", re.S)
    if m is None:
        raise AssertionError("no results in the page:\n%s" % (dom or "")[:2000])
    text = html.unescape(m.group(1))
    if text == "pending":
        raise AssertionError("the page's script did not finish")
    return json.loads(text)


class BrowserTest(unittest.TestCase):
    chromium = None

    @classmethod
    def setUpClass(cls):
        cls.allowed = PageServer()
        cls.other = PageServer()
        cls.sim = Sim()
        top = ('clients = ( { name = "browser-app"; token_sha256 = "%s";\n'
               '              routes = [ "contact_get", "tag_put" ]; origins = [ "%s" ]; } );\n'
               % (hashlib.sha256(TOKEN.encode()).hexdigest(), cls.allowed.origin))
        conf = harness.conf_with_top_level(cls.sim.base_url, top,
                                           cors={"allow_origins": [cls.allowed.origin]})
        try:
            cls.gw = Gateway(cls.sim, conf=conf)
        except BaseException:
            cls.sim.stop()
            raise
        for server in (cls.allowed, cls.other):
            server.serve(cls.gw.port)
        cls.profile = tempfile.mkdtemp(prefix="hcgw-chromium-")

    @classmethod
    def tearDownClass(cls):
        for server in (cls.allowed, cls.other):
            server.stop()
        shutil.rmtree(cls.profile, ignore_errors=True)
        rc_gw = cls.gw.stop()
        rc_sim = cls.sim.stop()
        tc = unittest.TestCase()
        assert_clean_stderr(tc, cls.gw.proc, cls.sim.key)
        tc.assertEqual(rc_gw, 0,
                       "hcgw exit status; stderr tail:\n" + cls.gw.proc.stderr_text()[-3000:])
        tc.assertEqual(rc_sim, 0)

    def load(self, server):
        rc, dom, err = run_chromium(self.chromium, server.origin + "/", self.profile)
        self.assertEqual(rc, 0, "chromium: %s" % err)
        return page_results(dom)

    def tag_writes(self):
        return [r for r in self.sim.requests()
                if r["method"] == "PUT" and TAG in json.dumps(r.get("body"))]

    def access(self, pred):
        return [a for a in self.gw.access_lines() if pred(a)]

    def test_allowed_origin(self):
        self.sim.reset()
        out = self.load(self.allowed)
        self.assertEqual(out["origin"], self.allowed.origin)
        read = out["read"]
        self.assertEqual(read.get("status"), 200, out)
        self.assertEqual(read["body"]["id"], int(CID))
        # Exposed headers are readable by the script.
        self.assertEqual(read["request_id"], "browser-read")
        self.assertRegex(read["etag"] or "", r'^"[0-9a-f]{32}"$')
        write = out["write"]
        self.assertEqual(write.get("status"), 200, out)
        self.assertIn(TAG, [t["name"] for t in write["body"]["tags"]])
        self.assertEqual(len(self.tag_writes()), 1)
        invalid = out["invalid"]
        self.assertEqual(invalid.get("status"), 400, out)
        self.assertEqual(invalid["body"]["error"]["code"], "invalid_contact_id")
        self.assertEqual(invalid["body"]["error"]["request_id"], invalid["request_id"])
        unauth = out["unauthenticated"]
        self.assertEqual(unauth.get("status"), 401, out)
        self.assertEqual(unauth["body"]["error"]["code"], "unauthenticated")
        self.assertEqual(unauth["request_id"], "browser-no-token")
        # The browser asked first, and hcgw alone answered it.
        pre = self.access(lambda a: a.get("method") == "OPTIONS"
                          and a.get("origin") == self.allowed.origin)
        self.assertTrue(pre, "no preflight from the allowed page")
        self.assertTrue(all(a["status"] == 204 and a["attempts"] == 0 for a in pre), pre)
        self.assertNotIn("OPTIONS", [r["method"] for r in self.sim.requests()])

    def test_other_origin(self):
        self.sim.reset()
        before = self.sim.count()
        out = self.load(self.other)
        self.assertEqual(out["origin"], self.other.origin)
        for name in ("read", "write", "invalid", "unauthenticated"):
            self.assertIn("failed", out[name], "%s from %s: %r" % (name, self.other.origin, out))
            self.assertNotIn("status", out[name])
        self.assertEqual(self.tag_writes(), [])
        self.assertEqual(self.sim.count(), before, "a call from the other page reached it")
        refused = self.access(lambda a: a.get("method") == "OPTIONS"
                              and a.get("origin") == self.other.origin)
        self.assertTrue(refused, "no preflight from the other page")
        self.assertTrue(all((a["status"], a.get("code")) == (403, "cors_origin_not_allowed")
                            for a in refused), refused)


def main():
    binary = find_chromium()
    if binary is None:
        print("skip - no chromium here (Debian's chromium package; scripts/install-deps.sh "
              "installs it, HCGW_CHROMIUM names another binary)", flush=True)
        return 77
    why = chromium_works(binary)
    if why is not None:
        print("skip - chromium cannot render a page here: " + why, flush=True)
        return 77
    BrowserTest.chromium = binary
    print("# chromium: " + binary, flush=True)
    prog = unittest.main(argv=[sys.argv[0], "-v"], exit=False)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())

"""hcgw driven with the curl command line, the way other teams call it from scripts.

Each test runs `curl` as a subprocess against hcgw (in front of hcgw-sim), parses what curl
prints and checks it, together with the upstream call the simulator recorded.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
from harness import GatewayCase

CURL = shutil.which("curl")


class CurlTest(GatewayCase):

    @classmethod
    def setUpClass(cls):
        if CURL is None:
            raise AssertionError("the curl command line is needed (apt-get install curl)")
        super().setUpClass()

    def base(self):
        return "http://127.0.0.1:%d" % self.gw.port

    def curl(self, *args, expect_rc=0):
        """Run curl with @p args; return its stdout (text). The key must never be in it."""
        p = subprocess.run([CURL, "--max-time", "30", *args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        out = p.stdout.decode("utf-8")
        self.assertEqual(p.returncode, expect_rc,
                         "curl %s: exit %d, stderr %r" % (" ".join(args), p.returncode,
                                                          p.stderr.decode("utf-8", "replace")))
        self.assertNotIn(self.sim.key, out, "the API key appeared in curl's output")
        return out

    def split_code(self, out):
        """Output of `-w '\\n%{http_code}'`: (body, status)."""
        body, _, code = out.rpartition("\n")
        return body, int(code)

    def customer_without(self, tag):
        """A contact id (as curl's list shows them) whose tags do not include @p tag."""
        listing = json.loads(self.curl("-s", self.base() + "/contacts?limit=100"))
        self.sim.reset()  # the listing is not part of what the test checks
        for c in listing["data"]:
            if tag not in [t["name"] for t in c.get("tags") or []]:
                return c["id"]
        self.fail("no contact without tag %r" % tag)

    def only_call(self):
        calls = self.sim.requests()
        self.assertEqual(len(calls), 1, calls)
        c = calls[0]
        self.assertEqual(c["authorization"], "Bearer " + self.sim.key)
        self.assertTrue(c["user_agent"].startswith("hcgw/"), c["user_agent"])
        return c

    def test_put_then_delete_tag(self):
        cid = self.customer_without("Lead")
        url = "%s/contacts/%s/tags/Lead" % (self.base(), cid)

        customer = json.loads(self.curl("-s", "-X", "PUT", url))
        self.assertEqual(customer["id"], cid)
        self.assertIn("Lead", [t["name"] for t in customer["tags"]])
        c = self.only_call()
        self.assertEqual((c["method"], c["path"]), ("PUT", "/v1/customers/%s/tags" % cid))
        self.assertEqual(json.loads(c["body"]), {"tags": [{"name": "Lead"}]})

        before = self.sim.count()
        customer = json.loads(self.curl("-s", "-X", "DELETE", url))
        self.assertNotIn("Lead", [t["name"] for t in customer["tags"]])
        self.assertEqual(self.sim.count(), before + 1)
        c = self.sim.last()
        self.assertEqual((c["method"], c["path"]), ("DELETE", "/v1/customers/%s/tags" % cid))
        self.assertEqual(json.loads(c["body"]), {"tags": [{"name": "Lead"}]})

    def test_post_tags_with_json_body(self):
        cid = self.customer_without("a")
        out = self.curl("-s", "-X", "POST", "-H", "Content-Type: application/json",
                        "-d", '{"tags":["a"]}', "%s/contacts/%s/tags" % (self.base(), cid))
        customer = json.loads(out)
        self.assertEqual(customer["id"], cid)
        self.assertIn("a", [t["name"] for t in customer["tags"]])
        c = self.only_call()
        self.assertEqual((c["method"], c["path"]), ("PUT", "/v1/customers/%s/tags" % cid))
        self.assertEqual(json.loads(c["body"]), {"tags": [{"name": "a"}]})

    def test_error_with_http_code(self):
        out = self.assertNoUpstreamCall(lambda: self.curl(
            "-sS", "-w", "%{http_code}", self.base() + "/contacts/0/tags/Lead", "-X", "PUT"))
        self.assertTrue(out.endswith("400"), out)
        err = json.loads(out[:-3])["error"]
        self.assertEqual(err["status"], 400)
        self.assertEqual(err["code"], "invalid_contact_id")
        self.assertNotIn("upstream_status", err)

    def test_not_found_passes_helpcrunch_status(self):
        out = self.curl("-sS", "-w", "\n%{http_code}", self.base() + "/contacts/9999999999")
        body, code = self.split_code(out)
        self.assertEqual(code, 404)
        err = json.loads(body)["error"]
        self.assertEqual((err["code"], err["upstream_status"]), ("not_found", 404))
        c = self.only_call()
        self.assertEqual((c["method"], c["path"]), ("GET", "/v1/customers/9999999999"))

    def test_fail_flag_exits_22_on_error(self):
        # Scripts use -f to stop on any HTTP error: curl exits 22 and prints no body.
        out = self.assertNoUpstreamCall(lambda: self.curl(
            "-fsS", self.base() + "/contacts/01", expect_rc=22))
        self.assertEqual(out, "")

    def test_form_encoded_data_is_refused(self):
        # `curl -d` without -H sends application/x-www-form-urlencoded: a common mistake.
        out = self.assertNoUpstreamCall(lambda: self.curl(
            "-sS", "-w", "\n%{http_code}", "-X", "POST", "-d", '{"tags":["a"]}',
            self.base() + "/contacts/1568834/tags"))
        body, code = self.split_code(out)
        self.assertEqual(code, 415)
        self.assertEqual(json.loads(body)["error"]["code"], "unsupported_media_type")

    def test_headers_and_request_id(self):
        cid = self.customer_without("none-such-tag")
        with tempfile.TemporaryDirectory() as d:
            hdr_path = os.path.join(d, "headers")
            out = self.curl("-s", "-D", hdr_path, "-H", "X-Request-Id: curl-check.1",
                            "-H", "Authorization: Bearer caller-token",
                            "%s/contacts/%s" % (self.base(), cid))
            with open(hdr_path, encoding="latin-1") as f:
                raw_headers = f.read()
        status_line, *lines = [l for l in raw_headers.splitlines() if l]
        self.assertIn(" 200", status_line)
        headers = {}
        for line in lines:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        self.assertEqual(headers.get("x-request-id"), "curl-check.1")
        self.assertEqual(headers.get("cache-control"), "no-store")
        self.assertEqual(headers.get("x-content-type-options"), "nosniff")
        self.assertEqual(headers.get("content-type"), "application/json")
        c = self.only_call()  # the caller's Authorization stayed behind
        # Byte for byte what HelpCrunch answered.
        direct = harness.http_request(self.sim.port, "GET", c["path"],
                                      headers={"Authorization": "Bearer " + self.sim.key})
        self.assertEqual(out.encode("utf-8"), direct.body)
        deadline = time.monotonic() + 5
        while True:
            logged = [o for o in self.gw.access_lines() if o.get("request_id") == "curl-check.1"]
            if logged or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.assertEqual(len(logged), 1, logged)
        self.assertEqual(logged[0]["status"], 200)

    def test_list_with_get_data(self):
        out = self.curl("-s", "-G", "--data-urlencode", "limit=2", "--data-urlencode", "offset=1",
                        self.base() + "/contacts")
        page = json.loads(out)
        self.assertEqual(len(page["data"]), 2)
        c = self.only_call()
        self.assertEqual((c["method"], c["path"]), ("GET", "/v1/customers"))
        q = dict(p.split("=", 1) for p in c["query"].split("&"))
        self.assertEqual((q.get("limit"), q.get("offset")), ("2", "1"))

    def test_delete_contact_gives_204(self):
        cid = self.customer_without("none-such-tag")
        out = self.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE",
                        "%s/contacts/%s" % (self.base(), cid))
        self.assertEqual(out, "204")
        c = self.only_call()
        self.assertEqual((c["method"], c["path"]), ("DELETE", "/v1/customers/%s" % cid))
        out = self.curl("-s", "-w", "\n%{http_code}", "%s/contacts/%s" % (self.base(), cid))
        self.assertEqual(self.split_code(out)[1], 404)

    def test_large_body_file_is_refused(self):
        # --data-binary @file with a body over limits.max_body_bytes (65536 by default): curl
        # may send "Expect: 100-continue" first; either way the answer is 413.
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write('{"notes":"' + "n" * 70000 + '"}')
            path = f.name
        try:
            out = self.assertNoUpstreamCall(lambda: self.curl(
                "-sS", "-w", "\n%{http_code}", "-X", "PATCH", "-H",
                "Content-Type: application/json", "--data-binary", "@" + path,
                self.base() + "/contacts/1568834"))
        finally:
            os.unlink(path)
        body, code = self.split_code(out)
        self.assertEqual(code, 413)
        self.assertEqual(json.loads(body)["error"]["code"], "body_too_large")


if __name__ == "__main__":
    unittest.main()

"""Every row of the HelpCrunch → hcgw mapping table (docs/contract.md, "The error envelope"),
over real HTTP: the simulator is scripted (POST /_sim/script) to answer the way HelpCrunch, a
proxy in front of it, or a broken network would, and hcgw's envelope is checked.

Each scripted case also checks that the simulator really played the script (its "scripted"
counter), so that a test cannot pass because the script was never used.
"""
import email.utils
import json
import os
import socket
import time
import unittest
import uuid

from harness import (SOURCE_DIR, ConfCase, Gateway, Sim, assert_clean_stderr, full_conf,
                     wait_access)

CUSTOMER = 1568834  # seeded by hcgw-sim
CUSTOMER_PATH = "/contacts/%d" % CUSTOMER
DATA = os.path.join(SOURCE_DIR, "tests", "data", "upstream-errors")
FALLBACK_S = 7       # upstream.retry_after_fallback_s below (not the default 10)
BODY_BOUND = 65536   # limits.max_upstream_body_bytes below


def data(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return f.read()


def free_port():
    """A loopback port nothing listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class MappingCase(ConfCase):
    conf_groups = {
        "upstream": {"timeout_ms": 3000, "max_retries": 2, "retry_base_ms": 10,
                     "retry_max_ms": 50, "retry_after_fallback_s": FALLBACK_S},
        "limits": {"max_upstream_body_bytes": BODY_BOUND},
    }

    def scripted(self, entries, method="GET", path=CUSTOMER_PATH, body=None):
        """Queue entries, send one request, and return (response, access line)."""
        self.sim.reset()
        self.sim.script(entries)
        rid = "map-" + uuid.uuid4().hex
        mark = self.gw.proc.mark()
        r = self.req(method, path, body, headers={"X-Request-Id": rid})
        self.assertGreaterEqual(self.sim.stats()["scripted"], 1, "the script was not played")
        return r, wait_access(self.gw, rid, mark)

    def assertDetails(self, err, expected):
        self.assertEqual(err.get("details"), expected, err)


class HelpCrunch4xxTest(MappingCase):
    """400, 401/403, 404, 409, 422, other 4xx."""

    def test_400_new_style_keeps_only_the_specific_entry(self):
        r, line = self.scripted({"status": 400, "body": data("new-400-customer.json")})
        err = self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)
        self.assertDetails(err, [{"code": "customer",
                                  "message": "This value should be of type numeric."}])
        self.assertEqual(line["status"], 400)
        self.assertEqual(line["upstream_status"], 400)
        self.assertEqual(line["attempts"], 1)

    def test_400_new_style_filter_path_on_search(self):
        r, _ = self.scripted({"status": 400, "body": data("new-400-filter.json")},
                             "POST", "/contacts/search",
                             {"filter": [{"field": "customers.email", "operator": "~",
                                          "value": "example"}]})
        err = self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)
        self.assertDetails(err, [{"code": "filter[0].field",
                                  "message": "This value should not be blank."}])

    def test_400_old_style_single_entry(self):
        r, _ = self.scripted({"status": 400, "body": data("old-400-invalid-userid.json")},
                             "POST", "/contacts", {"userId": "user_1"})
        err = self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)
        self.assertDetails(err, [{"code": "invalid_userId_value",
                                  "message": "Customer with this userId already exists"}])

    def test_400_with_only_the_generic_entry_has_no_details(self):
        r, _ = self.scripted({"status": 400, "json": {"errors": [
            {"code": "invalid_request", "message": "Invalid request"}]}})
        err = self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)
        self.assertNotIn("details", err)

    def test_401_and_403_are_502_auth_failed_without_details(self):
        for status, body in ((401, data("new-401-unauthorized.json")),
                             (401, data("old-401-invalid-token.json")),
                             (403, json.dumps({"errors": [{"code": "forbidden",
                                                           "message": "Forbidden"}]}))):
            with self.subTest(status=status, body=body):
                r, line = self.scripted({"status": status, "body": body})
                err = self.assertEnvelope(r, 502, "upstream_auth_failed",
                                          upstream_status=status)
                self.assertNotIn("details", err)
                self.assertEqual(line["code"], "upstream_auth_failed")
                self.assertEqual(line["attempts"], 1, "401/403 are not retried")

    def test_real_401_from_the_simulator_with_a_wrong_key(self):
        gw = Gateway(self.sim, key="not-the-sim-key-" + uuid.uuid4().hex,
                     conf=full_conf(self.sim.base_url))
        try:
            r = gw.request("GET", CUSTOMER_PATH)
            err = self.assertEnvelope(r, 502, "upstream_auth_failed", upstream_status=401)
            self.assertNotIn("details", err)
            self.assertNotIn(gw.key.encode(), r.body)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, gw.key)

    def test_404_both_styles(self):
        for body, detail in ((data("new-404-not-found.json"),
                              {"code": "not_found", "message": "Chat not found"}),
                             (data("old-404-entity-not-found.json"),
                              {"code": "entity_not_found", "message": "Customer not found"})):
            with self.subTest(detail=detail):
                r, _ = self.scripted({"status": 404, "body": body})
                err = self.assertEnvelope(r, 404, "not_found", upstream_status=404)
                self.assertDetails(err, [detail])

    def test_real_404_from_the_simulator(self):
        r = self.req("GET", "/contacts/987654321")
        err = self.assertEnvelope(r, 404, "not_found", upstream_status=404)
        self.assertEqual(err["message"], "Contact not found")
        self.assertEqual([d["code"] for d in err.get("details", [])], ["not_found"])

    def test_409_conflict(self):
        r, _ = self.scripted({"status": 409, "json": {"errors": [
            {"code": "conflict", "message": "Customer was changed meanwhile"}]}},
            "PATCH", CUSTOMER_PATH, {"name": "X"})
        err = self.assertEnvelope(r, 409, "conflict", upstream_status=409)
        self.assertDetails(err, [{"code": "conflict",
                                  "message": "Customer was changed meanwhile"}])

    def test_422_is_422_invalid_request(self):
        r, line = self.scripted({"status": 422, "json": {"errors": [
            {"code": "invalid_request", "message": "Invalid request"},
            {"code": "email", "message": "This value is not a valid email address."}]}},
            "POST", "/contacts", {"email": "nope"})
        err = self.assertEnvelope(r, 422, "invalid_request", upstream_status=422)
        self.assertDetails(err, [{"code": "email",
                                  "message": "This value is not a valid email address."}])
        self.assertEqual(line["status"], 422)

    def test_other_4xx_are_502_upstream_error(self):
        for status in (405, 410, 418):
            with self.subTest(status=status):
                r, line = self.scripted({"status": status, "json": {"errors": [
                    {"code": "teapot", "message": "I'm a teapot"}]}})
                err = self.assertEnvelope(r, 502, "upstream_error", upstream_status=status)
                self.assertNotIn("details", err)
                self.assertEqual(line["attempts"], 1)

    def test_3xx_is_502_upstream_error_and_not_followed(self):
        r, _ = self.scripted({"status": 302, "body": "",
                              "headers": {"Location": self.sim.base_url + "/customers"}})
        self.assertEnvelope(r, 502, "upstream_error", upstream_status=302)
        self.assertEqual(self.sim.count(), 1, "the redirect was followed")


class RateLimitTest(MappingCase):
    """429 after retries → 429 rate_limited with a Retry-After."""

    def test_429_after_retries_without_retry_after_uses_the_fallback(self):
        r, line = self.scripted({"status": 429, "body": data("new-429-too-many-requests.json"),
                                 "count": 10})
        err = self.assertEnvelope(r, 429, "rate_limited", upstream_status=429)
        self.assertNotIn("details", err)
        self.assertEqual(r.header("Retry-After"), str(FALLBACK_S))
        self.assertEqual(line["attempts"], 3)
        self.assertEqual(self.sim.count(), 3)

    def test_429_old_style_keeps_the_upstream_retry_after(self):
        # 120 s is past the 3 s deadline: no retry, the value is passed on as given.
        r, line = self.scripted({"status": 429, "body": data("old-429-too-many-requests.json"),
                                 "headers": {"Retry-After": "120"}, "count": 10})
        self.assertEnvelope(r, 429, "rate_limited", upstream_status=429)
        self.assertEqual(r.header("Retry-After"), "120")
        self.assertEqual(line["attempts"], 1)

    def test_429_retry_after_as_an_http_date(self):
        when = email.utils.formatdate(time.time() + 300, usegmt=True)
        r, _ = self.scripted({"status": 429, "headers": {"Retry-After": when}, "count": 10})
        self.assertEnvelope(r, 429, "rate_limited", upstream_status=429)
        self.assertTrue(250 <= int(r.header("Retry-After")) <= 300, r.header("Retry-After"))

    def test_real_429_from_the_simulator_rate_limiter(self):
        sim = Sim(extra=["--rate-limit", "1", "--retry-after"])
        gw = None
        try:
            gw = Gateway(sim, conf=full_conf(sim.base_url, upstream={"timeout_ms": 3000}))
            self.assertEqual(gw.request("GET", CUSTOMER_PATH).status, 200)
            r = gw.request("GET", CUSTOMER_PATH)
            err = self.assertEnvelope(r, 429, "rate_limited", upstream_status=429)
            self.assertNotIn("details", err)
            # The simulator says when its one-minute window ends; hcgw passes it on.
            self.assertTrue(1 <= int(r.header("Retry-After")) <= 60, r.header("Retry-After"))
        finally:
            if gw is not None:
                self.assertEqual(gw.stop(), 0)
                assert_clean_stderr(self, gw.proc, sim.key)
            self.assertEqual(sim.stop(), 0)


class HelpCrunch5xxTest(MappingCase):

    def test_5xx_are_502_upstream_error(self):
        # 502, 503 and 504 are retried: the script covers every attempt.
        for status in (500, 501, 502, 503, 504, 599):
            with self.subTest(status=status):
                r, _ = self.scripted({"status": status, "json": {"errors": [
                    {"code": "internal_error", "message": "Internal server error"}]},
                    "count": 10})
                err = self.assertEnvelope(r, 502, "upstream_error", upstream_status=status)
                self.assertNotIn("details", err)

    def test_non_json_error_bodies(self):
        html = data("proxy-502.html")
        for status, hstatus, code in ((502, 502, "upstream_error"),
                                      (500, 502, "upstream_error"),
                                      (400, 400, "invalid_request"),
                                      (404, 404, "not_found"),
                                      (401, 502, "upstream_auth_failed")):
            with self.subTest(status=status):
                r, _ = self.scripted({"status": status, "body": html,
                                      "content_type": "text/html", "count": 10})
                err = self.assertEnvelope(r, hstatus, code, upstream_status=status)
                self.assertNotIn("details", err)
                self.assertNotIn(b"nginx", r.body)
        with self.subTest(body="plain text"):
            r, _ = self.scripted({"status": 400, "body": "Bad Request",
                                  "content_type": "text/plain"})
            self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)


class ThirdShapeTest(MappingCase):
    """{"message":…,"success":false,"code":…,"errors":…}"""

    def test_errors_as_a_field_map(self):
        r, _ = self.scripted({"status": 400, "json": {
            "message": "Validation failed", "success": False, "code": "validation_error",
            "errors": {"email": ["This value is not a valid email address."],
                       "phone": "This value is too long."}}})
        err = self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)
        self.assertCountEqual(err["details"], [
            {"code": "email", "message": "This value is not a valid email address."},
            {"code": "phone", "message": "This value is too long."}])

    def test_errors_as_an_array(self):
        r, _ = self.scripted({"status": 422, "json": {
            "message": "Validation failed", "success": False, "code": 422,
            "errors": [{"code": "invalid_request", "message": "Invalid request"},
                       {"code": "name", "message": "This value should not be blank."}]}})
        err = self.assertEnvelope(r, 422, "invalid_request", upstream_status=422)
        self.assertDetails(err, [{"code": "name", "message": "This value should not be blank."}])

    def test_errors_as_a_string(self):
        r, _ = self.scripted({"status": 400, "json": {
            "message": "Validation failed", "success": False, "code": "validation_error",
            "errors": "email is not valid"}})
        err = self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)
        self.assertDetails(err, [{"code": "validation_error", "message": "email is not valid"}])

    def test_only_message_and_code(self):
        r, _ = self.scripted({"status": 404, "json": {
            "message": "Customer not found", "success": False, "code": 404, "errors": None}})
        err = self.assertEnvelope(r, 404, "not_found", upstream_status=404)
        self.assertDetails(err, [{"code": "404", "message": "Customer not found"}])

    def test_on_a_502_the_shape_gives_no_details(self):
        r, _ = self.scripted({"status": 500, "json": {
            "message": "Server error", "success": False, "code": "internal",
            "errors": {"db": "down"}}})
        err = self.assertEnvelope(r, 502, "upstream_error", upstream_status=500)
        self.assertNotIn("details", err)


class BadSuccessTest(MappingCase):
    """A 2xx that is not the JSON the route expects, and bodies over the bound."""

    def assertBadResponse(self, r):
        self.assertEqual(r.status, 502, r)
        err = r.json()["error"]
        # HelpCrunch did answer (2xx); whether its status is repeated is not fixed, but it is
        # never anything else.
        self.assertIn(err.get("upstream_status"), (None, 200, 201, 204), err)
        self.assertEqual(err["code"], "upstream_bad_response", r)
        self.assertEqual(err["request_id"], r.header("X-Request-Id"))
        self.assertNotIn("details", err)

    def test_customer_routes(self):
        for entry in ({"status": 200, "body": "<html><body>Maintenance</body></html>",
                       "content_type": "text/html"},
                      {"status": 200, "json": [1]},
                      {"status": 200, "json": "Ok"},
                      {"status": 200, "body": "{\"id\": 1568834, \"name\": "},
                      {"status": 200, "body": "{\"id\": 1} trailing"},
                      {"status": 200, "body": ""},
                      {"status": 204, "body": ""}):
            with self.subTest(entry=entry):
                r, _ = self.scripted(entry)
                self.assertBadResponse(r)
        with self.subTest(route="tag_put"):
            r, _ = self.scripted({"status": 200, "json": [1]}, "PUT", CUSTOMER_PATH + "/tags/vip")
            self.assertBadResponse(r)
        with self.subTest(route="contact_create"):
            r, _ = self.scripted({"status": 201, "json": [1]}, "POST", "/contacts", {"name": "A"})
            self.assertBadResponse(r)

    def test_list_without_data(self):
        for body in ({"total": 3}, {"total": 3, "data": {}}, {"data": None}, [1, 2]):
            with self.subTest(body=body):
                r, _ = self.scripted({"status": 200, "json": body}, "GET", "/contacts")
                self.assertBadResponse(r)

    def test_search_without_data(self):
        r, _ = self.scripted({"status": 200, "json": {"found": []}}, "POST", "/contacts/search",
                             {"filter": []})
        self.assertBadResponse(r)

    def test_tags_route_with_tags_not_a_list(self):
        r, _ = self.scripted({"status": 200, "json": {"id": CUSTOMER, "tags": "vip"}},
                             "GET", CUSTOMER_PATH + "/tags")
        self.assertBadResponse(r)

    def test_the_expected_json_passes(self):
        # The counterpart of the cases above: the same routes with the right shapes succeed.
        r, _ = self.scripted({"status": 200, "json": {"id": CUSTOMER, "name": "Scripted"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"id": CUSTOMER, "name": "Scripted"})
        r, _ = self.scripted({"status": 200, "json": {"total": 0, "data": []}}, "GET", "/contacts")
        self.assertEqual(r.status, 200, r)

    def test_body_over_the_bound(self):
        r, line = self.scripted({"action": "huge", "size": BODY_BOUND * 2})
        self.assertBadResponse(r)
        self.assertEqual(line["attempts"], 1, "an oversized answer is not retried")
        r, _ = self.scripted({"action": "huge", "size": 9 * 1024 * 1024})
        self.assertBadResponse(r)

    def test_body_just_under_the_bound_passes(self):
        r, _ = self.scripted({"action": "huge", "size": BODY_BOUND - 16})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), BODY_BOUND - 16)
        self.assertEqual(r.json()["pad"][:3], "xxx")
        # and the gateway goes on working after a refused one
        r, _ = self.scripted({"action": "huge", "size": BODY_BOUND + 1})
        self.assertBadResponse(r)
        self.assertEqual(self.req("GET", CUSTOMER_PATH).status, 200)


class UnavailableTest(MappingCase):

    def test_connection_cut_without_an_answer(self):
        r, line = self.scripted({"action": "close", "count": 20})
        self.assertEnvelope(r, 502, "upstream_unavailable")
        self.assertEqual(line["attempts"], 3)
        self.assertNotIn("upstream_status", line)

    def test_connection_cut_in_the_middle_of_the_body(self):
        r, line = self.scripted({"action": "truncate", "count": 20})
        self.assertEnvelope(r, 502, "upstream_unavailable")
        self.assertEqual(line["attempts"], 3)

    def test_cut_on_a_post_is_unavailable_too(self):
        r, _ = self.scripted({"action": "truncate", "count": 20}, "POST", "/contacts",
                             {"name": "A"})
        self.assertEnvelope(r, 502, "upstream_unavailable")

    def test_connection_refused(self):
        port = free_port()
        gw = Gateway(self.sim, conf=full_conf("http://127.0.0.1:%d/v1" % port))
        try:
            for method, path, body in (("GET", CUSTOMER_PATH, None),
                                       ("POST", "/contacts", {"name": "A"})):
                with self.subTest(method=method):
                    rid = "refused-" + uuid.uuid4().hex
                    t0 = time.monotonic()
                    mark = gw.proc.mark()
                    r = gw.request(method, path, body, headers={"X-Request-Id": rid})
                    self.assertEnvelope(r, 502, "upstream_unavailable")
                    self.assertLess(time.monotonic() - t0, 3.0)
                    line = wait_access(gw, rid, mark)
                    self.assertEqual(line["attempts"], 3 if method == "GET" else 1)
        finally:
            self.assertEqual(gw.stop(), 0)
            assert_clean_stderr(self, gw.proc, self.sim.key)


class DeadlineTest(MappingCase):
    TIMEOUT_MS = 500
    conf_groups = {"upstream": {"timeout_ms": TIMEOUT_MS, "connect_timeout_ms": 400,
                                "max_retries": 2, "retry_base_ms": 10, "retry_max_ms": 50}}

    def assertTimedOut(self, entries, method="GET", path=CUSTOMER_PATH, body=None):
        t0 = time.monotonic()
        r, line = self.scripted(entries, method, path, body)
        elapsed = time.monotonic() - t0
        self.assertEnvelope(r, 504, "upstream_timeout")
        # The deadline holds: not much after timeout_ms, and not long before it either.
        self.assertGreaterEqual(elapsed, self.TIMEOUT_MS / 1000.0 * 0.9)
        self.assertLess(elapsed, self.TIMEOUT_MS / 1000.0 + 1.5)
        self.assertEqual(line["status"], 504)
        return line

    def test_slow_answer(self):
        line = self.assertTimedOut({"delay_ms": 3000, "status": 200, "json": {"id": CUSTOMER}})
        self.assertEqual(line["attempts"], 1)

    def test_slow_answer_on_a_post(self):
        self.assertTimedOut({"delay_ms": 3000, "status": 201, "json": {"id": 1}},
                            "POST", "/contacts", {"name": "A"})

    def test_slow_body_after_the_headers(self):
        # The status line arrives at once; the body drips in one byte per 200 ms.
        self.assertTimedOut({"action": "drip", "interval_ms": 200})

    def test_fast_answers_still_pass(self):
        r, _ = self.scripted({"delay_ms": 100})
        self.assertEqual(r.status, 200, r)


class KeyMaskingTest(MappingCase):
    """HelpCrunch may echo the key in an error text: it never reaches the caller."""

    def assertMasked(self, r, status, code):
        key = self.sim.key
        self.assertNotIn(key.encode(), r.body)
        err = self.assertEnvelope(r, status, code, upstream_status=status)
        text = json.dumps(err)
        self.assertNotIn(key, text)
        self.assertNotIn(key[:12], text, "a prefix of the key leaked")
        self.assertIn("*" * 8, text, "the key was not masked but dropped or changed")
        return err

    def test_key_in_a_400_message(self):
        key = self.sim.key
        r, _ = self.scripted({"status": 400, "json": {"errors": [
            {"code": "invalid_request", "message": "Invalid request"},
            {"code": "token", "message": "The token %s is not valid" % key}]}})
        err = self.assertMasked(r, 400, "invalid_request")
        self.assertEqual(len(err["details"]), 1)
        self.assertTrue(err["details"][0]["message"].startswith("The token "), err)
        self.assertTrue(err["details"][0]["message"].endswith(" is not valid"), err)

    def test_key_in_a_code_and_a_field_map(self):
        key = self.sim.key
        r, _ = self.scripted({"status": 422, "json": {
            "message": "Bearer " + key, "success": False, "code": key,
            "errors": {key: ["Authorization: Bearer %s rejected" % key]}}})
        self.assertMasked(r, 422, "invalid_request")

    def test_key_in_a_404_and_an_html_page(self):
        key = self.sim.key
        r, _ = self.scripted({"status": 404, "json": {"errors": [
            {"code": "entity_not_found", "message": "no customer for key " + key}]}})
        self.assertMasked(r, 404, "not_found")
        r, _ = self.scripted({"status": 400, "body": "<html>key=%s</html>" % key,
                              "content_type": "text/html"})
        self.assertNotIn(key.encode(), r.body)
        self.assertEnvelope(r, 400, "invalid_request", upstream_status=400)

    def test_key_echoed_in_a_401(self):
        r, _ = self.scripted({"status": 401, "json": {"errors": [
            {"code": "invalid_token", "message": "Invalid token " + self.sim.key}]}})
        self.assertNotIn(self.sim.key.encode(), r.body)
        err = self.assertEnvelope(r, 502, "upstream_auth_failed", upstream_status=401)
        self.assertNotIn("details", err)


if __name__ == "__main__":
    unittest.main()

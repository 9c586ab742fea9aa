"""Idempotency-Key on POST /contacts (docs/configuration.md, "Idempotency keys"), over real
HTTP with hcgw-sim.

- The same key with the same body replays the first answer (status, body,
  Idempotent-Replayed: true) without an upstream call; the quoted form of a key is the same
  key; another body is 422 idempotency_key_reused; a malformed key (empty, too long, a space,
  a byte outside 0x21-0x7E, sent twice, a broken quoted string) is 400 invalid_idempotency_key;
  none of these costs an upstream call.
- Only final answers are kept: a 201, and HelpCrunch's 400 and 422. A 429 or a 409 is not: the
  key is free again. A 5xx, a timeout or a cut connection leaves the outcome unknown: the next
  request with the key searches HelpCrunch for the contact (by userId, else email) and answers
  201 with it when found (the simulator applied the create, then hcgw timed out), or creates it
  when not (the simulator failed the create without applying it): the simulator holds one
  contact either way.
- While the first request with a key runs, another with the key gets 409
  idempotency_key_in_progress, on any connection of either of two workers.
- Keys are per client: two clients' equal keys are two records.
- idempotency.ttl_s = 0 turns it off: the header is ignored.
- The access line's "idempotency" field, and hcgw_idempotency_replays_total.
"""
import hashlib
import json
import threading
import time
import unittest
import uuid

from harness import (Gateway, GatewayCase, SimCase, assert_clean_stderr, conf_with_top_level,
                     http_request, send_raw, wait_access)

CREATE = "/contacts"


def key():
    return "k-" + uuid.uuid4().hex


def person(tag=None):
    tag = tag or uuid.uuid4().hex[:12]
    return {"name": "Ann " + tag, "email": "ann-%s@example.com" % tag}


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("metric %s not found" % name)


class IdemCase(GatewayCase):
    """Helpers shared by the classes below."""

    def create(self, body, idem=None, headers=None, rid=None):
        """POST /contacts with body (an object, sent as JSON, or str/bytes as they are)."""
        hdrs = {"Content-Type": "application/json", "X-Request-Id": rid or uuid.uuid4().hex}
        if idem is not None:
            hdrs["Idempotency-Key"] = idem
        hdrs.update(headers or {})
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        return self.req("POST", CREATE, body, hdrs)

    def create_logged(self, body, idem=None, headers=None):
        """create, and its access line."""
        rid = uuid.uuid4().hex
        mark = self.gw.proc.mark()
        r = self.create(body, idem, headers, rid)
        return r, wait_access(self.gw, rid, mark)

    def upstream(self, method, path, body=None):
        """A call straight to the simulator's API, with its key."""
        return http_request(self.sim.port, method, "/v1" + path, body,
                            {"Authorization": "Bearer " + self.sim.key})

    def found_by(self, field, value):
        """The simulator's customers whose field equals value."""
        r = self.upstream("POST", "/customers/search",
                          {"filter": [{"field": "customers." + field, "operator": "=",
                                       "value": value}]})
        self.assertEqual(r.status, 200, r)
        return r.json()["data"]

    def calls(self, method, path):
        return [c for c in self.sim.requests() if c["method"] == method and c["path"] == path]

    def creates(self):
        return self.calls("POST", "/v1/customers")

    def searches(self):
        return self.calls("POST", "/v1/customers/search")

    def replays(self):
        return metric(self.req("GET", "/metrics").body.decode(), "hcgw_idempotency_replays_total")


class IdempotencyTest(IdemCase):

    def test_same_key_same_body_replays_the_first_answer(self):
        k, body = key(), person()
        before = self.replays()
        first, line = self.create_logged(body, k)
        self.assertEqual(first.status, 201, first)
        self.assertIsNone(first.header("Idempotent-Replayed"))
        self.assertEqual(line["idempotency"], "stored")
        self.assertEqual(line["upstream_status"], 201)
        for _ in range(2):
            again, line = self.create_logged(body, k)
            self.assertEqual(again.status, 201, again)
            self.assertEqual(again.body, first.body)
            self.assertEqual(again.header("Idempotent-Replayed"), "true")
            self.assertEqual(again.header("Content-Type"), "application/json")
            self.assertEqual(line["idempotency"], "replayed")
            self.assertEqual(line["attempts"], 0)
            self.assertNotIn("upstream_status", line)
        self.assertEqual(len(self.creates()), 1, "one upstream create for three requests")
        self.assertEqual(len(self.found_by("email", body["email"])), 1)
        self.assertEqual(self.replays(), before + 2)

    def test_quoted_key_is_the_same_key(self):
        k, body = key(), person()
        first = self.create(body, k)
        self.assertEqual(first.status, 201, first)
        again = self.create(body, '"%s"' % k)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(again.body, first.body)
        self.assertEqual(len(self.creates()), 1)

    def test_no_key_no_record(self):
        body = person()
        a, line = self.create_logged(body)
        b = self.create(body)
        self.assertEqual((a.status, b.status), (201, 201))
        self.assertNotEqual(a.json()["id"], b.json()["id"])
        self.assertNotIn("idempotency", line)

    def test_another_body_is_422(self):
        k, body = key(), person()
        self.assertEqual(self.create(body, k).status, 201)
        other = dict(body, name="Someone else")
        r, line = self.assertNoUpstreamCall(lambda: self.create_logged(other, k))
        self.assertEnvelope(r, 422, "idempotency_key_reused")
        self.assertIsNone(r.header("Idempotent-Replayed"))
        self.assertEqual(line["idempotency"], "reused")
        # The body is compared byte for byte, as hcgw forwards it.
        text = json.dumps(body)
        r = self.assertNoUpstreamCall(lambda: self.create(text.replace(": ", ":"), k))
        self.assertEnvelope(r, 422, "idempotency_key_reused")
        # The first answer is still there.
        self.assertEqual(self.create(body, k).header("Idempotent-Replayed"), "true")

    def test_malformed_keys_are_400_without_an_upstream_call(self):
        body = person()
        for bad in ("", "a" * 256, '"%s"' % ("a" * 256), "a b", '"a b"', "caf\u00e9",
                    '"abc', '"abc";p=1', '"a\\nb"'):
            with self.subTest(key=bad):
                r = self.assertNoUpstreamCall(lambda: self.create(body, bad))
                self.assertEnvelope(r, 400, "invalid_idempotency_key")
        # The longest key is fine.
        self.assertEqual(self.create(person(), "a" * 223 + uuid.uuid4().hex).status, 201)

    def test_key_sent_twice_is_400(self):
        text = json.dumps(person()).encode()
        rid = uuid.uuid4().hex
        for second in ("same-key", "other-key"):
            with self.subTest(second=second):
                head = ("POST /contacts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "X-Request-Id: %s\r\nIdempotency-Key: same-key\r\nIdempotency-Key: %s\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n" % (rid, second, len(text)))
                before = self.sim.count()
                raw = send_raw(self.gw.port, head.encode() + text)
                self.assertTrue(raw.startswith(b"HTTP/1.1 400 "), raw[:200])
                self.assertIn(b'"code":"invalid_idempotency_key"', raw)
                self.assertEqual(self.sim.count(), before)

    def test_validation_comes_first_and_keeps_nothing(self):
        k = key()
        r = self.assertNoUpstreamCall(lambda: self.create("{not json", k))
        self.assertEnvelope(r, 400, "invalid_body")
        # Nothing was held or kept: the key is new for a good body.
        r = self.create(person(), k)
        self.assertEqual(r.status, 201, r)
        self.assertIsNone(r.header("Idempotent-Replayed"))

    def test_key_is_ignored_on_other_routes(self):
        r = self.req("PATCH", "/contacts/1568834", {"company": "ACME"},
                     {"Idempotency-Key": "a b"})
        self.assertEqual(r.status, 200, r)

    def test_helpcrunch_400_and_422_are_kept(self):
        for status in (400, 422):
            with self.subTest(status=status):
                k, body = key(), person()
                self.sim.script({"status": status, "json": {"errors": [
                    {"code": "invalid_request", "message": "Invalid request"},
                    {"code": "email", "message": "This value is not a valid email."}]}})
                first, line = self.create_logged(body, k)
                self.assertEnvelope(first, status, "invalid_request", upstream_status=status)
                self.assertEqual(line["idempotency"], "stored")
                again, line = self.assertNoUpstreamCall(lambda: self.create_logged(body, k))
                err = self.assertEnvelope(again, status, "invalid_request",
                                          upstream_status=status)
                self.assertEqual(again.header("Idempotent-Replayed"), "true")
                self.assertEqual(err["details"], first.json()["error"]["details"])
                self.assertEqual(line["idempotency"], "replayed")

    def test_refusals_are_not_kept(self):
        for status in (429, 409):
            with self.subTest(status=status):
                k, body = key(), person()
                self.sim.reset()
                self.sim.script({"status": status, "json": {"errors": [
                    {"code": "too_many_requests", "message": "limit"}]}})
                first, line = self.create_logged(body, k)
                self.assertEqual(first.status, status, first)
                self.assertEqual(line["idempotency"], "released")
                again, line = self.create_logged(body, k)
                self.assertEqual(again.status, 201, again)
                self.assertIsNone(again.header("Idempotent-Replayed"))
                self.assertEqual(line["idempotency"], "stored")
                # Not an unknown outcome: no search before the create.
                self.assertEqual(self.searches(), [])
                self.assertEqual(len(self.creates()), 2)

    def test_5xx_then_retry_searches_then_creates(self):
        k, body = key(), person()
        self.sim.script({"status": 503, "json": {"errors": [
            {"code": "service_unavailable", "message": "down"}]}})
        first, line = self.create_logged(body, k)
        self.assertEnvelope(first, 502, "upstream_error", upstream_status=503)
        self.assertEqual(line["idempotency"], "unknown")
        # The simulator did not apply it: the search finds nothing, and the create goes.
        again, line = self.create_logged(body, k)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(line["idempotency"], "stored")
        self.assertEqual(line["attempts"], 2)
        searches = self.searches()
        self.assertEqual(len(searches), 1)
        self.assertEqual(json.loads(searches[0]["body"])["filter"],
                         [{"field": "customers.email", "operator": "=", "value": body["email"]}])
        self.assertEqual([c["method"] + " " + c["path"] for c in self.sim.requests()][-2:],
                         ["POST /v1/customers/search", "POST /v1/customers"])
        self.assertEqual([c["id"] for c in self.found_by("email", body["email"])],
                         [again.json()["id"]])
        third = self.create(body, k)
        self.assertEqual(third.header("Idempotent-Replayed"), "true")
        self.assertEqual(third.body, again.body)

    def test_cut_connection_then_retry_searches(self):
        k, body = key(), dict(person(), userId="u-" + uuid.uuid4().hex[:10])
        self.sim.script({"action": "close"})
        first, line = self.create_logged(body, k)
        self.assertEnvelope(first, 502, "upstream_unavailable")
        self.assertEqual(line["idempotency"], "unknown")
        again = self.create(body, k)
        self.assertEqual(again.status, 201, again)
        # By userId, which HelpCrunch keeps unique, when the body has one.
        self.assertEqual(json.loads(self.searches()[0]["body"])["filter"][0]["field"],
                         "customers.userId")
        self.assertEqual(len(self.found_by("userId", body["userId"])), 1)

    def test_unknown_and_failed_search_stays_unknown(self):
        k, body = key(), person()
        self.sim.script([{"status": 503}, {"status": 500}])
        self.assertEqual(self.create(body, k).status, 502)
        # The search fails too: nothing is created, and the key stays unknown.
        r, line = self.create_logged(body, k)
        self.assertEnvelope(r, 502, "upstream_error", upstream_status=500)
        self.assertEqual(line["idempotency"], "unknown")
        self.assertEqual(len(self.creates()), 1)
        r = self.create(body, k)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(len(self.searches()), 2)
        self.assertEqual(len(self.found_by("email", body["email"])), 1)

    def test_unknown_without_userid_or_email_creates_again(self):
        k, body = key(), {"name": "Nameless " + uuid.uuid4().hex[:8]}
        self.sim.script({"status": 503})
        self.assertEqual(self.create(body, k).status, 502)
        r = self.create(body, k)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.searches(), [])

    def test_in_progress_is_409(self):
        k, body = key(), person()
        self.sim.script({"delay_ms": 1500})
        results = {}
        t = threading.Thread(target=lambda: results.setdefault("first", self.create(body, k)))
        t.start()
        # Wait until the first create reached the simulator, then send the key again.
        deadline = time.monotonic() + 5
        while not self.creates() and time.monotonic() < deadline:
            time.sleep(0.02)
        r, line = self.assertNoUpstreamCall(lambda: self.create_logged(body, k))
        self.assertEnvelope(r, 409, "idempotency_key_in_progress")
        self.assertEqual(line["idempotency"], "in_progress")
        t.join(10)
        self.assertEqual(results["first"].status, 201, results["first"])
        again = self.create(body, k)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertEqual(len(self.creates()), 1)


class RecoveryTest(IdemCase):
    """The create times out after the simulator applied it."""

    conf_groups = {"upstream": {"timeout_ms": 400, "max_retries": 0}}

    def wait_applied(self, field, value, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.found_by(field, value)
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("the simulator never applied the create")

    def test_timeout_after_the_create_was_applied_recovers_it(self):
        for field in ("email", "userId"):
            with self.subTest(field=field):
                k, body = key(), person()
                if field == "userId":
                    body["userId"] = "u-" + uuid.uuid4().hex[:10]
                # A passthrough entry: the simulator applies the create after 1 s; hcgw gave
                # up at 400 ms.
                self.sim.script({"delay_ms": 1000})
                first, line = self.create_logged(body, k)
                self.assertEnvelope(first, 504, "upstream_timeout")
                self.assertEqual(line["idempotency"], "unknown")
                applied = self.wait_applied(field, body[field])
                self.assertEqual(len(applied), 1)
                again, line = self.create_logged(body, k)
                self.assertEqual(again.status, 201, again)
                self.assertEqual(again.json()["id"], applied[0]["id"])
                self.assertEqual(again.json()["email"], body["email"])
                self.assertIsNone(again.header("Idempotent-Replayed"))
                self.assertEqual(line["idempotency"], "recovered")
                self.assertEqual(line["upstream_status"], 200)
                self.assertEqual(line["attempts"], 1)
                # One contact in the simulator, one create sent.
                self.assertEqual(len(self.found_by(field, body[field])), 1)
                self.assertEqual(len([c for c in self.creates()
                                      if json.loads(c["body"]) == body]), 1)
                # From now on the recovered answer is replayed.
                third = self.assertNoUpstreamCall(lambda: self.create(body, k))
                self.assertEqual(third.header("Idempotent-Replayed"), "true")
                self.assertEqual(third.json()["id"], applied[0]["id"])


class TwoWorkersTest(IdemCase):
    """Eight callers at once with one key, each on its own connection, over two workers: all
    eight landing on one worker has a chance of 1 in 128."""

    workers = 2
    N = 8

    def test_one_create_the_others_409_on_either_worker(self):
        k, body = key(), person()
        self.sim.script({"delay_ms": 1500})
        results = [None] * self.N
        barrier = threading.Barrier(self.N)

        def one(i):
            barrier.wait(10)
            results[i] = self.create(body, k)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(self.N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [201] + [409] * (self.N - 1), results)
        for r in results:
            if r.status == 409:
                self.assertEnvelope(r, 409, "idempotency_key_in_progress")
        self.assertEqual(len(self.creates()), 1)
        again = [self.create(body, k) for _ in range(4)]
        self.assertEqual({r.header("Idempotent-Replayed") for r in again}, {"true"})
        self.assertEqual(len(self.creates()), 1)


TOKENS = {"billing": "tok-idem-billing-7Yq2", "crm": "tok-idem-crm-9Kp4"}


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


class ScopeTest(SimCase):
    """Keys are per client: two clients sending one key make two records."""

    def test_two_clients_one_key(self):
        clients = "clients = (\n%s\n);" % ",\n".join(
            '{ name = "%s"; token_sha256 = "%s"; routes = [ "*" ]; }' % (n, sha(t))
            for n, t in TOKENS.items())
        gw = Gateway(self.sim, conf=conf_with_top_level(self.sim.base_url, clients))
        try:
            k, body = key(), person()
            hdrs = {"Content-Type": "application/json", "Idempotency-Key": k}
            ids = {}
            for name, token in TOKENS.items():
                r = gw.request("POST", CREATE, json.dumps(body),
                               dict(hdrs, Authorization="Bearer " + token))
                self.assertEqual(r.status, 201, r)
                self.assertIsNone(r.header("Idempotent-Replayed"))
                ids[name] = r.json()["id"]
            self.assertNotEqual(ids["billing"], ids["crm"])
            for name, token in TOKENS.items():
                r = gw.request("POST", CREATE, json.dumps(body),
                               dict(hdrs, Authorization="Bearer " + token))
                self.assertEqual(r.header("Idempotent-Replayed"), "true")
                self.assertEqual(r.json()["id"], ids[name])
        finally:
            rc = gw.stop()
        assert_clean_stderr(self, gw.proc, self.sim.key)
        self.assertEqual(rc, 0)


class OffTest(IdemCase):
    conf_groups = {"idempotency": {"ttl_s": 0}}

    def test_ttl_0_ignores_the_header(self):
        body = person()
        a, line = self.create_logged(body, "a b")
        b = self.create(body, "a b")
        self.assertEqual((a.status, b.status), (201, 201))
        self.assertNotEqual(a.json()["id"], b.json()["id"])
        self.assertIsNone(b.header("Idempotent-Replayed"))
        self.assertNotIn("idempotency", line)
        self.assertEqual(self.replays(), 0)


if __name__ == "__main__":
    unittest.main()

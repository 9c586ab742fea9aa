"""Client-side bounds (docs/contract.md, "Bounds"): the connection limit, the idle and header
timeouts (a slowloris must not hold a connection, nor starve others), the header size, the URL
length and the requests in flight. Each test fails if its bound stops holding. The body bound
is tested in test_validation.

Timing margins are loose on purpose (the tests run under AddressSanitizer, two at a time): a
bound of 1 s is asserted as "not before 0.8 s, and within 2.5 s".
"""
import http.client
import socket
import threading
import time
import unittest

from harness import GatewayCase, http_request

CUSTOMER = 1568834  # seeded by hcgw-sim
C = "/contacts/%d" % CUSTOMER
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: hcgw\r\n\r\n"


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(sock, timeout):
    """Read until the peer closes. Returns (bytes, seconds until closed) or (bytes, None) when
    it was still open after `timeout`."""
    start = time.monotonic()
    data = b""
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            return data, None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, None
        except (ConnectionResetError, BrokenPipeError):
            return data, time.monotonic() - start
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


def read_response(sock, timeout):
    """One HTTP response from a raw socket: (status, body) or None when nothing complete
    arrived within `timeout` (or the connection closed first)."""
    sock.settimeout(timeout)
    r = http.client.HTTPResponse(sock)
    try:
        r.begin()
        return r.status, r.read()
    except (http.client.HTTPException, OSError):
        return None
    finally:
        r.close()


def trickle(sock, data, interval):
    """Send `data` one byte every `interval` seconds, watching for the server to close the
    connection. Returns the seconds from the first byte until it was closed, or None when every
    byte went out and the connection stayed open."""
    start = time.monotonic()
    for i in range(len(data)):
        try:
            sock.send(data[i:i + 1])
        except OSError:
            return time.monotonic() - start
        sock.settimeout(interval)
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - start
    return None


def raw_exchange(port, data, timeout=10.0):
    """Send `data` on a new connection and read until the server closes it or `timeout`
    passes. A send the server cut short (it answered and closed first) is not an error."""
    s = connect(port, timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        return read_until_closed(s, timeout)[0]
    finally:
        s.close()


def status_of(raw):
    """The status code of the first response in raw bytes, or None."""
    if not raw.startswith(b"HTTP/1."):
        return None
    return int(raw.split(b" ", 2)[1])


class ConnectionLimitTest(GatewayCase):
    """limits.max_connections: past it, a new connection is not served until one closes."""

    LIMIT = 8
    # Neither timeout may close the idle connections that hold the limit during the test.
    conf_groups = {"limits": {"max_connections": LIMIT, "header_timeout_ms": 0,
                              "connection_timeout_ms": 60000}}

    def test_limit_holds_and_frees(self):
        held = []
        extra = None
        try:
            # Each connection has been served once, so hcgw has certainly accepted it; it stays
            # open (keep-alive) and idle.
            for _ in range(self.LIMIT):
                c = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                held.append(c)
            # The kernel completes the handshake of one more (it waits in the listen backlog),
            # but hcgw must not serve it while the limit is reached.
            extra = connect(self.gw.port)
            extra.sendall(HEALTHZ)
            early = read_response(extra, 1.5)
            self.assertIsNone(early, "a connection past limits.max_connections was served")
            # Two connections close: the waiting one is served, and so are new ones.
            for c in held[:2]:
                c.close()
            late = read_response(extra, 10.0)
            self.assertIsNotNone(late, "the connection waiting in the backlog was never served")
            self.assertEqual(late[0], 200)
            self.assertEqual(http_request(self.gw.port, "GET", "/healthz", timeout=10).status,
                             200)
        finally:
            for c in held:
                c.close()
            if extra is not None:
                extra.close()


class IdleTimeoutTest(GatewayCase):
    """limits.connection_timeout_ms closes idle connections (the header deadline is off here,
    so the idle timeout alone is at work)."""

    conf_groups = {"limits": {"connection_timeout_ms": 1000, "header_timeout_ms": 0}}

    def test_idle_keepalive_connection_is_closed(self):
        c = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            _, closed = read_until_closed(c.sock, 6.0)
            self.assertIsNotNone(closed, "an idle keep-alive connection was never closed")
            self.assertGreater(closed, 0.8, "closed before connection_timeout_ms")
            self.assertLess(closed, 3.5)
        finally:
            c.close()

    def test_silent_new_connection_is_closed(self):
        s = connect(self.gw.port)
        try:
            _, closed = read_until_closed(s, 6.0)
            self.assertIsNotNone(closed, "a connection that never sent anything stayed open")
            self.assertGreater(closed, 0.8)
            self.assertLess(closed, 3.5)
        finally:
            s.close()


class HeaderTimeoutTest(GatewayCase):
    """limits.header_timeout_ms: the request line and headers must be complete in time, however
    steadily the bytes trickle in; the idle timeout (30 s here) would never cut such a client."""

    conf_groups = {"limits": {"header_timeout_ms": 1000, "connection_timeout_ms": 30000}}

    def warn_lines(self):
        return [o for o in self.gw.proc.json_lines()
                if o.get("msg") == "header timeout: connection closed"]

    def test_silent_connection_is_cut(self):
        before = len(self.warn_lines())
        mark = self.gw.proc.mark()
        s = connect(self.gw.port)
        try:
            _, closed = read_until_closed(s, 6.0)
        finally:
            s.close()
        self.assertIsNotNone(closed, "a connection that never sent a request stayed open")
        self.assertGreater(closed, 0.8)
        self.assertLess(closed, 2.5)
        self.gw.proc.wait_line(lambda o: isinstance(o, dict) and
                               o.get("msg") == "header timeout: connection closed" and
                               o.get("stage") == "request_line", timeout=5, stream="err",
                               since=mark)
        self.assertGreater(len(self.warn_lines()), before)

    def test_slowloris_is_cut_while_others_are_served(self):
        result = {}
        mark = self.gw.proc.mark()

        def slowloris():
            s = connect(self.gw.port)
            try:
                # The request line at once (so that the request exists and is logged), then one
                # header byte every 200 ms: 60 bytes would take 12 s.
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: hcgw\r\n")
                result["cut_after"] = trickle(s, b"X-Slow: " + b"a" * 52 + b"\r\n\r\n", 0.2)
            finally:
                s.close()

        t = threading.Thread(target=slowloris, daemon=True)
        t.start()
        latencies = []
        while t.is_alive():
            start = time.monotonic()
            r = self.req("GET", "/healthz", timeout=10)
            latencies.append(time.monotonic() - start)
            self.assertEqual(r.status, 200)
            time.sleep(0.1)
        t.join()
        cut = result.get("cut_after")
        self.assertIsNotNone(cut, "the slowloris sent its whole request: it was never cut")
        self.assertGreater(cut, 0.6)
        self.assertLess(cut, 2.5, "cut later than header_timeout_ms allows")
        self.assertGreaterEqual(len(latencies), 3)
        self.assertLess(max(latencies), 1.0, "normal requests waited behind the slowloris")
        # Its request was logged once, as 408 (cut before its headers were complete).
        line = self.gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "access"
                                      and o.get("status") == 408, timeout=5, stream="err",
                                      since=mark)
        self.assertIsNone(line.get("route"))
        self.assertNotIn("code", line)
        self.gw.proc.wait_line(lambda o: isinstance(o, dict) and
                               o.get("msg") == "header timeout: connection closed" and
                               o.get("stage") == "headers", timeout=5, stream="err",
                               since=mark)

    def test_keepalive_idle_is_not_cut_but_a_slow_next_request_is(self):
        c = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=10)
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            # Idle between requests longer than the header deadline: that is the idle
            # timeout's business, and the connection still serves the next request.
            time.sleep(1.6)
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            # The next request arrives slowly: cut header_timeout_ms after its first byte.
            cut = trickle(c.sock, HEALTHZ[:-2] + b"X-Slow: " + b"a" * 60 + b"\r\n\r\n", 0.2)
            self.assertIsNotNone(cut, "a slow second request on a keep-alive connection was "
                                      "never cut")
            self.assertGreater(cut, 0.6)
            self.assertLess(cut, 2.5)
        finally:
            c.close()

    def test_next_request_begun_while_one_waits_upstream_is_still_cut(self):
        # The first bytes of the next request arrive while the previous one waits on
        # HelpCrunch (the connection is suspended; its watch hears them but does not care).
        # When that request completes, the header clock must still start for them: epoll is
        # asked to look again (the watch is edge-triggered and their edge has gone by).
        self.sim.call("POST", "/_sim/faults", {"latency_ms": 800})
        s = connect(self.gw.port)
        try:
            s.sendall(b"GET /contacts/1 HTTP/1.1\r\nHost: hcgw\r\n\r\n")
            time.sleep(0.3)
            s.sendall(b"GET /hea")
            got = read_response(s, 10.0)
            self.assertIsNotNone(got, "the first request was not answered")
            # The request line is never finished: the connection must be cut about
            # header_timeout_ms after the answer, far before the idle timeout (30 s).
            _, closed = read_until_closed(s, 8.0)
        finally:
            s.close()
            self.sim.call("DELETE", "/_sim/faults")
        self.assertIsNotNone(closed, "an unfinished next request held the connection: no "
                                     "header clock started for it")
        self.assertLess(closed, 3.5)

    def test_slow_body_after_timely_headers_is_not_cut(self):
        # The deadline covers the request line and headers only; a body that takes longer
        # than header_timeout_ms (but is never idle for connection_timeout_ms) is fine.
        body = b'{"filter":[{"field":"customers.name","operator":"~","value":"doe"}]}'
        s = connect(self.gw.port)
        try:
            s.sendall(b"POST /contacts/search HTTP/1.1\r\nHost: hcgw\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % len(body))
            step = len(body) // 8 + 1
            for i in range(0, len(body), step):
                time.sleep(0.25)
                s.sendall(body[i:i + step])
            got = read_response(s, 10.0)
        finally:
            s.close()
        self.assertIsNotNone(got, "a request with a slow body was cut")
        self.assertEqual(got[0], 200, got)


class HeaderSizeTest(GatewayCase):
    """The request line and headers are bounded by libmicrohttpd's per-connection memory
    (GW_MAX_HEADER_BYTES = 16 KiB): past it, libmicrohttpd answers on its own (not with the
    envelope) and closes; hcgw goes on serving."""

    def test_header_over_the_bound(self):
        mark = self.gw.proc.mark()
        raw = raw_exchange(self.gw.port, b"GET /healthz HTTP/1.1\r\nHost: hcgw\r\nX-Big: "
                           + b"a" * 40960 + b"\r\n\r\n")
        status = status_of(raw)
        if status is not None:  # None: the connection was closed without an answer
            self.assertGreaterEqual(status, 400, raw[:200])
            self.assertLess(status, 500, raw[:200])
        self.assertEqual(self.req("GET", "/healthz").status, 200)
        if status is not None:
            self.gw.proc.wait_line(lambda o: isinstance(o, dict) and o.get("msg") == "access"
                                   and o.get("status") == status, timeout=5, stream="err",
                                   since=mark)

    def test_default_serves_6000_bytes_of_header(self):
        raw = raw_exchange(self.gw.port, b"GET /healthz HTTP/1.1\r\nHost: hcgw\r\nX-Big: " +
                           b"a" * 6000 + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(raw), 200, raw[:200])

    def test_request_line_over_the_bound(self):
        raw = self.assertNoUpstreamCall(lambda: raw_exchange(
            self.gw.port, b"GET " + C.encode() + b"?" + b"a" * 40960 + b" HTTP/1.1\r\n"
            b"Host: hcgw\r\n\r\n"))
        status = status_of(raw)
        if status is not None:
            self.assertIn(status, (400, 414, 431), raw[:200])
        self.assertEqual(self.req("GET", "/healthz").status, 200)


class HeaderBytesTest(GatewayCase):
    """limits.max_header_bytes sets that memory: at 4096, headers that the default 16 KiB serves
    get libmicrohttpd's 431 (and no upstream call), smaller ones are still served."""

    conf_groups = {"limits": {"max_header_bytes": 4096}}

    def test_smaller_memory_refuses_what_the_default_serves(self):
        # 6,000 bytes of header value: within the default 16 KiB (HeaderSizeTest serves 15,986).
        raw = self.assertNoUpstreamCall(lambda: raw_exchange(
            self.gw.port, b"GET " + C.encode() + b" HTTP/1.1\r\nHost: hcgw\r\nX-Big: " +
            b"a" * 6000 + b"\r\n\r\n"))
        self.assertEqual(status_of(raw), 431, raw[:200])
        raw = raw_exchange(self.gw.port, b"GET /healthz HTTP/1.1\r\nHost: hcgw\r\nX-Big: " +
                           b"a" * 2000 + b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(raw), 200, raw[:200])
        self.assertEqual(self.req("GET", "/healthz").status, 200)


class UrlLengthTest(GatewayCase):
    """A request URI (path and query) over GW_MAX_URL_BYTES = 2048 bytes: 414 uri_too_long."""

    def test_2049_bytes_is_uri_too_long(self):
        path = "/" + "a" * 2048
        self.assertEqual(len(path), 2049)
        mark = self.gw.proc.mark()
        r = self.assertNoUpstreamCall(lambda: self.req("GET", path))
        self.assertEnvelope(r, 414, "uri_too_long")
        line = self.gw.proc.wait_line(
            lambda o: isinstance(o, dict) and o.get("msg") == "access"
            and o.get("request_id") == r.header("X-Request-Id"), timeout=5, stream="err",
            since=mark)
        self.assertEqual((line["status"], line["code"]), (414, "uri_too_long"))

    def test_long_query_on_a_real_route(self):
        path = C + "?" + "x" * (2049 - len(C) - 1)
        self.assertEqual(len(path), 2049)
        r = self.assertNoUpstreamCall(lambda: self.req("GET", path))
        self.assertEnvelope(r, 414, "uri_too_long")

    def test_2048_bytes_is_not_too_long(self):
        path = "/" + "a" * 2047
        r = self.assertNoUpstreamCall(lambda: self.req("GET", path))
        self.assertEnvelope(r, 404, "route_not_found")


class InFlightTest(GatewayCase):
    """limits.max_in_flight: past it, 503 overloaded at once, with no upstream call."""

    LIMIT = 5
    conf_groups = {"limits": {"max_in_flight": LIMIT}}

    def test_overloaded_past_the_limit(self):
        self.sim.script({"delay_ms": 3000, "count": self.LIMIT})
        results = [None] * self.LIMIT

        def one(i):
            try:
                results[i] = http_request(self.gw.port, "GET", C, timeout=30).status
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,), daemon=True)
                   for i in range(self.LIMIT)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while self.sim.count() < self.LIMIT and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.sim.count(), self.LIMIT, "the held calls did not all arrive")
        start = time.monotonic()
        r = self.assertNoUpstreamCall(lambda: self.req("GET", C))
        self.assertLess(time.monotonic() - start, 1.0, "the refusal was not immediate")
        self.assertEnvelope(r, 503, "overloaded")
        # Local routes are not requests in flight: still served.
        self.assertEqual(self.req("GET", "/healthz").status, 200)
        for t in threads:
            t.join(30)
        self.assertEqual(results, [200] * self.LIMIT)
        r = self.req("GET", C)
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Soak test: mixed traffic with upstream faults through hcgw for a bounded time, then checks
that nothing was lost or leaked (issue 3, section 5).

It starts hcgw-sim and hcgw (through tests/integration/harness.py), and runs:
  - client threads (keep-alive batches and one-shot connections) over every route, valid and
    invalid requests, some abandoned before their answer (the client hangs up);
  - junk connections (opened and closed, or closed in the middle of the headers) and a
    slowloris that the header deadline must cut again and again;
  - upstream faults: scripted entries fed continuously to /_sim/script (error statuses, HTML,
    delays past the deadline, closes, truncated, huge and dripping bodies, 429s), and the
    simulator's persistent knobs (POST /_sim/faults) when it has them.

It then checks:
  - every request was answered exactly once: each request id sent has exactly one access line,
    whose status is the one the client saw; no request failed at the transport level;
  - only contract statuses and envelope codes, each code with its own status;
  - hcgw's RSS is flat after warm-up (growth below max(16 MiB, 30 %): the 3 MiB answers of
    the fault mix move the allocator's high-water mark by several MiB at a time, and
    LeakSanitizer at exit catches real leaks);
  - no file descriptor leaked: once every client is gone, hcgw holds no client connection and
    exactly the descriptors it held before the load, plus at most its upstream pool;
  - hcgw exits 0 on SIGTERM with no sanitizer (LeakSanitizer) report, and so does the sim.

Environment: HCGW_SOAK_SECONDS (load duration; default HCGW_SOAK_DEFAULT_SECONDS, else 60),
HCGW_SOAK_CLIENTS (client threads, default 16), HCGW_SOAK_SEED (random seed), and the
harness's HCGW_BIN / HCGW_SIM_BIN. Exit status 0 when every check passed, 1 otherwise; a JSON
report (counts, statuses, RSS samples, descriptors) goes to stdout either way.

Running it:
    ctest --preset asan -L soak                          # the short one (20 s), as in every run
    HCGW_SOAK_SECONDS=300 ctest --preset asan -L soak    # longer (ctest's TIMEOUT is 15 min)
    HCGW_BIN=build/asan/hcgw HCGW_SIM_BIN=build/asan/hcgw-sim HCGW_SOAK_SECONDS=3600 \
        python3 tests/soak/soak.py                       # any length, from the source root
"""
import collections
import http.client
import json
import os
import random
import re
import socket
import sys
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402

SEEDED = [1568834, 1568835, 1568836, 1568837]  # hcgw-sim's seed customers
MiB = 1024 * 1024

# The envelope codes a caller may meet during the soak, with their status (docs/contract.md).
# Not expected: internal_error (a bug), shutting_down (no drain during the load),
# overloaded (max_in_flight is far away), upstream_auth_failed (the key is right and no fault
# answers 401 or 403).
CODES = {
    "route_not_found": {404}, "method_not_allowed": {405}, "invalid_contact_id": {400},
    "invalid_tag": {400}, "invalid_body": {400}, "invalid_query": {400},
    "unsupported_media_type": {415}, "body_too_large": {413}, "uri_too_long": {414},
    "invalid_request": {400, 422}, "not_found": {404}, "conflict": {409},
    "rate_limited": {429}, "upstream_error": {502}, "upstream_bad_response": {502},
    "upstream_unavailable": {502}, "upstream_timeout": {504},
}

ERRORS_BODY = {"errors": [{"code": "invalid_request", "message": "Invalid request"},
                          {"code": "name", "message": "This value should not be blank."}]}
# One scripted upstream answer is drawn from these for a share of the calls.
SCRIPT_MENU = [
    {"status": 500}, {"status": 502}, {"status": 503}, {"status": 504},
    {"status": 503, "body": "<html><body>Bad gateway</body></html>", "content_type": "text/html"},
    {"status": 429},  # a process-wide cooldown of quota.cooldown_ms
    {"status": 404, "json": {"errors": [{"code": "not_found", "message": "Customer not found"}]}},
    {"status": 400, "json": ERRORS_BODY}, {"status": 409, "json": ERRORS_BODY},
    {"status": 422, "json": ERRORS_BODY}, {"status": 418},
    {"status": 200, "body": "this is not json"}, {"status": 200, "json": [1, 2, 3]},
    {"action": "close"}, {"action": "close", "delay_ms": 100},
    {"action": "truncate"}, {"action": "huge", "size": 3 * MiB},
    {"action": "drip", "interval_ms": 3},
    {"delay_ms": 50}, {"delay_ms": 300}, {"delay_ms": 3000},  # the last one is past the deadline
]
# Persistent knobs, when the simulator has POST /_sim/faults.
FAULT_KNOBS = {"latency_jitter_ms": 20, "error_rate": 0.02, "error_status": 503,
               "close_rate": 0.01, "reset_rate": 0.01, "truncate_rate": 0.01,
               "html_rate": 0.01, "bad_body_rate": 0.01, "hang_rate": 0.002,
               "drip_rate": 0.002, "drip_interval_ms": 3, "huge_rate": 0.001,
               "huge_bytes": 3 * MiB}

CONF = {
    "server": {"workers": 2, "drain_timeout_ms": 5000},
    "upstream": {"timeout_ms": 2000, "connect_timeout_ms": 500, "max_retries": 2,
                 "retry_base_ms": 20, "retry_max_ms": 200, "max_connections": 16},
    "limits": {"header_timeout_ms": 1000, "connection_timeout_ms": 5000,
               "max_body_bytes": 65536},
    # The governor is on but generous: its waits, rejections and cooldowns (after scripted
    # 429s) are part of the mix without starving the load.
    "quota": {"requests_per_minute": 600000, "burst": 500, "max_wait_ms": 300,
              "cooldown_ms": 100},
    # The contact cache and single flight are on, with a short ttl so that entries come and go
    # (and a small bound so that the LRU evicts): hits, shared reads whose callers hang up,
    # writes and deletes that refresh or drop entries are part of the mix.
    "cache": {"ttl_ms": 2000, "max_entries": 64, "max_bytes": 1048576},
}


def env_number(name, default, cast=int):
    v = os.environ.get(name)
    return cast(v) if v not in (None, "") else default


class Case:
    """One request a client thread makes: method, path, headers, body, expected success."""

    def __init__(self, method, path, body=None, headers=None, ok=200, may_cut=False):
        self.method = method
        self.path = path
        self.body = body
        self.headers = dict(headers or {})
        self.ok = ok
        # A body refused at its headers: hcgw may close while the client still sends it.
        self.may_cut = may_cut
        if body is not None and not isinstance(body, bytes):
            self.body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")


def make_case(rng):
    cid = rng.choice(SEEDED + [rng.randint(1, 10 ** 12)])
    tag = rng.choice(["Lead", "PPC", "vip", "soak tag", "Ünïcode"])
    enc = urllib.parse.quote(tag, safe="")
    r = rng.random()
    if r < 0.30:
        return Case("GET", "/contacts/%d" % cid)
    if r < 0.38:
        return Case("GET", "/contacts?limit=%d&offset=%d" % (rng.randint(1, 20),
                                                            rng.randint(0, 5)))
    if r < 0.45:
        return Case("POST", "/contacts/search",
                    {"filter": [{"field": "customers.name", "operator": "~", "value": "o"}],
                     "limit": 5})
    if r < 0.50:
        return Case("POST", "/contacts", {"name": "soak %d" % rng.randint(0, 10 ** 9)}, ok=201)
    if r < 0.55:
        return Case("PATCH", "/contacts/%d" % cid, {"company": "soak"})
    if r < 0.60:
        return Case("PUT", "/contacts/%d/tags/%s" % (cid, enc))
    if r < 0.64:
        return Case("DELETE", "/contacts/%d/tags/%s" % (cid, enc))
    if r < 0.67:
        return Case("POST", "/contacts/%d/tags" % cid, {"tags": [tag, {"name": "x",
                                                                       "color": "#abc"}]})
    if r < 0.69:
        return Case("DELETE", "/contacts/%d/tags" % cid, {"tags": [tag]})
    if r < 0.72:
        return Case("GET", "/contacts/%d/tags" % cid)
    if r < 0.74:
        return Case(rng.choice(["PUT", "DELETE"]), "/contacts/%d/block" % cid)
    if r < 0.75:
        return Case("DELETE", "/contacts/%d" % rng.randint(2000000, 10 ** 12), ok=204)
    if r < 0.80:
        return Case("GET", rng.choice(["/healthz", "/readyz", "/metrics"]))
    # Requests refused locally (no upstream call).
    return rng.choice([
        Case("GET", "/contacts/abc"), Case("GET", "/contacts/0"), Case("GET", "/nowhere"),
        Case("PATCH", "/contacts/search", {}), Case("GET", "/contacts?limit=x"),
        Case("POST", "/contacts", b"{}", {"Content-Type": "text/plain"}),
        Case("POST", "/contacts", b"{\"name\":", {"Content-Type": "application/json"}),
        Case("POST", "/contacts/search", b"{\"a\":\"" + b"x" * 70000 + b"\"}",
             {"Content-Type": "application/json"}, may_cut=True),
        Case("GET", "/" + "a" * 2100),
        Case("PUT", "/contacts/1568834/tags/%FF"),
    ])


class Stats:
    def __init__(self):
        self.sent = {}            # request id -> status seen by the client (None: abandoned)
        self.failures = []        # text of each contract or transport failure
        self.junk_partial = 0     # connections closed in the middle of their headers
        self.slow_cuts = 0        # slowloris connections cut by the header deadline
        self.junk_ports = set()   # client ports of the junk and slowloris connections, the
        self.slow_ports = set()   # only ones the header deadline may cut
        self.lock = threading.Lock()

    def fail(self, text):
        with self.lock:
            if len(self.failures) < 200:
                self.failures.append(text)


def check_answer(stats, rid, case, status, headers, body):
    where = "%s %s (%s)" % (case.method, case.path[:60], rid)
    if headers.get("x-request-id") != rid:
        stats.fail("%s: X-Request-Id %r" % (where, headers.get("x-request-id")))
    if 200 <= status < 300:
        if status != case.ok and not case.path.startswith(("/healthz", "/readyz", "/metrics")):
            stats.fail("%s: success status %d, expected %d" % (where, status, case.ok))
        return
    try:
        err = json.loads(body)["error"]
        code = err["code"]
    except (ValueError, KeyError, TypeError):
        stats.fail("%s: %d without an envelope: %r" % (where, status, body[:200]))
        return
    if code not in CODES or status not in CODES[code] or err.get("status") != status:
        stats.fail("%s: %d %s is not in the contract" % (where, status, code))


def client(idx, gw_port, deadline, seed, stats):
    rng = random.Random(seed * 1000 + idx)
    n = 0
    conn = None
    left_on_conn = 0
    while time.monotonic() < deadline:
        case = make_case(rng)
        n += 1
        rid = "soak-%d-%d" % (idx, n)
        hdrs = dict(case.headers)
        hdrs["X-Request-Id"] = rid
        if rng.random() < 0.03:
            # Abandon: send the request on its own connection and hang up at once, or after a
            # moment (while it may be waiting on HelpCrunch).
            with stats.lock:
                stats.sent[rid] = None
            try:
                s = socket.create_connection(("127.0.0.1", gw_port), timeout=10)
                head = "%s %s HTTP/1.1\r\nHost: hcgw\r\n" % (case.method, case.path)
                for k, v in hdrs.items():
                    head += "%s: %s\r\n" % (k, v)
                if case.body is not None:
                    head += "Content-Length: %d\r\n" % len(case.body)
                s.sendall(head.encode() + b"\r\n" + (case.body or b""))
                time.sleep(rng.choice([0, 0, 0.05, 0.3]))
                s.close()
            except OSError as e:
                stats.fail("%s: abandoned request could not be sent: %r" % (rid, e))
            continue
        if conn is None or left_on_conn <= 0:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", gw_port, timeout=30)
            keep = rng.random() < 0.6
            left_on_conn = rng.randint(2, 30) if keep else 1
        left_on_conn -= 1
        if left_on_conn == 0:
            hdrs["Connection"] = "close"
        try:
            conn.request(case.method, case.path, body=case.body, headers=hdrs)
            r = conn.getresponse()
            body = r.read()
            status = r.status
            headers = {k.lower(): v for k, v in r.getheaders()}
            if r.will_close:
                left_on_conn = 0
        except (OSError, http.client.HTTPException) as e:
            if not case.may_cut:
                stats.fail("%s %s (%s): no answer: %r" % (case.method, case.path[:60], rid, e))
            with stats.lock:
                stats.sent[rid] = None if case.may_cut else "lost"
            conn.close()
            conn = None
            continue
        with stats.lock:
            stats.sent[rid] = status
        check_answer(stats, rid, case, status, headers, body)
    if conn is not None:
        conn.close()


def junk(gw_port, deadline, seed, stats):
    """Connections opened and closed, or closed in the middle of their headers."""
    rng = random.Random(seed + 7)
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", gw_port), timeout=5)
            with stats.lock:
                stats.junk_ports.add(s.getsockname()[1])
            if rng.random() < 0.5:
                # A complete request line (so hcgw creates the request), then part of a header.
                s.sendall(b"GET /contacts/1568834 HTTP/1.1\r\nHost: hc")
                time.sleep(0.02)
                with stats.lock:
                    stats.junk_partial += 1
            s.close()
        except OSError as e:
            stats.fail("junk connection: %r" % (e,))
        time.sleep(rng.uniform(0.05, 0.3))


def slowloris(gw_port, deadline, stats):
    """Trickles headers until the header deadline (1 s) cuts it, then starts again."""
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", gw_port), timeout=5)
            with stats.lock:
                stats.slow_ports.add(s.getsockname()[1])
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            start = time.monotonic()
            cut = False
            while time.monotonic() - start < 5:
                try:
                    s.send(b"X")
                    s.settimeout(0.2)
                    if s.recv(100) == b"":
                        cut = True
                        break
                except socket.timeout:
                    continue
                except OSError:
                    cut = True
                    break
            s.close()
            if cut:
                with stats.lock:
                    stats.slow_cuts += 1
            else:
                stats.fail("a slowloris was not cut within 5 s (header_timeout_ms is 1 s)")
        except OSError as e:
            stats.fail("slowloris connection: %r" % (e,))


def feeder(sim, deadline, seed, stats):
    """Keeps a few dozen scripted faults queued on the simulator."""
    rng = random.Random(seed + 11)
    while time.monotonic() < deadline:
        try:
            queued = sim.script([dict(rng.choice(SCRIPT_MENU)) for _ in range(5)])["queued"]
        except Exception as e:  # noqa: BLE001 - a broken sim is a failure, not a crash
            stats.fail("feeding the simulator's script failed: %r" % (e,))
            return
        # About 25 entries a second while the queue drains; a pause while it does not.
        time.sleep(0.2 if queued < 50 else 1.0)
    try:
        sim.call("DELETE", "/_sim/script")
    except Exception as e:  # noqa: BLE001
        stats.fail("clearing the simulator's script failed: %r" % (e,))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sampler(pid, stop, samples):
    start = time.monotonic()
    while not stop.wait(0.5):
        try:
            samples.append((time.monotonic() - start, rss_kib(pid)))
        except OSError:
            return


def socket_ports():
    """inode -> (local port, remote port, state) for this network namespace's TCP sockets."""
    res = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    res[p[9]] = (int(p[1].rsplit(":", 1)[1], 16),
                                 int(p[2].rsplit(":", 1)[1], 16), p[3])
        except OSError:
            pass
    return res


def fd_census(pid, gw_port, sim_port):
    """hcgw's descriptors by kind: client connections, upstream connections, and the rest
    (listeners, epoll, eventfd, pipes, files) as a sorted list of descriptions."""
    ports = socket_ports()
    census = {"client": 0, "upstream": 0, "other": []}
    base = "/proc/%d/fd" % pid
    for fd in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m and m.group(1) in ports:
            local, remote, state = ports[m.group(1)]
            if local == gw_port and state != "0A":
                census["client"] += 1
                continue
            if remote == sim_port:
                census["upstream"] += 1
                continue
            census["other"].append("tcp:%d:%s" % (local, state))
        elif m:
            census["other"].append("socket")
        else:
            census["other"].append(re.sub(r"\d+", "N", target))
    census["other"].sort()
    return census


def wait_quiet(pid, gw_port, sim_port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        c = fd_census(pid, gw_port, sim_port)
        if c["client"] == 0 or time.monotonic() > deadline:
            return c
        time.sleep(0.2)


def run():
    duration = env_number("HCGW_SOAK_SECONDS", env_number("HCGW_SOAK_DEFAULT_SECONDS", 60))
    n_clients = env_number("HCGW_SOAK_CLIENTS", 16)
    seed = env_number("HCGW_SOAK_SEED", random.randrange(1 << 30))
    warmup = min(10.0, duration / 4.0)
    print("soak: %d s, %d clients, seed %d (HCGW_SOAK_SEED to replay)"
          % (duration, n_clients, seed), flush=True)
    stats = Stats()
    report = {}
    sim = harness.Sim()
    gw = None
    try:
        # ASan keeps freed memory in a quarantine (256 MiB by default) that would read as
        # growth; a small one fills during warm-up and then stays flat.
        asan = os.environ.get("ASAN_OPTIONS", "")
        asan = (asan + ":" if asan else "") + "quarantine_size_mb=16"
        gw = harness.Gateway(sim, conf=CONF, env_extra={"ASAN_OPTIONS": asan})
        pid = gw.proc.proc.pid
        if _has_faults(sim):
            r = harness.http_request(sim.port, "POST", "/_sim/faults", FAULT_KNOBS)
            report["sim_faults"] = "on" if r.status == 200 else "refused: %r" % (r,)
            if r.status != 200:
                stats.fail("the simulator refused the fault knobs: %r" % (r,))
        else:
            report["sim_faults"] = "absent (scripted faults only)"
        fds_before = fd_census(pid, gw.port, sim.port)
        samples = []
        stop = threading.Event()
        smp = threading.Thread(target=sampler, args=(pid, stop, samples), daemon=True)
        smp.start()
        deadline = time.monotonic() + duration
        threads = [threading.Thread(target=client, args=(i, gw.port, deadline, seed, stats),
                                    daemon=True) for i in range(n_clients)]
        threads.append(threading.Thread(target=junk, args=(gw.port, deadline, seed, stats),
                                        daemon=True))
        threads.append(threading.Thread(target=slowloris, args=(gw.port, deadline, stats),
                                        daemon=True))
        threads.append(threading.Thread(target=feeder, args=(sim, deadline, seed, stats),
                                        daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration + 120)
            if t.is_alive():
                stats.fail("a load thread did not finish")
        stop.set()
        smp.join(5)

        # Idle: every client connection must go (ours are closed; hcgw notices), and nothing
        # else may have been left behind.
        fds_after = wait_quiet(pid, gw.port, sim.port, 20)
        settle = time.monotonic() + 5
        while fds_after["other"] != fds_before["other"] and time.monotonic() < settle:
            time.sleep(0.2)  # a socket caught between the two reads of a census
            fds_after = fd_census(pid, gw.port, sim.port)
        report["fds_before"] = fds_before
        report["fds_after"] = fds_after
        if fds_after["client"] != 0:
            stats.fail("%d client connections still open in hcgw after every client left"
                       % fds_after["client"])
        if fds_after["other"] != fds_before["other"]:
            stats.fail("descriptors changed: before %s, after %s"
                       % (fds_before["other"], fds_after["other"]))
        pool = CONF["upstream"]["max_connections"] * CONF["server"]["workers"]
        if fds_after["upstream"] > pool:
            stats.fail("%d upstream connections open, more than the pool (%d)"
                       % (fds_after["upstream"], pool))

        # RSS just after warm-up against the end of the load: the median of each window, so
        # that the short peaks of huge upstream bodies do not count, and a creeping floor does.
        window = max(3.0, duration * 0.2)
        last = samples[-1][0] if samples else 0
        warm = sorted(v for t, v in samples if warmup <= t <= warmup + window)
        end = sorted(v for t, v in samples if t >= last - window)
        if warm and end:
            w = warm[len(warm) // 2]
            e = end[len(end) // 2]
            report["rss_kib"] = {"warm": w, "end": e, "max": max(v for _, v in samples),
                                 "every_5s": [v for t, v in samples][::10]}
            growth = e - w
            if growth > max(16 * 1024, w * 0.3):
                stats.fail("RSS grew from %d KiB after warm-up to %d KiB at the end" % (w, e))
        else:
            stats.fail("not enough RSS samples (%d)" % len(samples))
        try:
            report["sim_stats"] = {k: v for k, v in sim.stats().items() if k != "by_route"}
        except Exception as e:  # noqa: BLE001
            stats.fail("the simulator's stats: %r" % (e,))
    finally:
        rc_gw = gw.stop() if gw is not None else None
        rc_sim = sim.stop()

    # Every request id: one access line, with the status the client saw.
    if gw is not None:
        lines = gw.access_lines()
        seen = collections.Counter(o.get("request_id") for o in lines)
        status_of = {o.get("request_id"): o.get("status") for o in lines}
        missing = [rid for rid in stats.sent if seen[rid] == 0]
        dup = [rid for rid, n in seen.items() if n > 1]
        wrong = [rid for rid, st in stats.sent.items()
                 if isinstance(st, int) and seen[rid] == 1 and status_of[rid] != st]
        lost = [rid for rid, st in stats.sent.items() if st == "lost"]
        foreign = [o for o in lines if not str(o.get("request_id", "")).startswith("soak-")]
        foreign_408 = sum(1 for o in foreign if o.get("status") == 408)
        foreign_499 = sum(1 for o in foreign if o.get("status") == 499)
        report.update({
            "requests": len(stats.sent),
            "abandoned": sum(1 for st in stats.sent.values() if st is None),
            "answered": sum(1 for st in stats.sent.values() if isinstance(st, int)),
            "lost": len(lost), "access_lines": len(lines),
            "statuses": dict(sorted(collections.Counter(
                st for st in stats.sent.values() if isinstance(st, int)).items())),
            "cache": dict(sorted(collections.Counter(
                o["cache"] for o in lines if "cache" in o).items())),
            "slowloris_cuts": stats.slow_cuts, "junk_partial": stats.junk_partial,
            "foreign_access_lines": {"408": foreign_408, "499": foreign_499,
                                     "other": len(foreign) - foreign_408 - foreign_499},
            "hcgw_exit": rc_gw, "sim_exit": rc_sim,
        })
        if missing:
            stats.fail("%d requests without an access line, e.g. %s" % (len(missing),
                                                                        missing[:5]))
        if dup:
            stats.fail("%d request ids with several access lines, e.g. %s" % (len(dup), dup[:5]))
        if wrong:
            stats.fail("%d access lines disagree with the client's status, e.g. %s"
                       % (len(wrong), [(r, stats.sent[r], status_of[r]) for r in wrong[:5]]))
        # The header deadline cut only the slowloris and junk connections, never a client.
        cuts = [o for o in gw.proc.json_lines()
                if o.get("msg") == "header timeout: connection closed"]
        cut_ports = collections.Counter(int(str(o.get("remote")).rsplit(":", 1)[1])
                                        for o in cuts)
        innocent = [p for p in cut_ports if p not in stats.slow_ports | stats.junk_ports]
        report["header_timeout_cuts"] = {
            "slowloris": sum(n for p, n in cut_ports.items() if p in stats.slow_ports),
            "junk": sum(n for p, n in cut_ports.items() if p in stats.junk_ports),
            "other": len(innocent)}
        if innocent:
            stats.fail("the header deadline cut %d connections of ordinary clients"
                       % len(innocent))
        if report["header_timeout_cuts"]["slowloris"] < stats.slow_cuts:
            stats.fail("%d slowloris cuts seen by the client, %d logged by hcgw"
                       % (stats.slow_cuts, report["header_timeout_cuts"]["slowloris"]))
        # Lines without a soak request id: requests whose headers never completed, cut at the
        # deadline (408: the slowloris, and junk whose close libmicrohttpd missed) or closed by
        # the client (499: junk).
        if foreign_408 != sum(1 for o in cuts if o.get("stage") == "headers"):
            stats.fail("%d access lines with 408 for %d cuts in the headers"
                       % (foreign_408, sum(1 for o in cuts if o.get("stage") == "headers")))
        if (foreign_408 + foreign_499 > stats.slow_cuts + stats.junk_partial
                or len(foreign) != foreign_408 + foreign_499):
            stats.fail("unexpected access lines without a soak request id: %s" % foreign[:5])
        if stats.slow_cuts == 0:
            stats.fail("the slowloris was never cut")
        tc = unittest.TestCase()
        for proc, key in ((gw.proc, sim.key), (sim.proc, None)):
            try:
                harness.assert_clean_stderr(tc, proc, key)
            except AssertionError as e:
                stats.fail(str(e)[:2000])
                print(proc.stderr_text()[-6000:], file=sys.stderr)
        if rc_gw != 0:
            stats.fail("hcgw exited %r on SIGTERM" % rc_gw)
        if rc_sim != 0:
            stats.fail("hcgw-sim exited %r" % rc_sim)
    print(json.dumps(report, indent=1, default=str), flush=True)
    if stats.failures:
        print("SOAK FAILED (%d problems):" % len(stats.failures), flush=True)
        for f in stats.failures:
            print("  - " + f, flush=True)
        return 1
    print("SOAK OK", flush=True)
    return 0


def _has_faults(sim):
    try:
        return harness.http_request(sim.port, "GET", "/_sim/faults", timeout=5).status == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(run())

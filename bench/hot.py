#!/usr/bin/env python3
"""
hot contacts: how far hcgw's call layer stretches HelpCrunch's quota (bench/README.md).

50 callers, 200 contacts of which 20 take 80% of the traffic, 70% reads (GET /contacts/{id},
GET /contacts/{id}/tags) and 30% tag writes (PUT and DELETE /contacts/{id}/tags/{name}, POST and
DELETE /contacts/{id}/tags), against hcgw-sim at its 120 calls a minute, for 180 s, once with
the call layer on (the cache at its default ttl, coalesce.tags = true) and once off
(cache.ttl_ms = 0, coalesce.tags = false). It reports the caller operations answered per
upstream call the simulator counted, the 429s callers saw (local ones, with Retry-After, and
HelpCrunch's passed on), the 429s the simulator gave, and the stale reads that a checker finds
by replaying the simulator's journal (a read is stale when it misses a write that hcgw had
answered before the read began).

  bench/hot.py                                   both runs, 3 minutes each, one replica
  bench/hot.py --replicas 3 --redis --layer on   three replicas sharing one redis-server
  bench/hot.py --duration 10 --layer on          a smoke run

Needs the release build (cmake --preset release && cmake --build --preset release -j2), or
--build DIR; redis-server (Debian's) for --redis. Everything listens on 127.0.0.1; every process
it starts is stopped when it ends, on Ctrl-C too. Not a pass/fail test.
"""
import argparse
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)
import bench as B  # noqa: E402  (the suite's process bookkeeping, ports and signal handling)

API_KEY = "hot-bench-key-0123456789"
REDIS_PASSWORD = "hot-bench-redis-pw"
# Tag names the callers use; a small set, as real tagging is (the same few tags again and again).
VOCAB = ["vip", "lead", "ppc", "trial", "churn-risk", "enterprise", "newsletter", "beta",
         "support", "paid", "onboarding", "webinar"]
DEFAULT_COLOR = "#c377e0"  # hcgw-sim's colour for a tag created without one (docs/simulator.md)
SIM_POLL_S = 0.25          # /_sim/stats: the time line that bounds which calls an operation made
JOURNAL_POLL_S = 5.0       # /_sim/requests keeps 256 calls: 2 minutes at the quota's rate
CALL_TIMEOUT_S = 30.0      # a caller gives up on an answer after this (hcgw's own is 10 s)
HTTP_OK = (200, 201, 204)


def log(msg):
    B.log(msg)


# ---------------------------------------------------------------- small HTTP helpers

def request(port, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection: (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def sim_json(port, method, path, body=None):
    st, _, data = request(port, method, path, body,
                       {"Authorization": "Bearer " + API_KEY} if path.startswith("/v1") else {})
    if st not in HTTP_OK:
        raise RuntimeError("hcgw-sim %s %s answered %d: %s" % (method, path, st, data[:200]))
    return json.loads(data) if data and data != b"Ok" else None


def tag_key(tags):
    """A contact's tags as a comparable value: the set of (name, colour)."""
    return frozenset((t["name"], t.get("color")) for t in tags)


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


# ---------------------------------------------------------------- the scenario

class Scenario:
    """What the callers do; the same seed gives the same sequence of operations per caller."""

    def __init__(self, a, ids):
        self.a = a
        self.ids = ids
        self.hot = ids[:a.hot]
        self.cold = ids[a.hot:]

    def contact(self, rng):
        if self.cold and rng.random() >= self.a.hot_share:
            return rng.choice(self.cold)
        return rng.choice(self.hot)

    def op(self, rng):
        """(kind, method, path, body, names): kind read|tags_read|add|remove."""
        cid = self.contact(rng)
        if rng.random() < self.a.read_share:
            if rng.random() < self.a.tags_read_share:
                return ("read", "GET", "/contacts/%d/tags" % cid, None, None, cid)
            return ("read", "GET", "/contacts/%d" % cid, None, None, cid)
        kind = "add" if rng.random() < 0.5 else "remove"
        if rng.random() < self.a.bulk_share:
            names = rng.sample(VOCAB, rng.randint(2, 4))
            if kind == "add":
                # Bulk additions name a colour half the time (and so recolour a tag they find).
                items = [{"name": n, "color": "#%06x" % rng.randrange(1 << 24)}
                         if rng.random() < 0.5 else n for n in names]
                return (kind, "POST", "/contacts/%d/tags" % cid, {"tags": items}, items, cid)
            return (kind, "DELETE", "/contacts/%d/tags" % cid, {"tags": names}, names, cid)
        n = rng.choice(VOCAB)
        return (kind, "PUT" if kind == "add" else "DELETE", "/contacts/%d/tags/%s" % (cid, n),
                None, [n], cid)


class Caller(threading.Thread):
    """One caller: its own keep-alive connection to one replica; operations at exponential
    intervals (an open loop at rate/callers each: a slow answer delays the next operation, which
    then goes at once, never more than one at a time)."""

    def __init__(self, idx, port, replica, scen, rate_per_s, t0, t_end, stop, seed):
        super().__init__(name="caller-%d" % idx, daemon=True)
        self.idx, self.port, self.replica = idx, port, replica
        self.scen, self.rate, self.t0, self.t_end, self.stop = scen, rate_per_s, t0, t_end, stop
        self.rng = random.Random(seed)
        self.ops = []
        self.conn = None

    def connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT_S)

    def run(self):
        nxt = self.t0 + self.rng.expovariate(self.rate)
        n = 0
        while not self.stop.is_set():
            if nxt >= self.t_end:
                break
            wait = nxt - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                break
            kind, method, path, body, names, cid = self.scen.op(self.rng)
            n += 1
            rid = "hot-%d-%d" % (self.idx, n)
            self.ops.append(self.call(kind, method, path, body, names, cid, rid))
            nxt += self.rng.expovariate(self.rate)
        if self.conn is not None:
            self.conn.close()

    def call(self, kind, method, path, body, names, cid, rid):
        headers = {"X-Request-Id": rid}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        op = dict(kind=kind, method=method, path=path, contact=cid, replica=self.replica,
                  rid=rid, names=names)
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more, fresh
            if self.conn is None:
                self.connect()
            op["start"] = time.monotonic()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                op["end"] = time.monotonic()
                op["status"] = r.status
                op["cache"] = r.getheader("Cache-Status")
                op["retry_after"] = r.getheader("Retry-After")
                break
            except (OSError, http.client.HTTPException) as e:
                op["end"] = time.monotonic()
                op["status"] = 0
                op["error"] = type(e).__name__
                self.conn.close()
                self.conn = None
                if attempt == 2 or isinstance(e, socket.timeout):
                    return op
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        if r.status == 200 and isinstance(doc, dict) and isinstance(doc.get("tags"), list):
            op["tags"] = [{"name": t.get("name"), "color": t.get("color")} for t in doc["tags"]]
        elif r.status == 429 and isinstance(doc, dict):
            err = doc.get("error") or {}
            op["upstream_status"] = err.get("upstream_status")
        return op


class SimMonitor(threading.Thread):
    """Polls the simulator: its counters every SIM_POLL_S (the time line of how many calls had
    arrived when), its journal every JOURNAL_POLL_S (merged by seq)."""

    def __init__(self, port, stop):
        super().__init__(name="sim-monitor", daemon=True)
        self.port, self.stop = port, stop
        self.samples = []   # (t before the request, t after the answer, requests, rate_limited)
        self.journal = {}   # seq -> entry
        self.gaps = 0
        self.max_seq = 0

    def sample(self):
        t0 = time.monotonic()
        s = sim_json(self.port, "GET", "/_sim/stats")
        t1 = time.monotonic()
        self.samples.append((t0, t1, s["requests"], s["rate_limited"]))
        return s

    def poll_journal(self):
        entries = sim_json(self.port, "GET", "/_sim/requests")["requests"]
        if entries and self.max_seq and entries[0]["seq"] > self.max_seq + 1:
            self.gaps += entries[0]["seq"] - self.max_seq - 1
        for e in entries:
            self.journal[e["seq"]] = e
            self.max_seq = max(self.max_seq, e["seq"])

    def run(self):
        last_j = 0.0
        while not self.stop.is_set():
            try:
                self.sample()
                if time.monotonic() - last_j >= JOURNAL_POLL_S:
                    self.poll_journal()
                    last_j = time.monotonic()
            except (OSError, RuntimeError, ValueError) as e:
                log("sim monitor: %s" % e)
            self.stop.wait(SIM_POLL_S)


# ---------------------------------------------------------------- the run

class HotBench:
    def __init__(self, a):
        self.a = a
        self.run_dir = tempfile.mkdtemp(prefix="hcgw-hot-")
        build = a.build or os.path.join(ROOT, "build", "release")
        self.hcgw_bin = os.path.join(build, "hcgw")
        self.sim_bin = os.path.join(build, "hcgw-sim")
        for b in (self.hcgw_bin, self.sim_bin):
            if not os.access(b, os.X_OK):
                raise RuntimeError("%s is missing: cmake --preset release && cmake --build "
                                   "--preset release -j2 (or --build DIR)" % b)
        if a.redis and shutil.which("redis-server") is None:
            raise RuntimeError("--redis needs redis-server (scripts/install-deps.sh)")

    # ------------------------------------------------------------ processes

    def start_sim(self):
        self.sim_err = os.path.join(self.run_dir, "sim.stderr")
        argv = [self.sim_bin, "--port", "0", "--key", API_KEY, "--no-seed",
                "--rate-limit", str(self.a.upstream_rpm), "--seed", str(self.a.seed),
                "--latency-ms", str(self.a.upstream_latency_ms)]
        p = B.PROCS.start(argv, stdout=subprocess.PIPE, stderr=open(self.sim_err, "w"),
                          name="hcgw-sim")
        r, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline().decode() if r else ""
        m = re.search(r'"port":(\d+)', line)
        if not m:
            raise RuntimeError("hcgw-sim did not say where it listens: %r" % line)
        self.sim = p
        self.sim_port = int(m.group(1))
        log("hcgw-sim on 127.0.0.1:%d (%d calls a minute, +%d ms)"
            % (self.sim_port, self.a.upstream_rpm, self.a.upstream_latency_ms))

    def start_redis(self):
        d = os.path.join(self.run_dir, "redis")
        os.makedirs(d, exist_ok=True)
        port = B.free_ports(1)[0]
        conf = os.path.join(d, "redis.conf")
        with open(conf, "w") as f:
            f.write("bind 127.0.0.1\nport %d\ndir %s\nlogfile %s/redis.log\nsave \"\"\n"
                    "appendonly no\ndaemonize no\n"
                    "user default off\n"
                    "user hcgw on >%s ~hcgw:* resetchannels -@all +eval +evalsha +get +set "
                    "+pttl +time +select +ping\n" % (port, d, d, REDIS_PASSWORD))
        pw = os.path.join(d, "password")
        with open(pw, "w") as f:
            f.write(REDIS_PASSWORD + "\n")
        os.chmod(pw, 0o600)
        p = B.PROCS.start(["redis-server", conf], name="redis-server")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"*3\r\n$4\r\nAUTH\r\n$4\r\nhcgw\r\n$%d\r\n%s\r\n"
                              % (len(REDIS_PASSWORD), REDIS_PASSWORD.encode()))
                    if s.recv(64).startswith(b"+OK"):
                        break
            except OSError:
                pass
            if p.poll() is not None:
                raise RuntimeError("redis-server exited with %d" % p.returncode)
            time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not answer on port %d" % port)
        log("redis-server on 127.0.0.1:%d" % port)
        return p, port, pw

    def hcgw_conf(self, port, layer, redis):
        a = self.a
        rpm = a.quota_rpm
        if a.replicas > 1 and not redis:
            rpm = max(1, a.quota_rpm // a.replicas)  # the static division of the manifests
        lines = [
            'listen = { address = "127.0.0.1"; port = %d; };' % port,
            "server = { workers = %d; };" % a.workers,
            'upstream = { base_url = "http://127.0.0.1:%d/v1"; api_key = "%s"; };'
            % (self.sim_port, API_KEY),
            "quota = { requests_per_minute = %d; };" % rpm,
            'log = { level = "info"; };',
        ]
        if layer == "on":
            if a.ttl_ms is not None:
                lines.append("cache = { ttl_ms = %d; };" % a.ttl_ms)
            lines.append("coalesce = { tags = true; };")
        else:
            lines.append("cache = { ttl_ms = 0; };")
            lines.append("coalesce = { tags = false; };")
        if redis:
            rport, pw = redis
            lines.append('redis = { url = "redis://127.0.0.1:%d/0"; username = "hcgw"; '
                         'password_file = "%s"; expected_replicas = %d; };'
                         % (rport, pw, a.replicas))
        return "\n".join(lines) + "\n", rpm

    def start_replicas(self, layer, redis):
        ports = B.free_ports(self.a.replicas)
        procs = []
        for i, port in enumerate(ports):
            text, rpm = self.hcgw_conf(port, layer, redis)
            conf = os.path.join(self.run_dir, "hcgw-%s-%d.conf" % (layer, i))
            with open(conf, "w") as f:
                f.write(text)
            logf = os.path.join(self.run_dir, "hcgw-%s-%d.log" % (layer, i))
            p = B.PROCS.start([self.hcgw_bin, "-c", conf], stderr=open(logf, "w"),
                              name="hcgw-%d" % i)
            B.wait_ready(port, proc=p)
            p.bench_port, p.bench_log = port, logf
            procs.append(p)
        self.replica_rpm = rpm
        return procs

    # ------------------------------------------------------------ the contacts

    def setup_contacts(self):
        """A fresh simulator state: the contacts, with 0 to 3 tags each, made straight at the
        simulator with its limit off; then the limit back on (a new window)."""
        a = self.a
        rng = random.Random(a.seed)
        sim_json(self.sim_port, "POST", "/_sim/reset")
        sim_json(self.sim_port, "POST", "/_sim/faults", {"rate_limit": 0})
        ids, initial = [], {}
        for i in range(a.contacts):
            c = sim_json(self.sim_port, "POST", "/v1/customers",
                         {"name": "Hot Contact %d" % i, "email": "hot%d@example.com" % i,
                          "userId": "hot-%d" % i})
            cid = c["id"]
            tags = c["tags"]
            k = rng.randint(0, 3)
            if k:
                c = sim_json(self.sim_port, "PUT", "/v1/customers/%d/tags" % cid,
                             {"tags": [{"name": n} for n in rng.sample(VOCAB, k)]})
                tags = c["tags"]
            ids.append(cid)
            initial[cid] = tag_key(tags)
        rng.shuffle(ids)  # which contacts are hot: any 20 of them
        sim_json(self.sim_port, "POST", "/_sim/faults", {"rate_limit": a.upstream_rpm})
        return ids, initial

    # ------------------------------------------------------------ one run

    def one(self, layer):
        a = self.a
        ids, initial = self.setup_contacts()
        redis_proc, redis = None, None
        if a.redis:
            redis_proc, rport, pw = self.start_redis()
            redis = (rport, pw)
        procs = self.start_replicas(layer, redis)
        try:
            return self.measure(layer, ids, initial, procs)
        finally:
            for p in procs:
                B.PROCS.stop(p)
            if redis_proc is not None:
                B.PROCS.stop(redis_proc)

    def measure(self, layer, ids, initial, procs):
        a = self.a
        scen = Scenario(a, ids)
        stop = threading.Event()
        mon = SimMonitor(self.sim_port, stop)
        base = mon.sample()
        mon.poll_journal()
        base_seq = base["requests"]
        err_offset = os.path.getsize(self.sim_err)
        load0 = os.getloadavg()
        t0 = time.monotonic() + 0.2
        t_end = t0 + a.duration
        rate_each = a.rate / 60.0 / a.callers
        callers = [Caller(i, procs[i % len(procs)].bench_port, i % len(procs), scen, rate_each,
                          t0, t_end, stop, a.seed * 1000 + i) for i in range(a.callers)]
        log("%s: %d callers over %d replica(s), %d operations a minute offered, %d s"
            % (layer, a.callers, len(procs), a.rate, a.duration))
        mon.start()
        for c in callers:
            c.start()
        try:
            while time.monotonic() < t_end:
                time.sleep(min(10.0, max(0.1, t_end - time.monotonic())))
                done = sum(len(c.ops) for c in callers)
                if time.monotonic() < t_end:
                    log("  %s: %5.0f s, %d operations, %d upstream calls"
                        % (layer, time.monotonic() - t0, done,
                           mon.samples[-1][2] - base_seq if mon.samples else 0))
            for c in callers:  # let operations in flight end: at most hcgw's own deadline
                c.join(timeout=CALL_TIMEOUT_S + 5)
        finally:
            stop.set()
            mon.join(timeout=10)
        final = mon.sample()
        mon.poll_journal()
        load1 = os.getloadavg()
        metrics = [scrape_metrics(p.bench_port) for p in procs]
        ops = [op for c in callers for op in c.ops]
        with open(self.sim_err, "rb") as f:
            f.seek(err_offset)
            sim_lines = f.read().decode(errors="replace").splitlines()
        res = analyse(ops, initial, mon, base_seq, final, sim_lines, t0, a.duration)
        res.update(layer=layer, replicas=len(procs), redis=bool(a.redis),
                   replica_rpm=self.replica_rpm, metrics=sum_metrics(metrics),
                   load_before=load0, load_after=load1, journal_gaps=mon.gaps)
        if a.keep_ops:
            res["ops"] = ops
        return res

    def main(self):
        a = self.a
        self.start_sim()
        layers = ["on", "off"] if a.layer == "both" else [a.layer]
        self.results = []
        t0 = time.time()
        for layer in layers:
            self.results.append(self.one(layer))
            log(summary_line(self.results[-1]))
        self.meta = dict(started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
                         elapsed_s=round(time.time() - t0), args=portable_args(a),
                         machine=machine(), hcgw=version(self.hcgw_bin))
        text = report(self.meta, self.results)
        print(text)
        if a.output:
            os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
            with open(a.output, "w") as f:
                f.write(text)
            with open(os.path.splitext(a.output)[0] + ".json", "w") as f:
                json.dump({"meta": self.meta, "results": self.results}, f, indent=1,
                          default=str)
            log("wrote %s" % B.portable_path(a.output))


# ---------------------------------------------------------------- metrics

METRICS = ("hcgw_upstream_attempts_total", "hcgw_upstream_calls_saved_total",
           "hcgw_cache_lookups_total", "hcgw_quota_rejections_total",
           "hcgw_quota_upstream_429_total", "hcgw_quota_shared", "hcgw_quota_fallbacks_total",
           "hcgw_redis_errors_total")


def scrape_metrics(port):
    st, _, body = request(port, "GET", "/metrics")
    out = {}
    if st != 200:
        return out
    for line in body.decode().splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"([a-z_]+)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) not in METRICS:
            continue
        key = m.group(1) + (m.group(2) or "")
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def sum_metrics(ms):
    out = {}
    for m in ms:
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return out


def metric_sum(m, name, label=None):
    return sum(v for k, v in m.items() if k.split("{")[0] == name
               and (label is None or label in k))


# ---------------------------------------------------------------- the checker

def apply_write(state, method, body):
    """The simulator's tag semantics (docs/simulator.md): additions create missing tags (their
    colour, else the default) and recolour known ones only when a colour is given; removals
    drop the names the customer has."""
    tags = dict(state)
    items = [t if isinstance(t, dict) else {"name": t} for t in body.get("tags") or []]
    if method == "PUT":
        for t in items:
            name, color = t.get("name"), t.get("color")
            if name in tags:
                if color is not None:
                    tags[name] = color
            else:
                tags[name] = color if color is not None else DEFAULT_COLOR
    else:
        for t in items:
            tags.pop(t.get("name"), None)
    return frozenset(tags.items())


def write_names(op):
    return [n if isinstance(n, str) else n["name"] for n in op["names"]]


def analyse(ops, initial, mon, base_seq, final, sim_lines, t0, duration):
    res = {}
    reads = [o for o in ops if o["kind"] == "read"]
    writes = [o for o in ops if o["kind"] != "read"]
    ok = [o for o in ops if o.get("status") in HTTP_OK]
    calls = final["requests"] - base_seq
    res["ops"] = len(ops)
    res["ops_answered_2xx"] = len(ok)
    res["reads"] = len(reads)
    res["writes"] = len(writes)
    res["reads_2xx"] = sum(1 for o in reads if o.get("status") == 200)
    res["writes_2xx"] = sum(1 for o in writes if o.get("status") in HTTP_OK)
    res["upstream_calls"] = calls
    res["upstream_calls_by_route"] = {}
    for e in mon.journal.values():
        if e["seq"] > base_seq:
            k = "%s %s" % (e["method"], re.sub(r"/\d+", "/{id}", e["path"]))
            res["upstream_calls_by_route"][k] = res["upstream_calls_by_route"].get(k, 0) + 1
    res["ops_per_call"] = len(ok) / calls if calls else None
    res["upstream_429"] = final["rate_limited"] - mon.samples[0][3]
    res["caller_429_local"] = sum(1 for o in ops if o.get("status") == 429
                                  and not o.get("upstream_status"))
    res["caller_429_local_with_retry_after"] = sum(
        1 for o in ops if o.get("status") == 429 and not o.get("upstream_status")
        and o.get("retry_after"))
    res["caller_429_upstream"] = sum(1 for o in ops if o.get("status") == 429
                                     and o.get("upstream_status"))
    statuses = {}
    for o in ops:
        statuses[str(o.get("status"))] = statuses.get(str(o.get("status")), 0) + 1
    res["statuses"] = statuses
    cache = {}
    for o in reads:
        c = o["cache"].split(";")[1].strip() if o.get("cache") else "none"
        if o.get("cache") and "collapsed" in o["cache"]:
            c = "collapsed"
        cache[c] = cache.get(c, 0) + 1
    res["read_cache_status"] = cache
    res["served_per_min"] = len(ok) * 60.0 / duration
    res["calls_per_min"] = calls * 60.0 / duration
    # the largest number of upstream calls in any 60 s window (from the 0.25 s time line)
    res["max_calls_in_60s"] = max_in_window(mon.samples, 60.0)
    for name, sel in (("read", reads), ("write", writes)):
        lat = [(o["end"] - o["start"]) * 1000 for o in sel if o.get("status") in HTTP_OK]
        res["%s_p50_ms" % name] = percentile(lat, 50)
        res["%s_p99_ms" % name] = percentile(lat, 99)
    res.update(check_stale(ops, initial, mon, base_seq, final, sim_lines))
    return res


def max_in_window(samples, window):
    best = 0
    j = 0
    for i in range(len(samples)):
        while samples[i][0] - samples[j][1] > window:
            j += 1
        best = max(best, samples[i][2] - samples[j][2])
    return best


def check_stale(ops, initial, mon, base_seq, final, sim_lines):
    """Replays each contact's upstream tag writes from the journal (in journal order; the
    simulator's own log says which of them it applied) from the contact's initial tags, giving
    its states S0..Sn. A write hcgw answered is placed at the earliest state that (a) came from
    an upstream call that arrived between the write's start and end (the 0.25 s time line of
    the simulator's counter bounds that), (b) was of its kind and named all its tags, (c) equals
    the customer hcgw answered. A read is placed at the latest state equal to what it answered
    that existed before it ended. The read is stale when that is earlier than a write answered
    before the read began. Where two states are equal the checker takes the reading that is not
    stale, so what it counts is a floor."""
    res = {}
    # Upstream writes, per contact, in journal order, with the status the simulator logged.
    status_by_contact = {}
    for line in sim_lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("msg") != "request" or d.get("method") not in ("PUT", "DELETE"):
            continue
        m = re.match(r"/v1/customers/(\d+)/tags$", d.get("path", ""))
        if m:
            status_by_contact.setdefault(int(m.group(1)), []).append(d.get("status"))
    uw = {}
    for seq in sorted(mon.journal):
        e = mon.journal[seq]
        if seq <= base_seq or e["method"] not in ("PUT", "DELETE"):
            continue
        m = re.match(r"/v1/customers/(\d+)/tags$", e["path"])
        if not m:
            continue
        try:
            body = json.loads(e["body"])
        except ValueError:
            body = {}
        uw.setdefault(int(m.group(1)), []).append((seq, e["method"], body))
    res["journal_first_seq"] = min((s for s in mon.journal if s > base_seq), default=None)
    res["journal_last_seq"] = max(mon.journal, default=None)
    res["journal_complete"] = (mon.gaps == 0 and final["requests"] == max(mon.journal, default=0)
                               and (res["journal_first_seq"] in (None, base_seq + 1)))
    mismatched = 0
    states = {}
    for cid, s0 in initial.items():
        writes = uw.get(cid, [])
        sts = status_by_contact.get(cid, [])
        if len(sts) != len(writes):
            mismatched += 1
            sts = [200] * len(writes)
        st = [(0, s0, None, None)]  # (seq, state, method, names)
        cur = s0
        for (seq, method, body), status in zip(writes, sts):
            if status not in HTTP_OK:
                continue
            cur = apply_write(cur, method, body)
            st.append((seq, cur, method, {t.get("name") if isinstance(t, dict) else t
                                          for t in body.get("tags") or []}))
        states[cid] = st
    res["contacts_log_mismatch"] = mismatched

    samples = mon.samples

    def lower_seq(t):
        """Calls with seq <= this had arrived before t."""
        best = base_seq
        for t_before, t_after, n, _ in samples:
            if t_after <= t:
                best = max(best, n)
        return best

    def upper_seq(t):
        """Calls that arrived before t have seq <= this."""
        for t_before, t_after, n, _ in samples:
            if t_before >= t:
                return n
        return final["requests"]

    # Writes: their place in the history.
    unmatched = 0
    answered = {}   # cid -> [(end, index)]
    for o in ops:
        if o["kind"] == "read" or o.get("status") != 200 or "tags" not in o:
            continue
        cid = o["contact"]
        lo, hi = lower_seq(o["start"]), upper_seq(o["end"])
        method = "PUT" if o["kind"] == "add" else "DELETE"
        names = set(write_names(o))
        key = tag_key(o["tags"])
        idx = None
        for i, (seq, s, m, nm) in enumerate(states[cid]):
            if i and lo < seq <= hi and m == method and names <= nm and s == key:
                idx = i
                break
        if idx is None:
            unmatched += 1
            continue
        o["version"] = idx
        answered.setdefault(cid, []).append((o["end"], idx))
    res["writes_unplaced"] = unmatched

    stale, inconsistent, checked = 0, 0, 0
    examples = []
    for cid in answered:
        answered[cid].sort()
    for o in ops:
        if o["kind"] != "read" or o.get("status") != 200 or "tags" not in o:
            continue
        cid = o["contact"]
        checked += 1
        hi = upper_seq(o["end"])
        key = tag_key(o["tags"])
        cands = [i for i, (seq, s, _, _) in enumerate(states[cid]) if seq <= hi and s == key]
        if not cands:
            inconsistent += 1
            continue
        need = max((idx for end, idx in answered.get(cid, []) if end < o["start"]), default=0)
        if max(cands) < need:
            stale += 1
            if len(examples) < 5:
                examples.append(dict(rid=o["rid"], path=o["path"], replica=o["replica"],
                                     cache=o.get("cache"), version=max(cands), needed=need))
    res["reads_checked"] = checked
    res["stale_reads"] = stale
    res["reads_unplaced"] = inconsistent
    res["stale_examples"] = examples
    return res


def self_test():
    """The checker on a made-up history whose answers are known: one stale read, one write
    whose answer matches no state, the rest consistent. Starts nothing; exit 0 when the checker
    says exactly that (the bench smoke test runs it, so that a checker which cannot fail
    fails)."""
    class Mon:
        pass
    mon = Mon()
    mon.gaps = 0
    # the simulator's counter over time: (sent, answered, requests, rate limited)
    mon.samples = [(0.90, 0.95, 0, 0), (1.20, 1.25, 1, 0), (2.00, 2.05, 1, 0), (3.20, 3.25, 3, 0),
                   (4.00, 4.05, 3, 0)]
    mon.journal = {
        1: dict(seq=1, method="PUT", path="/v1/customers/7/tags", body='{"tags":[{"name":"a"}]}'),
        2: dict(seq=2, method="GET", path="/v1/customers/7", body=""),
        3: dict(seq=3, method="DELETE", path="/v1/customers/7/tags",
                body='{"tags":[{"name":"a"},{"name":"b"}]}'),
    }
    sim_lines = [json.dumps(dict(msg="request", method=m, path=pth, status=200))
                 for m, pth in (("PUT", "/v1/customers/7/tags"), ("GET", "/v1/customers/7"),
                                ("DELETE", "/v1/customers/7/tags"))]
    initial = {7: frozenset({("b", "#000000")})}
    a_tag = {"name": "a", "color": DEFAULT_COLOR}
    b_tag = {"name": "b", "color": "#000000"}

    def op(kind, start, end, tags, names=None, rid="x"):
        return dict(kind=kind, contact=7, start=start, end=end, status=200, tags=tags,
                    names=names, rid=rid, path="/contacts/7", replica=0)
    ops = [
        op("add", 1.00, 1.10, [b_tag, a_tag], ["a"]),             # placed at state 1
        op("read", 1.50, 1.60, [b_tag], rid="stale"),             # misses it: stale
        op("read", 1.50, 1.60, [b_tag, a_tag], rid="fresh"),      # sees it
        op("add", 1.00, 1.10, [a_tag], ["a"]),                    # answer matches no state
        op("remove", 3.00, 3.10, [], ["a"]),                      # a merged removal: state 2
        op("read", 3.50, 3.60, [], rid="after-remove"),           # sees the removal
        op("read", 3.50, 3.60, [b_tag], rid="stale-2"),           # state 0: stale
    ]
    res = check_stale(ops, initial, mon, 0, {"requests": 3, "rate_limited": 0}, sim_lines)
    want = dict(stale_reads=2, reads_checked=4, writes_unplaced=1, reads_unplaced=0,
                contacts_log_mismatch=0, journal_complete=True)
    got = {k: res[k] for k in want}
    ok = got == want and sorted(e["rid"] for e in res["stale_examples"]) == ["stale", "stale-2"]
    print("checker self-test: %s (%s)" % ("ok" if ok else "FAILED", json.dumps(got)))
    return 0 if ok else 1


# ---------------------------------------------------------------- the report

def summary_line(r):
    return ("%s: %d ops (%d answered 2xx), %d upstream calls: %.2f ops/call; caller 429s %d "
            "local + %d upstream; sim 429s %d; stale %d of %d reads checked"
            % (r["layer"], r["ops"], r["ops_answered_2xx"], r["upstream_calls"],
               r["ops_per_call"] or 0, r["caller_429_local"], r["caller_429_upstream"],
               r["upstream_429"], r["stale_reads"], r["reads_checked"]))


def fmt(v, spec="%.2f"):
    return "–" if v is None else spec % v


def report(meta, results):
    a = meta["args"]
    out = ["# hot contacts (bench/hot.py)", ""]
    out.append("Run %s, %d s in all. %d callers, %d contacts (%d take %.0f%% of the traffic), "
               "%.0f%% reads (%.0f%% of them GET /contacts/{id}/tags), the rest tag writes "
               "(half additions, half removals; %.0f%% of them bulk), %d operations a minute "
               "offered for %d s; hcgw-sim at %d calls a minute (+%d ms per call); hcgw quota "
               "%d a minute%s, %d worker(s) per replica."
               % (meta["started"], meta["elapsed_s"], a["callers"], a["contacts"], a["hot"],
                  a["hot_share"] * 100, a["read_share"] * 100, a["tags_read_share"] * 100,
                  a["bulk_share"] * 100, a["rate"], a["duration"], a["upstream_rpm"],
                  a["upstream_latency_ms"], a["quota_rpm"],
                  " shared through Redis" if a["redis"] else
                  (" divided over the replicas" if a["replicas"] > 1 else ""), a["workers"]))
    out.append("")
    out.append("Machine: %s. hcgw: %s." % (meta["machine"], meta["hcgw"]))
    out.append("")
    out.append("| | " + " | ".join("layer %s (%d replica%s%s)" % (
        r["layer"], r["replicas"], "s" if r["replicas"] > 1 else "",
        ", Redis" if r["redis"] else "") for r in results) + " |")
    out.append("|---|" + "---:|" * len(results))
    rows = [
        ("operations issued", lambda r: "%d" % r["ops"]),
        ("answered 2xx (reads / writes)", lambda r: "%d (%d / %d)" % (
            r["ops_answered_2xx"], r["reads_2xx"], r["writes_2xx"])),
        ("served a minute", lambda r: "%.0f" % r["served_per_min"]),
        ("upstream calls (simulator)", lambda r: "%d" % r["upstream_calls"]),
        ("upstream calls by route", lambda r: ", ".join(
            "%s %d" % (k, v) for k, v in sorted(r["upstream_calls_by_route"].items()))),
        ("most upstream calls in a 60 s window", lambda r: "%d" % r["max_calls_in_60s"]),
        ("**operations answered per upstream call**", lambda r: "**%s**" % fmt(
            r["ops_per_call"])),
        ("hcgw's own ratio ((attempts + saved) / attempts)", lambda r: fmt(hcgw_ratio(r))),
        ("calls saved (cache / collapsed / coalesced / not modified)", lambda r: " / ".join(
            "%d" % metric_sum(r["metrics"], "hcgw_upstream_calls_saved_total", 'reason="%s"' % x)
            for x in ("cache", "collapsed", "coalesced", "not_modified"))),
        ("reads: Cache-Status (none: an error answer, or the cache off)", lambda r: ", ".join(
            "%s %d" % (k, v) for k, v in sorted(r["read_cache_status"].items()))),
        ("429 to callers: local (with Retry-After)", lambda r: "%d (%d)" % (
            r["caller_429_local"], r["caller_429_local_with_retry_after"])),
        ("429 to callers: HelpCrunch's passed on", lambda r: "%d" % r["caller_429_upstream"]),
        ("**upstream 429s (simulator)**", lambda r: "**%d**" % r["upstream_429"]),
        ("other answers", lambda r: ", ".join("%s: %d" % (k, v) for k, v in sorted(
            r["statuses"].items()) if k not in ("200", "429")) or "none"),
        ("**stale reads** / reads checked", lambda r: "**%d** / %d" % (
            r["stale_reads"], r["reads_checked"])),
        ("reads or writes the checker could not place", lambda r: "%d / %d" % (
            r["reads_unplaced"], r["writes_unplaced"])),
        ("journal complete", lambda r: "yes" if r["journal_complete"] and not
         r["contacts_log_mismatch"] else "NO (%d gaps, %d contacts)" % (
            r["journal_gaps"], r["contacts_log_mismatch"])),
        ("read p50 / p99 ms", lambda r: "%s / %s" % (fmt(r["read_p50_ms"], "%.1f"),
                                                      fmt(r["read_p99_ms"], "%.1f"))),
        ("write p50 / p99 ms", lambda r: "%s / %s" % (fmt(r["write_p50_ms"], "%.1f"),
                                                       fmt(r["write_p99_ms"], "%.1f"))),
        ("load average before / after", lambda r: "%.2f / %.2f" % (
            r["load_before"][0], r["load_after"][0])),
    ]
    for name, f in rows:
        out.append("| %s | %s |" % (name, " | ".join(f(r) for r in results)))
    out.append("")
    for r in results:
        if r["stale_examples"]:
            out.append("Stale reads, first examples (%s): %s" % (r["layer"], json.dumps(
                r["stale_examples"])))
            out.append("")
    out.append("Operations answered per upstream call = caller operations answered 2xx / "
               "calls the simulator counted (every /v1 call, 429s included) during the run. "
               "Command: `%s`." % meta["args"]["command"])
    return "\n".join(out) + "\n"


def hcgw_ratio(r):
    m = r["metrics"]
    att = metric_sum(m, "hcgw_upstream_attempts_total")
    saved = metric_sum(m, "hcgw_upstream_calls_saved_total")
    return (att + saved) / att if att else None


def portable_args(a):
    d = {k: v for k, v in vars(a).items() if k not in ("build",)}
    d["output"] = B.portable_path(a.output) if a.output else a.output
    argv = [B.portable_path(sys.argv[0])] + sys.argv[1:]
    d["command"] = " ".join(argv)
    return d


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d CPUs (%s), Linux %s" % (os.cpu_count() or 0, model, os.uname().release)


def version(hcgw_bin):
    try:
        r = subprocess.run([hcgw_bin, "--version"], capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--duration", type=int, default=180, help="seconds of load per run")
    ap.add_argument("--layer", choices=("both", "on", "off"), default="both",
                    help="the call layer on (cache at its default ttl, coalesce.tags = true), "
                    "off (cache.ttl_ms = 0, coalesce.tags = false), or both runs")
    ap.add_argument("--callers", type=int, default=50)
    ap.add_argument("--contacts", type=int, default=200)
    ap.add_argument("--hot", type=int, default=20, help="contacts that take --hot-share")
    ap.add_argument("--hot-share", type=float, default=0.8)
    ap.add_argument("--read-share", type=float, default=0.7)
    ap.add_argument("--tags-read-share", type=float, default=0.25,
                    help="of the reads, the share that are GET /contacts/{id}/tags")
    ap.add_argument("--bulk-share", type=float, default=0.4,
                    help="of the writes, the share that are bulk (2 to 4 tags)")
    ap.add_argument("--rate", type=int, default=360,
                    help="operations a minute offered by all callers together (default 360: "
                    "three times the account's 120 calls, the load a layer at 3 operations "
                    "per call would carry)")
    ap.add_argument("--upstream-rpm", type=int, default=120,
                    help="hcgw-sim's calls per one-minute window (HelpCrunch's limit)")
    ap.add_argument("--upstream-latency-ms", type=int, default=0,
                    help="added by hcgw-sim to every call")
    ap.add_argument("--quota-rpm", type=int, default=120,
                    help="hcgw's quota.requests_per_minute (the account's; with --replicas N "
                    "and no --redis each replica gets 1/N of it)")
    ap.add_argument("--ttl-ms", type=int, default=None,
                    help="cache.ttl_ms with the layer on (default: hcgw's default)")
    ap.add_argument("--workers", type=int, default=1, help="server.workers per replica")
    ap.add_argument("--replicas", type=int, default=1, help="hcgw processes (callers spread)")
    ap.add_argument("--redis", action="store_true",
                    help="the replicas share their quota through one redis-server")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build", help="build directory with hcgw and hcgw-sim "
                    "(default build/release)")
    ap.add_argument("--output", default=None,
                    help="markdown report (and .json beside it); default "
                    "bench/results/hot-latest.md, hot-r<N>[-redis]-latest.md with replicas; "
                    "'' for none")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    ap.add_argument("--keep-ops", action="store_true", help="every operation in the .json")
    ap.add_argument("--self-test", action="store_true",
                    help="only check the stale-read checker on a made-up history")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if a.output is None:
        name = "hot-latest.md" if a.replicas == 1 else "hot-r%d%s-latest.md" % (
            a.replicas, "-redis" if a.redis else "")
        a.output = os.path.join(BENCH, "results", name)
    if a.callers < 1 or a.contacts < 1 or a.hot < 1 or a.hot > a.contacts or a.rate < 1 \
            or a.duration < 1 or a.replicas < 1:
        ap.error("callers, contacts, hot (<= contacts), rate, duration and replicas must be "
                 "positive")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, B.on_signal)
    B.raise_nofile(4096)
    rc = 0
    hb = None
    try:
        hb = HotBench(a)
        hb.main()
    except B.Stop as e:
        log("interrupted (%s): stopping everything" % e)
        rc = 130
    except Exception as e:
        log("failed: %s" % e)
        rc = 1
        if os.environ.get("BENCH_DEBUG"):
            raise
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        B.PROCS.stop_all()
        if hb is not None:
            if a.keep:
                log("kept %s" % hb.run_dir)
            else:
                shutil.rmtree(hb.run_dir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

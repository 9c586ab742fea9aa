#!/usr/bin/env python3
"""What gzip costs hcgw and saves its callers: a 100-customer list (GET /contacts?limit=100)
answered identity and gzip-compressed at several zlib levels (compression.level), with hcgw's CPU
time per answer read from /proc/<pid>/task/*/schedstat around a run of sequential keep-alive
requests, and
the answer's size on the wire. Also a customer read (about 860 bytes, under compression.min_bytes)
and the same customer made larger. Not a pass/fail test (docs/performance.md, "Compression").

    cmake --preset release && cmake --build --preset release -j2 --target hcgw hcgw-sim
    python3 bench/compression.py        # two to three minutes; a markdown table on stdout
    python3 bench/compression.py --requests 3000 --repeat 7 --bin-dir build/release

hcgw-sim is the upstream (loopback, no rate limit); the contact cache is off so that every read
is a real upstream call, as it is for lists. Each configuration runs in a fresh hcgw, warmed up
first; the CPU figure is the least of --repeat runs (the one other work on the machine
disturbed least). Only hcgw's CPU is counted (user and
system), not the simulator's nor this client's, so a slow client changes the time a run takes,
not the figure.
"""
import argparse
import gzip
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "bench-key-0123456789"


def start(argv, stream, env=None):
    """A process whose JSON line {"msg":"listening","port":N} on @p stream ("out" or "err")
    says where it listens. Both streams are drained afterwards, so that it never blocks on
    them."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    s = p.stdout if stream == "out" else p.stderr
    port = None
    for line in s:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("msg") == "listening":
            port = obj["port"]
            break
    if port is None:
        p.kill()
        raise SystemExit("%s did not start" % argv[0])
    for f in (p.stdout, p.stderr):
        threading.Thread(target=lambda f=f: [None for _ in f], daemon=True).start()
    return p, port


def cpu_seconds(pid):
    """CPU time of every thread of @p pid so far, to the nanosecond (the first field of each
    /proc/<pid>/task/<tid>/schedstat; /proc/<pid>/stat counts in 10 ms ticks)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return total / 1e9


def minor_faults(pid):
    """Minor page faults of @p pid so far (/proc/<pid>/stat, minflt)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()


def seed(sim_port):
    """96 customers more than the simulator's four, each with tags and custom data, so that the
    list is 100 customers as HelpCrunch would send them (about 46 KB)."""
    rng = random.Random(1)
    conn = http.client.HTTPConnection("127.0.0.1", sim_port, timeout=30)
    h = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
    for i in range(96):
        body = {"name": "Customer %d %s" % (i, rng.choice(["Smith", "Jones", "Müller",
                                                          "Ivanova", "García"])),
                "email": "user%d@example%d.com" % (i, rng.randint(1, 50)),
                "userId": "u-%06d" % i, "company": rng.choice(["Acme", "Globex", None]),
                "phone": "+1555%07d" % rng.randint(0, 9999999),
                "notes": "Customer note %d" % rng.randint(0, 10 ** 9),
                "customData": {"plan": rng.choice(["pro", "free", "team"]),
                               "seats": rng.randint(1, 500)}}
        status, _, out = call(conn, "POST", "/v1/customers", json.dumps(body), h)
        assert status == 201, out
        if i % 3 == 0:
            tags = {"tags": [{"name": "Lead"}, {"name": "t%d" % rng.randint(0, 20)}]}
            call(conn, "PUT", "/v1/customers/%s/tags" % json.loads(out)["id"], json.dumps(tags), h)
    body = {"name": "Big Customer", "notes": "A long note, about an account. " * 60}
    status, _, out = call(conn, "POST", "/v1/customers", json.dumps(body), h)
    conn.close()
    return json.loads(out)["id"]


def measure(bin_dir, sim_port, compression, target, accept, requests, repeat):
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    groups = {"listen": {"address": "127.0.0.1", "port": 0},
              "upstream": {"base_url": "http://127.0.0.1:%d/v1" % sim_port},
              "quota": {"requests_per_minute": 0}, "cache": {"ttl_ms": 0},
              "log": {"level": "warn"}, "compression": compression}
    for g, kv in groups.items():
        conf.write("%s = { %s };\n" % (g, " ".join(
            "%s = %s;" % (k, json.dumps(v) if isinstance(v, str) else str(v).lower()
                          if isinstance(v, bool) else v) for k, v in kv.items())))
    conf.close()
    env = dict(os.environ, HCGW_API_KEY=KEY)
    gw, port = start([os.path.join(bin_dir, "hcgw"), "-c", conf.name], "err", env)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Accept-Encoding": "gzip"} if accept else {}
        for _ in range(200):  # warm-up: connections, buffers, the deflater
            status, h, body = call(conn, "GET", target, headers=headers)
            assert status == 200, body
        runs = []
        faults = []
        for _ in range(repeat):
            c0 = cpu_seconds(gw.pid)
            f0 = minor_faults(gw.pid)
            for _ in range(requests):
                call(conn, "GET", target, headers=headers)
            runs.append((cpu_seconds(gw.pid) - c0) / requests * 1e6)
            faults.append((minor_faults(gw.pid) - f0) / requests)
        size = len(body)
        coded = h.get("content-encoding")
        plain = len(gzip.decompress(body)) if coded == "gzip" else size
        conn.close()
    finally:
        gw.terminate()
        gw.wait(30)
        os.unlink(conf.name)
    return min(runs), min(faults), size, plain, coded


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(HERE, "..", "build", "release"))
    ap.add_argument("--requests", type=int, default=1000, help="answers per run")
    ap.add_argument("--repeat", type=int, default=5, help="runs per configuration")
    args = ap.parse_args()
    sim, sim_port = start([os.path.join(args.bin_dir, "hcgw-sim"), "--port", "0", "--key", KEY,
                           "--rate-limit", "0", "--quiet"], "out")
    try:
        big = seed(sim_port)
        rows = []
        for name, target in (("list of 100", "/contacts?limit=100"),
                             ("one customer", "/contacts/1568834"),
                             ("a larger customer", "/contacts/%d" % big)):
            base = None
            for label, compression, accept in (
                    ("identity", {"gzip": True}, False),
                    ("gzip level 1 (default)", {"level": 1}, True),
                    ("gzip level 3", {"level": 3}, True),
                    ("gzip level 6", {"level": 6}, True),
                    ("gzip level 9", {"level": 9}, True)):
                us, faults, size, plain, coded = measure(args.bin_dir, sim_port, compression,
                                                         target, accept, args.requests,
                                                         args.repeat)
                base = us if base is None else base
                rows.append((name, label, plain, size, coded or "-", us, us - base, faults))
                if coded is None and accept:
                    break  # under min_bytes: every level answers the same
        print("| answer | hcgw | body | on the wire | Content-Encoding | hcgw CPU per "
              "answer | over identity | page faults per answer |")
        print("|---|---|---:|---:|---|---:|---:|---:|")
        for name, label, plain, size, coded, us, extra, faults in rows:
            print("| %s | %s | %d B | %d B (%.0f%%) | %s | %.1f µs | %+.1f µs | %.1f |"
                  % (name, label, plain, size, 100.0 * size / plain, coded, us, extra, faults))
    finally:
        sim.terminate()
        sim.wait(30)


if __name__ == "__main__":
    sys.exit(main())

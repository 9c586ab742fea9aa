#!/usr/bin/env python3
"""
Issue 14, HTTP/2 to the upstream: hcgw with upstream.http_version "1.1" against "2", and nginx
as the proxy, in front of an nginx upstream that serves HTTP/2 over TLS (upstream-h2.nginx.conf:
h2 and http/1.1 offered by ALPN, so each client speaks what it asks for). nginx's proxy module
speaks only HTTP/1.x to an upstream (proxy_http_version 1.0 or 1.1): its line is the HTTP/1.1
over TLS reference.

    python3 bench/h2.py               # the phase alone: ~5 min; results/h2-latest.md (+ .json)
    python3 bench/h2.py --quick       # 2 s runs, one rep, c=100, fast only, no callgrind
    bench/run.sh --phases h2          # the same phase inside bench.py's run and report

For each upstream (fast, slow 50 ms) and c in {100, 1000}, one worker, the proxy pinned to its
own CPU: REPS alternating runs of nginx, hcgw "1.1" and hcgw "2" (the order rotates), medians
of requests/s, p50/p99, the proxy's CPU per request, its peak RSS, the upstream connections it
holds mid-run (its established sockets to the upstream's port, read from /proc) and the
connections the upstream accepted during the run's steady part (stub_status). Then, unless
--no-callgrind or valgrind is missing, callgrind instructions per request of hcgw "1.1" and "2"
over TLS (fast upstream, c=10), and strace -c system calls per request (c=100).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import PROCS, log, render, tree_pids, wait_ready  # noqa: E402

TARGETS = ("nginx", "hcgw-1.1", "hcgw-2")


# ---------------------------------------------------------------- processes

def start_upstream(b):
    """The HTTP/2 upstream (both listeners in one nginx, pinned to the load CPU), checked:
    curl must get HTTP/2 from each listener."""
    if not os.path.exists(os.path.join(b.run, "tls")):
        bench.make_tls(b.run)
    b.h2_fast, b.h2_slow, b.h2_status = bench.free_ports(3)
    vals = dict(RUN=b.run, CUSTOMER=b.customer, H2_FAST_PORT=b.h2_fast, H2_SLOW_PORT=b.h2_slow,
                H2_STATUS_PORT=b.h2_status, SLOW_SECONDS="%.3f" % (bench.SLOW_MS / 1000.0))
    conf = render("upstream-h2.nginx.conf", os.path.join(b.run, "upstream-h2.conf"), vals)
    load, _ = b.layout(1)
    p = PROCS.start([b.nginx_bin, "-p", b.run, "-c", conf, "-g", "daemon off;"], cpus=load,
                    name="upstream-h2",
                    stderr=open(os.path.join(b.run, "upstream-h2.stderr"), "w"))
    wait_ready(b.h2_status, "/status", proc=p)
    for port in (b.h2_fast, b.h2_slow):
        r = subprocess.run(["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                            "--cacert", os.path.join(b.run, "tls", "ca.crt"),
                            "https://127.0.0.1:%d/v1/customers/1" % port],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0 or r.stdout.strip() != "2":
            raise RuntimeError("HTTP/2 upstream on %d: curl saw HTTP/%s %s"
                               % (port, r.stdout.strip(), r.stderr.strip()))
    log("HTTP/2 upstream: fast on %d, slow on %d (TLS, h2 and http/1.1 by ALPN)"
        % (b.h2_fast, b.h2_slow))
    return p


def hcgw_conf(b, version, up_port, port, tag):
    ca = os.path.join(b.run, "tls", "ca.crt")
    # The ca_file placeholder line carries http_version too: the template stays as it is.
    return render("hcgw.bench.conf", os.path.join(b.run, "%s.conf" % tag),
                  dict(HCGW_PORT=port, WORKERS=1, UP_SCHEME="https", UP_PORT=up_port,
                       API_KEY=bench.API_KEY, POOL=bench.POOL,
                       CA_FILE_LINE='ca_file = "%s"; http_version = "%s";' % (ca, version),
                       CACHE_LINE=""))


def start_hcgw(b, version, up_port, port, cpus):
    tag = "hcgw-h2-" + version
    conf = hcgw_conf(b, version, up_port, port, tag)
    logf = os.path.join(b.run, "%s.log" % tag)
    p = PROCS.start([b.hcgw_bin, "-c", conf], cpus=cpus, name=tag, stderr=open(logf, "a"))
    wait_ready(port, proc=p)
    p.bench_log, p.bench_port = logf, port
    return p


def start_nginx(b, up_port, port, cpus):
    run = os.path.join(b.run, "nginx-h2")
    os.makedirs(run, exist_ok=True)
    if not os.path.exists(os.path.join(run, "tls")):
        os.symlink(os.path.join(b.run, "tls"), os.path.join(run, "tls"))
    conf = render("proxy.nginx.conf", os.path.join(run, "proxy.conf"),
                  dict(RUN=run, WORKERS=1, PROXY_PORT=port, UP_SCHEME="https",
                       UP_HOST="127.0.0.1", UP_PORT=up_port, POOL=bench.POOL,
                       API_KEY=bench.API_KEY, SSL_VERIFY="on"))
    p = PROCS.start([b.nginx_bin, "-p", run, "-c", conf, "-g", "daemon off;"], cpus=cpus,
                    name="nginx-h2", stderr=open(os.path.join(run, "stderr"), "w"))
    wait_ready(port, proc=p)
    p.bench_log, p.bench_port = os.path.join(run, "proxy.access.log"), port
    for _ in range(200):
        if len(tree_pids(p.pid)) == 2:
            break
        time.sleep(0.01)
    return p


# ---------------------------------------------------------------- one run

def sockets_to(pids, port):
    """Established TCP connections that the processes @p pids hold to 127.0.0.1:@p port."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            rem, st, inode = parts[2], parts[3], parts[9]
            if st == "01" and int(rem.split(":")[1], 16) == port and inode in inodes:
                n += 1
    return n


def measure(b, target, proc, up_port, c, seconds, load, extra):
    """One wrk run against a proxy: the figures of bench.Bench.measure, plus the upstream
    connections the proxy holds at mid-run."""
    if time.monotonic() + seconds > b.deadline:
        raise bench.OutOfTime()
    pids = tree_pids(proc.pid)
    bench.reset_hwm(pids)
    ticks0 = bench.cpu_ticks_by_pid(pids)
    window = {}

    def sample(_):
        t0 = time.monotonic()
        a, z = max(0.3 * seconds, 0.3), seconds - min(0.5, 0.2 * seconds)
        time.sleep(a)
        window["a"] = bench.stub_counts(b.h2_status)
        time.sleep(max(0.0, seconds / 2.0 - (time.monotonic() - t0)))
        window["held"] = sockets_to(tree_pids(proc.pid), up_port)
        time.sleep(max(0.0, z - (time.monotonic() - t0)))
        window["b"] = bench.stub_counts(b.h2_status)

    w = b.wrk(proc.bench_port, c, seconds, load, during=sample)
    ticks1 = bench.cpu_ticks_by_pid(pids)
    secs = w["duration_us"] / 1e6
    row = dict(phase="h2", target=target, c=c, workers=1, **extra)
    row["requests"] = w["requests"]
    row["rps"] = w["requests"] / secs if secs > 0 else 0.0
    row["p50_ms"] = w["p50_us"] / 1000.0
    row["p99_ms"] = w["p99_us"] / 1000.0
    row["err_status"] = w["err_status"]
    row["err_socket"] = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"]
    row["errors"] = row["err_status"] + row["err_socket"]
    (a_acc, a_req), (z_acc, z_req) = window["a"], window["b"]
    row["up_conns"] = z_acc - a_acc - 1  # the stub_status read in between is one
    row["up_reqs"] = z_req - a_req - 1
    row["up_held"] = window["held"]
    ticks = sum(t - ticks0[p] for p, t in ticks1.items() if p in ticks0)
    row["cpu_us_per_req"] = ticks * 1e6 / bench.HZ / max(1, w["requests"])
    row["peak_rss_kib"] = bench.status_kib(pids, "VmHWM")
    if target.startswith("hcgw"):
        row["non200"] = non200(proc.bench_log)
    try:
        os.truncate(proc.bench_log, 0)
    except OSError:
        pass
    return row


def non200(path):
    """{"status code": count} of hcgw's access lines that were not 200 (errors to explain)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if '"msg":"access"' not in line or '"status":200,' in line:
                    continue
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                k = "%s %s" % (o.get("status"), o.get("code", ""))
                out[k] = out.get(k, 0) + 1
    except OSError:
        pass
    return out


def hcgw_counter(port, name):
    st, body = bench.http_get(port, "/metrics")
    total = 0.0
    for line in (body or b"").decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- the phase

def phase_h2(b):
    a = b.args
    load, proxy = b.layout(1)
    up = start_upstream(b)
    b.extra["h2"] = {"callgrind": {}, "strace": {}, "versions": {}}
    try:
        for kind in a.h2_upstreams:
            up_port = b.h2_fast if kind == "fast" else b.h2_slow
            log("h2: %s upstream over TLS; load on CPU %s, proxies on CPU %s" % (kind, load, proxy))
            procs = {"nginx": start_nginx(b, up_port, b.p_nginx, proxy),
                     "hcgw-1.1": start_hcgw(b, "1.1", up_port, b.p_hcgw, proxy),
                     "hcgw-2": start_hcgw(b, "2", up_port, b.p_hcgw2, proxy)}
            try:
                for c in a.h2_conns:
                    for t in TARGETS:
                        measure(b, t, procs[t], up_port, c, a.warmup, load, {"upstream": kind})
                    for rep in range(a.reps):
                        order = TARGETS[rep % 3:] + TARGETS[:rep % 3]
                        for t in order:
                            row = measure(b, t, procs[t], up_port, c, a.duration, load,
                                          {"upstream": kind, "rep": rep})
                            b.rows.append(row)
                            log("  h2 %s c=%d %-8s rep %d: %8.0f req/s p99 %7.2f ms err %d cpu "
                                "%.1f us/req rss %d KiB conns held %d new %d %s"
                                % (kind, c, t, rep, row["rps"], row["p99_ms"], row["errors"],
                                   row["cpu_us_per_req"], row["peak_rss_kib"], row["up_held"],
                                   row["up_conns"], row.get("non200") or ""))
                # What each hcgw says it spoke (its own counter, by version).
                for t in ("hcgw-1.1", "hcgw-2"):
                    port = procs[t].bench_port
                    b.extra["h2"]["versions"]["%s %s" % (t, kind)] = {
                        v: hcgw_counter(port, 'hcgw_upstream_answers_total{http_version="%s"}' % v)
                        for v in ("1.1", "2")}
                    b.extra["h2"]["versions"]["%s %s" % (t, kind)]["connections"] = \
                        hcgw_counter(port, "hcgw_upstream_connections_total")
            finally:
                for p in procs.values():
                    PROCS.stop(p)
        if a.h2_callgrind and shutil.which("valgrind"):
            for version in ("1.1", "2"):
                b.extra["h2"]["callgrind"][version] = callgrind(b, version, a.h2_cg_seconds)
        if a.h2_strace and shutil.which("strace"):
            for version in ("1.1", "2"):
                b.extra["h2"]["strace"][version] = strace(b, version, 3)
    finally:
        PROCS.stop(up)


def profile_module():
    """bench/profile.py (by path: the standard library has a module named profile too)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "hcgw_bench_profile", os.path.join(bench.BENCH, "profile.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def callgrind(b, version, seconds):
    """Instructions per request of hcgw with @p version over TLS, fast upstream, c=10."""
    prof = profile_module()
    tag = "cg-h2-" + version
    conf = hcgw_conf(b, version, b.h2_fast, b.p_hcgw, tag)
    cg = os.path.join(b.run, "%s.cg" % tag)
    p = PROCS.start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                     "--callgrind-out-file=" + cg, b.hcgw_bin, "-c", conf],
                    stderr=open(os.path.join(b.run, "%s.log" % tag), "w"), name=tag)
    try:
        wait_ready(b.p_hcgw, timeout=60, proc=p)
        b.wrk(b.p_hcgw, 10, 1, "0-%d" % (b.ncpu - 1))  # connections and TLS sessions made
        time.sleep(0.5)
        before = prof.count_hcgw_requests(b.p_hcgw)
        prof.cg_control(p.pid, "-i", "on")
        b.wrk(b.p_hcgw, 10, seconds, "0-%d" % (b.ncpu - 1))
        time.sleep(1.0)
        prof.cg_control(p.pid, "-i", "off")
        prof.cg_control(p.pid, "-d")
        n = prof.count_hcgw_requests(b.p_hcgw) - before
    finally:
        PROCS.stop(p, wait=10)
    total, per_obj, incl = prof.annotate(cg + ".1", n)
    log("callgrind hcgw http_version %s over TLS: %d requests, %.0f Ir/request"
        % (version, n, total / max(1, n)))
    return dict(requests=n, total=total, per_obj=dict(per_obj),
                incl=[list(x) for x in incl[:15]])


def strace(b, version, seconds):
    """System calls per request of hcgw with @p version over TLS, fast upstream, c=100."""
    prof = profile_module()
    load, proxy = b.layout(1)
    p = start_hcgw(b, version, b.h2_fast, b.p_hcgw, proxy)
    out = os.path.join(b.run, "strace-h2-%s.txt" % version)
    try:
        b.wrk(p.bench_port, 100, 1, load)
        st = PROCS.start(["strace", "-c", "-f", "-o", out, "-p", str(p.pid)], name="strace")
        time.sleep(0.5)
        before = prof.count_hcgw_requests(p.bench_port)
        b.wrk(p.bench_port, 100, seconds, load)
        PROCS.stop(st, sig=2, wait=10)
        n = prof.count_hcgw_requests(p.bench_port) - before
    finally:
        PROCS.stop(p)
    calls = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    log("strace hcgw http_version %s: %.1f system calls/request"
        % (version, sum(calls.values()) / max(1, n)))
    return dict(requests=n, calls=calls)


# ---------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def report_section(b):
    """The markdown of the h2 phase ("" when it did not run)."""
    rows = [r for r in b.rows if r.get("phase") == "h2"]
    if not rows:
        return ""
    a = b.args
    upstreams = [k for k in ("fast", "slow") if any(r["upstream"] == k for r in rows)]
    conns = sorted({r["c"] for r in rows})
    L = []
    w = L.append
    w("## HTTP/2 to the upstream (phase h2)")
    w("")
    w("Upstream: nginx over TLS offering h2 and http/1.1 (bench/upstream-h2.nginx.conf). One "
      "worker, the proxy on CPU %s, the load on CPU %s; %d run(s) of %d s per cell, the order of "
      "the three proxies rotating; medians. nginx's proxy module speaks HTTP/1.1 to an upstream "
      "(it has no HTTP/2 client): its line is HTTP/1.1 over TLS. `conns held` = the proxy's "
      "established connections to the upstream at mid-run; `new conns` = connections the "
      "upstream accepted in the steady part of the run." % (b.layout(1)[1], b.layout(1)[0],
                                                            len({r["rep"] for r in rows}),
                                                            a.duration))
    w("")
    w("| upstream | c | proxy | req/s | p50 ms | p99 ms | errors | CPU µs/req | peak RSS MiB "
      "| conns held | new conns |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in upstreams:
        for c in conns:
            for t in TARGETS:
                rs = [r for r in rows if r["upstream"] == kind and r["c"] == c
                      and r["target"] == t]
                if not rs:
                    continue
                w("| %s | %d | %s | %.0f | %.2f | %.2f | %d | %.1f | %.1f | %.0f | %.0f |" % (
                    kind, c, t, med(r["rps"] for r in rs), med(r["p50_ms"] for r in rs),
                    med(r["p99_ms"] for r in rs), sum(r["errors"] for r in rs),
                    med(r["cpu_us_per_req"] for r in rs),
                    med(r["peak_rss_kib"] for r in rs) / 1024.0,
                    med(r["up_held"] for r in rs), med(r["up_conns"] for r in rs)))
    w("")
    w("Ratios, the median of the per-run ratios of the same rotation:")
    w("")
    w("| upstream | c | req/s 2/1.1 | CPU/req 2/1.1 | CPU/req 1.1/nginx | CPU/req 2/nginx |")
    w("|---|---:|---:|---:|---:|---:|")
    for kind in upstreams:
        for c in conns:
            by = {}
            for r in rows:
                if r["upstream"] == kind and r["c"] == c:
                    by.setdefault(r["rep"], {})[r["target"]] = r

            def ratio(key, num, den):
                xs = [d[num][key] / d[den][key] for d in by.values()
                      if num in d and den in d and d[den][key]]
                return med(xs)
            vals = (ratio("rps", "hcgw-2", "hcgw-1.1"),
                    ratio("cpu_us_per_req", "hcgw-2", "hcgw-1.1"),
                    ratio("cpu_us_per_req", "hcgw-1.1", "nginx"),
                    ratio("cpu_us_per_req", "hcgw-2", "nginx"))
            if all(v is None for v in vals):
                continue
            w("| %s | %d | %s |" % (kind, c, " | ".join("–" if v is None else "%.2f" % v
                                                         for v in vals)))
    w("")
    h2 = b.extra.get("h2", {})
    if h2.get("versions"):
        w("What each hcgw counted (`hcgw_upstream_answers_total` by `http_version`, "
          "`hcgw_upstream_connections_total`) over the whole phase, warm-ups included:")
        w("")
        w("| hcgw, upstream | answers HTTP/1.1 | answers HTTP/2 | connections opened |")
        w("|---|---:|---:|---:|")
        for k, v in h2["versions"].items():
            w("| %s | %.0f | %.0f | %.0f |" % (k, v["1.1"], v["2"], v["connections"]))
        w("")
    cg = h2.get("callgrind") or {}
    if cg:
        w("callgrind, hcgw over TLS, fast upstream, c=10 (user space, instructions per request):")
        w("")
        objs = set()
        for v in cg.values():
            objs |= set(v["per_obj"])
        w("| object | 1.1 Ir/req | 2 Ir/req |")
        w("|---|---:|---:|")
        per = []
        for o in objs:
            x = [cg[v]["per_obj"].get(o, 0) / max(1, cg[v]["requests"]) if v in cg else 0
                 for v in ("1.1", "2")]
            per.append((max(x), o, x))
        for _, o, x in sorted(per, reverse=True):
            if max(x) >= 500:
                w("| %s | %.0f | %.0f |" % (o, x[0], x[1]))
        tot = [cg[v]["total"] / max(1, cg[v]["requests"]) if v in cg else 0 for v in ("1.1", "2")]
        w("| **total** | **%.0f** | **%.0f** |" % tuple(tot))
        w("")
    st = h2.get("strace") or {}
    if st:
        w("strace -c, hcgw over TLS, fast upstream, c=100 (system calls per request):")
        w("")
        names = set()
        for v in st.values():
            names |= set(v["calls"])
        w("| system call | 1.1 /req | 2 /req |")
        w("|---|---:|---:|")
        tot = [0.0, 0.0]
        per = []
        for nm in names:
            x = [st[v]["calls"].get(nm, 0) / max(1, st[v]["requests"]) if v in st else 0
                 for v in ("1.1", "2")]
            tot = [tot[0] + x[0], tot[1] + x[1]]
            per.append((max(x), nm, x))
        for _, nm, x in sorted(per, reverse=True):
            if max(x) >= 0.05:
                w("| %s | %.2f | %.2f |" % (nm, x[0], x[1]))
        w("| **total** | **%.2f** | **%.2f** |" % tuple(tot))
        w("")
    return "\n".join(L) + "\n"


def add_arguments(ap):
    """The phase's options, for bench.py's parser and this file's own."""
    ap.add_argument("--h2-conns", type=int, nargs="+", default=[100, 1000],
                    help="concurrencies of the h2 phase")
    ap.add_argument("--h2-upstreams", nargs="+", default=["fast", "slow"],
                    choices=["fast", "slow"], help="upstreams of the h2 phase")
    ap.add_argument("--no-callgrind", dest="h2_callgrind", action="store_false",
                    help="h2 phase: skip callgrind")
    ap.add_argument("--no-strace", dest="h2_strace", action="store_false",
                    help="h2 phase: skip strace -c")
    ap.add_argument("--h2-cg-seconds", type=int, default=8)


# ---------------------------------------------------------------- alone

def main():
    ap = argparse.ArgumentParser(description="HTTP/2 to the upstream: hcgw 1.1 vs 2 vs nginx")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-minutes", type=int, default=15)
    ap.add_argument("--hcgw", metavar="PATH")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", default=os.path.join(bench.BENCH, "results", "h2-latest.md"))
    add_arguments(ap)
    a = ap.parse_args()
    if a.quick:
        a.duration, a.reps, a.h2_conns, a.h2_upstreams = 2, 1, [100], ["fast"]
        a.h2_callgrind = a.h2_strace = False
    a.cachehit_ids = 1000
    for s in (bench.signal.SIGINT, bench.signal.SIGTERM, bench.signal.SIGHUP):
        bench.signal.signal(s, bench.on_signal)
    bench.raise_nofile()
    b = bench.Bench(a)
    rc = 0
    try:
        b.deadline = time.monotonic() + a.max_minutes * 60
        load0 = os.getloadavg()
        t0 = time.monotonic()
        try:
            phase_h2(b)
        except bench.OutOfTime:
            log("time budget spent: the report has what was measured")
        from report import versions
        v = versions(b)
        head = ("# HTTP/2 to the upstream: hcgw 1.1 / 2 and nginx (bench/h2.py)\n\n"
                "Run %s, %.0f s; load average %.2f before, %.2f after (1 min); %d CPUs; "
                "hcgw: %s; nginx %s; %s.\n\n"
                % (time.strftime("%Y-%m-%d %H:%M %Z"), time.monotonic() - t0, load0[0],
                   os.getloadavg()[0], b.ncpu, v["hcgw"], v["nginx"], v["curl"]))
        text = head + report_section(b)
        print(text)
        if a.output:
            with open(a.output, "w") as f:
                f.write(text)
            with open(os.path.splitext(a.output)[0] + ".json", "w") as f:
                json.dump({"rows": b.rows, "extra": b.extra}, f, indent=1, default=str)
            log("wrote %s" % a.output)
    except bench.Stop as e:
        log("interrupted (%s): stopping everything" % e)
        rc = 130
    except Exception as e:
        log("failed: %s" % e)
        rc = 1
        if os.environ.get("BENCH_DEBUG"):
            raise
    finally:
        for s in (bench.signal.SIGINT, bench.signal.SIGTERM, bench.signal.SIGHUP):
            bench.signal.signal(s, bench.signal.SIG_IGN)
        PROCS.stop_all()
        if not a.keep:
            shutil.rmtree(b.run, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

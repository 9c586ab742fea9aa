"""
The markdown report of a bench/bench.py run: the machine, the medians of every cell, the
hcgw/nginx ratios (each the median of the per-run ratios of adjacent, alternating runs), the
other measurements, and the issue's targets marked met or missed.
"""
import os
import platform
import re
import shutil
import statistics
import subprocess
import time

MIB = 1024.0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec="%.0f", none="–"):
    return none if x is None else spec % x


def cmd_out(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


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
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.1f GiB" % (int(f.readline().split()[1]) / 1024.0 / 1024.0)
    except OSError:
        pass
    return model, mem


def versions(b):
    hv = cmd_out([b.hcgw_bin, "--version"]).splitlines()
    nv = cmd_out([b.nginx_bin, "-v"])
    wv = cmd_out(["wrk", "-v"]).splitlines()
    cv = cmd_out(["curl", "--version"]).splitlines()
    return {
        "hcgw": " / ".join(hv[:3]) if hv else "?",
        "nginx": nv.replace("nginx version: ", ""),
        "wrk": wv[0] if wv else "?",
        "curl": cv[0] if cv else "?",
    }


def pair_ratios(b, workers, upstream, c, key, phase=None):
    """Median over runs of hcgw/nginx for one metric, pairing the runs of the same rep (they
    ran back to back, in alternating order)."""
    ng = {r["rep"]: r for r in b.cell(workers, upstream, c, "nginx", phase)}
    hc = {r["rep"]: r for r in b.cell(workers, upstream, c, "hcgw", phase)}
    ratios = []
    for rep in sorted(set(ng) & set(hc)):
        n, h = ng[rep].get(key), hc[rep].get(key)
        if n and h is not None:
            ratios.append(h / n)
    return med(ratios)


def summary(b, workers, upstream, c, target, phase=None):
    rows = b.cell(workers, upstream, c, target, phase)
    if not rows:
        return None
    return dict(
        n=len(rows),
        rps=med([r["rps"] for r in rows]),
        p50=med([r["p50_ms"] for r in rows]),
        p99=med([r["p99_ms"] for r in rows]),
        errors=sum(r["errors"] for r in rows),
        err_status=sum(r["err_status"] for r in rows),
        err_socket=sum(r["err_socket"] for r in rows),
        requests=sum(r["requests"] for r in rows),
        cpu=med([r.get("cpu_us_per_req") for r in rows]),
        rss=max([r.get("peak_rss_kib") or 0 for r in rows]) / MIB if target != "direct" else None,
        conns=med([r["up_conns_per_10k"] for r in rows]) if target != "direct" else None,
        conns_max=max(r["up_conns_per_10k"] for r in rows) if target != "direct" else None,
    )


def make_report(b):
    a = b.args
    model, mem = machine()
    v = versions(b)
    L = []
    w = L.append
    w("# hcgw benchmark results")
    w("")
    w("Run %s, %.0f s in all (bench/run.sh; raw runs in the .json beside this file)." %
      (b.finished_at, b.elapsed_s))
    w("")
    if getattr(b, "out_of_time", False):
        w("**The time budget (--max-minutes) ran out: the cells missing below were not run.**")
        w("")
    w("| machine | |")
    w("|---|---|")
    w("| CPUs (nproc) | %d |" % b.ncpu)
    w("| CPU model | %s |" % model)
    w("| memory | %s |" % mem)
    w("| kernel | %s |" % platform.release())
    w("| load average before / after | %.2f / %.2f (1 min) |" % (b.load_before[0], b.load_after[0]))
    w("| hcgw | %s |" % v["hcgw"])
    w("| nginx | %s |" % v["nginx"])
    w("| wrk | %s |" % v["wrk"])
    w("| libcurl (curl tool) | %s |" % v["curl"])
    w("")
    lay1, lay2 = b.layout(1), b.layout(2)
    matrix = "matrix" in getattr(a, "phases", ["matrix"])
    if matrix:
        method_and_matrix(b, w, a, lay1, lay2)
    cachehit_section(b, w, a, lay1)
    __import__("local").report_section(b, w, a)
    w(__import__("h2").report_section(b))  # the h2 phase, when it ran (bench/h2.py)
    rest(b, w, a)
    return "\n".join(L) + "\n"


def method_and_matrix(b, w, a, lay1, lay2):
    w("Method: each cell is %d run(s) of %d s after a %d s warm-up, medians quoted; nginx and "
      "hcgw alternate (their order flips every run) and the direct runs sit between them. "
      "Load: wrk -t<load CPUs> -c<c> with bench/delete_tag.lua (4096 distinct ids and tag "
      "names). CPU layout: with one worker the load (wrk and the upstream nginx) is pinned to "
      "CPU %s and the proxy to CPU %s (sched_setaffinity, as taskset does); with two workers %s. "
      "CPU µs/req = the proxy's utime+stime (all its processes) over the run / requests. "
      "Peak RSS = VmHWM summed over the proxy's processes (nginx: master + workers), reset "
      "before each run (clear_refs). New upstream conns = connections the upstream accepted "
      "per 10,000 requests it served (its stub_status), from 30%% of the run to 0.5 s before "
      "its end (at the start of a run the proxies reopen the connections that were cut when "
      "the previous run's wrk hung up on requests in flight). Pool: hcgw "
      "upstream.max_connections = %d, nginx keepalive %d, both per worker. Both proxies write "
      "an access log to a file (hcgw: log.level info, which is an access line and an audit "
      "line per request to this route)."
      % (a.reps, a.duration, a.warmup, lay1[0], lay1[1],
         "the load on CPU %s and the proxy on CPU %s" % lay2 if lay2[0] != lay2[1] else
         "everything floats over CPUs %s (too few CPUs to separate them: these cells measure "
         "the whole machine)" % lay2[0], 1024, 1024))
    w("")

    # ---- the matrix
    w("## Throughput, latency, CPU and memory")
    w("")
    w("| workers | upstream | c | target | req/s | p50 ms | p99 ms | errors (non-2xx + socket) "
      "| CPU µs/req | peak RSS MiB | new upstream conns /10k req |")
    w("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for workers in a.workers:
        for upstream in a.upstreams:
            for c in a.conns:
                for target in ("direct", "nginx", "hcgw"):
                    s = summary(b, workers, upstream, c, target)
                    if s is None:
                        continue
                    w("| %d | %s | %d | %s | %s | %s | %s | %d + %d | %s | %s | %s |" % (
                        workers, upstream, c, target, fmt(s["rps"]), fmt(s["p50"], "%.2f"),
                        fmt(s["p99"], "%.2f"), s["err_status"], s["err_socket"],
                        fmt(s["cpu"], "%.1f"), fmt(s["rss"], "%.1f"), fmt(s["conns"], "%.1f")))
    w("")
    w("## hcgw / nginx, same run")
    w("")
    w("Each ratio is the median over runs of hcgw's figure over nginx's in the adjacent run. "
      "Throughput: higher is better for hcgw; CPU and RSS: lower is better. Added p99 = the "
      "proxy's p99 minus the direct p99 (medians).")
    w("")
    w("| workers | upstream | c | req/s hcgw/nginx | CPU/req hcgw/nginx | peak RSS hcgw/nginx "
      "| added p99 nginx ms | added p99 hcgw ms | nginx req/s / direct | hcgw req/s / direct |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers in a.workers:
        for upstream in a.upstreams:
            for c in a.conns:
                d = summary(b, workers, upstream, c, "direct")
                n = summary(b, workers, upstream, c, "nginx")
                h = summary(b, workers, upstream, c, "hcgw")
                if not (d and n and h):
                    continue
                w("| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                    workers, upstream, c,
                    fmt(pair_ratios(b, workers, upstream, c, "rps"), "%.2f"),
                    fmt(pair_ratios(b, workers, upstream, c, "cpu_us_per_req"), "%.2f"),
                    fmt(pair_ratios(b, workers, upstream, c, "peak_rss_kib"), "%.2f"),
                    fmt(n["p99"] - d["p99"], "%+.2f"), fmt(h["p99"] - d["p99"], "%+.2f"),
                    fmt(n["rps"] / d["rps"] if d["rps"] else None, "%.3f"),
                    fmt(h["rps"] / d["rps"] if d["rps"] else None, "%.3f")))
    w("")


def cachehit_section(b, w, a, lay1):
    rows = [r for r in b.rows if r.get("phase") == "cachehit"]
    if not rows:
        return
    w("## The cache-hit path: hcgw's contact cache against nginx's proxy_cache")
    w("")
    w("GET /contacts/{id} over %d ids (bench/get_contact.lua), each read once through each "
      "proxy before the runs so that every measured request is a hit: hcgw with "
      "cache.ttl_ms = 3600000 (bench/hcgw.bench.conf), nginx with proxy_cache, "
      "proxy_cache_valid 200 60m and proxy_cache_lock (bench/proxy-cache.nginx.conf). One "
      "worker each, the load (wrk, the upstream) on CPU %s and the proxy on CPU %s; %d run(s) of "
      "%d s after a %d s warm-up per concurrency, nginx and hcgw alternating; medians. Upstream "
      "calls = requests the upstream served from 30%% of a run to 0.5 s before its end (0: all "
      "hits)." % (a.cachehit_ids, lay1[0], lay1[1], a.reps, a.duration, a.warmup))
    w("")
    w("| c | target | req/s | p50 ms | p99 ms | errors | CPU µs/req | peak RSS MiB | upstream "
      "calls |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in a.cachehit_conns:
        for t in ("nginx", "hcgw"):
            s = summary(b, 1, "fast", c, t, "cachehit")
            if s is None:
                continue
            up = sum(r["up_reqs"] for r in b.cell(1, "fast", c, t, "cachehit"))
            w("| %d | %s | %s | %s | %s | %d | %s | %s | %d |" % (
                c, t, fmt(s["rps"]), fmt(s["p50"], "%.2f"), fmt(s["p99"], "%.2f"), s["errors"],
                fmt(s["cpu"], "%.1f"), fmt(s["rss"], "%.1f"), up))
    w("")
    w("| c | req/s hcgw/nginx | CPU/req hcgw/nginx | peak RSS hcgw/nginx |")
    w("|---:|---:|---:|---:|")
    for c in a.cachehit_conns:
        w("| %d | %s | %s | %s |" % (
            c, fmt(pair_ratios(b, 1, "fast", c, "rps", "cachehit"), "%.2f"),
            fmt(pair_ratios(b, 1, "fast", c, "cpu_us_per_req", "cachehit"), "%.2f"),
            fmt(pair_ratios(b, 1, "fast", c, "peak_rss_kib", "cachehit"), "%.2f")))
    w("")
    w("Target (issue 11): at c=100, hcgw's requests per second at least nginx's, at no more CPU "
      "per request.")
    w("")
    r = pair_ratios(b, 1, "fast", 100, "rps", "cachehit")
    cr = pair_ratios(b, 1, "fast", 100, "cpu_us_per_req", "cachehit")
    if r is not None and cr is not None:
        w("| target | measured | |")
        w("|---|---|---|")
        w("| cache hits, c=100: hcgw req/s ≥ nginx's | ratio %.2f | %s |"
          % (r, "met" if r >= 1.0 else "**missed**"))
        w("| cache hits, c=100: hcgw CPU/req ≤ nginx's | ratio %.2f | %s |"
          % (cr, "met" if cr <= 1.0 else "**missed**"))
        w("")


def rest(b, w, a):
    # ---- the rest
    ex = b.extra
    if "startup_ms" in ex:
        w("## Start-up and idle memory")
        w("")
        w("Start-up = from fork+exec to the first 200 on GET /healthz (polled every 0.5 ms), "
          "median of %d; idle RSS = VmRSS (summed over nginx's processes) 0.3 s after ready."
          % a.startup_reps)
        w("")
        w("| proxy | workers | start-up to ready ms | idle RSS MiB |")
        w("|---|---:|---:|---:|")
        for t in ("nginx", "hcgw"):
            for wk in (1, 2):
                w("| %s | %d | %.1f | %.1f |" % (t, wk, ex["startup_ms"][t][wk],
                                                ex["idle_rss_kib"][t][wk] / MIB))
        w("")
    tls_rows = [r for r in b.rows if r.get("phase") == "tls"]
    if tls_rows:
        c = a.tls_conns
        w("## HTTPS to the upstream (the cost of TLS)")
        w("")
        w("Fast upstream over HTTP and over HTTPS (TLS 1.3, P-256 certificate from a CA made "
          "at run time; hcgw trusts it through upstream.ca_file, nginx through "
          "proxy_ssl_trusted_certificate with proxy_ssl_verify on), one worker, c=%d, "
          "alternating runs. TLS cost = CPU/req over HTTPS minus over HTTP." % c)
        w("")
        if not b.ca_file_supported:
            w("**hcgw has no upstream.ca_file in this build: its HTTPS variant was not run.**")
            w("")
        w("| proxy | upstream | req/s | p50 ms | p99 ms | errors | CPU µs/req | TLS cost µs/req "
          "| new upstream conns /10k req |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for t in ("nginx", "hcgw"):
            plain = summary(b, 1, "fast", c, t, "tls")
            for up in ("fast", "tls"):
                s = summary(b, 1, up, c, t, "tls")
                if s is None:
                    continue
                cost = s["cpu"] - plain["cpu"] if up == "tls" and plain else None
                w("| %s | %s | %s | %s | %s | %d | %s | %s | %s |" % (
                    t, "https" if up == "tls" else "http", fmt(s["rps"]), fmt(s["p50"], "%.2f"),
                    fmt(s["p99"], "%.2f"), s["errors"], fmt(s["cpu"], "%.1f"),
                    fmt(cost, "%+.1f"), fmt(s["conns"], "%.2f")))
        w("")
    pool_rows = [r for r in b.rows if r.get("phase") == "pool64"]
    if pool_rows:
        r = pool_rows[0]
        w("## The default pool")
        w("")
        w("hcgw with the default upstream.max_connections = 64, slow upstream, c=1000, one "
          "worker, one run: %.0f req/s (a pool of 64 over 50 ms allows at most 1280/s), "
          "p50 %.1f ms, p99 %.1f ms, %d errors. Size the pool at least the expected calls "
          "per second x HelpCrunch's latency per worker." % (r["rps"], r["p50_ms"], r["p99_ms"],
                                                         r["errors"]))
        w("")

    # ---- targets
    if "matrix" not in getattr(a, "phases", ["matrix"]):
        return
    w("## Targets (issue 6)")
    w("")
    w("| target | measured | |")
    w("|---|---|---|")

    def verdict(ok):
        return "met" if ok else "**missed**"

    for workers in a.workers:
        if "fast" in a.upstreams and 100 in a.conns:
            r = pair_ratios(b, workers, "fast", 100, "rps")
            cr = pair_ratios(b, workers, "fast", 100, "cpu_us_per_req")
            if r is not None:
                w("| fast, c=100, %d worker(s): hcgw req/s ≥ nginx's | ratio %.2f | %s |"
                  % (workers, r, verdict(r >= 1.0)))
                w("| fast, c=100, %d worker(s): hcgw CPU/req ≤ nginx's | ratio %.2f | %s |"
                  % (workers, cr, verdict(cr <= 1.0)))
    for workers in a.workers:
        if "slow" in a.upstreams and 1000 in a.conns:
            d = summary(b, workers, "slow", 1000, "direct")
            h = summary(b, workers, "slow", 1000, "hcgw")
            if d and h:
                ratio = h["rps"] / d["rps"]
                added = h["p99"] - d["p99"]
                w("| slow, c=1000, %d worker(s): req/s ≥ 0.95 × direct | %.3f | %s |"
                  % (workers, ratio, verdict(ratio >= 0.95)))
                w("| slow, c=1000, %d worker(s): added p99 ≤ 5 ms | %+.2f ms | %s |"
                  % (workers, added, verdict(added <= 5.0)))
                w("| slow, c=1000, %d worker(s): no errors | %d in %d requests | %s |"
                  % (workers, h["errors"], h["requests"], verdict(h["errors"] == 0)))
                w("| slow, c=1000, %d worker(s): peak RSS ≤ 48 MiB | %.1f MiB | %s |"
                  % (workers, h["rss"], verdict(h["rss"] <= 48)))
    if "idle_rss_kib" in ex:
        for wk in (1, 2):
            m = ex["idle_rss_kib"]["hcgw"][wk] / MIB
            w("| idle RSS ≤ 16 MiB, %d worker(s) | %.1f MiB | %s |" % (wk, m, verdict(m <= 16)))
        for wk in (1, 2):
            s = ex["startup_ms"]["hcgw"][wk]
            w("| start-up to ready ≤ 50 ms, %d worker(s) | %.1f ms | %s |"
              % (wk, s, verdict(s <= 50)))
    hc_rows = [r for r in b.rows if r["target"] == "hcgw"
               and r.get("phase") not in ("pool64", "cachehit")
               and not str(r.get("phase")).startswith("local-")]
    if hc_rows:
        worst = max(hc_rows, key=lambda r: r["up_conns_per_10k"])
        w("| new upstream conns per 10k requests ≤ pool (%d) | worst cell %.1f (w=%d %s c=%d) "
          "| %s |" % (1024, worst["up_conns_per_10k"], worst["workers"], worst["upstream"],
                      worst["c"], verdict(worst["up_conns_per_10k"] <= 1024)))
    w("")

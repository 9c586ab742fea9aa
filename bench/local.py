"""
Local answers and idle connections (issue 14): what hcgw answers without HelpCrunch, against
nginx giving the same answer, and the memory an idle keep-alive connection costs each.

Phase "local" (bench.py --phases local): one worker each, the proxy pinned to its own CPU and
the load (wrk, the upstream) to the other, every path at each concurrency (--local-conns,
default 100 and 1000), nginx and hcgw alternating run by run, medians:
  400     GET /contacts/12x with a valid client token: hcgw's invalid_contact_id envelope;
          nginx `return 400` with the same body and headers (local.nginx.conf)
  401     GET /contacts/{id} with no credential or a wrong token (every other request): hcgw
          configured with one client answers 401 unauthenticated and closes the connection;
          nginx the same through a map of the Authorization header and keepalive_timeout 0
  health  GET /healthz: 200 {"status":"ok"}
  hit     GET /contacts/{id} from hcgw's contact cache against nginx's proxy_cache, set up as
          the cachehit phase does (both caches filled first)
Before the runs each answer of the two proxies is fetched and compared (status, header names,
body with the request id taken out). The upstream's request count over every run must stay 0.

Phase "idle" (bench.py --phases idle): --idle-conns (default 10,000) keep-alive connections
to a fresh proxy, each makes one request (GET /healthz) and stays open; the proxy's RSS (all
its processes) before and after, (after - before) / N per connection, --idle-reps alternating
runs of each, medians.
"""
import asyncio
import hashlib
import os
import re
import socket
import statistics
import time

import bench  # its names are looked up at call time: bench.py imports this module first

CLIENT_TOKEN = "bench-client-token-0123456789abcdef"  # also in local.nginx.conf
CONTACT = 1568834

# (key, what, wrk script and its arguments, expected status); "hit" uses the cachehit set-up.
PATHS = (
    ("400", "validation error: GET /contacts/12x, valid token",
     ("local.lua", "/contacts/12x", CLIENT_TOKEN), 400),
    ("401", "refused caller: GET /contacts/{id}, no or a wrong token",
     ("local.lua", "/contacts/%d" % CONTACT, "refused"), 401),
    ("health", "health probe: GET /healthz", ("local.lua", "/healthz"), 200),
    ("hit", "cache hit: GET /contacts/{id} (1000 ids)", "get_contact.lua", 200),
)
PATH_KEYS = [p[0] for p in PATHS]


def hcgw_groups(b, idle=False):
    """What the bench's hcgw configuration gets for these phases (its @CACHE_LINE@): one client
    with a token, room for the idle connections, and --max-header-bytes when given."""
    sha = hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()
    lines = ['clients = ( { name = "bench"; token_sha256 = "%s"; routes = [ "*" ]; } );' % sha]
    limits = []
    if idle:
        limits += ["max_connections = 100000;", "connection_timeout_ms = 600000;"]
    if getattr(b.args, "max_header_bytes", None):
        limits.append("max_header_bytes = %d;" % b.args.max_header_bytes)
    if limits:
        lines.append("limits = { %s };" % " ".join(limits))
    return "\n".join(lines)


def fetch(port, path, headers=None, timeout=5.0):
    """One HTTP/1.1 GET on a new connection: (status, {lower-case header name: value}, body)."""
    req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % path
    for k, v in (headers or {}).items():
        req += "%s: %s\r\n" % (k, v)
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall((req + "\r\n").encode())
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    m = re.match(r"HTTP/1\.\d (\d+)", lines[0])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return (int(m.group(1)) if m else None), hdrs, body


# Headers one proxy sends and the other need not: framing and identification.
SOFT_HEADERS = {"date", "server", "connection", "content-length", "keep-alive"}


def check_same_answer(key, script, status, ports):
    """The two proxies' answers to one request of @p script: same status, same header names
    (but SOFT_HEADERS), same body once the request id is taken out. Raises when they differ."""
    path = script[1]
    cred = script[2] if len(script) > 2 else None
    if cred == "refused":
        variants = [{}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}]
    elif cred:
        variants = [{"Authorization": "Bearer " + cred}]
    else:
        variants = [{}]
    for headers in variants:
        got = {}
        for t, port in ports.items():
            st, hdrs, body = fetch(port, path, headers)
            rid = hdrs.get("x-request-id", "")
            if st != status or not re.fullmatch(r"[0-9a-f]{32}", rid):
                raise RuntimeError("%s: %s answered %s (X-Request-Id %r), expected %d"
                                   % (key, t, st, rid, status))
            got[t] = (set(hdrs) - SOFT_HEADERS, body.replace(rid.encode(), b"<id>"))
        if got["hcgw"] != got["nginx"]:
            raise RuntimeError("%s: the answers differ: hcgw %r, nginx %r"
                               % (key, got["hcgw"], got["nginx"]))


def upstream_requests(b):
    return bench.stub_counts(b.up_fast_status)[1]


def measure_path(b, key, t, proc, c, seconds, load, rep=None):
    """One run; the row gets the upstream's requests over the whole run (0 expected)."""
    script = dict((p[0], p[2]) for p in PATHS)[key]
    up0 = upstream_requests(b)
    extra = dict(workers=1, rep=rep, phase="local-" + key) if rep is not None else None
    row = b.measure(t, proc, "fast", c, seconds, load, extra, script=script)
    # measure() reads stub_status four times, and the read below counts itself.
    row["up_calls_run"] = upstream_requests(b) - up0 - 5
    return row


def run_pair(b, keys, ng, hc, load):
    a = b.args
    procs = {"nginx": ng, "hcgw": hc}
    for key in keys:
        for c in a.local_conns:
            for t in ("nginx", "hcgw"):
                measure_path(b, key, t, procs[t], c, a.warmup, load)
            for rep in range(a.reps):
                order = ["nginx", "hcgw"] if rep % 2 == 0 else ["hcgw", "nginx"]
                for t in order:
                    row = measure_path(b, key, t, procs[t], c, a.duration, load, rep)
                    b.rows.append(row)
                    bench.log("  %-6s c=%-4d %-5s rep %d: %8.0f req/s p99 %7.2f ms 4xx %d socket err %d "
                        "cpu %.1f us/req upstream calls %d"
                        % (key, c, t, rep, row["rps"], row["p99_ms"], row["err_status"],
                           row["err_socket"], row["cpu_us_per_req"], row["up_calls_run"]))


def phase_local(b):
    a = b.args
    load, proxy = b.layout(1)
    bench.set_affinity(sum((bench.tree_pids(p.pid) for p in b.upstreams.values()), []), load)
    bench.log("local answers %s, c=%s, one worker, load on CPU %s, proxies on CPU %s"
        % (" ".join(a.local_paths), a.local_conns, load, proxy))
    keys = [k for k in PATH_KEYS if k in a.local_paths and k != "hit"]
    if keys:
        ng = b.start_nginx(1, "fast", b.p_nginx, proxy, tag="nginx-local", conf="local.nginx.conf")
        hc = b.start_hcgw(1, "fast", b.p_hcgw, proxy, tag="hcgw-local", cache_line=hcgw_groups(b))
        try:
            for key, _, script, status in PATHS:
                if key in keys:
                    check_same_answer(key, script, status, {"nginx": ng.bench_port,
                                                            "hcgw": hc.bench_port})
            run_pair(b, keys, ng, hc, load)
        finally:
            bench.PROCS.stop(ng)
            bench.PROCS.stop(hc)
    if "hit" in a.local_paths:
        # Ports of their own: nothing of the local pair may answer for them.
        ng = b.start_nginx(1, "fast", b.p_nginx2, proxy, tag="nginx-cache",
                           conf="proxy-cache.nginx.conf")
        hc = b.start_hcgw(1, "fast", b.p_hcgw2, proxy, tag="hcgw-cache",
                          cache_line="cache = { ttl_ms = 3600000; };" + (
                              "\nlimits = { max_header_bytes = %d; };" % a.max_header_bytes
                              if getattr(a, "max_header_bytes", None) else ""))
        try:
            for t, p in (("nginx", ng), ("hcgw", hc)):
                b.fill_cache(t, p.bench_port)
            run_pair(b, ["hit"], ng, hc, load)
        finally:
            bench.PROCS.stop(ng)
            bench.PROCS.stop(hc)


# ---------------------------------------------------------------- idle connections

async def open_idle(port, n, parallel=256, timeout=30.0):
    """n connections, each with one GET /healthz answered; returns (writers, failures)."""
    sem = asyncio.Semaphore(parallel)
    req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def one():
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(req)
            head = await r.readuntil(b"\r\n\r\n")
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await r.readexactly(int(m.group(1)) if m else 0)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:40])
            return w

    results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n)),
                                                    return_exceptions=True), timeout)
    writers = [x for x in results if not isinstance(x, BaseException)]
    return writers, len(results) - len(writers)


def idle_once(b, t, proxy_cpus, n):
    if t == "hcgw":
        p = b.start_hcgw(1, "fast", b.p_hcgw, proxy_cpus, tag="hcgw-idle",
                         cache_line=hcgw_groups(b, idle=True))
    else:
        p = b.start_nginx(1, "fast", b.p_nginx, proxy_cpus, tag="nginx-idle",
                          conf="local.nginx.conf")
    loop = asyncio.new_event_loop()
    writers = []
    try:
        for _ in range(20):  # the code paths of a request, once, before the "before"
            fetch(p.bench_port, "/healthz")
        time.sleep(0.3)
        pids = bench.tree_pids(p.pid)
        before = bench.status_kib(pids, "VmRSS")
        writers, failed = loop.run_until_complete(open_idle(p.bench_port, n))
        time.sleep(0.5)
        after = bench.status_kib(pids, "VmRSS")
        st, _, _ = fetch(p.bench_port, "/healthz")  # still serving
        row = dict(target=t, conns=len(writers), failed=failed, rss_before_kib=before,
                   rss_after_kib=after, still_serving=st == 200,
                   bytes_per_conn=(after - before) * 1024.0 / max(1, len(writers)))
        return row
    finally:
        for w in writers:
            w.close()
        loop.close()
        bench.PROCS.stop(p)


def phase_idle(b):
    a = b.args
    _, proxy = b.layout(1)
    n = a.idle_conns
    bench.log("idle keep-alive connections: %d, each one GET /healthz, %d run(s) each" % (n, a.idle_reps))
    runs = []
    for rep in range(a.idle_reps):
        for t in (("nginx", "hcgw") if rep % 2 == 0 else ("hcgw", "nginx")):
            if time.monotonic() + 60 > b.deadline:
                raise bench.OutOfTime()
            row = idle_once(b, t, proxy, n)
            row["rep"] = rep
            runs.append(row)
            bench.log("  idle %-5s rep %d: %d open (%d failed), RSS %d -> %d KiB: %.0f bytes/conn"
                % (t, rep, row["conns"], row["failed"], row["rss_before_kib"],
                   row["rss_after_kib"], row["bytes_per_conn"]))
    b.extra["idle"] = runs


# ---------------------------------------------------------------- report

def report_section(b, w, a):
    """The two tables of these phases, when they ran (report.make_report calls it)."""
    from report import fmt, pair_ratios, summary
    rows = [r for r in b.rows if str(r.get("phase", "")).startswith("local-")]
    lay1 = b.layout(1)
    if rows:
        conns = getattr(a, "local_conns", [100, 1000])
        w("## Local answers: hcgw against nginx giving the same answer")
        w("")
        w("One worker each, the load (wrk, the upstream) on CPU %s and the proxy on CPU %s; %d "
          "run(s) of %d s after a %d s warm-up per path and concurrency, nginx and hcgw "
          "alternating; medians (bench/local.py). nginx answers with `return` "
          "(bench/local.nginx.conf) and, for the hit, from proxy_cache. \"4xx\" are the answers "
          "with the path's own status (wrk counts them as errors); upstream calls = requests "
          "the upstream served during all the runs (must be 0)."
          % (lay1[0], lay1[1], a.reps, a.duration, a.warmup))
        w("")
        w("| path | c | target | req/s | p50 ms | p99 ms | 4xx | socket errors | CPU µs/req "
          "| peak RSS MiB | upstream calls |")
        w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, what, _, _ in PATHS:
            for c in conns:
                for t in ("nginx", "hcgw"):
                    s = summary(b, 1, "fast", c, t, "local-" + key)
                    if s is None:
                        continue
                    up = sum(r.get("up_calls_run", 0) for r in b.cell(1, "fast", c, t,
                                                                      "local-" + key))
                    w("| %s | %d | %s | %s | %s | %s | %d | %d | %s | %s | %d |" % (
                        key, c, t, fmt(s["rps"]), fmt(s["p50"], "%.2f"), fmt(s["p99"], "%.2f"),
                        s["err_status"], s["err_socket"], fmt(s["cpu"], "%.1f"),
                        fmt(s["rss"], "%.1f"), up))
        w("")
        w("| path | c | req/s hcgw/nginx | CPU/req hcgw/nginx | target (req/s ≥ 1, CPU ≤ 1) |")
        w("|---|---:|---:|---:|---|")
        for key, what, _, _ in PATHS:
            for c in conns:
                r = pair_ratios(b, 1, "fast", c, "rps", "local-" + key)
                cr = pair_ratios(b, 1, "fast", c, "cpu_us_per_req", "local-" + key)
                if r is None:
                    continue
                ok = r >= 1.0 and cr is not None and cr <= 1.0
                w("| %s | %d | %s | %s | %s |" % (what, c, fmt(r, "%.2f"), fmt(cr, "%.2f"),
                                                  "met" if ok else "**missed**"))
        w("")
    runs = b.extra.get("idle")
    if runs:
        w("## Idle keep-alive connections")
        w("")
        n = max(r["conns"] for r in runs)
        hb = getattr(a, "max_header_bytes", None)
        w("%d connections to a fresh proxy (one worker), each with one GET /healthz answered "
          "and left open; the proxy's VmRSS (all its processes) before and after; per "
          "connection = (after − before) / connections open. Medians of %d run(s) each. "
          "hcgw's limits.max_header_bytes: %s."
          % (n, len(runs) // 2 or 1, hb or "its default (16384)"))
        w("")
        w("| target | connections open (failed) | RSS before MiB | RSS after MiB | bytes per "
          "connection |")
        w("|---|---:|---:|---:|---:|")
        med = {}
        for t in ("nginx", "hcgw"):
            rs = [r for r in runs if r["target"] == t]
            if not rs:
                continue
            med[t] = statistics.median(r["bytes_per_conn"] for r in rs)
            w("| %s | %d (%d) | %.1f | %.1f | %.0f |" % (
                t, min(r["conns"] for r in rs), max(r["failed"] for r in rs),
                statistics.median(r["rss_before_kib"] for r in rs) / 1024.0,
                statistics.median(r["rss_after_kib"] for r in rs) / 1024.0, med[t]))
        w("")
        if len(med) == 2:
            ratio = med["hcgw"] / med["nginx"] if med["nginx"] else float("inf")
            w("Memory per idle connection hcgw/nginx: %.2f (target ≤ 1: %s)."
              % (ratio, "met" if ratio <= 1.0 else "**missed**"))
            w("")

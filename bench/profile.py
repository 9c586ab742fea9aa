#!/usr/bin/env python3
"""
Where hcgw's CPU goes, next to nginx doing the same job (bench/profile.sh runs this).

Against the fast upstream, one worker each, on loopback, everything bounded:
  1. callgrind (instructions, user space; deterministic, so it does not depend on how busy the
     machine is): counters zeroed once the proxy is ready, wrk at c=10 for a few seconds,
     counters dumped; Ir per request per library and the top functions;
  2. strace -c -f: system calls per request at c=100;
  3. perf record -e cpu-clock (a software clock: works in VMs without a PMU): user/kernel split
     and the hottest symbols, when perf works here.
Writes bench/results/profile.md (and prints it). With --cachehit the job is GET /contacts/{id}
answered from the proxy's cache (hcgw's contact cache, nginx's proxy_cache, both filled first,
as in bench.py --phases cachehit) instead of DELETE /contacts/{id}/tags/{name}; it writes
bench/results/profile-cachehit.md. With --local 400|401|health the job is one of the local
answers of bench/local.py (hcgw with one client token, nginx with local.nginx.conf); it writes
bench/results/profile-local-<path>.md.
"""
import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import local  # noqa: E402
from bench import PROCS, Bench, log, tree_pids, wait_ready  # noqa: E402


def count_hcgw_requests(port, route="tag_delete"):
    st, body = bench.http_get(port, "/metrics")
    n = 0
    for line in (body or b"").decode().splitlines():
        if line.startswith("hcgw_requests_total{") and 'route="%s"' % route in line:
            n += int(float(line.rsplit(" ", 1)[1]))
    return n


def cg_control(pid, *args):
    """callgrind_control ARGS PID, checked: valgrind polls for commands, so retry a little."""
    for _ in range(10):
        r = subprocess.run(["callgrind_control"] + list(args) + [str(pid)], capture_output=True,
                           text=True, timeout=60)
        if "OK" in r.stdout:
            return
        time.sleep(0.5)
    raise RuntimeError("callgrind_control %s %d failed: %s" % (" ".join(args), pid,
                                                               r.stdout + r.stderr))


def count_lines(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def annotate(cg_file, requests, top=25):
    """(Ir total, {object: self Ir}, [(inclusive Ir, function, object)])"""
    self_out = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", cg_file],
                              capture_output=True, text=True, timeout=120).stdout
    incl_out = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=yes",
                               "--threshold=100", cg_file], capture_output=True, text=True, timeout=120).stdout
    total = 0
    m = re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", self_out)
    if m:
        total = int(m.group(1).replace(",", ""))
    line_re = re.compile(r"^\s*([\d,]+) \([\s\d.]+%\)\s+(\S.*?)(?: \[(.+)\])?$")
    per_obj = collections.Counter()
    for line in self_out.splitlines():
        m = line_re.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        obj = os.path.basename(m.group(3) or "?")
        per_obj[obj] += int(m.group(1).replace(",", ""))
    incl = {}
    for line in incl_out.splitlines():
        m = line_re.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        fn = m.group(2).split(":")[-1]
        obj = os.path.basename(m.group(3) or "")
        ir = int(m.group(1).replace(",", ""))
        # A function can be listed twice (with and without its source file): keep one.
        if fn not in incl or ir > incl[fn][0] or (ir == incl[fn][0] and obj):
            incl[fn] = (ir, fn, obj or incl.get(fn, (0, "", ""))[2])
    return total, per_obj, sorted(incl.values(), reverse=True)[:top]


CACHE_LINE = "cache = { ttl_ms = 3600000; };"


class Profile(Bench):
    """The cache-hit job (--cachehit) changes the proxies' configurations, the wrk script, the
    route counted, and fills both caches before anything is measured."""

    @property
    def cachehit(self):
        return self.args.cachehit

    @property
    def local(self):
        return self.args.local

    @property
    def script(self):
        if self.local:
            return dict((p[0], p[2]) for p in local.PATHS)[self.local]
        return "get_contact.lua" if self.cachehit else None

    @property
    def route(self):
        if self.local:
            return "healthz" if self.local == "health" else "contact_get"
        return "contact_get" if self.cachehit else "tag_delete"

    @property
    def hcgw_groups(self):
        if self.local:
            return local.hcgw_groups(self)
        line = CACHE_LINE if self.cachehit else ""
        if self.args.max_header_bytes:
            line += "\nlimits = { max_header_bytes = %d; };" % self.args.max_header_bytes
        return line

    @property
    def nginx_conf(self):
        if self.local:
            return "local.nginx.conf"
        return "proxy-cache.nginx.conf" if self.cachehit else "proxy.nginx.conf"

    def proxy(self, target, proxy_cpus):
        if target == "hcgw":
            p = self.start_hcgw(1, self.args.upstream, self.p_hcgw, proxy_cpus,
                                cache_line=self.hcgw_groups)
        else:
            p = self.start_nginx(1, self.args.upstream, self.p_nginx, proxy_cpus,
                                 conf=self.nginx_conf)
        if self.cachehit:
            self.fill_cache(target, p.bench_port)
        return p

    def callgrind(self, target, seconds, conns):
        a = self.args
        cg = os.path.join(self.run, "%s-%d.cg" % (target, conns))
        # No pinning here: valgrind serializes threads anyway, and Ir does not depend on it.
        if target == "hcgw":
            conf = bench.render("hcgw.bench.conf", os.path.join(self.run, "cg-hcgw.conf"),
                                dict(HCGW_PORT=self.p_hcgw, WORKERS=1, UP_SCHEME="http",
                                     UP_PORT=self.up_port(a.upstream), API_KEY=bench.API_KEY, POOL=bench.POOL,
                                     CA_FILE_LINE="",
                                     CACHE_LINE=self.hcgw_groups))
            argv = [self.hcgw_bin, "-c", conf]
            port = self.p_hcgw
            logf = open(os.path.join(self.run, "cg-hcgw.log"), "w")
        else:
            run = os.path.join(self.run, "cg-nginx")
            os.makedirs(run, exist_ok=True)
            os.symlink(os.path.join(self.run, "tls"), os.path.join(run, "tls"))
            conf = bench.render(self.nginx_conf, os.path.join(run, "proxy.conf"),
                                dict(RUN=run, WORKERS=1, PROXY_PORT=self.p_nginx, UP_SCHEME="http",
                                     UP_HOST="127.0.0.1", UP_PORT=self.up_port(a.upstream),
                                     POOL=bench.POOL,
                                     API_KEY=bench.API_KEY, SSL_VERIFY="off"))
            # One process (no master) so that callgrind sees the worker's whole life.
            argv = [self.nginx_bin, "-p", run, "-c", conf, "-g", "daemon off; master_process off;"]
            port = self.p_nginx
            logf = open(os.path.join(run, "stderr"), "w")
        # Instrumentation off until the proxy is ready, on for the load only, then off and a
        # dump (a dump taken while instrumenting attributes the costs of the functions still
        # on the stack wrongly; one taken with instrumentation off is exact).
        p = PROCS.start(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                         "--callgrind-out-file=" + cg] + argv, stderr=logf,
                        name="callgrind-" + target)
        wait_ready(port, timeout=60, proc=p)
        if self.cachehit:
            self.fill_cache(target, port)
        time.sleep(0.5)
        before = count_hcgw_requests(port, self.route) if target == "hcgw" else 0
        lines0 = (count_lines(os.path.join(self.run, "cg-nginx", "proxy.access.log"))
                  if target == "nginx" else 0)
        cg_control(p.pid, "-i", "on")
        w = self.wrk(port, conns, seconds, "0-%d" % (self.ncpu - 1), script=self.script)
        # Requests wrk left in flight finish (and are counted); at c=1000 under valgrind that
        # takes a few seconds.
        time.sleep(max(1.0, conns / 250.0))
        cg_control(p.pid, "-i", "off")
        cg_control(p.pid, "-d")
        if target == "hcgw":
            n = count_hcgw_requests(port, self.route) - before
        else:
            n = count_lines(os.path.join(self.run, "cg-nginx", "proxy.access.log")) - lines0
        PROCS.stop(p, wait=10)
        dump = cg + ".1"
        if not os.path.exists(dump) or os.path.getsize(dump) == 0:
            raise RuntimeError("callgrind wrote no profile for %s" % target)
        total, per_obj, incl = annotate(dump, n)
        log("callgrind %s c=%d: %d requests (wrk saw %d), %.0f Ir/request"
            % (target, conns, n, w["requests"], total / max(1, n)))
        return dict(requests=n, total=total, per_obj=per_obj, incl=incl)

    def strace(self, target, seconds, conns):
        load, proxy = self.layout(1)
        p = self.proxy(target, proxy)
        pids = [p.pid] if target == "hcgw" else tree_pids(p.pid)[1:]  # nginx: the worker
        try:
            self.wrk(p.bench_port, conns, 1, load, script=self.script)  # warm-up
            out = os.path.join(self.run, "strace-%s-%d.txt" % (target, conns))
            st = PROCS.start(["strace", "-c", "-f", "-o", out] +
                             sum((["-p", str(x)] for x in pids), []), name="strace")
            time.sleep(0.5)
            before = count_hcgw_requests(p.bench_port, self.route) if target == "hcgw" else 0
            w = self.wrk(p.bench_port, conns, seconds, load, script=self.script)
            PROCS.stop(st, sig=2, wait=10)
            n = ((count_hcgw_requests(p.bench_port, self.route) - before) if target == "hcgw"
                 else w["requests"])
            calls = {}
            with open(out) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                        calls[parts[-1]] = int(parts[3])
            log("strace %s c=%d: %d requests, %.1f syscalls/request"
                % (target, conns, n, sum(calls.values()) / max(1, n)))
            return dict(requests=n, calls=calls)
        finally:
            PROCS.stop(p)

    def perf(self, target, seconds):
        if shutil.which("perf") is None:
            return None
        load, proxy = self.layout(1)
        p = self.proxy(target, proxy)
        pids = [p.pid] if target == "hcgw" else tree_pids(p.pid)[1:]
        data = os.path.join(self.run, "perf-%s.data" % target)
        try:
            self.wrk(p.bench_port, 100, 1, load, script=self.script)

            def rec(_):
                time.sleep(0.5)
                subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", data,
                                "-p", ",".join(map(str, pids)), "--", "sleep",
                                str(max(1, seconds - 1))], capture_output=True,
                               timeout=seconds + 30)

            self.wrk(p.bench_port, 100, seconds, load, during=rec, script=self.script)
        finally:
            PROCS.stop(p)
        if not os.path.exists(data):
            return None
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", "dso", "-g", "none"], capture_output=True, text=True,
                           timeout=120)
        dsos = re.findall(r"^\s+([\d.]+)%\s+(\S+)\s*$", r.stdout, re.M)
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                            "--sort", "dso,sym", "-g", "none"], capture_output=True, text=True,
                           timeout=120)
        syms = re.findall(r"^\s+([\d.]+)%\s+(\S+)\s+\[.\]\s+(.+?)\s*$", r.stdout, re.M)
        return dict(dsos=[(float(x), d) for x, d in dsos][:10],
                    syms=[(float(x), d, s) for x, d, s in syms][:25])

    def main(self):
        a = self.args
        t0 = time.monotonic()
        self.start_upstreams()
        res = {}
        for c in a.cg_conns:
            for t in a.targets:
                res[("cg", t, c)] = self.callgrind(t, a.cg_seconds, c)
        for c in a.strace_conns:
            for t in a.targets:
                res[("strace", t, c)] = self.strace(t, a.seconds, c)
        if a.perf:
            for t in a.targets:
                res[("perf", t)] = self.perf(t, a.seconds + 1)
        text = self.render_report(res, time.monotonic() - t0)
        print(text)
        if a.output:
            with open(a.output, "w") as f:
                f.write(text)
            log("wrote %s" % a.output)

    def render_report(self, res, elapsed):
        a = self.args
        ts = a.targets
        L = []
        w = L.append
        w("# Where the CPU goes: hcgw and nginx, same job (bench/profile.sh)")
        w("")
        w("Run %s, %.0f s. %s upstream, %s, one worker each."
          % (time.strftime("%Y-%m-%d %H:%M %Z"), elapsed, a.upstream.capitalize(),
             dict((p[0], p[1]) for p in local.PATHS)[self.local] + " (bench/local.py)"
             if self.local else
             "GET /contacts/{id} answered from the proxy's cache (hcgw's contact cache, nginx's "
             "proxy_cache; %d ids, read once before measuring)" % self.args.cachehit_ids
             if self.cachehit else "DELETE /contacts/{id}/tags/{name}"))
        w("")

        def per_req(r, v):
            return v / max(1, r["requests"])

        for c in a.cg_conns:
            cg = {t: res[("cg", t, c)] for t in ts}
            w("## Instructions per request (callgrind, user space, c=%d)" % c)
            w("")
            w("Instrumentation on once the proxy answered, for the wrk run only, then off and "
              "dumped. Kernel time is not in these (see the "
              "system calls below). Debian's libcurl, libmicrohttpd and nginx have no symbols for "
              "their static functions: those show as addresses.")
            w("")
            objs = set()
            for t in ts:
                objs |= set(cg[t]["per_obj"])
            w("| object | %s |" % " | ".join("%s Ir/req" % t for t in ts))
            w("|---|%s" % "---:|" * len(ts))
            rows = []
            for o in objs:
                v = [per_req(cg[t], cg[t]["per_obj"].get(o, 0)) for t in ts]
                rows.append((max(v), o, v))
            for _, o, v in sorted(rows, reverse=True):
                if max(v) >= 200:
                    w("| %s | %s |" % (o, " | ".join("%.0f" % x for x in v)))
            tot = [per_req(cg[t], cg[t]["total"]) for t in ts]
            ratio = (" (%.1fx)" % (tot[-1] / tot[0]) if len(ts) == 2 and tot[0] else "")
            w("| **total** | %s%s |" % (" | ".join("**%.0f**" % x for x in tot), ratio))
            w("")
            for t in reversed(ts):
                r = cg[t]
                w("### %s, c=%d: top functions, inclusive Ir per request (%d requests)"
                  % (t, c, r["requests"]))
                w("")
                w("| Ir/req | function | object |")
                w("|---:|---|---|")
                for ir, fn, obj in r["incl"]:
                    w("| %.0f | %s | %s |" % (per_req(r, ir), fn, obj))
                w("")
        for c in a.strace_conns:
            st = {t: res[("strace", t, c)] for t in ts}
            w("## System calls per request (strace -c -f, c=%d)" % c)
            w("")
            names = set()
            for t in ts:
                names |= set(st[t]["calls"])
            w("| system call | %s |" % " | ".join("%s /req" % t for t in ts))
            w("|---|%s" % "---:|" * len(ts))
            tot = {t: 0.0 for t in ts}
            rows = []
            for nm in names:
                v = {}
                for t in ts:
                    v[t] = per_req(st[t], st[t]["calls"].get(nm, 0))
                    tot[t] += v[t]
                rows.append((max(v.values()), nm, v))
            for _, nm, v in sorted(rows, reverse=True):
                if max(v.values()) >= 0.05:
                    w("| %s | %s |" % (nm, " | ".join("%.2f" % v[t] for t in ts)))
            w("| **total** | %s |" % " | ".join("**%.2f**" % tot[t] for t in ts))
            w("")
        if any(res.get(("perf", t)) for t in ts):
            w("## perf record -e cpu-clock (c=100): share of samples")
            w("")
            for t in reversed(ts):
                r = res[("perf", t)]
                if not r:
                    continue
                w("### %s" % t)
                w("")
                w("| % | object |")
                w("|---:|---|")
                for x, d in r["dsos"]:
                    w("| %.1f | %s |" % (x, d))
                w("")
                w("| % | object | symbol |")
                w("|---:|---|---|")
                for x, d, s in r["syms"]:
                    w("| %.1f | %s | %s |" % (x, d, s))
                w("")
        return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description="profile hcgw next to nginx")
    ap.add_argument("--cg-seconds", type=int, default=8)
    ap.add_argument("--cg-conns", type=int, nargs="+", default=[10],
                    help="concurrencies of the callgrind runs (default 10)")
    ap.add_argument("--strace-conns", type=int, nargs="+", default=[100],
                    help="concurrencies of the strace runs (default 100)")
    ap.add_argument("--targets", nargs="+", choices=("nginx", "hcgw"), default=["nginx", "hcgw"],
                    help="what to profile (default both)")
    ap.add_argument("--upstream", choices=("fast", "slow"), default="fast",
                    help="the upstream the proxies call (default fast)")
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--no-perf", dest="perf", action="store_false")
    ap.add_argument("--output", default=None,
                    help="default bench/results/profile.md, profile-cachehit.md with --cachehit")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--cachehit", action="store_true",
                    help="profile GET /contacts/{id} answered from each proxy's cache")
    ap.add_argument("--cachehit-ids", type=int, default=1000)
    ap.add_argument("--max-header-bytes", type=int,
                    help="hcgw's limits.max_header_bytes (default: hcgw's own)")
    ap.add_argument("--local", choices=[k for k in local.PATH_KEYS if k != "hit"],
                    help="profile one local answer of bench/local.py (the hit is --cachehit)")
    ap.add_argument("--hcgw", metavar="PATH", help="the hcgw binary (default build/release/hcgw)")
    a = ap.parse_args()
    if a.output is None:
        a.output = os.path.join(bench.BENCH, "results",
                                "profile-local-%s.md" % a.local if a.local else
                                "profile-cachehit.md" if a.cachehit else "profile.md")
    for s in (bench.signal.SIGINT, bench.signal.SIGTERM, bench.signal.SIGHUP):
        bench.signal.signal(s, bench.on_signal)
    bench.raise_nofile()
    p = Profile(a)
    rc = 0
    try:
        p.main()
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
            shutil.rmtree(p.run, ignore_errors=True)
        else:
            log("kept %s" % p.run)
    return rc


if __name__ == "__main__":
    sys.exit(main())

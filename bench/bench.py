#!/usr/bin/env python3
"""
hcgw benchmark suite: hcgw against nginx doing the same proxy job, on loopback only.

bench/run.sh installs what is missing, builds the release preset and runs this file; see
bench/README.md for the method. Everything it starts is recorded and stopped when it ends,
whether it finishes, fails, or gets Ctrl-C / SIGTERM / SIGHUP. Every wait is bounded.

Phases, each with fresh processes:
  1. start-up to ready and idle RSS (hcgw and nginx, alternating);
  2. the matrix: workers {1, 2} x upstream {fast, slow} x c {10, 100, 1000} x target
     {direct, nginx, hcgw}, REPS runs each, nginx and hcgw alternating (their order flips every
     run), medians quoted;
  3. HTTPS: the fast upstream over TLS against plain HTTP, c=100, one worker, alternating;
  4. the default pool (upstream.max_connections = 64) with the slow upstream at c=1000, hcgw
     only, to show what the pool size does;
  5. the cache-hit path: GET /contacts/{id} answered from hcgw's contact cache against nginx
     answering it from its proxy_cache, one worker each, c=100 and 1000, alternating runs
     (--phases cachehit alone writes bench/results/cachehit-latest.md).
Writes a markdown report to stdout and bench/results/latest.md (and the raw runs as JSON).
"""
import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# Run as a script, this module is also "bench" to the phase modules that import it (local.py,
# h2.py), so that they share its PROCS (stopped on exit and on signals) rather than load a second
# copy.
sys.modules.setdefault("bench", sys.modules[__name__])
import local  # noqa: E402  (the local answers and idle connections phases, issue 14)

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
API_KEY = "bench-key-0123456789"
POOL = 1024
SLOW_MS = 50
HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Stop(Exception):
    """Raised by the signal handlers so that the finally: clauses stop everything."""


class OutOfTime(Exception):
    """The run's time budget (--max-minutes) is spent: report what was measured."""


_stopping = False


def on_signal(signum, frame):
    global _stopping
    if _stopping:  # a second Ctrl-C (or the TERM that follows it) must not cut the clean-up
        return
    _stopping = True
    raise Stop("signal %d" % signum)


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

class Procs:
    """Every process the suite starts, so that all of them are stopped at the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, cpus=None, stdout=None, stderr=None, name=None):
        pre = None
        if cpus:
            # Pinned between fork and exec (what taskset does, without its own exec in the
            # measured start-up time); threads and forked workers inherit it.
            cpuset = parse_cpus(cpus)

            def pre():
                os.sched_setaffinity(0, cpuset)
        # A new session: a Ctrl-C in the terminal reaches only this script, which then stops
        # its children in order (instead of them dying mid-run in any order).
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout or subprocess.DEVNULL,
                             stderr=stderr or subprocess.DEVNULL, start_new_session=True,
                             cwd=BENCH, preexec_fn=pre)
        p.bench_name = name or os.path.basename(argv[0])
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=5.0):
        if p not in self.procs:
            return
        self.procs.remove(p)
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                log("%s (pid %d) did not stop in %.0f s: SIGKILL" % (p.bench_name, p.pid, wait))
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # its own session: nginx's workers too
                except ProcessLookupError:
                    pass
                p.wait(timeout=5)

    def stop_all(self):
        for p in list(reversed(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log("stopping %s: %s" % (p.bench_name, e))


PROCS = Procs()


def tree_pids(pid):
    """pid and its children (nginx's master and workers; hcgw is one process)."""
    pids = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def cpu_ticks_by_pid(pids):
    """{pid: utime + stime} of the processes still there (nginx's cache loader, started with a
    proxy_cache, exits by itself about a minute after nginx started)."""
    out = {}
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return out


def status_kib(pids, key):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:  # gone since the list was made
            continue
    return total


def reset_hwm(pids):
    for pid in pids:
        try:
            with open("/proc/%d/clear_refs" % pid, "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            continue


def set_affinity(pids, cpus):
    cpuset = parse_cpus(cpus)
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                os.sched_setaffinity(int(tid), cpuset)
            except OSError:
                pass


def parse_cpus(s):
    out = set()
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.update(range(int(a), int(b) + 1))
        else:
            out.add(int(part))
    return out


# ---------------------------------------------------------------- HTTP helpers

def http_get(port, path, timeout=1.0):
    """A minimal HTTP/1.0 GET on loopback: (status, body) or (None, None)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None, None
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.\d (\d+)", head)
    return (int(m.group(1)) if m else None), body


def wait_ready(port, path="/healthz", timeout=10.0, proc=None):
    """Poll until GET path answers 200; returns the seconds it took, or raises."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %d before it was ready" % (proc.bench_name,
                                                                        proc.returncode))
        status, _ = http_get(port, path, timeout=0.5)
        if status == 200:
            return time.monotonic() - t0
        time.sleep(0.0005)
    raise RuntimeError("nothing answered 200 on port %d%s within %.0f s" % (port, path, timeout))


def stub_counts(port):
    """(connections accepted, requests served) so far by an upstream nginx (stub_status)."""
    status, body = http_get(port, "/status")
    if status != 200:
        raise RuntimeError("upstream stub_status on %d answered %s" % (port, status))
    # "Active connections: N \nserver accepts handled requests\n A H R \n..."
    nums = body.decode().split("\n")[2].split()
    return int(nums[0]), int(nums[2])


def stub_accepts(port):
    return stub_counts(port)[0]


def free_ports(n):
    """n free TCP ports on 127.0.0.1, outside the ephemeral range the tests draw from."""
    ports = set()
    while len(ports) < n:
        p = random.randint(20000, 30000)
        if p in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        ports.add(p)
    return sorted(ports)


# ---------------------------------------------------------------- configs

def render(template, out_path, values):
    with open(os.path.join(BENCH, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError("%s: unfilled placeholders %s" % (template, sorted(set(left))))
    with open(out_path, "w") as f:
        f.write(text)
    return out_path


def make_tls(run):
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, made with openssl."""
    d = os.path.join(run, "tls")
    os.makedirs(d)

    def ossl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "2", "-subj", "/CN=hcgw bench CA", "-keyout", "ca.key", "-out", "ca.crt",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=localhost", "-keyout", "upstream.key", "-out", "upstream.csr")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "upstream.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "upstream.crt")
    return d


class Bench:
    def __init__(self, args):
        self.args = args
        self.run = tempfile.mkdtemp(prefix="hcgw-bench-")
        self.hcgw_bin = (getattr(args, "hcgw", None)
                         or os.path.join(ROOT, "build", "release", "hcgw"))
        self.nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
        with open(os.path.join(BENCH, "customer.json")) as f:
            self.customer = f.read().strip()
        json.loads(self.customer)
        assert "'" not in self.customer and "\\" not in self.customer and "$" not in self.customer
        (self.up_fast, self.up_tls, self.up_fast_status, self.up_slow, self.up_slow_status,
         self.p_nginx, self.p_hcgw, self.p_nginx2, self.p_hcgw2) = free_ports(9)
        ncpu = os.cpu_count() or 1
        self.ncpu = ncpu
        self.ca_file_supported = self.hcgw_supports_ca_file()
        self.rows = []       # every measured run
        self.extra = {}      # start-up, idle RSS, TLS, default pool

    # ------------------------------------------------------------ CPU layout

    def layout(self, workers):
        """(load cpus, proxy cpus) as taskset lists: the load (wrk + upstream) and the proxy
        on separate CPUs when there are enough of them, else everything floats."""
        n = self.ncpu
        if n >= workers + 1:
            proxy = "%d-%d" % (n - workers, n - 1) if workers > 1 else str(n - 1)
            load = "0-%d" % (n - workers - 1) if n - workers > 1 else "0"
            return load, proxy
        allc = "0-%d" % (n - 1) if n > 1 else "0"
        return allc, allc

    # ------------------------------------------------------------ processes

    def hcgw_supports_ca_file(self):
        path = os.path.join(self.run, "cacheck.conf")
        with open(path, "w") as f:
            f.write('upstream = { api_key = "x"; ca_file = "/etc/hostname"; };\n')
        r = subprocess.run([self.hcgw_bin, "--check-config", "-c", path], capture_output=True,
                           text=True, timeout=10)
        return "unknown" not in (r.stdout + r.stderr)

    def start_upstreams(self):
        make_tls(self.run)
        vals = dict(RUN=self.run, CUSTOMER=self.customer, UP_FAST_PORT=self.up_fast,
                    UP_TLS_PORT=self.up_tls, UP_FAST_STATUS_PORT=self.up_fast_status,
                    UP_SLOW_PORT=self.up_slow, UP_SLOW_STATUS_PORT=self.up_slow_status,
                    SLOW_SECONDS="%.3f" % (SLOW_MS / 1000.0))
        load, _ = self.layout(1)
        self.upstreams = {}
        for kind, port, sport in (("fast", self.up_fast, self.up_fast_status),
                                  ("slow", self.up_slow, self.up_slow_status)):
            conf = render("upstream-%s.nginx.conf" % kind,
                          os.path.join(self.run, "upstream-%s.conf" % kind), vals)
            p = PROCS.start([self.nginx_bin, "-p", self.run, "-c", conf, "-g", "daemon off;"],
                            cpus=load, name="upstream-" + kind,
                            stderr=open(os.path.join(self.run, "upstream-%s.stderr" % kind), "w"))
            wait_ready(sport, "/status", proc=p)
            self.upstreams[kind] = p
        # Check the answers (and the 50 ms) before measuring anything.
        for kind, port in (("fast", self.up_fast), ("slow", self.up_slow)):
            t0 = time.monotonic()
            st, body = http_get(port, "/v1/customers/1568834")
            dt = (time.monotonic() - t0) * 1000
            if st != 200 or json.loads(body)["id"] != 1568834:
                raise RuntimeError("upstream %s answered %s" % (kind, st))
            log("upstream %s on 127.0.0.1:%d answers 200 in %.1f ms" % (kind, port, dt))
        r = subprocess.run(["curl", "-sS", "--cacert", os.path.join(self.run, "tls", "ca.crt"),
                            "https://127.0.0.1:%d/v1/customers/1" % self.up_tls],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0 or '"id"' not in r.stdout:
            raise RuntimeError("TLS upstream check failed: %s" % r.stderr.strip())

    def up_port(self, kind):
        return {"fast": self.up_fast, "slow": self.up_slow, "tls": self.up_tls}[kind]

    def status_port(self, kind):
        return self.up_slow_status if kind == "slow" else self.up_fast_status

    def start_hcgw(self, workers, upstream, port, cpus, pool=POOL, tag="hcgw", cache_line=""):
        scheme = "https" if upstream == "tls" else "http"
        ca_line = ""
        if scheme == "https":
            ca_line = 'ca_file = "%s";' % os.path.join(self.run, "tls", "ca.crt")
        conf = render("hcgw.bench.conf", os.path.join(self.run, "%s.conf" % tag),
                      dict(HCGW_PORT=port, WORKERS=workers, UP_SCHEME=scheme,
                           UP_PORT=self.up_port(upstream), API_KEY=API_KEY, POOL=pool,
                           CA_FILE_LINE=ca_line, CACHE_LINE=cache_line))
        logf = os.path.join(self.run, "%s.log" % tag)
        t0 = time.monotonic()
        p = PROCS.start([self.hcgw_bin, "-c", conf], cpus=cpus, name=tag,
                        stderr=open(logf, "a"))
        wait_ready(port, proc=p)
        p.bench_log = logf
        p.bench_port = port
        p.bench_ready_s = time.monotonic() - t0
        return p

    def start_nginx(self, workers, upstream, port, cpus, tag="nginx", conf="proxy.nginx.conf"):
        scheme = "https" if upstream == "tls" else "http"
        run = os.path.join(self.run, tag)
        os.makedirs(run, exist_ok=True)
        if not os.path.exists(os.path.join(run, "tls")):
            os.symlink(os.path.join(self.run, "tls"), os.path.join(run, "tls"))
        if conf == "proxy-cache.nginx.conf" and os.geteuid() == 0:
            # Run as root, nginx's workers run as "nobody" and must reach the cache directory
            # that the master creates (and hands to them) inside the run directory: let them
            # through the two folders above it (search permission only, no listing).
            os.chmod(self.run, 0o711)
            os.chmod(run, 0o711)
        conf = render(conf, os.path.join(run, "proxy.conf"),
                      dict(RUN=run, WORKERS=workers, PROXY_PORT=port, UP_SCHEME=scheme,
                           UP_HOST="127.0.0.1", UP_PORT=self.up_port(upstream), POOL=POOL,
                           API_KEY=API_KEY, SSL_VERIFY="on" if scheme == "https" else "off"))
        t0 = time.monotonic()
        p = PROCS.start([self.nginx_bin, "-p", run, "-c", conf, "-g", "daemon off;"], cpus=cpus,
                        name=tag, stderr=open(os.path.join(run, "stderr"), "w"))
        wait_ready(port, proc=p)
        p.bench_ready_s = time.monotonic() - t0
        p.bench_log = os.path.join(run, "proxy.access.log")
        p.bench_port = port
        # nginx's workers appear right after the master answers; wait until all are there.
        for _ in range(200):
            if len(tree_pids(p.pid)) == workers + 1:
                break
            time.sleep(0.01)
        return p

    # ------------------------------------------------------------ one run

    def wrk(self, port, conns, seconds, load, direct=False, during=None, script=None):
        """Run wrk; during(proc), when given, runs while it does (for mid-run samples)."""
        script_args = []
        if isinstance(script, (list, tuple)):  # [script, its arguments...]
            script, script_args = script[0], [str(x) for x in script[1:]]
        threads = len(parse_cpus(load))
        threads = max(1, min(threads, conns))
        argv = ["taskset", "-c", load, "wrk", "-t%d" % threads, "-c%d" % conns,
                "-d%ds" % seconds, "--timeout", "5s", "-s",
                os.path.join(BENCH, script or "delete_tag.lua"), "http://127.0.0.1:%d" % port]
        if direct:
            argv += ["--", "direct", API_KEY]
        elif script == "get_contact.lua":
            argv += ["--", str(self.args.cachehit_ids)]
        elif script_args:
            argv += ["--"] + script_args
        p = PROCS.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, name="wrk")
        try:
            if during is not None:
                during(p)
            out, err = p.communicate(timeout=seconds + 30)
        finally:
            PROCS.stop(p)
        m = re.search(r"BENCH_JSON (\{.*\})", out.decode())
        if p.returncode != 0 or not m:
            raise RuntimeError("wrk failed (%d): %s %s" % (p.returncode, out.decode()[-500:],
                                                           err.decode()[-500:]))
        return json.loads(m.group(1))

    def measure(self, target, proc, upstream, conns, seconds, load, extra=None, script=None):
        """One wrk run against target ("direct", "nginx", "hcgw"), with the proxy's CPU time,
        peak RSS, and the connections the upstream accepted per request it served, in the
        steady part of the run (from 30% of it to 0.5 s before its end): at the start of a
        run the proxies reopen the upstream connections they closed when the previous run's
        wrk hung up on requests in flight, which is not what keep-alive is about."""
        if time.monotonic() + seconds > self.deadline:
            raise OutOfTime()
        if target == "direct":
            port = self.up_port(upstream)
        else:
            port = proc.bench_port
        pids = tree_pids(proc.pid) if proc else []
        if pids:
            reset_hwm(pids)
            ticks0 = cpu_ticks_by_pid(pids)
        sport = self.status_port(upstream)
        acc0 = stub_accepts(sport)
        window = {}

        def sample(p):
            t0 = time.monotonic()
            a, b = max(0.3 * seconds, 0.3), seconds - min(0.5, 0.2 * seconds)
            time.sleep(a)
            window["a"] = stub_counts(sport)
            time.sleep(max(0.0, b - (time.monotonic() - t0)))
            window["b"] = stub_counts(sport)

        w = self.wrk(port, conns, seconds, load, direct=(target == "direct"), during=sample,
                     script=script)
        acc1 = stub_accepts(sport)
        row = dict(target=target, upstream=upstream, c=conns, **(extra or {}))
        secs = w["duration_us"] / 1e6
        row["requests"] = w["requests"]
        row["rps"] = w["requests"] / secs if secs > 0 else 0.0
        row["p50_ms"] = w["p50_us"] / 1000.0
        row["p99_ms"] = w["p99_us"] / 1000.0
        row["err_status"] = w["err_status"]
        row["err_socket"] = w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"]
        row["errors"] = row["err_status"] + row["err_socket"]
        row["up_conns_run"] = acc1 - acc0 - 3  # the three later stub_status reads are connections too
        (a_acc, a_req), (b_acc, b_req) = window["a"], window["b"]
        row["up_conns"] = b_acc - a_acc - 1
        row["up_reqs"] = b_req - a_req - 1
        row["up_conns_per_10k"] = row["up_conns"] * 10000.0 / max(1, row["up_reqs"])
        if pids:
            # A process that ended during the run (nginx's cache loader) counts up to its
            # last reading before the run; its time in the run is lost, and it did little.
            ticks1 = cpu_ticks_by_pid(pids)
            ticks = sum(t - ticks0[p] for p, t in ticks1.items() if p in ticks0)
            row["cpu_us_per_req"] = ticks * 1e6 / HZ / max(1, w["requests"])
            row["peak_rss_kib"] = status_kib(pids, "VmHWM")
            row["rss_kib"] = status_kib(pids, "VmRSS")
            # Keep the access logs from filling the disk: they are emptied after every run.
            try:
                os.truncate(proc.bench_log, 0)
            except OSError:
                pass
        return row

    # ------------------------------------------------------------ phases

    def phase_startup(self):
        """Start-up to ready (exec to the first 200 on /healthz) and idle RSS."""
        n = self.args.startup_reps
        load, proxy = self.layout(1)
        res = {"hcgw": {1: [], 2: []}, "nginx": {1: [], 2: []}}
        rss = {"hcgw": {1: [], 2: []}, "nginx": {1: [], 2: []}}
        for workers in (1, 2):
            _, proxy = self.layout(workers)
            for i in range(n):
                order = ("nginx", "hcgw") if i % 2 == 0 else ("hcgw", "nginx")
                for t in order:
                    if t == "hcgw":
                        p = self.start_hcgw(workers, "fast", self.p_hcgw, proxy)
                    else:
                        p = self.start_nginx(workers, "fast", self.p_nginx, proxy)
                    time.sleep(0.3)
                    res[t][workers].append(p.bench_ready_s * 1000.0)
                    rss[t][workers].append(status_kib(tree_pids(p.pid), "VmRSS"))
                    PROCS.stop(p)
        self.extra["startup_ms"] = {t: {w: statistics.median(v) for w, v in d.items()}
                                    for t, d in res.items()}
        self.extra["startup_ms_all"] = res
        self.extra["idle_rss_kib"] = {t: {w: statistics.median(v) for w, v in d.items()}
                                      for t, d in rss.items()}
        log("start-up ms %s, idle RSS KiB %s" % (self.extra["startup_ms"],
                                                 self.extra["idle_rss_kib"]))

    def phase_matrix(self):
        a = self.args
        for workers in a.workers:
            load, proxy = self.layout(workers)
            set_affinity(sum((tree_pids(p.pid) for p in self.upstreams.values()), []), load)
            for upstream in a.upstreams:
                log("workers=%d upstream=%s: load on CPU %s, proxies on CPU %s"
                    % (workers, upstream, load, proxy))
                acc0 = stub_accepts(self.status_port(upstream))
                ng = self.start_nginx(workers, upstream, self.p_nginx, proxy)
                hc = self.start_hcgw(workers, upstream, self.p_hcgw, proxy)
                procs = {"nginx": ng, "hcgw": hc, "direct": None}
                try:
                    for c in a.conns:
                        targets = ["direct", "nginx", "hcgw"]
                        for t in targets:  # warm-up: pools filled, caches hot
                            self.measure(t, procs[t], upstream, c, a.warmup, load)
                        for rep in range(a.reps):
                            pair = ["nginx", "hcgw"] if rep % 2 == 0 else ["hcgw", "nginx"]
                            order = ["direct"] + pair if rep % 2 == 0 else pair + ["direct"]
                            for t in order:
                                row = self.measure(t, procs[t], upstream, c, a.duration, load,
                                                   dict(workers=workers, rep=rep))
                                self.rows.append(row)
                                log("  w=%d %s c=%d %-6s rep %d: %8.0f req/s p50 %6.2f p99 %7.2f"
                                    " ms err %d cpu %s us/req rss %s KiB upconns %d"
                                    % (workers, upstream, c, t, rep, row["rps"], row["p50_ms"],
                                       row["p99_ms"], row["errors"],
                                       "%.1f" % row["cpu_us_per_req"] if t != "direct" else "-",
                                       row.get("peak_rss_kib", "-"), row["up_conns"]))
                finally:
                    PROCS.stop(ng)
                    PROCS.stop(hc)

    def phase_tls(self):
        a = self.args
        load, proxy = self.layout(1)
        set_affinity(sum((tree_pids(p.pid) for p in self.upstreams.values()), []), load)
        c = a.tls_conns
        log("TLS: fast upstream over HTTP and HTTPS, c=%d, one worker" % c)
        procs = {}
        try:
            procs[("nginx", "fast")] = self.start_nginx(1, "fast", self.p_nginx, proxy)
            procs[("hcgw", "fast")] = self.start_hcgw(1, "fast", self.p_hcgw, proxy)
            procs[("nginx", "tls")] = self.start_nginx(1, "tls", self.p_nginx2, proxy,
                                                       tag="nginx-tls")
            if self.ca_file_supported:
                procs[("hcgw", "tls")] = self.start_hcgw(1, "tls", self.p_hcgw2, proxy,
                                                         tag="hcgw-tls")
            keys = list(procs)
            for k in keys:
                self.measure(k[0], procs[k], k[1], c, a.warmup, load)
            for rep in range(a.reps):
                order = keys if rep % 2 == 0 else list(reversed(keys))
                for k in order:
                    row = self.measure(k[0], procs[k], k[1], c, a.duration, load,
                                       dict(workers=1, rep=rep, phase="tls"))
                    self.rows.append(row)
                    log("  %s %s c=%d rep %d: %8.0f req/s p99 %.2f ms cpu %.1f us/req upconns %d"
                        % (k[0], k[1], c, rep, row["rps"], row["p99_ms"], row["cpu_us_per_req"],
                           row["up_conns"]))
        finally:
            for p in procs.values():
                PROCS.stop(p)

    def phase_default_pool(self):
        """hcgw with the default pool (64) against the slow upstream at c=1000: the pool caps
        the throughput at 64 / 50 ms per worker."""
        a = self.args
        load, proxy = self.layout(1)
        set_affinity(sum((tree_pids(p.pid) for p in self.upstreams.values()), []), load)
        hc = self.start_hcgw(1, "slow", self.p_hcgw, proxy, pool=64, tag="hcgw-pool64")
        try:
            self.measure("hcgw", hc, "slow", 1000, a.warmup, load)
            row = self.measure("hcgw", hc, "slow", 1000, a.duration, load,
                               dict(workers=1, rep=0, phase="pool64"))
            self.rows.append(row)
            log("  default pool 64, slow, c=1000: %.0f req/s p99 %.1f ms errors %d upconns %d"
                % (row["rps"], row["p99_ms"], row["errors"], row["up_conns"]))
        finally:
            PROCS.stop(hc)

    def phase_cachehit(self):
        """GET /contacts/{id} from hcgw's contact cache against nginx's proxy_cache: one worker
        each, the proxy pinned to its own CPU, every id read once first (so that each measured
        request is a hit; the upstream's request count over the run says whether any was not),
        then alternating runs at each concurrency."""
        a = self.args
        load, proxy = self.layout(1)
        set_affinity(sum((tree_pids(p.pid) for p in self.upstreams.values()), []), load)
        log("cache hits: GET /contacts/{id} over %d ids, one worker, load on CPU %s, proxies on "
            "CPU %s" % (a.cachehit_ids, load, proxy))
        ng = self.start_nginx(1, "fast", self.p_nginx, proxy, tag="nginx-cache",
                              conf="proxy-cache.nginx.conf")
        hc = self.start_hcgw(1, "fast", self.p_hcgw, proxy, tag="hcgw-cache",
                             cache_line="cache = { ttl_ms = 3600000; };")
        procs = {"nginx": ng, "hcgw": hc}
        try:
            for t, p in procs.items():
                self.fill_cache(t, p.bench_port)
            for c in a.cachehit_conns:
                for t in ("nginx", "hcgw"):
                    self.measure(t, procs[t], "fast", c, a.warmup, load,
                                 script="get_contact.lua")
                for rep in range(a.reps):
                    order = ["nginx", "hcgw"] if rep % 2 == 0 else ["hcgw", "nginx"]
                    for t in order:
                        row = self.measure(t, procs[t], "fast", c, a.duration, load,
                                           dict(workers=1, rep=rep, phase="cachehit"),
                                           script="get_contact.lua")
                        self.rows.append(row)
                        log("  cache hits c=%d %-5s rep %d: %8.0f req/s p50 %6.2f p99 %7.2f ms "
                            "err %d cpu %.1f us/req upstream calls %d"
                            % (c, t, rep, row["rps"], row["p50_ms"], row["p99_ms"],
                               row["errors"], row["cpu_us_per_req"], row["up_reqs"]))
        finally:
            PROCS.stop(ng)
            PROCS.stop(hc)

    def fill_cache(self, target, port):
        """Reads every id the wrk script will ask for, once, and checks the second read is a
        hit (Cache-Status says so for both proxies)."""
        for k in range(self.args.cachehit_ids):
            st, _ = http_get(port, "/contacts/%d" % (1568834 + k), timeout=5.0)
            if st != 200:
                raise RuntimeError("%s: GET /contacts/%d answered %s while filling its cache"
                                   % (target, 1568834 + k, st))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /contacts/1568834 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            head = s.recv(65536).split(b"\r\n\r\n")[0].decode(errors="replace")
        m = re.search(r"(?im)^Cache-Status: *(.*)$", head)
        if not m or "hit" not in m.group(1).lower():
            raise RuntimeError("%s: a second read of a contact is not a hit (Cache-Status %r)"
                               % (target, m.group(1) if m else None))

    # ------------------------------------------------------------ report

    def cell(self, workers, upstream, c, target, phase=None):
        return [r for r in self.rows if r.get("phase") == phase and r["workers"] == workers
                and r["upstream"] == upstream and r["c"] == c and r["target"] == target]

    def report(self):
        from report import make_report
        return make_report(self)

    def main(self):
        a = self.args
        log("run directory %s; %d CPUs; hcgw %s" % (self.run, self.ncpu, self.hcgw_bin))
        t0 = time.monotonic()
        self.deadline = t0 + a.max_minutes * 60
        self.load_before = os.getloadavg()
        self.start_upstreams()
        self.out_of_time = False
        for name, phase in (("startup", self.phase_startup), ("matrix", self.phase_matrix),
                            ("tls", self.phase_tls), ("pool", self.phase_default_pool),
                            ("cachehit", self.phase_cachehit),
                            ("local", lambda: local.phase_local(self)),
                            ("idle", lambda: local.phase_idle(self)),
                            ("h2", lambda: __import__("h2").phase_h2(self))):
            if name not in a.phases:
                continue
            try:
                phase()
            except OutOfTime:
                log("time budget of %d minutes spent: phase %s cut short, later phases skipped"
                    % (a.max_minutes, name))
                self.out_of_time = True
                break
        self.load_after = os.getloadavg()
        self.elapsed_s = time.monotonic() - t0
        self.finished_at = time.strftime("%Y-%m-%d %H:%M %Z")
        self.write_report()

    META = ("load_before", "load_after", "elapsed_s", "finished_at", "ncpu",
            "ca_file_supported", "out_of_time")

    def write_report(self):
        a = self.args
        text = self.report()
        print(text)
        out = a.output
        if out:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "w") as f:
                f.write(text)
            if not a.from_json:
                meta = {k: getattr(self, k, None) for k in self.META}
                meta["args"] = {k: portable_path(v) if k in ("output", "from_json", "hcgw") else v
                                for k, v in vars(a).items()}
                with open(os.path.splitext(out)[0] + ".json", "w") as f:
                    json.dump({"meta": meta, "rows": self.rows, "extra": self.extra}, f,
                              indent=1, default=str)
            log("wrote %s" % out)

    def load_json(self, path):
        """Render the report again from a run's .json (same machine: versions are read now)."""
        with open(path) as f:
            data = json.load(f)
        self.rows = data["rows"]
        # JSON turned the worker-count keys into strings.
        self.extra = {k: ({t: {int(w): x for w, x in d.items()} for t, d in v.items()}
                          if isinstance(v, dict) else v) for k, v in data["extra"].items()}
        for k, v in data.get("meta", {}).items():
            if k in self.META:
                setattr(self, k, v)
        for k, v in data.get("meta", {}).get("args", {}).items():
            if k in ("duration", "warmup", "reps", "startup_reps", "workers", "upstreams",
                     "conns", "tls_conns", "cachehit_conns", "cachehit_ids", "phases",
                     "local_conns", "local_paths", "idle_conns", "idle_reps",
                     "max_header_bytes"):
                setattr(self.args, k, v)


def portable_path(path):
    """A path as a committed report may hold it: relative to the repository when inside it,
    else the file name alone; never an absolute path of the machine that ran the bench."""
    if not path:
        return path
    rel = os.path.relpath(os.path.abspath(path), ROOT)
    return os.path.basename(path) if rel.startswith("..") else rel


def raise_nofile(want=65536):
    """c=1000 through a proxy is 2000+ descriptors in one process; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4096:
        log("warning: only %d file descriptors: c=1000 may fail"
            % resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per cell")
    ap.add_argument("--reps", type=int, default=3, help="runs per cell (medians quoted)")
    ap.add_argument("--startup-reps", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--upstreams", nargs="+", default=["fast", "slow"])
    ap.add_argument("--conns", type=int, nargs="+", default=None,
                    help="concurrencies (default 10 100 1000; --quick: 100)")
    ap.add_argument("--tls-conns", type=int, default=100)
    ap.add_argument("--phases", nargs="+", default=["startup", "matrix", "tls", "pool", "cachehit"],
                    choices=["startup", "matrix", "tls", "pool", "cachehit", "local", "idle",
                             "h2"])
    ap.add_argument("--cachehit-conns", type=int, nargs="+", default=[100, 1000],
                    help="concurrencies of the cache-hit phase")
    ap.add_argument("--cachehit-ids", type=int, default=1000,
                    help="distinct contacts the cache-hit phase reads")
    ap.add_argument("--local-conns", type=int, nargs="+", default=[100, 1000],
                    help="concurrencies of the local phase")
    ap.add_argument("--local-paths", nargs="+", default=local.PATH_KEYS, choices=local.PATH_KEYS,
                    help="the local phase's paths")
    ap.add_argument("--idle-conns", type=int, default=10000,
                    help="idle keep-alive connections of the idle phase")
    ap.add_argument("--idle-reps", type=int, default=3, help="runs of the idle phase, each")
    ap.add_argument("--max-header-bytes", type=int,
                    help="hcgw's limits.max_header_bytes in the local and idle phases "
                         "(default: hcgw's own)")
    ap.add_argument("--output", default=os.path.join(BENCH, "results", "latest.md"),
                    help="markdown report ('' for none)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--hcgw", metavar="PATH",
                    help="the hcgw binary (default build/release/hcgw, which run.sh builds)")
    ap.add_argument("--from-json", metavar="FILE",
                    help="only render the report again from a run's .json (nothing is started)")
    ap.add_argument("--max-minutes", type=int, default=20,
                    help="time budget: past it, no new run starts and the report is written")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 2 s runs, one rep, c=100 only")
    __import__("h2").add_arguments(ap)  # the h2 phase's options (bench/h2.py)
    a = ap.parse_args()
    if a.quick:
        a.duration, a.reps, a.startup_reps = 2, 1, 2
        a.conns = a.conns or [100]
        if a.output == os.path.join(BENCH, "results", "latest.md"):
            a.output = os.path.join(BENCH, "results", "quick.md")
    a.conns = a.conns or [10, 100, 1000]
    if a.quick:
        a.cachehit_conns = [100]
        a.local_conns = [100]
    if set(a.phases) == {"cachehit"} and a.output == os.path.join(BENCH, "results", "latest.md"):
        a.output = os.path.join(BENCH, "results", "cachehit-latest.md")
    if set(a.phases) <= {"local", "idle"} and a.output == os.path.join(BENCH, "results", "latest.md"):
        a.output = os.path.join(BENCH, "results", "local-latest.md")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    raise_nofile()
    b = Bench(a)
    rc = 0
    try:
        if a.from_json:
            b.load_json(a.from_json)
            b.write_report()
        else:
            b.main()
    except Stop as e:
        log("interrupted (%s): stopping everything" % e)
        rc = 130
    except Exception as e:
        log("failed: %s" % e)
        rc = 1
        if os.environ.get("BENCH_DEBUG"):
            raise
    finally:
        # No signal may cut the clean-up short.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        PROCS.stop_all()
        if not a.keep:
            shutil.rmtree(b.run, ignore_errors=True)
        else:
            log("kept %s" % b.run)
    return rc


if __name__ == "__main__":
    sys.exit(main())

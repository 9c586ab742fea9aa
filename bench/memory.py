#!/usr/bin/env python3
"""
Where hcgw's memory goes under load: one hcgw (one worker, the bench's configuration) in front
of the bench's slow (50 ms) or fast upstream, wrk at c connections for a few seconds, and, at
70% of the run, hcgw's /proc/PID/status (VmRSS, VmHWM) and /proc/PID/smaps_rollup (anonymous
and file-backed memory) with the number of its open sockets; over the run, its minor page
faults and CPU time per request. Used for issue 14 (Debian 13's
libraries: bench/results/trixie.md); bench/in-container.sh runs it on either release:

  bench/in-container.sh trixie memory.py --conns 1000
  bench/in-container.sh trixie memory.py --env MALLOC_ARENA_MAX=1 --env GLIBC_TUNABLES=...
  bench/in-container.sh trixie memory.py --wrap "heaptrack -o /out/hcgw"   (then heaptrack_print)

Each --env is set for hcgw only; --wrap puts a command in front of hcgw (its child is measured
with it). Prints one markdown table row per run (--runs); writes nothing else. Bounded: every
run lasts --seconds, and Ctrl-C stops everything it started.
"""
import argparse
import os
import shlex
import signal
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the bench's own process handling and set-up)


def smaps_rollup(pid):
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def stat_counts(pid):
    """(minor page faults, CPU ticks) of the process so far."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(fields[7]), int(fields[11]) + int(fields[12])  # minflt, utime + stime


def sockets(pid):
    n = 0
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if stat.S_ISSOCK(os.stat("/proc/%d/fd/%s" % (pid, fd)).st_mode):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--upstream", default="slow", choices=["slow", "fast"])
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=2, help="runs after a 2 s warm-up")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--wrap", default="", help="a command put in front of hcgw")
    ap.add_argument("--hcgw", metavar="PATH")
    ap.add_argument("--output", default="", help="ignored (bench/in-container.sh passes one)")
    a = ap.parse_args()
    a.cachehit_ids = 1000
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bench.on_signal)
    bench.raise_nofile()
    b = bench.Bench(a)
    try:
        b.start_upstreams()
        load, proxy = b.layout(1)
        bench.set_affinity(sum((bench.tree_pids(p.pid) for p in b.upstreams.values()), []), load)
        for kv in a.env:
            name, _, value = kv.partition("=")
            os.environ[name] = value
        if a.wrap:
            wrapper = os.path.join(b.run, "wrap.sh")
            with open(wrapper, "w") as f:
                f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (a.wrap, shlex.quote(b.hcgw_bin)))
            os.chmod(wrapper, 0o755)
            b.hcgw_bin = wrapper
        hc = b.start_hcgw(1, a.upstream, b.p_hcgw, proxy)
        for kv in a.env:
            os.environ.pop(kv.partition("=")[0], None)
        # The process to read: hcgw itself, also when a wrapper runs it as its child.
        pid = hc.pid
        for _ in range(50):
            kids = bench.tree_pids(hc.pid)[1:]
            if not a.wrap or kids:
                pid = kids[-1] if a.wrap else hc.pid
                break
            time.sleep(0.1)
        b.wrk(b.p_hcgw, a.conns, 2, load)
        print("| run | req | RSS MiB | HWM MiB | Anonymous MiB | Private_Dirty MiB | sockets "
              "| minor faults /req | CPU us/req |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for run in range(a.runs):
            bench.reset_hwm([pid])
            flt0, ticks0 = stat_counts(pid)
            seen = {}

            def sample(p):
                time.sleep(0.7 * a.seconds)
                seen["rss"] = bench.status_kib([pid], "VmRSS")
                seen["smaps"] = smaps_rollup(pid)
                seen["socks"] = sockets(pid)

            w = b.wrk(b.p_hcgw, a.conns, a.seconds, load, during=sample)
            hwm = bench.status_kib([pid], "VmHWM")
            flt1, ticks1 = stat_counts(pid)
            sm = seen.get("smaps", {})
            n = max(1, w["requests"])
            print("| %d | %d | %.1f | %.1f | %.1f | %.1f | %d | %.2f | %.1f |"
                  % (run, w["requests"], seen.get("rss", 0) / 1024, hwm / 1024,
                     sm.get("Anonymous", 0) / 1024, sm.get("Private_Dirty", 0) / 1024,
                     seen.get("socks", 0), (flt1 - flt0) / n,
                     (ticks1 - ticks0) * 1e6 / bench.HZ / n), flush=True)
        # hcgw first: a wrapper (heaptrack) writes its data once hcgw has exited.
        os.kill(pid, signal.SIGTERM)
        try:
            hc.wait(timeout=120)
        except Exception:  # noqa: BLE001  (stopped below all the same)
            pass
        bench.PROCS.stop(hc, wait=30)
    finally:
        bench.PROCS.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

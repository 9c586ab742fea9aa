#!/usr/bin/env python3
"""
A smoke test of the benchmark scripts (bench/), not of hcgw's speed: each runs for a few
seconds against this build and must finish and report what it measured. Label "bench"; not run
by default (it exits 77, which ctest reports as skipped, unless HCGW_BENCH_SMOKE=1):

  HCGW_BENCH_SMOKE=1 ctest --preset asan -L bench

- bench/hot.py --self-test: the stale-read checker, on a made-up history, finds exactly the
  stale reads it holds (a checker that cannot fail fails here);
- bench/hot.py for 6 s, call layer on, one replica: operations answered, the simulator's
  journal complete, every write and read placed in the contact's history, no stale read and no
  upstream 429;
- bench/bench.py --phases cachehit for 1 s per run at c=10 (needs wrk and nginx, else that
  part is skipped): both proxies answer every request from their cache (no upstream call
  during the runs), no error.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("HCGW_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
BENCH = os.path.join(SRC, "bench")


def run(argv, timeout):
    print("+ " + " ".join(argv), flush=True)
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    print(r.stdout[-4000:], flush=True)
    return r.returncode


def check(cond, what):
    if not cond:
        print("FAILED: " + what, flush=True)
        sys.exit(1)
    print("ok: " + what, flush=True)


def main():
    if os.environ.get("HCGW_BENCH_SMOKE") != "1":
        print("skipped: set HCGW_BENCH_SMOKE=1 to run the bench smoke test")
        return 77
    hcgw = os.environ["HCGW_BIN"]
    build = os.path.dirname(os.environ["HCGW_SIM_BIN"])
    check(os.path.dirname(hcgw) == build, "hcgw and hcgw-sim come from one build directory")
    tmp = tempfile.mkdtemp(prefix="hcgw-bench-smoke-")
    try:
        check(run([sys.executable, os.path.join(BENCH, "hot.py"), "--self-test"], 60) == 0,
              "hot.py --self-test: the checker finds the stale reads of a made-up history")

        out = os.path.join(tmp, "hot.md")
        rc = run([sys.executable, os.path.join(BENCH, "hot.py"), "--build", build,
                  "--layer", "on", "--duration", "6", "--callers", "10", "--contacts", "40",
                  "--hot", "5", "--rate", "600", "--output", out], 180)
        check(rc == 0, "hot.py ran")
        with open(os.path.splitext(out)[0] + ".json") as f:
            r = json.load(f)["results"][0]
        check(r["ops"] > 0 and r["ops_answered_2xx"] > 0, "operations were answered (%d of %d)"
              % (r["ops_answered_2xx"], r["ops"]))
        check(r["upstream_calls"] > 0 and r["ops_per_call"] is not None,
              "upstream calls counted (%d)" % r["upstream_calls"])
        check(r["journal_complete"] and r["contacts_log_mismatch"] == 0,
              "the simulator's journal is complete")
        check(r["writes_unplaced"] == 0 and r["reads_unplaced"] == 0,
              "every answered write and read has its place in the contact's history")
        check(r["reads_checked"] > 0 and r["stale_reads"] == 0,
              "no stale read (%d checked)" % r["reads_checked"])
        check(r["upstream_429"] == 0, "no upstream 429")

        if shutil.which("wrk") is None or (shutil.which("nginx") is None
                                           and not os.path.exists("/usr/sbin/nginx")):
            print("wrk or nginx missing: the cache-hit phase is not smoke-tested")
            return 0
        out = os.path.join(tmp, "cachehit.md")
        rc = run([sys.executable, os.path.join(BENCH, "bench.py"), "--phases", "cachehit",
                  "--hcgw", hcgw, "--duration", "1", "--warmup", "1", "--reps", "1",
                  "--cachehit-conns", "10", "--cachehit-ids", "20", "--output", out], 300)
        check(rc == 0, "bench.py --phases cachehit ran")
        with open(os.path.splitext(out)[0] + ".json") as f:
            rows = [x for x in json.load(f)["rows"] if x.get("phase") == "cachehit"]
        check(sorted(x["target"] for x in rows) == ["hcgw", "nginx"], "both proxies measured")
        for x in rows:
            check(x["requests"] > 0 and x["errors"] == 0, "%s: %d requests, no error"
                  % (x["target"], x["requests"]))
            check(x["up_reqs"] == 0, "%s: every request a hit (no upstream call)" % x["target"])
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

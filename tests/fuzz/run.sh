#!/bin/sh
# Run one libFuzzer target for a bounded time, as its CTest entry (label "fuzz") does:
#   run.sh FUZZER SEED_DIR WORK_DIR [libFuzzer flags...]
# The seeds (tests/fuzz/corpus/<target>) are read, never written; what the run finds is kept in
# WORK_DIR/corpus (reused by the next run) and a crashing input in WORK_DIR/artifacts. The time
# is HCGW_FUZZ_SECONDS (default 60) per target; a longer hunt:
#   HCGW_FUZZ_SECONDS=3600 ctest --preset fuzz
# A crash, a leak, an input slower than 10 s or a sanitizer report fails the test: the end of
# libFuzzer's log is printed, with the input's file; replay it with FUZZER WORK_DIR/artifacts/….
# The whole log stays in WORK_DIR/fuzz.log; a clean run prints only libFuzzer's final stats.
set -eu
fuzzer=$1
seeds=$2
work=$3
shift 3
seconds=${HCGW_FUZZ_SECONDS:-60}
# libFuzzer reads -max_total_time=0 as "no limit": 0 means no run here, as in scripts/test.sh.
if [ "$seconds" -eq 0 ]; then
  echo "HCGW_FUZZ_SECONDS=0: not run"
  exit 0
fi
mkdir -p "$work/corpus" "$work/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(dirname "$0")/lsan.supp:print_suppressions=0}
rc=0
# stdin from /dev/null: nothing a fuzzed input names (say, a config's "/dev/stdin") can wait
# on a terminal or on ctest.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$seeds" \
  </dev/null >"$work/fuzz.log" 2>&1 || rc=$?
if [ "$rc" -eq 0 ]; then
  grep -E '^(stat::|Done [0-9]+ runs)' "$work/fuzz.log" || true
else
  tail -n 80 "$work/fuzz.log"
  echo "$(basename "$fuzzer"): libFuzzer exited $rc; the full log is $work/fuzz.log" >&2
fi
exit "$rc"

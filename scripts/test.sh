#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs the packages, builds with
# ASan+UBSan and -Werror (the "asan" preset), and runs every unit and integration test
# with ctest. Extra arguments go to ctest (e.g. -L unit, -R router).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
# The sanitizers turn any report into a failure; leaks are checked at every exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --preset asan "$@"

# The fuzzers (tests/fuzz): the parsers built with clang, libFuzzer, ASan and UBSan, each run
# for HCGW_FUZZ_SECONDS (default 60; two at a time, so about two minutes for the four). Only in
# a whole run: with ctest arguments (a selection) they are skipped, and HCGW_FUZZ_SECONDS=0
# skips them too.
if [[ $# -eq 0 && ${HCGW_FUZZ_SECONDS:-60} != 0 ]]; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$(nproc)"
  ctest --preset fuzz -L fuzz
fi

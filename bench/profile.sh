#!/usr/bin/env bash
# Where hcgw's CPU goes, next to nginx doing the same job: callgrind (instructions per request,
# per library and per function), strace -c (system calls per request) and perf record -e
# cpu-clock (when perf works here). About two minutes; writes bench/results/profile.md.
#   bench/profile.sh [--no-perf] [--cg-seconds N] [--seconds N]
# Same set-up as bench/run.sh (which it calls with --help first to install and build), plus
# valgrind, strace and perf. Everything on 127.0.0.1, bounded, stopped on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bench/run.sh --help >/dev/null
as_root=()
[[ $(id -u) -eq 0 ]] || as_root=(sudo)
missing=()
for p in valgrind strace linux-perf; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null || echo "bench: could not install ${missing[*]}" >&2
fi
exec python3 bench/profile.py "$@"

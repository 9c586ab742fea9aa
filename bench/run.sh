#!/usr/bin/env bash
# The hcgw benchmark suite, in one command (see bench/README.md):
#   bench/run.sh                  the full run (about 12 minutes), writes bench/results/latest.md
#   bench/run.sh --quick          a smoke run (about a minute), writes bench/results/quick.md
#   bench/run.sh --help           every option (durations, repetitions, phases, ...)
# Installs what is missing (Debian 12: wrk, nginx-light with its echo module, openssl, ...; as
# root or through sudo), builds the release preset's hcgw, then runs bench/bench.py. Everything
# runs on 127.0.0.1 with bounded durations; the driver traps INT, TERM and HUP and stops every
# process it started before it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "bench: run as root or install sudo" >&2; exit 1; }
  as_root=(sudo)
fi

# Build dependencies of hcgw itself (idempotent).
scripts/install-deps.sh --build-only

# The bench's own tools. nginx-light is Debian's small nginx; it depends on
# libnginx-mod-http-echo, whose echo_sleep gives the slow upstream its fixed latency.
packages=(wrk nginx-light libnginx-mod-http-echo openssl curl python3 util-linux procps iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "bench: installing ${missing[*]}" >&2
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  # The bench starts its own nginx instances on loopback; the packaged service (port 80 on
  # every interface) must not run, where systemd would have started it.
  if [[ " ${missing[*]} " == *" nginx-light "* && -d /run/systemd/system ]]; then
    "${as_root[@]}" systemctl disable --now nginx.service >/dev/null 2>&1 || true
  fi
fi

# The release preset; only the hcgw binary is needed (the tests, built by the same preset, are
# not, and other work in progress on them cannot break a benchmark run).
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target hcgw >/dev/null

# The driver holds no terminal state: exec it so that Ctrl-C reaches it directly.
exec python3 bench/bench.py "$@"

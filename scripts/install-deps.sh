#!/usr/bin/env bash
# Installs what hcgw needs to build, run and test on Debian 12 (bookworm). Idempotent: it asks
# apt only for the packages that are missing. Runs as root, or through sudo when available.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libmicrohttpd-dev libcurl4-openssl-dev libjson-c-dev libconfig-dev libcmocka-dev
  curl python3 procps
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (need: ${missing[*]})" >&2; exit 1; }
  as_root=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Installs what hcgw needs to build, run and test on Debian 12 (bookworm) or Debian 13 (trixie).
# Idempotent: it asks apt only for the packages that are missing. Runs as root, or through sudo
# when available.
#   scripts/install-deps.sh               everything: build, tests, deploy tests
#   scripts/install-deps.sh --build-only  only what building and the unit tests need (Dockerfile)
set -euo pipefail

# The release, from VERSION_CODENAME in /etc/os-release: the few package names that differ
# between the two releases follow it. Any other system gets Debian 12's names, with a warning.
codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || codename=
case $codename in
  bookworm|trixie) ;;
  *) echo "install-deps: Debian 12 (bookworm) and 13 (trixie) are supported; this is" \
          "'${codename:-unknown}': trying Debian 12's package names" >&2
     codename=bookworm ;;
esac

packages=(
  build-essential cmake pkg-config git ca-certificates
  libmicrohttpd-dev libgnutls28-dev libcurl4-openssl-dev libjson-c-dev libconfig-dev
  libcmocka-dev libssl-dev libhiredis-dev zlib1g-dev curl python3 procps
)
# The Redis unit tests (tests/unit/test_redis*.c) start a real redis-server of their own on a
# free loopback port; without it they are skipped. Where systemd runs, the server the package
# starts (on port 6379) is stopped and not started again at boot, as for prometheus below.
packages+=(redis-server)

# Tools of the deploy tests (tests/deploy/, ctest label "deploy"): a YAML linter and YAML for
# Python. The image's build stage needs none of them: `install-deps.sh --build-only` skips them.
# Not installed here: kubectl (with kustomize v5; Debian 12's own kubernetes-client has a
# kustomize too old for deploy/kubernetes), without which the deploy test skips its renders, and
# a container engine (podman or docker) for the container test (label "container"), which is
# skipped, saying why, when no engine can build and run a container on the machine.
deploy_packages=(yamllint python3-yaml)
# Tools of the contract, metrics and install tests (labels "contract", "metrics", "install"):
# promtool (in Debian's prometheus), groff and man for the man page, dpkg-dev and file for CPack's .deb,
# and Node.js with npm for tests/contract (@redocly/cli, ajv; pinned in its package-lock.json).
# A machine with node and npm from elsewhere keeps them (NodeSource's nodejs bundles npm and
# conflicts with Debian's npm package).
tool_packages=(prometheus groff-base man-db dpkg-dev file)
command -v node >/dev/null || tool_packages+=(nodejs)
command -v npm >/dev/null || tool_packages+=(npm)
# The fuzz preset (tests/fuzz, label "fuzz"): clang, libFuzzer with the sanitizer runtimes of
# that clang (libclang-rt-14-dev on Debian 12, whose clang is 14; libclang-rt-19-dev on Debian
# 13, whose clang is 19) and llvm-symbolizer (llvm) for readable reports; openssl makes the
# certificates of the TLS tests (tests/integration/test_secure_defaults.py, test_tls.py, and
# tests/metrics) at test time.
case $codename in
  bookworm) clang_rt=libclang-rt-14-dev ;;
  trixie) clang_rt=libclang-rt-19-dev ;;
esac
fuzz_packages=(clang "$clang_rt" llvm openssl)
# The browser test (tests/browser, ctest label "browser"): Debian's headless-capable Chromium,
# which loads pages whose scripts call hcgw with fetch() (CORS). Without it the test is skipped.
browser_packages=(chromium)
# The HTTP/2 test (tests/integration/test_http2.py): Debian's nginx (nginx-light has http_v2 and
# ssl), started by the test as an HTTP/2-over-TLS upstream in front of hcgw-sim; skipped where
# it is missing. Where systemd runs, the server the package starts (on port 80) is stopped and
# not started again at boot, as for redis-server and prometheus below.
http2_packages=(nginx-light)
if [[ ${1:-} != --build-only ]]; then
  packages+=("${deploy_packages[@]}" "${tool_packages[@]}" "${fuzz_packages[@]}"
             "${browser_packages[@]}" "${http2_packages[@]}")
fi

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
# Only promtool is wanted from the prometheus package: where systemd runs, the server it starts
# (on port 9090) is stopped and not started again at boot.
if [[ " ${missing[*]} " == *" prometheus "* && -d /run/systemd/system ]]; then
  "${as_root[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
if [[ " ${missing[*]} " == *" redis-server "* && -d /run/systemd/system ]]; then
  "${as_root[@]}" systemctl disable --now redis-server.service >/dev/null 2>&1 || true
fi
if [[ " ${missing[*]} " == *" nginx-light "* && -d /run/systemd/system ]]; then
  "${as_root[@]}" systemctl disable --now nginx.service >/dev/null 2>&1 || true
fi

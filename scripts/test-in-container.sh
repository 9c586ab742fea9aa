#!/usr/bin/env bash
# The build and the test suite on a given Debian release, inside a container of it:
#
#   scripts/test-in-container.sh [trixie|bookworm] [ctest arguments...]
#
# trixie (the default) is Debian 13 (libcurl 8.14, libmicrohttpd 1.0.1, glibc 2.41, clang 19);
# bookworm is Debian 12, the release CI runs on directly. With podman (or docker; the engine
# is chosen as by tests/deploy/test_container.py: HCGW_CONTAINER_ENGINE, else podman, else
# docker), it
#   1. makes a test image from debian:<release>-slim with everything scripts/install-deps.sh
#      installs there (tagged with the script's hash: built once, rebuilt when it changes), and a
#      non-root user to run the tests;
#   2. runs a container of it with this tree mounted read-only, copies the tree (without build*/,
#      .git, node_modules, and files its user cannot read) into the container, and there
#   3. builds the release preset and the asan preset (-Wall -Wextra -Werror both), runs
#      `ctest --preset asan` with the ctest arguments given, by default
#      -LE 'container|bench|soak', and then, with no ctest arguments, the fuzzers (fuzz preset,
#      clang) for HCGW_FUZZ_SECONDS each (default 10 here: a smoke run).
# Left out by default: the "container" tests (an engine inside the container would be needed;
# the image test runs on the host), "bench" (timings belong to bench/, not to a pass/fail run)
# and "soak" (minutes of load, run serially; `-L soak` runs it). The container's network is the
# engine's default one: its loopback is its own, and apt and npm are reached through it.
#
# Exits with the suite's result: 0 when the builds and the tests passed. When no engine can run
# a container of the release here, it prints one "skip - ..." line and exits 77 (ctest: skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:-trixie}
[[ $# -gt 0 ]] && shift
case $release in
  bookworm|trixie) ;;
  *) echo "usage: $0 [trixie|bookworm] [ctest arguments...]" >&2; exit 2 ;;
esac
base=docker.io/library/debian:$release-slim

# The engine: the first that answers `info` and can run the base image (pulled if missing).
why=()
engine=
for e in ${HCGW_CONTAINER_ENGINE:-podman docker}; do
  if ! command -v "$e" >/dev/null; then why+=("$e: not found"); continue; fi
  if ! "$e" info >/dev/null 2>&1; then why+=("$e: '$e info' failed"); continue; fi
  if ! "$e" image inspect "$base" >/dev/null 2>&1 && ! "$e" pull -q "$base" >/dev/null 2>&1; then
    why+=("$e: $base cannot be pulled"); continue
  fi
  if ! "$e" run --rm "$base" true >/dev/null 2>&1; then
    why+=("$e: cannot run a container of $base"); continue
  fi
  engine=$e
  break
done
if [[ -z $engine ]]; then
  IFS=';'
  echo "skip - no container engine can run $base here: ${why[*]}" \
       "(HCGW_CONTAINER_ENGINE chooses the engine)"
  exit 77
fi

# The test image: the release with the project's packages, named after install-deps.sh's hash.
hash=$(sha256sum scripts/install-deps.sh | cut -c1-12)
image=localhost/hcgw-test:$release-$hash
if ! "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "test-in-container: making $image (scripts/install-deps.sh on $base)" >&2
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp scripts/install-deps.sh "$ctx/"
  cat >"$ctx/Containerfile" <<EOF
FROM $base
LABEL io.hcgw.test-image="$release"
COPY install-deps.sh /usr/local/sbin/hcgw-install-deps
RUN hcgw-install-deps && rm -rf /var/lib/apt/lists/* \\
    && useradd --create-home --shell /bin/bash tester
EOF
  "$engine" build -q -t "$image" -f "$ctx/Containerfile" "$ctx" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
  # The images of earlier versions of install-deps.sh for this release are not needed again.
  "$engine" images --filter "label=io.hcgw.test-image=$release" --format '{{.Repository}}:{{.Tag}}' |
    grep -vx "$image" | xargs -r "$engine" rmi >/dev/null 2>&1 || true
fi

args=("$@")
((${#args[@]})) || args=(-LE 'container|bench|soak')
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
run_fuzz=$(( $# == 0 ))
# The script run inside: $1 is the commit, $2 whether to run the fuzzers, the rest ctest's.
inside='set -euo pipefail
commit=$1 run_fuzz=$2; shift 2
mkdir -p ~/src && cd ~/src
tar -C /repo --ignore-failed-read --exclude="./build*" --exclude=./.git --exclude=node_modules -cf - . | tar -xf -
. /etc/os-release
echo "test-in-container: $PRETTY_NAME; libcurl $(pkg-config --modversion libcurl)," \
     "libmicrohttpd $(pkg-config --modversion libmicrohttpd), glibc $(ldd --version | sed -n "1s/.* //p")," \
     "$(gcc --version | head -1)"
cmake --preset release -DHCGW_COMMIT="$commit" >/dev/null
cmake --build --preset release -j"$(nproc)"
cmake --preset asan -DHCGW_COMMIT="$commit" >/dev/null
cmake --build --preset asan -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --preset asan "$@"
if [[ $run_fuzz == 1 && $HCGW_FUZZ_SECONDS != 0 ]]; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j"$(nproc)"
  ctest --preset fuzz -L fuzz
fi'
exec "$engine" run --rm --init --user tester -v "$PWD:/repo:ro" \
  -e HCGW_FUZZ_SECONDS="${HCGW_FUZZ_SECONDS:-10}" -e HCGW_SOAK_SECONDS \
  "$image" bash -c "$inside" inside "$commit" "$run_fuzz" "${args[@]}"

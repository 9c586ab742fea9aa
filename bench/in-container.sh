#!/usr/bin/env bash
# The bench (or its profile) on a given Debian release's libraries, in a container of it:
#
#   bench/in-container.sh trixie|bookworm bench.py|profile.py [arguments...]
#   bench/in-container.sh trixie bench.py --phases matrix --workers 1 --upstreams slow --conns 1000
#
# Makes (once) an image from debian:<release>-slim with hcgw's build dependencies
# (scripts/install-deps.sh --build-only) and the bench's tools (wrk, nginx-light with its echo
# module, valgrind, strace, heaptrack), runs a container of it on the host's network (the bench
# listens on 127.0.0.1 only), copies this tree into it, builds the release preset's hcgw there
# and runs bench/bench.py or bench/profile.py with the arguments given. Reports are written to
# bench/results/<release>/ of this tree (mounted; the default file names of bench.py and
# profile.py, under that directory). The engine: HCGW_CONTAINER_ENGINE, else podman, else
# docker. Both releases' images stay, so that runs of one and the other can alternate.
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:-}
tool=${2:-}
case $release in bookworm|trixie) ;; *) tool= ;; esac
case $tool in bench.py|profile.py|memory.py) ;; *)
  echo "usage: $0 trixie|bookworm bench.py|profile.py|memory.py [arguments...]" >&2; exit 2 ;;
esac
shift 2
engine=
for e in ${HCGW_CONTAINER_ENGINE:-podman docker}; do
  command -v "$e" >/dev/null && "$e" info >/dev/null 2>&1 && { engine=$e; break; }
done
[[ -n $engine ]] || { echo "bench: no container engine (podman or docker) works here" >&2; exit 1; }

containerfile="FROM docker.io/library/debian:$release-slim
LABEL io.hcgw.bench-image=\"$release\"
COPY install-deps.sh /usr/local/sbin/hcgw-install-deps
RUN hcgw-install-deps --build-only \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
       wrk nginx-light libnginx-mod-http-echo openssl curl python3 util-linux procps iproute2 \\
       valgrind strace heaptrack >/dev/null \\
    && rm -rf /var/lib/apt/lists/*"
# Named after what it is made of: made again when the package script or this list changes.
hash=$( (cat scripts/install-deps.sh; echo "$containerfile") | sha256sum | cut -c1-12)
image=localhost/hcgw-bench:$release-$hash
if ! "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "bench: making $image" >&2
  ctx=$(mktemp -d)
  cp scripts/install-deps.sh "$ctx/"
  echo "$containerfile" >"$ctx/Containerfile"
  "$engine" build -q -t "$image" -f "$ctx/Containerfile" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

out=bench/results/$release
mkdir -p "$out"
default_out=$([[ $tool == profile.py ]] && echo profile.md || echo latest.md)
# --network host: loopback is the host's, as for a bench run on the host. SYS_PTRACE: strace.
exec "$engine" run --rm --init --network host --cap-add SYS_PTRACE \
  -v "$PWD:/repo:ro" -v "$PWD/$out:/out" "$image" bash -c '
set -euo pipefail
tool=$1 default_out=$2; shift 2
mkdir -p /src && cd /src
tar -C /repo --ignore-failed-read --exclude="./build*" --exclude=./.git --exclude=node_modules -cf - . | tar -xf -
echo "bench: $(. /etc/os-release; echo "$PRETTY_NAME"): libcurl $(pkg-config --modversion libcurl)," \
     "libmicrohttpd $(pkg-config --modversion libmicrohttpd), glibc $(ldd --version | sed -n "1s/.* //p")" >&2
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target hcgw >/dev/null
case " $* " in *" --output "*) ;; *) set -- --output "/out/$default_out" "$@" ;; esac
exec python3 "bench/$tool" "$@"' bench "$tool" "$default_out" "$@"

#!/usr/bin/env bash
# Build hcgw and run it against the bundled HelpCrunch simulator (hcgw-sim), with no real key:
# a throwaway key is made for this run and given to both. Ctrl-C stops both.
#   scripts/run.sh            hcgw on 127.0.0.1:8080, the simulator on 127.0.0.1:8090
#   HCGW_PORT=9000 SIM_PORT=9001 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"

port=${HCGW_PORT:-8080}
sim_port=${SIM_PORT:-8090}
key="dev-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
conf=$(mktemp -t hcgw-dev-XXXX.conf)
cat >"$conf" <<CONF
# Made by scripts/run.sh: hcgw in front of the local simulator.
listen   = { address = "127.0.0.1"; port = $port; };
upstream = { base_url = "http://127.0.0.1:$sim_port/v1"; timeout_ms = 10000; };
CONF

HCGW_SIM_KEY="$key" build/release/hcgw-sim --port "$sim_port" --quiet &
sim=$!
trap 'kill $sim 2>/dev/null; kill $gw 2>/dev/null; rm -f "$conf"' EXIT
HCGW_API_KEY="$key" build/release/hcgw -c "$conf" &
gw=$!
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
cat <<MSG

hcgw is listening on http://127.0.0.1:$port, in front of the HelpCrunch simulator.
Try:
  curl -s http://127.0.0.1:$port/contacts/1568834
  curl -s -X PUT http://127.0.0.1:$port/contacts/1568834/tags/Lead
  curl -s -X DELETE http://127.0.0.1:$port/contacts/1568834/tags/Lead
  curl -s 'http://127.0.0.1:$port/contacts?limit=2'
Ctrl-C stops both.

MSG
wait $gw

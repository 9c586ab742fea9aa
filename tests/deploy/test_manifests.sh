#!/usr/bin/env bash
# deploy/ checked offline (ctest label "deploy"):
# 1. `kubectl kustomize` renders deploy/kubernetes/base and the five overlays (istio, linkerd,
#    and redis, istio-redis, linkerd-redis with components/redis) with no error and no
#    warning;
# 2. yamllint (tests/deploy/yamllint.yaml, strict) passes on every YAML file in deploy/ and on
#    the six renders;
# 3. check_manifests.py: the schema and the rules deploy/ promises, on each render (see its
#    docstring and check_redis.py's), then its self-test: every security setting removed or
#    broken in turn must be caught, in the renders, the compose file, the systemd unit and
#    deploy/redis;
# 4. every hcgw.conf shipped in deploy/ (container, compose, the kubernetes base and the five
#    overlays) passes the real `hcgw --check-config` (needs HCGW_BIN, which ctest sets), with
#    stand-ins for the secret files they name;
# 5. compose.yaml: parsed and checked (services, loopback ports, read-only, secret files, the
#    simulator's key matching hcgw's, grace period; two replicas on one Redis, one password
#    secret, the fallback arithmetic, throwaway secrets only);
# 6. deploy/redis: redis.conf, the ACL template (against the commands src/ sends), the
#    Dockerfile (check_redis.py), and `sh -n` on its two scripts; the hcgw.conf of each
#    overlay with Redis differs from its original only in the quota and redis groups;
# 7. the systemd unit: the hardening directives, then `systemd-analyze verify` and
#    `systemd-analyze security --offline` (exposure at most 2.0) when systemd-analyze exists.
# deploy/redis's files are run for real by tests/deploy/test_redis_topology.py.
# Prints one line per check and "N passed, N failed, N skipped"; exits 1 if any failed, else 77
# (ctest: skipped) when kubectl is missing and the renders could not be checked, else 0.
# kubectl (with kustomize v5) is not a Debian 12 package (its kubernetes-client's kustomize is
# too old): install it from the Kubernetes project's own packages; without it the renders are
# skipped.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${HCGW_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
deploy=$src/deploy
tmp=$(mktemp -d -t hcgw-deploy-test-XXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0

ok() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; [[ -n ${2:-} ]] && sed 's/^/    /' <<<"$2"; }
skip() { skipped=$((skipped + 1)); echo "skip - $1"; }
# run NAME CMD...: one check, passing when CMD exits 0; its output is shown on failure.
run() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$out"; fi
}

# A Python with PyYAML: the one ctest found, else Debian's (python3-yaml).
py=""
for p in "${PYTHON:-}" /usr/bin/python3 python3; do
  if [[ -n $p ]] && "$p" -c 'import yaml' 2>/dev/null; then py=$p; break; fi
done

command -v yamllint >/dev/null || fail "yamllint is installed (scripts/install-deps.sh)"
[[ -n $py ]] || fail "a python3 with PyYAML (Debian: python3-yaml) is installed"
if ((failed)); then
  echo "$passed passed, $failed failed, $skipped skipped"
  exit 1
fi
kubectl=1
if ! command -v kubectl >/dev/null; then
  kubectl=0
  skip "kubectl is not installed: the kustomize renders and every check of them are SKIPPED"
fi

# 1. Render.
variants=(base istio linkerd redis istio-redis linkerd-redis)
declare -A dirs=([base]=base [istio]=overlays/istio [linkerd]=overlays/linkerd
  [redis]=overlays/redis [istio-redis]=overlays/istio-redis [linkerd-redis]=overlays/linkerd-redis)
((kubectl)) && for v in "${variants[@]}"; do
  if kubectl kustomize "$deploy/kubernetes/${dirs[$v]}" >"$tmp/$v.yaml" 2>"$tmp/$v.err" &&
    [[ ! -s $tmp/$v.err ]] && [[ -s $tmp/$v.yaml ]]; then
    ok "kubectl kustomize renders ${dirs[$v]} ($(grep -c '^kind:' "$tmp/$v.yaml") objects)"
  else
    fail "kubectl kustomize renders ${dirs[$v]} without errors or warnings" "$(cat "$tmp/$v.err")"
  fi
done

# 2. Lint: the sources and the renders.
mapfile -t sources < <(find "$deploy" -name '*.yaml' -o -name '*.yml' | sort)
run "yamllint: ${#sources[@]} YAML files in deploy/" \
  yamllint -s -c "$here/yamllint.yaml" "${sources[@]}"
renders=()
for v in "${variants[@]}"; do renders+=("$tmp/$v.yaml"); done
((kubectl)) && run "yamllint: the ${#renders[@]} rendered base and overlays" \
  yamllint -s -c "$here/yamllint.yaml" "${renders[@]}"

# 3. Schema and rules, then the checker's own mutations.
((kubectl)) && for v in "${variants[@]}"; do
  [[ -s $tmp/$v.yaml ]] || continue
  run "schema and security rules: $v" "$py" "$here/check_manifests.py" k8s "$tmp/$v.yaml" \
    --variant "$v"
done
if ((kubectl)); then
  args=()
  for v in "${variants[@]}"; do args+=("--$v" "$tmp/$v.yaml"); done
  if out=$("$py" "$here/check_manifests.py" self-test "${args[@]}" \
    --unit "$deploy/systemd/hcgw.service" --compose "$deploy/compose/compose.yaml" \
    --redis-files "$deploy/redis" --src "$src/src" 2>&1); then
    ok "self-test: all $(grep -c '^self-test ok' <<<"$out") removed or broken settings are caught"
  else
    fail "self-test: every removed or broken setting is caught" \
      "$(grep -v '^self-test ok' <<<"$out")"
  fi
fi

# 4. The shipped configurations, checked by hcgw itself.
bin=${HCGW_BIN:-}
[[ -z $bin && -x $src/build/asan/hcgw ]] && bin=$src/build/asan/hcgw
if [[ -n $bin && -x $bin ]]; then
  # Files the configurations name under /run/secrets (client token hashes, the Redis
  # password) are mounted at run time; here they are stand-ins in $tmp/secrets.
  mkdir -p "$tmp/secrets/hcgw-redis" "$tmp/conf"
  printf '%064d\n' 0 >"$tmp/secrets/hcgw-client.sha256"
  (umask 077 && echo stand-in-password >"$tmp/secrets/hcgw-redis/password" &&
    echo stand-in-password >"$tmp/secrets/hcgw-redis-password")
  while IFS= read -r conf; do
    rel=${conf#"$deploy"/}
    sed "s#/run/secrets/#$tmp/secrets/#g" "$conf" >"$tmp/conf/${rel//\//_}"
    run "hcgw --check-config deploy/$rel" env -u HCGW_API_KEY_FILE HCGW_API_KEY=check-only \
      "$bin" --check-config -c "$tmp/conf/${rel//\//_}"
  done < <(find "$deploy" -name hcgw.conf | sort)
else
  fail "hcgw binary for --check-config (set HCGW_BIN)"
fi

# 5. Compose.
run "compose.yaml: services, loopback ports, read-only, secrets, keys, grace, Redis" \
  "$py" "$here/check_manifests.py" compose "$deploy/compose/compose.yaml"

# 6. deploy/redis.
run "deploy/redis: redis.conf, users.acl.in, Dockerfile; the overlays' hcgw.conf pairs" \
  "$py" "$here/check_manifests.py" redis "$deploy/redis" "$src/src"
for script in hcgw-redis-start hcgw-redis-probe; do
  run "sh -n deploy/redis/$script" sh -n "$deploy/redis/$script"
done

# 7. systemd.
unit=$deploy/systemd/hcgw.service
run "hcgw.service: hardening directives" "$py" "$here/check_manifests.py" systemd "$unit"
if command -v systemd-analyze >/dev/null; then
  # verify checks that ExecStart's binary exists: point it at the one just built.
  mkdir -p "$tmp/unit"
  if [[ -n $bin && -x $bin ]]; then
    cp "$bin" "$tmp/unit/hcgw"
    sed "s#/usr/local/bin/hcgw#$tmp/unit/hcgw#g" "$unit" >"$tmp/unit/hcgw.service"
    run "systemd-analyze verify hcgw.service" systemd-analyze verify "$tmp/unit/hcgw.service"
  else
    skip "systemd-analyze verify: no hcgw binary"
  fi
  out=$(systemd-analyze security --offline=yes "$unit" 2>&1)
  score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  if [[ -n $score ]] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    ok "systemd-analyze security: exposure $score (at most 2.0)"
  else
    fail "systemd-analyze security: exposure at most 2.0 (got ${score:-none})" "$out"
  fi
else
  skip "systemd-analyze verify and security: systemd-analyze is not installed"
fi

echo "$passed passed, $failed failed, $skipped skipped"
if ((failed)); then
  exit 1
elif ((!kubectl)); then
  exit 77
fi
exit 0

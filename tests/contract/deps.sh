#!/usr/bin/env bash
# Installs the contract tests' Node packages, pinned by package-lock.json (@redocly/cli for the
# lint; ajv and yaml for validate.mjs), with `npm ci` into tests/contract/node_modules, unless
# what is there was installed from this very lock file (node_modules is never committed). ctest
# runs it as contract/deps, and lint.sh and the contract test run it again first (a no-op once
# installed), so each can run alone; it is safe to run by hand, and concurrently. Exits 77 (ctest:
# skipped) and says why when the npm registry cannot be reached.
# Needs node and npm (scripts/install-deps.sh installs Debian's nodejs and npm).
set -euo pipefail
cd "$(dirname "$0")"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "deps.sh: $tool not found; run scripts/install-deps.sh (Debian packages nodejs, npm)" >&2
    exit 1
  fi
done

# One install at a time: the lock file itself is the lock.
exec 9<package-lock.json
flock 9

stamp=node_modules/.hcgw-package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
# npm writes node_modules/.package-lock.json at the end of an install: without it, what is
# there (a stamp left beside a tree that git or a hand removed) is not an install.
if [[ -f $stamp && -f node_modules/.package-lock.json && $(cat "$stamp") == "$want" ]]; then
  exit 0
fi
echo "deps.sh: npm ci in tests/contract (node $(node --version), npm $(npm --version))" >&2
# --loglevel=error: Debian 12's node 18 is below @redocly/cli's declared engines (it runs on it
# all the same; the contract tests check that it does), which npm would warn about.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! NPM_CONFIG_UPDATE_NOTIFIER=false npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
  cat "$log" >&2
  # The npm registry out of reach (no network, or a TLS-intercepting egress proxy whose CA
  # this machine does not have, as in a bare container) is not a defect of the project: the
  # contract tests are skipped (ctest exit 77) and say why. Any other npm failure fails.
  if grep -qE 'SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER|CERT_|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH' "$log"; then
    echo "deps.sh: the npm registry cannot be reached from here: contract tests skipped" >&2
    exit 77
  fi
  exit 1
fi
echo "$want" >"$stamp"

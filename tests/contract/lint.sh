#!/usr/bin/env bash
# Lints docs/openapi.yaml (or the file given) with @redocly/cli, as pinned in package-lock.json,
# with the rules of redocly.yaml (recommended-strict: every warning is an error). Exit 0 when
# the document is clean. Installs the packages first when they are missing (deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
doc=$(realpath "${1:-$here/../../docs/openapi.yaml}")
rc=0
"$here/deps.sh" || rc=$?
if ((rc != 0)); then
  exit "$rc" # 77: skipped, the npm registry is out of reach (deps.sh says so)
fi
cd "$here"
# No usage data sent, no update check, no colour codes in ctest's log.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1
exec node node_modules/@redocly/cli/bin/cli.js lint --config redocly.yaml "$doc"

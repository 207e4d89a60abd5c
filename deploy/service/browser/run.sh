#!/usr/bin/env bash
# Runs the browser check inside the lab's `client` host network namespace with the
# machine's Chromium and Node (only the network namespace is entered).
# Usage: run.sh login|check [--state FILE] [check.js options...]
#   default state file: /var/tmp/ferry-browser-state.json
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cmd=${1:?usage: run.sh login|check [options]}; shift
state=/var/tmp/ferry-browser-state.json
args=()
while (($#)); do
  if [[ $1 == --state ]]; then state=${2:?}; shift 2; else args+=("$1"); shift; fi
done
[[ -x /usr/bin/chromium || -n ${FERRY_CHROMIUM:-} ]] || die "chromium is missing — run 'make deps' (deploy/packages/service.txt)"
dir=$SERVICE_DIR/browser
if [[ ! -d $dir/node_modules/playwright-core ]]; then
  (cd "$dir" && npm install --no-audit --no-fund --silent) >&2 || die "npm install of playwright-core failed in $dir"
fi
pid=$(host_pid client)
exec nsenter -t "$pid" -n -- node "$dir/check.js" "$cmd" --state "$state" "${args[@]}"

#!/bin/bash
# `make demo`: bring the lab up, check hosts a and b, run a container that keeps a
# counter in memory on a, move it to b with plain Podman checkpoint/restore (export,
# copy, import), show that the counter continued, and take the lab down.
# (The reference service replaces this container later.)
#   FERRY=path/to/ferry deploy/demo.sh        FERRY_DEMO_KEEP=1: leave the lab up
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=${FERRY:-build/node/ferry}
[[ -x $FERRY ]] || { echo "demo: $FERRY is not built — run make build" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "demo: needs root (the lab creates namespaces) — run it as root" >&2; exit 2; }

step() { printf '\n== %s\n' "$*"; }
inA() { "$FERRY" lab exec a -- "$@"; }
inB() { "$FERRY" lab exec b -- "$@"; }
ms() { date +%s%3N; }
counterFrom() {  # counterFrom HOST: the counter as seen from the client host
  "$FERRY" lab exec client -- curl -fsS --max-time 2 "http://$1:8080/n"
}
cleanup() {
  if [[ ${FERRY_DEMO_KEEP:-0} != 1 ]]; then
    step "lab down"
    "$FERRY" lab down
  fi
}

step "lab up (hosts a, b, lb, client)"
"$FERRY" lab up
trap cleanup EXIT

if "$FERRY" check --help >/dev/null 2>&1; then
  for h in a b; do
    step "ferry check --host $h"
    "$FERRY" check --host "$h" || echo "demo: ferry check on $h reported problems (continuing)"
  done
else
  step "ferry check: not in this build yet (skipped)"
fi

step "run a counter container on a (busybox httpd serves the value of a shell-loop counter)"
inA podman rm -f -t 0 ferry-demo >/dev/null 2>&1 || true
inB podman rm -f -t 0 ferry-demo >/dev/null 2>&1 || true
inA podman run -d --name ferry-demo -p 8080:8080 localhost/ferry-canary:latest sh -c '
  mkdir -p /www; i=0
  httpd -p 8080 -h /www
  while true; do i=$((i + 1)); echo $i > /www/n.tmp; mv /www/n.tmp /www/n; sleep 0.2; done' >/dev/null
for _ in $(seq 1 50); do counterFrom a >/dev/null 2>&1 && break; sleep 0.1; done
sleep 3
before=$(counterFrom a)
echo "counter on a: $before"

step "move it: checkpoint --export on a, copy, restore --import on b"
t0=$(ms)
inA podman container checkpoint --export /tmp/ferry-demo.tar ferry-demo >/dev/null
t1=$(ms)
inA cat /tmp/ferry-demo.tar | inB sh -c 'cat > /tmp/ferry-demo.tar'
t2=$(ms)
inB podman container restore --import /tmp/ferry-demo.tar >/dev/null
t3=$(ms)
size=$(inB stat -c %s /tmp/ferry-demo.tar)
echo "checkpoint $((t1 - t0)) ms, copy $((t2 - t1)) ms ($((size / 1024)) KiB), restore $((t3 - t2)) ms"
inA podman rm -f -t 0 ferry-demo >/dev/null
inA rm -f /tmp/ferry-demo.tar
inB rm -f /tmp/ferry-demo.tar

after=$(counterFrom b)
sleep 1
later=$(counterFrom b)
echo "counter on b: $after, one second later: $later"
inB podman rm -f -t 0 ferry-demo >/dev/null

step "result"
if ((after >= before && later > after)); then
  echo "PASS: the container answers on b and its counter continued from $before (a restart would count from 1)"
else
  echo "FAIL: counter on a $before, on b $after then $later — the state was not kept"
  exit 1
fi

#!/bin/bash
# `make demo`: the reference service (Apache/PHP + MariaDB) moved live a → b and back by
# the node daemons, while a logged-in browser, the downtime probe and the consistency
# writer use it through the load balancer; the result next to the study's figures.
#   FERRY=path/to/ferry deploy/demo.sh
#   FERRY_DEMO_PROFILE=cloud  FERRY_DEMO_ROWS=10000  FERRY_DEMO_VIDEO_MB=100
#   FERRY_DEMO_SWITCH=proxy|haproxy|nginx|none (the front on lb; none = the study's nginx)
#   FERRY_DEMO_KEEP=1: leave the lab up afterwards;  FERRY_DEMO_BROWSER=0: no Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=${FERRY:-build/node/ferry}
PROFILE=${FERRY_DEMO_PROFILE:-cloud}
ROWS=${FERRY_DEMO_ROWS:-10000}
VIDEO_MB=${FERRY_DEMO_VIDEO_MB:-100}
BROWSER=${FERRY_DEMO_BROWSER:-1}
SWITCH=${FERRY_DEMO_SWITCH:-proxy}
switch_args=(); [[ $SWITCH == none ]] || switch_args=(--switch "$SWITCH")
[[ -x $FERRY ]] || { echo "demo: $FERRY is not built — run make build" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "demo: needs root (the lab creates namespaces) — run it as root" >&2; exit 2; }
export FERRY_BIN=$FERRY

step() { printf '\n== %s\n' "$*"; }
in_host() { local h=$1; shift; "$FERRY" lab exec "$h" -- "$@"; }
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
cleanup() {
  # Only a probe or writer of ours (pids are shared with the machine and get reused).
  in_host client sh -c 'for f in /tmp/demo-probe.pid /tmp/demo-writer.pid; do
      [ -f $f ] && p=$(cat $f) && grep -qa "ferry" /proc/$p/cmdline 2>/dev/null && kill -TERM $p; rm -f $f; done; true' \
    >/dev/null 2>&1 || true
  if [[ ${FERRY_DEMO_KEEP:-0} != 1 ]]; then
    step "lab down"
    deploy/lab/nodes.sh stop 2>/dev/null || true
    "$FERRY" lab down
  fi
  rm -rf "$work"
}

step "lab up: hosts a, b (Podman + runc + CRIU 4.2), lb (nginx), client; link profile $PROFILE"
"$FERRY" lab up --profile "$PROFILE"
trap cleanup EXIT

step "the reference service on a: MariaDB ($ROWS users) + Apache/PHP, $VIDEO_MB MB of video; on lb: $([[ $SWITCH == none ]] && echo "the study's nginx" || echo "the $SWITCH front and ferry's switch agent")"
deploy/lab/nodes.sh reset >/dev/null 2>&1 || true
"$FERRY" lab deploy --on a --rows "$ROWS" --video-mb "$VIDEO_MB" "${switch_args[@]}"
in_host b rm -rf /srv/ferry/ref

step "node daemons on a (active) and b (standby): CurveZMQ link, continuous block-delta mirroring"
deploy/lab/nodes.sh start
in_host a ferry status --wait in-sync --timeout 300

browser_state=$work/browser.json
if [[ $BROWSER == 1 ]]; then
  step "a real Chromium logs in through the load balancer and plays a video"
  deploy/service/browser/run.sh login --state "$browser_state" >"$work/browser-before.json" ||
    { echo "demo: the browser login failed (continuing without it): $(cat "$work/browser-before.json")"; BROWSER=0; }
fi

step "client: the probe (every 10 ms) and the consistency writer (every 20 ms) through http://lb, 15 s deadlines"
in_host client sh -c 'rm -f /tmp/demo-*.json; ferry probe --url http://lb/health.php --interval 10ms --timeout 15s --duration 600s \
    --timeline /tmp/demo-probe.csv --output json >/tmp/demo-probe.json 2>/tmp/demo-probe.err </dev/null & echo $! >/tmp/demo-probe.pid
  ferry writer --url http://lb --writer demo-$$ --interval 20ms --timeout 15s --duration 600s --output json \
    >/tmp/demo-writer.json 2>/tmp/demo-writer.err </dev/null & echo $! >/tmp/demo-writer.pid'
sleep 3

step "ferry migrate web db --to b ${switch_args[*]}   (on a)"
in_host a ferry migrate web db --to b "${switch_args[@]}" || true
in_host a ferry migrations show "$(in_host a ferry migrations list --output json | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)" --output json >"$work/report.json"
sleep 2

step "stopping the probe and the writer (the writer reads every row back to check it)"
in_host client sh -c 'kill -TERM $(cat /tmp/demo-probe.pid) $(cat /tmp/demo-writer.pid) 2>/dev/null
  for i in $(seq 600); do
    if ! kill -0 $(cat /tmp/demo-probe.pid) 2>/dev/null && ! kill -0 $(cat /tmp/demo-writer.pid) 2>/dev/null; then exit 0; fi
    sleep 0.2
  done
  echo "demo: the probe or the writer did not stop within 120 s" >&2; true'
in_host client rm -f /tmp/demo-probe.pid /tmp/demo-writer.pid
in_host client cat /tmp/demo-probe.json >"$work/probe.json" 2>/dev/null || true
in_host client cat /tmp/demo-writer.json >"$work/writer.json" 2>/dev/null || true
for f in probe writer; do
  [[ -s $work/$f.json ]] || { echo "demo: the $f printed no report: $(in_host client tail -3 /tmp/demo-$f.err 2>/dev/null)"; echo '{}' >"$work/$f.json"; }
done
browser_after='{"logged_in": null}'
if [[ $BROWSER == 1 ]]; then
  browser_after=$(deploy/service/browser/run.sh check --state "$browser_state" 2>/dev/null || true)
  [[ -n $browser_after ]] || browser_after='{"logged_in": false}'
fi

step "the result, next to the study (Google Cloud ↔ AWS, nginx, rsync + Podman, 10000 rows)"
python3 - "$work/report.json" "$work/probe.json" "$work/writer.json" "$browser_after" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1])).get("report", {})
probe = json.load(open(sys.argv[2]))
writer = json.load(open(sys.argv[3]))
browser = json.loads(sys.argv[4]) if sys.argv[4].strip().startswith("{") else {}
def s(ms): return "%.2f s" % (ms / 1000.0) if isinstance(ms, (int, float)) else "-"
rows = [
  ("result", rep.get("result", "?"), "-"),
  ("downtime (server: first freeze → last restore)", s(rep.get("downtime_ms")), "34.6 s (mean)"),
  ("migration time (command → commit)", s(rep.get("migration_ms")), "71.6 s (mean)"),
  ("downtime seen by the client (probe, 10 ms)", s(probe.get("client_downtime_ms")), "not measured"),
  ("failed requests (probe)", str(probe.get("failed", "?")) + " of " + str(probe.get("sent", "?")), "not measured"),
  ("longest request (probe)", s(probe.get("max_ms")), "not measured"),
  ("traffic switch-over", (lambda sw: "%s: held %s, released %s" % (sw.get("driver"), sw.get("commit", {}).get("held", "?"), sw.get("commit", {}).get("released", "?")) if sw else "none (nginx fails over)")(rep.get("switch")), "nginx upstream edited by hand"),
  ("acknowledged writes lost (writer)", str(writer.get("missing", "?")) + " of " + str(writer.get("acknowledged", "?")), "not measured"),
  ("browser still logged in", str(browser.get("logged_in")), "yes (LMF_04)"),
  ("checkpoint moved (on the wire)", "%.1f MB (%.1f MB)" % (rep.get("checkpoint_bytes", 0) / 1e6, rep.get("checkpoint_wire_bytes", 0) / 1e6), "~200 MB gzip"),
  ("last delta of the data directory", "%.1f kB" % (rep.get("last_delta_bytes", 0) / 1e3), "rsync of everything"),
]
w = max(len(r[0]) for r in rows)
print("  %-*s  %-18s %s" % (w, "", "ferry (this run)", "the study"))
for r in rows: print("  %-*s  %-18s %s" % (w, r[0], r[1], r[2]))
print("\n  phases:", ", ".join("%s %s" % (p["name"], s(p["ms"])) for p in rep.get("phases", [])))
PY

step "and back: ferry migrate web db --to a ${switch_args[*]}   (on b, now the active node)"
in_host b ferry migrate web db --to a "${switch_args[@]}" || true

step "the standby (b) against the active copy (a): ferry sync --flush, then ferry verify"
# The database is live: InnoDB may write between the flush and the comparison, so a
# difference is checked again after another flush before it counts.
for attempt in 1 2 3; do
  in_host a ferry sync --flush --timeout 120 >/dev/null
  if in_host a ferry verify; then break; fi
  ((attempt < 3)) || exit 1
  echo "(the live database wrote meanwhile; flushing and comparing again)"
  sleep 2
done

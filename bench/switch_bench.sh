#!/usr/bin/env bash
# Migrations in series under load, per traffic switch-over driver (issues 5 and 6).
#
#   bench/switch_bench.sh --out DIR [--profile cloud] [--rows 10000] [--video-mb 625]
#                         [--state-mb 0] [--runs 10] [--drivers none,proxy,haproxy,nginx]
#                         [--keep-lab] [--report-only]
#
# One deploy of the reference service (rows, video, state) on `a`, a fresh replica on
# `b`; then for every driver: that front on lb (`none` = the study's setup: nginx with
# both servers in one upstream, `lb.sh apply`), and --runs migrations of web+db
# alternating a→b, b→a with `ferry migrate --switch DRIVER`, each under the probe (a
# request every 10 ms, with the session) and the consistency writer, both through lb,
# both with 15 s deadlines (a held request is not a failed one). Needs the lab's hosts
# (brings the lab up with --profile when it is down) and root.
#
# Writes DIR/runs.csv (one line per migration) and DIR/summary.md (mean, p50, p95 per
# driver); DIR/runs/NNN-DRIVER/ keeps each run's migrate report, probe and writer JSON.
# Server-side downtime is ferry's (first freeze → last restore done), the client's is the
# probe's longest stretch without a good answer; max_request_ms is the probe's slowest.
set -euo pipefail
REPO=${FERRY_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
FERRY=${FERRY:-$REPO/build/node/ferry}
out=""; profile=cloud; rows=10000; video=625; state=0; runs=10; drivers=none,proxy,haproxy,nginx; keep=0; report_only=0
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --video-mb) video=$2; shift 2 ;;
    --state-mb) state=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --drivers) drivers=$2; shift 2 ;;
    --keep-lab) keep=1; shift ;;
    --report-only) report_only=1; shift ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "switch_bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "switch_bench: --out DIR is required" >&2; exit 2; }
command -v jq >/dev/null || { echo "switch_bench: needs jq (deploy/packages/bench.txt)" >&2; exit 2; }
[[ -x $FERRY ]] || { echo "switch_bench: no ferry at $FERRY (make build)" >&2; exit 2; }
export FERRY_BIN=$FERRY FERRY_SOURCE_DIR=$REPO
mkdir -p "$out/runs"
log() { printf '%s switch_bench: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
on() { local h=$1; shift; "$FERRY" lab exec "$h" -- "$@"; }
other() { [[ $1 == a ]] && echo b || echo a; }

active() {
  local h
  for h in a b; do
    [[ $(on "$h" ferry status --output json 2>/dev/null | jq -r '.role // empty') == active ]] && { echo "$h"; return; }
  done
  die "no node is active"
}

wait_in_sync() {
  local h=$1 err
  err=$(on "$h" ferry status --wait in-sync --timeout 900 2>&1 >/dev/null) || die "the standby of $h: $err"
}

front() {  # DRIVER HOST
  if [[ $1 == none ]]; then
    "$REPO/deploy/switchover/lb-deploy.sh" --stop >/dev/null
    "$REPO/deploy/service/lb.sh" apply >/dev/null
  else
    "$REPO/deploy/switchover/lb-deploy.sh" --switch "$1" --on "$2" >/dev/null
  fi
}

summary() {
python3 - "$out/runs.csv" >"$out/summary.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def stats(vals, digits=0):
    vals = sorted(float(v) for v in vals if v not in ("", None))
    if not vals: return "–"
    p = lambda q: vals[min(len(vals) - 1, int(round(q * (len(vals) - 1))))]
    return f"{statistics.mean(vals):.{digits}f} / {p(0.5):.{digits}f} / {p(0.95):.{digits}f}"
by = {}
for r in rows: by.setdefault(r["driver"], []).append(r)
r0 = rows[0] if rows else {}
print(f"# Migrations under load per switch-over driver\n")
print(f"profile {r0.get('profile')}, rows {r0.get('rows')}, video {r0.get('video_mb')} MB, state {r0.get('state_mb')} MB; "
      "probe every 10 ms and the writer through lb, 15 s deadlines. Times in ms as mean / p50 / p95.\n")
print("| driver | runs (committed) | server downtime | migration | client downtime | longest request | failed requests (probe + writer, total) | lost writes | session kept | load avg |")
print("|---|---|---|---|---|---|---|---|---|---|")
for d, rs in by.items():
    ok = [r for r in rs if r["result"] == "committed"]
    failed = sum(int(r["probe_failed"] or 0) + int(r["writer_failed"] or 0) for r in rs)
    sent = sum(int(r["probe_sent"] or 0) + int(r["writer_acknowledged"] or 0) + int(r["writer_failed"] or 0) for r in rs)
    checked = [r for r in rs if r["writer_missing"] != ""]
    lost = sum(int(r["writer_missing"]) for r in checked)
    lost = f"{lost}" + ("" if len(checked) == len(rs) else f" ({len(rs) - len(checked)} runs not checked: the writer did not stop)")
    kept = sum(1 for r in rs if r["session_kept"] == "true")
    print(f"| {d} | {len(rs)} ({len(ok)}) | {stats(r['downtime_ms'] for r in ok)} | {stats(r['migration_ms'] for r in ok)} | "
          f"{stats(r['client_downtime_ms'] for r in rs)} | {stats(r['max_request_ms'] for r in rs)} | "
          f"{failed} of {sent} | {lost} | {kept}/{len(rs)} | {stats((r['load_avg'] for r in rs), 1)} |")
PY
}
if ((report_only)); then summary; cat "$out/summary.md"; exit 0; fi

# ---- the lab and one deploy ----
status=$("$FERRY" lab status --output json 2>/dev/null || echo '{}')
if [[ $(jq -r '.up // false' <<<"$status") != true || $(jq -r '.profile // empty' <<<"$status") != "$profile" ]]; then
  log "ferry lab up --profile $profile"
  "$FERRY" lab up --profile "$profile" >&2
fi
log "deploy: rows $rows, video $video MB, state $state MB on a; fresh replica on b"
"$REPO/deploy/lab/nodes.sh" stop >/dev/null 2>&1 || true
"$REPO/deploy/lab/nodes.sh" reset >/dev/null
"$FERRY" lab deploy --on a --rows "$rows" --video-mb "$video" --state-mb "$state" >&2
on b rm -rf /srv/ferry/ref
"$REPO/deploy/lab/nodes.sh" start >/dev/null
t0=$SECONDS
wait_in_sync a
log "replica in sync after $((SECONDS - t0)) s"

csv=$out/runs.csv
header="driver,run,from,to,result,downtime_ms,migration_ms,checkpoint_bytes,checkpoint_wire_bytes,last_delta_bytes,client_downtime_ms,max_request_ms,probe_sent,probe_failed,writer_acknowledged,writer_failed,writer_missing,session_kept,switch_held,switch_retried,switch_refused,switch_failed,switch_ms,load_avg,profile,rows,video_mb,state_mb"
[[ -s $csv ]] || echo "$header" >"$csv"
seq=$(($(wc -l <"$csv") - 1))

IFS=, read -r -a list <<<"$drivers"
for driver in "${list[@]}"; do
  for ((run = 1; run <= runs; run++)); do
    seq=$((seq + 1))
    from=$(active); to=$(other "$from")
    dir=$(printf '%s/runs/%03d-%s' "$out" "$seq" "$driver"); mkdir -p "$dir"
    front "$driver" "$from"
    wait_in_sync "$from"
    on client sh -c "rm -f /tmp/sb-*.json; ferry probe --url http://lb/health.php --interval 10ms --timeout 15s \
      --duration 900s --login user2:pass2 --output json >/tmp/sb-probe.json 2>/tmp/sb-probe.err </dev/null & echo \$! >/tmp/sb-probe.pid
      ferry writer --url http://lb --writer sb$seq-\$\$ --timeout 15s --duration 900s --output json \
      >/tmp/sb-writer.json 2>/tmp/sb-writer.err </dev/null & echo \$! >/tmp/sb-writer.pid"
    sleep 3
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "run $seq: $driver $from→$to (load $load)"
    on "$from" ferry migrate web db --to "$to" --switch "$driver" --output json >"$dir/migrate.json" 2>"$dir/migrate.err" || true
    sleep 2
    for w in probe writer; do
      on client sh -c "kill -TERM \$(cat /tmp/sb-$w.pid); for i in \$(seq 150); do kill -0 \$(cat /tmp/sb-$w.pid) 2>/dev/null || exit 0; sleep 0.2; done; exit 1" \
        || log "run $seq: the $w did not stop"
      on client cat "/tmp/sb-$w.json" >"$dir/$w.json" 2>/dev/null || echo '{}' >"$dir/$w.json"
    done
    jq -r --arg d "$driver" --arg run "$run" --arg from "$from" --arg to "$to" --arg load "$load" \
      --arg profile "$profile" --arg rows "$rows" --arg video "$video" --arg state "$state" \
      --slurpfile p "$dir/probe.json" --slurpfile w "$dir/writer.json" '
      def n(x): if x == null then "" else x end;
      ($p[0] // {}) as $p | ($w[0] // {}) as $w | (.switch.commit // {}) as $c |
      [$d, $run, $from, $to, n(.result), n(.downtime_ms), n(.migration_ms), n(.checkpoint_bytes),
       n(.checkpoint_wire_bytes), n(.last_delta_bytes), n($p.client_downtime_ms), n($p.max_ms), n($p.sent),
       n($p.failed), n($w.acknowledged), ([($w.failed_by_kind // {})[]] | add // 0), n($w.missing),
       n($p.session_kept), n($c.held), n($c.retried), n($c.refused), n($c.failed),
       n([.phases[]? | select(.name == "switch") | .ms][0]), $load, $profile, $rows, $video, $state] | @csv' \
      "$dir/migrate.json" >>"$csv" || die "run $seq: no report (see $dir/migrate.err)"
    result=$(jq -r '.result // "none"' "$dir/migrate.json")
    log "run $seq: $result, downtime $(jq -r '.downtime_ms // 0 | floor' "$dir/migrate.json") ms, client $(jq -r '.client_downtime_ms // 0 | floor' "$dir/probe.json") ms, failed $(jq -r '.failed // "?"' "$dir/probe.json")"
    [[ $result == committed ]] || log "run $seq: not committed: $(jq -r '.reason // ""' "$dir/migrate.json")"
  done
done

# ---- summary ----
summary
cat "$out/summary.md"
((keep)) || "$REPO/deploy/lab/nodes.sh" stop >/dev/null 2>&1 || true

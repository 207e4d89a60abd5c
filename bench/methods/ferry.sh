#!/usr/bin/env bash
# Method `ferry`: `ferry migrate web db --to TO --output json` inside the source host.
# The node daemons must run with FROM active (deploy/lab/nodes.sh start; `ferry bench`
# arranges it); the data directory is already mirrored, so only the checkpoint and the
# last delta move. Roles swap on commit: the next run goes the other way.
# Figures: ferry's own (downtime_ms = first freeze → last restore done, migration_ms =
# command start → commit decision) and the study's, read off the same report: downtime
# from the start of the freeze phase to the end of the restore phase; migration time =
# the source's whole run (total_ms, cleanup included) + the target's (restore + health
# check), as the study summed its two scripts. Absolute times (for the probe's timeline) are the command's start on this
# machine's clock plus the report's offsets.
# Usage and output: bench/methods/lib.sh (the runner contract).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init ferry "$@"

require_service_on_from
step "checking the node daemons (deploy/lab/nodes.sh start)"
role=$(on_host "$FROM" ferry status --output json 2>/dev/null | jq -r '.role // empty' || true)
[[ $role == active ]] || die "the ferry node on $FROM is '${role:-not running}', not active — run deploy/lab/nodes.sh start (ferry bench resets the roles per cell)"
switch=${FERRY_BENCH_SWITCH:-}
[[ -n $switch ]] || switch=$(on_host "$FROM" sed -n 's/^switch *= *//p' /etc/ferry/node.conf 2>/dev/null | tail -n 1 || true)
switch_args=()
[[ -n $switch && $switch != none ]] && switch_args=(--switch "$switch")
clients_start

step "ferry migrate web db --to $TO ${switch_args[*]} on $FROM"
t0=$(now_ms)
on_host "$FROM" timeout "$((BENCH_TIMEOUT_S + 100))" ferry migrate web db --to "$TO" --output json \
  --timeout "$BENCH_TIMEOUT_S" "${switch_args[@]}" \
  >"$RUN_DIR/migrate.json" 2>"$RUN_DIR/migrate.err" || true
report=$(jq -c . "$RUN_DIR/migrate.json" 2>/dev/null) \
  || die "ferry migrate printed no report: $(tail -n 1 "$RUN_DIR/migrate.err")"
result=$(jq -r '.result // "none"' <<<"$report")
[[ $result == committed ]] || die "ferry migrate: $result — $(jq -r '.reason // "no reason given"' <<<"$report")"

clients_stop

method=$(jq -c --argjson t0 "$t0" --arg switch "${switch:-none}" '
  def phase(n): [.phases[] | select(.name == n)][0];
  def need(k): if has(k) then .[k] else error("the report has no \(k)") end;
  (phase("freeze").start_ms) as $freeze | (phase("restore").end_ms) as $restored |
  if $freeze == null or $restored == null then error("the report has no freeze or restore phase") else . end |
  {mode: need("mode"), switch_driver: (.switch_driver // (.switch | objects | .driver) // $switch),
   result: need("result"),
   bytes_moved: need("bytes_transferred"), checkpoint_bytes: need("checkpoint_bytes"),
   checkpoint_wire_bytes: need("checkpoint_wire_bytes"), last_delta_bytes: need("last_delta_bytes"),
   data_sync_bytes: need("last_delta_bytes"),
   downtime_ferry_ms: need("downtime_ms"), migration_ferry_ms: need("migration_ms"),
   downtime_study_ms: ($restored - $freeze),
   sender_total_ms: (.total_ms // need("migration_ms")),
   receiver_total_ms: ((.target_restore_ms // 0) + (.target_health_ms // 0)),
   down_unix_ms: ($t0 + $freeze), up_unix_ms: ($t0 + $freeze + need("downtime_ms")),
   phases: [.phases[] | {name, start_ms, end_ms, ms, bytes: (.bytes // 0)}]}
  | .migration_study_ms = (.sender_total_ms + .receiver_total_ms)' <<<"$report") \
  || die "cannot read ferry migrate's report ($RUN_DIR/migrate.json): $(jq -c . <<<"$report" | head -c 200)"
emit "$method"

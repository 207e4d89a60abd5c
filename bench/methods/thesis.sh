#!/usr/bin/env bash
# Method `thesis`: the study's migration method, step by step (../shared/reference/thesis.md,
# "The migration method"), with plain Podman over the lab network and rsync over SSH:
# thesis/receiver.sh runs in the target (prepare, wait for "OK" on port 12345, restore
# webserver then mysql, UP_TIMESTAMP), thesis/sender.sh in the source (pre-dump rsync,
# DOWN_TIMESTAMP, checkpoint mysql then webserver, rsync of the archives and of the
# changed data, "OK", cleanup). The load balancer is left alone, as in the study (nginx
# with both servers in one upstream).
#
# The study's figures, from its own timestamps:
#   downtime  = UP_TIMESTAMP (end of the receiver's restore) − DOWN_TIMESTAMP (start of dump)
#   migration = sender script's run time + receiver script's run time (after "OK")
# Usage and output: bench/methods/lib.sh (the runner contract).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init thesis "$@"

cp_dir=/var/tmp/ferry-thesis/cp
((SHARED)) && cp_dir=$SHARED_STORAGE_ROOT/cp
work=$(dirname "$cp_dir")

require_service_on_from
((SHARED)) || ssh_setup
for h in "$FROM" "$TO"; do
  on_host "$h" mkdir -p /var/tmp/ferry-thesis "$work"
  on_host "$h" sh -c 'cat > /var/tmp/ferry-thesis/sender.sh' <"$METHODS_DIR/thesis/sender.sh"
  on_host "$h" sh -c 'cat > /var/tmp/ferry-thesis/receiver.sh' <"$METHODS_DIR/thesis/receiver.sh"
done
# The target must not hold the containers already (restore --import names them).
hpodman "$TO" rm -f -t 0 --ignore web db >/dev/null
clients_start

step "receiver on $TO: prepare() and wait for OK on port 12345"
on_host "$TO" bash /var/tmp/ferry-thesis/receiver.sh "$DATA_DIR" "$cp_dir" "$SHARED" "$BENCH_TIMEOUT_S" \
  </dev/null >"$RUN_DIR/receiver.out" 2>"$RUN_DIR/receiver.log" &
receiver_job=$!
deadline=$((SECONDS + 60))
until on_host "$TO" ss -Hltn 'sport = :12345' | grep -q .; do
  kill -0 "$receiver_job" 2>/dev/null || die "the receiver on $TO stopped: $(tail -n 1 "$RUN_DIR/receiver.log")"
  ((SECONDS < deadline)) || die "the receiver on $TO did not listen on port 12345 within 60 s"
  sleep 0.05
done

step "sender on $FROM: pre-dump rsync, dump, post-dump rsync, OK, cleanup"
on_host "$FROM" timeout "$BENCH_TIMEOUT_S" bash /var/tmp/ferry-thesis/sender.sh "$TO" "$DATA_DIR" "$cp_dir" "$SHARED" "$RSYNC_SSH" \
  </dev/null >"$RUN_DIR/sender.out" 2>"$RUN_DIR/sender.log" \
  || die "the sender on $FROM failed: $(tail -n 1 "$RUN_DIR/sender.log")"
step "waiting for the receiver on $TO to restore"
deadline=$((SECONDS + BENCH_TIMEOUT_S))
while kill -0 "$receiver_job" 2>/dev/null; do
  ((SECONDS < deadline)) || { kill "$receiver_job"; die "the receiver on $TO did not finish within $BENCH_TIMEOUT_S s"; }
  sleep 0.1
done
wait "$receiver_job" || die "the receiver on $TO failed: $(tail -n 1 "$RUN_DIR/receiver.log")"
for side in checkpoint-db checkpoint-web; do on_host "$FROM" cat "$work/$side.json" >"$RUN_DIR/$side.json" || true; done
for side in restore-web restore-db; do on_host "$TO" cat "$work/$side.json" >"$RUN_DIR/$side.json" || true; done

clients_stop

# Both scripts' KEY=VALUE lines, as one JSON object, then the columns.
kv=$(cat "$RUN_DIR/sender.out" "$RUN_DIR/receiver.out" | jq -R -s -c '
  split("\n") | map(select(test("^[A-Za-z_]+=")) | capture("^(?<key>[A-Za-z_]+)=(?<value>.*)$")) | from_entries')
for key in SENDER_START_MS PRE_DUMP_END_MS DOWN_MS CHECKPOINT_db_END_MS CHECKPOINT_web_END_MS ARCHIVES_END_MS \
  POST_DUMP_END_MS OK_SENT_MS SENDER_END_MS RECV_START_MS RESTORE_web_END_MS RESTORE_db_END_MS UP_MS; do
  jq -e --arg k "$key" '.[$k] | test("^[0-9]+$")' <<<"$kv" >/dev/null \
    || die "the sender or receiver did not report $key (see $RUN_DIR/sender.out, receiver.out)"
done
method=$(jq -c --argjson t0 "$BENCH_T0_MS" '
  def n(k): .[k] | tonumber;
  def ph(name; s; e; b): {name: name, start_ms: (n(s) - $t0), end_ms: (n(e) - $t0), ms: (n(e) - n(s)), bytes: b};
  (n("PRE_DUMP_BYTES")) as $pre | (n("ARCHIVES_SENT_BYTES")) as $arch | (n("POST_DUMP_BYTES")) as $post |
  {mode: "stop-and-copy", switch_driver: "nginx-upstream",
   bytes_moved: ($pre + $arch + $post), checkpoint_bytes: n("ARCHIVE_BYTES"),
   checkpoint_wire_bytes: $arch, last_delta_bytes: $post, data_sync_bytes: ($pre + $post),
   downtime_study_ms: (n("UP_MS") - n("DOWN_MS")),
   sender_total_ms: (n("SENDER_END_MS") - n("SENDER_START_MS")),
   receiver_total_ms: (n("UP_MS") - n("RECV_START_MS")),
   downtime_ferry_ms: (n("UP_MS") - n("DOWN_MS")),
   migration_ferry_ms: (n("UP_MS") - n("SENDER_START_MS")),
   down_unix_ms: n("DOWN_MS"), up_unix_ms: n("UP_MS"),
   phases: [ph("pre-dump rsync"; "SENDER_START_MS"; "PRE_DUMP_END_MS"; $pre),
            ph("checkpoint mysql"; "DOWN_MS"; "CHECKPOINT_db_END_MS"; 0),
            ph("checkpoint webserver"; "CHECKPOINT_db_END_MS"; "CHECKPOINT_web_END_MS"; 0),
            ph("rsync archives"; "CHECKPOINT_web_END_MS"; "ARCHIVES_END_MS"; $arch),
            ph("post-dump rsync"; "ARCHIVES_END_MS"; "POST_DUMP_END_MS"; $post),
            ph("send OK"; "POST_DUMP_END_MS"; "OK_SENT_MS"; 0),
            ph("restore webserver"; "RECV_START_MS"; "RESTORE_web_END_MS"; 0),
            ph("restore mysql"; "RESTORE_web_END_MS"; "RESTORE_db_END_MS"; 0),
            ph("source cleanup"; "OK_SENT_MS"; "SENDER_END_MS"; 0)]}
  | .migration_study_ms = (.sender_total_ms + .receiver_total_ms)' <<<"$kv") \
  || die "cannot read the sender's and receiver's timestamps (see $RUN_DIR/sender.out, receiver.out)"
emit "$method"

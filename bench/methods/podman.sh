#!/usr/bin/env bash
# Method `podman`: the plain Podman way a user tries first, with nothing prepared on the
# target (its data directory starts empty, like a first move):
#   checkpoint --export (Podman's default zstd) of web, then db; ONE rsync over SSH of
#   the archives and the data directory; restore --import of db, then web; nginx on lb
#   reloaded ("repointed"); the source's containers and the archives removed.
# --tcp-established and --file-locks are what this service needs to be checkpointed at
# all (../shared/ENVIRONMENT.md), so a user ends up with them too. With shared storage
# the archives are written to the shared directory and nothing is copied.
# Server-side figures: downtime from the first checkpoint's start to the end of the last
# restore (the study's definition and ferry's coincide here); the study's migration time
# = source-side work (checkpoint, copy, cleanup) + target-side work (restore, reload);
# ferry's = first checkpoint → lb reloaded (the commit point; cleanup after it).
# Usage and output: bench/methods/lib.sh (the runner contract).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bench_init podman "$@"

cp_dir=/var/tmp/ferry-podman/cp
((SHARED)) && cp_dir=$SHARED_STORAGE_ROOT/cp

require_service_on_from
((SHARED)) || ssh_setup
step "clearing the target $TO (containers, archives$( ((SHARED)) || echo ", data directory"))"
hpodman "$TO" rm -f -t 0 --ignore web db >/dev/null
for h in "$FROM" "$TO"; do on_host "$h" sh -c "mkdir -p $cp_dir && find $cp_dir -mindepth 1 -delete"; done
((SHARED)) || on_host "$TO" sh -c "mkdir -p $DATA_DIR && find $DATA_DIR -mindepth 1 -delete"
clients_start

phase_begin checkpoint
for c in web db; do
  step "checkpoint of $c on $FROM (export, zstd)"
  tpodman "$FROM" container checkpoint --export "$cp_dir/$c.tar" --tcp-established --file-locks --print-stats "$c" \
    >"$RUN_DIR/checkpoint-$c.json" || die "podman container checkpoint --export of $c on $FROM failed"
done
archives=$(file_bytes "$FROM" "$cp_dir/web.tar" "$cp_dir/db.tar")
phase_end checkpoint "$archives"

moved=0
if ((!SHARED)); then
  step "one rsync of the archives and the data directory $FROM → $TO"
  phase_begin copy
  rsync_ssh copy -a --relative "$cp_dir" "$DATA_DIR" "root@$TO:/"
  moved=$RSYNC_SENT
  phase_end copy "$moved"
fi

phase_begin restore
for c in db web; do
  step "restore of $c on $TO (import)"
  tpodman "$TO" container restore --import "$cp_dir/$c.tar" --tcp-established --file-locks --print-stats \
    >"$RUN_DIR/restore-$c.json" || die "podman container restore --import of $c on $TO failed"
done
phase_end restore
up=$(now_ms)

step "nginx on lb reloaded"
phase_begin "lb reload"
"$SERVICE_DIR/lb.sh" apply >/dev/null 2>&1 || die "nginx reload on lb failed"
phase_end "lb reload"
switched=$(now_ms)

step "cleanup on $FROM (containers, archives)"
phase_begin cleanup
hpodman "$FROM" rm -f -t 0 --ignore web db >/dev/null
for h in "$FROM" "$TO"; do on_host "$h" find "$cp_dir" -mindepth 1 -delete; done
phase_end cleanup

clients_stop

down=$(phase_start_unix_ms checkpoint)
method=$(jq -c -n --argjson phases "$BENCH_PHASES" --argjson archives "$archives" --argjson moved "$moved" \
  --argjson down "$down" --argjson up "$up" --argjson switched "$switched" '
  def ms(n): [$phases[] | select(.name == n) | .ms] | add // 0;
  {mode: "stop-and-copy", switch_driver: "nginx-reload",
   bytes_moved: $moved, checkpoint_bytes: $archives, checkpoint_wire_bytes: ([$archives, $moved] | min),
   last_delta_bytes: ([$moved - $archives, 0] | max), data_sync_bytes: ([$moved - $archives, 0] | max),
   downtime_study_ms: ($up - $down), downtime_ferry_ms: ($up - $down),
   sender_total_ms: (ms("checkpoint") + ms("copy") + ms("cleanup")),
   receiver_total_ms: (ms("restore") + ms("lb reload")),
   migration_ferry_ms: ($switched - $down), down_unix_ms: $down, up_unix_ms: $up}
  | .migration_study_ms = (.sender_total_ms + .receiver_total_ms)')
emit "$method"

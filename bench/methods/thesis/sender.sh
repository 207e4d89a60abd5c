#!/usr/bin/env bash
# The study's sender script, run inside the SOURCE host (thesis.sh copies it there):
#   pre_dump_transfer()   rsync -aqz of the data directory to the target over SSH
#   dump()                DOWN_TIMESTAMP; podman container checkpoint --export
#                         <name>.tar.gz --keep --tcp-established, mysql (db) then
#                         webserver (web)
#   post_dump_transfer()  rsync -aqz of the checkpoint archives, then of the data
#                         directory again (only what changed)
#   migrate()             connect to the target's TCP port 12345 and send "OK"
#   cleanup()             stop all containers, prune containers and volumes, delete the data
# Usage: sender.sh TO DATA_DIR CP_DIR SHARED(0|1) SSH_COMMAND
# Differences from the study, all forced by this machine or needed to measure:
#   --compress gzip   Podman 1.6.4 wrote gzip archives; Podman 5 defaults to zstd.
#   --file-locks      MariaDB and PHP sessions hold file locks; CRIU refuses them
#                     otherwise (../shared/ENVIRONMENT.md).
#   --print-stats     CRIU's timings, printed only (no effect on the dump).
#   --stats, no -q    rsync prints how many bytes it sent (the copy is the same).
# With shared storage (the study's local-nfs) data and archives are on the shared
# directory, so nothing is copied and the data is not deleted.
# Prints KEY=VALUE lines (times in ms since the epoch, bytes).
set -euo pipefail
to=$1 data_dir=$2 cp_dir=$3 shared=$4 ssh_cmd=$5
port=12345
now_ms() { date +%s%3N; }
fail() { echo "sender: $*" >&2; exit 1; }
stats_dir=$(dirname "$cp_dir")
sent_bytes() { sed -n 's/^Total bytes sent: *//p' | tr -d ',.' | head -1; }
copy() {  # copy SRC_DIR: rsync -az of SRC_DIR/ to the same path on the target; prints bytes sent
  local out
  out=$(rsync -az --stats -e "$ssh_cmd" "$1/" "root@$to:$1/" </dev/null 2>&1) \
    || fail "rsync of $1 to $to failed: $(tail -n 1 <<<"$out")"
  sent_bytes <<<"$out"
}

echo "SENDER_START_MS=$(now_ms)"

# pre_dump_transfer()
if [[ $shared != 1 ]]; then echo "PRE_DUMP_BYTES=$(copy "$data_dir")"; else echo "PRE_DUMP_BYTES=0"; fi
echo "PRE_DUMP_END_MS=$(now_ms)"

# dump()
down=$(now_ms)
echo "DOWN_TIMESTAMP=$((down / 1000)).$(printf '%03d' $((down % 1000)))"
echo "DOWN_MS=$down"
mkdir -p "$cp_dir"
for c in db web; do
  podman container checkpoint --export "$cp_dir/$c.tar.gz" --compress gzip --keep --tcp-established \
    --file-locks --print-stats "$c" </dev/null >"$stats_dir/checkpoint-$c.json" \
    || fail "podman container checkpoint --export $c.tar.gz failed"
  echo "CHECKPOINT_${c}_END_MS=$(now_ms)"
done
echo "ARCHIVE_BYTES=$(stat -c %s "$cp_dir/db.tar.gz" "$cp_dir/web.tar.gz" | awk '{s += $1} END {printf "%d", s}')"

# post_dump_transfer()
if [[ $shared != 1 ]]; then
  echo "ARCHIVES_SENT_BYTES=$(copy "$cp_dir")"
  echo "ARCHIVES_END_MS=$(now_ms)"
  echo "POST_DUMP_BYTES=$(copy "$data_dir")"
else
  echo "ARCHIVES_SENT_BYTES=0"
  echo "ARCHIVES_END_MS=$(now_ms)"
  echo "POST_DUMP_BYTES=0"
fi
echo "POST_DUMP_END_MS=$(now_ms)"

# migrate()
exec 3<>"/dev/tcp/$to/$port" || fail "cannot connect to $to:$port (is the receiver waiting?)"
printf 'OK' >&3
exec 3>&-
echo "OK_SENT_MS=$(now_ms)"

# cleanup()
podman stop --all --time 10 </dev/null >/dev/null || fail "podman stop --all failed"
podman container prune --force </dev/null >/dev/null || fail "podman container prune failed"
podman volume prune --force </dev/null >/dev/null || fail "podman volume prune failed"
if [[ $shared != 1 ]]; then find "$data_dir" -mindepth 1 -delete; fi
echo "SENDER_END_MS=$(now_ms)"

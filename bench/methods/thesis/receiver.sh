#!/usr/bin/env bash
# The study's receiver script, run inside the TARGET host (thesis.sh copies it there):
#   prepare()  empty the data and checkpoint directories, then wait on TCP port 12345
#   restore()  after "OK": podman container restore --import <name>.tar.gz --keep
#              --tcp-established for webserver (web), then mysql (db); UP_TIMESTAMP.
# Usage: receiver.sh DATA_DIR CP_DIR SHARED(0|1) WAIT_S
# With shared storage (the study's local-nfs) the data directory is the live, shared one
# and is not emptied. Prints KEY=VALUE lines (times in ms since the epoch); podman's
# restore statistics go to CP_DIR/../restore-<name>.json.
set -euo pipefail
data_dir=$1 cp_dir=$2 shared=$3 wait_s=$4
port=12345
now_ms() { date +%s%3N; }
fail() { echo "receiver: $*" >&2; exit 1; }
stats_dir=$(dirname "$cp_dir")

# prepare()
mkdir -p "$cp_dir" "$data_dir"
find "$cp_dir" -mindepth 1 -delete
if [[ $shared != 1 ]]; then find "$data_dir" -mindepth 1 -delete; fi
rm -f "$stats_dir"/restore-*.json

# Wait for "OK" (the sender connects, writes OK, closes). Bounded.
msg=$(timeout "$wait_s" busybox nc -l -p "$port" </dev/null) || fail "no message on port $port within $wait_s s"
[[ $msg == OK* ]] || fail "expected OK on port $port, got '${msg:0:40}'"
echo "RECV_START_MS=$(now_ms)"

# restore(): webserver, then mysql.
for c in web db; do
  podman container restore --import "$cp_dir/$c.tar.gz" --keep --tcp-established --file-locks --print-stats \
    </dev/null >"$stats_dir/restore-$c.json" || fail "podman container restore --import $c.tar.gz failed"
  echo "RESTORE_${c}_END_MS=$(now_ms)"
done
up=$(now_ms)
echo "UP_TIMESTAMP=$((up / 1000)).$(printf '%03d' $((up % 1000)))"
echo "UP_MS=$up"

#!/usr/bin/env bash
# The baseline: a manual move of the running reference service with plain Podman, as
# the study did it (thesis.md, "The migration method"), over the lab network:
#   pre-dump   rsync of the data directory source → target (service still up)
#   DOWN       podman container checkpoint --export (web, then db) on the source
#   post-dump  rsync of the checkpoint archives and of the data directory again
#   UP         podman container restore --import (db, then web) on the target
#   nginx on lb reloaded ("repointed"); the stopped containers removed on the source.
# Copies go through an rsync daemon started on the target for the move (port 8873).
# While it runs, the client host polls http://lb/health.php every 50 ms; a curl cookie
# session made before the move must still be logged in after it.
# Usage: manual-move.sh [--from a] [--to b] [--browser] [--compress zstd|gzip|none]
# Prints a timeline and a one-line JSON summary (last line).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
from=a; to=b; browser=0; compress=zstd
while (($#)); do
  case $1 in
    --from) from=${2:-}; shift 2 ;;
    --to) to=${2:-}; shift 2 ;;
    --browser) browser=1; shift ;;
    --compress) compress=${2:-}; shift 2 ;;
    *) echo "manual-move: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ ($from == a && $to == b) || ($from == b && $to == a) ]] || { echo "manual-move: --from/--to must be a b or b a" >&2; exit 2; }
[[ $compress =~ ^(zstd|gzip|none)$ ]] || { echo "manual-move: --compress must be zstd, gzip or none" >&2; exit 2; }
for h in "$from" "$to" lb client; do host_pid "$h" >/dev/null; done
for c in db web; do
  [[ $(hpodman "$from" inspect --format '{{.State.Status}}' "$c" 2>/dev/null) == running ]] \
    || die "container $c is not running on $from — run 'ferry lab deploy --on $from' first"
done
hpodman "$to" rm -f -t 0 --ignore web db >/dev/null

work=$(mktemp -d /tmp/ferry-move.XXXXXX)
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
cp_dir=/var/tmp/ferry-move
rsync_conf=/run/ferry-move/rsyncd.conf

cleanup() {
  on_host client rm -f /tmp/ferry-move-stop 2>/dev/null || true
  [[ -n ${watch_pid:-} ]] && { on_host client touch /tmp/ferry-move-stop; wait "$watch_pid" 2>/dev/null || true; }
  on_host "$to" sh -c 'test -s /run/ferry-move/rsyncd.pid && kill $(cat /run/ferry-move/rsyncd.pid)' 2>/dev/null || true
}
trap cleanup EXIT

# rsync daemon on the target, for this move only.
on_host "$to" mkdir -p /run/ferry-move "$cp_dir" "$DATA_DIR"
on_host "$to" rm -rf "${cp_dir:?}"/*
printf '%s\n' 'pid file = /run/ferry-move/rsyncd.pid' 'port = 8873' 'use chroot = no' 'uid = root' 'gid = root' \
  "[data]" "  path = $DATA_DIR" '  read only = false' "[cp]" "  path = $cp_dir" '  read only = false' \
  >"/proc/$(host_pid "$to")/root$rsync_conf"
on_host "$to" rsync --daemon --config="$rsync_conf" || die "rsync daemon did not start on $to"
for _ in $(seq 50); do on_host "$from" rsync "rsync://$to:8873/" >/dev/null 2>&1 && break; sleep 0.1; done
# Pre-dump: rsync's quick check, with nanosecond mtimes (--modify-window=-1; the default
# compares whole seconds and misses a same-size file rewritten within that second).
sync_data() { on_host "$from" rsync -a --delete --modify-window=-1 "$DATA_DIR/" "rsync://$to:8873/data/"; }
# Post-dump: the database files and sessions must be byte-identical to what the frozen
# processes saw (CRIU also checks sizes), so those are compared by checksum.
sync_data_final() {
  on_host "$from" rsync -a --delete --modify-window=-1 --exclude /mysql/ --exclude /www/sessions/ \
    "$DATA_DIR/" "rsync://$to:8873/data/" &&
    on_host "$from" rsync -a --delete --checksum "$DATA_DIR/mysql/" "rsync://$to:8873/data/mysql/" &&
    on_host "$from" rsync -a --delete --checksum "$DATA_DIR/www/sessions/" "rsync://$to:8873/data/www/sessions/"
}

# A curl session logged in before the move; optionally the browser too.
on_host client curl -fsS -o /dev/null --max-time 5 -c /tmp/ferry-move-cookies -d user=user2 -d password=pass2 \
  http://lb/login.php || die "curl login through lb failed before the move"
if ((browser)); then
  "$SERVICE_DIR/browser/run.sh" login --state "$work/browser.json" >"$work/browser-before.json" \
    || die "browser login before the move failed: $(cat "$work/browser-before.json")"
fi

# Client-side watcher: bounded (at most 300 s), stops when told.
on_host client rm -f /tmp/ferry-move-stop
on_host client bash -c 'end=$((SECONDS + 300)); while ((SECONDS < end)) && [[ ! -e /tmp/ferry-move-stop ]]; do
    t=$(date +%s.%N); if curl -fsS -o /dev/null --max-time 1 http://lb/health.php 2>/dev/null; then echo "$t ok"; else echo "$t fail"; fi
    sleep 0.05; done' >"$work/watch.txt" &
watch_pid=$!
sleep 1

declare -A T
T[start]=$(now)
sync_data || die "pre-dump rsync $from → $to failed"
T[pre_sync]=$(now)

# DOWN: web first (no more client requests reach the database), then db.
T[down]=$(now)
for c in web db; do
  on_host "$from" mkdir -p "$cp_dir"
  hpodman "$from" container checkpoint --export "$cp_dir/$c.tar" --compress "$compress" \
    --tcp-established --file-locks --print-stats "$c" >"$work/checkpoint-$c.json" \
    || die "checkpoint of $c on $from failed"
  T[checkpoint_$c]=$(now)
done
on_host "$from" rsync -a "$cp_dir/" "rsync://$to:8873/cp/" || die "copy of the checkpoints to $to failed"
T[copy_cp]=$(now)
cp_bytes=$(on_host "$from" sh -c "stat -c %s $cp_dir/web.tar $cp_dir/db.tar" | paste -sd' ')
sync_data_final || die "post-dump rsync $from → $to failed"
T[post_sync]=$(now)
for c in db web; do
  hpodman "$to" container restore --import "$cp_dir/$c.tar" --tcp-established --file-locks --print-stats \
    >"$work/restore-$c.json" || die "restore of $c on $to failed (the stopped containers are still on $from)"
  T[restore_$c]=$(now)
done
T[up]=${T[restore_web]}
"$SERVICE_DIR/lb.sh" apply >/dev/null 2>&1 || die "nginx reload on lb failed"
T[lb]=$(now)
until on_host client curl -fsS -o /dev/null --max-time 1 http://lb/health.php 2>/dev/null; do
  (($(date +%s) - ${T[lb]%.*} > 60)) && die "service not answering through lb 60 s after restore on $to"
  sleep 0.05
done
T[answering]=$(now)
sleep 1
on_host client touch /tmp/ferry-move-stop; wait "$watch_pid" || true; watch_pid=""

# Source: the stopped containers and the archives go (the study's cleanup).
hpodman "$from" rm -f -t 0 --ignore web db >/dev/null
on_host "$from" rm -rf "${cp_dir:?}"
on_host "$to" rm -rf "${cp_dir:?}"

who=$(on_host client curl -fsS --max-time 5 -b /tmp/ferry-move-cookies http://lb/whoami.php || echo '{}')
curl_session=$([[ $who == *'"logged_in":true'* ]] && echo true || echo false)
browser_json=null
if ((browser)); then
  browser_json=$("$SERVICE_DIR/browser/run.sh" check --state "$work/browser.json" || true)
  [[ -n $browser_json ]] || browser_json=null
fi
# Longest span without a successful answer, seen by the client.
client_gap=$(awk 'BEGIN{last=0; gap=0; fails=0} $2=="ok"{ if (last>0 && $1-last>gap) gap=$1-last; last=$1 } $2=="fail"{fails++}
  END{printf "%.3f %d %d", gap, fails, NR}' "$work/watch.txt")
read -r gap fails polls <<<"$client_gap"
criu_frozen() { python3 -c 'import json,sys
try:
  d=json.load(open(sys.argv[1])); s=d.get("container_statistics",[{}])[0]
  print(s.get("criu_statistics",{}).get("frozen_time",0)/1e6)
except Exception: print("null")' "$1" 2>/dev/null || echo null; }

log "timeline ($from → $to):"
log "  pre-dump rsync      $(since "${T[start]}" "${T[pre_sync]}") s"
log "  checkpoint web      $(since "${T[down]}" "${T[checkpoint_web]}") s (CRIU frozen $(criu_frozen "$work/checkpoint-web.json") s)"
log "  checkpoint db       $(since "${T[checkpoint_web]}" "${T[checkpoint_db]}") s (CRIU frozen $(criu_frozen "$work/checkpoint-db.json") s)"
log "  archives (web db)   $cp_bytes bytes ($compress)"
log "  copy checkpoints    $(since "${T[checkpoint_db]}" "${T[copy_cp]}") s"
log "  post-dump rsync     $(since "${T[copy_cp]}" "${T[post_sync]}") s"
log "  restore db          $(since "${T[post_sync]}" "${T[restore_db]}") s"
log "  restore web         $(since "${T[restore_db]}" "${T[restore_web]}") s"
log "  DOWNTIME (server)   $(since "${T[down]}" "${T[up]}") s  (start of dump → end of restore, the study's figure)"
log "  lb reload           $(since "${T[up]}" "${T[lb]}") s; answering via lb after $(since "${T[down]}" "${T[answering]}") s"
log "  client-observed gap $gap s ($fails failed of $polls polls); curl session logged in: $curl_session"
printf '{"from":"%s","to":"%s","downtime_s":%s,"client_gap_s":%s,"client_failed_polls":%s,"checkpoint_s":%s,"copy_s":%s,"restore_s":%s,"migration_s":%s,"archive_bytes":{"web":%s,"db":%s},"curl_session_logged_in":%s,"browser_after":%s}\n' \
  "$from" "$to" "$(since "${T[down]}" "${T[up]}")" "$gap" "$fails" "$(since "${T[down]}" "${T[checkpoint_db]}")" \
  "$(since "${T[checkpoint_db]}" "${T[post_sync]}")" "$(since "${T[post_sync]}" "${T[up]}")" \
  "$(since "${T[start]}" "${T[up]}")" ${cp_bytes% *} ${cp_bytes#* } "$curl_session" "$browser_json"
rm -rf "$work"
[[ $curl_session == true ]]

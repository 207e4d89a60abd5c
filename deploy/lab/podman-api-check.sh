#!/usr/bin/env bash
# The podman CLI next to Podman's REST API service (what checkpoint/src/runtime_api.cc
# talks to) for the calls a migration makes, on the lab's reference service. Every call
# is timed inside the host, so nsenter is not counted; the API side is curl on the unix
# socket (its own start-up, a few ms, is counted).
#   inspect, exists, image inspect        on --from, --rounds times each
#   checkpoint --export --leave-running   of --container on --from
#   restore --import                      of that archive on --to, removed again at once
# Usage: deploy/lab/podman-api-check.sh [--from a] [--to b] [--container web] [--rounds 5] [--no-restore]
# Needs `ferry lab up` and `ferry lab deploy --on FROM`. Starts `podman system service
# --time=0` in both hosts when nothing answers on /run/podman/podman.sock and stops only
# what it started (containers it runs survive it: conmon is detached).
# The restore puts a copy of the container on --to for about a second, with --to's data
# directory mounted: use web (it writes there only when it serves a request, and nothing
# routes to --to); with the nodes mirroring, run `ferry verify` afterwards.
# Prints one line per call (median, min, max in ms, CLI then API) and a JSON summary
# (last line).
set -euo pipefail
# shellcheck source=../service/lib.sh
source "$(dirname "$0")/../service/lib.sh"

from=a; to=b; container=web; rounds=5; restore=1
while (($#)); do
  case $1 in
    --from) from=${2:-}; shift 2 ;;
    --to) to=${2:-}; shift 2 ;;
    --container) container=${2:-}; shift 2 ;;
    --rounds) rounds=${2:-}; shift 2 ;;
    --no-restore) restore=0; shift ;;
    *) die "podman-api-check: unknown argument '$1'" ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number"
[[ $container =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ ]] || die "--container '$container' is not a container name"
[[ $from != "$to" ]] || die "--from and --to must differ"

SOCK=/run/podman/podman.sock
API=http://d/v5.0.0/libpod
WORK=/var/tmp/ferry-apicheck
started=()   # "host pid" of services this script started
restored=0

cleanup() {
  local s
  if ((restored)); then hpodman "$to" rm -f -t 0 "$container" >/dev/null 2>&1 || true; fi
  for s in "${started[@]}"; do
    # shellcheck disable=SC2086
    set -- $s
    on_host "$1" kill "$2" 2>/dev/null || true
  done
  on_host "$from" rm -rf "$WORK" 2>/dev/null || true
  on_host "$to" rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

apiPing() { [[ $(on_host "$1" curl -s --max-time 2 --unix-socket "$SOCK" "$API/_ping" 2>/dev/null) == OK ]]; }

ensureService() {
  local host=$1 pid
  apiPing "$host" && { log "$host: an API service already answers on $SOCK"; return; }
  pid=$(on_host "$host" sh -c "mkdir -p /run/podman && setsid podman ${PODMAN_FLAGS[*]} system service --time=0 \
    unix://$SOCK >/run/podman/ferry-apicheck.log 2>&1 </dev/null & echo \$!")
  started+=("$host $pid")
  for _ in $(seq 100); do apiPing "$host" && { log "$host: started podman system service (pid $pid)"; return; }; sleep 0.1; done
  die "$host: podman system service did not answer within 10 s: $(on_host "$host" tail -3 /run/podman/ferry-apicheck.log)"
}

# µs of one CLI call inside HOST; fails if podman did.
cliUs() {
  local host=$1; shift
  # shellcheck disable=SC2016 # expanded by the inner bash
  on_host "$host" bash -c 's=$(date +%s%N); podman "$@" >/tmp/ferry-apicheck.out 2>&1 || { cat /tmp/ferry-apicheck.out >&2; exit 1; }
    e=$(date +%s%N); echo $(((e - s) / 1000))' _ "${PODMAN_FLAGS[@]}" "$@"
}

# µs of one API call inside HOST: the answer's body goes to BODY (a path in HOST);
# EXPECT is the HTTP status it must answer.
apiUs() {
  local host=$1 expect=$2 body=$3; shift 3
  local out code secs
  out=$(on_host "$host" curl -sS -o "$body" -w '%{http_code} %{time_total}' -H 'Expect:' \
    --unix-socket "$SOCK" "$@") || die "$host: curl $* failed"
  read -r code secs <<<"$out"
  [[ $code == "$expect" ]] || die "$host: curl $* answered $code: $(on_host "$host" head -c 300 "$body")"
  awk -v s="$secs" 'BEGIN { printf "%d\n", s * 1000000 }'
}
BODY=/tmp/ferry-apicheck.body

declare -A samples=()
record() { samples[$1]+="$2 "; }

# "median min max" in ms of the samples under KEY.
summary() {
  tr ' ' '\n' <<<"${samples[$1]}" | sed '/^$/d' | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - -"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.1f %.1f %.1f\n", m / 1000, v[1] / 1000, v[NR] / 1000 }'
}

for h in "$from" "$to"; do host_pid "$h" >/dev/null; done
[[ $(hpodman "$from" inspect --format '{{.State.Status}}' "$container" 2>/dev/null) == running ]] \
  || die "container $container is not running on $from — run 'ferry lab deploy --on $from' first"
image=$(hpodman "$from" inspect --format '{{.ImageName}}' "$container")
image_enc=$(sed -e 's|%|%25|g' -e 's|/|%2F|g' -e 's|:|%3A|g' -e 's|@|%40|g' <<<"$image")
ensureService "$from"
((restore)) && ensureService "$to"
on_host "$from" mkdir -p "$WORK"
on_host "$to" mkdir -p "$WORK"

log "inspect, exists, image inspect on $from: $rounds rounds"
for _ in $(seq "$rounds"); do
  t=$(cliUs "$from" container inspect "$container"); record inspect_cli "$t"
  t=$(apiUs "$from" 200 "$BODY" "$API/containers/$container/json"); record inspect_api "$t"
  t=$(cliUs "$from" container exists "$container"); record exists_cli "$t"
  t=$(apiUs "$from" 204 "$BODY" "$API/containers/$container/exists"); record exists_api "$t"
  t=$(cliUs "$from" image inspect --format '{{.Id}}' "$image"); record image_cli "$t"
  t=$(apiUs "$from" 200 "$BODY" "$API/images/$image_enc/json"); record image_api "$t"
done

ck_rounds=$((rounds < 3 ? rounds : 3))
log "checkpoint --export --leave-running of $container on $from: $ck_rounds rounds each"
for _ in $(seq "$ck_rounds"); do
  t=$(cliUs "$from" container checkpoint --export="$WORK/cli.tar" --compress=none --leave-running \
    --keep --tcp-established --file-locks --print-stats "$container")
  record checkpoint_cli "$t"
  t=$(apiUs "$from" 200 "$WORK/api.tar" -X POST \
    "$API/containers/$container/checkpoint?export=true&leaveRunning=true&keep=true&tcpEstablished=true&fileLocks=true")
  record checkpoint_api "$t"
done
cli_bytes=$(on_host "$from" stat -c %s "$WORK/cli.tar")
api_bytes=$(on_host "$from" stat -c %s "$WORK/api.tar")
api_kind=$(on_host "$from" sh -c "head -c 262 '$WORK/api.tar' | tail -c 5")
log "archives: CLI $cli_bytes bytes, API $api_bytes bytes (API tar magic: '$api_kind'; 'ustar' = uncompressed)"
if on_host "$from" sh -c "tar -tf '$WORK/api.tar' | grep -qx 'stats-dump'"; then
  log "the API archive holds stats-dump (ferry reads CRIU's numbers from it)"
else
  log "WARNING: no stats-dump in the API archive: ferry's API runtime will report no CRIU statistics"
fi

if ((restore)); then
  if hpodman "$to" container exists "$container"; then
    log "skipping restore: $to already has a container named $container"
  else
    log "restore --import of $container on $to: $ck_rounds rounds each (removed after each)"
    cp "/proc/$(host_pid "$from")/root$WORK/api.tar" "/proc/$(host_pid "$to")/root$WORK/in.tar"
    for _ in $(seq "$ck_rounds"); do
      restored=1
      t=$(cliUs "$to" container restore --import="$WORK/in.tar" --tcp-established --file-locks --print-stats)
      record restore_cli "$t"
      hpodman "$to" rm -f -t 0 "$container" >/dev/null
      t=$(apiUs "$to" 200 "$BODY" -X POST -H 'Content-Type: application/x-tar' -T "$WORK/in.tar" \
        "$API/containers/$container/restore?import=true&tcpEstablished=true&fileLocks=true&printStats=true")
      record restore_api "$t"
      on_host "$to" cat "$BODY" >&2
      echo >&2
      hpodman "$to" rm -f -t 0 "$container" >/dev/null
      restored=0
    done
  fi
fi

printf '%-12s %28s %28s\n' call "cli ms (median min max)" "api ms (median min max)"
json="{\"host\":\"$from\",\"container\":\"$container\",\"rounds\":$rounds"
for op in inspect exists image checkpoint restore; do
  [[ -n ${samples[${op}_cli]:-} ]] || continue
  read -r cm cn cx <<<"$(summary "${op}_cli")"
  read -r am an ax <<<"$(summary "${op}_api")"
  printf '%-12s %28s %28s\n' "$op" "$cm $cn $cx" "$am $an $ax"
  json+=",\"$op\":{\"cli_ms\":$cm,\"api_ms\":$am,\"cli_min_ms\":$cn,\"api_min_ms\":$an}"
done
json+=",\"cli_archive_bytes\":$cli_bytes,\"api_archive_bytes\":$api_bytes}"
echo "$json"

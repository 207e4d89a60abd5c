#!/usr/bin/env bash
# Mirroring over the lab's link (issue 4): ferry's nodes against the tools people use
# for a standby today, on the same data, the same link, the same durability (fsync):
#   rsync -a --inplace --no-whole-file --cc=xxh128 --fsync   (over an rsync daemon on b)
#   lsyncd (inotify + rsync) with its default 15 s delay and with a 1 s delay
# Three figures:
#   initial   625 MB of incompressible files a -> b: time, bytes on a's wire, CPU of both sides
#   freeze    a 1 GiB file, in sync; then N MiB of random 16 KiB pages rewritten with
#             O_DIRECT: time until the standby is identical and fsynced (ferry: sync
#             --flush; rsync: one run); ferry's path is what a migration pays after the freeze
#   lag       the reference service under the consistency writer (every 20 ms through lb)
#             plus a marker file rewritten every 100 ms with its write time; every 50 ms a
#             poller on b reads it: lag = now - the write time it finds (how stale the
#             standby is), p50/p99 over the run
# Times are taken inside the host that runs the command: the lab's exec (nsenter and the
# ferry binary's start, about 120 ms a call) is how this script reaches a host, not part of
# what any tool costs, and counting it once added that much to every freeze figure.
# Usage: bench/mirror_bench.sh --out DIR [--profile cloud] [--runs 3] [--only initial,freeze,lag]
#        [--tools ferry,rsync,lsyncd]   (default all three; e.g. --tools ferry after a change to ferry)
# The lab must be up (ferry lab up --profile P); the reference service deployed for `lag`.
# Prints a table and writes DIR/mirror-<profile>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
FERRY=${FERRY_BIN:-$PWD/build/node/ferry}
export FERRY_BIN=$FERRY
out="" runs=3 only="initial,freeze,lag" profile="" tools="ferry,rsync,lsyncd"
while (($#)); do
  case $1 in
    --out) out=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    --profile) profile=${2:?}; shift 2 ;;
    --tools) tools=${2:?}; shift 2 ;;
    *) echo "mirror_bench: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || { echo "mirror_bench: --out DIR is required" >&2; exit 2; }
for t in ${tools//,/ }; do
  [[ $t == ferry || $t == rsync || $t == lsyncd ]] || { echo "mirror_bench: --tools takes ferry, rsync, lsyncd; not '$t'" >&2; exit 2; }
done
wanted() { [[ ,$tools, == *",$1,"* ]]; }
mkdir -p "$out"
status=$("$FERRY" lab status --output json)
[[ $status == *'"up":true'* ]] || { echo "mirror_bench: the lab is down — ferry lab up --profile cloud" >&2; exit 2; }
lab_profile=$(sed -n 's/.*"profile":"\([a-z]*\)".*/\1/p' <<<"$status")
[[ -z $profile || $profile == "$lab_profile" ]] || { echo "mirror_bench: the lab runs $lab_profile, not $profile" >&2; exit 2; }
profile=$lab_profile
results=$out/mirror-$profile.json
echo '{}' >"$results"

H() { local h=$1; shift; "$FERRY" lab exec "$h" -- "$@"; }
root() { echo "/proc/$(cat /run/ferry-lab/hosts/$1/pid)/root"; }
now_ms() { date +%s%3N; }
tx_bytes() { H a cat /sys/class/net/eth0/statistics/tx_bytes; }
# CPU seconds (user+sys, plus reaped children's) of the process whose pid is in FILE in HOST.
# (The lab's hosts share the machine's pid namespace: pgrep would see both nodes.)
cpu_of() {
  H "$1" sh -c "p=\$(cat $2) && cut -d' ' -f14-17 /proc/\$p/stat" |
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($1 + $2 + $3 + $4) / hz}'
}
record() {  # record KEY JSON: merges into the results file
  python3 - "$results" "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d[sys.argv[2]] = json.loads(sys.argv[3])
json.dump(d, open(sys.argv[1], "w"), indent=1)
PY
}
stats() {  # stats < numbers: min median max (and p99 when many)
  python3 -c 'import sys,statistics as s
v=sorted(float(x) for x in sys.stdin.read().split())
if not v: print("{\"n\":0}"); sys.exit(0)
p=lambda q: v[min(len(v)-1,int(q*len(v)))]
print("{\"min\":%.1f,\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f,\"n\":%d}"%(v[0],s.median(v),p(0.99),v[-1],len(v)))'
}

DATA=/srv/ferry-mbench
rsync_daemon() {  # rsync_daemon PATH: (re)start an rsync daemon on b serving PATH as module m
  rsync_stop
  H b sh -c "mkdir -p /run/mbench $1
    printf '%s\n' 'pid file = /run/mbench/rsyncd.pid' 'port = 8873' 'use chroot = no' 'uid = root' 'gid = root' \
      '[m]' '  path = $1' '  read only = false' >/run/mbench/rsyncd.conf && rsync --daemon --config=/run/mbench/rsyncd.conf"
  for _ in $(seq 50); do H a rsync rsync://b:8873/ >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "mirror_bench: rsync daemon on b did not start" >&2; exit 1
}
# The daemon and every child it forked (a transfer still running on a slow link keeps
# the listening socket open, and the next daemon could not bind): gone before it returns.
rsync_stop() {
  H b sh -c 'pkill -f "[r]sync --daemon --config=/run/mbench/rsyncd.conf"
    for _ in $(seq 100); do pgrep -f "[r]sync --daemon --config=/run/mbench/rsyncd.conf" >/dev/null || break; sleep 0.1; done
    rm -f /run/mbench/rsyncd.pid; true'
}
RSYNC=(rsync -a --inplace --no-whole-file --cc=xxh128 --fsync --modify-window=-1)
nodes_on() {  # nodes_on DIR: the node daemons mirroring DIR, from scratch
  deploy/lab/nodes.sh reset >/dev/null
  FERRY_SERVICE_DATA=$1 deploy/lab/nodes.sh start >/dev/null
}
# Prints the time (ms since the epoch, read inside a: the hosts share the machine's clock)
# at which a's node said in-sync (`ferry status --wait` asks every 20 ms from one process;
# timing from out here would add the lab's exec, about 120 ms a call).
wait_in_sync() {
  H a sh -c 'ferry status --wait in-sync --timeout 600 >/dev/null && date +%s%3N' ||
    { echo "mirror_bench: the standby never reached in-sync" >&2; return 1; }
}
# When HOST's node daemon started, in ms since the epoch (its start time in jiffies since
# boot, against /proc/uptime read at the same moment). The initial copy is timed from the
# later of the two starts: the script's own steps before (keys, pairing, configuration,
# about 2 s of lab execs) are not the copy.
node_started_ms() {
  H "$1" sh -c 'p=$(cat /run/ferry/node.pid); echo $(cut -d" " -f22 /proc/$p/stat) $(cut -d" " -f1 /proc/uptime) $(date +%s%3N) $(getconf CLK_TCK)' |
    awk '{printf "%.0f\n", $3 - ($2 * 1000 - $1 * 1000 / $4)}'
}
# timed HOST CMD...: runs CMD in HOST and prints the ms it took, measured there (the lab's
# exec, about 120 ms, is not the command's time).
timed() {
  local h=$1; shift
  H "$h" sh -c 't0=$(date +%s%N); "$@" >/dev/null || exit $?; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000))' timed "$@"
}

# ---- initial copy ---------------------------------------------------------------------
if [[ $only == *initial* ]]; then
  media=$(ls -d /var/cache/ferry/media/625-* 2>/dev/null | head -1)
  [[ -n $media ]] || media=$(deploy/service/gen-videos.sh 625)
  rm -rf "$(root a)$DATA"; mkdir -p "$(root a)$DATA"; cp "$media"/*.mp4 "$(root a)$DATA/"
  bytes=$(du -sb "$(root a)$DATA" | cut -f1)
  for tool in ferry rsync; do
    wanted "$tool" || continue
    lines=""
    for r in $(seq "$runs"); do
      deploy/lab/nodes.sh stop >/dev/null 2>&1 || true
      rm -rf "$(root b)$DATA"; mkdir -p "$(root b)$DATA"; sync
      tx0=$(tx_bytes)
      if [[ $tool == ferry ]]; then
        nodes_on "$DATA"; t1=$(wait_in_sync)
        t0=$(node_started_ms a); sb=$(node_started_ms b); ((sb > t0)) && t0=$sb
        cpu=$(awk -v a="$(cpu_of a /run/ferry/node.pid)" -v b="$(cpu_of b /run/ferry/node.pid)" 'BEGIN{printf "%.2f", a+b}')
        deploy/lab/nodes.sh stop >/dev/null
      else
        rsync_daemon "$DATA"
        # real, user, sys of the rsync client, measured inside a
        read -r real cpu_a < <(H a bash -c "TIMEFORMAT='%R %U %S'; { time ${RSYNC[*]} $DATA/ rsync://b:8873/m/ >/dev/null; } 2>&1 | awk '{printf \"%d %.2f\\n\", \$1*1000, \$2+\$3}'")
        t0=0 t1=$real
        cpu=$(awk -v a="$cpu_a" -v b="$(cpu_of b /run/mbench/rsyncd.pid)" 'BEGIN{printf "%.2f", a+b}')
        rsync_stop
      fi
      tx1=$(tx_bytes)
      lines+="$((t1 - t0)) $((tx1 - tx0)) $cpu"$'\n'
      printf 'initial %-6s run %d: %6d ms  %6.1f MB on the wire  %5s CPU s\n' "$tool" "$r" $((t1 - t0)) \
        "$(awk -v b=$((tx1 - tx0)) 'BEGIN{print b/1e6}')" "$cpu"
    done
    record "initial_$tool" "{\"data_bytes\":$bytes,\"ms\":$(cut -d' ' -f1 <<<"$lines" | stats),\"wire_bytes\":$(cut -d' ' -f2 <<<"$lines" | stats),\"cpu_s\":$(cut -d' ' -f3 <<<"$lines" | stats)}"
  done
fi

# ---- freeze-time delta -------------------------------------------------------------------
if [[ $only == *freeze* ]]; then
  FZ=/srv/ferry-mfreeze
  rm -rf "$(root a)$FZ" "$(root b)$FZ"; mkdir -p "$(root a)$FZ" "$(root b)$FZ"
  head -c $((1 << 30)) /dev/urandom >"$(root a)$FZ/big.dat"
  rewrite() {  # rewrite MiB: random 16 KiB pages, O_DIRECT, like InnoDB
    python3 - "$(root a)$FZ/big.dat" "$1" <<'PY'
import os, random, sys, mmap
path, mib = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 16384)
pages = (1 << 30) // 16384
for p in random.sample(range(pages), mib * 64):
    buf.seek(0); buf.write(os.urandom(16384))
    os.pwritev(fd, [buf], p * 16384)
os.close(fd)
PY
  }
  for tool in ferry rsync; do
    wanted "$tool" || continue
    if [[ $tool == ferry ]]; then
      # Rounds paused: the rewrite is shipped by the measured flush only (as after a freeze).
      nodes_on "$FZ"; wait_in_sync >/dev/null; H a ferry sync --pause >/dev/null
    else
      rsync_daemon "$FZ"; H a "${RSYNC[@]}" "$FZ/" rsync://b:8873/m/ >/dev/null
    fi
    for mib in 1 10 100; do
      lines=""
      for r in $(seq "$runs"); do
        rewrite "$mib"
        tx0=$(tx_bytes); t0=0
        if [[ $tool == ferry ]]; then t1=$(timed a ferry sync --flush --timeout 300); else t1=$(timed a "${RSYNC[@]}" "$FZ/" rsync://b:8873/m/); fi
        tx1=$(tx_bytes)
        lines+="$((t1 - t0)) $((tx1 - tx0))"$'\n'
        printf 'freeze  %-6s %3d MiB run %d: %6d ms  %6.1f MB on the wire\n' "$tool" "$mib" "$r" $((t1 - t0)) "$(awk -v b=$((tx1 - tx0)) 'BEGIN{print b/1e6}')"
      done
      record "freeze_${tool}_${mib}mib" "{\"ms\":$(cut -d' ' -f1 <<<"$lines" | stats),\"wire_bytes\":$(cut -d' ' -f2 <<<"$lines" | stats)}"
    done
    if [[ $tool == ferry ]]; then deploy/lab/nodes.sh stop >/dev/null; else rsync_stop; fi
  done
  cmp -s "$(root a)$FZ/big.dat" "$(root b)$FZ/big.dat" || echo "mirror_bench: WARNING: the standby's copy differs at the end" >&2
  rm -rf "$(root a)$FZ" "$(root b)$FZ"
fi

# ---- steady-state lag under the writer -------------------------------------------------------
if [[ $only == *lag* ]]; then
  REF=/srv/ferry/ref
  H a podman container exists web || { echo "mirror_bench: deploy the service on a first (ferry lab deploy --on a)" >&2; exit 2; }
  lag_run() {  # lag_run TOOL SECONDS: marker every 100 ms on a, arrivals noted on b
    # Start from a standby that holds the current marker (a stale one from an earlier
    # run would count as minutes of lag; none at all as no samples).
    local first; first=$(now_ms)
    H a sh -c "echo $first >$REF/.ferry-marker.tmp && mv $REF/.ferry-marker.tmp $REF/.ferry-marker"
    for _ in $(seq 600); do [[ $(H b cat "$REF/.ferry-marker" 2>/dev/null) == "$first" ]] && break; sleep 0.1; done
    [[ $(H b cat "$REF/.ferry-marker" 2>/dev/null) == "$first" ]] || echo "mirror_bench: lag $1: the standby did not get the first marker within 60 s" >&2
    local start; start=$(now_ms)
    H b sh -c "rm -f /tmp/mbench-arrivals; (last=''; end=\$((\$(date +%s) + $2 + 30)); while [ \$(date +%s) -lt \$end ]; do
        v=\$(cat $REF/.ferry-marker 2>/dev/null); [ -n \"\$v\" ] && echo \"\$v \$(date +%s%3N)\" >>/tmp/mbench-arrivals
        sleep 0.05; done) >/dev/null 2>&1 </dev/null & echo \$! >/tmp/mbench-poller.pid"
    H client sh -c "ferry writer --url http://lb --writer mbench-$1 --duration ${2}s --output json >/tmp/mbench-writer.json 2>&1 </dev/null &"
    H a sh -c "end=\$((\$(date +%s) + $2)); while [ \$(date +%s) -lt \$end ]; do date +%s%3N >$REF/.ferry-marker.tmp && mv $REF/.ferry-marker.tmp $REF/.ferry-marker; sleep 0.1; done"
    local stop; stop=$(now_ms)
    sleep 20  # lsyncd's 15 s delay: let the last marker arrive
    H b sh -c 'kill $(cat /tmp/mbench-poller.pid) 2>/dev/null; true'
    # Samples from the first 5 s are left out (lsyncd's start-up copy runs then), and
    # those after the last marker was written.
    { H b cat /tmp/mbench-arrivals 2>/dev/null || true; } |
      awk -v from=$((start + 5000)) -v to="$stop" '$2 >= from && $2 <= to {print $2 - $1}' >"$out/lag-$profile-$1.txt"
    if [[ ! -s $out/lag-$profile-$1.txt ]]; then
      echo "mirror_bench: lag $1: no marker reached b during the run (still copying the data directory?)" >&2
      record "lag_$1" '{"n":0}'
      return 0
    fi
    local s; s=$(stats <"$out/lag-$profile-$1.txt")
    record "lag_$1" "$s"
    echo "lag     $1: $s (ms the standby is behind: now - the write time of the marker it holds)"
  }
  seconds=60
  if wanted ferry; then nodes_on "$REF"; wait_in_sync >/dev/null; lag_run ferry "$seconds"; deploy/lab/nodes.sh stop >/dev/null; fi
  delays=(); wanted lsyncd && delays=(15 1)
  for delay in "${delays[@]}"; do
    rsync_daemon "$REF"
    # The standby's copy first, outside the measurement (ferry's nodes start from an
    # in-sync replica too): lsyncd's start-up copy then only has the differences to send.
    H a "${RSYNC[@]}" "$REF/" rsync://b:8873/m/ >/dev/null
    H a sh -c "mkdir -p /run/mbench && cat >/run/mbench/lsyncd.lua <<EOF
settings { logfile = '/run/mbench/lsyncd.log', statusFile = '/run/mbench/lsyncd.status', nodaemon = false, insist = true }
sync { default.rsync, source = '$REF/', target = 'rsync://b:8873/m/', delay = $delay,
       rsync = { archive = true, inplace = true, whole_file = false, _extra = { '--cc=xxh128', '--fsync' } } }
EOF
      lsyncd /run/mbench/lsyncd.lua"
    sleep 5
    lag_run "lsyncd-${delay}s" "$seconds"
    H a sh -c 'pkill -x lsyncd; pkill -f "[r]sync://b:8873/m/"; true'
    rsync_stop
  done
fi
echo "results: $results"

#!/bin/bash
# The lab's link profiles between a, b and lb (see /work/team/LAB_CONTRACT.md).
#
#   links.sh apply lan|cloud|wan|edge   shape the links (called by lab.sh up)
#   links.sh clear                      remove all shaping, stop the delay line
#   links.sh show                       what is applied, counters, delay-line stats
#   links.sh test [--json | --output text|json] [--duration S]
#                                       measure throughput and RTT next to the targets
#
# Profile  rate (TCP goodput)  RTT        between a<->b, a<->lb, b<->lb (client is unshaped)
#   lan    3.65 Gbit/s         <= 0.5 ms  (no added delay)
#   cloud  1.75 Gbit/s         2 ms
#   wan    45 Mbit/s           50 ms
#   edge   5 Mbit/s            50 ms
#
# How (the kernel has no netem, no fq, and no nft `queue` expression; it has htb,
# xt_NFQUEUE and br_netfilter):
# - Rate: htb on each shaped host's eth0 egress, one class per peer, so the sender's TCP
#   sees its own queue (TCP small queues keep it short, as on a real NIC). The class
#   rate is the goodput target times 1514/1448: htb counts whole Ethernet frames
#   (headers of every GSO segment included), iperf3 counts TCP payload.
# - Delay: on the wire, not in the hosts. In the bridge namespace (ferry-wire),
#   br_netfilter passes bridged packets through iptables; packets from one shaped host to
#   another go to NFQUEUE 0, where ferry-delayline holds each for RTT/2 (minus the
#   measured overhead of this path) and releases it. There the packet has already left
#   the sender's socket (a veth orphans it), so the held bytes do not throttle TCP (a
#   delay in the sender's own OUTPUT hook did: 1.9 Mbit/s at 50 ms), and it reaches the
#   receiver after the delay, so every tool sees it (a delay in the receiver's
#   PREROUTING hook is invisible to ping, which timestamps packets before netfilter).
#
# Exit codes: 0 ok; 1 failure; 2 bad usage; 3 (test) a figure is outside ±15 %.
#
# Developer mode (no lab needed): FERRY_LINKS_DEV=1 works on throwaway namespaces
# ferrylinks-{a,b,lb,client} joined by bridge br0 in ferrylinks-wire, 10.231.99.0/24.
set -euo pipefail

LINKS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$(dirname "$LINKS_DIR")")
# shellcheck disable=SC1091  # the lab's shared settings (LAB_RUN, LAB_WIRE_NS), when present
[[ -f $LINKS_DIR/common.sh ]] && source "$LINKS_DIR/common.sh"
LAB_RUN=${LAB_RUN:-/run/ferry-lab}
HOST_PATH=${HOST_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}

SHAPED=(a b lb)
TOLERANCE=0.15
IPERF_PORT=5201
# Measured on this machine with no added delay: the veth-bridge-veth path and the delay
# line's wake-ups (arrival and release) add about this much per direction.
OVERHEAD_US=${FERRY_LINKS_OVERHEAD_US:-160}
DELAYLINE_RT_PRIORITY=${FERRY_LINKS_RT_PRIORITY:-20}

if [[ -n ${FERRY_LINKS_DEV:-} ]]; then
  WIRE_NS=ferrylinks-wire
  STATE=/run/ferrylinks-dev
  addressOf() { case "$1" in lb) echo 10.231.99.10 ;; a) echo 10.231.99.11 ;; b) echo 10.231.99.12 ;; client) echo 10.231.99.20 ;; *) return 1 ;; esac; }
  hostPidOf() { [[ -e /run/netns/ferrylinks-$1 ]] && echo "dev"; }
  hostNet() { local h=$1; shift; nsenter --net="/run/netns/ferrylinks-$h" -- "$@"; }
  # hostRunArgv HOST: sets HOSTRUN to the command prefix that runs a program in HOST
  hostRunArgv() { HOSTRUN=(nsenter --net="/run/netns/ferrylinks-$1" --); }
else
  WIRE_NS=${LAB_WIRE_NS:-ferry-wire}
  STATE=$LAB_RUN/links
  addressOf() { case "$1" in lb) echo 10.231.0.10 ;; a) echo 10.231.0.11 ;; b) echo 10.231.0.12 ;; client) echo 10.231.0.20 ;; *) return 1 ;; esac; }
  hostPidOf() {  # the holder PID of a running lab host
    local f=$LAB_RUN/hosts/$1/pid pid
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^ferry-lab-holder:$1 " || return 1
    echo "$pid"
  }
  # The machine's tc/iptables in the host's network namespace only.
  hostNet() { local h=$1 pid; shift; pid=$(hostPidOf "$h") || die "host $h is not running — run 'ferry lab up'"; nsenter -t "$pid" -n -- "$@"; }
  # hostRunArgv HOST: sets HOSTRUN to the command prefix that runs a program of the
  # host's own userland (iperf3, ping) the way `ferry lab exec` does.
  hostRunArgv() {
    local pid
    pid=$(hostPidOf "$1") || die "host $1 is not running — run 'ferry lab up'"
    HOSTRUN=(env -i PATH="$HOST_PATH" HOME=/root LANG=C.UTF-8 nsenter -t "$pid" -m -n -u -r -w --)
  }
fi
hostRun() { local HOSTRUN; hostRunArgv "$1"; shift; "${HOSTRUN[@]}" "$@"; }
wireNet() { nsenter --net="/run/netns/$WIRE_NS" -- "$@"; }

say() { echo "links: $*" >&2; }
die() { echo "links: $*" >&2; exit 1; }
usage() { sed -n '4,8p' "$0" | sed 's/^#  //' >&2; exit 2; }
needRoot() { [[ $(id -u) == 0 ]] || { echo "links: $1 needs root — run it as root (sudo)" >&2; exit 2; }; }

# profileParams PROFILE -> "GOODPUT_BIT_S RTT_US ADDED_RTT_US RTT_IS_CEILING"
profileParams() {
  case "$1" in
    lan) echo "3650000000 500 0 1" ;;
    cloud) echo "1750000000 2000 2000 0" ;;
    wan) echo "45000000 50000 50000 0" ;;
    edge) echo "5000000 50000 50000 0" ;;
    *) return 1 ;;
  esac
}

classOf() { case "$1" in lb) echo 1:10 ;; a) echo 1:11 ;; b) echo 1:12 ;; esac; }

findDelayline() {
  local c
  for c in "${FERRY_DELAYLINE:-}" "$REPO_DIR/build/deploy/delayline/ferry-delayline" \
    "$REPO_DIR"/build*/deploy/delayline/ferry-delayline "$(command -v ferry-delayline 2>/dev/null || true)"; do
    [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
  done
  return 1
}

delaylinePid() {  # the running delay line of this lab, or fail
  local f=$STATE/delayline.pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == ferry-delayline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--pid-file $STATE/delayline.pid" || return 1
  echo "$pid"
}

stopDelaylines() {
  # Ours are recognised by the pid file path on their command line (also after a crash
  # lost the pid file); nothing else is touched.
  local p pids=() i
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == ferry-delayline ]] || continue
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--pid-file $STATE/delayline.pid" && pids+=("$p")
  done
  ((${#pids[@]})) || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# ---- clear ------------------------------------------------------------------------------
cmdClear() {
  needRoot "links.sh clear"
  local h
  # Rules first: with the delay line gone, queued packets would be dropped.
  if [[ -e /run/netns/$WIRE_NS ]]; then
    if wireNet iptables -w 5 -t raw -S FERRY_LINKS >/dev/null 2>&1; then
      while wireNet iptables -w 5 -t raw -D PREROUTING -j FERRY_LINKS 2>/dev/null; do :; done
      wireNet iptables -w 5 -t raw -F FERRY_LINKS
      wireNet iptables -w 5 -t raw -X FERRY_LINKS
    fi
  fi
  stopDelaylines
  for h in "${SHAPED[@]}"; do
    hostPidOf "$h" >/dev/null || continue
    # (no `tc show | grep -q` test: with pipefail, grep -q closing early fails the pipe)
    hostNet "$h" tc qdisc del dev eth0 root 2>/dev/null || true  # back to the veth default (noqueue)
  done
  rm -f "$STATE/applied" "$STATE/delayline.pid"
  [[ -n ${FERRY_LINKS_DEV:-} || ! -f $LAB_RUN/profile ]] || echo none >"$LAB_RUN/profile"
}

# ---- apply ------------------------------------------------------------------------------
cmdApply() {
  local profile=${1:-}
  [[ -n $profile ]] || usage
  local params
  params=$(profileParams "$profile") || {
    echo "links: unknown profile '$profile' — use one of: lan cloud wan edge" >&2
    exit 2
  }
  needRoot "links.sh apply"
  local goodput rtt_us added_us ceiling h peer
  read -r goodput rtt_us added_us ceiling <<<"$params"
  for h in "${SHAPED[@]}"; do
    hostPidOf "$h" >/dev/null || die "host $h is not running — run 'ferry lab up' first"
    hostNet "$h" ip link show eth0 >/dev/null 2>&1 || die "host $h has no eth0 yet — run 'ferry lab up' first"
  done
  [[ -e /run/netns/$WIRE_NS ]] || die "the lab's bridge namespace $WIRE_NS does not exist — run 'ferry lab up' first"

  cmdClear
  mkdir -p "$STATE"
  trap 'echo "links: apply $profile failed; removing what it set up" >&2; trap - ERR; cmdClear' ERR

  # Rate: htb class per peer on each shaped host's egress; everything else (client,
  # ARP) goes through htb's direct queue unshaped.
  local rate_bit burst
  rate_bit=$(awk -v g="$goodput" 'BEGIN { printf "%.0f", g * 1514 / 1448 }')
  # 2 ms of tokens (htb's timer is coarse next to Gbit/s), at least two full frames.
  burst=$(awk -v r="$rate_bit" 'BEGIN { b = r / 8 * 0.002; if (b < 3028) b = 3028; printf "%.0f", b }')
  for h in "${SHAPED[@]}"; do
    hostNet "$h" tc qdisc replace dev eth0 root handle 1: htb default 0
    for peer in "${SHAPED[@]}"; do
      [[ $peer == "$h" ]] && continue
      local cls
      cls=$(classOf "$peer")
      hostNet "$h" tc class add dev eth0 parent 1: classid "$cls" htb rate "${rate_bit}bit" ceil "${rate_bit}bit" \
        burst "$burst" cburst "$burst" quantum 60000
      hostNet "$h" tc qdisc add dev eth0 parent "$cls" pfifo limit 1000
      hostNet "$h" tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "$(addressOf "$peer")/32" flowid "$cls"
    done
  done

  # Delay: one delay line in the bridge namespace for every direction between shaped hosts.
  local oneway_us=0 dl pid i
  if ((added_us > 0)); then
    oneway_us=$((added_us / 2 - OVERHEAD_US))
    ((oneway_us > 0)) || oneway_us=0
    dl=$(findDelayline) || {
      cmdClear
      die "ferry-delayline is not built — run 'make build' (or ninja -C build ferry-delayline), or set FERRY_DELAYLINE"
    }
    wireNet sysctl -q -w net.bridge.bridge-nf-call-iptables=1 ||
      { cmdClear; die "cannot enable br_netfilter in $WIRE_NS (net.bridge.bridge-nf-call-iptables)"; }
    rm -f "$STATE/delayline.pid"
    setsid nsenter --net="/run/netns/$WIRE_NS" -- "$dl" --queue 0 --delay-us "$oneway_us" \
      --rt-priority "$DELAYLINE_RT_PRIORITY" --netns-file "/run/netns/$WIRE_NS" --pid-file "$STATE/delayline.pid" \
      </dev/null >>"$STATE/delayline.log" 2>&1 9>&- &  # fd 9: lab.sh's lock, never inherited
    for ((i = 0; i < 50; i++)); do
      pid=$(delaylinePid) && break
      sleep 0.1
    done
    pid=$(delaylinePid) || {
      tail -n 3 "$STATE/delayline.log" >&2 || true
      cmdClear
      die "ferry-delayline did not start (log: $STATE/delayline.log)"
    }
    wireNet iptables -w 5 -t raw -N FERRY_LINKS
    for h in "${SHAPED[@]}"; do
      for peer in "${SHAPED[@]}"; do
        [[ $peer == "$h" ]] && continue
        # No --queue-bypass: if the delay line dies, shaped traffic stops instead of
        # silently losing its delay.
        wireNet iptables -w 5 -t raw -A FERRY_LINKS -m physdev --physdev-in "lab-$h" -d "$(addressOf "$peer")/32" \
          -j NFQUEUE --queue-num 0
      done
    done
    wireNet iptables -w 5 -t raw -I PREROUTING 1 -j FERRY_LINKS
  fi
  printf 'profile=%s\ngoodput_bit_s=%s\nhtb_rate_bit_s=%s\nrtt_target_us=%s\nrtt_is_ceiling=%s\noneway_delay_us=%s\noverhead_us=%s\n' \
    "$profile" "$goodput" "$rate_bit" "$rtt_us" "$ceiling" "$oneway_us" "$OVERHEAD_US" >"$STATE/applied.tmp"
  mv -f "$STATE/applied.tmp" "$STATE/applied"
  trap - ERR
  # The lab contract's record of the active profile (lab.sh up writes it too).
  [[ -n ${FERRY_LINKS_DEV:-} ]] || echo "$profile" >"$LAB_RUN/profile"
  say "applied $profile: htb ${rate_bit} bit/s per direction on a/b/lb eth0, one-way delay ${oneway_us} us on the wire"
}

appliedValue() { sed -n "s/^$1=//p" "$STATE/applied" 2>/dev/null || true; }

# ---- show -------------------------------------------------------------------------------
cmdShow() {
  needRoot "links.sh show"
  local h pid
  if [[ ! -f $STATE/applied ]]; then
    echo "links: no profile applied"
    return 0
  fi
  echo "profile $(appliedValue profile): goodput target $(appliedValue goodput_bit_s) bit/s (htb $(appliedValue htb_rate_bit_s) bit/s)," \
    "RTT target $(appliedValue rtt_target_us) us, one-way delay on the wire $(appliedValue oneway_delay_us) us"
  for h in "${SHAPED[@]}"; do
    echo "== $h eth0"
    hostNet "$h" tc -s class show dev eth0 2>/dev/null | awk '/^class htb/ {c=$3; r=$0; sub(/.*rate /, "", r); sub(/ .*/, "", r)} /Sent/ {printf "  class %s rate %s: sent %s bytes %s pkts, dropped %s\n", c, r, $2, $4, $7 + 0}' || true
  done
  if pid=$(delaylinePid); then
    echo "== delay line pid $pid in $WIRE_NS"
    wireNet iptables -w 5 -t raw -L FERRY_LINKS -v -n -x 2>/dev/null |
      awk 'NR > 2 {for (i = 1; i <= NF; i++) if ($i == "--physdev-in") from = $(i + 1); printf "  from %-10s to %-15s %10s packets %14s bytes delayed\n", from, $9, $1, $2}' || true
    kill -USR1 "$pid"
    sleep 0.2
    echo "  $(tail -n 1 "$STATE/delayline.log" | sed 's/.*\[link\] //')"
  elif (($(appliedValue oneway_delay_us) > 0)); then
    echo "== delay line NOT RUNNING (shaped traffic between a, b, lb is blocked) — run 'links.sh apply $(appliedValue profile)'"
  fi
}

# ---- test -------------------------------------------------------------------------------
# pingStats HOST DEST COUNT INTERVAL -> "avg max" in ms, or fails
pingStats() {
  local out deadline
  deadline=$(awk -v c="$3" -v i="$4" 'BEGIN { printf "%d", c * i + 5 }')
  out=$(hostRun "$1" ping -n -q -c "$3" -i "$4" -w "$deadline" "$2" 2>&1) || true
  echo "$out" | awk -F'[/ =]+' '/^(rtt|round-trip)/ {print $7, $8; found=1} END {exit !found}'
}

# iperfRun CLIENT SERVER SECONDS [-R] -> goodput bit/s (receiver side)
iperfRun() {
  local client=$1 server=$2 secs=$3 srv out="" i bps="" HOSTRUN reverse=()
  [[ -n ${4:-} ]] && reverse=("$4")
  hostRunArgv "$server"
  # A plain command in the background, so $! is the process itself (nsenter execs
  # timeout, which passes our TERM on to iperf3), not a subshell.
  "${HOSTRUN[@]}" timeout $((secs + 20)) iperf3 -s -1 -p "$IPERF_PORT" >"${FERRY_LINKS_IPERF_LOG:-/dev/null}" 2>&1 &
  srv=$!
  for ((i = 0; i < 20; i++)); do
    # -O 1: the first second (slow start) is not counted
    # (iperf3 3.12 -J exits 0 even when it could not connect: judge by the result)
    out=$(hostRun "$client" timeout $((secs + 15)) iperf3 -c "$(addressOf "$server")" -p "$IPERF_PORT" -t "$secs" -O 1 "${reverse[@]}" -J 2>/dev/null) || true
    bps=$(echo "$out" | jq -r '.end.sum_received.bits_per_second // empty' 2>/dev/null || true)
    [[ -n $bps ]] && break
    # "Connection refused": the server needs a moment to bind
    sleep 0.25
  done
  # The one-off server ends by itself after its test; the next test must not meet it.
  for ((i = 0; i < 50; i++)); do
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.1
  done
  kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  if [[ -z $bps ]]; then
    echo "links: iperf3 $client -> $server ${reverse[*]:+(reverse)}: $(echo "$out" | jq -r '.error // empty' 2>/dev/null || echo "$out" | tail -n 1)" >&2
    return 1
  fi
  printf '%.0f\n' "$bps"
}

cmdTest() {
  local json=0 secs=5
  while (($#)); do
    case "$1" in
      --json | --output=json) json=1; shift ;;
      --output=text) json=0; shift ;;
      --output)
        case "${2:-}" in
          json) json=1 ;;
          text) json=0 ;;
          *) echo "links: --output must be text or json" >&2; exit 2 ;;
        esac
        shift 2 ;;
      --duration) secs=${2:-}; shift 2 || usage ;;
      --duration=*) secs=${1#*=}; shift ;;
      *) echo "links: unknown option '$1' for test — use --output text|json and --duration SECONDS" >&2; exit 2 ;;
    esac
  done
  if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1 || secs > 60)); then
    echo "links: --duration must be 1..60 seconds" >&2
    exit 2
  fi
  needRoot "links.sh test"
  command -v jq >/dev/null || die "jq is missing — apt-get install jq (deploy/packages/links.txt)"
  local profile goodput rtt_us ceiling
  profile=$(appliedValue profile)
  if [[ -z $profile ]]; then
    die "no link profile is applied — run 'ferry lab up --profile PROFILE' (or links.sh apply PROFILE)"
  fi
  read -r goodput rtt_us _ ceiling <<<"$(profileParams "$profile")"
  if (($(appliedValue oneway_delay_us) > 0)) && ! delaylinePid >/dev/null; then
    die "the delay line of profile $profile is not running — run 'links.sh apply $profile'"
  fi
  local B LB pings=$((secs * 5 - 3))  # spans the measured part of the iperf3 run
  ((pings >= 3)) || pings=3
  B=$(addressOf b)
  LB=$(addressOf lb)

  local idle_ab idle_alb load_ab load_ba tput_ab tput_ba
  idle_ab=$(pingStats a "$B" 20 0.05) || die "ping a -> b failed (is the lab up? links.sh show)"
  idle_alb=$(pingStats a "$LB" 20 0.05) || die "ping a -> lb failed"
  # Under load: ping a -> b while iperf3 runs (starting after iperf3's omitted first second).
  local pf
  pf=$(mktemp)
  (sleep 1.5; pingStats a "$B" "$pings" 0.2 >"$pf") &
  local pj=$!
  tput_ab=$(iperfRun a b "$secs") || die "iperf3 a -> b failed"
  wait "$pj" || true
  load_ab=$(cat "$pf")
  (sleep 1.5; pingStats a "$B" "$pings" 0.2 >"$pf") &
  pj=$!
  tput_ba=$(iperfRun a b "$secs" -R) || die "iperf3 b -> a failed"
  wait "$pj" || true
  load_ba=$(cat "$pf")
  rm -f "$pf"

  # name|label|value|unit|target|judged|kind
  local rows=(
    "a_to_b_throughput|a -> b throughput|$tput_ab|bit/s|$goodput|1|rate"
    "b_to_a_throughput|b -> a throughput|$tput_ba|bit/s|$goodput|1|rate"
    "a_b_rtt_idle|a <-> b RTT idle|${idle_ab%% *}|ms|$rtt_us|1|rtt"
    "a_lb_rtt_idle|a <-> lb RTT idle|${idle_alb%% *}|ms|$rtt_us|1|rtt"
    "a_b_rtt_during_a_to_b|a <-> b RTT, a -> b loaded|${load_ab%% *}|ms|$rtt_us|0|rtt"
    "a_b_rtt_during_b_to_a|a <-> b RTT, b -> a loaded|${load_ba%% *}|ms|$rtt_us|0|rtt"
  )
  awk -v json="$json" -v tol="$TOLERANCE" -v profile="$profile" -v ceiling="$ceiling" -v secs="$secs" \
    -v maxes="${idle_ab##* } ${idle_alb##* } ${load_ab##* } ${load_ba##* }" '
    function human(v, unit) {
      if (unit == "bit/s") return v >= 1e9 ? sprintf("%.3f Gbit/s", v / 1e9) : sprintf("%.2f Mbit/s", v / 1e6)
      return sprintf("%.3f ms", v)
    }
    BEGIN { FS = "|"; n = 0; bad = ""; split(maxes, mx, " ") }
    {
      n++; name[n] = $1; label[n] = $2; unit[n] = $4; judged[n] = $6
      value[n] = ($4 == "ms") ? $3 + 0 : $3 + 0
      target[n] = ($7 == "rtt") ? $5 / 1000.0 : $5 + 0
      isceil[n] = ($7 == "rtt" && ceiling == 1)
      missing[n] = ($3 == "")
      dev[n] = missing[n] ? 0 : (value[n] - target[n]) / target[n]
      if (isceil[n]) within[n] = !missing[n] && value[n] <= target[n] * (1 + tol)
      else within[n] = !missing[n] && dev[n] <= tol && dev[n] >= -tol
      if (judged[n] && !within[n]) bad = bad (bad == "" ? "" : ", ") label[n]
      if ($7 == "rtt") rttmax[n] = mx[n - 2]
    }
    END {
      if (json) {
        printf "{\"profile\":\"%s\",\"tolerance\":%s,\"duration_s\":%d,\"ok\":%s,\"measurements\":[", profile, tol, secs, (bad == "" ? "true" : "false")
        for (i = 1; i <= n; i++) {
          printf "%s{\"name\":\"%s\",\"value\":%s,\"unit\":\"%s\",\"target\":%s,\"target_is_ceiling\":%s,\"deviation\":%.4f,\"within_tolerance\":%s,\"judged\":%s%s}",
            (i > 1 ? "," : ""), name[i], (missing[i] ? "null" : value[i]), unit[i], target[i], (isceil[i] ? "true" : "false"),
            dev[i], (within[i] ? "true" : "false"), (judged[i] ? "true" : "false"),
            (unit[i] == "ms" && rttmax[i] != "") ? sprintf(",\"max\":%s", rttmax[i]) : ""
        }
        printf "]}\n"
        exit
      }
      printf "link-test, profile %s (iperf3 %d s per direction, ping; tolerance ±%d %%)\n", profile, secs, tol * 100
      printf "  %-28s %-14s %-16s %-10s %s\n", "measure", "value", "target", "deviation", "verdict"
      for (i = 1; i <= n; i++) {
        v = missing[i] ? "(none)" : human(value[i], unit[i])
        t = (isceil[i] ? "<= " : "") human(target[i], unit[i])
        d = sprintf("%+.1f %%", dev[i] * 100)
        if (!judged[i]) verdict = "info (includes queueing behind the shaper)"
        else verdict = within[i] ? "ok" : "OUTSIDE ±15 %"
        extra = (unit[i] == "ms" && rttmax[i] != "") ? sprintf("  [max %.3f ms]", rttmax[i]) : ""
        printf "  %-28s %-14s %-16s %-10s %s%s\n", label[i], v, t, d, verdict, extra
      }
      if (bad == "") printf "result: every judged figure is within ±15 %% of profile %s\n", profile
      else printf "result: OUTSIDE ±15 %% of profile %s: %s\n", profile, bad
    }' < <(printf '%s\n' "${rows[@]}")
  # exit code 3 when a judged figure is off
  local ok=0 r
  for r in "${rows[@]}"; do
    IFS='|' read -r _ _ v _ t j k <<<"$r"
    ((j)) || continue
    [[ -n $v ]] || { ok=1; continue; }
    if [[ $k == rtt && $ceiling == 1 ]]; then
      awk -v v="$v" -v t="$t" -v tol="$TOLERANCE" 'BEGIN { exit !(v <= t / 1000 * (1 + tol)) }' || ok=1
    else
      [[ $k == rtt ]] && t=$(awk -v t="$t" 'BEGIN { print t / 1000 }')
      awk -v v="$v" -v t="$t" -v tol="$TOLERANCE" 'BEGIN { d = (v - t) / t; exit !(d <= tol && d >= -tol) }' || ok=1
    fi
  done
  ((ok == 0)) || return 3
}

verb=${1:-}
(($#)) && shift
case "$verb" in
  apply) cmdApply "$@" ;;
  clear) cmdClear ;;
  show) cmdShow ;;
  test) cmdTest "$@" ;;
  "") usage ;;
  *) echo "links: unknown verb '$verb' — use apply PROFILE, clear, show or test" >&2; exit 2 ;;
esac

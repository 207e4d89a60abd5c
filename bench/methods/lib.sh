# The part every method runner shares (sourced by thesis.sh, podman.sh, ferry.sh):
# arguments, the clients that measure the move (probe, writer, curl session, browser),
# phase timing, SSH between a and b, and the one JSON line a runner prints.
#
# The contract of a runner (bench/README.md, "ferry bench"):
#   METHOD.sh --from a|b --to b|a [--run-dir DIR] [--shared-storage] [--browser]
# moves the deployed reference service FROM → TO while the probe (every 10 ms) and the
# writer run through the load balancer (http://lb, from host `client`), and prints ONE
# JSON line on stdout whose keys are the method's columns of runs.csv. Everything else
# goes to stderr. Exit 0 when the line says "result":"committed"; on any failure the
# line still comes, with "result":"failed" and "error", and the exit code is 1.
# shellcheck shell=bash

METHODS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHARED_STORAGE_ROOT=/srv/ferry-shared
BENCH_CLIENT_DIR=/tmp/ferry-bench          # in host `client` (its /tmp is private)
BENCH_SSH_DIR=/run/ferry-bench-ssh         # in hosts a and b (their /run is private)
BENCH_PROBE_INTERVAL=${FERRY_BENCH_PROBE_INTERVAL:-10ms}
# How long the probe and the writer wait for one answer, as a user's browser would (it
# waits minutes; 15 s is impatient). A request held across the move and then answered is
# slow, not failed: max_request_ms shows how slow.
BENCH_CLIENT_TIMEOUT=${FERRY_BENCH_CLIENT_TIMEOUT:-15s}
BENCH_TIMEOUT_S=${FERRY_BENCH_TIMEOUT_S:-1800}  # one move at most (ferry bench sets it per profile)
BENCH_ANSWER_TIMEOUT_S=120                 # service back through lb after the move
BENCH_SETTLE_S=2                           # probe keeps running this long after that

bench_usage() {
  echo "usage: $(basename "$0") --from a|b --to b|a [--run-dir DIR] [--shared-storage] [--browser]" >&2
  exit 2
}

# Parses the common arguments, then sources the service helpers (whose DATA_DIR depends
# on FERRY_SERVICE_DATA, set here for --shared-storage).
bench_init() {
  local method=$1; shift
  BENCH_METHOD=$method FROM="" TO="" RUN_DIR="" SHARED=0 BROWSER=0
  while (($#)); do
    case $1 in
      --from) FROM=${2:-}; shift 2 ;;
      --to) TO=${2:-}; shift 2 ;;
      --run-dir) RUN_DIR=${2:-}; shift 2 ;;
      --shared-storage) SHARED=1; shift ;;
      --browser) BROWSER=1; shift ;;
      -h|--help) bench_usage ;;
      *) echo "$method: unknown argument '$1'" >&2; bench_usage ;;
    esac
  done
  [[ ($FROM == a && $TO == b) || ($FROM == b && $TO == a) ]] \
    || { echo "$method: --from/--to must be 'a b' or 'b a'" >&2; exit 2; }
  if ((SHARED)); then export FERRY_SERVICE_DATA=${FERRY_SERVICE_DATA:-$SHARED_STORAGE_ROOT/ref}; fi
  # shellcheck source=../../deploy/service/lib.sh
  source "$METHODS_DIR/../../deploy/service/lib.sh"
  # The service's die() exits with a message; keep the message for the JSON line too.
  die() { BENCH_ERROR="$*"; printf '%s: %s\n' "$BENCH_METHOD" "$*" >&2; exit 1; }
  command -v jq >/dev/null || { echo "$method: jq is missing — apt-get install jq (deploy/packages/bench.txt)" >&2; exit 2; }
  if [[ -z $RUN_DIR ]]; then RUN_DIR=$(mktemp -d /tmp/ferry-bench-run.XXXXXX); fi
  mkdir -p "$RUN_DIR"
  BENCH_ERROR="" BENCH_STEP="start" BENCH_EMITTED=0 BENCH_PROBE_JOB="" BENCH_WRITER_JOB=""
  BENCH_PHASES='[]'
  declare -gA BENCH_PHASE_START=()
  BENCH_T0_MS=$(now_ms)
  trap bench_on_exit EXIT
  # `ferry bench` stops a runner with SIGTERM: the EXIT trap still stops the clients and
  # prints the line.
  trap 'BENCH_ERROR=${BENCH_ERROR:-"stopped by a signal during: $BENCH_STEP"}; exit 143' TERM INT
  for h in "$FROM" "$TO" lb client; do host_pid "$h" >/dev/null; done
}

now_ms() { date +%s%3N; }

# podman in a host, bounded by the run's deadline.
tpodman() {  # tpodman HOST ARGS...
  local host=$1; shift
  on_host "$host" timeout "$BENCH_TIMEOUT_S" podman "${PODMAN_FLAGS[@]}" "$@"
}

# step "what is being done": names the step an error message refers to.
step() { BENCH_STEP=$*; log "$BENCH_METHOD: $*"; }

# Phases, the same shape as ferry migrate's report: times in ms from the run's start.
phase_begin() { BENCH_PHASE_START[$1]=$(now_ms); }
phase_end() {  # phase_end NAME [BYTES]
  local name=$1 bytes=${2:-0} start end
  start=${BENCH_PHASE_START[$name]:?phase $name was not begun}
  end=$(now_ms)
  BENCH_PHASES=$(jq -c --arg n "$name" --argjson s "$((start - BENCH_T0_MS))" --argjson e "$((end - BENCH_T0_MS))" \
    --argjson b "$bytes" '. + [{name: $n, start_ms: $s, end_ms: $e, ms: ($e - $s), bytes: $b}]' <<<"$BENCH_PHASES")
}
phase_start_unix_ms() { echo "${BENCH_PHASE_START[$1]:?phase $1 was not begun}"; }

# What `ferry lab deploy` wrote next to the data: rows, video_mb, state_mb.
service_env() {  # service_env KEY (read on FROM before the move: some methods delete the data)
  on_host "$FROM" sed -n "s/^$1=//p" "$DATA_DIR/service.env"
}

require_service_on_from() {
  local c
  for c in db web; do
    [[ $(hpodman "$FROM" inspect --format '{{.State.Status}}' "$c" 2>/dev/null) == running ]] \
      || die "container $c is not running on $FROM — deploy it there first ('ferry lab deploy --on $FROM')"
  done
  BENCH_ROWS=$(service_env rows) BENCH_VIDEO_MB=$(service_env video_mb) BENCH_STATE_MB=$(service_env state_mb)
  [[ $BENCH_ROWS =~ ^[0-9]+$ ]] || die "no rows= in $DATA_DIR/service.env on $FROM — redeploy with 'ferry lab deploy'"
}

# ---- the clients: curl session, browser, probe, writer ----------------------------------
# A job in host `client`: its pid is written by the job itself (the lab has no PID
# namespace per host, so the pid is the machine's too).
client_job() {  # client_job NAME OUT ERR CMD...: sets CLIENT_JOB (the machine-side job)
  local name=$1 out=$2 err=$3; shift 3
  on_host client sh -c "echo \$\$ > $BENCH_CLIENT_DIR/$name.pid; exec \"\$@\"" sh "$@" >"$out" 2>"$err" &
  CLIENT_JOB=$!
  local deadline=$((SECONDS + 10))
  until on_host client test -s "$BENCH_CLIENT_DIR/$name.pid"; do
    ((SECONDS < deadline)) || die "$name did not start in host client within 10 s: $(tail -n 1 "$err")"
    sleep 0.05
  done
}

# Stops a client job with SIGTERM (it then prints its report), bounded; SIGKILL after.
stop_client_job() {  # stop_client_job NAME JOB TIMEOUT_S
  local name=$1 job=$2 timeout=$3 deadline
  on_host client sh -c "kill -TERM \$(cat $BENCH_CLIENT_DIR/$name.pid) 2>/dev/null" || true
  deadline=$((SECONDS + timeout))
  while kill -0 "$job" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$job" 2>/dev/null; then
    log "$BENCH_METHOD: $name did not stop within ${timeout} s; killing it"
    on_host client sh -c "kill -KILL \$(cat $BENCH_CLIENT_DIR/$name.pid) 2>/dev/null" || true
    kill -KILL "$job" 2>/dev/null || true
  fi
  wait "$job" 2>/dev/null || true
}

clients_start() {
  step "starting the clients in host client (curl session, probe every $BENCH_PROBE_INTERVAL, writer)"
  on_host client sh -c "rm -rf $BENCH_CLIENT_DIR && mkdir -p $BENCH_CLIENT_DIR"
  on_host client curl -fsS -o /dev/null --max-time 5 -c "$BENCH_CLIENT_DIR/cookies" \
    -d user=user2 -d password=pass2 http://lb/login.php || die "curl login through lb failed before the move"
  if ((BROWSER)); then
    "$SERVICE_DIR/browser/run.sh" login --state "$RUN_DIR/browser-state.json" >"$RUN_DIR/browser-before.json" \
      || die "browser login before the move failed: $(cat "$RUN_DIR/browser-before.json")"
  fi
  client_job probe "$RUN_DIR/probe.json" "$RUN_DIR/probe.err" \
    ferry probe --url http://lb/health.php --interval "$BENCH_PROBE_INTERVAL" --timeout "$BENCH_CLIENT_TIMEOUT" --duration "$((BENCH_TIMEOUT_S + 600))s" \
    --timeline "$BENCH_CLIENT_DIR/timeline.csv" --output json
  BENCH_PROBE_JOB=$CLIENT_JOB
  client_job writer "$RUN_DIR/writer.json" "$RUN_DIR/writer.err" \
    ferry writer --url http://lb --writer "bench-$(now_ms)" --timeout "$BENCH_CLIENT_TIMEOUT" --duration "$((BENCH_TIMEOUT_S + 600))s" \
    --state "$BENCH_CLIENT_DIR/writer-state.json" --output json
  BENCH_WRITER_JOB=$CLIENT_JOB
  sleep 1  # a second of normal service before the move
}

# After the move: the service must answer through lb again (bounded), then the clients
# stop and their reports are read.
clients_stop() {
  step "waiting for the service to answer through lb"
  local deadline=$((SECONDS + BENCH_ANSWER_TIMEOUT_S))
  until on_host client curl -fsS -o /dev/null --max-time 1 http://lb/health.php 2>/dev/null; do
    ((SECONDS < deadline)) || die "the service did not answer through lb within ${BENCH_ANSWER_TIMEOUT_S} s after the move"
    sleep 0.05
  done
  sleep "$BENCH_SETTLE_S"
  step "stopping the probe and the writer"
  stop_client_job probe "$BENCH_PROBE_JOB" 30; BENCH_PROBE_JOB=""
  stop_client_job writer "$BENCH_WRITER_JOB" 90; BENCH_WRITER_JOB=""
  jq -e .sent "$RUN_DIR/probe.json" >/dev/null 2>&1 || die "the probe printed no report: $(tail -n 1 "$RUN_DIR/probe.err")"
  jq -e .acknowledged "$RUN_DIR/writer.json" >/dev/null 2>&1 \
    || die "the writer printed no report: $(tail -n 1 "$RUN_DIR/writer.err")"
  on_host client cat "$BENCH_CLIENT_DIR/timeline.csv" >"$RUN_DIR/timeline.csv" || true
  local who
  who=$(on_host client curl -fsS --max-time 5 -b "$BENCH_CLIENT_DIR/cookies" http://lb/whoami.php || echo '{}')
  BENCH_SESSION_KEPT=$(jq -r 'if .logged_in == true then "true" else "false" end' <<<"$who" 2>/dev/null || echo false)
  BENCH_BROWSER_KEPT=null
  if ((BROWSER)); then
    "$SERVICE_DIR/browser/run.sh" check --state "$RUN_DIR/browser-state.json" >"$RUN_DIR/browser-after.json" || true
    BENCH_BROWSER_KEPT=$(jq -r 'if .logged_in == true and .plays == true then "true" else "false" end' \
      "$RUN_DIR/browser-after.json" 2>/dev/null || echo false)
  fi
}

# ---- SSH between a and b (the study copied with rsync over SSH as root) --------------
# Per host, in its private /run: a host key and a client key made there (never in the
# repository), an sshd of its own on the lab address with root key-only login, the
# peer's client key (restricted to the peer's address) as the only authorized key, and
# the peer's host key pinned in known_hosts.
SSH_OPTS=(-i "$BENCH_SSH_DIR/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes
  -o UserKnownHostsFile="$BENCH_SSH_DIR/known_hosts" -o StrictHostKeyChecking=yes
  -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=6)
RSYNC_SSH="ssh ${SSH_OPTS[*]}"

ssh_setup() {
  step "setting up root SSH between a and b (keys made in the hosts)"
  local h peer addr
  for h in a b; do
    addr=$(on_host "$h" getent hosts "$h" | awk '{print $1}')
    on_host "$h" sh -euc '
      d=$1 addr=$2
      mkdir -p -m 0700 "$d"; mkdir -p -m 0755 /run/sshd
      [ -s "$d/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C "ferry-bench host $(hostname)" -f "$d/host_ed25519"
      [ -s "$d/id_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -C "ferry-bench root@$(hostname)" -f "$d/id_ed25519"
      cat > "$d/sshd_config" <<CONF
# ferry bench (bench/methods/lib.sh): root over SSH with keys only, for the rsync of the study
Port 22
ListenAddress $addr
HostKey $d/host_ed25519
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
AllowTcpForwarding no
CONF
      touch "$d/authorized_keys" && chmod 600 "$d/authorized_keys"
      /usr/sbin/sshd -t -f "$d/sshd_config"' sh "$BENCH_SSH_DIR" "$addr" \
      || die "sshd configuration in host $h is not valid (is openssh-server in deploy/lab/rootfs-packages.txt and the rootfs rebuilt?)"
  done
  for h in a b; do
    peer=$([[ $h == a ]] && echo b || echo a)
    addr=$(on_host "$peer" getent hosts "$peer" | awk '{print $1}')
    # h's authorized key: the peer's client key, only from the peer's address.
    printf 'from="%s",restrict %s\n' "$addr" "$(on_host "$peer" cat "$BENCH_SSH_DIR/id_ed25519.pub")" \
      | on_host "$h" sh -c "cat > $BENCH_SSH_DIR/authorized_keys"
    # h pins the peer's host key under its name and address.
    printf '%s,%s %s\n' "$peer" "$addr" "$(on_host "$peer" cut -d' ' -f1-2 "$BENCH_SSH_DIR/host_ed25519.pub")" \
      | on_host "$h" sh -c "cat > $BENCH_SSH_DIR/known_hosts"
    on_host "$h" sh -c "test -s $BENCH_SSH_DIR/sshd.pid && kill -0 \$(cat $BENCH_SSH_DIR/sshd.pid) 2>/dev/null \
      || /usr/sbin/sshd -f $BENCH_SSH_DIR/sshd_config" || die "sshd did not start in host $h"
  done
  for h in a b; do
    peer=$([[ $h == a ]] && echo b || echo a)
    on_host "$h" timeout 20 ssh "${SSH_OPTS[@]}" "root@$peer" true \
      || die "root SSH from $h to $peer does not work (see $BENCH_SSH_DIR in both hosts)"
  done
}

# rsync from FROM over the bench's SSH; sets RSYNC_SENT to the bytes it sent
# ("Total bytes sent" of --stats).
rsync_ssh() {  # rsync_ssh LOGNAME RSYNC-ARGS...
  local name=$1; shift
  on_host "$FROM" rsync --stats -e "$RSYNC_SSH" "$@" >"$RUN_DIR/rsync-$name.log" 2>&1 \
    || die "$BENCH_STEP failed: rsync $name: $(tail -n 1 "$RUN_DIR/rsync-$name.log")"
  RSYNC_SENT=$(sed -n 's/^Total bytes sent: *//p' "$RUN_DIR/rsync-$name.log" | tr -d ',.' | head -1)
  [[ $RSYNC_SENT =~ ^[0-9]+$ ]] || die "rsync $name printed no 'Total bytes sent' (see $RUN_DIR/rsync-$name.log)"
}

file_bytes() {  # file_bytes HOST FILE...: sum of the files' sizes
  on_host "$1" stat -c %s "${@:2}" | awk '{s += $1} END {printf "%d", s}'
}

# ---- the JSON line ---------------------------------------------------------------------
# emit METHOD_JSON: the method's own keys (mode, switch_driver, bytes, server-side
# times, phases) merged with what the clients measured.
emit() {
  local m=$1 line
  line=$(jq -c -n --argjson m "$m" --slurpfile p "$RUN_DIR/probe.json" --slurpfile w "$RUN_DIR/writer.json" \
    --arg method "$BENCH_METHOD" --arg from "$FROM" --arg to "$TO" --argjson rows "$BENCH_ROWS" \
    --argjson video "${BENCH_VIDEO_MB:-0}" --argjson state "${BENCH_STATE_MB:-0}" \
    --argjson session "$BENCH_SESSION_KEPT" --argjson browser "$BENCH_BROWSER_KEPT" \
    --argjson phases "$BENCH_PHASES" --arg run_dir "$RUN_DIR" '
    {method: $method, from: $from, to: $to, rows: $rows, video_mb: $video, state_mb: $state,
     result: "committed", error: ""} + $m + {
     client_downtime_ms: $p[0].client_downtime_ms, failed_requests: $p[0].failed,
     max_request_ms: $p[0].max_ms,
     probe_sent: $p[0].sent, probe_recovered: $p[0].recovered,
     probe_max_send_lag_ms: $p[0].max_send_lag_ms,
     writes_acknowledged: $w[0].acknowledged, lost_writes: $w[0].missing,
     writes_unknown: $w[0].unknown, writes_duplicated: $w[0].duplicated,
     session_kept: $session, browser_session_kept: $browser,
     phases: (if ($m | has("phases")) then $m.phases else $phases end),
     timeline: ($run_dir + "/timeline.csv"), run_dir: $run_dir}') \
    || die "cannot assemble the JSON line (the probe or writer report is malformed: see $RUN_DIR)"
  BENCH_EMITTED=1
  printf '%s\n' "$line"
}

# On any exit: clients stopped (bounded), and when no line was printed, a failure line.
bench_on_exit() {
  local rc=$?
  trap - EXIT
  set +e
  die() { BENCH_ERROR=${BENCH_ERROR:-$*}; printf '%s: %s\n' "$BENCH_METHOD" "$*" >&2; return 1; }
  [[ -n ${BENCH_PROBE_JOB:-} ]] && stop_client_job probe "$BENCH_PROBE_JOB" 10
  [[ -n ${BENCH_WRITER_JOB:-} ]] && stop_client_job writer "$BENCH_WRITER_JOB" 30
  if ((BENCH_EMITTED == 0)); then
    [[ -n $BENCH_ERROR ]] || BENCH_ERROR="$BENCH_STEP failed (exit $rc)"
    jq -c -n --arg method "$BENCH_METHOD" --arg from "$FROM" --arg to "$TO" --arg error "$BENCH_ERROR" \
      --arg run_dir "$RUN_DIR" '{method: $method, from: $from, to: $to, result: "failed", error: $error, run_dir: $run_dir}'
    ((rc != 0)) || rc=1
  fi
  exit "$rc"
}

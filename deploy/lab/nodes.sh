#!/usr/bin/env bash
# The ferry node daemons of the lab: one in host `a` (active) and one in host `b`
# (standby), each with its own CURVE key pair in its private /etc/ferry, paired with
# the other's public key, mirroring /srv/ferry/ref.
#
#   nodes.sh start [HOST...]   keys (once per lab), pairing, config, start (idempotent)
#   nodes.sh stop [HOST...]    stop the daemons (SIGTERM; replica state and journal stay)
#   nodes.sh kill HOST...      SIGKILL the daemons (a crash, for the tests)
#   nodes.sh reset [--active a|b]
#                              stop both and forget their state (journal, replica state,
#                              roles): the next start begins with a (or the one named)
#                              active, the other standby
#   nodes.sh status            `ferry status` on both
# The environment reaches the daemons (e.g. FERRY_FAILPOINTS=target.restore for a test);
# FERRY_NODE_EXTRA adds lines to the configuration of the nodes started. A data directory
# under the lab's shared storage ($LAB_SHARED, `ferry lab up --shared-storage`) gives
# nodes with shared_storage = on: they mirror nothing.
set -euo pipefail
source "$(dirname "$0")/common.sh"

NODE_HOSTS=(a b)
DATA_DIR=${FERRY_SERVICE_DATA:-/srv/ferry/ref}

inHost() {  # inHost HOST CMD... — run inside a lab host (mount + network namespaces)
  local host=$1; shift
  local pid
  pid=$(cat "$LAB_RUN/hosts/$host/pid" 2>/dev/null) || die "host $host is not running: run 'ferry lab up' first"
  nsenter -t "$pid" -m -n -u -- env PATH="$HOST_PATH" "$@"
}

publicKey() { inHost "$1" sed -n 's/^public-key = "\(.*\)"/\1/p' /etc/ferry/node.pub; }

writeConfig() {  # writeConfig HOST ROLE
  local host=$1 role=$2 peer_line="" shared=off
  [[ $DATA_DIR == "$LAB_SHARED"/* ]] && shared=on
  # b connects to a; the link is symmetric once up, so roles can swap without
  # changing who listens.
  [[ $host == b ]] && peer_line="peer = tcp://a:7700"
  inHost "$host" sh -c "mkdir -p /etc/ferry /var/log/ferry && cat > /etc/ferry/node.conf" <<CONF
# written by deploy/lab/nodes.sh
name = $host
listen = tcp://0.0.0.0:7700
$peer_line
data_dir = $DATA_DIR
role = $role
# The reference service answers here on whichever host runs it (podman publishes :80).
health_url = http://127.0.0.1/health.php
shared_storage = $shared
${FERRY_NODE_EXTRA:-}
CONF
}

# The daemon's pid is kept in /run/ferry/node.pid inside the host (`pgrep -f` would
# also match the shell that runs it).
# A killed daemon may linger as a zombie until it is reaped: that is not running.
running() {
  inHost "$1" sh -c 'p=$(cat /run/ferry/node.pid 2>/dev/null) || exit 1
    s=$(sed -n "s/^State:[[:space:]]*\([A-Z]\).*/\1/p" /proc/$p/status 2>/dev/null)
    [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]'
}

# Podman's REST API service in HOST, as systemd's podman.socket gives a real host: the
# node (podman_api = auto) uses it for inspect, exists, image lookups and remove.
# FERRY_LAB_PODMAN_API=off leaves it out (the nodes then run the CLI for every call).
podmanApi() {
  [[ ${FERRY_LAB_PODMAN_API:-on} == on ]] || return 0
  inHost "$1" sh -c 'ping() { curl -s --max-time 1 --unix-socket /run/podman/podman.sock http://d/_ping 2>/dev/null | grep -qx OK; }
    ping && exit 0
    mkdir -p /run/podman /var/log/ferry
    setsid podman system service --time=0 unix:///run/podman/podman.sock >>/var/log/ferry/podman-api.log 2>&1 </dev/null &
    for i in $(seq 100); do ping && exit 0; sleep 0.1; done
    exit 1' || die "podman system service did not answer in $1 within 10 s: see /var/log/ferry/podman-api.log there"
}

start() {
  local hosts=("$@")
  ((${#hosts[@]})) || hosts=("${NODE_HOSTS[@]}")
  for h in "${NODE_HOSTS[@]}"; do
    inHost "$h" test -f /etc/ferry/node.key || inHost "$h" ferry keygen --dir /etc/ferry >/dev/null
  done
  inHost a ferry pair --dir /etc/ferry --name b --peer-key "$(publicKey b)" >/dev/null
  inHost b ferry pair --dir /etc/ferry --name a --peer-key "$(publicKey a)" >/dev/null
  for h in "${hosts[@]}"; do
    if running "$h"; then
      say "node on $h already running"
      continue
    fi
    # The first start decides the roles (a is active); later starts keep the role the
    # host has now and take the data directory from FERRY_SERVICE_DATA.
    local role
    role=$(inHost "$h" sed -n 's/^role = //p' /etc/ferry/node.conf 2>/dev/null || true)
    [[ -n $role ]] || { role=standby; [[ $h == a ]] && role=active; }
    writeConfig "$h" "$role"
    podmanApi "$h"
    inHost "$h" sh -c 'mkdir -p /run/ferry; setsid ferry node run --config /etc/ferry/node.conf \
      >>/var/log/ferry/node.log 2>&1 < /dev/null & echo $! > /run/ferry/node.pid'
  done
  for h in "${hosts[@]}"; do
    local deadline=$((SECONDS + 15))
    until inHost "$h" ferry status >/dev/null 2>&1; do
      ((SECONDS < deadline)) || die "node on $h did not answer within 15 s: see /var/log/ferry/node.log in $h"
      sleep 0.2
    done
  done
  say "nodes running: a (listens on a:7700), b (connects to a)"
}

stop() {  # stop SIGNAL [HOST...]: signal the daemons and wait (bounded) until they are gone
  local sig=$1
  shift
  local hosts=("$@")
  ((${#hosts[@]})) || hosts=("${NODE_HOSTS[@]}")
  for h in "${hosts[@]}"; do
    [[ -f $LAB_RUN/hosts/$h/pid ]] || continue
    inHost "$h" sh -c "p=\$(cat /run/ferry/node.pid 2>/dev/null) && kill -$sig \"\$p\" 2>/dev/null; true"
  done
  for h in "${hosts[@]}"; do
    [[ -f $LAB_RUN/hosts/$h/pid ]] || continue
    local deadline=$((SECONDS + 20))
    while running "$h"; do
      ((SECONDS < deadline)) || die "node on $h did not stop within 20 s"
      sleep 0.1
    done
    inHost "$h" rm -f /run/ferry/node.pid
  done
}

reset() {  # reset [--active HOST]
  local active=""
  if (($#)); then
    [[ $1 == --active && (${2:-} == a || ${2:-} == b) ]] || die "usage: nodes.sh reset [--active a|b]"
    active=$2
  fi
  stop TERM
  for h in "${NODE_HOSTS[@]}"; do
    inHost "$h" rm -rf /var/lib/ferry
    if [[ -n $active ]]; then
      # The roles the next start keeps (start takes the role from the configuration).
      writeConfig "$h" "$([[ $h == "$active" ]] && echo active || echo standby)"
    else
      inHost "$h" sh -c 'test -f /etc/ferry/node.conf && sed -i "/^role = /d" /etc/ferry/node.conf; true'
    fi
  done
}

cmd=${1:-}
shift || true
case "$cmd" in
  start) start "$@" ;;
  stop) stop TERM "$@" ;;
  kill) (($#)) || die "kill: name the host(s)"; stop KILL "$@" ;;
  reset) reset "$@" ;;
  status) for h in "${NODE_HOSTS[@]}"; do echo "== $h"; inHost "$h" ferry status || true; done ;;
  *) echo "usage: nodes.sh start [HOST...] | stop [HOST...] | kill HOST... | reset [--active a|b] | status" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The lab's front on host `lb` for one switch-over driver, and the switch agent that
# drives it (`ferry proxy run`). Called by `ferry lab deploy --switch DRIVER`
# (deploy/service/deploy.sh, step 5); safe to run again.
#
#   lb-deploy.sh --switch proxy|haproxy|nginx --on a|b
#   lb-deploy.sh --stop          stop the agent and whichever front it started
#   lb-deploy.sh --stop-agent    stop the agent and HAProxy, leave nginx (deploy.sh without
#                                --switch, before lb.sh starts the study's nginx)
#
#   proxy    ferry's hand-off proxy on lb:80 (inside the agent), backend <on>:80
#   haproxy  HAProxy on lb:80 from haproxy.cfg.tmpl (s1 = <on>, s2 = the other, disabled)
#   nginx    nginx on lb:80 from nginx.conf.tmpl with the upstream in a file of its own
# Keys: lb gets a key pair; a and b (node keys made here if `nodes.sh start` has not)
# are paired on lb, and lb's key is paired on a and b in /etc/ferry/switch (a directory
# of its own, so their node links never admit it). The nodes then use
#   switch = <driver>, switch_agent = tcp://lb:7400, agent key: /etc/ferry/switch (name lb)
#
# Exercised by tests/integration/switch_test.cc and bench/switch_bench.sh.
set -euo pipefail
source "$(dirname "$0")/../service/lib.sh"
SWITCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run=/run/ferry-lb
conf=/etc/ferry/lb
agent_conf=/etc/ferry/lb.conf
agent_port=7400

switch=""; on=""; stop=0; keep_nginx=0
while (($#)); do
  case $1 in
    --switch) switch=${2:-}; shift 2 ;;
    --on) on=${2:-}; shift 2 ;;
    --stop) stop=1; shift ;;
    --stop-agent) stop=1; keep_nginx=1; shift ;;
    *) echo "lb-deploy: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

# Stops the agent, HAProxy and (unless keep_nginx) nginx on lb, each by the pid it wrote.
stop_all() {
  on_host lb env keep_nginx="$keep_nginx" sh -c "
    for f in /run/ferry/agent.pid $run/haproxy.pid; do
      p=\$(cat \$f 2>/dev/null) && kill -TERM \$p 2>/dev/null
      rm -f \$f
    done
    if [ \"\$keep_nginx\" = 0 ] && test -s $run/nginx.pid && kill -0 \$(cat $run/nginx.pid) 2>/dev/null; then
      nginx -c $conf/nginx.conf -s quit 2>/dev/null || true
    fi
    true"
  ((keep_nginx)) && return 0
  # Port 80 must be free before the next front binds it.
  for _ in $(seq 50); do
    on_host lb sh -c "ss -ltn 'sport = :80' | grep -q LISTEN" || return 0
    sleep 0.1
  done
  die "something still listens on lb:80 after stopping the fronts"
}

if ((stop)); then stop_all; log "switch agent and front on lb stopped"; exit 0; fi
[[ $switch == proxy || $switch == haproxy || $switch == nginx ]] \
  || { echo "lb-deploy: --switch must be proxy, haproxy or nginx" >&2; exit 2; }
[[ $on == a || $on == b ]] || { echo "lb-deploy: --on must be a or b" >&2; exit 2; }
other=$([[ $on == a ]] && echo b || echo a)
addr() { on_host lb getent hosts "$1" | awk '{print $1; exit}'; }
on_ip=$(addr "$on"); other_ip=$(addr "$other")
[[ -n $on_ip && -n $other_ip ]] || die "lb cannot resolve a and b"

# 1. keys and pairing
publicKey() { on_host "$1" sed -n 's/^public-key = "\(.*\)"/\1/p' /etc/ferry/node.pub; }
for h in lb a b; do
  on_host "$h" test -f /etc/ferry/node.key || on_host "$h" ferry keygen --dir /etc/ferry >/dev/null
done
for h in a b; do
  on_host lb ferry pair --dir /etc/ferry --name "$h" --peer-key "$(publicKey "$h")" >/dev/null
  on_host "$h" ferry pair --dir /etc/ferry/switch --name lb --peer-key "$(publicKey lb)" >/dev/null
done

# 2. the front
stop_all
pid=$(host_pid lb)
on_host lb mkdir -p "$run" "$conf" /run/ferry /var/log/ferry /var/lib/ferry/switch
on_host lb rm -f /var/lib/ferry/switch/ref.backend   # a fresh deploy starts where --on says
case $switch in
  proxy)
    service="driver = proxy
front = 0.0.0.0:80
backend = $on:80
health_path = /health.php"
    ;;
  haproxy)
    sed -e "s|@RUN@|$run|g" -e "s|@SOURCE@|$on_ip|g" -e "s|@SPARE@|$other_ip|g" \
      "$SWITCH_DIR/haproxy.cfg.tmpl" >"/proc/$pid/root$conf/haproxy.cfg"
    out=$(on_host lb haproxy -c -q -f "$conf/haproxy.cfg" 2>&1) || die "HAProxy on lb rejects its config: $out"
    on_host lb haproxy -f "$conf/haproxy.cfg" || die "HAProxy failed to start on lb"
    service="driver = haproxy
stats_socket = $run/haproxy.sock
haproxy_backend = ferry_ref
servers = s1 s2
health_path = /health.php"
    ;;
  nginx)
    sed -e "s|@RUN@|$run|g" -e "s|@CONF@|$conf|g" "$SWITCH_DIR/nginx.conf.tmpl" >"/proc/$pid/root$conf/nginx.conf"
    printf 'upstream ferry_service {\n    server %s:80 max_fails=0;\n}\n' "$on_ip" \
      >"/proc/$pid/root$conf/upstream-ref.conf"
    on_host lb nginx -t -q -c "$conf/nginx.conf" || die "nginx on lb rejects $conf/nginx.conf"
    on_host lb nginx -c "$conf/nginx.conf" || die "nginx failed to start on lb (see $run/error.log there)"
    service="driver = nginx
nginx_conf = $conf/nginx.conf
pid_file = $run/nginx.pid
upstream_file = $conf/upstream-ref.conf
upstream_name = ferry_service
health_path = /health.php"
    ;;
esac

# 3. the agent
cat >"/proc/$pid/root$agent_conf" <<CONF
# written by deploy/switchover/lb-deploy.sh (--switch $switch --on $on)
listen = tcp://0.0.0.0:$agent_port
key_dir = /etc/ferry
state_dir = /var/lib/ferry/switch

[service ref]
$service
CONF
on_host lb sh -c "setsid ferry proxy run --config $agent_conf >>/var/log/ferry/agent.log 2>&1 </dev/null &
  echo \$! >/run/ferry/agent.pid"

# 4. traffic flows through lb
deadline=$(($(date +%s) + 20))
until on_host client curl -fsS -o /dev/null --max-time 2 http://lb/health.php 2>/dev/null; do
  (($(date +%s) < deadline)) || die "http://lb/health.php does not answer through the $switch front (see /var/log/ferry/agent.log on lb)"
  sleep 0.2
done
log "lb: $switch front on :80 -> $on ($on_ip), switch agent on lb:$agent_port"

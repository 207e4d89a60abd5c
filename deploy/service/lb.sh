#!/usr/bin/env bash
# The lab load balancer (nginx on host `lb`): `lb.sh apply` writes its config from
# nginx/lb.conf.tmpl and starts nginx or reloads it; `lb.sh stop`; `lb.sh status`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
run=/run/ferry-lb
conf=/etc/ferry/lb/nginx.conf
case ${1:-} in
  apply)
    pid=$(host_pid lb)
    on_host lb mkdir -p "$run" /etc/ferry/lb
    sed "s|@RUN@|$run|g" "$SERVICE_DIR/nginx/lb.conf.tmpl" >"/proc/$pid/root$conf.tmp"
    on_host lb mv "$conf.tmp" "$conf"
    on_host lb nginx -t -q -c "$conf" || die "nginx on lb rejects $conf"
    if on_host lb sh -c "test -s $run/nginx.pid && kill -0 \$(cat $run/nginx.pid) 2>/dev/null"; then
      out=$(on_host lb nginx -c "$conf" -s reload 2>&1) || die "nginx reload on lb failed: $out"
      log "nginx on lb reloaded"
    else
      on_host lb nginx -c "$conf" || die "nginx failed to start on lb (see $run/error.log there)"
      log "nginx on lb started"
    fi
    ;;
  stop)
    on_host lb sh -c "test -s $run/nginx.pid && nginx -c $conf -s quit" || true ;;
  status)
    on_host lb sh -c "test -s $run/nginx.pid && kill -0 \$(cat $run/nginx.pid) && echo running" || echo stopped ;;
  *) die "usage: lb.sh apply|stop|status" ;;
esac

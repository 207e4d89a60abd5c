#!/usr/bin/env bash
# Deploys the reference service on one lab server host and points the load balancer at it.
# Usage: deploy.sh --on a|b [--rows N] [--video-mb N] [--state-mb N] [--timeout S]
#                  [--switch proxy|haproxy|nginx]
#   1. images ferry-web / ferry-db built (cached) and loaded into a and b (same IDs);
#   2. containers `web`/`db` removed on both servers; a fresh data directory
#      (/srv/ferry/ref: mysql/, www/media/, www/sessions/, seed/) on the target;
#   3. Podman network `ferry` (10.89.0.0/24) on both servers; db (10.89.0.2) then web
#      (10.89.0.3, publishes port 80);
#   4. waits until http://<host>/health.php answers 200 from lb (deadline);
#   5. nginx on lb with both servers in one upstream (lb.sh apply), or with --switch the
#      chosen front and the switch agent on lb (../switchover/lb-deploy.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
on=""; rows=1000; video_mb=20; state_mb=0; timeout=""; switch=""
while (($#)); do
  case $1 in
    --on) on=${2:-}; shift 2 ;;
    --rows) rows=${2:-}; shift 2 ;;
    --video-mb) video_mb=${2:-}; shift 2 ;;
    --state-mb) state_mb=${2:-}; shift 2 ;;
    --timeout) timeout=${2:-}; shift 2 ;;
    --switch) switch=${2:-}; shift 2 ;;
    *) echo "deploy: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[[ $on == a || $on == b ]] || { echo "deploy: --on must be a or b" >&2; exit 2; }
[[ -z $switch || $switch == proxy || $switch == haproxy || $switch == nginx ]] \
  || { echo "deploy: --switch must be proxy, haproxy or nginx" >&2; exit 2; }
[[ $rows =~ ^[0-9]+$ && $rows -ge 1 ]] || { echo "deploy: --rows must be a positive integer" >&2; exit 2; }
[[ $video_mb =~ ^[0-9]+$ && $video_mb -ge 1 ]] || { echo "deploy: --video-mb must be a positive integer" >&2; exit 2; }
[[ $state_mb =~ ^[0-9]+$ ]] || { echo "deploy: --state-mb must be a non-negative integer" >&2; exit 2; }
[[ -z $timeout ]] && timeout=$((180 + state_mb / 3))
other=$([[ $on == a ]] && echo b || echo a)
t0=$(date +%s.%N)
for h in a b lb; do host_pid "$h" >/dev/null; done

# 1. images
images=$("$SERVICE_DIR/build-images.sh" a b)
web_ref=$(sed -n 's/^web=\([^ ]*\).*/\1/p' <<<"$images")
db_ref=$(sed -n 's/^db=\([^ ]*\).*/\1/p' <<<"$images")
media=$("$SERVICE_DIR/gen-videos.sh" "$video_mb")

# 2. clean slate on both servers, fresh data directory on the target
for h in a b; do
  hpodman "$h" rm -f -t 5 --ignore web db >/dev/null
done
pid=$(host_pid "$on")
root=/proc/$pid/root
rm -rf "${root:?}$DATA_DIR"
mkdir -p "$root$DATA_DIR"/{mysql,www/media,www/sessions,seed}
cp -a "$media"/*.mp4 "$root$DATA_DIR/www/media/"
"$SERVICE_DIR/gen-seed.sh" "$rows" "$state_mb" "$root$DATA_DIR/seed/init.sql"
chmod -R a+rX "$root$DATA_DIR/seed" "$root$DATA_DIR/www/media"
printf 'rows=%s\nvideo_mb=%s\nstate_mb=%s\nhost=%s\nweb=%s\ndb=%s\n' "$rows" "$video_mb" "$state_mb" \
  "$on" "$web_ref" "$db_ref" >"$root$DATA_DIR/service.env"

# 3. network and containers
for h in a b; do
  if ! hpodman "$h" network exists "$NET_NAME"; then
    hpodman "$h" network create --subnet "$NET_SUBNET" "$NET_NAME" >/dev/null
  fi
done
pool_mb=$((128 + state_mb + state_mb / 4))
log "starting db on $on (rows $rows, state ${state_mb} MB, buffer pool ${pool_mb} MB)"
hpodman "$on" run -d --name db --network "$NET_NAME" --ip "$DB_IP" \
  -v "$DATA_DIR:$DATA_DIR" -e FERRY_DATA="$DATA_DIR" -e FERRY_BUFFER_POOL_MB="$pool_mb" \
  "$db_ref" >/dev/null || die "podman run db failed on $on"
log "starting web on $on"
hpodman "$on" run -d --name web --network "$NET_NAME" --ip "$WEB_IP" -p 80:80 \
  -v "$DATA_DIR:$DATA_DIR" -e FERRY_DATA="$DATA_DIR" -e FERRY_DB_HOST="$DB_IP" \
  "$web_ref" >/dev/null || die "podman run web failed on $on"

# 4. wait for health, seen from the load balancer host
deadline=$(($(date +%s) + timeout))
until on_host lb curl -fsS -o /dev/null --max-time 2 "http://$on/health.php" 2>/dev/null; do
  if (($(date +%s) >= deadline)); then
    hpodman "$on" logs --tail 20 db >&2 || true
    hpodman "$on" logs --tail 20 web >&2 || true
    die "service on $on did not answer /health.php within ${timeout}s (container logs above)"
  fi
  for c in db web; do
    state=$(hpodman "$on" inspect --format '{{.State.Status}}' "$c" 2>/dev/null || echo missing)
    if [[ $state != running ]]; then
      hpodman "$on" logs --tail 30 "$c" >&2 || true
      die "container $c on $on is $state (its log above)"
    fi
  done
  sleep 0.5
done

# 5. load balancer
if [[ -n $switch ]]; then
  "$REPO_DIR/deploy/switchover/lb-deploy.sh" --switch "$switch" --on "$on"
else
  "$REPO_DIR/deploy/switchover/lb-deploy.sh" --stop-agent >/dev/null 2>&1 || true  # a switch front from before
  "$SERVICE_DIR/lb.sh" apply
fi
on_host client curl -fsS -o /dev/null --max-time 5 http://lb/health.php \
  || die "service answers on $on but not through the load balancer (http://lb/health.php from client)"
t1=$(date +%s.%N)
log "service up on $on in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s; http://lb/ → $on"

# Shared helpers for the reference-service scripts (sourced, not run).
# shellcheck shell=bash

SERVICE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SERVICE_DIR/../.." && pwd)
CACHE_DIR=${FERRY_CACHE_DIR:-/var/cache/ferry}
ROOTFS_CACHE=$CACHE_DIR/image-rootfs
IMAGE_CACHE=$CACHE_DIR/images
MEDIA_CACHE=$CACHE_DIR/media
SEED_CACHE=$CACHE_DIR/service-seed
LAB_RUN=${FERRY_LAB_RUN:-/run/ferry-lab}
DEBIAN_MIRROR=${FERRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The service's data directory: the same path on every host, bind-mounted into both
# containers at that path.
DATA_DIR=${FERRY_SERVICE_DATA:-/srv/ferry/ref}
NET_NAME=ferry
NET_SUBNET=10.89.0.0/24
DB_IP=10.89.0.2
WEB_IP=10.89.0.3
PODMAN_FLAGS=(--runtime runc --cgroup-manager cgroupfs)
export PODMAN_IGNORE_CGROUPSV1_WARNING=1

log() { printf '%s service: %s\n' "$(date +%H:%M:%S.%N | cut -c1-12)" "$*" >&2; }
die() { printf 'service: %s\n' "$*" >&2; exit 1; }

# Packages listed one a line, '#' comments.
read_list() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1"; }

# Hash of files/directories (content and relative paths), short.
hash_paths() {
  local p
  for p in "$@"; do
    if [[ -d $p ]]; then
      (cd "$p" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
      (cd "$p" && find . -type f -perm -u+x -print0 | LC_ALL=C sort -z | tr '\0' '\n')
    else
      sha256sum <"$p"
    fi
  done | sha256sum | cut -c1-16
}

host_pid() {
  local f=$LAB_RUN/hosts/$1/pid
  [[ -r $f ]] || die "lab host '$1' is not running ($f missing) — run 'ferry lab up' first"
  local pid; pid=$(<"$f")
  kill -0 "$pid" 2>/dev/null || die "lab host '$1' holder pid $pid is gone — run 'ferry lab up' again"
  echo "$pid"
}

# Runs a command inside a lab host (mount + network namespace).
on_host() {
  local host=$1; shift
  local pid; pid=$(host_pid "$host")
  env -i PATH="${FERRY_HOST_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}" HOME=/root LANG=C.UTF-8 \
    PODMAN_IGNORE_CGROUPSV1_WARNING=1 nsenter -t "$pid" -m -n -u -r -w -- "$@"
}

hpodman() {
  local host=$1; shift
  on_host "$host" podman "${PODMAN_FLAGS[@]}" "$@"
}

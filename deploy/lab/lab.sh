#!/bin/bash
# The ferry lab: several Linux hosts on one machine (see /work/team/LAB_CONTRACT.md).
#
#   lab.sh up [--profile lan|cloud|wan|edge] [--shared-storage]
#   lab.sh down
#   lab.sh status [--json]
#   lab.sh exec HOST -- CMD ARGS...
#
# Each host (lb, a, b, client) is a holder process (holder.sh) in its own mount, network
# and UTS namespaces whose root is an overlay over the cached Debian 13 rootfs
# (rootfs.sh). The hosts' eth0 are veths on bridge br0 in the network namespace
# `ferry-wire`; wire-side interface names are lab-<host>. Nothing is addressed in the
# machine's own network namespace. State: /run/ferry-lab (pids, profile); per-host
# writable layers: /var/lib/ferry-lab/<host>.
set -euo pipefail
source "$(dirname "$0")/common.sh"

usage() {
  sed -n '4,7p' "$0" | sed 's/^#  //' >&2
  exit 2
}

needRoot() { [[ $(id -u) == 0 ]] || { echo "lab: $1 needs root — run it as root (sudo)" >&2; exit 2; }; }

hostPid() {  # prints the holder PID of a running host, or fails
  local f=$LAB_RUN/hosts/$1/pid pid
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "^ferry-lab-holder:$1 " || return 1
  echo "$pid"
}

inHost() {  # inHost HOST CMD... : runs CMD inside HOST (machine environment cleaned)
  local host=$1 pid
  shift
  pid=$(hostPid "$host") || die "host $host is not running — run 'ferry lab up'"
  env -i PATH="$HOST_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" PODMAN_IGNORE_CGROUPSV1_WARNING=1 \
    nsenter -t "$pid" -m -n -u -r -w -- "$@" 9>&-   # no daemon may inherit the lab lock
}

# ---- the ferry bundle: binary + its libraries + the Debian 12 loader -----------------
findFerryBinary() {
  local c
  for c in "${FERRY_BIN:-}" "$REPO_DIR/build/node/ferry" "$REPO_DIR"/build*/node/ferry; do
    [[ -n $c && -x $c ]] && { echo "$c"; return 0; }
  done
  return 1
}

installFile() {  # installFile SRC DEST: atomic replace (visible through the read-only bind)
  local tmp
  [[ -f $2 && $(stat -L -c '%s %Y' "$1") == "$(stat -c '%s %Y' "$2")" ]] && return 0  # unchanged
  tmp="$(dirname "$2")/.$(basename "$2").tmp$$"
  cp -L --preserve=timestamps "$1" "$tmp" && mv -f "$tmp" "$2"
}

refreshBundle() {
  local b=$LAB_RUN/bundle bin lib
  mkdir -p "$b/bin" "$b/lib" "$b/src" "$b/lab"
  # LAB ONLY shim, compiled with the machine's gcc (the rootfs has no compiler).
  local shim_src=$LAB_DIR/ferry-lab-prlimit-shim.c
  local shim=$LAB_CACHE/shim/ferry-lab-prlimit-shim-$(sha256sum "$shim_src" | cut -c1-16).so
  if [[ ! -f $shim ]]; then
    mkdir -p "$LAB_CACHE/shim"
    gcc -shared -fPIC -O2 -o "$shim.tmp$$" "$shim_src" -ldl && mv -f "$shim.tmp$$" "$shim" ||
      die "cannot compile $shim_src — apt-get install gcc (or make deps)"
  fi
  installFile "$shim" "$b/lab/ferry-lab-prlimit-shim.so"
  if ! bin=$(findFerryBinary); then
    say "no built ferry binary found (set FERRY_BIN or run make build): /usr/local/bin/ferry in the hosts will say so"
    return 0
  fi
  installFile /lib64/ld-linux-x86-64.so.2 "$b/lib/ld-linux-x86-64.so.2"
  for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
    installFile "$lib" "$b/lib/$(basename "$lib")"
  done
  installFile "$bin" "$b/bin/ferry"
  echo "$bin" >"$b/source"
}

# Whether CRIU needs the prlimit shim: CapEff lacks CAP_SYS_RESOURCE (bit 24).
needShim() {
  local eff
  eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  (( (16#$eff >> 24) & 1 )) && echo 0 || echo 1
}

cmdBundle() {  # bundle [--if-changed]: refresh the hosts' ferry (used by `ferry lab exec`)
  [[ -d $LAB_RUN/bundle ]] || return 0
  if [[ ${1:-} == --if-changed ]]; then
    local bin
    bin=$(findFerryBinary) || return 0
    [[ $(stat -L -c '%s %Y' "$bin") == "$(stat -c '%s %Y' "$LAB_RUN/bundle/bin/ferry" 2>/dev/null)" ]] && return 0
  fi
  refreshBundle
}

# ---- up -------------------------------------------------------------------------------
startHost() {  # startHost HOST ROOTFS SHARED_DIR
  local host=$1 rootfs=$2 shared=$3 rh=$LAB_RUN/hosts/$1 vd=$LAB_VAR/$1 pid="" i
  mkdir -p "$rh" "$vd"
  rm -f "$rh/ready" "$rh/pid"
  local sh=""
  [[ -n $shared && ($host == a || $host == b) ]] && sh=$shared
  setsid unshare --mount --net --uts --propagation private -- \
    bash "$LAB_DIR/holder.sh" "$host" "$rootfs" "$vd" "$rh/ready" "$LAB_RUN/bundle" "$REPO_DIR" "$sh" \
    </dev/null >"$vd/holder.log" 2>&1 9>&- &
  for ((i = 0; i < 300; i++)); do
    if [[ -s $rh/ready ]]; then
      pid=$(<"$rh/ready")
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^ferry-lab-holder:$host " && break
    fi
    sleep 0.1
  done
  if [[ -z $pid ]] || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^ferry-lab-holder:$host "; then
    tail -n 5 "$vd/holder.log" >&2 || true
    die "host $host did not start (log: $vd/holder.log)"
  fi
  echo "$pid" >"$rh/pid"
  stat -L -c %i "/proc/$pid/ns/mnt" >"$rh/mntns"
  stat -L -c %i "/proc/$pid/ns/net" >"$rh/netns"
}

connectHost() {  # connectHost HOST: veth to the bridge, address, loopback
  local host=$1 pid addr wire=lab-$1
  pid=$(hostPid "$host")
  addr=$(hostAddress "$host")
  if ! ip -n "$LAB_WIRE_NS" link show "$wire" >/dev/null 2>&1; then
    ip -n "$LAB_WIRE_NS" link add "$wire" type veth peer name eth0 netns "$pid"
  fi
  ip -n "$LAB_WIRE_NS" link set "$wire" master "$LAB_BRIDGE" up
  nsenter -t "$pid" -n ip link set lo up
  nsenter -t "$pid" -n ip addr replace "$addr/24" dev eth0
  nsenter -t "$pid" -n ip link set eth0 up
}

ensureWire() {
  ip netns list | grep -qw "^$LAB_WIRE_NS" || ip netns add "$LAB_WIRE_NS"
  ip -n "$LAB_WIRE_NS" link set lo up
  ip -n "$LAB_WIRE_NS" link show "$LAB_BRIDGE" >/dev/null 2>&1 ||
    ip -n "$LAB_WIRE_NS" link add "$LAB_BRIDGE" type bridge
  ip -n "$LAB_WIRE_NS" link set "$LAB_BRIDGE" up
}

# The canary image (busybox-static, a root and a non-root user), built once and cached
# as a `podman save` archive so its ID is the same on every host.
canaryArchive() {  # prints the cached archive path, building it in host a if needed
  local rootfs=$1 hash dir tar
  hash=$( (sha256sum "$rootfs/bin/busybox"; declare -f canaryArchive) | sha256sum | cut -c1-16)
  tar=$LAB_CACHE/images/ferry-canary-$hash.tar
  if [[ ! -f $tar ]]; then
    mkdir -p "$LAB_CACHE/images"
    dir=$(mktemp -d "$LAB_VAR/a/tmp/canary.XXXXXX")
    mkdir -p "$dir/root/bin" "$dir/root/etc" "$dir/root/tmp" "$dir/root/var/www" "$dir/root/home/canary"
    chmod 1777 "$dir/root/tmp"
    cp "$rootfs/bin/busybox" "$dir/root/bin/busybox"
    for app in $(chroot "$rootfs" /bin/busybox --list); do
      [[ $app == busybox ]] || ln -sf busybox "$dir/root/bin/$app"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\ncanary:x:1000:1000:canary:/home/canary:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/root/etc/passwd"
    printf 'root:x:0:\ncanary:x:1000:\nnogroup:x:65534:\n' >"$dir/root/etc/group"
    chown 1000:1000 "$dir/root/home/canary"
    tar -C "$dir/root" -cf "$dir/rootfs.tar" .
    local in=/tmp/$(basename "$dir")
    inHost a podman import -q --change 'CMD ["/bin/sh"]' "$in/rootfs.tar" localhost/ferry-canary:latest >/dev/null
    inHost a podman save -q -o "$in/canary.tar" localhost/ferry-canary:latest >/dev/null
    mv -f "$dir/canary.tar" "$tar.tmp$$" && mv -f "$tar.tmp$$" "$tar"
    rm -rf "$dir"
  fi
  echo "$tar"
}

loadCanary() {  # loadCanary ARCHIVE HOST
  local tar=$1 host=$2
  inHost "$host" podman image exists localhost/ferry-canary:latest && return 0
  cp "$tar" "$LAB_VAR/$host/tmp/ferry-canary.tar"
  inHost "$host" podman load -q -i /tmp/ferry-canary.tar >/dev/null
  rm -f "$LAB_VAR/$host/tmp/ferry-canary.tar"
}

applyProfile() {
  local profile=$1
  if [[ -x $LAB_DIR/links.sh || -f $LAB_DIR/links.sh ]]; then
    if bash "$LAB_DIR/links.sh" apply "$profile" 9>&-; then
      echo "$profile" >"$LAB_RUN/profile"
    else
      echo none >"$LAB_RUN/profile"
      say "WARNING: links.sh apply $profile failed; the hosts are up without link shaping"
    fi
  else
    say "note: deploy/lab/links.sh does not exist yet; links are unshaped (profile $profile not applied)"
    echo none >"$LAB_RUN/profile"
  fi
}

pruneCaches() {  # pruneCaches ROOTFS ARCHIVE: drop caches of older package lists/images
  local d
  for d in "$LAB_CACHE"/rootfs/*/; do
    [[ ${d%/} == "$1" ]] || rm -rf --one-file-system "${d%/}"
  done
  find "$LAB_CACHE/rootfs" -maxdepth 1 -name '.build-*' -mmin +120 -exec rm -rf --one-file-system {} + 2>/dev/null || true
  for d in "$LAB_CACHE"/images/ferry-canary-*.tar; do
    [[ -e $d && $d != "$2" ]] && rm -f "$d"
  done
  return 0
}

labIsUp() {  # all hosts alive with the given rootfs and shared-storage setting
  local h
  [[ -f $LAB_RUN/rootfs && $(<"$LAB_RUN/rootfs") == "$1" ]] || return 1
  [[ -f $LAB_RUN/shared && $(<"$LAB_RUN/shared") == "$2" ]] || return 1
  ip netns list | grep -qw "^$LAB_WIRE_NS" || return 1
  for h in "${LAB_HOSTS[@]}"; do hostPid "$h" >/dev/null || return 1; done
}

cmdUp() {
  local profile=lan shared=0
  while (($#)); do
    case "$1" in
      --profile) profile=${2:-}; shift 2 || usage ;;
      --profile=*) profile=${1#*=}; shift ;;
      --shared-storage) shared=1; shift ;;
      *) usage ;;
    esac
  done
  isProfile "$profile" || { echo "lab: unknown profile '$profile' — use one of: ${LAB_PROFILES[*]}" >&2; exit 2; }
  needRoot "lab up"
  local t0 rootfs h shim shared_dir=""
  t0=$(nowMs)
  rootfs=$("$LAB_DIR/rootfs.sh")
  local t_rootfs=$(($(nowMs) - t0))
  mkdir -p "$LAB_RUN/hosts"
  exec 9>"$LAB_RUN/lock"
  flock -w 600 9 || die "another lab up/down is running (lock $LAB_RUN/lock)"

  refreshBundle
  if labIsUp "$rootfs" "$shared"; then
    say "lab already up; refreshed the ferry bundle"
    shim=$(needShim)
    for h in "${LAB_HOSTS[@]}"; do
      connectHost "$h"
      inHost "$h" bash /opt/ferry/src/deploy/lab/host-setup.sh "$h" "$shim"
    done
    [[ -f $LAB_RUN/profile && $(<"$LAB_RUN/profile") == "$profile" ]] || applyProfile "$profile"
    return 0
  fi
  if compgen -G "$LAB_RUN/hosts/*/pid" >/dev/null || [[ -d $LAB_VAR ]] || ip netns list | grep -qw "^$LAB_WIRE_NS"; then
    say "cleaning up a previous or half-finished lab first"
    flock -u 9
    cmdDown
    mkdir -p "$LAB_RUN/hosts"
    exec 9>"$LAB_RUN/lock"
    flock -w 600 9 || die "another lab up/down is running"
    refreshBundle
  fi
  mkdir -p "$LAB_VAR"
  if ((shared)); then
    shared_dir=$LAB_VAR/shared
    mkdir -p "$shared_dir"
  fi
  echo "$rootfs" >"$LAB_RUN/rootfs"
  echo "$shared" >"$LAB_RUN/shared"
  ensureWire
  local t1 t2 t3 t4
  t1=$(nowMs)
  for h in "${LAB_HOSTS[@]}"; do startHost "$h" "$rootfs" "$shared_dir"; done
  t2=$(nowMs)
  shim=$(needShim)
  for h in "${LAB_HOSTS[@]}"; do
    connectHost "$h"
    inHost "$h" bash /opt/ferry/src/deploy/lab/host-setup.sh "$h" "$shim"
  done
  t3=$(nowMs)
  local canary
  canary=$(canaryArchive "$rootfs")
  loadCanary "$canary" a
  loadCanary "$canary" b
  t4=$(nowMs)
  pruneCaches "$rootfs" "$canary"
  applyProfile "$profile"
  say "up: hosts ${LAB_HOSTS[*]} in $(secs $(($(nowMs) - t0))) s (rootfs $(secs "$t_rootfs"), namespaces $(secs $((t2 - t1))), network+setup $(secs $((t3 - t2))), canary image $(secs $((t4 - t3))), links $(secs $(($(nowMs) - t4))))"
}

# ---- down -----------------------------------------------------------------------------
labPids() {  # every process that belongs to the lab: holders, anything in a live host's
             # or the bridge's namespaces, anything whose mounts come from a host's
             # writable layer (also after its holder died), anything in Podman's cgroups.
             # A few processes in total, whatever the number of processes on the machine.
  local inos="" p
  [[ -e /run/netns/$LAB_WIRE_NS ]] && inos+=" $(stat -L -c %i "/run/netns/$LAB_WIRE_NS" 2>/dev/null)"
  for p in $(pgrep -f '^ferry-lab-holder:' || true); do
    echo "$p"
    inos+=" $(stat -L -c %i "/proc/$p/ns/mnt" "/proc/$p/ns/net" 2>/dev/null | tr '\n' ' ')"
  done
  if [[ -n ${inos// /} ]]; then
    find /proc/[0-9]*/ns/mnt /proc/[0-9]*/ns/net -maxdepth 0 -printf '%h %l\n' 2>/dev/null |
      awk -v inos="$inos" 'BEGIN { n = split(inos, a, " "); for (i = 1; i <= n; i++) want["[" a[i] "]"] = 1 }
        { if (match($2, /\[[0-9]+\]/) && (substr($2, RSTART, RLENGTH) in want)) { split($1, pp, "/"); print pp[3] } }'
  fi
  grep -l -F "upperdir=$LAB_VAR/" /proc/[0-9]*/mountinfo 2>/dev/null | cut -d/ -f3 || true
  cat /sys/fs/cgroup/*/libpod_parent/cgroup.procs /sys/fs/cgroup/*/libpod_parent/**/cgroup.procs 2>/dev/null || true
}

removeCgroups() {  # Podman's cgroupfs tree (the machine itself runs no Podman)
  local d
  for d in /sys/fs/cgroup/*/libpod_parent /sys/fs/cgroup/unified/libpod_parent; do
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

cmdDown() {
  needRoot "lab down"
  local t0 p pids i
  t0=$(nowMs)
  mkdir -p "$LAB_RUN"
  exec 9>"$LAB_RUN/lock"
  flock -w 600 9 || die "another lab up/down is running (lock $LAB_RUN/lock)"
  if [[ -f $LAB_DIR/links.sh ]] && ip netns list | grep -qw "^$LAB_WIRE_NS"; then
    bash "$LAB_DIR/links.sh" clear >/dev/null 2>&1 9>&- || true
  fi
  shopt -s globstar nullglob
  for ((i = 0; i < 50; i++)); do
    pids=$(labPids | sort -u | grep -vx -e "$$" -e "$BASHPID" || true)
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  [[ -z $pids ]] || say "WARNING: lab processes still alive: $pids"
  ip netns list | grep -qw "^$LAB_WIRE_NS" && ip netns del "$LAB_WIRE_NS"
  # Leftovers of Podman run in the machine's own namespace (never by the lab itself).
  ip link show podman0 >/dev/null 2>&1 && ip link del podman0
  nft list table inet netavark >/dev/null 2>&1 && nft delete table inet netavark
  # Mounts under the lab's directories on the machine (normally none: the hosts' mounts
  # live and die in their own namespaces).
  for ((i = 0; i < 5; i++)); do
    local mnts
    mnts=$(awk -v a="$LAB_VAR" -v b="$LAB_RUN" '$2 == a || index($2, a "/") == 1 || $2 == b || index($2, b "/") == 1 {print $2}' /proc/mounts | sort -r)
    [[ -z $mnts ]] && break
    for p in $mnts; do umount -l "$p" 2>/dev/null || true; done
  done
  removeCgroups
  rm -rf --one-file-system "$LAB_VAR"
  rm -rf --one-file-system "$LAB_RUN"
  say "down in $(secs $(($(nowMs) - t0))) s"
}

# ---- status, exec -----------------------------------------------------------------------
cmdStatus() {
  local json=0 h pid alive up=true first=1 profile=none shared=false
  [[ ${1:-} == --json ]] && json=1
  [[ -f $LAB_RUN/profile ]] && profile=$(<"$LAB_RUN/profile")
  [[ -f $LAB_RUN/shared && $(<"$LAB_RUN/shared") == 1 ]] && shared=true
  local rows=()
  for h in "${LAB_HOSTS[@]}"; do
    if pid=$(hostPid "$h"); then alive=true; else alive=false; pid=0; up=false; fi
    rows+=("$h $(hostAddress "$h") $pid $alive")
  done
  if ((json)); then
    printf '{"up":%s,"profile":"%s","shared_storage":%s,"rootfs":"%s","bridge_netns":"%s","hosts":[' \
      "$up" "$profile" "$shared" "$(cat "$LAB_RUN/rootfs" 2>/dev/null)" "$LAB_WIRE_NS"
    for r in "${rows[@]}"; do
      read -r h a pid alive <<<"$r"
      ((first)) || printf ','
      first=0
      printf '{"name":"%s","address":"%s","pid":%s,"running":%s,"wire_interface":"lab-%s"}' "$h" "$a" "$pid" "$alive" "$h"
    done
    printf ']}\n'
  else
    echo "lab: $([[ $up == true ]] && echo up || echo down)   profile: $profile   shared storage: $shared"
    printf '%-8s %-13s %-8s %s\n' HOST ADDRESS PID STATE
    for r in "${rows[@]}"; do
      read -r h a pid alive <<<"$r"
      printf '%-8s %-13s %-8s %s\n' "$h" "$a" "$pid" "$([[ $alive == true ]] && echo running || echo absent)"
    done
  fi
}

cmdExec() {
  local host=${1:-}
  [[ -n $host ]] || usage
  shift
  [[ ${1:-} == -- ]] && shift
  (($#)) || usage
  isHost "$host" || { echo "lab: unknown host '$host' — use one of: ${LAB_HOSTS[*]}" >&2; exit 2; }
  local pid
  pid=$(hostPid "$host") || { echo "lab: host $host is not running — run 'ferry lab up'" >&2; exit 2; }
  export PATH=$HOST_PATH PODMAN_IGNORE_CGROUPSV1_WARNING=1 HOME=/root
  exec nsenter -t "$pid" -m -n -u -r -w -- "$@"
}

verb=${1:-}
(($#)) && shift
case "$verb" in
  up) cmdUp "$@" ;;
  down) cmdDown ;;
  status) cmdStatus "$@" ;;
  exec) cmdExec "$@" ;;
  bundle) needRoot "lab bundle"; cmdBundle "$@" ;;
  *) usage ;;
esac

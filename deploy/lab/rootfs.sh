#!/bin/bash
# Builds (once) the Debian 13 userland of the lab hosts and prints its path.
#
# debootstrap trixie --variant=minbase, then sid at apt priority 100 and CRIU from sid
# (Debian 13's CRIU 4.1 cannot dump TCP/UDP sockets on kernels >= 6.16), plus the
# packages in rootfs-packages.txt. The result is cached under
# /var/cache/ferry/rootfs/<hash of rootfs-packages.txt and the build steps>/ and reused until
# either changes. It is built in a temporary directory and renamed when complete, so a
# half-built tree is never used. Hosts never write to it (each host is an overlay).
# `rootfs.sh --cached` only answers: prints the path and exits 0 if cached, else exits 3.
set -euo pipefail
source "$(dirname "$0")/common.sh"

packages=$(grep -v '^\s*#' "$LAB_DIR/rootfs-packages.txt" | tr -s ' \n' '\n' | grep -v '^$' | sort -u)
# The cache key: the package list and the build steps (between the BUILD markers below).
hash=$( (cat "$LAB_DIR/rootfs-packages.txt"; sed -n '/^# BUILD-BEGIN/,/^# BUILD-END/p' "$LAB_DIR/rootfs.sh") |
  sha256sum | cut -c1-16)
dest=$LAB_CACHE/rootfs/$hash
if [[ -f $dest/.ferry-rootfs-complete ]]; then
  echo "$dest"
  exit 0
fi
[[ ${1:-} == --cached ]] && exit 3   # only asked whether it is cached: it is not

command -v debootstrap >/dev/null || die "debootstrap is missing — apt-get install debootstrap (or make deps)"
mkdir -p "$LAB_CACHE/rootfs"
tmp=$(mktemp -d "$LAB_CACHE/rootfs/.build-$hash-XXXXXX")
start=$(nowMs)
say "building the hosts' rootfs in $tmp (cold cache; about a minute or two)"

# BUILD-BEGIN
# Everything below runs in a private mount namespace so the /proc, /sys, /dev mounts of
# the chroot vanish with it, even if the build fails half-way.
unshare --mount --propagation private -- bash -euo pipefail -c '
  tmp=$1 mirror=$2 packages=$3
  debootstrap --variant=minbase trixie "$tmp" "$mirror" >"$tmp.debootstrap.log" 2>&1 || {
    tail -n 20 "$tmp.debootstrap.log" >&2; exit 1; }
  mount -t proc proc "$tmp/proc"
  mount -t sysfs sys "$tmp/sys"
  mount --rbind /dev "$tmp/dev"
  # No daemons start inside the build (nginx, haproxy, sshd postinst scripts).
  printf "#!/bin/sh\nexit 101\n" >"$tmp/usr/sbin/policy-rc.d"
  chmod 755 "$tmp/usr/sbin/policy-rc.d"
  cat >"$tmp/etc/apt/sources.list" <<SRC
deb $mirror trixie main
deb $mirror sid main
SRC
  cat >"$tmp/etc/apt/preferences.d/ferry-sid" <<PIN
Package: *
Pin: release n=sid
Pin-Priority: 100
PIN
  inst() { chroot "$tmp" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
      apt-get -o Acquire::Check-Valid-Until=false -y "$@"; }
  inst update
  # shellcheck disable=SC2086
  # From sid: criu and what it needs newer than trixie has (its libnftables1).
  sid="criu nftables"
  inst install --no-install-recommends $(echo "$packages" | grep -vxF "$(echo $sid | tr " " "\n")") \
    $(for p in $sid; do echo "$p/sid"; done)
  inst clean
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp/usr/sbin/policy-rc.d"
  chroot "$tmp" criu --version | head -1
' build "$tmp" "$DEBIAN_MIRROR" "$packages" >&2 || { rm -rf "$tmp" "$tmp.debootstrap.log"; die "rootfs build failed (see above)"; }
# BUILD-END
rm -f "$tmp.debootstrap.log"
touch "$tmp/.ferry-rootfs-complete"
if ! mv -T "$tmp" "$dest" 2>/dev/null; then
  rm -rf "$tmp"  # someone else finished first
fi
say "rootfs built in $(( ($(nowMs) - start) / 1000 )) s: $dest"
echo "$dest"

#!/usr/bin/env bash
# Builds (once) the Debian 13 root filesystem of one service image with debootstrap
# (minbase) plus the image's packages, cached under /var/cache/ferry/image-rootfs/.
# Usage: build-rootfs.sh web|db   — prints the directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
name=${1:?usage: build-rootfs.sh web|db}
list=$SERVICE_DIR/images/$name/packages.txt
[[ -r $list ]] || die "unknown image '$name' (no $list)"
h=$(hash_paths "$list" "$SERVICE_DIR/build-rootfs.sh")
dir=$ROOTFS_CACHE/$name-$h
if [[ -f $dir/.ferry-complete ]]; then echo "$dir"; exit 0; fi
mkdir -p "$ROOTFS_CACHE"
exec 9>"$ROOTFS_CACHE/.lock-$name"; flock -w 1800 9 || die "another build of $name holds the lock"
if [[ -f $dir/.ferry-complete ]]; then echo "$dir"; exit 0; fi
rm -rf "$dir.tmp"
log "debootstrap trixie minbase for $name into $dir"
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-trixie-stable.gpg \
  trixie "$dir.tmp" "$DEBIAN_MIRROR" >"$ROOTFS_CACHE/$name-$h.log" 2>&1 \
  || die "debootstrap failed, see $ROOTFS_CACHE/$name-$h.log"
# No daemons start while packages install inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$dir.tmp/usr/sbin/policy-rc.d"; chmod +x "$dir.tmp/usr/sbin/policy-rc.d"
mapfile -t pkgs < <(read_list "$list")
log "installing ${pkgs[*]}"
mount -t proc proc "$dir.tmp/proc"
trap 'umount "$dir.tmp/proc" 2>/dev/null || true' EXIT
chroot "$dir.tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" \
  >>"$ROOTFS_CACHE/$name-$h.log" 2>&1 || die "apt-get install failed, see $ROOTFS_CACHE/$name-$h.log"
chroot "$dir.tmp" apt-get clean
umount "$dir.tmp/proc"; trap - EXIT
rm -f "$dir.tmp/usr/sbin/policy-rc.d"
rm -rf "$dir.tmp"/var/lib/apt/lists/* "$dir.tmp"/var/log/*.log "$dir.tmp"/usr/share/doc/* "$dir.tmp"/usr/share/man/*
touch "$dir.tmp/.ferry-complete"
mv "$dir.tmp" "$dir"
log "rootfs $name ready: $(du -sh "$dir" | cut -f1)"
echo "$dir"

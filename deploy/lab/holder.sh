#!/bin/bash
# The init of one lab host (started by lab.sh up, never by hand).
#
# lab.sh starts this under `unshare --mount --net --uts --propagation private`, so it
# runs in the host's new mount, network and UTS namespaces. It assembles the host's
# root (an overlay over the cached rootfs, private /run /tmp /dev /dev/shm
# /var/lib/containers /etc/ferry, fresh /proc and /sys with the machine's cgroup mounts
# bound in, the ferry bundle and the repository read-only under /opt/ferry),
# pivot_roots into it (CRIU needs a real mount-namespace root, not a chroot), then
# becomes the long-lived holder: `sleep infinity` renamed "ferry-lab-holder:HOST" so a
# crash-cleanup scan can find it by its command line.
#
# Why a script around util-linux's unshare and not a C++ helper: every step is one
# mount(8) call; a script keeps them readable in one place, needs no build before the
# lab can start, and runs with the machine's own tools before pivot_root.
set -euo pipefail
host=$1 lower=$2 vardir=$3 readyfile=$4 bundle=$5 repo=$6 shared=${7:-}

exec 8>"$readyfile"   # written (our PID) once the host is complete
m=$vardir/merged
mkdir -p "$m" "$vardir/upper" "$vardir/work" "$vardir/containers" "$vardir/tmp" "$vardir/etc-ferry"
chmod 1777 "$vardir/tmp"

mount -t overlay overlay -o "lowerdir=$lower,upperdir=$vardir/upper,workdir=$vardir/work" "$m"

mount -t proc -o nosuid,nodev,noexec proc "$m/proc"
mount -t sysfs -o nosuid,nodev,noexec sysfs "$m/sys"     # this network namespace's view
mount --rbind /sys/fs/cgroup "$m/sys/fs/cgroup"          # runc needs the cgroup mounts

mount -t tmpfs -o mode=755,nosuid,size=65536k tmpfs "$m/dev"
for d in null zero full random urandom tty; do
  touch "$m/dev/$d" && mount --bind "/dev/$d" "$m/dev/$d"
done
for d in net/tun fuse; do
  if [[ -e /dev/$d ]]; then
    mkdir -p "$(dirname "$m/dev/$d")" && touch "$m/dev/$d" && mount --bind "/dev/$d" "$m/dev/$d"
  fi
done
mkdir -p "$m/dev/pts" "$m/dev/shm" "$m/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$m/dev/shm"
mount -t mqueue mqueue "$m/dev/mqueue"
ln -s /proc/self/fd "$m/dev/fd"
ln -s /proc/self/fd/0 "$m/dev/stdin"
ln -s /proc/self/fd/1 "$m/dev/stdout"
ln -s /proc/self/fd/2 "$m/dev/stderr"

mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$m/run"
mkdir -p "$m/run/lock" && chmod 1777 "$m/run/lock"
mount --bind "$vardir/tmp" "$m/tmp"
mkdir -p "$m/var/lib/containers" "$m/etc/ferry"
mount --bind "$vardir/containers" "$m/var/lib/containers"   # not on overlayfs: Podman's overlay driver needs that
mount --bind "$vardir/etc-ferry" "$m/etc/ferry"

mkdir -p "$m/opt/ferry"
mount --bind "$bundle" "$m/opt/ferry"
mount -o remount,bind,ro "$m/opt/ferry"
mount --bind "$repo" "$m/opt/ferry/src"
mount -o remount,bind,ro "$m/opt/ferry/src"

if [[ -n $shared ]]; then
  mkdir -p "$m/srv/ferry-shared"
  mount --bind "$shared" "$m/srv/ferry-shared"
fi

cd "$m"
mkdir -p .ferry-oldroot
pivot_root . .ferry-oldroot
cd /
umount -l /.ferry-oldroot
rmdir /.ferry-oldroot
echo "$host" >/proc/sys/kernel/hostname

echo $$ >&8
exec 8>&-
exec -a "ferry-lab-holder:$host" sleep infinity

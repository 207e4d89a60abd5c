#!/bin/bash
# Configures one lab host from the inside (lab.sh runs it in the host through nsenter,
# from /opt/ferry/src; idempotent). Usage: host-setup.sh HOST NEED_PRLIMIT_SHIM(0|1)
set -euo pipefail
host=$1 need_shim=$2

cat >/etc/hosts <<HOSTS
127.0.0.1 localhost
10.231.0.10 lb
10.231.0.11 a
10.231.0.12 b
10.231.0.20 client
HOSTS
echo "$host" >/etc/hostname
# No DNS in the lab (no internet); names come from /etc/hosts.
echo "# ferry lab: no DNS server; names are in /etc/hosts" >/etc/resolv.conf

mkdir -p /etc/containers /etc/criu /usr/local/bin /etc/profile.d
# Podman: runc (crun refuses hybrid cgroups) with the cgroupfs manager (no systemd).
cat >/etc/containers/containers.conf <<'CONF'
# ferry lab host (deploy/lab/host-setup.sh)
[containers]
log_driver = "k8s-file"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
env = ["PODMAN_IGNORE_CGROUPSV1_WARNING=1"]
CONF
# Options runc passes to CRIU (Podman has no flags for them): connections still in a
# listen backlog must not abort a dump; MariaDB and PHP sessions hold file locks.
cat >/etc/criu/runc.conf <<'CONF'
skip-in-flight
file-locks
CONF
cat >/etc/profile.d/ferry-lab.sh <<'PROF'
export PODMAN_IGNORE_CGROUPSV1_WARNING=1
PROF
grep -q PODMAN_IGNORE_CGROUPSV1_WARNING /etc/environment 2>/dev/null ||
  echo PODMAN_IGNORE_CGROUPSV1_WARNING=1 >>/etc/environment

# Node hosts get the sysctl a deployment installs (deploy/node/90-ferry.conf); each lab host
# is a network namespace, and this setting is per namespace.
if [[ $host == a || $host == b ]]; then
  sysctl -q -p /opt/ferry/src/deploy/node/90-ferry.conf
fi

# `ferry` on PATH: the machine's freshly built binary with its own Debian 12 libraries.
cat >/usr/local/bin/ferry <<'WRAP'
#!/bin/sh
# ferry lab: runs the machine's build of ferry with the Debian 12 libraries it was linked
# against (the host userland is Debian 13). The bundle is refreshed by `ferry lab up`.
[ -x /opt/ferry/bin/ferry ] || { echo "ferry: not built on the machine (no /opt/ferry/bin/ferry)" >&2; exit 127; }
exec /opt/ferry/lib/ld-linux-x86-64.so.2 --library-path /opt/ferry/lib /opt/ferry/bin/ferry "$@"
WRAP
chmod 755 /usr/local/bin/ferry

# LAB ONLY: the prlimit shim around CRIU where CAP_SYS_RESOURCE is missing.
shim_dir=/usr/local/lib/ferry-lab
if [[ $need_shim == 1 ]]; then
  mkdir -p "$shim_dir"
  cp /opt/ferry/lab/ferry-lab-prlimit-shim.so "$shim_dir/ferry-lab-prlimit-shim.so"
  if ! dpkg-divert --list /usr/sbin/criu | grep -q criu; then
    dpkg-divert --quiet --local --rename --divert /usr/sbin/criu.ferry-lab-real --add /usr/sbin/criu
  fi
  cat >/usr/sbin/criu <<'WRAP'
#!/bin/sh
# ferry lab only (deploy/lab/host-setup.sh): this sandbox lacks CAP_SYS_RESOURCE, so CRIU
# gets ferry-lab-prlimit-shim, which answers refused read-only prlimit calls from
# /proc/PID/limits. Real hosts run /usr/sbin/criu directly.
LD_PRELOAD=/usr/local/lib/ferry-lab/ferry-lab-prlimit-shim.so${LD_PRELOAD:+:$LD_PRELOAD} exec /usr/sbin/criu.ferry-lab-real "$@"
WRAP
  chmod 755 /usr/sbin/criu
elif dpkg-divert --list /usr/sbin/criu | grep -q criu; then
  rm -f /usr/sbin/criu
  dpkg-divert --quiet --local --rename --remove /usr/sbin/criu
  rm -rf "$shim_dir"
fi

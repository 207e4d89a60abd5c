# Shared settings of the lab scripts (sourced, not run).
# The lab contract: /work/team/LAB_CONTRACT.md (hosts, addresses, paths).

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DEPLOY_DIR=$(dirname "$LAB_DIR")
REPO_DIR=$(dirname "$DEPLOY_DIR")

LAB_RUN=/run/ferry-lab                 # state of a running lab
LAB_VAR=/var/lib/ferry-lab             # per-host overlay upper/work dirs, shared storage
LAB_CACHE=/var/cache/ferry             # rootfs and image caches (kept across up/down)
LAB_WIRE_NS=ferry-wire                 # the network namespace holding the lab bridge
LAB_BRIDGE=br0
LAB_SHARED=/srv/ferry-shared           # --shared-storage: same path in a and b
LAB_HOLDER_MARK=ferry-lab-holder       # argv[0] prefix of every holder process
LAB_HOSTS=(lb a b client)
LAB_PROFILES=(lan cloud wan edge)
DEBIAN_MIRROR=${FERRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

hostAddress() {
  case "$1" in
    lb) echo 10.231.0.10 ;;
    a) echo 10.231.0.11 ;;
    b) echo 10.231.0.12 ;;
    client) echo 10.231.0.20 ;;
    *) return 1 ;;
  esac
}

isHost() {
  local h
  for h in "${LAB_HOSTS[@]}"; do [[ $h == "$1" ]] && return 0; done
  return 1
}

isProfile() {
  local p
  for p in "${LAB_PROFILES[@]}"; do [[ $p == "$1" ]] && return 0; done
  return 1
}

say() { echo "lab: $*" >&2; }
die() { echo "lab: $*" >&2; exit 1; }

# Milliseconds since the epoch, for the timings `up` and `down` print.
nowMs() { date +%s%3N; }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }  # ms -> "s.d"

#!/usr/bin/env bash
# Installs the Debian packages ferry needs to build, test and run its lab on this
# machine (Debian 12). The lab hosts' own userland (Debian 13 + CRIU from unstable)
# is built separately by `ferry lab up` and cached.
set -euo pipefail
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: run as root (apt-get needs it)" >&2
  exit 2
fi
# One package a line in deploy/packages/*.txt; '#' starts a comment.
mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$(dirname "$0")"/packages/*.txt | sort -u)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

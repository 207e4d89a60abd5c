#!/usr/bin/env bash
# The service images ferry-web and ferry-db, without a registry:
#   1. root filesystem: debootstrap + packages (build-rootfs.sh, cached);
#   2. plus the image's own files (images/<name>/rootfs/) → a tarball;
#   3. `podman import` it inside a lab host with CMD/ENV/EXPOSE, `podman save` the
#      result to /var/cache/ferry/images/ferry-<name>-<hash>.tar (hash of all inputs;
#      rebuilt only when they change);
#   4. `podman load` that archive into each given host, one image at a time, and check
#      that the image ID is the same everywhere.
# Usage: build-images.sh HOST...      (prints "name=ferry-web:<hash>" lines)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
(($# >= 1)) || die "usage: build-images.sh HOST..."
hosts=("$@")

image_ref() {  # name → localhost/ferry-<name>:<hash>
  local name=$1 rootfs=$2
  echo "localhost/ferry-$name:$(hash_paths "$SERVICE_DIR/images/$name" "$SERVICE_DIR/build-images.sh" <(basename "$rootfs"))"
}

import_changes() {
  case $1 in
    web) printf '%s\n' 'CMD ["/usr/local/bin/ferry-web-entrypoint"]' 'ENV FERRY_DATA=/srv/ferry/ref' \
           'ENV FERRY_DB_HOST=10.89.0.2' 'EXPOSE 80' 'STOPSIGNAL SIGWINCH' 'WORKDIR /' ;;
    db)  printf '%s\n' 'CMD ["/usr/local/bin/ferry-db-entrypoint"]' 'ENV FERRY_DATA=/srv/ferry/ref' \
           'ENV FERRY_BUFFER_POOL_MB=128' 'EXPOSE 3306' 'STOPSIGNAL SIGTERM' 'WORKDIR /' ;;
  esac
}

# The image's files over the cached root filesystem, as a tar stream on stdout.
assemble() {
  local name=$1 rootfs=$2 stage
  stage=$(mktemp -d /var/tmp/ferry-image-$name.XXXXXX)
  cp -a "$rootfs/." "$stage/"
  cp -a "$SERVICE_DIR/images/$name/rootfs/." "$stage/"
  rm -f "$stage/.ferry-complete"
  rm -rf "$stage"/usr/share/locale/* "$stage"/var/cache/apt/* "$stage"/var/lib/apt/lists/*
  case $name in
    web)
      rm -f "$stage"/etc/apache2/sites-enabled/* "$stage"/etc/apache2/conf-enabled/other-vhosts-access-log.conf
      ln -s ../sites-available/ferry.conf "$stage/etc/apache2/sites-enabled/ferry.conf"
      rm -rf "$stage/var/www/html"
      ;;
    db)
      rm -rf "$stage"/var/lib/mysql/*   # the data directory lives in the service's data dir
      ;;
  esac
  tar -C "$stage" --numeric-owner -cf - .
  rm -rf "$stage"
}

build_host=${hosts[0]}
mkdir -p "$IMAGE_CACHE"
for name in web db; do
  rootfs=$("$SERVICE_DIR/build-rootfs.sh" "$name")
  ref=$(image_ref "$name" "$rootfs")
  archive=$IMAGE_CACHE/ferry-$name-${ref##*:}.tar
  if [[ ! -s $archive ]]; then
    exec 8>"$IMAGE_CACHE/.lock-$name"; flock -w 900 8 || die "another build of ferry-$name holds the lock"
    if [[ ! -s $archive ]]; then
      log "building $ref in host $build_host"
      changes=()
      while IFS= read -r c; do changes+=(--change "$c"); done < <(import_changes "$name")
      assemble "$name" "$rootfs" | hpodman "$build_host" import -q "${changes[@]}" \
        --message "ferry reference service ($name)" - "$ref" >/dev/null \
        || die "podman import of $ref failed in host $build_host"
      hpodman "$build_host" save --format docker-archive "$ref" >"$archive.tmp" \
        || die "podman save of $ref failed in host $build_host"
      mv "$archive.tmp" "$archive"
      # Older archives of this image are superseded.
      find "$IMAGE_CACHE" -maxdepth 1 -name "ferry-$name-*.tar" ! -name "$(basename "$archive")" -delete
      log "saved $archive ($(du -h "$archive" | cut -f1))"
    fi
    exec 8>&-
  fi
  ids=()
  for h in "${hosts[@]}"; do
    if ! hpodman "$h" image exists "$ref"; then
      log "loading ferry-$name into host $h"
      hpodman "$h" load -q <"$archive" >/dev/null || die "podman load of $archive failed in host $h"
    fi
    hpodman "$h" tag "$ref" "localhost/ferry-$name:latest"
    ids+=("$(hpodman "$h" image inspect --format '{{.Id}}' "$ref")")
  done
  for id in "${ids[@]}"; do
    [[ $id == "${ids[0]}" ]] || die "ferry-$name has different image IDs on ${hosts[*]}: ${ids[*]}"
  done
  echo "$name=$ref id=${ids[0]:0:12}"
done

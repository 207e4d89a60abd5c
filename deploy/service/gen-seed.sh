#!/usr/bin/env bash
# Writes the database seed (run once by MariaDB as --init-file on an empty data
# directory): database `ferry`, its SQL user, `users` (ROWS users with bcrypt hashes),
# `writes`, and `ballast` with STATE_MB MB of random (incompressible) 4 KiB rows that
# stay in the buffer pool. `users` appears last (renamed from users_seed), so
# /health.php answers only once seeding is complete.
# Usage: gen-seed.sh ROWS STATE_MB OUT.sql
set -euo pipefail
source "$(dirname "$0")/lib.sh"
rows=${1:?rows}; state_mb=${2:?state-mb}; out=${3:?out}
[[ $rows =~ ^[0-9]+$ && $rows -ge 1 ]] || die "rows must be a positive integer, got '$rows'"
[[ $state_mb =~ ^[0-9]+$ ]] || die "state-mb must be a non-negative integer, got '$state_mb'"
mkdir -p "$SEED_CACHE"
users=$SEED_CACHE/users-$rows.sql
if [[ ! -s $users ]]; then
  webroot=$("$SERVICE_DIR/build-rootfs.sh" web)
  cp "$SERVICE_DIR/gen-users.php" "$webroot/tmp/gen-users.php"
  chroot "$webroot" php /tmp/gen-users.php "$rows" >"$users.tmp" || die "generating $rows users failed"
  rm -f "$webroot/tmp/gen-users.php"
  mv "$users.tmp" "$users"
fi
{
  echo "CREATE DATABASE ferry;"
  echo "CREATE USER 'ferry'@'%' IDENTIFIED BY 'ferry';"
  echo "GRANT ALL PRIVILEGES ON ferry.* TO 'ferry'@'%';"
  echo "USE ferry;"
  echo "CREATE TABLE writes (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, writer VARCHAR(64) NOT NULL, seq BIGINT NOT NULL, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), KEY writer_id (writer, id)) ENGINE=InnoDB;"
  echo "CREATE TABLE ballast (id INT NOT NULL PRIMARY KEY, data VARBINARY(4096) NOT NULL) ENGINE=InnoDB;"
  echo "CREATE TABLE users_seed (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, username VARCHAR(64) NOT NULL UNIQUE, password_hash VARCHAR(255) NOT NULL) ENGINE=InnoDB;"
  cat "$users"
  total=$((state_mb * 256))   # 4 KiB rows
  if ((total > 0)); then
    echo "SET SESSION max_recursive_iterations = 1000000;"
    chunk=16384
    for ((start = 1; start <= total; start += chunk)); do
      end=$((start + chunk - 1)); ((end > total)) && end=$total
      echo "INSERT INTO ballast (id, data) WITH RECURSIVE s(n) AS (SELECT $start UNION ALL SELECT n + 1 FROM s WHERE n < $end) SELECT n, CONCAT(RANDOM_BYTES(1024), RANDOM_BYTES(1024), RANDOM_BYTES(1024), RANDOM_BYTES(1024)) FROM s;"
    done
    # Touch every page so the whole table is in the buffer pool.
    echo "SELECT COUNT(*), SUM(LENGTH(data)) FROM ballast;"
  fi
  echo "RENAME TABLE users_seed TO users;"
} >"$out.tmp"
mv "$out.tmp" "$out"

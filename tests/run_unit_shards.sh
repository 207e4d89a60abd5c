#!/usr/bin/env bash
# tests/run_unit_shards.sh BUILD_DIR [SHARDS]: the unit tests of one build in SHARDS
# processes (GoogleTest's sharding, default one per core), then the fuzz targets' corpus
# replays through ctest. For the sanitizer builds: ctest starts one process per test,
# and a sanitized ferry_unit_tests takes about a second just to start (ASan: 1.2 s), so
# ~1000 tests cost 14 minutes on 2 cores; in two processes they take under a minute,
# and they also meet each other's leftovers (threads, descriptors, global state).
set -uo pipefail
build=${1:?usage: tests/run_unit_shards.sh BUILD_DIR [SHARDS]}
shards=${2:-$(nproc)}
bin=$build/tests/ferry_unit_tests
[[ -x $bin ]] || { echo "run_unit_shards: $bin is not built (cmake --build $build --target ferry_unit_tests)" >&2; exit 2; }
pids=()
for ((i = 0; i < shards; i++)); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout --kill-after=30s 30m "$bin" --gtest_brief=1 \
    >"$build/unit-shard-$i.log" 2>&1 &
  pids+=($!)
done
status=0
for ((i = 0; i < shards; i++)); do
  if wait "${pids[$i]}"; then
    grep -h '^\[==========\]\|^\[  PASSED  \]\|^\[  SKIPPED \] [0-9]' "$build/unit-shard-$i.log" | sed "s/^/shard $i: /"
  else
    rc=$?
    status=1
    echo "shard $i of $shards FAILED (exit $rc; 124 = timed out after 30 min); whole log: $build/unit-shard-$i.log"
    grep -n -B2 -A25 'Failure$\|^\[  FAILED  \]\|Sanitizer' "$build/unit-shard-$i.log" | head -300
  fi
done
ctest --test-dir "$build" -L unit -R '^fuzz_' --output-on-failure -j "$shards" || status=1
exit $status

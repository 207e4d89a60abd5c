#!/usr/bin/env bash
# Runs every libFuzzer target briefly: the "fuzz-smoke" CI step.
#   tests/fuzz/smoke.sh [BUILD_DIR] [SECONDS_PER_TARGET]
# Configures BUILD_DIR (default build-fuzz) with clang and -DFERRY_FUZZ=ON, builds
# the targets, and runs each for SECONDS (default 20) starting from its seed
# corpus (copied, so the checked-in seeds are not modified). Any crash, leak or
# sanitizer report fails; the reproducer is left in BUILD_DIR/fuzz-artifacts/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-build-fuzz}
seconds=${2:-20}
if [[ ! -f "$build/build.ninja" ]]; then
  CC=clang CXX=clang++ cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_FUZZ=ON
fi
cmake --build "$build" --target fuzz_all -j "$(nproc)"
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-work"
status=0
for corpus in "$here"/corpus/*/; do
  name=$(basename "$corpus")
  bin="$build/tests/fuzz/fuzz_$name"
  [[ -x "$bin" ]] || { echo "missing $bin" >&2; status=1; continue; }
  work="$build/fuzz-work/$name"
  rm -rf "$work" && mkdir -p "$work" && cp "$corpus"/* "$work"/
  echo "== fuzz_$name for ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=1024 -print_final_stats=1 \
       -artifact_prefix="$build/fuzz-artifacts/$name-" "$work" 2>"$build/fuzz-work/$name.log"; then
    echo "fuzz_$name FAILED: see $build/fuzz-work/$name.log and $build/fuzz-artifacts/" >&2
    tail -30 "$build/fuzz-work/$name.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build/fuzz-work/$name.log" | tail -2 || true
  fi
done
exit $status

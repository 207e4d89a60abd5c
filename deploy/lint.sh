#!/usr/bin/env bash
# clang-format (check only) and clang-tidy over every C++ source in the repository.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h' | grep -v '^tests/fuzz/corpus/')
echo "clang-format: ${#files[@]} files"
clang-format --dry-run -Werror "${files[@]}"
mapfile -t sources < <(printf '%s\n' "${files[@]}" | grep '\.cc$' | grep -v '^tests/')
echo "clang-tidy: ${#sources[@]} files"
# Headers of the sources only: the generated BPF skeleton under $build/sync/ is not ours.
# (.clang-tidy's HeaderFilterRegex, for editors, cannot say "not under build/".)
header_filter="^$PWD/(base|protocol|sync|checkpoint|deploy|bench|node|switchover)/"
# One clang-tidy per core, a few files each (about 15 s a file here).
printf '%s\n' "${sources[@]}" |
  xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet --header-filter="$header_filter"

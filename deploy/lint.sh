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
clang-tidy -p "$build" --quiet "${sources[@]}"

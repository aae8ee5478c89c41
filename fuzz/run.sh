#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) on one core, at low priority: its seeds
# are copied into corpus/TARGET first, its dictionary is used where there is one.
# libFuzzer writes the run's log to fuzz-0.log here (-jobs=1); a crash lands in
# artifacts/TARGET/. Usage: fuzz/run.sh TARGET [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh TARGET [SECONDS]}
seconds=${2:-600}
mkdir -p "corpus/$target"
cp -n "seeds/$target/"* "corpus/$target/"
# The bundled SQLite (libsqlite3-sys, linked in through the runtime) has two static
# arrays of one name in its amalgamation, which ASan's start-up ODR check refuses; it is
# not our code and not a memory error.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"
dict=()
if [ -f "dicts/$target.dict" ]; then dict=("-dict=dicts/$target.dict"); fi
exec nice -n 10 cargo +nightly fuzz run -s address "$target" "corpus/$target" -- \
  -max_total_time="$seconds" -jobs=1 -workers=1 -rss_limit_mb=4096 -timeout=10 \
  -print_final_stats=1 "${dict[@]}"

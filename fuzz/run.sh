#!/usr/bin/env bash
# fuzz/run.sh - runs one libFuzzer target for a bounded time (the `fuzz` suite of meson test calls it).
# usage: run.sh TARGET_BINARY NAME SOURCE_DIR BUILD_DIR MAX_LEN
# CLTRAIN_FUZZ_SECONDS (default 60) sets the time. New interesting inputs go to BUILD_DIR/fuzz-work/NAME (kept
# between runs, so longer runs build on shorter ones); the checked-in seeds in SOURCE_DIR/fuzz/corpus/NAME are
# only read; fuzz/NAME.dict, if there is one, is its dictionary. A crash, leak, UB report, timeout (10 s per
# input) or memory blow-up (2 GiB) fails the test, and the input that caused it is saved as
# SOURCE_DIR/fuzz/crashes/NAME/<kind>-<sha1> (not committed) for reproduction: `TARGET_BINARY FILE`.
set -euo pipefail
bin=$1 name=$2 src=$3 build=$4 max_len=$5
secs=${CLTRAIN_FUZZ_SECONDS:-60}
work="$build/fuzz-work/$name"
crashes="$src/fuzz/crashes/$name"
mkdir -p "$work" "$crashes"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
dict=()
[ -f "$src/fuzz/$name.dict" ] && dict=(-dict="$src/fuzz/$name.dict")
exec "$bin" "${dict[@]}" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len="$max_len" \
  -print_final_stats=1 -artifact_prefix="$crashes/" "$work" "$src/fuzz/corpus/$name"

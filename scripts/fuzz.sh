#!/usr/bin/env bash
# Fuzzes the parsers that read what Headroom does not control (the GGUF header reader, the
# keep_alive parser, the settings file, the request decoder) with cargo-fuzz and libFuzzer, for
# a bounded time each, and prints executions and crashes per target. Not part of CI: a clean
# run takes a few minutes of build plus the time given.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60)
#
# Crashes are kept under $HEADROOM_FUZZ_DIR/artifacts/<target>/ (default ~/.cache/headroom/fuzz),
# each with the command that replays it; the script then exits 1.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || die "seconds per target must be a whole number above 0, got '$seconds'"
work="${HEADROOM_FUZZ_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/fuzz}"
fuzz_dir="$ROOT/src-tauri/core/fuzz"
targets=(gguf keep_alive settings request)

install_system_packages headless
command -v cargo-fuzz >/dev/null || { log "installing cargo-fuzz"; cargo install cargo-fuzz --locked; }
models="${HEADROOM_TEST_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/test-models}"
fetch_smollm2 "$models"
fetch_gemma "$models"

# cargo-fuzz passes unstable flags to rustc; RUSTC_BOOTSTRAP lets a stable toolchain take them.
# No sanitizer: the code under test is safe Rust, so what is hunted is panics, hangs and
# runaway allocation, which libFuzzer catches by itself (-timeout, -rss_limit_mb).
export RUSTC_BOOTSTRAP=1
fuzz_target_dir="${HEADROOM_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom-fuzz-target}"
log "building the fuzz targets (the first build compiles llama.cpp once more)"
cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer none --release --debug-assertions \
  --target-dir "$fuzz_target_dir" >&2

# Seeds: the committed ones, plus the real models' headers (their first 256 KiB) for the reader.
mkdir -p "$work"
for target in "${targets[@]}"; do
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  cp -n "$fuzz_dir/seeds/$target/"* "$work/corpus/$target/" 2>/dev/null || true
done
for model in "$models"/*.gguf; do
  head -c 262144 "$model" >"$work/corpus/gguf/seed-$(basename "$model" .gguf)"
done

summary="$work/summary.txt"
: >"$summary"
failed=0
for target in "${targets[@]}"; do
  log "fuzzing $target for ${seconds}s"
  logfile="$work/$target.log"
  status=0
  cargo fuzz run --fuzz-dir "$fuzz_dir" --sanitizer none --release --debug-assertions \
    --target-dir "$fuzz_target_dir" "$target" "$work/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
    -artifact_prefix="$work/artifacts/$target/" -print_final_stats=1 >"$logfile" 2>&1 || status=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logfile" | grep -oE '[0-9]+$' | tail -1)
  corpus=$(find "$work/corpus/$target" -type f | wc -l)
  crashes=$(find "$work/artifacts/$target" -type f | wc -l)
  printf '%-11s %12s executions  %6s inputs in the corpus  %3s crashes  (exit %s)\n' \
    "$target" "${runs:-?}" "$corpus" "$crashes" "$status" | tee -a "$summary"
  if ((status != 0 || crashes > 0)); then
    failed=1
    tail -40 "$logfile" >&2
    for crash in "$work/artifacts/$target"/*; do
      [[ -e "$crash" ]] || continue
      echo "replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir $fuzz_dir --sanitizer none --release --debug-assertions --target-dir $fuzz_target_dir $target $crash" >&2
    done
  fi
done
log "summary (also in $summary): ${seconds}s per target, $(date -u +%Y-%m-%dT%H:%MZ)"
cat "$summary"
exit "$failed"

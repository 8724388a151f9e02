#!/usr/bin/env bash
# Benchmarks Headroom beside llama.cpp's own llama-server on this machine, in one run, and
# prints the table (metric, Headroom, reference, ratio, goal); a full run writes it into
# docs/benchmarks.md and its figures into docs/benchmarks.json. Builds what
# it needs first: the reference llama-server and llama-bench on both llama.cpp builds
# (scripts/bench/reference.sh, ~10 min once), the oha load generator, Headroom in release (about
# 40 min in all on a fresh machine). Then about 25 min of measuring. Not part of CI.
#
#   scripts/bench.sh [ARGS...]     e.g. --runs 5, --only speed,idle, --idle-seconds 10
#
# The figures go to $HEADROOM_BENCH_CACHE/results/bench-<date>.json (default cache
# ~/.cache/headroom/bench); the micro-benchmarks' own report to $CARGO_TARGET_DIR/criterion.
# The pressure measurement makes memory cgroups, so run it as root; the desktop app's idle
# figure needs Xvfb (installed here on Debian).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OHA_VERSION=1.16.0
cache="${HEADROOM_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/bench}"
models="${HEADROOM_TEST_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/test-models}"
mkdir -p "$cache/results"

install_system_packages bench
fetch_smollm2 "$models"
fetch_gemma "$models"
fetch_mlx
mlx_python="${HEADROOM_TEST_MLX_PYTHONPATH:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/python-mlx}"
install_python_mlx "$mlx_python"
make_mlx_test_model "$models" "$mlx_python"

{ read -r reference; read -r reference_llama_bench; read -r headroom_llama_bench; } \
  < <("$ROOT/scripts/bench/reference.sh" "$cache" | tail -n 3)
[[ -x "$headroom_llama_bench" ]] || die "scripts/bench/reference.sh did not build everything"
version_of() { sed -n "s/^$1=//p" "$cache/llama-server.version"; }
reference_version="llama-server $(version_of llama_cpp_build) (llama.cpp $(version_of llama_cpp_commit), from llama-cpp-python $(version_of llama_cpp_python), $(version_of variant))"

oha="$cache/tools/bin/oha"
if [[ ! -x "$oha" ]] || [[ "$("$oha" --version)" != *"$OHA_VERSION"* ]]; then
  log "installing oha $OHA_VERSION (the HTTP load generator)"
  cargo install oha --version "$OHA_VERSION" --locked --root "$cache/tools"
fi

cd "$ROOT"
# Three builds, one at a time: each resolves its own features. The headless-only build goes to
# the same path as the app's, so it is copied aside first.
log "building Headroom without the GUI (the backend alone), the app, and the benchmark, in release"
cargo build --release --locked -p headroom --no-default-features
cp "$CARGO_TARGET_DIR/release/headroom" "$cache/headroom-headless"
cargo build --release --locked -p headroom
cargo build --release --locked -p headroom-bench
log "micro-benchmarks (criterion)"
cargo bench --locked -p headroom-bench --bench micro -- --noplot >&2

log "Headroom beside $reference_version"
"$CARGO_TARGET_DIR/release/headroom-bench" \
  --headroom "$CARGO_TARGET_DIR/release/headroom" \
  --headless-build "$cache/headroom-headless" \
  --reference "$reference" \
  --reference-version "$reference_version" \
  --headroom-llama "$(version_of headroom_llama_cpp)" \
  --headroom-llama-bench "$headroom_llama_bench" \
  --reference-llama-bench "$reference_llama_bench" \
  --oha "$oha" \
  --models-dir "$models" \
  --scratch "$cache/scratch" \
  --criterion "$CARGO_TARGET_DIR/criterion" \
  --mlx-python "$mlx_python" \
  --json "$cache/results/bench-$(date -u +%Y%m%dT%H%M%SZ).json" \
  --docs "$ROOT/docs/benchmarks.md" \
  "$@"

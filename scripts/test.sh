#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, and the end-to-end suite against a real
# `headroom --headless` with real models. Installs what is missing first.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_system_packages test
export HEADROOM_TEST_MODELS_DIR="${HEADROOM_TEST_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/test-models}"
fetch_smollm2 "$HEADROOM_TEST_MODELS_DIR"
fetch_gemma "$HEADROOM_TEST_MODELS_DIR"
fetch_minilm "$HEADROOM_TEST_MODELS_DIR"
export HEADROOM_TEST_PYTHONPATH="${HEADROOM_TEST_PYTHONPATH:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/python-clients}"
install_python_clients "$HEADROOM_TEST_PYTHONPATH"
fetch_mlx
export HEADROOM_TEST_MLX_PYTHONPATH="${HEADROOM_TEST_MLX_PYTHONPATH:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/python-mlx}"
install_python_mlx "$HEADROOM_TEST_MLX_PYTHONPATH"
make_mlx_test_model "$HEADROOM_TEST_MODELS_DIR" "$HEADROOM_TEST_MLX_PYTHONPATH"

cd "$ROOT"
log "the core does not depend on Tauri"
if cargo tree --locked -p headroom-core -e normal,build --prefix none | grep -E '^(tauri|wry|webkit2gtk)[ -]'; then
  die "headroom-core depends on Tauri or webkit (see above)"
fi
log "cargo fmt --check"
cargo fmt --all --check
# Clippy's lints run inside the test build instead of a `cargo clippy` pass of their own:
# `cargo clippy` is `cargo check` with clippy-driver wrapping rustc for the workspace's crates,
# and a check pass builds every dependency a second time in check mode, llama.cpp's C++ included
# (13 min of a cold run here). With clippy-driver as the workspace's rustc wrapper, the one test
# build compiles the dependencies once and lints the workspace's own code with -D warnings, the
# same lints over the same targets as `cargo clippy --workspace --all-targets -- -D warnings`.
clippy_driver="$(dirname "$(rustup which cargo 2>/dev/null || command -v cargo)")/clippy-driver"
[[ -x "$clippy_driver" ]] || die "clippy is missing: rustup component add clippy"
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-Dwarnings__CLIPPY_HACKERY__"
log "build, with clippy's lints on the workspace (-D warnings)"
cargo test --locked --workspace --all-targets --no-run
log "the macOS build, compile-checked (aarch64-apple-darwin)"
"$ROOT/scripts/check-macos.sh"
log "unit and end-to-end tests (the desktop app's under Xvfb)"
# The machine's memory as the tests start: the pressure monitor under test reacts to it.
cg=$(sed -n 's/^[0-9]*:memory:\(.*\)/\1/p' /proc/self/cgroup)
log "memory cgroup ${cg:-none}, limit $(cat "/sys/fs/cgroup/memory$cg/memory.limit_in_bytes" 2>/dev/null || echo unknown)"
log "memory: $(grep -E '^Mem(Total|Free|Available):' /proc/meminfo | tr -s ' ' | paste -sd ' '); $(tr '\n' ' ' < /proc/pressure/memory 2>/dev/null || true)"
cargo test --locked --workspace --all-targets -- --test-threads=1
log "the web UI in a real browser (Chromium, playwright-core)"
cd "$ROOT/tests/browser"
npm ci --no-audit --no-fund --loglevel=error
HEADROOM_BIN="$CARGO_TARGET_DIR/debug/headroom" node --test run.mjs

#!/usr/bin/env bash
# Compile-checks the workspace for Apple Silicon macOS (aarch64-apple-darwin) with clippy and
# -D warnings, from Linux, without a macOS SDK: every cfg(target_os = "macos") line is
# type-checked and linted on every run, though nothing is linked or run (see docs/platforms.md).
#
#   scripts/check-macos.sh      (scripts/test.sh calls it)
#
# What makes it work without an SDK, cmake or a cross linker:
# - llama-cpp-sys-2 declares `links = "llama"`, so its build script is overridden for this target
#   on the command line: only its generated bindings are needed, and the bindings bindgen writes
#   for x86_64 Linux are the same as the aarch64-darwin ones (C types of the same sizes). They
#   are taken from the Linux build. Only on this command line: in .cargo/config.toml it would
#   break a real Mac's build.
# - The same for mlx-sys (`links = "mlx"`): upstream's build would fetch MLX from GitHub and
#   build it with Metal; its bindings come from the Linux build, whose patched half.h gives
#   bindgen the same half types as on a Mac (src-tauri/mlx-sys/PATCHES.md).
# - DOCS_RS=1 makes objc2-exception-helper and mac-notification-sys skip their Objective-C
#   builds (nothing else in the macOS graph reads it).
# - The benchmark crate is Linux-only (/proc, cgroups, posix_fadvise) and left out.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

target=aarch64-apple-darwin
cd "$ROOT"
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  log "installing the Rust standard library for $target"
  rustup target add "$target"
fi
bindings=$(ls -t "$CARGO_TARGET_DIR"/debug/build/llama-cpp-sys-2-*/out/bindings.rs 2>/dev/null | head -n 1)
[[ -n "$bindings" ]] || die "no llama.cpp bindings in $CARGO_TARGET_DIR: build the workspace for Linux first (scripts/test.sh does)"
out="$CARGO_TARGET_DIR/$target-llama-bindings"
mkdir -p "$out"
cmp -s "$bindings" "$out/bindings.rs" || cp "$bindings" "$out/bindings.rs"
mlx_bindings=$(ls -t "$CARGO_TARGET_DIR"/debug/build/mlx-sys-*/out/bindings.rs 2>/dev/null | head -n 1)
[[ -n "$mlx_bindings" ]] || die "no MLX bindings in $CARGO_TARGET_DIR: build the workspace for Linux first (scripts/test.sh does)"
mlx_out="$CARGO_TARGET_DIR/$target-mlx-bindings"
mkdir -p "$mlx_out"
cmp -s "$mlx_bindings" "$mlx_out/bindings.rs" || cp "$mlx_bindings" "$mlx_out/bindings.rs"
log "clippy for $target (compile-checked only: no SDK here, nothing linked or run)"
# The test build's clippy wrapper is not for this command: cargo clippy sets its own.
env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS DOCS_RS=1 \
  cargo clippy --locked --target "$target" --workspace --exclude headroom-bench --all-targets \
  --config "target.$target.llama.rustc-env.OUT_DIR=\"$out\"" \
  --config "target.$target.mlx.rustc-env.OUT_DIR=\"$mlx_out\"" -- -D warnings

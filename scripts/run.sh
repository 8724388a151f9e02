#!/usr/bin/env bash
# Runs Headroom: installs what is missing, fetches the default model, builds, starts.
# With a display it starts the menu-bar app; without one, the headless server.
# Extra arguments go to `headroom` (e.g. --port 8080, --headless).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_system_packages gui
fetch_smollm2 "$(app_models_dir)"
fetch_mlx

cd "$ROOT"
log "building headroom"
# The same build as scripts/test.sh (whole workspace, all targets), so after the tests this is
# quick: another feature set would rebuild llama.cpp.
cargo build --locked --workspace --all-targets
args=("$@")
has_display || args=(--headless "${args[@]}")
exec "$CARGO_TARGET_DIR/debug/headroom" "${args[@]}"

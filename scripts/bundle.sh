#!/usr/bin/env bash
# Builds Headroom's installable bundle with Tauri's bundler (tauri-cli from crates.io): the .deb
# on Linux, the .app and .dmg on macOS. On Linux it then installs the .deb with dpkg into an
# empty root folder and proves the installed app starts headless, hands over to its
# `headroom-server` helper, and answers a chat with a real model.
#
#   scripts/bundle.sh            build (and on Linux test) the bundle
#
# Not part of CI: it is a release build (see docs/platforms.md for the time it takes). The
# AppImage is not built: its tools come from GitHub, which these machines cannot reach.
#
# The bundle carries `headroom-server`, the backend linked without Tauri or WebKit (Tauri's
# `externalBin`, src-tauri/tauri.bundle.conf.json), beside the app binary. Off Apple it also
# carries MLX's CPU library from the mlx-cpu wheel (the app links it), under
# /usr/lib/headroom, where the binaries' rpath looks for it.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TAURI_CLI_VERSION=2.12.4

install_system_packages gui
fetch_mlx
models="${HEADROOM_TEST_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/headroom/test-models}"
fetch_smollm2 "$models"

tools="${XDG_CACHE_HOME:-$HOME/.cache}/headroom/tools"
if [[ "$("$tools/bin/cargo-tauri" --version 2>/dev/null)" != *"$TAURI_CLI_VERSION"* ]]; then
  log "installing tauri-cli $TAURI_CLI_VERSION (Tauri's bundler)"
  cargo install tauri-cli --version "$TAURI_CLI_VERSION" --locked --root "$tools"
fi

cd "$ROOT"
started=$SECONDS
triple="$(rustc -vV | sed -n 's/^host: //p')"
log "building headroom-server (the backend without Tauri) for $triple"
cargo build --release --locked -p headroom --no-default-features --bin headroom-server
mkdir -p src-tauri/binaries
cp "$CARGO_TARGET_DIR/release/headroom-server" "src-tauri/binaries/headroom-server-$triple"

configs=(--config tauri.bundle.conf.json)
case "$(uname -s)" in
  Darwin) bundles=app,dmg ;;
  *)
    bundles=deb
    # MLX's shared library and the BLAS/LAPACK it loads, at the paths the rpath names (the
    # wheel's own layout under /usr/lib/headroom, so libmlx.so finds its libraries as in the
    # wheel). The sources are this machine's, so this part of the configuration is written here.
    wheel="$(dirname "$MLX_DIR")"
    files="$(cd "$wheel" && find mlx/lib mlx_cpu.libs -name '*.so*' -type f | sort |
      python3 -c 'import json, sys; w = sys.argv[1]; print(json.dumps({"bundle": {"linux": {"deb": {"files": {f"/usr/lib/headroom/{p}": f"{w}/{p}" for p in sys.stdin.read().split()}}}}}))' "$wheel")"
    configs+=(--config "$files")
    ;;
esac
log "bundling ($bundles)"
(cd src-tauri && "$tools/bin/cargo-tauri" build --bundles "$bundles" "${configs[@]}" -- --locked)
log "bundled in $((SECONDS - started)) s"

[[ "$(uname -s)" == Linux ]] || exit 0

deb="$(ls -t "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb | head -n 1)"
log "installing $(basename "$deb") with dpkg into an empty root"
root="$(mktemp -d)"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status"
# An empty root has none of the libraries the package depends on: they are this machine's.
dpkg --root="$root" --force-depends --force-script-chrootless -i "$deb" >/dev/null
dpkg --root="$root" -L headroom | sed 's/^/  /' >&2
for file in usr/bin/headroom usr/bin/headroom-server usr/lib/headroom/mlx/lib/libmlx.so; do
  [[ -f "$root/$file" ]] || die "the package has no /$file"
done

log "starting the installed app headless"
port=$((20000 + RANDOM % 20000))
"$root/usr/bin/headroom" --headless --port "$port" --data-dir "$root/data" \
  --config "$root/config.toml" --models-dir "$models" >"$root/log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/api/status" >/dev/null && break
  sleep 0.2
done
comm="$(cat "/proc/$pid/comm")"
[[ "$comm" == headroom-server ]] || die "the app did not hand over to its headroom-server helper ($comm)"
answer="$(curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "SmolLM2-135M-Instruct.Q4_1", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0}')" ||
  { cat "$root/log" >&2; die "the installed app did not answer"; }
python3 -c 'import json, sys; a = json.loads(sys.argv[1]); assert a["choices"][0]["message"]["content"], a; print("answered:", a["choices"][0]["message"]["content"])' "$answer"
# MLX's library was found where the package put it, not in the build machine's cache.
grep -q "/usr/lib/headroom/mlx/lib/libmlx.so" "/proc/$pid/maps" || die "libmlx.so was not loaded from the package"
log "the installed package serves: $(basename "$deb"), $(du -h "$deb" | cut -f1)"

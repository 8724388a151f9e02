#!/usr/bin/env bash
# Builds the reference `llama-server` the benchmarks compare Headroom against, from the llama.cpp
# vendored in llama-cpp-python's PyPI sdist, with the CPU flags Headroom's own llama.cpp gets;
# and `llama-bench` twice, so the benchmark can tell the two llama.cpp builds apart from the two
# servers: once from that same tree, once from the llama.cpp Headroom links (llama-cpp-sys-2's
# vendored copy, which ships no tools: the sdist's llama-bench sources are built against it).
#
#   scripts/bench/reference.sh [CACHE_DIR]
#
# CACHE_DIR defaults to $HEADROOM_BENCH_CACHE, else ~/.cache/headroom/bench. Build parallelism:
# $HEADROOM_BENCH_JOBS (default: all cores). Extra cmake arguments: $HEADROOM_BENCH_CMAKE_ARGS.
# Idempotent: a second run only checks the binaries. The last three lines on stdout are the
# paths of llama-server, its llama-bench, and the llama-bench on Headroom's llama.cpp; everything
# else goes to stderr. <cache>/llama-server.version records what was built.
#
# Why this llama-cpp-python: Headroom pins llama-cpp-2 / llama-cpp-sys-2 0.1.160, whose vendored
# llama.cpp says version 0.6.0 (v0.6.0 = build b11429, d81235049: session format 11, the Clef
# model, ggml 0.26.0). No llama-cpp-python release vendors that yet; the newest, 0.3.36, pins
# llama.cpp 0c1e57098 (b11312, 0.5.x, ggml 0.25.3), about a hundred commits older and much closer
# than 0.3.35 (diff -rq against the crate's copy: 48 vs 133 files differ in src/, 141 vs 482 in
# ggml/src/). Move these pins when llama-cpp-sys-2 or llama-cpp-python moves.
set -euo pipefail

LCP_VERSION=0.3.36
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_COMMIT=0c1e570            # from the sdist's CHANGELOG: "update llama.cpp to ggml-org/llama.cpp@0c1e57098"
LLAMA_BUILD=11312               # the build number (git rev-list --count) of that commit
HEADROOM_LLAMA="llama-cpp-sys-2 0.1.160 (llama.cpp 0.6.0, ~b11429)"
HEADROOM_LLAMA_CRATE=llama-cpp-sys-2
HEADROOM_LLAMA_COMMIT=d812350   # v0.6.0, as above
HEADROOM_LLAMA_BUILD=11429

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

CACHE="${1:-${HEADROOM_BENCH_CACHE:-$HOME/.cache/headroom/bench}}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

cpus() { nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2; }
JOBS="${HEADROOM_BENCH_JOBS:-$(cpus)}"

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# --- CPU flags: the same as llama-cpp-sys-2's build.rs gives Headroom ----------------------------
# build.rs never uses GGML_NATIVE unless rustflags say target-cpu=native. On x86_64 Linux,
# .cargo/config.toml sets target-cpu=x86-64-v3, so build.rs passes -march=x86-64-v3 to C and C++
# and turns on the ggml options for the Rust target features that implies (AVX, AVX2, BMI2,
# F16C, FMA, SSE4.2). Elsewhere no target-cpu is set: plain GGML_NATIVE=OFF, plus what build.rs
# adds per platform (Apple: BLAS off, Metal left at its default, on; aarch64 Linux: armv8-a).
# Headroom links llama.cpp statically with OpenMP (feature "openmp"), so do we.
os="$(uname -s)"; arch="$(uname -m)"
cpu_args=(-DGGML_NATIVE=OFF)
case "$os/$arch" in
  Linux/x86_64)
    variant=x86-64-v3
    cpu_args+=(-DCMAKE_C_FLAGS=-march=x86-64-v3 -DCMAKE_CXX_FLAGS=-march=x86-64-v3
               -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_F16C=ON -DGGML_FMA=ON
               -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF)
    ;;
  Linux/aarch64|Linux/arm64)
    variant=armv8-a
    cpu_args+=(-DGGML_CPU_ARM_ARCH=armv8-a)
    ;;
  Darwin/*)
    variant="$arch-metal"
    cpu_args+=(-DGGML_BLAS=OFF -DGGML_METAL=ON)
    ;;
  *)
    variant="$arch"
    ;;
esac

SDIST="$CACHE/sdist/llama_cpp_python-$LCP_VERSION.tar.gz"
SRC="$CACHE/src/llama_cpp_python-$LCP_VERSION"
LLAMA_SRC="$SRC/vendor/llama.cpp"
BUILD="$CACHE/build/llama-cpp-python-$LCP_VERSION-$variant"
BIN="$BUILD/bin/llama-server"
BENCH_BIN="$BUILD/bin/llama-bench"
VERSION_FILE="$CACHE/llama-server.version"

# Headroom's llama.cpp: where cargo unpacked the crate Cargo.lock pins.
crate_dir() {
  cargo metadata --locked --format-version 1 --manifest-path "$ROOT/Cargo.toml" \
    | python3 -c 'import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == sys.argv[1]:
        print(os.path.dirname(p["manifest_path"]) + " " + p["version"])
        break' "$HEADROOM_LLAMA_CRATE"
}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
read -r CRATE_DIR CRATE_VERSION < <(crate_dir) || die "cargo metadata does not list $HEADROOM_LLAMA_CRATE"
[[ "$HEADROOM_LLAMA" == *"$HEADROOM_LLAMA_CRATE $CRATE_VERSION "* ]] \
  || log "warning: Cargo.lock has $HEADROOM_LLAMA_CRATE $CRATE_VERSION; this script's notes are for: $HEADROOM_LLAMA"
HEADROOM_SRC="$CACHE/src/$HEADROOM_LLAMA_CRATE-$CRATE_VERSION"
HEADROOM_BUILD="$CACHE/build/$HEADROOM_LLAMA_CRATE-$CRATE_VERSION-$variant"
HEADROOM_BENCH_BIN="$HEADROOM_BUILD/bin/llama-bench"

write_version_file() {
  cat >"$VERSION_FILE" <<END
llama_cpp_python=$LCP_VERSION
llama_cpp_commit=$LLAMA_COMMIT
llama_cpp_build=b$LLAMA_BUILD
variant=$variant
binary=$BIN
llama_bench=$BENCH_BIN
headroom_llama_cpp=$HEADROOM_LLAMA
headroom_llama_bench=$HEADROOM_BENCH_BIN
version_output=$("$BIN" --version 2>&1 | head -1)
END
}

runs() { [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1; }
print_paths() { printf '%s\n' "$BIN" "$BENCH_BIN" "$HEADROOM_BENCH_BIN"; }

# --- already built? -----------------------------------------------------------------------------
if runs "$BIN" && runs "$BENCH_BIN" && runs "$HEADROOM_BENCH_BIN"; then
  grep -qx "headroom_llama_bench=$HEADROOM_BENCH_BIN" "$VERSION_FILE" 2>/dev/null || write_version_file
  log "reference llama-server and both llama-bench builds are there (llama.cpp b$LLAMA_BUILD and Headroom's)"
  print_paths
  exit 0
fi

# --- sdist --------------------------------------------------------------------------------------
if [[ ! -f "$SDIST" ]] || [[ "$(sha256 "$SDIST")" != "$LCP_SHA256" ]]; then
  log "downloading llama-cpp-python $LCP_VERSION (sdist)"
  rm -f "$SDIST"
  mkdir -p "$CACHE/sdist"
  PY="${PYTHON:-python3}"
  "$PY" -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$LCP_VERSION" \
    -d "$CACHE/sdist" >&2
  [[ -f "$SDIST" ]] || die "pip did not leave $SDIST"
  [[ "$(sha256 "$SDIST")" == "$LCP_SHA256" ]] || die "$SDIST: sha256 is not $LCP_SHA256"
fi

if [[ ! -f "$LLAMA_SRC/CMakeLists.txt" ]]; then
  log "unpacking $(basename "$SDIST")"
  rm -rf "$SRC" "$SRC.tmp"
  mkdir -p "$SRC.tmp"
  tar -xzf "$SDIST" -C "$SRC.tmp"
  mv "$SRC.tmp/llama_cpp_python-$LCP_VERSION" "$SRC"
  rmdir "$SRC.tmp"
fi
grep -qi "llama.cpp@${LLAMA_COMMIT}" "$SRC/CHANGELOG.md" \
  || log "warning: $SRC/CHANGELOG.md does not name llama.cpp@$LLAMA_COMMIT"

# Headroom's llama.cpp, with the sdist's llama-bench (the crate keeps only tools' READMEs) and a
# tools list of that one tool. llama-bench calls only llama.h and ggml, which these hundred
# commits left compatible; the library under it is the one Headroom links.
if [[ ! -f "$HEADROOM_SRC/tools/llama-bench/llama-bench.cpp" ]]; then
  log "copying $HEADROOM_LLAMA_CRATE $CRATE_VERSION's llama.cpp, with llama-bench from the sdist"
  rm -rf "$HEADROOM_SRC" "$HEADROOM_SRC.tmp"
  mkdir -p "$CACHE/src"
  cp -R "$CRATE_DIR/llama.cpp" "$HEADROOM_SRC.tmp"
  chmod -R u+w "$HEADROOM_SRC.tmp"
  rm -rf "$HEADROOM_SRC.tmp/tools/llama-bench"
  cp -R "$LLAMA_SRC/tools/llama-bench" "$HEADROOM_SRC.tmp/tools/llama-bench"
  printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' \
    >"$HEADROOM_SRC.tmp/tools/CMakeLists.txt"
  mv "$HEADROOM_SRC.tmp" "$HEADROOM_SRC"
fi

# --- build --------------------------------------------------------------------------------------
# The sdist has no git history, so the build number and commit are passed in. LLAMA_CURL is gone
# in this llama.cpp (ignored, kept for older trees); OpenSSL, the downloaded/npm-built web UI and
# the unified `llama` app are off: not needed to serve, and the build stays offline.
command -v cmake >/dev/null || die "cmake is needed"
build() { # source build number commit server(ON/OFF) targets...
  local src="$1" dir="$2" number="$3" commit="$4" server="$5"
  shift 5
  local cmake_args=(
    -S "$src" -B "$dir"
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_BUILD_NUMBER="$number" -DLLAMA_BUILD_COMMIT="$commit"
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER="$server"
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
    -DGGML_OPENMP=ON -DGGML_CCACHE=OFF
    "${cpu_args[@]}"
  )
  if [[ -n "${HEADROOM_BENCH_CMAKE_ARGS:-}" ]]; then
    # shellcheck disable=SC2206 # word splitting is the point
    cmake_args+=(${HEADROOM_BENCH_CMAKE_ARGS})
  fi
  log "configuring llama.cpp b$number ($variant) in $dir"
  printf '    cmake %s\n' "${cmake_args[*]}" >&2
  cmake "${cmake_args[@]}" >&2
  log "building $* with $JOBS job(s)"
  local start=$SECONDS
  cmake --build "$dir" --config Release --target "$@" -j "$JOBS" >&2
  log "built in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
}

runs "$BIN" && runs "$BENCH_BIN" \
  || build "$LLAMA_SRC" "$BUILD" "$LLAMA_BUILD" "$LLAMA_COMMIT" ON llama-server llama-bench
runs "$HEADROOM_BENCH_BIN" \
  || build "$HEADROOM_SRC" "$HEADROOM_BUILD" "$HEADROOM_LLAMA_BUILD" "$HEADROOM_LLAMA_COMMIT" OFF llama-bench

for bin in "$BIN" "$BENCH_BIN" "$HEADROOM_BENCH_BIN"; do
  runs "$bin" || die "$bin does not run after the build"
done
"$BIN" --version >&2
write_version_file
print_paths

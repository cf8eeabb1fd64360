#!/usr/bin/env bash
# Makes a link-only libcuda stub so that `cargo build --features cuda` works on a machine
# without the NVIDIA driver (CI, the dev machine): cust's build script (find_cuda_helper) wants
# DIR/lib64 under $CUDA_LIBRARY_PATH and links -lcuda. The stub defines every cu* function that
# cust_raw declares, as an empty function: it exists to satisfy the linker only. The binary it
# produces needs the real libcuda.so.1 (the driver) at run time; never run it against the stub.
#
#   bash scripts/cuda_stub.sh [DIR]          # default DIR: .cache/cuda-stub
#   CUDA_LIBRARY_PATH=$PWD/.cache/cuda-stub cargo build --release --features cuda --target-dir target/cuda
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.cache/cuda-stub}"
cd "$ROOT"
cargo fetch -q
SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cust_raw-0.11.3/src/cuda.rs 2>/dev/null | head -1)"
[ -n "$SRC" ] || { echo "error: cust_raw 0.11.3 sources not found after cargo fetch" >&2; exit 1; }
mkdir -p "$DIR/lib64"
grep -oE 'pub fn cu[A-Za-z0-9_]+' "$SRC" | awk '{print $3}' | sort -u |
    awk '{print "void " $1 "(void) {}"}' > "$DIR/stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$DIR/lib64/libcuda.so" "$DIR/stub.c"
echo "libcuda stub ($(wc -l < "$DIR/stub.c") functions): $DIR/lib64/libcuda.so"
echo "build with: CUDA_LIBRARY_PATH=$DIR cargo build --release --features cuda --target-dir target/cuda"

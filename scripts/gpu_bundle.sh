#!/usr/bin/env bash
# Prepares what the GPU machine needs to run scripts/gpu_check.sh (it has no Rust and no
# network): .cache/gpu-bundle/bundle.tar.gz holding
#   lsoftmax     built here with --features cuda against the link-only libcuda stub, stripped
#   lib/         the shared libraries it needs besides the driver and glibc (OpenBLAS, gfortran)
#   mnist/       the four MNIST IDX files (from $LSOFTMAX_DATA or data/mnist)
# about 30 MB compressed. The binary needs glibc 2.34 or later and the NVIDIA driver's
# libcuda.so.1 (CUDA 13.0 or later for PTX ISA 9.0).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${1:-$ROOT/.cache/gpu-bundle}"
DATA="${LSOFTMAX_DATA:-$ROOT/data/mnist}"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -f "$DATA/$f" ] || { echo "error: $DATA/$f missing (lsoftmax fetch-data)" >&2; exit 1; }
done
[ -f .cache/cuda-stub/lib64/libcuda.so ] || bash scripts/cuda_stub.sh
# A separate target folder: the CUDA binary needs libcuda.so.1 to start, so it must not replace
# the default target/release/lsoftmax.
TARGET="${CARGO_TARGET_DIR_CUDA:-$ROOT/target/cuda}"
CUDA_LIBRARY_PATH="$ROOT/.cache/cuda-stub" cargo build --release --features cuda -p lsoftmax-trainer \
    --bin lsoftmax --target-dir "$TARGET"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/lib" "$STAGE/mnist" "$OUT"
cp "$TARGET/release/lsoftmax" "$STAGE/lsoftmax"
strip "$STAGE/lsoftmax"
# Every resolved dependency except glibc's own libraries and the driver.
ldd "$TARGET/release/lsoftmax" | awk '/=> \// {print $1, $3}' |
    grep -vE '^(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux[^ ]*)\.so' |
    while read -r name path; do cp -L "$path" "$STAGE/lib/$name"; done
cp "$DATA"/*-ubyte "$STAGE/mnist/"
tar -czf "$OUT/bundle.tar.gz" -C "$STAGE" .
echo "bundle: $OUT/bundle.tar.gz ($(du -h "$OUT/bundle.tar.gz" | cut -f1)): $(cd "$STAGE" && find . -type f | sort | tr '\n' ' ')"

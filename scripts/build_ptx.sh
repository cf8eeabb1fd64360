#!/usr/bin/env bash
# Rebuilds the committed PTX of the CUDA kernels: kernels/cuda/NAME.cu -> kernels/ptx/NAME.ptx,
# with the pinned nvcc 13.0.88 (see scripts/nvcc_env.sh), `-ptx -arch=compute_80` (PTX ISA 9.0,
# JIT-compiled by the driver for sm_80 and later: A100, H100, H200), and records the SHA-256 of
# every source in kernels/ptx/SOURCES.sha256 so that `cargo test -p kernels` notices a stale PTX
# without nvcc.
#
#   bash scripts/build_ptx.sh [OUTDIR]      # default OUTDIR: kernels/ptx
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/nvcc_env.sh"
OUT="${1:-$ROOT/kernels/ptx}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT/kernels/cuda"
for src in *.cu; do
    name="${src%.cu}"
    # Relative paths only, so the output does not depend on where the checkout lives.
    "$NVCC" -ptx -arch=compute_80 -std=c++17 -o "$OUT/$name.ptx" "$src"
done
cd "$ROOT/kernels"
sha256sum cuda/*.cu cuda/*.cuh > "$OUT/SOURCES.sha256"
echo "built $(ls "$OUT"/*.ptx | wc -l) PTX files in $OUT"

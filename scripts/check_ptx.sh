#!/usr/bin/env bash
# Checks the committed PTX of the CUDA kernels, no GPU needed:
#  1. kernels/ptx/SOURCES.sha256 matches the sources (a stale PTX fails here; no nvcc needed);
#  2. every PTX says `.version 9.0` (what a CUDA 13.0 driver accepts);
#  3. ptxas accepts every PTX for sm_80 and sm_90;
#  4. rebuilding the PTX from the sources with the pinned nvcc gives the committed files exactly.
# Steps 3 and 4 need the pinned nvcc (scripts/nvcc_env.sh; LSOFTMAX_INSTALL_NVCC=1 installs it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/kernels"
echo "== PTX sources recorded in kernels/ptx/SOURCES.sha256"
sha256sum --quiet -c ptx/SOURCES.sha256 || {
    echo "error: kernels/cuda changed since the PTX was built; run scripts/build_ptx.sh and commit kernels/ptx" >&2
    exit 1
}
for src in cuda/*.cu; do
    name="$(basename "$src" .cu)"
    [ -f "ptx/$name.ptx" ] || { echo "error: no kernels/ptx/$name.ptx for $src" >&2; exit 1; }
    grep -q "^\.version 9\.0$" "ptx/$name.ptx" || { echo "error: ptx/$name.ptx is not PTX ISA 9.0" >&2; exit 1; }
done
source "$ROOT/scripts/nvcc_env.sh"
echo "== ptxas sm_80 and sm_90"
for ptx in ptx/*.ptx; do
    for arch in sm_80 sm_90; do
        "$PTXAS" -arch="$arch" "$ptx" -o /dev/null || { echo "error: ptxas -arch=$arch rejects $ptx" >&2; exit 1; }
    done
done
echo "== rebuild and compare"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
bash "$ROOT/scripts/build_ptx.sh" "$TMP" >/dev/null
if ! diff -r -q "$ROOT/kernels/ptx" "$TMP"; then
    echo "error: the committed PTX differs from a fresh build; run scripts/build_ptx.sh and commit kernels/ptx" >&2
    exit 1
fi
echo "PTX OK: $(ls ptx/*.ptx | wc -l) files, up to date, accepted by ptxas for sm_80 and sm_90"

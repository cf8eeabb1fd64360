# Sourced by the scripts that run on the GPU machine (gpu_check.sh, gpu_table.sh): unpacks the
# bundle made by scripts/gpu_bundle.sh ($GPU_BUNDLE, default .cache/gpu-bundle/bundle.tar.gz)
# into a temporary folder and sets
#   BIN   a wrapper that runs the bundled `lsoftmax` with the bundled OpenBLAS (libcuda comes
#         from the driver)
#   DATA  the bundled MNIST folder (also exported as LSOFTMAX_DATA)
#   BIN_ID the SHA-256 of the bundle (or of $GPU_BIN): what a recorded gpu_check pass is for
# $GPU_BIN replaces BIN (e.g. a local --features cuda build run through the emulated libcuda of
# scripts/cuda_emu.sh, to try a script on a machine without a GPU); then $LSOFTMAX_DATA or
# data/mnist is the data.
if [ -n "${GPU_BIN:-}" ]; then
    BIN="$GPU_BIN"
    BIN_ID="$(sha256sum "$GPU_BIN" | cut -d' ' -f1)"
    DATA="${LSOFTMAX_DATA:-$PWD/data/mnist}"
else
    BUNDLE="${GPU_BUNDLE:-.cache/gpu-bundle/bundle.tar.gz}"
    [ -f "$BUNDLE" ] || { echo "error: no $BUNDLE; make it with scripts/gpu_bundle.sh" >&2; exit 2; }
    BIN_ID="$(sha256sum "$BUNDLE" | cut -d' ' -f1)"
    BUNDLE_DIR="$(mktemp -d)"
    tar -xzf "$BUNDLE" -C "$BUNDLE_DIR"
    # Our OpenBLAS and gfortran for the binary only (not for Python).
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s/lsoftmax" "$@"\n' \
        "$BUNDLE_DIR" "$BUNDLE_DIR" > "$BUNDLE_DIR/run"
    chmod +x "$BUNDLE_DIR/run"
    BIN="$BUNDLE_DIR/run"
    DATA="$BUNDLE_DIR/mnist"
fi
export LSOFTMAX_DATA="$DATA"

# Sourced by the PTX scripts: finds the pinned nvcc (CUDA 13.0.88 with nvvm 13.0, which writes
# PTX ISA 9.0, what a CUDA 13.0 driver accepts) and sets NVCC and PTXAS.
#
# Order: $NVCC if set; else .cache/nvcc (pip --target folder, git-ignored). With
# LSOFTMAX_INSTALL_NVCC=1 a missing .cache/nvcc is installed with pip (about 290 MB).
NVCC_PIP_DIR="${NVCC_PIP_DIR:-$ROOT/.cache/nvcc}"
# nvidia-cuda-cccl: the <nv/target> headers that <mma.h> (the TF32 WMMA kernels) needs.
NVCC_PINS=("nvidia-cuda-nvcc==13.0.88" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-cuda-runtime==13.0.*"
    "nvidia-cuda-cccl==13.0.*")
if [ -z "${NVCC:-}" ]; then
    if [ "${LSOFTMAX_INSTALL_NVCC:-0}" = 1 ]; then
        if [ ! -x "$NVCC_PIP_DIR/nvidia/cu13/bin/nvcc" ]; then
            echo "installing the pinned nvcc into $NVCC_PIP_DIR (pip, ~290 MB)" >&2
            PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --target "$NVCC_PIP_DIR" "${NVCC_PINS[@]}" >&2
        elif [ ! -f "$NVCC_PIP_DIR/nvidia/cu13/include/nv/target" ]; then
            # An install from before the cccl pin: add its headers beside nvcc's (pip --target
            # will not merge into the existing nvidia/ folder).
            echo "adding the pinned CCCL headers to $NVCC_PIP_DIR (pip, ~3 MB)" >&2
            tmp="$(mktemp -d)"
            PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --target "$tmp" "${NVCC_PINS[4]}" >&2
            cp -r "$tmp/nvidia/cu13/include/." "$NVCC_PIP_DIR/nvidia/cu13/include/"
            rm -rf "$tmp"
        fi
    fi
    NVCC="$NVCC_PIP_DIR/nvidia/cu13/bin/nvcc"
fi
if [ ! -x "$NVCC" ]; then
    echo "error: no nvcc at $NVCC." >&2
    echo "  Install the pinned one: LSOFTMAX_INSTALL_NVCC=1 bash $0, or" >&2
    echo "  python3 -m pip install --target .cache/nvcc ${NVCC_PINS[*]}" >&2
    exit 2
fi
PTXAS="${PTXAS:-$(dirname "$NVCC")/ptxas}"
if ! "$NVCC" --version | grep -q "V13.0.88"; then
    echo "error: $NVCC is not nvcc 13.0.88; the committed PTX is built with exactly that version:" >&2
    "$NVCC" --version >&2
    exit 2
fi

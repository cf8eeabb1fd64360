#!/usr/bin/env bash
# Create the Python environment for the PyTorch / ONNX Runtime speed anchors at .cache/venv
# (repo-relative, git-ignored). Idempotent: does nothing when the venv already imports everything
# at the pinned torch version. Only PyPI is used.
#
#   bash bench/setup_python.sh            # create or check .cache/venv
#   bash bench/setup_python.sh --force    # delete and recreate it
#   bash bench/setup_python.sh --full     # torch with ALL its declared deps (adds triton, cusolver,
#                                         # nvrtc, nvtx, cuda-bindings): the stock install
#   VENV=/some/dir PYTHON=python3.12 bash bench/setup_python.sh
#
# Why not `pip install torch`: on Linux x86-64 PyPI only has the CUDA build of torch (the +cpu
# wheels live on PyTorch's own index, which is not reachable here). Its libtorch_cpu/libtorch_cuda/
# libtorch_python link at load time against cudart, cupti, cuBLAS(Lt), cuDNN, cuFFT, cuFile, cuRAND,
# cuSPARSE(+nvJitLink), cuSPARSELt, NCCL and NVSHMEM, so `pip install --no-deps torch` alone fails
# at `import torch` (libcublasLt / libnvshmem_host not found). We therefore install torch with
# --no-deps plus exactly those NVIDIA runtime wheels (pinned to what torch 2.11.0 declares) and
# skip what is only loaded on demand: triton (torch.compile on GPU), cusolver, nvrtc, nvtx,
# cuda-bindings. On a machine without an NVIDIA driver torch.cuda.is_available() is then False
# and everything runs on the CPU (MKL + oneDNN). These are genuine, unmodified PyPI wheels.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.cache/venv}"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION="2.11.0"
# Runtime libraries libtorch needs at load time, with the exact pins torch 2.11.0 declares
# (cuda-toolkit==13.0.2 extras + its direct nvidia-* requirements).
NVIDIA_WHEELS=(
  "nvidia-cuda-runtime==13.0.96.*"
  "nvidia-cuda-cupti==13.0.85.*"
  "nvidia-cublas==13.1.0.3.*"
  "nvidia-cufft==12.0.0.61.*"
  "nvidia-cufile==1.15.1.6.*"
  "nvidia-curand==10.4.0.35.*"
  "nvidia-cusparse==12.6.3.3.*"
  "nvidia-nvjitlink==13.0.88.*"
  "nvidia-cudnn-cu13==9.19.0.56"
  "nvidia-cusparselt-cu13==0.8.0"
  "nvidia-nccl-cu13==2.28.9"
  "nvidia-nvshmem-cu13==3.4.5"
)
# torch's pure-Python requirements
TORCH_PY_DEPS=(filelock "typing-extensions>=4.10.0" "setuptools<82" "sympy>=1.13.3"
               "networkx>=2.5.1" jinja2 "fsspec>=0.8.5")
# The rest, pinned to the versions tested (BENCH_UNPINNED=1 takes the newest instead).
if [[ "${BENCH_UNPINNED:-0}" == 1 ]]; then
  OTHERS=(numpy onnx onnxruntime onnxscript safetensors)
else
  OTHERS=("numpy==2.4.6" "onnx==1.23.2" "onnxruntime==1.32.0" "onnxscript==0.7.2"
          "safetensors==0.8.0")
fi

FORCE=0
FULL=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    --full) FULL=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option: $a" >&2; exit 2 ;;
  esac
done

CHECK_PY="
import torch, numpy, onnx, onnxruntime, onnxscript, safetensors
assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__
x = torch.randn(2, 1, 28, 28, requires_grad=True)
torch.nn.functional.conv2d(x, torch.randn(4, 1, 3, 3)).sum().backward()
"

print_versions() {
  "$VENV/bin/python" - <<'EOF'
import platform, torch, numpy, onnx, onnxruntime, onnxscript, safetensors
print(f"python       {platform.python_version()}")
print(f"torch        {torch.__version__} (CUDA build {torch.version.cuda}; "
      f"cuda available here: {torch.cuda.is_available()}; threads {torch.get_num_threads()}; "
      f"ATen CPU capability {torch.backends.cpu.get_cpu_capability()}; "
      f"oneDNN {'yes' if torch.backends.mkldnn.is_available() else 'no'}, "
      f"MKL {'yes' if torch.backends.mkl.is_available() else 'no'})")
print(f"numpy        {numpy.__version__}")
print(f"onnx         {onnx.__version__}")
print(f"onnxruntime  {onnxruntime.__version__} (providers: {', '.join(onnxruntime.get_available_providers())})")
print(f"onnxscript   {onnxscript.__version__}")
print(f"safetensors  {safetensors.__version__}")
EOF
  echo "venv         $VENV ($(du -sh "$VENV" 2>/dev/null | cut -f1))"
}

if [[ $FORCE == 0 && -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "$CHECK_PY" >/dev/null 2>&1; then
  echo "setup_python: $VENV is already complete; nothing to do (use --force to rebuild)."
  print_versions
  exit 0
fi

start=$(date +%s)
if [[ $FORCE == 1 && -d "$VENV" ]]; then
  rm -rf "$VENV"
fi
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "need Python >= 3.10"'
# The folder first: on a fresh checkout .cache does not exist, and `df` of a missing path
# fails (which, under pipefail, ended the script without a word).
mkdir -p "$(dirname "$VENV")"
free_gb=$(df -Pk "$(dirname "$VENV")" 2>/dev/null | awk 'NR==2 {print int($4/1048576)}' || true)
if [[ -n "${free_gb:-}" && "$free_gb" -lt 6 ]]; then
  echo "setup_python: warning: only ${free_gb} GiB free; the venv needs about 3.7 GiB" >&2
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if [[ $FULL == 1 ]]; then
  echo "setup_python: installing torch==${TORCH_VERSION} with all its declared dependencies"
  "${PIP[@]}" install "torch==${TORCH_VERSION}"
else
  echo "setup_python: installing torch==${TORCH_VERSION} (--no-deps) + the CUDA runtime wheels it loads"
  "${PIP[@]}" install --no-deps "torch==${TORCH_VERSION}"
  "${PIP[@]}" install --no-deps "${NVIDIA_WHEELS[@]}"
  "${PIP[@]}" install "${TORCH_PY_DEPS[@]}"
fi
"${PIP[@]}" install "${OTHERS[@]}"

if ! "$VENV/bin/python" -c "$CHECK_PY"; then
  echo "setup_python: the venv at $VENV does not work (see the error above)." >&2
  echo "  If torch was bumped, update NVIDIA_WHEELS from its METADATA (Requires-Dist) and" >&2
  echo "  \`readelf -d torch/lib/*.so | grep NEEDED\`." >&2
  exit 1
fi
echo "setup_python: done in $(( $(date +%s) - start )) s"
print_versions

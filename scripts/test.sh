#!/usr/bin/env bash
# The project's full test suite, as CI runs it: set-up, formatting, lints, every crate's tests
# (release mode: the training tests need the speed), the no_std build for the Cortex-M4F, and
# the firmware demo under QEMU, and the CUDA backend without a GPU (PTX checks, a build linked
# against a stub libcuda, and the GPU code path run on the CPU through an emulated libcuda).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test"
cargo test --workspace --release
echo "== infer-core tests again in debug (overflow checks on: the hostile-input test must not overflow)"
cargo test -p infer-core
echo "== infer-core for thumbv7em-none-eabihf (no_std, no alloc), and its lints there (the Cortex-M kernels), with and without packed-conv"
cargo build -p infer-core --release --target thumbv7em-none-eabihf
cargo clippy -p infer-core --release --target thumbv7em-none-eabihf -- -D warnings
cargo clippy -p infer-core --release --target thumbv7em-none-eabihf --no-default-features -- -D warnings
echo "== firmware-demo: lints, build for the STM32F405, run under QEMU, compare with the host's predictions"
(cd firmware-demo && cargo clippy --release -- -D warnings)
bash scripts/firmware.sh
echo "== CUDA: committed PTX (source hashes, ptxas sm_80/sm_90, rebuilt with the pinned nvcc and compared)"
LSOFTMAX_INSTALL_NVCC=1 bash scripts/check_ptx.sh
echo "== CUDA: cargo build --features cuda, linked against a stub libcuda (separate target dir)"
bash scripts/cuda_stub.sh >/dev/null
CUDA_LIBRARY_PATH="$PWD/.cache/cuda-stub" cargo build --release --features cuda -p lsoftmax-trainer --target-dir target/cuda
echo "== CUDA: cargo clippy --features cuda (the GPU backend's code is not compiled without it)"
CUDA_LIBRARY_PATH="$PWD/.cache/cuda-stub" cargo clippy --release --features cuda -p lsoftmax-trainer --all-targets --target-dir target/cuda -- -D warnings
echo "== CUDA: every kernel against the CPU layers and 3 training steps, run on the CPU through an emulated libcuda"
bash scripts/cuda_emu.sh >/dev/null
LD_LIBRARY_PATH="$PWD/.cache/cuda-emu" target/cuda/release/lsoftmax gpu-check --quick --gemm-bench-batch 1
echo "== CUDA: the same checks with blocks and each barrier phase's threads in reverse order (a GPU promises no order), guard pages before the buffers"
FAKE_CUDA_ORDER=reverse FAKE_CUDA_GUARD=before LD_LIBRARY_PATH="$PWD/.cache/cuda-emu" target/cuda/release/lsoftmax gpu-check --quick
echo "== CUDA: train --device cuda --precise-bn through the emulated libcuda (statistics recomputed on the CPU copy, copied back)"
LD_LIBRARY_PATH="$PWD/.cache/cuda-emu" bash scripts/cuda_precise_bn_check.sh target/cuda/release/lsoftmax
echo "== CUDA: a driver that refuses the optional TF32 module: fp32 training goes on, LSOFTMAX_GPU_GEMM=tf32 says why"
refuse_dir="$(mktemp -d)"
FAKE_CUDA_REFUSE_PTX=sgemm_tf32 LD_LIBRARY_PATH="$PWD/.cache/cuda-emu" target/cuda/release/lsoftmax train --device cuda \
    --preset tiny --epochs 1 --train-limit 64 --test-limit 64 --quiet --out "$refuse_dir/fp32" > "$refuse_dir/fp32.log" 2>&1
grep -q "warning: loading the PTX of gemm_tf32.cu failed" "$refuse_dir/fp32.log"
if FAKE_CUDA_REFUSE_PTX=sgemm_tf32 LSOFTMAX_GPU_GEMM=tf32 LD_LIBRARY_PATH="$PWD/.cache/cuda-emu" target/cuda/release/lsoftmax train \
    --device cuda --preset tiny --epochs 1 --train-limit 64 --test-limit 64 --quiet --out "$refuse_dir/tf32" > "$refuse_dir/tf32.log" 2>&1; then
    echo "LSOFTMAX_GPU_GEMM=tf32 trained without its kernels"; exit 1
fi
grep -q "the TF32 kernels are unavailable" "$refuse_dir/tf32.log"
rm -rf "$refuse_dir"
echo "== the device-session scripts (gpu_session.sh, gpu_check.sh, gpu_table.sh) with a stand-in for the CUDA binary"
bash scripts/gpu_scripts_test.sh

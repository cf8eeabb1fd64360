#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine (no Rust there). Run from the repository root with
# .cache/gpu-bundle/bundle.tar.gz, made on the build machine by scripts/gpu_bundle.sh (the
# binary built with --features cuda, its OpenBLAS, and MNIST):
#
#   bash scripts/gpu_check.sh            # about 3-5 minutes
#
# 1. `lsoftmax gpu-check`: every kernel's forward and backward against the CPU layers on random
#    inputs (fp32, normalised error <= 1e-4), 3 training steps of `tiny` and `paper`, each started
#    on the GPU from the CPU's state (losses, weights, running statistics, gradients, momentum), the
#    sgemm tile families timed on `paper`'s convolution products, and the GPU speed of `paper`
#    at batch 256 (with $LSOFTMAX_GPU_GEMM's tiles, and with the square ones only);
# 2. a short `train --device cuda` run (tiny, 2 epochs on 6000 images, stopped after one and
#    resumed), then its checkpoint evaluated on the CPU: the accuracy must match the GPU's;
# 3. `train --device cuda --precise-bn` against `eval --recompute-bn` on the CPU
#    (scripts/cuda_precise_bn_check.sh);
# 4. PyTorch eager on the same GPU, `paper` at batch 256 (bench/torch_train_bench.py), for the
#    speed comparison in the same session: its default (TF32 cuDNN convolutions, the anchor for
#    LSOFTMAX_GPU_GEMM=tf32) and fp32 convolutions (the anchor for the fp32 default); for
#    information (measurements, not checks: they never fail the check);
# 5. for information too: the opt-in TF32 tensor-core products
#    (LSOFTMAX_GPU_GEMM=tf32): their kernel checks, their speed on `paper`'s products and
#    steps, and `paper` trained 2 epochs with fp32 and with TF32 products, test accuracy and
#    loss side by side.
# Prints PASS/FAIL per row and a summary; exits non-zero when something failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# BIN (the bundled binary) and DATA (the bundled MNIST); see gpu_bundle_env.sh.
source scripts/gpu_bundle_env.sh
X="$(mktemp -d)"
status=0
summary=()
# run KIND NAME COMMAND...: KIND check counts towards the result (PASS/FAIL), info is only
# reported (INFO, with the exit status when it failed). GPU_CHECK_INFO=0 skips the info steps
# (gpu_session.sh's second run of the check: the first already reported them).
run() {
    local kind="$1" name="$2"; shift 2
    if [ "$kind" = info ] && [ "${GPU_CHECK_INFO:-1}" = 0 ]; then
        summary+=("SKIP  $name (information, GPU_CHECK_INFO=0)")
        return
    fi
    echo
    echo "=== $([ "$kind" = info ] && echo "(information) ")$name"
    local t0=$SECONDS rc=0
    "$@" || rc=$?
    local took="($((SECONDS - t0)) s)"
    if [ "$kind" = info ]; then
        summary+=("INFO  $name$([ $rc = 0 ] || echo ": failed, exit $rc") $took")
    elif [ $rc = 0 ]; then
        summary+=("PASS  $name $took")
    else
        summary+=("FAIL  $name $took")
        status=1
    fi
}
step() { run check "$@"; }
info() { run info "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

step "gpu-check (kernels vs CPU, 3-step parity, GPU speed)" \
    timeout 240 "$BIN" gpu-check --bench-steps 50 --data "$DATA"

RUN="$X/train-run"
train_resume_eval() {
    local common=(--device cuda --preset tiny --epochs 2 --train-limit 6000 --quiet --out "$RUN" --data "$DATA")
    timeout 120 "$BIN" train "${common[@]}" --stop-after 1 &&
        timeout 120 "$BIN" train "${common[@]}" --resume || return 1
    [ "$(grep -c '"type":"epoch"' "$RUN/log.jsonl")" = 2 ] || { echo "log.jsonl lacks 2 epoch lines"; return 1; }
    # The checkpoint evaluated on the CPU must give the test accuracy the GPU logged.
    local gpu_acc cpu_acc
    gpu_acc="$(grep '"type":"epoch"' "$RUN/log.jsonl" | tail -1 | python3 -c 'import json,sys; print("%.2f" % json.loads(sys.stdin.read())["test_acc"])')"
    cpu_acc="$(timeout 120 "$BIN" eval --checkpoint "$RUN/checkpoint.bin" --data "$DATA" | sed -nE 's/.*test accuracy ([0-9.]+)%.*/\1/p')"
    echo "test accuracy: GPU evaluation $gpu_acc%, CPU evaluation of the checkpoint $cpu_acc%"
    python3 -c "import sys; sys.exit(0 if abs(float('$gpu_acc') - float('$cpu_acc')) <= 0.05 else 1)"
}
step "train --device cuda (tiny), resume, eval on CPU" train_resume_eval
step "train --device cuda --precise-bn (tiny): equals eval --recompute-bn on the CPU" \
    timeout 180 bash scripts/cuda_precise_bn_check.sh "$BIN"

if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    info "PyTorch eager on the GPU: paper, batch 256 (its default: TF32 convolutions)" \
        timeout 120 python3 bench/torch_train_bench.py --device cuda 256 --seconds 20 --data "$DATA" --json
    info "PyTorch eager on the GPU: paper, batch 256, fp32 convolutions (--no-tf32)" \
        timeout 120 python3 bench/torch_train_bench.py --device cuda 256 --seconds 15 --data "$DATA" --json --no-tf32
else
    summary+=("SKIP  PyTorch eager on the GPU (no torch with CUDA)")
fi

info "TF32 products: kernel checks, speed of paper's products and steps" \
    env LSOFTMAX_GPU_GEMM=tf32 timeout 180 "$BIN" gpu-check --quick --bench-steps 50 --gemm-bench-batch 256 --data "$DATA"
# The run behind the TF32 accuracy comparison (GPU_CHECK_INFO_TRAIN: a smaller one for tests).
read -r -a INFO_TRAIN <<< "${GPU_CHECK_INFO_TRAIN:---preset paper --epochs 2}"
tf32_accuracy() {
    local g
    for g in "${LSOFTMAX_GPU_GEMM:-auto}" tf32; do
        LSOFTMAX_GPU_GEMM=$g timeout 150 "$BIN" train --device cuda "${INFO_TRAIN[@]}" --quiet \
            --out "$X/info-$g" --data "$DATA" > "$X/info-$g.out" 2>&1 || { tail -5 "$X/info-$g.out"; return 1; }
        echo "${INFO_TRAIN[*]}, LSOFTMAX_GPU_GEMM=$g: $(grep '"type":"epoch"' "$X/info-$g/log.jsonl" | tail -1 |
            python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("test accuracy %.2f%%, test loss %.4f, %.1f s per epoch" % (d["test_acc"], d["test_loss"], d["seconds"]))')"
    done
}
info "TF32 effect on accuracy: paper, 2 epochs, fp32 against TF32 products" tf32_accuracy

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit $status

#!/usr/bin/env bash
# Everything one device session should do, as one command (a machine's start costs minutes of
# the session's 15): the CUDA backend's check, then, if it passed, the margin table's runs for
# the minutes left. Run on the GPU machine from the repository root, carrying .cache/gpu-bundle
# (and .cache/gpu-runs once it exists):
#
#   bash scripts/gpu_session.sh [MINUTES] [TABLE OPTIONS]
#
# MINUTES: the total wall-clock budget, default 9 (a device command may run 10). TABLE OPTIONS
# go to gpu_table.sh (--margins, --epochs, --preset, --jobs, --runs, -- TRAIN ARGS).
#
# - The check (scripts/gpu_check.sh) runs with the wide sgemm tiles (LSOFTMAX_GPU_GEMM=auto, the
#   default). If it fails, it runs again with LSOFTMAX_GPU_GEMM=square (the 64 x 64 kernels
#   only; without the information steps, which the first run reported), and the table then
#   trains with whichever passed.
# - A pass is recorded as gpu_check.pass (the bundle's SHA-256, the gemm policy, the GPU) under
#   $OUT; `gpu_table.sh --unpack` brings it into .cache/gpu-runs, and a later session with the
#   same bundle skips the check and trains for all its minutes (FORCE_CHECK=1 runs it anyway).
#
# Writes gpu_check-POLICY.log, gpu_check.pass (and the runs' paper-mM.tar, see gpu_table.sh) under $OUT when set.
# Back here: bash scripts/gpu_table.sh --unpack FILES_AT, then --report.
set -uo pipefail
cd "$(dirname "$0")/.."
TOTAL=9
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
    TOTAL="$1"
    shift
fi
[[ "$TOTAL" =~ ^[0-9]+$ ]] || { echo "error: MINUTES must be a whole number, got '$TOTAL'" >&2; exit 2; }
TABLE_ARGS=("$@")
# The runs folder (where the record of a passed check lives): gpu_table.sh's --runs.
RUNS=.cache/gpu-runs
for ((i = 0; i < ${#TABLE_ARGS[@]}; i++)); do
    [ "${TABLE_ARGS[$i]}" = -- ] && break
    [ "${TABLE_ARGS[$i]}" = --runs ] && RUNS="${TABLE_ARGS[$((i + 1))]:-}"
done
[ -n "$RUNS" ] || { echo "error: --runs needs a folder" >&2; exit 2; }
for a in "${TABLE_ARGS[@]}"; do
    case "$a" in
        --unpack | --report | --publish | --save | --minutes) echo "error: $a is gpu_table.sh's own; gpu_session.sh runs the table" >&2; exit 2 ;;
        --) break ;;
    esac
done
OUTDIR="${OUT:-/tmp}"
# Unpack the bundle once for both scripts (they take GPU_BIN and LSOFTMAX_DATA from here).
source scripts/gpu_bundle_env.sh
export GPU_BIN="$BIN"
gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' _)"

# "BIN_ID POLICY GPU DATE" of an earlier pass with this bundle, if any.
recorded=""
if [ "${FORCE_CHECK:-0}" != 1 ] && [ -f "$RUNS/gpu_check.pass" ]; then
    read -r pass_id pass_policy pass_rest < "$RUNS/gpu_check.pass" || true
    [ "${pass_id:-}" = "$BIN_ID" ] && recorded="$pass_policy"
fi
if [ -n "$recorded" ]; then
    echo "gpu_check passed before with this bundle (gemm $recorded; ${pass_rest:-}): skipped (FORCE_CHECK=1 runs it)"
    export LSOFTMAX_GPU_GEMM="$recorded"
    cp "$RUNS/gpu_check.pass" "$OUTDIR/gpu_check.pass" 2>/dev/null || true
else
    passed=""
    info=1  # the information steps (PyTorch, TF32) run with the first check only
    for policy in ${LSOFTMAX_GPU_GEMM:-auto square}; do
        echo "=== gpu_check.sh with LSOFTMAX_GPU_GEMM=$policy"
        GPU_CHECK_INFO=$info LSOFTMAX_GPU_GEMM="$policy" bash scripts/gpu_check.sh 2>&1 | tee "$OUTDIR/gpu_check-$policy.log"
        if [ "${PIPESTATUS[0]}" = 0 ]; then
            passed="$policy"
            break
        fi
        echo "gpu_check failed with LSOFTMAX_GPU_GEMM=$policy; see $OUTDIR/gpu_check-$policy.log"
        info=0
    done
    if [ -z "$passed" ]; then
        echo "gpu_check failed: no table runs this session"
        exit 1
    fi
    echo "$BIN_ID $passed ${gpu_name:-unknown_GPU} $(date -u +%FT%TZ)" > "$OUTDIR/gpu_check.pass"
    mkdir -p "$RUNS" && cp "$OUTDIR/gpu_check.pass" "$RUNS/gpu_check.pass"
    export LSOFTMAX_GPU_GEMM="$passed"
fi
left=$(( TOTAL - (SECONDS + 59) / 60 ))
if [ "$left" -lt 2 ]; then
    echo "$SECONDS s used: less than 2 of the $TOTAL minutes left, no table this session"
    exit 0
fi
echo "=== the margin table for $left minutes (LSOFTMAX_GPU_GEMM=$LSOFTMAX_GPU_GEMM)"
bash scripts/gpu_table.sh --minutes "$left" "${TABLE_ARGS[@]}"

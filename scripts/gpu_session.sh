#!/usr/bin/env bash
# Everything one device session should do, as one command (a machine's start costs minutes of
# the session's 15): the CUDA backend's check, then, if it passed, the margin table's runs for
# the minutes left. Run on the GPU machine from the repository root, carrying .cache/gpu-bundle
# (and .cache/gpu-runs once it exists):
#
#   bash scripts/gpu_session.sh [MINUTES]      # total wall-clock budget, default 9 (a device command may run 10)
#
# Writes gpu_check.log (and the runs' paper-mM.tar, see gpu_table.sh) under $OUT when set.
# Back here: bash scripts/gpu_table.sh --unpack FILES_AT, then --report.
set -uo pipefail
cd "$(dirname "$0")/.."
TOTAL="${1:-9}"
[[ "$TOTAL" =~ ^[0-9]+$ ]] || { echo "error: MINUTES must be a whole number, got '$TOTAL'" >&2; exit 2; }
LOG="${OUT:-/tmp}/gpu_check.log"
# Unpack the bundle once for both scripts (they take GPU_BIN and LSOFTMAX_DATA from here).
source scripts/gpu_bundle_env.sh
export GPU_BIN="$BIN"
bash scripts/gpu_check.sh 2>&1 | tee "$LOG"
check=${PIPESTATUS[0]}
if [ "$check" != 0 ]; then
    echo "gpu_check failed (exit $check): no table runs this session; see $LOG"
    exit "$check"
fi
left=$(( TOTAL - (SECONDS + 59) / 60 ))
if [ "$left" -lt 2 ]; then
    echo "gpu_check took $SECONDS s: no time left for the table this session"
    exit 0
fi
bash scripts/gpu_table.sh --minutes "$left"

#!/usr/bin/env bash
# `train --device cuda --precise-bn`: the statistics are recomputed on the CPU copy of the
# network after each epoch and copied back to the GPU. Checks that a precise-bn run's
# checkpoint, evaluated on the CPU, equals a plain run's checkpoint with the statistics
# recomputed by `eval --recompute-bn` (same GPU training, same weights, same recomputation),
# and differs from the plain run as saved. `tiny`, one epoch on 256 training images.
#
#   bash scripts/cuda_precise_bn_check.sh BIN     # BIN: an lsoftmax built with --features cuda
#
# CI runs it through the emulated libcuda (scripts/cuda_emu.sh, about a minute), gpu_check.sh on
# the GPU. Data: $LSOFTMAX_DATA or data/mnist.
set -euo pipefail
BIN="${1:?usage: $0 BIN (an lsoftmax built with --features cuda)}"
D="$(mktemp -d)"
trap 'rm -rf "$D"' EXIT
common=(train --device cuda --preset tiny --margin 2 --epochs 1 --quiet --train-limit 256
        --test-limit 200 --batch 64)
"$BIN" "${common[@]}" --out "$D/plain" > "$D/plain.log" 2>&1 || { cat "$D/plain.log"; exit 1; }
"$BIN" "${common[@]}" --out "$D/precise" --precise-bn 128 > "$D/precise.log" 2>&1 ||
    { cat "$D/precise.log"; exit 1; }
first() { "$BIN" eval --checkpoint "$1" "${@:2}" 2>/dev/null | head -1 | sed 's/, BatchNorm statistics.*//'; }
a="$(first "$D/precise/checkpoint.bin")"
b="$(first "$D/plain/checkpoint.bin" --recompute-bn 128)"
c="$(first "$D/plain/checkpoint.bin")"
echo "GPU run with --precise-bn 128:     $(grep '^epoch' "$D/precise.log")"
echo "GPU run without:                   $(grep '^epoch' "$D/plain.log")"
echo "CPU eval, precise-bn checkpoint:   $a"
echo "CPU eval, plain + --recompute-bn:  $b"
echo "CPU eval, plain checkpoint:        $c"
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "FAIL: the precise-bn checkpoint is not the plain one with recomputed statistics"; exit 1; }
[ "$a" != "$c" ] || { echo "FAIL: --precise-bn left the statistics as training left them"; exit 1; }
echo "PASS"

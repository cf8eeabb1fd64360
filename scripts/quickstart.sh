#!/usr/bin/env bash
# The main job on a fresh machine: set up, train the `tiny` network with the L-Softmax head
# (m = 4) on MNIST, evaluate it, export it to int8 and run the export through infer-core; then
# evaluate the project's default model (a trained `paper`, m = 4) through infer-core.
# See README.md for the paper-sized runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
lsoftmax() { cargo run --release --quiet -p lsoftmax-trainer -- "$@"; }
out=runs/quickstart-tiny-m4
rm -rf "$out"
lsoftmax train --preset tiny --margin 4 --epochs 2 --batch 128 --lr 0.05 --lr-steps 1 --out "$out"
lsoftmax eval --checkpoint "$out/checkpoint.bin"
lsoftmax export --checkpoint "$out/checkpoint.bin" --out "$out/tiny-m4.lsq8"
lsoftmax eval --model "$out/tiny-m4.lsq8" --min-gap 1
lsoftmax eval --model models/paper-m4.lsq8 --min-gap 1

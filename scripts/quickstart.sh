#!/usr/bin/env bash
# The main job on a fresh machine: set up, train the `tiny` network with the L-Softmax head
# (m = 4) on MNIST, and evaluate it. See README.md for the paper-sized runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=runs/quickstart-tiny-m4
rm -rf "$out"
cargo run --release --quiet -p lsoftmax-trainer -- train --preset tiny --margin 4 --epochs 2 --batch 128 --lr 0.05 --out "$out"
cargo run --release --quiet -p lsoftmax-trainer -- eval --checkpoint "$out/checkpoint.bin"

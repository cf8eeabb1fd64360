#!/usr/bin/env bash
# Issue 6's margin table on this machine's CPU: the seed's full recipe (`paper`, 100 epochs,
# batch 256, lr x0.1 at epochs 50 and 65, seed 0) for m = 1, 2, 3, 4, one run after another on
# all cores, each resumed from its last finished epoch when the command is run again (stop it at
# any time with Ctrl-C). The CPU reference for the GPU table of scripts/gpu_table.sh, and the
# table itself on a machine without a GPU: about 5 h per margin on two AVX-512 cores.
#
#   bash scripts/cpu_table.sh                          # train (or resume) all four; no deadline
#   bash scripts/cpu_table.sh --margins 4 --minutes 60 # m = 4 only, for at most an hour
#   bash scripts/cpu_table.sh --report                 # progress and the markdown table
#   bash scripts/cpu_table.sh --save                   # into docs/results/progress/cpu: commit it,
#                                                      # and a new machine's checkout resumes there
#   bash scripts/cpu_table.sh --publish                # when all are done: docs/results/paper-cpu*
#
# Runs live in runs/cpu-table (--runs DIR), each with checkpoint.bin, log.jsonl and train.out
# (one line per epoch). Every option of scripts/gpu_table.sh applies; this is
# `gpu_table.sh --device cpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec bash scripts/gpu_table.sh --device cpu "$@"

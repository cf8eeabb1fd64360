#!/usr/bin/env bash
# Issue 6's margin table on the GPU, spread over device sessions: the seed's full recipe
# (`paper`, 100 epochs, batch 256, lr x0.1 at epochs 50 and 65, seed 0) for m = 1, 2, 3, 4, the
# runs side by side on the one GPU until --minutes are up, each resumed from its last epoch's
# checkpoint the next time (a device session has 15 minutes in all). Between sessions the runs
# live on the build machine in .cache/gpu-runs:
#
#   here:  bash scripts/gpu_bundle.sh                   # the binary, its libraries and MNIST
#   there: bash scripts/gpu_table.sh --minutes 8        # carry .cache/gpu-bundle and .cache/gpu-runs
#   here:  bash scripts/gpu_table.sh --unpack DIR       # DIR: the call's files (paper-mM.tar)
#          bash scripts/gpu_table.sh --report           # progress and the markdown table
#          bash scripts/gpu_table.sh --save             # the runs into docs/results/progress/gpu
#                                                       # (commit it: the next machine resumes there)
#          bash scripts/gpu_table.sh --publish          # when all runs are done: logs, table and
#                                                       # curves into docs/results (commit them)
#
# --publish writes DIR/logs/P-gpu-mM.jsonl, DIR/P-gpu.md (`lsoftmax report`) and
# DIR/P-gpu-curves.png (`lsoftmax plot`), DIR being --results (default docs/results); it refuses
# runs short of --epochs unless --partial is given.
# Options (run mode): --minutes N (wall-clock budget, default 8: a device command may run 10;
# 0: none), --margins 1,2,3,4, --epochs N (default 100), --preset P (default paper; run folders
# and files are named P-mM), --jobs N (runs at once, default: all), --runs DIR (default
# .cache/gpu-runs); anything after `--` goes to `lsoftmax train` (e.g. `-- --train-limit 2000`
# for a trial).
#
# Runs outlive the machine only through git: a session's machine is new, its runs folder empty.
# --save copies each run's checkpoint, log and console output into --progress DIR (default
# docs/results/progress/TAG, TAG being gpu or cpu; commit it), and every mode first restores from
# there each run the runs folder lacks or has fewer epochs of, so a fresh checkout resumes, reports
# and publishes where the last saved session stopped. Safe while the runs train (a checkpoint is
# copied before its log; a resume keeps the log's epochs the checkpoint covers).
#
# --device cpu (what scripts/cpu_table.sh passes) trains the same table on this machine's CPU
# instead, with this checkout's `lsoftmax` (built when missing; $LSOFTMAX_BIN replaces it): one
# run at a time on all cores, no deadline unless --minutes is given, runs in runs/cpu-table, and
# --publish names the files P-cpu-mM.jsonl, P-cpu.md and P-cpu-curves.png. Stop it at any time
# (Ctrl-C) and run the same command again: every run resumes from its last finished epoch.
# A run killed at the deadline loses only its unfinished epoch: checkpoints are written
# atomically after every epoch and a resumed log keeps only the epochs its checkpoint covers.
# When $OUT is set (the device tool), each run is packed into $OUT/paper-mM.tar (checkpoint,
# log, console output). GPU_BIN=... runs another binary instead of the bundle's (e.g. a local
# --features cuda build with the emulated libcuda of scripts/cuda_emu.sh, to try this script
# without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=run
DEVICE=cuda
MINUTES=
MARGINS=1,2,3,4
EPOCHS=100
PRESET=paper
JOBS=
RUNS=
FROM=
RESULTS=docs/results
PARTIAL=0
PROGRESS=
EXTRA=()
die() { echo "error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="${2:?--device needs cuda or cpu}"; shift 2 ;;
        --minutes) MINUTES="${2:?--minutes needs a value}"; shift 2 ;;
        --margins) MARGINS="${2:?--margins needs a value}"; shift 2 ;;
        --epochs) EPOCHS="${2:?--epochs needs a value}"; shift 2 ;;
        --preset) PRESET="${2:?--preset needs a value}"; shift 2 ;;
        --jobs) JOBS="${2:?--jobs needs a value}"; shift 2 ;;
        --runs) RUNS="${2:?--runs needs a value}"; shift 2 ;;
        --unpack) MODE=unpack; FROM="${2:?--unpack needs the folder holding the P-mM.tar files}"; shift 2 ;;
        --report) MODE=report; shift ;;
        --publish) MODE=publish; shift ;;
        --results) RESULTS="${2:?--results needs a folder}"; shift 2 ;;
        --partial) PARTIAL=1; shift ;;
        --save) MODE=save; shift ;;
        --progress) PROGRESS="${2:?--progress needs a folder}"; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) die "unknown argument '$1' (see the comment at the top of $0)" ;;
    esac
done
case "$DEVICE" in
    cuda) TAG=gpu; : "${MINUTES:=8}" "${JOBS:=0}" "${RUNS:=.cache/gpu-runs}" ;;
    cpu) TAG=cpu; : "${MINUTES:=0}" "${JOBS:=1}" "${RUNS:=runs/cpu-table}" ;;
    *) die "--device must be cuda or cpu, got '$DEVICE'" ;;
esac
[[ "$MINUTES" =~ ^[0-9]+$ ]] || die "--minutes must be a whole number (0: no deadline), got '$MINUTES'"
[[ "$EPOCHS" =~ ^[0-9]+$ && "$EPOCHS" -gt 0 ]] || die "--epochs must be a positive whole number, got '$EPOCHS'"
[[ "$JOBS" =~ ^[0-9]+$ ]] || die "--jobs must be a whole number, got '$JOBS'"
[[ "$MARGINS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--margins must look like 1,2,3,4, got '$MARGINS'"
IFS=, read -r -a MS <<< "$MARGINS"
: "${PROGRESS:=docs/results/progress/$TAG}"
mkdir -p "$RUNS"

# Epoch lines in a run's log (0 without one).
epochs_done() { local n; n="$(grep -c '"type":"epoch"' "$1/log.jsonl" 2>/dev/null)"; echo "${n:-0}"; }
# "epoch N/E, test accuracy A%, ..., about T left" of a run folder.
progress() {
    python3 - "$1/log.jsonl" <<'PY'
import json, sys
header, epochs = None, []
try:
    for line in open(sys.argv[1]):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("type") == "header":
            header = d
        elif d.get("type") == "epoch":
            epochs.append(d)
except OSError:
    pass
total = (header or {}).get("epochs", "?")
if not epochs:
    print(f"no epoch finished (of {total})")
else:
    last = epochs[-1]
    # The pace of the last few epochs (their median: one slow epoch does not swing it).
    recent = sorted(e["seconds"] for e in epochs[-5:])
    pace = recent[len(recent) // 2]
    left = ""
    if isinstance(total, int) and total > last["epoch"]:
        m = round((total - last["epoch"]) * pace / 60)
        left = f", about {m // 60} h {m % 60:02d} min left at that pace" if m >= 60 else f", about {m} min left at that pace"
    print(f"epoch {last['epoch']}/{total}, test accuracy {last['test_acc']:.2f}%, "
          f"train loss {last['train_loss']:.4f}, {last['seconds']:.1f} s per epoch{left}")
PY
}

# Copy run folder $1's checkpoint, log and console output into folder $2 by way of a temporary
# folder beside it, swapped in whole: an interruption leaves $2 as it was. The checkpoint goes
# first: if an epoch ends meanwhile the log is the newer, which a resume trims to the checkpoint.
copy_run() {
    local src="$1" dst="$2" tmp
    [ -f "$src/checkpoint.bin" ] || return 1
    mkdir -p "$(dirname "$dst")"
    tmp="$(mktemp -d "$(dirname "$dst")/.copy.XXXXXX")" && chmod 755 "$tmp"
    cp "$src/checkpoint.bin" "$tmp/" && cp "$src/log.jsonl" "$tmp/" &&
        { [ ! -f "$src/train.out" ] || cp "$src/train.out" "$tmp/"; } || { rm -rf "$tmp"; return 1; }
    swap_in "$tmp" "$dst"
}
# Put folder $1 in place of folder $2 (a run), so an interruption never leaves a half-written run.
swap_in() {
    [ -d "$2" ] && mv "$2" "$2.old"
    mv "$1" "$2" && rm -rf "$2.old"
}
# Every run of --progress that the runs folder lacks or is behind on, copied into it.
restore_runs() {
    local m saved run
    for m in "${MS[@]}"; do
        saved="$PROGRESS/$PRESET-m$m"
        run="$RUNS/$PRESET-m$m"
        [ -f "$saved/checkpoint.bin" ] || continue
        if [ ! -f "$run/checkpoint.bin" ] || [ "$(epochs_done "$run")" -lt "$(epochs_done "$saved")" ]; then
            copy_run "$saved" "$run" || die "cannot restore $saved into $run"
            echo "$PRESET-m$m: restored from $saved ($(epochs_done "$run") epochs)"
        fi
    done
}

# The lsoftmax of this checkout (built when missing).
lsoftmax() {
    if [ -x target/release/lsoftmax ]; then
        target/release/lsoftmax "$@"
    else
        cargo run -q --release -p lsoftmax-trainer --bin lsoftmax -- "$@"
    fi
}

# Report and publish read the saved runs too; run restores them once it holds the lock.
case "$MODE" in report|publish) restore_runs ;; esac

case "$MODE" in
save)
    saved_any=0
    for m in "${MS[@]}"; do
        d="$RUNS/$PRESET-m$m"
        [ -f "$d/checkpoint.bin" ] || continue
        copy_run "$d" "$PROGRESS/$PRESET-m$m" || die "cannot copy $d into $PROGRESS"
        echo "$PRESET-m$m: saved into $PROGRESS/$PRESET-m$m ($(progress "$d"))"
        saved_any=1
    done
    [ "$saved_any" = 1 ] || die "no run with a checkpoint in $RUNS for margins $MARGINS"
    echo "commit $PROGRESS to carry the runs to the next machine"
    ;;
unpack)
    [ -d "$FROM" ] || die "$FROM is not a folder"
    found=0
    for m in "${MS[@]}"; do
        tarf="$FROM/$PRESET-m$m.tar"
        [ -f "$tarf" ] || continue
        found=1
        tmp="$(mktemp -d "$RUNS/.unpack.XXXXXX")"
        tar -xf "$tarf" -C "$tmp" || { rm -rf "$tmp"; die "cannot unpack $tarf"; }
        new="$tmp/$PRESET-m$m"
        [ -d "$new" ] || { rm -rf "$tmp"; die "$tarf holds no $PRESET-m$m folder"; }
        old="$RUNS/$PRESET-m$m"
        if [ -d "$old" ] && [ "$(epochs_done "$new")" -lt "$(epochs_done "$old")" ]; then
            echo "$PRESET-m$m: kept the local run ($(epochs_done "$old") epochs; $tarf has $(epochs_done "$new"))"
            rm -rf "$tmp"
            continue
        fi
        swap_in "$new" "$old" && rm -rf "$tmp"
        echo "$PRESET-m$m: $(progress "$old")"
    done
    # gpu_session.sh's record of a passed check: the next session with the same bundle skips it.
    if [ -f "$FROM/gpu_check.pass" ]; then
        cp "$FROM/gpu_check.pass" "$RUNS/gpu_check.pass" && echo "gpu_check.pass: $(cat "$RUNS/gpu_check.pass")"
    fi
    [ "$found" = 1 ] || die "no $PRESET-mM.tar for margins $MARGINS in $FROM"
    ;;
report)
    logs=()
    for m in "${MS[@]}"; do
        d="$RUNS/$PRESET-m$m"
        echo "$PRESET-m$m: $(progress "$d")"
        [ -f "$d/log.jsonl" ] && logs+=("$d/log.jsonl")
    done
    [ ${#logs[@]} -gt 0 ] || die "no runs in $RUNS yet"
    lsoftmax report --logs "${logs[@]}"
    ;;
publish)
    mkdir -p "$RESULTS/logs"
    logs=()
    for m in "${MS[@]}"; do
        d="$RUNS/$PRESET-m$m"
        [ -f "$d/log.jsonl" ] || die "$PRESET-m$m has no log in $RUNS"
        done_="$(epochs_done "$d")"
        [ "$done_" -ge "$EPOCHS" ] || [ "$PARTIAL" = 1 ] ||
            die "$PRESET-m$m has $done_ of $EPOCHS epochs (--partial publishes it anyway)"
        cp "$d/log.jsonl" "$RESULTS/logs/$PRESET-$TAG-m$m.jsonl"
        logs+=("$RESULTS/logs/$PRESET-$TAG-m$m.jsonl")
    done
    lsoftmax report --logs "${logs[@]}" --out "$RESULTS/$PRESET-$TAG.md"
    lsoftmax plot --logs "${logs[@]}" --out "$RESULTS/$PRESET-$TAG-curves.png"
    echo "wrote ${logs[*]}, $RESULTS/$PRESET-$TAG.md, $RESULTS/$PRESET-$TAG-curves.png"
    ;;
run)
    # One trainer per runs folder: a second one would train the same runs twice over.
    if command -v flock > /dev/null; then
        exec 9> "$RUNS/.lock"
        flock -n 9 || die "another gpu_table.sh or cpu_table.sh is training in $RUNS; stop it first (or pass another --runs)"
    fi
    restore_runs
    data_args=()
    if [ "$DEVICE" = cuda ]; then
        # BIN (the bundled binary) and DATA (the bundled MNIST); see gpu_bundle_env.sh.
        source scripts/gpu_bundle_env.sh
        data_args=(--data "$DATA")
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
    elif [ -n "${LSOFTMAX_BIN:-}" ]; then
        BIN="$LSOFTMAX_BIN"
    else
        cargo build -q --release -p lsoftmax-trainer --bin lsoftmax || die "cannot build lsoftmax"
        BIN=target/release/lsoftmax
    fi
    deadline=
    [ "$MINUTES" -gt 0 ] && deadline=$((SECONDS + MINUTES * 60))
    [ "$JOBS" -gt 0 ] || JOBS=${#MS[@]}
    # On the GPU each run's CPU side is light (the data set lives on the GPU): share the cores.
    # On the CPU the runs take turns (--jobs 1) on all of them.
    threads=$(( $(nproc) / JOBS )); [ "$threads" -gt 0 ] || threads=1
    declare -A pid_of=()
    # Background jobs of a script ignore Ctrl-C: stop them with it (the checkpoints of their
    # finished epochs stay; the same command resumes them).
    trap 'echo "stopping the runs; the same command resumes them" >&2; kill "${pid_of[@]}" 2>/dev/null; wait; exit 130' INT TERM
    for m in "${MS[@]}"; do
        d="$RUNS/$PRESET-m$m"
        mkdir -p "$d"
        if [ "$(epochs_done "$d")" -ge "$EPOCHS" ]; then
            echo "$PRESET-m$m: done ($(progress "$d"))"
            continue
        fi
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
        limit=()
        if [ -n "$deadline" ]; then
            left=$((deadline - SECONDS))
            if [ "$left" -lt 60 ]; then
                echo "$PRESET-m$m: not started, less than a minute left"
                continue
            fi
            limit=(timeout --kill-after=30 "$left")
        fi
        args=(train --device "$DEVICE" --preset "$PRESET" --margin "$m" --epochs "$EPOCHS" --quiet
              --out "$d" "${data_args[@]}" "${EXTRA[@]}")
        [ -f "$d/checkpoint.bin" ] && args+=(--resume)
        echo "$PRESET-m$m: $([ -f "$d/checkpoint.bin" ] && echo resuming || echo starting)$([ -n "$deadline" ] && echo " for up to ${left} s") (epochs in $d/train.out)"
        echo "=== $(date -u +%FT%TZ) ${args[*]}" >> "$d/train.out"
        RAYON_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
            "${limit[@]}" "$BIN" "${args[@]}" >> "$d/train.out" 2>&1 &
        pid_of[$m]=$!
    done
    status=0
    for m in "${!pid_of[@]}"; do
        wait "${pid_of[$m]}"; rc=$?
        # 124: stopped at the deadline, as planned.
        if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
            echo "$PRESET-m$m: train failed (exit $rc); the end of its output:"
            tail -n 20 "$RUNS/$PRESET-m$m/train.out"
            status=1
        fi
    done
    echo
    echo "=== progress"
    for m in "${MS[@]}"; do
        d="$RUNS/$PRESET-m$m"
        echo "$PRESET-m$m: $(progress "$d")"
        if [ -n "${OUT:-}" ] && [ -d "$d" ]; then
            tar -cf "$OUT/$PRESET-m$m.tar" -C "$RUNS" "$PRESET-m$m"
        fi
    done
    exit $status
    ;;
esac

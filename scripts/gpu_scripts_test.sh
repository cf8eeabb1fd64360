#!/usr/bin/env bash
# CI test of the device-session scripts (gpu_session.sh, gpu_check.sh, gpu_table.sh) on a
# machine without a GPU. A stand-in for the bundle's CUDA binary (GPU_BIN):
#   - its `gpu-check` fails under the wide sgemm tiles (LSOFTMAX_GPU_GEMM=auto) and passes under
#     the square ones;
#   - everything else runs with the CPU build, with `--device cuda` turned into `--device cpu`;
#   - every call is logged with the LSOFTMAX_GPU_GEMM it saw.
# Two simulated device sessions, with the build machine's part between and after them:
#   1. session 1: the check fails with auto and passes with square; the pass is recorded; the
#      table (tiny, margins 1 and 2, 512 images, stopped after epoch 1) trains under square and
#      packs its tars;
#   2. here: --unpack brings back the runs and the pass record;
#   3. session 2, carrying them: the check is skipped (same binary), the runs resume and finish
#      their 2 epochs under square;
#   4. here: --unpack, then --report prints the table; --publish writes the logs, the table
#      and the curves (and refuses unfinished runs).
# Then cpu_table.sh (gpu_table.sh --device cpu): two runs stopped after an epoch, resumed to the
# end, reported done, a third stopped by SIGTERM with its training process (a second
# cpu_table.sh on the same runs refused meanwhile), and the table
# published under the cpu names; --save of the runs into --progress, and a fresh runs folder
# restored from it by run (which resumes), --report and --publish. Also checks that
# gpu_session.sh refuses gpu_table.sh's own modes.
#
#   bash scripts/gpu_scripts_test.sh      # about a minute; needs data/mnist (scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p lsoftmax-trainer --bin lsoftmax
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
cat > "$T/fake" <<EOF
#!/usr/bin/env bash
echo "\$1 \${LSOFTMAX_GPU_GEMM:-unset} \$*" >> "$T/calls.log"
if [ "\$1" = gpu-check ]; then
    [ "\${LSOFTMAX_GPU_GEMM:-auto}" = square ] && exit 0
    echo "fake gpu-check: FAIL under LSOFTMAX_GPU_GEMM=\${LSOFTMAX_GPU_GEMM:-auto}"
    exit 1
fi
args=()
for a in "\$@"; do [ "\$a" = cuda ] && a=cpu; args+=("\$a"); done
exec "$PWD/target/release/lsoftmax" "\${args[@]}"
EOF
chmod +x "$T/fake"
fail() { echo "FAIL: $*" >&2; exit 1; }
epochs() { grep -c '"type":"epoch"' "$1/log.jsonl"; }
# Each table saves into (and restores from) the test's own --progress, never docs/results/progress.
TABLE=(--preset tiny --margins 1,2 --epochs 2 --progress "$T/progress")
# gpu_check.sh's TF32 accuracy comparison, small.
export GPU_CHECK_INFO_TRAIN="--preset tiny --epochs 1 --train-limit 256"

echo "== session 1: the check falls back to square tiles, the table trains one epoch"
mkdir -p "$T/out1"
OUT="$T/out1" GPU_BIN="$T/fake" bash scripts/gpu_session.sh 3 "${TABLE[@]}" --runs "$T/dev1" \
    -- --train-limit 512 --stop-after 1 > "$T/session1.log" 2>&1 ||
    { tail -30 "$T/session1.log"; fail "session 1 exited non-zero"; }
grep -q "gpu_check failed with LSOFTMAX_GPU_GEMM=auto" "$T/session1.log" || fail "no fall-back message"
# The information steps ran, and their failure (the stand-in's gpu-check under tf32) did not count.
grep -q "^INFO  TF32 products: kernel checks, speed of paper's products and steps: failed" "$T/session1.log" ||
    fail "no failed TF32 information line"
# ... with the first check only: the fall-back run skips them.
[ "$(grep -c -- "--preset tiny --epochs 1 --train-limit 256, LSOFTMAX_GPU_GEMM=" "$T/session1.log")" = 2 ] ||
    fail "the TF32 accuracy comparison did not run both ways, once"
grep -q "^SKIP  TF32 effect on accuracy: paper, 2 epochs, fp32 against TF32 products (information, GPU_CHECK_INFO=0)" \
    "$T/session1.log" || fail "the fall-back check did not skip the information steps"
# auto (fails), its TF32 information step, square (passes; no information steps).
[ "$(grep '^gpu-check' "$T/calls.log" | cut -d' ' -f2 | tr '\n' ' ')" = "auto tf32 square " ] ||
    fail "gpu-check calls: $(grep '^gpu-check' "$T/calls.log" | cut -d' ' -f1,2 | tr '\n' ';')"
[ "$(cut -d' ' -f2 "$T/out1/gpu_check.pass")" = square ] || fail "gpu_check.pass: $(cat "$T/out1/gpu_check.pass")"
table_calls() { grep "^train .* --out $1/" "$T/calls.log" || true; }
[ "$(table_calls "$T/dev1" | wc -l)" = 2 ] || fail "session 1 table runs: $(table_calls "$T/dev1")"
[ -z "$(table_calls "$T/dev1" | grep -v '^train square ')" ] || fail "a table run was not under square tiles"
for m in 1 2; do [ -f "$T/out1/tiny-m$m.tar" ] || fail "no tiny-m$m.tar"; done

echo "== here: unpack session 1"
bash scripts/gpu_table.sh "${TABLE[@]}" --runs "$T/here" --unpack "$T/out1" > "$T/unpack1.log"
[ -f "$T/here/gpu_check.pass" ] || fail "--unpack did not bring gpu_check.pass"
for m in 1 2; do [ "$(epochs "$T/here/tiny-m$m")" = 1 ] || fail "tiny-m$m: $(epochs "$T/here/tiny-m$m") epochs after session 1"; done

echo "== session 2: the check is skipped, the runs resume and finish"
cp -r "$T/here" "$T/dev2"
mkdir -p "$T/out2"
checks_before="$(grep -c '^gpu-check' "$T/calls.log")"
OUT="$T/out2" GPU_BIN="$T/fake" bash scripts/gpu_session.sh 3 "${TABLE[@]}" --runs "$T/dev2" \
    -- --train-limit 512 > "$T/session2.log" 2>&1 ||
    { tail -30 "$T/session2.log"; fail "session 2 exited non-zero"; }
grep -q "gpu_check passed before with this bundle (gemm square" "$T/session2.log" || fail "the check was not skipped"
[ "$(grep -c '^gpu-check' "$T/calls.log")" = "$checks_before" ] || fail "session 2 ran gpu-check"
[ "$(table_calls "$T/dev2" | grep -c -- '--resume')" = 2 ] || fail "session 2 did not resume both runs"
[ -z "$(table_calls "$T/dev2" | grep -v '^train square ')" ] || fail "a resumed run was not under square tiles"

echo "== here: unpack session 2, report"
bash scripts/gpu_table.sh "${TABLE[@]}" --runs "$T/here" --unpack "$T/out2" > "$T/unpack2.log"
for m in 1 2; do [ "$(epochs "$T/here/tiny-m$m")" = 2 ] || fail "tiny-m$m: $(epochs "$T/here/tiny-m$m") epochs after session 2"; done
bash scripts/gpu_table.sh "${TABLE[@]}" --runs "$T/here" --report > "$T/report.log"
grep -q "^| tiny-m2 | tiny | 2 | 2 |" "$T/report.log" || { cat "$T/report.log"; fail "no tiny-m2 row in the report"; }

echo "== here: publish (refused for unfinished runs unless --partial)"
rc=0
bash scripts/gpu_table.sh "${TABLE[@]}" --epochs 3 --runs "$T/here" --publish --results "$T/results" > "$T/publish.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "has 2 of 3 epochs" "$T/publish.log" || fail "publish of unfinished runs: exit $rc, $(cat "$T/publish.log")"
bash scripts/gpu_table.sh "${TABLE[@]}" --runs "$T/here" --publish --results "$T/results" > "$T/publish.log"
for f in logs/tiny-gpu-m1.jsonl logs/tiny-gpu-m2.jsonl tiny-gpu.md tiny-gpu-curves.png; do
    [ -s "$T/results/$f" ] || fail "publish did not write $f"
done
grep -q "^| tiny-gpu-m2 | tiny | 2 | 2 | .* | CPU |$" "$T/results/tiny-gpu.md" ||
    { cat "$T/results/tiny-gpu.md"; fail "the published table lacks the tiny-gpu-m2 row trained on the CPU"; }

echo "== cpu_table.sh: the same table on the CPU, resumed, stopped, published"
cpu_calls() { grep "^train .* --out $T/cpu/" "$T/calls.log" || true; }
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh "${TABLE[@]}" --runs "$T/cpu" \
    -- --train-limit 512 --stop-after 1 > "$T/cpu1.log" 2>&1 || { cat "$T/cpu1.log"; fail "cpu_table.sh exited non-zero"; }
[ "$(cpu_calls | wc -l)" = 2 ] || fail "cpu table runs: $(cpu_calls)"
[ -z "$(cpu_calls | grep -v -- '--device cpu ')" ] || fail "a cpu table run not on --device cpu: $(cpu_calls)"
[ -z "$(cpu_calls | grep -e '--data' -e '--resume')" ] || fail "first cpu table runs: $(cpu_calls)"
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh "${TABLE[@]}" --runs "$T/cpu" -- --train-limit 512 > "$T/cpu2.log" 2>&1 ||
    { cat "$T/cpu2.log"; fail "cpu_table.sh (resumed) exited non-zero"; }
[ "$(cpu_calls | grep -c -- '--resume')" = 2 ] || fail "the cpu table did not resume both runs: $(cpu_calls)"
for m in 1 2; do [ "$(epochs "$T/cpu/tiny-m$m")" = 2 ] || fail "cpu tiny-m$m: $(epochs "$T/cpu/tiny-m$m") epochs"; done
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh "${TABLE[@]}" --runs "$T/cpu" > "$T/cpu-done.log" 2>&1
grep -q "^tiny-m1: done" "$T/cpu-done.log" || fail "a finished cpu table was not reported done"
# SIGTERM (as Ctrl-C, which a background job here would ignore) stops the training with the script.
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh --preset tiny --margins 3 --epochs 50 --runs "$T/cpu" > "$T/cpu3.log" 2>&1 &
table_pid=$!
for _ in $(seq 100); do pgrep -f -- "--out $T/cpu/tiny-m3" > /dev/null && break; sleep 0.2; done
pgrep -f -- "--out $T/cpu/tiny-m3" > /dev/null || fail "the m = 3 run did not start"
# A second trainer on the same runs folder is refused while the first runs.
rc=0
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh --preset tiny --margins 3 --epochs 50 --runs "$T/cpu" > "$T/cpu4.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "another gpu_table.sh or cpu_table.sh is training in $T/cpu" "$T/cpu4.log" ||
    fail "a second cpu_table.sh on the same runs: exit $rc, $(cat "$T/cpu4.log")"
kill -TERM "$table_pid"
rc=0; wait "$table_pid" || rc=$?
[ "$rc" = 130 ] || fail "cpu_table.sh stopped with exit $rc, want 130"
for _ in $(seq 50); do pgrep -f -- "--out $T/cpu/tiny-m3" > /dev/null || break; sleep 0.2; done
pgrep -f -- "--out $T/cpu/tiny-m3" > /dev/null && fail "the m = 3 run outlived cpu_table.sh"
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh "${TABLE[@]}" --runs "$T/cpu" --publish --results "$T/cpu-results" > "$T/cpu-publish.log"
for f in logs/tiny-cpu-m1.jsonl logs/tiny-cpu-m2.jsonl tiny-cpu.md tiny-cpu-curves.png; do
    [ -s "$T/cpu-results/$f" ] || fail "cpu publish did not write $f"
done
grep -q "^| tiny-cpu-m2 | tiny | 2 | 2 | .* | CPU |$" "$T/cpu-results/tiny-cpu.md" ||
    { cat "$T/cpu-results/tiny-cpu.md"; fail "the published cpu table lacks the tiny-cpu-m2 row"; }

echo "== cpu_table.sh --save: a new machine's runs folder resumes from the committed copy"
# Two runs stopped after one epoch, saved, the runs folder lost (a new machine), then resumed.
SAVE=(--preset tiny --margins 1,2 --epochs 2 --progress "$T/saved")
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/old" \
    -- --train-limit 512 --stop-after 1 > "$T/save1.log" 2>&1 || { cat "$T/save1.log"; fail "cpu_table.sh (to save) exited non-zero"; }
rc=0
bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/empty" --save > "$T/save0.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "no run with a checkpoint in $T/empty" "$T/save0.log" || fail "--save of no runs: exit $rc, $(cat "$T/save0.log")"
bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/old" --save > "$T/save2.log"
for m in 1 2; do
    for f in checkpoint.bin log.jsonl train.out; do
        cmp -s "$T/old/tiny-m$m/$f" "$T/saved/tiny-m$m/$f" || fail "--save: tiny-m$m/$f differs from the run's"
    done
done
[ -z "$(find "$T/saved" -name '.copy.*')" ] || fail "--save left a temporary folder"
# --report from a fresh runs folder restores and reports the saved epoch.
bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/new-report" --report > "$T/save-report.log"
grep -q "^tiny-m2: restored from $T/saved/tiny-m2 (1 epochs)" "$T/save-report.log" || { cat "$T/save-report.log"; fail "--report did not restore"; }
grep -q "^| tiny-m2 | tiny | 2 | 1 |" "$T/save-report.log" || { cat "$T/save-report.log"; fail "--report of the restored runs"; }
before="$(grep -c "^train .* --out $T/new/" "$T/calls.log" || true)"
LSOFTMAX_BIN="$T/fake" bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/new" -- --train-limit 512 > "$T/save3.log" 2>&1 ||
    { cat "$T/save3.log"; fail "cpu_table.sh (restored) exited non-zero"; }
[ "$before" = 0 ] && [ "$(grep "^train .* --out $T/new/" "$T/calls.log" | grep -c -- '--resume')" = 2 ] ||
    fail "the restored runs did not resume: $(grep "^train .* --out $T/new/" "$T/calls.log")"
for m in 1 2; do
    [ "$(epochs "$T/new/tiny-m$m")" = 2 ] || fail "restored tiny-m$m: $(epochs "$T/new/tiny-m$m") epochs"
    # The saved copy is what was committed: running does not touch it.
    [ "$(epochs "$T/saved/tiny-m$m")" = 1 ] || fail "the run changed the saved tiny-m$m"
done
# Resuming from the saved checkpoint is the same as running straight through (one machine).
[ "$(grep '"epoch":2,' "$T/new/tiny-m1/log.jsonl" | sed 's/"seconds".*//')" = \
  "$(grep '"epoch":2,' "$T/cpu/tiny-m1/log.jsonl" | sed 's/"seconds".*//')" ] ||
    fail "epoch 2 after a restore differs from the straight run's"
# A runs folder ahead of the saved copy is kept as it is.
bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/new" --report > "$T/save-report2.log"
grep -q "restored" "$T/save-report2.log" && fail "--report restored over runs that were ahead"
bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/new" --save > /dev/null
[ "$(epochs "$T/saved/tiny-m1")" = 2 ] || fail "--save did not replace the older saved run"
# --publish from a fresh runs folder publishes the saved runs.
bash scripts/cpu_table.sh "${SAVE[@]}" --runs "$T/new-publish" --publish --results "$T/save-results" > "$T/save-publish.log"
[ "$(grep -c '"type":"epoch"' "$T/save-results/logs/tiny-cpu-m2.jsonl")" = 2 ] ||
    { cat "$T/save-publish.log"; fail "--publish did not restore and publish the saved runs"; }

rc=0
bash scripts/cpu_table.sh --device gpu > "$T/bad.log" 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "must be cuda or cpu" "$T/bad.log" || fail "--device gpu: exit $rc, $(cat "$T/bad.log")"

echo "== gpu_session.sh refuses gpu_table.sh's own modes"
for bad in --report --unpack --publish --save --minutes; do
    rc=0
    GPU_BIN="$T/fake" bash scripts/gpu_session.sh 3 "$bad" x > "$T/bad.log" 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "gpu_session.sh $bad: exit $rc, want 2"
done
echo "gpu scripts: PASS"

#!/usr/bin/env bash
# Builds the Cortex-M4F firmware demo (firmware-demo/) in release, prints its flash and RAM use
# and infer-core's share of .text, runs it under QEMU (STM32F405, -icount shift=0) and fails if
# QEMU fails, times out, or any prediction differs from the host's. See firmware-demo/README.md.
#
#   bash scripts/firmware.sh             # build, sizes, run all digits, check, estimate ms/digit
#   bash scripts/firmware.sh --profile   # also: instruction profile of one classification
#
# Environment (paths relative to the repository root or absolute):
#   LSOFTMAX_FIRMWARE_MODEL        model file (default models/paper-m4.lsq8)
#   LSOFTMAX_FIRMWARE_DIGITS_FILE  digits file (default firmware-demo/digits.bin)
#   LSOFTMAX_FIRMWARE_LIMIT        classify only the first N digits (quick runs)
#   FIRMWARE_TIMEOUT               seconds QEMU may run (default 1800)
#   FIRMWARE_CPI                   cycles per instruction assumed for a real STM32F405 (default 1.6)
#   FIRMWARE_OPT_LEVEL             release opt-level of the firmware and the other crates: z (default)
#   FIRMWARE_INFER_OPT_LEVEL       release opt-level of infer-core: 3 (default, fastest) or s, z
#   FIRMWARE_FEATURES              cargo features of the firmware, e.g. packed-conv (fast 5x5 convolutions)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

profile=0
for arg in "$@"; do
  case "$arg" in
    --profile) profile=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "firmware.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

# --- what the build and the run need -------------------------------------------------------
apt_install() {
  if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else
    echo "firmware.sh: please install $* (apt-get install $*)" >&2
    exit 1
  fi
}
rustup target list --installed | grep -qx thumbv7em-none-eabihf \
  || rustup target add thumbv7em-none-eabihf
command -v qemu-system-arm > /dev/null || apt_install qemu-system-arm
command -v python3 > /dev/null || apt_install python3-minimal

# build.rs resolves relative paths against firmware-demo/; make them relative to the root.
absolute() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$root" "$1" ;; esac; }
if [ -n "${LSOFTMAX_FIRMWARE_MODEL:-}" ]; then
  LSOFTMAX_FIRMWARE_MODEL=$(absolute "$LSOFTMAX_FIRMWARE_MODEL")
  export LSOFTMAX_FIRMWARE_MODEL
fi
if [ -n "${LSOFTMAX_FIRMWARE_DIGITS_FILE:-}" ]; then
  LSOFTMAX_FIRMWARE_DIGITS_FILE=$(absolute "$LSOFTMAX_FIRMWARE_DIGITS_FILE")
  export LSOFTMAX_FIRMWARE_DIGITS_FILE
fi
model=${LSOFTMAX_FIRMWARE_MODEL:-$root/models/paper-m4.lsq8}
digits=${LSOFTMAX_FIRMWARE_DIGITS_FILE:-$root/firmware-demo/digits.bin}
timeout_s=${FIRMWARE_TIMEOUT:-1800}
cpi=${FIRMWARE_CPI:-1.6}
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${FIRMWARE_OPT_LEVEL:-z}
infer_opt=${FIRMWARE_INFER_OPT_LEVEL:-3}
case "$infer_opt" in [sz]) infer_opt="\"$infer_opt\"" ;; esac
# Cargo has no environment variable for a package's profile override; --config sets it.
cargo_release=(cargo build --release --config "profile.release.package.infer-core.opt-level=$infer_opt")
features=${FIRMWARE_FEATURES:-}
[ -n "$features" ] && cargo_release+=(--features "$features")
elf=$root/firmware-demo/target/thumbv7em-none-eabihf/release/firmware-demo
qemu=(qemu-system-arm -cpu cortex-m4 -machine netduinoplus2 -nographic -monitor none
  -serial null -icount shift=0 -semihosting-config enable=on,target=native)

# --- build ---------------------------------------------------------------------------------
echo "== build (release: opt-level $CARGO_PROFILE_RELEASE_OPT_LEVEL, infer-core $infer_opt, LTO, 1 codegen unit, target-cpu cortex-m4${features:+, features $features})"
echo "   model  $model"
echo "   digits $digits"
(cd firmware-demo && "${cargo_release[@]}")

# --- sizes ---------------------------------------------------------------------------------
echo "== flash and RAM"
size_of() { if [ -f "$1" ]; then wc -c < "$1" | tr -d ' '; else echo 0; fi; }
report=$(python3 firmware-demo/tools/elf_report.py "$elf" "$(size_of "$model")" "$(size_of "$digits")")
grep -v '^ELF_REPORT' <<< "$report"
ram_static=$(sed -n 's/^ELF_REPORT.* ram_static=\([0-9]*\).*/\1/p' <<< "$report")

# --- run -----------------------------------------------------------------------------------
echo "== run under QEMU (timeout ${timeout_s} s)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
timeout "$timeout_s" "${qemu[@]}" -kernel "$elf" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
summary=$(grep "predictions equal the host's" "$log" || true)
fail=0
if [ "$rc" -ne 0 ]; then
  [ "$rc" -eq 124 ] && echo "firmware.sh: QEMU timed out after ${timeout_s} s (FIRMWARE_TIMEOUT)" >&2
  echo "firmware.sh: QEMU exited with status $rc" >&2
  fail=1
fi
if grep -q MISMATCH "$log"; then
  echo "firmware.sh: $(grep -c MISMATCH "$log") prediction(s) differ from the host's" >&2
  fail=1
fi
if [ -z "$summary" ]; then
  echo "firmware.sh: the firmware printed no summary" >&2
  fail=1
fi

# --- figures -------------------------------------------------------------------------------
if [ -n "$summary" ]; then
  same=$(sed -n 's/^\([0-9]*\)\/\([0-9]*\) predictions.*/\1 \2/p' <<< "$summary")
  read -r n_same n_all <<< "$same"
  if [ "${n_same:-x}" != "${n_all:-y}" ]; then fail=1; fi
  instr=$(sed -n 's/.*per digit mean \([0-9]*\).*/\1/p' <<< "$summary")
  macs=$(sed -n 's/.* \([0-9]*\) MACs\/digit.*/\1/p' "$log" | head -n 1)
  stack=$(sed -n 's/.*stack high-water \([0-9]*\) .*/\1/p' <<< "$summary")
  python3 - "$instr" "$macs" "$cpi" "$ram_static" "$stack" << 'EOF'
import sys
instr, macs, cpi, ram, stack = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("== figures")
print(f"instructions per digit  {instr:,} ({instr / macs:.2f} per MAC, {macs:,} MACs)")
print(f"at 168 MHz              {instr / 168e3:.0f} ms/digit if CPI = 1 (optimistic lower bound), "
      f"~{instr * cpi / 168e3:.0f} ms/digit at an assumed CPI of {cpi}")
total = ram + stack
print(f"RAM incl. stack         {total:,} B ({total / 1024:.1f} KiB; goal <= 112 KiB): "
      f"statics {ram:,} + stack high-water {stack:,}")
EOF
fi

# --- optional profile ----------------------------------------------------------------------
if [ "$profile" = 1 ] && [ "$fail" = 0 ]; then
  echo "== instruction profile of one classification (exact counts from QEMU's execution log)"
  if ! command -v llvm-objdump > /dev/null && ! ls /usr/bin/llvm-objdump-* > /dev/null 2>&1; then
    rustup component list --installed | grep -q '^llvm-tools' || rustup component add llvm-tools
  fi
  (cd firmware-demo && LSOFTMAX_FIRMWARE_LIMIT=1 "${cargo_release[@]}" -q)
  fifo=$(mktemp -u)
  mkfifo "$fifo"
  trap 'rm -f "$log" "$fifo"' EXIT
  "${qemu[@]}" -d in_asm,exec,nochain -D "$fifo" -kernel "$elf" > /dev/null &
  qpid=$!
  python3 firmware-demo/tools/profile.py "$elf" "$fifo"
  wait "$qpid"
  # Leave the normal (all digits) build in place.
  (cd firmware-demo && "${cargo_release[@]}" -q)
fi

if [ "$fail" != 0 ]; then
  echo "firmware.sh: FAILED" >&2
  exit 1
fi
echo "firmware.sh: all predictions equal the host's"

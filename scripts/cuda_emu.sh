#!/usr/bin/env bash
# Builds a fake libcuda.so.1 that runs the CUDA kernels on the CPU (kernels/emu/fake_cuda.cpp:
# kernels/cuda/*.cu compiled as C++ with emu.h; device memory is host memory). With it, a binary
# built with `--features cuda` (against the link-only stub of scripts/cuda_stub.sh) runs its
# whole GPU code path on a machine without a GPU, slowly:
#
#   bash scripts/cuda_emu.sh [DIR]       # default DIR: .cache/cuda-emu
#   LD_LIBRARY_PATH=.cache/cuda-emu target/cuda/release/lsoftmax gpu-check --quick
#
# Every other driver function of cust_raw's list fails loudly (CUDA error 999) if called.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${1:-$ROOT/.cache/cuda-emu}"
cd "$ROOT"
cargo fetch -q
SRC="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cust_raw-0.11.3/src/cuda.rs 2>/dev/null | head -1)"
[ -n "$SRC" ] || { echo "error: cust_raw 0.11.3 sources not found after cargo fetch" >&2; exit 1; }
mkdir -p "$DIR"
IMPL="$(grep -oE '^CUresult cu[A-Za-z0-9_]+' kernels/emu/fake_cuda.cpp | awk '{print $2}' | sort -u)"
{
    echo '#include <stdio.h>'
    grep -oE 'pub fn cu[A-Za-z0-9_]+' "$SRC" | awk '{print $3}' | sort -u | grep -vxF "$IMPL" |
        awk '{print "int " $1 "(void) { fprintf(stderr, \"fake libcuda: " $1 " is not emulated\\n\"); return 999; }"}'
} > "$DIR/rest.c"
gcc -c -O1 -fPIC -o "$DIR/rest.o" "$DIR/rest.c"
CXX=(g++ -std=c++20 -O2 -ffp-contract=off -fPIC -fvisibility=hidden -w)
# Compiles a table of kernels (SRC) to OUT. The object holds no zero-initialised data but the
# kernels' __shared__ arrays (function statics, `_ZZ...`): its .bss becomes the emu_shared section
# the driver fills with NaN before each block. Anything else there would be overwritten, so refuse it.
kernels_object() {
    local src="$1" out="$2" other
    "${CXX[@]}" -c -o "$out" "$src"
    other="$(nm --defined-only "$out" | awk '$2 ~ /^[bB]$/ && $3 !~ /^_ZZ/ {print $3}')"
    [ -z "$other" ] || { echo "error: $src has zero-initialised data besides __shared__ arrays: $other" >&2; exit 1; }
    [ -n "$(nm --defined-only "$out" | awk '$2 ~ /^[bB]$/')" ] ||
        { echo "error: $src has no __shared__ arrays in .bss (did the compiler move them?)" >&2; exit 1; }
    objcopy --rename-section .bss=emu_shared "$out"
}
kernels_object kernels/emu/kernels.cpp "$DIR/kernels.o"
"${CXX[@]}" -c -o "$DIR/fake_cuda.o" kernels/emu/fake_cuda.cpp
g++ -shared -Wl,-soname,libcuda.so.1 -o "$DIR/libcuda.so.1" "$DIR/fake_cuda.o" "$DIR/kernels.o" "$DIR/rest.o"
# Self-tests: the guard pages (in bounds runs, one float short dies naming the kernel), the
# launch limits, and the other rules, each on a kernel that breaks it (mutants.cpp).
g++ -std=c++20 -O1 -o "$DIR/driver_test" kernels/emu/driver_test.cpp -L"$DIR" -l:libcuda.so.1 -Wl,-rpath,"$DIR"
for guard in after before; do
    FAKE_CUDA_GUARD=$guard "$DIR/driver_test" guard 1000 4000 > /dev/null ||
        { echo "error: the fake driver's guard test failed in bounds (FAKE_CUDA_GUARD=$guard)" >&2; exit 1; }
done
rc=0
"$DIR/driver_test" guard 1000 3996 > "$DIR/driver_test.out" 2>&1 || rc=$?
[ "$rc" = 86 ] && grep -q "kernel sgd_step touched 0 bytes past the end of a 3996-byte device buffer" "$DIR/driver_test.out" ||
    { echo "error: the fake driver's guard page missed an overrun (exit $rc): $(cat "$DIR/driver_test.out")" >&2; exit 1; }
"$DIR/driver_test" limits > "$DIR/driver_test.out" 2>&1 ||
    { echo "error: the fake driver's launch limits: $(cat "$DIR/driver_test.out")" >&2; exit 1; }
mkdir -p "$DIR/mutants"
kernels_object kernels/emu/mutants.cpp "$DIR/mutants/kernels.o"
g++ -shared -Wl,-soname,libcuda.so.1 -o "$DIR/mutants/libcuda.so.1" "$DIR/fake_cuda.o" "$DIR/mutants/kernels.o"
g++ -std=c++20 -O1 -o "$DIR/mutants/driver_test" kernels/emu/driver_test.cpp -L"$DIR/mutants" -l:libcuda.so.1 \
    -Wl,-rpath,"$DIR/mutants"
for order in forward reverse; do
    FAKE_CUDA_ORDER=$order "$DIR/mutants/driver_test" mutants > "$DIR/driver_test.out" 2>&1 ||
        { echo "error: the fake driver let a broken kernel pass (FAKE_CUDA_ORDER=$order): $(cat "$DIR/driver_test.out")" >&2; exit 1; }
done
# KERNEL:EXIT:MESSAGE [ENV]: the mutant must stop with that exit status and message.
for case in "lds4_misaligned:134:lds4 (a float4 load from shared memory) at" \
    "unmarked_barrier:134:__syncthreads in a kernel not marked as synchronising" \
    "read_before_start:86:kernel read_before_start touched 4 bytes before the start of a 256-byte device buffer:FAKE_CUDA_GUARD=before"; do
    IFS=: read -r kernel want message env <<< "$case"
    rc=0
    # (...; exit): the subshell, not this script, reports the abort.
    (env $env "$DIR/mutants/driver_test" dies "$kernel"; exit $?) > "$DIR/driver_test.out" 2>&1 || rc=$?
    [ "$rc" = "$want" ] && grep -qF "$message" "$DIR/driver_test.out" ||
        { echo "error: the fake driver did not stop $kernel (exit $rc, expected $want): $(cat "$DIR/driver_test.out")" >&2; exit 1; }
done
echo "fake libcuda (CPU emulation): $DIR/libcuda.so.1"
echo "run with: LD_LIBRARY_PATH=$DIR target/cuda/release/lsoftmax gpu-check --quick"

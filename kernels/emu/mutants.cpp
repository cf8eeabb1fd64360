// Broken kernels, each with a bug of a kind that passes on a CPU unless the emulation punishes it
// as a GPU would, and one correct kernel as the control. scripts/cuda_emu.sh builds them into a
// second fake driver (in place of kernels.cpp's table) and driver_test.cpp's `mutants` and `dies`
// cases check that the emulation catches every one:
//
//   sum_ok               control: the last thread sums what all threads staged, after a barrier.
//   sum_no_barrier       the barrier between the staging and the sum is missing. Right when the
//                        threads run in index order, wrong in reverse order (FAKE_CUDA_ORDER).
//   sum_unpadded         stages fewer values than it sums: reads shared memory nobody wrote,
//                        which the emulation fills with NaN before every block.
//   accumulate_unzeroed  adds into an output buffer nobody zeroed: NaN, as fresh device memory is
//                        filled with NaN (cuMemAlloc).
//   lds4_misaligned      a float4 load from shared memory 8 bytes off a 16-byte boundary, through
//                        gemm.cu's own lds4: aborts ("misaligned address" on a GPU).
//   unmarked_barrier     calls __syncthreads but is not marked as synchronising below: aborts
//                        (its threads would run one after another and the barrier do nothing).
//   read_before_start    reads the float before its input buffer: with the guard page before the
//                        buffers (FAKE_CUDA_GUARD=before), dies naming the kernel.
//
// Overruns past the end and the launch limits have their own cases in driver_test.cpp.
#include "emu.h"
#include "kernels.h"

namespace {
#include "../cuda/gemm.cu"

constexpr int kThreads = 64;  // the block size every case launches with

__device__ float sum_of_slots(const float* s) {
    float a = 0.f;
    for (int i = 0; i < kThreads; ++i) a += s[i];
    return a;
}

__global__ void sum_ok(const float* x, float* out, int n) {
    __shared__ float s[kThreads];
    const int t = threadIdx.x;
    s[t] = t < n ? x[t] : 0.f;
    __syncthreads();
    if (t == kThreads - 1) out[0] = sum_of_slots(s);
}

__global__ void sum_no_barrier(const float* x, float* out, int n) {
    __shared__ float s[kThreads];
    const int t = threadIdx.x;
    s[t] = 0.f;
    __syncthreads();
    s[t] = t < n ? x[t] : 0.f;
    if (t == kThreads - 1) out[0] = sum_of_slots(s);  // needs a __syncthreads() before it
}

__global__ void sum_unpadded(const float* x, float* out, int n) {
    __shared__ float s[kThreads];
    const int t = threadIdx.x;
    if (t < n) s[t] = x[t];  // slots n.. stay unwritten
    __syncthreads();
    if (t == kThreads - 1) out[0] = sum_of_slots(s);
}

__global__ void accumulate_unzeroed(const float* x, float* out, int n) {
    const int t = threadIdx.x;
    if (t < n) out[t] += x[t];
}

__global__ void lds4_misaligned(const float* x, float* out, int n) {
    __shared__ __align__(16) float s[kThreads + 4];
    const int t = threadIdx.x;
    s[t] = t < n ? x[t] : 0.f;
    __syncthreads();
    if (t == 0) {
        float r[4];
        lds4(&s[2], r);
        out[0] = r[0] + r[1] + r[2] + r[3];
    }
}

__global__ void unmarked_barrier(const float* x, float* out, int n) {
    const int t = threadIdx.x;
    if (t < n) out[t] = x[t];
    __syncthreads();
}

__global__ void read_before_start(const float* x, float* out, int n) {
    const int t = threadIdx.x;
    if (t < n) out[t] = x[t - 1];  // x[-1] for thread 0
}

}  // namespace

const EmuKernel emu_kernels[] = {
#define K EMU_KERNEL
    K(sum_ok, true),         K(sum_no_barrier, true),  K(sum_unpadded, true),
    K(accumulate_unzeroed, false), K(lds4_misaligned, true), K(unmarked_barrier, false),
    K(read_before_start, false),
#undef K
};
const unsigned emu_kernel_count = sizeof emu_kernels / sizeof emu_kernels[0];

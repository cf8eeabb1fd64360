// CPU emulation of the few CUDA C features the trainer's kernels use, so that the very same
// kernels/cuda/*.cu sources compile as C++ for the fake driver (fake_cuda.cpp). Blocks run one
// after another on one OS thread; the threads of a block are fibers (ucontext) that the
// scheduler resumes round-robin, each running to its next __syncthreads, so every thread
// finishes a barrier phase before any starts the next. `__shared__` variables are function
// statics (one block at a time uses them).
#pragma once
#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <math.h>

struct emu_dim3 {
    unsigned x = 1, y = 1, z = 1;
};
extern thread_local emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
// The running fiber and the scheduler (null outside a block that synchronises).
extern thread_local ucontext_t* emu_self;
extern thread_local ucontext_t* emu_sched;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

inline void __syncthreads() {
    if (emu_self) swapcontext(emu_self, emu_sched);
}
inline int min(int a, int b) { return a < b ? a : b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

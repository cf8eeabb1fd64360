// Shared helpers of the trainer's CUDA kernels. Every kernel works on fp32 tensors in the
// trainer's channel-major [C, N, H, W] layout; reductions accumulate in f64 in a fixed order
// (no atomics), so results are deterministic run to run.
#pragma once

// Block size every reduction kernel must be launched with (a power of two).
#define RED_THREADS 256

// Grid-stride loop over [0, n).
#define GRID_LOOP(i, n)                                                                    \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)

// Sum of `v` over the block (RED_THREADS threads), in a fixed tree order; every thread gets
// the result. `sh` is a shared array of RED_THREADS doubles.
__device__ __forceinline__ double block_sum(double v, double* sh) {
    int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = RED_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

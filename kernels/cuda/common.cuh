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

// Loop over the row of channel blockIdx.y, for element-wise kernels on [C, row] data: launch
// with grid (x, C). The channel comes from the grid, not from a 64-bit division per element.
#define ROW_LOOP(i, row)                                                                   \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(row); \
         i += (long long)blockDim.x * gridDim.x)

// Per-channel sums over long rows run in parts of CHAN_PART values: one block of RED_THREADS
// per (part, channel), grid (parts, C), each writing its part's sum to partial[c * parts + p];
// then the parts are added in order (sum_parts). The split depends only on the row length, so
// the sums are deterministic and the same on every GPU.
#define CHAN_PART 16384

// [begin, end) of this block's part (blockIdx.x) of a row of `row` values.
__device__ __forceinline__ void part_range(long long row, long long* begin, long long* end) {
    long long b = (long long)blockIdx.x * CHAN_PART;
    *begin = b;
    *end = b + CHAN_PART < row ? b + CHAN_PART : row;
}

// The ordered sum of a channel's `parts` partial sums.
__device__ __forceinline__ double sum_parts(const double* partial, int c, int parts) {
    double s = 0.0;
    for (int p = 0; p < parts; ++p) s += partial[(long long)c * parts + p];
    return s;
}

// Splits an index q of an [N, H, W] map into (n, y, x), in 32 bits (the caller keeps N*H*W
// under 2^31).
__device__ __forceinline__ void split_nyx(unsigned q, int H, int W, unsigned* n, int* y, int* x) {
    unsigned t = q / W;
    *x = (int)(q - t * W);
    *n = t / H;
    *y = (int)(t - *n * H);
}

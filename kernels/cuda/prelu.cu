// PReLU: y = x for x > 0, a x otherwise; `count` slopes: 1 (shared) or one per channel.
#include "common.cuh"

__device__ __forceinline__ float slope_of(const float* slopes, int count, int c) {
    return count == 1 ? slopes[0] : slopes[c];
}

// Grid (x, C), see ROW_LOOP.
extern "C" __global__ void prelu_forward(const float* __restrict__ x, long long row, const float* __restrict__ slopes,
                                         int count, float* __restrict__ y) {
    const long long off = (long long)blockIdx.y * row;
    const float a = slope_of(slopes, count, blockIdx.y);
    ROW_LOOP(i, row) {
        float v = x[off + i];
        y[off + i] = v > 0.f ? v : a * v;
    }
}

// partial[c * parts + p] = sum over part p of channel c of x * dy where x <= 0 (f64), and, when
// dx is not null, dx = dy where x > 0, slope * dy elsewhere, in the same pass. Grid (parts, C),
// see CHAN_PART.
extern "C" __global__ void __launch_bounds__(RED_THREADS) prelu_backward_partial(
    const float* __restrict__ x, const float* __restrict__ dy, long long row, const float* __restrict__ slopes,
    int count, double* __restrict__ partial, float* __restrict__ dx) {
    __shared__ double sh[RED_THREADS];
    const int c = blockIdx.y;
    const long long off = (long long)c * row;
    const float a = slope_of(slopes, count, c);
    long long b, e;
    part_range(row, &b, &e);
    double s = 0.0;
    for (long long i = b + threadIdx.x; i < e; i += RED_THREADS) {
        float v = x[off + i], g = dy[off + i];
        if (v <= 0.f) s += (double)(v * g);
        if (dx) dx[off + i] = v > 0.f ? g : a * g;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[(long long)c * gridDim.x + blockIdx.x] = s;
}

// dslopes from the partials: per channel the ordered sum of its parts; for a shared slope the
// ordered sum of those over the channels. One thread.
extern "C" __global__ void prelu_backward_finish(const double* __restrict__ partial, int C, int parts, int count,
                                                 float* __restrict__ dslopes) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    if (count == 1) {
        double s = 0.0;
        for (int c = 0; c < C; ++c) s += sum_parts(partial, c, parts);
        dslopes[0] = (float)s;
    } else {
        for (int c = 0; c < C; ++c) dslopes[c] = (float)sum_parts(partial, c, parts);
    }
}

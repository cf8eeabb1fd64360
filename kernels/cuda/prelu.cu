// PReLU: y = x for x > 0, a x otherwise; `count` slopes: 1 (shared) or one per channel.
#include "common.cuh"

__device__ __forceinline__ float slope_of(const float* slopes, int count, int c) {
    return count == 1 ? slopes[0] : slopes[c];
}

extern "C" __global__ void prelu_forward(const float* __restrict__ x, int C, long long row,
                                         const float* __restrict__ slopes, int count, float* __restrict__ y) {
    GRID_LOOP(e, (long long)C * row) {
        float a = slope_of(slopes, count, (int)(e / row));
        float v = x[e];
        y[e] = v > 0.f ? v : a * v;
    }
}

// partial[c] = sum over the channel's x <= 0 of x * dy (f64). One block of RED_THREADS per
// channel.
extern "C" __global__ void __launch_bounds__(RED_THREADS) prelu_backward_partial(
    const float* __restrict__ x, const float* __restrict__ dy, long long row, double* __restrict__ partial) {
    __shared__ double sh[RED_THREADS];
    const int c = blockIdx.x;
    const float* xr = x + (long long)c * row;
    const float* gr = dy + (long long)c * row;
    double s = 0.0;
    for (long long i = threadIdx.x; i < row; i += RED_THREADS) {
        float v = xr[i];
        if (v <= 0.f) s += (double)(v * gr[i]);
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[c] = s;
}

// dslopes from the per-channel partials: their ordered sum for a shared slope, else a copy.
// One thread.
extern "C" __global__ void prelu_backward_finish(const double* __restrict__ partial, int C, int count,
                                                 float* __restrict__ dslopes) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    if (count == 1) {
        double s = 0.0;
        for (int c = 0; c < C; ++c) s += partial[c];
        dslopes[0] = (float)s;
    } else {
        for (int c = 0; c < C; ++c) dslopes[c] = (float)partial[c];
    }
}

extern "C" __global__ void prelu_backward_dx(const float* __restrict__ x, const float* __restrict__ dy, int C,
                                             long long row, const float* __restrict__ slopes, int count,
                                             float* __restrict__ dx) {
    GRID_LOOP(e, (long long)C * row) {
        float a = slope_of(slopes, count, (int)(e / row));
        float g = dy[e];
        dx[e] = x[e] > 0.f ? g : a * g;
    }
}

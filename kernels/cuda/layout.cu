// Flatten between image tensors and features, and per-row sums (bias gradients).
#include "common.cuh"

// [C, N, P] -> [C*P, N] with features ordered (c, p), PyTorch's x.view(n, -1) order.
extern "C" __global__ void flatten_forward(const float* __restrict__ x, int C, int N, int P,
                                           float* __restrict__ y) {
    long long total = (long long)C * N * P;
    GRID_LOOP(e, total) {
        int p = (int)(e % P);
        int n = (int)((e / P) % N);
        int c = (int)(e / ((long long)P * N));
        y[((long long)c * P + p) * N + n] = x[e];
    }
}

// The inverse permutation: [C*P, N] -> [C, N, P].
extern "C" __global__ void flatten_backward(const float* __restrict__ dy, int C, int N, int P,
                                            float* __restrict__ dx) {
    long long total = (long long)C * N * P;
    GRID_LOOP(e, total) {
        int p = (int)(e % P);
        int n = (int)((e / P) % N);
        int c = (int)(e / ((long long)P * N));
        dx[e] = dy[((long long)c * P + p) * N + n];
    }
}

// out[r] = sum of x[r, 0..len) in f64, rounded to f32. One block of RED_THREADS per row.
extern "C" __global__ void __launch_bounds__(RED_THREADS) row_sum(const float* __restrict__ x, long long len,
                                                                  float* __restrict__ out) {
    __shared__ double sh[RED_THREADS];
    const float* row = x + (long long)blockIdx.x * len;
    double s = 0.0;
    for (long long i = threadIdx.x; i < len; i += RED_THREADS) s += (double)row[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = (float)s;
}

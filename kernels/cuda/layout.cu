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

// The bias gradients: out[r] = sum of x[r, 0..len) in f64, rounded to f32, in two launches:
// row_sum_partial with grid (parts, rows), parts = ceil(len / CHAN_PART), then row_sum_finish.
extern "C" __global__ void __launch_bounds__(RED_THREADS) row_sum_partial(const float* __restrict__ x, long long len,
                                                                          double* __restrict__ partial) {
    __shared__ double sh[RED_THREADS];
    const float* row = x + (long long)blockIdx.y * len;
    long long b, e;
    part_range(len, &b, &e);
    double s = 0.0;
    for (long long i = b + threadIdx.x; i < e; i += RED_THREADS) s += (double)row[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[(long long)blockIdx.y * gridDim.x + blockIdx.x] = s;
}

extern "C" __global__ void row_sum_finish(const double* __restrict__ partial, int rows, int parts,
                                          float* __restrict__ out) {
    GRID_LOOP(r, rows) out[r] = (float)sum_parts(partial, (int)r, parts);
}

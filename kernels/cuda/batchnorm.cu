// Batch normalisation over channels (each channel one contiguous row of `row` = N*H*W values),
// PyTorch semantics: batch statistics with the biased variance in training, running statistics
// (momentum 0.1, unbiased variance) in evaluation, eps 1e-5. Statistics in f64.
#include "common.cuh"

// Training statistics: one block of RED_THREADS per channel. Writes the batch mean and
// 1/sqrt(var + eps) and updates the running statistics. Two passes over the row (mean, then
// the squared deviations), the second mostly from L2.
extern "C" __global__ void __launch_bounds__(RED_THREADS) bn_stats_train(
    const float* __restrict__ x, long long row, float momentum, float eps, float* __restrict__ mean_out,
    float* __restrict__ inv_std_out, float* __restrict__ running_mean, float* __restrict__ running_var) {
    __shared__ double sh[RED_THREADS];
    const int c = blockIdx.x;
    const float* r = x + (long long)c * row;
    double s = 0.0;
    for (long long i = threadIdx.x; i < row; i += RED_THREADS) s += (double)r[i];
    const double mean = block_sum(s, sh) / (double)row;
    double q = 0.0;
    for (long long i = threadIdx.x; i < row; i += RED_THREADS) {
        double d = (double)r[i] - mean;
        q += d * d;
    }
    const double var = block_sum(q, sh) / (double)row;
    if (threadIdx.x == 0) {
        mean_out[c] = (float)mean;
        inv_std_out[c] = (float)(1.0 / sqrt(var + (double)eps));
        double unbiased = var * (double)row / (double)(row - 1);
        running_mean[c] = (1.f - momentum) * running_mean[c] + momentum * (float)mean;
        running_var[c] = (1.f - momentum) * running_var[c] + momentum * (float)unbiased;
    }
}

// Evaluation statistics: mean = running mean, inv_std = 1/sqrt(running var + eps) (f32).
extern "C" __global__ void bn_stats_eval(const float* __restrict__ running_mean,
                                         const float* __restrict__ running_var, int C, float eps,
                                         float* __restrict__ mean_out, float* __restrict__ inv_std_out) {
    GRID_LOOP(c, C) {
        mean_out[c] = running_mean[c];
        inv_std_out[c] = 1.f / sqrtf(running_var[c] + eps);
    }
}

// y = x * scale + shift with scale = gamma * inv_std, shift = beta - mean * scale.
extern "C" __global__ void bn_apply(const float* __restrict__ x, int C, long long row,
                                    const float* __restrict__ mean, const float* __restrict__ inv_std,
                                    const float* __restrict__ gamma, const float* __restrict__ beta,
                                    float* __restrict__ y) {
    GRID_LOOP(e, (long long)C * row) {
        int c = (int)(e / row);
        float scale = gamma[c] * inv_std[c];
        float shift = beta[c] - mean[c] * scale;
        y[e] = x[e] * scale + shift;
    }
}

// dbeta = sum dy, dgamma = sum dy * (x - mean) * inv_std, per channel (f64 sums). One block of
// RED_THREADS per channel.
extern "C" __global__ void __launch_bounds__(RED_THREADS) bn_backward_reduce(
    const float* __restrict__ x, const float* __restrict__ dy, long long row, const float* __restrict__ mean,
    const float* __restrict__ inv_std, float* __restrict__ dgamma, float* __restrict__ dbeta) {
    __shared__ double sh[RED_THREADS];
    const int c = blockIdx.x;
    const float m = mean[c], s = inv_std[c];
    const float* xr = x + (long long)c * row;
    const float* gr = dy + (long long)c * row;
    double sb = 0.0, sg = 0.0;
    for (long long i = threadIdx.x; i < row; i += RED_THREADS) {
        float g = gr[i];
        sb += (double)g;
        sg += (double)(g * (xr[i] - m) * s);
    }
    sb = block_sum(sb, sh);
    sg = block_sum(sg, sh);
    if (threadIdx.x == 0) {
        dgamma[c] = (float)sg;
        dbeta[c] = (float)sb;
    }
}

// dx = gamma * inv_std / n * (n * dy - dbeta - xhat * dgamma), xhat = (x - mean) * inv_std.
extern "C" __global__ void bn_backward_dx(const float* __restrict__ x, const float* __restrict__ dy, int C,
                                          long long row, const float* __restrict__ mean,
                                          const float* __restrict__ inv_std, const float* __restrict__ gamma,
                                          const float* __restrict__ dgamma, const float* __restrict__ dbeta,
                                          float* __restrict__ dx) {
    const float nf = (float)row;
    GRID_LOOP(e, (long long)C * row) {
        int c = (int)(e / row);
        float m = mean[c], s = inv_std[c];
        float k = gamma[c] * s / nf;
        float xhat = (x[e] - m) * s;
        dx[e] = k * (nf * dy[e] - dbeta[c] - xhat * dgamma[c]);
    }
}

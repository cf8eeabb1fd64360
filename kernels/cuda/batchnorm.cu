// Batch normalisation over channels (each channel one contiguous row of `row` = N*H*W values),
// PyTorch semantics: batch statistics with the biased variance in training, running statistics
// (momentum 0.1, unbiased variance) in evaluation, eps 1e-5. Statistics in f64.
#include "common.cuh"

// Training statistics, in parts (see CHAN_PART), four launches:
//   bn_sum_partial (mean64 null): partial sums of x, grid (parts, C);
//   bn_mean_finish: mean64[c] = the batch mean (f64);
//   bn_sum_partial (mean64 set): partial sums of (x - mean)^2, grid (parts, C), mostly from L2;
//   bn_stats_finish: the batch mean and 1/sqrt(var + eps) (f32), and the running statistics.
extern "C" __global__ void __launch_bounds__(RED_THREADS) bn_sum_partial(const float* __restrict__ x, long long row,
                                                                         const double* __restrict__ mean64,
                                                                         double* __restrict__ partial) {
    __shared__ double sh[RED_THREADS];
    const int c = blockIdx.y;
    const float* r = x + (long long)c * row;
    long long b, e;
    part_range(row, &b, &e);
    double s = 0.0;
    if (mean64 == nullptr) {
        for (long long i = b + threadIdx.x; i < e; i += RED_THREADS) s += (double)r[i];
    } else {
        const double mean = mean64[c];
        for (long long i = b + threadIdx.x; i < e; i += RED_THREADS) {
            double d = (double)r[i] - mean;
            s += d * d;
        }
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[(long long)c * gridDim.x + blockIdx.x] = s;
}

extern "C" __global__ void bn_mean_finish(const double* __restrict__ partial, int C, int parts, long long row,
                                          double* __restrict__ mean64) {
    GRID_LOOP(c, C) mean64[c] = sum_parts(partial, (int)c, parts) / (double)row;
}

extern "C" __global__ void bn_stats_finish(const double* __restrict__ partial, int C, int parts, long long row,
                                           const double* __restrict__ mean64, float momentum, float eps,
                                           float* __restrict__ mean_out, float* __restrict__ inv_std_out,
                                           float* __restrict__ running_mean, float* __restrict__ running_var) {
    GRID_LOOP(c, C) {
        const double mean = mean64[c];
        const double var = sum_parts(partial, (int)c, parts) / (double)row;
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

// y = x * scale + shift with scale = gamma * inv_std, shift = beta - mean * scale. Grid (x, C),
// see ROW_LOOP.
extern "C" __global__ void bn_apply(const float* __restrict__ x, long long row, const float* __restrict__ mean,
                                    const float* __restrict__ inv_std, const float* __restrict__ gamma,
                                    const float* __restrict__ beta, float* __restrict__ y) {
    const int c = blockIdx.y;
    const long long off = (long long)c * row;
    const float scale = gamma[c] * inv_std[c];
    const float shift = beta[c] - mean[c] * scale;
    ROW_LOOP(i, row) y[off + i] = x[off + i] * scale + shift;
}

// dbeta = sum dy, dgamma = sum dy * (x - mean) * inv_std, per channel (f64 sums), in parts
// (see CHAN_PART): bn_backward_partial with grid (parts, C) writes the dbeta partials to
// partial[0 .. C*parts) and the dgamma ones after them; bn_backward_finish adds them up.
extern "C" __global__ void __launch_bounds__(RED_THREADS) bn_backward_partial(
    const float* __restrict__ x, const float* __restrict__ dy, long long row, const float* __restrict__ mean,
    const float* __restrict__ inv_std, double* __restrict__ partial) {
    __shared__ double sh[RED_THREADS];
    const int c = blockIdx.y;
    const float m = mean[c], s = inv_std[c];
    const float* xr = x + (long long)c * row;
    const float* gr = dy + (long long)c * row;
    long long b, e;
    part_range(row, &b, &e);
    double sb = 0.0, sg = 0.0;
    for (long long i = b + threadIdx.x; i < e; i += RED_THREADS) {
        float g = gr[i];
        sb += (double)g;
        sg += (double)(g * (xr[i] - m) * s);
    }
    sb = block_sum(sb, sh);
    sg = block_sum(sg, sh);
    if (threadIdx.x == 0) {
        const long long at = (long long)c * gridDim.x + blockIdx.x;
        partial[at] = sb;
        partial[(long long)gridDim.y * gridDim.x + at] = sg;
    }
}

extern "C" __global__ void bn_backward_finish(const double* __restrict__ partial, int C, int parts,
                                              float* __restrict__ dgamma, float* __restrict__ dbeta) {
    GRID_LOOP(c, C) {
        dbeta[c] = (float)sum_parts(partial, (int)c, parts);
        dgamma[c] = (float)sum_parts(partial + (long long)C * parts, (int)c, parts);
    }
}

// dx = gamma * inv_std / n * (n * dy - dbeta - xhat * dgamma), xhat = (x - mean) * inv_std.
// Grid (x, C), see ROW_LOOP.
extern "C" __global__ void bn_backward_dx(const float* __restrict__ x, const float* __restrict__ dy, long long row,
                                          const float* __restrict__ mean, const float* __restrict__ inv_std,
                                          const float* __restrict__ gamma, const float* __restrict__ dgamma,
                                          const float* __restrict__ dbeta, float* __restrict__ dx) {
    const int c = blockIdx.y;
    const long long off = (long long)c * row;
    const float nf = (float)row;
    const float m = mean[c], s = inv_std[c];
    const float k = gamma[c] * s / nf;
    const float db = dbeta[c], dg = dgamma[c];
    ROW_LOOP(i, row) {
        float xhat = (x[off + i] - m) * s;
        dx[off + i] = k * (nf * dy[off + i] - db - xhat * dg);
    }
}

// The L-Softmax head (Liu et al., ICML 2016) as the CPU trainer defines it (trainer/src/lsoftmax.rs),
// in f64 inside: logits = W^T x with W [F][C], x [F, N]; in training each sample's target logit
// becomes (|W_y||x| psi(theta) + lambda p) / (1 + lambda), p = W_y . x,
// psi = (-1)^k cos(m theta) - 2k, cos(m theta) by the binomial expansion, k from a clamped acos.
#include "common.cuh"

#define COS_DENOM_EPS 1e-10
#define ACOS_EPS 1e-7

__device__ double powi_d(double x, int e) {
    double r = 1.0;
    for (int i = 0; i < e; ++i) r *= x;
    return r;
}

__device__ double binom_d(int n, int k) {
    double acc = 1.0;
    for (int i = 0; i < k; ++i) acc = acc * (double)(n - i) / (double)(i + 1);
    return acc;
}

// psi(theta) and d psi / d cos(theta) for c = cos(theta).
__device__ void psi_d(int m, double c, double* psi, double* dpsi) {
    double s2 = 1.0 - c * c;
    double value = 0.0, deriv = 0.0;
    for (int n = 0; n <= m / 2; ++n) {
        double coef = (n % 2 == 0 ? 1.0 : -1.0) * binom_d(m, 2 * n);
        int p = m - 2 * n;
        value += coef * powi_d(c, p) * powi_d(s2, n);
        double d = 0.0;
        if (p > 0) d += (double)p * powi_d(c, p - 1) * powi_d(s2, n);
        if (n > 0) d -= 2.0 * (double)n * powi_d(c, p + 1) * powi_d(s2, n - 1);
        deriv += coef * d;
    }
    double cc = fmin(fmax(c, -1.0 + ACOS_EPS), 1.0 - ACOS_EPS);
    int k = (int)floor((double)m * acos(cc) / 3.14159265358979323846);
    double sign = (k % 2 == 0) ? 1.0 : -1.0;
    *psi = sign * value - 2.0 * (double)k;
    *dpsi = sign * deriv;
}

// One block of RED_THREADS per sample. Writes logits [N][C] (plain when train == 0) and, in
// training, the four backward coefficients per sample into cache [N][4] = (ax, bx, aw, bw).
extern "C" __global__ void __launch_bounds__(RED_THREADS) lsoftmax_forward(
    const float* __restrict__ x, const float* __restrict__ w, const unsigned char* __restrict__ targets, int N,
    int F, int C, int margin, double lambda, int train, float* __restrict__ logits, double* __restrict__ cache) {
    __shared__ double sh[RED_THREADS];
    const int i = blockIdx.x;
    for (int j = 0; j < C; ++j) {
        double s = 0.0;
        for (int d = threadIdx.x; d < F; d += RED_THREADS) s += (double)x[(long long)d * N + i] * (double)w[d * C + j];
        s = block_sum(s, sh);
        if (threadIdx.x == 0) logits[i * C + j] = (float)s;
    }
    if (!train) return;
    const int y = targets[i];
    double a2 = 0.0, b2 = 0.0, p = 0.0;
    for (int d = threadIdx.x; d < F; d += RED_THREADS) {
        double wv = (double)w[d * C + y], xv = (double)x[(long long)d * N + i];
        a2 += wv * wv;
        b2 += xv * xv;
        p += wv * xv;
    }
    a2 = block_sum(a2, sh);
    b2 = block_sum(b2, sh);
    p = block_sum(p, sh);
    if (threadIdx.x == 0) {
        double a = sqrt(a2), b = sqrt(b2);
        double den = a * b + COS_DENOM_EPS;
        double c = p / den;
        double ps, dps;
        psi_d(margin, c, &ps, &dps);
        double f = a * b * ps;
        logits[i * C + y] = (float)((f + lambda * p) / (1.0 + lambda));
        double ab_dps = a * b * dps;
        double a_s = fmax(a, 2.2250738585072014e-308), b_s = fmax(b, 2.2250738585072014e-308);
        double common = ps - ab_dps * p / (den * den);
        cache[i * 4 + 0] = common * a / b_s;
        cache[i * 4 + 1] = ab_dps / den;
        cache[i * 4 + 2] = common * b / a_s;
        cache[i * 4 + 3] = ab_dps / den;
    }
}

// Per sample (one thread each): the coefficients of x (gx, for dW) and of W_j (gw, for dx) per
// class, and of x_i in dx_i (self_x) and of W_y in dW_y (self_w), from dlogits [N][C].
extern "C" __global__ void lsoftmax_backward_coef(const float* __restrict__ dlogits,
                                                  const unsigned char* __restrict__ targets,
                                                  const double* __restrict__ cache, int N, int C, double lambda,
                                                  double* __restrict__ gx, double* __restrict__ gw,
                                                  double* __restrict__ self_x, double* __restrict__ self_w) {
    const double mu = 1.0 / (1.0 + lambda);
    GRID_LOOP(i, N) {
        const int y = targets[i];
        for (int j = 0; j < C; ++j) {
            double g = (double)dlogits[i * C + j];
            if (j == y) {
                gx[i * C + j] = g * mu * (cache[i * 4 + 3] + lambda);
                gw[i * C + j] = g * mu * (cache[i * 4 + 1] + lambda);
                self_x[i] = g * mu * cache[i * 4 + 0];
                self_w[i] = g * mu * cache[i * 4 + 2];
            } else {
                gx[i * C + j] = g;
                gw[i * C + j] = g;
            }
        }
    }
}

// dW[d][j] = (sum over samples of class j of self_w) W[d][j] + sum_i x[d, i] gx[i][j].
// One thread per (d, j).
extern "C" __global__ void lsoftmax_backward_dw(const float* __restrict__ x, const float* __restrict__ w,
                                                const unsigned char* __restrict__ targets,
                                                const double* __restrict__ gx, const double* __restrict__ self_w,
                                                int N, int F, int C, float* __restrict__ dw) {
    GRID_LOOP(e, (long long)F * C) {
        int d = (int)(e / C), j = (int)(e % C);
        double wy = 0.0;
        for (int i = 0; i < N; ++i)
            if (targets[i] == j) wy += self_w[i];
        double s = wy * (double)w[e];
        for (int i = 0; i < N; ++i) s += (double)x[(long long)d * N + i] * gx[i * C + j];
        dw[e] = (float)s;
    }
}

// dx[d, i] = self_x[i] x[d, i] + sum_j W[d][j] gw[i][j]. One thread per (d, i).
extern "C" __global__ void lsoftmax_backward_dx(const float* __restrict__ x, const float* __restrict__ w,
                                                const double* __restrict__ gw, const double* __restrict__ self_x,
                                                int N, int F, int C, float* __restrict__ dx) {
    GRID_LOOP(e, (long long)F * N) {
        int d = (int)(e / N), i = (int)(e % N);
        double s = self_x[i] * (double)x[e];
        for (int j = 0; j < C; ++j) s += (double)w[d * C + j] * gw[i * C + j];
        dx[e] = (float)s;
    }
}

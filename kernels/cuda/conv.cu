// Convolution (square kernel k, zero padding, stride 1) as im2col + SGEMM, on channel-major
// [C, N, H, W] tensors. The column matrix is cols[(c, ky, kx)][(n, oy, ox)]:
// rows C*k*k, columns N*Ho*Wo, with Ho = H + 2 pad + 1 - k (likewise Wo).
//
// Forward:  out[Cout, N*Ho*Wo] = W[Cout, C*k*k] x cols + bias          (sgemm_nn)
// Backward: dW = dy x cols^T (sgemm_nt, split-K),  dcols = W^T x dy (sgemm_tn),
//           dx = col2im(dcols),  dbias = row sums of dy (row_sum).
#include "common.cuh"

// Unfolds x into cols (every element written; padding gives zeros).
extern "C" __global__ void im2col(const float* __restrict__ x, int C, int N, int H, int W, int k,
                                  int pad, int Ho, int Wo, float* __restrict__ cols) {
    long long ncols = (long long)N * Ho * Wo;
    long long total = (long long)C * k * k * ncols;
    GRID_LOOP(e, total) {
        long long col = e % ncols;
        int r = (int)(e / ncols);
        int kx = r % k, ky = (r / k) % k, c = r / (k * k);
        int ox = (int)(col % Wo);
        int oy = (int)((col / Wo) % Ho);
        int n = (int)(col / ((long long)Wo * Ho));
        int iy = oy + ky - pad, ix = ox + kx - pad;
        float v = 0.f;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[(((long long)c * N + n) * H + iy) * W + ix];
        cols[e] = v;
    }
}

// The adjoint of im2col, as a gather: dx[c, n, iy, ix] = sum over the kernel taps (ky, kx) that
// read it of dcols[(c, ky, kx)][(n, iy + pad - ky, ix + pad - kx)], in tap order.
extern "C" __global__ void col2im(const float* __restrict__ dcols, int C, int N, int H, int W, int k,
                                  int pad, int Ho, int Wo, float* __restrict__ dx) {
    long long ncols = (long long)N * Ho * Wo;
    long long total = (long long)C * N * H * W;
    GRID_LOOP(e, total) {
        int ix = (int)(e % W);
        int iy = (int)((e / W) % H);
        int n = (int)((e / ((long long)W * H)) % N);
        int c = (int)(e / ((long long)W * H * N));
        float s = 0.f;
        for (int ky = 0; ky < k; ++ky) {
            int oy = iy + pad - ky;
            if (oy < 0 || oy >= Ho) continue;
            for (int kx = 0; kx < k; ++kx) {
                int ox = ix + pad - kx;
                if (ox < 0 || ox >= Wo) continue;
                long long r = ((long long)c * k + ky) * k + kx;
                s += dcols[r * ncols + ((long long)n * Ho + oy) * Wo + ox];
            }
        }
        dx[e] = s;
    }
}

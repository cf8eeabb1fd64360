// Convolution (square kernel k, zero padding, stride 1) as im2col + SGEMM, on channel-major
// [C, N, H, W] tensors. The column matrix is cols[(c, ky, kx)][(n, oy, ox)]:
// rows C*k*k, columns N*Ho*Wo, with Ho = H + 2 pad + 1 - k (likewise Wo).
//
// Forward:  out[Cout, N*Ho*Wo] = W[Cout, C*k*k] x cols + bias          (sgemm_nn)
// Backward: dW = dy x cols^T (sgemm_nt, split-K),  dcols = W^T x dy (sgemm_tn),
//           dx = col2im(dcols),  dbias = row sums of dy (row_sum).
#include "common.cuh"

// Unfolds x into cols (every element written; padding gives zeros). Grid (x, C*k*k): blockIdx.y
// is the row (c, ky, kx), the threads run along its N*Ho*Wo columns (32-bit index math: the
// caller keeps N*Ho*Wo and C*N*H*W under 2^31).
extern "C" __global__ void im2col(const float* __restrict__ x, int C, int N, int H, int W, int k,
                                  int pad, int Ho, int Wo, float* __restrict__ cols) {
    const int r = blockIdx.y;
    const int kx = r % k, ky = (r / k) % k, c = r / (k * k);
    const unsigned ncols = (unsigned)N * Ho * Wo;
    const float* xc = x + (long long)c * N * H * W;
    float* out = cols + (long long)r * ncols;
    for (unsigned col = blockIdx.x * blockDim.x + threadIdx.x; col < ncols; col += blockDim.x * gridDim.x) {
        unsigned n;
        int oy, ox;
        split_nyx(col, Ho, Wo, &n, &oy, &ox);
        int iy = oy + ky - pad, ix = ox + kx - pad;
        float v = 0.f;
        if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = xc[((long long)n * H + iy) * W + ix];
        out[col] = v;
    }
}

// The adjoint of im2col, as a gather: dx[c, n, iy, ix] = sum over the kernel taps (ky, kx) that
// read it of dcols[(c, ky, kx)][(n, iy + pad - ky, ix + pad - kx)], in tap order. Grid (x, C):
// blockIdx.y is the channel, the threads run along its N*H*W inputs (32-bit index math, as
// im2col).
extern "C" __global__ void col2im(const float* __restrict__ dcols, int C, int N, int H, int W, int k,
                                  int pad, int Ho, int Wo, float* __restrict__ dx) {
    const int c = blockIdx.y;
    const unsigned ncols = (unsigned)N * Ho * Wo;
    const unsigned plane = (unsigned)N * H * W;
    float* out = dx + (long long)c * plane;
    for (unsigned q = blockIdx.x * blockDim.x + threadIdx.x; q < plane; q += blockDim.x * gridDim.x) {
        unsigned n;
        int iy, ix;
        split_nyx(q, H, W, &n, &iy, &ix);
        float s = 0.f;
        for (int ky = 0; ky < k; ++ky) {
            int oy = iy + pad - ky;
            if (oy < 0 || oy >= Ho) continue;
            for (int kx = 0; kx < k; ++kx) {
                int ox = ix + pad - kx;
                if (ox < 0 || ox >= Wo) continue;
                long long r = ((long long)c * k + ky) * k + kx;
                s += dcols[r * ncols + ((unsigned)n * Ho + oy) * Wo + ox];
            }
        }
        out[q] = s;
    }
}

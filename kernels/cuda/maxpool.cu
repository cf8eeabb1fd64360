// 2x2 max pooling, stride 2, odd sizes floored. Ties go to the first maximum in row-major
// window order; the gradient flows to that element only.
#include "common.cuh"

// `planes` = C * N planes of H x W -> Ho x Wo (Ho = H / 2, Wo = W / 2); arg[i] in 0..4 is the
// winner's position in its window. Index math in 32 bits: the caller keeps planes * H * W
// under 2^31.
extern "C" __global__ void maxpool_forward(const float* __restrict__ x, long long planes, int H, int W,
                                           float* __restrict__ y, unsigned char* __restrict__ arg) {
    const int Ho = H / 2, Wo = W / 2;
    GRID_LOOP(e, planes * Ho * Wo) {
        unsigned p;
        int oy, ox;
        split_nyx((unsigned)e, Ho, Wo, &p, &oy, &ox);
        const float* src = x + (long long)p * H * W + (2 * oy) * W + 2 * ox;
        float v = src[0];
        int best = 0;
        if (src[1] > v) { v = src[1]; best = 1; }
        if (src[W] > v) { v = src[W]; best = 2; }
        if (src[W + 1] > v) { v = src[W + 1]; best = 3; }
        y[e] = v;
        arg[e] = (unsigned char)best;
    }
}

// dx[i] = dy of the window whose winner is i, else 0 (a gather over inputs: no atomics).
extern "C" __global__ void maxpool_backward(const float* __restrict__ dy, const unsigned char* __restrict__ arg,
                                            long long planes, int H, int W, float* __restrict__ dx) {
    const int Ho = H / 2, Wo = W / 2;
    GRID_LOOP(e, planes * H * W) {
        unsigned p;
        int iy, ix;
        split_nyx((unsigned)e, H, W, &p, &iy, &ix);
        int oy = iy / 2, ox = ix / 2;
        float v = 0.f;
        if (oy < Ho && ox < Wo) {
            long long o = ((long long)p * Ho + oy) * Wo + ox;
            if (arg[o] == (unsigned char)((iy % 2) * 2 + ix % 2)) v = dy[o];
        }
        dx[e] = v;
    }
}

// SGD with momentum and weight decay, torch.optim.SGD semantics (dampening 0, no Nesterov), over
// one flat buffer holding every parameter: d = g + wd w; b = first ? d : momentum b + d;
// w -= lr b. Explicitly rounded operations (no FMA contraction) give the CPU trainer's f32
// results bit for bit on equal inputs.
#include "common.cuh"

extern "C" __global__ void sgd_step(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ buf,
                                    long long n, float lr, float momentum, float wd, int first) {
    GRID_LOOP(e, n) {
        float wv = w[e];
        float d = __fadd_rn(g[e], __fmul_rn(wd, wv));
        float b = first ? d : __fadd_rn(__fmul_rn(momentum, buf[e]), d);
        buf[e] = b;
        w[e] = __fsub_rn(wv, __fmul_rn(lr, b));
    }
}

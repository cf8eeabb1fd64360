// Softmax cross-entropy, averaged over the batch, as trainer/src/lsoftmax.rs computes it (f64).
#include "common.cuh"

// One thread per sample: its loss (f64), whether its largest logit (first on ties) is the
// target, and dlogits = (softmax - onehot) / N.
extern "C" __global__ void softmax_ce(const float* __restrict__ logits, const unsigned char* __restrict__ targets,
                                      int N, int C, float* __restrict__ dlogits, double* __restrict__ sample_loss,
                                      int* __restrict__ sample_correct) {
    GRID_LOOP(i, N) {
        const float* row = logits + i * C;
        const int y = targets[i];
        double mx = -INFINITY;
        int best = 0;
        for (int j = 0; j < C; ++j) {
            mx = fmax(mx, (double)row[j]);
            if (row[j] > row[best]) best = j;
        }
        double sum = 0.0;
        for (int j = 0; j < C; ++j) sum += exp((double)row[j] - mx);
        sample_loss[i] = log(sum) + mx - (double)row[y];
        sample_correct[i] = best == y ? 1 : 0;
        for (int j = 0; j < C; ++j) {
            double p = exp((double)row[j] - mx) / sum;
            dlogits[i * C + j] = (float)((p - (j == y ? 1.0 : 0.0)) / (double)N);
        }
    }
}

// One block of RED_THREADS: *loss = mean of sample_loss, *correct = sum of sample_correct.
// The trainer points these at the batch's slot in per-epoch arrays, so nothing is copied to the
// host per batch.
extern "C" __global__ void __launch_bounds__(RED_THREADS) ce_reduce(const double* __restrict__ sample_loss,
                                                                    const int* __restrict__ sample_correct, int N,
                                                                    double* __restrict__ loss, int* __restrict__ correct) {
    __shared__ double sh[RED_THREADS];
    double s = 0.0, c = 0.0;
    for (int i = threadIdx.x; i < N; i += RED_THREADS) {
        s += sample_loss[i];
        c += (double)sample_correct[i];
    }
    s = block_sum(s, sh);
    c = block_sum(c, sh);
    if (threadIdx.x == 0) {
        *loss = s / (double)N;
        *correct = (int)c;
    }
}

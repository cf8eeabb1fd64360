// Batch assembly on the device: the whole data set lives there as bytes; a batch is gathered
// through the epoch's permutation and normalised as mnist::normalize does,
// (p / 255 - mean) / std in f32 (IEEE division: same bits as the CPU).
#include "common.cuh"

// out [nb, pixels] (= channel-major [1, nb, H, W]) and out_labels [nb] from the images
// order[start .. start + nb).
extern "C" __global__ void gather_batch(const unsigned char* __restrict__ images,
                                        const unsigned char* __restrict__ labels,
                                        const unsigned int* __restrict__ order, long long start, int nb, int pixels,
                                        float mean, float std_, float* __restrict__ out,
                                        unsigned char* __restrict__ out_labels) {
    GRID_LOOP(e, (long long)nb * pixels) {
        int b = (int)(e / pixels), p = (int)(e % pixels);
        long long src = order[start + b];
        out[e] = __fdiv_rn(__fsub_rn(__fdiv_rn((float)images[src * pixels + p], 255.f), mean), std_);
        if (p == 0) out_labels[b] = labels[src];
    }
}

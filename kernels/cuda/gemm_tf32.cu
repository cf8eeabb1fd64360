// C = alpha * op(A) op(B) + beta * C + bias[row] on the tensor cores in TF32 (opt-in,
// LSOFTMAX_GPU_GEMM=tf32), with the arguments and split-K scheme of gemm.cu: the operands are
// rounded to TF32 (10-bit mantissa, to nearest) as they are staged in shared memory, products
// are exact and sums fp32. 64 x 128 tile per block, 8 warps of 32 x 32 (2 x 2 WMMA 16x16x8
// fragments), 16-deep double-buffered stages. Launch with 256 threads and grid (ceil(N/128),
// ceil(M/64), splits); split-K chunks must be multiples of 16. A module of its own, so that the
// fp32 kernels load even on a driver that would refuse these.
#include "common.cuh"
#include "gemm_tiles.cuh"
#ifdef __CUDACC__
#include <mma.h>
#endif

#define TM 64
#define TN 128
#define TK 16
#define TA_LD (TK + 8)  // As[m][k] row stride: a multiple of 8 floats keeps WMMA pointers 32-byte aligned
#define TB_LD (TN + 8)  // Bs[k][n]
#define TC_LD (TN + 4)  // Cs[m][n], the epilogue's staging (it reuses the stages' memory)

template <bool TA, bool TB>
__device__ __forceinline__ void sgemm_tf32_body(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                int lda, const float* __restrict__ B, int ldb, float beta,
                                                float* __restrict__ C, int ldc, const float* __restrict__ bias,
                                                int kchunk, long long split_stride) {
    using namespace nvcuda;
    // 2 stages of As (TM x TA_LD) and Bs (TK x TB_LD), or, after the main loop, Cs (TM x TC_LD).
    __shared__ __align__(32) float smem[TM * TC_LD];
    float* const As = smem;
    float* const Bs = smem + 2 * TM * TA_LD;
    const int tid = threadIdx.x, warp = tid / 32;
    const int wm = (warp / 4) * 32, wn = (warp % 4) * 32;
    const int m0 = blockIdx.y * TM, n0 = blockIdx.x * TN;
    const KSplit ks = k_split(K, kchunk, TK);
    C += (long long)blockIdx.z * split_stride;
    Stager<TM, TN, TK, TA, TB> st(M, N, A, lda, B, ldb, m0, n0, ks);

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

    // Staged as As[m][k] and Bs[k][n], rounded to TF32.
    auto stash = [&](int buf) {
        float* as = As + buf * TM * TA_LD;
        float* bs = Bs + buf * TK * TB_LD;
#pragma unroll
        for (int l = 0; l < st.EA; ++l) as[st.am(l) * TA_LD + st.ak(l)] = wmma::__float_to_tf32(st.ra[l]);
#pragma unroll
        for (int l = 0; l < st.EB; ++l) bs[st.bk(l) * TB_LD + st.bn(l)] = wmma::__float_to_tf32(st.rb[l]);
    };
    auto compute = [&](int cur) {
        const float* as = As + cur * TM * TA_LD;
        const float* bs = Bs + cur * TK * TB_LD;
#pragma unroll
        for (int k8 = 0; k8 < TK; k8 += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], as + (wm + 16 * i) * TA_LD + k8, TA_LD);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], bs + k8 * TB_LD + wn + 16 * j, TB_LD);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
    };
    double_buffered(ks.stages, st, stash, compute);

    // Every warp has passed the loop's last barrier: the stages' memory becomes Cs.
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(smem + (wm + 16 * i) * TC_LD + wn + 16 * j, acc[i][j], TC_LD, wmma::mem_row_major);
    __syncthreads();
#pragma unroll 4
    for (int l = 0; l < TM * TN / 256; ++l) {
        int e = tid + l * 256;
        int r = e / TN, cc = e % TN;
        int gm = m0 + r, gn = n0 + cc;
        if (gm >= M || gn >= N) continue;
        store_c(C, ldc, gm, gn, smem[r * TC_LD + cc], alpha, beta, bias);
    }
}

extern "C" __global__ void __launch_bounds__(256) sgemm_tf32_nn(SGEMM_ARGS) { sgemm_tf32_body<false, false>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256) sgemm_tf32_nt(SGEMM_ARGS) { sgemm_tf32_body<false, true>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256) sgemm_tf32_tn(SGEMM_ARGS) { sgemm_tf32_body<true, false>(SGEMM_PASS); }

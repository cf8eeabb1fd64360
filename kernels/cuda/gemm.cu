// Tiled fp32 SGEMM (no tensor cores, no TF32): C = alpha * op(A) op(B) + beta * C + bias[row],
// all row-major with leading dimensions. op(A) is M x K, op(B) is K x N.
//
//   sgemm_nn: A is M x K,  B is K x N
//   sgemm_nt: A is M x K,  B is stored N x K (op(B) = B^T)
//   sgemm_tn: A is stored K x M (op(A) = A^T), B is K x N
//
// Launch with 256 threads and grid (ceil(N/64), ceil(M/64), splits). With splits > 1, block z
// sums K in [z*kchunk, (z+1)*kchunk) and writes its partial product to C + z*split_stride
// (use alpha 1, beta 0, no bias, ldc N), and gemm_splitk_reduce adds the partials in order.
// `bias` may be null; C is not read when beta == 0.
//
// sgemm_wide_{nn,nt,tn} compute the same with a 64 x 256 tile per block (256 threads, 8 x 8
// outputs each, 8-deep double-buffered shared stages, 128-bit shared loads): 4 shared loads per
// 64 FMAs instead of 8 per 16. Launch with 256 threads and grid (ceil(N/256), ceil(M/64),
// splits); split-K chunks must be multiples of 8. Meant for the convolutions' large products
// (N = batch x pixels); the 64 x 64 kernels stay for small or narrow ones.
//
// sgemm_tf32_{nn,nt,tn} (opt-in) compute it on the tensor cores in TF32: the operands are
// rounded to TF32 (10-bit mantissa, to nearest) as they are staged in shared memory, products
// are exact and sums fp32. 64 x 128 tile per block, 8 warps of 32 x 32 (2 x 2 WMMA 16x16x8
// fragments), 16-deep double-buffered stages. Launch with 256 threads and grid (ceil(N/128),
// ceil(M/64), splits); split-K chunks must be multiples of 16.
#include "common.cuh"
#ifdef __CUDACC__
#include <mma.h>
#endif

#define BM 64
#define BN 64
#define BK 16

template <bool TA, bool TB>
__device__ __forceinline__ void sgemm_body(int M, int N, int K, float alpha, const float* __restrict__ A,
                                           int lda, const float* __restrict__ B, int ldb, float beta,
                                           float* __restrict__ C, int ldc, const float* __restrict__ bias,
                                           int kchunk, long long split_stride) {
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int kbeg = blockIdx.z * kchunk;
    const int kend = min(K, kbeg + kchunk);
    C += (long long)blockIdx.z * split_stride;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

    for (int k0 = kbeg; k0 < kend; k0 += BK) {
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            int e = tid + l * 256;
            int mm, kk;
            if (TA) { mm = e % BM; kk = e / BM; } else { kk = e % BK; mm = e / BK; }
            int gm = m0 + mm, gk = k0 + kk;
            float v = 0.f;
            if (gm < M && gk < kend) v = TA ? A[(long long)gk * lda + gm] : A[(long long)gm * lda + gk];
            As[kk][mm] = v;
        }
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            int e = tid + l * 256;
            int nn, kk;
            if (TB) { kk = e % BK; nn = e / BK; } else { nn = e % BN; kk = e / BN; }
            int gn = n0 + nn, gk = k0 + kk;
            float v = 0.f;
            if (gn < N && gk < kend) v = TB ? B[(long long)gn * ldb + gk] : B[(long long)gk * ldb + gn];
            Bs[kk][nn] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        int gm = m0 + ty * 4 + i;
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int gn = n0 + tx * 4 + j;
            if (gn >= N) continue;
            float* c = C + (long long)gm * ldc + gn;
            float v = alpha * acc[i][j];
            if (beta != 0.f) v += beta * *c;
            if (bias) v += bias[gm];
            *c = v;
        }
    }
}

#define SGEMM_ARGS                                                                            \
    int M, int N, int K, float alpha, const float* __restrict__ A, int lda, const float* __restrict__ B, \
        int ldb, float beta, float* __restrict__ C, int ldc, const float* __restrict__ bias, int kchunk,   \
        long long split_stride
#define SGEMM_PASS M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, kchunk, split_stride

extern "C" __global__ void __launch_bounds__(256) sgemm_nn(SGEMM_ARGS) { sgemm_body<false, false>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256) sgemm_nt(SGEMM_ARGS) { sgemm_body<false, true>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256) sgemm_tn(SGEMM_ARGS) { sgemm_body<true, false>(SGEMM_PASS); }

#define WM 64
#define WN 256
#define WK 8

// Loads 4 consecutive floats (16-byte aligned in shared memory) into r.
__device__ __forceinline__ void lds4(const float* p, float* r) {
#ifdef __CUDA_ARCH__
    float4 v = *reinterpret_cast<const float4*>(p);
    r[0] = v.x;
    r[1] = v.y;
    r[2] = v.z;
    r[3] = v.w;
#else
    r[0] = p[0];
    r[1] = p[1];
    r[2] = p[2];
    r[3] = p[3];
#endif
}

// Thread tid holds rows ty*4 + i and 32 + ty*4 + i (i < 4) of the tile, ty = tid / 32 (one per
// warp, so a warp's A reads are one broadcast), and columns tx*4 + j and 128 + tx*4 + j, tx =
// tid % 32 (a warp reads 512 contiguous bytes of B per half).
template <bool TA, bool TB>
__device__ __forceinline__ void sgemm_wide_body(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                int lda, const float* __restrict__ B, int ldb, float beta,
                                                float* __restrict__ C, int ldc, const float* __restrict__ bias,
                                                int kchunk, long long split_stride) {
    __shared__ __align__(16) float As[2][WK][WM + 4];
    __shared__ __align__(16) float Bs[2][WK][WN + 4];
    const int tid = threadIdx.x;
    const int tx = tid % 32, ty = tid / 32;
    const int m0 = blockIdx.y * WM, n0 = blockIdx.x * WN;
    const int kbeg = blockIdx.z * kchunk;
    const int kend = min(K, kbeg + kchunk);
    const int ntiles = kend > kbeg ? (kend - kbeg + WK - 1) / WK : 0;
    C += (long long)blockIdx.z * split_stride;

    // This thread's share of a stage: 2 elements of the A tile, 8 of the B tile, at fixed tile
    // positions (ak[l], am[l]) and (bk[l], bn[l]). Global reads run along the stored rows
    // (coalesced); out-of-range elements are zeros. The pointers advance one stage at a time.
    float ra[2], rb[8];
    const int a_k = TA ? tid / WM : tid % WK;       // + 4 l when TA
    const int a_m = TA ? tid % WM : tid / WK;       // + 32 l when !TA
    const int b_k = TB ? tid % WK : 0;              // + l when !TB
    const int b_n = TB ? tid / WK : tid;            // + 32 l when TB
    const float* pa = TA ? A + (long long)(kbeg + a_k) * lda + m0 + a_m : A + (long long)(m0 + a_m) * lda + kbeg + a_k;
    const float* pb = TB ? B + (long long)(n0 + b_n) * ldb + kbeg + b_k : B + (long long)(kbeg + b_k) * ldb + n0 + b_n;
    const long long a_step = TA ? (long long)WK * lda : WK, b_step = TB ? WK : (long long)WK * ldb;
    auto fetch = [&](int k0) {  // k0: the stage's first k, relative to kbeg
#pragma unroll
        for (int l = 0; l < 2; ++l) {
            int gm = m0 + a_m + (TA ? 0 : 32 * l), gk = kbeg + k0 + a_k + (TA ? 4 * l : 0);
            ra[l] = (gm < M && gk < kend) ? pa[TA ? 4LL * l * lda : 32LL * l * lda] : 0.f;
        }
#pragma unroll
        for (int l = 0; l < 8; ++l) {
            int gn = n0 + b_n + (TB ? 32 * l : 0), gk = kbeg + k0 + b_k + (TB ? 0 : l);
            rb[l] = (gn < N && gk < kend) ? pb[TB ? 32LL * l * ldb : (long long)l * ldb] : 0.f;
        }
        pa += a_step;
        pb += b_step;
    };
    auto stash = [&](int buf) {
#pragma unroll
        for (int l = 0; l < 2; ++l) As[buf][a_k + (TA ? 4 * l : 0)][a_m + (TA ? 0 : 32 * l)] = ra[l];
#pragma unroll
        for (int l = 0; l < 8; ++l) Bs[buf][b_k + (TB ? 0 : l)][b_n + (TB ? 32 * l : 0)] = rb[l];
    };

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

    fetch(0);
    stash(0);
    __syncthreads();
    for (int t = 0; t < ntiles; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < ntiles;
        if (more) fetch((t + 1) * WK);
#pragma unroll
        for (int kk = 0; kk < WK; ++kk) {
            float a[8], b[8];
            lds4(&As[cur][kk][ty * 4], a);
            lds4(&As[cur][kk][32 + ty * 4], a + 4);
            lds4(&Bs[cur][kk][tx * 4], b);
            lds4(&Bs[cur][kk][128 + tx * 4], b + 4);
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
        }
        // The other buffer was last read before the previous barrier: safe to refill.
        if (more) stash(cur ^ 1);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 8; ++i) {
        int gm = m0 + (i < 4 ? ty * 4 + i : 32 + ty * 4 + i - 4);
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            int gn = n0 + (j < 4 ? tx * 4 + j : 128 + tx * 4 + j - 4);
            if (gn >= N) continue;
            float* c = C + (long long)gm * ldc + gn;
            float v = alpha * acc[i][j];
            if (beta != 0.f) v += beta * *c;
            if (bias) v += bias[gm];
            *c = v;
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 2) sgemm_wide_nn(SGEMM_ARGS) { sgemm_wide_body<false, false>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256, 2) sgemm_wide_nt(SGEMM_ARGS) { sgemm_wide_body<false, true>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256, 2) sgemm_wide_tn(SGEMM_ARGS) { sgemm_wide_body<true, false>(SGEMM_PASS); }

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
    const int kbeg = blockIdx.z * kchunk;
    const int kend = min(K, kbeg + kchunk);
    const int ntiles = kend > kbeg ? (kend - kbeg + TK - 1) / TK : 0;
    C += (long long)blockIdx.z * split_stride;

    // This thread's share of a stage: 4 elements of the A tile, 8 of the B tile, read along
    // the stored rows (coalesced); out-of-range elements are zeros.
    float ra[4], rb[8];
    const int a_k = TA ? tid / TM : tid % TK;   // + 4 l when TA
    const int a_m = TA ? tid % TM : tid / TK;   // + 16 l when !TA
    const int b_k = TB ? tid % TK : tid / TN;   // + 2 l when !TB
    const int b_n = TB ? tid / TK : tid % TN;   // + 16 l when TB
    const float* pa = TA ? A + (long long)(kbeg + a_k) * lda + m0 + a_m : A + (long long)(m0 + a_m) * lda + kbeg + a_k;
    const float* pb = TB ? B + (long long)(n0 + b_n) * ldb + kbeg + b_k : B + (long long)(kbeg + b_k) * ldb + n0 + b_n;
    const long long a_step = TA ? (long long)TK * lda : TK, b_step = TB ? TK : (long long)TK * ldb;
    auto fetch = [&](int k0) {  // k0: the stage's first k, relative to kbeg
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            int gm = m0 + a_m + (TA ? 0 : 16 * l), gk = kbeg + k0 + a_k + (TA ? 4 * l : 0);
            ra[l] = (gm < M && gk < kend) ? pa[TA ? 4LL * l * lda : 16LL * l * lda] : 0.f;
        }
#pragma unroll
        for (int l = 0; l < 8; ++l) {
            int gn = n0 + b_n + (TB ? 16 * l : 0), gk = kbeg + k0 + b_k + (TB ? 0 : 2 * l);
            rb[l] = (gn < N && gk < kend) ? pb[TB ? 16LL * l * ldb : 2LL * l * ldb] : 0.f;
        }
        pa += a_step;
        pb += b_step;
    };
    auto stash = [&](int buf) {
        float* as = As + buf * TM * TA_LD;
        float* bs = Bs + buf * TK * TB_LD;
#pragma unroll
        for (int l = 0; l < 4; ++l)
            as[(a_m + (TA ? 0 : 16 * l)) * TA_LD + a_k + (TA ? 4 * l : 0)] = wmma::__float_to_tf32(ra[l]);
#pragma unroll
        for (int l = 0; l < 8; ++l)
            bs[(b_k + (TB ? 0 : 2 * l)) * TB_LD + b_n + (TB ? 16 * l : 0)] = wmma::__float_to_tf32(rb[l]);
    };

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

    fetch(0);
    stash(0);
    __syncthreads();
    for (int t = 0; t < ntiles; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < ntiles;
        if (more) fetch((t + 1) * TK);
        const float* as = As + cur * TM * TA_LD;
        const float* bs = Bs + cur * TK * TB_LD;
#pragma unroll
        for (int ks = 0; ks < TK; ks += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], as + (wm + 16 * i) * TA_LD + ks, TA_LD);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], bs + ks * TB_LD + wn + 16 * j, TB_LD);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        // The other stage was last read before the previous barrier: safe to refill.
        if (more) stash(cur ^ 1);
        __syncthreads();
    }

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
        float* c = C + (long long)gm * ldc + gn;
        float v = alpha * smem[r * TC_LD + cc];
        if (beta != 0.f) v += beta * *c;
        if (bias) v += bias[gm];
        *c = v;
    }
}

extern "C" __global__ void __launch_bounds__(256) sgemm_tf32_nn(SGEMM_ARGS) { sgemm_tf32_body<false, false>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256) sgemm_tf32_nt(SGEMM_ARGS) { sgemm_tf32_body<false, true>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256) sgemm_tf32_tn(SGEMM_ARGS) { sgemm_tf32_body<true, false>(SGEMM_PASS); }

// C[i, j] = alpha * sum_s P[s][i][j] + beta * C[i, j] + bias[i], partials P of M x N each,
// summed in split order (deterministic).
extern "C" __global__ void gemm_splitk_reduce(int M, int N, int splits, const float* __restrict__ P,
                                              float alpha, float beta, float* __restrict__ C, int ldc,
                                              const float* __restrict__ bias) {
    long long mn = (long long)M * N;
    GRID_LOOP(e, mn) {
        int i = (int)(e / N), j = (int)(e % N);
        float s = 0.f;
        for (int z = 0; z < splits; ++z) s += P[z * mn + e];
        float* c = C + (long long)i * ldc + j;
        float v = alpha * s;
        if (beta != 0.f) v += beta * *c;
        if (bias) v += bias[i];
        *c = v;
    }
}

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

// The k range of this block's split (blockIdx.z) and its number of bk-deep stages.
struct KSplit {
    int beg, end, stages;
};
__device__ __forceinline__ KSplit k_split(int K, int kchunk, int bk) {
    KSplit s;
    s.beg = blockIdx.z * kchunk;
    s.end = min(K, s.beg + kchunk);
    s.stages = s.end > s.beg ? (s.end - s.beg + bk - 1) / bk : 0;
    return s;
}

// One thread's share (of 256) of staging a BM_ x BK_ tile of op(A) and a BK_ x BN_ tile of
// op(B): EA elements of A, at tile positions (am(l), ak(l)), and EB of B, at (bk(l), bn(l)).
// fetch() reads the next stage into registers along the stored rows (coalesced; zeros out of
// range) and advances to the following one; the kernel then stashes ra/rb in its own layout.
template <int BM_, int BN_, int BK_, bool TA, bool TB>
struct Stager {
    static constexpr int EA = BM_ * BK_ / 256, EB = BK_ * BN_ / 256;
    static constexpr int AM_STEP = TA ? 0 : 256 / BK_, AK_STEP = TA ? 256 / BM_ : 0;
    static constexpr int BK_STEP = TB ? 0 : 256 / BN_, BN_STEP = TB ? 256 / BK_ : 0;
    const int M, N, m0, n0, lda, ldb;
    const KSplit ks;
    const int a_m, a_k, b_k, b_n;
    const float* pa;
    const float* pb;
    int k0 = 0;  // the next stage's first k, relative to ks.beg
    float ra[EA], rb[EB];

    __device__ __forceinline__ Stager(int M_, int N_, const float* A, int lda_, const float* B, int ldb_, int m0_,
                                      int n0_, KSplit ks_)
        : M(M_), N(N_), m0(m0_), n0(n0_), lda(lda_), ldb(ldb_), ks(ks_),
          a_m(TA ? threadIdx.x % BM_ : threadIdx.x / BK_), a_k(TA ? threadIdx.x / BM_ : threadIdx.x % BK_),
          b_k(TB ? threadIdx.x % BK_ : threadIdx.x / BN_), b_n(TB ? threadIdx.x / BK_ : threadIdx.x % BN_),
          pa(TA ? A + (long long)(ks_.beg + a_k) * lda_ + m0_ + a_m : A + (long long)(m0_ + a_m) * lda_ + ks_.beg + a_k),
          pb(TB ? B + (long long)(n0_ + b_n) * ldb_ + ks_.beg + b_k : B + (long long)(ks_.beg + b_k) * ldb_ + n0_ + b_n) {}

    __device__ __forceinline__ int am(int l) const { return a_m + AM_STEP * l; }
    __device__ __forceinline__ int ak(int l) const { return a_k + AK_STEP * l; }
    __device__ __forceinline__ int bk(int l) const { return b_k + BK_STEP * l; }
    __device__ __forceinline__ int bn(int l) const { return b_n + BN_STEP * l; }

    __device__ __forceinline__ void fetch() {
#pragma unroll
        for (int l = 0; l < EA; ++l) {
            int gm = m0 + am(l), gk = ks.beg + k0 + ak(l);
            ra[l] = (gm < M && gk < ks.end) ? pa[TA ? (long long)AK_STEP * l * lda : (long long)AM_STEP * l * lda] : 0.f;
        }
#pragma unroll
        for (int l = 0; l < EB; ++l) {
            int gn = n0 + bn(l), gk = ks.beg + k0 + bk(l);
            rb[l] = (gn < N && gk < ks.end) ? pb[TB ? (long long)BN_STEP * l * ldb : (long long)BK_STEP * l * ldb] : 0.f;
        }
        k0 += BK_;
        pa += TA ? (long long)BK_ * lda : BK_;
        pb += TB ? BK_ : (long long)BK_ * ldb;
    }
};

// The double-buffered main loop: stage s is multiplied (compute(buf)) from shared buffer
// s % 2 while stage s + 1 is fetched into registers, then stashed into the other buffer (last
// read before the previous barrier, so safe to refill); one barrier per stage. On return every
// thread has passed the last barrier, so the buffers may be reused.
template <class Stage, class Stash, class Compute>
__device__ __forceinline__ void double_buffered(int stages, Stage& st, Stash stash, Compute compute) {
    st.fetch();
    stash(0);
    __syncthreads();
    for (int t = 0; t < stages; ++t) {
        const int cur = t & 1;
        const bool more = t + 1 < stages;
        if (more) st.fetch();
        compute(cur);
        if (more) stash(cur ^ 1);
        __syncthreads();
    }
}

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
    const KSplit ks = k_split(K, kchunk, WK);
    C += (long long)blockIdx.z * split_stride;
    Stager<WM, WN, WK, TA, TB> st(M, N, A, lda, B, ldb, m0, n0, ks);

    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

    auto stash = [&](int buf) {
#pragma unroll
        for (int l = 0; l < st.EA; ++l) As[buf][st.ak(l)][st.am(l)] = st.ra[l];
#pragma unroll
        for (int l = 0; l < st.EB; ++l) Bs[buf][st.bk(l)][st.bn(l)] = st.rb[l];
    };
    auto compute = [&](int cur) {
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
    };
    double_buffered(ks.stages, st, stash, compute);

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

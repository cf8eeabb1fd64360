// What the tiled SGEMM kernels (gemm.cu, gemm_tf32.cu) share: their argument list, the store
// of a finished element, the k split of a block, one thread's share of staging a tile, and the
// double-buffered main loop.
#pragma once
#include "common.cuh"

#define SGEMM_ARGS                                                                            \
    int M, int N, int K, float alpha, const float* __restrict__ A, int lda, const float* __restrict__ B, \
        int ldb, float beta, float* __restrict__ C, int ldc, const float* __restrict__ bias, int kchunk,   \
        long long split_stride
#define SGEMM_PASS M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, kchunk, split_stride

// Writes one finished element of C: alpha * acc + beta * C[gm, gn] (C not read when beta is 0)
// + bias[gm] (when bias is not null). Every SGEMM kernel and the split-K reduction end here.
__device__ __forceinline__ void store_c(float* C, int ldc, int gm, int gn, float acc, float alpha, float beta,
                                        const float* bias) {
    float* c = C + (long long)gm * ldc + gn;
    float v = alpha * acc;
    if (beta != 0.f) v += beta * *c;
    if (bias) v += bias[gm];
    *c = v;
}

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


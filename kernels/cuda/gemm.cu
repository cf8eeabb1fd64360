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
// The TF32 tensor-core tiles are in gemm_tf32.cu (a module of their own: the fp32 kernels load
// even where it would not).
#include "common.cuh"
#include "gemm_tiles.cuh"

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
            store_c(C, ldc, gm, gn, acc[i][j], alpha, beta, bias);
        }
    }
}

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
    emu_check_aligned(p, 16, "lds4 (a float4 load from shared memory)");
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
            store_c(C, ldc, gm, gn, acc[i][j], alpha, beta, bias);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 2) sgemm_wide_nn(SGEMM_ARGS) { sgemm_wide_body<false, false>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256, 2) sgemm_wide_nt(SGEMM_ARGS) { sgemm_wide_body<false, true>(SGEMM_PASS); }
extern "C" __global__ void __launch_bounds__(256, 2) sgemm_wide_tn(SGEMM_ARGS) { sgemm_wide_body<true, false>(SGEMM_PASS); }

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
        store_c(C, ldc, i, j, s, alpha, beta, bias);
    }
}

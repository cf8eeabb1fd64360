// CPU emulation of the few CUDA C features the trainer's kernels use, so that the very same
// kernels/cuda/*.cu sources compile as C++ (kernels.cpp) for the fake driver (fake_cuda.cpp). Blocks run one
// after another on one OS thread; the threads of a block are fibers (ucontext) that the
// scheduler resumes round-robin (in index order, or reversed under FAKE_CUDA_ORDER=reverse;
// see fake_cuda.cpp), each running to its next __syncthreads, so every thread
// finishes a barrier phase before any starts the next. `__shared__` variables are function
// statics (one block at a time uses them), set to NaN before each block (see kernels.cpp).
#pragma once
#include <ucontext.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <math.h>

struct emu_dim3 {
    unsigned x = 1, y = 1, z = 1;
};
extern thread_local emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
// The running fiber and the scheduler (null outside a block that synchronises).
extern thread_local ucontext_t* emu_self;
extern thread_local ucontext_t* emu_sched;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

// A kernel that synchronises must be marked so in kernels.cpp's table, or its threads run
// one after another and the barrier would silently do nothing.
inline void __syncthreads() {
    if (!emu_self) {
        std::fprintf(stderr, "fake libcuda: __syncthreads in a kernel not marked as synchronising\n");
        std::abort();
    }
    swapcontext(emu_self, emu_sched);
}
inline int min(int a, int b) { return a < b ? a : b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

// A vector access a GPU faults on ("misaligned address") unless `p` is `bytes`-aligned: the
// emulation's scalar stand-ins for such accesses check it.
inline void emu_check_aligned(const void* p, unsigned bytes, const char* what) {
    if (reinterpret_cast<uintptr_t>(p) % bytes != 0) {
        std::fprintf(stderr, "fake libcuda: %s at %p, not %u-byte aligned\n", what, p, bytes);
        std::abort();
    }
}

// WMMA (TF32) for sgemm_tf32_*. The fragment layout is opaque in CUDA, so here every thread
// holds the whole tile: loads read all of it, mma_sync computes all of it (k in order, fp32
// sums of exact products), stores write all of it (the same values from every thread of the
// warp). The alignment rules of the real API (32-byte pointers, ldm a multiple of 4 floats)
// are enforced, so a kernel that breaks them fails here too.
#include <cstdio>
#include <cstdlib>
#include <cstring>
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K>
struct tile_shape {
    static constexpr int rows = M, cols = N;  // accumulator
};
template <int M, int N, int K>
struct tile_shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct tile_shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr int rows = tile_shape<Use, M, N, K>::rows, cols = tile_shape<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols;
    float x[rows * cols];
};

inline void emu_check_wmma_ptr(const void* p, unsigned ldm, const char* what) {
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || ldm % 4 != 0) {
        fprintf(stderr, "emulated WMMA: %s with a pointer not 32-byte aligned or ldm %u not a multiple of 4\n", what,
                ldm);
        abort();
    }
}

// Round to TF32 (10-bit mantissa), to nearest with ties away from zero (cvt.rna.tf32.f32).
inline float __float_to_tf32(float v) {
    if (!std::isfinite(v)) return v;
    uint32_t b;
    memcpy(&b, &v, 4);
    b = (b + 0x1000u) & ~0x1FFFu;
    memcpy(&v, &b, 4);
    return v;
}

template <class Use, int M, int N, int K, class T, class L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

template <class Use, int M, int N, int K, class T>
inline void load_matrix_sync(fragment<Use, M, N, K, T, row_major>& f, const float* p, unsigned ldm) {
    emu_check_wmma_ptr(p, ldm, "load_matrix_sync");
    for (int r = 0; r < f.rows; ++r)
        for (int c = 0; c < f.cols; ++c) f.x[r * f.cols + c] = p[(long long)r * ldm + c];
}

template <int M, int N, int K>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, precision::tf32, row_major>& a,
                     const fragment<matrix_b, M, N, K, precision::tf32, row_major>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
    float out[M * N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; ++k) s += a.x[i * K + k] * b.x[k * N + j];
            out[i * N + j] = s;
        }
    memcpy(d.x, out, sizeof out);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
    emu_check_wmma_ptr(p, ldm, "store_matrix_sync");
    if (layout != mem_row_major) abort();
    for (int r = 0; r < M; ++r)
        for (int c = 0; c < N; ++c) p[(long long)r * ldm + c] = f.x[r * N + c];
}
}  // namespace wmma
}  // namespace nvcuda

// The trainer's CUDA kernels (kernels/cuda/*.cu) compiled as C++ with emu.h, and their table
// for the fake driver (fake_cuda.cpp).
//
// This file's zero-initialised data is the kernels' `__shared__` arrays (function statics, see
// emu.h) and nothing else: CUDA allows no other statics in device code, and the table below is
// constant. scripts/cuda_emu.sh checks that, then renames the object's .bss to emu_shared, which
// the driver fills with NaN before every block, as a GPU gives a block shared memory holding
// whatever was there before. The unnamed namespace gives the kernels' templates internal
// linkage, so their statics land in .bss too rather than in COMDAT sections of their own.
#include "emu.h"
#include "kernels.h"

namespace {
#include "../cuda/batchnorm.cu"
#include "../cuda/conv.cu"
#include "../cuda/gather.cu"
#include "../cuda/gemm.cu"
#include "../cuda/gemm_tf32.cu"
#include "../cuda/layout.cu"
#include "../cuda/loss.cu"
#include "../cuda/lsoftmax.cu"
#include "../cuda/maxpool.cu"
#include "../cuda/prelu.cu"
#include "../cuda/sgd.cu"

}  // namespace

const EmuKernel emu_kernels[] = {
#define K EMU_KERNEL
    K(sgemm_nn, true), K(sgemm_nt, true), K(sgemm_tn, true), K(gemm_splitk_reduce, false),
    K(sgemm_wide_nn, true), K(sgemm_wide_nt, true), K(sgemm_wide_tn, true),
    K(sgemm_tf32_nn, true), K(sgemm_tf32_nt, true), K(sgemm_tf32_tn, true),
    K(im2col, false), K(col2im, false),
    K(flatten_forward, false), K(flatten_backward, false), K(row_sum_partial, true),
    K(row_sum_finish, false), K(bn_sum_partial, true), K(bn_mean_finish, false),
    K(bn_stats_finish, false), K(bn_stats_eval, false), K(bn_apply, false),
    K(bn_backward_partial, true), K(bn_backward_finish, false), K(bn_backward_dx, false),
    K(prelu_forward, false), K(prelu_backward_partial, true), K(prelu_backward_finish, false),
    K(maxpool_forward, false), K(maxpool_backward, false),
    K(lsoftmax_forward, true), K(lsoftmax_backward_coef, false), K(lsoftmax_backward_dw, false),
    K(lsoftmax_backward_dx, false),
    K(softmax_ce, false), K(ce_reduce, true),
    K(sgd_step, false), K(gather_batch, false),
#undef K
};
const unsigned emu_kernel_count = sizeof emu_kernels / sizeof emu_kernels[0];

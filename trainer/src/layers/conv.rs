//! 2-d convolution (square kernel, zero padding, stride 1, bias) by im2col + SGEMM, on
//! channel-major `[C, N, H, W]` tensors; on AVX-512 CPUs the larger layers instead take the
//! implicit-GEMM path of [`implicit`], which reads a zero-padded copy of the input in place
//! of the unfolded matrix and multiplies with the kernels of [`crate::gemm512`].
//!
//! The batch is cut into chunks of whole images ([`batch_chunks`]); each rayon task unfolds its
//! chunk into a thread-local column buffer and multiplies it by the weights with a single-threaded
//! SGEMM. The chunking depends only on the shapes, and per-chunk weight gradients are summed in
//! chunk order, so results are the same on any number of threads.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::gemm::{gemm_raw, Mat};
use crate::gemm512;
use crate::par::{batch_chunks, SharedMut};
use crate::reduce;
use crate::rng::Rng;
use crate::tensor::Tensor;

mod implicit;

/// Columns (images x output pixels) per chunk: large enough for an efficient SGEMM, small enough
/// that the column buffer (up to 576 x 512 floats) stays near the core's L2 cache. Measured on
/// the 2-core dev machine, `paper` at batch 256: 256 -> 115, 512 -> 118, 1024 -> 110,
/// 2048 -> 98 images/s.
const TARGET_COLS: usize = 512;

/// Input channels up to which the input gradient is computed by direct scatter-adds
/// ([`Conv2d::scatter_dx`]) instead of im2col + SGEMM. With one input channel (`paper`'s first
/// convolution) that SGEMM has a single output row, and unfolding the whole output gradient
/// for it (`cout * k * k` rows) cost 3 % of a training step.
const SCATTER_DX_MAX_CIN: usize = 4;

/// Fewest kernel taps (`cin * k * k`) for the implicit-GEMM path (see [`Conv2d::implicit`]).
const IMPLICIT_MIN_TAPS: usize = 64;

/// Fewest output pixels per image for the implicit-GEMM path.
const IMPLICIT_MIN_PLANE: usize = 100;

/// Number of groups whose weight-gradient partial sums are added in a fixed order.
const WEIGHT_GRAD_GROUPS: usize = 8;

thread_local! {
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static AUX: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's column buffer, at least `len` long. The buffer only ever grows, so
/// switching between layers of different sizes costs no reallocation or re-zeroing.
fn with_cols<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLS.with(|cols| {
        let mut cols = cols.borrow_mut();
        if cols.len() < len {
            cols.resize(len, 0.0);
        }
        f(&mut cols[..len])
    })
}

/// Like [`with_cols`], with a second buffer at least `aux_len` long beside the first.
fn with_cols_aux<R>(len: usize, aux_len: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    AUX.with(|aux| {
        let mut aux = aux.borrow_mut();
        if aux.len() < aux_len {
            aux.resize(aux_len, 0.0);
        }
        with_cols(len, |cols| f(cols, &mut aux[..aux_len]))
    })
}

/// Runs `f` on a zero-padded copy of images `n0..n1` of `x` ([`implicit::Padded`]) and on
/// `scratch` more floats, both in this thread's reusable buffers.
fn with_padded<R>(
    x: &Tensor,
    pad: usize,
    (n0, n1): (usize, usize),
    scratch: usize,
    f: impl FnOnce(&implicit::Padded<'_>, &mut [f32]) -> R,
) -> R {
    let len = implicit::padded_len(x.c, n1 - n0, x.h, x.w, pad);
    with_cols_aux(len, scratch, |buf, aux| {
        f(&implicit::Padded::new(x, pad, n0, n1, buf), aux)
    })
}

/// A convolution layer with its parameters, gradients and reusable buffers.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// Zero padding on every border.
    pub pad: usize,
    /// Weights `[cout][cin][k][k]` (PyTorch layout).
    pub weight: Vec<f32>,
    /// Bias `[cout]`.
    pub bias: Vec<f32>,
    /// Gradient of the loss with respect to `weight`, set by `backward`.
    pub dweight: Vec<f32>,
    /// Gradient with respect to `bias`.
    pub dbias: Vec<f32>,
    /// Output of the last forward pass.
    pub out: Tensor,
    /// Gradient with respect to the input, from the last backward pass.
    pub dx: Tensor,
    /// Per-group weight-gradient partial sums, reused across steps.
    partials: Vec<Vec<f32>>,
}

impl Conv2d {
    /// A layer initialised as PyTorch does by default: weights and bias uniform in
    /// `±1/sqrt(cin*k*k)` (Kaiming-uniform with a = sqrt 5).
    pub fn new(cin: usize, cout: usize, k: usize, pad: usize, rng: &mut Rng) -> Self {
        let fan_in = cin * k * k;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weight = (0..cout * fan_in)
            .map(|_| rng.uniform(-bound, bound))
            .collect();
        let bias = (0..cout).map(|_| rng.uniform(-bound, bound)).collect();
        Self {
            cin,
            cout,
            k,
            pad,
            weight,
            bias,
            dweight: vec![0.0; cout * fan_in],
            dbias: vec![0.0; cout],
            out: Tensor::default(),
            dx: Tensor::default(),
            partials: Vec::new(),
        }
    }

    /// Output height and width for an `h x w` input.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (h + 2 * self.pad + 1 - self.k, w + 2 * self.pad + 1 - self.k)
    }

    /// Whether this layer runs on the AVX-512 implicit-GEMM path ([`implicit`]) for an
    /// `ho x wo` output: on AVX-512 CPUs, for kernels with at least [`IMPLICIT_MIN_TAPS`]
    /// taps and outputs of at least [`IMPLICIT_MIN_PLANE`] pixels. Below those, im2col +
    /// OpenBLAS measured as fast or faster (`paper`'s first convolution, with 9 taps, and its
    /// 6x6 layers, where the padding columns are a third of the work).
    fn implicit(&self, ho: usize, wo: usize) -> bool {
        gemm512::enabled() && self.rows() >= IMPLICIT_MIN_TAPS && ho * wo >= IMPLICIT_MIN_PLANE
    }

    fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Computes `out = conv(x) + bias`.
    pub fn forward(&mut self, x: &Tensor) -> &Tensor {
        assert_eq!(x.c, self.cin, "conv input channels");
        let (n, h, w) = (x.n, x.h, x.w);
        let (ho, wo) = self.out_hw(h, w);
        self.out.reset(self.cout, n, ho, wo);
        let plane_o = ho * wo;
        let row_o = n * plane_o;
        let rows = self.rows();
        let out = SharedMut::new(&mut self.out.data);
        let chunks = batch_chunks(n, plane_o, TARGET_COLS);
        let this = &*self;
        if self.implicit(ho, wo) {
            chunks.par_iter().for_each(|&(n0, n1)| {
                let scratch = implicit::convolve_scratch(this.cout, x, this.pad, this.k);
                with_padded(x, this.pad, (n0, n1), scratch, |p, acc| {
                    // SAFETY: this chunk writes only images n0..n1 of `out`; chunks are
                    // disjoint.
                    unsafe {
                        implicit::convolve(
                            p,
                            this.cin,
                            &this.weight,
                            Some(&this.bias),
                            this.cout,
                            this.k,
                            (n0, n1),
                            &out,
                            row_o,
                            acc,
                        );
                    }
                });
            });
            return &self.out;
        }
        chunks.par_iter().for_each(|&(n0, n1)| {
            let ncols = (n1 - n0) * plane_o;
            with_cols(rows * ncols, |cols| {
                im2col(x, this.k, this.pad, n0, n1, cols);
                // SAFETY: this chunk owns columns [n0*plane_o, n1*plane_o) of every output row;
                // chunks are disjoint, so no two tasks touch the same element.
                unsafe {
                    for c in 0..this.cout {
                        out.slice(c * row_o + n0 * plane_o, ncols)
                            .fill(this.bias[c]);
                    }
                    let base = out.slice(n0 * plane_o, 1).as_mut_ptr();
                    gemm_raw(
                        1.0,
                        Mat::new(&this.weight, this.cout, rows),
                        Mat::new(cols, rows, ncols),
                        1.0,
                        base,
                        row_o,
                    );
                }
            });
        });
        &self.out
    }

    /// Given the forward input `x` and `dy = dL/d(out)`, sets `dweight`, `dbias` and, when
    /// `need_dx`, `dx`.
    ///
    /// The input gradient of a stride-1 convolution is itself a convolution: `dy` zero-padded by
    /// `k - 1 - pad` and convolved with the spatially flipped, channel-transposed kernel. Computing
    /// it that way keeps the SGEMM in the same efficient shape as the forward pass
    /// (`K = cout*k*k`) and avoids a scatter-add col2im.
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor, need_dx: bool) {
        let (n, h, w) = (x.n, x.h, x.w);
        let (ho, wo) = self.out_hw(h, w);
        assert_eq!(
            dy.shape(),
            [self.cout, n, ho, wo],
            "conv output gradient shape"
        );
        assert!(self.pad < self.k, "padding must be smaller than the kernel");
        let plane_o = ho * wo;
        let row_o = n * plane_o;
        let rows = self.rows();
        let rows_t = self.cout * self.k * self.k;
        let flipped = if need_dx && self.cin > SCATTER_DX_MAX_CIN {
            self.flipped_weights()
        } else {
            Vec::new()
        };
        if need_dx {
            self.dx.reset(self.cin, n, h, w);
        }
        let dxp = SharedMut::new(&mut self.dx.data);
        let chunks = batch_chunks(n, plane_o.max(h * w), TARGET_COLS);
        // Chunks are split into a fixed number of groups (independent of the thread count); each
        // group accumulates its weight gradient in its own reusable buffer, and the groups are
        // summed in order, so the result is deterministic.
        let groups: Vec<&[(usize, usize)]> = chunks
            .chunks(chunks.len().div_ceil(WEIGHT_GRAD_GROUPS).max(1))
            .collect();
        let mut partials = std::mem::take(&mut self.partials);
        partials.resize_with(groups.len(), Vec::new);
        let this = &*self;
        let pad_t = this.k - 1 - this.pad;
        // The implicit-GEMM path keeps each group's weight gradient transposed, [rows][cout].
        let fast = this.implicit(ho, wo);
        partials
            .par_iter_mut()
            .zip(&groups)
            .for_each(|(dw, group)| {
                dw.clear();
                dw.resize(this.cout * rows, 0.0);
                for &(n0, n1) in group.iter() {
                    let ncols = (n1 - n0) * plane_o;
                    if fast {
                        let scratch = implicit::weight_grad_scratch(this.cout, x, this.pad, this.k);
                        with_padded(x, this.pad, (n0, n1), scratch, |p, dyt| {
                            implicit::weight_grad(p, this.cin, this.k, dy, (n0, n1), dw, dyt);
                        });
                    } else {
                        let dy_rows = &dy.data[n0 * plane_o..];
                        let dy_chunk = Mat::strided(dy_rows, this.cout, ncols, row_o);
                        with_cols(rows * ncols, |cols| {
                            im2col(x, this.k, this.pad, n0, n1, cols);
                            // SAFETY: `dw` is this group's own cout x rows buffer.
                            unsafe {
                                gemm_raw(
                                    1.0,
                                    dy_chunk,
                                    Mat::new(cols, rows, ncols).t(),
                                    1.0,
                                    dw.as_mut_ptr(),
                                    rows,
                                );
                            }
                        });
                    }
                    if need_dx && this.cin <= SCATTER_DX_MAX_CIN {
                        for ci in 0..this.cin {
                            for img in n0..n1 {
                                // SAFETY: this chunk owns images [n0, n1) of every channel of
                                // dx; chunks are disjoint.
                                let dst = unsafe { dxp.slice((ci * n + img) * h * w, h * w) };
                                this.scatter_dx(dy, img, ci, h, w, dst);
                            }
                        }
                    } else if need_dx && fast {
                        let scratch = implicit::convolve_scratch(this.cin, dy, pad_t, this.k);
                        with_padded(dy, pad_t, (n0, n1), scratch, |p, acc| {
                            // SAFETY: this chunk writes only images n0..n1 of dx; chunks are
                            // disjoint.
                            unsafe {
                                implicit::convolve(
                                    p,
                                    this.cout,
                                    &flipped,
                                    None,
                                    this.cin,
                                    this.k,
                                    (n0, n1),
                                    &dxp,
                                    n * h * w,
                                    acc,
                                );
                            }
                        });
                    } else if need_dx {
                        let ncols_in = (n1 - n0) * h * w;
                        with_cols(rows_t * ncols_in, |cols| {
                            im2col(dy, this.k, pad_t, n0, n1, cols);
                            // SAFETY: this chunk owns columns [n0*h*w, n1*h*w) of every row of dx;
                            // chunks are disjoint.
                            unsafe {
                                let base = dxp.slice(n0 * h * w, 1).as_mut_ptr();
                                gemm_raw(
                                    1.0,
                                    Mat::new(&flipped, this.cin, rows_t),
                                    Mat::new(cols, rows_t, ncols_in),
                                    0.0,
                                    base,
                                    n * h * w,
                                );
                            }
                        });
                    }
                }
            });
        // Group partial sums are added in group order, then (implicit path) transposed once.
        let Some((first, rest)) = partials.split_first_mut() else {
            self.dweight.fill(0.0);
            self.dbias.fill(0.0);
            return;
        };
        for p in rest.iter() {
            for (a, b) in first.iter_mut().zip(p) {
                *a += b;
            }
        }
        if fast {
            for (r, prow) in first.chunks_exact(self.cout).enumerate() {
                for (co, &v) in prow.iter().enumerate() {
                    self.dweight[co * rows + r] = v;
                }
            }
        } else {
            self.dweight.copy_from_slice(first);
        }
        self.partials = partials;
        let dbias: Vec<f32> = (0..self.cout)
            .into_par_iter()
            .map(|c| reduce::sum(&dy.data[c * row_o..(c + 1) * row_o]) as f32)
            .collect();
        self.dbias = dbias;
    }

    /// Sets `dst` to input channel `ci` of image `img` of the input gradient (an `h x w`
    /// plane) by adding every output gradient, weighted, where its kernel tap read the input:
    /// `dst[oy + ky - pad][ox + kx - pad] += w[co][ci][ky][kx] * dy[co][img][oy][ox]`, summed
    /// over `co, ky, kx` in that order.
    fn scatter_dx(&self, dy: &Tensor, img: usize, ci: usize, h: usize, w: usize, dst: &mut [f32]) {
        let (k, pad) = (self.k, self.pad);
        let (ho, wo) = (dy.h, dy.w);
        dst.fill(0.0);
        for co in 0..self.cout {
            let plane = &dy.data[(co * dy.n + img) * ho * wo..][..ho * wo];
            for ky in 0..k {
                // Output rows whose tap ky lands inside the input.
                let oy_lo = pad.saturating_sub(ky).min(ho);
                let oy_hi = (h + pad).saturating_sub(ky).clamp(oy_lo, ho);
                for kx in 0..k {
                    let wv = self.weight[((co * self.cin + ci) * k + ky) * k + kx];
                    let ox_lo = pad.saturating_sub(kx).min(wo);
                    let ox_hi = (w + pad).saturating_sub(kx).clamp(ox_lo, wo);
                    let len = ox_hi - ox_lo;
                    for oy in oy_lo..oy_hi {
                        let src = &plane[oy * wo + ox_lo..][..len];
                        let at = (oy + ky - pad) * w + ox_lo + kx - pad;
                        for (d, &g) in dst[at..at + len].iter_mut().zip(src) {
                            *d += wv * g;
                        }
                    }
                }
            }
        }
    }

    /// The kernel of the input-gradient convolution: `[cin][cout][k][k]`, spatially flipped.
    fn flipped_weights(&self) -> Vec<f32> {
        let k = self.k;
        let mut f = vec![0.0; self.weight.len()];
        for co in 0..self.cout {
            for ci in 0..self.cin {
                for ky in 0..k {
                    for kx in 0..k {
                        f[((ci * self.cout + co) * k + (k - 1 - ky)) * k + (k - 1 - kx)] =
                            self.weight[((co * self.cin + ci) * k + ky) * k + kx];
                    }
                }
            }
        }
        f
    }
}

/// Zeroes a slice that is usually only the padding width long (0 to 2 values): stores inline
/// for the short cases instead of a `memset` call per image row, which showed up at ~4 % of a
/// training step.
#[inline(always)]
fn zero_short(s: &mut [f32]) {
    match s {
        [] => {}
        [a] => *a = 0.0,
        [a, b] => {
            *a = 0.0;
            *b = 0.0;
        }
        _ => s.fill(0.0),
    }
}

/// Unfolds images `n0..n1` of `x` into `cols[(c, ky, kx)][(image, oy, ox)]` for a `k x k`
/// kernel with zero padding `pad` and stride 1.
///
/// When the output has the input's width ("same" padding), the rows of one kernel tap are the
/// input plane shifted by a constant offset, so each plane is one block copy followed by zeroing
/// the few columns that wrapped around a row end; otherwise rows are copied one by one.
fn im2col(x: &Tensor, k: usize, pad: usize, n0: usize, n1: usize, cols: &mut [f32]) {
    let (h, w) = (x.h, x.w);
    let (ho, wo) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
    let plane_o = ho * wo;
    let ncols = (n1 - n0) * plane_o;
    for ci in 0..x.c {
        for ky in 0..k {
            // Output rows whose input row oy + ky - pad lies inside the image.
            let oy_lo = pad.saturating_sub(ky).min(ho);
            let oy_hi = (h + pad).saturating_sub(ky).min(ho).max(oy_lo);
            for kx in 0..k {
                let r = (ci * k + ky) * k + kx;
                let dst_row = &mut cols[r * ncols..(r + 1) * ncols];
                // Output columns whose input column ox + kx - pad lies inside the image.
                let ox_lo = pad.saturating_sub(kx).min(wo);
                let ox_hi = (w + pad).saturating_sub(kx).min(wo).max(ox_lo);
                for (b, img) in (n0..n1).enumerate() {
                    let src = &x.data[(ci * x.n + img) * h * w..][..h * w];
                    let dst = &mut dst_row[b * plane_o..][..plane_o];
                    dst[..oy_lo * wo].fill(0.0);
                    dst[oy_hi * wo..].fill(0.0);
                    if oy_lo == oy_hi {
                        continue;
                    }
                    let body = &mut dst[oy_lo * wo..oy_hi * wo];
                    if w == wo {
                        // body[i] = src[start + i] with start = (oy_lo + ky - pad) * w + kx - pad.
                        let start = ((oy_lo + ky - pad) * w + kx) as isize - pad as isize;
                        let lo = (-start).max(0) as usize;
                        let hi = (body.len() as isize)
                            .min((h * w) as isize - start)
                            .max(lo as isize) as usize;
                        body[..lo].fill(0.0);
                        body[hi..].fill(0.0);
                        let s0 = (start + lo as isize) as usize;
                        body[lo..hi].copy_from_slice(&src[s0..s0 + (hi - lo)]);
                        for row in body.chunks_exact_mut(wo) {
                            zero_short(&mut row[..ox_lo]);
                            zero_short(&mut row[ox_hi..]);
                        }
                    } else {
                        for (row, oy) in body.chunks_exact_mut(wo).zip(oy_lo..oy_hi) {
                            let src_row = &src[(oy + ky - pad) * w..][..w];
                            zero_short(&mut row[..ox_lo]);
                            zero_short(&mut row[ox_hi..]);
                            if ox_lo < ox_hi {
                                let ix_lo = ox_lo + kx - pad;
                                row[ox_lo..ox_hi]
                                    .copy_from_slice(&src_row[ix_lo..ix_lo + (ox_hi - ox_lo)]);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;

    /// Direct convolution, the definition itself.
    fn naive(conv: &Conv2d, x: &Tensor) -> Tensor {
        let (ho, wo) = conv.out_hw(x.h, x.w);
        let mut out = Tensor::zeros(conv.cout, x.n, ho, wo);
        let k = conv.k;
        for co in 0..conv.cout {
            for img in 0..x.n {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut s = conv.bias[co] as f64;
                        for ci in 0..conv.cin {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = oy as isize + ky as isize - conv.pad as isize;
                                    let ix = ox as isize + kx as isize - conv.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x.data[((ci * x.n + img) * x.h + iy as usize) * x.w
                                        + ix as usize];
                                    s += (conv.weight[((co * conv.cin + ci) * k + ky) * k + kx]
                                        * xv) as f64;
                                }
                            }
                        }
                        out.data[((co * x.n + img) * ho + oy) * wo + ox] = s as f32;
                    }
                }
            }
        }
        out
    }

    fn input(c: usize, n: usize, h: usize, w: usize, seed: u64) -> Tensor {
        Tensor {
            c,
            n,
            h,
            w,
            data: gradcheck::random(c * n * h * w, seed),
        }
    }

    #[test]
    fn forward_matches_direct_convolution() {
        for &(cin, cout, k, pad, n, h) in &[
            (1, 4, 3, 0, 3, 8),
            (3, 5, 3, 1, 5, 7),
            (2, 3, 5, 2, 4, 6),
            (2, 2, 1, 0, 2, 3),
        ] {
            let mut conv = Conv2d::new(cin, cout, k, pad, &mut Rng::new(1));
            let x = input(cin, n, h, h, 2);
            let want = naive(&conv, &x);
            let got = conv.forward(&x).clone();
            assert_eq!(got.shape(), want.shape());
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    /// Shapes above the implicit-GEMM thresholds (at least 64 taps, 100 output pixels), so
    /// that on AVX-512 machines they take that path: same and valid padding, 3x3 and 5x5,
    /// output channels that do not fill a tile, input channels on both sides of
    /// `SCATTER_DX_MAX_CIN`.
    const IMPLICIT_SHAPES: [(usize, usize, usize, usize, usize, usize); 4] = [
        (8, 5, 3, 1, 3, 12),
        (3, 9, 5, 2, 2, 10),
        (8, 3, 3, 0, 2, 12),
        (9, 17, 3, 1, 2, 10),
    ];

    #[test]
    fn implicit_path_matches_direct_convolution() {
        for &(cin, cout, k, pad, n, h) in &IMPLICIT_SHAPES {
            let mut conv = Conv2d::new(cin, cout, k, pad, &mut Rng::new(11));
            let (ho, wo) = conv.out_hw(h, h);
            assert_eq!(conv.implicit(ho, wo), gemm512::enabled());
            let x = input(cin, n, h, h, 12);
            let want = naive(&conv, &x);
            let got = conv.forward(&x).clone();
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Up to SCATTER_DX_MAX_CIN input channels the input gradient is scattered directly;
        // above, it is an SGEMM: both are checked, on the im2col path and (on AVX-512
        // machines) the implicit one.
        let mut shapes = vec![
            (2, 3, 3, 1, 3, 5),
            (1, 2, 3, 0, 2, 6),
            (2, 2, 5, 2, 2, 4),
            (5, 2, 3, 1, 2, 5),
            (6, 3, 3, 0, 2, 6),
        ];
        shapes.extend_from_slice(&IMPLICIT_SHAPES);
        for &(cin, cout, k, pad, n, h) in &shapes {
            let mut conv = Conv2d::new(cin, cout, k, pad, &mut Rng::new(3));
            let mut x = input(cin, n, h, h, 4);
            let (ho, wo) = conv.out_hw(h, h);
            let r = gradcheck::random(cout * n * ho * wo, 5);
            conv.forward(&x);
            let dy = Tensor {
                c: cout,
                n,
                h: ho,
                w: wo,
                data: r.clone(),
            };
            conv.backward(&x, &dy, true);
            let (dx, dw, db) = (
                conv.dx.data.clone(),
                conv.dweight.clone(),
                conv.dbias.clone(),
            );
            let mut probe = conv.clone();
            let shape = (x.c, x.n, x.h, x.w);
            gradcheck::check(
                "conv dx",
                &mut x.data,
                &dx,
                |xs| {
                    let t = Tensor {
                        c: shape.0,
                        n: shape.1,
                        h: shape.2,
                        w: shape.3,
                        data: xs.to_vec(),
                    };
                    gradcheck::dot(&r, &probe.forward(&t).data)
                },
                1e-2,
                2e-3,
                60,
            );
            let mut wts = conv.weight.clone();
            gradcheck::check(
                "conv dw",
                &mut wts,
                &dw,
                |ws| {
                    probe.weight.copy_from_slice(ws);
                    gradcheck::dot(&r, &probe.forward(&x).data)
                },
                1e-2,
                2e-3,
                60,
            );
            probe.weight.copy_from_slice(&conv.weight);
            let mut bias = conv.bias.clone();
            gradcheck::check(
                "conv db",
                &mut bias,
                &db,
                |bs| {
                    probe.bias.copy_from_slice(bs);
                    gradcheck::dot(&r, &probe.forward(&x).data)
                },
                1e-2,
                2e-3,
                10,
            );
        }
    }

    #[test]
    fn chunked_batches_match_single_images() {
        // A batch large enough to be split into several chunks gives the same output as each
        // image on its own.
        let mut conv = Conv2d::new(2, 3, 3, 1, &mut Rng::new(9));
        let x = input(2, 40, 12, 12, 10);
        let all = conv.forward(&x).clone();
        assert!(batch_chunks(40, 144, TARGET_COLS).len() > 1);
        for img in [0, 17, 39] {
            let mut one = Tensor::zeros(2, 1, 12, 12);
            for c in 0..2 {
                one.data[c * 144..(c + 1) * 144]
                    .copy_from_slice(&x.data[(c * 40 + img) * 144..][..144]);
            }
            let y = conv.forward(&one).clone();
            for c in 0..3 {
                let (a, b) = (
                    &y.data[c * 144..(c + 1) * 144],
                    &all.data[(c * 40 + img) * 144..][..144],
                );
                for (u, v) in a.iter().zip(b) {
                    assert!((u - v).abs() < 1e-6);
                }
            }
        }
    }
}

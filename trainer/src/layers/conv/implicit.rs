//! Implicit-GEMM convolution on AVX-512 ([`crate::gemm512`]): the forward pass, the input
//! gradient and the weight gradient of [`super::Conv2d`] without unfolding the input.
//!
//! A chunk of images is first copied into zero-padded planes ([`Padded`]): per image and
//! channel `hp = h + 2 pad` rows of `wp = w + pad` floats, the input at columns `0..w` and
//! zeros after it, so that one run of `pad` zeros is both the right padding of a row and the
//! left padding of the next (a leading run of `pad` zeros pads the first row). Output position
//! `q = oy * wp + ox` then reads kernel tap `(c, ky, kx)` at `q + c * plane + ky * wp + kx` of
//! its image: the unfolded matrix's rows are the padded input itself at one shift per tap, and
//! 16 consecutive positions are one vector load. Positions with `ox >= wo` are computed and
//! dropped: at 26x26 an image's 702 positions take 15 tiles of [`SHIFT_NR`] for 676 outputs
//! (6.5 % more work), at 13x13 4 tiles for 169 (14 % more).
//!
//! Each output is the sum over taps in the order `(c, ky, kx)` (the weight gradient: over
//! positions in order, image by image), whatever the chunking, as in the im2col path; the two
//! paths round differently, so a run is reproducible on one machine, not across the two.

use crate::gemm512::{self, MR, NR, SHIFT_NR};
use crate::par::SharedMut;
use crate::tensor::Tensor;

/// Zero-padded copies of images `n0..n1` of a tensor: `[image][channel][plane]` (see the
/// module documentation), each image followed by [`SLACK`] zeros that its last tile may read
/// past its planes, so that no read crosses into another image's copy.
pub(super) struct Padded<'a> {
    data: &'a [f32],
    /// Padding on every side.
    pad: usize,
    /// Rows (`h + 2 pad`) and row length (`w + pad`) of a padded plane.
    hp: usize,
    wp: usize,
    /// Floats per padded plane (`hp * wp + pad`) and per image (all channels and the slack).
    plane: usize,
    image: usize,
}

/// Zeros after each padded image: a tile reads at most `SHIFT_NR - 1` positions past the
/// image's last output row, plus `k - 1 - pad` past its last plane.
const SLACK: usize = 2 * SHIFT_NR;

/// Floats per padded plane of an `h x w` input with padding `pad`.
fn plane_len(h: usize, w: usize, pad: usize) -> usize {
    (h + 2 * pad) * (w + pad) + pad
}

/// Floats of the padded copy of `n` images of `c x h x w` with padding `pad`.
pub(super) fn padded_len(c: usize, n: usize, h: usize, w: usize, pad: usize) -> usize {
    n * (c * plane_len(h, w, pad) + SLACK)
}

impl<'a> Padded<'a> {
    /// Copies images `n0..n1` of `x` with zero padding `pad` into `buf` (the first
    /// [`padded_len`]`(x.c, n1 - n0, ..)` floats), and returns them.
    pub(super) fn new(x: &Tensor, pad: usize, n0: usize, n1: usize, buf: &'a mut [f32]) -> Self {
        let len = padded_len(x.c, n1 - n0, x.h, x.w, pad);
        let buf = &mut buf[..len];
        let wp = x.w + pad;
        let plane = plane_len(x.h, x.w, pad);
        let image = x.c * plane + SLACK;
        for (b, img) in (n0..n1).enumerate() {
            let copy = &mut buf[b * image..(b + 1) * image];
            for (c, dst) in copy.chunks_exact_mut(plane).take(x.c).enumerate() {
                let src = &x.data[(c * x.n + img) * x.h * x.w..][..x.h * x.w];
                // Input (y, x) sits at (y + pad) * wp + x + pad.
                let top = pad * wp + pad;
                dst[..top].fill(0.0);
                for (row, d) in src.chunks_exact(x.w).zip(dst[top..].chunks_mut(wp)) {
                    d[..x.w].copy_from_slice(row);
                    d[x.w..].fill(0.0);
                }
                dst[top + x.h * wp..].fill(0.0);
            }
            copy[x.c * plane..].fill(0.0);
        }
        Self::view(x, pad, n1 - n0, buf)
    }

    /// The padded copies of `n` images shaped like `x`'s, already in `data` (as
    /// [`new`](Self::new) wrote them).
    fn view(x: &Tensor, pad: usize, n: usize, data: &'a [f32]) -> Self {
        let plane = plane_len(x.h, x.w, pad);
        assert_eq!(
            data.len(),
            padded_len(x.c, n, x.h, x.w, pad),
            "padded copy size"
        );
        Self {
            data,
            pad,
            hp: x.h + 2 * pad,
            wp: x.w + pad,
            plane,
            image: x.c * plane + SLACK,
        }
    }

    /// Output rows and columns of a `k x k` convolution of the padded input.
    fn out_hw(&self, k: usize) -> (usize, usize) {
        (self.hp + 1 - k, self.wp + self.pad + 1 - k)
    }

    /// The offset of kernel tap `(c, ky, kx)` from an output position, for every tap of a
    /// `channels x k x k` kernel in that order.
    fn tap_offsets(&self, channels: usize, k: usize) -> Vec<u32> {
        assert!(self.pad < k, "padding must be smaller than the kernel");
        let mut offsets = Vec::with_capacity(channels * k * k);
        for c in 0..channels {
            for ky in 0..k {
                for kx in 0..k {
                    let off = c * self.plane + ky * self.wp + kx;
                    offsets.push(u32::try_from(off).expect("padded image too large"));
                }
            }
        }
        offsets
    }
}

/// Kernel taps summed per pass over an image's outputs: the weights of one block
/// (`cout x TAP_BLOCK`, 32 KiB for 64 channels) and the input rows it reads stay in L1.
const TAP_BLOCK: usize = 128;

/// Sets `out[co][img][..]` for images `n0..n1` of the padded input `p` to the `k x k`
/// convolution with `weight` (`[cout][channels][k][k]`) plus `bias` (zero when `None`).
/// `out` is channel-major with rows of `out_row` floats (all images of one channel) and
/// `ho x wo` planes; the call writes only images `n0..n1`. `acc` is scratch of at least
/// [`convolve_scratch`] floats.
///
/// # Safety
/// No other thread may write images `n0..n1` of `out` during the call, and `out` must hold
/// `cout * out_row` floats.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn convolve(
    p: &Padded<'_>,
    channels: usize,
    weight: &[f32],
    bias: Option<&[f32]>,
    cout: usize,
    k: usize,
    (n0, n1): (usize, usize),
    out: &SharedMut,
    out_row: usize,
    acc: &mut [f32],
) {
    let taps = channels * k * k;
    assert_eq!(weight.len(), cout * taps, "convolution weights");
    let (ho, wo) = p.out_hw(k);
    let plane_o = ho * wo;
    let offsets = p.tap_offsets(channels, k);
    // Positions per image, rounded up to whole tiles.
    let span = (ho * p.wp).div_ceil(SHIFT_NR) * SHIFT_NR;
    let last = offsets.last().map_or(0, |&o| o as usize);
    assert!(
        last + span <= p.image,
        "a tile would read past its image's copy"
    );
    assert!(
        (n1 - n0) * p.image <= p.data.len(),
        "padded input too short"
    );
    let acc = &mut acc[..cout * span];
    for (b, img) in (n0..n1).enumerate() {
        let input = p.data.as_ptr().add(b * p.image);
        for (co, row) in acc.chunks_exact_mut(span).enumerate() {
            row.fill(bias.map_or(0.0, |b| b[co]));
        }
        let base = acc.as_mut_ptr();
        for t0 in (0..taps).step_by(TAP_BLOCK) {
            let block = &offsets[t0..(t0 + TAP_BLOCK).min(taps)];
            for q0 in (0..span).step_by(SHIFT_NR) {
                for co0 in (0..cout).step_by(MR) {
                    let rows = (cout - co0).min(MR);
                    let row = |i: usize| co0 + i.min(rows - 1);
                    let w = std::array::from_fn(|i| weight.as_ptr().add(row(i) * taps + t0));
                    let c = std::array::from_fn(|i| base.add(row(i) * span + q0));
                    gemm512::shifted_tile(w, block, input.add(q0), rows, c);
                }
            }
        }
        // Keep the first wo of every wp positions.
        for (co, row) in acc.chunks_exact(span).enumerate() {
            let dst = out.slice(co * out_row + img * plane_o, plane_o);
            for (d, s) in dst.chunks_exact_mut(wo).zip(row.chunks(p.wp)) {
                d.copy_from_slice(&s[..wo]);
            }
        }
    }
}

/// Output positions per image (`ho` rows of `wp`) of a `k x k` convolution of an input shaped
/// like `x` padded by `pad`, as [`Padded`] lays them out.
fn positions(x: &Tensor, pad: usize, k: usize) -> usize {
    (x.h + 2 * pad + 1 - k) * (x.w + pad)
}

/// Scratch floats [`convolve`] needs for `cout` output channels of a `k x k` convolution of
/// an input shaped like `x` padded by `pad`.
pub(super) fn convolve_scratch(cout: usize, x: &Tensor, pad: usize, k: usize) -> usize {
    cout * positions(x, pad, k).div_ceil(SHIFT_NR) * SHIFT_NR
}

/// Adds the weight gradient of images `n0..n1` to `dwt`, stored transposed:
/// `dwt[tap][co] += sum over positions of x[tap-shifted position] * dy[co][position]`, where
/// `p` is the padded forward input and `dy` the output gradient (`[cout][n][ho][wo]`).
/// `dyt` is scratch of at least [`weight_grad_scratch`] floats.
pub(super) fn weight_grad(
    p: &Padded<'_>,
    channels: usize,
    k: usize,
    dy: &Tensor,
    (n0, n1): (usize, usize),
    dwt: &mut [f32],
    dyt: &mut [f32],
) {
    let cout = dy.c;
    let (ho, wo) = (dy.h, dy.w);
    assert_eq!((ho, wo), p.out_hw(k), "output gradient size");
    let positions = ho * p.wp;
    let taps = channels * k * k;
    assert_eq!(dwt.len(), taps * cout, "weight gradient buffer");
    let offsets = p.tap_offsets(channels, k);
    assert!(
        offsets.last().map_or(0, |&o| o as usize) + positions <= p.image,
        "a row would read past its image's copy"
    );
    let len = gemm512::packed_len(positions, cout);
    let dyt = &mut dyt[..len];
    for (b, img) in (n0..n1).enumerate() {
        pack_output_grad(dy, img, p.wp, dyt);
        let image = &p.data[b * p.image..(b + 1) * p.image];
        let a_rows: Vec<*const f32> = offsets
            .iter()
            .map(|&o| image[o as usize..].as_ptr())
            .collect();
        // SAFETY: each row pointer has `positions` readable floats (asserted above); `dwt` is
        // a taps x cout buffer borrowed mutably here.
        unsafe {
            gemm512::gemm_rows(&a_rows, cout, positions, dyt, dwt.as_mut_ptr(), cout, true);
        }
    }
}

/// Packs image `img` of the output gradient `dy` (`[cout][n][ho][wo]`) as the right operand
/// of the weight-gradient product ([`gemm512::packed_len`]`(ho * wp, cout)` floats in `dyt`):
/// `B[q][co] = dy[co][img][oy][ox]` at `q = oy * wp + ox`, zero in the padding columns.
pub(super) fn pack_output_grad(dy: &Tensor, img: usize, wp: usize, dyt: &mut [f32]) {
    let (cout, ho, wo) = (dy.c, dy.h, dy.w);
    let positions = ho * wp;
    let ld = dy.n * ho * wo;
    for j in 0..cout.div_ceil(NR) {
        let panel = &mut dyt[j * positions * NR..][..positions * NR];
        let rows = (cout - j * NR).min(NR);
        let first = &dy.data[(j * NR * dy.n + img) * ho * wo..];
        for (oy, dst) in panel.chunks_exact_mut(wp * NR).enumerate() {
            gemm512::transpose_strip(&first[oy * wo..], ld, rows, wo, dst);
            dst[wo * NR..].fill(0.0);
        }
    }
}

/// Scratch floats [`weight_grad`] needs for `cout` output channels of a `k x k` convolution
/// of an input shaped like `x` padded by `pad`.
pub(super) fn weight_grad_scratch(cout: usize, x: &Tensor, pad: usize, k: usize) -> usize {
    gemm512::packed_len(positions(x, pad, k), cout)
}

//! The Cortex-M fallback convolution: one output channel at a time over each gathered
//! receptive field, for the shapes the faster kernels ([`super::poly`], and
//! [`super::packed`] with the `packed-conv` feature) do not take. Small code, ~3
//! instructions per multiply-accumulate.

use super::requant::Requant;
use super::{dot_i8, gather, Geom, KernelParams};

/// Convolution one output channel at a time, on receptive fields gathered into `win`
/// (`k*k*cin` bytes), for the output rows `g.y0 .. g.y1` (`dst` holds those rows).
#[inline(never)]
pub(super) fn direct(src: &[u8], dst: &mut [u8], g: &Geom, p: &KernelParams<'_>, win: &mut [u8]) {
    let (ow, cout, kkc) = (g.ow, g.cout, g.kkc());
    if cout == 0 || kkc == 0 || ow == 0 {
        return;
    }
    let n = g.y1.saturating_sub(g.y0) * ow;
    for (i, px) in dst.chunks_exact_mut(cout).take(n).enumerate() {
        gather(win, src, g, g.y0 + i / ow, i % ow, |v| v);
        for (c, (o, wc)) in px.iter_mut().zip(p.weights.chunks_exact(kkc)).enumerate() {
            *o = Requant::of(p, c).apply(dot_i8(win, wc));
        }
    }
}

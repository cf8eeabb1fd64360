//! x86-64 convolution: each receptive field is sign-extended to int16 once per output pixel
//! (into a stack buffer), so the per-channel dot products only widen the weights; written as
//! 32 independent `i32` lanes, which the compiler turns into `pmaddwd` (SSE2) / `vpmaddwd`
//! (AVX2) chains, about 1.7x (SSE2) / 1.15x (AVX2) faster than `dot_i8` on 3x3x64 windows.

use super::{gather, pixel_outputs, Geom, KernelParams};

/// Largest receptive field handled here (the buffer is `2 * MAX_KKC` bytes of stack).
const MAX_KKC: usize = 3200;
/// Independent accumulator lanes.
const L: usize = 32;

#[inline(always)]
fn dot(x: &[i16], w: &[u8]) -> i32 {
    let mut lanes = [0i32; L];
    let cx = x.chunks_exact(L);
    let cw = w.chunks_exact(L);
    let (rx, rw) = (cx.remainder(), cw.remainder());
    for (xa, wa) in cx.zip(cw) {
        for ((l, &a), &b) in lanes.iter_mut().zip(xa).zip(wa) {
            *l = l.wrapping_add(i32::from(a) * i32::from(b as i8));
        }
    }
    let mut s = lanes.iter().fold(0i32, |s, &l| s.wrapping_add(l));
    for (&a, &b) in rx.iter().zip(rw) {
        s = s.wrapping_add(i32::from(a) * i32::from(b as i8));
    }
    s
}

/// [`dot`] for a length known at compile time (unrolled by the compiler).
#[inline(always)]
fn dot_fixed<const N: usize>(x: &[i16], w: &[u8]) -> i32 {
    match (<&[i16; N]>::try_from(x), <&[u8; N]>::try_from(w)) {
        (Ok(x), Ok(w)) => dot(x, w),
        _ => dot(x, w),
    }
}

/// Runs the convolution unless its receptive field exceeds [`MAX_KKC`] (then returns
/// `false`, having written nothing).
pub(super) fn conv2d(src: &[u8], dst: &mut [u8], g: &Geom, p: &KernelParams<'_>) -> bool {
    let mut buf = [0i16; MAX_KKC];
    let Some(xs) = buf.get_mut(..g.kkc()) else {
        return false;
    };
    match g.kkc() {
        9 => run(src, dst, g, p, xs, dot_fixed::<9>),
        25 => run(src, dst, g, p, xs, dot_fixed::<25>),
        144 => run(src, dst, g, p, xs, dot_fixed::<144>),
        288 => run(src, dst, g, p, xs, dot_fixed::<288>),
        576 => run(src, dst, g, p, xs, dot_fixed::<576>),
        1152 => run(src, dst, g, p, xs, dot_fixed::<1152>),
        _ => run(src, dst, g, p, xs, dot),
    }
    true
}

#[inline(always)]
fn run(
    src: &[u8],
    dst: &mut [u8],
    g: &Geom,
    p: &KernelParams<'_>,
    xs: &mut [i16],
    dot: impl Fn(&[i16], &[u8]) -> i32,
) {
    let kkc = g.kkc();
    if g.cout == 0 || kkc == 0 {
        return;
    }
    let mut pixels = dst.chunks_exact_mut(g.cout);
    for oy in g.y0..g.y1 {
        for ox in 0..g.ow {
            let Some(px) = pixels.next() else { return };
            gather(xs, src, g, oy, ox, |v| i16::from(v as i8));
            let xs: &[i16] = xs;
            pixel_outputs(px, p, kkc, |wc| dot(xs, wc));
        }
    }
}

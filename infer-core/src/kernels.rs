//! Integer kernels on HWC int8 maps. All shapes and array lengths are validated by
//! [`crate::Model::from_bytes`]; the kernels are nevertheless written so that inconsistent
//! arguments produce wrong numbers, never a panic (slices are taken with `get`, iteration
//! uses `zip`/`chunks_exact`).

use crate::format::{KernelParams, Shape};
use crate::math::{chunk_i32, chunk_i64, requantize_product};

/// `sum_i a[i] * b[i]` over int8 values stored as bytes, accumulated in wrapping `i32`.
///
/// Written as fixed-width blocks of independent lanes so the compiler turns it into SIMD
/// multiply-adds (i8 -> i16 products, pairwise-added into i32 lanes).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(crate) fn dot_i8(a: &[u8], b: &[u8]) -> i32 {
    // Independent accumulator lanes: 16 suit 256-bit vectors (two registers), 32 suit the
    // 128-bit baseline (better latency hiding); results are identical either way.
    #[cfg(target_feature = "avx2")]
    const L: usize = 16;
    #[cfg(not(target_feature = "avx2"))]
    const L: usize = 32;
    let mut lanes = [0i32; L];
    let ca = a.chunks_exact(L);
    let cb = b.chunks_exact(L);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for ((l, &x), &y) in lanes.iter_mut().zip(xa).zip(xb) {
            *l = l.wrapping_add(i32::from(i16::from(x as i8) * i16::from(y as i8)));
        }
    }
    let mut s = lanes.iter().fold(0i32, |s, &l| s.wrapping_add(l));
    for (&x, &y) in ra.iter().zip(rb) {
        s = s.wrapping_add(i32::from(x as i8) * i32::from(y as i8));
    }
    s
}

/// `sum_i a[i] * b[i]` over int8 values stored as bytes, accumulated in wrapping `i32`.
///
/// Targets without SIMD (Cortex-M): a plain loop (`ldrsb`, `ldrsb`, `smlabb`), compact and
/// free of register spills; the convolutions use [`conv2d_pair`] instead.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
pub(crate) fn dot_i8(a: &[u8], b: &[u8]) -> i32 {
    a.iter().zip(b).fold(0i32, |s, (&x, &y)| {
        s.wrapping_add(i32::from(x as i8) * i32::from(y as i8))
    })
}

/// Per-output-channel requantization of a finished accumulator (bias not yet added).
#[inline(always)]
fn finish(acc: i32, bias: &[u8], mpos: &[u8], mneg: &[u8], shift: u8, offset: &[u8]) -> u8 {
    let a = acc.wrapping_add(chunk_i32(bias));
    // `a * (a >= 0 ? mpos : mneg)` without a data-dependent branch (the sign of `a` is
    // unpredictable): one of the two products is always zero, so the sum is exact and within
    // the same bound as a single product.
    let prod = i64::from(a.max(0)) * i64::from(chunk_i32(mpos))
        + i64::from(a.min(0)) * i64::from(chunk_i32(mneg));
    requantize_product(prod, shift, chunk_i64(offset)) as u8
}

/// `dot_i8` for a length known at compile time: the compiler unrolls it completely, which on
/// x86-64 with AVX2 (`-C target-cpu=...`) runs about 2.5x faster than the runtime-length loop.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn dot_fixed<const N: usize>(a: &[u8], b: &[u8]) -> i32 {
    match (<&[u8; N]>::try_from(a), <&[u8; N]>::try_from(b)) {
        (Ok(a), Ok(b)) => dot_i8(a, b),
        _ => dot_i8(a, b),
    }
}

/// Calls `$body` with `$dot` bound to the best dot-product function for length `$n`:
/// a compile-time-length specialization for common receptive fields (`k*k*cin` of 3x3 and
/// 5x5 kernels over 1 to 128 channels) on 64-bit desktop targets, `dot_i8` otherwise.
/// All variants compute the same exact integer.
macro_rules! with_dot {
    ($n:expr, $dot:ident => $body:expr) => {{
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            match $n {
                9 => {
                    let $dot = dot_fixed::<9>;
                    $body
                }
                25 => {
                    let $dot = dot_fixed::<25>;
                    $body
                }
                144 => {
                    let $dot = dot_fixed::<144>;
                    $body
                }
                288 => {
                    let $dot = dot_fixed::<288>;
                    $body
                }
                400 => {
                    let $dot = dot_fixed::<400>;
                    $body
                }
                576 => {
                    let $dot = dot_fixed::<576>;
                    $body
                }
                800 => {
                    let $dot = dot_fixed::<800>;
                    $body
                }
                1152 => {
                    let $dot = dot_fixed::<1152>;
                    $body
                }
                1600 => {
                    let $dot = dot_fixed::<1600>;
                    $body
                }
                3200 => {
                    let $dot = dot_fixed::<3200>;
                    $body
                }
                _ => {
                    let $dot = dot_i8;
                    $body
                }
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let $dot = dot_i8;
            $body
        }
    }};
}

/// Computes and stores one output pixel's channels: `dot` gives the accumulator of a channel from
/// its weight row; dot products run for a block of channels first, then the requantization of
/// the block in a separate loop that the compiler can vectorize.
#[inline(always)]
fn pixel_outputs(
    px: &mut [u8],
    p: &KernelParams<'_>,
    kkc: usize,
    mut dot: impl FnMut(&[u8]) -> i32,
) {
    const CB: usize = 16;
    let blocks = px
        .chunks_mut(CB)
        .zip(p.weights.chunks(kkc * CB))
        .zip(p.bias.chunks(4 * CB))
        .zip(p.mult_pos.chunks(4 * CB))
        .zip(p.mult_neg.chunks(4 * CB))
        .zip(p.shift.chunks(CB))
        .zip(p.offset.chunks(8 * CB));
    for ((((((ob, wb), bb), mpb), mnb), shb), offb) in blocks {
        let mut acc = [0i32; CB];
        for (a, wc) in acc.iter_mut().zip(wb.chunks_exact(kkc)) {
            *a = dot(wc);
        }
        let chans = ob
            .iter_mut()
            .zip(acc.iter())
            .zip(bb.chunks_exact(4))
            .zip(mpb.chunks_exact(4))
            .zip(mnb.chunks_exact(4))
            .zip(shb.iter())
            .zip(offb.chunks_exact(8));
        for ((((((o, &a), b), mp), mn), &sh), off) in chans {
            *o = finish(a, b, mp, mn, sh, off);
        }
    }
}

/// Copies the receptive field of output pixel `(oy, ox)` into `win` (`k*k*cin` bytes, layout
/// `[ky][kx][cin]` like the weights), writing zeros for the padding.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gather(
    win: &mut [u8],
    src: &[u8],
    h: usize,
    w: usize,
    cin: usize,
    k: usize,
    pad: usize,
    oy: usize,
    ox: usize,
) {
    let kx0 = pad.saturating_sub(ox);
    let kx1 = k.min((w + pad).saturating_sub(ox));
    let ix0 = (ox + kx0).saturating_sub(pad);
    let valid = kx1.saturating_sub(kx0) * cin;
    for (ky, row) in win.chunks_exact_mut(k * cin).enumerate() {
        let iy = oy + ky;
        if iy < pad || iy - pad >= h {
            row.fill(0);
            continue;
        }
        let start = ((iy - pad) * w + ix0) * cin;
        let (Some(dst), Some(s)) = (
            row.get_mut(kx0 * cin..kx0 * cin + valid),
            src.get(start..start + valid),
        ) else {
            row.fill(0);
            continue;
        };
        dst.copy_from_slice(s);
        if let Some(left) = row.get_mut(..kx0 * cin) {
            left.fill(0);
        }
        if let Some(right) = row.get_mut(kx0 * cin + valid..) {
            right.fill(0);
        }
    }
}

/// Fused convolution (stride 1, zero padding) + two-branch requantization. `win` is scratch
/// space of at least `k*k*cin` bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    src: &[u8],
    inp: Shape,
    dst: &mut [u8],
    out: Shape,
    k: usize,
    pad: usize,
    p: &KernelParams<'_>,
    win: &mut [u8],
) {
    let (h, w, cin) = (usize::from(inp.h), usize::from(inp.w), usize::from(inp.c));
    let (oh, ow, cout) = (usize::from(out.h), usize::from(out.w), usize::from(out.c));
    let kkc = k * k * cin;
    let Some(win) = win.get_mut(..kkc) else {
        return;
    };
    if cout == 0 || kkc == 0 {
        return;
    }
    // Other targets (Cortex-M): two pixels x two channels per pass, see `conv2d_pair`.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    if conv2d_pair(src, h, w, cin, dst, oh, ow, cout, k, pad, p, win) {
        return;
    }
    // x86-64: the window widened to int16 once per pixel (see `wide`).
    #[cfg(target_arch = "x86_64")]
    if wide::conv2d(src, h, w, cin, dst, oh, ow, cout, k, pad, p, win) {
        return;
    }
    // One dot product per channel: on 64-bit desktop targets a compile-time-length one for
    // common receptive fields, which the compiler vectorizes into `pmaddwd` chains (blocking
    // several channels or pixels per pass defeats its vectorizer).
    with_dot!(kkc, dot => {
        let mut pixels = dst.chunks_exact_mut(cout);
        for oy in 0..oh {
            for ox in 0..ow {
                let Some(px) = pixels.next() else { return };
                gather(win, src, h, w, cin, k, pad, oy, ox);
                let win: &[u8] = win;
                pixel_outputs(px, p, kkc, |wc| dot(win, wc));
            }
        }
    });
}

/// x86-64 convolution: each receptive field is sign-extended to int16 once per output pixel
/// (into a stack buffer), so the per-channel dot products only widen the weights; written as
/// 32 independent `i32` lanes, which the compiler turns into `pmaddwd` (SSE2) / `vpmaddwd`
/// (AVX2) chains, about 1.7x (SSE2) / 1.15x (AVX2) faster than `dot_i8` on 3x3x64 windows.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::{gather, pixel_outputs, KernelParams};

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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv2d(
        src: &[u8],
        h: usize,
        w: usize,
        cin: usize,
        dst: &mut [u8],
        oh: usize,
        ow: usize,
        cout: usize,
        k: usize,
        pad: usize,
        p: &KernelParams<'_>,
        win: &mut [u8],
    ) -> bool {
        let kkc = k * k * cin;
        let mut buf = [0i16; MAX_KKC];
        let Some(xs) = buf.get_mut(..kkc) else {
            return false;
        };
        let g = Geom {
            h,
            w,
            cin,
            oh,
            ow,
            cout,
            k,
            pad,
        };
        match kkc {
            9 => run(src, dst, g, p, win, xs, dot_fixed::<9>),
            25 => run(src, dst, g, p, win, xs, dot_fixed::<25>),
            144 => run(src, dst, g, p, win, xs, dot_fixed::<144>),
            288 => run(src, dst, g, p, win, xs, dot_fixed::<288>),
            576 => run(src, dst, g, p, win, xs, dot_fixed::<576>),
            1152 => run(src, dst, g, p, win, xs, dot_fixed::<1152>),
            _ => run(src, dst, g, p, win, xs, dot),
        }
        true
    }

    /// Shapes of one convolution.
    #[derive(Clone, Copy)]
    struct Geom {
        h: usize,
        w: usize,
        cin: usize,
        oh: usize,
        ow: usize,
        cout: usize,
        k: usize,
        pad: usize,
    }

    #[inline(always)]
    fn run(
        src: &[u8],
        dst: &mut [u8],
        g: Geom,
        p: &KernelParams<'_>,
        win: &mut [u8],
        xs: &mut [i16],
        dot: impl Fn(&[i16], &[u8]) -> i32,
    ) {
        let kkc = g.k * g.k * g.cin;
        if g.cout == 0 || kkc == 0 {
            return;
        }
        let mut pixels = dst.chunks_exact_mut(g.cout);
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let Some(px) = pixels.next() else { return };
                gather(win, src, g.h, g.w, g.cin, g.k, g.pad, oy, ox);
                for (d, &v) in xs.iter_mut().zip(win.iter()) {
                    *d = i16::from(v as i8);
                }
                let xs: &[i16] = xs;
                pixel_outputs(px, p, kkc, |wc| dot(xs, wc));
            }
        }
    }
}

/// Largest receptive field (`k*k*cin`) of [`conv2d_pair`], whose packed window buffer
/// (`4 * PAIR_MAX` bytes) lives on the stack.
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
const PAIR_MAX: usize = 1152;
/// Position of the second pixel's value in a packed window word.
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
const PACK_SHIFT: u32 = 23;
/// Products summed before the two packed sums are separated: `192 * 2^14 < 2^22` keeps the
/// low sum in range (any value up to 255 would), and 3x3 kernels over 64 channels are three
/// whole segments.
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
const SEG: usize = 192;

/// Convolution for 32-bit targets with a 32x32+64-bit multiply-accumulate (`smlal`): the
/// receptive fields of two neighbouring output pixels are packed into one word per value,
/// `x0 + x1 * 2^23`, so that one `smlal` by a weight accumulates both pixels' products
/// (`sum0 + sum1 * 2^23` in 64 bits). Segments of at most [`SEG`] products keep
/// `|sum0| <= SEG * 2^14 < 2^22`, so the two sums are recovered exactly from the low 23 bits
/// and the rest. Returns `false`, having written nothing, when the receptive field is larger
/// than [`PAIR_MAX`].
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn conv2d_pair(
    src: &[u8],
    h: usize,
    w: usize,
    cin: usize,
    dst: &mut [u8],
    oh: usize,
    ow: usize,
    cout: usize,
    k: usize,
    pad: usize,
    p: &KernelParams<'_>,
    win: &mut [u8],
) -> bool {
    let kkc = k * k * cin;
    let mut buf = [0i32; PAIR_MAX];
    let (Some(pk), Some(win)) = (buf.get_mut(..kkc), win.get_mut(..kkc)) else {
        return false;
    };
    if ow == 0 {
        return true;
    }
    let npx = oh * ow;
    let mut pix = 0;
    while pix < npx {
        let two = pix + 1 < npx;
        gather(win, src, h, w, cin, k, pad, pix / ow, pix % ow);
        for (d, &v) in pk.iter_mut().zip(win.iter()) {
            *d = i32::from(v as i8);
        }
        if two {
            gather(win, src, h, w, cin, k, pad, (pix + 1) / ow, (pix + 1) % ow);
            for (d, &v) in pk.iter_mut().zip(win.iter()) {
                *d = d.wrapping_add(i32::from(v as i8) << PACK_SHIFT);
            }
        }
        let pk: &[i32] = pk;
        let mut c = 0;
        while c < cout {
            let c1 = if c + 1 < cout { c + 1 } else { c };
            let (Some(w0), Some(w1)) = (
                p.weights.get(c * kkc..(c + 1) * kkc),
                p.weights.get(c1 * kkc..(c1 + 1) * kkc),
            ) else {
                return true;
            };
            let sums = dot_pair(pk, w0, w1);
            for (ch, [s0, s1]) in [c, c1].into_iter().zip(sums).take(c1 + 1 - c) {
                store(dst, pix * cout + ch, ch, s0, p);
                if two {
                    store(dst, (pix + 1) * cout + ch, ch, s1, p);
                }
            }
            c += 2;
        }
        pix += if two { 2 } else { 1 };
    }
    true
}

/// Requantizes accumulator `acc` of channel `c` into `dst[at]` (nothing when out of range).
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
#[inline(always)]
fn store(dst: &mut [u8], at: usize, c: usize, acc: i32, p: &KernelParams<'_>) {
    if let (Some(o), Some(b), Some(mp), Some(mn), Some(&sh), Some(off)) = (
        dst.get_mut(at),
        p.bias.get(4 * c..4 * c + 4),
        p.mult_pos.get(4 * c..4 * c + 4),
        p.mult_neg.get(4 * c..4 * c + 4),
        p.shift.get(c),
        p.offset.get(8 * c..8 * c + 8),
    ) {
        *o = finish(acc, b, mp, mn, sh, off);
    }
}

/// One segment of [`dot_pair`]: the two packed 64-bit sums.
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
#[inline(always)]
fn dot_pair_seg(xs: &[i32], r0: &[u8], r1: &[u8]) -> (i64, i64) {
    let (mut s0, mut s1) = (0i64, 0i64);
    for ((&x, &a), &b) in xs.iter().zip(r0).zip(r1) {
        s0 += i64::from(x) * i64::from(a as i8);
        s1 += i64::from(x) * i64::from(b as i8);
    }
    (s0, s1)
}

/// Dot products of a packed two-pixel window with two weight rows: `[[row0 . pixel0,
/// row0 . pixel1], [row1 . pixel0, row1 . pixel1]]` (see [`conv2d_pair`]).
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
#[inline(always)]
fn dot_pair(pk: &[i32], w0: &[u8], w1: &[u8]) -> [[i32; 2]; 2] {
    let mut out = [[0i32; 2]; 2];
    for ((xs, r0), r1) in pk.chunks(SEG).zip(w0.chunks(SEG)).zip(w1.chunks(SEG)) {
        let (s0, s1) = match (
            <&[i32; SEG]>::try_from(xs),
            <&[u8; SEG]>::try_from(r0),
            <&[u8; SEG]>::try_from(r1),
        ) {
            (Ok(xs), Ok(r0), Ok(r1)) => dot_pair_seg(xs, r0, r1),
            _ => dot_pair_seg(xs, r0, r1),
        };
        for (o, s) in out.iter_mut().zip([s0, s1]) {
            // Low 23 bits, sign-extended: the first pixel's sum; the rest: the second's.
            let lo = ((s as i32) << (32 - PACK_SHIFT)) >> (32 - PACK_SHIFT);
            let hi = ((s - i64::from(lo)) >> PACK_SHIFT) as i32;
            o[0] = o[0].wrapping_add(lo);
            o[1] = o[1].wrapping_add(hi);
        }
    }
    out
}

/// 2x2 stride-2 max pooling on an HWC int8 map (odd trailing row/column dropped).
pub(crate) fn maxpool2(src: &[u8], inp: Shape, dst: &mut [u8], out: Shape) {
    let (w, c) = (usize::from(inp.w), usize::from(inp.c));
    let (oh, ow) = (usize::from(out.h), usize::from(out.w));
    if c == 0 {
        return;
    }
    let mut pixels = dst.chunks_exact_mut(c);
    for oy in 0..oh {
        let r0 = 2 * oy * w * c;
        let r1 = r0 + w * c;
        for ox in 0..ow {
            let Some(px) = pixels.next() else { return };
            let c0 = 2 * ox * c;
            let (Some(a), Some(b), Some(d), Some(e)) = (
                src.get(r0 + c0..r0 + c0 + c),
                src.get(r0 + c0 + c..r0 + c0 + 2 * c),
                src.get(r1 + c0..r1 + c0 + c),
                src.get(r1 + c0 + c..r1 + c0 + 2 * c),
            ) else {
                continue;
            };
            for ((((o, &a), &b), &d), &e) in px.iter_mut().zip(a).zip(b).zip(d).zip(e) {
                *o = (a as i8).max(b as i8).max((d as i8).max(e as i8)) as u8;
            }
        }
    }
}

/// Fused dense layer + two-branch requantization.
pub(crate) fn dense(src: &[u8], dst: &mut [u8], p: &KernelParams<'_>) {
    let n = src.len();
    if n == 0 {
        return;
    }
    let rows = dst
        .iter_mut()
        .zip(p.weights.chunks_exact(n))
        .zip(p.bias.chunks_exact(4))
        .zip(p.mult_pos.chunks_exact(4))
        .zip(p.mult_neg.chunks_exact(4))
        .zip(p.shift.iter())
        .zip(p.offset.chunks_exact(8));
    with_dot!(n, dot => {
        for ((((((o, wr), b), mp), mn), &sh), off) in rows {
            *o = finish(dot(src, wr), b, mp, mn, sh, off);
        }
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    fn fill(seed: &mut u64, out: &mut [u8]) {
        for v in out {
            *seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *v = (*seed >> 33) as u8;
        }
    }

    /// The packed two-pixel dot products are exact, extreme values included.
    #[test]
    fn dot_pair_exact() {
        let mut seed = 5u64;
        for n in [
            0usize, 1, 3, 4, 9, 127, 128, 191, 192, 193, 255, 256, 384, 576, 1151, 1152,
        ] {
            for fill_kind in 0..4 {
                let mut v = vec![0u8; 6 * n];
                match fill_kind {
                    0 => fill(&mut seed, &mut v),
                    1 => v.fill(0x80),
                    2 => {
                        v[..2 * n].fill(0x80);
                        v[2 * n..].fill(0x7f);
                    }
                    _ => {
                        v[..n].fill(0x80);
                        v[n..2 * n].fill(0x7f);
                        v[2 * n..].fill(0x80);
                    }
                }
                let (x0, rest) = v.split_at(n);
                let (x1, rest) = rest.split_at(n);
                let rows: std::vec::Vec<&[u8]> = rest.chunks_exact(n.max(1)).collect();
                let rows = if n == 0 { vec![&[][..]; 4] } else { rows };
                let pk: std::vec::Vec<i32> = x0
                    .iter()
                    .zip(x1)
                    .map(|(&a, &b)| i32::from(a as i8) + (i32::from(b as i8) << PACK_SHIFT))
                    .collect();
                let got = dot_pair(&pk, rows[0], rows[1]);
                let want = [
                    [dot_i8(x0, rows[0]), dot_i8(x1, rows[0])],
                    [dot_i8(x0, rows[1]), dot_i8(x1, rows[1])],
                ];
                assert_eq!(got, want, "n {n} kind {fill_kind}");
            }
        }
    }

    /// The Cortex-M kernel (two pixels x two channels per pass) agrees with the desktop one
    /// bit for bit.
    #[test]
    fn conv2d_pair_matches_conv2d() {
        let mut seed = 1u64;
        let shapes = [
            (6, 6, 5, 7, 3, 1),
            (5, 5, 1, 6, 3, 0),
            (4, 4, 64, 9, 3, 1),
            (7, 7, 3, 4, 5, 2),
            (3, 3, 2, 1, 1, 0),
        ];
        for &(h, w, cin, cout, k, pad) in &shapes {
            let (oh, ow) = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
            let kkc = k * k * cin;
            let mut src = vec![0u8; h * w * cin];
            let mut weights = vec![0u8; cout * kkc];
            fill(&mut seed, &mut src);
            fill(&mut seed, &mut weights);
            // Include the extreme values -128 and 127.
            src[0] = 0x80;
            weights[0] = 0x80;
            weights[1] = 0x7f;
            let mut bias = vec![];
            let mut mp = vec![];
            let mut mn = vec![];
            let mut off = vec![];
            for c in 0..cout as i32 {
                bias.extend_from_slice(&(c * 1000 - 3000).to_le_bytes());
                mp.extend_from_slice(&(1_000_000 + c * 77_777).to_le_bytes());
                mn.extend_from_slice(&(300_000 + c * 55_555).to_le_bytes());
                off.extend_from_slice(&(i64::from(c) * 12_345 - 40_000).to_le_bytes());
            }
            let shift = vec![24u8; cout];
            let p = KernelParams {
                weights: &weights,
                bias: &bias,
                mult_pos: &mp,
                mult_neg: &mn,
                shift: &shift,
                offset: &off,
                out_scale: 1.0,
            };
            let sh = |h: usize, w: usize, c: usize| Shape {
                h: h as u16,
                w: w as u16,
                c: c as u16,
            };
            let mut a = vec![0u8; oh * ow * cout];
            let mut win = vec![0u8; kkc];
            conv2d(
                &src,
                sh(h, w, cin),
                &mut a,
                sh(oh, ow, cout),
                k,
                pad,
                &p,
                &mut win,
            );
            let mut c = vec![2u8; oh * ow * cout];
            assert!(conv2d_pair(
                &src, h, w, cin, &mut c, oh, ow, cout, k, pad, &p, &mut win
            ));
            assert_eq!(a, c, "shape {:?}", (h, w, cin, cout, k, pad));
            assert!(a.iter().any(|&v| v != 0 && v != 0x81 && v != 0x7f));
        }
    }
}

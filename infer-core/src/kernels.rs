//! Integer kernels on HWC int8 maps. All shapes and array lengths are validated by
//! [`crate::Model::from_bytes`]; the kernels are nevertheless written so that inconsistent
//! arguments produce wrong numbers, never a panic (slices are taken with `get`, iteration
//! uses `zip`/`chunks_exact`).

use crate::format::{KernelParams, Shape};
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
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
/// free of register spills; the convolutions use [`packed`] instead.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline(always)]
pub(crate) fn dot_i8(a: &[u8], b: &[u8]) -> i32 {
    a.iter().zip(b).fold(0i32, |s, (&x, &y)| {
        s.wrapping_add(i32::from(x as i8) * i32::from(y as i8))
    })
}

/// Per-output-channel requantization of a finished accumulator (bias not yet added).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
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
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
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
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
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
    // Other targets (Cortex-M): packed channel pairs, activations read in place, see
    // `packed`.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    if packed::conv2d(src, h, w, cin, dst, oh, ow, cout, k, pad, p) {
        return;
    }
    // x86-64: the window widened to int16 once per pixel (see `wide`).
    #[cfg(target_arch = "x86_64")]
    if wide::conv2d(src, h, w, cin, dst, oh, ow, cout, k, pad, p, win) {
        return;
    }
    // Cortex-M: receptive fields too large for `packed`; one channel at a time keeps this
    // rarely used path small.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    packed::direct(src, h, w, cin, dst, oh, ow, cout, k, pad, p, win);
    // One dot product per channel: on 64-bit desktop targets a compile-time-length one for
    // common receptive fields, which the compiler vectorizes into `pmaddwd` chains (blocking
    // several channels or pixels per pass defeats its vectorizer).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
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

/// Convolution for 32-bit targets with a 32x32+64-bit multiply-accumulate (`smlal`), such as
/// the Cortex-M4: the weights of two output channels are packed into one word per receptive
/// field position, `w0 + w1 * 2^23`, so one `smlal` of an activation by that word accumulates
/// both channels' products (`sum0 + sum1 * 2^23` in 64 bits). The packed weights of
/// [`packed::PAIRS`] channel pairs are built once per layer and channel group, in a stack
/// buffer; the activations are read from the input map in place (a receptive field row is
/// contiguous in HWC order), so nothing is gathered or copied per output pixel.
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod packed {
    use super::{dot_i8, gather, KernelParams};
    use crate::math::{chunk_i32, chunk_i64, ACT_MAX};

    /// Channel pairs per pass (4 output channels): four 64-bit accumulators, the activation
    /// and the two packed weights of one position (one `ldrd`) fit the M4's registers.
    pub(super) const PAIRS: usize = 2;
    /// Largest receptive field (`k*k*cin`) handled; the packed weights take
    /// `4 * PAIRS * MAX_KKC` bytes of stack (4.5 KiB).
    pub(super) const MAX_KKC: usize = 576;
    /// Position of the second channel's weight in a packed word.
    pub(super) const SHIFT: u32 = 23;
    /// Products summed before the two packed sums are separated: `192 * 2^14 < 2^22` keeps
    /// the low sum in range (any value up to 255 would); a 3x3x64 receptive field row is one
    /// whole segment.
    pub(super) const SEG: usize = 192;
    /// Positions per iteration of the inner loop.
    const UNROLL: usize = 32;

    /// `w0 + w1 * 2^23` for two int8 weights.
    #[inline(always)]
    pub(super) fn pack(w0: u8, w1: u8) -> i32 {
        i32::from(w0 as i8).wrapping_add(i32::from(w1 as i8) << SHIFT)
    }

    /// Splits a packed segment sum into its two channel sums (exact for segments of at most
    /// [`SEG`] products): the low 23 bits sign-extended, and the rest.
    #[inline(always)]
    pub(super) fn split(s: i64) -> [i32; 2] {
        let lo = ((s as i32) << (32 - SHIFT)) >> (32 - SHIFT);
        let hi = (s.wrapping_sub(i64::from(lo)) >> SHIFT) as i32;
        [lo, hi]
    }

    /// `sums[g] += x * w[g]` for one position.
    #[inline(always)]
    fn step(sums: &mut [i64; PAIRS], x: u8, w: [i32; PAIRS]) {
        let x = i64::from(x as i8);
        let [s0, s1] = sums;
        *s0 = s0.wrapping_add(i64::from(w[0]) * x);
        *s1 = s1.wrapping_add(i64::from(w[1]) * x);
    }

    /// `sums` plus the packed sums of one segment: activations `acts` (int8) against
    /// `PAIRS` packed weights per position (`w`, position-major).
    ///
    /// The main loop's body is written out ([`UNROLL`] positions, 64 `smlal`) rather than left
    /// to LLVM's unroller, so it stays unrolled when infer-core is compiled for size.
    #[inline(always)]
    pub(super) fn dot(mut sums: [i64; PAIRS], acts: &[u8], w: &[i32]) -> [i64; PAIRS] {
        let mut xs = acts.chunks_exact(UNROLL);
        let mut ws = w.chunks_exact(PAIRS * UNROLL);
        for (xa, wa) in xs.by_ref().zip(ws.by_ref()) {
            let (Ok(x), Ok(w)) = (
                <&[u8; UNROLL]>::try_from(xa),
                <&[i32; PAIRS * UNROLL]>::try_from(wa),
            ) else {
                continue;
            };
            macro_rules! steps {
                ($($i:literal)*) => { $( step(&mut sums, x[$i], [w[2 * $i], w[2 * $i + 1]]); )* };
            }
            steps!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
            // An empty optimisation barrier (no instruction): it keeps LLVM from unrolling
            // this loop further, which would run out of registers.
            core::hint::black_box(());
        }
        for (&x, wp) in xs
            .remainder()
            .iter()
            .zip(ws.remainder().chunks_exact(PAIRS))
        {
            if let [w0, w1] = *wp {
                step(&mut sums, x, [w0, w1]);
            }
        }
        sums
    }

    /// The channel sums of (part of) one receptive field: `rows` rows of `len` (at most
    /// [`SEG`]) activations, `stride` bytes apart from the start of `src`, against the packed
    /// weights from the start of `w` (`wstride` words apart per row).
    ///
    /// The packed sums run on across rows: after each row (at most [`SEG`] products) the low
    /// channel's sum, the low 23 bits sign-extended, moves to `lo` and leaves a multiple of
    /// 2^23, so the high channel's sum is the total shifted right by 23 at the end.
    #[inline(always)]
    fn window(
        mut src: &[u8],
        stride: usize,
        len: usize,
        mut w: &[i32],
        wstride: usize,
        rows: usize,
    ) -> [i32; 2 * PAIRS] {
        let mut sums = [0i64; PAIRS];
        let mut lo = [0i32; PAIRS];
        for _ in 0..rows {
            let (Some(xr), Some(wr)) = (src.get(..len), w.get(..len * PAIRS)) else {
                break;
            };
            sums = dot(sums, xr, wr);
            for (s, l) in sums.iter_mut().zip(lo.iter_mut()) {
                let [low, _] = split(*s);
                *l = l.wrapping_add(low);
                *s = s.wrapping_sub(i64::from(low));
            }
            src = src.get(stride..).unwrap_or_default();
            w = w.get(wstride..).unwrap_or_default();
        }
        let mut acc = [0i32; 2 * PAIRS];
        for ((a, s), l) in acc.chunks_exact_mut(2).zip(sums).zip(lo) {
            a.copy_from_slice(&[l, (s >> SHIFT) as i32]);
        }
        acc
    }

    /// One output channel's requantization constants (see [`super::finish`]), read once per
    /// channel group; the rounding term is folded into the offset (wrapping arithmetic, so the
    /// result is identical).
    #[derive(Clone, Copy, Default)]
    pub(super) struct Requant {
        bias: i32,
        mpos: i32,
        mneg: i32,
        shift: u32,
        offset: i64,
    }

    impl Requant {
        /// Channel `c`'s constants (zeros when out of range).
        pub(super) fn of(p: &KernelParams<'_>, c: usize) -> Requant {
            let i32_at = |a: &[u8]| a.get(4 * c..4 * c + 4).map_or(0, chunk_i32);
            let shift = p.shift.get(c).map_or(0, |&s| u32::from(s));
            let round = 1i64.wrapping_shl(shift.wrapping_sub(1));
            Requant {
                bias: i32_at(p.bias),
                mpos: i32_at(p.mult_pos),
                mneg: i32_at(p.mult_neg),
                shift,
                offset: p
                    .offset
                    .get(8 * c..8 * c + 8)
                    .map_or(0, chunk_i64)
                    .wrapping_add(round),
            }
        }

        /// [`super::finish`] with these constants.
        #[inline(always)]
        pub(super) fn apply(&self, acc: i32) -> u8 {
            let a = acc.wrapping_add(self.bias);
            let m = if a >= 0 { self.mpos } else { self.mneg };
            let x = (i64::from(a) * i64::from(m)).wrapping_add(self.offset);
            let v = if self.shift >= 32 {
                // The usual case: (x >> 32) >> (shift - 32) is x >> shift, in 32 bits.
                ((x >> 32) as i32).wrapping_shr(self.shift - 32)
            } else {
                x.wrapping_shr(self.shift).clamp(-ACT_MAX, ACT_MAX) as i32
            };
            v.clamp(-ACT_MAX as i32, ACT_MAX as i32) as u8
        }
    }

    /// Runs the convolution (stride 1, zero padding) into `dst` unless the receptive field
    /// is larger than [`MAX_KKC`] (then returns `false`, having written nothing).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
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
    ) -> bool {
        let kkc = k * k * cin;
        let mut buf = [0i32; PAIRS * MAX_KKC];
        let Some(wp) = buf.get_mut(..PAIRS * kkc) else {
            return false;
        };
        if cout == 0 || kkc == 0 {
            return true;
        }
        let row = |c: usize| {
            if c < cout {
                p.weights.get(c * kkc..(c + 1) * kkc)
            } else {
                None
            }
        };
        for c0 in (0..cout).step_by(2 * PAIRS) {
            // Pack the weights of channels c0 .. c0 + 2 * PAIRS, position-major.
            for g in 0..PAIRS {
                let slots = wp.iter_mut().skip(g).step_by(PAIRS);
                match (row(c0 + 2 * g), row(c0 + 2 * g + 1)) {
                    (Some(r0), Some(r1)) => {
                        for (v, (&a, &b)) in slots.zip(r0.iter().zip(r1)) {
                            *v = pack(a, b);
                        }
                    }
                    (Some(r0), None) => {
                        for (v, &a) in slots.zip(r0) {
                            *v = pack(a, 0);
                        }
                    }
                    _ => slots.for_each(|v| *v = 0),
                }
            }
            let wp: &[i32] = wp;
            let mut rq = [Requant::default(); 2 * PAIRS];
            for (i, r) in rq.iter_mut().enumerate() {
                *r = Requant::of(p, c0 + i);
            }
            let rq: &[Requant; 2 * PAIRS] = &rq;
            let wp: &[i32] = wp;
            for (oy, out_row) in dst.chunks_exact_mut(ow * cout).take(oh).enumerate() {
                // Kernel rows inside the input (the others meet zero padding).
                let ky0 = pad.saturating_sub(oy);
                let rows = k.min((h + pad).saturating_sub(oy)).saturating_sub(ky0);
                // Output columns whose receptive field lies inside the input horizontally:
                // ox >= pad and ox + k <= w + pad; the ones before and after meet padding.
                let inner0 = pad.min(ow);
                let inner1 = (w + pad + 1).saturating_sub(k).clamp(inner0, ow);
                let mut span = |ox: usize, n: usize| {
                    let kx0 = pad.saturating_sub(ox);
                    let kx1 = k.min((w + pad).saturating_sub(ox));
                    // Rows ky0.. of the receptive field of (oy, ox): `len` contiguous input
                    // values from (oy + ky0 - pad, ox + kx0 - pad) on, against kernel
                    // positions (ky, kx0..kx1).
                    let at = ((oy + ky0 - pad) * w + ox + kx0 - pad) * cin;
                    let wat = (ky0 * k + kx0) * cin * PAIRS;
                    let out = out_row.get_mut(ox * cout..(ox + n) * cout);
                    if let (Some(out), Some(src), Some(w_)) = (out, src.get(at..), wp.get(wat..)) {
                        let shape = Run {
                            src,
                            cin,
                            stride: w * cin,
                            len: kx1.saturating_sub(kx0) * cin,
                            w: w_,
                            wstride: k * cin * PAIRS,
                            rows,
                        };
                        run(out, cout, c0, &shape, rq);
                    }
                };
                for ox in 0..inner0 {
                    span(ox, 1);
                }
                span(inner0, inner1 - inner0);
                for ox in inner1..ow {
                    span(ox, 1);
                }
            }
        }
        true
    }

    /// Output pixels of one row whose receptive fields have the same shape, `cin` bytes apart.
    struct Run<'a> {
        /// The first pixel's receptive field, from its first row on.
        src: &'a [u8],
        /// Bytes from one pixel's receptive field to the next's.
        cin: usize,
        /// Bytes from one row of a receptive field to the next.
        stride: usize,
        /// Values per row.
        len: usize,
        /// Packed weights from the field's first position on.
        w: &'a [i32],
        /// Words from one kernel row to the next.
        wstride: usize,
        /// Kernel rows.
        rows: usize,
    }

    /// Computes channels `c0 ..` of the pixels of `out` (`cout` bytes each).
    #[inline(never)]
    fn run(out: &mut [u8], cout: usize, c0: usize, r: &Run<'_>, rq: &[Requant; 2 * PAIRS]) {
        let mut src = r.src;
        for px in out.chunks_exact_mut(cout) {
            let acc = if r.len <= SEG {
                window(src, r.stride, r.len, r.w, r.wstride, r.rows)
            } else {
                // Rows longer than a segment are cut into segments.
                let mut acc = [0i32; 2 * PAIRS];
                for j in (0..r.len).step_by(SEG) {
                    let seg = (r.len - j).min(SEG);
                    if let (Some(xs), Some(ws)) = (src.get(j..), r.w.get(j * PAIRS..)) {
                        let part = window(xs, r.stride, seg, ws, r.wstride, r.rows);
                        for (a, v) in acc.iter_mut().zip(part) {
                            *a = a.wrapping_add(v);
                        }
                    }
                }
                acc
            };
            for (o, (q, a)) in px.iter_mut().skip(c0).zip(rq.iter().zip(acc)) {
                *o = q.apply(a);
            }
            src = src.get(r.cin..).unwrap_or_default();
        }
    }

    /// Convolution one output channel at a time, on receptive fields gathered into `win`
    /// (`k*k*cin` bytes): for those larger than [`MAX_KKC`].
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn direct(
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
    ) {
        let kkc = k * k * cin;
        if cout == 0 || kkc == 0 {
            return;
        }
        for (i, px) in dst.chunks_exact_mut(cout).take(oh * ow).enumerate() {
            gather(win, src, h, w, cin, k, pad, i / ow, i % ow);
            for (c, (o, wc)) in px.iter_mut().zip(p.weights.chunks_exact(kkc)).enumerate() {
                *o = Requant::of(p, c).apply(dot_i8(win, wc));
            }
        }
    }
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
    // Cortex-M: the convolution kernel's requantization (same results, less code).
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    for (i, (o, wr)) in dst.iter_mut().zip(p.weights.chunks_exact(n)).enumerate() {
        *o = packed::Requant::of(p, i).apply(dot_i8(src, wr));
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let rows = dst
        .iter_mut()
        .zip(p.weights.chunks_exact(n))
        .zip(p.bias.chunks_exact(4))
        .zip(p.mult_pos.chunks_exact(4))
        .zip(p.mult_neg.chunks_exact(4))
        .zip(p.shift.iter())
        .zip(p.offset.chunks_exact(8));
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
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

    /// The packed channel-pair dot products are exact, extreme values included.
    #[test]
    fn packed_dot_exact() {
        use packed::{dot, pack, split, PAIRS, SEG};
        let mut seed = 5u64;
        for n in [0usize, 1, 3, 4, 9, 15, 16, 17, 127, 128, 191, 192] {
            for fill_kind in 0..4 {
                // Activations, then 2 * PAIRS weight rows.
                let mut v = vec![0u8; (1 + 2 * PAIRS) * n];
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
                let (x, rows) = v.split_at(n);
                let row = |c: usize| &rows[c * n..(c + 1) * n];
                let w: std::vec::Vec<i32> = (0..n)
                    .flat_map(|j| (0..PAIRS).map(move |g| (j, g)))
                    .map(|(j, g)| pack(row(2 * g)[j], row(2 * g + 1)[j]))
                    .collect();
                assert!(n <= SEG);
                let got: std::vec::Vec<[i32; 2]> =
                    dot([0; PAIRS], x, &w).into_iter().map(split).collect();
                let want: std::vec::Vec<[i32; 2]> = (0..PAIRS)
                    .map(|g| [dot_i8(x, row(2 * g)), dot_i8(x, row(2 * g + 1))])
                    .collect();
                assert_eq!(got, want, "n {n} kind {fill_kind}");
            }
        }
    }

    /// The Cortex-M kernels (packed channel pairs, and the direct one for larger receptive
    /// fields) agree with the desktop one bit for bit: odd channel counts, padding on every
    /// side, receptive field rows longer than one segment, and (last shape) a receptive field
    /// too large for the packed kernel, which it declines.
    #[test]
    fn packed_conv2d_matches_conv2d() {
        let mut seed = 1u64;
        let shapes = [
            (6, 6, 5, 7, 3, 1),
            (5, 5, 1, 6, 3, 0),
            (4, 4, 64, 9, 3, 1),
            (7, 7, 3, 4, 5, 2),
            (3, 3, 2, 1, 1, 0),
            (5, 4, 64, 4, 3, 2),
            (3, 3, 300, 5, 1, 0),
            (4, 4, 100, 6, 2, 1),
            (3, 3, 128, 3, 3, 1),
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
            // Larger receptive fields need a larger shift to stay off the clamp; odd channels
            // use 2^10 times the multipliers and 10 more shift (at least 32: the Cortex-M
            // requantization's 32-bit path).
            let mut shift = vec![];
            for c in 0..cout as i32 {
                let scale = if c % 2 == 1 { 1024 } else { 1 };
                bias.extend_from_slice(&(c * 1000 - 3000).to_le_bytes());
                mp.extend_from_slice(&((1_000_000 + c * 77_777) * scale).to_le_bytes());
                mn.extend_from_slice(&((300_000 + c * 55_555) * scale).to_le_bytes());
                let o = i64::from(c) * 12_345 - 40_000;
                off.extend_from_slice(&(o * i64::from(scale)).to_le_bytes());
                let s = if kkc > 100 { 29u8 } else { 24 };
                shift.push(if c % 2 == 1 { s + 10 } else { s });
            }
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
            let ran = packed::conv2d(&src, h, w, cin, &mut c, oh, ow, cout, k, pad, &p);
            assert_eq!(ran, kkc <= packed::MAX_KKC);
            if ran {
                assert_eq!(a, c, "shape {:?}", (h, w, cin, cout, k, pad));
            }
            // The Cortex-M path for the receptive fields `packed` declines.
            let mut d = vec![2u8; oh * ow * cout];
            packed::direct(&src, h, w, cin, &mut d, oh, ow, cout, k, pad, &p, &mut win);
            assert_eq!(a, d, "direct, shape {:?}", (h, w, cin, cout, k, pad));
            assert!(a.iter().any(|&v| v != 0 && v != 0x81 && v != 0x7f));
        }
    }
}

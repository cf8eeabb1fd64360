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

/// Shapes of one convolution (stride 1, zero padding `pad` on every side): input
/// `h x w x cin`, output `_ x ow x cout`, kernel `k x k`; a call computes the output rows
/// `y0 .. y1` (the destination holds those rows only).
#[derive(Clone, Copy, Debug)]
struct Geom {
    h: usize,
    w: usize,
    cin: usize,
    ow: usize,
    cout: usize,
    k: usize,
    pad: usize,
    y0: usize,
    y1: usize,
}

impl Geom {
    /// Values in one receptive field, `k*k*cin`.
    fn kkc(&self) -> usize {
        self.k * self.k * self.cin
    }
}

/// Copies the receptive field of output pixel `(oy, ox)` into `win` (`k*k*cin` values, layout
/// `[ky][kx][cin]` like the weights), each input byte converted by `conv`, zeros for the
/// padding.
#[inline(always)]
fn gather<T: Copy + Default>(
    win: &mut [T],
    src: &[u8],
    g: &Geom,
    oy: usize,
    ox: usize,
    conv: impl Fn(u8) -> T,
) {
    let Geom {
        h, w, cin, k, pad, ..
    } = *g;
    let kx0 = pad.saturating_sub(ox);
    let kx1 = k.min((w + pad).saturating_sub(ox));
    let ix0 = (ox + kx0).saturating_sub(pad);
    let valid = kx1.saturating_sub(kx0) * cin;
    for (ky, row) in win.chunks_exact_mut(k * cin).enumerate() {
        let iy = oy + ky;
        if iy < pad || iy - pad >= h {
            row.fill(T::default());
            continue;
        }
        let start = ((iy - pad) * w + ix0) * cin;
        let (Some(dst), Some(s)) = (
            row.get_mut(kx0 * cin..kx0 * cin + valid),
            src.get(start..start + valid),
        ) else {
            row.fill(T::default());
            continue;
        };
        for (d, &v) in dst.iter_mut().zip(s) {
            *d = conv(v);
        }
        if let Some(left) = row.get_mut(..kx0 * cin) {
            left.fill(T::default());
        }
        if let Some(right) = row.get_mut(kx0 * cin + valid..) {
            right.fill(T::default());
        }
    }
}

/// Fused convolution (stride 1, zero padding) + two-branch requantization of the output
/// rows `rows` (clamped to the output) into `dst`, which holds those rows only. `win` is
/// scratch space of at least `k*k*cin` bytes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    src: &[u8],
    inp: Shape,
    dst: &mut [u8],
    out: Shape,
    rows: core::ops::Range<usize>,
    k: usize,
    pad: usize,
    p: &KernelParams<'_>,
    win: &mut [u8],
) {
    let oh = usize::from(out.h);
    let y1 = rows.end.min(oh);
    let g = Geom {
        h: usize::from(inp.h),
        w: usize::from(inp.w),
        cin: usize::from(inp.c),
        ow: usize::from(out.w),
        cout: usize::from(out.c),
        k,
        pad,
        y0: rows.start.min(y1),
        y1,
    };
    let kkc = g.kkc();
    let Some(win) = win.get_mut(..kkc) else {
        return;
    };
    if g.cout == 0 || kkc == 0 {
        return;
    }
    // Other targets (Cortex-M): 3x3 kernels as polynomial products (see `poly`), other
    // kernels as packed channel pairs with the activations read in place (see `packed`,
    // with the `packed-conv` feature).
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let r = g.y0..g.y1;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    if g.k == 3 && poly::conv2d(src, g.h, g.w, g.cin, dst, r.clone(), g.ow, g.cout, g.pad, p) {
        return;
    }
    #[cfg(all(
        feature = "packed-conv",
        not(any(target_arch = "x86_64", target_arch = "aarch64"))
    ))]
    if packed::conv2d(src, g.h, g.w, g.cin, dst, r, g.ow, g.cout, g.k, g.pad, p) {
        return;
    }
    // x86-64 with AVX2: register-blocked `vpmaddwd` micro-kernel (see `avx2`).
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    if avx2::conv2d(src, dst, &g, p) {
        return;
    }
    // x86-64: the window widened to int16 once per pixel (see `wide`).
    #[cfg(target_arch = "x86_64")]
    if wide::conv2d(src, dst, &g, p) {
        return;
    }
    // Cortex-M: the shapes the kernels above decline; one channel at a time keeps this
    // rarely used path small.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    direct::direct(src, dst, &g, p, win);
    // One dot product per channel: on 64-bit desktop targets a compile-time-length one for
    // common receptive fields, which the compiler vectorizes into `pmaddwd` chains (blocking
    // several channels or pixels per pass defeats its vectorizer).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    with_dot!(kkc, dot => {
        let mut pixels = dst.chunks_exact_mut(g.cout);
        for oy in g.y0..g.y1 {
            for ox in 0..g.ow {
                let Some(px) = pixels.next() else { return };
                gather(win, src, &g, oy, ox, |v| v);
                let win: &[u8] = win;
                pixel_outputs(px, p, kkc, |wc| dot(win, wc));
            }
        }
    });
}

/// Output rows a convolution computed in place writes per kernel call when its stage has
/// the size [`crate::Model::arena_bytes`] provides (`pad + STAGE_ROWS` rows of the map).
pub(crate) const STAGE_ROWS: usize = 3;

/// A convolution whose output has its input's shape `shape` (`k = 2 * pad + 1`, as many
/// output as input channels), computed in place in `map` (`h * w * c` bytes). Blocks of
/// output rows are computed into `stage`, and each output row is copied over its input row
/// once no later output row reads that input row (output row `y` reads input rows
/// `y - pad ..= y + pad`), so `stage` holds up to `pad` rows waiting for that and the block
/// being computed: it needs at least `pad + 1` rows of `w * c` bytes (else nothing is
/// written); the more it holds, the fewer kernel calls.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_in_place(
    map: &mut [u8],
    shape: Shape,
    k: usize,
    pad: usize,
    p: &KernelParams<'_>,
    win: &mut [u8],
    stage: &mut [u8],
) {
    let (h, row) = (
        usize::from(shape.h),
        usize::from(shape.w) * usize::from(shape.c),
    );
    if row == 0 {
        return;
    }
    let Some(block) = (stage.len() / row).checked_sub(pad).filter(|&b| b > 0) else {
        return;
    };
    // Output rows `y0 - pending .. y0` wait in the first `pending` rows of `stage`.
    let (mut y0, mut pending) = (0, 0);
    while y0 < h {
        let y1 = (y0 + block).min(h);
        let n = y1 - y0;
        let Some(dst) = stage.get_mut(pending * row..(pending + n) * row) else {
            return;
        };
        conv2d(map, shape, dst, shape, y0..y1, k, pad, p, win);
        // The next block reads input rows from `y1 - pad` on: keep the output rows from
        // there in `stage`, copy the others over their input rows.
        let keep = if y1 == h { 0 } else { pad.min(pending + n) };
        let flush = pending + n - keep;
        let first = y0 - pending;
        if let (Some(d), Some(s)) = (
            map.get_mut(first * row..(first + flush) * row),
            stage.get(..flush * row),
        ) {
            d.copy_from_slice(s);
        }
        if let Some(s) = stage.get_mut(..(flush + keep) * row) {
            s.copy_within(flush * row.., 0);
        }
        pending = keep;
        y0 = y1;
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod wide;

#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod direct;
#[cfg(any(
    test,
    all(
        feature = "packed-conv",
        not(any(target_arch = "x86_64", target_arch = "aarch64"))
    )
))]
mod packed;
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod poly;
#[cfg(any(test, not(any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod requant;

/// 2x2 stride-2 max pooling on an HWC int8 map (odd trailing row/column dropped) of the
/// output rows `rows` (clamped to the output) into `dst`, which holds those rows only.
fn maxpool2(src: &[u8], inp: Shape, dst: &mut [u8], out: Shape, rows: core::ops::Range<usize>) {
    let (w, c) = (usize::from(inp.w), usize::from(inp.c));
    let ow = usize::from(out.w);
    if c == 0 {
        return;
    }
    let mut pixels = dst.chunks_exact_mut(c);
    for oy in rows.start..rows.end.min(usize::from(out.h)) {
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

/// [`maxpool2`] in place: the pooled map ends up at the start of `map` (the input's
/// `h * w * c` bytes). Blocks of output rows are computed into `stage` (at least one output
/// row, `ow * c` bytes, else nothing is written) and copied to the start of `map`, which
/// only ever covers input rows already read (output row `y` reads input rows `2y`, `2y + 1`
/// and lands within the first `y + 1` half-rows).
pub(crate) fn maxpool2_in_place(map: &mut [u8], inp: Shape, out: Shape, stage: &mut [u8]) {
    let (oh, row) = (usize::from(out.h), usize::from(out.w) * usize::from(out.c));
    if row == 0 {
        return;
    }
    let block = stage.len() / row;
    if block == 0 {
        return;
    }
    for y0 in (0..oh).step_by(block) {
        let y1 = (y0 + block).min(oh);
        let Some(dst) = stage.get_mut(..(y1 - y0) * row) else {
            return;
        };
        maxpool2(map, inp, dst, out, y0..y1);
        if let Some(d) = map.get_mut(y0 * row..y1 * row) {
            d.copy_from_slice(dst);
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
        *o = requant::Requant::of(p, i).apply(dot_i8(src, wr));
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

    /// Per-channel requantization constants for the convolution tests.
    struct Requants {
        bias: std::vec::Vec<u8>,
        mp: std::vec::Vec<u8>,
        mn: std::vec::Vec<u8>,
        off: std::vec::Vec<u8>,
        shift: std::vec::Vec<u8>,
    }

    impl Requants {
        /// Constants for `cout` channels over receptive fields of `kkc` values. Larger
        /// receptive fields need a larger shift to stay off the clamp; odd channels use 2^10
        /// times the multipliers and 10 more shift (at least 32: the Cortex-M
        /// requantization's 32-bit path).
        fn new(cout: usize, kkc: usize) -> Self {
            let mut r = Requants {
                bias: vec![],
                mp: vec![],
                mn: vec![],
                off: vec![],
                shift: vec![],
            };
            for c in 0..cout as i32 {
                let scale = if c % 2 == 1 { 1024 } else { 1 };
                r.bias.extend_from_slice(&(c * 1000 - 3000).to_le_bytes());
                // (13 distinct multipliers keep `* 1024` inside i32, and differ across blocks.)
                let cm = c % 13;
                r.mp.extend_from_slice(&((1_000_000 + cm * 77_777) * scale).to_le_bytes());
                r.mn.extend_from_slice(&((300_000 + cm * 55_555) * scale).to_le_bytes());
                let o = i64::from(c) * 12_345 - 40_000;
                r.off
                    .extend_from_slice(&(o * i64::from(scale)).to_le_bytes());
                let s = if kkc > 100 { 29u8 } else { 24 };
                r.shift.push(if c % 2 == 1 { s + 10 } else { s });
            }
            r
        }

        fn params<'a>(&'a self, weights: &'a [u8]) -> KernelParams<'a> {
            KernelParams {
                weights,
                bias: &self.bias,
                mult_pos: &self.mp,
                mult_neg: &self.mn,
                shift: &self.shift,
                offset: &self.off,
                out_scale: 1.0,
            }
        }
    }

    /// All convolution kernels agree bit for bit: the x86-64 ones (AVX2, which `conv2d`
    /// takes where it can, and `wide`) and the Cortex-M ones (packed channel pairs, and the
    /// direct one for larger receptive fields): odd channel counts, padding on every
    /// side, receptive field rows longer than one segment, receptive fields too large for the
    /// packed kernel (which it declines), several channel blocks.
    #[test]
    fn conv2d_kernels_agree() {
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
            // Several 16-channel blocks (the last one partial) for the AVX2 kernel, packed
            // in two passes for the largest receptive field it takes (3x3x128).
            (5, 5, 128, 37, 3, 1),
            (6, 5, 64, 40, 3, 1),
            (9, 7, 3, 20, 5, 2),
            // The Cortex-M 3x3 kernel (`poly`): the `paper` layers (several blocks of rows,
            // two half-rows), odd widths, streams with a partial segment, padding 2, and a
            // row too wide for it.
            (26, 26, 64, 5, 3, 1),
            (13, 13, 64, 6, 3, 1),
            (28, 28, 1, 8, 3, 0),
            (11, 29, 21, 3, 3, 0),
            (10, 15, 33, 4, 3, 2),
            (8, 29, 7, 2, 3, 1),
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
            let rq = Requants::new(cout, kkc);
            let p = rq.params(&weights);
            let sh = |h: usize, w: usize, c: usize| Shape {
                h: h as u16,
                w: w as u16,
                c: c as u16,
            };
            let g = Geom {
                h,
                w,
                cin,
                ow,
                cout,
                k,
                pad,
                y0: 0,
                y1: oh,
            };
            let mut a = vec![0u8; oh * ow * cout];
            let mut win = vec![0u8; kkc];
            conv2d(
                &src,
                sh(h, w, cin),
                &mut a,
                sh(oh, ow, cout),
                0..oh,
                k,
                pad,
                &p,
                &mut win,
            );
            // The x86-64 kernel without AVX2 (`conv2d` above takes `avx2` where it can).
            #[cfg(target_arch = "x86_64")]
            {
                let mut b = vec![2u8; oh * ow * cout];
                let ran = wide::conv2d(&src, &mut b, &g, &p);
                assert!(ran);
                assert_eq!(a, b, "wide, shape {:?}", (h, w, cin, cout, k, pad));
            }
            let mut c = vec![2u8; oh * ow * cout];
            let ran = packed::conv2d(&src, h, w, cin, &mut c, 0..oh, ow, cout, k, pad, &p);
            assert_eq!(ran, kkc <= packed::MAX_KKC);
            if ran {
                assert_eq!(a, c, "shape {:?}", (h, w, cin, cout, k, pad));
            }
            // The Cortex-M 3x3 kernel, where it applies.
            let mut e = vec![2u8; oh * ow * cout];
            let ran = k == 3 && poly::conv2d(&src, h, w, cin, &mut e, 0..oh, ow, cout, pad, &p);
            assert_eq!(ran, k == 3 && cin <= poly::MAX_CIN && ow <= poly::MAX_OW);
            if ran {
                assert_eq!(a, e, "poly, shape {:?}", (h, w, cin, cout, k, pad));
            }
            // The Cortex-M fallback for the shapes `poly` and `packed` decline.
            let mut d = vec![2u8; oh * ow * cout];
            direct::direct(&src, &mut d, &g, &p, &mut win);
            assert_eq!(a, d, "direct, shape {:?}", (h, w, cin, cout, k, pad));
            assert!(a.iter().any(|&v| v != 0 && v != 0x81 && v != 0x7f));

            // Each kernel computing only the output rows `y0 .. y1` (as the in-place
            // convolution calls them) writes exactly those rows of the whole map.
            let rb = ow * cout;
            for (y0, y1) in [
                (1, oh),
                (0, 1),
                (oh / 2, (oh / 2 + 3).min(oh)),
                (oh - 1, oh),
            ] {
                let at = (h, w, cin, cout, k, pad, y0, y1);
                let want = &a[y0 * rb..y1 * rb];
                let fresh = || vec![2u8; (y1 - y0) * rb];
                let mut r = fresh();
                let (si, so) = (sh(h, w, cin), sh(oh, ow, cout));
                conv2d(&src, si, &mut r, so, y0..y1, k, pad, &p, &mut win);
                assert_eq!(r, want, "conv2d rows, {at:?}");
                let gr = Geom { y0, y1, ..g };
                #[cfg(target_arch = "x86_64")]
                {
                    let mut r = fresh();
                    assert!(wide::conv2d(&src, &mut r, &gr, &p));
                    assert_eq!(r, want, "wide rows, {at:?}");
                }
                let mut r = fresh();
                if packed::conv2d(&src, h, w, cin, &mut r, y0..y1, ow, cout, k, pad, &p) {
                    assert_eq!(r, want, "packed rows, {at:?}");
                }
                let mut r = fresh();
                if k == 3 && poly::conv2d(&src, h, w, cin, &mut r, y0..y1, ow, cout, pad, &p) {
                    assert_eq!(r, want, "poly rows, {at:?}");
                }
                let mut r = fresh();
                direct::direct(&src, &mut r, &gr, &p, &mut win);
                assert_eq!(r, want, "direct rows, {at:?}");
            }
        }
    }

    /// Pooling in place leaves at the start of the map what pooling into a separate map
    /// gives, for odd and even sizes and every stage from one output row to all of them; a
    /// stage below one row leaves the map alone.
    #[test]
    fn maxpool2_in_place_matches() {
        let mut seed = 3u64;
        for &(h, w, c) in &[(26, 26, 64), (13, 13, 64), (7, 5, 3), (2, 2, 1), (3, 9, 2)] {
            let mut map = vec![0u8; h * w * c];
            fill(&mut seed, &mut map);
            let (oh, ow) = (h / 2, w / 2);
            let sh = |h: usize, w: usize| Shape {
                h: h as u16,
                w: w as u16,
                c: c as u16,
            };
            let mut want = vec![0u8; oh * ow * c];
            maxpool2(&map, sh(h, w), &mut want, sh(oh, ow), 0..oh);
            // The reference: the largest of each 2x2 block, as signed bytes.
            for (i, &v) in want.iter().enumerate() {
                let (y, x, ch) = (i / (ow * c), i / c % ow, i % c);
                let at = |dy: usize, dx: usize| map[((2 * y + dy) * w + 2 * x + dx) * c + ch] as i8;
                let m = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                assert_eq!(v as i8, m);
            }
            let row = ow * c;
            for stage_len in (1..=oh).map(|r| r * row).chain([row + 1, 2 * row - 1]) {
                let mut m = map.clone();
                let mut stage = vec![0u8; stage_len];
                maxpool2_in_place(&mut m, sh(h, w), sh(oh, ow), &mut stage);
                assert_eq!(
                    &m[..want.len()],
                    &want[..],
                    "{:?}, stage {stage_len}",
                    (h, w, c)
                );
            }
            let mut m = map.clone();
            maxpool2_in_place(&mut m, sh(h, w), sh(oh, ow), &mut vec![0u8; row - 1]);
            assert_eq!(m, map);
        }
    }

    /// A convolution computed in place (output shape = input shape) equals the same
    /// convolution into a separate map, for every stage size from the smallest (`pad + 1`
    /// rows: one output row per kernel call) to the whole map, sizes between whole rows
    /// included; a stage below `pad + 1` rows leaves the map alone.
    #[test]
    fn conv2d_in_place_matches() {
        let mut seed = 11u64;
        // (h, w, channels, k, pad): `paper`'s 13x13 layer, 5x5 and 1x1 kernels, one row,
        // a map shorter than the kernel.
        let shapes = [
            (13, 13, 64, 3, 1),
            (9, 7, 5, 5, 2),
            (6, 4, 3, 1, 0),
            (1, 9, 4, 3, 1),
            (2, 3, 2, 5, 2),
            (26, 26, 8, 3, 1),
        ];
        for &(h, w, c, k, pad) in &shapes {
            let kkc = k * k * c;
            let mut map = vec![0u8; h * w * c];
            let mut weights = vec![0u8; c * kkc];
            fill(&mut seed, &mut map);
            fill(&mut seed, &mut weights);
            let rq = Requants::new(c, kkc);
            let p = rq.params(&weights);
            let s = Shape {
                h: h as u16,
                w: w as u16,
                c: c as u16,
            };
            let mut win = vec![0u8; kkc];
            let mut want = vec![0u8; map.len()];
            conv2d(&map, s, &mut want, s, 0..h, k, pad, &p, &mut win);
            let row = w * c;
            let mut sizes: std::vec::Vec<usize> = (pad + 1..=h + pad).map(|r| r * row).collect();
            sizes.extend([
                (pad + 1) * row + 1,
                (pad + 2) * row - 1,
                (h + pad + 3) * row,
            ]);
            for stage_len in sizes {
                let mut m = map.clone();
                let mut stage = vec![0u8; stage_len];
                conv2d_in_place(&mut m, s, k, pad, &p, &mut win, &mut stage);
                assert_eq!(m, want, "{:?}, stage {stage_len}", (h, w, c, k, pad));
            }
            let mut m = map.clone();
            let mut stage = vec![0u8; (pad + 1) * row - 1];
            conv2d_in_place(&mut m, s, k, pad, &p, &mut win, &mut stage);
            assert_eq!(m, map, "stage too small must leave the map alone");
        }
    }
}

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
    with_dot!(kkc, dot => {
        let mut pixels = dst.chunks_exact_mut(cout);
        for oy in 0..oh {
            for ox in 0..ow {
                let Some(px) = pixels.next() else { return };
                gather(win, src, h, w, cin, k, pad, oy, ox);
                let win: &[u8] = win;
                // Dot products for a block of channels first, then the requantization of the
                // block in a separate loop that the compiler can vectorize.
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
                        *a = dot(win, wc);
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
        }
    })
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

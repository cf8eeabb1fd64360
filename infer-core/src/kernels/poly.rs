//! 3x3 convolution for 32-bit targets with a 32x32+64-bit multiply-accumulate (`smlal`),
//! such as the Cortex-M4, computing two neighbouring output pixels with three useful
//! multiply-accumulates per `smlal` (the `packed` kernel, for other kernel sizes, gets two).
//!
//! # The trick: a kernel row as a polynomial product
//!
//! Along a row, output `x` of a 3-tap filter is `v[x] w0 + v[x+1] w1 + v[x+2] w2` (`v` the
//! zero-padded input, one channel). Pack two neighbouring inputs into one word and two taps,
//! in reverse order, into another, both with fields `2^S` apart (`S` = [`S`]):
//!
//! ```text
//! A_j = v[2j] + v[2j+1] 2^S                  (activations, per channel and column pair)
//! Wp  = w1 + w0 2^S,   Wq = w2 + w1 2^S      (weights, per channel and kernel row)
//! A_j   * Wp = v[2j] w1   + (v[2j] w0 + v[2j+1] w1) 2^S   + v[2j+1] w0 2^2S
//! A_j+1 * Wq = v[2j+2] w2 + (v[2j+2] w1 + v[2j+3] w2) 2^S + v[2j+3] w1 2^2S
//! ```
//!
//! The middle field of the first product is two taps of output `2j`, its top field one tap
//! of output `2j+1`; the second product's bottom field is the last tap of output `2j`, its
//! middle field the last two of output `2j+1`. So two `smlal`s, into two 64-bit sums `P`
//! and `Q`, do six of the pair's multiply-accumulates (the other two products are dropped),
//! and one step of the loop is four instructions: `ldrd` of `A_j, A_j+1`, `ldrd` of
//! `Wp, Wq`, two `smlal`. Summed over the channels and kernel rows (one stream of
//! `3 * cin` steps), the fields hold
//!
//! ```text
//! P = [garbage, out0 (2 products/step), out1 (1)]     Q = [out0 (1), out1 (2), garbage]
//! ```
//!
//! # Keeping it exact
//!
//! The fields are separated every [`SEG`] (32) steps. The two low fields of both sums start
//! at a bias `B` that keeps them within `[0, 2^S)` over a segment whatever the int8 values,
//! so they are plain bit fields with no borrows between them; `P`'s top field (the 20 bits
//! above them) starts at -1 and holds a segment of one product per step. `Q`'s top field
//! overflows freely (wrapping arithmetic leaves the low bits alone). The bounds are checked
//! in `tests::field_bounds`; the results equal the reference convolution bit for bit
//! (`kernels::tests::conv2d_kernels_agree`, and the firmware against the host).
//!
//! # Memory and layout
//!
//! The packed activations of a block of output rows (and the two rows below it) are built
//! in a stack ring ([`RING`] words, 20 KiB): per half-row of at most [`HALF`] output pairs,
//! per input row, per channel, [`Q8`] column-pair words. That layout makes the `3 * cin`
//! steps of one output pair a single stream with constant strides (8 words of activations,
//! 2 of weights), so a segment's 64 loads use immediate offsets (at most 992 bytes, within
//! `ldrd`'s reach). The packed weights of one output channel (`6 * cin` words) are built
//! once per channel and block of rows.
//!
//! # Code shape
//!
//! [`segment`] (32 steps, 64 `smlal`, the fields separated at the end) is a function of its
//! own: 147 instructions for 192 multiply-accumulates. LLVM keeps its `ldrd`s only in this
//! shape: a 64-step segment, a loop of segments inlined into one function, or the pairs of a
//! row in one loop each made it split the loads into `ldr`s or hoist and spill them
//! (measured: +3 % to +47 % instructions per digit).

use super::requant::Requant;
use super::KernelParams;

/// Spacing of the packed fields, in bits.
const S: u32 = 22;
/// Column-pair words per (half-row, input row, channel): the [`HALF`] output pairs of a
/// half-row read `HALF + 1` of them.
const Q8: usize = 8;
/// Output pairs per half-row.
const HALF: usize = 7;
/// Largest input channel count handled.
pub(super) const MAX_CIN: usize = 64;
/// Widest output row handled: two half-rows.
pub(super) const MAX_OW: usize = 4 * HALF;
/// Words in the ring of packed activation rows: five rows of two half-rows at
/// [`MAX_CIN`] channels (20 KiB of stack).
const RING: usize = 5 * 2 * MAX_CIN * Q8;
/// Steps per segment: the fields are separated after each.
const SEG: usize = 32;
/// Bias of each low field: over [`SEG`] steps a two-product field lies in
/// `[-2 * 32 * 16256, 2 * 32 * 16384]`, which the bias moves into `[0, 2^22)`.
const B: i64 = 1 << 21;
/// Mask of one field.
const MASK: i64 = (1 << S) - 1;
/// Start value of `Q`: both low fields at the bias.
const Q0: i64 = B + (B << S);
/// Start value of `P`: both low fields at the bias, the top field at -1 (over a segment it
/// lies in `[-32 * 16256, 32 * 16384]`; less one, that fits its 20 bits).
const P0: i64 = Q0 - (1 << (2 * S));

/// `v0 + v1 * 2^S` for two int8 values.
#[inline(always)]
fn pack(v0: u8, v1: u8) -> i32 {
    i32::from(v0 as i8).wrapping_add(i32::from(v1 as i8) << S)
}

/// One step: `P += A_j * Wp`, `Q += A_j+1 * Wq`.
#[inline(always)]
fn step(p: &mut i64, q: &mut i64, a0: i32, a1: i32, wp: i32, wq: i32) {
    *p = p.wrapping_add(i64::from(a0) * i64::from(wp));
    *q = q.wrapping_add(i64::from(a1) * i64::from(wq));
}

/// Activation words from one segment's start to the next's (it reads the first
/// `(SEG - 1) * Q8 + 2`).
const WIN: usize = SEG * Q8;

/// One whole segment: the fields it adds to the two outputs' sums, biases included (see
/// [`extract`]). Written out (64 `smlal`) so the loads use immediate offsets and the loop
/// stays unrolled at any opt-level; out of line, so its registers hold nothing else (a
/// longer segment, or this loop inlined into its caller, made LLVM split `ldrd`s and spill).
#[inline(never)]
fn segment(a: &[i32; WIN], w: &[i32; 2 * SEG]) -> (i32, i32) {
    let (mut p, mut q) = (P0, Q0);
    macro_rules! steps {
        ($($i:literal)*) => {
            $( step(&mut p, &mut q, a[$i * Q8], a[$i * Q8 + 1], w[2 * $i], w[2 * $i + 1]); )*
        };
    }
    steps!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    let mut s = [0; 2];
    extract(p, q, &mut s);
    (s[0], s[1])
}

/// A partial segment of `n` (less than [`SEG`]) steps one at a time: like [`segment`].
/// Out of line, so its registers hold nothing else.
#[inline(never)]
fn few(a: &[i32], w: &[i32], n: usize) -> (i32, i32) {
    let (mut p, mut q) = (P0, Q0);
    // (The activation slice is checked once: `n` steps read up to word `8(n - 1) + 1`.)
    let a = a.get(..(n * Q8).saturating_sub(Q8 - 2)).unwrap_or_default();
    for (ac, wc) in a.chunks(Q8).zip(w.chunks_exact(2)) {
        if let ([a0, a1, ..], [wp, wq]) = (ac, wc) {
            step(&mut p, &mut q, *a0, *a1, *wp, *wq);
        }
    }
    let mut s = [0; 2];
    extract(p, q, &mut s);
    (s[0], s[1])
}

/// Adds a finished segment's fields to the two outputs' sums, biases included (`P`'s bottom
/// field is dropped; [`bias_init`] takes the biases back out).
#[inline(always)]
fn extract(p: i64, q: i64, s: &mut [i32; 2]) {
    let f = |v: i64, at: u32| ((v >> at) & MASK) as i32;
    s[0] = s[0].wrapping_add(f(p, S)).wrapping_add(f(q, 0));
    s[1] = s[1]
        .wrapping_add((p >> (2 * S)) as i32)
        .wrapping_add(f(q, S));
}

/// The start of the two outputs' sums for streams of `n` steps: minus the biases its
/// segments add (2B to output 0, B - 1 to output 1).
fn bias_init(n: usize) -> [i32; 2] {
    let k = n.div_ceil(SEG) as i32;
    [k.wrapping_mul(-2 * B as i32), k.wrapping_mul(1 - B as i32)]
}

/// Adds to `s` the segments of the activations `a` (one per [`WIN`] words) against the
/// packed weights `w` (one per `2 * SEG` words), as many as both hold.
#[inline(always)]
fn add_segments(a: &[i32], w: &[i32], s: &mut [i32; 2]) {
    for (ac, wc) in a.chunks_exact(WIN).zip(w.chunks_exact(2 * SEG)) {
        if let (Ok(ac), Ok(wc)) = (ac.try_into(), wc.try_into()) {
            let (x, y) = segment(ac, wc);
            s[0] = s[0].wrapping_add(x);
            s[1] = s[1].wrapping_add(y);
        }
    }
}

/// The two outputs' sums of the stream starting at word `at` of `ring`: `span / WIN` whole
/// segments against `wseg`, then `rest` steps against `wrest`, added to `s`.
#[inline(always)]
fn sums(
    ring: &[i32],
    at: usize,
    span: usize,
    wseg: &[i32],
    wrest: &[i32],
    rest: usize,
    mut s: [i32; 2],
) -> [i32; 2] {
    if let Some(a) = ring.get(at..at + span) {
        add_segments(a, wseg, &mut s);
    }
    if rest > 0 {
        let (x, y) = few(ring.get(at + span..).unwrap_or_default(), wrest, rest);
        s[0] = s[0].wrapping_add(x);
        s[1] = s[1].wrapping_add(y);
    }
    s
}

/// Whole segments of a 3x3x64 receptive field.
const FULL: usize = 3 * MAX_CIN / SEG;

/// [`sums`] for a stream of exactly [`FULL`] whole segments.
#[inline(always)]
fn sums_full(ring: &[i32], at: usize, w: &[i32; 2 * SEG * FULL], mut s: [i32; 2]) -> [i32; 2] {
    if let Some(a) = ring.get(at..at + FULL * WIN) {
        add_segments(a, w, &mut s);
    }
    s
}

/// [`sums`] for a stream of three steps (a 3x3 kernel over one input channel).
#[inline(always)]
fn sums3(ring: &[i32], at: usize, w: &[i32], s: [i32; 2]) -> [i32; 2] {
    let (Some(a), Some(w)) = (ring.get(at..at + 2 * Q8 + 2), w.get(..6)) else {
        return s;
    };
    let (Ok(a), Ok(w)) = (<&[i32; 2 * Q8 + 2]>::try_from(a), <&[i32; 6]>::try_from(w)) else {
        return s;
    };
    let (mut p, mut q) = (P0, Q0);
    step(&mut p, &mut q, a[0], a[1], w[0], w[1]);
    step(&mut p, &mut q, a[Q8], a[Q8 + 1], w[2], w[3]);
    step(&mut p, &mut q, a[2 * Q8], a[2 * Q8 + 1], w[4], w[5]);
    let mut s = s;
    extract(p, q, &mut s);
    s
}

/// One output row of channel `oc`: the pixels of `out` (`cout` bytes each), two per pair.
/// `ring` starts at this row's first packed input row in the first half-row; half-rows
/// are `half` words apart; `w` holds the channel's packed weights for `n` steps.
///
/// The sums of a pair are a stream of `n` steps from its first activation word (step `k`
/// reads words `8k` and `8k + 1`) against the packed weights (step `k` reads `w[2k]`,
/// `w[2k + 1]`): whole segments by [`segment`], the rest (`n % SEG` steps) one at a time.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn row(
    ring: &[i32],
    half: usize,
    w: &[i32],
    n: usize,
    rq: &Requant,
    out: &mut [u8],
    cout: usize,
    oc: usize,
) {
    let (segs, rest) = (n / SEG, n % SEG);
    let span = segs * WIN;
    let (wseg, wrest) = w.split_at(w.len().min(segs * 2 * SEG));
    let init = bias_init(n);
    // 3x3x64 receptive fields (all of `paper`'s but the first layer's): the stream's length
    // is a constant, so its segment loop needs no trip-count arithmetic.
    let full = w
        .get(..2 * SEG * FULL)
        .and_then(|w| <&[i32; 2 * SEG * FULL]>::try_from(w).ok());
    let mut pixels = out.chunks_mut(2 * cout);
    for hr in 0..2 {
        for jj in 0..HALF {
            let Some(px) = pixels.next() else {
                return;
            };
            let at = hr * half + jj;
            let s = match full {
                Some(wf) if segs == FULL && rest == 0 => sums_full(ring, at, wf, init),
                // One input channel (a first layer): three steps, written out.
                _ if n == 3 => sums3(ring, at, w, init),
                _ => sums(ring, at, span, wseg, wrest, rest, init),
            };
            if let Some(o) = px.get_mut(oc) {
                *o = rq.apply(s[0]);
            }
            if let Some(o) = px.get_mut(cout + oc) {
                *o = rq.apply(s[1]);
            }
        }
    }
}

/// Runs the convolution (3x3, stride 1, zero padding `pad`) for the output rows `out_rows`
/// into `dst` (those rows only) if the shapes suit this kernel (at most [`MAX_CIN`] input
/// channels, output rows of at most [`MAX_OW`]); otherwise returns `false`, having written
/// nothing.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(super) fn conv2d(
    src: &[u8],
    h: usize,
    w: usize,
    cin: usize,
    dst: &mut [u8],
    out_rows: core::ops::Range<usize>,
    ow: usize,
    cout: usize,
    pad: usize,
    p: &KernelParams<'_>,
) -> bool {
    if cin == 0 || cin > MAX_CIN || ow == 0 || ow > MAX_OW {
        return false;
    }
    let pairs = ow.div_ceil(2);
    let halves = pairs.div_ceil(HALF);
    // Ring rows per half-row (at least 5), and output rows per block.
    let cap = RING / (halves * cin * Q8);
    let block = cap - 2;
    let kkc = 9 * cin;
    // (A stream of the last row ends up to `HALF` words past the last ring row; its last
    // segment window, `WIN` words, must still lie inside.)
    let mut ring = [0i32; RING + Q8];
    let mut wbuf = [0i32; 6 * MAX_CIN];
    for oy0 in out_rows.clone().step_by(block) {
        let rows = block.min(out_rows.end - oy0);
        // Pack the padded input rows oy0 .. oy0 + rows + 2.
        for r in 0..rows + 2 {
            let iy = (oy0 + r).checked_sub(pad).filter(|&y| y < h);
            for hr in 0..halves {
                let at = (hr * cap + r) * cin * Q8;
                let Some(slot) = ring.get_mut(at..at + cin * Q8) else {
                    continue;
                };
                for qq in 0..Q8 {
                    // Padded columns 2q and 2q + 1 of this word.
                    let q = hr * HALF + qq;
                    let px = |pc: usize| {
                        let ix = pc.checked_sub(pad).filter(|&x| x < w)?;
                        let at = (iy? * w + ix) * cin;
                        src.get(at..at + cin)
                    };
                    // This word of every channel: one in each `Q8`-word group.
                    let words = slot.chunks_exact_mut(Q8);
                    match (px(2 * q), px(2 * q + 1)) {
                        (Some(x0), Some(x1)) => {
                            for (g, (&a, &b)) in words.zip(x0.iter().zip(x1)) {
                                if let Some(v) = g.get_mut(qq) {
                                    *v = pack(a, b);
                                }
                            }
                        }
                        (Some(x0), None) => {
                            for (g, &a) in words.zip(x0) {
                                if let Some(v) = g.get_mut(qq) {
                                    *v = pack(a, 0);
                                }
                            }
                        }
                        (None, Some(x1)) => {
                            for (g, &b) in words.zip(x1) {
                                if let Some(v) = g.get_mut(qq) {
                                    *v = pack(0, b);
                                }
                            }
                        }
                        (None, None) => words.for_each(|g| {
                            if let Some(v) = g.get_mut(qq) {
                                *v = 0;
                            }
                        }),
                    }
                }
            }
        }
        let ring: &[i32] = &ring;
        for oc in 0..cout {
            // Pack this channel's weights, kernel-row-major: (Wp, Wq) per (ky, channel).
            let Some(wt) = p.weights.get(oc * kkc..(oc + 1) * kkc) else {
                break;
            };
            for (wr, pr) in wt.chunks_exact(3 * cin).zip(wbuf.chunks_exact_mut(2 * cin)) {
                let (w0, rest) = wr.split_at(cin);
                let (w1, w2) = rest.split_at(cin);
                for (pw, ((&a, &b), &c)) in pr.chunks_exact_mut(2).zip(w0.iter().zip(w1).zip(w2)) {
                    pw.copy_from_slice(&[pack(b, a), pack(c, b)]);
                }
            }
            let wts: &[i32] = &wbuf;
            let rq = Requant::of(p, oc);
            for r in 0..rows {
                let y = oy0 + r - out_rows.start;
                let (Some(out), Some(rr)) = (
                    dst.get_mut(y * ow * cout..(y + 1) * ow * cout),
                    ring.get(r * cin * Q8..),
                ) else {
                    break;
                };
                row(rr, cap * cin * Q8, wts, 3 * cin, &rq, out, cout, oc);
            }
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// The field bounds the constants rely on, for every int8 activation and weight.
    #[test]
    fn field_bounds() {
        let (lo, hi) = (-128i64 * 127, 128i64 * 128);
        // Low fields over a segment: one or two products per step, plus the bias.
        for n in [1, 2] {
            let seg = n * SEG as i64;
            assert!(seg * lo + B >= 0);
            assert!(seg * hi + B < 1 << S);
        }
        // P's top field over a segment, less one, fits 64 - 2S bits (signed).
        let top = 1i64 << (63 - 2 * S);
        assert!(SEG as i64 * lo > -top);
        assert!((SEG as i64 * hi - 1) < top);
        // Packed words fit i32.
        assert_eq!(pack(0x80, 0x80), -128 - (128 << S));
        assert_eq!(pack(0x7f, 0x7f), 127 + (127 << S));
    }

    /// `sums` equals the two outputs' plain sums for every stream length around the
    /// segment boundaries, with random and extreme values.
    #[test]
    fn stream_exact() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as u8
        };
        for n in [0usize, 1, 2, 31, 32, 33, 63, 64, 65, 96, 127, 128, 192, 200] {
            for kind in 0..4 {
                // Per step: activations v0..v3 (one channel, four columns), taps w0..w2.
                let vals: Vec<[u8; 7]> = (0..n)
                    .map(|_| match kind {
                        0 => core::array::from_fn(|_| rnd()),
                        1 => [0x80; 7],
                        2 => [0x80, 0x80, 0x80, 0x80, 0x7f, 0x7f, 0x7f],
                        _ => [0x7f, 0x7f, 0x7f, 0x7f, 0x80, 0x80, 0x80],
                    })
                    .collect();
                let mut a = std::vec![0i32; n * Q8 + 2];
                let mut w = std::vec![0i32; 2 * n];
                let (mut want0, mut want1) = (0i32, 0i32);
                for (k, v) in vals.iter().enumerate() {
                    let s = |b: u8| i32::from(b as i8);
                    a[k * Q8] = pack(v[0], v[1]);
                    a[k * Q8 + 1] = pack(v[2], v[3]);
                    w[2 * k] = pack(v[5], v[4]);
                    w[2 * k + 1] = pack(v[6], v[5]);
                    want0 += s(v[0]) * s(v[4]) + s(v[1]) * s(v[5]) + s(v[2]) * s(v[6]);
                    want1 += s(v[1]) * s(v[4]) + s(v[2]) * s(v[5]) + s(v[3]) * s(v[6]);
                }
                let segs = n / SEG;
                let (ws, wr) = w.split_at(segs * 2 * SEG);
                let got = sums(&a, 0, segs * WIN, ws, wr, n % SEG, bias_init(n));
                assert_eq!(got, [want0, want1], "n {n} kind {kind}");
            }
        }
    }
}

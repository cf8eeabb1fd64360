//! Convolution for 32-bit targets with a 32x32+64-bit multiply-accumulate (`smlal`), such as
//! the Cortex-M4: the weights of two output channels are packed into one word per receptive
//! field position, `w0 + w1 * 2^23`, so one `smlal` of an activation by that word accumulates
//! both channels' products (`sum0 + sum1 * 2^23` in 64 bits). The packed weights of
//! [`PAIRS`] channel pairs are built once per layer and channel group, in a stack
//! buffer; the activations are read from the input map in place (a receptive field row is
//! contiguous in HWC order), so nothing is gathered or copied per output pixel.

use super::requant::Requant;
use super::KernelParams;

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

/// Runs the convolution (stride 1, zero padding) for the output rows `out_rows` into `dst`
/// (those rows only) unless the receptive field is larger than [`MAX_KKC`] (then returns
/// `false`, having written nothing).
///
/// The shapes come as separate arguments, not as a [`Geom`]: with a `&Geom` the Cortex-M4
/// build ran 0.5 % more instructions per digit (606,000 for `paper`) and 190 bytes more code.
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
        for (oy, out_row) in out_rows.clone().zip(dst.chunks_exact_mut(ow * cout)) {
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

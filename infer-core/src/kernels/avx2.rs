//! x86-64 convolution with AVX2 (`-C target-cpu=x86-64-v3` or newer, the workspace default):
//! a register-blocked integer GEMM micro-kernel on `vpmaddwd`.
//!
//! The weights of [`CB`] = 16 output channels are repacked once per layer and channel block
//! into int16 pairs, `[kp][channel][2]` (`w[c][2kp]`, `w[c][2kp+1]`), two 256-bit vectors per
//! pair of receptive-field positions. Each output pixel's receptive field is gathered once
//! (for all channel blocks) as int16; two adjacent activations form one 32-bit word. One
//! `vpmaddwd` of a broadcast word by a weight vector then yields
//! `x[2kp]*w[c][2kp] + x[2kp+1]*w[c][2kp+1]` for 8 channels at once, added into an `i32` lane
//! per channel. [`PX`] = 6 output pixels share every weight load: per position pair the loop
//! does 2 vector loads, 6 broadcasts, 12 `vpmaddwd` and 12 `vpaddd` for 192 multiply-adds,
//! with the 12 accumulators (6 pixels x 16 channels) in registers (all 16 `ymm` registers
//! are in use), and no horizontal sums: each lane already is one channel's accumulator.
//! (6 pixels measured about 5 % faster than 4 on `paper`, AMD EPYC.)
//!
//! Exactness: each product pair is at most `2 * 128 * 128 = 2^15` in magnitude, computed
//! exactly in `i32` by `vpmaddwd`; the lane sums wrap like the reference's `wrapping_add`
//! (and cannot overflow for valid models, see [`crate::math::MAX_TERMS`]). Results are bit
//! for bit those of the other kernels (tested in `kernels::tests`).
//!
//! The SIMD operations come from `safe_arch`, whose safe wrappers exist only when the
//! compile-time target enables AVX2, so this crate keeps `#![forbid(unsafe_code)]`. Stack use:
//! `MAX_PACK * 64` bytes of packed weights plus `PX * MAX_KP * 4` bytes of activations and
//! `MAX_BLOCKS` blocks' requantization parameters (about 92 KB); receptive fields larger
//! than `2 * MAX_KP` go to [`super::wide`].

use super::{gather, Geom, KernelParams};
use crate::math::{chunk_i32, chunk_i64, ACT_MAX};
use safe_arch::{add_i32_m256i, m256i, mul_i16_horizontal_add_m256i, set_splat_i32_m256i};

/// Output channels per block (two vectors of 8 `i32` lanes).
const CB: usize = 16;
/// Output pixels per micro-kernel call (they share each weight load).
const PX: usize = 6;
/// Largest number of receptive-field position pairs handled here (`k*k*cin <= 1152`, e.g.
/// 3x3 over 128 channels or 5x5 over 46).
const MAX_KP: usize = 576;
/// Capacity of the packed-weight buffer in position pairs of one block: 73,728 bytes, all
/// four blocks of a 3x3x64 -> 64 convolution.
const MAX_PACK: usize = 1152;
/// Most channel blocks packed at once.
const MAX_BLOCKS: usize = 8;

/// Packed weights of one channel block for one position pair: channels 0-7, then 8-15, each
/// as a word holding the int16 pair `w[c][2kp]` (low half), `w[c][2kp+1]` (high half).
type PairVecs = [[i32; 8]; 2];

/// Runs the convolution unless its receptive field exceeds `2 * MAX_KP` positions (then
/// returns `false`, having written nothing).
pub(super) fn conv2d(src: &[u8], dst: &mut [u8], g: &Geom, p: &KernelParams<'_>) -> bool {
    let (ow, cout, kkc) = (g.ow, g.cout, g.kkc());
    let kp = kkc.div_ceil(2);
    if kp > MAX_KP {
        return false;
    }
    if cout == 0 || kkc == 0 || ow == 0 {
        return true;
    }
    let mut wbuf: [PairVecs; MAX_PACK] = [[[0; 8]; 2]; MAX_PACK];
    // Receptive fields as int16, padded with a zero to an even length (never overwritten:
    // `gather` writes the first `kkc` values only).
    let mut xbuf = [[0i16; 2 * MAX_KP]; PX];
    // Output pixels `first_pix .. npix` (rows `g.y0 .. g.y1`); `dst` starts at the first.
    let (first_pix, npix) = (g.y0 * ow, g.y1 * ow);
    // As many channel blocks as the buffer holds are packed together, so that each pixel
    // group's receptive fields are gathered once for all of them.
    let per_pass = (MAX_PACK / kp).clamp(1, MAX_BLOCKS);
    for c_pass in (0..cout).step_by(CB * per_pass) {
        let mut rq = [const { BlockParams::EMPTY }; MAX_BLOCKS];
        let blocks = wbuf
            .chunks_exact_mut(kp)
            .zip(rq.iter_mut())
            .zip((c_pass..cout).step_by(CB))
            .take(per_pass);
        let mut nblocks = 0;
        for ((wpk, rq), c0) in blocks {
            let nc = CB.min(cout - c0);
            pack(wpk, p.weights, kkc, c0, nc);
            *rq = BlockParams::of(p, c0, nc);
            nblocks += 1;
        }
        for first in (first_pix..npix).step_by(PX) {
            // Gather the group's receptive fields (a group may span output rows; slots past
            // the last pixel keep stale values whose results are not stored).
            for (pix, xs) in (first..npix).zip(xbuf.iter_mut()) {
                if let Some(xs) = xs.get_mut(..kkc) {
                    gather(xs, src, g, pix / ow, pix % ow, |v| i16::from(v as i8));
                }
            }
            let blocks = wbuf
                .chunks_exact(kp)
                .zip(&rq)
                .zip((c_pass..cout).step_by(CB))
                .take(nblocks);
            for ((wpk, rq), c0) in blocks {
                let acc = micro(wpk, &xbuf);
                for (pix, a) in (first..npix).zip(acc) {
                    if let Some(out) = dst.get_mut((pix - first_pix) * cout + c0..) {
                        rq.apply(out, a);
                    }
                }
            }
        }
    }
    true
}

/// The register-blocked inner loop: for every position pair, each of the [`PX`] pixels'
/// activation word is broadcast and multiplied into both weight vectors.
#[inline(always)]
fn micro(w: &[PairVecs], x: &[[i16; 2 * MAX_KP]; PX]) -> [[i32; CB]; PX] {
    let z = m256i::default();
    let mut acc = [[z; 2]; PX];
    // `take` bounds the index, so the compiler drops the checks on `x`.
    for (j, wk) in w.iter().take(MAX_KP).enumerate() {
        let w0 = m256i::from(wk[0]);
        let w1 = m256i::from(wk[1]);
        for (ap, xs) in acc.iter_mut().zip(x) {
            // Two adjacent int16 activations as one word (one 32-bit load).
            let word = match xs.get(2 * j..2 * j + 2) {
                Some(&[lo, hi]) => i32::from(lo as u16) | (i32::from(hi) << 16),
                _ => 0,
            };
            let b = set_splat_i32_m256i(word);
            ap[0] = add_i32_m256i(ap[0], mul_i16_horizontal_add_m256i(w0, b));
            ap[1] = add_i32_m256i(ap[1], mul_i16_horizontal_add_m256i(w1, b));
        }
    }
    acc.map(|[lo, hi]| {
        let (lo, hi): ([i32; 8], [i32; 8]) = (lo.into(), hi.into());
        let mut out = [0i32; CB];
        for (o, v) in out.iter_mut().zip(lo.into_iter().chain(hi)) {
            *o = v;
        }
        out
    })
}

/// Two int8 values (`lo`, `hi`) sign-extended into the int16 halves of a word.
#[inline(always)]
fn word(lo: u8, hi: u8) -> i32 {
    i32::from(i16::from(lo as i8) as u16) | (i32::from(hi as i8) << 16)
}

/// Repacks the weights of channels `c0..c0 + nc` (`[cout][k*k*cin]` int8) into position
/// pairs; channels past `nc` and the odd position past `kkc` get zero weights.
fn pack(dst: &mut [PairVecs], weights: &[u8], kkc: usize, c0: usize, nc: usize) {
    let rows = weights
        .chunks_exact(kkc)
        .skip(c0)
        .take(nc)
        .chain(core::iter::repeat(&[][..]))
        .take(CB);
    for (c, row) in rows.enumerate() {
        let (half, lane) = (c / 8, c % 8);
        let pairs = row.chunks_exact(2);
        let last = match *pairs.remainder() {
            [a] => word(a, 0),
            _ => 0,
        };
        let mut slots = dst
            .iter_mut()
            .map(|v| v.get_mut(half).and_then(|h| h.get_mut(lane)));
        for (pair, slot) in pairs.zip(slots.by_ref()) {
            if let (Some(slot), &[a, b]) = (slot, pair) {
                *slot = word(a, b);
            }
        }
        if let Some(Some(slot)) = slots.next() {
            *slot = last;
        }
        for slot in slots.flatten() {
            *slot = 0;
        }
    }
}

/// Requantization parameters of one channel block, decoded once per layer and block (lanes
/// past the block's channels are zero and never stored).
struct BlockParams {
    nc: usize,
    bias: [i32; CB],
    mult_pos: [i64; CB],
    mult_neg: [i64; CB],
    /// `offset + 2^(shift-1)` (the rounding term), wrapping as in
    /// [`crate::math::requantize_product`].
    offset: [i64; CB],
    /// The shift modulo 64 (as `wrapping_shr` takes it).
    shift: [u64; CB],
}

impl BlockParams {
    /// No channels.
    const EMPTY: Self = BlockParams {
        nc: 0,
        bias: [0; CB],
        mult_pos: [0; CB],
        mult_neg: [0; CB],
        offset: [0; CB],
        shift: [0; CB],
    };

    /// The parameters of channels `c0..c0 + nc` (fewer if the arrays are short: those
    /// channels are then not written).
    fn of(p: &KernelParams<'_>, c0: usize, nc: usize) -> Self {
        let mut b = Self::EMPTY;
        fn sl(s: &[u8], n: usize, c0: usize) -> &[u8] {
            s.get(n * c0..).unwrap_or(&[])
        }
        let chans = sl(p.bias, 4, c0)
            .chunks_exact(4)
            .zip(sl(p.mult_pos, 4, c0).chunks_exact(4))
            .zip(sl(p.mult_neg, 4, c0).chunks_exact(4))
            .zip(sl(p.shift, 1, c0))
            .zip(sl(p.offset, 8, c0).chunks_exact(8))
            .take(nc)
            .enumerate();
        for (j, ((((bias, mp), mn), &sh), off)) in chans {
            let round = 1i64.wrapping_shl(u32::from(sh).wrapping_sub(1));
            if let (Some(bi), Some(p), Some(n), Some(o), Some(s)) = (
                b.bias.get_mut(j),
                b.mult_pos.get_mut(j),
                b.mult_neg.get_mut(j),
                b.offset.get_mut(j),
                b.shift.get_mut(j),
            ) {
                *bi = chunk_i32(bias);
                *p = i64::from(chunk_i32(mp));
                *n = i64::from(chunk_i32(mn));
                *o = chunk_i64(off).wrapping_add(round);
                *s = u64::from(sh) & 63;
            }
            b.nc = j + 1;
        }
        b
    }

    /// Adds the bias to one pixel's accumulators, requantizes and stores the block's
    /// channels: the same arithmetic as [`super::finish`], on fixed-size arrays the compiler
    /// vectorizes.
    #[inline(always)]
    fn apply(&self, out: &mut [u8], acc: [i32; CB]) {
        let mut q = [0u8; CB];
        let lanes = q
            .iter_mut()
            .zip(acc)
            .zip(self.bias)
            .zip(self.mult_pos)
            .zip(self.mult_neg)
            .zip(self.offset)
            .zip(self.shift);
        for ((((((q, a), bias), mp), mn), off), sh) in lanes {
            let a = a.wrapping_add(bias);
            let prod = i64::from(a.max(0)) * mp + i64::from(a.min(0)) * mn;
            let v = prod.wrapping_add(off) >> sh;
            *q = v.clamp(-ACT_MAX, ACT_MAX) as i8 as u8;
        }
        if let (Some(out), Some(q)) = (out.get_mut(..self.nc), q.get(..self.nc)) {
            out.copy_from_slice(q);
        }
    }
}

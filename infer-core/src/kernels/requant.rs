//! Per-output-channel requantization for the Cortex-M kernels: the constants of one channel
//! read once ([`Requant::of`]), applied to each finished accumulator ([`Requant::apply`]).

use super::KernelParams;
use crate::math::{chunk_i32, chunk_i64, ACT_MAX};

/// One output channel's requantization constants (the same arithmetic as the desktop
/// kernels' `finish`), read once per channel group; the rounding term is folded into the
/// offset (wrapping arithmetic, so the result is identical).
#[derive(Clone, Copy, Default)]
pub(super) struct Requant {
    bias: i32,
    mpos: i32,
    mneg: i32,
    shift: u32,
    offset: i64,
}

impl Requant {
    /// Channel `c`'s constants (zeros when out of range). Out of line: it runs once per
    /// channel and layer (per output for dense layers), and its range checks would
    /// otherwise be repeated at every call site.
    #[inline(never)]
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

    /// Requantizes a finished accumulator with these constants.
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

//! Integer requantization and the few scalar functions inference needs, all free of `std`.
//!
//! Everything here is deterministic: integer code is exact, and the floating-point code uses
//! only IEEE-754 single-precision `+ - * /` (no fused multiply-add, no library calls), which
//! every conforming target rounds identically.

/// Smallest valid requantization shift.
pub const MIN_SHIFT: u8 = 1;
/// Largest valid requantization shift.
pub const MAX_SHIFT: u8 = 61;
/// Largest valid magnitude of a requantization offset (`2^61`).
pub const MAX_OFFSET: i64 = 1 << 61;
/// Largest valid magnitude of an i32 bias (`2^30 - 1`).
pub const MAX_BIAS: i32 = (1 << 30) - 1;
/// Largest number of products summed into one accumulator (`k*k*cin` of a convolution, the
/// input length of a dense layer, the feature count of the head). With int8 operands each
/// product is at most `128*128 = 2^14` in magnitude, so `2^16` products plus a bias of at most
/// `2^30 - 1` cannot overflow an `i32`.
pub const MAX_TERMS: usize = 1 << 16;
/// Largest and smallest activation value produced by a layer (symmetric int8).
pub const ACT_MAX: i64 = 127;

/// Fused requantization of one accumulator (see `docs/model-format.md`, "Requantization"):
///
/// `out = clamp(floor((acc * mult + offset + 2^(shift-1)) / 2^shift), -127, 127)`
///
/// computed exactly in `i64` (the floor is an arithmetic right shift, so ties round towards
/// +infinity). With `|acc| < 2^31`, `|mult| <= 2^31`, `|offset| <= 2^61` and
/// `1 <= shift <= 61` the sum stays below `2^62 + 2^61 + 2^60 < 2^63`.
///
/// Out-of-range `shift` values (rejected when a model is loaded) do not panic: the shift
/// amounts wrap modulo 64.
#[inline(always)]
pub fn requantize(acc: i32, mult: i32, shift: u8, offset: i64) -> i8 {
    requantize_product(i64::from(acc) * i64::from(mult), shift, offset)
}

/// [`requantize`] given the product `acc * mult` (`|product| <= 2^62`).
#[inline(always)]
pub fn requantize_product(product: i64, shift: u8, offset: i64) -> i8 {
    let sh = u32::from(shift);
    let round = 1i64.wrapping_shl(sh.wrapping_sub(1));
    let v = product
        .wrapping_add(offset)
        .wrapping_add(round)
        .wrapping_shr(sh);
    v.clamp(-ACT_MAX, ACT_MAX) as i8
}

/// Floor of the square root of `n`, by the exact digit-by-digit (binary restoring) method.
pub fn isqrt_u64(n: u64) -> u64 {
    let mut rem = n;
    let mut root = 0u64;
    let mut bit = 1u64 << 62;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        let trial = root + bit;
        if rem >= trial {
            rem -= trial;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// Square root of a non-negative, finite `f32` (bit-level initial guess refined by four
/// Newton steps; relative error within a couple of ulps). Returns 0 for inputs `<= 0` and
/// NaN for NaN.
pub fn sqrt_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return 0.0;
    }
    // Halving the exponent through the bit pattern gives a guess within ~4 %.
    let mut y = f32::from_bits((x.to_bits() >> 1) + 0x1FBD_1DF5);
    let mut i = 0;
    while i < 4 {
        y = 0.5 * (y + x / y);
        i += 1;
    }
    y
}

/// Arc-cosine in radians of `x`, clamped to `[-1, 1]` first (NaN stays NaN).
///
/// Uses Abramowitz & Stegun 4.4.46, `acos(x) = sqrt(1 - x) * P7(x)` for `0 <= x <= 1`
/// with a degree-7 polynomial whose approximation error is at most `2e-8` rad, and
/// `acos(x) = pi - acos(-x)` for negative `x`. Evaluated in `f32`, the total error is below
/// `1e-6` rad over the whole domain (checked against `f64::acos` in the tests).
pub fn acos_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-1.0, 1.0);
    let a = if x < 0.0 { -x } else { x };
    // The published coefficients, kept verbatim (they round to the nearest f32).
    #[allow(clippy::excessive_precision)]
    const C: [f32; 8] = [
        1.570_796_305_0,
        -0.214_598_801_6,
        0.088_978_987_4,
        -0.050_174_304_6,
        0.030_891_881_0,
        -0.017_088_125_6,
        0.006_670_090_1,
        -0.001_262_491_1,
    ];
    let mut p = 0.0f32;
    for &c in C.iter().rev() {
        p = p * a + c;
    }
    let r = sqrt_f32(1.0 - a) * p;
    if x < 0.0 {
        core::f32::consts::PI - r
    } else {
        r
    }
}

/// Decodes a 4-byte little-endian chunk (0 for any other length).
#[inline(always)]
pub(crate) fn chunk_i32(chunk: &[u8]) -> i32 {
    match *chunk {
        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Decodes an 8-byte little-endian chunk (0 for any other length).
#[inline(always)]
pub(crate) fn chunk_i64(chunk: &[u8]) -> i64 {
    match *chunk {
        [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    }
}

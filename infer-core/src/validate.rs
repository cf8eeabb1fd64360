//! Content validation of a decoded body (`docs/model-format.md`, section 5), for
//! [`crate::Model::from_bytes`].
//!
//! Written for code size, since it runs once per model: every layer goes through the same
//! checks (declared input against the current activation, output map, kernel arrays), every
//! per-channel array through one table-driven length and range check ([`KERNEL`],
//! [`HEAD`]), and a failed check returns a one-byte [`Fault`] that becomes an [`Error`] (with
//! the layer index and a message naming the field) in one place.

use crate::format::{ModelBody, Shape, MAX_CLASSES};
use crate::kernels::STAGE_ROWS;
use crate::math::{MAX_BIAS, MAX_OFFSET, MAX_SHIFT, MAX_TERMS, MIN_SHIFT};
use crate::Error;

/// What a check found wrong. The variants before [`Fault::ConvInput`] are reported as
/// [`Error::Malformed`], those before [`Fault::Terms`] as [`Error::ShapeMismatch`], the rest
/// as [`Error::ParamOutOfRange`]; [`WHAT`] holds their messages, in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Fault {
    InputHw,
    Lut,
    Lists,
    ArenaTooLarge,
    // Error::ShapeMismatch
    ConvInput,
    PoolInput,
    FlattenInput,
    DenseInput,
    Kind,
    KernelPad,
    ConvSize,
    PoolSize,
    FlattenLen,
    NoOutputs,
    EmptyMap,
    MapTooLarge,
    WeightLen,
    BiasLen,
    MultPosLen,
    MultNegLen,
    ShiftLen,
    OffsetLen,
    HeadInput,
    HeadWeightLen,
    HeadMultLen,
    // Error::ParamOutOfRange
    Terms,
    Bias,
    Shift,
    Offset,
    Features,
    Classes,
    HeadMult,
    HeadShift,
}

/// The message of each [`Fault`], in declaration order.
const WHAT: [&str; 33] = [
    "input_hw is 0",
    "input lookup table must have 256 entries",
    "descriptor and parameter lists differ in length",
    "arena too large",
    "conv input shape differs from the previous output",
    "pool input shape differs from the previous output",
    "flatten input shape differs from the previous output",
    "dense input length differs from the previous output",
    "descriptor kind differs from parameter kind",
    "kernel size 0 or padding >= kernel size",
    "conv output size differs from input + 2*pad - k + 1",
    "pool output shape differs from input / 2",
    "flatten output length differs from h*w*c",
    "dense layer with no outputs",
    "empty map",
    "map too large",
    "weight array length",
    "bias array length",
    "mult_pos array length",
    "mult_neg array length",
    "shift array length",
    "offset array length",
    "the last layer's output is not a vector of header.features values",
    "head weight array length",
    "head multiplier array length",
    "accumulator length (k*k*cin or inputs)",
    "bias",
    "shift",
    "offset",
    "feature count",
    "class count",
    "head multiplier",
    "head shift",
];

// One message per fault.
const _: () = assert!(WHAT.len() == Fault::HeadShift as usize + 1);

impl Fault {
    /// The error reported for this fault in layer `layer`.
    #[cold]
    #[inline(never)]
    fn at(self, layer: usize) -> Error {
        let what = WHAT.get(self as usize).copied().unwrap_or("");
        if self < Fault::ConvInput {
            Error::Malformed(what)
        } else if self < Fault::Terms {
            Error::ShapeMismatch { layer, what }
        } else {
            Error::ParamOutOfRange { layer, what }
        }
    }
}

/// `Err(fault)` unless `ok`.
#[inline(always)]
fn ensure(ok: bool, fault: Fault) -> Result<(), Fault> {
    if ok {
        Ok(())
    } else {
        Err(fault)
    }
}

/// A per-channel array: bytes per channel (little-endian, signed), the allowed values, and
/// the faults for a wrong length and for a value out of range.
struct Spec {
    width: usize,
    min: i64,
    max: i64,
    len: Fault,
    range: Fault,
}

/// The arrays of a kernel after its weights: `bias`, `mult_pos`, `mult_neg`, `shift`,
/// `offset` (any multiplier is valid; a shift byte read as signed is out of range when
/// `>= 128`).
const KERNEL: [Spec; 5] = [
    Spec {
        width: 4,
        min: -(MAX_BIAS as i64),
        max: MAX_BIAS as i64,
        len: Fault::BiasLen,
        range: Fault::Bias,
    },
    Spec {
        width: 4,
        min: i32::MIN as i64,
        max: i32::MAX as i64,
        len: Fault::MultPosLen,
        range: Fault::Bias,
    },
    Spec {
        width: 4,
        min: i32::MIN as i64,
        max: i32::MAX as i64,
        len: Fault::MultNegLen,
        range: Fault::Bias,
    },
    Spec {
        width: 1,
        min: MIN_SHIFT as i64,
        max: MAX_SHIFT as i64,
        len: Fault::ShiftLen,
        range: Fault::Shift,
    },
    Spec {
        width: 8,
        min: -MAX_OFFSET,
        max: MAX_OFFSET,
        len: Fault::OffsetLen,
        range: Fault::Offset,
    },
];

/// The head's per-class array: `mult`, non-negative.
const HEAD: [Spec; 1] = [Spec {
    width: 4,
    min: 0,
    max: i32::MAX as i64,
    len: Fault::HeadMultLen,
    range: Fault::HeadMult,
}];

/// A little-endian signed integer of 1 to 8 bytes.
fn le_signed(c: &[u8]) -> i64 {
    let v = c.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b));
    let unused = 64u32.wrapping_sub(8 * c.len() as u32);
    (v.wrapping_shl(unused) as i64).wrapping_shr(unused)
}

/// Checks `arrays[i]` against `specs[i]` for `outs` channels: all lengths first, then all
/// values.
fn check_arrays(outs: usize, arrays: &[&[u8]], specs: &[Spec]) -> Result<(), Fault> {
    for (a, s) in arrays.iter().zip(specs) {
        ensure(Some(a.len()) == outs.checked_mul(s.width), s.len)?;
    }
    for (a, s) in arrays.iter().zip(specs) {
        for c in a.chunks_exact(s.width.max(1)) {
            let v = le_signed(c);
            ensure(s.min <= v && v <= s.max, s.range)?;
        }
    }
    Ok(())
}

/// The current activation: a map `(shape, 0)` (all dimensions >= 1) or a vector
/// `(VECTOR, length)` (length >= 1), so that one comparison checks a layer's declared input.
type Act = (Shape, usize);

/// The shape part of a vector [`Act`].
const VECTOR: Shape = Shape { h: 0, w: 0, c: 0 };

/// What [`check`] derives from a valid body.
pub(crate) struct Sizes {
    /// Largest convolution receptive field (`k*k*cin`).
    pub scratch: usize,
    /// Rows staged by the layers computed in place: the largest of `(pad + STAGE_ROWS) * w * c`
    /// over the convolutions whose output has their input's shape and of one pooled row
    /// (`ow * c`) over the pooling layers; 0 without such layers.
    pub stage: usize,
    /// The stage with which every in-place convolution is one kernel call: the largest
    /// `(h + pad) * w * c` among them.
    pub fast_stage: usize,
    /// Bytes of the maps and vectors: the largest of `input + output` over the layers that
    /// write a new map or vector, and of the maps the in-place layers work on.
    pub maps: usize,
    /// [`crate::Model::arena_bytes`]: `scratch + stage + maps`.
    pub arena: usize,
    /// Multiply-accumulates per image.
    pub macs: u64,
}

/// Validates `body` (everything but the framing and the postcard encoding).
#[inline]
pub(crate) fn check(body: &ModelBody<'_>) -> Result<Sizes, Error> {
    let mut layer = 0;
    checks(body, &mut layer).map_err(|f| f.at(layer))
}

/// The checks of [`check`]; `layer` is the layer being checked when a check fails.
#[inline]
fn checks(body: &ModelBody<'_>, layer: &mut usize) -> Result<Sizes, Fault> {
    use crate::format::{LayerDesc as D, LayerParams as P};
    let h = &body.header;
    let hw = usize::from(h.input_hw);
    ensure(hw != 0, Fault::InputHw)?;
    ensure(body.input.lut.len() == 256, Fault::Lut)?;
    ensure(h.arch.len() == body.layers.len(), Fault::Lists)?;
    let mut cur: Act = (
        Shape {
            h: h.input_hw,
            w: h.input_hw,
            c: 1,
        },
        0,
    );
    let mut cur_len = hw * hw;
    let mut s = Sizes {
        scratch: 0,
        stage: 0,
        fast_stage: 0,
        maps: cur_len,
        arena: 0,
        macs: 0,
    };
    let layers = h.arch.as_slice().iter().zip(body.layers.as_slice());
    for (i, (d, p)) in layers.enumerate() {
        *layer = i;
        // The declared input, the fault if it is not the current activation, the first
        // fault of the layer's own shape checks (reported after the input check), the
        // output, and for convolutions and dense layers (parameters, output channels,
        // products per accumulator, receptive field).
        let (input, wrong_input, own, out, kernel) = match (d, p) {
            (
                &D::Conv {
                    input,
                    output,
                    k,
                    pad,
                },
                P::Conv(kp),
            ) => {
                let (k, pad) = (usize::from(k), usize::from(pad));
                let size = |i: u16| (usize::from(i) + 2 * pad + 1).checked_sub(k);
                let own = if k == 0 || pad >= k {
                    Some(Fault::KernelPad)
                } else if size(input.h) != Some(usize::from(output.h))
                    || size(input.w) != Some(usize::from(output.w))
                {
                    Some(Fault::ConvSize)
                } else {
                    None
                };
                let terms = k * k * usize::from(input.c);
                let outs = usize::from(output.c);
                let kernel = Some((kp, outs, terms, terms));
                ((input, 0), Fault::ConvInput, own, (output, 0), kernel)
            }
            (&D::MaxPool2 { input, output }, P::MaxPool2) => {
                let half = Shape {
                    h: input.h / 2,
                    w: input.w / 2,
                    c: input.c,
                };
                let ok = input.h >= 2 && input.w >= 2 && output == half;
                let own = (!ok).then_some(Fault::PoolSize);
                ((input, 0), Fault::PoolInput, own, (output, 0), None)
            }
            (&D::Flatten { input, output }, P::Flatten) => {
                let n = usize::try_from(output).unwrap_or(usize::MAX);
                let own = (input.len() != Some(n)).then_some(Fault::FlattenLen);
                ((input, 0), Fault::FlattenInput, own, (VECTOR, n), None)
            }
            (&D::Dense { input, output }, P::Dense(kp)) => {
                let n_in = usize::try_from(input).unwrap_or(usize::MAX);
                let n_out = usize::try_from(output).unwrap_or(usize::MAX);
                let own = (n_out == 0).then_some(Fault::NoOutputs);
                let kernel = Some((kp, n_out, n_in, 0));
                (
                    (VECTOR, n_in),
                    Fault::DenseInput,
                    own,
                    (VECTOR, n_out),
                    kernel,
                )
            }
            _ => return Err(Fault::Kind),
        };
        ensure(cur == input, wrong_input)?;
        if let Some(fault) = own {
            return Err(fault);
        }
        let (shape, n) = out;
        let out_len = if shape == VECTOR {
            n
        } else {
            ensure(
                shape.h != 0 && shape.w != 0 && shape.c != 0,
                Fault::EmptyMap,
            )?;
            shape.len().ok_or(Fault::MapTooLarge)?
        };
        if let Some((kp, outs, terms, window)) = kernel {
            ensure((1..=MAX_TERMS).contains(&terms), Fault::Terms)?;
            ensure(
                Some(kp.weights.len()) == outs.checked_mul(terms),
                Fault::WeightLen,
            )?;
            let arrays = [kp.bias, kp.mult_pos, kp.mult_neg, kp.shift, kp.offset];
            check_arrays(outs, &arrays, &KERNEL)?;
            s.scratch = s.scratch.max(window);
            s.macs = s
                .macs
                .saturating_add((out_len as u64).saturating_mul(terms as u64));
        }
        // Pooling and a convolution whose output has its input's shape run in place (see
        // `kernels::maxpool2_in_place` and `kernels::conv2d_in_place`); every other layer
        // but Flatten writes a new map or vector next to the current one.
        let row = usize::from(shape.w) * usize::from(shape.c);
        match *d {
            D::MaxPool2 { .. } => {
                // One output row of stage.
                s.stage = s.stage.max(row);
                s.maps = s.maps.max(cur_len);
            }
            D::Conv { pad, .. } if cur == out => {
                let pad = usize::from(pad);
                let stage = (pad + STAGE_ROWS)
                    .checked_mul(row)
                    .ok_or(Fault::MapTooLarge)?;
                s.stage = s.stage.max(stage);
                let fast = (usize::from(shape.h) + pad)
                    .checked_mul(row)
                    .ok_or(Fault::MapTooLarge)?;
                s.fast_stage = s.fast_stage.max(fast);
                s.maps = s.maps.max(cur_len);
            }
            _ if shape != VECTOR || kernel.is_some() => {
                let both = cur_len.checked_add(out_len).ok_or(Fault::MapTooLarge)?;
                s.maps = s.maps.max(both);
            }
            _ => {}
        }
        cur = out;
        cur_len = out_len;
    }
    *layer = h.arch.len();
    let features = usize::try_from(h.features).unwrap_or(usize::MAX);
    ensure(cur == (VECTOR, features), Fault::HeadInput)?;
    ensure((1..=MAX_TERMS).contains(&features), Fault::Features)?;
    let classes = usize::from(h.classes);
    ensure((1..=MAX_CLASSES).contains(&classes), Fault::Classes)?;
    let head = &body.head;
    ensure(
        head.weights.len() == classes * features,
        Fault::HeadWeightLen,
    )?;
    check_arrays(classes, &[head.mult], &HEAD)?;
    ensure(head.shift <= 62, Fault::HeadShift)?;
    s.macs = s.macs.saturating_add((features * classes) as u64);
    s.arena = s
        .maps
        .checked_add(s.scratch)
        .and_then(|a| a.checked_add(s.stage))
        .ok_or(Fault::ArenaTooLarge)?;
    Ok(s)
}

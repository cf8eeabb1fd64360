//! The model file format, defined once for the exporter and the reader.
//!
//! A model file is
//!
//! ```text
//! offset 0   4 bytes  MAGIC  = b"LSQ8"
//! offset 4   u16 LE   FORMAT_VERSION
//! offset 6   u16 LE   flags, must be 0
//! offset 8   u32 LE   body length B
//! offset 12  B bytes  postcard encoding of ModelBody
//! offset 12+B u32 LE  CRC-32/IEEE of bytes [0, 12+B)
//! ```
//!
//! and nothing after. The body is plain [postcard](https://docs.rs/postcard) (varint integers,
//! zig-zag for signed ones, length-prefixed byte slices, varint enum tags). Every array is a
//! `&[u8]` that borrows from the file: int8 arrays are the raw bytes, `i32`/`i64` arrays are
//! little-endian 4/8-byte groups, read on the fly. `docs/model-format.md` is the byte-level
//! specification.

use core::fmt;
use core::marker::PhantomData;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crc::crc32;
use crate::Error;

/// The four magic bytes at the start of every model file.
pub const MAGIC: [u8; 4] = *b"LSQ8";
/// The format version this crate reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the fixed prefix (magic, version, flags, body length).
pub const PREFIX_LEN: usize = 12;
/// Length of the trailing CRC.
pub const CRC_LEN: usize = 4;
/// Most layers (entries of the architecture descriptor) a model may have.
pub const MAX_LAYERS: usize = 32;
/// Most classes a model may have.
pub const MAX_CLASSES: usize = 16;

/// A fixed-capacity sequence (no heap): serialized as a postcard sequence (varint length,
/// then the elements); deserializing more than `N` elements is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundedSeq<T, const N: usize> {
    len: usize,
    items: [T; N],
}

impl<T: Copy + Default, const N: usize> BoundedSeq<T, N> {
    /// An empty sequence.
    pub fn new() -> Self {
        BoundedSeq {
            len: 0,
            items: [T::default(); N],
        }
    }

    /// A copy of `items`, or `None` if there are more than `N`.
    pub fn from_slice(items: &[T]) -> Option<Self> {
        let mut s = Self::new();
        for &t in items {
            s.push(t).ok()?;
        }
        Some(s)
    }

    /// Appends `item`, giving it back if the sequence is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                Ok(())
            }
            None => Err(item),
        }
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Copy + Default, const N: usize> Default for BoundedSeq<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Serialize + Copy + Default, const N: usize> Serialize for BoundedSeq<T, N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.as_slice())
    }
}

struct BoundedSeqVisitor<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Copy + Default, const N: usize> Visitor<'de>
    for BoundedSeqVisitor<T, N>
{
    type Value = BoundedSeq<T, N>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a sequence of at most {N} elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = BoundedSeq::new();
        while let Some(item) = seq.next_element::<T>()? {
            if out.push(item).is_err() {
                return Err(de::Error::invalid_length(N + 1, &self));
            }
        }
        Ok(out)
    }
}

impl<'de, T: Deserialize<'de> + Copy + Default, const N: usize> Deserialize<'de>
    for BoundedSeq<T, N>
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(BoundedSeqVisitor(PhantomData))
    }
}

/// Shape of an activation map, stored height-width-channel (HWC, channels fastest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Rows.
    pub h: u16,
    /// Columns.
    pub w: u16,
    /// Channels.
    pub c: u16,
}

impl Shape {
    /// Number of int8 values (`h * w * c`); `None` on overflow.
    #[allow(clippy::len_without_is_empty)] // `len` is checked, an emptiness test adds nothing
    pub fn len(&self) -> Option<usize> {
        usize::from(self.h)
            .checked_mul(usize::from(self.w))?
            .checked_mul(usize::from(self.c))
    }
}

/// One entry of the architecture descriptor: a layer's kind and its input/output shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerDesc {
    /// Convolution (stride 1, square kernel `k`, zero padding `pad`) fused with its optional
    /// PReLU and BatchNorm layers; output is int8 HWC.
    Conv {
        /// Input map shape.
        input: Shape,
        /// Output map shape: `h + 2*pad - k + 1` by `w + 2*pad - k + 1` by output channels.
        output: Shape,
        /// Kernel size.
        k: u8,
        /// Zero padding on every border (`pad < k`).
        pad: u8,
    },
    /// 2x2 max pooling, stride 2, odd sizes floored.
    MaxPool2 {
        /// Input map shape.
        input: Shape,
        /// Output map shape (`h/2`, `w/2`, same channels).
        output: Shape,
    },
    /// Turns a map into a vector. The vector's order is the map's HWC order (the exporter
    /// permutes the next layer's weights accordingly), so this moves no data.
    Flatten {
        /// Input map shape.
        input: Shape,
        /// Output vector length, `h*w*c`.
        output: u32,
    },
    /// Fully connected layer fused with its optional BatchNorm/PReLU layers.
    Dense {
        /// Input vector length.
        input: u32,
        /// Output vector length.
        output: u32,
    },
}

impl Default for LayerDesc {
    fn default() -> Self {
        LayerDesc::Dense {
            input: 0,
            output: 0,
        }
    }
}

/// Model-wide facts and the architecture descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Input images are `input_hw` x `input_hw` u8 pixels, row-major.
    pub input_hw: u16,
    /// Number of classes (1 to [`MAX_CLASSES`]).
    pub classes: u16,
    /// Length of the feature vector fed to the head.
    pub features: u32,
    /// The L-Softmax margin `m` used in training (informational; inference ignores it).
    pub margin: u32,
    /// Every layer, in order.
    pub arch: BoundedSeq<LayerDesc, MAX_LAYERS>,
}

/// Input mapping: normalisation (and an optional leading BatchNorm) folded into a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InputParams<'a> {
    /// 256 int8 values: `lut[p]` is the quantized network input for pixel value `p`.
    pub lut: &'a [u8],
    /// Real value of one input step (informational).
    pub scale: f32,
}

/// Quantized parameters of a fused convolution or dense layer with `n` output channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelParams<'a> {
    /// int8 weights: convolution `[cout][ky][kx][cin]`, dense `[out][in]`.
    pub weights: &'a [u8],
    /// `n` i32 LE: bias in accumulator units.
    pub bias: &'a [u8],
    /// `n` i32 LE: requantization multiplier used when the accumulator is `>= 0`.
    pub mult_pos: &'a [u8],
    /// `n` i32 LE: requantization multiplier used when the accumulator is `< 0`.
    pub mult_neg: &'a [u8],
    /// `n` u8: right shift, 1 to 61.
    pub shift: &'a [u8],
    /// `n` i64 LE: offset added before the shift, `|offset| <= 2^61`.
    pub offset: &'a [u8],
    /// Real value of one output step (informational).
    pub out_scale: f32,
}

/// Parameters of one layer; the variant must match the descriptor's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum LayerParams<'a> {
    /// Parameters of a [`LayerDesc::Conv`].
    Conv(#[serde(borrow)] KernelParams<'a>),
    /// A [`LayerDesc::MaxPool2`] has none.
    #[default]
    MaxPool2,
    /// A [`LayerDesc::Flatten`] has none.
    Flatten,
    /// Parameters of a [`LayerDesc::Dense`].
    Dense(#[serde(borrow)] KernelParams<'a>),
}

/// The classifier head: class = argmax_j `mult_j * (W_j . x)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeadParams<'a> {
    /// int8 weights `[classes][features]` (class-major, unlike the float model's layout).
    pub weights: &'a [u8],
    /// `classes` i32 LE, each in `0 ..= 2^31 - 1`: the per-class weight scale as a fixed-point
    /// number with `shift` fractional bits, relative to a common unit.
    pub mult: &'a [u8],
    /// Fractional bits of `mult` (0 to 62; the comparison does not depend on it).
    pub shift: u8,
    /// Real value of one step of the feature vector (informational).
    pub feature_scale: f32,
    /// Real value of one unit of `mult / 2^shift` times a weight step (informational):
    /// `logit_j ~= feature_scale * weight_scale * mult_j / 2^shift * (W_j . x)`.
    pub weight_scale: f32,
}

/// Everything between the prefix and the CRC.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelBody<'a> {
    /// Model-wide facts and the architecture descriptor.
    pub header: Header,
    /// Input lookup table.
    #[serde(borrow)]
    pub input: InputParams<'a>,
    /// Per-layer parameters, one per descriptor entry, same order.
    #[serde(borrow)]
    pub layers: BoundedSeq<LayerParams<'a>, MAX_LAYERS>,
    /// The head.
    #[serde(borrow)]
    pub head: HeadParams<'a>,
}

impl ModelBody<'_> {
    /// A body with no layers, zero sizes and empty arrays (not a valid model).
    #[inline]
    pub(crate) fn empty() -> Self {
        ModelBody {
            header: Header {
                input_hw: 0,
                classes: 0,
                features: 0,
                margin: 0,
                arch: BoundedSeq::new(),
            },
            input: InputParams::default(),
            layers: BoundedSeq::new(),
            head: HeadParams::default(),
        }
    }
}

/// Checks the framing of a model file (magic, version, flags, length, CRC, in that order)
/// and returns the body bytes.
#[inline]
pub fn unframe(bytes: &[u8]) -> Result<&[u8], Error> {
    let got = bytes.len();
    let magic = bytes.get(..4);
    match magic {
        None => {
            // Too short even for the magic: report a wrong prefix as such.
            if MAGIC.starts_with(bytes) {
                return Err(Error::Truncated {
                    needed: PREFIX_LEN + CRC_LEN,
                    got,
                });
            }
            return Err(Error::BadMagic);
        }
        Some(m) if m != MAGIC => return Err(Error::BadMagic),
        Some(_) => {}
    }
    let Some(&[v0, v1, f0, f1, l0, l1, l2, l3]) = bytes.get(4..PREFIX_LEN) else {
        return Err(Error::Truncated {
            needed: PREFIX_LEN + CRC_LEN,
            got,
        });
    };
    let version = u16::from_le_bytes([v0, v1]);
    let flags = u16::from_le_bytes([f0, f1]);
    if version != FORMAT_VERSION || flags != 0 {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let body_len = usize::try_from(u32::from_le_bytes([l0, l1, l2, l3]))
        .map_err(|_| Error::Malformed("body length does not fit in memory"))?;
    let needed = body_len
        .checked_add(PREFIX_LEN + CRC_LEN)
        .ok_or(Error::Malformed("body length overflows"))?;
    if got < needed {
        return Err(Error::Truncated { needed, got });
    }
    if got > needed {
        return Err(Error::Malformed("bytes after the CRC"));
    }
    let covered_len = PREFIX_LEN + body_len;
    let (covered, crc_bytes) = bytes
        .split_at_checked(covered_len)
        .ok_or(Error::Truncated { needed, got })?;
    let stored = match *crc_bytes {
        [a, b, c, d] => u32::from_le_bytes([a, b, c, d]),
        _ => return Err(Error::Truncated { needed, got }),
    };
    let computed = crc32(covered);
    if stored != computed {
        return Err(Error::BadCrc { stored, computed });
    }
    covered
        .get(PREFIX_LEN..)
        .ok_or(Error::Truncated { needed, got })
}

/// Decodes the body of a framed file without validating its content (use
/// [`crate::Model::from_bytes`] for a validated model).
///
/// A small reader of exactly the postcard rules the body uses (docs/model-format.md,
/// sections 2 and 3), written out instead of serde's derived `Deserialize` (which the
/// writer still uses): it decodes in place and compiles to a fraction of the code and stack.
#[inline]
pub fn decode_body(body: &[u8]) -> Result<ModelBody<'_>, Error> {
    let mut out = ModelBody::empty();
    decode_into(body, &mut out)?;
    Ok(out)
}

/// [`decode_body`] into `out` (which [`crate::Model::from_bytes`] decodes into the model it
/// returns, so that the 2.3 KB body is not copied around).
#[inline]
pub(crate) fn decode_into<'a>(body: &'a [u8], out: &mut ModelBody<'a>) -> Result<(), Error> {
    let mut r = Reader {
        rest: body,
        error: None,
    };
    r.body(out);
    match r.error {
        Some(what) => Err(Error::Malformed(what)),
        None if !r.rest.is_empty() => Err(Error::Malformed("bytes between the body and the CRC")),
        None => Ok(()),
    }
}

/// The unread part of a body, and the first error met.
///
/// The reader's methods return plain values: on an error they record it (only the first
/// one counts), empty `rest` so that every later read fails too, and return zeros. The
/// caller checks `error` once at the end; this keeps the decoder straight-line code.
struct Reader<'a> {
    rest: &'a [u8],
    error: Option<&'static str>,
}

const END: &str = "body ends inside a field";
const BAD_VARINT: &str = "bad varint in body";
const BAD_ENUM: &str = "unknown layer kind or enum tag";
const TOO_LONG: &str = "sequence too long";

impl<'a> Reader<'a> {
    /// Records `what` unless an error was recorded before, and stops reading.
    #[inline(never)]
    fn fail(&mut self, what: &'static str) {
        self.error = self.error.or(Some(what));
        self.rest = &[];
    }

    #[inline]
    fn take(&mut self, n: usize) -> &'a [u8] {
        match self.rest.split_at_checked(n) {
            Some((head, rest)) => {
                self.rest = rest;
                head
            }
            None => {
                self.fail(END);
                &[]
            }
        }
    }

    #[inline]
    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// An unsigned LEB128 varint of a `bits`-bit integer: at most `ceil(bits / 7)` bytes,
    /// and the last of that many may not carry bits above the type's range.
    #[inline(never)]
    fn varint(&mut self, bits: u32) -> u32 {
        let max_bytes = bits.div_ceil(7);
        let mut out = 0u32;
        for i in 0..max_bytes {
            let Some((&b, rest)) = self.rest.split_first() else {
                self.fail(END);
                return 0;
            };
            self.rest = rest;
            out |= u32::from(b & 0x7f).wrapping_shl(7 * i);
            if b & 0x80 == 0 {
                if i + 1 == max_bytes && u32::from(b).wrapping_shr(bits - 7 * i) != 0 {
                    break;
                }
                return out;
            }
        }
        self.fail(BAD_VARINT);
        0
    }

    #[inline]
    fn u16(&mut self) -> u16 {
        // `varint(16)` never returns more than 16 bits.
        self.varint(16) as u16
    }

    #[inline]
    fn u32(&mut self) -> u32 {
        self.varint(32)
    }

    /// A sequence length, at most `max`.
    #[inline]
    fn len(&mut self, max: usize) -> usize {
        let n = usize::try_from(self.u32()).unwrap_or(usize::MAX);
        if n > max {
            self.fail(TOO_LONG);
            return 0;
        }
        n
    }

    #[inline]
    fn f32(&mut self) -> f32 {
        match *self.take(4) {
            [a, b, c, d] => f32::from_le_bytes([a, b, c, d]),
            _ => 0.0,
        }
    }

    /// A byte array: varint length, then the bytes (borrowed).
    #[inline(never)]
    fn bytes(&mut self) -> &'a [u8] {
        let n = usize::try_from(self.u32()).unwrap_or(usize::MAX);
        self.take(n)
    }

    #[inline(never)]
    fn shape(&mut self) -> Shape {
        Shape {
            h: self.u16(),
            w: self.u16(),
            c: self.u16(),
        }
    }

    /// An enum tag, below `variants`.
    #[inline]
    fn tag(&mut self, variants: u32) -> u32 {
        let t = self.u32();
        if t >= variants {
            self.fail(BAD_ENUM);
        }
        t
    }

    #[inline]
    fn layer_desc(&mut self) -> LayerDesc {
        match self.tag(4) {
            0 => LayerDesc::Conv {
                input: self.shape(),
                output: self.shape(),
                k: self.u8(),
                pad: self.u8(),
            },
            1 => LayerDesc::MaxPool2 {
                input: self.shape(),
                output: self.shape(),
            },
            2 => LayerDesc::Flatten {
                input: self.shape(),
                output: self.u32(),
            },
            _ => LayerDesc::Dense {
                input: self.u32(),
                output: self.u32(),
            },
        }
    }

    #[inline]
    fn kernel(&mut self) -> KernelParams<'a> {
        KernelParams {
            weights: self.bytes(),
            bias: self.bytes(),
            mult_pos: self.bytes(),
            mult_neg: self.bytes(),
            shift: self.bytes(),
            offset: self.bytes(),
            out_scale: self.f32(),
        }
    }

    #[inline]
    fn layer_params(&mut self) -> LayerParams<'a> {
        match self.tag(4) {
            0 => LayerParams::Conv(self.kernel()),
            1 => LayerParams::MaxPool2,
            2 => LayerParams::Flatten,
            _ => LayerParams::Dense(self.kernel()),
        }
    }

    /// The body, into `out` (whose sequences are empty).
    #[inline]
    fn body(&mut self, out: &mut ModelBody<'a>) {
        let h = &mut out.header;
        h.input_hw = self.u16();
        h.classes = self.u16();
        h.features = self.u32();
        h.margin = self.u32();
        for _ in 0..self.len(MAX_LAYERS) {
            // At most MAX_LAYERS pushes: none fails.
            let _ = h.arch.push(self.layer_desc());
        }
        out.input = InputParams {
            lut: self.bytes(),
            scale: self.f32(),
        };
        for _ in 0..self.len(MAX_LAYERS) {
            let _ = out.layers.push(self.layer_params());
        }
        out.head = HeadParams {
            weights: self.bytes(),
            mult: self.bytes(),
            shift: self.u8(),
            feature_scale: self.f32(),
            weight_scale: self.f32(),
        };
    }
}

/// Writes a complete framed model file for `body` into `buf` and returns the bytes written.
/// Performs no validation of the content.
pub fn encode_to_slice(body: &ModelBody<'_>, buf: &mut [u8]) -> Result<usize, Error> {
    let (prefix, rest) = buf
        .split_at_mut_checked(PREFIX_LEN)
        .ok_or(Error::Encode("buffer too small"))?;
    let body_len = postcard::to_slice(body, rest)
        .map_err(|_| Error::Encode("buffer too small"))?
        .len();
    let len32 = u32::try_from(body_len).map_err(|_| Error::Encode("body longer than 4 GiB"))?;
    let mut p = [0u8; PREFIX_LEN];
    for (dst, src) in p.iter_mut().zip(
        MAGIC
            .iter()
            .chain(FORMAT_VERSION.to_le_bytes().iter())
            .chain(0u16.to_le_bytes().iter())
            .chain(len32.to_le_bytes().iter()),
    ) {
        *dst = *src;
    }
    prefix.copy_from_slice(&p);
    let covered_len = PREFIX_LEN + body_len;
    let total = covered_len + CRC_LEN;
    let crc = crc32(
        buf.get(..covered_len)
            .ok_or(Error::Encode("buffer too small"))?,
    );
    buf.get_mut(covered_len..total)
        .ok_or(Error::Encode("buffer too small"))?
        .copy_from_slice(&crc.to_le_bytes());
    Ok(total)
}

/// An upper bound of the encoded size of `body` (the framed file is never longer).
pub fn encoded_size_bound(body: &ModelBody<'_>) -> usize {
    // Each byte slice costs at most 5 varint bytes of length; each scalar at most 10 bytes.
    let kp = |k: &KernelParams<'_>| {
        k.weights.len()
            + k.bias.len()
            + k.mult_pos.len()
            + k.mult_neg.len()
            + k.shift.len()
            + k.offset.len()
            + 6 * 5
            + 4
            + 1
    };
    let mut n = PREFIX_LEN + CRC_LEN + 64;
    n += body.header.arch.len() * 48;
    n += body.input.lut.len() + 16;
    for l in body.layers.as_slice() {
        n += match l {
            LayerParams::Conv(k) | LayerParams::Dense(k) => kp(k),
            LayerParams::MaxPool2 | LayerParams::Flatten => 1,
        };
    }
    n += body.head.weights.len() + body.head.mult.len() + 32;
    n
}

//! The single error type of this crate.

use core::fmt;

/// Everything that can go wrong when loading a model or classifying an image.
///
/// Loading ([`crate::Model::from_bytes`]) validates the whole file, so once a [`crate::Model`]
/// exists, [`crate::Model::classify`] can only fail because of its *arguments* (image length,
/// arena size), never because of the model's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input ends before the framing says it should (`needed` bytes, `got` present).
    Truncated {
        /// Bytes the framing requires.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The first four bytes are not [`crate::format::MAGIC`].
    BadMagic,
    /// The format version (or the reserved flags) is not one this reader understands.
    UnsupportedVersion {
        /// Version found in the file.
        found: u16,
        /// Version this reader implements ([`crate::format::FORMAT_VERSION`]).
        supported: u16,
    },
    /// The CRC-32 stored after the payload differs from the CRC-32 of the payload.
    BadCrc {
        /// CRC stored in the file.
        stored: u32,
        /// CRC computed over the covered bytes.
        computed: u32,
    },
    /// The payload is not a valid encoding of the model body, or a global field is invalid.
    Malformed(&'static str),
    /// Layer `layer` (index in the architecture descriptor; the head is index `layers.len()`)
    /// does not fit the shapes around it, or its parameter arrays do not match its shape.
    ShapeMismatch {
        /// Index of the offending layer.
        layer: usize,
        /// What does not match.
        what: &'static str,
    },
    /// A quantization parameter of layer `layer` is outside its documented range.
    ParamOutOfRange {
        /// Index of the offending layer (the head is index `layers.len()`).
        layer: usize,
        /// Which parameter.
        what: &'static str,
    },
    /// The arena passed to [`crate::Model::classify`] is smaller than
    /// [`crate::Model::arena_bytes`].
    ArenaTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The image does not have `input_hw * input_hw` pixels.
    InputSize {
        /// Pixels expected.
        expected: usize,
        /// Pixels given.
        got: usize,
    },
    /// Encoding a model into a caller-supplied buffer failed (buffer too small or a field
    /// that cannot be represented).
    Encode(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, got } => {
                write!(f, "model file truncated: needs {needed} bytes, has {got}")
            }
            Error::BadMagic => f.write_str("not a model file (bad magic bytes)"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "unsupported model format version {found} (this reader supports {supported})"
            ),
            Error::BadCrc { stored, computed } => write!(
                f,
                "model file corrupted: CRC-32 stored {stored:#010x}, computed {computed:#010x}"
            ),
            Error::Malformed(what) => write!(f, "malformed model: {what}"),
            Error::ShapeMismatch { layer, what } => {
                write!(f, "malformed model: layer {layer}: {what}")
            }
            Error::ParamOutOfRange { layer, what } => {
                write!(f, "malformed model: layer {layer}: {what} out of range")
            }
            Error::ArenaTooSmall { needed, got } => {
                write!(f, "arena too small: needs {needed} bytes, got {got}")
            }
            Error::InputSize { expected, got } => {
                write!(f, "image has {got} pixels, the model expects {expected}")
            }
            Error::Encode(what) => write!(f, "cannot encode model: {what}"),
        }
    }
}

impl core::error::Error for Error {}

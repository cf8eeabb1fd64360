//! The error type of every fallible operation of this crate.

use thiserror::Error;

/// Why a model could not be folded, quantized, exported, run or loaded.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The layer sequence is not one the exporter supports (the index is into
    /// `FloatModel::layers`; `layers.len()` denotes the head).
    #[error("layer {index}: unsupported layer sequence: {msg}")]
    Unsupported {
        /// Index of the offending layer.
        index: usize,
        /// What is wrong.
        msg: String,
    },
    /// A layer's parameters do not match its declared shape or the shape flowing into it.
    #[error("layer {index}: shape mismatch: {msg}")]
    Shape {
        /// Index of the offending layer (`layers.len()` denotes the head).
        index: usize,
        /// What is wrong.
        msg: String,
    },
    /// A parameter is not finite, or a BatchNorm variance plus epsilon is not positive.
    #[error("layer {index}: invalid parameter: {msg}")]
    Invalid {
        /// Index of the offending layer.
        index: usize,
        /// What is wrong.
        msg: String,
    },
    /// A quantization parameter of a stage cannot be represented in the integer format.
    #[error("layer {index}: cannot quantize: {msg}")]
    Unrepresentable {
        /// Index (into `FloatModel::layers`) of the layer starting the offending stage.
        index: usize,
        /// What cannot be represented.
        msg: String,
    },
    /// An image does not have `input_hw * input_hw` pixels.
    #[error("image has {got} pixels, the model expects {expected}")]
    InputSize {
        /// Pixels expected.
        expected: usize,
        /// Pixels given.
        got: usize,
    },
    /// `quantize` was given no calibration images.
    #[error("no calibration images")]
    NoCalibration,
    /// The int8 model does not fit the infer-core format, or infer-core rejects it.
    #[error("infer-core: {0}")]
    Core(#[from] infer_core::Error),
    /// postcard failed to encode or decode.
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
    /// A float model file is not valid.
    #[error("float model file: {0}")]
    FloatFile(String),
    /// Reading or writing a file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ExportError {
    pub(crate) fn unsupported(index: usize, msg: impl Into<String>) -> Self {
        ExportError::Unsupported {
            index,
            msg: msg.into(),
        }
    }
    pub(crate) fn shape(index: usize, msg: impl Into<String>) -> Self {
        ExportError::Shape {
            index,
            msg: msg.into(),
        }
    }
    pub(crate) fn invalid(index: usize, msg: impl Into<String>) -> Self {
        ExportError::Invalid {
            index,
            msg: msg.into(),
        }
    }
    pub(crate) fn unrepresentable(index: usize, msg: impl Into<String>) -> Self {
        ExportError::Unrepresentable {
            index,
            msg: msg.into(),
        }
    }
}

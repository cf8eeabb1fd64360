//! Export of trained L-Softmax networks: folding, calibration, int8 quantization, and the
//! integer simulation that `infer-core` must match bit for bit.
//!
//! ```ignore
//! use lsoftmax_quantize::{quantize, QuantOptions};
//! let q = quantize(&float_model, &calib_images, QuantOptions::default())?;
//! std::fs::write("model.lsq8", q.to_bytes()?)?;          // for infer-core
//! std::fs::write("model.lsf1", lsoftmax_quantize::save_float(&float_model)?)?; // f32 export
//! ```
//!
//! * [`fold()`]: exact float folding of normalisation, BatchNorm and PReLU into fused stages.
//! * [`float_forward`] / [`float_logits`]: the plain f32 reference forward.
//! * [`calibrate`], [`quantize`], [`QuantModel::to_bytes`]: int8 export in the infer-core
//!   format (`docs/model-format.md`).
//! * [`simulate()`]: an independent integer simulation of a [`QuantModel`].
//! * [`save_float`] / [`load_float`]: the f32 export.
//! * [`synth`]: random models and images for tests and benchmarks.

#![deny(missing_docs)]

mod error;
pub mod float_file;
pub mod float_model;
pub mod fold;
pub mod quant;
pub mod reference;
pub mod simulate;
pub mod synth;

pub use error::ExportError;
pub use float_file::{load_float, read_float_file, save_float, write_float_file};
pub use float_model::{FloatLayer, FloatModel, Normalize};
pub use fold::{fold, FoldedKernel, FoldedModel, FoldedStage};
pub use quant::{
    calibrate, quantize, quantize_folded, Calibration, QuantHead, QuantKernel, QuantLayer,
    QuantModel, QuantOptions,
};
pub use reference::{argmax, float_forward, float_logits, FloatOutput, Tensor};
pub use simulate::{simulate, SimPrediction};

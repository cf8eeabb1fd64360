//! `no_std`, allocation-free, panic-free int8 inference for L-Softmax digit classifiers
//! exported by `lsoftmax-quantize`.
//!
//! ```ignore
//! let model = infer_core::Model::from_bytes(MODEL_BYTES)?;   // validates everything
//! let mut arena = [0u8; 52_000];                           // >= model.arena_bytes()
//! let p = model.classify(&image, &mut arena, Some(infer_core::Threshold::MinCos(0.5)))?;
//! ```
//!
//! * [`format`] defines the one model file format (postcard body borrowed from the file,
//!   CRC-32 trailer); `docs/model-format.md` specifies it byte by byte.
//! * [`Model`] holds a validated model; [`Model::classify`] runs integer-only inference
//!   (int8 activations and weights, i32 accumulators, fixed-point requantization), which
//!   gives bit-identical results on every target.
//! * The decision rule is the L-Softmax head's: `class = argmax_j W_j . x`, with the cosine of
//!   every class angle and the angular gap reported in [`Prediction`].
//!
//! # Performance
//!
//! The crate has no `unsafe` code; the kernels are shaped per target:
//!
//! * x86-64 with AVX2 (the workspace builds for `x86-64-v3`): convolutions run a
//!   register-blocked integer GEMM micro-kernel (`kernels/avx2.rs`): the weights of 16 output
//!   channels are repacked once per layer into int16 pairs, each receptive field is gathered
//!   once as int16, and one `vpmaddwd` of a broadcast activation pair by a weight vector
//!   updates 8 channels; 4 pixels share every weight load, with the 8 accumulators in
//!   registers. The intrinsics come from the `safe_arch` crate, whose safe wrappers exist only
//!   when the compile-time target enables AVX2 (an x86-64-only dependency).
//! * x86-64 without AVX2 (and receptive fields over 1152 values): each window is
//!   sign-extended to int16 once per output pixel, and the per-channel dot products
//!   (compile-time lengths for common `k*k*cin`) become `pmaddwd` chains. The default
//!   x86-64 target only has SSE2; build with `RUSTFLAGS="-C target-cpu=x86-64-v3"` (or
//!   `native`) to get the AVX2 kernel.
//! * Cortex-M and other 32-bit targets, 3x3 convolutions (`kernels/poly.rs`): a kernel row
//!   is a polynomial product. Two neighbouring input columns packed into one word
//!   (`v0 + v1 * 2^22`) times two taps packed in reverse order (`w1 + w0 * 2^22`) give, in
//!   one 64-bit `smlal`, two taps of one output and one of the next; two `smlal`s and two
//!   `ldrd`s do the six multiply-accumulates of two outputs, one channel and kernel row, about
//!   0.67 instructions per multiply-accumulate in the inner loop on a Cortex-M4 (0.99 over
//!   the whole `paper` network, see `firmware-demo/README.md`). The input rows of a block of
//!   output rows are packed into a 20 KiB stack ring, the weights once per output channel
//!   and block.
//! * Cortex-M, other kernel sizes, with the `packed-conv` feature (on by default): the weights
//!   of two output channels are packed into one word per kernel position
//!   (`w0 + w1 * 2^23`), so one `smlal` accumulates two products; each pass computes four
//!   output channels and reads the activations in place. Without the feature (as in the
//!   firmware demo, whose model has only 3x3 convolutions) they run one channel at a time.
//!
//! # Memory
//!
//! The caller's arena is the only working memory (plus the kernels' stack frames: about
//! 26 KB for `poly` on a Cortex-M4). Convolutions whose output has their input's shape and
//! the pooling run in place, through a stage of a few rows, so the arena holds one large map
//! rather than two: 51,280 bytes for `paper` ([`Model::arena_bytes`]; docs/model-format.md,
//! section 7). A larger arena only enlarges the stage, fewer and longer kernel calls
//! ([`Model::arena_bytes_fast`]: 89,552 bytes for `paper`, about 12 % faster on a desktop).
//!
//! Results are bit-identical whatever the target, flags or arena size.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod crc;
mod error;
pub mod format;
mod kernels;
pub mod math;
mod model;
mod validate;

pub use crc::{crc32, crc32_update};
pub use error::Error;
pub use format::{MAX_CLASSES, MAX_LAYERS};
pub use model::{Model, Prediction, Threshold};

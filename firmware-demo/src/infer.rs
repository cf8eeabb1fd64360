//! The firmware's only calls into infer-core, each kept out of line (`#[inline(never)]`) so
//! that, even with LTO, infer-core's code stays in these symbols (plus `infer_core::*`,
//! `serde*` and `postcard*` ones): `scripts/firmware.sh` adds their sizes up to report
//! infer-core's share of `.text`, and `main`'s stack frame does not absorb theirs.

use infer_core::{Error, Model, Prediction};

/// CRC-32 of `bytes` (checks that `digits.bin` belongs to the embedded model).
#[inline(never)]
pub fn crc32(bytes: &[u8]) -> u32 {
    infer_core::crc32(bytes)
}

/// Parses and validates the model file.
#[inline(never)]
pub fn load(bytes: &'static [u8]) -> Result<Model<'static>, Error> {
    Model::from_bytes(bytes)
}

/// Classifies one digit (no rejection threshold).
#[inline(never)]
pub fn classify(model: &Model<'_>, pixels: &[u8], arena: &mut [u8]) -> Result<Prediction, Error> {
    model.classify(pixels, arena, None)
}

//! The f32 export: a [`FloatModel`] in a small framed file, so users can compare f32 and int8.
//!
//! Layout: `b"LSF1"`, u16 LE version (1), u16 LE flags (0), u32 LE body length `B`, the
//! postcard encoding of [`FloatModel`] (`B` bytes), then the CRC-32/IEEE (u32 LE) of all
//! preceding bytes. f32 values are stored as their exact IEEE bits, so the round trip is exact.

use crate::float_model::FloatModel;
use crate::ExportError;

/// Magic bytes of a float model file.
pub const FLOAT_MAGIC: [u8; 4] = *b"LSF1";
/// Version of the float model file format.
pub const FLOAT_VERSION: u16 = 1;

/// Serializes `model` to the float model file format.
pub fn save_float(model: &FloatModel) -> Result<Vec<u8>, ExportError> {
    let body = postcard::to_allocvec(model)?;
    let len = u32::try_from(body.len())
        .map_err(|_| ExportError::FloatFile("model larger than 4 GiB".into()))?;
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(&FLOAT_MAGIC);
    out.extend_from_slice(&FLOAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    let crc = infer_core::crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Parses a float model file written by [`save_float`].
pub fn load_float(bytes: &[u8]) -> Result<FloatModel, ExportError> {
    let bad = |m: &str| Err(ExportError::FloatFile(m.into()));
    if bytes.len() < 16 {
        return bad("shorter than the 16-byte framing");
    }
    if bytes[..4] != FLOAT_MAGIC {
        return bad("bad magic (not a float model file)");
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != FLOAT_VERSION || flags != 0 {
        return bad("unsupported version");
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if bytes.len() != len + 16 {
        return bad("length does not match the header");
    }
    let (covered, crc) = bytes.split_at(12 + len);
    if infer_core::crc32(covered) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return bad("CRC mismatch");
    }
    let (model, rest) = postcard::take_from_bytes::<FloatModel>(&covered[12..])?;
    if !rest.is_empty() {
        return bad("trailing bytes in body");
    }
    Ok(model)
}

/// Writes [`save_float`]'s bytes to `path`.
pub fn write_float_file(
    model: &FloatModel,
    path: impl AsRef<std::path::Path>,
) -> Result<(), ExportError> {
    std::fs::write(path, save_float(model)?)?;
    Ok(())
}

/// Reads a float model file from `path`.
pub fn read_float_file(path: impl AsRef<std::path::Path>) -> Result<FloatModel, ExportError> {
    load_float(&std::fs::read(path)?)
}

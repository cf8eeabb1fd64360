//! Reader for the embedded test vectors (`digits.bin`, written on the host by
//! `lsoftmax firmware-digits`; the layout is specified in `trainer/src/firmware_data.rs`).
//!
//! ```text
//! 0   4  magic b"LSFD"        4  2  version u16 = 1     6  2  pixels per digit P, u16
//! 8   4  count N, u32         12 4  model fingerprint: CRC-32 of the model file without
//!                                      its last 4 bytes (its own CRC trailer)
//! 16  N records of 6 + P bytes: index u32, label u8, expected class u8, P pixels
//! ```
//!
//! All integers are little-endian. Parsing checks the header and the exact length, so the
//! record iterator never has to fail.

/// Magic bytes of a digits file.
const MAGIC: &[u8; 4] = b"LSFD";
/// The only layout version.
const VERSION: u16 = 1;
/// Bytes before the first record.
const HEADER: usize = 16;
/// Bytes of a record before its pixels.
const PREFIX: usize = 6;

/// One test digit.
#[derive(Clone, Copy, Debug)]
pub struct Digit<'a> {
    /// Index in the MNIST test split.
    pub index: u32,
    /// Its label (0..=9).
    pub label: u8,
    /// The class the host's infer-core predicted.
    pub expected: u8,
    /// Row-major pixels.
    pub pixels: &'a [u8],
}

/// A validated digits file borrowed from flash.
#[derive(Clone, Copy, Debug)]
pub struct Digits<'a> {
    records: &'a [u8],
    pixels: usize,
    count: usize,
    model_fingerprint: u32,
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

impl<'a> Digits<'a> {
    /// Checks magic, version and length; returns a description of the first problem found.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, &'static str> {
        if bytes.get(..4) != Some(MAGIC.as_slice()) {
            return Err("not a digits file (bad magic bytes)");
        }
        if le_u16(bytes, 4) != Some(VERSION) {
            return Err("unsupported digits file version");
        }
        let pixels = usize::from(le_u16(bytes, 6).ok_or("truncated header")?);
        let count = le_u32(bytes, 8).ok_or("truncated header")? as usize;
        let model_fingerprint = le_u32(bytes, 12).ok_or("truncated header")?;
        let records = bytes.get(HEADER..).ok_or("truncated header")?;
        let expected = count.checked_mul(PREFIX + pixels);
        if pixels == 0 || expected != Some(records.len()) {
            return Err("length does not match the header");
        }
        Ok(Digits {
            records,
            pixels,
            count,
            model_fingerprint,
        })
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Pixels per digit.
    pub fn pixels(&self) -> usize {
        self.pixels
    }

    /// Fingerprint (CRC-32 without the 4-byte trailer) of the model file the expected classes
    /// were computed with.
    pub fn model_fingerprint(&self) -> u32 {
        self.model_fingerprint
    }

    /// The digits in file order.
    pub fn iter(&self) -> impl Iterator<Item = Digit<'a>> + 'a {
        self.records
            .chunks_exact(PREFIX + self.pixels)
            .map(|r| Digit {
                index: le_u32(r, 0).unwrap_or(0),
                label: r.get(4).copied().unwrap_or(0),
                expected: r.get(5).copied().unwrap_or(0),
                pixels: r.get(PREFIX..).unwrap_or(&[]),
            })
    }
}

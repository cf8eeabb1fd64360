//! Test vectors for the Cortex-M4 firmware demo (`firmware-demo/`): a fixed, deterministic set
//! of MNIST test digits together with the class that the host's `infer-core` predicts for each
//! of them with a given model file. The firmware classifies the same digits with the same
//! model and must reproduce every prediction exactly (integer inference is bit-exact on every
//! target).
//!
//! # Selection
//!
//! `count` digits at evenly spaced indices of the test split: digit `i` (for `i` in
//! `0..count`) is test image `i * len / count` (integer division), so the set depends only on
//! `count` and the split, covers the whole split, and never repeats an image.
//!
//! # File layout (`digits.bin`)
//!
//! All integers little-endian; no padding.
//!
//! ```text
//! offset  size   field
//! 0       4      magic b"LSFD"
//! 4       2      format version, u16 = 1
//! 6       2      pixels per digit P, u16 (784 for 28x28 MNIST)
//! 8       4      digit count N, u32
//! 12      4      fingerprint of the model file the expectations were computed with:
//!                CRC-32/IEEE of the file without its last 4 bytes (see [`model_fingerprint`])
//! 16      N * (6 + P) bytes of records, one per digit:
//!           +0  4  index of the digit in the MNIST test split, u32
//!           +4  1  label (0..=9)
//!           +5  1  class predicted by the host's infer-core (no rejection threshold)
//!           +6  P  pixels, row-major, 0 = background (as in the IDX file)
//! ```
//!
//! The file is written atomically: to `<out>.tmp` in the same directory, then renamed.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context};

/// The four magic bytes at the start of a digits file.
pub const MAGIC: [u8; 4] = *b"LSFD";
/// The layout version this module reads and writes.
pub const VERSION: u16 = 1;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 16;
/// Bytes of a record before its pixels (index, label, expected class).
pub const RECORD_PREFIX_LEN: usize = 6;
/// The digit count the firmware demo uses unless told otherwise.
pub const DEFAULT_COUNT: usize = 128;

/// One digit of a digits file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareDigit {
    /// Index of the digit in the MNIST test split.
    pub index: u32,
    /// Its label.
    pub label: u8,
    /// The class the host's infer-core predicts for it.
    pub expected: u8,
    /// Its pixels, row-major.
    pub pixels: Vec<u8>,
}

/// A parsed digits file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirmwareDigits {
    /// [`model_fingerprint`] of the model file the expectations belong to.
    pub model_fingerprint: u32,
    /// Pixels per digit.
    pub pixels: usize,
    /// The digits, in file order.
    pub digits: Vec<FirmwareDigit>,
}

/// The fingerprint a digits file records for its model: CRC-32/IEEE of the model file without
/// its last 4 bytes. For a valid infer-core model that is the CRC stored in its trailer. (The
/// CRC-32 of a whole file that ends in its own CRC-32 is the same constant, `0x2144DF1C`, for
/// every such file, so it cannot tell models apart.)
pub fn model_fingerprint(model_bytes: &[u8]) -> u32 {
    let body = model_bytes.len().saturating_sub(4);
    infer_core::crc32(&model_bytes[..body])
}

/// The test-split indices [`write_firmware_digits`] picks: `i * len / count` for `i` in
/// `0..count`. Fails when `count` is 0 or larger than `len`.
pub fn firmware_indices(len: usize, count: usize) -> anyhow::Result<Vec<usize>> {
    ensure!(count > 0, "the digit count must be at least 1");
    ensure!(
        count <= len,
        "asked for {count} digits but the test split holds only {len}"
    );
    Ok((0..count).map(|i| i * len / count).collect())
}

/// Encodes a digits file in memory (see the module documentation for the layout).
pub fn encode_firmware_digits(
    model_fingerprint: u32,
    pixels: usize,
    digits: &[FirmwareDigit],
) -> anyhow::Result<Vec<u8>> {
    let p16 =
        u16::try_from(pixels).map_err(|_| anyhow!("{pixels} pixels per digit is too many"))?;
    let n32 = u32::try_from(digits.len()).map_err(|_| anyhow!("too many digits"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + digits.len() * (RECORD_PREFIX_LEN + pixels));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&p16.to_le_bytes());
    out.extend_from_slice(&n32.to_le_bytes());
    out.extend_from_slice(&model_fingerprint.to_le_bytes());
    for (i, d) in digits.iter().enumerate() {
        ensure!(
            d.pixels.len() == pixels,
            "digit {i} has {} pixels, expected {pixels}",
            d.pixels.len()
        );
        out.extend_from_slice(&d.index.to_le_bytes());
        out.push(d.label);
        out.push(d.expected);
        out.extend_from_slice(&d.pixels);
    }
    Ok(out)
}

/// Picks `count` digits of `test` (see the module documentation), classifies each with the
/// model in `model_bytes` using infer-core on the host, and writes the digits file to `out`
/// atomically (a temporary file in the same directory, then a rename).
pub fn write_firmware_digits(
    model_bytes: &[u8],
    test: &mnist::Split,
    count: usize,
    out: &Path,
) -> anyhow::Result<()> {
    let model = infer_core::Model::from_bytes(model_bytes).context("loading the model")?;
    let pixels = model.input_hw() * model.input_hw();
    ensure!(
        test.image_len() == pixels,
        "the model expects {pixels}-pixel images, the data set has {}",
        test.image_len()
    );
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut digits = Vec::with_capacity(count);
    for idx in firmware_indices(test.len(), count)? {
        let pred = model
            .classify(test.image(idx), &mut arena, None)
            .with_context(|| format!("classifying test digit {idx}"))?;
        digits.push(FirmwareDigit {
            index: u32::try_from(idx)?,
            label: test.label(idx),
            expected: u8::try_from(pred.class)?,
            pixels: test.image(idx).to_vec(),
        });
    }
    let bytes = encode_firmware_digits(model_fingerprint(model_bytes), pixels, &digits)?;
    write_atomically(out, &bytes)
}

/// Writes `bytes` to `<path>.tmp`, flushes it to disk, then renames it to `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses and validates a digits file: magic, version, exact length, labels `0..=9`.
pub fn read_firmware_digits(bytes: &[u8]) -> anyhow::Result<FirmwareDigits> {
    ensure!(
        bytes.len() >= HEADER_LEN,
        "digits file too short: {} bytes, the header alone is {HEADER_LEN}",
        bytes.len()
    );
    if bytes[..4] != MAGIC {
        bail!("not a firmware digits file (bad magic bytes)");
    }
    let version = le_u16(bytes, 4);
    ensure!(
        version == VERSION,
        "unsupported digits file version {version} (this reader supports {VERSION})"
    );
    let pixels = usize::from(le_u16(bytes, 6));
    ensure!(pixels > 0, "digits file declares 0 pixels per digit");
    let count = le_u32(bytes, 8) as usize;
    let model_fingerprint = le_u32(bytes, 12);
    let record = RECORD_PREFIX_LEN + pixels;
    let expected_len = count
        .checked_mul(record)
        .and_then(|n| n.checked_add(HEADER_LEN))
        .ok_or_else(|| anyhow!("digits file declares an impossible count {count}"))?;
    ensure!(
        bytes.len() == expected_len,
        "digits file is {} bytes, its header implies {expected_len}",
        bytes.len()
    );
    let digits = bytes[HEADER_LEN..]
        .chunks_exact(record)
        .enumerate()
        .map(|(i, r)| {
            let d = FirmwareDigit {
                index: le_u32(r, 0),
                label: r[4],
                expected: r[5],
                pixels: r[RECORD_PREFIX_LEN..].to_vec(),
            };
            ensure!(d.label <= 9, "digit {i}: label {} out of range", d.label);
            Ok(d)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(FirmwareDigits {
        model_fingerprint,
        pixels,
        digits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lsoftmax_quantize::synth::{random_model, synthetic_digit, Arch, Rng};
    use lsoftmax_quantize::{quantize, QuantOptions};

    fn tiny_model_bytes() -> Vec<u8> {
        let float = random_model(Arch::Tiny, 11);
        let mut rng = Rng::new(3);
        let calib: Vec<[u8; 784]> = (0..8).map(|_| synthetic_digit(&mut rng)).collect();
        quantize(&float, &calib, QuantOptions::default())
            .expect("quantize")
            .to_bytes()
            .expect("encode")
    }

    fn fake_split(n: usize) -> mnist::Split {
        let mut rng = Rng::new(5);
        let mut images = Vec::with_capacity(n * 784);
        for _ in 0..n {
            images.extend_from_slice(&synthetic_digit(&mut rng));
        }
        mnist::Split {
            images,
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            rows: 28,
            cols: 28,
        }
    }

    #[test]
    fn indices_are_evenly_spaced_and_distinct() {
        assert_eq!(firmware_indices(10, 5).unwrap(), vec![0, 2, 4, 6, 8]);
        assert_eq!(firmware_indices(10_000, 128).unwrap()[1], 78);
        let all = firmware_indices(7, 7).unwrap();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
        assert!(firmware_indices(5, 0).is_err());
        assert!(firmware_indices(5, 6).is_err());
    }

    #[test]
    fn write_then_read_round_trips_and_matches_host_inference() {
        let model_bytes = tiny_model_bytes();
        let split = fake_split(40);
        let dir = std::env::temp_dir().join(format!("lsfd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("digits.bin");
        write_firmware_digits(&model_bytes, &split, 16, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!dir.join("digits.bin.tmp").exists());
        assert_eq!(bytes.len(), HEADER_LEN + 16 * (RECORD_PREFIX_LEN + 784));
        let parsed = read_firmware_digits(&bytes).unwrap();
        assert_eq!(parsed.model_fingerprint, model_fingerprint(&model_bytes));
        let trailer = &model_bytes[model_bytes.len() - 4..];
        assert_eq!(parsed.model_fingerprint.to_le_bytes(), trailer);
        assert_eq!(parsed.pixels, 784);
        assert_eq!(parsed.digits.len(), 16);
        let model = infer_core::Model::from_bytes(&model_bytes).unwrap();
        let mut arena = vec![0u8; model.arena_bytes()];
        for (d, idx) in parsed.digits.iter().zip(firmware_indices(40, 16).unwrap()) {
            assert_eq!(d.index as usize, idx);
            assert_eq!(d.label, split.label(idx));
            assert_eq!(d.pixels, split.image(idx));
            let p = model.classify(&d.pixels, &mut arena, None).unwrap();
            assert_eq!(usize::from(d.expected), p.class);
        }
        // Deterministic: writing again gives the same bytes.
        write_firmware_digits(&model_bytes, &split, 16, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_damaged_files() {
        let d = FirmwareDigit {
            index: 3,
            label: 7,
            expected: 1,
            pixels: vec![9; 4],
        };
        let good = encode_firmware_digits(0xDEAD_BEEF, 4, &[d.clone(), d.clone()]).unwrap();
        let parsed = read_firmware_digits(&good).unwrap();
        assert_eq!(parsed.model_fingerprint, 0xDEAD_BEEF);
        assert_eq!(parsed.digits, vec![d.clone(), d.clone()]);

        assert!(read_firmware_digits(&good[..good.len() - 1]).is_err());
        assert!(read_firmware_digits(&good[..10]).is_err());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(read_firmware_digits(&bad).is_err());
        let mut bad = good.clone();
        bad[4] = 2;
        assert!(read_firmware_digits(&bad).is_err());
        let mut bad = good.clone();
        bad[HEADER_LEN + 4] = 10;
        assert!(read_firmware_digits(&bad).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(read_firmware_digits(&long).is_err());
        let mut wrong_pixels = d;
        wrong_pixels.pixels.pop();
        assert!(encode_firmware_digits(0, 4, &[wrong_pixels]).is_err());
    }

    #[test]
    fn fingerprints_tell_models_apart() {
        let a = tiny_model_bytes();
        let float = random_model(Arch::Mixed, 12);
        let mut rng = Rng::new(4);
        let calib: Vec<[u8; 784]> = (0..8).map(|_| synthetic_digit(&mut rng)).collect();
        let b = quantize(&float, &calib, QuantOptions::default())
            .expect("quantize")
            .to_bytes()
            .expect("encode");
        assert_ne!(model_fingerprint(&a), model_fingerprint(&b));
        // Whereas the CRC of each whole file is the same residue constant.
        assert_eq!(infer_core::crc32(&a), infer_core::crc32(&b));
    }

    #[test]
    fn refuses_bad_models_and_counts() {
        let split = fake_split(4);
        let path = std::env::temp_dir().join("lsfd-never-written.bin");
        assert!(write_firmware_digits(b"not a model", &split, 2, &path).is_err());
        let model_bytes = tiny_model_bytes();
        assert!(write_firmware_digits(&model_bytes, &split, 5, &path).is_err());
        assert!(!path.exists());
    }
}

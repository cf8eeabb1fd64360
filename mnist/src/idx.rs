//! IDX file parsing with validation.
//!
//! The IDX format (as used by MNIST) is a big-endian header followed by raw bytes:
//!
//! * images: magic `0x00000803`, count, rows, cols (4 x `u32`), then `count * rows * cols` bytes;
//! * labels: magic `0x00000801`, count (2 x `u32`), then `count` bytes.
//!
//! Every check reports the file it concerns, so that a user can tell which download is broken.

use std::path::{Path, PathBuf};

use crate::{CLASSES, SIDE};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Header length of an images file in bytes.
pub const IMAGES_HEADER: usize = 16;
/// Header length of a labels file in bytes.
pub const LABELS_HEADER: usize = 8;

/// File name of the training images.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// File name of the training labels.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// File name of the test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// File name of the test labels.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// Why an IDX file could not be read or was rejected. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file has no bytes at all.
    #[error("{file}: the file is empty")]
    Empty {
        /// The file concerned.
        file: String,
    },
    /// The file is shorter than its fixed-size header.
    #[error("{file}: truncated header: expected at least {expected} bytes, got {got}")]
    TruncatedHeader {
        /// The file concerned.
        file: String,
        /// Length of the header in bytes.
        expected: usize,
        /// Length of the file in bytes.
        got: usize,
    },
    /// The magic number is not the one expected for this kind of file.
    #[error("{file}: wrong magic number: expected {expected:#010x}, got {got:#010x}")]
    BadMagic {
        /// The file concerned.
        file: String,
        /// The magic number expected.
        expected: u32,
        /// The magic number found.
        got: u32,
    },
    /// The header's sizes do not fit in memory (a corrupt header).
    #[error("{file}: header dimensions {dims:?} are too large")]
    HeaderOverflow {
        /// The file concerned.
        file: String,
        /// The dimensions read from the header.
        dims: Vec<u32>,
    },
    /// The file's length differs from the one its header implies (truncated or trailing bytes).
    #[error(
        "{file}: truncated or wrong size: expected {expected} bytes from the header, got {got}"
    )]
    SizeMismatch {
        /// The file concerned.
        file: String,
        /// Length implied by the header, in bytes.
        expected: usize,
        /// Actual length, in bytes.
        got: usize,
    },
    /// The images are not of the expected size (28x28 for MNIST).
    #[error(
        "{file}: wrong image dimensions: expected {expected_rows}x{expected_cols}, got {rows}x{cols}"
    )]
    BadDims {
        /// The file concerned.
        file: String,
        /// Rows found in the header.
        rows: usize,
        /// Columns found in the header.
        cols: usize,
        /// Rows expected.
        expected_rows: usize,
        /// Columns expected.
        expected_cols: usize,
    },
    /// The images file and the labels file hold different numbers of items.
    #[error(
        "count mismatch: {images_file} holds {images} images but {labels_file} holds {labels} labels"
    )]
    CountMismatch {
        /// The images file.
        images_file: String,
        /// The labels file.
        labels_file: String,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A label is not a digit `0..=9`.
    #[error("{file}: label at index {index} is {value}, expected 0..=9")]
    LabelOutOfRange {
        /// The labels file.
        file: String,
        /// Index of the offending label.
        index: usize,
        /// The offending value.
        value: u8,
    },
}

/// One split (train or test) of the data set: `len()` images with their labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// All images, row-major, `rows * cols` bytes each, concatenated.
    pub images: Vec<u8>,
    /// One label `0..=9` per image.
    pub labels: Vec<u8>,
    /// Rows of one image.
    pub rows: usize,
    /// Columns of one image.
    pub cols: usize,
}

impl Split {
    /// Number of images (and labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes of one image (`rows * cols`).
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`, row-major (`rows * cols` bytes). Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// How many images carry each label `0..=9`.
    pub fn label_counts(&self) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }
}

/// The whole data set: 60,000 training and 10,000 test images for the real MNIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnist {
    /// The training split.
    pub train: Split,
    /// The test split.
    pub test: Split,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks emptiness, header length and magic; returns nothing on success.
fn check_header(bytes: &[u8], file: &str, header: usize, magic: u32) -> Result<(), IdxError> {
    if bytes.is_empty() {
        return Err(IdxError::Empty { file: file.into() });
    }
    if bytes.len() < header {
        // Prefer a magic error when the first four bytes are there and wrong.
        if bytes.len() >= 4 && be_u32(bytes, 0) != magic {
            return Err(IdxError::BadMagic {
                file: file.into(),
                expected: magic,
                got: be_u32(bytes, 0),
            });
        }
        return Err(IdxError::TruncatedHeader {
            file: file.into(),
            expected: header,
            got: bytes.len(),
        });
    }
    let got = be_u32(bytes, 0);
    if got != magic {
        return Err(IdxError::BadMagic {
            file: file.into(),
            expected: magic,
            got,
        });
    }
    Ok(())
}

/// Parses an IDX images file (magic `0x00000803`).
///
/// Returns `(count, rows, cols, pixels)` where `pixels` holds `count * rows * cols` bytes.
/// `file` is used in error messages only.
pub fn parse_images(bytes: &[u8], file: &str) -> Result<(usize, usize, usize, Vec<u8>), IdxError> {
    check_header(bytes, file, IMAGES_HEADER, IMAGES_MAGIC)?;
    let dims = [be_u32(bytes, 4), be_u32(bytes, 8), be_u32(bytes, 12)];
    let [n, rows, cols] = dims.map(|d| d as usize);
    let expected = n
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .and_then(|x| x.checked_add(IMAGES_HEADER))
        .ok_or_else(|| IdxError::HeaderOverflow {
            file: file.into(),
            dims: dims.to_vec(),
        })?;
    if bytes.len() != expected {
        return Err(IdxError::SizeMismatch {
            file: file.into(),
            expected,
            got: bytes.len(),
        });
    }
    Ok((n, rows, cols, bytes[IMAGES_HEADER..].to_vec()))
}

/// Parses an IDX labels file (magic `0x00000801`) and returns its labels.
///
/// The values are not range-checked here; [`parse_split`] does that. `file` is used in error
/// messages only.
pub fn parse_labels(bytes: &[u8], file: &str) -> Result<Vec<u8>, IdxError> {
    check_header(bytes, file, LABELS_HEADER, LABELS_MAGIC)?;
    let n = be_u32(bytes, 4) as usize;
    let expected = n
        .checked_add(LABELS_HEADER)
        .ok_or_else(|| IdxError::HeaderOverflow {
            file: file.into(),
            dims: vec![n as u32],
        })?;
    if bytes.len() != expected {
        return Err(IdxError::SizeMismatch {
            file: file.into(),
            expected,
            got: bytes.len(),
        });
    }
    Ok(bytes[LABELS_HEADER..].to_vec())
}

/// Parses an images file and a labels file into a [`Split`] of any image size, checking that
/// both hold the same number of items and that every label is `0..=9`.
pub fn parse_split(
    images: &[u8],
    images_file: &str,
    labels: &[u8],
    labels_file: &str,
) -> Result<Split, IdxError> {
    split_impl(images, images_file, labels, labels_file, None)
}

/// Like [`parse_split`], but also requires 28x28 images, as MNIST has.
pub fn parse_mnist_split(
    images: &[u8],
    images_file: &str,
    labels: &[u8],
    labels_file: &str,
) -> Result<Split, IdxError> {
    split_impl(images, images_file, labels, labels_file, Some((SIDE, SIDE)))
}

fn split_impl(
    images: &[u8],
    images_file: &str,
    labels: &[u8],
    labels_file: &str,
    dims: Option<(usize, usize)>,
) -> Result<Split, IdxError> {
    let (n, rows, cols, pixels) = parse_images(images, images_file)?;
    if let Some((expected_rows, expected_cols)) = dims {
        if (rows, cols) != (expected_rows, expected_cols) {
            return Err(IdxError::BadDims {
                file: images_file.into(),
                rows,
                cols,
                expected_rows,
                expected_cols,
            });
        }
    }
    let labels = parse_labels(labels, labels_file)?;
    if n != labels.len() {
        return Err(IdxError::CountMismatch {
            images_file: images_file.into(),
            labels_file: labels_file.into(),
            images: n,
            labels: labels.len(),
        });
    }
    if let Some((index, &value)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= CLASSES)
    {
        return Err(IdxError::LabelOutOfRange {
            file: labels_file.into(),
            index,
            value,
        });
    }
    Ok(Split {
        images: pixels,
        labels,
        rows,
        cols,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, IdxError> {
    std::fs::read(path).map_err(|source| IdxError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn load_split(dir: &Path, images: &str, labels: &str) -> Result<Split, IdxError> {
    let ip = dir.join(images);
    let lp = dir.join(labels);
    let ib = read(&ip)?;
    let lb = read(&lp)?;
    parse_mnist_split(
        &ib,
        &ip.display().to_string(),
        &lb,
        &lp.display().to_string(),
    )
}

/// Reads and validates the four uncompressed MNIST files in `dir`
/// (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`). Does not check their hashes; [`crate::load_or_fetch`] does.
pub fn load_dir(dir: &Path) -> Result<Mnist, crate::Error> {
    Ok(Mnist {
        train: load_split(dir, TRAIN_IMAGES, TRAIN_LABELS)?,
        test: load_split(dir, TEST_IMAGES, TEST_LABELS)?,
    })
}

/// Builds an IDX images file in memory (for tests and tools).
pub fn encode_images(rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    let per = rows * cols;
    assert!(
        per > 0 && pixels.len() % per == 0,
        "pixels not a whole number of images"
    );
    let mut out = Vec::with_capacity(IMAGES_HEADER + pixels.len());
    for v in [IMAGES_MAGIC as usize, pixels.len() / per, rows, cols] {
        out.extend_from_slice(&(v as u32).to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Builds an IDX labels file in memory (for tests and tools).
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LABELS_HEADER + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const IF: &str = "imgs-test-idx3";
    const LF: &str = "labels-test-idx1";

    fn images(n: usize, side: usize) -> Vec<u8> {
        let px: Vec<u8> = (0..n * side * side).map(|i| (i % 251) as u8).collect();
        encode_images(side, side, &px)
    }

    fn assert_names(err: &IdxError, file: &str) {
        let msg = err.to_string();
        assert!(msg.contains(file), "message {msg:?} does not name {file}");
    }

    #[test]
    fn good_split_round_trips() {
        let labels = [3u8, 0, 9];
        let s = parse_mnist_split(&images(3, 28), IF, &encode_labels(&labels), LF).unwrap();
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert_eq!((s.rows, s.cols), (28, 28));
        assert_eq!(s.image(1).len(), 784);
        assert_eq!(s.image(1)[0], (784 % 251) as u8);
        assert_eq!(s.label(2), 9);
        assert_eq!(s.label_counts()[0], 1);
    }

    #[test]
    fn empty_split_is_fine() {
        let s = parse_split(&images(0, 28), IF, &encode_labels(&[]), LF).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn truncated_images() {
        let mut b = images(2, 28);
        b.truncate(b.len() - 5);
        let e = parse_images(&b, IF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::SizeMismatch { expected, got, .. } if expected == 16 + 2 * 784 && got == expected - 5
        ));
        assert_names(&e, IF);
        assert!(e.to_string().contains(&(16 + 2 * 784).to_string()));
    }

    #[test]
    fn trailing_bytes_in_labels() {
        let mut b = encode_labels(&[1, 2]);
        b.push(0);
        let e = parse_labels(&b, LF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::SizeMismatch {
                expected: 10,
                got: 11,
                ..
            }
        ));
        assert_names(&e, LF);
    }

    #[test]
    fn truncated_header() {
        let b = images(1, 28);
        let e = parse_images(&b[..10], IF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::TruncatedHeader {
                expected: 16,
                got: 10,
                ..
            }
        ));
        assert_names(&e, IF);
    }

    #[test]
    fn empty_file() {
        let e = parse_labels(&[], LF).unwrap_err();
        assert!(matches!(e, IdxError::Empty { .. }));
        assert_names(&e, LF);
    }

    #[test]
    fn wrong_magic() {
        // A labels file given where images are expected.
        let e = parse_images(&encode_labels(&[0; 20]), IF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::BadMagic {
                expected: 0x803,
                got: 0x801,
                ..
            }
        ));
        let msg = e.to_string();
        assert_names(&e, IF);
        assert!(
            msg.contains("0x00000803") && msg.contains("0x00000801"),
            "{msg}"
        );

        let e = parse_labels(&images(1, 28), LF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::BadMagic {
                expected: 0x801,
                got: 0x803,
                ..
            }
        ));
        assert_names(&e, LF);
    }

    #[test]
    fn wrong_count() {
        let e = parse_split(&images(3, 28), IF, &encode_labels(&[1, 2]), LF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ));
        assert_names(&e, IF);
        assert_names(&e, LF);
    }

    #[test]
    fn label_ten() {
        let e = parse_split(&images(3, 28), IF, &encode_labels(&[1, 10, 2]), LF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::LabelOutOfRange {
                index: 1,
                value: 10,
                ..
            }
        ));
        assert_names(&e, LF);
        assert!(e.to_string().contains("index 1"));
    }

    #[test]
    fn bad_dims() {
        let img = images(2, 27);
        let lab = encode_labels(&[4, 5]);
        // Any size is fine for the generic parser ...
        assert_eq!(parse_split(&img, IF, &lab, LF).unwrap().rows, 27);
        // ... but not for MNIST.
        let e = parse_mnist_split(&img, IF, &lab, LF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::BadDims {
                rows: 27,
                cols: 27,
                expected_rows: 28,
                expected_cols: 28,
                ..
            }
        ));
        assert_names(&e, IF);
        assert!(e.to_string().contains("27x27"));
    }

    #[test]
    fn huge_header_does_not_overflow() {
        let mut b = encode_images(1, 1, &[0]);
        for at in [4, 8, 12] {
            b[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        }
        let e = parse_images(&b, IF).unwrap_err();
        assert!(matches!(
            e,
            IdxError::HeaderOverflow { .. } | IdxError::SizeMismatch { .. }
        ));
        assert_names(&e, IF);
    }

    #[test]
    fn load_dir_reports_missing_file_with_path() {
        let dir = crate::tmp::TempDir::new("mnist-idx-test").unwrap();
        let e = load_dir(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, crate::Error::Idx(IdxError::Io { .. })));
        assert!(msg.contains(TRAIN_IMAGES), "{msg}");
    }

    #[test]
    fn load_dir_reads_four_files() {
        let dir = crate::tmp::TempDir::new("mnist-idx-test").unwrap();
        let d = dir.path();
        std::fs::write(d.join(TRAIN_IMAGES), images(2, 28)).unwrap();
        std::fs::write(d.join(TRAIN_LABELS), encode_labels(&[1, 2])).unwrap();
        std::fs::write(d.join(TEST_IMAGES), images(1, 28)).unwrap();
        std::fs::write(d.join(TEST_LABELS), encode_labels(&[7])).unwrap();
        let m = load_dir(d).unwrap();
        assert_eq!((m.train.len(), m.test.len()), (2, 1));
        assert_eq!(m.test.label(0), 7);
        // A broken test labels file is reported with its path.
        std::fs::write(d.join(TEST_LABELS), encode_labels(&[11])).unwrap();
        let msg = load_dir(d).unwrap_err().to_string();
        assert!(msg.contains(TEST_LABELS) && msg.contains("11"), "{msg}");
    }
}

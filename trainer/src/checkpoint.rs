//! Checkpoints: everything needed to evaluate, export or resume a run bit-exactly, written
//! atomically (temporary file, fsync, rename) so a crash never leaves a torn file.
//!
//! File layout: 8-byte magic `LSMXCKPT`, format version (u32 little-endian), the postcard
//! encoding of [`Checkpoint`], and a CRC-32 (IEEE) of all preceding bytes.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lambda::LambdaState;
use crate::train::{EpochStats, TrainConfig};

/// Magic bytes at the start of a checkpoint file.
pub const MAGIC: &[u8; 8] = b"LSMXCKPT";
/// Current checkpoint format version.
pub const VERSION: u32 = 1;

/// A training run's complete state after some number of epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run's configuration (architecture included).
    pub config: TrainConfig,
    /// Completed epochs.
    pub epochs_done: u32,
    /// Where the lambda schedule stands.
    pub lambda: LambdaState,
    /// Named network tensors (see `Network::state`).
    pub tensors: Vec<(String, Vec<f32>)>,
    /// SGD momentum buffers, one per parameter tensor.
    pub momentum: Vec<Vec<f32>>,
    /// Per-epoch metrics so far.
    pub history: Vec<EpochStats>,
}

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a checkpoint at all.
    #[error("{0}: not a checkpoint file (bad magic bytes)")]
    BadMagic(String),
    /// Written by another format version.
    #[error("{path}: checkpoint format version {found}, this build reads version {VERSION}")]
    Version {
        /// The file.
        path: String,
        /// Version found.
        found: u32,
    },
    /// Damaged file.
    #[error("{0}: checkpoint is damaged (CRC mismatch or truncated)")]
    Corrupt(String),
    /// The body did not decode.
    #[error("{path}: checkpoint body does not decode: {msg}")]
    Decode {
        /// The file.
        path: String,
        /// Decoder message.
        msg: String,
    },
}

impl Checkpoint {
    /// Serialises to bytes (header, body, CRC).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend(postcard::to_allocvec(self).expect("checkpoint serialises"));
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses bytes written by [`to_bytes`](Self::to_bytes); `path` only names the source in
    /// errors.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self, CheckpointError> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(CheckpointError::BadMagic(path.into()));
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if found != VERSION {
            return Err(CheckpointError::Version {
                path: path.into(),
                found,
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(CheckpointError::Corrupt(path.into()));
        }
        postcard::from_bytes(&body[12..]).map_err(|e| CheckpointError::Decode {
            path: path.into(),
            msg: e.to_string(),
        })
    }

    /// Writes atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        write_atomic(path, &self.to_bytes())
    }

    /// Reads from `path`.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsync and rename,
/// so readers see either the old file or the complete new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

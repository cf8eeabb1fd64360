//! Checkpoints: everything needed to evaluate, export or resume a run bit-exactly, written
//! atomically (temporary file, fsync, rename) so a crash never leaves a torn file.
//!
//! File layout: 8-byte magic `LSMXCKPT`, format version (u32 little-endian), the postcard
//! encoding of the checkpoint's body (see `Body`), and a CRC-32 (IEEE) of all preceding bytes.
//!
//! Postcard writes every field in order, without names or lengths of structs, so any change to
//! a type stored here changes the format: such a change bumps [`VERSION`] and keeps reading the
//! older versions (a test pins the bytes of version 2).

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lambda::LambdaState;
use crate::train::{EpochStats, TrainConfig};

/// Magic bytes at the start of a checkpoint file.
pub const MAGIC: &[u8; 8] = b"LSMXCKPT";
/// Current checkpoint format version: 2 records what trained each epoch of the history (the
/// device). Version 1 files, from before, still load (their epochs' device is `None`).
pub const VERSION: u32 = 2;

/// A training run's complete state after some number of epochs.
#[derive(Clone, Debug, PartialEq)]
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

/// A checkpoint's body as stored, with the history's epochs as `E`: [`Metrics`] in version 1,
/// `(Metrics, Option<String>)` (the device after them) in version 2.
#[derive(Serialize, Deserialize)]
struct Body<E> {
    config: TrainConfig,
    epochs_done: u32,
    lambda: LambdaState,
    tensors: Vec<(String, Vec<f32>)>,
    momentum: Vec<Vec<f32>>,
    history: Vec<E>,
}

/// An epoch's metrics as the checkpoint formats store them, field for field: spelled out here
/// rather than taken from [`EpochStats`], whose serde attributes serve the JSON logs (a `None`
/// device left out there would shift every later byte of a postcard body).
#[derive(Serialize, Deserialize)]
struct Metrics {
    epoch: u32,
    train_loss: f64,
    train_acc: f64,
    test_loss: f64,
    test_acc: f64,
    lr: f32,
    lambda: f64,
    seconds: f64,
    images_per_s: f64,
}

impl Metrics {
    fn of(e: &EpochStats) -> Self {
        Self {
            epoch: e.epoch,
            train_loss: e.train_loss,
            train_acc: e.train_acc,
            test_loss: e.test_loss,
            test_acc: e.test_acc,
            lr: e.lr,
            lambda: e.lambda,
            seconds: e.seconds,
            images_per_s: e.images_per_s,
        }
    }

    fn with_device(self, device: Option<String>) -> EpochStats {
        EpochStats {
            epoch: self.epoch,
            train_loss: self.train_loss,
            train_acc: self.train_acc,
            test_loss: self.test_loss,
            test_acc: self.test_acc,
            lr: self.lr,
            lambda: self.lambda,
            seconds: self.seconds,
            images_per_s: self.images_per_s,
            device,
        }
    }
}

impl<E> Body<E> {
    /// The stored form of `ck`, each epoch of its history stored as `epoch` gives it.
    fn of(ck: &Checkpoint, epoch: impl Fn(&EpochStats) -> E) -> Self {
        Self {
            config: ck.config.clone(),
            epochs_done: ck.epochs_done,
            lambda: ck.lambda.clone(),
            tensors: ck.tensors.clone(),
            momentum: ck.momentum.clone(),
            history: ck.history.iter().map(epoch).collect(),
        }
    }

    /// The checkpoint, with each stored epoch turned into [`EpochStats`] by `epoch`.
    fn into_checkpoint(self, epoch: impl Fn(E) -> EpochStats) -> Checkpoint {
        Checkpoint {
            config: self.config,
            epochs_done: self.epochs_done,
            lambda: self.lambda,
            tensors: self.tensors,
            momentum: self.momentum,
            history: self.history.into_iter().map(epoch).collect(),
        }
    }
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
    #[error("{path}: checkpoint format version {found}, this build reads versions 1 to {VERSION}")]
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
        framed(
            VERSION,
            &Body::of(self, |e| (Metrics::of(e), e.device.clone())),
        )
    }

    /// Parses bytes written by [`to_bytes`](Self::to_bytes); `path` only names the source in
    /// errors.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self, CheckpointError> {
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(CheckpointError::BadMagic(path.into()));
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(1..=VERSION).contains(&found) {
            return Err(CheckpointError::Version {
                path: path.into(),
                found,
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(CheckpointError::Corrupt(path.into()));
        }
        let body = &body[12..];
        let decode = |e: postcard::Error| CheckpointError::Decode {
            path: path.into(),
            msg: e.to_string(),
        };
        // Version 1 without devices, as it was defined; failing that, version 1 as the builds
        // that added the devices wrote it before the version was bumped: the version 2 layout.
        if found == 1 {
            if let Ok(b) = decode_exactly::<Body<Metrics>>(body) {
                return Ok(b.into_checkpoint(|m| m.with_device(None)));
            }
        }
        Ok(decode_exactly::<Body<(Metrics, Option<String>)>>(body)
            .map_err(decode)?
            .into_checkpoint(|(m, device)| m.with_device(device)))
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

/// A checkpoint file's bytes: magic, `version`, the postcard encoding of `body`, CRC-32.
fn framed(version: u32, body: &impl Serialize) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend(postcard::to_allocvec(body).expect("checkpoint serialises"));
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a `T` that takes up all of `bytes` (trailing bytes mean another layout).
fn decode_exactly<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    match postcard::take_from_bytes(bytes)? {
        (t, []) => Ok(t),
        _ => Err(postcard::Error::DeserializeBadEncoding),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{ArchSpec, LayerSpec};
    use crate::lambda::LambdaSchedule;

    /// A small checkpoint built field by field (no preset, so a preset's edit cannot move it),
    /// with one epoch trained on a known device and one on none recorded.
    fn sample() -> Checkpoint {
        let arch = ArchSpec {
            name: "pinned".into(),
            input: [1, 4, 4],
            layers: vec![
                LayerSpec::BatchNorm,
                LayerSpec::Conv {
                    out: 2,
                    k: 3,
                    pad: 1,
                },
                LayerSpec::PRelu { per_channel: true },
                LayerSpec::MaxPool2,
                LayerSpec::Flatten,
                LayerSpec::Linear { out: 3 },
            ],
            classes: 10,
        };
        let mut config = TrainConfig::seed_recipe(arch, 3);
        config.train_limit = Some(640);
        let epoch = |n: u32, device: Option<&str>| EpochStats {
            device: device.map(String::from),
            test_loss: 0.25 * n as f64,
            test_acc: 90.0 + n as f64,
            ..EpochStats::training(n, 12.5, 600, 640, 0.1, 1.5, 2.0)
        };
        Checkpoint {
            config,
            epochs_done: 2,
            lambda: LambdaState::new(LambdaSchedule::SEED),
            tensors: vec![("w".into(), vec![1.0, -2.5]), ("b".into(), vec![])],
            momentum: vec![vec![0.5, 0.25], vec![]],
            history: vec![epoch(1, Some("NVIDIA H200, fp32")), epoch(2, None)],
        }
    }

    #[test]
    fn round_trip_keeps_devices_present_and_absent() {
        let ck = sample();
        assert_eq!(Checkpoint::from_bytes(&ck.to_bytes(), "x").unwrap(), ck);
    }

    #[test]
    fn version_1_files_load_without_devices() {
        let ck = sample();
        let v1 = Body::of(&ck, Metrics::of);
        let loaded = Checkpoint::from_bytes(&framed(1, &v1), "old.bin").unwrap();
        let mut want = ck.clone();
        for e in &mut want.history {
            e.device = None;
        }
        assert_eq!(loaded, want);
        // Version 1 files from the builds that recorded devices before the version was bumped
        // hold the version 2 layout.
        let v1_with_devices = Body::of(&ck, |e| (Metrics::of(e), e.device.clone()));
        assert_eq!(
            Checkpoint::from_bytes(&framed(1, &v1_with_devices), "interim.bin").unwrap(),
            ck
        );
        let err = Checkpoint::from_bytes(&framed(VERSION + 1, &v1), "new.bin").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "new.bin: checkpoint format version {}, this build reads versions 1 to {VERSION}",
                VERSION + 1
            )
        );
    }

    /// The bytes of version 2. If this fails, a type stored in checkpoints changed (the run's
    /// configuration, the architecture, the lambda state, the epoch metrics): files written
    /// before no longer decode. Bump VERSION, keep decoding the old layout in `from_bytes` (as
    /// version 1 is), and only then update the expected CRC.
    #[test]
    fn format_version_2_is_pinned() {
        let bytes = sample().to_bytes();
        assert_eq!(VERSION, 2);
        assert_eq!(
            (bytes.len(), crc32fast::hash(&bytes)),
            (297, 558161692),
            "the checkpoint format changed without a version bump"
        );
    }
}

//! Reading the trainer's JSON-lines logs (see [`crate::train::LogLine`]) back.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::checkpoint::Checkpoint;
use crate::train::{EpochStats, LogLine, RunHeader, RunPaths};

/// Where a run's configuration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderSource {
    /// The log's header line.
    Log,
    /// The `checkpoint.bin` beside a log written before logs had a header.
    Checkpoint,
}

/// One run's log.
#[derive(Clone, Debug)]
pub struct RunLog {
    /// The file read.
    pub path: PathBuf,
    /// A short name: the file's stem, or its directory's name for a run directory's
    /// `log.jsonl`.
    pub label: String,
    /// The run's configuration.
    pub header: RunHeader,
    /// Where `header` came from.
    pub header_source: HeaderSource,
    /// End-of-epoch rows in order (for a resumed run, the last row of each epoch wins).
    pub epochs: Vec<EpochStats>,
}

impl RunLog {
    /// The last epoch's row.
    pub fn last(&self) -> &EpochStats {
        self.epochs
            .last()
            .expect("read_log rejects logs without epochs")
    }

    /// The best test accuracy over all epochs.
    pub fn best_test_acc(&self) -> f64 {
        self.epochs
            .iter()
            .map(|e| e.test_acc)
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The label of a log file: its stem, or the directory's name when the stem is `log`.
pub fn label_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == "log" {
        if let Some(dir) = path
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().into_owned())
        {
            return dir;
        }
    }
    stem
}

/// Reads a log written by `lsoftmax train` (or `visualize`). The margin and schedule come from
/// its header line or, for older logs without one, from `checkpoint.bin` in the same directory.
/// Fails with the file and line named on a missing file, a line that is not a log line, a log
/// without any finished epoch, or an unknown configuration.
pub fn read_log(path: &Path) -> Result<RunLog> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading log {}", path.display()))?;
    let mut header = None;
    let mut epochs: Vec<EpochStats> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: LogLine = serde_json::from_str(line).with_context(|| {
            format!(
                "{} line {}: not a line of the trainer's log",
                path.display(),
                i + 1
            )
        })?;
        match parsed {
            LogLine::Header(h) => header = Some(h),
            LogLine::Batch { .. } => {}
            LogLine::Epoch(e) => {
                epochs.retain(|x| x.epoch < e.epoch);
                epochs.push(e);
            }
        }
    }
    if epochs.is_empty() {
        bail!(
            "{}: the log has no finished epoch (no \"epoch\" line)",
            path.display()
        );
    }
    let (header, header_source) = match header {
        Some(h) => (h, HeaderSource::Log),
        None => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let ck_path = RunPaths::new(dir).checkpoint;
            if !ck_path.exists() {
                bail!(
                    "{}: the log has no header line (written before logs had one) and there is \
                     no {} beside it, so its margin is unknown",
                    path.display(),
                    ck_path.display()
                );
            }
            let ck = Checkpoint::load(&ck_path).with_context(|| {
                format!(
                    "{} has no header line; reading its margin from the checkpoint",
                    path.display()
                )
            })?;
            (RunHeader::from_config(&ck.config), HeaderSource::Checkpoint)
        }
    };
    Ok(RunLog {
        label: label_of(path),
        path: path.to_path_buf(),
        header,
        header_source,
        epochs,
    })
}

/// Reads several logs; fails if none is given.
pub fn read_logs(paths: &[PathBuf]) -> Result<Vec<RunLog>> {
    if paths.is_empty() {
        bail!("no log given (--logs a.jsonl b.jsonl ...)");
    }
    paths.iter().map(|p| read_log(p)).collect()
}

//! The deployment side of the trainer: quantized export of a checkpoint, and evaluation of an
//! exported model through `infer-core` itself (the code that runs on the microcontroller).

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use infer_core::{Model, Threshold};
use lsoftmax_quantize::{quantize, Calibration, QuantModel, QuantOptions};
use mnist::Split;
use rayon::prelude::*;

use crate::checkpoint::write_atomic;
use crate::network::Network;

/// Default number of training images used to calibrate activation ranges.
pub const DEFAULT_CALIBRATION_IMAGES: usize = 2000;

/// `count` training images spread evenly over the set (a fixed, documented choice, so exports
/// are reproducible).
pub fn calibration_images(train: &Split, count: usize) -> Vec<&[u8]> {
    let count = count.clamp(1, train.len());
    let stride = train.len() / count;
    (0..count).map(|i| train.image(i * stride)).collect()
}

/// Quantizes `net` with activation ranges calibrated on `calib`.
pub fn export(net: &Network, calib: &[&[u8]], percentile: Option<f64>) -> Result<QuantModel> {
    let opts = QuantOptions {
        calibration: percentile.map_or(Calibration::MaxAbs, Calibration::Percentile),
    };
    quantize(&net.to_float_model(), calib, opts).context("quantizing the network")
}

/// Writes a model file atomically.
pub fn write_model(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Parses a model file's bytes with `infer-core`, naming the file in the error.
pub fn load_model<'a>(bytes: &'a [u8], path: &Path) -> Result<Model<'a>> {
    Model::from_bytes(bytes)
        .map_err(|e| anyhow!("{}: not a usable model file: {e}", path.display()))
}

/// Result of running an exported model over a test split.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEvaluation {
    /// Images classified.
    pub count: usize,
    /// Accuracy over all images, percent.
    pub accuracy: f64,
    /// Images flagged as rejected by the threshold.
    pub rejected: usize,
    /// Accuracy over the accepted images only, percent.
    pub accepted_accuracy: f64,
    /// Predicted class of each image.
    pub predictions: Vec<u8>,
}

/// Classifies the first `limit` images of `split` with `infer-core` (in parallel, one arena
/// per task, of [`Model::arena_bytes_fast`]).
pub fn evaluate_model(
    model: &Model<'_>,
    split: &Split,
    limit: Option<usize>,
    threshold: Option<Threshold>,
) -> Result<ModelEvaluation> {
    let n = limit.map_or(split.len(), |l| l.min(split.len()));
    let results: Vec<(u8, bool)> = (0..n)
        .into_par_iter()
        .map_init(
            || vec![0u8; model.arena_bytes_fast()],
            |arena, i| {
                model
                    .classify(split.image(i), arena, threshold)
                    .map(|p| (p.class as u8, p.rejected))
            },
        )
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("classification failed: {e}"))?;
    let correct = results
        .iter()
        .enumerate()
        .filter(|(i, r)| r.0 == split.label(*i))
        .count();
    let rejected = results.iter().filter(|r| r.1).count();
    let accepted_correct = results
        .iter()
        .enumerate()
        .filter(|(i, r)| !r.1 && r.0 == split.label(*i))
        .count();
    Ok(ModelEvaluation {
        count: n,
        accuracy: 100.0 * correct as f64 / n.max(1) as f64,
        rejected,
        accepted_accuracy: 100.0 * accepted_correct as f64 / (n - rejected).max(1) as f64,
        predictions: results.iter().map(|r| r.0).collect(),
    })
}

/// Single-thread throughput of `infer-core` on the first `count` images: images per second
/// (with an arena of [`Model::arena_bytes_fast`]).
pub fn model_throughput(model: &Model<'_>, split: &Split, count: usize) -> Result<f64> {
    let mut arena = vec![0u8; model.arena_bytes_fast()];
    let n = count.min(split.len()).max(1);
    let start = Instant::now();
    let mut checksum = 0usize;
    for i in 0..n {
        checksum += model
            .classify(split.image(i), &mut arena, None)
            .map_err(|e| anyhow!("{e}"))?
            .class;
    }
    std::hint::black_box(checksum);
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Checks that `infer-core` (on `bytes`) and the quantizer's independent integer simulation (on
/// `q`) agree bit for bit (class and integer head dot products) on the first `count` images of
/// `split`, with the smallest arena ([`Model::arena_bytes`], as on a microcontroller). Returns
/// the number of digits compared, or an error naming the first disagreement.
pub fn verify_against_simulation(
    q: &QuantModel,
    bytes: &[u8],
    split: &Split,
    count: usize,
) -> Result<usize> {
    let model = Model::from_bytes(bytes).map_err(|e| anyhow!("{e}"))?;
    let n = count.min(split.len());
    (0..n).into_par_iter().try_for_each_init(
        || vec![0u8; model.arena_bytes()],
        |arena, i| -> Result<()> {
            let img = split.image(i);
            let p = model.classify(img, arena, None).map_err(|e| anyhow!("{e}"))?;
            let s = lsoftmax_quantize::simulate(q, img)?;
            if p.class != s.class || p.dots[..p.classes] != s.dots[..] {
                anyhow::bail!("test digit {i}: infer-core says class {} (dots {:?}), the simulation says {} (dots {:?})", p.class, &p.dots[..p.classes], s.class, s.dots);
            }
            Ok(())
        },
    )?;
    Ok(n)
}

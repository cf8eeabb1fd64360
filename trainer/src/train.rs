//! The training loop: seeded shuffling, SGD with the step schedule, the lambda schedule, per-epoch
//! evaluation, JSON-lines logs, atomic per-epoch checkpoints and bit-exact resume.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mnist::Split;
use serde::{Deserialize, Serialize};

use crate::arch::ArchSpec;
use crate::checkpoint::{write_atomic, Checkpoint};
use crate::lambda::{LambdaSchedule, LambdaState};
use crate::lsoftmax::{argmax, softmax_cross_entropy};
use crate::network::{images_to_tensor, split_to_tensor, Network};
use crate::optim::{step_lr, Sgd};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Everything that defines a training run. Defaults are the seed's recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The network.
    pub arch: ArchSpec,
    /// Margin m of the L-Softmax head.
    pub margin: u32,
    /// Total epochs.
    pub epochs: u32,
    /// Mini-batch size.
    pub batch: usize,
    /// Initial learning rate.
    pub lr: f32,
    /// Factor applied to the learning rate at each milestone.
    pub lr_gamma: f32,
    /// Epochs (0-based) at which the learning rate is multiplied by `lr_gamma`.
    pub lr_steps: Vec<u32>,
    /// SGD momentum.
    pub momentum: f32,
    /// Weight decay (the seed's README states 5e-4 but its code never passes it to the
    /// optimizer; here it is applied).
    pub weight_decay: f32,
    /// Lambda schedule.
    pub lambda: LambdaSchedule,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Log the batch loss every this many batches (0: never).
    pub log_every: usize,
    /// Use only the first N training images (None: all).
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N test images (None: all).
    pub test_limit: Option<usize>,
}

impl TrainConfig {
    /// The seed's recipe for an architecture: SGD lr 0.1 momentum 0.9 wd 5e-4, batch 256,
    /// lr x0.1 at epochs 50 and 65, 100 epochs, the seed's lambda schedule.
    pub fn seed_recipe(arch: ArchSpec, margin: u32) -> Self {
        Self {
            arch,
            margin,
            epochs: 100,
            batch: 256,
            lr: 0.1,
            lr_gamma: 0.1,
            lr_steps: vec![50, 65],
            momentum: 0.9,
            weight_decay: 5e-4,
            lambda: LambdaSchedule::SEED,
            seed: 0,
            log_every: 50,
            train_limit: None,
            test_limit: None,
        }
    }
}

/// Metrics of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch number (1-based: the count of epochs done when it was recorded).
    pub epoch: u32,
    /// Mean training loss (with the margin).
    pub train_loss: f64,
    /// Training accuracy under the margin logits, in percent.
    pub train_acc: f64,
    /// Test loss (plain logits).
    pub test_loss: f64,
    /// Test accuracy in percent.
    pub test_acc: f64,
    /// Learning rate used.
    pub lr: f32,
    /// Lambda after the epoch.
    pub lambda: f64,
    /// Wall time of the training part, seconds.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_s: f64,
    /// What trained the epoch: `CPU`, or the GPU's name and the precision of its products
    /// (e.g. `NVIDIA H200, fp32`). Absent in logs from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl EpochStats {
    /// The training half of an epoch's metrics (test figures NaN until evaluated), from the
    /// sum of per-image losses, the correct count and the images seen; one definition for
    /// the CPU and GPU epoch loops.
    pub(crate) fn training(
        epoch: u32,
        loss_sum: f64,
        correct: usize,
        seen: usize,
        lr: f32,
        lambda: f64,
        seconds: f64,
    ) -> Self {
        let n = seen.max(1) as f64;
        EpochStats {
            epoch,
            train_loss: loss_sum / n,
            train_acc: 100.0 * correct as f64 / n,
            test_loss: f64::NAN,
            test_acc: f64::NAN,
            lr,
            lambda,
            seconds,
            images_per_s: seen as f64 / seconds,
            device: None,
        }
    }

    /// These metrics, recorded as trained on `device`.
    pub(crate) fn on(self, device: String) -> Self {
        Self {
            device: Some(device),
            ..self
        }
    }
}

/// The first line of a run's log: what the run is, so that tools reading only the log (`plot`,
/// `report`) know its margin and schedule. Logs written before this line existed have none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    /// Architecture name (a preset's name, or the user's).
    pub arch: String,
    /// Margin m of the L-Softmax head.
    pub margin: u32,
    /// Epochs the run is configured for.
    pub epochs: u32,
    /// Mini-batch size.
    pub batch: usize,
    /// Initial learning rate.
    pub lr: f32,
    /// Epochs (0-based) at which the learning rate is multiplied by `lr_gamma`.
    pub lr_steps: Vec<u32>,
    /// Learning-rate factor at each step.
    pub lr_gamma: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Lambda schedule.
    pub lambda: LambdaSchedule,
    /// Seed.
    pub seed: u64,
    /// Training images used per epoch (None: all).
    pub train_limit: Option<usize>,
    /// Test images evaluated (None: all).
    pub test_limit: Option<usize>,
    /// Training images from which the BatchNorm statistics were recomputed before each
    /// epoch's test (`train --precise-bn`; 0: the running statistics training left, as the seed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub precise_bn: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl RunHeader {
    /// The header describing a run with configuration `c`.
    pub fn from_config(c: &TrainConfig) -> Self {
        Self {
            arch: c.arch.name.clone(),
            margin: c.margin,
            epochs: c.epochs,
            batch: c.batch,
            lr: c.lr,
            lr_steps: c.lr_steps.clone(),
            lr_gamma: c.lr_gamma,
            momentum: c.momentum,
            weight_decay: c.weight_decay,
            lambda: c.lambda,
            seed: c.seed,
            train_limit: c.train_limit,
            test_limit: c.test_limit,
            precise_bn: 0,
        }
    }
}

/// One line of the JSON-lines log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogLine {
    /// The run's configuration; the first line of every log written by [`run`].
    Header(RunHeader),
    /// Periodic batch loss.
    Batch {
        /// Epoch (1-based).
        epoch: u32,
        /// Global iteration.
        iter: u64,
        /// Batch loss.
        loss: f64,
        /// Lambda used.
        lambda: f64,
        /// Learning rate.
        lr: f32,
    },
    /// End-of-epoch metrics.
    Epoch(EpochStats),
}

/// Test-set evaluation result.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy of the plain logits.
    pub loss: f64,
    /// Accuracy in percent.
    pub accuracy: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u32>>,
    /// Images evaluated.
    pub count: usize,
}

/// A network with its optimizer and schedule state.
pub struct Trainer {
    /// Configuration.
    pub config: TrainConfig,
    /// The network.
    pub net: Network,
    /// Optimizer state.
    pub opt: Sgd,
    /// Lambda schedule state.
    pub lambda: LambdaState,
    /// Completed epochs.
    pub epochs_done: u32,
    /// Metrics so far.
    pub history: Vec<EpochStats>,
    input: Tensor,
    dlogits: Vec<f32>,
    /// The GPU copy of the network and data set when training runs on CUDA.
    #[cfg(feature = "cuda")]
    pub(crate) gpu: Option<Box<crate::cuda::GpuState>>,
}

impl Trainer {
    /// A fresh run.
    pub fn new(config: TrainConfig) -> Result<Self> {
        validate(&config)?;
        let net =
            Network::new(&config.arch, config.margin, config.seed).map_err(anyhow::Error::msg)?;
        Ok(Self {
            opt: Sgd::new(config.momentum, config.weight_decay),
            lambda: LambdaState::new(config.lambda),
            net,
            config,
            epochs_done: 0,
            history: Vec::new(),
            input: Tensor::default(),
            dlogits: Vec::new(),
            #[cfg(feature = "cuda")]
            gpu: None,
        })
    }

    /// Restores a run from a checkpoint.
    pub fn from_checkpoint(ck: Checkpoint) -> Result<Self> {
        let mut t = Self::new(ck.config)?;
        t.net
            .load_state(&ck.tensors)
            .map_err(anyhow::Error::msg)
            .context("checkpoint does not match its architecture")?;
        t.opt.buffers = ck.momentum;
        t.lambda = ck.lambda;
        t.epochs_done = ck.epochs_done;
        t.history = ck.history;
        Ok(t)
    }

    /// The current state as a checkpoint.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            config: self.config.clone(),
            epochs_done: self.epochs_done,
            lambda: self.lambda.clone(),
            tensors: self.net.state(),
            momentum: self.opt.buffers.clone(),
            history: self.history.clone(),
        }
    }

    /// The order in which epoch `epoch` (0-based) visits the training images.
    pub fn epoch_order(&self, n: usize, epoch: u32) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        Rng::derive(self.config.seed, 1 + epoch as u64).shuffle(&mut order);
        order
    }

    /// One training step on the given images; returns (loss, correct).
    pub fn step(&mut self, images: &[&[u8]], labels: &[u8], lr: f32) -> Result<(f64, usize, f64)> {
        let [_, h, w] = self.config.arch.input;
        images_to_tensor(images, h, w, &mut self.input);
        let lambda = self.lambda.step();
        let classes = self.config.arch.classes;
        let logits = self.net.forward_train(&self.input, labels, lambda);
        let (loss, correct) = softmax_cross_entropy(logits, classes, labels, &mut self.dlogits);
        if !loss.is_finite() {
            bail!("the training loss became non-finite ({loss}) with lambda {lambda} and learning rate {lr}");
        }
        self.net.backward(&self.input, &self.dlogits);
        self.opt.step(self.net.params(), lr);
        Ok((loss, correct, lambda))
    }

    /// The coming epoch (0-based), how many training images it visits (`train_limit` applied to
    /// a set of `train_len`), in which order, and at which learning rate: shared by the CPU and
    /// GPU epoch loops.
    pub(crate) fn epoch_plan(&self, train_len: usize) -> (u32, usize, Vec<usize>, f32) {
        let epoch = self.epochs_done;
        let n = self
            .config
            .train_limit
            .map_or(train_len, |l| l.min(train_len));
        let order = self.epoch_order(n, epoch);
        let lr = step_lr(
            self.config.lr,
            self.config.lr_gamma,
            &self.config.lr_steps,
            epoch,
        );
        (epoch, n, order, lr)
    }

    /// Trains one epoch over `train` (respecting `train_limit`), calling `log` for batch lines.
    pub fn train_epoch(
        &mut self,
        train: &Split,
        progress: &ProgressBar,
        mut log: impl FnMut(&LogLine),
    ) -> Result<EpochStats> {
        #[cfg(feature = "cuda")]
        if self.gpu.is_some() {
            return self.train_epoch_cuda(train, progress, log);
        }
        let (epoch, n, order, lr) = self.epoch_plan(train.len());
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let batches = order.chunks(self.config.batch).filter(|b| b.len() > 1);
        progress.set_length(n as u64);
        progress.set_position(0);
        for (bi, idx) in batches.enumerate() {
            let images: Vec<&[u8]> = idx.iter().map(|&i| train.image(i)).collect();
            let labels: Vec<u8> = idx.iter().map(|&i| train.label(i)).collect();
            let (loss, ok, lambda) = self
                .step(&images, &labels, lr)
                .with_context(|| format!("epoch {}, batch {}", epoch + 1, bi + 1))?;
            loss_sum += loss * idx.len() as f64;
            correct += ok;
            seen += idx.len();
            progress.inc(idx.len() as u64);
            progress.set_message(format!("loss {loss:.4} lambda {lambda:.3}"));
            if self.config.log_every > 0 && bi % self.config.log_every == 0 {
                log(&LogLine::Batch {
                    epoch: epoch + 1,
                    iter: self.lambda.iteration,
                    loss,
                    lambda,
                    lr,
                });
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        Ok(EpochStats::training(
            epoch + 1,
            loss_sum,
            correct,
            seen,
            lr,
            self.lambda.peek(),
            seconds,
        )
        .on("CPU".to_string()))
    }
}

impl Trainer {
    /// Evaluates the network in eval mode on the first `limit` images of `split` (all when
    /// None), on the GPU when training runs there, else with [`evaluate`].
    pub fn evaluate_split(&mut self, split: &Split, limit: Option<usize>) -> Result<Evaluation> {
        #[cfg(feature = "cuda")]
        if self.gpu.is_some() {
            return self.evaluate_cuda(split, limit);
        }
        Ok(evaluate(&mut self.net, split, limit))
    }
}

fn validate(c: &TrainConfig) -> Result<()> {
    c.arch
        .shapes()
        .map_err(anyhow::Error::msg)
        .context("invalid architecture")?;
    if c.margin < 1 {
        bail!(
            "--margin must be at least 1 (1 is plain softmax), got {}",
            c.margin
        );
    }
    if c.batch < 2 {
        bail!(
            "--batch must be at least 2 (BatchNorm needs batch statistics), got {}",
            c.batch
        );
    }
    if !(c.lr > 0.0 && c.lr.is_finite()) {
        bail!("--lr must be a positive number, got {}", c.lr);
    }
    if !(0.0..1.0).contains(&c.momentum) {
        bail!("--momentum must be in [0, 1), got {}", c.momentum);
    }
    if c.weight_decay < 0.0 {
        bail!(
            "--weight-decay must not be negative, got {}",
            c.weight_decay
        );
    }
    Ok(())
}

/// Evaluates `net` in eval mode on the first `limit` images of `split` (all when None).
pub fn evaluate(net: &mut Network, split: &Split, limit: Option<usize>) -> Evaluation {
    let n = limit.map_or(split.len(), |l| l.min(split.len()));
    let classes = net.spec.classes;
    let [_, h, w] = net.spec.input;
    let mut confusion = vec![vec![0u32; classes]; classes];
    let mut loss = 0f64;
    let mut correct = 0usize;
    let mut input = Tensor::default();
    let mut scratch = Vec::new();
    for start in (0..n).step_by(500) {
        let end = (start + 500).min(n);
        let labels: Vec<u8> = (start..end).map(|i| split.label(i)).collect();
        split_to_tensor(split, start..end, h, w, &mut input);
        let logits = net.logits(&input);
        let (l, c) = softmax_cross_entropy(&logits, classes, &labels, &mut scratch);
        loss += l * labels.len() as f64;
        correct += c;
        for (row, &y) in logits.chunks(classes).zip(&labels) {
            confusion[y as usize][argmax(row)] += 1;
        }
    }
    Evaluation {
        loss: loss / n.max(1) as f64,
        accuracy: 100.0 * correct as f64 / n.max(1) as f64,
        confusion,
        count: n,
    }
}

/// Paths of a run directory.
pub struct RunPaths {
    /// `checkpoint.bin`.
    pub checkpoint: PathBuf,
    /// `log.jsonl`.
    pub log: PathBuf,
}

impl RunPaths {
    /// The files inside `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            checkpoint: dir.join("checkpoint.bin"),
            log: dir.join("log.jsonl"),
        }
    }
}

/// Options of [`run`] that are not part of the recipe.
pub struct RunOptions {
    /// Show progress bars.
    pub progress: bool,
    /// Stop after this many epochs in this invocation (to test interruption); None: run to the end.
    pub stop_after: Option<u32>,
    /// Before each epoch's test, recompute the BatchNorm running statistics from this many
    /// training images with [`recompute_bn`] (0: keep the running statistics, as the seed).
    /// Not stored in the checkpoint: pass the same value again when resuming.
    pub precise_bn: usize,
}

/// Recomputes `net`'s BatchNorm running statistics ([`Network::recompute_bn`]) from the first
/// `n` images of `split` (file order) in batches of `batch`; a last batch of one image is
/// dropped (it has no variance). Returns the number of batches used.
pub fn recompute_bn(net: &mut Network, split: &Split, n: usize, batch: usize) -> usize {
    let n = n.min(split.len());
    let batch = batch.max(2);
    let [_, h, w] = net.spec.input;
    let batches = (0..n).step_by(batch).filter_map(|start| {
        let end = (start + batch).min(n);
        (end - start >= 2).then(|| {
            let mut x = Tensor::default();
            split_to_tensor(split, start..end, h, w, &mut x);
            x
        })
    });
    net.recompute_bn(batches)
}

/// Trains `trainer` until its configured epochs, evaluating, logging and checkpointing after
/// every epoch into `dir`. Returns the final test evaluation.
pub fn run(
    trainer: &mut Trainer,
    mnist: &mnist::Mnist,
    dir: &Path,
    opts: &RunOptions,
) -> Result<Option<Evaluation>> {
    let paths = RunPaths::new(dir);
    fs::create_dir_all(dir).with_context(|| format!("creating run directory {}", dir.display()))?;
    // A fresh header (the configuration may have changed on resume, e.g. more epochs), then
    // only the log lines of epochs the checkpoint covers, so a resumed log has no duplicates.
    let header = LogLine::Header(RunHeader {
        precise_bn: opts.precise_bn,
        ..RunHeader::from_config(&trainer.config)
    });
    let mut log_text = serde_json::to_string(&header)? + "\n";
    if trainer.epochs_done > 0 {
        if let Ok(old) = fs::read_to_string(&paths.log) {
            for line in old.lines() {
                let keep = match serde_json::from_str::<LogLine>(line) {
                    Ok(LogLine::Header(_)) | Err(_) => false,
                    Ok(LogLine::Batch { epoch, .. }) => epoch <= trainer.epochs_done,
                    Ok(LogLine::Epoch(s)) => s.epoch <= trainer.epochs_done,
                };
                if keep {
                    log_text.push_str(line);
                    log_text.push('\n');
                }
            }
        }
    }
    write_atomic(&paths.log, log_text.as_bytes())?;
    let mut log_file = fs::OpenOptions::new()
        .append(true)
        .open(&paths.log)
        .with_context(|| format!("opening {}", paths.log.display()))?;
    let mut last = None;
    let mut ran = 0;
    while trainer.epochs_done < trainer.config.epochs {
        if opts.stop_after.is_some_and(|s| ran >= s) {
            break;
        }
        let bar = if opts.progress {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!(
            "{}/{}",
            trainer.epochs_done + 1,
            trainer.config.epochs
        ));
        let mut write_err = None;
        let stats = trainer.train_epoch(&mnist.train, &bar, |line| {
            if let Err(e) = writeln!(
                log_file,
                "{}",
                serde_json::to_string(line).expect("log line serialises")
            ) {
                write_err.get_or_insert(e);
            }
        });
        bar.finish_and_clear();
        let mut stats = match stats {
            Ok(s) => s,
            Err(e) => {
                let kept = if paths.checkpoint.exists() {
                    format!(
                        "the last good checkpoint ({} epochs) is kept at {}",
                        trainer.epochs_done,
                        paths.checkpoint.display()
                    )
                } else {
                    "no checkpoint had been written yet".to_string()
                };
                return Err(e.context(format!("training stopped; {kept}; try a lower --lr")));
            }
        };
        if let Some(e) = write_err {
            return Err(e).with_context(|| format!("writing {}", paths.log.display()));
        }
        if opts.precise_bn > 0 {
            // On the CPU copy (the GPU's state was copied into it at the end of the epoch),
            // then back to the GPU for its evaluation and the next epoch.
            recompute_bn(
                &mut trainer.net,
                &mnist.train,
                opts.precise_bn,
                trainer.config.batch,
            );
            #[cfg(feature = "cuda")]
            trainer.push_running_stats()?;
        }
        let eval = trainer.evaluate_split(&mnist.test, trainer.config.test_limit)?;
        stats.test_loss = eval.loss;
        stats.test_acc = eval.accuracy;
        trainer.epochs_done += 1;
        trainer.history.push(stats.clone());
        writeln!(
            log_file,
            "{}",
            serde_json::to_string(&LogLine::Epoch(stats.clone()))?
        )?;
        log_file.flush()?;
        trainer.checkpoint().save(&paths.checkpoint)?;
        eprintln!(
            "epoch {:>3}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | lr {} lambda {:.4} | {:.1}s ({:.0} img/s)",
            stats.epoch, trainer.config.epochs, stats.train_loss, stats.train_acc, stats.test_loss, stats.test_acc, stats.lr, stats.lambda, stats.seconds, stats.images_per_s
        );
        last = Some(eval);
        ran += 1;
    }
    Ok(last)
}

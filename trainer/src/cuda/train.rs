//! Training on the GPU: the data set lives on the device, batches are gathered there through
//! the epoch's permutation (uploaded once per epoch), and per-batch loss and accuracy stay in
//! device arrays until logging or the end of the epoch needs them.

use anyhow::{bail, ensure, Context, Result};
use indicatif::ProgressBar;
use mnist::Split;

use super::device::{DevBuf, Gpu};
use super::net::GpuNetwork;
use super::ops;
use crate::lsoftmax::{argmax, softmax_cross_entropy};
use crate::train::{EpochStats, Evaluation, LogLine, Trainer};

/// One split of the data set on the device.
pub struct DeviceSplit {
    images: DevBuf<u8>,
    labels: DevBuf<u8>,
    /// `0, 1, 2, ...`: the order of evaluation.
    identity: DevBuf<u32>,
    len: usize,
    pixels: usize,
}

impl DeviceSplit {
    /// Uploads `split`.
    pub fn new(gpu: &Gpu, split: &Split) -> Result<Self> {
        let identity: Vec<u32> = (0..split.len() as u32).collect();
        Ok(Self {
            images: DevBuf::from_slice(gpu, &split.images)?,
            labels: DevBuf::from_slice(gpu, &split.labels)?,
            identity: DevBuf::from_slice(gpu, &identity)?,
            len: split.len(),
            pixels: split.image_len(),
        })
    }

    /// Gathers `order[start..start + nb]` into the network's input and labels.
    pub fn gather(
        &self,
        gpu: &Gpu,
        net: &mut GpuNetwork,
        order: &DevBuf<u32>,
        start: usize,
        nb: usize,
    ) -> Result<()> {
        ops::gather_batch(
            gpu,
            self.images.ptr(),
            self.labels.ptr(),
            order.ptr(),
            start,
            nb,
            self.pixels,
            net.input.ptr(),
            net.labels.ptr(),
        )
    }
}

/// Everything the trainer keeps on the GPU. (Fields drop in order: the buffers before the
/// device context.)
pub struct GpuState {
    /// The network.
    pub net: GpuNetwork,
    train: DeviceSplit,
    test: DeviceSplit,
    order: DevBuf<u32>,
    batch_loss: Option<DevBuf<f64>>,
    batch_correct: Option<DevBuf<i32>>,
    /// The device.
    pub gpu: Gpu,
}

impl GpuState {
    /// Opens the GPU, uploads the trainer's network and optimizer state and the data set.
    pub fn new(trainer: &Trainer, data: &mnist::Mnist) -> Result<Self> {
        let gpu = Gpu::new()?;
        let cap = trainer.config.batch.max(2);
        let net = GpuNetwork::new(&gpu, &trainer.net, &trainer.opt.buffers, cap)?;
        let train = DeviceSplit::new(&gpu, &data.train).context("uploading the training set")?;
        let test = DeviceSplit::new(&gpu, &data.test).context("uploading the test set")?;
        let order = DevBuf::zeros(train.len)?;
        Ok(Self {
            gpu,
            net,
            train,
            test,
            order,
            batch_loss: None,
            batch_correct: None,
        })
    }

    /// Uploads an order of training images (indices into the training split).
    pub fn set_order(&mut self, order: &[usize]) -> Result<()> {
        ensure!(
            order.len() <= self.train.len,
            "order longer than the training set"
        );
        let o: Vec<u32> = order.iter().map(|&i| i as u32).collect();
        self.order.upload(&self.gpu, 0, &o)
    }

    /// One training step on `order[start..start + nb]` (after [`set_order`](Self::set_order)):
    /// forward with `lambda`, loss into device slot `slot`, backward, SGD with `lr`.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        start: usize,
        nb: usize,
        lambda: f64,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        slot: usize,
    ) -> Result<()> {
        ensure!(
            slot < self.batch_loss.as_ref().map_or(0, |b| b.len()),
            "loss slot {slot} not reserved (reserve_slots)"
        );
        let (gpu, net) = (&self.gpu, &mut self.net);
        self.train.gather(gpu, net, &self.order, start, nb)?;
        net.forward(gpu, nb, true, lambda)?;
        let (bl, bc) = (
            self.batch_loss.as_ref().expect("ensured"),
            self.batch_correct.as_ref().expect("ensured"),
        );
        net.loss(gpu, nb, bl.at(slot), bc.at(slot))?;
        net.backward(gpu, nb, lambda)?;
        net.sgd(gpu, lr, momentum, weight_decay)
    }

    /// Makes room for the results of `n` batches (slots `0..n` of [`step`](Self::step)); earlier
    /// results are lost when the arrays grow.
    pub fn reserve_slots(&mut self, n: usize) -> Result<()> {
        super::device::ensure(&mut self.batch_loss, n.max(1))?;
        super::device::ensure(&mut self.batch_correct, n.max(1))
    }

    /// Loss and correct count of the batch in slot `slot` (waits for the GPU).
    pub fn slot_result(&self, slot: usize) -> Result<(f64, i32)> {
        let mut l = [0f64];
        let mut c = [0i32];
        self.batch_loss
            .as_ref()
            .context("no batch has run")?
            .download_into(&self.gpu, slot, &mut l)?;
        self.batch_correct
            .as_ref()
            .context("no batch has run")?
            .download_into(&self.gpu, slot, &mut c)?;
        Ok((l[0], c[0]))
    }

    /// Evaluation-mode logits `[n][classes]` of images `start..start + n` of the test split
    /// (`n` at most the batch capacity).
    pub fn test_logits(&mut self, start: usize, n: usize) -> Result<Vec<f32>> {
        let classes = self.net.spec.classes;
        let (gpu, net) = (&self.gpu, &mut self.net);
        self.test.gather(gpu, net, &self.test.identity, start, n)?;
        net.forward(gpu, n, false, 0.0)?;
        let mut out = vec![0f32; n * classes];
        net.head_buf.logits.download_into(gpu, 0, &mut out)?;
        Ok(out)
    }
}

impl Trainer {
    /// Moves training to the GPU: opens device 0, uploads the network, the optimizer state and
    /// `data`. Returns the device description.
    pub fn attach_cuda(&mut self, data: &mnist::Mnist) -> Result<String> {
        let state = GpuState::new(self, data)?;
        let info = state.gpu.info.to_string();
        self.gpu = Some(Box::new(state));
        Ok(info)
    }

    /// Whether training runs on the GPU.
    pub fn on_cuda(&self) -> bool {
        self.gpu.is_some()
    }

    /// Copies the CPU network's BatchNorm running statistics to the GPU (after
    /// [`recompute_bn`](crate::train::recompute_bn) on it: `train --precise-bn`); nothing
    /// when training runs on the CPU.
    pub(crate) fn push_running_stats(&mut self) -> Result<()> {
        if let Some(g) = self.gpu.as_mut() {
            g.net.upload_running_stats(&g.gpu, &self.net)?;
        }
        Ok(())
    }

    /// [`Trainer::train_epoch`] on the GPU. The CPU network and optimizer are brought up to
    /// date at the end, so checkpoints and evaluation see the trained state.
    pub(crate) fn train_epoch_cuda(
        &mut self,
        train: &Split,
        progress: &ProgressBar,
        mut log: impl FnMut(&LogLine),
    ) -> Result<EpochStats> {
        let (epoch, n, order, lr) = self.epoch_plan(train.len());
        let batch = self.config.batch;
        let (momentum, wd) = (self.config.momentum, self.config.weight_decay);
        let g = self.gpu.as_mut().expect("train_epoch_cuda without a GPU");
        ensure!(
            g.train.len == train.len(),
            "the GPU holds a different training set"
        );
        let start_time = std::time::Instant::now();
        g.set_order(&order)?;
        let batches: Vec<(usize, usize)> = order
            .chunks(batch)
            .enumerate()
            .map(|(i, c)| (i * batch, c.len()))
            .filter(|&(_, len)| len > 1)
            .collect();
        g.reserve_slots(batches.len())?;
        progress.set_length(n as u64);
        progress.set_position(0);
        let mut lambdas = Vec::with_capacity(batches.len());
        for (bi, &(start, len)) in batches.iter().enumerate() {
            let lambda = self.lambda.step();
            lambdas.push(lambda);
            g.step(start, len, lambda, lr, momentum, wd, bi)
                .with_context(|| format!("epoch {}, batch {}", epoch + 1, bi + 1))?;
            progress.inc(len as u64);
            if self.config.log_every > 0 && bi % self.config.log_every == 0 {
                let (loss, _) = g.slot_result(bi)?;
                if !loss.is_finite() {
                    bail!(
                        "epoch {}, batch {}: the training loss became non-finite ({loss}) with lambda {lambda} and learning rate {lr}",
                        epoch + 1,
                        bi + 1
                    );
                }
                progress.set_message(format!("loss {loss:.4} lambda {lambda:.3}"));
                log(&LogLine::Batch {
                    epoch: epoch + 1,
                    iter: self.lambda.iteration,
                    loss,
                    lambda,
                    lr,
                });
            }
        }
        g.gpu.sync()?;
        let nb = batches.len();
        let (mut losses, mut corrects) = (vec![0f64; nb], vec![0i32; nb]);
        if nb > 0 {
            g.batch_loss
                .as_ref()
                .expect("a batch ran")
                .download_into(&g.gpu, 0, &mut losses)?;
            g.batch_correct
                .as_ref()
                .expect("a batch ran")
                .download_into(&g.gpu, 0, &mut corrects)?;
        }
        if let Some(bi) = losses.iter().position(|l| !l.is_finite()) {
            bail!(
                "epoch {}, batch {}: the training loss became non-finite ({}) with lambda {} and learning rate {lr}",
                epoch + 1,
                bi + 1,
                losses[bi],
                lambdas[bi]
            );
        }
        let seconds = start_time.elapsed().as_secs_f64();
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for ((&(_, len), &l), &c) in batches.iter().zip(&losses).zip(&corrects) {
            loss_sum += l * len as f64;
            correct += c as usize;
            seen += len;
        }
        g.net
            .download(&g.gpu, &mut self.net, &mut self.opt.buffers)?;
        let device = format!("{}, {}", g.gpu.info.name, g.gpu.gemm_policy.precision());
        Ok(EpochStats::training(
            epoch + 1,
            loss_sum,
            correct,
            seen,
            lr,
            self.lambda.peek(),
            seconds,
        )
        .on(device))
    }

    /// [`evaluate`](crate::train::evaluate) on the GPU (the test split uploaded by
    /// [`attach_cuda`](Self::attach_cuda)); logits come back to the host per chunk for the loss
    /// and the confusion matrix.
    pub(crate) fn evaluate_cuda(
        &mut self,
        split: &Split,
        limit: Option<usize>,
    ) -> Result<Evaluation> {
        let g = self.gpu.as_mut().expect("evaluate_cuda without a GPU");
        ensure!(
            g.test.len == split.len(),
            "the GPU holds a different test set"
        );
        let n = limit.map_or(split.len(), |l| l.min(split.len()));
        let classes = self.config.arch.classes;
        let chunk = g.net.capacity();
        let mut confusion = vec![vec![0u32; classes]; classes];
        let (mut loss, mut correct) = (0f64, 0usize);
        let mut scratch = Vec::new();
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let logits = g.test_logits(start, end - start)?;
            let labels = &split.labels[start..end];
            let (l, c) = softmax_cross_entropy(&logits, classes, labels, &mut scratch);
            loss += l * labels.len() as f64;
            correct += c;
            for (row, &y) in logits.chunks(classes).zip(labels) {
                confusion[y as usize][argmax(row)] += 1;
            }
        }
        Ok(Evaluation {
            loss: loss / n.max(1) as f64,
            accuracy: 100.0 * correct as f64 / n.max(1) as f64,
            confusion,
            count: n,
        })
    }
}

//! The network on the GPU: the same [`ArchSpec`] as the CPU [`Network`], its parameters in one
//! flat device buffer (in [`Network::params`] order, so one SGD launch updates them all and the
//! momentum buffers map one-to-one onto the CPU optimizer's), per-layer activations sized for a
//! batch capacity, and conversion to and from the CPU network so that checkpoints and exports
//! are shared.

use anyhow::{bail, ensure, Result};

use super::device::{Arg, DevBuf, Gpu};
use super::ops::{self, BnTensors, Columns, ConvShape, HeadBuffers, HeadShape, Scratch};
use crate::arch::{ArchSpec, Shape};
use crate::layers::Layer;
use crate::network::Network;

/// A range of the flat parameter (and gradient) buffer.
#[derive(Clone, Copy, Debug)]
struct Slot {
    off: usize,
    len: usize,
}

enum GLayer {
    Conv {
        cout: usize,
        k: usize,
        pad: usize,
        weight: Slot,
        bias: Slot,
    },
    PRelu {
        count: usize,
        slopes: Slot,
    },
    BatchNorm {
        gamma: Slot,
        beta: Slot,
        running_mean: DevBuf<f32>,
        running_var: DevBuf<f32>,
        mean: DevBuf<f32>,
        inv_std: DevBuf<f32>,
    },
    MaxPool {
        arg: DevBuf<u8>,
    },
    Flatten,
    Linear {
        outp: usize,
        weight: Slot,
        bias: Slot,
    },
}

/// The network's state and buffers on the device.
pub struct GpuNetwork {
    /// The architecture.
    pub spec: ArchSpec,
    head_shape: HeadShape,
    shapes: Vec<Shape>,
    layers: Vec<GLayer>,
    head: Slot,
    /// Parameter ranges in [`Network::params`] order.
    slots: Vec<Slot>,
    params: DevBuf<f32>,
    grads: DevBuf<f32>,
    momentum: DevBuf<f32>,
    /// Whether the momentum buffer holds state (false before the first step, as the CPU
    /// optimizer's empty buffers).
    pub momentum_started: bool,
    cap: usize,
    outs: Vec<DevBuf<f32>>,
    grad_a: DevBuf<f32>,
    grad_b: DevBuf<f32>,
    dfeat: DevBuf<f32>,
    /// Normalised input `[1, N, H, W]` of the current batch.
    pub input: DevBuf<f32>,
    /// Labels of the current batch.
    pub labels: DevBuf<u8>,
    /// Head and loss buffers.
    pub head_buf: HeadBuffers,
    scratch: Scratch,
    /// Each layer's im2col columns (used by convolution layers only).
    cols: Vec<Columns>,
}

fn bn_of(l: &GLayer, params: &DevBuf<f32>) -> BnTensors {
    match l {
        GLayer::BatchNorm {
            gamma,
            beta,
            running_mean,
            running_var,
            mean,
            inv_std,
        } => BnTensors {
            gamma: params.ptr() + 4 * gamma.off as u64,
            beta: params.ptr() + 4 * beta.off as u64,
            running_mean: running_mean.ptr(),
            running_var: running_var.ptr(),
            mean: mean.ptr(),
            inv_std: inv_std.ptr(),
        },
        _ => unreachable!("not a BatchNorm layer"),
    }
}

impl GpuNetwork {
    /// Allocates the network for batches of up to `cap` images and uploads `net`'s state and
    /// the optimizer's `momentum` buffers (empty: not started).
    pub fn new(gpu: &Gpu, net: &Network, momentum: &[Vec<f32>], cap: usize) -> Result<Self> {
        ensure!(cap >= 1, "batch capacity must be positive");
        let spec = net.spec.clone();
        let shapes = spec.shapes().map_err(anyhow::Error::msg)?;
        let mut off = 0;
        let mut slots = Vec::new();
        let mut take = |len: usize| {
            let s = Slot { off, len };
            off += len;
            slots.push(s);
            s
        };
        let mut layers = Vec::new();
        for (i, l) in net.layers.iter().enumerate() {
            let s_in = shapes[i];
            layers.push(match l {
                Layer::Conv(c) => {
                    ensure!(c.cin == s_in[0], "layer {i}: conv input channels");
                    GLayer::Conv {
                        cout: c.cout,
                        k: c.k,
                        pad: c.pad,
                        weight: take(c.weight.len()),
                        bias: take(c.bias.len()),
                    }
                }
                Layer::PRelu(p) => GLayer::PRelu {
                    count: p.slopes.len(),
                    slopes: take(p.slopes.len()),
                },
                Layer::BatchNorm(b) => {
                    let c = b.gamma.len();
                    GLayer::BatchNorm {
                        gamma: take(c),
                        beta: take(c),
                        running_mean: DevBuf::zeros(c)?,
                        running_var: DevBuf::zeros(c)?,
                        mean: DevBuf::zeros(c)?,
                        inv_std: DevBuf::zeros(c)?,
                    }
                }
                Layer::MaxPool(_) => GLayer::MaxPool {
                    arg: DevBuf::zeros(s_in[0] * cap * (s_in[1] / 2) * (s_in[2] / 2))?,
                },
                Layer::Flatten(_) => GLayer::Flatten,
                Layer::Linear(f) => GLayer::Linear {
                    outp: f.outp,
                    weight: take(f.weight.len()),
                    bias: take(f.bias.len()),
                },
            });
        }
        let head = take(net.head.weight.len());
        let total = off;
        let max_act = shapes
            .iter()
            .map(|s| s[0] * s[1] * s[2] * cap)
            .max()
            .unwrap_or(0);
        let outs = shapes[1..]
            .iter()
            .map(|s| DevBuf::zeros(s[0] * s[1] * s[2] * cap))
            .collect::<Result<Vec<_>>>()?;
        let [ci, hi, wi] = spec.input;
        let head_shape = HeadShape {
            features: net.head.inp,
            classes: net.head.classes,
            margin: net.head.margin,
        };
        let mut g = Self {
            head_buf: HeadBuffers::new(cap, head_shape.classes)?,
            head_shape,
            spec,
            shapes,
            layers,
            head,
            slots,
            params: DevBuf::zeros(total)?,
            grads: DevBuf::zeros(total)?,
            momentum: DevBuf::zeros(total)?,
            momentum_started: false,
            cap,
            outs,
            grad_a: DevBuf::zeros(max_act)?,
            grad_b: DevBuf::zeros(max_act)?,
            dfeat: DevBuf::zeros(net.head.inp * cap)?,
            input: DevBuf::zeros(ci * hi * wi * cap)?,
            labels: DevBuf::zeros(cap)?,
            scratch: Scratch::default(),
            cols: (0..net.layers.len()).map(|_| Columns::default()).collect(),
        };
        g.upload(gpu, net, momentum)?;
        Ok(g)
    }

    /// Batch capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Total trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.params.len()
    }

    /// Copies `net`'s parameters and running statistics, and the optimizer's momentum buffers
    /// (empty: not started), to the device. `net` must have this network's architecture.
    pub fn upload(&mut self, gpu: &Gpu, net: &Network, momentum: &[Vec<f32>]) -> Result<()> {
        ensure!(
            net.spec == self.spec,
            "network architecture differs from the GPU copy"
        );
        let mut cpu = net.clone();
        let values: Vec<Vec<f32>> = cpu.params().iter().map(|p| p.value.to_vec()).collect();
        ensure!(values.len() == self.slots.len(), "parameter count mismatch");
        let mut flat = Vec::with_capacity(self.params.len());
        for (v, s) in values.iter().zip(&self.slots) {
            ensure!(v.len() == s.len, "parameter size mismatch");
            flat.extend_from_slice(v);
        }
        self.params.upload(gpu, 0, &flat)?;
        self.upload_running_stats(gpu, net)?;
        if momentum.is_empty() {
            self.momentum_started = false;
        } else {
            ensure!(
                momentum.len() == self.slots.len(),
                "optimizer state does not match the network"
            );
            let flat: Vec<f32> = momentum.iter().flatten().copied().collect();
            ensure!(flat.len() == self.params.len(), "momentum size mismatch");
            self.momentum.upload(gpu, 0, &flat)?;
            self.momentum_started = true;
        }
        Ok(())
    }

    /// Copies `net`'s BatchNorm running statistics (only) to the device, e.g. after
    /// [`Network::recompute_bn`] on the CPU copy.
    pub fn upload_running_stats(&mut self, gpu: &Gpu, net: &Network) -> Result<()> {
        ensure!(
            net.spec == self.spec,
            "network architecture differs from the GPU copy"
        );
        for (l, g) in net.layers.iter().zip(&mut self.layers) {
            if let (
                Layer::BatchNorm(b),
                GLayer::BatchNorm {
                    running_mean,
                    running_var,
                    ..
                },
            ) = (l, g)
            {
                running_mean.upload(gpu, 0, &b.running_mean)?;
                running_var.upload(gpu, 0, &b.running_var)?;
            }
        }
        Ok(())
    }

    /// Copies the device state into `net` (parameters and running statistics) and, once
    /// started, the momentum buffers into `momentum` (CPU optimizer layout).
    pub fn download(
        &self,
        gpu: &Gpu,
        net: &mut Network,
        momentum: &mut Vec<Vec<f32>>,
    ) -> Result<()> {
        ensure!(
            net.spec == self.spec,
            "network architecture differs from the GPU copy"
        );
        let flat = self.params.to_vec(gpu)?;
        for (p, s) in net.params().into_iter().zip(&self.slots) {
            p.value.copy_from_slice(&flat[s.off..s.off + s.len]);
        }
        for (l, g) in net.layers.iter_mut().zip(&self.layers) {
            if let (
                Layer::BatchNorm(b),
                GLayer::BatchNorm {
                    running_mean,
                    running_var,
                    ..
                },
            ) = (l, g)
            {
                running_mean.download_into(gpu, 0, &mut b.running_mean)?;
                running_var.download_into(gpu, 0, &mut b.running_var)?;
            }
        }
        if self.momentum_started {
            let m = self.momentum.to_vec(gpu)?;
            *momentum = self
                .slots
                .iter()
                .map(|s| m[s.off..s.off + s.len].to_vec())
                .collect();
        } else {
            momentum.clear();
        }
        Ok(())
    }

    /// The gradients of the last backward pass, per parameter tensor in
    /// [`Network::params`] order.
    pub fn gradients(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        let g = self.grads.to_vec(gpu)?;
        Ok(self
            .slots
            .iter()
            .map(|s| g[s.off..s.off + s.len].to_vec())
            .collect())
    }

    fn pptr(&self, s: Slot) -> u64 {
        self.params.ptr() + 4 * s.off as u64
    }

    fn gptr(&self, s: Slot) -> u64 {
        self.grads.ptr() + 4 * s.off as u64
    }

    fn layer_input(&self, i: usize) -> u64 {
        if i == 0 {
            self.input.ptr()
        } else {
            self.outs[i - 1].ptr()
        }
    }

    /// Runs the feature layers and the head on the `n` images in [`input`](Self::input)
    /// (labels in [`labels`](Self::labels)): training mode with the margin and `lambda`, or
    /// evaluation mode (plain logits, running statistics). Logits end in `head_buf.logits`.
    pub fn forward(&mut self, gpu: &Gpu, n: usize, train: bool, lambda: f64) -> Result<()> {
        if n > self.cap {
            bail!(
                "batch of {n} exceeds the GPU network's capacity {}",
                self.cap
            );
        }
        for i in 0..self.layers.len() {
            let [c, h, w] = self.shapes[i];
            let x = self.layer_input(i);
            let y = self.outs[i].ptr();
            let row = n * h * w;
            match &self.layers[i] {
                GLayer::Conv {
                    cout,
                    k,
                    pad,
                    weight,
                    bias,
                } => {
                    let sh = ConvShape {
                        cin: c,
                        n,
                        h,
                        w,
                        cout: *cout,
                        k: *k,
                        pad: *pad,
                    };
                    let (wp, bp) = (self.pptr(*weight), self.pptr(*bias));
                    ops::conv_forward(
                        gpu,
                        &mut self.scratch,
                        &mut self.cols[i],
                        &sh,
                        x,
                        wp,
                        bp,
                        y,
                    )?;
                }
                GLayer::PRelu { count, slopes } => {
                    ops::prelu_forward(gpu, x, c, row, self.pptr(*slopes), *count, y)?;
                }
                l @ GLayer::BatchNorm { .. } => {
                    let t = bn_of(l, &self.params);
                    ops::bn_forward(gpu, &mut self.scratch, x, c, row, &t, train, y)?;
                }
                GLayer::MaxPool { arg } => {
                    ops::maxpool_forward(gpu, x, c * n, h, w, y, arg.ptr())?;
                }
                GLayer::Flatten => ops::flatten(gpu, true, x, c, n, h * w, y)?,
                GLayer::Linear { outp, weight, bias } => {
                    let (wp, bp) = (self.pptr(*weight), self.pptr(*bias));
                    ops::linear_forward(gpu, &mut self.scratch, x, c, *outp, n, wp, bp, y)?;
                }
            }
        }
        let feat = self.layer_input(self.layers.len());
        ops::head_forward(
            gpu,
            &self.head_buf,
            &self.head_shape,
            feat,
            self.pptr(self.head),
            self.labels.ptr(),
            n,
            lambda,
            train,
        )
    }

    /// Cross-entropy of the last forward pass: `dlogits`, and the mean loss and correct count
    /// written to the device addresses `loss_at` (f64) and `correct_at` (i32).
    pub fn loss(&self, gpu: &Gpu, n: usize, loss_at: Arg, correct_at: Arg) -> Result<()> {
        ops::cross_entropy(
            gpu,
            &self.head_buf,
            self.head_shape.classes,
            self.labels.ptr(),
            n,
            loss_at,
            correct_at,
        )
    }

    /// Back-propagates `head_buf.dlogits` of the last training forward pass, setting every
    /// parameter's gradient.
    pub fn backward(&mut self, gpu: &Gpu, n: usize, lambda: f64) -> Result<()> {
        let feat = self.layer_input(self.layers.len());
        ops::head_backward(
            gpu,
            &self.head_buf,
            &self.head_shape,
            feat,
            self.pptr(self.head),
            self.labels.ptr(),
            n,
            lambda,
            self.gptr(self.head),
            self.dfeat.ptr(),
        )?;
        // dy of layer i lives in `dy`; its dx goes to the other ping-pong buffer.
        let mut dy = self.dfeat.ptr();
        let mut next_is_a = true;
        for i in (0..self.layers.len()).rev() {
            let [c, h, w] = self.shapes[i];
            let x = self.layer_input(i);
            let dx_buf = if next_is_a {
                self.grad_a.ptr()
            } else {
                self.grad_b.ptr()
            };
            let dx = (i > 0).then_some(dx_buf);
            let row = n * h * w;
            match &self.layers[i] {
                GLayer::Conv {
                    cout,
                    k,
                    pad,
                    weight,
                    bias,
                } => {
                    let sh = ConvShape {
                        cin: c,
                        n,
                        h,
                        w,
                        cout: *cout,
                        k: *k,
                        pad: *pad,
                    };
                    let (wp, dw, db) = (self.pptr(*weight), self.gptr(*weight), self.gptr(*bias));
                    let cols = &mut self.cols[i];
                    ops::conv_backward(gpu, &mut self.scratch, cols, &sh, x, wp, dy, dw, db, dx)?;
                }
                GLayer::PRelu { count, slopes } => {
                    let (sp, ds) = (self.pptr(*slopes), self.gptr(*slopes));
                    ops::prelu_backward(gpu, &mut self.scratch, x, dy, c, row, sp, *count, ds, dx)?;
                }
                l @ GLayer::BatchNorm { gamma, beta, .. } => {
                    let t = bn_of(l, &self.params);
                    let (dg, db) = (self.gptr(*gamma), self.gptr(*beta));
                    ops::bn_backward(gpu, &mut self.scratch, x, dy, c, row, &t, dg, db, dx)?;
                }
                GLayer::MaxPool { arg } => {
                    if let Some(dx) = dx {
                        ops::maxpool_backward(gpu, dy, arg.ptr(), c * n, h, w, dx)?;
                    }
                }
                GLayer::Flatten => {
                    if let Some(dx) = dx {
                        ops::flatten(gpu, false, dy, c, n, h * w, dx)?;
                    }
                }
                GLayer::Linear { outp, weight, bias } => {
                    let (wp, dw, db) = (self.pptr(*weight), self.gptr(*weight), self.gptr(*bias));
                    ops::linear_backward(
                        gpu,
                        &mut self.scratch,
                        x,
                        c,
                        *outp,
                        n,
                        wp,
                        dy,
                        dw,
                        db,
                        dx,
                    )?;
                }
            }
            dy = dx_buf;
            next_is_a = !next_is_a;
        }
        Ok(())
    }

    /// One SGD step over every parameter (one launch).
    pub fn sgd(&mut self, gpu: &Gpu, lr: f32, momentum: f32, weight_decay: f32) -> Result<()> {
        ops::sgd_step(
            gpu,
            self.params.ptr(),
            self.grads.ptr(),
            self.momentum.ptr(),
            self.params.len(),
            lr,
            momentum,
            weight_decay,
            !self.momentum_started,
        )?;
        self.momentum_started = true;
        Ok(())
    }
}

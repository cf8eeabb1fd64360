//! A sequential network built from an [`ArchSpec`]: feature layers plus the L-Softmax head.

use lsoftmax_quantize::float_model::{FloatLayer, FloatModel, Normalize};

use crate::arch::{ArchSpec, LayerSpec};
use crate::layers::{BatchNorm, Conv2d, Flatten, Layer, Linear, MaxPool2, PRelu, Param};
use crate::lsoftmax::LSoftmax;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Feature layers and head, with all buffers needed for training.
#[derive(Clone, Debug)]
pub struct Network {
    /// The architecture this network was built from.
    pub spec: ArchSpec,
    /// Feature layers.
    pub layers: Vec<Layer>,
    /// The L-Softmax head.
    pub head: LSoftmax,
    dfeat: Tensor,
    /// Per-layer wall times, recorded while enabled by [`Network::time_layers`].
    timing: Option<Vec<LayerTime>>,
}

/// Wall time spent in one feature layer, summed over the passes since timing was enabled.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LayerTime {
    /// Seconds in forward passes.
    pub forward: f64,
    /// Seconds in backward passes.
    pub backward: f64,
    /// Forward passes timed.
    pub passes: u32,
}

impl Network {
    /// Builds and initialises a network (PyTorch's default initialisations) from `seed`.
    pub fn new(spec: &ArchSpec, margin: u32, seed: u64) -> Result<Self, String> {
        let shapes = spec.shapes()?;
        if margin < 1 {
            return Err("the margin m must be at least 1".into());
        }
        let mut rng = Rng::derive(seed, 0x1A7E5);
        let mut layers = Vec::with_capacity(spec.layers.len());
        for (i, l) in spec.layers.iter().enumerate() {
            let s = shapes[i];
            layers.push(match *l {
                LayerSpec::BatchNorm => Layer::BatchNorm(BatchNorm::new(s[0])),
                LayerSpec::Conv { out, k, pad } => {
                    Layer::Conv(Conv2d::new(s[0], out, k, pad, &mut rng))
                }
                LayerSpec::PRelu { per_channel } => {
                    Layer::PRelu(PRelu::new(if per_channel { s[0] } else { 1 }))
                }
                LayerSpec::MaxPool2 => Layer::MaxPool(MaxPool2::new()),
                LayerSpec::Flatten => Layer::Flatten(Flatten::default()),
                LayerSpec::Linear { out } => Layer::Linear(Linear::new(s[0], out, &mut rng)),
            });
        }
        let features = shapes.last().map(|s| s[0]).unwrap_or(0);
        let head = LSoftmax::new(features, spec.classes, margin, &mut rng);
        Ok(Self {
            spec: spec.clone(),
            layers,
            head,
            dfeat: Tensor::default(),
            timing: None,
        })
    }

    /// Runs the feature layers; returns the head's input `[features, N, 1, 1]`.
    pub fn features<'a>(&'a mut self, x: &'a Tensor, train: bool) -> &'a Tensor {
        for i in 0..self.layers.len() {
            let (before, rest) = self.layers.split_at_mut(i);
            let input = before.last().map(|l| l.out()).unwrap_or(x);
            let start = self.timing.is_some().then(std::time::Instant::now);
            rest[0].forward(input, train);
            if let (Some(t), Some(start)) = (self.timing.as_mut(), start) {
                t[i].forward += start.elapsed().as_secs_f64();
                t[i].passes += 1;
            }
        }
        self.layers.last().map(|l| l.out()).unwrap_or(x)
    }

    /// Starts (or restarts from zero) recording every feature layer's forward and backward wall
    /// time, for `bench --layers`; `false` stops it.
    pub fn time_layers(&mut self, on: bool) {
        self.timing = on.then(|| vec![LayerTime::default(); self.layers.len()]);
    }

    /// The times recorded since [`time_layers`](Self::time_layers)`(true)`, one per feature
    /// layer; empty when timing is off.
    pub fn layer_times(&self) -> &[LayerTime] {
        self.timing.as_deref().unwrap_or(&[])
    }

    /// Recomputes every BatchNorm layer's running statistics from `batches` with the current
    /// weights ("precise BN"): each batch goes through the feature layers in training mode and
    /// the running mean and unbiased variance become the plain average over all batches, instead
    /// of the momentum-0.1 average that training leaves behind (which lags the weights while they
    /// still move fast, e.g. at lr 0.1 in the first epochs). Weights are untouched; every layer's
    /// momentum is restored afterwards. Returns the number of batches used (0 leaves the
    /// statistics as they were).
    pub fn recompute_bn<I: IntoIterator<Item = Tensor>>(&mut self, batches: I) -> usize {
        let mut count = 0usize;
        for x in batches {
            let momentum = 1.0 / (count + 1) as f32;
            self.set_bn_momentum(momentum);
            self.features(&x, true);
            count += 1;
        }
        self.set_bn_momentum(crate::layers::batchnorm::MOMENTUM);
        count
    }

    fn set_bn_momentum(&mut self, momentum: f32) {
        for l in &mut self.layers {
            if let Layer::BatchNorm(bn) = l {
                bn.momentum = momentum;
            }
        }
    }

    /// Evaluation-mode logits `[N][classes]`.
    pub fn logits(&mut self, x: &Tensor) -> Vec<f32> {
        let n = x.n;
        self.features(x, false);
        let feat = &self.layers.last().expect("network has layers").out().data;
        self.head.forward_eval(feat, n).to_vec()
    }

    /// Training forward pass with the margin head; returns the training logits.
    pub fn forward_train(&mut self, x: &Tensor, targets: &[u8], lambda: f64) -> &[f32] {
        let n = x.n;
        self.features(x, true);
        let feat = &self.layers.last().expect("network has layers").out().data;
        self.head.forward_train(feat, n, targets, lambda)
    }

    /// Back-propagates `dlogits` of the last [`forward_train`](Self::forward_train) on `x`,
    /// setting every parameter's gradient.
    pub fn backward(&mut self, x: &Tensor, dlogits: &[f32]) {
        let n = x.n;
        {
            let feat = self.layers.last().expect("network has layers").out();
            self.head.backward(&feat.data, n, dlogits);
            self.dfeat.reset(feat.c, n, 1, 1);
        }
        self.dfeat.data.copy_from_slice(&self.head.dx);
        for i in (0..self.layers.len()).rev() {
            let (before, rest) = self.layers.split_at_mut(i);
            let (cur, after) = rest.split_first_mut().expect("index in range");
            let input = before.last().map(|l| l.out()).unwrap_or(x);
            let dy = after.first().map(|l| l.dx()).unwrap_or(&self.dfeat);
            let start = self.timing.is_some().then(std::time::Instant::now);
            cur.backward(input, dy, i > 0);
            if let (Some(t), Some(start)) = (self.timing.as_mut(), start) {
                t[i].backward += start.elapsed().as_secs_f64();
            }
        }
    }

    /// All trainable parameters in a fixed order (layers in order, then the head).
    pub fn params(&mut self) -> Vec<Param<'_>> {
        let mut v: Vec<Param<'_>> = self.layers.iter_mut().flat_map(|l| l.params()).collect();
        v.push(Param {
            value: &mut self.head.weight,
            grad: &self.head.dweight,
        });
        v
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&mut self) -> usize {
        self.params().iter().map(|p| p.value.len()).sum()
    }

    /// Every state tensor (parameters and running statistics) with its name:
    /// `layers.{i}.{weight|bias|running_mean|running_var}` and `head.weight`.
    pub fn state(&self) -> Vec<(String, Vec<f32>)> {
        let mut v = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for (name, t) in l.state() {
                v.push((format!("layers.{i}.{name}"), t.clone()));
            }
        }
        v.push(("head.weight".to_string(), self.head.weight.clone()));
        v
    }

    /// Loads tensors saved by [`state`](Self::state); every name and length must match.
    pub fn load_state(&mut self, tensors: &[(String, Vec<f32>)]) -> Result<(), String> {
        let want: Vec<(String, usize)> = self
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.len()))
            .collect();
        if want.len() != tensors.len() {
            return Err(format!(
                "expected {} tensors, found {}",
                want.len(),
                tensors.len()
            ));
        }
        for ((wn, wl), (n, t)) in want.iter().zip(tensors) {
            if wn != n || *wl != t.len() {
                return Err(format!(
                    "tensor {n} ({} values) does not match {wn} ({wl} values)",
                    t.len()
                ));
            }
        }
        let mut src = tensors.iter();
        for l in &mut self.layers {
            for dst in l.state_mut() {
                dst.clone_from(&src.next().expect("counted above").1);
            }
        }
        self.head
            .weight
            .clone_from(&src.next().expect("counted above").1);
        Ok(())
    }

    /// The network in eval mode as the quantizer's trainer-independent description.
    pub fn to_float_model(&self) -> FloatModel {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                Layer::Conv(c) => FloatLayer::Conv2d {
                    cin: c.cin,
                    cout: c.cout,
                    k: c.k,
                    pad: c.pad,
                    weight: c.weight.clone(),
                    bias: c.bias.clone(),
                },
                Layer::PRelu(p) => FloatLayer::PRelu {
                    slopes: p.slopes.clone(),
                },
                Layer::BatchNorm(b) => FloatLayer::BatchNorm {
                    gamma: b.gamma.clone(),
                    beta: b.beta.clone(),
                    mean: b.running_mean.clone(),
                    var: b.running_var.clone(),
                    eps: crate::layers::batchnorm::EPS,
                },
                Layer::MaxPool(_) => FloatLayer::MaxPool2,
                Layer::Flatten(_) => FloatLayer::Flatten,
                Layer::Linear(f) => FloatLayer::Linear {
                    inp: f.inp,
                    out: f.outp,
                    weight: f.weight.clone(),
                    bias: f.bias.clone(),
                },
            })
            .collect();
        FloatModel {
            input_hw: self.spec.input[1],
            normalize: Normalize {
                mean: mnist::MEAN,
                std: mnist::STD,
            },
            layers,
            features: self.head.inp,
            classes: self.head.classes,
            head: self.head.weight.clone(),
            margin: self.head.margin,
        }
    }
}

/// Normalises `n` images of `pixels` bytes each with [`mnist::normalize`] into a
/// `[1, n, h, w]` tensor, reusing `out`'s allocation.
pub fn images_to_tensor(images: &[&[u8]], h: usize, w: usize, out: &mut Tensor) {
    out.reset(1, images.len(), h, w);
    for (dst, img) in out.data.chunks_mut(h * w).zip(images) {
        for (d, &p) in dst.iter_mut().zip(img.iter()) {
            *d = mnist::normalize(p);
        }
    }
}

/// Normalises images `range` of `split` (in order) into a `[1, n, h, w]` tensor with
/// [`images_to_tensor`], reusing `out`'s allocation.
pub fn split_to_tensor(
    split: &mnist::Split,
    range: std::ops::Range<usize>,
    h: usize,
    w: usize,
    out: &mut Tensor,
) {
    let images: Vec<&[u8]> = range.map(|i| split.image(i)).collect();
    images_to_tensor(&images, h, w, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;
    use crate::lsoftmax::softmax_cross_entropy;

    /// A 6x6 network with every layer kind, starting with BatchNorm on the input.
    fn small_spec() -> ArchSpec {
        ArchSpec {
            name: "small".into(),
            input: [1, 6, 6],
            layers: vec![
                LayerSpec::BatchNorm,
                LayerSpec::Conv {
                    out: 3,
                    k: 3,
                    pad: 1,
                },
                LayerSpec::PRelu { per_channel: true },
                LayerSpec::BatchNorm,
                LayerSpec::MaxPool2,
                LayerSpec::Flatten,
                LayerSpec::Linear { out: 4 },
                LayerSpec::BatchNorm,
            ],
            classes: 10,
        }
    }

    /// End-to-end gradient check of a small network through every layer kind and the head.
    #[test]
    fn whole_network_gradient_matches_finite_differences() {
        let spec = small_spec();
        for m in [1, 4] {
            let mut net = Network::new(&spec, m, 1).unwrap();
            let n = 6;
            let x = Tensor {
                c: 1,
                n,
                h: 6,
                w: 6,
                data: gradcheck::random(n * 36, 2),
            };
            let targets: Vec<u8> = (0..n as u8).collect();
            let loss = |net: &mut Network| {
                let l = net.forward_train(&x, &targets, 0.5).to_vec();
                softmax_cross_entropy(&l, 10, &targets, &mut Vec::new()).0
            };
            let l = net.forward_train(&x, &targets, 0.5).to_vec();
            let mut dl = Vec::new();
            softmax_cross_entropy(&l, 10, &targets, &mut dl);
            net.backward(&x, &dl);
            let grads: Vec<Vec<f32>> = net.params().iter().map(|p| p.grad.to_vec()).collect();
            // A small step: larger ones let max-pool winners and PReLU signs flip somewhere in the
            // batch (the BatchNorm statistics move every activation), and the finite difference
            // then measures a kink rather than the gradient.
            for (pi, g) in grads.iter().enumerate() {
                let mut vals = net.params()[pi].value.to_vec();
                let mut probe = net.clone();
                gradcheck::check(
                    &format!("network m={m} param {pi}"),
                    &mut vals,
                    g,
                    |v| {
                        probe.params()[pi].value.copy_from_slice(v);
                        loss(&mut probe)
                    },
                    2e-4,
                    5e-3,
                    12,
                );
            }
        }
    }

    #[test]
    fn layer_timing_records_every_layer_and_leaves_results_alone() {
        let spec = ArchSpec::preset("tiny").unwrap();
        let [c, h, w] = spec.input;
        let n = 4;
        let x = Tensor {
            c,
            n,
            h,
            w,
            data: gradcheck::random(n * c * h * w, 3),
        };
        let targets: Vec<u8> = (0..n as u8).collect();
        let mut plain = Network::new(&spec, 2, 1).unwrap();
        let mut timed = plain.clone();
        assert!(timed.layer_times().is_empty());
        timed.time_layers(true);
        let mut grads = Vec::new();
        for net in [&mut plain, &mut timed] {
            let l = net.forward_train(&x, &targets, 0.5).to_vec();
            let mut dl = Vec::new();
            softmax_cross_entropy(&l, 10, &targets, &mut dl);
            net.backward(&x, &dl);
            grads.push(
                net.params()
                    .iter()
                    .map(|p| p.grad.to_vec())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(grads[0], grads[1]);
        let times = timed.layer_times();
        assert_eq!(times.len(), timed.layers.len());
        assert!(times.iter().all(|t| t.passes == 1));
        assert!(times.iter().any(|t| t.forward > 0.0 && t.backward > 0.0));
        timed.time_layers(false);
        assert!(timed.layer_times().is_empty());
    }

    #[test]
    fn recompute_bn_averages_batch_statistics_and_restores_momentum() {
        let spec = small_spec();
        let [c, h, w] = spec.input;
        let n = 5;
        let batch = |seed: u64, offset: f32| Tensor {
            c,
            n,
            h,
            w,
            data: gradcheck::random(n * c * h * w, seed)
                .iter()
                .map(|v| 3.0 * v + offset)
                .collect(),
        };
        let (a, b) = (batch(7, 0.5), batch(8, -1.0));
        let mut net = Network::new(&spec, 2, 3).unwrap();
        let weights_before = net.state();
        assert_eq!(net.recompute_bn([a.clone(), b.clone()]), 2);
        // The first layer normalises the input itself: its statistics are exact averages.
        let stats = |t: &Tensor| {
            let m = t.data.iter().map(|&v| v as f64).sum::<f64>() / t.data.len() as f64;
            let v = t.data.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>()
                / (t.data.len() - 1) as f64;
            (m, v)
        };
        let ((ma, va), (mb, vb)) = (stats(&a), stats(&b));
        let Layer::BatchNorm(bn) = &net.layers[0] else {
            unreachable!()
        };
        assert!((bn.running_mean[0] as f64 - (ma + mb) / 2.0).abs() < 1e-5);
        assert!((bn.running_var[0] as f64 - (va + vb) / 2.0).abs() < 1e-4);
        // Deeper layers' statistics changed too, the weights did not, momentum is back to 0.1.
        let after = net.state();
        for ((name, before), (_, now)) in weights_before.iter().zip(&after) {
            if name.ends_with("running_mean") || name.ends_with("running_var") {
                assert_ne!(before, now, "{name} not recomputed");
            } else {
                assert_eq!(before, now, "{name} changed");
            }
        }
        for l in &net.layers {
            if let Layer::BatchNorm(bn) = l {
                assert_eq!(bn.momentum, crate::layers::batchnorm::MOMENTUM);
            }
        }
    }
}

//! Exact folding of a [`FloatModel`] into fused stages.
//!
//! # The math
//!
//! A BatchNorm in eval mode is a per-channel affine map
//! `bn(x) = g * x + b` with `g = gamma / sqrt(var + eps)` and `b = beta - mean * g`.
//!
//! * **Input.** `x = (p / 255 - mean) / std` followed by an optional leading `BatchNorm(1)` is
//!   the affine map `x = input_mul * p + input_add` of the pixel `p`
//!   (`input_mul = g / (255 std)`, `input_add = b - g * mean / std`). The exporter tabulates it
//!   for the 256 pixel values.
//! * **BatchNorms right after a Conv2d/Linear** (before any PReLU) compose into one affine map
//!   `(g, b)` per output channel and fold into the weights:
//!   `g * (W x + bias) + b = (g W) x + (g bias + b)`. A negative `g` just flips the sign of a
//!   weight row, which symmetric per-channel weight quantization represents exactly.
//! * **PReLU** stays as a per-channel slope `a` (`neg_slope`; 1 when absent).
//! * **BatchNorms after the PReLU** compose into a per-channel affine `post(p) = u p + v`
//!   (`post_mul`, `post_add`). Because `u` may be negative, it cannot move through the PReLU;
//!   instead the stage computes, for the pre-activation `z`,
//!   `y = u z + v` if `z >= 0` and `y = (u a) z + v` if `z < 0`,
//!   which is exactly `post(prelu(z))`. The quantizer turns `u` and `u a` into two fixed-point
//!   multipliers and `v` into an offset.
//! * **MaxPool2** runs after the whole stage, on `y`, exactly as in the float model.
//! * **Flatten** is recorded with the map shape so the next layer's weights can be permuted
//!   from PyTorch's CHW flatten order to the HWC order of the int8 maps.
//!
//! Every step is an identity in real arithmetic; the folded float forward differs from the
//! unfolded one only by f32 rounding.

use crate::float_model::{FloatLayer, FloatModel};
use crate::reference::{conv_chw, head_logits, linear, maxpool_chw, FloatOutput, Tensor};
use crate::ExportError;

/// Folded parameters of a convolution or dense stage with `n` outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldedKernel {
    /// Weights with the pre-activation BatchNorms folded in: conv `[cout][cin][k][k]`,
    /// dense `[out][inp]` (PyTorch order, CHW flatten order for a dense after Flatten).
    pub weight: Vec<f32>,
    /// Bias with the pre-activation BatchNorms folded in.
    pub bias: Vec<f32>,
    /// PReLU slope per output (1.0 without PReLU).
    pub neg_slope: Vec<f32>,
    /// Scale of the BatchNorms after the PReLU (1.0 without).
    pub post_mul: Vec<f32>,
    /// Shift of the BatchNorms after the PReLU (0.0 without).
    pub post_add: Vec<f32>,
}

impl FoldedKernel {
    /// Applies the activation and post-affine to pre-activation `z` of output `o`.
    pub fn activate(&self, o: usize, z: f32) -> f32 {
        let p = if z >= 0.0 { z } else { self.neg_slope[o] * z };
        self.post_mul[o] * p + self.post_add[o]
    }
}

/// One fused stage.
#[derive(Clone, Debug, PartialEq)]
pub enum FoldedStage {
    /// Conv2d (+ BatchNorms) (+ PReLU (+ BatchNorms)).
    Conv {
        /// Index in `FloatModel::layers` of the Conv2d.
        first_layer: usize,
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Kernel size.
        k: usize,
        /// Zero padding.
        pad: usize,
        /// Input height and width.
        in_hw: (usize, usize),
        /// Output height and width.
        out_hw: (usize, usize),
        /// Folded parameters.
        kernel: FoldedKernel,
    },
    /// 2x2 max pooling of a `c x h x w` map.
    MaxPool2 {
        /// Index in `FloatModel::layers`.
        first_layer: usize,
        /// Channels.
        c: usize,
        /// Input height.
        h: usize,
        /// Input width.
        w: usize,
    },
    /// Flatten of a `c x h x w` map.
    Flatten {
        /// Index in `FloatModel::layers`.
        first_layer: usize,
        /// Channels.
        c: usize,
        /// Height.
        h: usize,
        /// Width.
        w: usize,
    },
    /// Linear (+ BatchNorms) (+ PReLU (+ BatchNorms)).
    Dense {
        /// Index in `FloatModel::layers` of the Linear.
        first_layer: usize,
        /// Inputs.
        inp: usize,
        /// Outputs.
        out: usize,
        /// Folded parameters.
        kernel: FoldedKernel,
    },
}

impl FoldedStage {
    /// Index in `FloatModel::layers` of the layer that starts this stage.
    pub fn first_layer(&self) -> usize {
        match self {
            FoldedStage::Conv { first_layer, .. }
            | FoldedStage::MaxPool2 { first_layer, .. }
            | FoldedStage::Flatten { first_layer, .. }
            | FoldedStage::Dense { first_layer, .. } => *first_layer,
        }
    }
}

/// A [`FloatModel`] with normalisation, BatchNorms and PReLUs folded into stages.
#[derive(Clone, Debug, PartialEq)]
pub struct FoldedModel {
    /// Input height and width.
    pub input_hw: usize,
    /// Network input = `input_mul * pixel + input_add` (normalisation and leading BatchNorm).
    pub input_mul: f64,
    /// See `input_mul`.
    pub input_add: f64,
    /// The stages, in order.
    pub stages: Vec<FoldedStage>,
    /// Feature count.
    pub features: usize,
    /// Class count.
    pub classes: usize,
    /// Head weights `[features][classes]`, as in [`FloatModel::head`].
    pub head: Vec<f32>,
    /// Training margin (informational).
    pub margin: u32,
}

fn finite(index: usize, name: &str, v: &[f32]) -> Result<(), ExportError> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(ExportError::invalid(
            index,
            format!("{name} has a non-finite value"),
        ))
    }
}

/// The per-channel affine `(g, b)` of a BatchNorm with `n` channels, in f64.
fn bn_affine(index: usize, layer: &FloatLayer, n: usize) -> Result<Vec<(f64, f64)>, ExportError> {
    let FloatLayer::BatchNorm {
        gamma,
        beta,
        mean,
        var,
        eps,
    } = layer
    else {
        return Err(ExportError::unsupported(index, "expected a BatchNorm"));
    };
    for (name, v) in [
        ("gamma", gamma),
        ("beta", beta),
        ("mean", mean),
        ("var", var),
    ] {
        if v.len() != n {
            return Err(ExportError::shape(
                index,
                format!("BatchNorm {name} has {} values for {n} channels", v.len()),
            ));
        }
        finite(index, name, v)?;
    }
    (0..n)
        .map(|c| {
            let d = f64::from(var[c]) + f64::from(*eps);
            if d.is_nan() || d <= 0.0 {
                return Err(ExportError::invalid(
                    index,
                    "BatchNorm var + eps is not positive",
                ));
            }
            let g = f64::from(gamma[c]) / d.sqrt();
            Ok((g, f64::from(beta[c]) - f64::from(mean[c]) * g))
        })
        .collect()
}

/// Consumes `[BatchNorm]* [PReLU [BatchNorm]*]` after a Conv2d/Linear at `layers[*i..]`
/// and folds them into `weight` rows (`n` of them) and `bias`.
fn fold_tail(
    layers: &[FloatLayer],
    i: &mut usize,
    n: usize,
    mut weight: Vec<f32>,
    mut bias: Vec<f32>,
) -> Result<FoldedKernel, ExportError> {
    let mut pre = vec![(1f64, 0f64); n];
    while let Some(l @ FloatLayer::BatchNorm { .. }) = layers.get(*i) {
        for (p, (g, b)) in pre.iter_mut().zip(bn_affine(*i, l, n)?) {
            *p = (g * p.0, g * p.1 + b);
        }
        *i += 1;
    }
    let mut neg_slope = vec![1f32; n];
    let mut post = vec![(1f64, 0f64); n];
    if let Some(FloatLayer::PRelu { slopes }) = layers.get(*i) {
        finite(*i, "PReLU slopes", slopes)?;
        match slopes.len() {
            1 => neg_slope.iter_mut().for_each(|s| *s = slopes[0]),
            len if len == n => neg_slope.copy_from_slice(slopes),
            len => {
                return Err(ExportError::shape(
                    *i,
                    format!("PReLU has {len} slopes for {n} channels"),
                ))
            }
        }
        *i += 1;
        while let Some(l @ FloatLayer::BatchNorm { .. }) = layers.get(*i) {
            for (p, (g, b)) in post.iter_mut().zip(bn_affine(*i, l, n)?) {
                *p = (g * p.0, g * p.1 + b);
            }
            *i += 1;
        }
        if let Some(FloatLayer::PRelu { .. }) = layers.get(*i) {
            return Err(ExportError::unsupported(
                *i,
                "a second PReLU in the same stage (only Conv/Linear -> BN* -> PReLU -> BN* folds)",
            ));
        }
    }
    let per = weight.len() / n.max(1);
    for (o, &(g, b)) in pre.iter().enumerate() {
        for w in &mut weight[o * per..(o + 1) * per] {
            *w = (f64::from(*w) * g) as f32;
        }
        bias[o] = (f64::from(bias[o]) * g + b) as f32;
    }
    Ok(FoldedKernel {
        weight,
        bias,
        neg_slope,
        post_mul: post.iter().map(|p| p.0 as f32).collect(),
        post_add: post.iter().map(|p| p.1 as f32).collect(),
    })
}

enum Flow {
    Map(usize, usize, usize),
    Vector(usize),
}

/// Folds `model` into stages (see the module documentation for the math). Rejects any layer
/// sequence other than `[BatchNorm(1)] (Conv2d [BN]* [PReLU [BN]*] | MaxPool2)* Flatten
/// (Linear [BN]* [PReLU [BN]*])*`, naming the first offending layer.
pub fn fold(model: &FloatModel) -> Result<FoldedModel, ExportError> {
    let layers = &model.layers;
    let n = &model.normalize;
    if !(n.std.is_finite() && n.std != 0.0 && n.mean.is_finite()) {
        return Err(ExportError::invalid(0, "input normalisation mean/std"));
    }
    if model.input_hw == 0 {
        return Err(ExportError::invalid(0, "input_hw is 0"));
    }
    let mut input_mul = 1.0 / (255.0 * f64::from(n.std));
    let mut input_add = -f64::from(n.mean) / f64::from(n.std);
    let mut i = 0;
    if let Some(l @ FloatLayer::BatchNorm { gamma, .. }) = layers.first() {
        if gamma.len() != 1 {
            return Err(ExportError::shape(
                0,
                "a leading BatchNorm must have 1 channel",
            ));
        }
        let (g, b) = bn_affine(0, l, 1)?[0];
        input_mul *= g;
        input_add = g * input_add + b;
        i = 1;
    }
    let mut flow = Flow::Map(1, model.input_hw, model.input_hw);
    let mut stages = Vec::new();
    while let Some(layer) = layers.get(i) {
        let index = i;
        match layer {
            FloatLayer::Conv2d {
                cin,
                cout,
                k,
                pad,
                weight,
                bias,
            } => {
                let Flow::Map(c, h, w) = flow else {
                    return Err(ExportError::unsupported(index, "Conv2d after Flatten"));
                };
                if c != *cin {
                    return Err(ExportError::shape(
                        index,
                        format!("Conv2d expects {cin} channels, gets {c}"),
                    ));
                }
                if *k == 0 || *pad >= *k || h + 2 * pad < *k || w + 2 * pad < *k || *cout == 0 {
                    return Err(ExportError::unsupported(
                        index,
                        "Conv2d geometry (need 0 <= pad < k <= padded input)",
                    ));
                }
                if weight.len() != cout * cin * k * k || bias.len() != *cout {
                    return Err(ExportError::shape(index, "Conv2d weight/bias length"));
                }
                finite(index, "Conv2d weight", weight)?;
                finite(index, "Conv2d bias", bias)?;
                i += 1;
                let kernel = fold_tail(layers, &mut i, *cout, weight.clone(), bias.clone())?;
                let out_hw = (h + 2 * pad + 1 - k, w + 2 * pad + 1 - k);
                stages.push(FoldedStage::Conv {
                    first_layer: index,
                    cin: *cin,
                    cout: *cout,
                    k: *k,
                    pad: *pad,
                    in_hw: (h, w),
                    out_hw,
                    kernel,
                });
                flow = Flow::Map(*cout, out_hw.0, out_hw.1);
            }
            FloatLayer::MaxPool2 => {
                let Flow::Map(c, h, w) = flow else {
                    return Err(ExportError::unsupported(index, "MaxPool2 after Flatten"));
                };
                if h < 2 || w < 2 {
                    return Err(ExportError::shape(
                        index,
                        "MaxPool2 on a map smaller than 2x2",
                    ));
                }
                stages.push(FoldedStage::MaxPool2 {
                    first_layer: index,
                    c,
                    h,
                    w,
                });
                flow = Flow::Map(c, h / 2, w / 2);
                i += 1;
            }
            FloatLayer::Flatten => {
                let Flow::Map(c, h, w) = flow else {
                    return Err(ExportError::unsupported(index, "a second Flatten"));
                };
                stages.push(FoldedStage::Flatten {
                    first_layer: index,
                    c,
                    h,
                    w,
                });
                flow = Flow::Vector(c * h * w);
                i += 1;
            }
            FloatLayer::Linear {
                inp,
                out,
                weight,
                bias,
            } => {
                let Flow::Vector(len) = flow else {
                    return Err(ExportError::unsupported(
                        index,
                        "Linear on a map (Flatten missing)",
                    ));
                };
                if len != *inp {
                    return Err(ExportError::shape(
                        index,
                        format!("Linear expects {inp} inputs, gets {len}"),
                    ));
                }
                if weight.len() != inp * out || bias.len() != *out || *out == 0 {
                    return Err(ExportError::shape(index, "Linear weight/bias length"));
                }
                finite(index, "Linear weight", weight)?;
                finite(index, "Linear bias", bias)?;
                i += 1;
                let kernel = fold_tail(layers, &mut i, *out, weight.clone(), bias.clone())?;
                stages.push(FoldedStage::Dense {
                    first_layer: index,
                    inp: *inp,
                    out: *out,
                    kernel,
                });
                flow = Flow::Vector(*out);
            }
            FloatLayer::BatchNorm { .. } => {
                return Err(ExportError::unsupported(
                    index,
                    "BatchNorm must be the first layer (1 channel) or follow a Conv2d/Linear \
                     (directly or after its PReLU)",
                ))
            }
            FloatLayer::PRelu { .. } => {
                return Err(ExportError::unsupported(
                    index,
                    "PReLU must follow a Conv2d/Linear (directly or after BatchNorms)",
                ))
            }
        }
    }
    let head_index = layers.len();
    let Flow::Vector(len) = flow else {
        return Err(ExportError::unsupported(
            head_index,
            "the network must end in Flatten/Linear",
        ));
    };
    if len != model.features {
        return Err(ExportError::shape(
            head_index,
            format!("features is {}, the network gives {len}", model.features),
        ));
    }
    if model.classes == 0 || model.head.len() != model.features * model.classes {
        return Err(ExportError::shape(
            head_index,
            "head must have features * classes weights",
        ));
    }
    finite(head_index, "head", &model.head)?;
    Ok(FoldedModel {
        input_hw: model.input_hw,
        input_mul,
        input_add,
        stages,
        features: model.features,
        classes: model.classes,
        head: model.head.clone(),
        margin: model.margin,
    })
}

impl FoldedModel {
    /// The network input of pixel value `p`.
    pub fn input_value(&self, p: u8) -> f64 {
        self.input_mul * f64::from(p) + self.input_add
    }

    /// The input map followed by the output of every stage, for one image (f32, CHW).
    pub fn stage_outputs(&self, image: &[u8]) -> Result<Vec<Tensor>, ExportError> {
        let hw = self.input_hw;
        if image.len() != hw * hw {
            return Err(ExportError::InputSize {
                expected: hw * hw,
                got: image.len(),
            });
        }
        let data = image.iter().map(|&p| self.input_value(p) as f32).collect();
        let mut outs = vec![Tensor::Map {
            c: 1,
            h: hw,
            w: hw,
            data,
        }];
        for s in &self.stages {
            let prev = outs.last().map(Tensor::values).unwrap_or(&[]);
            let t = match s {
                FoldedStage::Conv {
                    cin,
                    cout,
                    k,
                    pad,
                    in_hw,
                    kernel,
                    ..
                } => {
                    let (mut d, oh, ow) = conv_chw(
                        prev,
                        (*cin, in_hw.0, in_hw.1),
                        *cout,
                        *k,
                        *pad,
                        &kernel.weight,
                        &kernel.bias,
                    );
                    let plane = oh * ow;
                    for (idx, v) in d.iter_mut().enumerate() {
                        *v = kernel.activate(idx / plane, *v);
                    }
                    Tensor::Map {
                        c: *cout,
                        h: oh,
                        w: ow,
                        data: d,
                    }
                }
                FoldedStage::MaxPool2 { c, h, w, .. } => Tensor::Map {
                    c: *c,
                    h: h / 2,
                    w: w / 2,
                    data: maxpool_chw(prev, *c, *h, *w),
                },
                FoldedStage::Flatten { .. } => Tensor::Vector(prev.to_vec()),
                FoldedStage::Dense { out, kernel, .. } => {
                    let mut d = linear(prev, *out, &kernel.weight, &kernel.bias);
                    for (o, v) in d.iter_mut().enumerate() {
                        *v = kernel.activate(o, *v);
                    }
                    Tensor::Vector(d)
                }
            };
            outs.push(t);
        }
        Ok(outs)
    }

    /// Features and logits of one image under the folded float model.
    pub fn forward(&self, image: &[u8]) -> Result<FloatOutput, ExportError> {
        let outs = self.stage_outputs(image)?;
        let features = outs.last().map(|t| t.values().to_vec()).unwrap_or_default();
        let logits = head_logits(&features, self.classes, &self.head);
        Ok(FloatOutput { features, logits })
    }
}

//! Plain f32 forward pass over an unfolded [`FloatModel`], layer by layer, CHW layout, one
//! image: the "f32 export" semantics and the reference for folding and quantization tests.

use crate::float_model::{FloatLayer, FloatModel};
use crate::ExportError;

/// A tensor flowing through the network: a `[c][h][w]` map or a flat vector.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// Channel-major map.
    Map {
        /// Channels.
        c: usize,
        /// Rows.
        h: usize,
        /// Columns.
        w: usize,
        /// Values `[c][h][w]`.
        data: Vec<f32>,
    },
    /// Feature vector.
    Vector(Vec<f32>),
}

impl Tensor {
    /// All values, in storage order.
    pub fn values(&self) -> &[f32] {
        match self {
            Tensor::Map { data, .. } | Tensor::Vector(data) => data,
        }
    }

    /// Number of channels (map) or features (vector), i.e. what per-channel parameters index.
    pub fn channels(&self) -> usize {
        match self {
            Tensor::Map { c, .. } => *c,
            Tensor::Vector(v) => v.len(),
        }
    }
}

/// Output of a float forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatOutput {
    /// The feature vector fed to the head (`features` values, PyTorch flatten order).
    pub features: Vec<f32>,
    /// `logit_j = sum_i features_i * head[i][j]`.
    pub logits: Vec<f32>,
}

impl FloatOutput {
    /// Index of the largest logit (the first one on ties).
    pub fn class(&self) -> usize {
        argmax(&self.logits)
    }
}

/// Index of the largest value (the first one on ties; NaNs never win).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best
}

/// The normalised input map `[1][hw][hw]`: `(pixel / 255 - mean) / std`.
pub(crate) fn input_tensor(model: &FloatModel, image: &[u8]) -> Result<Tensor, ExportError> {
    let hw = model.input_hw;
    if image.len() != hw * hw {
        return Err(ExportError::InputSize {
            expected: hw * hw,
            got: image.len(),
        });
    }
    let n = &model.normalize;
    let data = image
        .iter()
        .map(|&p| (f32::from(p) / 255.0 - n.mean) / n.std)
        .collect();
    Ok(Tensor::Map {
        c: 1,
        h: hw,
        w: hw,
        data,
    })
}

/// `out[co][y][x] = bias[co] + sum w[co][ci][ky][kx] * in[ci][y+ky-pad][x+kx-pad]`, zero
/// outside the input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_chw(
    input: &[f32],
    (cin, h, w): (usize, usize, usize),
    cout: usize,
    k: usize,
    pad: usize,
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, usize, usize) {
    let oh = h + 2 * pad + 1 - k;
    let ow = w + 2 * pad + 1 - k;
    let mut out = vec![0f32; cout * oh * ow];
    for co in 0..cout {
        let plane = &mut out[co * oh * ow..(co + 1) * oh * ow];
        plane.iter_mut().for_each(|v| *v = bias[co]);
        for ci in 0..cin {
            let src = &input[ci * h * w..(ci + 1) * h * w];
            for ky in 0..k {
                for kx in 0..k {
                    let wv = weight[((co * cin + ci) * k + ky) * k + kx];
                    for oy in 0..oh {
                        let iy = oy + ky;
                        if iy < pad || iy - pad >= h {
                            continue;
                        }
                        let row = &src[(iy - pad) * w..(iy - pad + 1) * w];
                        let orow = &mut plane[oy * ow..(oy + 1) * ow];
                        for (ox, o) in orow.iter_mut().enumerate() {
                            let ix = ox + kx;
                            if ix >= pad && ix - pad < w {
                                *o += wv * row[ix - pad];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, oh, ow)
}

/// 2x2 stride-2 max pooling of a `[c][h][w]` map.
pub(crate) fn maxpool_chw(input: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        let p = &input[ch * h * w..];
        for y in 0..oh {
            for x in 0..ow {
                let a = p[2 * y * w + 2 * x].max(p[2 * y * w + 2 * x + 1]);
                let b = p[(2 * y + 1) * w + 2 * x].max(p[(2 * y + 1) * w + 2 * x + 1]);
                out.push(a.max(b));
            }
        }
    }
    out
}

/// `y = W x + b` with `W` `[out][inp]`.
pub(crate) fn linear(x: &[f32], out: usize, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    (0..out)
        .map(|o| {
            let row = &weight[o * x.len()..(o + 1) * x.len()];
            bias[o] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
        })
        .collect()
}

/// `logit_j = sum_i x_i head[i][j]`.
pub(crate) fn head_logits(x: &[f32], classes: usize, head: &[f32]) -> Vec<f32> {
    (0..classes)
        .map(|j| {
            x.iter()
                .enumerate()
                .map(|(i, v)| v * head[i * classes + j])
                .sum()
        })
        .collect()
}

fn per_channel(index: usize, name: &str, v: &[f32], n: usize) -> Result<(), ExportError> {
    if v.len() != n {
        return Err(ExportError::shape(
            index,
            format!("{name} has {} values for {n} channels", v.len()),
        ));
    }
    Ok(())
}

/// Applies one layer (PyTorch eval semantics) to `t`.
pub fn apply_layer(index: usize, layer: &FloatLayer, t: Tensor) -> Result<Tensor, ExportError> {
    match layer {
        FloatLayer::BatchNorm {
            gamma,
            beta,
            mean,
            var,
            eps,
        } => {
            let c = t.channels();
            for (name, v) in [
                ("gamma", gamma),
                ("beta", beta),
                ("mean", mean),
                ("var", var),
            ] {
                per_channel(index, name, v, c)?;
            }
            let f =
                |ch: usize, x: f32| (x - mean[ch]) / (var[ch] + eps).sqrt() * gamma[ch] + beta[ch];
            Ok(match t {
                Tensor::Map { c, h, w, mut data } => {
                    for (i, v) in data.iter_mut().enumerate() {
                        *v = f(i / (h * w), *v);
                    }
                    Tensor::Map { c, h, w, data }
                }
                Tensor::Vector(mut data) => {
                    for (i, v) in data.iter_mut().enumerate() {
                        *v = f(i, *v);
                    }
                    Tensor::Vector(data)
                }
            })
        }
        FloatLayer::PRelu { slopes } => {
            let c = t.channels();
            if slopes.len() != 1 {
                per_channel(index, "PReLU slopes", slopes, c)?;
            }
            let per = t.values().len() / c.max(1);
            let slope = |i: usize| {
                if slopes.len() == 1 {
                    slopes[0]
                } else {
                    slopes[i / per]
                }
            };
            Ok(match t {
                Tensor::Map { c, h, w, mut data } => {
                    for (i, v) in data.iter_mut().enumerate() {
                        if *v < 0.0 {
                            *v *= slope(i);
                        }
                    }
                    Tensor::Map { c, h, w, data }
                }
                Tensor::Vector(mut data) => {
                    for (i, v) in data.iter_mut().enumerate() {
                        if *v < 0.0 {
                            *v *= slope(i);
                        }
                    }
                    Tensor::Vector(data)
                }
            })
        }
        FloatLayer::Conv2d {
            cin,
            cout,
            k,
            pad,
            weight,
            bias,
        } => {
            let Tensor::Map { c, h, w, data } = t else {
                return Err(ExportError::shape(index, "Conv2d after Flatten"));
            };
            if c != *cin {
                return Err(ExportError::shape(
                    index,
                    format!("Conv2d expects {cin} channels, gets {c}"),
                ));
            }
            if *k == 0 || h + 2 * pad < *k || w + 2 * pad < *k {
                return Err(ExportError::shape(
                    index,
                    "kernel larger than the padded input",
                ));
            }
            if weight.len() != cout * cin * k * k || bias.len() != *cout {
                return Err(ExportError::shape(index, "Conv2d weight/bias length"));
            }
            let (data, oh, ow) = conv_chw(&data, (c, h, w), *cout, *k, *pad, weight, bias);
            Ok(Tensor::Map {
                c: *cout,
                h: oh,
                w: ow,
                data,
            })
        }
        FloatLayer::MaxPool2 => {
            let Tensor::Map { c, h, w, data } = t else {
                return Err(ExportError::shape(index, "MaxPool2 after Flatten"));
            };
            if h < 2 || w < 2 {
                return Err(ExportError::shape(
                    index,
                    "MaxPool2 on a map smaller than 2x2",
                ));
            }
            Ok(Tensor::Map {
                c,
                h: h / 2,
                w: w / 2,
                data: maxpool_chw(&data, c, h, w),
            })
        }
        FloatLayer::Flatten => Ok(match t {
            Tensor::Map { data, .. } => Tensor::Vector(data),
            v => v,
        }),
        FloatLayer::Linear {
            inp,
            out,
            weight,
            bias,
        } => {
            let Tensor::Vector(x) = t else {
                return Err(ExportError::shape(
                    index,
                    "Linear on a map (Flatten missing)",
                ));
            };
            if x.len() != *inp {
                return Err(ExportError::shape(
                    index,
                    format!("Linear expects {inp} inputs, gets {}", x.len()),
                ));
            }
            if weight.len() != inp * out || bias.len() != *out {
                return Err(ExportError::shape(index, "Linear weight/bias length"));
            }
            Ok(Tensor::Vector(linear(&x, *out, weight, bias)))
        }
    }
}

/// Runs `layers` on one image and returns the resulting tensor (no head).
pub fn forward_layers(
    model: &FloatModel,
    layers: &[FloatLayer],
    image: &[u8],
) -> Result<Tensor, ExportError> {
    let mut t = input_tensor(model, image)?;
    for (i, l) in layers.iter().enumerate() {
        t = apply_layer(i, l, t)?;
    }
    Ok(t)
}

/// The float forward pass: features and head logits of one image (`input_hw^2` pixels).
pub fn float_forward(model: &FloatModel, image: &[u8]) -> Result<FloatOutput, ExportError> {
    let t = forward_layers(model, &model.layers, image)?;
    let head_index = model.layers.len();
    let Tensor::Vector(features) = t else {
        return Err(ExportError::shape(
            head_index,
            "the network does not end in a vector",
        ));
    };
    if features.len() != model.features || model.head.len() != model.features * model.classes {
        return Err(ExportError::shape(head_index, "feature count or head size"));
    }
    let logits = head_logits(&features, model.classes, &model.head);
    Ok(FloatOutput { features, logits })
}

/// The head logits of one image under the float model.
pub fn float_logits(model: &FloatModel, image: &[u8]) -> Result<Vec<f32>, ExportError> {
    Ok(float_forward(model, image)?.logits)
}

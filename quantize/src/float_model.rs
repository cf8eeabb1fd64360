//! The trainer-independent description of a trained network, in eval mode, with PyTorch
//! semantics. The trainer converts its network to a [`FloatModel`]; everything in this crate
//! (folding, calibration, quantization, export) starts from it.

use serde::{Deserialize, Serialize};

/// Input normalisation applied to raw pixels before the first layer:
/// `x = (pixel / 255 - mean) / std`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Mean subtracted after scaling pixels to [0, 1] (MNIST: 0.1307).
    pub mean: f32,
    /// Standard deviation divided by (MNIST: 0.3081).
    pub std: f32,
}

/// One layer of the feature extractor, in eval mode.
///
/// Tensors are laid out as PyTorch lays them out, row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FloatLayer {
    /// BatchNorm (2-d over channels, or 1-d over features) with running statistics:
    /// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, per channel / feature.
    BatchNorm {
        /// Per-channel scale (PyTorch `weight`).
        gamma: Vec<f32>,
        /// Per-channel shift (PyTorch `bias`).
        beta: Vec<f32>,
        /// Running mean.
        mean: Vec<f32>,
        /// Running (unbiased) variance.
        var: Vec<f32>,
        /// Epsilon added to the variance (1e-5).
        eps: f32,
    },
    /// 2-d convolution, stride 1, zero padding `pad` on every side, with bias.
    Conv2d {
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Square kernel size.
        k: usize,
        /// Zero padding on each border.
        pad: usize,
        /// Weights `[cout][cin][k][k]`.
        weight: Vec<f32>,
        /// Bias `[cout]`.
        bias: Vec<f32>,
    },
    /// PReLU: `y = x` for `x >= 0`, `y = a * x` otherwise; one shared slope (`slopes.len() == 1`)
    /// or one per channel / feature.
    PRelu {
        /// Slopes: length 1 (shared) or the number of channels.
        slopes: Vec<f32>,
    },
    /// 2x2 max pooling with stride 2 (odd sizes are floored, as PyTorch does).
    MaxPool2,
    /// Flattens `[c][h][w]` into a feature vector in that order (PyTorch `view(n, -1)`).
    Flatten,
    /// Fully connected layer `y = W x + b`.
    Linear {
        /// Input features.
        inp: usize,
        /// Output features.
        out: usize,
        /// Weights `[out][inp]`.
        weight: Vec<f32>,
        /// Bias `[out]`.
        bias: Vec<f32>,
    },
}

/// A trained network: normalisation, feature layers and the L-Softmax head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloatModel {
    /// Input image height and width (28 for MNIST).
    pub input_hw: usize,
    /// Input normalisation.
    pub normalize: Normalize,
    /// Feature layers, applied in order to a `[1][28][28]` image.
    pub layers: Vec<FloatLayer>,
    /// Feature dimension fed to the head.
    pub features: usize,
    /// Number of classes.
    pub classes: usize,
    /// Head weights `[features][classes]` (the seed's `lsoftmax_linear.weight` layout):
    /// logit_j = sum_i x_i * head[i * classes + j].
    pub head: Vec<f32>,
    /// The margin m the head was trained with (inference ignores it; recorded for provenance).
    pub margin: u32,
}

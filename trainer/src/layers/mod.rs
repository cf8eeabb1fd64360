//! The layers of the feature extractor, each with its forward, backward and gradient test.

pub mod batchnorm;
pub mod conv;
pub mod linear;
pub mod maxpool;
pub mod prelu;

pub use batchnorm::BatchNorm;
pub use conv::Conv2d;
pub use linear::{Flatten, Linear};
pub use maxpool::MaxPool2;
pub use prelu::PRelu;

use crate::tensor::Tensor;

/// Any layer of a sequential network.
#[derive(Clone, Debug)]
pub enum Layer {
    /// Convolution.
    Conv(Conv2d),
    /// PReLU.
    PRelu(PRelu),
    /// BatchNorm (2-d or 1-d).
    BatchNorm(BatchNorm),
    /// 2x2 max pooling.
    MaxPool(MaxPool2),
    /// Flatten to features.
    Flatten(Flatten),
    /// Fully connected.
    Linear(Linear),
}

/// A parameter tensor with its gradient, as the optimizer sees it.
pub struct Param<'a> {
    /// Values, updated in place.
    pub value: &'a mut [f32],
    /// Gradient from the last backward pass.
    pub grad: &'a [f32],
}

impl Layer {
    /// Runs the layer on `x`; the result is in [`out`](Self::out).
    pub fn forward(&mut self, x: &Tensor, train: bool) {
        match self {
            Layer::Conv(l) => {
                l.forward(x);
            }
            Layer::PRelu(l) => {
                l.forward(x);
            }
            Layer::BatchNorm(l) => {
                l.forward(x, train);
            }
            Layer::MaxPool(l) => {
                l.forward(x);
            }
            Layer::Flatten(l) => {
                l.forward(x);
            }
            Layer::Linear(l) => {
                l.forward(x);
            }
        }
    }

    /// Back-propagates `dy` given the forward input `x`; parameter gradients are set, and the
    /// input gradient (when `need_dx`) is in [`dx`](Self::dx).
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor, need_dx: bool) {
        match self {
            Layer::Conv(l) => l.backward(x, dy, need_dx),
            Layer::PRelu(l) => l.backward(x, dy, need_dx),
            Layer::BatchNorm(l) => l.backward(x, dy, need_dx),
            Layer::MaxPool(l) => l.backward(x, dy),
            Layer::Flatten(l) => l.backward(x, dy),
            Layer::Linear(l) => l.backward(x, dy, need_dx),
        }
    }

    /// Output of the last forward pass.
    pub fn out(&self) -> &Tensor {
        match self {
            Layer::Conv(l) => &l.out,
            Layer::PRelu(l) => &l.out,
            Layer::BatchNorm(l) => &l.out,
            Layer::MaxPool(l) => &l.out,
            Layer::Flatten(l) => &l.out,
            Layer::Linear(l) => &l.out,
        }
    }

    /// Input gradient of the last backward pass.
    pub fn dx(&self) -> &Tensor {
        match self {
            Layer::Conv(l) => &l.dx,
            Layer::PRelu(l) => &l.dx,
            Layer::BatchNorm(l) => &l.dx,
            Layer::MaxPool(l) => &l.dx,
            Layer::Flatten(l) => &l.dx,
            Layer::Linear(l) => &l.dx,
        }
    }

    /// Trainable parameters with their gradients, in a fixed order.
    pub fn params(&mut self) -> Vec<Param<'_>> {
        match self {
            Layer::Conv(l) => vec![
                Param {
                    value: &mut l.weight,
                    grad: &l.dweight,
                },
                Param {
                    value: &mut l.bias,
                    grad: &l.dbias,
                },
            ],
            Layer::PRelu(l) => vec![Param {
                value: &mut l.slopes,
                grad: &l.dslopes,
            }],
            Layer::BatchNorm(l) => vec![
                Param {
                    value: &mut l.gamma,
                    grad: &l.dgamma,
                },
                Param {
                    value: &mut l.beta,
                    grad: &l.dbeta,
                },
            ],
            Layer::Linear(l) => vec![
                Param {
                    value: &mut l.weight,
                    grad: &l.dweight,
                },
                Param {
                    value: &mut l.bias,
                    grad: &l.dbias,
                },
            ],
            Layer::MaxPool(_) | Layer::Flatten(_) => Vec::new(),
        }
    }

    /// Named state tensors (parameters and running statistics), PyTorch-style names.
    pub fn state(&self) -> Vec<(&'static str, &Vec<f32>)> {
        match self {
            Layer::Conv(l) => vec![("weight", &l.weight), ("bias", &l.bias)],
            Layer::PRelu(l) => vec![("weight", &l.slopes)],
            Layer::BatchNorm(l) => vec![
                ("weight", &l.gamma),
                ("bias", &l.beta),
                ("running_mean", &l.running_mean),
                ("running_var", &l.running_var),
            ],
            Layer::Linear(l) => vec![("weight", &l.weight), ("bias", &l.bias)],
            Layer::MaxPool(_) | Layer::Flatten(_) => Vec::new(),
        }
    }

    /// Mutable access to the same tensors as [`state`](Self::state), in the same order.
    pub fn state_mut(&mut self) -> Vec<&mut Vec<f32>> {
        match self {
            Layer::Conv(l) => vec![&mut l.weight, &mut l.bias],
            Layer::PRelu(l) => vec![&mut l.slopes],
            Layer::BatchNorm(l) => vec![
                &mut l.gamma,
                &mut l.beta,
                &mut l.running_mean,
                &mut l.running_var,
            ],
            Layer::Linear(l) => vec![&mut l.weight, &mut l.bias],
            Layer::MaxPool(_) | Layer::Flatten(_) => Vec::new(),
        }
    }
}

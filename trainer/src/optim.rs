//! SGD with momentum and weight decay, exactly as `torch.optim.SGD` (dampening 0, no Nesterov),
//! and the step learning-rate schedule (`MultiStepLR`).

use serde::{Deserialize, Serialize};

use crate::layers::Param;

/// SGD hyper-parameters and momentum buffers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    /// Momentum factor.
    pub momentum: f32,
    /// L2 weight decay added to every gradient (`g + wd * w`), all parameters included, as
    /// `torch.optim.SGD(model.parameters(), weight_decay=wd)` does.
    pub weight_decay: f32,
    /// One momentum buffer per parameter tensor (empty until the first step).
    pub buffers: Vec<Vec<f32>>,
}

impl Sgd {
    /// A fresh optimizer.
    pub fn new(momentum: f32, weight_decay: f32) -> Self {
        Self {
            momentum,
            weight_decay,
            buffers: Vec::new(),
        }
    }

    /// One update with learning rate `lr`: `b = momentum * b + (g + wd * w)` (b = g + wd * w on
    /// the first step), then `w -= lr * b`.
    pub fn step(&mut self, params: Vec<Param<'_>>, lr: f32) {
        let first = self.buffers.is_empty();
        if first {
            self.buffers = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
        }
        assert_eq!(
            self.buffers.len(),
            params.len(),
            "optimizer state does not match the network"
        );
        for (p, buf) in params.into_iter().zip(&mut self.buffers) {
            for ((w, &g), b) in p.value.iter_mut().zip(p.grad).zip(buf.iter_mut()) {
                let d = g + self.weight_decay * *w;
                *b = if first { d } else { self.momentum * *b + d };
                *w -= lr * *b;
            }
        }
    }
}

/// Learning rate at `epoch` (0-based) for a base rate multiplied by `gamma` at each milestone
/// epoch reached.
pub fn step_lr(base: f32, gamma: f32, milestones: &[u32], epoch: u32) -> f32 {
    let passed = milestones.iter().filter(|&&m| epoch >= m).count();
    base * gamma.powi(passed as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_torch_sgd_by_hand() {
        let mut w = vec![1.0f32, -2.0];
        let g = vec![0.5f32, 0.25];
        let mut opt = Sgd::new(0.9, 0.1);
        opt.step(
            vec![Param {
                value: &mut w,
                grad: &g,
            }],
            0.1,
        );
        // b = g + 0.1 w = [0.6, 0.05]; w = [0.94, -2.005]
        assert!((w[0] - 0.94).abs() < 1e-6 && (w[1] + 2.005).abs() < 1e-6);
        opt.step(
            vec![Param {
                value: &mut w,
                grad: &g,
            }],
            0.1,
        );
        // b = 0.9 [0.6, 0.05] + [0.5 + 0.094, 0.25 - 0.2005] = [1.134, 0.0945]
        assert!((w[0] - (0.94 - 0.1134)).abs() < 1e-6);
        assert!((w[1] - (-2.005 - 0.00945)).abs() < 1e-6);
    }

    #[test]
    fn step_schedule() {
        assert_eq!(step_lr(0.1, 0.1, &[50, 65], 0), 0.1);
        assert!((step_lr(0.1, 0.1, &[50, 65], 50) - 0.01).abs() < 1e-9);
        assert!((step_lr(0.1, 0.1, &[50, 65], 99) - 0.001).abs() < 1e-9);
    }
}

//! Batch normalisation over channels (2-d) or features (1-d), as PyTorch defines it: batch
//! statistics (biased variance) in training, running statistics in evaluation, running averages
//! updated with momentum 0.1 using the unbiased batch variance, eps = 1e-5.
//!
//! In the channel-major layout each channel is one contiguous row of `n * h * w` values, so the
//! 2-d and 1-d cases are the same code.

use rayon::prelude::*;

use crate::reduce;
use crate::tensor::Tensor;

/// PyTorch's default momentum for running statistics.
pub const MOMENTUM: f32 = 0.1;
/// PyTorch's default epsilon.
pub const EPS: f32 = 1e-5;

/// A batch-normalisation layer.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale (PyTorch `weight`), initialised to 1.
    pub gamma: Vec<f32>,
    /// Shift (PyTorch `bias`), initialised to 0.
    pub beta: Vec<f32>,
    /// Running mean.
    pub running_mean: Vec<f32>,
    /// Running unbiased variance.
    pub running_var: Vec<f32>,
    /// Gradient with respect to `gamma`.
    pub dgamma: Vec<f32>,
    /// Gradient with respect to `beta`.
    pub dbeta: Vec<f32>,
    /// Output of the last forward pass.
    pub out: Tensor,
    /// Input gradient from the last backward pass.
    pub dx: Tensor,
    /// Weight of the newest batch in the running statistics ([`MOMENTUM`] unless changed, e.g.
    /// by [`Network::recompute_bn`](crate::network::Network::recompute_bn)).
    pub momentum: f32,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl BatchNorm {
    /// A layer over `channels` channels with PyTorch's initial state.
    pub fn new(channels: usize) -> Self {
        Self {
            gamma: vec![1.0; channels],
            beta: vec![0.0; channels],
            running_mean: vec![0.0; channels],
            running_var: vec![1.0; channels],
            dgamma: vec![0.0; channels],
            dbeta: vec![0.0; channels],
            out: Tensor::default(),
            dx: Tensor::default(),
            momentum: MOMENTUM,
            mean: vec![0.0; channels],
            inv_std: vec![1.0; channels],
        }
    }

    /// Normalises `x`; in training mode with batch statistics (and updates the running ones),
    /// otherwise with the running statistics.
    pub fn forward(&mut self, x: &Tensor, train: bool) -> &Tensor {
        assert_eq!(x.c, self.gamma.len(), "BatchNorm channel count");
        let row = x.row();
        if train {
            assert!(
                row > 1,
                "BatchNorm in training needs more than one value per channel"
            );
            let stats: Vec<(f64, f64)> = x
                .data
                .par_chunks(row)
                .map(|r| {
                    let mean = reduce::sum(r) / row as f64;
                    let var = reduce::sum_map(r, |v| (v as f64 - mean).powi(2)) / row as f64;
                    (mean, var)
                })
                .collect();
            let momentum = self.momentum;
            for (c, &(mean, var)) in stats.iter().enumerate() {
                self.mean[c] = mean as f32;
                self.inv_std[c] = (1.0 / (var + EPS as f64).sqrt()) as f32;
                let unbiased = var * row as f64 / (row - 1) as f64;
                self.running_mean[c] =
                    (1.0 - momentum) * self.running_mean[c] + momentum * mean as f32;
                self.running_var[c] =
                    (1.0 - momentum) * self.running_var[c] + momentum * unbiased as f32;
            }
        } else {
            for c in 0..x.c {
                self.mean[c] = self.running_mean[c];
                self.inv_std[c] = 1.0 / (self.running_var[c] + EPS).sqrt();
            }
        }
        self.out.reset(x.c, x.n, x.h, x.w);
        let (mean, inv_std, gamma, beta) = (&self.mean, &self.inv_std, &self.gamma, &self.beta);
        self.out
            .data
            .par_chunks_mut(row)
            .zip(x.data.par_chunks(row))
            .enumerate()
            .for_each(|(c, (y, x))| {
                let scale = gamma[c] * inv_std[c];
                let shift = beta[c] - mean[c] * scale;
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = x * scale + shift;
                }
            });
        &self.out
    }

    /// Backward pass of training-mode normalisation: sets `dgamma`, `dbeta` and `dx`.
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor, need_dx: bool) {
        assert_eq!(x.shape(), dy.shape(), "BatchNorm gradient shape");
        let row = x.row();
        let (mean, inv_std) = (&self.mean, &self.inv_std);
        let sums: Vec<(f64, f64)> = x
            .data
            .par_chunks(row)
            .zip(dy.data.par_chunks(row))
            .enumerate()
            .map(|(c, (x, dy))| {
                let (m, s) = (mean[c], inv_std[c]);
                let dbeta = reduce::sum(dy);
                let dgamma = reduce::sum_zip(x, dy, |x, g| (g * (x - m) * s) as f64);
                (dgamma, dbeta)
            })
            .collect();
        for (c, &(dg, db)) in sums.iter().enumerate() {
            self.dgamma[c] = dg as f32;
            self.dbeta[c] = db as f32;
        }
        if need_dx {
            self.dx.reset(x.c, x.n, x.h, x.w);
            let gamma = &self.gamma;
            let nf = row as f32;
            self.dx
                .data
                .par_chunks_mut(row)
                .zip(x.data.par_chunks(row).zip(dy.data.par_chunks(row)))
                .enumerate()
                .for_each(|(c, (dx, (x, dy)))| {
                    let (m, s) = (mean[c], inv_std[c]);
                    let (dg, db) = (sums[c].0 as f32, sums[c].1 as f32);
                    let k = gamma[c] * s / nf;
                    for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                        let xhat = (x - m) * s;
                        *d = k * (nf * g - db - xhat * dg);
                    }
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;

    fn input(seed: u64) -> Tensor {
        Tensor {
            c: 3,
            n: 4,
            h: 2,
            w: 3,
            data: gradcheck::random(72, seed)
                .iter()
                .map(|v| 2.0 * v + 0.5)
                .collect(),
        }
    }

    #[test]
    fn training_normalises_and_updates_running_stats_like_pytorch() {
        let x = input(1);
        let mut bn = BatchNorm::new(3);
        let y = bn.forward(&x, true).clone();
        for c in 0..3 {
            let r = &y.data[c * 24..(c + 1) * 24];
            let mean: f32 = r.iter().sum::<f32>() / 24.0;
            let var: f32 = r.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 24.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
            let xr = &x.data[c * 24..(c + 1) * 24];
            let xm: f32 = xr.iter().sum::<f32>() / 24.0;
            let xv: f32 = xr.iter().map(|v| (v - xm).powi(2)).sum::<f32>() / 23.0;
            assert!((bn.running_mean[c] - 0.1 * xm).abs() < 1e-6);
            assert!((bn.running_var[c] - (0.9 + 0.1 * xv)).abs() < 1e-5);
        }
        // Evaluation uses the running statistics.
        let e = bn.forward(&x, false).clone();
        let want = (x.data[0] - bn.running_mean[0]) / (bn.running_var[0] + EPS).sqrt();
        assert!((e.data[0] - want).abs() < 1e-6);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut x = input(2);
        let mut bn = BatchNorm::new(3);
        bn.gamma = vec![0.7, -1.3, 2.0];
        bn.beta = vec![0.1, 0.2, -0.3];
        let r = gradcheck::random(72, 3);
        bn.forward(&x, true);
        let dy = Tensor {
            data: r.clone(),
            ..x.clone()
        };
        bn.backward(&x, &dy, true);
        let (dx, dg, db) = (bn.dx.data.clone(), bn.dgamma.clone(), bn.dbeta.clone());
        let mut probe = bn.clone();
        let shape = x.clone();
        gradcheck::check(
            "bn dx",
            &mut x.data,
            &dx,
            |xs| {
                let t = Tensor {
                    data: xs.to_vec(),
                    ..shape.clone()
                };
                gradcheck::dot(&r, &probe.forward(&t, true).data)
            },
            1e-2,
            2e-3,
            72,
        );
        let mut g = bn.gamma.clone();
        gradcheck::check(
            "bn dgamma",
            &mut g,
            &dg,
            |g| {
                probe.gamma.copy_from_slice(g);
                gradcheck::dot(&r, &probe.forward(&x, true).data)
            },
            1e-2,
            2e-3,
            3,
        );
        probe.gamma.copy_from_slice(&bn.gamma);
        let mut b = bn.beta.clone();
        gradcheck::check(
            "bn dbeta",
            &mut b,
            &db,
            |b| {
                probe.beta.copy_from_slice(b);
                gradcheck::dot(&r, &probe.forward(&x, true).data)
            },
            1e-2,
            2e-3,
            3,
        );
    }
}

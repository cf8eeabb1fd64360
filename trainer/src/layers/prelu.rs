//! PReLU: `y = x` for `x > 0`, `y = a x` otherwise, with one slope shared by all channels (as
//! PyTorch's `nn.PReLU()`, the seed's choice) or one slope per channel.

use rayon::prelude::*;

use crate::reduce;
use crate::tensor::Tensor;

/// A PReLU layer.
#[derive(Clone, Debug)]
pub struct PRelu {
    /// Slopes: one (shared) or one per channel.
    pub slopes: Vec<f32>,
    /// Gradient with respect to the slopes.
    pub dslopes: Vec<f32>,
    /// Output of the last forward pass.
    pub out: Tensor,
    /// Input gradient from the last backward pass.
    pub dx: Tensor,
}

impl PRelu {
    /// PReLU with `count` slopes (1 = shared), initialised to 0.25 as PyTorch does.
    pub fn new(count: usize) -> Self {
        Self {
            slopes: vec![0.25; count],
            dslopes: vec![0.0; count],
            out: Tensor::default(),
            dx: Tensor::default(),
        }
    }

    fn slope(&self, c: usize) -> f32 {
        if self.slopes.len() == 1 {
            self.slopes[0]
        } else {
            self.slopes[c]
        }
    }

    /// Applies the activation.
    pub fn forward(&mut self, x: &Tensor) -> &Tensor {
        assert!(
            self.slopes.len() == 1 || self.slopes.len() == x.c,
            "PReLU slope count"
        );
        self.out.reset(x.c, x.n, x.h, x.w);
        let row = x.row();
        let slopes: Vec<f32> = (0..x.c).map(|c| self.slope(c)).collect();
        self.out
            .data
            .par_chunks_mut(row)
            .zip(x.data.par_chunks(row))
            .zip(slopes.par_iter())
            .for_each(|((y, x), &a)| {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = if x > 0.0 { x } else { a * x };
                }
            });
        &self.out
    }

    /// Sets `dslopes` and `dx` from the forward input and `dy`.
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor, need_dx: bool) {
        assert_eq!(x.shape(), dy.shape(), "PReLU gradient shape");
        let row = x.row();
        let slope_term = |x: f32, g: f32| if x <= 0.0 { (x * g) as f64 } else { 0.0 };
        let per_channel: Vec<f64> = if need_dx {
            // The input gradient and the slope gradient's sums in one pass over x and dy.
            let slopes: Vec<f32> = (0..x.c).map(|c| self.slope(c)).collect();
            self.dx.reset(x.c, x.n, x.h, x.w);
            self.dx
                .data
                .par_chunks_mut(row)
                .zip(x.data.par_chunks(row).zip(dy.data.par_chunks(row)))
                .zip(slopes.par_iter())
                .map(|((dx, (x, dy)), &a)| {
                    reduce::sum_zip_write(x, dy, dx, |x, g| {
                        (if x > 0.0 { g } else { a * g }, slope_term(x, g))
                    })
                })
                .collect()
        } else {
            x.data
                .par_chunks(row)
                .zip(dy.data.par_chunks(row))
                .map(|(x, dy)| reduce::sum_zip(x, dy, slope_term))
                .collect()
        };
        if self.slopes.len() == 1 {
            self.dslopes[0] = per_channel.iter().sum::<f64>() as f32;
        } else {
            for (d, s) in self.dslopes.iter_mut().zip(&per_channel) {
                *d = *s as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;

    #[test]
    fn gradients_match_finite_differences() {
        for count in [1, 3] {
            let mut layer = PRelu::new(count);
            layer.slopes = (0..count).map(|i| 0.1 + 0.2 * i as f32).collect();
            // Keep inputs away from the kink at 0, where the finite difference is meaningless.
            let mut x = Tensor {
                c: 3,
                n: 2,
                h: 3,
                w: 3,
                data: gradcheck::random(54, 1)
                    .iter()
                    .map(|v| if v.abs() < 0.05 { 0.3 } else { *v })
                    .collect(),
            };
            let r = gradcheck::random(54, 2);
            layer.forward(&x);
            let dy = Tensor {
                data: r.clone(),
                ..x.clone()
            };
            layer.backward(&x, &dy, true);
            let (dx, ds) = (layer.dx.data.clone(), layer.dslopes.clone());
            let mut probe = layer.clone();
            let shape = x.clone();
            gradcheck::check(
                "prelu dx",
                &mut x.data,
                &dx,
                |xs| {
                    let t = Tensor {
                        data: xs.to_vec(),
                        ..shape.clone()
                    };
                    gradcheck::dot(&r, &probe.forward(&t).data)
                },
                1e-3,
                1e-3,
                54,
            );
            let mut s = layer.slopes.clone();
            gradcheck::check(
                "prelu slopes",
                &mut s,
                &ds,
                |s| {
                    probe.slopes.copy_from_slice(s);
                    gradcheck::dot(&r, &probe.forward(&x).data)
                },
                1e-3,
                1e-3,
                3,
            );
        }
    }
}

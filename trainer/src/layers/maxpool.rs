//! 2x2 max pooling with stride 2 (odd sizes floored, as PyTorch does). Ties go to the first
//! maximum in row-major window order, and the gradient flows to that element only.

use rayon::prelude::*;

use crate::tensor::Tensor;

/// A 2x2 max-pooling layer.
#[derive(Clone, Debug, Default)]
pub struct MaxPool2 {
    /// Output of the last forward pass.
    pub out: Tensor,
    /// For each output element, the index (0..4) of the winning input in its window.
    arg: Vec<u8>,
    /// Input gradient from the last backward pass.
    pub dx: Tensor,
}

impl MaxPool2 {
    /// A new pooling layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pools each `h x w` plane down to `h/2 x w/2`.
    pub fn forward(&mut self, x: &Tensor) -> &Tensor {
        let (h, w) = (x.h, x.w);
        let (ho, wo) = (h / 2, w / 2);
        self.out.reset(x.c, x.n, ho, wo);
        self.arg.resize(x.c * x.n * ho * wo, 0);
        self.out
            .data
            .par_chunks_mut(ho * wo)
            .zip(self.arg.par_chunks_mut(ho * wo))
            .zip(x.data.par_chunks(h * w))
            .for_each(|((y, arg), x)| {
                for oy in 0..ho {
                    let (top, bottom) = (&x[2 * oy * w..][..w], &x[(2 * oy + 1) * w..][..w]);
                    let outs = y[oy * wo..][..wo].iter_mut().zip(&mut arg[oy * wo..][..wo]);
                    for (ox, (y, arg)) in outs.enumerate() {
                        // Branch-free (the winner is data-dependent, so branches mispredict):
                        // a later candidate wins only if strictly greater.
                        let cand = [
                            top[2 * ox],
                            top[2 * ox + 1],
                            bottom[2 * ox],
                            bottom[2 * ox + 1],
                        ];
                        let (mut best, mut at) = (cand[0], 0u8);
                        for (j, &v) in cand.iter().enumerate().skip(1) {
                            let wins = v > best;
                            best = if wins { v } else { best };
                            at = if wins { j as u8 } else { at };
                        }
                        *y = best;
                        *arg = at;
                    }
                }
            });
        &self.out
    }

    /// Routes `dy` back to the winning inputs; `x` is the forward input (for its shape).
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor) {
        let (h, w) = (x.h, x.w);
        let (ho, wo) = (h / 2, w / 2);
        assert_eq!(dy.shape(), [x.c, x.n, ho, wo], "max-pool gradient shape");
        self.dx.reset(x.c, x.n, h, w);
        self.dx
            .data
            .par_chunks_mut(h * w)
            .zip(self.arg.par_chunks(ho * wo))
            .zip(dy.data.par_chunks(ho * wo))
            .for_each(|((dx, arg), dy)| {
                dx.fill(0.0);
                for oy in 0..ho {
                    for ox in 0..wo {
                        let a = arg[oy * wo + ox] as usize;
                        let i = (2 * oy + a / 2) * w + 2 * ox + a % 2;
                        dx[i] = dy[oy * wo + ox];
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;

    #[test]
    fn forward_picks_window_maxima_and_floors_odd_sizes() {
        let x = Tensor {
            c: 1,
            n: 1,
            h: 3,
            w: 5,
            data: (0..15).map(|v| ((v * 7) % 11) as f32).collect(),
        };
        let mut p = MaxPool2::new();
        let y = p.forward(&x).clone();
        assert_eq!(y.shape(), [1, 1, 1, 2]);
        let v = |r: usize, c: usize| x.data[r * 5 + c];
        assert_eq!(y.data[0], v(0, 0).max(v(0, 1)).max(v(1, 0)).max(v(1, 1)));
        assert_eq!(y.data[1], v(0, 2).max(v(0, 3)).max(v(1, 2)).max(v(1, 3)));
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Distinct values so that small perturbations never change the winners.
        let n = 2 * 3 * 4 * 6;
        let mut vals: Vec<f32> = (0..n).map(|i| i as f32 * 0.1).collect();
        crate::rng::Rng::new(4).shuffle(&mut vals);
        let mut x = Tensor {
            c: 2,
            n: 3,
            h: 4,
            w: 6,
            data: vals,
        };
        let mut p = MaxPool2::new();
        p.forward(&x);
        let r = gradcheck::random(2 * 3 * 2 * 3, 5);
        let dy = Tensor {
            c: 2,
            n: 3,
            h: 2,
            w: 3,
            data: r.clone(),
        };
        p.backward(&x, &dy);
        let dx = p.dx.data.clone();
        let shape = x.clone();
        gradcheck::check(
            "maxpool dx",
            &mut x.data,
            &dx,
            |xs| {
                let t = Tensor {
                    data: xs.to_vec(),
                    ..shape.clone()
                };
                gradcheck::dot(&r, &p.forward(&t).data)
            },
            1e-3,
            1e-3,
            n,
        );
    }
}

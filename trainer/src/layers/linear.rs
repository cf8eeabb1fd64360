//! Fully connected layer `y = W x + b` on flat `[F, N]` tensors, and the flatten step that
//! produces them.

use rayon::prelude::*;

use crate::gemm::{gemm, Mat};
use crate::reduce;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A fully connected layer.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Input features.
    pub inp: usize,
    /// Output features.
    pub outp: usize,
    /// Weights `[out][in]` (PyTorch layout).
    pub weight: Vec<f32>,
    /// Bias `[out]`.
    pub bias: Vec<f32>,
    /// Gradient with respect to `weight`.
    pub dweight: Vec<f32>,
    /// Gradient with respect to `bias`.
    pub dbias: Vec<f32>,
    /// Output of the last forward pass, `[out, N, 1, 1]`.
    pub out: Tensor,
    /// Input gradient from the last backward pass.
    pub dx: Tensor,
}

impl Linear {
    /// A layer initialised as PyTorch does: uniform in `±1/sqrt(in)`.
    pub fn new(inp: usize, outp: usize, rng: &mut Rng) -> Self {
        let bound = 1.0 / (inp as f32).sqrt();
        Self {
            inp,
            outp,
            weight: (0..inp * outp)
                .map(|_| rng.uniform(-bound, bound))
                .collect(),
            bias: (0..outp).map(|_| rng.uniform(-bound, bound)).collect(),
            dweight: vec![0.0; inp * outp],
            dbias: vec![0.0; outp],
            out: Tensor::default(),
            dx: Tensor::default(),
        }
    }

    /// `out = W x + b` for a flat input `[in, N, 1, 1]`.
    pub fn forward(&mut self, x: &Tensor) -> &Tensor {
        assert_eq!(x.c * x.h * x.w, self.inp, "Linear input features");
        let n = x.n;
        self.out.reset(self.outp, n, 1, 1);
        for (row, &b) in self.out.data.chunks_mut(n).zip(&self.bias) {
            row.fill(b);
        }
        gemm(
            1.0,
            Mat::new(&self.weight, self.outp, self.inp),
            Mat::new(&x.data, self.inp, n),
            1.0,
            &mut self.out.data,
            n,
        );
        &self.out
    }

    /// Sets `dweight`, `dbias` and (when `need_dx`) `dx`.
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor, need_dx: bool) {
        let n = x.n;
        assert_eq!(dy.shape(), [self.outp, n, 1, 1], "Linear gradient shape");
        gemm(
            1.0,
            Mat::new(&dy.data, self.outp, n),
            Mat::new(&x.data, self.inp, n).t(),
            0.0,
            &mut self.dweight,
            self.inp,
        );
        self.dbias = dy
            .data
            .par_chunks(n)
            .map(|r| reduce::sum(r) as f32)
            .collect();
        if need_dx {
            self.dx.reset(self.inp, n, 1, 1);
            gemm(
                1.0,
                Mat::new(&self.weight, self.outp, self.inp).t(),
                Mat::new(&dy.data, self.outp, n),
                0.0,
                &mut self.dx.data,
                n,
            );
        }
    }
}

/// Flattens `[C, N, H, W]` into `[C*H*W, N, 1, 1]` with features ordered `(c, h, w)`, the order
/// PyTorch's `x.view(n, -1)` gives.
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    /// Output of the last forward pass.
    pub out: Tensor,
    /// Input gradient from the last backward pass.
    pub dx: Tensor,
}

impl Flatten {
    /// Permutes into feature-major order.
    pub fn forward(&mut self, x: &Tensor) -> &Tensor {
        let (c, n, plane) = (x.c, x.n, x.plane());
        self.out.reset(c * plane, n, 1, 1);
        self.out
            .data
            .par_chunks_mut(plane * n)
            .enumerate()
            .for_each(|(ch, dst)| {
                for img in 0..n {
                    let src = &x.data[(ch * n + img) * plane..][..plane];
                    for (p, &v) in src.iter().enumerate() {
                        dst[p * n + img] = v;
                    }
                }
            });
        &self.out
    }

    /// The inverse permutation of the gradient.
    pub fn backward(&mut self, x: &Tensor, dy: &Tensor) {
        let (c, n, plane) = (x.c, x.n, x.plane());
        self.dx.reset(c, n, x.h, x.w);
        self.dx
            .data
            .par_chunks_mut(plane * n)
            .enumerate()
            .for_each(|(ch, dst)| {
                let src = &dy.data[ch * plane * n..][..plane * n];
                for img in 0..n {
                    for p in 0..plane {
                        dst[img * plane + p] = src[p * n + img];
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
    fn linear_gradients_match_finite_differences() {
        let mut l = Linear::new(7, 5, &mut Rng::new(1));
        let mut x = Tensor {
            c: 7,
            n: 4,
            h: 1,
            w: 1,
            data: gradcheck::random(28, 2),
        };
        let r = gradcheck::random(20, 3);
        l.forward(&x);
        let dy = Tensor {
            c: 5,
            n: 4,
            h: 1,
            w: 1,
            data: r.clone(),
        };
        l.backward(&x, &dy, true);
        let (dx, dw, db) = (l.dx.data.clone(), l.dweight.clone(), l.dbias.clone());
        let mut probe = l.clone();
        let shape = x.clone();
        gradcheck::check(
            "linear dx",
            &mut x.data,
            &dx,
            |xs| {
                gradcheck::dot(
                    &r,
                    &probe
                        .forward(&Tensor {
                            data: xs.to_vec(),
                            ..shape.clone()
                        })
                        .data,
                )
            },
            1e-2,
            1e-3,
            28,
        );
        let mut w = l.weight.clone();
        gradcheck::check(
            "linear dw",
            &mut w,
            &dw,
            |w| {
                probe.weight.copy_from_slice(w);
                gradcheck::dot(&r, &probe.forward(&x).data)
            },
            1e-2,
            1e-3,
            35,
        );
        probe.weight.copy_from_slice(&l.weight);
        let mut b = l.bias.clone();
        gradcheck::check(
            "linear db",
            &mut b,
            &db,
            |b| {
                probe.bias.copy_from_slice(b);
                gradcheck::dot(&r, &probe.forward(&x).data)
            },
            1e-2,
            1e-3,
            5,
        );
    }

    #[test]
    fn flatten_orders_features_like_pytorch_and_inverts() {
        let x = Tensor {
            c: 2,
            n: 3,
            h: 2,
            w: 2,
            data: (0..24).map(|v| v as f32).collect(),
        };
        let mut f = Flatten::default();
        let y = f.forward(&x).clone();
        // Feature (c=1, h=0, w=1) of image 2 is x[1, 2, 0, 1].
        let feat = 4 + 1;
        assert_eq!(y.data[feat * 3 + 2], x.data[((3 + 2) * 2) * 2 + 1]);
        f.backward(&x, &y);
        assert_eq!(f.dx.data, x.data);
    }
}

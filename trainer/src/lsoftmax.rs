//! The L-Softmax head (Liu et al., ICML 2016), exactly as the paper and the seed define it.
//!
//! Logits are `W^T x` with `W` of shape `[features][classes]`. In training, the target class's
//! logit `p = W_y . x = |W_y| |x| cos(theta)` is replaced by
//!
//! ```text
//! f_y = |W_y| |x| psi(theta),  psi(theta) = (-1)^k cos(m theta) - 2k,  k = floor(m theta / pi)
//! logit_y = (f_y + lambda * p) / (1 + lambda)
//! ```
//!
//! with `cos(theta) = p / (|W_y| |x| + 1e-10)`, `cos(m theta)` from the binomial expansion
//! `sum_n (-1)^n C(m, 2n) cos^(m-2n) (1 - cos^2)^n`, and `k` from an `acos` whose argument is
//! clamped to `[-1 + 1e-7, 1 - 1e-7]` (the seed's numerical fix). `k` is piecewise constant, so
//! the gradient treats it as such; `psi` is continuously differentiable across the boundaries
//! between `k` values. Evaluation uses the plain logits: the decision rule is
//! `argmax_j W_j . x`, the margin being a training-time device only.
//!
//! Internally the head computes in `f64` and rounds its outputs to `f32`.

use crate::rng::Rng;

/// Denominator guard of the seed's `cos(theta)`.
pub const COS_DENOM_EPS: f64 = 1e-10;
/// Clamp margin of the seed's `acos` argument when computing `k`.
pub const ACOS_EPS: f64 = 1e-7;

/// Binomial coefficient `C(n, k)` as `f64`.
fn binom(n: u32, k: u32) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// `cos(m theta)` from `c = cos(theta)` by the binomial expansion, and its derivative with
/// respect to `c`.
pub fn cos_m_theta(m: u32, c: f64) -> (f64, f64) {
    let s2 = 1.0 - c * c;
    let mut value = 0.0;
    let mut deriv = 0.0;
    for n in 0..=m / 2 {
        let coef = if n % 2 == 0 { 1.0 } else { -1.0 } * binom(m, 2 * n);
        let p = m - 2 * n;
        value += coef * c.powi(p as i32) * s2.powi(n as i32);
        // d/dc [c^p s2^n] = p c^(p-1) s2^n - 2n c^(p+1) s2^(n-1)
        let mut d = 0.0;
        if p > 0 {
            d += p as f64 * c.powi(p as i32 - 1) * s2.powi(n as i32);
        }
        if n > 0 {
            d -= 2.0 * n as f64 * c.powi(p as i32 + 1) * s2.powi(n as i32 - 1);
        }
        deriv += coef * d;
    }
    (value, deriv)
}

/// `k = floor(m * acos(clamp(c, -1 + eps, 1 - eps)) / pi)`.
pub fn find_k(m: u32, c: f64) -> u32 {
    let c = c.clamp(-1.0 + ACOS_EPS, 1.0 - ACOS_EPS);
    (m as f64 * c.acos() / std::f64::consts::PI).floor() as u32
}

/// `psi(theta)` and `d psi / d cos(theta)` for a given `cos(theta)`.
pub fn psi(m: u32, c: f64) -> (f64, f64) {
    let k = find_k(m, c);
    let (t, dt) = cos_m_theta(m, c);
    let sign = if k.is_multiple_of(2) { 1.0 } else { -1.0 };
    (sign * t - 2.0 * k as f64, sign * dt)
}

/// What the backward pass needs about one sample's target logit.
#[derive(Clone, Copy, Debug, Default)]
struct TargetCache {
    /// Coefficient of `x` in `d f / d x`.
    ax: f64,
    /// Coefficient of `W_y` in `d f / d x`.
    bx: f64,
    /// Coefficient of `W_y` in `d f / d W_y`.
    aw: f64,
    /// Coefficient of `x` in `d f / d W_y`.
    bw: f64,
}

/// The L-Softmax linear head with its gradient.
#[derive(Clone, Debug)]
pub struct LSoftmax {
    /// Input features.
    pub inp: usize,
    /// Classes.
    pub classes: usize,
    /// Margin `m >= 1` (1 is plain softmax).
    pub margin: u32,
    /// Weights `[inp][classes]` (the seed's `lsoftmax_linear.weight` layout).
    pub weight: Vec<f32>,
    /// Gradient with respect to `weight`.
    pub dweight: Vec<f32>,
    /// Logits of the last forward pass, `[N][classes]`.
    pub logits: Vec<f32>,
    /// Input gradient `[inp, N]` from the last backward pass.
    pub dx: Vec<f32>,
    cache: Vec<TargetCache>,
    targets: Vec<u8>,
    lambda: f64,
}

impl LSoftmax {
    /// A head initialised like the seed: Kaiming-normal on `W^T` (std `sqrt(2 / inp)`).
    pub fn new(inp: usize, classes: usize, margin: u32, rng: &mut Rng) -> Self {
        assert!(margin >= 1, "the margin m must be at least 1");
        let std = (2.0 / inp as f32).sqrt();
        Self {
            inp,
            classes,
            margin,
            weight: (0..inp * classes).map(|_| std * rng.normal()).collect(),
            dweight: vec![0.0; inp * classes],
            logits: Vec::new(),
            dx: Vec::new(),
            cache: Vec::new(),
            targets: Vec::new(),
            lambda: 0.0,
        }
    }

    fn column(&self, j: usize) -> impl Iterator<Item = f64> + '_ {
        self.weight[j..]
            .iter()
            .step_by(self.classes)
            .map(|&v| v as f64)
    }

    /// Plain logits `W^T x` for flat features `x` of shape `[inp, N]`.
    pub fn forward_eval(&mut self, x: &[f32], n: usize) -> &[f32] {
        assert_eq!(x.len(), self.inp * n, "head input size");
        self.logits.clear();
        self.logits.resize(n * self.classes, 0.0);
        for i in 0..n {
            for j in 0..self.classes {
                let mut s = 0f64;
                for d in 0..self.inp {
                    s += x[d * n + i] as f64 * self.weight[d * self.classes + j] as f64;
                }
                self.logits[i * self.classes + j] = s as f32;
            }
        }
        &self.logits
    }

    /// Training logits: plain logits with each sample's target logit replaced by the
    /// large-margin one, blended with weight `lambda`.
    pub fn forward_train(&mut self, x: &[f32], n: usize, targets: &[u8], lambda: f64) -> &[f32] {
        assert_eq!(targets.len(), n, "one target per sample");
        self.forward_eval(x, n);
        self.targets = targets.to_vec();
        self.lambda = lambda;
        self.cache.clear();
        self.cache.resize(n, TargetCache::default());
        let m = self.margin;
        for i in 0..n {
            let y = targets[i] as usize;
            assert!(y < self.classes, "target {y} out of range");
            let xi: Vec<f64> = (0..self.inp).map(|d| x[d * n + i] as f64).collect();
            let a = self.column(y).map(|v| v * v).sum::<f64>().sqrt();
            let b = xi.iter().map(|v| v * v).sum::<f64>().sqrt();
            let p = self.column(y).zip(&xi).map(|(w, x)| w * x).sum::<f64>();
            let den = a * b + COS_DENOM_EPS;
            let c = p / den;
            let (ps, dps) = psi(m, c);
            let f = a * b * ps;
            self.logits[i * self.classes + y] = ((f + lambda * p) / (1.0 + lambda)) as f32;
            // d f = psi (b da + a db) + a b psi'(c) dc, dc = dp / den - p / den^2 (b da + a db),
            // with da = W_y . dW_y / a, db = x . dx / b, dp = W_y . dx + x . dW_y.
            let ab_dps = a * b * dps;
            let (a_s, b_s) = (a.max(f64::MIN_POSITIVE), b.max(f64::MIN_POSITIVE));
            let common = ps - ab_dps * p / (den * den);
            self.cache[i] = TargetCache {
                ax: common * a / b_s,
                bx: ab_dps / den,
                aw: common * b / a_s,
                bw: ab_dps / den,
            };
        }
        &self.logits
    }

    /// Given `dlogits` (`[N][classes]`) of the last `forward_train` with input `x` (`[inp, N]`),
    /// sets `dweight` and `dx`.
    pub fn backward(&mut self, x: &[f32], n: usize, dlogits: &[f32]) {
        assert_eq!(dlogits.len(), n * self.classes, "head gradient size");
        let (c, d_in) = (self.classes, self.inp);
        let mu = 1.0 / (1.0 + self.lambda);
        // Coefficients on x (for dW) and on W_j (for dx), per sample and class.
        let mut gx = vec![0f64; n * c];
        let mut gw = vec![0f64; n * c];
        let mut self_x = vec![0f64; n]; // coefficient of x_i in dx_i
        let mut self_w = vec![0f64; n]; // coefficient of W_y in dW_y from sample i
        for i in 0..n {
            let y = self.targets[i] as usize;
            for j in 0..c {
                let g = dlogits[i * c + j] as f64;
                if j == y {
                    let t = self.cache[i];
                    gx[i * c + j] = g * mu * (t.bw + self.lambda);
                    gw[i * c + j] = g * mu * (t.bx + self.lambda);
                    self_x[i] = g * mu * t.ax;
                    self_w[i] = g * mu * t.aw;
                } else {
                    gx[i * c + j] = g;
                    gw[i * c + j] = g;
                }
            }
        }
        let mut wy_coef = vec![0f64; c];
        for i in 0..n {
            wy_coef[self.targets[i] as usize] += self_w[i];
        }
        for d in 0..d_in {
            for j in 0..c {
                let mut s = wy_coef[j] * self.weight[d * c + j] as f64;
                for i in 0..n {
                    s += x[d * n + i] as f64 * gx[i * c + j];
                }
                self.dweight[d * c + j] = s as f32;
            }
        }
        self.dx.clear();
        self.dx.resize(d_in * n, 0.0);
        for d in 0..d_in {
            let wrow = &self.weight[d * c..(d + 1) * c];
            for i in 0..n {
                let mut s = self_x[i] * x[d * n + i] as f64;
                for j in 0..c {
                    s += wrow[j] as f64 * gw[i * c + j];
                }
                self.dx[d * n + i] = s as f32;
            }
        }
    }
}

/// Softmax cross-entropy averaged over the batch: returns the loss, the number of samples whose
/// largest logit is the target, and writes `dlogits = (softmax - onehot) / N`.
pub fn softmax_cross_entropy(
    logits: &[f32],
    classes: usize,
    targets: &[u8],
    dlogits: &mut Vec<f32>,
) -> (f64, usize) {
    let n = targets.len();
    assert_eq!(logits.len(), n * classes, "logits size");
    dlogits.clear();
    dlogits.resize(n * classes, 0.0);
    let mut loss = 0f64;
    let mut correct = 0;
    for i in 0..n {
        let row = &logits[i * classes..(i + 1) * classes];
        let y = targets[i] as usize;
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        loss += sum.ln() + max - row[y] as f64;
        if argmax(row) == y {
            correct += 1;
        }
        for j in 0..classes {
            let p = (row[j] as f64 - max).exp() / sum;
            dlogits[i * classes + j] = ((p - if j == y { 1.0 } else { 0.0 }) / n as f64) as f32;
        }
    }
    (loss / n as f64, correct)
}

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;

    #[test]
    fn binomial_expansion_is_cos_m_theta() {
        for m in 1..=6 {
            for i in 0..50 {
                let theta = i as f64 * std::f64::consts::PI / 49.0;
                let (v, d) = cos_m_theta(m, theta.cos());
                assert!(
                    (v - (m as f64 * theta).cos()).abs() < 1e-12,
                    "m={m} theta={theta}"
                );
                // d cos(m theta) / d cos(theta) = m sin(m theta) / sin(theta)
                if theta.sin() > 1e-3 {
                    let want = m as f64 * (m as f64 * theta).sin() / theta.sin();
                    assert!(
                        (d - want).abs() < 1e-8 * want.abs().max(1.0),
                        "m={m} theta={theta}: {d} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn psi_is_continuous_and_decreasing_across_k_boundaries() {
        for m in 1..=4 {
            let mut prev = f64::INFINITY;
            for i in 0..=2000 {
                let theta = i as f64 * std::f64::consts::PI / 2000.0;
                let (p, _) = psi(m, theta.cos());
                assert!(
                    p <= prev + 1e-9,
                    "m={m}: psi not decreasing at theta={theta}"
                );
                if i > 0 {
                    assert!(
                        (prev - p).abs() < 0.02 * m as f64,
                        "m={m}: jump at theta={theta}"
                    );
                }
                prev = p;
            }
            // At theta = 0, psi = 1; at theta = pi, psi = -(2m - 1).
            assert!((psi(m, 1.0).0 - 1.0).abs() < 1e-6);
            assert!((psi(m, -1.0).0 + (2 * m - 1) as f64).abs() < 1e-3);
        }
    }

    /// Loss = sum r .* logits for fixed random r, through forward_train.
    fn grad_check_head(m: u32, x: &mut [f32], w: &[f32], n: usize, targets: &[u8], lambda: f64) {
        let d = x.len() / n;
        let mut head = LSoftmax::new(d, 10, m, &mut Rng::new(1));
        head.weight.copy_from_slice(w);
        let r = gradcheck::random(n * 10, 77);
        head.forward_train(x, n, targets, lambda);
        head.backward(x, n, &r);
        let (dx, dw) = (head.dx.clone(), head.dweight.clone());
        let mut probe = head.clone();
        gradcheck::check(
            &format!("lsoftmax m={m} dx"),
            x,
            &dx,
            |xs| gradcheck::dot(&r, probe.forward_train(xs, n, targets, lambda)),
            1e-3,
            2e-3,
            64,
        );
        let xs = x.to_vec();
        let mut ws = w.to_vec();
        gradcheck::check(
            &format!("lsoftmax m={m} dW"),
            &mut ws,
            &dw,
            |ws| {
                probe.weight.copy_from_slice(ws);
                gradcheck::dot(&r, probe.forward_train(&xs, n, targets, lambda))
            },
            1e-3,
            2e-3,
            64,
        );
    }

    #[test]
    fn gradients_match_finite_differences_for_m_1_to_4() {
        let (d, n) = (6, 5);
        for m in 1..=4 {
            for (seed, lambda) in [(1u64, 0.0), (2, 0.5), (3, 10.0)] {
                let mut x = gradcheck::random(d * n, seed);
                let w = gradcheck::random(d * 10, seed + 100);
                let targets: Vec<u8> = (0..n)
                    .map(|i| ((i * 3 + seed as usize) % 10) as u8)
                    .collect();
                grad_check_head(m, &mut x, &w, n, &targets, lambda);
            }
        }
    }

    /// Builds x (2-d features) at a chosen angle to W_y so the check can sit right next to the
    /// boundaries theta = j pi / m between k values, and everywhere between.
    #[test]
    fn gradients_match_at_many_angles_including_k_boundaries() {
        let d = 2;
        for m in 1..=4u32 {
            let mut angles: Vec<f64> = (1..60)
                .map(|i| i as f64 * std::f64::consts::PI / 60.0)
                .collect();
            for j in 1..m {
                let b = j as f64 * std::f64::consts::PI / m as f64;
                angles.extend([b - 1e-2, b - 1e-3, b + 1e-3, b + 1e-2]);
            }
            for theta in angles {
                // W_y along (1.3, 0) for target class 0; other classes arbitrary.
                let mut w = gradcheck::random(d * 10, 5);
                w[0] = 1.3;
                w[10] = 0.0;
                let mut x = vec![(0.8 * theta.cos()) as f32, (0.8 * theta.sin()) as f32];
                grad_check_head(m, &mut x, &w, 1, &[0], 0.0);
            }
        }
    }

    #[test]
    fn margin_one_equals_plain_softmax() {
        let (d, n) = (8, 16);
        let x = gradcheck::random(d * n, 3);
        let targets: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut head = LSoftmax::new(d, 10, 1, &mut Rng::new(4));
        let plain = head.forward_eval(&x, n).to_vec();
        for lambda in [0.0, 3.0, 100.0] {
            let lm = head.forward_train(&x, n, &targets, lambda).to_vec();
            for (a, b) in lm.iter().zip(&plain) {
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
            }
            // Gradients equal those of plain linear + softmax.
            let mut dl = Vec::new();
            softmax_cross_entropy(&lm, 10, &targets, &mut dl);
            head.backward(&x, n, &dl);
            for dd in 0..d {
                for j in 0..10 {
                    let want: f32 = (0..n).map(|i| x[dd * n + i] * dl[i * 10 + j]).sum();
                    assert!((head.dweight[dd * 10 + j] - want).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn larger_margins_lower_the_target_logit() {
        let (d, n) = (8, 32);
        let x = gradcheck::random(d * n, 8);
        let targets: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let mut prev: Option<Vec<f32>> = None;
        for m in 1..=4 {
            let mut head = LSoftmax::new(d, 10, m, &mut Rng::new(4));
            let l = head.forward_train(&x, n, &targets, 0.0).to_vec();
            if let Some(p) = &prev {
                for i in 0..n {
                    let y = targets[i] as usize;
                    assert!(l[i * 10 + y] <= p[i * 10 + y] + 1e-6);
                }
            }
            prev = Some(l);
        }
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        let n = 4;
        let mut logits = gradcheck::random(n * 10, 9);
        let targets = [1u8, 5, 9, 0];
        let mut dl = Vec::new();
        softmax_cross_entropy(&logits, 10, &targets, &mut dl);
        let mut scratch = Vec::new();
        gradcheck::check(
            "cross-entropy",
            &mut logits,
            &dl.clone(),
            |l| softmax_cross_entropy(l, 10, &targets, &mut scratch).0,
            1e-3,
            1e-3,
            40,
        );
    }
}

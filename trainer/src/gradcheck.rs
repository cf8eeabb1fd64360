//! Finite-difference gradient checking, shared by every layer's tests.

/// Compares `analytic[i]` with the central difference `(loss(x + eps e_i) - loss(x - eps e_i)) /
/// 2 eps` for up to `samples` indices spread over `x`, and panics naming the first index whose
/// error exceeds `tol * max(1, |numeric|, |analytic|)`.
///
/// `loss` must evaluate the scalar loss for the current contents of `x` (it is called with `x`
/// perturbed in place, then restored).
pub fn check(
    what: &str,
    x: &mut [f32],
    analytic: &[f32],
    mut loss: impl FnMut(&[f32]) -> f64,
    eps: f32,
    tol: f64,
    samples: usize,
) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let n = x.len();
    let step = (n / samples.max(1)).max(1);
    let mut checked = 0;
    for i in (0..n).step_by(step).chain(std::iter::once(n - 1)) {
        let orig = x[i];
        x[i] = orig + eps;
        let lp = loss(x);
        x[i] = orig - eps;
        let lm = loss(x);
        x[i] = orig;
        let numeric = (lp - lm) / (2.0 * eps as f64);
        let a = analytic[i] as f64;
        let scale = 1f64.max(numeric.abs()).max(a.abs());
        assert!(
            (numeric - a).abs() <= tol * scale,
            "{what}: gradient mismatch at {i}: analytic {a}, numeric {numeric}"
        );
        checked += 1;
    }
    assert!(checked > 0);
}

/// `sum_i r_i * y_i` in f64: the test loss whose gradient with respect to `y` is `r`.
pub fn dot(r: &[f32], y: &[f32]) -> f64 {
    r.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// `n` values uniform in `[-1, 1)` from a fixed seed.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut r = crate::rng::Rng::new(seed);
    (0..n).map(|_| r.uniform(-1.0, 1.0)).collect()
}

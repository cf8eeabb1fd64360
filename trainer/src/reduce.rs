//! Deterministic f64 reductions over f32 activations.
//!
//! A plain `iter().sum::<f64>()` is one dependent chain of additions (the compiler may not
//! reorder floating-point sums), so it runs at one element per add latency. These functions
//! keep [`LANES`] independent partial sums, which the compiler vectorizes, and combine them in
//! a fixed order: the result depends only on the input, never on threads or timing.

/// Independent partial sums per reduction.
pub const LANES: usize = 8;

/// Sums `term(a[i], b[i])` over two equally long slices (extra elements of the longer one are
/// ignored) with [`LANES`] partial sums.
#[inline(always)]
pub fn sum_zip(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f64) -> f64 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0f64; LANES];
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += term(x, y);
        }
    }
    let mut total = acc.iter().fold(0.0, |t, &s| t + s);
    for (&x, &y) in ra.iter().zip(rb) {
        total += term(x, y);
    }
    total
}

/// Sums `term(x)` over `xs` with [`LANES`] partial sums.
#[inline(always)]
pub fn sum_map(xs: &[f32], term: impl Fn(f32) -> f64) -> f64 {
    let chunks = xs.chunks_exact(LANES);
    let rem = chunks.remainder();
    let mut acc = [0f64; LANES];
    for c in chunks {
        for (s, &x) in acc.iter_mut().zip(c) {
            *s += term(x);
        }
    }
    let mut total = acc.iter().fold(0.0, |t, &s| t + s);
    for &x in rem {
        total += term(x);
    }
    total
}

/// [`sum_zip`] of the second component of `f(a[i], b[i])` that also writes the first component
/// to `out[i]`, in one pass over the inputs (the total is bit-identical to [`sum_zip`]'s).
/// `out` must be as long as `a` and `b`.
#[inline(always)]
pub fn sum_zip_write(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32) -> (f32, f64),
) -> f64 {
    assert!(
        a.len() == b.len() && a.len() == out.len(),
        "sum_zip_write lengths"
    );
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut co = out.chunks_exact_mut(LANES);
    let mut acc = [0f64; LANES];
    for ((xa, xb), o) in ca.zip(cb).zip(co.by_ref()) {
        let (Ok(xa), Ok(xb), Ok(o)) = (
            <&[f32; LANES]>::try_from(xa),
            <&[f32; LANES]>::try_from(xb),
            <&mut [f32; LANES]>::try_from(o),
        ) else {
            unreachable!("chunks_exact yields LANES elements")
        };
        for i in 0..LANES {
            let (v, t) = f(xa[i], xb[i]);
            o[i] = v;
            acc[i] += t;
        }
    }
    let mut total = acc.iter().fold(0.0, |t, &s| t + s);
    for ((d, &x), &y) in co.into_remainder().iter_mut().zip(ra).zip(rb) {
        let (v, t) = f(x, y);
        *d = v;
        total += t;
    }
    total
}

/// `sum_i xs[i]` in f64.
#[inline(always)]
pub fn sum(xs: &[f32]) -> f64 {
    sum_map(xs, f64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_agree_with_the_definition() {
        for n in [0usize, 1, 7, 8, 9, 100, 1003] {
            let xs: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.25)
                .collect();
            let ys: Vec<f32> = (0..n).map(|i| (i % 5) as f32 - 2.0).collect();
            let want: f64 = xs.iter().map(|&v| v as f64).sum();
            assert!((sum(&xs) - want).abs() < 1e-9, "n={n}");
            let want2: f64 = xs.iter().zip(&ys).map(|(&x, &y)| (x * y) as f64).sum();
            assert!((sum_zip(&xs, &ys, |x, y| (x * y) as f64) - want2).abs() < 1e-9);
            // The fused form is bit-identical to the separate sum.
            let mut out = vec![0f32; n];
            let t = sum_zip_write(&xs, &ys, &mut out, |x, y| (x - y, (x * y) as f64));
            assert_eq!(
                t.to_bits(),
                sum_zip(&xs, &ys, |x, y| (x * y) as f64).to_bits()
            );
            assert!(out
                .iter()
                .zip(xs.iter().zip(&ys))
                .all(|(&o, (&x, &y))| o == x - y));
            let want3: f64 = xs.iter().map(|&v| (v as f64).powi(2)).sum();
            assert!((sum_map(&xs, |v| (v as f64).powi(2)) - want3).abs() < 1e-9);
        }
    }
}

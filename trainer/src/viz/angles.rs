//! Angle statistics of 2-D features against the head's class weights (the paper's Fig. 2
//! reading: a larger margin narrows each class's wedge around its weight direction).

/// Direction of `v` in degrees, in `[0, 360)`, counter-clockwise from the positive x axis.
pub fn direction_deg(v: [f64; 2]) -> f64 {
    v[1].atan2(v[0]).to_degrees().rem_euclid(360.0)
}

/// Angle between `a` and `b` in degrees, in `[0, 180]`; `None` when either is the zero vector
/// (or not finite).
pub fn angle_between_deg(a: [f64; 2], b: [f64; 2]) -> Option<f64> {
    let na = a[0].hypot(a[1]);
    let nb = b[0].hypot(b[1]);
    let denom = na * nb;
    if !(denom > 0.0 && denom.is_finite()) {
        return None;
    }
    // atan2 of |cross| and dot stays accurate near 0 and 180 degrees, where acos does not.
    let cross = a[0] * b[1] - a[1] * b[0];
    let dot = a[0] * b[0] + a[1] * b[1];
    Some(cross.abs().atan2(dot).to_degrees())
}

/// The smallest angular gap between neighbouring directions around the circle.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NeighbourGap {
    /// The gap in degrees.
    pub gap_deg: f64,
    /// The two neighbours' indices in the input, in counter-clockwise order.
    pub pair: (usize, usize),
}

/// Sorts the directions of `vectors` around the origin and returns the smallest gap between
/// consecutive ones, the wrap-around from the last back to the first included. `None` for
/// fewer than two vectors or when any is zero.
pub fn smallest_neighbour_gap(vectors: &[[f64; 2]]) -> Option<NeighbourGap> {
    if vectors.len() < 2
        || vectors
            .iter()
            .any(|v| !(v[0].hypot(v[1]) > 0.0 && v[0].is_finite() && v[1].is_finite()))
    {
        return None;
    }
    let mut dirs: Vec<(f64, usize)> = vectors
        .iter()
        .enumerate()
        .map(|(i, &v)| (direction_deg(v), i))
        .collect();
    dirs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = dirs.len();
    (0..n)
        .map(|k| {
            let (a, ia) = dirs[k];
            let (b, ib) = dirs[(k + 1) % n];
            let gap = if k + 1 == n { b + 360.0 - a } else { b - a };
            NeighbourGap {
                gap_deg: gap,
                pair: (ia, ib),
            }
        })
        .min_by(|x, y| x.gap_deg.total_cmp(&y.gap_deg))
}

/// What one trained head does with the test features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AngleStats {
    /// Test images.
    pub count: usize,
    /// Accuracy in percent of the plain decision rule `argmax_j W_j . x`.
    pub accuracy: f64,
    /// Mean angle in degrees between each feature and its own class's weight vector (features
    /// of zero length, which have no direction, are left out).
    pub mean_angle_deg: f64,
    /// Smallest gap between neighbouring class weight directions.
    pub min_gap: NeighbourGap,
}

/// Statistics of `features` (one 2-D point per test image) with true `labels` against the
/// class weight vectors `weights` (one per class). `None` when the inputs are empty or
/// inconsistent, a label has no weight, or a weight is zero.
pub fn angle_stats(
    features: &[[f64; 2]],
    labels: &[u8],
    weights: &[[f64; 2]],
) -> Option<AngleStats> {
    if features.is_empty() || features.len() != labels.len() {
        return None;
    }
    let min_gap = smallest_neighbour_gap(weights)?;
    let (mut correct, mut angle_sum, mut angled) = (0usize, 0f64, 0usize);
    for (x, &y) in features.iter().zip(labels) {
        let own = *weights.get(y as usize)?;
        let logit = |w: &[f64; 2]| w[0] * x[0] + w[1] * x[1];
        let pred = weights
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (j, w)| {
                let l = logit(w);
                if l > best.1 {
                    (j, l)
                } else {
                    best
                }
            })
            .0;
        correct += usize::from(pred == y as usize);
        if let Some(a) = angle_between_deg(*x, own) {
            angle_sum += a;
            angled += 1;
        }
    }
    Some(AngleStats {
        count: features.len(),
        accuracy: 100.0 * correct as f64 / features.len() as f64,
        mean_angle_deg: if angled > 0 {
            angle_sum / angled as f64
        } else {
            f64::NAN
        },
        min_gap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(deg: f64, r: f64) -> [f64; 2] {
        let t = deg.to_radians();
        [r * t.cos(), r * t.sin()]
    }

    #[test]
    fn directions_and_angles() {
        assert!((direction_deg([0.0, -1.0]) - 270.0).abs() < 1e-9);
        assert!((direction_deg([-1.0, 0.0]) - 180.0).abs() < 1e-9);
        assert!((angle_between_deg([1.0, 0.0], [0.0, 3.0]).unwrap() - 90.0).abs() < 1e-9);
        assert!((angle_between_deg(at(350.0, 2.0), at(10.0, 0.5)).unwrap() - 20.0).abs() < 1e-9);
        assert!((angle_between_deg([1.0, 1.0], [-2.0, -2.0]).unwrap() - 180.0).abs() < 1e-9);
        assert_eq!(angle_between_deg([0.0, 0.0], [1.0, 0.0]), None);
    }

    #[test]
    fn smallest_gap_of_known_directions() {
        // Ten directions 36 degrees apart, except class 7 pushed 29 degrees towards class 8:
        // its gap to 8 is 7 degrees.
        let mut w: Vec<[f64; 2]> = (0..10)
            .map(|j| at(36.0 * j as f64 + 5.0, 1.0 + j as f64))
            .collect();
        w[7] = at(36.0 * 7.0 + 5.0 + 29.0, 0.3);
        let g = smallest_neighbour_gap(&w).unwrap();
        assert!((g.gap_deg - 7.0).abs() < 1e-9, "{g:?}");
        assert_eq!(g.pair, (7, 8));
        // Input order does not matter.
        w.reverse();
        assert!((smallest_neighbour_gap(&w).unwrap().gap_deg - 7.0).abs() < 1e-9);
    }

    #[test]
    fn wrap_around_gap_counts() {
        // 350 and 5 degrees are 15 apart across 0; the other gaps are larger.
        let w = [at(350.0, 1.0), at(100.0, 1.0), at(5.0, 1.0), at(200.0, 1.0)];
        let g = smallest_neighbour_gap(&w).unwrap();
        assert!((g.gap_deg - 15.0).abs() < 1e-9, "{g:?}");
        assert_eq!(g.pair, (0, 2));
        // Two opposite vectors: both gaps are 180.
        let g = smallest_neighbour_gap(&[at(30.0, 1.0), at(210.0, 1.0)]).unwrap();
        assert!((g.gap_deg - 180.0).abs() < 1e-9);
        assert_eq!(smallest_neighbour_gap(&[at(30.0, 1.0)]), None);
        assert_eq!(smallest_neighbour_gap(&[at(30.0, 1.0), [0.0, 0.0]]), None);
    }

    #[test]
    fn stats_of_a_known_layout() {
        let weights: Vec<[f64; 2]> = (0..4).map(|j| at(90.0 * j as f64, 1.0)).collect();
        // Class 0 at 10 and -20 degrees (correct), class 1 at 150 degrees (closer to class 2:
        // wrong, 60 degrees off), class 3 exactly on its weight.
        let feats = [
            at(10.0, 2.0),
            at(-20.0, 1.0),
            at(150.0, 1.0),
            at(270.0, 5.0),
        ];
        let labels = [0, 0, 1, 3];
        let s = angle_stats(&feats, &labels, &weights).unwrap();
        assert_eq!(s.count, 4);
        assert!((s.accuracy - 75.0).abs() < 1e-9);
        assert!((s.mean_angle_deg - (10.0 + 20.0 + 60.0 + 0.0) / 4.0).abs() < 1e-9);
        assert!((s.min_gap.gap_deg - 90.0).abs() < 1e-9);
        assert_eq!(angle_stats(&feats, &[0, 0, 1, 9], &weights), None);
        assert_eq!(angle_stats(&[], &[], &weights), None);
    }
}

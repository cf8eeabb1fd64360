//! The 2-D features of a trained network (the head's input, eval mode) and its class weight
//! vectors.

use anyhow::{bail, Result};
use mnist::Split;

use crate::network::{split_to_tensor, Network};
use crate::tensor::Tensor;

/// Test features of a network whose head sees two features.
#[derive(Clone, Debug, Default)]
pub struct Features2d {
    /// One point per image: the output of the last feature layer.
    pub points: Vec<[f64; 2]>,
    /// The images' true classes.
    pub labels: Vec<u8>,
}

/// Runs the feature layers in eval mode on the first `limit` images of `split` (all when
/// None) and collects the 2-D head inputs. Fails unless the network has two features.
pub fn extract(net: &mut Network, split: &Split, limit: Option<usize>) -> Result<Features2d> {
    if net.head.inp != 2 {
        bail!(
            "the figure needs 2-D features, but network '{}' feeds {} features to its head",
            net.spec.name,
            net.head.inp
        );
    }
    let n = limit.map_or(split.len(), |l| l.min(split.len()));
    let [_, h, w] = net.spec.input;
    let mut out = Features2d {
        points: Vec::with_capacity(n),
        labels: Vec::with_capacity(n),
    };
    let mut input = Tensor::default();
    for start in (0..n).step_by(500) {
        let end = (start + 500).min(n);
        split_to_tensor(split, start..end, h, w, &mut input);
        let feat = net.features(&input, false);
        // Layout [features, N, 1, 1]: feature d of image i at d * N + i.
        let m = end - start;
        out.points
            .extend((0..m).map(|i| [feat.data[i] as f64, feat.data[m + i] as f64]));
        out.labels.extend((start..end).map(|i| split.label(i)));
    }
    Ok(out)
}

/// The head's weight vector of each class: column `j` of its `[features][classes]` weight.
pub fn class_weights(net: &Network) -> Result<Vec<[f64; 2]>> {
    let head = &net.head;
    if head.inp != 2 {
        bail!("the head has {} input features, not 2", head.inp);
    }
    Ok((0..head.classes)
        .map(|j| [head.weight[j] as f64, head.weight[head.classes + j] as f64])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{ArchSpec, LayerSpec};

    #[test]
    fn features_agree_with_the_logits_and_weights_with_the_layout() {
        let spec = ArchSpec {
            name: "two".into(),
            input: [1, 28, 28],
            layers: vec![
                LayerSpec::Flatten,
                LayerSpec::Linear { out: 2 },
                LayerSpec::BatchNorm,
            ],
            classes: 10,
        };
        let mut net = Network::new(&spec, 2, 5).unwrap();
        let n = 7;
        let split = Split {
            images: (0..n * 784).map(|i| (i * 37 % 256) as u8).collect(),
            labels: (0..n as u8).collect(),
            rows: 28,
            cols: 28,
        };
        let f = extract(&mut net, &split, None).unwrap();
        assert_eq!(f.points.len(), n);
        assert_eq!(f.labels, split.labels);
        let w = class_weights(&net).unwrap();
        let mut input = Tensor::default();
        split_to_tensor(&split, 0..n, 28, 28, &mut input);
        let logits = net.logits(&input);
        for (i, p) in f.points.iter().enumerate() {
            for (j, wj) in w.iter().enumerate() {
                let l = p[0] * wj[0] + p[1] * wj[1];
                assert!(
                    (l - logits[i * 10 + j] as f64).abs() < 1e-4,
                    "{l} vs {}",
                    logits[i * 10 + j]
                );
            }
        }
        assert_eq!(extract(&mut net, &split, Some(3)).unwrap().points.len(), 3);
    }
}

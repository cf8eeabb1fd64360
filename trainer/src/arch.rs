//! Networks as data: a sequential architecture spec, its shape inference, and the presets.

use serde::{Deserialize, Serialize};

/// One layer of a sequential feature extractor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerSpec {
    /// BatchNorm over channels (on images) or features (after `Flatten`).
    BatchNorm,
    /// Convolution, stride 1, square kernel `k`, zero padding `pad`, with bias.
    Conv {
        /// Output channels.
        out: usize,
        /// Kernel size.
        k: usize,
        /// Padding.
        pad: usize,
    },
    /// PReLU with one shared slope, or one per channel.
    PRelu {
        /// One slope per channel instead of a shared one.
        per_channel: bool,
    },
    /// 2x2 max pooling, stride 2.
    MaxPool2,
    /// Flattens `[c, h, w]` into features.
    Flatten,
    /// Fully connected layer with bias.
    Linear {
        /// Output features.
        out: usize,
    },
}

/// A whole network: input shape, feature layers, and an L-Softmax head over `classes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchSpec {
    /// Name shown in logs (a preset's name, or the user's).
    pub name: String,
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
    /// Feature layers in order.
    pub layers: Vec<LayerSpec>,
    /// Classes of the head.
    pub classes: usize,
}

/// Shape `[c, h, w]` of one image's activation.
pub type Shape = [usize; 3];

/// Names of the built-in presets.
pub const PRESETS: [&str; 3] = ["paper", "fig2", "tiny"];

fn group(out: usize, k: usize, pad: usize) -> [LayerSpec; 3] {
    [
        LayerSpec::Conv { out, k, pad },
        LayerSpec::PRelu { per_channel: false },
        LayerSpec::BatchNorm,
    ]
}

impl ArchSpec {
    /// A preset by name: `paper`, `fig2` or `tiny`.
    pub fn preset(name: &str) -> Option<Self> {
        let mut layers = Vec::new();
        match name {
            // The seed's MNIST net (its `MNISTNet`).
            "paper" => {
                layers.push(LayerSpec::BatchNorm);
                layers.extend(group(64, 3, 0));
                for reps in [3, 4, 3] {
                    for _ in 0..reps {
                        layers.extend(group(64, 3, 1));
                    }
                    layers.push(LayerSpec::MaxPool2);
                }
                layers.extend([
                    LayerSpec::Flatten,
                    LayerSpec::Linear { out: 256 },
                    LayerSpec::BatchNorm,
                ]);
            }
            // The seed's 2-d feature net for Fig. 2 (its `MNISTFIG2Net`).
            "fig2" => {
                for ch in [32, 64, 128] {
                    layers.extend(group(ch, 5, 2));
                    layers.extend(group(ch, 5, 2));
                    layers.push(LayerSpec::MaxPool2);
                }
                layers.extend([
                    LayerSpec::Flatten,
                    LayerSpec::Linear { out: 2 },
                    LayerSpec::BatchNorm,
                ]);
            }
            // A small net for tests and the quickstart: about a minute per epoch-pair on 2 cores.
            "tiny" => {
                layers.extend(group(16, 5, 2));
                layers.push(LayerSpec::MaxPool2);
                layers.extend(group(32, 5, 2));
                layers.push(LayerSpec::MaxPool2);
                layers.extend([
                    LayerSpec::Flatten,
                    LayerSpec::Linear { out: 64 },
                    LayerSpec::BatchNorm,
                ]);
            }
            _ => return None,
        }
        Some(Self {
            name: name.to_string(),
            input: [1, 28, 28],
            layers,
            classes: 10,
        })
    }

    /// The input shape followed by every layer's output shape; an error names the first layer
    /// that does not fit.
    pub fn shapes(&self) -> Result<Vec<Shape>, String> {
        let mut s = self.input;
        let mut out = vec![s];
        let mut flat = false;
        for (i, l) in self.layers.iter().enumerate() {
            let err = |msg: String| Err(format!("layer {i} ({l:?}): {msg}"));
            s = match *l {
                LayerSpec::BatchNorm | LayerSpec::PRelu { .. } => s,
                LayerSpec::Conv { out, k, pad } => {
                    if flat {
                        return err("convolution after Flatten".into());
                    }
                    if k == 0 || out == 0 || s[1] + 2 * pad < k || s[2] + 2 * pad < k {
                        return err(format!(
                            "kernel {k} with padding {pad} does not fit a {}x{} input",
                            s[1], s[2]
                        ));
                    }
                    [out, s[1] + 2 * pad + 1 - k, s[2] + 2 * pad + 1 - k]
                }
                LayerSpec::MaxPool2 => {
                    if flat || s[1] < 2 || s[2] < 2 {
                        return err(format!("cannot pool a {}x{} input", s[1], s[2]));
                    }
                    [s[0], s[1] / 2, s[2] / 2]
                }
                LayerSpec::Flatten => {
                    flat = true;
                    [s[0] * s[1] * s[2], 1, 1]
                }
                LayerSpec::Linear { out } => {
                    if !flat {
                        return err("Linear needs a Flatten before it".into());
                    }
                    if out == 0 {
                        return err("zero outputs".into());
                    }
                    [out, 1, 1]
                }
            };
            out.push(s);
        }
        if !flat {
            return Err("the network must Flatten before the head".into());
        }
        if self.classes < 2 {
            return Err("the head needs at least 2 classes".into());
        }
        Ok(out)
    }

    /// Feature dimension at the head.
    pub fn features(&self) -> Result<usize, String> {
        Ok(self.shapes()?.last().map(|s| s[0]).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_seed_shapes() {
        let paper = ArchSpec::preset("paper").unwrap();
        let shapes = paper.shapes().unwrap();
        assert_eq!(shapes[2], [64, 26, 26]);
        assert_eq!(*shapes.iter().rev().nth(2).unwrap(), [576, 1, 1]);
        assert_eq!(paper.features().unwrap(), 256);
        let convs = paper
            .layers
            .iter()
            .filter(|l| matches!(l, LayerSpec::Conv { .. }))
            .count();
        assert_eq!(convs, 11);
        let fig2 = ArchSpec::preset("fig2").unwrap();
        assert_eq!(
            *fig2.shapes().unwrap().iter().rev().nth(2).unwrap(),
            [1152, 1, 1]
        );
        assert_eq!(fig2.features().unwrap(), 2);
        assert!(ArchSpec::preset("tiny").unwrap().shapes().is_ok());
        assert!(ArchSpec::preset("nope").is_none());
    }

    #[test]
    fn bad_specs_are_rejected_with_the_layer_named() {
        let mut a = ArchSpec::preset("tiny").unwrap();
        a.layers.insert(0, LayerSpec::Linear { out: 3 });
        assert!(a.shapes().unwrap_err().starts_with("layer 0"));
        let mut b = ArchSpec::preset("tiny").unwrap();
        b.layers.insert(
            0,
            LayerSpec::Conv {
                out: 4,
                k: 40,
                pad: 0,
            },
        );
        assert!(b.shapes().unwrap_err().contains("does not fit"));
    }
}

//! PyTorch interop: the seed's `state_dict` (as a safetensors file) to and from trainer
//! checkpoints.
//!
//! The seed's `MNISTNet` (our `paper` preset) and `MNISTFIG2Net` (`fig2`) are `nn.Sequential`
//! blocks, so a parameter is named `{block}.{index in block}.{tensor}`: `conv_1.0.weight`,
//! `conv_1.2.running_mean`, `fc.0.bias`, `lsoftmax_linear.weight`. [`seed_layout`] maps our flat
//! layer list onto those blocks; [`torch_state`] and [`network_from_torch`] convert in each
//! direction. Layouts need no transposition: our conv weights are `[out, in, k, k]`, linear
//! weights `[out, in]` and the head `[in, classes]`, exactly as PyTorch stores them.
//!
//! BatchNorm's `num_batches_tracked` (an int64 scalar PyTorch keeps for `momentum=None`, which
//! the seed does not use) is written on export as the number of training steps taken, so that
//! `load_state_dict(strict=True)` accepts the file, and is accepted but ignored on import.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::arch::ArchSpec;
use crate::checkpoint::{write_atomic, Checkpoint};
use crate::lambda::LambdaState;
use crate::layers::Layer;
use crate::network::Network;
use crate::train::{TrainConfig, Trainer};

/// The head's parameter name in the seed.
pub const HEAD_NAME: &str = "lsoftmax_linear.weight";

/// Suffix of BatchNorm's step counter, which has no effect on our computation.
const BATCHES_TRACKED: &str = "num_batches_tracked";

/// For each of our layers, the seed's module path (`conv_1.0`), or `None` for layers the seed
/// has no module for (our explicit flatten is its `x.view(-1, n)`).
pub fn seed_layout(spec: &ArchSpec) -> Result<Vec<Option<String>>> {
    let blocks: &[(Option<&str>, usize)] = match spec.name.as_str() {
        "paper" => &[
            (Some("conv_0"), 4),
            (Some("conv_1"), 10),
            (Some("conv_2"), 13),
            (Some("conv_3"), 10),
            (None, 1),
            (Some("fc"), 2),
        ],
        "fig2" => &[
            (Some("conv_1"), 7),
            (Some("conv_2"), 7),
            (Some("conv_3"), 7),
            (None, 1),
            (Some("fc"), 2),
        ],
        other => bail!(
            "the seed's PyTorch models exist only for the presets `paper` (MNISTNet) and \
             `fig2` (MNISTFIG2Net), not for `{other}`"
        ),
    };
    let preset = ArchSpec::preset(&spec.name).context("preset exists")?;
    if preset.layers != spec.layers || preset.input != spec.input || preset.classes != spec.classes
    {
        bail!(
            "this network is named `{}` but differs from that preset, so it has no counterpart \
             among the seed's PyTorch models",
            spec.name
        );
    }
    let mut out = Vec::with_capacity(spec.layers.len());
    for &(block, len) in blocks {
        for i in 0..len {
            out.push(block.map(|b| format!("{b}.{i}")));
        }
    }
    debug_assert_eq!(out.len(), spec.layers.len());
    Ok(out)
}

/// The PyTorch shape of one of a layer's state tensors.
fn torch_shape(layer: &Layer, tensor: &str) -> Vec<usize> {
    match layer {
        Layer::Conv(c) if tensor == "weight" => vec![c.cout, c.cin, c.k, c.k],
        Layer::Conv(c) => vec![c.cout],
        Layer::PRelu(p) => vec![p.slopes.len()],
        Layer::BatchNorm(b) => vec![b.gamma.len()],
        Layer::Linear(l) if tensor == "weight" => vec![l.outp, l.inp],
        Layer::Linear(l) => vec![l.outp],
        Layer::MaxPool(_) | Layer::Flatten(_) => Vec::new(),
    }
}

/// One named float tensor in PyTorch's naming and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchTensor {
    /// The seed's parameter name.
    pub name: String,
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// The network's state as the seed's `state_dict` float tensors, in module order (without
/// `num_batches_tracked`).
pub fn torch_state(net: &Network) -> Result<Vec<TorchTensor>> {
    let layout = seed_layout(&net.spec)?;
    let mut out = Vec::new();
    for (layer, module) in net.layers.iter().zip(&layout) {
        let Some(module) = module else { continue };
        for (tensor, data) in layer.state() {
            out.push(TorchTensor {
                name: format!("{module}.{tensor}"),
                shape: torch_shape(layer, tensor),
                data: data.clone(),
            });
        }
    }
    out.push(TorchTensor {
        name: HEAD_NAME.to_string(),
        shape: vec![net.head.inp, net.head.classes],
        data: net.head.weight.clone(),
    });
    Ok(out)
}

/// Names of the BatchNorm modules, whose `num_batches_tracked` PyTorch also stores.
fn batchnorm_modules(net: &Network) -> Result<Vec<String>> {
    let layout = seed_layout(&net.spec)?;
    Ok(net
        .layers
        .iter()
        .zip(layout)
        .filter_map(|(l, m)| match l {
            Layer::BatchNorm(_) => m,
            _ => None,
        })
        .collect())
}

/// Serialises the network as a safetensors `state_dict` the seed's model loads with
/// `load_state_dict(strict=True)`; `steps` becomes every BatchNorm's `num_batches_tracked`.
pub fn to_safetensors(net: &Network, steps: u64) -> Result<Vec<u8>> {
    let floats = torch_state(net)?;
    let counter = i64::try_from(steps).unwrap_or(i64::MAX).to_le_bytes();
    let float_bytes: Vec<Vec<u8>> = floats
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::new();
    for (t, bytes) in floats.iter().zip(&float_bytes) {
        views.push((
            t.name.clone(),
            TensorView::new(Dtype::F32, t.shape.clone(), bytes)?,
        ));
    }
    for module in batchnorm_modules(net)? {
        views.push((
            format!("{module}.{BATCHES_TRACKED}"),
            TensorView::new(Dtype::I64, Vec::new(), &counter)?,
        ));
    }
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("producer".to_string(), "lsoftmax".to_string());
    meta.insert("preset".to_string(), net.spec.name.clone());
    meta.insert("margin".to_string(), net.head.margin.to_string());
    canonical_header(safetensors::serialize(views, Some(meta))?)
}

/// Rewrites a safetensors file's JSON header with its keys sorted, so that the same tensors
/// always give the same bytes (`safetensors::serialize` writes the metadata in `HashMap`
/// order, which changes from run to run). The header stays padded with spaces to a multiple
/// of 8 bytes; the tensor data, whose offsets are relative to the end of the header, is
/// unchanged.
fn canonical_header(file: Vec<u8>) -> Result<Vec<u8>> {
    let (len, rest) = file
        .split_first_chunk::<8>()
        .context("safetensors file shorter than its header length")?;
    let len = usize::try_from(u64::from_le_bytes(*len))?;
    anyhow::ensure!(len <= rest.len(), "safetensors header longer than the file");
    let (header, data) = rest.split_at(len);
    // serde_json's `Map` is a `BTreeMap` (no `preserve_order`): printing sorts the keys.
    let value: serde_json::Value = serde_json::from_slice(header)?;
    let mut header = serde_json::to_vec(&value)?;
    header.resize(header.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    Ok(out)
}

/// Reads a tensor's values as f32 (float32 as is, float64 narrowed).
fn read_floats(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let bytes = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Dtype::F64 => Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b) as f32
            })
            .collect()),
        other => bail!(
            "{name} has dtype {other:?}; only float32 and float64 tensors can be imported \
             (convert with `model.float()` before saving)"
        ),
    }
}

/// Builds a network of architecture `spec` and margin `margin` from the seed's `state_dict` in
/// safetensors `bytes`. A leading `module.` (from `nn.DataParallel`) is stripped. Every missing,
/// unexpected or wrongly shaped tensor is named in the error.
pub fn network_from_torch(bytes: &[u8], spec: &ArchSpec, margin: u32) -> Result<Network> {
    let st = SafeTensors::deserialize(bytes).context("not a readable safetensors file")?;
    let mut found: BTreeMap<String, TensorView<'_>> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let key = name.strip_prefix("module.").unwrap_or(&name).to_string();
        found.insert(key, view);
    }
    let mut net = Network::new(spec, margin, 0).map_err(anyhow::Error::msg)?;
    let want = torch_state(&net)?;
    let counters: Vec<String> = batchnorm_modules(&net)?
        .into_iter()
        .map(|m| format!("{m}.{BATCHES_TRACKED}"))
        .collect();

    let mut problems = Vec::new();
    let mut values = Vec::with_capacity(want.len());
    for t in &want {
        match found.get(&t.name) {
            None => problems.push(format!("missing {} (shape {:?})", t.name, t.shape)),
            Some(v) if v.shape() != t.shape.as_slice() => problems.push(format!(
                "{} has shape {:?}, the {} network needs {:?}",
                t.name,
                v.shape(),
                spec.name,
                t.shape
            )),
            Some(v) => match read_floats(&t.name, v) {
                Ok(data) => values.push(data),
                Err(e) => problems.push(e.to_string()),
            },
        }
    }
    for name in found.keys() {
        if !want.iter().any(|t| &t.name == name) && !counters.contains(name) {
            problems.push(format!("unexpected tensor {name}"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the file is not a state_dict of the seed's {} network (margin {margin}):\n  {}",
            spec.name,
            problems.join("\n  ")
        );
    }

    // Our state order is the seed's module order (both follow the layer list), so the values
    // line up with `Network::state` one to one.
    let ours = net.state();
    debug_assert_eq!(ours.len(), values.len());
    let tensors: Vec<(String, Vec<f32>)> = ours
        .into_iter()
        .zip(values)
        .map(|((name, _), data)| (name, data))
        .collect();
    net.load_state(&tensors).map_err(anyhow::Error::msg)?;
    Ok(net)
}

/// `import-torch`: reads the seed's safetensors `state_dict` and writes a trainer checkpoint
/// (the seed's recipe for the preset, no epochs done, fresh momentum and lambda schedule).
pub fn import_file(src: &Path, preset: &str, margin: u32, out: &Path) -> Result<Checkpoint> {
    let spec = ArchSpec::preset(preset).with_context(|| format!("unknown preset `{preset}`"))?;
    let bytes = std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
    let net = network_from_torch(&bytes, &spec, margin)
        .with_context(|| format!("cannot import {}", src.display()))?;
    let config = TrainConfig::seed_recipe(spec, margin);
    let ck = Checkpoint {
        lambda: LambdaState::new(config.lambda),
        config,
        epochs_done: 0,
        tensors: net.state(),
        momentum: Vec::new(),
        history: Vec::new(),
    };
    ck.save(out)?;
    Ok(ck)
}

/// `export-torch`: writes a checkpoint's network as a safetensors `state_dict` for the seed's
/// PyTorch model.
pub fn export_file(checkpoint: &Path, out: &Path) -> Result<Network> {
    let trainer = Trainer::from_checkpoint(Checkpoint::load(checkpoint)?)
        .with_context(|| format!("cannot restore {}", checkpoint.display()))?;
    let bytes = to_safetensors(&trainer.net, trainer.lambda.iteration)?;
    write_atomic(out, &bytes)?;
    Ok(trainer.net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_names_and_shapes_follow_the_seed() {
        let net = Network::new(&ArchSpec::preset("paper").unwrap(), 4, 1).unwrap();
        let st = torch_state(&net).unwrap();
        let find = |n: &str| st.iter().find(|t| t.name == n).map(|t| t.shape.clone());
        assert_eq!(find("conv_0.0.running_var"), Some(vec![1]));
        assert_eq!(find("conv_0.1.weight"), Some(vec![64, 1, 3, 3]));
        assert_eq!(find("conv_0.2.weight"), Some(vec![1]));
        assert_eq!(find("conv_1.0.weight"), Some(vec![64, 64, 3, 3]));
        assert_eq!(find("conv_1.2.running_mean"), Some(vec![64]));
        assert_eq!(find("conv_2.11.bias"), Some(vec![64]));
        assert_eq!(find("conv_3.8.weight"), Some(vec![64]));
        assert_eq!(find("fc.0.weight"), Some(vec![256, 576]));
        assert_eq!(find("fc.1.running_var"), Some(vec![256]));
        assert_eq!(find(HEAD_NAME), Some(vec![256, 10]));
        assert_eq!(find("conv_1.9.weight"), None, "max-pool has no parameters");
        // 1 + 11 BatchNorm2d + 1 BatchNorm1d, 4 tensors each; 11 conv, 11 PReLU, fc, head.
        assert_eq!(st.len(), 13 * 4 + 11 * 2 + 11 + 2 + 1);
    }

    #[test]
    fn fig2_layout_covers_every_layer() {
        let net = Network::new(&ArchSpec::preset("fig2").unwrap(), 2, 1).unwrap();
        let st = torch_state(&net).unwrap();
        assert_eq!(st.first().unwrap().name, "conv_1.0.weight");
        assert!(st.iter().any(|t| t.name == "conv_3.5.running_var"));
        assert_eq!(st.last().unwrap().shape, vec![2, 10]);
    }

    #[test]
    fn other_architectures_are_refused() {
        let tiny = ArchSpec::preset("tiny").unwrap();
        assert!(seed_layout(&tiny).unwrap_err().to_string().contains("tiny"));
        let mut fake = ArchSpec::preset("fig2").unwrap();
        fake.layers.pop();
        assert!(seed_layout(&fake).is_err());
    }

    #[test]
    fn safetensors_round_trip_is_the_identity() {
        let spec = ArchSpec::preset("fig2").unwrap();
        let net = Network::new(&spec, 3, 7).unwrap();
        let bytes = to_safetensors(&net, 42).unwrap();
        let back = network_from_torch(&bytes, &spec, 3).unwrap();
        assert_eq!(back.state(), net.state());
        // Byte for byte reproducible (the metadata is a `HashMap` inside `serialize`), and
        // still a valid file with the metadata intact.
        for _ in 0..4 {
            assert_eq!(to_safetensors(&net, 42).unwrap(), bytes);
        }
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().as_ref().unwrap();
        assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
        assert_eq!(meta.get("margin").map(String::as_str), Some("3"));
    }

    #[test]
    fn every_problem_is_named() {
        let spec = ArchSpec::preset("fig2").unwrap();
        let net = Network::new(&spec, 1, 7).unwrap();
        let mut tensors = torch_state(&net).unwrap();
        tensors.retain(|t| t.name != "conv_2.1.weight");
        tensors
            .iter_mut()
            .find(|t| t.name == "fc.0.weight")
            .unwrap()
            .shape = vec![1152, 2];
        tensors.push(TorchTensor {
            name: "extra.weight".into(),
            shape: vec![1],
            data: vec![0.0],
        });
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views: Vec<(String, TensorView<'_>)> = tensors
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                (
                    format!("module.{}", t.name),
                    TensorView::new(Dtype::F32, t.shape.clone(), b).unwrap(),
                )
            })
            .collect();
        let file = safetensors::serialize(views, None).unwrap();
        let err = network_from_torch(&file, &spec, 1).unwrap_err().to_string();
        assert!(err.contains("missing conv_2.1.weight"), "{err}");
        assert!(err.contains("fc.0.weight has shape [1152, 2]"), "{err}");
        assert!(err.contains("unexpected tensor extra.weight"), "{err}");
        assert!(network_from_torch(b"not safetensors", &spec, 1).is_err());
    }
}

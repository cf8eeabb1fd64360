//! Parity with PyTorch: fixtures made once by `bench/make_torch_fixtures.py` with the seed's
//! `MNISTNet` (tests/fixtures/torch_paper*.safetensors) are imported through `torch_io` and our
//! forward pass, margin head, loss, backward pass and SGD step must reproduce PyTorch's numbers.

use std::path::PathBuf;

use lsoftmax_trainer::arch::ArchSpec;
use lsoftmax_trainer::lambda::{LambdaSchedule, LambdaState};
use lsoftmax_trainer::lsoftmax::softmax_cross_entropy;
use lsoftmax_trainer::network::{images_to_tensor, Network};
use lsoftmax_trainer::optim::Sgd;
use lsoftmax_trainer::tensor::Tensor;
use lsoftmax_trainer::torch_io::{network_from_torch, to_safetensors, torch_state};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn floats(st: &SafeTensors<'_>, name: &str) -> Vec<f32> {
    let v = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(v.dtype(), Dtype::F32, "{name}");
    v.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// max |a - b| / max |b|: the error relative to the tensor's scale.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    rel_err_floor(a, b, 1e-30)
}

/// max |a - b| / max(max |b|, floor).
fn rel_err_floor(a: &[f32], b: &[f32], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(floor, |m, &v| m.max(f64::from(v).abs()));
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    diff / scale
}

struct Batch {
    input: Tensor,
    labels: Vec<u8>,
}

fn batch(st: &SafeTensors<'_>) -> Batch {
    let digits = st.tensor("digits").unwrap();
    assert_eq!(digits.dtype(), Dtype::U8);
    let images: Vec<&[u8]> = digits.data().chunks_exact(784).collect();
    let mut input = Tensor::default();
    images_to_tensor(&images, 28, 28, &mut input);
    let labels = st.tensor("labels").unwrap();
    assert_eq!(labels.dtype(), Dtype::I64);
    let labels = labels
        .data()
        .chunks_exact(8)
        .map(|c| c[0])
        .collect::<Vec<u8>>();
    assert_eq!(labels.len(), images.len());
    Batch { input, labels }
}

fn paper(margin: u32) -> Network {
    let spec = ArchSpec::preset("paper").unwrap();
    network_from_torch(&fixture("torch_paper.safetensors"), &spec, margin).unwrap()
}

#[test]
fn eval_logits_match_pytorch() {
    let parity = fixture("torch_paper_parity.safetensors");
    let st = SafeTensors::deserialize(&parity).unwrap();
    let b = batch(&st);
    let got = paper(4).logits(&b.input);
    let err = rel_err(&got, &floats(&st, "eval_logits"));
    println!("eval logits: relative error {err:.2e}");
    assert!(err <= 1e-5, "eval logits differ from PyTorch: {err:.2e}");
}

#[test]
fn training_head_and_loss_match_pytorch_for_every_margin() {
    let parity = fixture("torch_paper_parity.safetensors");
    let st = SafeTensors::deserialize(&parity).unwrap();
    let beta: f64 = st_metadata(&parity, "beta").parse().unwrap();
    let b = batch(&st);
    for m in 1..=4u32 {
        let mut net = paper(m);
        let n = b.labels.len();
        // Features in training mode, ours `[256, N]`, PyTorch's `[N, 256]`.
        let feat = net.features(&b.input, true).data.clone();
        let want = floats(&st, "train_features");
        let transposed: Vec<f32> = (0..n)
            .flat_map(|i| (0..256).map(move |c| (i, c)))
            .map(|(i, c)| feat[c * n + i])
            .collect();
        let ferr = rel_err(&transposed, &want);
        let mut net = paper(m);
        let logits = net.forward_train(&b.input, &b.labels, beta).to_vec();
        let lerr = rel_err(&logits, &floats(&st, &format!("m{m}_logits")));
        let mut dlogits = Vec::new();
        let (loss, _) = softmax_cross_entropy(&logits, 10, &b.labels, &mut dlogits);
        let want_loss = f64::from(floats(&st, &format!("m{m}_loss"))[0]);
        let loss_err = (loss - want_loss).abs() / want_loss.abs();
        println!(
            "m={m}: features {ferr:.2e}, head outputs {lerr:.2e}, loss {loss:.6} vs {want_loss:.6} ({loss_err:.2e})"
        );
        assert!(ferr <= 1e-5, "m={m}: training features differ: {ferr:.2e}");
        assert!(lerr <= 1e-5, "m={m}: head outputs differ: {lerr:.2e}");
        assert!(loss_err <= 1e-5, "m={m}: loss differs: {loss_err:.2e}");
    }
}

fn st_metadata(bytes: &[u8], key: &str) -> String {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata()
        .as_ref()
        .and_then(|m| m.get(key).cloned())
        .unwrap_or_else(|| panic!("fixture metadata lacks {key}"))
}

#[test]
fn sgd_steps_match_pytorch() {
    let parity = fixture("torch_paper_parity.safetensors");
    let st = SafeTensors::deserialize(&parity).unwrap();
    let b = batch(&st);
    let after = fixture("torch_paper_after_sgd.safetensors");
    let get = |k: &str| -> f64 { st_metadata(&after, k).parse().unwrap() };
    let mut net = paper(get("margin") as u32);
    let mut opt = Sgd::new(get("momentum") as f32, get("weight_decay") as f32);
    let mut lambda = LambdaState::new(LambdaSchedule::Seed {
        start: get("beta"),
        decay: get("beta_decay"),
        min: 0.0,
    });
    let mut dlogits = Vec::new();
    for _ in 0..get("steps") as usize {
        let logits = net.forward_train(&b.input, &b.labels, lambda.step());
        softmax_cross_entropy(logits, 10, &b.labels, &mut dlogits);
        net.backward(&b.input, &dlogits);
        opt.step(net.params(), get("lr") as f32);
    }
    let want = SafeTensors::deserialize(&after).unwrap();
    let mut worst = (0.0, String::new());
    for t in torch_state(&net).unwrap() {
        // The last BatchNorm2d's bias has a gradient that vanishes mathematically (fc's
        // BatchNorm1d removes any shift that is constant over the batch), so its entries are
        // rounding noise of ~1e-8 in both frameworks: compare on a scale of at least 1e-3.
        let err = rel_err_floor(&t.data, &floats(&want, &t.name), 1e-3);
        if std::env::var("PARITY_VERBOSE").is_ok() {
            println!("{:<28} {err:.2e}", t.name);
        }
        if err > worst.0 {
            worst = (err, t.name.clone());
        }
    }
    println!(
        "after SGD: worst relative error {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= 1e-4,
        "{} differs after SGD: {:.2e}",
        worst.1,
        worst.0
    );
}

#[test]
fn export_then_import_is_the_identity() {
    let original = fixture("torch_paper.safetensors");
    let net = paper(4);
    let exported = to_safetensors(&net, 20).unwrap();
    let (a, b) = (
        SafeTensors::deserialize(&original).unwrap(),
        SafeTensors::deserialize(&exported).unwrap(),
    );
    let mut names_a = a.names();
    let mut names_b = b.names();
    names_a.sort();
    names_b.sort();
    assert_eq!(
        names_a, names_b,
        "same tensor names as PyTorch's state_dict"
    );
    for name in names_a {
        let (x, y) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
        assert_eq!(x.dtype(), y.dtype(), "{name}");
        assert_eq!(x.shape(), y.shape(), "{name}");
        assert_eq!(x.data(), y.data(), "{name} changed in the round trip");
    }
    let back = network_from_torch(&exported, &net.spec, 4).unwrap();
    assert_eq!(back.state(), net.state());
}

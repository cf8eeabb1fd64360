//! The project's default model (`models/paper-m4.lsq8`, a trained `paper` network with m = 4,
//! embedded by the firmware and used by `classify`) still loads with the current format, fits
//! the size budget, classifies MNIST test digits well, and agrees with the firmware's test
//! vectors (`firmware-demo/digits.bin`).

use std::path::{Path, PathBuf};

use infer_core::Model;
use lsoftmax_trainer::firmware_data::{model_fingerprint, read_firmware_digits};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn default_model() -> Vec<u8> {
    let path = root().join("models/paper-m4.lsq8");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn default_model_loads_and_fits_the_budget() {
    let bytes = default_model();
    let model =
        Model::from_bytes(&bytes).expect("the default model must load with the current format");
    assert_eq!(model.input_hw(), 28);
    assert_eq!(model.classes(), 10);
    assert_eq!(model.margin(), 4);
    assert!(
        bytes.len() <= 560_000,
        "model file {} bytes > 560 KB",
        bytes.len()
    );
    assert!(
        model.arena_bytes() <= 100_000,
        "arena {} bytes > 100 KB",
        model.arena_bytes()
    );
}

#[test]
fn firmware_test_vectors_match_the_default_model() {
    let bytes = default_model();
    let model = Model::from_bytes(&bytes).unwrap();
    let file = root().join("firmware-demo/digits.bin");
    let digits = read_firmware_digits(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        digits.model_fingerprint,
        model_fingerprint(&bytes),
        "{} was made for another model: rerun `lsoftmax firmware-digits`",
        file.display()
    );
    assert!(digits.digits.len() >= 100);
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut correct = 0;
    for d in &digits.digits {
        let p = model.classify(&d.pixels, &mut arena, None).unwrap();
        assert_eq!(p.class, d.expected as usize, "digit {}", d.index);
        correct += usize::from(p.class == d.label as usize);
    }
    // A trained model, not a random one.
    assert!(
        correct * 100 >= digits.digits.len() * 95,
        "{correct}/{} correct",
        digits.digits.len()
    );
}

//! The whole pipeline on real MNIST: train `tiny` with the margin head (m = 4), check it
//! learned, export it, and check that the weights survive export -> bytes -> infer-core with the
//! predictions intact:
//! - `tiny` reaches >= 98.5 % test accuracy in two epochs;
//! - infer-core's predictions equal, bit for bit (class and integer head dot products), the
//!   trainer-side integer simulation on every one of the 10,000 test digits;
//! - int8 test accuracy is within 0.1 points of the f32 checkpoint's.
//!
//! Needs the data: fetched into the workspace's `data/mnist` (or $LSOFTMAX_DATA) on first use.

use std::path::PathBuf;

use infer_core::Model;
use lsoftmax_trainer::arch::ArchSpec;
use lsoftmax_trainer::checkpoint::Checkpoint;
use lsoftmax_trainer::deploy;
use lsoftmax_trainer::train::{evaluate, run, RunOptions, RunPaths, TrainConfig, Trainer};

fn data_dir() -> PathBuf {
    std::env::var_os("LSOFTMAX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"))
}

#[test]
fn train_tiny_export_and_run_on_infer_core() {
    lsoftmax_trainer::gemm::use_single_threaded_blas();
    let data = mnist::load_or_fetch(&data_dir()).expect("MNIST");

    // 1. Train.
    let mut cfg = TrainConfig::seed_recipe(ArchSpec::preset("tiny").unwrap(), 4);
    cfg.epochs = 2;
    cfg.batch = 128;
    cfg.lr = 0.05;
    cfg.lr_steps = vec![1];
    let dir = std::env::temp_dir().join(format!("lsoftmax-pipeline-{}", std::process::id()));
    let mut t = Trainer::new(cfg).unwrap();
    let eval = run(
        &mut t,
        &data,
        &dir,
        &RunOptions {
            progress: false,
            stop_after: None,
            precise_bn: 0,
        },
    )
    .unwrap()
    .unwrap();
    eprintln!(
        "tiny m=4, 2 epochs: f32 test accuracy {:.2}%",
        eval.accuracy
    );
    assert_eq!(eval.count, 10_000);
    assert!(
        eval.accuracy >= 98.5,
        "test accuracy {:.2}% < 98.5%",
        eval.accuracy
    );

    // 2. Reload the checkpoint from disk (what `export` does) and quantize.
    let ck = Checkpoint::load(&RunPaths::new(&dir).checkpoint).unwrap();
    let mut net = Trainer::from_checkpoint(ck).unwrap().net;
    assert_eq!(
        evaluate(&mut net, &data.test, None),
        eval,
        "checkpoint reload changed the network"
    );
    let calib = deploy::calibration_images(&data.train, deploy::DEFAULT_CALIBRATION_IMAGES);
    let q = deploy::export(&net, &calib, None).unwrap();
    let bytes = q.to_bytes().unwrap();

    // 3. Bytes -> infer-core, against the independent integer simulation, on every test digit.
    let model = Model::from_bytes(&bytes).unwrap();
    let mut arena = vec![0u8; model.arena_bytes()];
    let mut correct = 0;
    for i in 0..data.test.len() {
        let img = data.test.image(i);
        let p = model.classify(img, &mut arena, None).unwrap();
        let s = lsoftmax_quantize::simulate(&q, img).unwrap();
        assert_eq!(
            p.class, s.class,
            "digit {i}: infer-core and the simulation disagree"
        );
        assert_eq!(
            &p.dots[..p.classes],
            &s.dots[..],
            "digit {i}: head dot products differ"
        );
        correct += usize::from(p.class == data.test.label(i) as usize);
    }
    let int8_acc = 100.0 * correct as f64 / data.test.len() as f64;
    eprintln!("int8 (infer-core) test accuracy {int8_acc:.2}%");
    assert!(
        (int8_acc - eval.accuracy).abs() <= 0.1,
        "int8 {int8_acc:.2}% vs f32 {:.2}%",
        eval.accuracy
    );

    // The parallel evaluation used by `eval --model` agrees.
    let e = deploy::evaluate_model(&model, &data.test, None, None).unwrap();
    assert!((e.accuracy - int8_acc).abs() < 1e-9);
    std::fs::remove_dir_all(&dir).ok();
}

//! The `tiny` preset learns real MNIST: two epochs with the margin head (m = 4) reaches at least 98.5 %
//! test accuracy. Needs the data (fetched into the workspace's `data/mnist`, or $LSOFTMAX_DATA).

use std::path::PathBuf;

use lsoftmax_trainer::arch::ArchSpec;
use lsoftmax_trainer::train::{run, RunOptions, TrainConfig, Trainer};

fn data_dir() -> PathBuf {
    std::env::var_os("LSOFTMAX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"))
}

#[test]
fn tiny_reaches_98_5_percent_on_mnist() {
    let data = mnist::load_or_fetch(&data_dir()).expect("MNIST");
    let mut cfg = TrainConfig::seed_recipe(ArchSpec::preset("tiny").unwrap(), 4);
    cfg.epochs = 2;
    cfg.batch = 128;
    cfg.lr = 0.05;
    cfg.lr_steps = vec![1];
    let mut t = Trainer::new(cfg).unwrap();
    let dir = std::env::temp_dir().join(format!("lsoftmax-tiny-{}", std::process::id()));
    let eval = run(
        &mut t,
        &data,
        &dir,
        &RunOptions {
            progress: false,
            stop_after: None,
        },
    )
    .unwrap()
    .unwrap();
    eprintln!("tiny m=4, 2 epochs: test accuracy {:.2}%", eval.accuracy);
    assert_eq!(eval.count, 10_000);
    assert!(
        eval.accuracy >= 98.5,
        "test accuracy {:.2}% < 98.5%",
        eval.accuracy
    );
    std::fs::remove_dir_all(&dir).ok();
}

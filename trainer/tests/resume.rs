//! `--resume` after an interrupted run gives exactly the weights of an uninterrupted run, and a
//! run is deterministic for a given seed.

use lsoftmax_trainer::arch::ArchSpec;
use lsoftmax_trainer::checkpoint::Checkpoint;
use lsoftmax_trainer::train::{run, RunOptions, RunPaths, TrainConfig, Trainer};
use mnist::Mnist;

mod common;
use common::synthetic;

fn config() -> TrainConfig {
    let mut c = TrainConfig::seed_recipe(ArchSpec::preset("tiny").unwrap(), 3);
    c.epochs = 3;
    c.batch = 32;
    c.lr = 0.05;
    c.lr_steps = vec![2];
    c.seed = 11;
    c.log_every = 5;
    c
}

#[test]
fn resume_after_interruption_is_bit_exact() {
    let data = Mnist {
        train: synthetic(320, 1),
        test: synthetic(100, 2),
    };
    let tmp = std::env::temp_dir().join(format!("lsoftmax-resume-{}", std::process::id()));
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let quiet = |stop_after| RunOptions {
        progress: false,
        stop_after,
        precise_bn: 0,
    };

    let mut straight = Trainer::new(config()).unwrap();
    run(&mut straight, &data, &a, &quiet(None)).unwrap();

    let mut first = Trainer::new(config()).unwrap();
    run(&mut first, &data, &b, &quiet(Some(1))).unwrap();
    assert_eq!(first.epochs_done, 1);
    drop(first);
    let ck = Checkpoint::load(&RunPaths::new(&b).checkpoint).unwrap();
    assert_eq!(ck.epochs_done, 1);
    let mut resumed = Trainer::from_checkpoint(ck).unwrap();
    run(&mut resumed, &data, &b, &quiet(None)).unwrap();

    let (ca, cb) = (
        Checkpoint::load(&RunPaths::new(&a).checkpoint).unwrap(),
        Checkpoint::load(&RunPaths::new(&b).checkpoint).unwrap(),
    );
    assert_eq!(ca.epochs_done, 3);
    assert_eq!(ca.tensors, cb.tensors, "weights differ after resume");
    assert_eq!(ca.momentum, cb.momentum);
    assert_eq!(ca.lambda, cb.lambda);
    // The training did something: weights moved from their initial values and the test
    // accuracy on the synthetic task beats chance by far.
    assert_ne!(
        ca.tensors,
        Trainer::new(config()).unwrap().checkpoint().tensors
    );
    assert!(
        ca.history.last().unwrap().test_acc > 50.0,
        "{:?}",
        ca.history
    );
    // The resumed log holds each epoch exactly once.
    let log = std::fs::read_to_string(RunPaths::new(&b).log).unwrap();
    let epochs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"type\":\"epoch\""))
        .collect();
    assert_eq!(epochs.len(), 3, "{log}");
    // Each epoch records what trained it.
    for e in &epochs {
        let v: serde_json::Value = serde_json::from_str(e).unwrap();
        assert_eq!(v["device"], "CPU", "{e}");
    }
    // ... and one header line, first, describing the run.
    let headers = log
        .lines()
        .filter(|l| l.contains("\"type\":\"header\""))
        .count();
    assert_eq!(headers, 1, "{log}");
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "header", "{log}");
    assert_eq!(first["margin"], 3);
    assert_eq!(first["epochs"], 3);
    assert_eq!(first["arch"], "tiny");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn same_seed_same_weights_different_seed_different_weights() {
    let data = Mnist {
        train: synthetic(128, 3),
        test: synthetic(50, 4),
    };
    let tmp = std::env::temp_dir().join(format!("lsoftmax-det-{}", std::process::id()));
    let mut cfg = config();
    cfg.epochs = 1;
    let train = |cfg: TrainConfig, dir: &str| {
        let mut t = Trainer::new(cfg).unwrap();
        run(
            &mut t,
            &data,
            &tmp.join(dir),
            &RunOptions {
                progress: false,
                stop_after: None,
                precise_bn: 0,
            },
        )
        .unwrap();
        t.checkpoint().tensors
    };
    let a = train(cfg.clone(), "a");
    let b = train(cfg.clone(), "b");
    assert_eq!(a, b);
    cfg.seed += 1;
    assert_ne!(a, train(cfg, "c"));
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn checkpoint_rejects_damage_with_clear_errors() {
    let t = Trainer::new(config()).unwrap();
    let bytes = t.checkpoint().to_bytes();
    assert_eq!(Checkpoint::from_bytes(&bytes, "x").unwrap(), t.checkpoint());
    let mut bad = bytes.clone();
    bad[100] ^= 1;
    assert!(Checkpoint::from_bytes(&bad, "x.bin")
        .unwrap_err()
        .to_string()
        .contains("damaged"));
    assert!(Checkpoint::from_bytes(&bytes[..bytes.len() / 2], "x.bin")
        .unwrap_err()
        .to_string()
        .contains("damaged"));
    assert!(
        Checkpoint::from_bytes(b"hello world, not a checkpoint", "x.bin")
            .unwrap_err()
            .to_string()
            .contains("not a checkpoint")
    );
}

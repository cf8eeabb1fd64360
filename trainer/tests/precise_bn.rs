//! `train --precise-bn`: the BatchNorm statistics are recomputed after each epoch from the
//! final weights, the training itself (weights, momentum, lambda) is exactly that of a plain run.

use lsoftmax_trainer::arch::ArchSpec;
use lsoftmax_trainer::checkpoint::Checkpoint;
use lsoftmax_trainer::train::{recompute_bn, run, RunOptions, RunPaths, TrainConfig, Trainer};
use mnist::Mnist;

mod common;
use common::synthetic;

fn is_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

#[test]
fn precise_bn_changes_only_the_running_statistics() {
    let data = Mnist {
        train: synthetic(256, 5),
        test: synthetic(100, 6),
    };
    let tmp = std::env::temp_dir().join(format!("lsoftmax-precise-bn-{}", std::process::id()));
    let mut cfg = TrainConfig::seed_recipe(ArchSpec::preset("tiny").unwrap(), 2);
    cfg.epochs = 2;
    cfg.batch = 32;
    cfg.lr = 0.05;
    cfg.seed = 4;
    let train = |precise_bn: usize, dir: &str| {
        let mut t = Trainer::new(cfg.clone()).unwrap();
        let opts = RunOptions {
            progress: false,
            stop_after: None,
            precise_bn,
        };
        run(&mut t, &data, &tmp.join(dir), &opts).unwrap();
        t
    };
    let plain = train(0, "plain");
    let precise = train(96, "precise");
    let (a, b) = (plain.checkpoint(), precise.checkpoint());
    assert_eq!(a.momentum, b.momentum);
    assert_eq!(a.lambda, b.lambda);
    let mut stats_differ = 0;
    for ((name, x), (_, y)) in a.tensors.iter().zip(&b.tensors) {
        if is_stat(name) {
            stats_differ += usize::from(x != y);
        } else {
            assert_eq!(x, y, "{name}: training changed");
        }
    }
    assert!(stats_differ > 0, "no running statistic was recomputed");

    // The saved statistics are exactly those recomputed from the final weights, in the
    // training batch size (96 images: 3 batches of 32).
    let mut net = plain.net.clone();
    assert_eq!(recompute_bn(&mut net, &data.train, 96, 32), 3);
    let expected = net.state();
    let saved = Checkpoint::load(&RunPaths::new(&tmp.join("precise")).checkpoint).unwrap();
    assert_eq!(saved.tensors, expected);

    // The log says how the statistics were made; a plain run's header has no such field.
    let header = |dir: &str| -> serde_json::Value {
        let log = std::fs::read_to_string(RunPaths::new(&tmp.join(dir)).log).unwrap();
        serde_json::from_str(log.lines().next().unwrap()).unwrap()
    };
    assert_eq!(header("precise")["precise_bn"], 96);
    assert!(header("plain").get("precise_bn").is_none());
    std::fs::remove_dir_all(&tmp).ok();
}

//! `visualize` on a tiny budget (synthetic digits: no data set needed), and `report` / `plot`
//! on the fixture logs in `tests/fixtures/logs`.

use std::path::{Path, PathBuf};

use lsoftmax_trainer::train::RunPaths;
use lsoftmax_trainer::viz::fig2::{visualize, Provenance, VisualizeConfig};
use lsoftmax_trainer::viz::logs::{read_log, read_logs, HeaderSource};
use lsoftmax_trainer::viz::{curves, report};
use mnist::Mnist;

mod common;
use common::synthetic;

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut dec = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; dec.output_buffer_size().unwrap()];
    let info = dec.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(name)
}

#[test]
fn visualize_tiny_budget_writes_a_decodable_figure_and_sane_angles() {
    let data = Mnist {
        train: synthetic(256, 21),
        test: synthetic(150, 22),
    };
    let tmp = std::env::temp_dir().join(format!("lsoftmax-viz-{}", std::process::id()));
    let mut cfg = VisualizeConfig::new();
    cfg.margins = vec![1, 4];
    cfg.batches = Some(3);
    cfg.batch = 16;
    cfg.test_limit = Some(120);
    cfg.runs_dir = tmp.join("runs");
    cfg.out = tmp.join("out/fig2.png");
    cfg.progress = false;

    let results = visualize(&cfg, &data).unwrap();
    assert_eq!(results.len(), 2);
    for (r, m) in results.iter().zip([1, 4]) {
        assert_eq!(r.margin, m);
        assert_eq!(r.provenance, Provenance::Trained);
        assert_eq!(r.epochs, 1);
        assert_eq!(r.train_images, Some(48));
        let s = r.stats;
        assert_eq!(s.count, 120);
        assert_eq!(r.features.points.len(), 120);
        assert!((0.0..=100.0).contains(&s.accuracy), "{s:?}");
        assert!(s.mean_angle_deg.is_finite() && (0.0..=180.0).contains(&s.mean_angle_deg));
        // Ten directions around a circle: some neighbours are at most 36 degrees apart.
        let g = s.min_gap.gap_deg;
        assert!(g.is_finite() && (0.0..=36.0 + 1e-9).contains(&g), "{s:?}");
        assert_ne!(s.min_gap.pair.0, s.min_gap.pair.1);
        // The run directory keeps the checkpoint and a log with a header naming the margin.
        let log = read_log(&RunPaths::new(&cfg.run_dir(m)).log).unwrap();
        assert_eq!(log.header_source, HeaderSource::Log);
        assert_eq!((log.header.arch.as_str(), log.header.margin), ("fig2", m));
        assert_eq!(log.epochs.len(), 1);
    }

    // One PNG, two panels side by side, not blank, small.
    let (w, h, rgb) = decode_png(&cfg.out);
    assert_eq!((w, h), (1200, 500));
    let coloured = rgb
        .chunks(3)
        .filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 60)
        .count();
    assert!(coloured > 500, "only {coloured} coloured pixels");
    assert!(std::fs::metadata(&cfg.out).unwrap().len() < 400_000);
    let table = std::fs::read_to_string(tmp.join("out/fig2-angles.md")).unwrap();
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| 1 |") || l.starts_with("| 4 |"))
            .count(),
        2,
        "{table}"
    );

    // A second call reuses the finished runs and gives the same numbers.
    let again = visualize(&cfg, &data).unwrap();
    for (a, b) in results.iter().zip(&again) {
        assert_eq!(b.provenance, Provenance::Reused);
        assert_eq!(a.stats, b.stats);
    }
    // Drawing another test subset reuses the runs too.
    let mut subset = cfg.clone();
    subset.test_limit = Some(60);
    let sub = visualize(&subset, &data).unwrap();
    assert!(sub
        .iter()
        .all(|r| r.provenance == Provenance::Reused && r.stats.count == 60));
    // Another configuration in the same run directory is refused, not silently mixed.
    let mut other = cfg.clone();
    other.lr = 0.02;
    let err = visualize(&other, &data).unwrap_err().to_string();
    assert!(
        err.contains("another configuration") && err.contains("--retrain"),
        "{err}"
    );
    other.retrain = true;
    other.margins = vec![4];
    let retrained = visualize(&other, &data).unwrap();
    assert_eq!(retrained[0].provenance, Provenance::Trained);
    // Bad settings are named.
    let mut bad = cfg.clone();
    bad.margins = vec![0];
    assert!(visualize(&bad, &data)
        .unwrap_err()
        .to_string()
        .contains("margin 0"));
    bad.margins = vec![2, 2];
    assert!(visualize(&bad, &data)
        .unwrap_err()
        .to_string()
        .contains("twice"));
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn report_reproduces_the_expected_table() {
    let logs = read_logs(&[fixture("paper-m4.jsonl"), fixture("fig2-m2.jsonl")]).unwrap();
    let md = report::report_markdown(&logs);
    let expected = "\
| run | network | m | epochs trained | final test acc. | best test acc. | seed | paper | schedule |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |
| paper-m4 | paper | 4 | 3 | 98.60 % | 98.60 % | 99.61 % | 99.69 % | shortened schedule (3 epochs) |
| fig2-m2 | fig2 | 2 | 2 | 96.88 % | 97.13 % | 99.60 % | 99.68 % | shortened schedule (2 epochs); `fig2` network, not `paper`; batch 64; lr 0.01; constant lr; weight decay 0 |

Seed: the seed implementation's reported MNIST test accuracies (`paper` network, its recipe, 100 epochs). Paper: Liu et al., ICML 2016, MNIST test error rates as accuracies (m = 1 is plain softmax). Only runs marked \"full recipe\" are comparable with them.
";
    assert_eq!(md, expected, "got:\n{md}");
}

/// Logs that record what trained each epoch get a "trained on" column; a log without those
/// records shows a dash there.
#[test]
fn report_names_what_trained_each_run() {
    let logs = read_logs(&[fixture("paper-gpu-m1.jsonl"), fixture("paper-m4.jsonl")]).unwrap();
    let md = report::report_markdown(&logs);
    let expected = "\
| run | network | m | epochs trained | final test acc. | best test acc. | seed | paper | schedule | trained on |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |
| paper-gpu-m1 | paper | 1 | 3 | 98.55 % | 98.55 % | 99.37 % | 99.60 % | unfinished (3 of 100 epochs) | CPU (1), NVIDIA H200, fp32 (2–3) |
| paper-m4 | paper | 4 | 3 | 98.60 % | 98.60 % | 99.61 % | 99.69 % | shortened schedule (3 epochs) | – |
";
    assert!(md.starts_with(expected), "got:\n{md}");
}

#[test]
fn bad_logs_give_clear_errors() {
    let err = |p: PathBuf| format!("{:#}", read_log(&p).unwrap_err());
    let missing = err(fixture("nope.jsonl"));
    assert!(missing.contains("nope.jsonl"), "{missing}");
    let empty = err(fixture("no-epochs.jsonl"));
    assert!(empty.contains("no finished epoch"), "{empty}");
    // A log from before headers existed, with no checkpoint beside it: the margin is unknown.
    let old = err(fixture("old-run/log.jsonl"));
    assert!(old.contains("margin is unknown"), "{old}");
    assert_eq!(
        lsoftmax_trainer::viz::logs::label_of(&fixture("old-run/log.jsonl")),
        "old-run"
    );
    // Not a log at all.
    let tmp = std::env::temp_dir().join(format!("lsoftmax-badlog-{}.jsonl", std::process::id()));
    std::fs::write(&tmp, "{\"type\":\"epoch\"}\nhello\n").unwrap();
    let junk = err(tmp.clone());
    assert!(
        junk.contains("line 1") && junk.contains("not a line"),
        "{junk}"
    );
    std::fs::remove_file(&tmp).ok();
    assert!(read_logs(&[]).unwrap_err().to_string().contains("no log"));
}

#[test]
fn plot_draws_the_fixture_curves() {
    let logs = read_logs(&[fixture("paper-m4.jsonl"), fixture("fig2-m2.jsonl")]).unwrap();
    let out = std::env::temp_dir().join(format!("lsoftmax-curves-{}/c.png", std::process::id()));
    let size = curves::plot(&logs, &out).unwrap();
    assert_eq!(size as u64, std::fs::metadata(&out).unwrap().len());
    let (w, h, rgb) = decode_png(&out);
    assert_eq!((w, h), (curves::WIDTH, curves::HEIGHT));
    // Both runs' colours appear (tab10 blue and orange).
    let has = |c: [u8; 3]| rgb.chunks(3).any(|p| p == c);
    assert!(has([0x1f, 0x77, 0xb4]) && has([0xff, 0x7f, 0x0e]));
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

//! A markdown table of final test accuracies per run, beside the seed's and the paper's MNIST
//! figures, with every departure from the full recipe spelled out.

use std::fmt::Write as _;

use super::logs::RunLog;
use crate::arch::ArchSpec;
use crate::train::{EpochStats, RunHeader, TrainConfig};

/// The seed implementation's test accuracies (percent) for m = 1, 2, 3, 4 (`paper` network,
/// its recipe, 100 epochs).
pub const SEED_ACC: [f64; 4] = [99.37, 99.60, 99.56, 99.61];
/// The paper's MNIST test accuracies (percent, 100 minus its error rates) for m = 1 (plain
/// softmax), 2, 3, 4.
pub const PAPER_ACC: [f64; 4] = [99.60, 99.68, 99.69, 99.69];
/// Epochs of the full recipe.
pub const FULL_EPOCHS: u32 = 100;

/// A reference figure for margin `m`, formatted, or a dash when there is none.
fn reference(table: &[f64; 4], m: u32) -> String {
    (m as usize)
        .checked_sub(1)
        .and_then(|i| table.get(i))
        .map_or("–".to_string(), |a| format!("{a:.2} %"))
}

/// "1 epoch", "6 epochs".
fn epochs(n: u32) -> String {
    format!("{n} epoch{}", if n == 1 { "" } else { "s" })
}

/// How a run departs from the full recipe (`paper` network, the seed's recipe, 100 epochs, all
/// images); "full recipe" when it does not. A run planned for fewer epochs than the recipe is a
/// "shortened schedule"; one whose log stops before its own planned epochs (still training, or
/// stopped to be resumed) is "unfinished", so a full-recipe run half way through is not taken
/// for a shortened one.
pub fn schedule_note(h: &RunHeader, epochs_trained: u32) -> String {
    let paper = ArchSpec::preset("paper").expect("paper is a preset");
    let recipe = RunHeader::from_config(&TrainConfig::seed_recipe(paper, h.margin));
    let mut notes = Vec::new();
    // A log may run past its header's plan (a resume given a larger --epochs).
    let planned = h.epochs.max(epochs_trained);
    if epochs_trained < planned {
        notes.push(format!(
            "unfinished ({epochs_trained} of {})",
            epochs(planned)
        ));
    }
    if planned < FULL_EPOCHS {
        notes.push(format!("shortened schedule ({})", epochs(planned)));
    }
    if h.arch != recipe.arch {
        notes.push(format!("`{}` network, not `paper`", h.arch));
    }
    if let Some(n) = h.train_limit {
        notes.push(format!("first {n} training images only"));
    }
    if let Some(n) = h.test_limit {
        notes.push(format!("tested on the first {n} test images only"));
    }
    if h.batch != recipe.batch {
        notes.push(format!("batch {}", h.batch));
    }
    if h.lr != recipe.lr {
        notes.push(format!("lr {}", h.lr));
    }
    if h.lr_steps != recipe.lr_steps || (h.lr_gamma != recipe.lr_gamma && !h.lr_steps.is_empty()) {
        if h.lr_steps.is_empty() {
            notes.push("constant lr".to_string());
        } else {
            notes.push(format!("lr x{} at epochs {:?}", h.lr_gamma, h.lr_steps));
        }
    }
    if h.momentum != recipe.momentum {
        notes.push(format!("momentum {}", h.momentum));
    }
    if h.weight_decay != recipe.weight_decay {
        notes.push(format!("weight decay {}", h.weight_decay));
    }
    if h.lambda != recipe.lambda {
        notes.push(format!("lambda {:?}", h.lambda));
    }
    if notes.is_empty() {
        "full recipe".to_string()
    } else {
        notes.join("; ")
    }
}

/// What trained a run, from its epochs' records: each device in order with its epochs when
/// there are several (`CPU (1–3), NVIDIA H200, fp32 (4–100)`), "–" for a log without them.
pub fn trained_on(epochs: &[EpochStats]) -> String {
    // Runs of equal devices: (device, first epoch, last epoch).
    let mut spans: Vec<(&str, u32, u32)> = Vec::new();
    for e in epochs {
        let d = e.device.as_deref().unwrap_or("–");
        match spans.last_mut() {
            Some(last) if last.0 == d => last.2 = e.epoch,
            _ => spans.push((d, e.epoch, e.epoch)),
        }
    }
    match spans.as_slice() {
        [] => "–".to_string(),
        [(d, _, _)] => d.to_string(),
        _ => spans
            .iter()
            .map(|(d, a, b)| {
                if a == b {
                    format!("{d} ({a})")
                } else {
                    format!("{d} ({a}–{b})")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The markdown report of `logs`, one row per log in the order given. A "trained on" column
/// (see [`trained_on`]) comes after the schedule when any log records its device.
pub fn report_markdown(logs: &[RunLog]) -> String {
    let devices = logs
        .iter()
        .any(|l| l.epochs.iter().any(|e| e.device.is_some()));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| run | network | m | epochs trained | final test acc. | best test acc. | seed | paper | schedule |{}",
        if devices { " trained on |" } else { "" }
    );
    let _ = writeln!(
        s,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |{}",
        if devices { " --- |" } else { "" }
    );
    for log in logs {
        let h = &log.header;
        let last = log.last();
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {:.2} % | {:.2} % | {} | {} | {} |",
            log.label,
            h.arch,
            h.margin,
            last.epoch,
            last.test_acc,
            log.best_test_acc(),
            reference(&SEED_ACC, h.margin),
            reference(&PAPER_ACC, h.margin),
            schedule_note(h, last.epoch)
        );
        if devices {
            let _ = write!(s, " {} |", trained_on(&log.epochs));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Seed: the seed implementation's reported MNIST test accuracies (`paper` network, \
         its recipe, {FULL_EPOCHS} epochs). Paper: Liu et al., ICML 2016, MNIST test error rates \
         as accuracies (m = 1 is plain softmax). Only runs marked \"full recipe\" are comparable \
         with them."
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_every_departure() {
        let paper = ArchSpec::preset("paper").unwrap();
        let h = RunHeader::from_config(&TrainConfig::seed_recipe(paper, 4));
        assert_eq!(schedule_note(&h, 100), "full recipe");
        assert_eq!(schedule_note(&h, 45), "unfinished (45 of 100 epochs)");
        let mut short = h.clone();
        short.epochs = 6;
        assert_eq!(schedule_note(&short, 6), "shortened schedule (6 epochs)");
        assert_eq!(
            schedule_note(&short, 2),
            "unfinished (2 of 6 epochs); shortened schedule (6 epochs)"
        );
        short.epochs = 1;
        assert_eq!(schedule_note(&short, 1), "shortened schedule (1 epoch)");
        // More epochs in the log than its header planned: the log counts.
        short.epochs = 3;
        assert_eq!(schedule_note(&short, 5), "shortened schedule (5 epochs)");
        let mut f = h.clone();
        f.arch = "fig2".into();
        f.batch = 64;
        f.lr = 0.01;
        f.lr_steps.clear();
        f.weight_decay = 0.0;
        f.train_limit = Some(640);
        assert_eq!(
            schedule_note(&f, 100),
            "`fig2` network, not `paper`; first 640 training images only; batch 64; lr 0.01; \
             constant lr; weight decay 0"
        );
        assert_eq!(reference(&SEED_ACC, 1), "99.37 %");
        assert_eq!(reference(&PAPER_ACC, 4), "99.69 %");
        assert_eq!(reference(&PAPER_ACC, 5), "–");
        assert_eq!(reference(&PAPER_ACC, 0), "–");
    }

    #[test]
    fn trained_on_names_each_device_with_its_epochs() {
        let epoch = |n: u32, d: Option<&str>| EpochStats {
            device: d.map(String::from),
            ..EpochStats::training(n, 1.0, 1, 2, 0.1, 0.0, 1.0)
        };
        assert_eq!(trained_on(&[]), "–");
        assert_eq!(trained_on(&[epoch(1, None), epoch(2, None)]), "–");
        let gpu = Some("NVIDIA H200, fp32");
        assert_eq!(
            trained_on(&[epoch(1, gpu), epoch(2, gpu)]),
            "NVIDIA H200, fp32"
        );
        assert_eq!(
            trained_on(&[
                epoch(1, Some("CPU")),
                epoch(2, Some("CPU")),
                epoch(3, Some("CPU")),
                epoch(4, gpu),
                epoch(5, gpu)
            ]),
            "CPU (1–3), NVIDIA H200, fp32 (4–5)"
        );
        assert_eq!(
            trained_on(&[epoch(1, None), epoch(2, Some("CPU"))]),
            "– (1), CPU (2)"
        );
    }
}

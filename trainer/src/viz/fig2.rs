//! The paper's Fig. 2: for each margin, train (or reuse) the `fig2` network, whose head sees
//! 2-D features, and draw the test features coloured by class with each class's weight
//! direction as a ray from the origin; plus a table of accuracy and angle statistics.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;

use super::angles::{angle_stats, AngleStats};
use super::draw_err;
use super::features::{class_weights, extract, Features2d};
use super::raster::Raster;
use super::style::{colour, ensure_font, FONT};
use crate::arch::ArchSpec;
use crate::checkpoint::{write_atomic, Checkpoint};
use crate::lambda::LambdaSchedule;
use crate::train::{run, RunOptions, RunPaths, TrainConfig, Trainer};

/// Settings of `lsoftmax visualize`. [`VisualizeConfig::new`] gives the seed's visualisation
/// recipe.
#[derive(Clone, Debug)]
pub struct VisualizeConfig {
    /// Margins, one panel each.
    pub margins: Vec<u32>,
    /// Epochs per margin.
    pub epochs: u32,
    /// Instead of whole epochs, train each margin for only this many batches (one epoch over
    /// the first `batches * batch` training images): a small budget for tests.
    pub batches: Option<usize>,
    /// Mini-batch size.
    pub batch: usize,
    /// Constant learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Seed of every run.
    pub seed: u64,
    /// Use only the first N test images for the figure and the statistics (None: all).
    pub test_limit: Option<usize>,
    /// Where each margin's run directory (`fig2-m<k>`: checkpoint and log) is kept.
    pub runs_dir: PathBuf,
    /// Output PNG; the angle table goes beside it as `<stem>-angles.md`.
    pub out: PathBuf,
    /// Retrain even when a finished checkpoint exists.
    pub retrain: bool,
    /// Show progress bars while training.
    pub progress: bool,
}

impl VisualizeConfig {
    /// The seed's visualisation recipe: margins 1 to 4, batch 64, constant lr 0.01, momentum
    /// 0.9, no weight decay, 10 epochs, seed 0; runs in `runs/visualize`, figure in
    /// `docs/results/fig2.png`.
    pub fn new() -> Self {
        Self {
            margins: vec![1, 2, 3, 4],
            epochs: 10,
            batches: None,
            batch: 64,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 0.0,
            seed: 0,
            test_limit: None,
            runs_dir: PathBuf::from("runs/visualize"),
            out: PathBuf::from("docs/results/fig2.png"),
            retrain: false,
            progress: true,
        }
    }

    /// The training configuration of margin `m`.
    pub fn train_config(&self, m: u32) -> TrainConfig {
        let arch = ArchSpec::preset("fig2").expect("fig2 is a preset");
        let (epochs, train_limit) = match self.batches {
            Some(b) => (1, Some(b * self.batch)),
            None => (self.epochs, None),
        };
        TrainConfig {
            epochs,
            batch: self.batch,
            lr: self.lr,
            lr_gamma: 1.0,
            lr_steps: Vec::new(),
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            lambda: LambdaSchedule::SEED,
            seed: self.seed,
            train_limit,
            test_limit: self.test_limit,
            ..TrainConfig::seed_recipe(arch, m)
        }
    }

    /// Run directory of margin `m`.
    pub fn run_dir(&self, m: u32) -> PathBuf {
        self.runs_dir.join(format!("fig2-m{m}"))
    }

    /// Path of the markdown angle table: `<out stem>-angles.md` beside the PNG.
    pub fn table_path(&self) -> PathBuf {
        table_path(&self.out)
    }

    fn validate(&self) -> Result<()> {
        if self.margins.is_empty() {
            bail!("--margins must name at least one margin");
        }
        if let Some(m) = self.margins.iter().find(|&&m| m < 1) {
            bail!("margin {m} is invalid: margins start at 1 (plain softmax)");
        }
        let mut seen = self.margins.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != self.margins.len() {
            bail!("--margins lists a margin twice: {:?}", self.margins);
        }
        if self.batches == Some(0) {
            bail!("--batches must be at least 1");
        }
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.test_limit == Some(0) {
            bail!("--test-limit must be at least 1");
        }
        Ok(())
    }
}

impl Default for VisualizeConfig {
    fn default() -> Self {
        Self::new()
    }
}

fn table_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fig2".into());
    out.with_file_name(format!("{stem}-angles.md"))
}

/// How a margin's network was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Trained from scratch in this call.
    Trained,
    /// A partial run in the run directory was continued.
    Resumed,
    /// A finished checkpoint was loaded.
    Reused,
}

/// One margin's outcome.
#[derive(Clone, Debug)]
pub struct MarginResult {
    /// Margin m.
    pub margin: u32,
    /// Epochs the network was trained.
    pub epochs: u32,
    /// Training images seen per epoch.
    pub train_images: Option<usize>,
    /// How the network was obtained.
    pub provenance: Provenance,
    /// Accuracy and angle statistics on the test features.
    pub stats: AngleStats,
    /// The test features drawn.
    pub features: Features2d,
    /// The class weight vectors drawn as rays.
    pub weights: Vec<[f64; 2]>,
}

/// Trains margin `m` in its run directory, or loads a finished checkpoint of the same
/// configuration from there.
fn train_or_load(
    cfg: &VisualizeConfig,
    m: u32,
    data: &mnist::Mnist,
) -> Result<(Trainer, Provenance)> {
    let dir = cfg.run_dir(m);
    let paths = RunPaths::new(&dir);
    let want = cfg.train_config(m);
    let opts = RunOptions {
        progress: cfg.progress,
        stop_after: None,
        precise_bn: 0,
    };
    if cfg.retrain && paths.checkpoint.exists() {
        fs::remove_file(&paths.checkpoint)
            .with_context(|| format!("--retrain: removing {}", paths.checkpoint.display()))?;
    }
    if paths.checkpoint.exists() {
        let ck = Checkpoint::load(&paths.checkpoint)?;
        // More epochs extend a finished run; another test subset only changes what is drawn.
        let mut have = ck.config.clone();
        have.epochs = want.epochs;
        have.test_limit = want.test_limit;
        if have != want {
            bail!(
                "{} holds a run with another configuration (margin {}, batch {}, lr {}, seed {}, \
                 train limit {:?}, test limit {:?}); pass --retrain to replace it or choose \
                 another --runs-dir",
                dir.display(),
                ck.config.margin,
                ck.config.batch,
                ck.config.lr,
                ck.config.seed,
                ck.config.train_limit,
                ck.config.test_limit
            );
        }
        if ck.epochs_done > want.epochs {
            bail!(
                "{} holds a run of {} epochs, more than the {} asked for; pass --retrain or \
                 --epochs {}",
                dir.display(),
                ck.epochs_done,
                want.epochs,
                ck.epochs_done
            );
        }
        let mut t = Trainer::from_checkpoint(ck)?;
        if t.epochs_done == want.epochs {
            eprintln!(
                "m = {m}: reusing {} ({} epochs; --retrain to train again)",
                paths.checkpoint.display(),
                t.epochs_done
            );
            return Ok((t, Provenance::Reused));
        }
        eprintln!(
            "m = {m}: continuing {} from epoch {} to {}",
            dir.display(),
            t.epochs_done,
            want.epochs
        );
        t.config.epochs = want.epochs;
        run(&mut t, data, &dir, &opts)?;
        return Ok((t, Provenance::Resumed));
    }
    eprintln!(
        "m = {m}: training fig2 for {} into {}",
        match want.train_limit {
            Some(n) => format!("{} batches of {}", n / want.batch, want.batch),
            None => format!(
                "{} epoch{}, batch {}",
                want.epochs,
                if want.epochs == 1 { "" } else { "s" },
                want.batch
            ),
        },
        dir.display()
    );
    let mut t = Trainer::new(want)?;
    run(&mut t, data, &dir, &opts)?;
    Ok((t, Provenance::Trained))
}

/// Trains or reuses each margin's network, measures its test features and writes the figure
/// (`cfg.out`) and the angle table (`<stem>-angles.md`). Returns one result per margin, in the
/// order given.
pub fn visualize(cfg: &VisualizeConfig, data: &mnist::Mnist) -> Result<Vec<MarginResult>> {
    cfg.validate()?;
    let mut results = Vec::with_capacity(cfg.margins.len());
    for &m in &cfg.margins {
        let (mut t, provenance) = train_or_load(cfg, m, data)?;
        let features = extract(&mut t.net, &data.test, cfg.test_limit)?;
        let weights = class_weights(&t.net)?;
        let stats =
            angle_stats(&features.points, &features.labels, &weights).with_context(|| {
                format!(
                    "m = {m}: no angle statistics (empty test set, a label beyond the {} classes, \
                 or a zero weight vector)",
                    weights.len()
                )
            })?;
        results.push(MarginResult {
            margin: m,
            epochs: t.epochs_done,
            train_images: t.config.train_limit,
            provenance,
            stats,
            features,
            weights,
        });
    }
    draw(&results).and_then(|r| r.save(&cfg.out))?;
    write_atomic(&cfg.table_path(), angle_table(&results).as_bytes())
        .with_context(|| format!("writing {}", cfg.table_path().display()))?;
    Ok(results)
}

/// The angle statistics as a markdown table, one row per margin.
pub fn angle_table(results: &[MarginResult]) -> String {
    let mut s = String::new();
    let count = results.first().map_or(0, |r| r.stats.count);
    let _ = writeln!(
        s,
        "Network `fig2` (2-D features), evaluated on {count} MNIST test digits. Angles in degrees."
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| m | training | test accuracy | mean angle to own class weight | smallest gap between neighbouring class weights |"
    );
    let _ = writeln!(s, "| ---: | --- | ---: | ---: | ---: |");
    for r in results {
        let training = match r.train_images {
            Some(n) => format!("{} epoch(s) on {n} images", r.epochs),
            None => format!("{} epoch(s)", r.epochs),
        };
        let _ = writeln!(
            s,
            "| {} | {training} | {:.2} % | {:.2} | {:.2} (classes {} and {}) |",
            r.margin,
            r.stats.accuracy,
            r.stats.mean_angle_deg,
            r.stats.min_gap.gap_deg,
            r.stats.min_gap.pair.0,
            r.stats.min_gap.pair.1
        );
    }
    s
}

/// Figure layout: panels per row and the size of one panel.
const PANEL_W: u32 = 600;
const PANEL_H: u32 = 500;

/// Draws one panel per margin (two per row) into a raster.
pub fn draw(results: &[MarginResult]) -> Result<Raster> {
    ensure_font();
    let n = results.len().max(1) as u32;
    let cols = n.min(2);
    let rows = n.div_ceil(cols);
    let mut raster = Raster::new(PANEL_W * cols, PANEL_H * rows);
    {
        let root = BitMapBackend::with_buffer(&mut raster.rgb, (raster.width, raster.height))
            .into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let panels = root.split_evenly((rows as usize, cols as usize));
        for (area, r) in panels.iter().zip(results) {
            draw_panel(area, r)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(raster)
}

/// Half-width of the square view: the 99th percentile of the points' largest coordinate, with
/// room around it, so a few outliers do not shrink the picture.
fn view_radius(points: &[[f64; 2]]) -> f64 {
    let mut r: Vec<f64> = points
        .iter()
        .map(|p| p[0].abs().max(p[1].abs()))
        .filter(|v| v.is_finite())
        .collect();
    if r.is_empty() {
        return 1.0;
    }
    r.sort_by(f64::total_cmp);
    let q = r[((r.len() - 1) as f64 * 0.99) as usize];
    if q > 0.0 {
        q * 1.15
    } else {
        1.0
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    r: &MarginResult,
) -> Result<()> {
    let title = format!("m = {}, acc {:.2}%", r.margin, r.stats.accuracy);
    let inner = area
        .margin(6, 0, 0, 0)
        .titled(&title, (FONT, 22).into_font().style(FontStyle::Bold))
        .map_err(draw_err)?;
    // Equal scales on both axes (angles must look like angles): the plotting area is
    // (w - 2 margin - y labels) x (h - 2 margin - x labels) pixels.
    let (margin, xl, yl) = (10u32, 28u32, 42u32);
    let (w, h) = inner.dim_in_pixel();
    let pw = w.saturating_sub(2 * margin + yl).max(1) as f64;
    let ph = h.saturating_sub(2 * margin + xl).max(1) as f64;
    let ry = view_radius(&r.features.points);
    let rx = ry * pw / ph;
    let mut chart = ChartBuilder::on(&inner)
        .margin(margin)
        .x_label_area_size(xl)
        .y_label_area_size(yl)
        .build_cartesian_2d(-rx..rx, -ry..ry)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style((FONT, 13))
        .x_labels(7)
        .y_labels(7)
        .draw()
        .map_err(draw_err)?;
    // Points in test-set order, so no class is painted entirely over another.
    let inside = |p: &[f64; 2]| p[0].abs() < rx && p[1].abs() < ry;
    chart
        .draw_series(
            r.features
                .points
                .iter()
                .zip(&r.features.labels)
                .filter(|(p, _)| inside(p))
                .map(|(p, &y)| Circle::new((p[0], p[1]), 1, colour(y as usize).filled())),
        )
        .map_err(draw_err)?;
    // Weight directions: a dark ray under a coloured one, the class number at the tip.
    let reach = 0.93 * rx.min(ry);
    for (j, w) in r.weights.iter().enumerate() {
        let norm = w[0].hypot(w[1]);
        if !norm.is_finite() || norm <= 0.0 {
            continue;
        }
        let tip = (w[0] / norm * reach, w[1] / norm * reach);
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), tip], BLACK.stroke_width(4)))
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), tip],
                colour(j).stroke_width(2),
            ))
            .map_err(draw_err)?;
        let label = (tip.0 * 1.04, tip.1 * 1.04);
        chart
            .draw_series(std::iter::once(Text::new(
                j.to_string(),
                label,
                (FONT, 16).into_font().style(FontStyle::Bold).color(&BLACK),
            )))
            .map_err(draw_err)?;
    }
    // Legend: one entry per class.
    for j in 0..r.weights.len() {
        let c = colour(j);
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(draw_err)?
            .label(j.to_string())
            .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FONT, 13))
        .margin(6)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

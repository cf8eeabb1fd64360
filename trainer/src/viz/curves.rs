//! Training curves: test accuracy and test loss per epoch, one line per run, two panels.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::draw_err;
use super::logs::RunLog;
use super::raster::Raster;
use super::style::{colour, ensure_font, FONT};

/// Figure size: two panels side by side.
pub const WIDTH: u32 = 1200;
/// Figure height.
pub const HEIGHT: u32 = 500;

/// One panel's data: which metric, its axis label and a per-epoch accessor.
struct Metric {
    title: &'static str,
    value: fn(&crate::train::EpochStats) -> f64,
    /// Clamp the axis top to this (accuracy never exceeds 100).
    top: Option<f64>,
    /// Where the legend goes (away from where the curves usually are).
    legend: SeriesLabelPosition,
}

/// Draws the curves of `logs` into a raster.
pub fn draw(logs: &[RunLog]) -> Result<Raster> {
    ensure_font();
    let mut raster = Raster::new(WIDTH, HEIGHT);
    {
        let root = BitMapBackend::with_buffer(&mut raster.rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let panels = root.split_evenly((1, 2));
        let metrics = [
            Metric {
                title: "test accuracy (%)",
                value: |e| e.test_acc,
                top: Some(100.0),
                legend: SeriesLabelPosition::LowerRight,
            },
            Metric {
                title: "test loss",
                value: |e| e.test_loss,
                top: None,
                legend: SeriesLabelPosition::UpperRight,
            },
        ];
        for (area, metric) in panels.iter().zip(&metrics) {
            draw_panel(area, logs, metric)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(raster)
}

/// Draws the curves and writes them as PNG to `out`; returns the file size.
pub fn plot(logs: &[RunLog], out: &Path) -> Result<usize> {
    draw(logs)?.save(out)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    logs: &[RunLog],
    metric: &Metric,
) -> Result<()> {
    let values: Vec<f64> = logs
        .iter()
        .flat_map(|l| l.epochs.iter().map(metric.value))
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(1e-3 * hi.abs().max(1.0));
    let mut y0 = lo - pad;
    let mut y1 = hi + pad;
    if let Some(top) = metric.top {
        y1 = y1.min(top + pad.min(0.5));
        y0 = y0.min(y1 - 2.0 * pad);
    }
    if metric.top.is_none() {
        y0 = y0.max(0.0);
    }
    let max_epoch = logs
        .iter()
        .filter_map(|l| l.epochs.last())
        .map(|e| e.epoch)
        .max()
        .unwrap_or(1);
    let x1 = max_epoch as f64 + 0.5;
    let mut chart = ChartBuilder::on(area)
        .caption(metric.title, (FONT, 22).into_font().style(FontStyle::Bold))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..x1, y0..y1)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels((max_epoch as usize + 1).min(11))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(draw_err)?;
    for (i, log) in logs.iter().enumerate() {
        let c = colour(i);
        let pts: Vec<(f64, f64)> = log
            .epochs
            .iter()
            .map(|e| (e.epoch as f64, (metric.value)(e)))
            .filter(|p| p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(draw_err)?
            .label(format!("{} (m = {})", log.label, log.header.margin))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(metric.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FONT, 14))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

//! Loss and accuracy curves as PNG files in the run directory.
//!
//! Drawn with plotters' bitmap backend without text: its text rendering needs system fonts
//! (fontconfig/freetype), which a fresh machine may lack. Colours: train blue, valid red; the
//! CSV next to the plots holds the numbers.

use crate::progress::EpochRow;
use plotters::prelude::*;
use std::path::Path;

fn draw(path: &Path, rows: &[EpochRow], value: impl Fn(&EpochRow) -> f64) -> Result<(), Box<dyn std::error::Error>> {
    let series = |split: &str| -> Vec<(f64, f64)> {
        rows.iter().filter(|r| r.split == split && value(r).is_finite()).map(|r| (r.epoch as f64, value(r))).collect()
    };
    let (train, valid) = (series("train"), series("valid"));
    let all: Vec<f64> = train.iter().chain(&valid).map(|p| p.1).collect();
    if all.is_empty() {
        return Ok(());
    }
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let pad = ((hi - lo) * 0.05).max(1e-6);
    let last_epoch = rows.iter().map(|r| r.epoch).max().unwrap_or(1).max(2) as f64;
    let root = BitMapBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root).margin(20).build_cartesian_2d(1.0..last_epoch, (lo - pad)..(hi + pad))?;
    chart.configure_mesh().disable_x_mesh().x_labels(0).y_labels(0).draw()?;
    chart.draw_series(LineSeries::new(train, BLUE.stroke_width(2)))?;
    chart.draw_series(LineSeries::new(valid, RED.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

/// Writes `loss.png` and `accuracy.png` (top-1); failures only warn.
pub fn write_plots(run_dir: &Path, rows: &[EpochRow]) {
    for (name, f) in
        [("loss.png", (|r: &EpochRow| r.loss) as fn(&EpochRow) -> f64), ("accuracy.png", |r: &EpochRow| r.top1)]
    {
        if let Err(e) = draw(&run_dir.join(name), rows, f) {
            eprintln!("warning: {}: {e}", run_dir.join(name).display());
        }
    }
}

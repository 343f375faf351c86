//! Loss and accuracy curves as PNG files in the run directory: axes with ticks and labels, a
//! legend (train, valid, EMA where the run has one), a title with the run directory and the
//! model, and the best epoch marked.
//!
//! Text is drawn with plotters' `ab_glyph` renderer from a font embedded in the binary (a subset
//! of DejaVu Sans, `assets/fonts/`), so plots need no system fonts (fontconfig/freetype), which a
//! fresh machine may lack. The CSV next to the plots holds the numbers.

use crate::progress::EpochRow;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;

/// Width and height of the PNGs in pixels.
pub const PLOT_SIZE: (u32, u32) = (800, 500);

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process.
fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            eprintln!("warning: the embedded plot font could not be read; plots will have no text");
        }
    });
}

/// What the plots say beyond `metrics.csv`.
#[derive(Debug, Clone, Default)]
pub struct PlotContext {
    /// The run directory, as the user named it.
    pub run_dir: String,
    /// The model, e.g. `efficientnet-b0, 10 classes`.
    pub model: String,
    /// The EMA weights' validation top-1 (a fraction), evaluated once at the end of the run.
    pub ema_top1: Option<f64>,
    /// The EMA weights' validation loss, where it is comparable with the curves' (that is, without
    /// label smoothing: the end-of-run evaluation reports plain cross-entropy).
    pub ema_loss: Option<f64>,
    /// `train.label_smoothing`, which the logged losses include.
    pub label_smoothing: f64,
    /// The epoch exported as `best.bpk`; default: the highest validation top-1 (the last of ties).
    pub best_epoch: Option<usize>,
}

/// Which curve: loss, or top-1 accuracy (drawn in %).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Loss,
    Top1,
}

impl Metric {
    fn value(self, r: &EpochRow) -> f64 {
        match self {
            Metric::Loss => r.loss,
            Metric::Top1 => 100.0 * r.top1,
        }
    }
}

/// `text` cut to its last `max` characters (a long run path keeps its informative end).
fn tail(text: &str, max: usize) -> String {
    let n = text.chars().count();
    if n <= max { text.to_string() } else { format!("…{}", text.chars().skip(n - max + 1).collect::<String>()) }
}

/// Draws one plot of `metric` per epoch to `path`: rendered in memory, encoded as PNG and
/// written through [`effnet_config::fsio::write_atomic`] (never through a symlink or a FIFO).
pub fn draw(
    path: &Path,
    rows: &[EpochRow],
    metric: Metric,
    ctx: &PlotContext,
) -> Result<(), Box<dyn std::error::Error>> {
    let (w, h) = PLOT_SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    if !render(&mut rgb, rows, metric, ctx)? {
        // Nothing to plot: no file.
        return Ok(());
    }
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or("plot buffer of the wrong size")?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    effnet_config::fsio::write_atomic(path, &png)?;
    Ok(())
}

/// Draws one plot of `metric` per epoch into an RGB buffer of [`PLOT_SIZE`]; `false` when there
/// is nothing to plot.
fn render(
    rgb: &mut [u8],
    rows: &[EpochRow],
    metric: Metric,
    ctx: &PlotContext,
) -> Result<bool, Box<dyn std::error::Error>> {
    register();
    let series = |split: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.split == split && metric.value(r).is_finite())
            .map(|r| (r.epoch as f64, metric.value(r)))
            .collect()
    };
    let (train, valid) = (series("train"), series("valid"));
    let last_epoch = rows.iter().map(|r| r.epoch).max().unwrap_or(1).max(1);
    let ema = match metric {
        Metric::Loss => ctx.ema_loss,
        Metric::Top1 => ctx.ema_top1.map(|t| 100.0 * t),
    };
    let ema = ema.filter(|v| v.is_finite()).map(|v| (last_epoch as f64, v));
    if train.is_empty() && valid.is_empty() {
        return Ok(false);
    }
    let all: Vec<f64> = train.iter().chain(&valid).chain(&ema).map(|p| p.1).collect();
    let (lo, hi) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let pad = ((hi - lo) * 0.08).max(if metric == Metric::Top1 { 1.0 } else { 1e-3 });
    let (mut y0, mut y1) = (lo - pad, hi + pad);
    if metric == Metric::Top1 {
        (y0, y1) = (y0.max(0.0), y1.min(100.0));
    } else {
        y0 = y0.max(0.0);
    }
    // Some room either side, so the first and last points sit inside the frame. At most one tick
    // per epoch: plotters then picks whole-number steps (1, 2, 5, 10, …).
    let x_range = 0.6..last_epoch as f64 + 0.4;
    let (what, y_desc) = match metric {
        Metric::Loss if ctx.label_smoothing > 0.0 => {
            ("loss", format!("loss (cross-entropy, label smoothing {})", ctx.label_smoothing))
        }
        Metric::Loss => ("loss", "loss (cross-entropy)".to_string()),
        Metric::Top1 => ("top-1 accuracy", "top-1 accuracy (%)".to_string()),
    };
    let title = tail(&format!("{what} · {} · {}", ctx.run_dir, ctx.model), 80);

    let root = BitMapBackend::with_buffer(rgb, PLOT_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(68)
        .build_cartesian_2d(x_range, y0..y1)?;
    // 2.50 → 2.5, 4.00 → 4.
    let y_fmt = |y: &f64| match metric {
        Metric::Loss => format!("{y:.2}").trim_end_matches('0').trim_end_matches('.').to_string(),
        Metric::Top1 => format!("{y:.0}"),
    };
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels(last_epoch.min(10))
        .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.1}") })
        .y_label_formatter(&y_fmt)
        .y_labels(8)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.08))
        .draw()?;

    let teal = RGBColor(0, 150, 110);
    for (points, colour, label) in [(train, BLUE, "train"), (valid.clone(), RED, "valid")] {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))?;
    }
    if let Some(p) = ema {
        chart
            .draw_series(std::iter::once(TriangleMarker::new(p, 7, teal.filled())))?
            .label("EMA (valid, end of run)")
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, teal.filled()));
    }
    // The epoch whose weights are best.bpk: highest validation top-1.
    let valid_rows = || rows.iter().filter(|r| r.split == "valid" && r.top1.is_finite());
    let best = match ctx.best_epoch {
        Some(e) => valid_rows().find(|r| r.epoch == e),
        None => valid_rows().max_by(|a, b| a.top1.total_cmp(&b.top1)),
    };
    if let Some(b) = best {
        let x = b.epoch as f64;
        let grey = BLACK.mix(0.45);
        chart
            .draw_series(LineSeries::new(vec![(x, y0), (x, y1)], grey.stroke_width(1)))?
            .label(format!("best epoch {} (best.bpk, {:.1}% top-1)", b.epoch, 100.0 * b.top1))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1)));
        if let Some(p) = valid.iter().find(|p| p.0 == x) {
            chart.draw_series(std::iter::once(Circle::new(*p, 7, RED.stroke_width(2))))?;
        }
    }
    chart
        .configure_series_labels()
        .position(match metric {
            Metric::Loss => SeriesLabelPosition::UpperRight,
            Metric::Top1 => SeriesLabelPosition::LowerRight,
        })
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.92))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(true)
}

/// Writes `loss.png` and `accuracy.png` (top-1); failures only warn.
pub fn write_plots(run_dir: &Path, rows: &[EpochRow], ctx: &PlotContext) {
    for (name, metric) in [("loss.png", Metric::Loss), ("accuracy.png", Metric::Top1)] {
        if let Err(e) = draw(&run_dir.join(name), rows, metric, ctx) {
            eprintln!("warning: {}: {e}", run_dir.join(name).display());
        }
    }
}

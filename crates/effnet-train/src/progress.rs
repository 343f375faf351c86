//! What the user sees while training, and `metrics.csv`: a burn-train renderer.
//!
//! On a terminal it draws a progress bar with loss, accuracy, learning rate and images/s; off a
//! terminal (CI, pipes) it prints a plain line every `log_every` steps. It aggregates each
//! split's metrics over the epoch and appends one `metrics.csv` row per epoch and split, and it
//! stops the run (through the interrupter) on a NaN or infinite loss.

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, NumericEntry};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation, MetricsRendererTraining,
};
use burn::train::{Interrupter, LearnerSummary};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::watchdog::Heartbeat;

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,split,loss,top1,top5,lr,images_per_sec";

/// One `metrics.csv` row (accuracies as fractions in 0..1).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub split: String,
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    pub lr: Option<f64>,
    pub images_per_sec: f64,
}

impl EpochRow {
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.6},{:.6},{},{:.1}",
            self.epoch,
            self.split,
            self.loss,
            self.top1,
            self.top5,
            self.lr.map_or(String::new(), |l| format!("{l:.6e}")),
            self.images_per_sec
        )
    }

    /// Parses a row written by [`EpochRow::to_csv`].
    pub fn from_csv(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 7 {
            return None;
        }
        Some(Self {
            epoch: f[0].parse().ok()?,
            split: f[1].to_string(),
            loss: f[2].parse().ok()?,
            top1: f[3].parse().ok()?,
            top5: f[4].parse().ok()?,
            lr: f[5].parse().ok(),
            images_per_sec: f[6].parse().ok()?,
        })
    }
}

/// State shared between the renderer (owned by burn-train) and the trainer.
#[derive(Debug, Default)]
pub struct RunLog {
    pub rows: Vec<EpochRow>,
    /// Set when a non-finite loss stopped the run: (epoch, step within the epoch, value).
    pub non_finite: Option<(usize, usize, f64)>,
}

#[derive(Default)]
struct Acc {
    sum: f64,
    count: f64,
    last: f64,
}

/// The renderer.
pub struct Progress {
    csv: PathBuf,
    log: Arc<Mutex<RunLog>>,
    interrupter: Interrupter,
    log_every: usize,
    bar: Option<ProgressBar>,
    names: HashMap<String, String>,
    acc: HashMap<String, Acc>,
    epoch: usize,
    total_epochs: usize,
    split: String,
    items: usize,
    steps: usize,
    started: Instant,
    heartbeat: Option<Heartbeat>,
    /// The k of the top-k accuracy metric (5, or the number of classes when fewer).
    top_k: usize,
}

impl Progress {
    /// A renderer appending to `csv`, stopping `interrupter` on a non-finite loss.
    pub fn new(csv: PathBuf, log: Arc<Mutex<RunLog>>, interrupter: Interrupter, log_every: usize) -> Self {
        Self {
            csv,
            log,
            interrupter,
            log_every,
            bar: None,
            names: HashMap::new(),
            acc: HashMap::new(),
            epoch: 1,
            total_epochs: 0,
            split: String::new(),
            items: 0,
            steps: 0,
            started: Instant::now(),
            heartbeat: None,
            top_k: 5,
        }
    }

    /// Reads burn-train's `TopKAccuracyMetric::new(k)` (registered under its k) into the
    /// `top5` column; k < 5 when there are fewer classes.
    pub fn with_top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Beats `heartbeat` on every finished training or validation step (see [`crate::watchdog`]).
    pub fn with_heartbeat(mut self, heartbeat: Option<Heartbeat>) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    fn record(&mut self, state: MetricState) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
        let MetricState::Numeric(entry, Some(value)) = state else { return };
        let Some(name) = self.names.get(&format!("{:?}", entry.metric_id)).cloned() else { return };
        let (v, n) = match value {
            NumericEntry::Value(v) => (v, 1.0),
            NumericEntry::Aggregated { aggregated_value, count } => (aggregated_value, count as f64),
            NumericEntry::Final(v) => (v, 1.0),
        };
        if name == "Loss" && !v.is_finite() && self.split == "train" {
            self.log.lock().unwrap().non_finite.get_or_insert((self.epoch, self.steps, v));
            self.interrupter.stop(Some("non-finite training loss"));
        }
        let a = self.acc.entry(name).or_default();
        a.sum += v * n;
        a.count += n;
        a.last = v;
    }

    fn mean(&self, name: &str) -> f64 {
        self.acc.get(name).map_or(f64::NAN, |a| a.sum / a.count.max(1.0))
    }

    fn status(&self) -> String {
        let rate = self.items as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let lr = self.acc.get("Learning Rate").map_or(String::new(), |a| format!(" lr {:.3e}", a.last));
        format!(
            "epoch {}/{} {} loss {:.4} top1 {:.2}%{} {:.1} img/s",
            self.epoch,
            self.total_epochs,
            self.split,
            self.mean("Loss"),
            self.mean("Accuracy"),
            lr,
            rate
        )
    }
}

impl MetricsRendererTraining for Progress {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }

    fn on_train_end(&mut self, _summary: Option<LearnerSummary>) -> Result<(), Box<dyn core::error::Error>> {
        Ok(())
    }
}

impl TrainingProgressLogger for Progress {
    fn start(&mut self, total_epochs: usize, starting_epoch: usize, _total_items: Option<usize>, _label: Option<&str>) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch.max(1);
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.acc.clear();
        self.items = 0;
        self.steps = 0;
        self.started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total_items as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
    }

    fn update_split(&mut self, items_processed: usize) {
        // burn-train's multi-device strategy reports each device's share of a step with the
        // step's global item count: one step per new count, images/s over all devices.
        if items_processed == self.items && self.steps > 0 {
            return;
        }
        self.items = items_processed;
        self.steps += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_position(items_processed as u64);
                bar.set_message(self.status());
            }
            None if self.split == "train" && self.steps.is_multiple_of(self.log_every) => {
                eprintln!("{}", self.status())
            }
            None => {}
        }
    }

    fn end_split(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let row = EpochRow {
            epoch: self.epoch,
            split: self.split.clone(),
            loss: self.mean("Loss"),
            // burn-train reports accuracies in percent.
            top1: self.mean("Accuracy") / 100.0,
            top5: self.mean(&format!("Top-K Accuracy @ TopK({})", self.top_k)) / 100.0,
            lr: self.acc.get("Learning Rate").map(|a| a.last),
            images_per_sec: self.items as f64 / secs,
        };
        eprintln!(
            "epoch {}/{} {:<5} loss {:.4} top1 {:.2}% top{} {:.2}% {:.1} img/s",
            row.epoch,
            self.total_epochs,
            row.split,
            row.loss,
            100.0 * row.top1,
            self.top_k,
            100.0 * row.top5,
            row.images_per_sec
        );
        if let Err(e) = append_row(&self.csv, &row) {
            eprintln!("warning: {}: {e}", self.csv.display());
        }
        self.log.lock().unwrap().rows.push(row);
    }

    fn end(&mut self) {}

    fn log_event_training(&mut self, _event: String) {}
}

fn append_row(csv: &PathBuf, row: &EpochRow) -> std::io::Result<()> {
    let new = !csv.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(csv)?;
    if new {
        writeln!(f, "{METRICS_HEADER}")?;
    }
    writeln!(f, "{}", row.to_csv())
}

impl EvaluationProgressLogger for Progress {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRendererEvaluation for Progress {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
}

impl MetricsRenderer for Progress {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(format!("{:?}", definition.metric_id), definition.name.to_string());
    }
}

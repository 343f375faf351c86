//! The files a run leaves besides its checkpoints: `metrics.csv`, `summary.json`, the exported
//! weights and the plots.

use super::{best_valid, io, load_training_checkpoint};
use crate::data::{LoaderSpec, OpenedDataset};
use crate::learner::TrainingModel;
use crate::progress::{EpochRow, METRICS_HEADER};
use crate::trainer::TrainError;
use burn::module::Module;
use burn::prelude::*;
use effnet_config::{Architecture, EffnetConfig};
use serde::Serialize;
use std::path::Path;

/// `summary.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub final_: FinalMetrics,
    pub best: BestMetrics,
    pub epochs: usize,
    pub ema: Option<FinalMetrics>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FinalMetrics {
    pub val_top1: f64,
    pub val_top5: f64,
    pub val_loss: f64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BestMetrics {
    pub val_top1: f64,
    pub epoch: usize,
}

impl Summary {
    fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "final": self.final_, "best": self.best, "epochs": self.epochs });
        if let Some(e) = &self.ema {
            v["ema"] = serde_json::to_value(e).expect("serialisable");
        }
        v
    }
}

/// Writes `text` to a unique temporary beside `path`, then renames it over `path` (see
/// [`effnet_config::fsio::write_atomic`]: only a new path or a regular file is replaced).
pub fn write_atomic(path: &Path, text: &str) -> Result<(), TrainError> {
    effnet_config::fsio::write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// Reads `metrics.csv` rows.
pub fn read_metrics(path: &Path) -> Vec<EpochRow> {
    std::fs::read_to_string(path).unwrap_or_default().lines().skip(1).filter_map(EpochRow::from_csv).collect()
}

/// Starts `metrics.csv` anew, keeping the rows of the epochs a resumed run does not redo.
pub fn restart_metrics(path: &Path, start_epoch: usize) -> Result<(), TrainError> {
    let kept: Vec<EpochRow> = read_metrics(path).into_iter().filter(|r| r.epoch <= start_epoch).collect();
    let mut text = format!("{METRICS_HEADER}\n");
    for r in &kept {
        text.push_str(&r.to_csv());
        text.push('\n');
    }
    write_atomic(path, &text)
}

/// The end-of-run files: `latest.bpk`, `best.bpk` (the best epoch's network), `ema.bpk` with
/// its validation metrics, `summary.json` and the plots.
pub fn write_end_of_run(
    cfg: &EffnetConfig,
    arch: &Architecture,
    run_dir: &Path,
    trained: TrainingModel,
    ds: &OpenedDataset,
    loaders: &LoaderSpec,
    device: &Device,
) -> Result<Summary, TrainError> {
    let rows = read_metrics(&run_dir.join("metrics.csv"));
    let valid: Vec<&EpochRow> = rows.iter().filter(|r| r.split == "valid").collect();
    let last = valid.last().ok_or_else(|| TrainError::Run("no validation results were recorded".into()))?;
    let best = best_valid(&rows).expect("non-empty");
    trained.net.valid().save_weights(&run_dir.join("latest.bpk"))?;
    // burn-train keeps the best-accuracy epoch's checkpoint; export its network.
    let best_ckpt = run_dir.join("checkpoint").join(format!("model-{}.bpk", best.epoch));
    if best_ckpt.exists() {
        let m = load_training_checkpoint(&best_ckpt, arch, cfg.train.ema_decay, device)?;
        m.net.save_weights(&run_dir.join("best.bpk"))?;
    }
    let ema = match &trained.ema {
        Some(ema) => {
            let ema = ema.valid();
            ema.save_weights(&run_dir.join("ema.bpk"))?;
            let (m, _) = crate::evaluate::evaluate(&ema, ds.valid(), loaders, device, effnet_config::Precision::F32);
            Some(FinalMetrics { val_top1: m.top1, val_top5: m.top5, val_loss: m.loss })
        }
        None => None,
    };
    let summary = Summary {
        final_: FinalMetrics { val_top1: last.top1, val_top5: last.top5, val_loss: last.loss },
        best: BestMetrics { val_top1: best.top1, epoch: best.epoch },
        epochs: last.epoch,
        ema,
    };
    write_atomic(&run_dir.join("summary.json"), &serde_json::to_string_pretty(&summary.to_json()).expect("json"))?;
    let plot = crate::plot::PlotContext {
        run_dir: run_dir.display().to_string(),
        model: format!("{}, {} classes", arch.name, arch.num_classes),
        ema_top1: summary.ema.as_ref().map(|e| e.val_top1),
        ema_loss: summary.ema.as_ref().map(|e| e.val_loss).filter(|_| cfg.train.label_smoothing == 0.0),
        label_smoothing: cfg.train.label_smoothing,
        best_epoch: Some(best.epoch),
    };
    crate::plot::write_plots(run_dir, &rows, &plot);
    Ok(summary)
}

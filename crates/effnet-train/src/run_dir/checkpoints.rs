//! burn-train's per-epoch checkpoints in `RUN_DIR/checkpoint/`: which epochs there are, which
//! can be resumed from, which are pruned, and loading one as a network.

use super::read_metrics;
use crate::learner::{StepSettings, TrainingModel};
use crate::progress::EpochRow;
use crate::trainer::TrainError;
use burn::lr_scheduler::LrSchedulerRecord;
use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::prelude::Device;
use burn::store::ModuleRecord;
use burn::train::checkpoint::{CheckpointingAction, CheckpointingStrategy};
use burn::train::metric::store::{Aggregate, Direction, EventStoreClient, Split};
use burn::train::metric::{AccuracyMetric, Metric};
use effnet_config::Architecture;
use effnet_model::EfficientNet;
use std::path::{Path, PathBuf};

pub(super) fn checkpoint_path(run_dir: &Path, kind: &str, epoch: usize) -> PathBuf {
    run_dir.join("checkpoint").join(format!("{kind}-{epoch}.bpk"))
}

/// Epochs with at least one checkpoint file, ascending.
pub(super) fn epochs_on_disk(run_dir: &Path) -> Vec<usize> {
    let mut epochs: Vec<usize> = std::fs::read_dir(run_dir.join("checkpoint"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let (kind, rest) = name.split_once('-')?;
            matches!(kind, "model" | "optim" | "scheduler").then_some(())?;
            rest.strip_suffix(".bpk")?.parse().ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs.dedup();
    epochs
}

/// Epochs whose model, optimizer and scheduler checkpoint files all exist, ascending.
pub fn checkpoint_epochs(run_dir: &Path) -> Vec<usize> {
    epochs_on_disk(run_dir)
        .into_iter()
        .filter(|&e| ["model", "optim", "scheduler"].iter().all(|k| checkpoint_path(run_dir, k, e).is_file()))
        .collect()
}

/// Highest epoch with a complete burn-train checkpoint (model, optimizer and scheduler).
pub fn latest_checkpoint(run_dir: &Path) -> Option<usize> {
    checkpoint_epochs(run_dir).last().copied()
}

/// Reads epoch `epoch`'s three checkpoint files as burn-train will on resume: their headers,
/// tensor tables and sizes (a truncated file is refused), without reading the tensors.
pub fn verify_checkpoint(run_dir: &Path, epoch: usize) -> Result<(), String> {
    let check = |kind: &str, load: &dyn Fn(&Path) -> Result<(), burn::store::RecordError>| {
        let path = checkpoint_path(run_dir, kind, epoch);
        load(&path).map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string())))
    };
    check("model", &|p| ModuleRecord::load(p).map(drop))?;
    check("optim", &|p| OptimizerRecord::load(p).map(drop))?;
    check("scheduler", &|p| LrSchedulerRecord::load(p).map(drop))
}

/// The newest epoch a run can continue from: its checkpoint files load and its validation loss
/// (in `metrics.csv`) is finite. With `warn`, says why each newer epoch was passed over.
pub fn last_good_checkpoint(run_dir: &Path, warn: bool) -> Option<usize> {
    let rows = read_metrics(&run_dir.join("metrics.csv"));
    for epoch in checkpoint_epochs(run_dir).into_iter().rev() {
        if let Some(row) = rows.iter().rev().find(|r| r.split == "valid" && r.epoch == epoch)
            && !row.loss.is_finite()
        {
            if warn {
                eprintln!("warning: epoch {epoch}'s validation loss is {}: not resuming from its checkpoint", row.loss);
            }
            continue;
        }
        match verify_checkpoint(run_dir, epoch) {
            Ok(()) => return Some(epoch),
            Err(e) if warn => eprintln!("warning: {e}; the checkpoint of epoch {epoch} is unusable"),
            Err(_) => {}
        }
    }
    None
}

/// The validation row with the highest top-1 (the earliest of equals, as burn-train's
/// best-epoch checkpointing picks it).
pub fn best_valid(rows: &[EpochRow]) -> Option<&EpochRow> {
    rows.iter().filter(|r| r.split == "valid").fold(None, |best, r| match best {
        Some(b) if b.top1 >= r.top1 => Some(b),
        _ => Some(r),
    })
}

/// burn-train checkpointing for a run directory: save every epoch; keep the last `keep_last`
/// epochs and the best validation top-1 (by burn-train's metric logs and by `metrics.csv`);
/// delete every other epoch found on disk, including those written before a `--resume` (which
/// burn-train's composed strategies never saw, so never deleted).
pub struct KeepLastAndBest {
    run_dir: PathBuf,
    keep_last: usize,
    metric: String,
}

impl KeepLastAndBest {
    /// The strategy for `run_dir`.
    pub fn new(run_dir: &Path, keep_last: usize) -> Self {
        Self { run_dir: run_dir.to_path_buf(), keep_last, metric: AccuracyMetric::new().name().to_string() }
    }
}

impl CheckpointingStrategy for KeepLastAndBest {
    fn checkpointing(&mut self, epoch: usize, store: &EventStoreClient) -> Vec<CheckpointingAction> {
        let mut keep: Vec<usize> =
            store.find_epoch(&self.metric, Aggregate::Mean, Direction::Highest, &Split::Valid).into_iter().collect();
        keep.extend(best_valid(&read_metrics(&self.run_dir.join("metrics.csv"))).map(|r| r.epoch));
        let mut actions = vec![CheckpointingAction::Save];
        for e in epochs_on_disk(&self.run_dir) {
            if e + self.keep_last <= epoch && !keep.contains(&e) {
                actions.push(CheckpointingAction::Delete(e));
            }
        }
        actions
    }
}

/// Epochs with a model checkpoint in `run_dir`, for messages: `epochs 1, 2 (--epoch N)`.
pub fn model_epochs_note(run_dir: &Path) -> String {
    let epochs: Vec<String> = epochs_on_disk(run_dir)
        .into_iter()
        .filter(|&e| checkpoint_path(run_dir, "model", e).is_file())
        .map(|e| e.to_string())
        .collect();
    match epochs.len() {
        0 => "the run has no per-epoch checkpoints".into(),
        _ => format!("the run has per-epoch checkpoints of epochs {} (pick one with --epoch N)", epochs.join(", ")),
    }
}

/// Epoch `epoch`'s model checkpoint in `run_dir`, or an error listing those there are.
pub fn epoch_model_path(run_dir: &Path, epoch: usize) -> Result<PathBuf, TrainError> {
    let path = checkpoint_path(run_dir, "model", epoch);
    if path.is_file() {
        Ok(path)
    } else {
        Err(TrainError::Run(format!("{}: no such checkpoint; {}", path.display(), model_epochs_note(run_dir))))
    }
}

/// `Some(N)` when `path` is burn-train's `checkpoint/model-N.bpk` (a training checkpoint, not
/// a weights file: see [`load_training_checkpoint`]).
pub fn training_checkpoint_epoch(path: &Path) -> Option<usize> {
    let parent = path.parent()?.file_name()?;
    let epoch = path.file_name()?.to_str()?.strip_prefix("model-")?.strip_suffix(".bpk")?.parse().ok()?;
    (parent == "checkpoint").then_some(epoch)
}

/// Loads a burn-train model checkpoint (`checkpoint/model-N.bpk`: the network and, with
/// `ema_decay`, its EMA) onto `device`.
pub fn load_training_checkpoint(
    path: &Path,
    arch: &Architecture,
    ema_decay: Option<f64>,
    device: &Device,
) -> Result<TrainingModel, TrainError> {
    let settings = StepSettings::for_loading(arch, ema_decay);
    // Read whole before anything loads from it: burn-store reads tensors lazily by path, so a
    // checkpoint that a running training prunes meanwhile would fail deep inside the backend.
    let fail = |e: &dyn std::fmt::Display| TrainError::Run(format!("{}: {}", path.display(), one_line(&e.to_string())));
    effnet_config::fsio::check_regular(path).map_err(|e| fail(&e))?;
    let bytes = std::fs::read(path).map_err(|e| fail(&e))?;
    let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| fail(&e))?;
    TrainingModel::new(EfficientNet::new(arch, device), settings, 0).try_load_record(record).map_err(|e| fail(&e))
}

/// The first line of a message, and how many lines were left out (record errors list every
/// tensor, one per line).
fn one_line(message: &str) -> String {
    let mut lines = message.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default().to_string();
    match lines.count() {
        0 => first,
        n => format!("{first} (… {n} more lines)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_row_is_the_earliest_of_equals() {
        let row = |epoch, top1| EpochRow {
            epoch,
            split: "valid".into(),
            loss: 1.0,
            top1,
            top5: 1.0,
            lr: None,
            images_per_sec: 1.0,
        };
        let rows = [row(1, 0.5), row(2, 0.7), row(3, 0.7), row(4, 0.6)];
        assert_eq!(best_valid(&rows).unwrap().epoch, 2);
        assert!(best_valid(&[]).is_none());
    }

    #[test]
    fn one_line_counts_what_it_leaves_out() {
        assert_eq!(one_line("a"), "a");
        assert_eq!(one_line("a\n  b\n  c\n"), "a (… 2 more lines)");
    }
}

//! `effnet train`: one TOML file in, a run directory a user can trust out.
//!
//! ```text
//! run_dir/
//!   config.toml          the resolved config (every default written out)
//!   classes.txt          the training data's class names, line i naming class i
//!   metrics.csv          epoch,split,loss,top1,top5,lr,images_per_sec
//!   summary.json         final/best validation metrics
//!   checkpoint/          burn-train's per-epoch model/optim/scheduler (written atomically)
//!   latest.bpk best.bpk ema.bpk   the network's weights (effnet layout)
//!   train.lock           the PID of the run holding the directory's lock (see crate::run_dir)
//! ```

use crate::build_model;
use crate::data::{self, OpenedDataset};
use crate::devices::{self, Parallelism};
use crate::learner::{StepSettings, TrainingModel};
use crate::optim::{build_optimizer, lr_scheduler, scaled_lr};
use crate::progress::{EpochRow, Progress, RunLog};
use crate::schedule::Schedule;
use crate::watchdog::Watchdog;
use burn::module::Module;
use burn::prelude::*;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric, TopKAccuracyMetric};
use burn::train::{Interrupter, Learner, SupervisedTraining};
use effnet_config::{BackendKind, EffnetConfig, Invalid};
use effnet_model::EfficientNet;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] effnet_config::ConfigError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Weights(#[from] effnet_model::WeightsError),
    /// The OS error is part of the message, not a `source`: error chains (`{:#}`) would print it twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Run(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io { path: path.to_path_buf(), error }
}

/// Where the config came from, for resolving relative paths and naming errors.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub file: PathBuf,
    pub config: EffnetConfig,
}

impl ConfigSource {
    /// Loads and validates a config file.
    pub fn load(file: &Path) -> Result<Self, TrainError> {
        Ok(Self { file: file.to_path_buf(), config: EffnetConfig::load(file)? })
    }

    fn invalid(&self, e: Invalid) -> TrainError {
        TrainError::Config(e.in_file(&self.file))
    }

    /// The directory relative data and weight paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.file.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    fn resolve(&self, p: &str) -> PathBuf {
        data::resolve_path(&self.base_dir(), p)
    }
}

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

pub use crate::devices::device_for;

/// The k of the reported top-k accuracy (`top5` in metrics.csv and summary.json): 5, or the
/// number of classes when there are fewer.
pub fn top_k(num_classes: usize) -> usize {
    num_classes.clamp(1, 5)
}

pub use crate::run_dir::latest_checkpoint;

fn write_atomic(path: &Path, text: &str) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads `metrics.csv` rows.
pub fn read_metrics(path: &Path) -> Vec<EpochRow> {
    std::fs::read_to_string(path).unwrap_or_default().lines().skip(1).filter_map(EpochRow::from_csv).collect()
}

/// Trains as `src` describes into `run_dir`; with `resume`, continues from its latest checkpoint.
pub fn train(src: &ConfigSource, run_dir: &Path, resume: bool) -> Result<Summary, TrainError> {
    train_with(src, run_dir, resume, &|net| net)
}

/// [`train`] with `prepare` applied to the network at the start of each training phase (after
/// `train.init_weights` and the backbone freezing), for changes a config cannot express, such as module flags (the multi-device test holds
/// BatchNorm at its running statistics this way to compare 1 and 2 devices exactly).
pub fn train_with(
    src: &ConfigSource,
    run_dir: &Path,
    resume: bool,
    prepare: &dyn Fn(EfficientNet) -> EfficientNet,
) -> Result<Summary, TrainError> {
    let cfg = &src.config;
    crate::precision::check_training_precision(cfg.runtime.precision, cfg.runtime.backend, cfg.runtime.devices.len())
        .map_err(|e| src.invalid(e))?;
    // Locks the directory and checks a resumed config before anything in it is written.
    let (_lock, start_epoch) = crate::run_dir::begin(run_dir, cfg, resume)?;
    let resolved = crate::config_source::header(&src.file)
        + &toml::to_string_pretty(cfg).map_err(|e| TrainError::Run(e.to_string()))?;
    write_atomic(&run_dir.join("config.toml"), &resolved)?;

    // Started before the devices are connected: connecting to a remote one can hang too.
    let watchdog = cfg.runtime.stall_timeout().map(|timeout| {
        let run_dir = run_dir.to_path_buf();
        let remote = cfg.runtime.backend == BackendKind::Remote;
        Watchdog::start(timeout, move |idle| {
            let resume = match crate::run_dir::last_good_checkpoint(&run_dir, false) {
                Some(e) => format!("Last complete checkpoint: epoch {e} in {}; continue with --resume.", run_dir.display()),
                None => format!("No checkpoint was written yet in {}.", run_dir.display()),
            };
            eprintln!(
                "error: no training or validation step finished in the last {} s (runtime.stall_timeout_s = {}); stopped.{} {resume}",
                idle.as_secs(),
                timeout.as_secs(),
                if remote { " A remote server may have failed or lost its connection: check its log." } else { "" },
            );
            std::process::exit(1);
        })
    });
    let heartbeat = watchdog.as_ref().map(Watchdog::heartbeat);
    let all_devices = devices::devices_for(&cfg.runtime).map_err(|e| src.invalid(e))?;
    let replicas = all_devices.len();
    let parallelism = Parallelism::for_runtime(&cfg.runtime);
    // The main device holds the model between steps, validates and evaluates the EMA.
    let device = all_devices[0].clone();
    let ad = device.clone().autodiff();
    ad.seed(cfg.train.seed);

    let arch = cfg.model.architecture().map_err(|e| src.invalid(e))?;
    let ds: OpenedDataset = data::open_dataset(&cfg.data, &src.base_dir())?;
    if ds.num_classes != arch.num_classes {
        return Err(src.invalid(Invalid::new(
            "model.num_classes",
            arch.num_classes,
            format!("the dataset at {:?} has {} classes", cfg.data.path, ds.num_classes),
        )));
    }
    let classes_file = run_dir.join(crate::classes::CLASSES_FILE);
    crate::classes::write_classes(run_dir, &ds.class_names).map_err(io(&classes_file))?;
    let image_size = cfg.data.image_size.unwrap_or(arch.resolution);
    // `batch` is global; each device's loader batches `batch / replicas` (burn-train gives each
    // device its own loader over a slice of the epoch).
    let batch = cfg.train.batch_size;
    let device_batch = devices::per_device_batch(batch, replicas);
    let train_len = ds.train().dataset.len();
    let valid_len = ds.valid().dataset.len();
    if train_len == 0 || valid_len == 0 {
        return Err(TrainError::Run(format!("{:?}: the train or validation split is empty", cfg.data.path)));
    }
    // A batch of the whole split or more would still scale the LR by the configured batch.
    if batch > train_len {
        return Err(src.invalid(Invalid::new(
            "train.batch_size",
            batch,
            format!("larger than the training split ({train_len} images at {:?})", cfg.data.path),
        )));
    }
    let positions = devices::positions_per_epoch(train_len, replicas);
    if positions == 0 {
        return Err(TrainError::Run(format!(
            "{:?}: {train_len} training images cannot be shared by {replicas} devices",
            cfg.data.path
        )));
    }
    let steps_per_epoch = devices::steps_per_epoch(train_len, batch, replicas, cfg.train.grad_accumulation);
    let total_steps = steps_per_epoch * cfg.train.epochs;

    let net: EfficientNet = build_model(cfg, &ad).map_err(|e| src.invalid(e))?;
    // A resumed run takes every weight from its checkpoint instead.
    let init_weights = cfg.train.init_weights.as_ref().filter(|_| start_epoch == 0).map(|w| src.resolve(w));
    let net = crate::init::init_network(net, &arch, init_weights.as_deref(), cfg.train.head_init, &ad)?;
    let settings = StepSettings {
        label_smoothing: cfg.train.label_smoothing,
        seed: cfg.train.seed,
        ema_decay: cfg.train.ema_decay,
        drop_connect_rate: cfg.model.drop_connect_rate,
        drop_connect_ramp: cfg.train.drop_connect_ramp,
        total_steps,
        summed_gradients: parallelism.summed_replicas(replicas) * cfg.train.grad_accumulation,
        precision: cfg.runtime.precision,
    };
    if replicas > 1 {
        eprintln!(
            "data-parallel on {replicas} {} devices ({}): global batch {batch} = {replicas} × {device_batch}",
            cfg.runtime.backend,
            match parallelism {
                Parallelism::Ddp => "burn DDP, gradients all-reduced (mean)",
                _ => "burn multi, gradients summed on the main device",
            }
        );
    }

    let peak_lr = scaled_lr(&cfg.optim, batch * cfg.train.grad_accumulation);
    let log = Arc::new(Mutex::new(RunLog::default()));
    let csv = run_dir.join("metrics.csv");
    // A resumed run replaces the rows of epochs it is about to redo.
    let kept: Vec<EpochRow> = read_metrics(&csv).into_iter().filter(|r| r.epoch <= start_epoch).collect();
    let mut text = format!("{}\n", crate::progress::METRICS_HEADER);
    for r in &kept {
        text.push_str(&r.to_csv());
        text.push('\n');
    }
    write_atomic(&csv, &text)?;

    // Fine-tuning: the first `freeze_backbone_epochs` train the classifier alone.
    let freeze_until = cfg.train.freeze_backbone_epochs;
    let mut phases = vec![];
    if start_epoch < freeze_until {
        phases.push((start_epoch, freeze_until, true));
    }
    if freeze_until.max(start_epoch) < cfg.train.epochs {
        phases.push((freeze_until.max(start_epoch), cfg.train.epochs, false));
    }
    // burn-train's TopKAccuracyMetric panics for k > classes: top-5 is top-min(5, classes).
    let k = top_k(arch.num_classes);
    let mut trained: Option<TrainingModel> = None;
    for (from, to, frozen) in phases {
        let interrupter = Interrupter::new();
        let renderer = Progress::new(csv.clone(), log.clone(), interrupter.clone(), cfg.train.log_every)
            .with_heartbeat(heartbeat.clone())
            .with_top_k(k);
        if let Some(h) = &heartbeat {
            h.beat();
        }
        let steps_done = from * steps_per_epoch;
        let mut model_net = match trained.take() {
            // burn-train hands the model back in evaluation mode, off the autodiff device.
            Some(m) => m.net.train(),
            None => net.clone(),
        };
        model_net = if frozen { model_net.freeze_backbone() } else { model_net.unfreeze_backbone() };
        let model_net = prepare(model_net);
        let model = TrainingModel::new(model_net, settings.clone(), steps_done);
        let schedule = Schedule::new(&cfg.schedule, peak_lr, cfg.train.epochs, steps_per_epoch);
        let optim = build_optimizer(&cfg.optim, cfg.train.grad_clip_norm);
        let learner = Learner::new(model, optim, lr_scheduler(schedule, cfg.optim.backbone_lr_scale));
        let (train_loader, epochs) = data::train_loader_split(
            &ds,
            &cfg.data,
            image_size,
            device_batch,
            cfg.train.seed,
            &ad,
            positions,
            replicas,
        );
        epochs.set_epoch(from as u64);
        let valid_loader = data::eval_loader(ds.valid(), &cfg.data, image_size, batch, &device);
        let strategy = crate::run_dir::KeepLastAndBest::new(run_dir, 2);
        let mut training = SupervisedTraining::new(run_dir, train_loader, valid_loader)
            .metric_train_numeric(LossMetric::new())
            .metric_valid_numeric(LossMetric::new())
            .metric_train_numeric(AccuracyMetric::new())
            .metric_valid_numeric(AccuracyMetric::new())
            .metric_train_numeric(TopKAccuracyMetric::new(k))
            .metric_valid_numeric(TopKAccuracyMetric::new(k))
            .metric_train_numeric(LearningRateMetric::new())
            .with_default_checkpointers()
            .with_checkpointing_strategy(strategy)
            .with_interrupter(interrupter)
            .with_application_logger(None)
            .renderer(Box::new(renderer))
            .num_epochs(to);
        if replicas > 1 {
            training = training.with_training_strategy(parallelism.strategy(all_devices.clone()).into());
        }
        if cfg.train.grad_accumulation > 1 {
            training = training.grads_accumulation(cfg.train.grad_accumulation);
        }
        if from > 0 {
            training = training.checkpoint(from);
        }
        let result = training.launch(learner);
        // First: a failed data loader also leaves an empty epoch's NaN mean loss behind.
        if let Some(e) = result.error {
            return Err(TrainError::Run(format!("training failed: {e}")));
        }
        if let Some((epoch, step, value)) = log.lock().unwrap().non_finite {
            let last = crate::run_dir::last_good_checkpoint(run_dir, false)
                .map_or("none yet".to_string(), |e| format!("epoch {e}"));
            return Err(TrainError::Run(format!(
                "the training loss became {value} at epoch {epoch}, step {step}; stopped. Last good checkpoint: {last} in {} (lower optim.lr or set train.grad_clip_norm, then --resume)",
                run_dir.display()
            )));
        }
        if let Some(i) = result.interrupted {
            return Err(TrainError::Run(format!("training interrupted: {i:?}")));
        }
        trained = Some(result.model);
    }
    let trained = match trained {
        Some(t) => t,
        // Every epoch was trained before: complete the end-of-run files from the last checkpoint.
        None => {
            let path = run_dir.join("checkpoint").join(format!("model-{start_epoch}.bpk"));
            crate::run_dir::load_training_checkpoint(&path, &arch, cfg.train.ema_decay, &device)?
        }
    };
    // The final evaluation and export beat no steps.
    drop(watchdog);
    finish(cfg, &arch, run_dir, trained, &ds, image_size, &device)
}

fn finish(
    cfg: &EffnetConfig,
    arch: &effnet_config::Architecture,
    run_dir: &Path,
    trained: TrainingModel,
    ds: &OpenedDataset,
    image_size: usize,
    device: &Device,
) -> Result<Summary, TrainError> {
    let rows = read_metrics(&run_dir.join("metrics.csv"));
    let valid: Vec<&EpochRow> = rows.iter().filter(|r| r.split == "valid").collect();
    let last = valid.last().ok_or_else(|| TrainError::Run("no validation results were recorded".into()))?;
    let best = crate::run_dir::best_valid(&rows).expect("non-empty");
    trained.net.valid().save_weights(&run_dir.join("latest.bpk"))?;
    // burn-train keeps the best-accuracy epoch's checkpoint; export its network.
    let best_ckpt = run_dir.join("checkpoint").join(format!("model-{}.bpk", best.epoch));
    if best_ckpt.exists() {
        let m = crate::run_dir::load_training_checkpoint(&best_ckpt, arch, cfg.train.ema_decay, device)?;
        m.net.save_weights(&run_dir.join("best.bpk"))?;
    }
    let ema = match &trained.ema {
        Some(ema) => {
            let ema = ema.valid();
            ema.save_weights(&run_dir.join("ema.bpk"))?;
            let m =
                crate::evaluate::evaluate_net(&ema, ds.valid(), &cfg.data, image_size, cfg.train.batch_size, device);
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

pub(crate) fn settings_for_export() -> StepSettings {
    StepSettings {
        label_smoothing: 0.0,
        seed: 0,
        ema_decay: None,
        drop_connect_rate: 0.0,
        drop_connect_ramp: false,
        total_steps: 1,
        summed_gradients: 1,
        precision: effnet_config::Precision::F32,
    }
}

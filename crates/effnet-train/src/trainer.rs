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

use crate::data::{self, OpenedDataset};
use crate::devices::{self, Parallelism};
use crate::learner::TrainingModel;
use crate::optim::{build_optimizer, lr_scheduler};
use crate::plan::{Phase, RunPlan};
use crate::progress::{Progress, RunLog};
use crate::schedule::Schedule;
use crate::watchdog::Watchdog;
use burn::module::Module;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric, TopKAccuracyMetric};
use burn::train::{Interrupter, Learner, SupervisedTraining};
use effnet_config::{BackendKind, EffnetConfig, Invalid};
use effnet_model::EfficientNet;
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

    pub(crate) fn invalid(&self, e: Invalid) -> TrainError {
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

pub use crate::devices::device_for;

/// The k of the reported top-k accuracy (`top5` in metrics.csv and summary.json): 5, or the
/// number of classes when there are fewer.
pub fn top_k(num_classes: usize) -> usize {
    num_classes.clamp(1, 5)
}

pub use crate::run_dir::{BestMetrics, FinalMetrics, Summary, latest_checkpoint, read_metrics};

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
    // Every default written out, also those another section decides (the family's normalisation):
    // what config.toml records and what a resumed run is compared against.
    let resolved = src.config.resolved();
    let cfg = &resolved;
    crate::precision::check_training_precision(cfg.runtime.precision, cfg.runtime.backend, cfg.runtime.devices.len())
        .map_err(|e| src.invalid(e))?;
    // Locks the directory and checks a resumed config before anything in it is written.
    let (_lock, start_epoch) = crate::run_dir::begin(run_dir, cfg, resume)?;
    let resolved = crate::config_source::header(&src.file)
        + &toml::to_string_pretty(cfg).map_err(|e| TrainError::Run(e.to_string()))?;
    crate::run_dir::write_atomic(&run_dir.join("config.toml"), &resolved)?;

    // Started before the devices are connected: connecting to a remote one can hang too.
    let watchdog = stall_watchdog(cfg, run_dir);
    let heartbeat = watchdog.as_ref().map(Watchdog::heartbeat);
    let all_devices = devices::devices_for(&cfg.runtime).map_err(|e| src.invalid(e))?;
    // The main device holds the model between steps, validates and evaluates the EMA.
    let device = all_devices[0].clone();
    let ad = device.clone().autodiff();
    ad.seed(cfg.train.seed);

    let arch = cfg.model.architecture().map_err(|e| src.invalid(e))?;
    let ds: OpenedDataset = data::open_dataset(&cfg.data, &src.base_dir())?;
    let plan = RunPlan::new(src, arch, &ds, all_devices.len(), start_epoch)?;
    let classes_file = run_dir.join(crate::classes::CLASSES_FILE);
    crate::classes::write_classes(run_dir, &ds.class_names).map_err(io(&classes_file))?;

    let net = EfficientNet::new(&plan.arch, &ad);
    // A resumed run takes every weight from its checkpoint instead.
    let init_weights = cfg.train.init_weights.as_ref().filter(|_| start_epoch == 0).map(|w| src.resolve(w));
    let net = crate::init::init_network(net, &plan.arch, init_weights.as_deref(), cfg.train.head_init, &ad)?;
    if plan.replicas > 1 {
        eprintln!(
            "data-parallel on {} {} devices ({}): global batch {} = {} × {}",
            plan.replicas,
            cfg.runtime.backend,
            match plan.parallelism {
                Parallelism::Ddp => "burn DDP, gradients all-reduced (mean)",
                _ => "burn multi, gradients summed on the main device",
            },
            plan.batch,
            plan.replicas,
            plan.device_batch,
        );
    }

    let log = Arc::new(Mutex::new(RunLog::default()));
    let csv = run_dir.join("metrics.csv");
    crate::run_dir::restart_metrics(&csv, start_epoch)?;

    let mut trained: Option<TrainingModel> = None;
    for Phase { from, to, frozen_backbone } in plan.phases.iter().copied() {
        let interrupter = Interrupter::new();
        let renderer = Progress::new(csv.clone(), log.clone(), interrupter.clone(), cfg.train.log_every)
            .with_heartbeat(heartbeat.clone())
            .with_top_k(plan.top_k);
        if let Some(h) = &heartbeat {
            h.beat();
        }
        let steps_done = from * plan.steps_per_epoch;
        let mut model_net = match trained.take() {
            // burn-train hands the model back in evaluation mode, off the autodiff device.
            Some(m) => m.net.train(),
            None => net.clone(),
        };
        model_net = if frozen_backbone { model_net.freeze_backbone() } else { model_net.unfreeze_backbone() };
        let model_net = prepare(model_net);
        let model = TrainingModel::new(model_net, plan.settings.clone(), steps_done);
        let schedule = Schedule::new(&cfg.schedule, plan.peak_lr, cfg.train.epochs, plan.steps_per_epoch);
        let optim = build_optimizer(&cfg.optim, cfg.train.grad_clip_norm);
        let learner = Learner::new(model, optim, lr_scheduler(schedule, cfg.optim.backbone_lr_scale));
        let (train_loader, epochs) = (plan.loaders.clone().with_batch_size(plan.device_batch)).train_split(
            &ds,
            &ad,
            plan.positions,
            plan.replicas,
        );
        epochs.set_epoch(from as u64);
        let valid_loader = plan.loaders.eval(ds.valid(), &device);
        let strategy = crate::run_dir::KeepLastAndBest::new(run_dir, 2);
        let mut training = SupervisedTraining::new(run_dir, train_loader, valid_loader)
            .metric_train_numeric(LossMetric::new())
            .metric_valid_numeric(LossMetric::new())
            .metric_train_numeric(AccuracyMetric::new())
            .metric_valid_numeric(AccuracyMetric::new())
            .metric_train_numeric(TopKAccuracyMetric::new(plan.top_k))
            .metric_valid_numeric(TopKAccuracyMetric::new(plan.top_k))
            .metric_train_numeric(LearningRateMetric::new())
            .with_default_checkpointers()
            .with_checkpointing_strategy(strategy)
            .with_interrupter(interrupter)
            .with_application_logger(None)
            .renderer(Box::new(renderer))
            .num_epochs(to);
        if plan.replicas > 1 {
            training = training.with_training_strategy(plan.parallelism.strategy(all_devices.clone()).into());
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
            crate::run_dir::load_training_checkpoint(&path, &plan.arch, cfg.train.ema_decay, &device)?
        }
    };
    // The final evaluation and export beat no steps.
    drop(watchdog);
    let summary = crate::run_dir::write_end_of_run(cfg, &plan.arch, run_dir, trained, &ds, &plan.loaders, &device)?;
    // Like a non-finite training loss, a non-finite final validation loss is a failed run.
    if !summary.final_.val_loss.is_finite() {
        return Err(TrainError::Run(format!(
            "the final validation loss is {} (not finite): the trained network is unusable (lower optim.lr or set train.grad_clip_norm); its files are in {}",
            summary.final_.val_loss,
            run_dir.display()
        )));
    }
    Ok(summary)
}

/// `runtime.stall_timeout_s`: ends the process with a one-line error naming the last complete
/// checkpoint when no step finishes in time (a hung remote server, a stuck device).
fn stall_watchdog(cfg: &EffnetConfig, run_dir: &Path) -> Option<Watchdog> {
    let timeout = cfg.runtime.stall_timeout()?;
    let run_dir = run_dir.to_path_buf();
    let remote = cfg.runtime.backend == BackendKind::Remote;
    Some(Watchdog::start(timeout, move |idle| {
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
    }))
}

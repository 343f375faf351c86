//! The run plan: the validated config, the opened dataset and the devices turned once into every
//! number the loop reads — global and per-device batch, positions and steps per epoch, the
//! peak learning rate, the training phases and the step settings — so that the loop in
//! `trainer.rs` only follows it.

use crate::data::{LoaderSpec, OpenedDataset};
use crate::devices::{self, Parallelism};
use crate::learner::StepSettings;
use crate::optim::scaled_lr;
use crate::trainer::{ConfigSource, TrainError, top_k};
use effnet_config::{Architecture, Invalid};

/// One `launch` of burn-train: epochs `from..to`, with the backbone frozen or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    pub from: usize,
    pub to: usize,
    /// Fine-tuning's first `train.freeze_backbone_epochs`: the classifier trains alone.
    pub frozen_backbone: bool,
}

/// Everything the loop reads, resolved from the config, the dataset and the devices.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub arch: Architecture,
    /// The loaders at the global batch (the training loader takes `device_batch`).
    pub loaders: LoaderSpec,
    /// Devices the steps are split over, and how their gradients combine.
    pub replicas: usize,
    pub parallelism: Parallelism,
    /// `train.batch_size`: the global batch, split as `replicas × device_batch`.
    pub batch: usize,
    pub device_batch: usize,
    /// Training positions used per epoch (a multiple of `replicas`).
    pub positions: usize,
    pub steps_per_epoch: usize,
    /// `optim.lr` scaled to the global batch × gradient accumulation.
    pub peak_lr: f64,
    /// The k of the reported top-k accuracy.
    pub top_k: usize,
    /// What is left to train, from the first epoch not yet done.
    pub phases: Vec<Phase>,
    pub settings: StepSettings,
}

impl RunPlan {
    /// Checks that `ds` fits the model and the devices and resolves the plan; `start_epoch` is
    /// the number of epochs a resumed run has done.
    pub fn new(
        src: &ConfigSource,
        arch: Architecture,
        ds: &OpenedDataset,
        replicas: usize,
        start_epoch: usize,
    ) -> Result<Self, TrainError> {
        let cfg = &src.config;
        if ds.num_classes != arch.num_classes {
            return Err(src.invalid(Invalid::new(
                "model.num_classes",
                arch.num_classes,
                format!("the dataset at {:?} has {} classes", cfg.data.path, ds.num_classes),
            )));
        }
        let train_len = ds.train().dataset.len();
        if train_len == 0 || ds.valid().dataset.is_empty() {
            return Err(TrainError::Run(format!("{:?}: the train or validation split is empty", cfg.data.path)));
        }
        // `batch` is global; each device's loader batches `batch / replicas` (burn-train gives
        // each device its own loader over a slice of the epoch).
        let batch = cfg.train.batch_size;
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
        let accumulation = cfg.train.grad_accumulation;
        // More micro-batches to accumulate than an epoch has: no optimizer step in training,
        // then one at the end with the summed gradients of several epochs.
        let micro_batches = devices::steps_per_epoch(train_len, batch, replicas, 1);
        if accumulation > micro_batches {
            return Err(src.invalid(Invalid::new(
                "train.grad_accumulation",
                accumulation,
                format!(
                    "larger than the {micro_batches} micro-batches of an epoch ({train_len} training images, batch {batch}); no optimizer step would be taken"
                ),
            )));
        }
        let steps_per_epoch = devices::steps_per_epoch(train_len, batch, replicas, accumulation);
        let parallelism = Parallelism::for_runtime(&cfg.runtime);
        let settings = StepSettings {
            label_smoothing: cfg.train.label_smoothing,
            seed: cfg.train.seed,
            ema_decay: cfg.train.ema_decay,
            drop_connect: crate::learner::drop_connect_of(&arch),
            drop_connect_ramp: cfg.train.drop_connect_ramp,
            total_steps: steps_per_epoch * cfg.train.epochs,
            summed_gradients: parallelism.summed_replicas(replicas) * accumulation,
            precision: cfg.runtime.precision,
        };
        let device_batch = devices::per_device_batch(batch, replicas);
        // On the CPU, before the first allocation: a batch or image size that cannot fit is
        // refused in one line rather than aborting the process part-way.
        if matches!(cfg.runtime.backend, effnet_config::BackendKind::Flex | effnet_config::BackendKind::Ndarray) {
            let size = cfg.data.image_size.unwrap_or(arch.resolution);
            let needed = crate::memory::training_bytes(&arch, size, batch);
            crate::memory::check_fits(
                &format!("training {} at {size}² with batch {batch}", arch.name),
                needed,
                crate::memory::available_bytes(),
                "lower train.batch_size or data.image_size (or model.num_classes)",
            )
            .map_err(TrainError::Run)?;
        }
        // Set-ups that run to the end but cannot learn much: one line each.
        if replicas > 1 && device_batch < 2 {
            eprintln!(
                "warning: {replicas} devices share a batch of {batch}: each device's BatchNorm sees {device_batch} image(s) per step, which cannot normalise; use fewer devices or a larger train.batch_size"
            );
        }
        if cfg.train.freeze_backbone_epochs >= cfg.train.epochs && cfg.train.init_weights.is_none() {
            eprintln!(
                "warning: train.freeze_backbone_epochs = train.epochs with no train.init_weights: only the classifier trains, on a randomly initialised backbone"
            );
        }
        Ok(Self {
            loaders: LoaderSpec::new(cfg, &arch),
            top_k: top_k(arch.num_classes),
            arch,
            replicas,
            parallelism,
            batch,
            device_batch,
            positions,
            steps_per_epoch,
            peak_lr: scaled_lr(&cfg.optim, batch * accumulation),
            phases: phases(start_epoch, cfg.train.freeze_backbone_epochs, cfg.train.epochs),
            settings,
        })
    }
}

/// Epochs `start..epochs` as launches: the frozen-backbone epochs first, then the rest.
fn phases(start: usize, freeze_until: usize, epochs: usize) -> Vec<Phase> {
    let mut out = vec![];
    if start < freeze_until {
        out.push(Phase { from: start, to: freeze_until, frozen_backbone: true });
    }
    if freeze_until.max(start) < epochs {
        out.push(Phase { from: freeze_until.max(start), to: epochs, frozen_backbone: false });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_split_at_the_frozen_epochs_and_skip_what_is_done() {
        let p = |from, to, frozen_backbone| Phase { from, to, frozen_backbone };
        assert_eq!(phases(0, 0, 5), vec![p(0, 5, false)]);
        assert_eq!(phases(0, 2, 5), vec![p(0, 2, true), p(2, 5, false)]);
        assert_eq!(phases(1, 2, 5), vec![p(1, 2, true), p(2, 5, false)]);
        assert_eq!(phases(3, 2, 5), vec![p(3, 5, false)]);
        assert_eq!(phases(5, 2, 5), vec![]);
    }
}

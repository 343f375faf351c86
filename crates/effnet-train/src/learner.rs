//! The module burn-train trains: the network, its EMA copy, and the per-step training logic.

use crate::data::ClassificationBatch;
use crate::ema::{ema_copy, ema_decay_at, ema_update};
use crate::loss_scale::{GROWTH_INTERVAL, INIT_SCALE, LossScaler};
use crate::precision::float_dtype;
use burn::lr_scheduler::module_lr_scheduler::ModuleLearningRate;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, MultiGradientsParams};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};
use effnet_config::{Architecture, Precision};
use effnet_model::EfficientNet;

/// Settings of the step that are not weights.
#[derive(Debug, Clone)]
pub struct StepSettings {
    pub label_smoothing: f64,
    pub seed: u64,
    /// EMA decay (None: no EMA).
    pub ema_decay: Option<f64>,
    /// Each block's drop-connect rate at full strength, as the architecture resolved it
    /// (`BlockSpec::drop_connect_rate`); set on the network at every phase's start.
    pub drop_connect: Vec<f64>,
    /// Ramp every block's rate from 0 over `total_steps`.
    pub drop_connect_ramp: bool,
    pub total_steps: usize,
    /// Micro-batch gradients burn adds into one optimizer step: the devices of the `multi`
    /// strategy × gradient accumulation. The loss is divided by it before `backward` so that
    /// the step uses the gradient of the mean loss over every image of the step (what the LR
    /// scaling by the global batch assumes). The reported loss is not divided.
    pub summed_gradients: usize,
    /// `[runtime] precision`: bf16/f16 train with mixed precision (f32 master weights, see
    /// `effnet_model::mixed`); f16 adds dynamic loss scaling.
    pub precision: Precision,
}

impl StepSettings {
    /// Settings for a network of `arch` loaded from a checkpoint to be evaluated or exported,
    /// not trained.
    pub(crate) fn for_loading(arch: &Architecture, ema_decay: Option<f64>) -> Self {
        Self {
            label_smoothing: 0.0,
            seed: 0,
            ema_decay,
            drop_connect: drop_connect_of(arch),
            drop_connect_ramp: false,
            total_steps: 1,
            summed_gradients: 1,
            precision: Precision::F32,
        }
    }
}

/// Each block's full-strength drop-connect rate of `arch`.
pub fn drop_connect_of(arch: &Architecture) -> Vec<f64> {
    arch.blocks().iter().map(|b| b.drop_connect_rate).collect()
}

/// What burn-train's learner holds: the live network and its exponential moving average.
#[derive(Module, Debug)]
pub struct TrainingModel {
    pub net: EfficientNet,
    /// EMA of the weights and BatchNorm statistics; no gradients.
    pub ema: Option<EfficientNet>,
    #[module(skip)]
    pub settings: StepSettings,
    /// Optimizer steps taken. A plain count carried by value: under burn's DDP every device's
    /// worker holds its own copy of the model and steps it once per global step.
    #[module(skip)]
    pub steps: usize,
    /// f16 mixed precision's dynamic loss scale (None otherwise).
    #[module(skip)]
    pub scaler: Option<LossScaler>,
}

impl TrainingModel {
    /// Wraps `net`; `steps_done` > 0 when resuming.
    pub fn new(net: EfficientNet, settings: StepSettings, steps_done: usize) -> Self {
        // The EMA averages BatchNorm statistics too (as tensorflow/tpu and timm do), so it needs
        // its own: clones share burn's running state.
        let ema = settings.ema_decay.map(|_| ema_copy(&net).unshare_running_state());
        let mut net = net;
        net.set_autocast(Some(float_dtype(settings.precision)));
        let scaler = (settings.precision == Precision::F16).then(|| LossScaler::new(INIT_SCALE, GROWTH_INTERVAL));
        // From the settings, not the network: a later phase's network carries the ramped rates.
        let mut m = Self { net, ema, settings, steps: steps_done, scaler };
        m.apply_drop_connect(steps_done);
        m
    }

    fn apply_drop_connect(&mut self, step: usize) {
        let progress =
            if self.settings.drop_connect_ramp { step as f64 / self.settings.total_steps.max(1) as f64 } else { 1.0 };
        let rates: Vec<f64> = self.settings.drop_connect.iter().map(|r| r * progress.clamp(0.0, 1.0)).collect();
        self.net.set_drop_connect_rates(&rates);
    }

    /// Loss, logits and targets of a batch. Soft targets (mixup/cutmix) use the soft
    /// cross-entropy; label smoothing applies to both.
    pub fn forward_classification(&self, batch: ClassificationBatch) -> ClassificationOutput {
        let logits = self.net.forward(batch.images);
        let smoothing = self.settings.label_smoothing;
        let loss = match batch.soft_targets {
            Some(soft) => {
                let classes = soft.dims()[1] as f64;
                let soft = soft.mul_scalar(1.0 - smoothing).add_scalar(smoothing / classes);
                let logp = burn::tensor::activation::log_softmax(logits.clone(), 1);
                (soft * logp).sum_dim(1).neg().mean()
            }
            None => {
                let ce = CrossEntropyLossConfig::new().with_smoothing((smoothing > 0.0).then_some(smoothing as f32));
                ce.init(&logits.device()).forward(logits.clone(), batch.targets.clone())
            }
        };
        ClassificationOutput::new(loss, logits, batch.targets)
    }

    fn after_step(mut self) -> Self {
        self.steps += 1;
        let n = self.steps;
        if let (Some(ema), Some(decay)) = (self.ema.take(), self.settings.ema_decay) {
            self.ema = Some(ema_update(ema, &self.net, ema_decay_at(decay, n)));
        }
        if self.settings.drop_connect_ramp {
            self.apply_drop_connect(n);
        }
        self
    }
}

impl TrainStep for TrainingModel {
    type Input = ClassificationBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ClassificationBatch) -> TrainOutput<ClassificationOutput> {
        // Dropout and drop-path masks come from a per-step seed, so a resumed run draws the
        // same masks as an uninterrupted one.
        let step = self.steps as u64;
        batch.images.device().seed(self.settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(step));
        let out = self.forward_classification(batch);
        let loss = match self.settings.summed_gradients {
            0 | 1 => out.loss.clone(),
            n => out.loss.clone().div_scalar(n as f64),
        };
        let grads = match &self.scaler {
            Some(scaler) => scaler.backward(loss, self),
            None => GradientsParams::from_grads(loss.backward(), self),
        };
        TrainOutput { grads, item: out }
    }

    fn optimize(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: GradientsParams) -> Self {
        optim.step(lr, self, grads).after_step()
    }

    fn optimize_multi(self, optim: &mut ModuleOptimizer, lr: ModuleLearningRate, grads: MultiGradientsParams) -> Self {
        optim.step_multi(lr, self, grads).after_step()
    }
}

impl InferenceStep for TrainingModel {
    type Input = ClassificationBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: ClassificationBatch) -> ClassificationOutput {
        self.forward_classification(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use effnet_config::ModelConfig;

    #[test]
    fn drop_connect_ramps_from_the_architectures_rates_in_every_phase() {
        let cfg: ModelConfig =
            toml::from_str("variant = \"custom\"\nwidth = 0.25\ndepth = 0.25\ndrop_connect_rate = 0.2\n").unwrap();
        let arch = cfg.architecture().unwrap();
        let full = drop_connect_of(&arch);
        assert!((full[full.len() - 1] - 0.2 * (full.len() - 1) as f64 / full.len() as f64).abs() < 1e-12);
        let settings =
            StepSettings { drop_connect_ramp: true, total_steps: 10, ..StepSettings::for_loading(&arch, None) };
        // A second phase starts from the first phase's network, whose rates were ramped down.
        let mut net = EfficientNet::new(&arch, &burn::prelude::Device::flex().autodiff());
        net.set_drop_connect_rates(&full.iter().map(|r| r * 0.3).collect::<Vec<_>>());
        let m = TrainingModel::new(net, settings, 5);
        let want: Vec<f64> = full.iter().map(|r| r * 0.5).collect();
        assert_eq!(m.net.drop_connect_rates(), want);
    }
}

//! Optimizers from `[optim]`: TF RMSProp, SGD (Nesterov), AdamW; weight decay that skips
//! BatchNorm and bias parameters; gradient clipping; LR scaled with the batch size; a separate
//! LR scale for the backbone (`optim.backbone_lr_scale`).

mod rmsprop_tf;

pub use rmsprop_tf::{RmsPropTf, RmsPropTfState};

use burn::grad_clipping::GradientClipping;
use burn::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::module::ParamGroup;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, SgdConfig};
use effnet_config::{OptimConfig, OptimizerKind};

use crate::schedule::Schedule;

/// Parameters that get no weight decay: BatchNorm γ/β and every bias (TF's recipe excludes
/// `batch_normalization` variables; timm excludes 1-D parameters). Paths are effnet's module
/// paths, e.g. `blocks.3.expand.bn.gamma` and `classifier.bias`.
pub const NO_DECAY_PATTERN: &str = r"(\.bn\.(gamma|beta)|\.bias)$";

/// The classifier's parameters; every other one is the backbone's.
pub const CLASSIFIER_PATTERN: &str = r"^classifier\.";

/// Peak learning rate: `lr` is quoted per `lr_batch_size` images (paper: 0.016 per 256).
pub fn scaled_lr(cfg: &OptimConfig, global_batch: usize) -> f64 {
    cfg.lr * global_batch as f64 / cfg.lr_batch_size as f64
}

fn rmsprop(cfg: &OptimConfig, weight_decay: f64) -> RmsPropTf {
    RmsPropTf { decay: cfg.decay, momentum: cfg.momentum, eps: cfg.eps, weight_decay }
}

fn sgd(cfg: &OptimConfig, weight_decay: f64) -> SgdConfig {
    // burn's SGD default dampening is 0.1; PyTorch's (and ours) is 0.
    let momentum = (cfg.momentum > 0.0).then_some(MomentumConfig {
        momentum: cfg.momentum,
        dampening: 0.0,
        nesterov: cfg.nesterov,
    });
    SgdConfig::new()
        .with_momentum(momentum)
        .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)))
}

fn adamw(cfg: &OptimConfig, weight_decay: f64) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(cfg.betas[0] as f32)
        .with_beta_2(cfg.betas[1] as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(weight_decay as f32)
}

/// The optimizer for `cfg`, with weight decay on conv/linear weights only and optional
/// per-tensor gradient-norm clipping.
pub fn build_optimizer(cfg: &OptimConfig, grad_clip_norm: Option<f64>) -> ModuleOptimizer {
    let clip = grad_clip_norm.map(|n| GradientClipping::Norm(n as f32));
    let wd = cfg.weight_decay;
    let mut optim = match cfg.name {
        OptimizerKind::RmspropTf => ModuleOptimizer::from(rmsprop(cfg, wd)),
        OptimizerKind::Sgd => ModuleOptimizer::from(sgd(cfg, wd).build()),
        OptimizerKind::Adamw => ModuleOptimizer::from(adamw(cfg, wd).build()),
    };
    if let Some(c) = clip.clone() {
        optim = optim.with_grad_clipping(c);
    }
    if wd > 0.0 {
        let group = ParamGroup::from_regex(NO_DECAY_PATTERN).expect("valid no-decay pattern");
        optim = match cfg.name {
            OptimizerKind::RmspropTf => optim.with_group(group, rmsprop(cfg, 0.0), clip),
            OptimizerKind::Sgd => optim.with_group(group, sgd(cfg, 0.0).build(), clip),
            OptimizerKind::Adamw => optim.with_group(group, adamw(cfg, 0.0).build(), clip),
        };
    }
    optim
}

/// The LR schedule of every parameter: `schedule` for the classifier, `schedule` scaled by
/// `backbone_lr_scale` for the rest (burn's per-group LR: the last matching group wins).
/// A scale of 1 keeps a single group, so checkpoints stay as they were.
pub fn lr_scheduler(schedule: Schedule, backbone_lr_scale: f64) -> ModuleLrScheduler {
    if backbone_lr_scale == 1.0 {
        return ModuleLrScheduler::new(schedule);
    }
    let classifier = ParamGroup::from_regex(CLASSIFIER_PATTERN).expect("valid classifier pattern");
    let backbone = schedule.scaled(backbone_lr_scale);
    ModuleLrScheduler::new(schedule).with_group(ParamGroup::all().exclude(classifier), backbone)
}

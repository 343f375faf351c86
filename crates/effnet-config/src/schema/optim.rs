//! `[optim]` and `[schedule]`: the optimizer and its learning-rate schedule.

use super::check::{in_range_f64, in_range_usize, probability};
use crate::error::Invalid;
use serde::{Deserialize, Serialize};

/// Optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// TensorFlow RMSProp (eps inside the root, accumulator starts at 1): the paper's.
    RmspropTf,
    Sgd,
    Adamw,
}

/// `[optim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub name: OptimizerKind,
    /// Learning rate per `lr_batch_size` images (paper: 0.016 per 256).
    pub lr: f64,
    /// The batch size `lr` is quoted for; the LR is scaled by `batch_size / lr_batch_size`.
    pub lr_batch_size: usize,
    /// Coupled L2 weight decay, skipping BN and bias parameters.
    pub weight_decay: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// RMSProp decay (ρ).
    pub decay: f64,
    pub eps: f64,
    /// AdamW β1, β2.
    pub betas: [f64; 2],
    /// The LR of every parameter but the classifier is multiplied by this (1 = off).
    pub backbone_lr_scale: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            name: OptimizerKind::RmspropTf,
            lr: 0.016,
            lr_batch_size: 256,
            weight_decay: 1e-5,
            momentum: 0.9,
            nesterov: false,
            decay: 0.9,
            eps: 1e-3,
            betas: [0.9, 0.999],
            backbone_lr_scale: 1.0,
        }
    }
}

impl OptimConfig {
    /// Range checks of `[optim]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range_f64("optim.lr", self.lr, 1e-12, 100.0)?;
        in_range_usize("optim.lr_batch_size", self.lr_batch_size, 1, 1 << 20)?;
        in_range_f64("optim.weight_decay", self.weight_decay, 0.0, 1.0)?;
        probability("optim.momentum", self.momentum, false)?;
        probability("optim.decay", self.decay, false)?;
        in_range_f64("optim.eps", self.eps, 1e-12, 1.0)?;
        probability("optim.betas[0]", self.betas[0], false)?;
        probability("optim.betas[1]", self.betas[1], false)?;
        in_range_f64("optim.backbone_lr_scale", self.backbone_lr_scale, 0.0, 1e6)?;
        if self.nesterov && self.name == OptimizerKind::Sgd && self.momentum == 0.0 {
            return Err(Invalid::new("optim.nesterov", true, "Nesterov needs optim.momentum > 0"));
        }
        Ok(())
    }
}

/// LR schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// `lr · rate^⌊epoch / decay_epochs⌋` (paper: 0.97 every 2.4 epochs).
    ExponentialStep,
    Cosine,
    Constant,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub name: ScheduleKind,
    /// Linear warm-up length in epochs.
    pub warmup_epochs: f64,
    /// LR at the start of warm-up.
    pub warmup_lr: f64,
    pub decay_epochs: f64,
    pub decay_rate: f64,
    /// Cosine floor.
    pub min_lr: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            name: ScheduleKind::ExponentialStep,
            warmup_epochs: 5.0,
            warmup_lr: 0.0,
            decay_epochs: 2.4,
            decay_rate: 0.97,
            min_lr: 0.0,
        }
    }
}

impl ScheduleConfig {
    /// Range checks of `[schedule]` (`warmup_epochs` and `min_lr` are bounded by `[train]` and
    /// `[optim]`: see [`EffnetConfig::validate`](super::EffnetConfig::validate)).
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range_f64("schedule.warmup_lr", self.warmup_lr, 0.0, 100.0)?;
        in_range_f64("schedule.decay_epochs", self.decay_epochs, 1e-6, 1e6)?;
        if !(self.decay_rate > 0.0 && self.decay_rate <= 1.0) {
            return Err(Invalid::new("schedule.decay_rate", self.decay_rate, "must be in (0, 1]"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sections_check_themselves() {
        assert_eq!(OptimConfig::default().validate(), Ok(()));
        assert_eq!(ScheduleConfig::default().validate(), Ok(()));
        let sgd = OptimConfig { name: OptimizerKind::Sgd, nesterov: true, momentum: 0.0, ..OptimConfig::default() };
        let e = sgd.validate().unwrap_err();
        assert_eq!((e.key.as_str(), e.reason.as_str()), ("optim.nesterov", "Nesterov needs optim.momentum > 0"));
        let e = ScheduleConfig { decay_rate: 0.0, ..ScheduleConfig::default() }.validate().unwrap_err();
        assert_eq!((e.key.as_str(), e.reason.as_str()), ("schedule.decay_rate", "must be in (0, 1]"));
        // Bounded by other sections, so checked by `EffnetConfig::validate`, not here.
        let long_warmup = ScheduleConfig { warmup_epochs: 1e9, min_lr: 1e9, ..ScheduleConfig::default() };
        assert_eq!(long_warmup.validate(), Ok(()));
    }
}

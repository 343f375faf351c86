//! `[train]`: the loop.

use super::check::{in_range_usize, positive, probability};
use crate::error::Invalid;
use serde::{Deserialize, Serialize};

/// `[train]`: the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Global batch size (split over devices).
    pub batch_size: usize,
    pub seed: u64,
    pub label_smoothing: f64,
    /// Steps of gradient accumulation per optimizer step (their gradients are averaged).
    pub grad_accumulation: usize,
    /// Clip each gradient's L2 norm (unset = off).
    pub grad_clip_norm: Option<f64>,
    /// EMA decay of the weights (unset = no EMA; the paper uses 0.9999).
    pub ema_decay: Option<f64>,
    /// Ramp the drop-connect rate linearly from 0 over training.
    pub drop_connect_ramp: bool,
    /// Start from these weights (any format effnet reads).
    pub init_weights: Option<String>,
    /// Keep the backbone frozen for this many epochs (fine-tuning).
    pub freeze_backbone_epochs: usize,
    /// Init of a fresh classifier (see [`crate::HeadInit`]); `auto`: tf from scratch, torch
    /// for a new head over `init_weights`.
    pub head_init: crate::HeadInit,
    /// Log every N steps when not on a terminal.
    pub log_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            seed: 42,
            label_smoothing: 0.1,
            grad_accumulation: 1,
            grad_clip_norm: None,
            ema_decay: None,
            drop_connect_ramp: false,
            init_weights: None,
            freeze_backbone_epochs: 0,
            head_init: crate::HeadInit::Auto,
            log_every: 50,
        }
    }
}

impl TrainConfig {
    /// Range checks of `[train]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range_usize("train.epochs", self.epochs, 1, 100_000)?;
        in_range_usize("train.batch_size", self.batch_size, 1, 1 << 20)?;
        probability("train.label_smoothing", self.label_smoothing, false)?;
        in_range_usize("train.grad_accumulation", self.grad_accumulation, 1, 4096)?;
        // A run's config.toml records the seed, and TOML integers are i64: a larger seed would
        // train, then make the run unreadable for --resume and eval --run.
        if self.seed > i64::MAX as u64 {
            return Err(Invalid::new(
                "train.seed",
                self.seed,
                format!("must be at most {} (a TOML integer)", i64::MAX),
            ));
        }
        if let Some(c) = self.grad_clip_norm {
            positive("train.grad_clip_norm", c)?;
        }
        if let Some(e) = self.ema_decay
            && !(0.0..1.0).contains(&e)
        {
            return Err(Invalid::new("train.ema_decay", e, "must be in [0, 1)"));
        }
        if self.freeze_backbone_epochs > self.epochs {
            return Err(Invalid::new(
                "train.freeze_backbone_epochs",
                self.freeze_backbone_epochs,
                format!("exceeds train.epochs = {}", self.epochs),
            ));
        }
        in_range_usize("train.log_every", self.log_every, 1, 1 << 30)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_checks_itself() {
        assert_eq!(TrainConfig::default().validate(), Ok(()));
        let e = TrainConfig { epochs: 3, freeze_backbone_epochs: 4, ..TrainConfig::default() }.validate().unwrap_err();
        assert_eq!((e.key.as_str(), e.reason.as_str()), ("train.freeze_backbone_epochs", "exceeds train.epochs = 3"));
        let e = TrainConfig { ema_decay: Some(1.0), ..TrainConfig::default() }.validate().unwrap_err();
        assert_eq!((e.key.as_str(), e.reason.as_str()), ("train.ema_decay", "must be in [0, 1)"));
    }
}

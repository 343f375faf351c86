//! Learning-rate schedules from `[schedule]`, stepped once per optimizer step.

use burn::lr_scheduler::{LrScheduler, LrSchedulerRecord};
use burn::optim::{RecordState, StateSink, StateSource};
use burn::prelude::Device;
use burn::store::burn_pack::Scalar;
use effnet_config::{ScheduleConfig, ScheduleKind};

/// Linear warm-up from `warmup_lr` to the peak, then exponential step decay
/// (`peak · rate^⌊epoch / decay_epochs⌋`, TF's staircase), cosine to `min_lr`, or constant.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub peak_lr: f64,
    pub warmup_lr: f64,
    pub warmup_steps: usize,
    /// Decay period in steps (exponential-step).
    pub decay_steps: f64,
    pub decay_rate: f64,
    pub total_steps: usize,
    pub min_lr: f64,
    /// Optimizer steps taken so far.
    pub step: usize,
}

impl Schedule {
    /// Schedule for `cfg` with `steps_per_epoch` optimizer steps per epoch.
    pub fn new(cfg: &ScheduleConfig, peak_lr: f64, epochs: usize, steps_per_epoch: usize) -> Self {
        let spe = steps_per_epoch.max(1) as f64;
        Self {
            kind: cfg.name,
            peak_lr,
            warmup_lr: cfg.warmup_lr,
            warmup_steps: (cfg.warmup_epochs * spe).round() as usize,
            decay_steps: (cfg.decay_epochs * spe).max(1.0),
            decay_rate: cfg.decay_rate,
            total_steps: epochs * steps_per_epoch.max(1),
            min_lr: cfg.min_lr,
            step: 0,
        }
    }

    /// The same schedule with every LR multiplied by `factor` (`lr_at` is linear in the peak,
    /// warm-up and minimum LRs).
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            peak_lr: self.peak_lr * factor,
            warmup_lr: self.warmup_lr * factor,
            min_lr: self.min_lr * factor,
            ..self.clone()
        }
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            let t = step as f64 / self.warmup_steps as f64;
            return self.warmup_lr + (self.peak_lr - self.warmup_lr) * t;
        }
        let after = (step - self.warmup_steps) as f64;
        match self.kind {
            ScheduleKind::Constant => self.peak_lr,
            ScheduleKind::ExponentialStep => {
                // TF applies the staircase to the global step, warm-up included.
                self.peak_lr * self.decay_rate.powf((step as f64 / self.decay_steps).floor())
            }
            ScheduleKind::Cosine => {
                let span = (self.total_steps.saturating_sub(self.warmup_steps)).max(1) as f64;
                let t = (after / span).min(1.0);
                self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

struct StepState(usize);

impl RecordState for StepState {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(prefix, "step", Scalar::from(self.0 as u64));
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, _device: &Device) -> Option<Self> {
        let v: u64 = src.take_scalar(prefix, "step")?.try_into().ok()?;
        Some(StepState(v as usize))
    }
}

impl LrScheduler for Schedule {
    fn step(&mut self) -> f64 {
        let lr = self.lr_at(self.step);
        self.step += 1;
        lr
    }

    fn to_record(&self) -> LrSchedulerRecord {
        LrSchedulerRecord::from_state(&StepState(self.step))
    }

    fn load_record(&mut self, record: LrSchedulerRecord) {
        if let Some(s) = record.into_state::<StepState>() {
            self.step = s.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ScheduleKind) -> ScheduleConfig {
        ScheduleConfig {
            name: kind,
            warmup_epochs: 2.0,
            warmup_lr: 0.0,
            decay_epochs: 2.4,
            decay_rate: 0.97,
            min_lr: 0.0,
        }
    }

    #[test]
    fn warmup_then_exponential_steps() {
        let s = Schedule::new(&cfg(ScheduleKind::ExponentialStep), 0.016, 100, 10);
        assert_eq!(s.warmup_steps, 20);
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.lr_at(10) - 0.008).abs() < 1e-12);
        // Step 20..23 are in the first 24-step period: peak.
        assert!((s.lr_at(20) - 0.016).abs() < 1e-12);
        assert!((s.lr_at(23) - 0.016).abs() < 1e-12);
        // Step 24 = 2.4 epochs: one decay.
        assert!((s.lr_at(24) - 0.016 * 0.97).abs() < 1e-12);
        // Step 250 = 25 epochs: ⌊250 / 24⌋ = 10 decays.
        assert!((s.lr_at(250) - 0.016 * 0.97f64.powi(10)).abs() < 1e-12);
    }

    #[test]
    fn cosine_and_constant() {
        let mut c = cfg(ScheduleKind::Cosine);
        c.min_lr = 0.001;
        let s = Schedule::new(&c, 0.1, 10, 10);
        assert!((s.lr_at(20) - 0.1).abs() < 1e-12);
        // Halfway through the 80 post-warm-up steps: (0.1 + 0.001) / 2.
        assert!((s.lr_at(60) - 0.0505).abs() < 1e-12);
        assert!((s.lr_at(100) - 0.001).abs() < 1e-12);
        let s = Schedule::new(&cfg(ScheduleKind::Constant), 0.05, 10, 10);
        assert!((s.lr_at(5) - 0.0125).abs() < 1e-12);
        assert_eq!(s.lr_at(99), 0.05);
    }

    #[test]
    fn state_round_trips_through_a_record() {
        let mut s = Schedule::new(&cfg(ScheduleKind::ExponentialStep), 0.016, 100, 10);
        for _ in 0..37 {
            s.step();
        }
        let rec = s.to_record();
        let mut fresh = Schedule::new(&cfg(ScheduleKind::ExponentialStep), 0.016, 100, 10);
        fresh.load_record(rec);
        assert_eq!(fresh.step, 37);
        assert_eq!(fresh.step(), s.step());
    }
}

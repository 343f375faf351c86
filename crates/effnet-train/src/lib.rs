//! # effnet-train
//!
//! Training-side pieces of effnet: data, augmentation, schedules, optimizers, the loop on
//! burn-train, run directories and evaluation.

pub mod bench;
pub mod classes;
pub mod config_source;
pub mod confusion;
pub mod data;
pub mod devices;
pub mod ema;
pub mod evaluate;
pub mod fusion;
pub mod init;
pub mod learner;
pub mod loss_scale;
pub mod memory;
pub mod optim;
pub mod plan;
pub mod plot;
pub mod precision;
pub mod progress;
pub mod run_dir;
pub mod schedule;
pub mod text;
pub mod trainer;
pub mod watchdog;

use burn::prelude::Device;
use effnet_config::{ConfigError, EffnetConfig, Invalid};
use effnet_model::EfficientNet;

/// Builds the model a config describes: the stage table with its burn-convention BN momentum
/// and per-block drop-connect rates (both resolved by `ModelConfig::architecture`).
pub fn build_model(cfg: &EffnetConfig, device: &Device) -> Result<EfficientNet, Invalid> {
    Ok(EfficientNet::new(&cfg.model.architecture()?, device))
}

/// Loads a config file and builds its model.
pub fn model_from_file(path: &std::path::Path, device: &Device) -> Result<EfficientNet, ConfigError> {
    let cfg = EffnetConfig::load(path)?;
    build_model(&cfg, device).map_err(|e| e.in_file(path))
}

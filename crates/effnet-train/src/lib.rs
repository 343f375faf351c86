//! # effnet-train
//!
//! Training-side pieces of effnet. Today: the drop-connect schedule, the TensorFlow → burn
//! BatchNorm momentum conversion (applied when a model is built from a config) and the
//! evaluation preprocessing.

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
pub mod optim;
pub mod plot;
pub mod precision;
pub mod preprocess;
pub mod progress;
pub mod regularization;
pub mod run_dir;
pub mod schedule;
pub mod trainer;
pub mod watchdog;

use burn::prelude::Device;
use effnet_config::{ConfigError, EffnetConfig, Invalid};
use effnet_model::EfficientNet;

pub use regularization::{drop_connect_rates, tf_bn_momentum_to_burn};

/// Builds the model a config describes: the stage table, burn-convention BN momentum converted
/// from the TOML's TensorFlow value, and the drop-connect schedule at full strength.
pub fn build_model(cfg: &EffnetConfig, device: &Device) -> Result<EfficientNet, Invalid> {
    let arch = cfg.model.architecture()?;
    let mut model = EfficientNet::with_bn_momentum(&arch, tf_bn_momentum_to_burn(cfg.model.bn_momentum), device);
    let rates = drop_connect_rates(cfg.model.drop_connect_rate, model.num_blocks(), 1.0);
    model.set_drop_connect_rates(&rates);
    Ok(model)
}

/// Loads a config file and builds its model.
pub fn model_from_file(path: &std::path::Path, device: &Device) -> Result<EfficientNet, ConfigError> {
    let cfg = EffnetConfig::load(path)?;
    build_model(&cfg, device).map_err(|e| e.in_file(path))
}

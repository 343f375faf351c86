//! # effnet-model
//!
//! EfficientNet as burn Modules that run unchanged on every burn backend, built by looping over
//! the stage table of `effnet-config`.

pub mod block;
pub mod export;
pub mod kernels;
pub mod layers;
mod load_checks;
pub mod model;
pub mod norm;
pub mod params;
pub mod weights;

pub use block::MbConv;
pub use model::{DEFAULT_BN_MOMENTUM, EfficientNet, Features};
pub use norm::BatchNorm;
pub use params::trainable_params;
pub use weights::{CheckpointInfo, LoadReport, WeightLayout, WeightsError, detect_layout, inspect, load_model};

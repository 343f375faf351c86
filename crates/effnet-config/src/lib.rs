//! # effnet-config
//!
//! Every architecture number of effnet lives here: the official coefficient table of
//! tensorflow/tpu (B0–B8, L2, Lite0–4), the free compound coefficient φ, the exact TF
//! `round_filters` / `round_repeats`, block strings, the resolved stage table and the TOML schema.

pub mod arch;
pub mod blocks;
pub mod convention;
pub mod error;
pub mod fsio;
pub mod head_init;
pub mod normalization;
pub mod regularization;
pub mod scaling;
pub mod schema;
pub mod variant;

pub use arch::{Activation, Architecture, BlockSpec, Padding, ScaleSpec, StageSpec};
pub use blocks::{BlockArgs, BlockStringError, DEFAULT_BLOCKS, decode_blocks, default_blocks};
pub use convention::{Convention, TF_BORN, TORCH_BORN};
pub use error::{ConfigError, Invalid};
pub use head_init::{ClassifierInit, HeadInit};
pub use normalization::{IMAGENET, IMAGENET_MEAN, IMAGENET_STD, LITE, Normalization};
pub use regularization::{drop_connect_rates, tf_bn_momentum_to_burn};
pub use scaling::{CompoundCoefficients, Scaling, round_filters, round_repeats};
pub use schema::{
    AugmentConfig, BackendKind, DataConfig, DatasetKind, DeviceSpec, EffnetConfig, Interpolation, LabelKind,
    ModelConfig, OptimConfig, OptimizerKind, Precision, RemoteDevice, RuntimeConfig, ScheduleConfig, ScheduleKind,
    TrainConfig, VariantChoice, format_device_list, parse_device_list,
};
pub use variant::{Family, REFERENCE_PARAM_COUNTS, Variant, VariantParams};

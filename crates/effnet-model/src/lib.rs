//! # effnet-model
//!
//! EfficientNet as burn Modules that run unchanged on every burn backend, built by looping over
//! the stage table of `effnet-config`.

pub mod block;
pub mod export;
pub mod layers;
mod load_checks;
pub mod mixed;
pub mod model;
pub mod norm;
pub mod params;
pub mod weights;

// The CPU kernels (effnet-kernels) under the name the layers call them by.
use effnet_kernels as kernels;

pub use block::MbConv;
/// The instruction set the CPU kernels run (`"avx512" | "avx2" | "neon" | "scalar"`), chosen once
/// per process: the best the CPU has, or `EFFNET_SIMD` (checked with [`isa_from_env`]).
pub use effnet_kernels::isa::{Isa, isa_from_env, selected as selected_isa};
pub use effnet_kernels::run_kernels_on_this_thread;
/// Which of effnet-kernels' CPU kernel families run (the cli's `--kernels`, `EFFNET_KERNELS`):
/// a setting handed down through [`set_kernel_selection`].
pub use effnet_kernels::{Kernel, KernelSelection, kernel_selection, set_kernel_selection};
pub use model::{EfficientNet, Features};
pub use norm::BatchNorm;
pub use params::trainable_params;
pub use weights::{CheckpointInfo, LoadReport, WeightLayout, WeightsError, detect_layout, inspect, load_model};

//! Faster CPU kernels for the operations that dominate EfficientNet on burn's Flex backend:
//! SiLU, sigmoid, the depthwise and 1×1 convolutions, training-mode BatchNorm (forward and
//! backward), squeeze-excitation's rescale, and fused inference blocks.
//!
//! They plug into burn through its backend-extension mechanism, keep autodiff (hand-written
//! backward steps, see `backward.rs`) and match burn's own ops to float rounding (unit tests in
//! each module and `tests/kernels.rs`). Every other backend and non-f32 tensors use burn's ops
//! unchanged, so a model built on them still runs on every backend.
//!
//! The seam: the generic path's differentiable ops ([`silu`], [`conv2d`], [`batch_norm_train`],
//! …, in `ops.rs`), the fused inference path behind one question ([`fused_inference`]) and its
//! entry points ([`conv_bn_act`], [`mbconv`], [`pool_linear`], in `inference.rs`), and the
//! process-wide [`KernelSelection`] (`EFFNET_KERNELS=burn`, or a list such as
//! `activation,depthwise`, switches kernels off, so each one's speed-up can be measured against
//! the same build).

mod activation;
mod backward;
mod batchnorm;
mod channels_last;
mod depthwise;
mod flex;
mod fused;
mod inference;
pub mod isa;
mod layout;
mod ops;
mod pointwise;
mod selection;
mod simd;
mod squeeze_excite;

pub use activation::Act;
pub use inference::{
    FusedBlock, FusedConv, FusedSe, conv_bn_act, fold_batch_norm, fused_inference, mbconv, pool_linear,
};
pub use ops::{
    batch_norm_inference, batch_norm_train, channel_scale, channels_last, conv2d, fast_path, is_dense, is_depthwise,
    is_pointwise, paddings, residual, sigmoid, silu, squeeze_excite,
};
pub use selection::{Kernel, KernelSelection, is_enabled, kernel_selection, set_kernel_selection};

/// Makes the calling thread one of the workers of the pool the kernels' parallel loops use
/// (rayon's global pool: one thread per core, `RAYON_NUM_THREADS` honoured) and returns whether
/// it did (false: the pool already existed). Called from any other thread, every parallel loop
/// hands its work to the pool and sleeps until the pool is done — a futex wake-up and sleep per
/// kernel call, ~15 % of a B0 training step at 32² (hundreds of small loops per step) on 2 cores;
/// on a worker the loops start on the calling thread and the other workers steal from it.
///
/// For the thread that runs the model, early, before any kernel runs (the cli's main thread).
/// Not for a process whose main thread waits while other threads compute (a server, training on
/// several devices): the pool would then have one thread fewer doing their work.
pub fn run_kernels_on_this_thread() -> bool {
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global().is_ok()
}

/// Deterministic values in `[offset − 1, offset + 1)` for the kernels' unit tests.
#[cfg(test)]
fn test_values(n: usize, seed: u32, offset: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0 + offset
        })
        .collect()
}

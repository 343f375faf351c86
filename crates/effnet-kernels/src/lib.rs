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

mod backward;
mod batchnorm;
mod channels_last;
mod depthwise;
mod flex;
mod fused;
mod inference;
mod ops;
mod pointwise;
mod selection;
mod silu_avx2;
mod simd;
mod squeeze_excite;

pub use inference::{
    FusedBlock, FusedConv, FusedSe, conv_bn_act, fold_batch_norm, fused_inference, mbconv, pool_linear,
};
pub use ops::{
    batch_norm_inference, batch_norm_train, channel_scale, conv2d, fast_path, is_dense, is_depthwise, is_pointwise,
    paddings, sigmoid, silu, squeeze_excite,
};
pub use selection::{Kernel, KernelSelection, is_enabled, kernel_selection, set_kernel_selection};
pub use simd::Act;

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

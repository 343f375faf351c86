//! Faster CPU kernels for the operations that dominate EfficientNet on burn's Flex backend:
//! SiLU, sigmoid, the depthwise convolution and training-mode BatchNorm (forward and backward).
//!
//! They plug into burn through its backend-extension mechanism, keep autodiff (hand-written
//! backward steps) and match burn's own ops to float rounding (tests in this module and in
//! `tests/kernels.rs`). Every other backend, non-f32 tensors, and runs with
//! `EFFNET_KERNELS=burn` in the environment use burn's ops unchanged, so the model still runs
//! on every backend and the speed-up can be measured against the same build.

mod batchnorm;
mod depthwise;
mod flex;
mod simd;

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use flex::EffnetKernels;
use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not yet read from the environment, 1: on, 2: off.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether the custom kernels are switched on: yes unless `EFFNET_KERNELS=burn` is set in the
/// environment or [`set_enabled`] said otherwise.
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = !matches!(std::env::var("EFFNET_KERNELS").as_deref(), Ok("burn"));
            STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
        s => s == 1,
    }
}

/// Switches the kernels on or off for the whole process (benchmarks and parity tests compare
/// the two paths in one run).
pub fn set_enabled(on: bool) {
    STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

fn is_flex(device: &DispatchDevice) -> bool {
    match device {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => is_flex(inner),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// True when `x` lives on the Flex backend in f32, where effnet's kernels apply.
pub fn fast_path<const D: usize>(x: &Tensor<D>) -> bool {
    enabled() && x.dtype() == DType::F32 && is_flex(x.device().as_dispatch())
}

/// `x·sigmoid(x)` (swish).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fast_path(&x) {
        Tensor::from_dispatch(<Dispatch as EffnetKernels>::silu(x.into_dispatch()))
    } else {
        burn::tensor::activation::silu(x)
    }
}

/// `1 / (1 + e^−x)`.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fast_path(&x) {
        Tensor::from_dispatch(<Dispatch as EffnetKernels>::sigmoid(x.into_dispatch()))
    } else {
        burn::tensor::activation::sigmoid(x)
    }
}

/// `conv.forward(x)`; on the fast path a bias-free depthwise k×k conv (groups = channels,
/// dilation 1) goes through the depthwise kernel and a bias-free 1×1 conv through a batched
/// matrix product.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, channels, h, w] = x.dims();
    let [k, k2] = conv.kernel_size;
    let depthwise = conv.groups == channels
        && channels > 1
        && conv.weight.dims()[0] == channels
        && k == k2
        && conv.stride[0] == conv.stride[1]
        && conv.dilation == [1, 1]
        && conv.bias.is_none();
    let pointwise = conv.groups == 1
        && conv.kernel_size == [1, 1]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.bias.is_none()
        && matches!(conv.padding, PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0));
    if pointwise && fast_path(&x) {
        return pointwise_conv2d(conv, x);
    }
    if !depthwise || !fast_path(&x) {
        return conv.forward(x);
    }
    let s = conv.stride[0];
    let ((top, bottom), (left, right)) = match conv.padding {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (same_padding(h, k, s), same_padding(w, k, s)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((top, bottom), (left, right)),
    };
    Tensor::from_dispatch(<Dispatch as EffnetKernels>::depthwise_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        s,
        top,
        bottom,
        left,
        right,
    ))
}

/// TensorFlow's SAME padding along one axis: the output is ⌈size/stride⌉ and the odd pixel goes
/// to the bottom/right (burn computes the same, but keeps it private).
fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// Training-mode BatchNorm (batch statistics) of `[n, c, h, w]`: burn's `batch_norm_train`,
/// through the fused kernels on the fast path.
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> burn::tensor::module::BatchNormTrainOutput<4> {
    if !fast_path(&x) {
        return burn::tensor::module::batch_norm_train(x, gamma, beta, epsilon);
    }
    let channels = x.dims()[1];
    let stats: Tensor<2> = Tensor::from_dispatch(<Dispatch as EffnetKernels>::bn_stats(x.clone().into_dispatch()));
    let output = Tensor::from_dispatch(<Dispatch as EffnetKernels>::bn_normalize(
        x.into_dispatch(),
        stats.clone().into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ));
    burn::tensor::module::BatchNormTrainOutput {
        output,
        mean: stats.clone().narrow(0, 0, 1).reshape([channels]),
        variance: stats.narrow(0, 1, 1).reshape([channels]),
    }
}

/// A 1×1 convolution as `W[c_out, c_in] · X[n][c_in, h·w]`. burn differentiates the product
/// with two GEMMs, where its convolution backward computes the weight gradient by a transposing
/// copy and an im2col with an h×w "kernel".
fn pointwise_conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [n, cin, h, w] = x.dims();
    let [cout, ..] = conv.weight.dims();
    let weight = conv.weight.val().reshape([1, cout, cin]);
    weight.matmul(x.reshape([n, cin, h * w])).reshape([n, cout, h, w])
}

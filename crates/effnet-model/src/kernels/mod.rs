//! Faster CPU kernels for the operations that dominate EfficientNet on burn's Flex backend:
//! SiLU, sigmoid, the depthwise convolution and training-mode BatchNorm (forward and backward).
//!
//! They plug into burn through its backend-extension mechanism, keep autodiff (hand-written
//! backward steps) and match burn's own ops to float rounding (tests in this module and in
//! `tests/kernels.rs`). Every other backend and non-f32 tensors use burn's ops unchanged, so the
//! model still runs on every backend. `EFFNET_KERNELS=burn` (or a list such as
//! `activation,depthwise`) switches kernels off, so each one's speed-up can be measured
//! against the same build.

mod batchnorm;
mod depthwise;
mod flex;
mod pointwise;
mod simd;

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

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use flex::EffnetKernels;
use std::sync::atomic::{AtomicU8, Ordering};

/// One switch per kernel family, to measure each one's contribution in the same build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kernel {
    /// SiLU and sigmoid.
    Activation = 1,
    Depthwise = 2,
    BatchNorm = 4,
    /// 1×1 convolutions as one GEMM per sample.
    Pointwise = 8,
    /// Squeeze-excitation's per-channel rescale.
    ChannelScale = 16,
}

impl Kernel {
    pub const ALL: [Kernel; 5] =
        [Kernel::Activation, Kernel::Depthwise, Kernel::BatchNorm, Kernel::Pointwise, Kernel::ChannelScale];

    fn name(self) -> &'static str {
        match self {
            Kernel::Activation => "activation",
            Kernel::Depthwise => "depthwise",
            Kernel::BatchNorm => "batchnorm",
            Kernel::Pointwise => "pointwise",
            Kernel::ChannelScale => "scale",
        }
    }
}

const ALL_BITS: u8 = 1 | 2 | 4 | 8 | 16;
/// Bit 7 set: not yet read from the environment.
const UNREAD: u8 = 0x80;
static MASK: AtomicU8 = AtomicU8::new(UNREAD);

/// Parses a kernel selection: `all`, `burn` (none: burn's own ops everywhere) or a comma-separated
/// list of `activation`, `depthwise`, `batchnorm`, `pointwise`, `scale`.
pub fn parse_selection(spec: &str) -> Result<Vec<Kernel>, String> {
    match spec.trim() {
        "all" | "effnet" | "" => Ok(Kernel::ALL.to_vec()),
        "burn" | "none" => Ok(vec![]),
        list => list
            .split(',')
            .map(|name| {
                Kernel::ALL.into_iter().find(|k| k.name() == name.trim()).ok_or_else(|| {
                    format!("unknown kernel `{name}` (expected all, burn, or a list of activation, depthwise, batchnorm, pointwise, scale)")
                })
            })
            .collect(),
    }
}

fn mask() -> u8 {
    let m = MASK.load(Ordering::Relaxed);
    if m & UNREAD == 0 {
        return m;
    }
    // `EFFNET_KERNELS` as in [`parse_selection`]; an unreadable value keeps every kernel on.
    let selected = std::env::var("EFFNET_KERNELS").ok().and_then(|v| parse_selection(&v).ok());
    let m = selected.map_or(ALL_BITS, |ks| ks.iter().fold(0, |m, k| m | *k as u8));
    MASK.store(m, Ordering::Relaxed);
    m
}

/// Whether `kernel` is switched on: yes unless the `EFFNET_KERNELS` environment variable (see
/// [`parse_selection`]) or [`select`] / [`set_enabled`] said otherwise.
pub fn is_enabled(kernel: Kernel) -> bool {
    mask() & kernel as u8 != 0
}

/// Switches exactly `kernels` on for the whole process.
pub fn select(kernels: &[Kernel]) {
    MASK.store(kernels.iter().fold(0, |m, k| m | *k as u8), Ordering::Relaxed);
}

/// Switches every kernel on or off for the whole process (benchmarks and parity tests compare
/// the two paths in one run).
pub fn set_enabled(on: bool) {
    MASK.store(if on { ALL_BITS } else { 0 }, Ordering::Relaxed);
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
    x.dtype() == DType::F32 && is_flex(x.device().as_dispatch())
}

fn use_kernel<const D: usize>(kernel: Kernel, x: &Tensor<D>) -> bool {
    is_enabled(kernel) && fast_path(x)
}

/// `x·sigmoid(x)` (swish).
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if use_kernel(Kernel::Activation, &x) {
        Tensor::from_dispatch(<Dispatch as EffnetKernels>::silu(x.into_dispatch()))
    } else {
        burn::tensor::activation::silu(x)
    }
}

/// `1 / (1 + e^−x)`.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if use_kernel(Kernel::Activation, &x) {
        Tensor::from_dispatch(<Dispatch as EffnetKernels>::sigmoid(x.into_dispatch()))
    } else {
        burn::tensor::activation::sigmoid(x)
    }
}

/// `conv.forward(x)`; on the fast path a bias-free depthwise k×k conv (groups = channels,
/// dilation 1) goes through the depthwise kernel and a bias-free 1×1 conv through one GEMM per
/// sample.
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
    if pointwise && use_kernel(Kernel::Pointwise, &x) {
        return pointwise_conv2d(conv, x);
    }
    if !depthwise || !use_kernel(Kernel::Depthwise, &x) {
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
    if !use_kernel(Kernel::BatchNorm, &x) {
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

/// A 1×1 convolution through the GEMM kernels of [`pointwise`].
fn pointwise_conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as EffnetKernels>::pointwise_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
    ))
}

/// Inference BatchNorm (running statistics) of `[n, c, h, w]`, followed by SiLU when
/// `then_silu`: one fused in-place pass on the fast path without autodiff, burn's ops otherwise.
pub fn batch_norm_inference(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    epsilon: f64,
    then_silu: bool,
) -> Tensor<4> {
    let ours = use_kernel(Kernel::BatchNorm, &x) && !x.device().is_autodiff();
    if ours && (!then_silu || is_enabled(Kernel::Activation)) {
        return bn_inference(x, gamma, beta, mean, var, epsilon, then_silu);
    }
    let y = if ours {
        bn_inference(x, gamma, beta, mean, var, epsilon, false)
    } else {
        burn::tensor::module::batch_norm(x, gamma, beta, mean, var, epsilon)
    };
    if then_silu { silu(y) } else { y }
}

fn bn_inference(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    epsilon: f64,
    silu: bool,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as EffnetKernels>::bn_inference(
        x.into_dispatch(),
        mean.into_dispatch(),
        var.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        silu,
    ))
}

/// Squeeze-excitation's rescale `x · s` of `[n, c, h, w]` by `[n, c, 1, 1]` (in place in
/// inference; burn's broadcast multiply otherwise).
pub fn channel_scale(x: Tensor<4>, s: Tensor<4>) -> Tensor<4> {
    if !use_kernel(Kernel::ChannelScale, &x) {
        return x * s;
    }
    Tensor::from_dispatch(<Dispatch as EffnetKernels>::channel_scale(x.into_dispatch(), s.into_dispatch()))
}

//! The generic path's operations: each one runs effnet's kernel on the fast path (f32 on Flex,
//! autodiff or not, its family selected) and burn's own op, or the caller's, everywhere else.

use crate::flex::EffnetKernels;
use crate::selection::{Kernel, is_enabled};
use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;

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

/// `x` stored channels-last on the fast path when that kernel family is on (the training path's
/// blocks then run their channels-last kernels, see `layout.rs`); `x` itself otherwise.
pub fn channels_last(x: Tensor<4>) -> Tensor<4> {
    if use_kernel(Kernel::ChannelsLast, &x) {
        Tensor::from_dispatch(<Dispatch as EffnetKernels>::channels_last(x.into_dispatch()))
    } else {
        x
    }
}

/// A residual block's end, `y·s + x` with per-sample scales `s` `[n, 1, 1, 1]` (stochastic
/// depth's mask; `None`: none), in `y`'s memory order on the fast path (see `layout.rs`);
/// burn's ops elsewhere.
pub fn residual(y: Tensor<4>, x: Tensor<4>, scale: Option<Tensor<4>>) -> Tensor<4> {
    if use_kernel(Kernel::ChannelsLast, &y) {
        let s = scale.unwrap_or_else(|| Tensor::ones([y.dims()[0], 1, 1, 1], &y.device()));
        let s = s.into_dispatch();
        return Tensor::from_dispatch(<Dispatch as EffnetKernels>::residual(y.into_dispatch(), x.into_dispatch(), s));
    }
    match scale {
        Some(s) => y * s + x,
        None => y + x,
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

/// Whether `conv` is a bias-free depthwise k×k conv (groups = channels, dilation 1) on
/// `channels` input channels: the depthwise kernel's case.
pub fn is_depthwise(conv: &Conv2d, channels: usize) -> bool {
    let [k, k2] = conv.kernel_size;
    conv.groups == channels
        && channels > 1
        && conv.weight.dims()[0] == channels
        && k == k2
        && conv.stride[0] == conv.stride[1]
        && conv.dilation == [1, 1]
        && conv.bias.is_none()
}

/// Whether `conv` is a bias-free 1×1 conv with stride 1 and no padding: one GEMM per sample.
pub fn is_pointwise(conv: &Conv2d) -> bool {
    conv.groups == 1
        && conv.kernel_size == [1, 1]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.bias.is_none()
        && matches!(conv.padding, PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0))
}

/// Whether `conv` is a dense (groups = 1) square k×k conv without bias or dilation: the stem,
/// which [`crate::conv_bn_act`] runs as im2col + GEMM with BN and the activation fused.
pub fn is_dense(conv: &Conv2d) -> bool {
    let [k, k2] = conv.kernel_size;
    conv.groups == 1 && k == k2 && conv.stride[0] == conv.stride[1] && conv.dilation == [1, 1] && conv.bias.is_none()
}

/// `[(top, bottom), (left, right)]` padding of a square-kernel conv on an `h`×`w` input.
pub fn paddings(conv: &Conv2d, h: usize, w: usize) -> [(usize, usize); 2] {
    let (k, s) = (conv.kernel_size[0], conv.stride[0]);
    match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [same_padding(h, k, s), same_padding(w, k, s)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    }
}

/// TensorFlow's SAME padding along one axis: the output is ⌈size/stride⌉ and the odd pixel goes
/// to the bottom/right (burn computes the same, but keeps it private).
fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out.max(1) - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// `conv(x)`: on the fast path a depthwise conv (see [`is_depthwise`]) goes through the
/// depthwise kernel and a 1×1 conv (see [`is_pointwise`]) through one GEMM per sample; any
/// other conv, dtype or backend through `generic` (burn's `conv.forward`, or the model's
/// mixed-precision conv).
pub fn conv2d(conv: &Conv2d, x: Tensor<4>, generic: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
    let [_, channels, h, w] = x.dims();
    if is_pointwise(conv) && use_kernel(Kernel::Pointwise, &x) {
        return Tensor::from_dispatch(<Dispatch as EffnetKernels>::pointwise_conv2d(
            x.into_dispatch(),
            conv.weight.val().into_dispatch(),
        ));
    }
    if !is_depthwise(conv, channels) || !use_kernel(Kernel::Depthwise, &x) {
        return generic(x);
    }
    let [(top, bottom), (left, right)] = paddings(conv, h, w);
    Tensor::from_dispatch(<Dispatch as EffnetKernels>::depthwise_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        conv.stride[0],
        top,
        bottom,
        left,
        right,
    ))
}

/// Training-mode BatchNorm (batch statistics) of `[n, c, h, w]`: burn's `batch_norm_train`,
/// through the fused kernels on the fast path. With `then_silu` the output is `silu` of it, in
/// the same pass on the fast path (where the BatchNorm output is then never stored: one
/// activation fewer kept for the backward, which recomputes it).
pub fn batch_norm_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    then_silu: bool,
) -> burn::tensor::module::BatchNormTrainOutput<4> {
    // Fused only with both kernel families on; otherwise BatchNorm, then SiLU, each as selected.
    if then_silu && !(use_kernel(Kernel::BatchNorm, &x) && is_enabled(Kernel::Activation)) {
        let mut out = batch_norm_train(x, gamma, beta, epsilon, false);
        out.output = silu(out.output);
        return out;
    }
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
        then_silu,
    ));
    burn::tensor::module::BatchNormTrainOutput {
        output,
        mean: stats.clone().narrow(0, 0, 1).reshape([channels]),
        variance: stats.narrow(0, 1, 1).reshape([channels]),
    }
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

/// Squeeze-excitation `x · sigmoid(expand(act(reduce(mean(x)))))` with `reduce`/`expand` 1×1
/// convs with bias: one op on the fast path (see `squeeze_excite.rs`), `generic` (the model's
/// op-by-op version) for any other conv, dtype or backend.
pub fn squeeze_excite(
    x: Tensor<4>,
    reduce: &Conv2d,
    expand: &Conv2d,
    act: crate::Act,
    generic: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let one_by_one = |c: &Conv2d| {
        c.groups == 1
            && c.kernel_size == [1, 1]
            && c.stride == [1, 1]
            && c.dilation == [1, 1]
            && matches!(c.padding, PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0))
    };
    let ours = use_kernel(Kernel::ChannelScale, &x) && is_enabled(Kernel::Activation);
    let (Some(b1), Some(b2)) = (&reduce.bias, &expand.bias) else { return generic(x) };
    if !ours || !one_by_one(reduce) || !one_by_one(expand) {
        return generic(x);
    }
    Tensor::from_dispatch(<Dispatch as EffnetKernels>::squeeze_excite(
        x.into_dispatch(),
        reduce.weight.val().into_dispatch(),
        b1.val().into_dispatch(),
        expand.weight.val().into_dispatch(),
        b2.val().into_dispatch(),
        act,
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

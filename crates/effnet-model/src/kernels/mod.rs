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
mod channels_last;
mod depthwise;
mod flex;
mod fused;
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
use burn::nn::Linear;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::DType;
use flex::EffnetKernels;
pub use simd::Act;
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
    /// Inference only: BN folded into the 1×1/depthwise conv outputs with the activation,
    /// SE's squeeze/rescale and the residual add fused in (see `fused.rs`).
    Fused = 32,
}

impl Kernel {
    pub const ALL: [Kernel; 6] = [
        Kernel::Activation,
        Kernel::Depthwise,
        Kernel::BatchNorm,
        Kernel::Pointwise,
        Kernel::ChannelScale,
        Kernel::Fused,
    ];

    fn name(self) -> &'static str {
        match self {
            Kernel::Activation => "activation",
            Kernel::Depthwise => "depthwise",
            Kernel::BatchNorm => "batchnorm",
            Kernel::Pointwise => "pointwise",
            Kernel::ChannelScale => "scale",
            Kernel::Fused => "fused",
        }
    }
}

const ALL_BITS: u8 = 1 | 2 | 4 | 8 | 16 | 32;
/// Bit 7 set: not yet read from the environment.
const UNREAD: u8 = 0x80;
static MASK: AtomicU8 = AtomicU8::new(UNREAD);

/// Parses a kernel selection: `all`, `burn` (none: burn's own ops everywhere) or a comma-separated
/// list of `activation`, `depthwise`, `batchnorm`, `pointwise`, `scale`, `fused`.
pub fn parse_selection(spec: &str) -> Result<Vec<Kernel>, String> {
    match spec.trim() {
        "all" | "effnet" | "" => Ok(Kernel::ALL.to_vec()),
        "burn" | "none" => Ok(vec![]),
        list => list
            .split(',')
            .map(|name| {
                Kernel::ALL.into_iter().find(|k| k.name() == name.trim()).ok_or_else(|| {
                    format!("unknown kernel `{name}` (expected all, burn, or a list of activation, depthwise, batchnorm, pointwise, scale, fused)")
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

/// `[(top, bottom), (left, right)]` padding of a square-kernel conv on an `h`×`w` input.
fn paddings(conv: &Conv2d, h: usize, w: usize) -> [(usize, usize); 2] {
    let (k, s) = (conv.kernel_size[0], conv.stride[0]);
    match conv.padding {
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        PaddingConfig2d::Same => [same_padding(h, k, s), same_padding(w, k, s)],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
    }
}

/// `conv.forward(x)`; on the fast path a depthwise conv (see [`is_depthwise`]) goes through the
/// depthwise kernel and a 1×1 conv (see [`is_pointwise`]) through one GEMM per sample.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, channels, h, w] = x.dims();
    if is_pointwise(conv) && use_kernel(Kernel::Pointwise, &x) {
        return pointwise_conv2d(conv, x);
    }
    if !is_depthwise(conv, channels) || !use_kernel(Kernel::Depthwise, &x) {
        return conv.forward(x);
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

/// Whether the fused inference kernels apply to `x`: f32 on Flex without autodiff, with the
/// `fused` kernel family on.
pub fn fused_inference(x: &Tensor<4>) -> bool {
    is_enabled(Kernel::Fused) && fast_path(x) && !x.device().is_autodiff()
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data")
}

/// Inference BatchNorm as a per-channel `(scale, shift)`: `scale = γ/√(var + ε)`,
/// `shift = β − mean·scale` (computed in f64).
pub fn fold_batch_norm(
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    epsilon: f64,
) -> (Vec<f32>, Vec<f32>) {
    let [g, b, m, v] = [gamma, beta, mean, var].map(to_vec);
    batchnorm::affine(&m, &v, &g, &b, epsilon)
}

/// Fused inference (see [`fused_inference`]): `act(scale ⊙ conv(gates ⊙ x) + shift) + residual`
/// for a 1×1 `conv` ([`is_pointwise`]), where `gates` are SE's `[n, c_in]` channel gates.
pub fn pointwise_bn_act(
    x: Tensor<4>,
    conv: &Conv2d,
    bn: (&[f32], &[f32]),
    act: Act,
    gates: Option<&[f32]>,
    residual: Option<Tensor<4>>,
) -> Tensor<4> {
    debug_assert!(is_pointwise(conv));
    fused::tensor(fused::pointwise_affine(
        fused::raw(x),
        fused::primitive(conv.weight.val()),
        bn,
        act,
        gates,
        residual.map(fused::raw),
    ))
}

/// Fused inference (see [`fused_inference`]): `act(scale ⊙ conv(x) + shift)` for a depthwise
/// `conv` ([`is_depthwise`]) and, with `squeeze`, the `[n, c]` spatial means of the result.
pub fn depthwise_bn_act(
    x: Tensor<4>,
    conv: &Conv2d,
    bn: (&[f32], &[f32]),
    act: Act,
    squeeze: bool,
) -> (Tensor<4>, Option<Vec<f32>>) {
    let [_, channels, h, w] = x.dims();
    debug_assert!(is_depthwise(conv, channels));
    let pads = paddings(conv, h, w);
    let (y, means) = fused::depthwise_affine(
        fused::raw(x),
        fused::primitive(conv.weight.val()),
        conv.stride[0],
        pads,
        bn,
        act,
        squeeze,
    );
    (fused::tensor(y), means)
}

/// Whether `conv` is a dense (groups = 1) square k×k conv without bias or dilation: the stem,
/// which [`conv_bn_act`] runs as im2col + GEMM with BN and the activation fused.
pub fn is_dense(conv: &Conv2d) -> bool {
    let [k, k2] = conv.kernel_size;
    conv.groups == 1 && k == k2 && conv.stride[0] == conv.stride[1] && conv.dilation == [1, 1] && conv.bias.is_none()
}

/// Fused inference (see [`fused_inference`]): `act(scale ⊙ conv(x) + shift)` for a dense conv
/// ([`is_dense`]).
pub fn conv_bn_act(x: Tensor<4>, conv: &Conv2d, bn: (&[f32], &[f32]), act: Act) -> Tensor<4> {
    debug_assert!(is_dense(conv));
    let [_, _, h, w] = x.dims();
    let pads = paddings(conv, h, w);
    fused::tensor(fused::conv_affine(fused::raw(x), fused::primitive(conv.weight.val()), conv.stride[0], pads, bn, act))
}

/// Fused inference (see [`fused_inference`]): global average pooling and `linear`,
/// `mean_hw(x) · W + b`, from the `[n, c, h, w]` head output to `[n, classes]` logits.
pub fn pool_linear(x: Tensor<4>, linear: &Linear) -> Tensor<2> {
    fused::tensor(fused::pool_linear(
        fused::raw(x),
        fused::primitive(linear.weight.val()),
        linear.bias.as_ref().map(|b| fused::primitive(b.val())),
    ))
}

/// Squeeze-excitation's `[n, c]` gates from the squeezed means, for 1×1 convs `reduce`
/// (`c → r`) and `expand` (`r → c`) with biases: `sigmoid(expand(act(reduce(means))))`.
pub fn se_gates(means: &[f32], reduce: &Conv2d, expand: &Conv2d, act: Act) -> Vec<f32> {
    let bias = |c: &Conv2d| c.bias.as_ref().map_or_else(|| vec![0.0; c.weight.dims()[0]], |b| to_vec(b.val()));
    let channels = expand.weight.dims()[0];
    let (w1, b1) = (to_vec(reduce.weight.val()), bias(reduce));
    let (w2, b2) = (to_vec(expand.weight.val()), bias(expand));
    fused::se_gates(means, channels, (&w1, &b1), (&w2, &b2), act)
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

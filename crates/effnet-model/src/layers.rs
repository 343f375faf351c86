//! Small building blocks: activation, conv + BN (+ activation), squeeze-excitation, drop path.

use crate::kernels;
use crate::norm::BatchNorm;
use burn::module::{Flag, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_config::{Activation, Padding};

/// Applies an activation function.
pub fn activate(act: Activation, x: Tensor<4>) -> Tensor<4> {
    match act {
        Activation::Swish => kernels::silu(x),
        Activation::Relu6 => burn::tensor::activation::relu(x).clamp_max(6.0),
    }
}

/// An activation as the epilogue of a fused inference kernel.
fn epilogue(act: Option<Activation>) -> kernels::Act {
    match act {
        None => kernels::Act::Identity,
        Some(Activation::Swish) => kernels::Act::Silu,
        Some(Activation::Relu6) => kernels::Act::Relu6,
    }
}

/// tensorflow/tpu's conv initializer: `N(0, sqrt(2 / fan_out))`, `fan_out = k·k·out/groups`.
fn tf_conv_init(k: usize, out: usize, groups: usize) -> Initializer {
    let fan_out = (k * k * out / groups) as f64;
    Initializer::Normal { mean: 0.0, std: (2.0 / fan_out).sqrt() }
}

/// Builds a bias-free k×k conv with the model's padding rule.
pub fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
    device: &Device,
) -> Conv2d {
    let pad = match (padding, k) {
        (_, 1) => PaddingConfig2d::Valid,
        // burn's `Same` is TensorFlow's SAME, recomputed from the input size on every forward:
        // odd pixel at the bottom/right, correct at any resolution and stride.
        (Padding::TfSame, _) => PaddingConfig2d::Same,
        (Padding::Symmetric, _) => PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2),
    };
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(pad)
        .with_bias(false)
        .with_initializer(tf_conv_init(k, cout, groups))
        .init(device)
}

/// Shared BatchNorm settings of a model.
#[derive(Debug, Clone, Copy)]
pub struct NormSpec {
    /// burn-convention momentum.
    pub momentum: f64,
    pub epsilon: f64,
}

/// Convolution, BatchNorm and an optional activation.
#[derive(Module, Debug)]
pub struct ConvBnAct {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    #[module(skip)]
    pub act: Option<Activation>,
}

impl ConvBnAct {
    /// A conv (see [`conv`]) followed by BN and `act`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        padding: Padding,
        norm: NormSpec,
        act: Option<Activation>,
        device: &Device,
    ) -> Self {
        Self {
            conv: conv(cin, cout, k, stride, groups, padding, device),
            bn: BatchNorm::new(cout, norm.momentum, norm.epsilon, device),
            act,
        }
    }

    /// The generic path (autodiff, any backend and dtype); [`crate::EfficientNet`] decides when
    /// [`ConvBnAct::forward_fused`] runs instead.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = kernels::conv2d(&self.conv, x, |x| crate::mixed::conv2d(&self.conv, x));
        match self.act {
            Some(Activation::Swish) => self.bn.forward_silu(x),
            Some(a) => activate(a, self.bn.forward(x)),
            None => self.bn.forward(x),
        }
    }

    /// Inference through one fused kernel (the caller checked [`kernels::fused_inference`]):
    /// `act(bn(conv(x)))` for the stem and the head.
    pub fn forward_fused(&self, x: Tensor<4>) -> Tensor<4> {
        kernels::conv_bn_act(x, &self.fused())
    }

    /// This layer as the fused kernels take it: the conv, BN folded to `(scale, shift)`, the
    /// activation.
    pub fn fused(&self) -> kernels::FusedConv<'_> {
        let (scale, shift) = self.bn.folded();
        kernels::FusedConv { conv: &self.conv, scale, shift, act: epilogue(self.act) }
    }
}

/// Squeeze-excitation: global mean → 1×1 reduce (bias) → act → 1×1 expand (bias) → sigmoid,
/// rescaling the full feature map.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    pub reduce: Conv2d,
    pub expand: Conv2d,
    #[module(skip)]
    pub act: Activation,
}

impl SqueezeExcite {
    /// SE on `channels` with a bottleneck of `reduced` channels.
    pub fn new(channels: usize, reduced: usize, act: Activation, device: &Device) -> Self {
        let make = |cin: usize, cout: usize| {
            let mut c = Conv2dConfig::new([cin, cout], [1, 1]).with_initializer(tf_conv_init(1, cout, 1)).init(device);
            // Keras initialises conv biases to zero.
            c.bias = Some(Initializer::Zeros.init([cout], device));
            c
        };
        Self { reduce: make(channels, reduced), expand: make(reduced, channels), act }
    }

    /// One op on the Flex fast path ([`kernels::squeeze_excite`]), op by op elsewhere.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        kernels::squeeze_excite(x, &self.reduce, &self.expand, epilogue(Some(self.act)), |x| self.forward_ops(x))
    }

    fn forward_ops(&self, x: Tensor<4>) -> Tensor<4> {
        let s = x.clone().mean_dim(2).mean_dim(3);
        let s = activate(self.act, crate::mixed::conv2d(&self.reduce, s));
        let s = kernels::sigmoid(crate::mixed::conv2d(&self.expand, s));
        kernels::channel_scale(x, s)
    }

    /// This SE as the fused kernels take it (they compute the gates from the depthwise pass's
    /// means and fold the rescale into the projection that follows).
    pub fn fused(&self) -> kernels::FusedSe<'_> {
        kernels::FusedSe { reduce: &self.reduce, expand: &self.expand, act: epilogue(Some(self.act)) }
    }
}

/// Per-sample stochastic depth ("drop connect" in tensorflow/tpu): in training, each sample's
/// residual branch is zeroed with probability `rate` and the survivors are scaled by 1/keep.
/// The identity in evaluation.
#[derive(Module, Debug)]
pub struct DropPath {
    pub rate: f64,
    pub training: Param<Flag>,
}

impl DropPath {
    pub fn new(rate: f64) -> Self {
        Self { rate, training: Param::from_bool(true) }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self.scales(&x) {
            Some(mask) => x * mask,
            None => x,
        }
    }

    /// The residual's end: `shortcut + forward(x)`, in `x`'s memory order on effnet's kernels.
    pub fn add_to(&self, x: Tensor<4>, shortcut: Tensor<4>) -> Tensor<4> {
        let scales = self.scales(&x);
        kernels::residual(x, shortcut, scales)
    }

    /// Each sample's scale, `[batch, 1, 1, 1]`: 0 (dropped) or `1 / keep`, in `x`'s dtype; `None`
    /// when nothing is dropped (inference, rate 0).
    fn scales(&self, x: &Tensor<4>) -> Option<Tensor<4>> {
        if self.rate <= 0.0 || !self.training.is_enabled() || !x.device().is_autodiff() {
            return None;
        }
        let keep = 1.0 - self.rate;
        let [b, _, _, _] = x.dims();
        let mask = Tensor::<4>::random([b, 1, 1, 1], Distribution::Bernoulli(keep), &x.device());
        // In the activations' dtype (bf16/f16 under autocast).
        Some(crate::mixed::cast_to(mask.div_scalar(keep), crate::mixed::dtype_of(x)))
    }
}

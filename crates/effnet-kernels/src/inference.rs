//! The fused inference path's seam: one question ([`fused_inference`], asked once per forward
//! pass) and one entry point per kind of layer ([`conv_bn_act`], [`mbconv`], [`pool_linear`]),
//! each taking the layer as plain parts (conv weights, BatchNorm folded to scale and shift,
//! activation) so that the kernels know nothing of the model's modules.

use crate::fused;
use crate::ops::{fast_path, is_dense, is_depthwise, is_pointwise, paddings};
use crate::selection::{Kernel, is_enabled};
use crate::simd::Act;
use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// Whether the fused inference kernels apply to `x`: f32 on Flex without autodiff, with the
/// `fused` kernel family on. Fused layers produce such tensors again, so the answer for a
/// model's input holds for every layer after it.
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
    crate::batchnorm::affine(&m, &v, &g, &b, epsilon)
}

/// A bias-free conv, inference BatchNorm as `(scale, shift)` (see [`fold_batch_norm`]) and the
/// activation: `act(scale ⊙ conv(x) + shift)`.
pub struct FusedConv<'a> {
    pub conv: &'a Conv2d,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub act: Act,
}

/// Squeeze-excitation: 1×1 `reduce` (`c → r`) and `expand` (`r → c`) convs with biases and the
/// activation between them; the gates are `sigmoid(expand(act(reduce(means))))`.
pub struct FusedSe<'a> {
    pub reduce: &'a Conv2d,
    pub expand: &'a Conv2d,
    pub act: Act,
}

/// An MBConv block: 1×1 expand (optional), depthwise, SE (optional), 1×1 project and the
/// residual add (drop path is the identity in inference).
pub struct FusedBlock<'a> {
    pub expand: Option<FusedConv<'a>>,
    pub depthwise: FusedConv<'a>,
    pub se: Option<FusedSe<'a>>,
    pub project: FusedConv<'a>,
    pub residual: bool,
}

/// A conv layer through one fused kernel: a 1×1 conv as one GEMM, any other dense conv (the
/// stem) as im2col + GEMM, with BN and the activation in the epilogue. The caller asked
/// [`fused_inference`].
pub fn conv_bn_act(x: Tensor<4>, layer: &FusedConv) -> Tensor<4> {
    if is_pointwise(layer.conv) {
        return pointwise_bn_act(x, layer, None, None);
    }
    assert!(is_dense(layer.conv), "fused conv_bn_act: neither a 1×1 nor a dense conv");
    let [_, _, h, w] = x.dims();
    let pads = paddings(layer.conv, h, w);
    let w = fused::primitive(layer.conv.weight.val());
    fused::tensor(fused::conv_affine(fused::raw(x), w, layer.conv.stride[0], pads, bn(layer), layer.act))
}

/// A whole MBConv block through the fused kernels: expand (fused 1×1) → depthwise with SE's
/// squeeze in the same pass (the two fused per band of rows on large maps) → SE's gates →
/// project with the gates folded into its GEMM and the residual added in its epilogue. The caller asked [`fused_inference`].
pub fn mbconv(x: Tensor<4>, block: &FusedBlock) -> Tensor<4> {
    let (y, means) = expand_depthwise_bn_act(x.clone(), block.expand.as_ref(), &block.depthwise, block.se.is_some());
    let gates = block.se.as_ref().zip(means).map(|(se, m)| se_gates(&m, se));
    pointwise_bn_act(y, &block.project, gates.as_deref(), block.residual.then_some(x))
}

fn bn<'a>(layer: &'a FusedConv) -> (&'a [f32], &'a [f32]) {
    (&layer.scale, &layer.shift)
}

/// `act(scale ⊙ conv(gates ⊙ x) + shift) + residual` for a 1×1 conv, where `gates` are SE's
/// `[n, c_in]` channel gates.
fn pointwise_bn_act(x: Tensor<4>, layer: &FusedConv, gates: Option<&[f32]>, residual: Option<Tensor<4>>) -> Tensor<4> {
    assert!(is_pointwise(layer.conv), "fused 1×1 conv expected");
    let w = fused::primitive(layer.conv.weight.val());
    fused::tensor(fused::pointwise_affine(fused::raw(x), w, bn(layer), layer.act, gates, residual.map(fused::raw)))
}

/// The optional 1×1 expand conv, then `act(scale ⊙ depthwise + shift)`, and, with `squeeze`, the
/// `[n, c]` spatial means of the result (see [`fused::expand_depthwise_affine`]).
fn expand_depthwise_bn_act(
    x: Tensor<4>,
    expand: Option<&FusedConv>,
    layer: &FusedConv,
    squeeze: bool,
) -> (Tensor<4>, Option<Vec<f32>>) {
    let [_, _, h, w] = x.dims();
    let channels = expand.map_or(x.dims()[1], |e| e.conv.weight.dims()[0]);
    assert!(is_depthwise(layer.conv, channels), "fused depthwise conv expected");
    assert!(expand.is_none_or(|e| is_pointwise(e.conv)), "fused 1×1 expand conv expected");
    let pads = paddings(layer.conv, h, w);
    let expand = expand.map(|e| (fused::primitive(e.conv.weight.val()), bn(e), e.act));
    let w = fused::primitive(layer.conv.weight.val());
    let (y, means) = fused::expand_depthwise_affine(
        fused::raw(x),
        expand,
        w,
        layer.conv.stride[0],
        pads,
        bn(layer),
        layer.act,
        squeeze,
    );
    (fused::tensor(y), means)
}

/// Squeeze-excitation's `[n, c]` gates from the squeezed means.
fn se_gates(means: &[f32], se: &FusedSe) -> Vec<f32> {
    let bias = |c: &Conv2d| c.bias.as_ref().map_or_else(|| vec![0.0; c.weight.dims()[0]], |b| to_vec(b.val()));
    let channels = se.expand.weight.dims()[0];
    let (w1, b1) = (to_vec(se.reduce.weight.val()), bias(se.reduce));
    let (w2, b2) = (to_vec(se.expand.weight.val()), bias(se.expand));
    fused::se_gates(means, channels, (&w1, &b1), (&w2, &b2), se.act)
}

/// Global average pooling and `linear`, `mean_hw(x) · W + b`, from the `[n, c, h, w]` head
/// output to `[n, classes]` logits. The caller asked [`fused_inference`].
pub fn pool_linear(x: Tensor<4>, linear: &Linear) -> Tensor<2> {
    fused::tensor(fused::pool_linear(
        fused::raw(x),
        fused::primitive(linear.weight.val()),
        linear.bias.as_ref().map(|b| fused::primitive(b.val())),
    ))
}

//! The fused inference path's seam: one question ([`fused_inference`], asked once per forward
//! pass) and one entry point per kind of layer ([`conv_bn_act`], [`mbconv`], [`pool_linear`]),
//! each taking the layer as plain parts (conv weights, BatchNorm folded to scale and shift,
//! activation) so that the kernels know nothing of the model's modules.

use crate::activation::Act;
use crate::flex::slice;
use crate::ops::{fast_path, is_dense, is_depthwise, is_pointwise, paddings};
use crate::selection::{Kernel, is_enabled};
use crate::{channels_last, fused};
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
/// project with the gates folded into its GEMM and the residual added in its epilogue; large
/// maps sample by sample (see [`channels_last::mbconv`]). The caller asked [`fused_inference`].
pub fn mbconv(x: Tensor<4>, block: &FusedBlock) -> Tensor<4> {
    let [_, cin, h, w] = x.dims();
    let weights = |c: &Conv2d| fused::primitive(c.weight.val());
    let expand = block.expand.as_ref().map(|e| {
        assert!(is_pointwise(e.conv), "fused 1×1 expand conv expected");
        (e, weights(e.conv))
    });
    let channels = expand.as_ref().map_or(cin, |(e, _)| e.conv.weight.dims()[0]);
    let dconv = block.depthwise.conv;
    assert!(is_depthwise(dconv, channels), "fused depthwise conv expected");
    assert!(is_pointwise(block.project.conv), "fused 1×1 projection expected");
    let (dw, pw) = (weights(dconv), weights(block.project.conv));
    let se = block.se.as_ref().map(se_gates);
    let parts = channels_last::Block {
        expand: expand.as_ref().map(|(e, w)| channels_last::Expand { w: slice(w), bn: bn(e), act: e.act }),
        depthwise: channels_last::Depthwise {
            w: slice(&dw),
            kernel: dconv.weight.dims()[2],
            stride: dconv.stride[0],
            pads: paddings(dconv, h, w),
            bn: bn(&block.depthwise),
            act: block.depthwise.act,
        },
        se: se.as_ref().map(|f| f as channels_last::Gates),
        project: channels_last::Project { w: slice(&pw), bn: bn(&block.project) },
        residual: block.residual,
    };
    fused::tensor(fused::mbconv(fused::raw(x), &parts))
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

/// Squeeze-excitation's gates as a function of the squeezed `[n, c]` means, for any n.
fn se_gates(se: &FusedSe) -> impl Fn(&[f32]) -> Vec<f32> + Sync + use<> {
    let bias = |c: &Conv2d| c.bias.as_ref().map_or_else(|| vec![0.0; c.weight.dims()[0]], |b| to_vec(b.val()));
    let channels = se.expand.weight.dims()[0];
    let (w1, b1) = (to_vec(se.reduce.weight.val()), bias(se.reduce));
    let (w2, b2) = (to_vec(se.expand.weight.val()), bias(se.expand));
    let act = se.act;
    move |means: &[f32]| fused::se_gates(means, channels, (&w1, &b1), (&w2, &b2), act)
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

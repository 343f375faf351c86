//! The kernels of [`crate::simd`] and [`crate::depthwise`] as burn operations on the Flex CPU
//! backend, differentiable through hand-written backward steps (`backward.rs`; burn's `extension`
//! feature).
//! Other backends never reach this file: [`crate::fast_path`] routes them to burn's own ops.

use super::{batchnorm, depthwise, pointwise, simd, squeeze_excite};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::{DType, Shape};
use rayon::prelude::*;

/// Fused operations effnet adds to burn.
#[backend_extension(Flex, Autodiff)]
pub trait EffnetKernels: Backend {
    /// `x·sigmoid(x)` in one pass.
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `1 / (1 + e^−x)`, whose backward reuses the output.
    fn sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Depthwise k×k convolution of `[n, c, h, w]` by `[c, 1, k, k]`, no bias, dilation 1.
    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad_top: usize,
        pad_bottom: usize,
        pad_left: usize,
        pad_right: usize,
    ) -> FloatTensor<Self>;
    /// Squeeze-excitation rescale: `x[n, c, :, :] · s[n, c]` for `x` `[n, c, h, w]`, `s` `[n, c, 1, 1]`.
    fn channel_scale(x: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self>;
    /// 1×1 convolution of `[n, c_in, h, w]` by `[c_out, c_in, 1, 1]`, no bias, stride 1.
    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Inference BatchNorm `(x − mean)·γ/√(var + ε) + β` in one pass (in place when possible),
    /// followed by SiLU when `silu`. Not differentiable: effnet routes only non-autodiff
    /// tensors here.
    fn bn_inference(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self>;
    /// Batch mean (row 0) and biased variance (row 1) per channel of `[n, c, h, w]`, as `[2, c]`;
    /// a constant for autodiff (the gradient flows through [`Self::bn_normalize`]).
    fn bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Squeeze-excitation `x · sigmoid(W₂ · act(W₁ · mean(x) + b₁) + b₂)` of `[n, c, h, w]`
    /// as one op, with the two 1×1 convs' weights `[r, c, 1, 1]`, `[c, r, 1, 1]` and biases.
    fn squeeze_excite(
        x: FloatTensor<Self>,
        reduce_weight: FloatTensor<Self>,
        reduce_bias: FloatTensor<Self>,
        expand_weight: FloatTensor<Self>,
        expand_bias: FloatTensor<Self>,
        act: simd::Act,
    ) -> FloatTensor<Self>;
    /// Training-mode BatchNorm output from the statistics of [`Self::bn_stats`], followed by
    /// SiLU when `silu` (then the BatchNorm output is never stored); its backward accounts for
    /// the statistics' dependence on `x`.
    fn bn_normalize(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self>;
}

pub(crate) fn contiguous(x: FlexTensor) -> FlexTensor {
    assert_eq!(x.dtype(), DType::F32, "effnet's Flex kernels are f32-only (the caller checks)");
    // `x` is dropped here, so a contiguous input comes back uniquely owned (in-place ops).
    x.to_contiguous()
}

pub(crate) fn new_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(burn::tensor::Bytes::from_elems(data), Layout::contiguous(shape), DType::F32)
}

pub(crate) fn slice(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>().expect("contiguous f32 tensor")
}

/// `f` into a fresh buffer (autodiff keeps the input as state).
pub(crate) fn map(x: FlexTensor, f: fn(&[f32], &mut [simd::Out])) -> FlexTensor {
    let x = contiguous(x);
    let shape = x.layout().shape().clone();
    // SAFETY: the simd kernels write every output element (their slices have equal lengths).
    let out = unsafe { simd::filled(shape.num_elements(), |o| f(slice(&x), o)) };
    new_tensor(out, shape)
}

/// `x`'s elements, writable when nobody else holds them (then an op can overwrite its input).
fn unique_mut(x: &mut FlexTensor) -> Option<&mut [f32]> {
    let (start, end) = x.layout().contiguous_offsets()?;
    x.try_storage_mut::<f32>().map(|buf| &mut buf[start..end])
}

/// `f` on `x`'s elements in place when nobody else holds them, else on a copy; the result is
/// the overwritten tensor.
pub(crate) fn overwrite<R>(x: FlexTensor, f: impl FnOnce(&mut [f32]) -> R) -> (FlexTensor, R) {
    let mut x = contiguous(x);
    if let Some(buf) = unique_mut(&mut x) {
        let r = f(buf);
        return (x, r);
    }
    let mut copy = slice(&x).to_vec();
    let r = f(&mut copy);
    (new_tensor(copy, x.layout().shape().clone()), r)
}

/// In inference nobody else holds the input, so the result can overwrite it.
fn map_in_place(x: FlexTensor, f: fn(&[f32], &mut [simd::Out]), f_in_place: fn(&mut [f32])) -> FlexTensor {
    let mut x = contiguous(x);
    if let Some(buf) = unique_mut(&mut x) {
        f_in_place(buf);
        return x;
    }
    map(x, f)
}

pub(crate) fn zip(a: FlexTensor, b: FlexTensor, f: fn(&[f32], &[f32], &mut [simd::Out])) -> FlexTensor {
    let (a, b) = (contiguous(a), contiguous(b));
    let shape = a.layout().shape().clone();
    assert_eq!(&shape, b.layout().shape(), "gradient shape");
    // SAFETY: as in `map`.
    let out = unsafe { simd::filled(shape.num_elements(), |o| f(slice(&a), slice(&b), o)) };
    new_tensor(out, shape)
}

pub(crate) fn geometry(
    x: &FlexTensor,
    w: &FlexTensor,
    stride: usize,
    pads: [(usize, usize); 2],
) -> depthwise::Geometry {
    let d = x.layout().shape();
    let wd = w.layout().shape();
    assert!(d.num_dims() == 4 && wd.num_dims() == 4, "depthwise conv expects 4-D input and weight");
    assert!(wd[0] == d[1] && wd[1] == 1 && wd[2] == wd[3], "depthwise weight {wd:?} for input {d:?}");
    depthwise::Geometry::new([d[0], d[1], d[2], d[3]], wd[2], stride, pads)
}

pub(crate) fn depthwise_forward(x: &FlexTensor, w: &FlexTensor, g: &depthwise::Geometry) -> FlexTensor {
    let y = depthwise::forward(g, slice(x), slice(w));
    new_tensor(y, Shape::from([g.batch, g.channels, g.out_height, g.out_width]))
}

pub(crate) fn bn_dims(x: &FlexTensor) -> batchnorm::Dims {
    let d = x.layout().shape();
    assert!(d.num_dims() == 4, "BatchNorm kernel expects [n, c, h, w], got {d:?}");
    batchnorm::Dims { batch: d[0], channels: d[1], plane: d[2] * d[3] }
}

pub(crate) fn flex_bn_stats(x: FlexTensor) -> FlexTensor {
    let x = contiguous(x);
    let d = bn_dims(&x);
    let (mut mean, var) = batchnorm::stats(&d, slice(&x));
    mean.extend(var);
    new_tensor(mean, Shape::from([2, d.channels]))
}

pub(crate) fn flex_bn_normalize(
    x: &FlexTensor,
    stats: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    eps: f64,
    silu: bool,
) -> FlexTensor {
    let d = bn_dims(x);
    let (mean, var) = slice(stats).split_at(d.channels);
    let (a, b) = batchnorm::affine(mean, var, slice(gamma), slice(beta), eps);
    new_tensor(batchnorm::normalize(&d, slice(x), &a, &b, silu), x.layout().shape().clone())
}

pub(crate) fn pw_dims(x: &FlexTensor, w: &FlexTensor) -> pointwise::Dims {
    let d = x.layout().shape();
    let wd = w.layout().shape();
    assert!(
        d.num_dims() == 4 && wd.num_dims() == 4 && wd[1] == d[1] && wd[2] == 1 && wd[3] == 1,
        "1×1 conv weight {wd:?} for input {d:?}"
    );
    pointwise::Dims { batch: d[0], cin: d[1], cout: wd[0], plane: d[2] * d[3] }
}

pub(crate) fn pw_forward(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let d = pw_dims(x, w);
    let [n, _, h, wd] = [x.layout().shape()[0], 0, x.layout().shape()[2], x.layout().shape()[3]];
    new_tensor(pointwise::forward(&d, slice(x), slice(w)), Shape::from([n, d.cout, h, wd]))
}

pub(crate) fn se_dims(x: &FlexTensor, reduce_weight: &FlexTensor) -> squeeze_excite::Dims {
    let d = x.layout().shape();
    let wd = reduce_weight.layout().shape();
    assert!(d.num_dims() == 4 && wd.num_dims() == 4 && wd[1] == d[1], "SE weight {wd:?} for input {d:?}");
    squeeze_excite::Dims { batch: d[0], channels: d[1], plane: d[2] * d[3], reduced: wd[0] }
}

/// The SE output and what its backward keeps; the inputs as [`EffnetKernels::squeeze_excite`]'s.
pub(crate) fn flex_squeeze_excite(se: [&FlexTensor; 5], act: simd::Act) -> (FlexTensor, squeeze_excite::Saved) {
    let [x, w1, b1, w2, b2] = se;
    let w = squeeze_excite::Weights { reduce: (slice(w1), slice(b1)), expand: (slice(w2), slice(b2)), act };
    let (y, saved) = squeeze_excite::forward(&se_dims(x, w1), slice(x), &w);
    (new_tensor(y, x.layout().shape().clone()), saved)
}

pub(crate) fn scale_dims(x: &FlexTensor, s: &FlexTensor) -> (usize, usize) {
    let d = x.layout().shape();
    let sd = s.layout().shape();
    assert!(d.num_dims() == 4 && sd.num_elements() == d[0] * d[1], "channel scale {sd:?} for {d:?}");
    (d[0] * d[1], d[2] * d[3])
}

/// `x` scaled per plane by `s`, in place when `x` is not shared.
pub(crate) fn flex_channel_scale(x: FlexTensor, s: &FlexTensor) -> FlexTensor {
    let mut x = contiguous(x);
    let (_, plane) = scale_dims(&x, s);
    let scales = slice(s);
    let apply = |out: &mut [f32], src: Option<&[f32]>| {
        out.par_chunks_mut(plane).with_min_len((8192 / plane.max(1)).max(1)).enumerate().for_each(|(p, o)| {
            simd::scale(o, src.map(|s| &s[p * plane..][..plane]), scales[p]);
        })
    };
    if let Some(buf) = unique_mut(&mut x) {
        apply(buf, None);
        return x;
    }
    let mut out = vec![0.0f32; x.layout().num_elements()];
    apply(&mut out, Some(slice(&x)));
    new_tensor(out, x.layout().shape().clone())
}

impl EffnetKernels for Flex {
    fn channel_scale(x: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_channel_scale(x, &contiguous(s))
    }

    fn bn_inference(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let mut x = contiguous(x);
        let d = bn_dims(&x);
        let [mean, var, gamma, beta] = [mean, var, gamma, beta].map(contiguous);
        let (a, b) = batchnorm::affine(slice(&mean), slice(&var), slice(&gamma), slice(&beta), eps);
        if let Some(buf) = unique_mut(&mut x) {
            batchnorm::normalize_in_place(&d, buf, &a, &b, silu);
            return x;
        }
        new_tensor(batchnorm::normalize(&d, slice(&x), &a, &b, silu), x.layout().shape().clone())
    }

    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        pw_forward(&contiguous(x), &contiguous(weight))
    }

    fn bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_bn_stats(x)
    }

    fn squeeze_excite(
        x: FloatTensor<Self>,
        reduce_weight: FloatTensor<Self>,
        reduce_bias: FloatTensor<Self>,
        expand_weight: FloatTensor<Self>,
        expand_bias: FloatTensor<Self>,
        act: simd::Act,
    ) -> FloatTensor<Self> {
        let se = [x, reduce_weight, reduce_bias, expand_weight, expand_bias].map(contiguous);
        flex_squeeze_excite(se.each_ref(), act).0
    }

    fn bn_normalize(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let (x, stats, gamma, beta) = (contiguous(x), contiguous(stats), contiguous(gamma), contiguous(beta));
        flex_bn_normalize(&x, &stats, &gamma, &beta, eps, silu)
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map_in_place(x, simd::silu, simd::silu_in_place)
    }

    fn sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map_in_place(x, simd::sigmoid, simd::sigmoid_in_place)
    }

    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad_top: usize,
        pad_bottom: usize,
        pad_left: usize,
        pad_right: usize,
    ) -> FloatTensor<Self> {
        let (x, w) = (contiguous(x), contiguous(weight));
        let g = geometry(&x, &w, stride, [(pad_top, pad_bottom), (pad_left, pad_right)]);
        depthwise_forward(&x, &w, &g)
    }
}

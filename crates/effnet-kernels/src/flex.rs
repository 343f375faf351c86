//! The kernels of [`crate::simd`] and [`crate::depthwise`] as burn operations on the Flex CPU
//! backend, differentiable through hand-written backward steps (`backward.rs`; burn's `extension`
//! feature).
//! Other backends never reach this file: [`crate::fast_path`] routes them to burn's own ops.

use super::layout::{Order, channels_last_tensor, dense, elements, in_order, order_of, tensor_in};
use super::{activation, batchnorm, channels_last, depthwise, pointwise, simd, squeeze_excite};
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
    /// `x` itself, stored channels-last (see `layout.rs`): the ops after it run their
    /// channels-last kernels. Its gradient is the output's.
    fn channels_last(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// A residual block's end: `y·s[n] + x` for `[n, c, h, w]` `y` and `x` and per-sample scales
    /// `s` `[n, 1, 1, 1]` (stochastic depth's mask over the keep rate), in `y`'s memory order
    /// (burn's broadcast multiply and add would return NCHW when an operand is shared). `s` is a
    /// constant to autodiff.
    fn residual(y: FloatTensor<Self>, x: FloatTensor<Self>, scale: FloatTensor<Self>) -> FloatTensor<Self>;
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
        act: activation::Act,
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

/// `f` into a fresh buffer in `x`'s memory order (autodiff keeps the input as state).
pub(crate) fn map(x: FlexTensor, f: fn(&[f32], &mut [simd::Out])) -> FlexTensor {
    let x = dense(x);
    let order = order_of(&x).expect("dense");
    // SAFETY: the simd kernels write every output element (their slices have equal lengths).
    let out = unsafe { simd::filled(x.layout().num_elements(), |o| f(elements(&x), o)) };
    tensor_in(out, &x, order)
}

/// `x`'s elements, writable when nobody else holds them (then an op can overwrite its input).
fn unique_mut(x: &mut FlexTensor) -> Option<&mut [f32]> {
    let (start, end) = x.layout().contiguous_offsets()?;
    x.try_storage_mut::<f32>().map(|buf| &mut buf[start..end])
}

/// `f` on `x`'s elements in `order` (brought to it first when they are not), in place when
/// nobody else holds them, else on a copy; the result is the overwritten tensor.
pub(crate) fn overwrite_in<R>(x: FlexTensor, order: Order, f: impl FnOnce(&mut [f32]) -> R) -> (FlexTensor, R) {
    let mut x = in_order(x, order);
    let n = x.layout().num_elements();
    if let Some(buf) = x.try_storage_mut::<f32>() {
        let r = f(&mut buf[..n]);
        return (x, r);
    }
    let mut copy = elements(&x).to_vec();
    let r = f(&mut copy);
    (tensor_in(copy, &x, order), r)
}

/// In inference nobody else holds the input, so the result can overwrite it (in either order).
fn map_in_place(x: FlexTensor, f: fn(&[f32], &mut [simd::Out]), f_in_place: fn(&mut [f32])) -> FlexTensor {
    let mut x = dense(x);
    let n = x.layout().num_elements();
    if let Some(buf) = x.try_storage_mut::<f32>() {
        f_in_place(&mut buf[..n]);
        return x;
    }
    map(x, f)
}

/// `f(a, b)` element by element, in `a`'s memory order (`b`, a gradient, is brought to it).
pub(crate) fn zip(a: FlexTensor, b: FlexTensor, f: fn(&[f32], &[f32], &mut [simd::Out])) -> FlexTensor {
    let a = dense(a);
    let order = order_of(&a).expect("dense");
    let b = in_order(b, order);
    assert_eq!(a.layout().shape(), b.layout().shape(), "gradient shape");
    // SAFETY: as in `map`.
    let out = unsafe { simd::filled(a.layout().num_elements(), |o| f(elements(&a), elements(&b), o)) };
    tensor_in(out, &a, order)
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

/// The depthwise conv of a dense `x` (see [`dense`]), in its memory order.
pub(crate) fn depthwise_forward(x: &FlexTensor, w: &FlexTensor, g: &depthwise::Geometry) -> FlexTensor {
    let out = [g.batch, g.channels, g.out_height, g.out_width];
    match order_of(x) {
        Some(Order::Nhwc) => channels_last_tensor(channels_last::depthwise(g, elements(x), slice(w)), out),
        _ => new_tensor(depthwise::forward(g, slice(x), slice(w)), Shape::from(out)),
    }
}

pub(crate) fn bn_dims(x: &FlexTensor) -> batchnorm::Dims {
    let d = x.layout().shape();
    assert!(d.num_dims() == 4, "BatchNorm kernel expects [n, c, h, w], got {d:?}");
    batchnorm::Dims { batch: d[0], channels: d[1], plane: d[2] * d[3] }
}

pub(crate) fn flex_bn_stats(x: FlexTensor) -> FlexTensor {
    let x = dense(x);
    let d = bn_dims(&x);
    let (mut mean, var) = match order_of(&x) {
        Some(Order::Nhwc) => channels_last::batchnorm::stats(elements(&x), d.channels),
        _ => batchnorm::stats(&d, slice(&x)),
    };
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
    match order_of(x) {
        Some(Order::Nhwc) => {
            let act = if silu { activation::Act::Silu } else { activation::Act::Identity };
            tensor_in(channels_last::batchnorm::normalize(elements(x), &a, &b, act), x, Order::Nhwc)
        }
        _ => new_tensor(batchnorm::normalize(&d, slice(x), &a, &b, silu), x.layout().shape().clone()),
    }
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

/// The 1×1 conv of a dense `x` (see [`dense`]), in its memory order.
pub(crate) fn pw_forward(x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
    let d = pw_dims(x, w);
    let [n, _, h, wd] = [x.layout().shape()[0], 0, x.layout().shape()[2], x.layout().shape()[3]];
    match order_of(x) {
        Some(Order::Nhwc) => {
            channels_last_tensor(pointwise::rows_forward(&d, elements(x), slice(w)), [n, d.cout, h, wd])
        }
        _ => new_tensor(pointwise::forward(&d, slice(x), slice(w)), Shape::from([n, d.cout, h, wd])),
    }
}

pub(crate) fn se_dims(x: &FlexTensor, reduce_weight: &FlexTensor) -> squeeze_excite::Dims {
    let d = x.layout().shape();
    let wd = reduce_weight.layout().shape();
    assert!(d.num_dims() == 4 && wd.num_dims() == 4 && wd[1] == d[1], "SE weight {wd:?} for input {d:?}");
    let channels_last = order_of(x) == Some(Order::Nhwc);
    squeeze_excite::Dims { batch: d[0], channels: d[1], plane: d[2] * d[3], reduced: wd[0], channels_last }
}

/// The SE output and what its backward keeps; the inputs as [`EffnetKernels::squeeze_excite`]'s.
pub(crate) fn flex_squeeze_excite(se: [&FlexTensor; 5], act: activation::Act) -> (FlexTensor, squeeze_excite::Saved) {
    let [x, w1, b1, w2, b2] = se;
    let w = squeeze_excite::Weights { reduce: (slice(w1), slice(b1)), expand: (slice(w2), slice(b2)), act };
    let d = se_dims(x, w1);
    let (y, saved) = squeeze_excite::forward(&d, elements(x), &w);
    let order = if d.channels_last { Order::Nhwc } else { Order::Nchw };
    (tensor_in(y, x, order), saved)
}

/// `y·s[n] (+ x)` in `y`'s memory order, over `y`'s storage when nobody else holds it.
pub(crate) fn flex_residual(y: FlexTensor, x: Option<FlexTensor>, scale: Option<&FlexTensor>) -> FlexTensor {
    let y = dense(y);
    let order = order_of(&y).expect("dense");
    let x = x.map(|x| in_order(x, order));
    assert!(x.as_ref().is_none_or(|x| x.layout().shape() == y.layout().shape()), "residual shapes");
    let n = y.layout().shape()[0];
    let per = y.layout().num_elements() / n.max(1);
    let scales = scale.map(slice);
    assert!(scales.is_none_or(|s| s.len() == n), "one scale per sample");
    let (out, ()) = overwrite_in(y, order, |out| {
        out.par_chunks_mut(per).enumerate().for_each(|(i, o)| {
            let k = scales.map_or(1.0, |s| s[i]);
            match &x {
                Some(x) => simd::scale_add(o, k, &elements(x)[i * per..][..per]),
                None => simd::scale(o, None, k),
            }
        })
    });
    out
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
        pw_forward(&dense(x), &contiguous(weight))
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
        act: activation::Act,
    ) -> FloatTensor<Self> {
        let se = [
            dense(x),
            contiguous(reduce_weight),
            contiguous(reduce_bias),
            contiguous(expand_weight),
            contiguous(expand_bias),
        ];
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
        let (x, stats, gamma, beta) = (dense(x), contiguous(stats), contiguous(gamma), contiguous(beta));
        flex_bn_normalize(&x, &stats, &gamma, &beta, eps, silu)
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map_in_place(x, activation::silu, activation::silu_in_place)
    }

    fn channels_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        in_order(x, Order::Nhwc)
    }

    fn residual(y: FloatTensor<Self>, x: FloatTensor<Self>, scale: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_residual(y, Some(x), Some(&contiguous(scale)))
    }

    fn sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map_in_place(x, activation::sigmoid, activation::sigmoid_in_place)
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
        let (x, w) = (dense(x), contiguous(weight));
        let g = geometry(&x, &w, stride, [(pad_top, pad_bottom), (pad_left, pad_right)]);
        depthwise_forward(&x, &w, &g)
    }
}

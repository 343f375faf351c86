//! Mixed precision: convolutions and the classifier run in the dtype of their input
//! activations (bf16 or f16 when [`crate::EfficientNet::set_autocast`] is on) while the
//! parameters stay f32. Each f32 weight is cast at its use, so autodiff carries an f32 gradient
//! back to it (burn's `float_cast` backward casts the gradient to the source dtype): the
//! optimizer steps f32 "master" weights, as PyTorch's autocast does. BatchNorm casts its input
//! up and computes statistics and the affine map in f32 (see `norm.rs`).

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::FloatDType;
use burn::tensor::ops::ConvOptions;

/// The float dtype of `x` (for casting weights to it).
pub fn dtype_of<const D: usize>(x: &Tensor<D>) -> FloatDType {
    FloatDType::from(x.dtype())
}

/// `t` cast to `dtype` unless it already is (no op recorded for autodiff then).
pub fn cast_to<const D: usize>(t: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    if dtype_of(&t) == dtype { t } else { t.cast(dtype) }
}

/// `conv.forward(x)`, computed in `x`'s dtype: the weight (and bias) are cast to it when they
/// differ, which happens only under autocast.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let dtype = dtype_of(&x);
    if dtype_of(&conv.weight.val()) == dtype {
        return conv.forward(x);
    }
    let [_, _, h, w] = x.dims();
    let options =
        ConvOptions::new_with_padding(conv.stride, crate::kernels::paddings(conv, h, w), conv.dilation, conv.groups);
    burn::tensor::module::conv2d(
        x,
        conv.weight.val().cast(dtype),
        conv.bias.as_ref().map(|b| b.val().cast(dtype)),
        options,
    )
}

/// `linear.forward(x)` in `x`'s dtype (see [`conv2d`]).
pub fn linear(linear: &Linear, x: Tensor<2>) -> Tensor<2> {
    let dtype = dtype_of(&x);
    if dtype_of(&linear.weight.val()) == dtype {
        return linear.forward(x);
    }
    burn::tensor::module::linear(x, linear.weight.val().cast(dtype), linear.bias.as_ref().map(|b| b.val().cast(dtype)))
}

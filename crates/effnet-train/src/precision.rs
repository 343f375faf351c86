//! `[runtime] precision` for inference: the network's float tensors (weights and BatchNorm
//! running statistics) and its inputs are cast to bf16 or f16; logits are read back as f32.
//!
//! Training stays f32. burn 0.22.1 offers `Tensor::cast`, per-device default float dtypes and
//! bf16/f16 kernels (flex computes bf16 convolutions through f32), but no mixed-precision
//! training: no fp32 master weights, no autocast and no loss scaling. Training with bf16/f16
//! parameters would drop every update smaller than the weight's precision (bf16 keeps 8
//! significant bits), so a training run with another precision is refused.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use effnet_config::{Invalid, Precision};

/// burn's float dtype for `precision`.
pub fn float_dtype(precision: Precision) -> FloatDType {
    match precision {
        Precision::F32 => FloatDType::F32,
        Precision::Bf16 => FloatDType::BF16,
        Precision::F16 => FloatDType::F16,
    }
}

struct CastFloats(FloatDType);

impl ModuleMapper for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// `module` with every float tensor (parameters and running statistics) cast to `precision`.
/// Meant for an inference copy: running statistics are shared with clones of the module.
pub fn cast_module<M: Module>(module: M, precision: Precision) -> M {
    match precision {
        Precision::F32 => module,
        p => module.map(&mut CastFloats(float_dtype(p))),
    }
}

/// `x` cast to `precision`.
pub fn cast_input<const D: usize>(x: Tensor<D>, precision: Precision) -> Tensor<D> {
    x.cast(float_dtype(precision))
}

/// Training accepts only f32 (see the module documentation for why).
pub fn check_training_precision(precision: Precision) -> Result<(), Invalid> {
    match precision {
        Precision::F32 => Ok(()),
        p => Err(Invalid::new(
            "runtime.precision",
            format!("\"{p}\""),
            "training runs in f32 only: burn 0.22.1 has no mixed-precision training (no fp32 master weights, \
             autocast or loss scaling); bf16/f16 apply to `effnet eval`, `forward` and `predict`",
        )),
    }
}

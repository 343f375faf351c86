//! `[runtime] precision`.
//!
//! Inference (`eval`, `forward`, `predict`): the network's float tensors (weights and BatchNorm
//! running statistics) and its inputs are cast to bf16 or f16; logits are read back as f32.
//!
//! Training: mixed precision. burn 0.22.1 has no autocast, loss scaling or f32 master weights,
//! but its autodiff differentiates through `Tensor::cast`, which is all effnet needs: the
//! parameters and the optimizer state stay f32, convolutions and the classifier compute in
//! bf16/f16 on weights cast at each use (`effnet_model::mixed`), BatchNorm and the loss in f32,
//! and f16 adds dynamic loss scaling (`loss_scale.rs`). Training *with* bf16/f16 parameters
//! would drop every update smaller than the weight's precision (bf16 keeps 8 significant bits).

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use effnet_config::{BackendKind, Invalid, Precision};

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

/// Whether `backend` computes in `precision`. burn's wgpu backend has no bf16: cubecl-wgpu
/// 0.11.3's WGSL compiler panics on its device thread (`UnsupportedType("cube.bf16")`), and a
/// training run then went on to its end with chance-level losses instead of failing.
pub fn check_backend_precision(backend: BackendKind, precision: Precision) -> Result<(), Invalid> {
    match (backend, precision) {
        (BackendKind::Wgpu, Precision::Bf16) => Err(Invalid::new(
            "runtime.precision",
            "\"bf16\"",
            "burn's wgpu backend has no bf16 (cubecl-wgpu 0.11.3 cannot compile it to WGSL); use \"f16\" or \"f32\"",
        )),
        _ => Ok(()),
    }
}

/// What training accepts: every precision on one device; f16's loss scaler keeps one scale per
/// run, so f16 trains on one device (bf16 needs no scaler and runs on several); and what the
/// backend computes in ([`check_backend_precision`]).
pub fn check_training_precision(precision: Precision, backend: BackendKind, devices: usize) -> Result<(), Invalid> {
    check_backend_precision(backend, precision)?;
    match precision {
        Precision::F16 if devices > 1 => Err(Invalid::new(
            "runtime.precision",
            "\"f16\"",
            format!(
                "f16 mixed precision trains on one device (its loss scale is per run), not {devices}; \
                 use \"bf16\", or one device"
            ),
        )),
        _ => Ok(()),
    }
}

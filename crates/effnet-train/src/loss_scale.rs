//! Dynamic loss scaling for f16 mixed-precision training (PyTorch's `GradScaler` policy).
//!
//! f16 keeps 5 exponent bits: gradients below ~6e-8 flush to zero in the half-precision part
//! of the backward pass. The loss is multiplied by `scale` before `backward`, and the f32
//! gradients the parameters receive are divided by it again. When any gradient is not finite
//! (the scaled values overflowed f16's 65504), the step is skipped — no parameter or optimizer
//! state changes — and the scale is halved; after `growth_interval` finite steps in a row it is
//! doubled. bf16 has f32's exponent range and needs none of this.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use std::sync::{Arc, Mutex};

/// PyTorch's defaults: initial scale 2^16, ×2 after 2000 good steps, ×0.5 on overflow.
pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_INTERVAL: usize = 2000;

/// The scaler's state, shared by the clones of the training model that burn-train makes.
#[derive(Debug, Clone)]
pub struct LossScaler {
    state: Arc<Mutex<ScalerState>>,
    growth_interval: usize,
}

/// What a run reports: the current scale and how many steps were skipped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalerState {
    pub scale: f64,
    /// Finite steps since the last change of scale.
    pub good_steps: usize,
    pub skipped_steps: usize,
}

impl LossScaler {
    /// A scaler starting at `init_scale` that doubles after `growth_interval` finite steps.
    pub fn new(init_scale: f64, growth_interval: usize) -> Self {
        let state = ScalerState { scale: init_scale, good_steps: 0, skipped_steps: 0 };
        Self { state: Arc::new(Mutex::new(state)), growth_interval: growth_interval.max(1) }
    }

    pub fn state(&self) -> ScalerState {
        *self.state.lock().unwrap()
    }

    /// Gradients of `loss` for `module`'s parameters, computed through `loss × scale` and
    /// unscaled; empty (the step is skipped) when any of them is not finite.
    pub fn backward<M: Module>(&self, loss: Tensor<1>, module: &M) -> GradientsParams {
        let scale = self.state().scale;
        let grads = loss.mul_scalar(scale).backward();
        let mut params = GradientsParams::from_grads(grads, module);
        let mut unscale = Unscale { grads: &mut params, inv_scale: 1.0 / scale, total: None };
        module.visit(&mut unscale);
        // One read-back per step: the sum of every gradient is finite iff each one is (an
        // overflow of the sum itself would mean gradients near f32's limit: skipping is right).
        let finite = unscale.total.is_none_or(|t| t.into_scalar::<f64>().is_finite());
        let mut s = self.state.lock().unwrap();
        if finite {
            s.good_steps += 1;
            if s.good_steps >= self.growth_interval {
                s.scale *= 2.0;
                s.good_steps = 0;
            }
            params
        } else {
            s.scale *= 0.5;
            s.good_steps = 0;
            s.skipped_steps += 1;
            GradientsParams::new()
        }
    }
}

/// Divides every gradient by the scale and sums them into one scalar (for the finiteness check).
struct Unscale<'a> {
    grads: &'a mut GradientsParams,
    inv_scale: f64,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for Unscale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.grads.remove::<D>(param.id) else { return };
        let g = g.mul_scalar(self.inv_scale);
        let sum = g.clone().sum();
        self.total = Some(match self.total.take() {
            Some(t) => t + sum,
            None => sum,
        });
        self.grads.register(param.id, g);
    }
}

//! Exponential moving average of the weights (and BatchNorm running statistics), as
//! tensorflow/tpu keeps it: `ema ← d·ema + (1−d)·θ` with `d = min(decay, (1+n)/(10+n))`.

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// TF's `ExponentialMovingAverage(decay, num_updates)` decay at update `n`: small early on so
/// that the average is not dominated by the random initialisation.
pub fn ema_decay_at(decay: f64, updates: usize) -> f64 {
    decay.min((1.0 + updates as f64) / (10.0 + updates as f64))
}

/// Collects every float tensor (parameters and running statistics) in visiting order.
struct Collect(Vec<Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

/// Blends each float tensor of the EMA module with the same tensor of the live module.
struct Blend {
    live: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let live = self.live.next().expect("EMA and model have the same structure");
        let decay = self.decay;
        param.map(|ema| {
            let shape = ema.shape();
            let live = live.reshape(shape).detach().to_device(&ema.device());
            (ema.mul_scalar(decay) + live.mul_scalar(1.0 - decay)).detach()
        })
    }
}

/// Gives every parameter a fresh id, so that an EMA copy never shares optimizer state or
/// gradients with the module it was cloned from (clones keep their `ParamId`s).
struct FreshIds;

impl ModuleMapper for FreshIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (_, tensor, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), tensor.detach(), mapper).set_require_grad(false)
    }
}

/// A detached copy of `module` with fresh parameter ids and no gradients: the EMA's start.
pub fn ema_copy<M: Module>(module: &M) -> M {
    module.clone().map(&mut FreshIds)
}

/// One EMA update of `ema` towards `live` (two modules of identical structure).
pub fn ema_update<M: Module>(ema: M, live: &M, decay: f64) -> M {
    let mut c = Collect(Vec::new());
    live.visit(&mut c);
    ema.map(&mut Blend { live: c.0.into_iter(), decay })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn decay_warms_up_like_tensorflow() {
        assert!((ema_decay_at(0.9999, 0) - 0.1).abs() < 1e-12);
        assert!((ema_decay_at(0.9999, 90) - 0.91).abs() < 1e-12);
        assert_eq!(ema_decay_at(0.9999, 1_000_000), 0.9999);
    }

    #[test]
    fn blends_every_tensor() {
        let dev = Device::flex();
        let live: Linear = LinearConfig::new(2, 3).init(&dev);
        let ema = live
            .clone()
            .map(&mut Blend { live: vec![Tensor::zeros([6], &dev), Tensor::zeros([3], &dev)].into_iter(), decay: 0.0 });
        // ema is now all zeros; one update with decay 0.75 gives 0.25·live.
        let ema = ema_update(ema, &live, 0.75);
        let got = ema.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let want = live.weight.val().into_data().try_to_vec::<f32>().unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - 0.25 * w).abs() < 1e-6);
        }
        let b = ema.bias.unwrap().val().into_data().try_to_vec::<f32>().unwrap();
        let lb = live.bias.unwrap().val().into_data().try_to_vec::<f32>().unwrap();
        assert!((b[2] - 0.25 * lb[2]).abs() < 1e-6);
    }
}

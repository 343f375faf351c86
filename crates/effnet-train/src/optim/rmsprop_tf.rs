//! RMSProp with TensorFlow semantics, as the paper and timm's `RMSpropTF` use it.
//!
//! burn's `RmsProp` is PyTorch's: the mean square starts at 0, ε is added outside the square
//! root and the learning rate multiplies the momentum buffer's output. TensorFlow (and so every
//! published EfficientNet hyper-parameter, e.g. ε = 1e-3) uses
//!
//! ```text
//! ms  ← ρ·ms + (1−ρ)·g²            ms starts at 1
//! mom ← μ·mom + lr·g / sqrt(ms + ε)
//! θ   ← θ − mom
//! ```
//! With ε = 1e-3 the two differ by orders of magnitude in the first steps.

use burn::optim::{Optimizer, RecordState, StateSink, StateSource};
use burn::prelude::*;

/// TensorFlow RMSProp for one parameter group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropTf {
    /// Decay ρ of the mean square (TF `decay`, paper 0.9).
    pub decay: f64,
    /// Momentum μ (paper 0.9).
    pub momentum: f64,
    /// ε inside the square root (paper 1e-3).
    pub eps: f64,
    /// Coupled L2 weight decay: `g ← g + wd·θ` before the update.
    pub weight_decay: f64,
}

/// Per-parameter state: the mean square and the momentum buffer.
#[derive(Clone)]
pub struct RmsPropTfState<const D: usize> {
    pub mean_square: Tensor<D>,
    pub momentum: Tensor<D>,
}

impl<const D: usize> RecordState for RmsPropTfState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "mean_square", self.mean_square.clone().into_data());
        out.push_tensor(prefix, "momentum", self.momentum.clone().into_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(Self {
            mean_square: Tensor::from_data(src.take_tensor(prefix, "mean_square")?, device),
            momentum: Tensor::from_data(src.take_tensor(prefix, "momentum")?, device),
        })
    }
}

impl Optimizer for RmsPropTf {
    type State<const D: usize> = RmsPropTfState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let grad = if self.weight_decay > 0.0 { grad + tensor.clone().mul_scalar(self.weight_decay) } else { grad };
        let (ms, mom) = match state {
            Some(s) => (s.mean_square, s.momentum),
            None => (tensor.ones_like(), tensor.zeros_like()),
        };
        let ms = ms.mul_scalar(self.decay) + grad.clone().square().mul_scalar(1.0 - self.decay);
        let step = grad.div(ms.clone().add_scalar(self.eps).sqrt()).mul_scalar(lr);
        let mom = mom.mul_scalar(self.momentum) + step;
        (tensor - mom.clone(), Some(RmsPropTfState { mean_square: ms, momentum: mom }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        RmsPropTfState { mean_square: state.mean_square.to_device(device), momentum: state.momentum.to_device(device) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec1(t: Tensor<1>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn matches_hand_computed_tensorflow_updates() {
        let dev = Device::flex();
        let opt = RmsPropTf { decay: 0.9, momentum: 0.9, eps: 1e-3, weight_decay: 0.0 };
        let theta = Tensor::<1>::from_floats([1.0, -2.0], &dev);
        let g1 = Tensor::<1>::from_floats([0.5, 0.1], &dev);
        let (theta, state) = opt.step(0.1, theta, g1, None);
        // Step 1, element 0: ms = 0.9·1 + 0.1·0.25 = 0.925; mom = 0.1·0.5/sqrt(0.926) = 0.0519594;
        // θ = 1 − 0.0519594 = 0.9480406.  Element 1: ms = 0.901; mom = 0.1·0.1/sqrt(0.902) = 0.0105292.
        let t = vec1(theta.clone());
        assert!((t[0] - 0.948_040_5).abs() < 1e-6, "{t:?}");
        assert!((t[1] - (-2.010_529)).abs() < 1e-6, "{t:?}");
        // Step 2, element 0 with g = 0.5: ms = 0.9·0.925 + 0.025 = 0.8575;
        // mom = 0.9·0.0519594 + 0.1·0.5/sqrt(0.8585) = 0.0467635 + 0.0539638 = 0.1007273.
        let g2 = Tensor::<1>::from_floats([0.5, 0.0], &dev);
        let (theta, state) = opt.step(0.1, theta, g2, state);
        let t = vec1(theta);
        assert!((t[0] - 0.847_313_6).abs() < 1e-6, "{t:?}");
        let s = state.unwrap();
        assert!((vec1(s.mean_square)[0] - 0.8575).abs() < 1e-6);
    }

    #[test]
    fn coupled_weight_decay_adds_to_the_gradient() {
        let dev = Device::flex();
        let opt = RmsPropTf { decay: 0.9, momentum: 0.0, eps: 1e-3, weight_decay: 0.5 };
        let theta = Tensor::<1>::from_floats([2.0], &dev);
        let (theta, _) = opt.step(0.1, theta, Tensor::<1>::from_floats([0.0], &dev), None);
        // g = 0 + 0.5·2 = 1; ms = 0.9 + 0.1 = 1.0; θ = 2 − 0.1·1/sqrt(1.001) = 1.9000500.
        assert!((vec1(theta)[0] - 1.900_05).abs() < 1e-6);
    }
}

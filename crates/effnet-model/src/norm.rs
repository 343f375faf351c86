//! BatchNorm whose training statistics match PyTorch and TensorFlow.

use burn::module::{Content, DisplaySettings, Flag, Module, ModuleDisplay, Param, RunningState};
use burn::nn::Initializer;
use burn::prelude::*;

/// Batch normalisation over `[batch, channels, height, width]`.
///
/// burn 0.22.1's own `BatchNorm` stores the *biased* batch variance in `running_var`; PyTorch
/// and TensorFlow store the unbiased one (× n/(n−1), n = batch·height·width), which is what
/// ported weights were trained with and what the 4×4 head maps at small inputs are sensitive
/// to. The normalisation itself uses the biased variance, as everywhere.
///
/// The struct keeps burn's name and field names (`gamma`, `beta`, `running_mean`,
/// `running_var`) so that burn-store's PyTorch adapter maps `weight`/`bias` onto it.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct BatchNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    /// Training behaviour (batch statistics) is on while this is enabled on an autodiff device.
    pub training: Param<Flag>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    /// burn/PyTorch convention: `running = (1 − momentum)·running + momentum·batch`.
    pub momentum: f64,
    pub epsilon: f64,
}

impl BatchNorm {
    /// A BatchNorm over `channels` with burn-convention `momentum` (0.01 ≙ TF's 0.99).
    pub fn new(channels: usize, momentum: f64, epsilon: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Ones.init([channels], device),
            beta: Initializer::Zeros.init([channels], device),
            training: Param::from_bool(true),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum,
            epsilon,
        }
    }

    /// Normalises `x`; on an autodiff device in training mode it uses and records batch statistics.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, false)
    }

    /// `silu(self.forward(x))`, fused into one pass on the Flex fast path.
    pub fn forward_silu(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_then(x, true)
    }

    fn forward_then(&self, x: Tensor<4>, silu: bool) -> Tensor<4> {
        // Autocast: bf16/f16 activations, f32 parameters. Statistics, normalisation and the
        // affine map run in f32; the output goes back to the activations' dtype.
        let dtype = crate::mixed::dtype_of(&x);
        if dtype != crate::mixed::dtype_of(&self.gamma.val()) {
            let y = self.forward_then(x.cast(crate::mixed::dtype_of(&self.gamma.val())), silu);
            return y.cast(dtype);
        }
        if x.device().is_autodiff() && self.training.is_enabled() {
            return self.forward_train(x, silu);
        }
        let device = x.device();
        crate::kernels::batch_norm_inference(
            x,
            self.gamma.val(),
            self.beta.val(),
            self.running_mean.value().to_device(&device),
            self.running_var.value().to_device(&device),
            self.epsilon,
            silu,
        )
    }

    /// The inference normalisation as per-channel `(scale, shift)` (the fused kernels' form).
    pub fn folded(&self) -> (Vec<f32>, Vec<f32>) {
        crate::kernels::fold_batch_norm(
            self.gamma.val(),
            self.beta.val(),
            self.running_mean.value(),
            self.running_var.value(),
            self.epsilon,
        )
    }

    /// Replaces the running statistics by copies of their current values that no clone shares.
    pub fn unshare_running_state(&mut self) {
        self.running_mean = RunningState::new(self.running_mean.value_sync());
        self.running_var = RunningState::new(self.running_var.value_sync());
    }

    fn forward_train(&self, x: Tensor<4>, silu: bool) -> Tensor<4> {
        let device = x.device();
        let [n, _, h, w] = x.dims();
        let count = (n * h * w) as f64;
        let result = crate::kernels::batch_norm_train(x, self.gamma.val(), self.beta.val(), self.epsilon, silu);
        let unbiased = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
        let m = self.momentum;
        let mean = self.running_mean.value_sync().to_device(&device).mul_scalar(1.0 - m).add(result.mean.mul_scalar(m));
        let var = self
            .running_var
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(result.variance.mul_scalar(m * unbiased));
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        result.output
    }
}

impl ModuleDisplay for BatchNorm {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new().with_new_line_after_attribute(false).optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [c] = self.beta.shape().dims();
        content.add("channels", &c).add("momentum", &self.momentum).add("epsilon", &self.epsilon).optional()
    }
}

//! Weight decay reaches conv and linear weights but not BatchNorm or bias parameters.

use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_config::{ModelConfig, OptimConfig, OptimizerKind};
use effnet_model::EfficientNet;
use effnet_train::optim::build_optimizer;

fn tiny() -> EfficientNet {
    let cfg: ModelConfig =
        toml::from_str("variant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nnum_classes = 3\n").unwrap();
    EfficientNet::new(&cfg.architecture().unwrap(), &Device::flex().autodiff())
}

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn weight_decay_skips_batchnorm_and_bias() {
    let mut model = tiny();
    let dev = Device::flex().autodiff();
    // Biases start at zero, which decay would leave at zero: make them ones.
    model.classifier.bias = Some(burn::nn::Initializer::Ones.init([3], &dev));
    // A loss with all-zero gradients: only the decay moves parameters.
    let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Default, &dev);
    let loss = model.forward(x).sum().mul_scalar(0.0);
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let cfg = OptimConfig { name: OptimizerKind::Sgd, momentum: 0.0, weight_decay: 0.5, ..OptimConfig::default() };
    let mut optim = build_optimizer(&cfg, None);
    let before = (
        vals(model.stem.conv.weight.val()),
        vals(model.stem.bn.gamma.val()),
        vals(model.classifier.bias.as_ref().unwrap().val()),
        vals(model.classifier.weight.val()),
    );
    let after = optim.step(1.0f64, model, grads);
    // SGD: θ ← θ − lr·(g + wd·θ) = 0.5·θ for decayed tensors.
    for (a, b) in vals(after.stem.conv.weight.val()).iter().zip(&before.0) {
        assert!((a - 0.5 * b).abs() < 1e-6);
    }
    for (a, b) in vals(after.classifier.weight.val()).iter().zip(&before.3) {
        assert!((a - 0.5 * b).abs() < 1e-6);
    }
    assert_eq!(vals(after.stem.bn.gamma.val()), before.1);
    assert_eq!(vals(after.classifier.bias.as_ref().unwrap().val()), before.2);
}

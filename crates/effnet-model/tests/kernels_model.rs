//! A whole EfficientNet training step (logits and every parameter gradient) with effnet's
//! Flex kernels on (channels-last blocks, the default; and NCHW) and off. Alone in this binary:
//! it flips the process-wide switch.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_config::ModelConfig;
use effnet_model::{EfficientNet, Kernel, KernelSelection, set_kernel_selection};

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn efficientnet_training_step_is_the_same_with_and_without_kernels() {
    let device = Device::flex().autodiff();
    // No dropout or stochastic depth: both steps must see the same network.
    let text =
        "variant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 7\ndropout = 0.0\ndrop_connect_rate = 0.0\n";
    let arch = toml::from_str::<ModelConfig>(text).unwrap().architecture().unwrap();
    let model = EfficientNet::new(&arch, &device);
    let labels = Tensor::<1, Int>::from_ints([0, 3, 6, 2, 1, 5, 4, 0], &device);
    let step = |selection: KernelSelection, x: &Tensor<4>| {
        set_kernel_selection(selection);
        let logits = model.forward(x.clone());
        let loss = burn::nn::loss::CrossEntropyLossConfig::new().init(&device).forward(logits.clone(), labels.clone());
        let grads = loss.backward();
        (logits, grads)
    };
    // 45×41: odd sizes, asymmetric padding; 30×30: maps down to 1×1, where 5×5 taps fall off.
    // A batch of 8: BatchNorm over 4 values per channel (1×1 maps) amplifies float noise ~10×.
    let nchw = KernelSelection::of(&Kernel::ALL.into_iter().filter(|k| *k != Kernel::ChannelsLast).collect::<Vec<_>>());
    for ([h, w], selection) in
        [([45, 41], KernelSelection::ALL), ([30, 30], KernelSelection::ALL), ([45, 41], nchw), ([30, 30], nchw)]
    {
        let x = Tensor::<4>::random([8, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
        let (la, ga) = step(selection, &x);
        let (lb, gb) = step(KernelSelection::NONE, &x);
        set_kernel_selection(KernelSelection::ALL);
        let d = max_diff(la, lb);
        assert!(d < 1e-4, "{h}×{w} {selection:?}: logits differ by {d}");
        // Every parameter's gradient, relative to its size.
        let mut checked = 0;
        let mut worst = 0.0f32;
        struct Visitor<'a> {
            a: &'a burn::tensor::Gradients,
            b: &'a burn::tensor::Gradients,
            worst: &'a mut f32,
            checked: &'a mut usize,
        }
        impl burn::module::ModuleVisitor for Visitor<'_> {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                if let (Some(a), Some(b)) = (param.val().grad(self.a), param.val().grad(self.b)) {
                    // Relative to the largest entry, floored at 1e-2: BN γ/β gradients of ~1e-4
                    // differ by float noise (~3e-6) that a purely relative test would flag.
                    let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-2);
                    let d = max_diff(a, b) / scale;
                    *self.worst = self.worst.max(d);
                    *self.checked += 1;
                }
            }
        }
        model.visit(&mut Visitor { a: &ga, b: &gb, worst: &mut worst, checked: &mut checked });
        assert!(checked > 50, "only {checked} gradients compared");
        assert!(
            worst < 1e-3,
            "{h}×{w} {selection:?}: a parameter gradient differs by {worst} relative to its largest entry"
        );
    }
}

//! Inference through the fused kernels (BN folded into the conv outputs, SE and the residual
//! fused into the projection, small maps in channels-last order, pooling and classifier in one
//! pass) against burn's own ops and against the unfused kernels, on a
//! B0-structured model whose BatchNorm statistics, scales and shifts are not trivial. Alone in
//! this binary: it flips the process-wide kernel switch.

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_config::{Architecture, ModelConfig};
use effnet_model::{EfficientNet, Kernel, KernelSelection, set_kernel_selection};

fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

#[test]
fn fused_inference_equals_burns_ops_and_the_unfused_kernels() {
    let text = "variant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 7\ndropout = 0.0\n";
    let arch = toml::from_str::<ModelConfig>(text).unwrap().architecture().unwrap();
    let device = Device::flex().autodiff();
    device.seed(7);
    // burn momentum 1: the running statistics become the batch's after one step.
    let model = EfficientNet::new(&Architecture { bn_momentum: 1.0, ..arch.clone() }, &device);
    // One SGD step moves γ, β, conv weights and SE biases off their init.
    let x = Tensor::<4>::random([4, 3, 40, 36], Distribution::Normal(0.5, 2.0), &device);
    let labels = Tensor::<1, Int>::from_ints([0, 3, 6, 2], &device);
    let loss = burn::nn::loss::CrossEntropyLossConfig::new().init(&device).forward(model.forward(x), labels);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = SgdConfig::new().init().step(0.05, model, grads).valid();
    let bn = &model.stem.bn;
    let moved = (bn.running_var.value() - 1.0).abs().max().into_scalar::<f32>();
    assert!(moved > 1e-2, "running variance still at its initial value ({moved})");

    let flex = Device::flex();
    // 45×41: odd sizes and TF-SAME's asymmetric padding; 30×30: 1×1 maps; 128×96: 1×1 convs
    // split into column blocks; batch 1 (predict) and 3.
    for (n, h, w) in [(3, 45, 41), (1, 30, 30), (2, 128, 96), (1, 64, 64)] {
        let x = Tensor::<4>::random([n, 3, h, w], Distribution::Normal(0.0, 1.0), &flex);
        let run = |sel: &[Kernel]| {
            set_kernel_selection(KernelSelection::of(sel));
            // The head's whole feature map (the logits of this small model barely vary), and
            // the logits (pooling and classifier are fused too).
            (model.forward_head(x.clone()), model.forward(x.clone()))
        };
        let (fused, fused_logits) = run(&Kernel::ALL);
        let (unfused, _) = run(&Kernel::ALL[..5]);
        let (burn, burn_logits) = run(&[]);
        set_kernel_selection(KernelSelection::ALL);
        let logits_scale = burn_logits.clone().abs().max().into_scalar::<f32>();
        let d_logits = (fused_logits - burn_logits).abs().max().into_scalar::<f32>() / logits_scale;
        assert!(
            logits_scale > 1e-3 && d_logits < 1e-4,
            "{n}×{h}×{w}: logits fused vs burn {d_logits} (scale {logits_scale})"
        );
        let scale = burn.clone().abs().max().into_scalar::<f32>();
        assert!(scale > 0.1, "features too small to compare: {scale}");
        let (d_burn, d_unfused) =
            (max_diff(fused.clone(), burn.clone()) / scale, max_diff(fused, unfused.clone()) / scale);
        eprintln!(
            "{n}×{h}×{w}: scale {scale} fused-burn {d_burn} fused-unfused {d_unfused} unfused-burn {}",
            max_diff(unfused, burn) / scale
        );
        assert!(d_burn < 1e-4, "{n}×{h}×{w}: fused vs burn's ops {d_burn}");
        assert!(d_unfused < 1e-4, "{n}×{h}×{w}: fused vs unfused kernels {d_unfused}");
        // Folding BN into the conv rounds differently: equal bits would mean that the model
        // never took the fused path.
        assert!(d_unfused > 0.0, "{n}×{h}×{w}: the fused path did not run");
    }
}

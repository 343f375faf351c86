//! The network on wgpu against flex: eval-mode logits, and one SGD training step (train-mode
//! BatchNorm, backward, update), in f32 and with f16 mixed precision on wgpu. Built only with `--features wgpu` or `wgpu-plain`; without a GPU
//! it runs on Mesa's lavapipe (a Vulkan driver on the CPU), see `scripts/test_wgpu.sh`.
#![cfg(feature = "wgpu-plain")]

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DeviceKind, FloatDType};
use effnet_config::{Architecture, ModelConfig, OptimConfig, OptimizerKind};
use effnet_model::EfficientNet;
use effnet_train::optim::build_optimizer;

/// Eval-mode logits (with the initial running statistics they are small), max |wgpu − flex|
/// relative to the largest |logit|, before and after the step (measured 1.1e-6 and 3.1e-5).
const LOGITS_REL_TOL: f32 = 1e-3;
/// Loss before one SGD step: |wgpu − flex| (measured 3e-6).
const LOSS_TOL: f32 = 1e-4;
/// Loss after one SGD step, relative (measured 1.2e-4 on lavapipe: the step's large gradients
/// amplify the backends' rounding differences).
const LOSS_AFTER_REL_TOL: f32 = 1e-3;

/// f16 mixed precision on wgpu against f32 on flex: the loss before the step, relative (measured
/// 5.7e-3, 4.1e-3 and 5.6e-5 from three inits). After one SGD step a fresh network's loss depends
/// chaotically on its gradients' rounding (from 2.79 at LR 0.05: f32 3.05, f16 on flex 2.51, f16
/// on wgpu 3.11 and 3.25 in two runs; at LR 0.005 from 4.58: f32 2.93, f16 3.82; from 3.96: f32
/// 5.53, f16 5.35), so of the step only finiteness is asserted.
const F16_LOSS_REL_TOL: f32 = 2e-2;
const F16_STEP_LR: f64 = 0.005;

const N: usize = 8;
const SIZE: usize = 32;

fn arch() -> Architecture {
    let cfg: ModelConfig = toml::from_str(
        "variant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nresolution = 32\nnum_classes = 10\ndropout = 0.0\n\
         drop_connect_rate = 0.0\n",
    )
    .unwrap();
    cfg.architecture().unwrap()
}

/// A fixed, smooth batch and labels (no RNG: the same on every backend).
fn batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let v: Vec<f32> = (0..N * 3 * SIZE * SIZE).map(|i| ((i as f32) * 0.013).sin() + 0.1 * ((i % 7) as f32)).collect();
    let labels: Vec<i32> = (0..N as i32).map(|i| (i * 3) % 10).collect();
    (
        Tensor::<4>::from_data(TensorData::new(v, [N, 3, SIZE, SIZE]), device),
        Tensor::<1, Int>::from_data(TensorData::new(labels, [N]), device),
    )
}

fn vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Eval-mode logits, then (loss before, loss after) one SGD step at `lr` on the same batch, and
/// the eval-mode logits of the stepped network.
fn run(net: EfficientNet, device: &Device, lr: f64) -> (Vec<f32>, f32, f32, Vec<f32>) {
    let (x, _) = batch(&device.clone().inner());
    let logits = vec(net.valid().forward(x));
    let (x, y) = batch(device);
    let ce = CrossEntropyLossConfig::new().init(device);
    let loss = ce.forward(net.forward(x.clone()), y.clone());
    let before = vec(loss.clone())[0];
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let cfg = OptimConfig { name: OptimizerKind::Sgd, momentum: 0.0, weight_decay: 0.0, ..OptimConfig::default() };
    let net = build_optimizer(&cfg, None).step(lr, net, grads);
    let after = vec(ce.forward(net.forward(x), y))[0];
    let (x, _) = batch(&device.clone().inner());
    (logits, before, after, vec(net.valid().forward(x)))
}

/// A network initialised on flex from `seed`, the same weights on wgpu (through a file: a fork
/// would share BatchNorm state), both on autodiff devices, and the file (read lazily: remove it
/// after the wgpu network has run).
fn flex_and_wgpu(seed: u64, name: &str) -> (EfficientNet, Device, EfficientNet, Device, std::path::PathBuf) {
    let arch = arch();
    let flex = Device::flex().autodiff();
    let path = std::env::temp_dir().join(format!("effnet-{name}-{}.bpk", std::process::id()));
    // flex has one process-wide RNG and burn draws a parameter at its first use (here: the save),
    // so the two tests' inits take turns, or their draws interleave.
    let net = {
        let _turn = effnet_test_support::serial();
        flex.seed(seed);
        let net = EfficientNet::new(&arch, &flex);
        net.save_weights(&path).unwrap();
        net
    };
    // `EFFNET_GPU_FUSION` (scripts/test.sh: off on lavapipe) as `effnet` applies it.
    effnet_train::fusion::configure().unwrap();
    let gpu = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let mut net_gpu = EfficientNet::new(&arch, &gpu);
    net_gpu.load_weights(&path, &arch).unwrap();
    (net, flex, net_gpu, gpu, path)
}

#[test]
fn wgpu_matches_flex_forward_and_one_training_step() {
    let (net, flex, net_gpu, gpu, path) = flex_and_wgpu(3, "wgpu");

    let t = std::time::Instant::now();
    let (l_flex, b_flex, a_flex, s_flex) = run(net, &flex, 0.05);
    let t_flex = t.elapsed();
    let t = std::time::Instant::now();
    let (l_gpu, b_gpu, a_gpu, s_gpu) = run(net_gpu, &gpu, 0.05);
    let t_gpu = t.elapsed();
    // Only now: loaded weights are read from the file lazily.
    std::fs::remove_file(&path).unwrap();
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    let d = max_diff(&l_flex, &l_gpu);
    let largest = |v: &[f32]| v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let (ds, scale0, scale) = (max_diff(&s_flex, &s_gpu), largest(&l_flex), largest(&s_flex));
    eprintln!("max |logit| {scale0:.3e}; after the step: max |Δ logits| = {ds:.2e}, max |logit| = {scale:.3e}");
    eprintln!(
        "max |Δ logits| = {d:.2e}; loss before {b_flex:.6} / {b_gpu:.6}, after one step {a_flex:.6} / {a_gpu:.6} \
         (flex / wgpu); {t_flex:.1?} / {t_gpu:.1?}"
    );
    assert_eq!(l_gpu.len(), N * 10);
    assert!(d <= LOGITS_REL_TOL * scale0, "max |Δ logits| = {d:e}, max |logit| {scale0}");
    assert!(ds <= LOGITS_REL_TOL * scale, "after the step: max |Δ logits| = {ds:e}, max |logit| {scale}");
    assert!((b_flex - b_gpu).abs() < LOSS_TOL, "loss {b_flex} vs {b_gpu}");
    assert!((a_flex - a_gpu).abs() < LOSS_AFTER_REL_TOL * a_flex, "loss after a step {a_flex} vs {a_gpu}");
    // The step changed the network (the same way on both).
    assert!((a_flex - b_flex).abs() > 1e-2, "loss {b_flex} -> {a_flex}");
}

#[test]
fn f16_mixed_precision_step_on_wgpu_follows_f32() {
    let (net, flex, mut net_gpu, gpu, path) = flex_and_wgpu(4, "wgpu-f16");
    // Convolutions and the classifier in f16 on f32 weights; BatchNorm and the loss in f32.
    net_gpu.set_autocast(Some(FloatDType::F16));

    let (_, b32, a32, _) = run(net, &flex, F16_STEP_LR);
    let t = std::time::Instant::now();
    let (l_gpu, b16, a16, s_gpu) = run(net_gpu, &gpu, F16_STEP_LR);
    std::fs::remove_file(&path).unwrap();
    let rel = |a: f32, b: f32| (a - b).abs() / a.abs();
    eprintln!(
        "f16 on wgpu: loss before {b32:.6} (f32 flex) / {b16:.6}, after one step {a32:.6} / {a16:.6}, \
         rel {:.2e} / {:.2e}, step {:.3e} / {:.3e}; {:.1?}",
        rel(b32, b16),
        rel(a32, a16),
        a32 - b32,
        a16 - b16,
        t.elapsed()
    );
    assert!(l_gpu.iter().chain(&s_gpu).all(|v| v.is_finite()), "non-finite f16 logits");
    assert!(rel(b32, b16) < F16_LOSS_REL_TOL, "loss {b32} (f32) vs {b16} (f16)");
    // The f16 step reached the f32 weights: they moved, and stayed finite.
    assert!(a16.is_finite() && (a16 - b16).abs() > 1e-3, "f16 step {b16} -> {a16} (f32 {b32} -> {a32})");
}

//! Structure tests: parameter counts, shapes, end-points, eval determinism, drop path, init.

use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_config::{Architecture, ClassifierInit, ModelConfig, Padding, Variant};
use effnet_model::{EfficientNet, trainable_params};

fn cpu() -> Device {
    Device::flex()
}

fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

/// A narrow B0 (width 0.25, depth 0.5) that is fast on a CPU.
fn tiny_arch(num_classes: usize) -> Architecture {
    let text = format!("variant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = {num_classes}\n");
    let cfg: ModelConfig = toml::from_str(&text).unwrap();
    cfg.architecture().unwrap()
}

#[test]
fn trainable_parameter_counts_match_pytorch() {
    for (v, n) in effnet_config::REFERENCE_PARAM_COUNTS {
        let m = EfficientNet::variant(v, &cpu());
        assert_eq!(trainable_params(&m), n, "{v}");
    }
}

#[test]
fn output_shapes_at_native_and_odd_resolutions() {
    let m = EfficientNet::variant(Variant::B0, &cpu()).valid();
    let y = m.forward(Tensor::random([1, 3, 224, 224], Distribution::Default, &cpu()));
    assert_eq!(y.dims(), [1, 1000]);
    let f = m.forward_features(Tensor::random([1, 3, 225, 197], Distribution::Default, &cpu()));
    // TF-SAME: each stride-2 layer gives ceil(n / 2).
    let dims: Vec<[usize; 4]> = f.reductions.iter().map(|t| t.dims()).collect();
    assert_eq!(dims, [[1, 16, 113, 99], [1, 24, 57, 50], [1, 40, 29, 25], [1, 112, 15, 13], [1, 320, 8, 7]]);
    assert_eq!(f.head.dims(), [1, 1280, 8, 7]);

    let mut sym = Architecture::variant(Variant::B0);
    sym.padding = Padding::Symmetric;
    sym.num_classes = 7;
    let m = EfficientNet::new(&sym, &cpu()).valid();
    let y = m.forward(Tensor::random([2, 3, 225, 197], Distribution::Default, &cpu()));
    assert_eq!(y.dims(), [2, 7]);
}

#[test]
fn lite_and_custom_shapes() {
    let arch = {
        let mut a = Architecture::variant(Variant::Lite0);
        a.num_classes = 5;
        a
    };
    let m = EfficientNet::new(&arch, &cpu()).valid();
    assert_eq!(m.forward(Tensor::random([2, 3, 64, 48], Distribution::Default, &cpu())).dims(), [2, 5]);
    let m = EfficientNet::new(&tiny_arch(3), &cpu()).valid();
    assert_eq!(m.num_blocks(), 10);
    assert_eq!(m.forward(Tensor::random([1, 3, 31, 17], Distribution::Default, &cpu())).dims(), [1, 3]);
}

#[test]
fn eval_is_deterministic_and_drop_connect_is_identity_in_eval() {
    let dev = cpu().autodiff();
    let mut m = EfficientNet::new(&tiny_arch(10), &dev);
    let x = Tensor::<4>::random([2, 3, 40, 40], Distribution::Default, &dev);
    let eval = m.valid();
    let a = eval.forward(x.clone().inner());
    let b = eval.forward(x.clone().inner());
    assert_eq!(max_abs_diff(a.clone(), b), 0.0);
    m.set_drop_connect_rates(&vec![0.5; m.num_blocks()]);
    let c = m.valid().forward(x.clone().inner());
    assert_eq!(max_abs_diff(a.clone(), c), 0.0);
    // In training mode the same rates do change the output.
    let t1 = m.forward(x.clone()).inner();
    assert!(max_abs_diff(a, t1) > 1e-4);
}

#[test]
fn drop_path_keeps_each_sample_with_probability_one_minus_p() {
    use effnet_model::layers::DropPath;
    let dev = cpu().autodiff();
    let p = 0.3;
    let n = 20_000;
    let dp = DropPath::new(p);
    let y = dp.forward(Tensor::<4>::ones([n, 2, 1, 1], &dev)).inner();
    let v = y.into_data().try_to_vec::<f32>().unwrap();
    // Whole samples are kept or dropped, and survivors are scaled by 1/keep.
    let kept = v.chunks(2).filter(|c| c[0] != 0.0).count();
    for c in v.chunks(2) {
        assert_eq!(c[0], c[1]);
        assert!(c[0] == 0.0 || (c[0] - 1.0 / 0.7).abs() < 1e-6, "{}", c[0]);
    }
    // Binomial(20000, 0.7): sd ≈ 65; 5 sd.
    let expected = (1.0 - p) * n as f64;
    assert!((kept as f64 - expected).abs() < 325.0, "kept {kept} of {n}");
    // Rate 0 and evaluation are the identity.
    assert_eq!(
        DropPath::new(0.0).forward(Tensor::<4>::ones([4, 1, 1, 1], &dev)).inner().sum().into_scalar::<f32>(),
        4.0
    );
    assert_eq!(dp.forward(Tensor::<4>::ones([4, 1, 1, 1], &cpu())).sum().into_scalar::<f32>(), 4.0);
}

#[test]
fn drop_connect_rates_come_from_the_architecture_and_are_settable_per_block() {
    // The config's default drop_connect_rate (0.2), resolved per block as rate · i / N.
    let mut m = EfficientNet::new(&tiny_arch(10), &cpu());
    let rates: Vec<f64> = (0..10).map(|i| 0.2 * i as f64 / 10.0).collect();
    assert_eq!(m.drop_connect_rates(), rates);
    m.set_drop_connect_rates(&[0.1; 10]);
    assert_eq!(m.drop_connect_rates(), vec![0.1; 10]);
    // A released variant's architecture drops nothing unless a config asks.
    assert_eq!(EfficientNet::variant(Variant::B0, &cpu()).drop_connect_rates(), vec![0.0; 16]);
}

#[test]
fn tf_weight_init() {
    let m = EfficientNet::variant(Variant::B0, &cpu());
    // Stem: N(0, sqrt(2 / (3*3*32))) = 0.0833.
    let w = m.stem.conv.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!((std - (2.0f64 / 288.0).sqrt()).abs() < 0.1 * 0.0833, "stem std {std}");
    // Depthwise of the last block: fan_out = k*k = 9 -> std 0.471.
    let w = m.blocks[15].depthwise.conv.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!((std - (2.0f64 / 9.0).sqrt()).abs() < 0.05, "depthwise std {std}");
    // Classifier: U(±1/sqrt(1000)), zero bias.
    let c = m.classifier.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let bound = 1.0 / 1000f32.sqrt();
    assert!(c.iter().all(|x| x.abs() <= bound));
    assert!(c.iter().map(|x| x.abs()).fold(0.0, f32::max) > 0.9 * bound);
    assert_eq!(m.classifier.bias.as_ref().unwrap().val().abs().sum().into_scalar::<f32>(), 0.0);
}

#[test]
fn head_replacement_keeps_the_backbone() {
    let m = EfficientNet::new(&tiny_arch(1000), &cpu());
    let stem_before = m.stem.conv.weight.val();
    let m = m.with_num_classes(10, ClassifierInit::Tf, &cpu());
    assert_eq!(m.num_classes(), 10);
    assert_eq!(m.classifier.weight.dims(), [320, 10]);
    assert_eq!((m.stem.conv.weight.val() - stem_before).abs().max().into_scalar::<f32>(), 0.0);
    assert_eq!(m.valid().forward(Tensor::random([2, 3, 32, 32], Distribution::Default, &cpu())).dims(), [2, 10]);
}

fn values(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// (max |w|, max |b|) of a fresh 10-class head on the 320-feature tiny net.
fn head_extremes(init: ClassifierInit) -> (f32, f32) {
    let m = EfficientNet::new(&tiny_arch(1000), &cpu()).with_num_classes(10, init, &cpu());
    assert_eq!(m.classifier.weight.dims(), [320, 10]);
    let w = values(m.classifier.weight.val().flatten(0, 1));
    let b = values(m.classifier.bias.as_ref().unwrap().val());
    let max = |v: &[f32]| v.iter().map(|x| x.abs()).fold(0.0, f32::max);
    (max(&w), max(&b))
}

#[test]
fn head_init_tf_is_uniform_over_one_over_sqrt_classes_with_zero_bias() {
    let (w, b) = head_extremes(ClassifierInit::Tf);
    let bound = 1.0 / 10f32.sqrt();
    assert!(w <= bound && w > 0.9 * bound, "max |w| = {w}, bound {bound}");
    assert_eq!(b, 0.0);
}

#[test]
fn head_init_torch_is_uniform_over_one_over_sqrt_features_for_weight_and_bias() {
    let (w, b) = head_extremes(ClassifierInit::Torch);
    let bound = 1.0 / 320f32.sqrt();
    assert!(w <= bound && w > 0.9 * bound, "max |w| = {w}, bound {bound}");
    // 10 bias draws: all inside the bound and not all zero.
    assert!(b <= bound && b > 0.0, "max |b| = {b}, bound {bound}");
}

#[test]
fn head_init_zeros_is_all_zero() {
    assert_eq!(head_extremes(ClassifierInit::Zeros), (0.0, 0.0));
}

#[test]
fn frozen_backbone_trains_only_the_classifier() {
    let dev = cpu().autodiff();
    let m = EfficientNet::new(&tiny_arch(10), &dev).freeze_backbone();
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &dev);
    let loss = m.forward(x.clone()).powi_scalar(2).mean();
    let g = loss.backward();
    assert!(m.classifier.weight.val().grad(&g).is_some());
    assert!(m.stem.conv.weight.val().grad(&g).is_none());
    assert!(m.blocks[3].depthwise.conv.weight.val().grad(&g).is_none());
    // Frozen BatchNorm keeps its running statistics.
    let before = m.head.bn.running_mean.value_sync();
    let _ = m.forward(x.clone());
    assert_eq!((m.head.bn.running_mean.value_sync() - before).abs().max().into_scalar::<f32>(), 0.0);
    let m = m.unfreeze_backbone();
    let g = m.forward(x).powi_scalar(2).mean().backward();
    assert!(m.stem.conv.weight.val().grad(&g).is_some());
}

#[test]
fn unshared_running_state_is_not_updated_by_the_original() {
    let device = Device::flex().autodiff();
    let model = EfficientNet::new(&tiny_arch(3), &device);
    let shared = model.clone();
    let own = model.clone().unshare_running_state();
    let before = own.stem.bn.running_mean.value_sync();
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(1.0, 1.0), &device);
    let _ = model.forward(x);
    let moved =
        |m: &EfficientNet| max_abs_diff(m.stem.bn.running_mean.value_sync().unsqueeze(), before.clone().unsqueeze());
    // burn's RunningState is shared by clones: the plain clone sees the update, the unshared one not.
    assert!(moved(&shared) > 1e-4, "the training step did not move the running mean");
    assert_eq!(moved(&own), 0.0);
}

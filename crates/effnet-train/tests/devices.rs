//! Data-parallel training over two flex devices (burn-train's `multi` strategy) against one
//! device, with the same seed and global batch.
//!
//! Every optimizer step sees the same images on one or two devices (the loader interleaves the
//! devices' shares), so what can differ is:
//! - BatchNorm: each device normalises its half of the batch with its own batch statistics
//!   (burn 0.22.1 has no SyncBatchNorm). With BatchNorm held at its running statistics the
//!   network treats every image independently, and the two runs must agree to float rounding:
//!   that checks the gradient scaling (burn sums the devices' gradients), the batch split, the
//!   step count and the schedule.
//! - With batch statistics on (normal training), the per-replica statistics make the runs
//!   drift apart; the curves must still agree within a measured tolerance.

use effnet_test_support as common;

use burn::module::{Flag, Module, ModuleMapper, Param};
use effnet_config::EffnetConfig;
use effnet_model::EfficientNet;
use effnet_train::progress::EpochRow;
use effnet_train::trainer::{ConfigSource, Summary, read_metrics, train_with};
use std::path::{Path, PathBuf};

/// BatchNorm held: per-epoch train and validation loss, relative difference allowed (measured
/// ≤ 6.4e-6: float rounding only; with the devices' gradients summed instead of averaged it is 4e-2 to 1.4e-1).
const EXACT_REL_TOL: f64 = 1e-4;
/// Batch statistics per replica: per-epoch mean training loss, relative difference allowed
/// (measured 0.8 % and 9.9 % over the two epochs).
const PER_REPLICA_BN_TRAIN_REL_TOL: f64 = 0.2;

/// The tiny deterministic run of `tests/train.rs` (narrow model at 16 px, no dropout or
/// drop-connect, one loader worker) on `devices`.
fn tiny(epochs: usize, devices: &str, optim: &str, init: Option<&Path>) -> ConfigSource {
    let text = format!(
        r#"
{common}[train]
epochs = {epochs}
batch_size = 128
seed = 7
ema_decay = 0.9
{init}
[optim]
{optim}
lr_batch_size = 128
{schedule}[runtime]
devices = {devices}
"#,
        common = common::tiny_model_and_data(),
        schedule = common::TINY_SCHEDULE,
        init = init.map_or(String::new(), |p| format!("init_weights = {:?}", p.display().to_string())),
    );
    let file = PathBuf::from("tiny.toml");
    ConfigSource { config: EffnetConfig::from_toml_str(&text, &file).unwrap(), file }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("effnet-devices-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn rows(dir: &Path, split: &str) -> Vec<EpochRow> {
    read_metrics(&dir.join("metrics.csv")).into_iter().filter(|r| r.split == split).collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs())
}

/// Disables every module flag: BatchNorm then normalises with its running statistics.
struct HoldBatchNorm;

impl ModuleMapper for HoldBatchNorm {
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        flag.with_value(false)
    }
}

struct Runs {
    train: [Vec<EpochRow>; 2],
    valid: [Vec<EpochRow>; 2],
    summaries: [Summary; 2],
}

/// Trains on `[0]` and on `[0, 1]`; prints the per-epoch comparison.
fn one_and_two_devices(
    name: &str,
    epochs: usize,
    optim: &str,
    init: Option<&Path>,
    prepare: &dyn Fn(EfficientNet) -> EfficientNet,
) -> Runs {
    let dirs = [tmp(&format!("{name}-1")), tmp(&format!("{name}-2"))];
    let s1 = train_with(&tiny(epochs, "[0]", optim, init), &dirs[0], false, prepare).unwrap();
    let s2 = train_with(&tiny(epochs, "[0, 1]", optim, init), &dirs[1], false, prepare).unwrap();
    let runs = Runs {
        train: [rows(&dirs[0], "train"), rows(&dirs[1], "train")],
        valid: [rows(&dirs[0], "valid"), rows(&dirs[1], "valid")],
        summaries: [s1, s2],
    };
    for d in &dirs {
        std::fs::remove_dir_all(d).unwrap();
    }
    for e in 0..epochs {
        let (t, v) = (&runs.train, &runs.valid);
        eprintln!(
            "{name} epoch {}: train loss {:.5} (1 device) / {:.5} (2 devices), rel {:.2e}; valid loss {:.5} / {:.5}, \
             rel {:.2e}; valid top-1 {:.3} / {:.3}",
            e + 1,
            t[0][e].loss,
            t[1][e].loss,
            rel(t[0][e].loss, t[1][e].loss),
            v[0][e].loss,
            v[1][e].loss,
            rel(v[0][e].loss, v[1][e].loss),
            v[0][e].top1,
            v[1][e].top1,
        );
    }
    for r in runs.train.iter().chain(&runs.valid) {
        assert_eq!(r.len(), epochs, "{r:?}");
    }
    runs
}

#[test]
fn two_flex_devices_match_one_device_when_batchnorm_is_held() {
    let _serial = common::serial();
    let epochs = 2;
    // Without normalisation at initialisation the network does not learn; start from weights
    // (and running statistics) trained for two epochs on one device.
    let pre = tmp("pretrain");
    train_with(&tiny(2, "[0]", "name = \"rmsprop-tf\"\nlr = 0.016", None), &pre, false, &|net| net).unwrap();
    let init = pre.join("latest.bpk");
    // TF RMSProp's mean square starts at 1, so its first steps scale with the gradient: a
    // wrongly scaled multi-device gradient shows.
    let optim = "name = \"rmsprop-tf\"\nlr = 0.016";
    let runs = one_and_two_devices("held-bn", epochs, optim, Some(&init), &|net| net.map(&mut HoldBatchNorm));
    std::fs::remove_dir_all(&pre).unwrap();
    for e in 0..epochs {
        for (what, r) in [("train", &runs.train), ("valid", &runs.valid)] {
            let (a, b) = (r[0][e].loss, r[1][e].loss);
            assert!(rel(a, b) < EXACT_REL_TOL, "epoch {}: {what} loss {a} (1 device) vs {b} (2 devices)", e + 1);
        }
        // Same number of optimizer steps: the same LR at the end of each epoch.
        assert_eq!(runs.train[0][e].lr, runs.train[1][e].lr);
    }
    let t = &runs.train[1];
    assert!(t[epochs - 1].loss < 0.95 * t[0].loss, "train loss {} -> {}", t[0].loss, t[epochs - 1].loss);
    let (a, b) = (runs.summaries[0].ema.as_ref().unwrap(), runs.summaries[1].ema.as_ref().unwrap());
    assert!(rel(a.val_loss, b.val_loss) < EXACT_REL_TOL, "EMA validation loss {} vs {}", a.val_loss, b.val_loss);
}

#[test]
fn two_flex_devices_follow_the_one_device_loss_curve_with_per_replica_batchnorm() {
    let _serial = common::serial();
    let epochs = 2;
    let optim = "name = \"rmsprop-tf\"\nlr = 0.016";
    let runs = one_and_two_devices("bn", epochs, optim, None, &|net| net);
    for e in 0..epochs {
        let (a, b) = (runs.train[0][e].loss, runs.train[1][e].loss);
        assert!(
            rel(a, b) < PER_REPLICA_BN_TRAIN_REL_TOL,
            "epoch {}: train loss {a} (1 device) vs {b} (2 devices)",
            e + 1
        );
        assert_eq!(runs.train[0][e].lr, runs.train[1][e].lr);
    }
    for t in &runs.train {
        assert!(t[epochs - 1].loss < 0.9 * t[0].loss, "train loss {} -> {}", t[0].loss, t[epochs - 1].loss);
    }
    // 1438 / 128 → 12 steps per epoch, decay 0.9 per epoch: the last step of epoch 2 runs at
    // 0.016 · 0.9 on two devices as on one.
    let lr = runs.train[1][epochs - 1].lr.unwrap();
    assert!((lr - 0.016 * 0.9).abs() < 1e-6, "{lr}");
    assert!(runs.summaries[1].ema.as_ref().is_some_and(|m| m.val_top1 > 0.0));
}

#[test]
fn a_resumed_two_device_run_matches_an_uninterrupted_one() {
    let _serial = common::serial();
    // Two flex workers add their two gradients (and average their two running-statistics
    // updates) in either order to the same result, so a two-device run is deterministic.
    let optim = "name = \"rmsprop-tf\"\nlr = 0.016";
    let whole = tmp("resume-whole");
    train_with(&tiny(2, "[0, 1]", optim, None), &whole, false, &|net| net).unwrap();
    let parts = tmp("resume-parts");
    train_with(&tiny(1, "[0, 1]", optim, None), &parts, false, &|net| net).unwrap();
    train_with(&tiny(2, "[0, 1]", optim, None), &parts, true, &|net| net).unwrap();
    for split in ["train", "valid"] {
        let (a, b) = (rows(&whole, split), rows(&parts, split));
        assert_eq!(b.len(), 2, "{b:?}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.loss - y.loss).abs() < 1e-5 && x.lr == y.lr, "{split}: {x:?} vs {y:?}");
        }
    }
    std::fs::remove_dir_all(&whole).unwrap();
    std::fs::remove_dir_all(&parts).unwrap();
}

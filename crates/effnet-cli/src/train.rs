//! `effnet train` and `effnet eval`.

use crate::runtime_args::{PrecisionArg, RuntimeArgs};
use anyhow::{Context, Result, bail};
use effnet_train::evaluate::evaluate_net_at;
use effnet_train::trainer::{ConfigSource, device_for, train};
use std::path::{Path, PathBuf};

/// `effnet train --config FILE [--run-dir DIR] [--resume] [--backend B] [--devices 0,1]`.
pub fn run_train(config: &Path, run_dir: Option<&Path>, resume: bool, runtime: &RuntimeArgs) -> Result<()> {
    let mut src = ConfigSource::load(config)?;
    runtime.apply(&mut src.config, config)?;
    let run_dir = run_dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&src.config.runtime.run_dir));
    let summary = train(&src, &run_dir, resume)?;
    let k = src.config.model.architecture().map_or(5, |a| effnet_train::trainer::top_k(a.num_classes));
    println!(
        "done: {} epochs; validation top-1 {:.2}% top-{k} {:.2}% loss {:.4} (best top-1 {:.2}% at epoch {}){}",
        summary.epochs,
        100.0 * summary.final_.val_top1,
        100.0 * summary.final_.val_top5,
        summary.final_.val_loss,
        100.0 * summary.best.val_top1,
        summary.best.epoch,
        summary.ema.as_ref().map_or(String::new(), |e| format!("; EMA top-1 {:.2}%", 100.0 * e.val_top1))
    );
    println!("run directory: {}", run_dir.display());
    Ok(())
}

/// `effnet eval --config FILE --checkpoint FILE|RUN_DIR [--ema] [--json] [--backend B]
/// [--devices N] [--precision P]`: the test split, on the first device.
pub fn run_eval(
    config: &Path,
    checkpoint: &Path,
    ema: bool,
    json: bool,
    runtime: &RuntimeArgs,
    precision: &PrecisionArg,
) -> Result<()> {
    let mut src = ConfigSource::load(config)?;
    runtime.apply(&mut src.config, config)?;
    let cfg = &src.config;
    let weights = if checkpoint.is_dir() {
        checkpoint.join(if ema { "ema.bpk" } else { "latest.bpk" })
    } else if ema {
        bail!("--ema needs a run directory (it reads RUN_DIR/ema.bpk); {} is a file", checkpoint.display());
    } else {
        checkpoint.to_path_buf()
    };
    if !weights.is_file() {
        bail!("{}: no such checkpoint", weights.display());
    }
    let device = device_for(cfg).map_err(|e| e.in_file(config))?;
    let arch = cfg.model.architecture().map_err(|e| e.in_file(config))?;
    let mut net = effnet_model::EfficientNet::new(&arch, &device);
    let report = net.load_weights(&weights, &arch)?;
    report.notes.iter().for_each(|n| eprintln!("{n}"));
    let ds = effnet_train::data::open_dataset(&cfg.data, &src.base_dir())?;
    let split = ds.test();
    let size = cfg.data.image_size.unwrap_or(arch.resolution);
    let precision = precision.resolve(Some(cfg));
    let m = evaluate_net_at(&net, split, &cfg.data, size, cfg.train.batch_size, &device, precision);
    if json {
        let out = serde_json::json!({
            "checkpoint": weights, "split": split.name, "images": m.images, "precision": precision.name(),
            "loss": m.loss, "top1": m.top1, "top5": m.top5, "top_k": effnet_train::trainer::top_k(arch.num_classes),
        });
        println!("{}", serde_json::to_string_pretty(&out).context("json")?);
    } else {
        println!(
            "{} on {} ({} images): loss {:.4} top-1 {:.2}% top-{} {:.2}%",
            weights.display(),
            split.name,
            m.images,
            m.loss,
            100.0 * m.top1,
            effnet_train::trainer::top_k(arch.num_classes),
            100.0 * m.top5
        );
    }
    Ok(())
}

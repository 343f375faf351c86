//! `effnet train` and `effnet eval`.

use crate::eval_report;
use crate::run_dir_args::RunArgs;
use crate::runtime_args::{PrecisionArg, RuntimeArgs};
use anyhow::{Context, Result, bail};
use effnet_train::data::LoaderSpec;
use effnet_train::evaluate::evaluate;
use effnet_train::run_dir::{epoch_model_path, load_training_checkpoint, model_epochs_note, training_checkpoint_epoch};
use effnet_train::trainer::{ConfigSource, device_for, train};
use std::path::{Path, PathBuf};

/// `effnet train --config FILE [--run-dir DIR] [--resume] [--backend B] [--devices 0,1]`.
pub fn run_train(config: &Path, run_dir: Option<&Path>, resume: bool, runtime: &RuntimeArgs) -> Result<()> {
    let mut src = ConfigSource::load(config)?;
    runtime.apply(&mut src.config, config)?;
    if src.config.runtime.devices.len() <= 1 {
        effnet_model::run_kernels_on_this_thread();
    }
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

/// `effnet eval --config FILE --checkpoint FILE|RUN_DIR | --run DIR [--ema|--latest] [--json]
/// [--backend B] [--devices N] [--precision P]`: the test split, on the first device.
pub fn run_eval(
    config: Option<&Path>,
    checkpoint: Option<&Path>,
    run: &RunArgs,
    epoch: Option<usize>,
    json: bool,
    runtime: &RuntimeArgs,
    precision: &PrecisionArg,
) -> Result<()> {
    let ema = run.ema;
    // With --epoch N, --run DIR stands for --config DIR/config.toml --checkpoint DIR: a run that
    // stopped early has per-epoch checkpoints but no final weights.
    let epoch_run = run.run.as_deref().filter(|_| epoch.is_some());
    let run_config = epoch_run.map(|d| d.join("config.toml"));
    let run_dir = if epoch_run.is_some() { None } else { run.resolve()? };
    // --run DIR stands for --config DIR/config.toml --checkpoint DIR/best.bpk (or ema/latest).
    let (config, checkpoint) = match (&run_dir, &run_config, epoch_run) {
        (Some(r), _, _) => (r.config.as_path(), r.weights.as_path()),
        (None, Some(c), Some(d)) => (c.as_path(), d),
        _ => match (config, checkpoint) {
            (Some(c), Some(w)) => (c, w),
            _ => bail!("--config FILE and --checkpoint FILE|DIR, or --run DIR, are required"),
        },
    };
    let mut src = match (&run_dir, &run_config) {
        (None, None) => ConfigSource::load(config)?,
        _ => effnet_train::config_source::load_run_config(config)?,
    };
    runtime.apply(&mut src.config, config)?;
    let cfg = &src.config;
    // A run's checkpoint/ folder given for the run: say so, rather than that the folder holds no
    // per-epoch checkpoints (those are looked for in RUN_DIR/checkpoint/).
    if checkpoint.is_dir() && checkpoint.file_name().is_some_and(|n| n == "checkpoint") {
        let run = checkpoint.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !checkpoint.join("latest.bpk").exists() && run.join("checkpoint").is_dir() {
            bail!(
                "{}: the checkpoint/ folder of a run; pass the run directory {} instead ({})",
                checkpoint.display(),
                run.display(),
                model_epochs_note(run)
            );
        }
    }
    // burn-train's per-epoch checkpoint (network and EMA), by --epoch or given as a file.
    let from_epoch = match epoch {
        Some(n) if checkpoint.is_dir() => Some(epoch_model_path(checkpoint, n)?),
        Some(_) => bail!(
            "--epoch needs a run directory (it reads RUN_DIR/checkpoint/model-N.bpk); {} is a file",
            checkpoint.display()
        ),
        None => training_checkpoint_epoch(checkpoint).map(|_| checkpoint.to_path_buf()),
    };
    let weights = if let Some(path) = &from_epoch {
        path.clone()
    } else if run_dir.is_some() {
        checkpoint.to_path_buf()
    } else if checkpoint.is_dir() {
        checkpoint.join(if ema { "ema.bpk" } else { "latest.bpk" })
    } else if ema {
        bail!("--ema needs a run directory (it reads RUN_DIR/ema.bpk); {} is a file", checkpoint.display());
    } else {
        checkpoint.to_path_buf()
    };
    if !weights.is_file() {
        if checkpoint.is_dir() {
            bail!("{}: no such checkpoint; {}", weights.display(), model_epochs_note(checkpoint));
        }
        bail!("{}: no such checkpoint", weights.display());
    }
    let device = device_for(cfg).map_err(|e| e.in_file(config))?;
    let arch = cfg.model.architecture().map_err(|e| e.in_file(config))?;
    let net = match &from_epoch {
        Some(path) => {
            let m = load_training_checkpoint(path, &arch, cfg.train.ema_decay, &device)?;
            match (ema, m.ema) {
                (false, _) => m.net,
                (true, Some(ema)) => ema,
                (true, None) => bail!("{}: no EMA weights (train.ema_decay is not set)", path.display()),
            }
        }
        None => {
            let mut net = effnet_model::EfficientNet::new(&arch, &device);
            let report = net.load_weights(&weights, &arch)?;
            report.notes.iter().for_each(|n| eprintln!("{n}"));
            net
        }
    };
    let ds = effnet_train::data::open_dataset(&cfg.data, &src.base_dir())?;
    let split = ds.test();
    let loaders = LoaderSpec::new(cfg, &arch);
    let precision = crate::runtime_args::checked_precision(precision.resolve(Some(cfg)), cfg.runtime.backend)?;
    if ds.num_classes > arch.num_classes {
        bail!(
            "{}: model.num_classes = {}, but the dataset at {:?} has {} classes",
            config.display(),
            arch.num_classes,
            cfg.data.path,
            ds.num_classes
        );
    }
    if ds.num_classes < arch.num_classes {
        eprintln!(
            "warning: the dataset at {:?} has {} classes but the model {}: a label's index need not mean the class the model learnt under it",
            cfg.data.path, ds.num_classes, arch.num_classes
        );
    }
    let (m, confusion) = evaluate(&net, split, &loaders, &device, precision);
    let names = &ds.class_names;
    if json {
        let mut out = serde_json::json!({
            "checkpoint": weights, "split": split.name, "images": m.images, "precision": precision.name(),
            "loss": m.loss, "top1": m.top1, "top5": m.top5, "top_k": effnet_train::trainer::top_k(arch.num_classes),
        });
        for (k, v) in eval_report::json_fields(&confusion, names).as_object().expect("object") {
            out[k] = v.clone();
        }
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
        print!("{}", eval_report::worst_classes(&confusion, names));
    }
    Ok(())
}

//! `--run DIR`: a run directory made by `effnet train` as the model of `predict`, `eval` and
//! `forward` — its resolved `config.toml`, its weights (`best.bpk`; `--ema`: `ema.bpk`;
//! `--latest`: `latest.bpk`) and the class names of its `classes.txt`.

use crate::model_args::ModelArgs;
use crate::run::PredictOptions;
use anyhow::{Result, bail};
use effnet_config::{EffnetConfig, Interpolation};
use std::path::{Path, PathBuf};

/// The run directory flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// A run directory made by `effnet train`: its config.toml and best.bpk (the best validation
    /// epoch), and the class names of its classes.txt.
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// The EMA weights: RUN/ema.bpk (eval: also CHECKPOINT_DIR/ema.bpk).
    #[arg(long, conflicts_with = "latest")]
    pub ema: bool,
    /// The last epoch's weights, RUN/latest.bpk, instead of the best epoch's.
    #[arg(long)]
    pub latest: bool,
}

/// A resolved `--run`: the files it names, each checked to exist.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub config: PathBuf,
    pub weights: PathBuf,
}

impl RunArgs {
    /// The weights file name `--ema`/`--latest` pick in a run directory.
    pub fn weights_name(&self) -> &'static str {
        if self.ema {
            "ema.bpk"
        } else if self.latest {
            "latest.bpk"
        } else {
            "best.bpk"
        }
    }

    /// The run directory's config and weights; `None` without `--run`. A missing directory,
    /// config or weights file is a one-line error naming the path.
    pub fn resolve(&self) -> Result<Option<RunDir>> {
        let Some(dir) = &self.run else {
            // (clap's `requires` does not fire for a flag beside the conflicting --weights/--config.)
            if self.latest {
                bail!("--latest needs --run DIR (it reads DIR/latest.bpk)");
            }
            return Ok(None);
        };
        if !dir.is_dir() {
            bail!("{}: --run: no such run directory", dir.display());
        }
        let config = dir.join("config.toml");
        if !config.is_file() {
            bail!("{}: missing: --run needs a run directory made by `effnet train`", config.display());
        }
        let weights = dir.join(self.weights_name());
        if !weights.is_file() {
            let why = match self.weights_name() {
                "ema.bpk" => "the run has no EMA weights (train.ema_decay was not set, or the run has not finished)",
                _ => {
                    "the weights are written when the run finishes; its per-epoch checkpoints are in checkpoint/ \
                     (eval: --epoch N)"
                }
            };
            bail!("{}: missing: {why}", weights.display());
        }
        Ok(Some(RunDir { config, weights }))
    }
}

/// Class names from the first of `dirs` that holds a `classes.txt` (a run directory, or the
/// folder of a run's `config.toml` or weights); `None` when none does.
pub fn class_names_near(dirs: &[&Path]) -> Result<Option<Vec<String>>> {
    for dir in dirs {
        if let Some(names) = effnet_train::classes::read_classes(dir)? {
            return Ok(Some(names));
        }
    }
    Ok(None)
}

/// `predict`'s preprocessing flags as given (`None`: not given).
pub struct TransformFlags {
    pub resolution: Option<usize>,
    pub crop_fraction: Option<f64>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
}

/// `predict`'s options. With `--run`, what a flag leaves unset is what the run validated with
/// (its `[data]` image_size, crop_fraction, mean, std and interpolation): a network trained on
/// other statistics or crops than ImageNet's misclassifies ImageNet-preprocessed images.
/// Otherwise: the model's resolution, crop 0.875, its family's mean/std (ImageNet's or Lite's), bicubic.
pub fn predict_options(model: &ModelArgs, top: usize, json: bool, f: TransformFlags) -> Result<PredictOptions> {
    let data = match (&model.run.run, &model.config) {
        (Some(_), Some(config)) => Some(EffnetConfig::load(config)?.data),
        _ => None,
    };
    let f32s = |v: [f64; 3]| v.map(|x| x as f32);
    Ok(PredictOptions {
        top,
        json,
        resolution: f.resolution.or(data.as_ref().and_then(|d| d.image_size)),
        crop_fraction: f.crop_fraction.or(data.as_ref().map(|d| d.crop_fraction)).unwrap_or(0.875),
        mean: f.mean.or(data.as_ref().and_then(|d| d.mean).map(f32s)),
        std: f.std.or(data.as_ref().and_then(|d| d.std).map(f32s)),
        interpolation: data.as_ref().map_or(Interpolation::Bicubic, |d| d.interpolation),
    })
}

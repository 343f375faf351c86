//! Choosing an architecture and loading weights for `forward` and `predict`.

use anyhow::{Result, anyhow};
use burn::prelude::Device;
use clap::{Args, ValueEnum};
use effnet_config::{Architecture, BackendKind, EffnetConfig, Padding, Variant};
use effnet_model::{EfficientNet, LoadReport, WeightLayout, inspect};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PaddingArg {
    TfSame,
    Symmetric,
}

impl From<PaddingArg> for Padding {
    fn from(p: PaddingArg) -> Self {
        match p {
            PaddingArg::TfSame => Padding::TfSame,
            PaddingArg::Symmetric => Padding::Symmetric,
        }
    }
}

/// The model to run: a released variant or a config's `[model]`, and its weights.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Released variant (b0…b8, l2, lite0…lite4).
    #[arg(long, required_unless_present_any = ["config", "run"], conflicts_with = "run")]
    pub variant: Option<String>,
    /// A config file whose [model] section describes the network (custom widths, blocks, …).
    #[arg(long, conflicts_with_all = ["variant", "run"])]
    pub config: Option<PathBuf>,
    /// Weights: .pth / .safetensors (EfficientNet-PyTorch, timm, torchvision or effnet layout) or .bpk.
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    pub weights: Option<PathBuf>,
    #[command(flatten)]
    pub run: crate::run_dir_args::RunArgs,
    /// Padding; default: what the weights were trained with (or the config's).
    #[arg(long, value_enum)]
    pub padding: Option<PaddingArg>,
    /// BatchNorm epsilon; default: what the weights were trained with (or the config's).
    #[arg(long)]
    pub bn_eps: Option<f64>,
    /// Number of classes; default: the checkpoint's classifier.
    #[arg(long)]
    pub num_classes: Option<usize>,
    #[command(flatten)]
    pub runtime: crate::runtime_args::RuntimeArgs,
    #[command(flatten)]
    pub precision: crate::runtime_args::PrecisionArg,
    /// Images per forward pass: a large input runs in blocks of this many, so memory stays
    /// bounded by the block, not by the input.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub batch_size: u64,
}

impl ModelArgs {
    /// `--run DIR` as `--config DIR/config.toml --weights DIR/best.bpk` (or ema/latest).
    pub fn with_run(mut self) -> Result<Self> {
        if self.run.ema && self.run.run.is_none() {
            return Err(anyhow!("--ema needs --run DIR (it reads DIR/ema.bpk)"));
        }
        if let Some(run) = self.run.resolve()? {
            (self.config, self.weights) = (Some(run.config), Some(run.weights));
        }
        Ok(self)
    }

    fn weights(&self) -> Result<&std::path::Path> {
        self.weights.as_deref().ok_or_else(|| anyhow!("--weights FILE or --run DIR is required"))
    }

    /// The names in `classes.txt` of the run directory, or beside `--config` or `--weights`.
    pub fn class_names(&self) -> Result<Option<Vec<String>>> {
        let dirs: Vec<&std::path::Path> = [self.run.run.as_deref(), self.config.as_deref(), self.weights.as_deref()]
            .into_iter()
            .flatten()
            .map(|p| if p.is_dir() { p } else { p.parent().unwrap_or(std::path::Path::new(".")) })
            .collect();
        crate::run_dir_args::class_names_near(&dirs)
    }

    /// The device to run on: `--backend`/`--devices` over the `--config`'s `[runtime]` (flex by
    /// default); the first device when several are named.
    pub fn device(&self) -> Result<Device> {
        self.runtime.device(self.config.as_deref())
    }

    /// `--precision`, else the `--config`'s `[runtime] precision`, else f32; refused where the
    /// backend (`--backend`, else the config's) cannot compute in it.
    pub fn precision(&self) -> Result<effnet_config::Precision> {
        let cfg = self.config.as_deref().map(EffnetConfig::load).transpose()?;
        let backend = self.runtime.backend.or(cfg.as_ref().map(|c| c.runtime.backend)).unwrap_or(BackendKind::Flex);
        crate::runtime_args::checked_precision(self.precision.resolve(cfg.as_ref()), backend)
    }

    /// Resolves the architecture and loads the weights, reporting what was decided on stderr.
    pub fn load(&self, device: &Device) -> Result<(Architecture, EfficientNet, LoadReport)> {
        // One look at the file's tensor table decides the layout and the class count.
        let weights = self.weights()?;
        let info = inspect(weights)?;
        let layout = info.layout;
        let mut arch = match (&self.variant, &self.config) {
            (Some(v), _) => {
                let v: Variant = v.parse().map_err(|e: String| anyhow!("--variant: {e}"))?;
                let mut a = Architecture::variant(v);
                if let Some((padding, eps)) = layout.source_defaults(weights, &a) {
                    (a.padding, a.bn_eps) = (padding, eps);
                }
                a
            }
            (None, Some(path)) => EffnetConfig::load(path)?.model.architecture().map_err(|e| e.in_file(path))?,
            (None, None) => unreachable!("clap requires --variant or --config"),
        };
        if let Some(p) = self.padding {
            arch.padding = p.into();
        }
        if let Some(eps) = self.bn_eps {
            if !(eps > 0.0 && eps < 1.0) {
                return Err(anyhow!("--bn-eps: invalid value {eps}: must be in (0, 1)"));
            }
            arch.bn_eps = eps;
        }
        match (self.num_classes, info.num_classes) {
            (Some(0), _) => return Err(anyhow!("--num-classes: invalid value 0: must be at least 1")),
            (Some(n), _) | (None, Some(n)) => arch.num_classes = n,
            (None, None) => {}
        }
        let mut model = EfficientNet::new(&arch, device);
        let report = model.load_weights(weights, &arch)?;
        eprintln!(
            "loaded {} tensors from {} ({} layout); {} with padding {:?}, BN eps {}",
            report.applied,
            weights.display(),
            layout,
            arch.name,
            arch.padding,
            arch.bn_eps
        );
        report.notes.iter().for_each(|n| eprintln!("{n}"));
        if let Some((from, to)) = report.classifier_reset {
            eprintln!("note: the checkpoint's classifier has {from} classes; using a new {to}-class classifier");
        }
        if layout == WeightLayout::Timm && self.padding.is_none() && self.variant.is_some() {
            eprintln!(
                "note: timm checkpoint; padding/eps chosen from the file name (tf_ = TF port); override with --padding/--bn-eps"
            );
        }
        Ok((arch, model, report))
    }
}

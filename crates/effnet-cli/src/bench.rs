//! `effnet bench`: images/s and peak memory of one model at one shape.

use crate::runtime_args::checked_precision;
use crate::runtime_args::{PrecisionArg, RuntimeArgs};
use anyhow::{Result, anyhow};
use clap::{Args, ValueEnum};
use effnet_config::{Architecture, BackendKind, Precision, Variant};
use effnet_train::bench::{self, BenchMode, BenchSpec};
use effnet_train::precision::check_training_precision;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Forward pass with BatchNorm on running statistics.
    Eval,
    /// Forward, cross-entropy, backward and an SGD step.
    Train,
}

/// `effnet bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Released variant (b0…b8, l2, lite0…lite4).
    #[arg(long, default_value = "b0")]
    variant: String,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Input height and width; default: the variant's resolution.
    #[arg(long)]
    resolution: Option<usize>,
    #[arg(long, value_enum, default_value = "eval")]
    mode: Mode,
    /// Classifier width.
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// effnet's CPU kernels: `all` (default), `burn` (burn's own ops only), or a list of
    /// activation, depthwise, batchnorm, pointwise.
    #[arg(long, default_value = "all")]
    kernels: String,
    /// One JSON object: impl, model, mode, batch, resolution, images_per_sec, peak_rss_mb, ...
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Eval: bf16 or f16 casts the weights and the input; train: mixed precision (f32 weights,
    /// bf16/f16 convolutions, f16 with loss scaling).
    #[command(flatten)]
    precision: PrecisionArg,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let variant: Variant = args.variant.parse().map_err(|e: String| anyhow!("--variant: {e}"))?;
    if args.batch == 0 || args.classes == 0 {
        return Err(anyhow!("--batch and --classes must be at least 1"));
    }
    let mut arch = Architecture::variant(variant);
    arch.num_classes = args.classes;
    let resolution = args.resolution.unwrap_or(arch.resolution);
    // The bounds a config has for the same numbers (data.image_size, train.batch_size,
    // model.num_classes).
    if !(8..=4096).contains(&resolution) {
        return Err(anyhow!("--resolution: invalid value {resolution}: must be between 8 and 4096"));
    }
    if args.batch > 1 << 20 {
        return Err(anyhow!("--batch: invalid value {}: must be at most {}", args.batch, 1 << 20));
    }
    if args.classes > 1_000_000 {
        return Err(anyhow!("--classes: invalid value {}: must be at most 1000000", args.classes));
    }
    let mode = match args.mode {
        Mode::Eval => BenchMode::Eval,
        Mode::Train => BenchMode::Train,
    };
    let precision = args.precision.resolve(None);
    let backend = args.runtime.backend.unwrap_or(BackendKind::Flex);
    match mode {
        BenchMode::Train => check_training_precision(precision, backend, 1)
            .map_err(|e| anyhow!("--precision {}: {}", e.value, e.reason))?,
        BenchMode::Eval => checked_precision(precision, backend).map(|_| ())?,
    };
    if matches!(backend, BackendKind::Flex | BackendKind::Ndarray) {
        use effnet_train::memory;
        let needed = match args.mode {
            Mode::Train => memory::training_bytes(&arch, resolution, args.batch),
            Mode::Eval => memory::inference_bytes(&arch, resolution, args.batch),
        };
        let what = format!("{} {:?} at {resolution}² with batch {}", arch.name, args.mode, args.batch);
        memory::check_fits(&what, needed, memory::available_bytes(), "lower --batch, --resolution or --classes")
            .map_err(|e| anyhow!(e))?;
    }
    let kernels: effnet_model::KernelSelection = args.kernels.parse().map_err(|e| anyhow!("--kernels: {e}"))?;
    effnet_model::set_kernel_selection(kernels);
    let device = args.runtime.device(None)?;
    let mut tags = Vec::new();
    if let Some(b) = args.runtime.backend.filter(|b| *b != BackendKind::Flex) {
        tags.push(b.to_string());
    }
    if args.kernels != "all" {
        tags.push(format!("kernels={}", args.kernels));
    }
    if precision != Precision::F32 {
        tags.push(precision.to_string());
    }
    let impl_name = if tags.is_empty() { "effnet".to_string() } else { format!("effnet[{}]", tags.join(",")) };
    let spec = BenchSpec { arch, batch: args.batch, resolution, mode, warmup: args.warmup, runs: args.runs, precision };
    let r = bench::run(&spec, &device, &impl_name);
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} {:?} batch {} at {}²: {:.1} images/s (median step {:.4} s over {} runs), peak RSS {:.0} MB",
            r.model, args.mode, r.batch, r.resolution, r.images_per_sec, r.median_step_s, args.runs, r.peak_rss_mb
        );
    }
    Ok(())
}

//! `effnet`: EfficientNet training and inference from one TOML file.

mod bench;
mod data;
mod eval_report;
mod export;
mod info;
mod memory;

#[global_allocator]
static ALLOCATOR: memory::CacheAligned = memory::CacheAligned;
mod model_args;
mod npy;
mod run;
mod run_dir_args;
mod runtime_args;
mod serve;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "effnet",
    version,
    about = "EfficientNet (B0–B8, L2, Lite0–4, any φ) on burn",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train from a config file (see configs/); leaves metrics, plots and checkpoints in the run dir.
    Train {
        #[arg(long)]
        config: PathBuf,
        /// Run directory; default: [runtime] run_dir.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Continue from the run directory's latest complete checkpoint.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        runtime: runtime_args::RuntimeArgs,
    },
    /// Evaluate a checkpoint on the dataset's test split: loss, top-1, top-5, the worst classes
    /// (--json: per-class accuracy and the confusion matrix).
    Eval {
        #[arg(long, required_unless_present = "run", conflicts_with = "run")]
        config: Option<PathBuf>,
        /// A weights file, or a run directory (its latest.bpk, or ema.bpk with --ema).
        #[arg(long, required_unless_present = "run", conflicts_with = "run")]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        run: run_dir_args::RunArgs,
        /// A per-epoch checkpoint of the run directory (its checkpoint/model-N.bpk), e.g. of a
        /// run that stopped before writing its final weights.
        #[arg(long, value_name = "N")]
        epoch: Option<usize>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        runtime: runtime_args::RuntimeArgs,
        #[command(flatten)]
        precision: runtime_args::PrecisionArg,
    },
    /// Print width, depth, resolution, dropout, parameters and MACs of the variants.
    Info {
        /// One variant (b0…b8, l2, lite0…lite4); all when omitted.
        #[arg(long)]
        variant: Option<String>,
        /// A config file whose [model] to describe instead of a released variant.
        #[arg(long, conflicts_with = "variant")]
        config: Option<PathBuf>,
        /// Emit a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Images/s and peak memory of a variant at one shape, eval or train (compare with
    /// scripts/bench_peers.py, which times PyTorch and ONNX Runtime the same way).
    Bench(bench::BenchArgs),
    /// Eval-mode logits of a float32 NCHW .npy batch (verify a port against PyTorch).
    Forward {
        #[command(flatten)]
        model: model_args::ModelArgs,
        /// Input batch, float32 [N, C, H, W].
        #[arg(long)]
        input: PathBuf,
        /// Where to write the float32 [N, classes] logits.
        #[arg(long)]
        output: PathBuf,
    },
    /// Write the model as a PyTorch library's state dict (timm, timm-tf, torchvision, lukemelas;
    /// .safetensors), effnet's own .safetensors, or ONNX.
    Export(export::ExportArgs),
    /// Classify images: top-K classes with probabilities.
    Predict {
        #[command(flatten)]
        model: model_args::ModelArgs,
        /// How many classes to print per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// One JSON object per image: {"image", "top": [{"index", "label", "prob"}]}.
        #[arg(long)]
        json: bool,
        /// Crop size; default: the model's resolution.
        #[arg(long)]
        resolution: Option<usize>,
        /// Resize the short side to resolution / crop_fraction before the centre crop; default
        /// 0.875 (with --run: the run's [data] crop_fraction).
        #[arg(long)]
        crop_fraction: Option<f64>,
        /// Normalisation mean on the 0–1 scale, `r,g,b`; default ImageNet's (Lite: 127/255).
        #[arg(long, value_parser = run::parse_triple)]
        mean: Option<[f32; 3]>,
        /// Normalisation std on the 0–1 scale, `r,g,b`; default ImageNet's (Lite: 128/255).
        #[arg(long, value_parser = run::parse_triple)]
        std: Option<[f32; 3]>,
        /// Image files (JPEG or PNG).
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Inspect datasets and measure the data loader.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Host this machine's devices for training or inference driven from another machine, which
    /// lists them as `ws://HOST:PORT[/INDEX]` in [runtime] devices (cargo feature `remote`).
    Serve(serve::ServeArgs),
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config and print the resolved model (sizes and stage table).
    Check {
        file: PathBuf,
        /// Emit the resolved config and architecture as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct DataSourceArgs {
    /// A config file whose [data] section to use (relative paths resolve against its folder).
    #[arg(long, conflicts_with_all = ["dataset", "path"])]
    config: Option<PathBuf>,
    /// Dataset format: cifar100, cifar100-python, flowers102 or folder.
    #[arg(long, requires = "path")]
    dataset: Option<String>,
    /// Dataset root.
    #[arg(long, requires = "dataset")]
    path: Option<PathBuf>,
    /// CIFAR-100: the 20 coarse labels instead of the 100 fine ones.
    #[arg(long)]
    coarse: bool,
}

impl DataSourceArgs {
    fn source(self) -> data::DataSource {
        data::DataSource { config: self.config, dataset: self.dataset, path: self.path, coarse: self.coarse }
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Open a dataset and print, per split, the number of images and classes.
    Check {
        #[command(flatten)]
        source: DataSourceArgs,
        /// Emit {"dataset", "splits": {"train": {"images", "classes"}, ...}, ...} as JSON.
        #[arg(long)]
        json: bool,
        /// Also decode every image (finds corrupt files; slow on large sets).
        #[arg(long)]
        decode: bool,
    },
    /// Measure images/s of the training loader alone (decode + augment + batch).
    Bench {
        #[command(flatten)]
        source: DataSourceArgs,
        /// Number of batches to time.
        #[arg(long, default_value_t = 20)]
        batches: usize,
        /// Image size; default: [data] image_size, else the model's resolution.
        #[arg(long)]
        image_size: Option<usize>,
        /// Batch size; default: [train] batch_size.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Worker threads; default: [data] num_workers.
        #[arg(long)]
        workers: Option<usize>,
        /// One JSON object (impl, mode, batch, resolution, workers, images_per_sec, peak_rss_mb).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    memory::keep_freed_memory();
    let cli = Cli::parse();
    // `EFFNET_SIMD` checked before anything runs: the kernels themselves would fall back to the
    // best instruction set without a word.
    if let Err(e) = effnet_model::isa_from_env() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // The CPU kernels' loops start on this thread (see `run_kernels_on_this_thread`), except
    // where it only waits on others: a server, and training on several devices (decided by
    // `train` once it has read the config).
    if !matches!(cli.command, Command::Serve(_) | Command::Train { .. }) {
        effnet_model::run_kernels_on_this_thread();
    }
    let result = match cli.command {
        Command::Info { variant, config, json } => info::run_info(variant.as_deref(), config.as_deref(), json),
        Command::Config { command: ConfigCommand::Check { file, json } } => info::run_config_check(&file, json),
        Command::Train { config, run_dir, resume, runtime } => {
            train::run_train(&config, run_dir.as_deref(), resume, &runtime)
        }
        Command::Eval { config, checkpoint, run, epoch, json, runtime, precision } => {
            train::run_eval(config.as_deref(), checkpoint.as_deref(), &run, epoch, json, &runtime, &precision)
        }
        Command::Data { command: DataCommand::Check { source, json, decode } } => {
            data::check(&source.source(), json, decode)
        }
        Command::Data { command: DataCommand::Bench { source, batches, image_size, batch_size, workers, json } } => {
            data::bench(&source.source(), batches, image_size, batch_size, workers, json)
        }
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Export(args) => export::run(args),
        Command::Forward { model, input, output } => model.with_run().and_then(|m| run::forward(&m, &input, &output)),
        Command::Predict { model, top, json, resolution, crop_fraction, mean, std, images } => {
            let flags = run_dir_args::TransformFlags { resolution, crop_fraction, mean, std };
            model.with_run().and_then(|m| {
                let opts = run_dir_args::predict_options(&m, top, json, flags)?;
                run::predict(&m, &images, &opts)
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes on one line, as `{:#}` prints them, leaving out a cause whose text is
/// already there (errors that quote their OS error and also return it as their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

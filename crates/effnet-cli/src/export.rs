//! `effnet export`: a model (a run directory, or weights with a variant or config) as a
//! PyTorch library's state dict in `.safetensors`, effnet's own `.safetensors`, or ONNX.

use crate::model_args::ModelArgs;
use anyhow::{Result, bail};
use effnet_model::export::{ExportFormat, export};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// timm, timm-tf, torchvision or lukemelas (that library's state dict as .safetensors),
    /// safetensors (effnet's own keys) or onnx (opset 17).
    #[arg(long)]
    pub format: String,
    /// The file to write (.safetensors, or .onnx for --format onnx).
    #[arg(long)]
    pub output: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    // Parsed here rather than by clap, so that a bad value is one line naming the choices.
    let format: ExportFormat = args.format.parse().map_err(|e: String| anyhow::anyhow!("--format: {e}"))?;
    let ext = args.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if ext.as_deref() != Some(format.extension()) {
        bail!("{}: --format {format} writes a .{} file", args.output.display(), format.extension());
    }
    // Before any work: a FIFO, a device or a symlink at --output is refused, not replaced.
    effnet_config::fsio::check_output_target(&args.output)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", args.output.display()))?;
    let model_args = args.model.with_run()?;
    let device = model_args.device()?;
    let (arch, model, _) = model_args.load(&device)?;
    let summary = export(&model, &arch, format, &args.output)?;
    let what = if summary.nodes > 0 {
        format!("{} nodes, {} initializers", summary.nodes, summary.tensors)
    } else {
        format!("{} tensors", summary.tensors)
    };
    eprintln!("wrote {} ({what}) for {}", args.output.display(), summary.target);
    // timm's tf_ and plain checkpoints have the same keys: `--variant` tells them apart by name.
    let tf_name = args.output.to_string_lossy().to_ascii_lowercase().contains("tf_");
    match format {
        ExportFormat::TimmTf if !tf_name => eprintln!(
            "note: with --variant, effnet reads a timm file as a TF port only if its path contains `tf_`; \
             else pass --padding tf-same --bn-eps 1e-3"
        ),
        ExportFormat::Timm if tf_name => eprintln!(
            "note: with --variant, effnet reads a timm file whose path contains `tf_` as a TF port; \
             pass --padding symmetric --bn-eps 1e-5"
        ),
        _ => {}
    }
    Ok(())
}

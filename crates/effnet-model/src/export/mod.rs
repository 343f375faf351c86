//! `effnet export`: a trained model out of effnet — as the state dict of a PyTorch library
//! (timm, torchvision, EfficientNet-PyTorch) in `.safetensors`, as effnet's own `.safetensors`,
//! or as an ONNX graph of the eval-mode network.

pub mod onnx;
#[cfg(test)]
mod tests;
pub mod torch_layouts;

use crate::model::EfficientNet;
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use effnet_config::Architecture;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What `effnet export --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// timm `efficientnet_*` / `efficientnet_lite*` (symmetric padding, BN eps 1e-5).
    Timm,
    /// timm `tf_efficientnet_*` / `tf_efficientnet_lite*` (TF-SAME padding, BN eps 1e-3).
    TimmTf,
    /// torchvision `efficientnet_b0`…`b7`.
    Torchvision,
    /// EfficientNet-PyTorch (lukemelas) and efficientnet_lite_pytorch.
    Lukemelas,
    /// effnet's own keys (what `load_weights` and `--weights` read back).
    Safetensors,
    /// ONNX, opset 17.
    Onnx,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 6] = [
        ExportFormat::Timm,
        ExportFormat::TimmTf,
        ExportFormat::Torchvision,
        ExportFormat::Lukemelas,
        ExportFormat::Safetensors,
        ExportFormat::Onnx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Timm => "timm",
            ExportFormat::TimmTf => "timm-tf",
            ExportFormat::Torchvision => "torchvision",
            ExportFormat::Lukemelas => "lukemelas",
            ExportFormat::Safetensors => "safetensors",
            ExportFormat::Onnx => "onnx",
        }
    }

    /// The file extension the output should have.
    pub fn extension(self) -> &'static str {
        if self == ExportFormat::Onnx { "onnx" } else { "safetensors" }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        ExportFormat::ALL.into_iter().find(|f| f.name() == lower).ok_or_else(|| {
            let names: Vec<_> = ExportFormat::ALL.iter().map(|f| f.name()).collect();
            format!("unknown export format `{s}`; expected one of {}", names.join(", "))
        })
    }
}

/// Why an export did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The format cannot express the model (padding, BN epsilon, architecture).
    #[error("--format {format} cannot express this model: {reason}")]
    Unsupported { format: ExportFormat, reason: String },
    #[error("{file}: {message}")]
    Write { file: PathBuf, message: String },
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// Tensors in the state dict, or initializers in the ONNX graph.
    pub tensors: usize,
    /// ONNX nodes (0 for state dicts).
    pub nodes: usize,
    /// The library model the state dict loads into (`timm.create_model("…")` etc.).
    pub target: String,
}

/// A model tensor as float32, by effnet module path (`blocks.3.se.reduce.weight`).
#[derive(Debug, Clone)]
pub struct Tensor32 {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every parameter and BatchNorm running statistic of `model` in float32 (whatever its dtype),
/// keyed by module path, as burn-store names them for `load_weights`.
pub fn model_tensors(model: &EfficientNet) -> Result<BTreeMap<String, Tensor32>, String> {
    let mut out = BTreeMap::new();
    for t in model.collect(None, None, false) {
        let (name, dtype, shape, _, bytes) = t.into_parts().map_err(|e| e.to_string())?;
        let shape = shape.to_vec();
        let values = TensorData::from_bytes_vec(bytes.to_vec(), shape.clone(), dtype)
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{name}: {e:?}"))?;
        out.insert(name, Tensor32 { shape, values });
    }
    Ok(out)
}

/// Writes `model` (built for `arch`) to `output` in `format`. Refuses, naming why, a layout that
/// cannot express the model: its padding, BatchNorm epsilon or stage table differ from every
/// model the library defines.
pub fn export(
    model: &EfficientNet,
    arch: &Architecture,
    format: ExportFormat,
    output: &Path,
) -> Result<ExportSummary, ExportError> {
    let write_err = |message: String| ExportError::Write { file: output.to_path_buf(), message };
    let target =
        torch_layouts::check_expressible(format, arch).map_err(|reason| ExportError::Unsupported { format, reason })?;
    let tensors = model_tensors(model).map_err(write_err)?;
    let (bytes, summary) = match format {
        ExportFormat::Onnx => {
            let (bytes, initializers, nodes) = onnx::model_bytes(arch, &tensors).map_err(write_err)?;
            (bytes, ExportSummary { tensors: initializers, nodes, target })
        }
        _ => {
            let entries = torch_layouts::state_dict(format, arch, &tensors).map_err(write_err)?;
            let n = entries.len();
            (
                torch_layouts::safetensors_bytes(&entries).map_err(write_err)?,
                ExportSummary { tensors: n, nodes: 0, target },
            )
        }
    };
    write_atomic(output, &bytes).map_err(write_err)?;
    Ok(summary)
}

/// Writes through a unique temporary file beside `path`, so that a failed export leaves no half
/// file; only a new path or a regular file is replaced (see [`effnet_config::fsio`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    effnet_config::fsio::write_atomic(path, bytes).map_err(|e| e.to_string())
}

//! State dicts of the PyTorch libraries, written as `.safetensors`. The key tables are the
//! loader's ([`crate::weights::key_map`]) read backwards, so import and export cannot disagree.

use super::{ExportFormat, Tensor32};
use crate::weights::{WeightLayout, key_map};
use effnet_config::{Architecture, Convention, Family, Padding, ScaleSpec, TF_BORN, TORCH_BORN, Variant};
use safetensors::{Dtype, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};

/// One tensor of a state dict.
#[derive(Debug, Clone, PartialEq)]
pub enum StateTensor {
    F32 {
        shape: Vec<usize>,
        values: Vec<f32>,
    },
    /// BatchNorm's `num_batches_tracked`: an int64 scalar.
    I64(i64),
}

/// A library whose EfficientNets a state dict can load into.
struct Library {
    /// How the user builds a released variant, `{}` standing for its name there.
    constructor: &'static str,
    /// How the user builds the B0 (or Lite0) table at width W and depth D.
    scaled: &'static str,
    /// Whether it builds EfficientNet-Lite (ReLU6, no SE, fixed stem and head).
    lite: bool,
    /// Whether it builds B8 and L2.
    b8_l2: bool,
    padding: Padding,
}

fn library(format: ExportFormat) -> Option<Library> {
    Some(match format {
        ExportFormat::Timm => Library {
            constructor: "timm.create_model(\"efficientnet_{}\", num_classes=N)",
            scaled: "timm.models.efficientnet._gen_efficientnet(\"efficientnet_{}\", channel_multiplier=W, depth_multiplier=D, num_classes=N)",
            lite: true,
            b8_l2: true,
            padding: Padding::Symmetric,
        },
        ExportFormat::TimmTf => Library {
            constructor: "timm.create_model(\"tf_efficientnet_{}\", num_classes=N)",
            scaled: "timm.models.efficientnet._gen_efficientnet(\"tf_efficientnet_{}\", channel_multiplier=W, depth_multiplier=D, bn_eps=1e-3, pad_type=\"same\", num_classes=N)",
            lite: true,
            b8_l2: true,
            padding: Padding::TfSame,
        },
        ExportFormat::Torchvision => Library {
            constructor: "torchvision.models.efficientnet_{}(num_classes=N)",
            // `last_channel`: torchvision's default, 4 × the last stage's width, is not TF's rounding.
            scaled: "torchvision.models.efficientnet.EfficientNet(_efficientnet_conf(\"efficientnet_{}\", width_mult=W, depth_mult=D)[0], dropout=0.2, last_channel=H, num_classes=N)",
            lite: false,
            b8_l2: false,
            padding: Padding::Symmetric,
        },
        ExportFormat::Lukemelas => Library {
            // Lite: efficientnet_lite_pytorch, the same class and keys.
            constructor: "EfficientNet.from_name(\"efficientnet-{}\", num_classes=N)",
            scaled: "EfficientNet.from_name(\"efficientnet-{}\", width_coefficient=W, depth_coefficient=D, num_classes=N)",
            lite: true,
            b8_l2: true,
            padding: Padding::TfSame,
        },
        ExportFormat::Safetensors | ExportFormat::Onnx => return None,
    })
}

/// The BatchNorm epsilon a library builds `v` (or a scaled table) with.
fn library_eps(format: ExportFormat, v: Option<Variant>) -> f64 {
    match format {
        ExportFormat::Timm => TORCH_BORN.bn_eps,
        ExportFormat::Torchvision => Convention::torchvision(v).bn_eps,
        _ => TF_BORN.bn_eps,
    }
}

/// The key layout of a state-dict format.
pub fn layout(format: ExportFormat) -> Option<WeightLayout> {
    match format {
        ExportFormat::Timm | ExportFormat::TimmTf => Some(WeightLayout::Timm),
        ExportFormat::Torchvision => Some(WeightLayout::Torchvision),
        ExportFormat::Lukemelas => Some(WeightLayout::Lukemelas),
        ExportFormat::Safetensors => Some(WeightLayout::Effnet),
        ExportFormat::Onnx => None,
    }
}

/// Whether two architectures are the same network (stem, stages, head, activation); dropout,
/// resolution and class count aside, that is what a library's constructor fixes.
fn same_network(a: &Architecture, b: &Architecture) -> bool {
    a.stem_channels == b.stem_channels
        && a.head_channels == b.head_channels
        && a.stages == b.stages
        && a.activation == b.activation
}

/// The family whose default block table `arch` is at its own width and depth, and the
/// released variant it is, if any.
fn family_of(arch: &Architecture) -> Option<(Family, Option<Variant>)> {
    if let Some(v) = Variant::ALL.into_iter().find(|&v| same_network(&Architecture::variant(v), arch)) {
        return Some((v.family(), Some(v)));
    }
    [Family::Standard, Family::Lite].into_iter().find_map(|f| {
        let scaled = ScaleSpec::new("scaled", f, arch.width, arch.depth, arch.resolution, arch.dropout).build();
        same_network(&scaled, arch).then_some((f, None))
    })
}

fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::TfSame => "TF-SAME padding",
        Padding::Symmetric => "symmetric (k/2) padding",
    }
}

/// The library model a state dict in `format` loads into, or why the format cannot express
/// `arch` (a reason naming the mismatch and what to use instead).
pub fn check_expressible(format: ExportFormat, arch: &Architecture) -> Result<String, String> {
    let Some(lib) = library(format) else {
        return Ok(match format {
            ExportFormat::Onnx => "ONNX opset 17 (ONNX Runtime and other ONNX consumers)".into(),
            _ => "effnet (--weights FILE)".into(),
        });
    };
    let instead = "export --format safetensors or onnx instead";
    let Some((family, variant)) = family_of(arch) else {
        return Err(format!(
            "this model's block table is neither B0's nor Lite0's at any width and depth, the only ones {format} builds ({instead})"
        ));
    };
    if family == Family::Lite && !lib.lite {
        return Err(format!("{format} defines no EfficientNet-Lite ({instead})"));
    }
    if let Some(v @ (Variant::B8 | Variant::L2)) = variant
        && !lib.b8_l2
    {
        return Err(format!("{format} defines no EfficientNet-{v} ({instead})"));
    }
    let base = if family == Family::Lite { "lite0" } else { "b0" };
    let name = match variant {
        Some(v) => lib.constructor.replace("{}", &v.to_string()).replace("=N", &format!("={}", arch.num_classes)),
        None => lib
            .scaled
            .replace("{}", base)
            .replace("=W", &format!("={}", arch.width))
            .replace("=D", &format!("={}", arch.depth))
            .replace("=H", &format!("={}", arch.head_channels))
            .replace("=N", &format!("={}", arch.num_classes)),
    };
    if arch.padding != lib.padding {
        let other = match arch.padding {
            Padding::TfSame => "timm-tf, lukemelas or onnx",
            Padding::Symmetric => "timm, torchvision or onnx",
        };
        return Err(format!(
            "{format} uses {}, this model {} (its logits would differ; use --format {other})",
            padding_name(lib.padding),
            padding_name(arch.padding)
        ));
    }
    let eps = library_eps(format, variant);
    if (arch.bn_eps - eps).abs() > 1e-9 * eps {
        return Err(format!(
            "{name} uses BatchNorm eps {eps:e}, this model {:e} (its logits would differ)",
            arch.bn_eps
        ));
    }
    if format == ExportFormat::Torchvision && arch.in_channels != 3 {
        return Err(format!("torchvision takes 3 input channels, this model {}", arch.in_channels));
    }
    let blocks = arch.blocks();
    let stage_first_residual =
        blocks.iter().find(|b| b.residual && (b.index == 0 || blocks[b.index - 1].stage != b.stage));
    if let (ExportFormat::Lukemelas, Some(b)) = (format, stage_first_residual) {
        // efficientnet_pytorch keeps a stage's first stride as a list, and `[1] == 1` is false.
        return Err(format!(
            "EfficientNet-PyTorch never adds the residual of a stage's first block, and this model's block {} has one (in = out, stride 1; use --format onnx)",
            b.index
        ));
    }
    Ok(name)
}

/// The state dict of `format` for `arch`: exactly the library's keys, shapes and dtypes,
/// including BatchNorm's `num_batches_tracked` (effnet layout: effnet's own keys).
pub fn state_dict(
    format: ExportFormat,
    arch: &Architecture,
    tensors: &BTreeMap<String, Tensor32>,
) -> Result<Vec<(String, StateTensor)>, String> {
    let layout = layout(format).ok_or("not a state-dict format")?;
    let mut out = Vec::new();
    for (src, dst) in key_map(layout, arch) {
        // The loader's table names BatchNorm's weight/bias as burn-store's PyTorch adapter sees
        // them; the module's own fields are gamma/beta.
        let path = match dst.rsplit_once('.') {
            Some((bn, "weight")) if bn.ends_with(".bn") => format!("{bn}.gamma"),
            Some((bn, "bias")) if bn.ends_with(".bn") => format!("{bn}.beta"),
            _ => dst.clone(),
        };
        let t = tensors.get(&path).ok_or_else(|| format!("the model has no tensor `{path}`"))?;
        let (shape, values) = if dst == "classifier.weight" && layout != WeightLayout::Effnet {
            transpose(t)
        } else {
            (t.shape.clone(), t.values.clone())
        };
        out.push((src.clone(), StateTensor::F32 { shape, values }));
        if layout != WeightLayout::Effnet
            && let Some(bn) = src.strip_suffix(".running_var")
        {
            // Only read by PyTorch when BatchNorm's momentum is None (a cumulative average);
            // a freshly built module holds 0.
            out.push((format!("{bn}.num_batches_tracked"), StateTensor::I64(0)));
        }
    }
    let used = out.iter().filter(|(_, t)| matches!(t, StateTensor::F32 { .. })).count();
    if used != tensors.len() {
        return Err(format!("{} of the model's {} tensors have no {layout} key", tensors.len() - used, tensors.len()));
    }
    Ok(out)
}

/// burn's Linear weight is `[in, out]`; PyTorch's is `[out, in]`.
fn transpose(t: &Tensor32) -> (Vec<usize>, Vec<f32>) {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let mut values = vec![0.0; t.values.len()];
    for r in 0..rows {
        for c in 0..cols {
            values[c * rows + r] = t.values[r * cols + c];
        }
    }
    (vec![cols, rows], values)
}

/// A state dict as `.safetensors` bytes (PyTorch's metadata `format: pt`).
pub fn safetensors_bytes(entries: &[(String, StateTensor)]) -> Result<Vec<u8>, String> {
    let data: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = entries
        .iter()
        .map(|(k, t)| match t {
            StateTensor::F32 { shape, values } => {
                (k.as_str(), Dtype::F32, shape.clone(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
            StateTensor::I64(v) => (k.as_str(), Dtype::I64, Vec::new(), v.to_le_bytes().to_vec()),
        })
        .collect();
    let views = data
        .iter()
        .map(|(k, dtype, shape, bytes)| TensorView::new(*dtype, shape.clone(), bytes).map(|v| (*k, v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

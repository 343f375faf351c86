//! Weight import from the PyTorch world (EfficientNet-PyTorch, timm, torchvision) and effnet's
//! own checkpoints, through burn-store. Pickle code is never executed: burn-store's reader only
//! interprets the tensor-rebuilding opcodes of `.pth` files.

use crate::load_checks::{CastToModel, model_dtype, source_key, value_warnings};
use crate::model::EfficientNet;
use burn::prelude::*;
use burn::store::{
    ApplyError, BurnpackStore, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore, PathFilter,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use effnet_config::{Architecture, Convention, Padding, TF_BORN, TORCH_BORN};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a checkpoint's key names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// effnet's own module paths (`stem.conv.weight`, `blocks.3.se.reduce.bias`, …).
    Effnet,
    /// lukemelas EfficientNet-PyTorch and efficientnet_lite_pytorch: `_conv_stem`, `_blocks.N._expand_conv`, ….
    Lukemelas,
    /// timm `efficientnet_*` / `tf_efficientnet_*`: `conv_stem`, `blocks.S.I.conv_pw`, ….
    Timm,
    /// torchvision: `features.S.I.block.J.K`, `classifier.1`.
    Torchvision,
}

impl fmt::Display for WeightLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightLayout::Effnet => "effnet",
            WeightLayout::Lukemelas => "EfficientNet-PyTorch (lukemelas)",
            WeightLayout::Timm => "timm",
            WeightLayout::Torchvision => "torchvision",
        })
    }
}

impl WeightLayout {
    /// Recognises the layout from the key names.
    pub fn detect<S: AsRef<str>>(keys: &[S]) -> Option<Self> {
        let has = |k: &str| keys.iter().any(|x| x.as_ref() == k);
        if has("_conv_stem.weight") {
            Some(WeightLayout::Lukemelas)
        } else if has("conv_stem.weight") {
            Some(WeightLayout::Timm)
        } else if has("features.0.0.weight") {
            Some(WeightLayout::Torchvision)
        } else if has("stem.conv.weight") {
            Some(WeightLayout::Effnet)
        } else {
            None
        }
    }

    /// Padding and BatchNorm epsilon the weights were trained with. timm's `tf_*` and
    /// `efficientnet_*` checkpoints have identical keys, so for timm the file name decides
    /// (`tf_` anywhere in the path means a TF port); torchvision's B5–B7 are TF ports run with
    /// symmetric padding and eps 1e-3 (effnet-config's `Convention` table).
    pub fn source_defaults(self, path: &Path, arch: &Architecture) -> Option<(Padding, f64)> {
        let c = match self {
            WeightLayout::Effnet => return None,
            WeightLayout::Lukemelas => TF_BORN,
            WeightLayout::Timm if path.to_string_lossy().to_ascii_lowercase().contains("tf_") => TF_BORN,
            WeightLayout::Timm => TORCH_BORN,
            // A released variant's architecture carries its name (`b5`, not `b5-custom`).
            WeightLayout::Torchvision => Convention::torchvision(arch.name.parse().ok()),
        };
        Some((c.padding, c.bn_eps))
    }
}

/// Why weights could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{file}: {message}")]
    Read { file: PathBuf, message: String },
    #[error(
        "{file}: unrecognised key layout (first keys: {first_keys}); expected EfficientNet-PyTorch, timm, torchvision or effnet keys"
    )]
    UnknownLayout { file: PathBuf, first_keys: String },
    #[error("{file} ({layout} layout) does not fit the model:\n{}", problems.join("\n"))]
    Mismatch { file: PathBuf, layout: WeightLayout, problems: Vec<String> },
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub layout: WeightLayout,
    /// Tensors written into the model.
    pub applied: usize,
    /// The checkpoint's classifier had a different number of classes; the model keeps its
    /// freshly initialised classifier.
    pub classifier_reset: Option<(usize, usize)>,
    /// Lines for stderr, `note: …` or `warning: …`: tensors converted to the model's dtype,
    /// NaN/infinite values, negative BatchNorm running variance.
    pub notes: Vec<String>,
}

/// Source key → effnet path for every tensor the architecture has.
pub fn key_map(layout: WeightLayout, arch: &Architecture) -> Vec<(String, String)> {
    let mut map = Vec::new();
    let bn = |map: &mut Vec<(String, String)>, src: &str, dst: &str| {
        for (s, d) in
            [("weight", "gamma"), ("bias", "beta"), ("running_mean", "running_mean"), ("running_var", "running_var")]
        {
            // PyTorchToBurnAdapter renames weight/bias to gamma/beta inside BatchNorm itself.
            let d = if layout == WeightLayout::Effnet { d } else { s };
            map.push((format!("{src}.{s}"), format!("{dst}.{d}")));
        }
    };
    let conv = |map: &mut Vec<(String, String)>, src: &str, dst: &str, bias: bool| {
        map.push((format!("{src}.weight"), format!("{dst}.weight")));
        if bias {
            map.push((format!("{src}.bias"), format!("{dst}.bias")));
        }
    };
    let blocks = arch.blocks();
    match layout {
        WeightLayout::Effnet => {
            conv(&mut map, "stem.conv", "stem.conv", false);
            bn(&mut map, "stem.bn", "stem.bn");
            for b in &blocks {
                let p = format!("blocks.{}", b.index);
                if b.expand {
                    conv(&mut map, &format!("{p}.expand.conv"), &format!("{p}.expand.conv"), false);
                    bn(&mut map, &format!("{p}.expand.bn"), &format!("{p}.expand.bn"));
                }
                conv(&mut map, &format!("{p}.depthwise.conv"), &format!("{p}.depthwise.conv"), false);
                bn(&mut map, &format!("{p}.depthwise.bn"), &format!("{p}.depthwise.bn"));
                if b.se_channels.is_some() {
                    conv(&mut map, &format!("{p}.se.reduce"), &format!("{p}.se.reduce"), true);
                    conv(&mut map, &format!("{p}.se.expand"), &format!("{p}.se.expand"), true);
                }
                conv(&mut map, &format!("{p}.project.conv"), &format!("{p}.project.conv"), false);
                bn(&mut map, &format!("{p}.project.bn"), &format!("{p}.project.bn"));
            }
            conv(&mut map, "head.conv", "head.conv", false);
            bn(&mut map, "head.bn", "head.bn");
            conv(&mut map, "classifier", "classifier", true);
        }
        WeightLayout::Lukemelas => {
            conv(&mut map, "_conv_stem", "stem.conv", false);
            bn(&mut map, "_bn0", "stem.bn");
            for b in &blocks {
                let (s, d) = (format!("_blocks.{}", b.index), format!("blocks.{}", b.index));
                if b.expand {
                    conv(&mut map, &format!("{s}._expand_conv"), &format!("{d}.expand.conv"), false);
                    bn(&mut map, &format!("{s}._bn0"), &format!("{d}.expand.bn"));
                }
                conv(&mut map, &format!("{s}._depthwise_conv"), &format!("{d}.depthwise.conv"), false);
                bn(&mut map, &format!("{s}._bn1"), &format!("{d}.depthwise.bn"));
                if b.se_channels.is_some() {
                    conv(&mut map, &format!("{s}._se_reduce"), &format!("{d}.se.reduce"), true);
                    conv(&mut map, &format!("{s}._se_expand"), &format!("{d}.se.expand"), true);
                }
                conv(&mut map, &format!("{s}._project_conv"), &format!("{d}.project.conv"), false);
                bn(&mut map, &format!("{s}._bn2"), &format!("{d}.project.bn"));
            }
            conv(&mut map, "_conv_head", "head.conv", false);
            bn(&mut map, "_bn1", "head.bn");
            conv(&mut map, "_fc", "classifier", true);
        }
        WeightLayout::Timm => {
            conv(&mut map, "conv_stem", "stem.conv", false);
            bn(&mut map, "bn1", "stem.bn");
            let mut within = 0;
            for (i, b) in blocks.iter().enumerate() {
                within = if i > 0 && blocks[i - 1].stage == b.stage { within + 1 } else { 0 };
                let (s, d) = (format!("blocks.{}.{within}", b.stage), format!("blocks.{}", b.index));
                if b.expand {
                    // InvertedResidual: conv_pw is the expansion, conv_pwl the projection.
                    conv(&mut map, &format!("{s}.conv_pw"), &format!("{d}.expand.conv"), false);
                    bn(&mut map, &format!("{s}.bn1"), &format!("{d}.expand.bn"));
                    conv(&mut map, &format!("{s}.conv_dw"), &format!("{d}.depthwise.conv"), false);
                    bn(&mut map, &format!("{s}.bn2"), &format!("{d}.depthwise.bn"));
                    conv(&mut map, &format!("{s}.conv_pwl"), &format!("{d}.project.conv"), false);
                    bn(&mut map, &format!("{s}.bn3"), &format!("{d}.project.bn"));
                } else {
                    // DepthwiseSeparable (expand ratio 1): conv_pw is the projection.
                    conv(&mut map, &format!("{s}.conv_dw"), &format!("{d}.depthwise.conv"), false);
                    bn(&mut map, &format!("{s}.bn1"), &format!("{d}.depthwise.bn"));
                    conv(&mut map, &format!("{s}.conv_pw"), &format!("{d}.project.conv"), false);
                    bn(&mut map, &format!("{s}.bn2"), &format!("{d}.project.bn"));
                }
                if b.se_channels.is_some() {
                    conv(&mut map, &format!("{s}.se.conv_reduce"), &format!("{d}.se.reduce"), true);
                    conv(&mut map, &format!("{s}.se.conv_expand"), &format!("{d}.se.expand"), true);
                }
            }
            conv(&mut map, "conv_head", "head.conv", false);
            bn(&mut map, "bn2", "head.bn");
            conv(&mut map, "classifier", "classifier", true);
        }
        WeightLayout::Torchvision => {
            conv(&mut map, "features.0.0", "stem.conv", false);
            bn(&mut map, "features.0.1", "stem.bn");
            let mut within = 0;
            for (i, b) in blocks.iter().enumerate() {
                within = if i > 0 && blocks[i - 1].stage == b.stage { within + 1 } else { 0 };
                let (s, d) = (format!("features.{}.{within}.block", b.stage + 1), format!("blocks.{}", b.index));
                let mut j = 0;
                if b.expand {
                    conv(&mut map, &format!("{s}.0.0"), &format!("{d}.expand.conv"), false);
                    bn(&mut map, &format!("{s}.0.1"), &format!("{d}.expand.bn"));
                    j += 1;
                }
                conv(&mut map, &format!("{s}.{j}.0"), &format!("{d}.depthwise.conv"), false);
                bn(&mut map, &format!("{s}.{j}.1"), &format!("{d}.depthwise.bn"));
                j += 1;
                if b.se_channels.is_some() {
                    conv(&mut map, &format!("{s}.{j}.fc1"), &format!("{d}.se.reduce"), true);
                    conv(&mut map, &format!("{s}.{j}.fc2"), &format!("{d}.se.expand"), true);
                    j += 1;
                }
                conv(&mut map, &format!("{s}.{j}.0"), &format!("{d}.project.conv"), false);
                bn(&mut map, &format!("{s}.{j}.1"), &format!("{d}.project.bn"));
            }
            let head = arch.stages.len() + 1;
            conv(&mut map, &format!("features.{head}.0"), "head.conv", false);
            bn(&mut map, &format!("features.{head}.1"), "head.bn");
            conv(&mut map, "classifier.1", "classifier", true);
        }
    }
    map
}

/// Tensor shapes stored in a checkpoint, by key.
fn file_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, WeightsError> {
    let err = |message: String| WeightsError::Read { file: path.to_path_buf(), message };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    let shapes = |tensors: &BTreeMap<String, burn::store::burn_pack::Tensor>| {
        tensors.iter().map(|(k, t)| (k.clone(), t.shape.to_vec())).collect()
    };
    match Format::of(path) {
        Format::Pytorch => PytorchStore::from_file(path).get_all_tensors().map(shapes).map_err(|e| err(e.to_string())),
        Format::Safetensors => {
            SafetensorsStore::from_file(path).get_all_tensors().map(shapes).map_err(|e| err(e.to_string()))
        }
        Format::Burnpack => Ok(BTreeMap::new()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pytorch,
    Safetensors,
    Burnpack,
}

impl Format {
    fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("safetensors") => Format::Safetensors,
            Some("bpk") | Some("burnpack") => Format::Burnpack,
            _ => Format::Pytorch,
        }
    }
}

/// Reads a checkpoint's tensor table once and recognises its layout.
fn read_layout(path: &Path) -> Result<(WeightLayout, BTreeMap<String, Vec<usize>>), WeightsError> {
    let shapes = file_shapes(path)?;
    let keys: Vec<&String> = shapes.keys().collect();
    let layout = WeightLayout::detect(&keys).ok_or_else(|| WeightsError::UnknownLayout {
        file: path.to_path_buf(),
        first_keys: keys.iter().take(4).map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    Ok((layout, shapes))
}

/// Number of classes of the classifier in a tensor table of `layout`.
fn classifier_classes(layout: WeightLayout, shapes: &BTreeMap<String, Vec<usize>>) -> Option<usize> {
    match layout {
        // burn's Linear weight is [in, out]; PyTorch's is [out, in].
        WeightLayout::Effnet => shapes.get("classifier.weight").map(|s| s[1]),
        WeightLayout::Lukemelas => shapes.get("_fc.weight").map(|s| s[0]),
        WeightLayout::Timm => shapes.get("classifier.weight").map(|s| s[0]),
        WeightLayout::Torchvision => shapes.get("classifier.1.weight").map(|s| s[0]),
    }
}

/// What a checkpoint is, read without loading its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub layout: WeightLayout,
    /// Classes of its classifier (`None` for `.bpk`, whose table is not inspected).
    pub num_classes: Option<usize>,
}

/// Inspects a checkpoint: its key layout and its classifier's number of classes.
pub fn inspect(path: &Path) -> Result<CheckpointInfo, WeightsError> {
    if Format::of(path) == Format::Burnpack {
        return Ok(CheckpointInfo { layout: WeightLayout::Effnet, num_classes: None });
    }
    let (layout, shapes) = read_layout(path)?;
    Ok(CheckpointInfo { layout, num_classes: classifier_classes(layout, &shapes) })
}

/// Detects a checkpoint's layout without loading it.
pub fn detect_layout(path: &Path) -> Result<WeightLayout, WeightsError> {
    inspect(path).map(|i| i.layout)
}

fn escape(key: &str) -> String {
    // Keys hold letters, digits, '_' and '.'; only '.' is special in a regex.
    format!("^{}$", key.replace('.', r"\."))
}

impl EfficientNet {
    /// Loads `.pth`, `.safetensors` (PyTorch or effnet layout) or `.bpk` (effnet) weights into a
    /// model built for `arch`, detecting the layout from the keys. BatchNorm running statistics
    /// are loaded, `num_batches_tracked` is ignored, Linear weights are transposed. If the
    /// checkpoint's classifier has another number of classes, the backbone is loaded and the
    /// model's classifier keeps its fresh initialisation (see [`LoadReport::classifier_reset`]).
    pub fn load_weights(&mut self, path: &Path, arch: &Architecture) -> Result<LoadReport, WeightsError> {
        let file = path.to_path_buf();
        let read_err = |e: &dyn fmt::Display| WeightsError::Read { file: file.clone(), message: e.to_string() };
        let cast = CastToModel::new(model_dtype(self));
        if Format::of(path) == Format::Burnpack {
            // Read whole first: burn-store reads tensors lazily by path, and a checkpoint removed
            // meanwhile (a training run pruning old epochs) must be an error, not a backend panic.
            effnet_config::fsio::check_regular(path).map_err(|e| read_err(&e))?;
            let bytes = std::fs::read(path).map_err(|e| read_err(&e))?;
            let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(bytes)))
                .with_from_adapter(cast.clone());
            let r = self.load_from(&mut store).map_err(|e| read_err(&e))?;
            let mut report = finish(path, WeightLayout::Effnet, r, &[], None)?;
            report.notes.extend(cast.note(path).into_iter().chain(value_warnings(self, path, &|p| p.into())));
            return Ok(report);
        }
        let (layout, shapes) = read_layout(path)?;
        let map = key_map(layout, arch);
        let file_classes = classifier_classes(layout, &shapes);
        let classifier_reset = file_classes.filter(|&n| n != self.num_classes()).map(|n| (n, self.num_classes()));
        let mut remapper = KeyRemapper::new();
        for (src, dst) in &map {
            if src != dst {
                remapper = remapper.add_pattern(escape(src), dst.as_str()).map_err(|e| read_err(&e))?;
            }
        }
        let keep_classifier = classifier_reset.is_none();
        let result = match Format::of(path) {
            Format::Safetensors => {
                let mut store = SafetensorsStore::from_file(path)
                    .remap(remapper)
                    .allow_partial(true)
                    .validate(false)
                    .map_indices_contiguous(false);
                store = if layout != WeightLayout::Effnet {
                    store.with_from_adapter(PyTorchToBurnAdapter.chain(cast.clone()))
                } else {
                    store.with_from_adapter(cast.clone())
                };
                if !keep_classifier {
                    store = store.with_predicate(|p, _| !p.starts_with("classifier."));
                }
                self.load_from(&mut store).map_err(|e| read_err(&e))?
            }
            _ => {
                // PytorchStore applies its fixed PyTorch adapter with no hook for a dtype cast,
                // so its (remapped) tensors are applied here with both.
                let mut store = PytorchStore::from_file(path).remap(remapper).map_indices_contiguous(false);
                let tensors: Vec<_> = store.get_all_tensors().map_err(|e| read_err(&e))?.values().cloned().collect();
                let filter =
                    (!keep_classifier).then(|| PathFilter::new().with_predicate(|p, _| !p.starts_with("classifier.")));
                self.apply(tensors, filter, Some(Box::new(PyTorchToBurnAdapter.chain(cast.clone()))), true)
            }
        };
        let mut report = finish(path, layout, result, &map, classifier_reset)?;
        report.classifier_reset = classifier_reset;
        report.notes.extend(cast.note(path));
        report.notes.extend(value_warnings(self, path, &|dst| source_key(&map, dst)));
        Ok(report)
    }

    /// Saves effnet's own checkpoint: `.bpk` (burnpack) or `.safetensors` (effnet layout).
    pub fn save_weights(&self, path: &Path) -> Result<(), WeightsError> {
        let err = |e: &dyn fmt::Display| WeightsError::Read { file: path.to_path_buf(), message: e.to_string() };
        match Format::of(path) {
            Format::Burnpack => {
                self.save_into(&mut BurnpackStore::from_file(path).overwrite(true)).map_err(|e| err(&e))
            }
            Format::Safetensors => {
                self.save_into(&mut SafetensorsStore::from_file(path).overwrite(true)).map_err(|e| err(&e))
            }
            Format::Pytorch => Err(err(&"effnet writes .bpk or .safetensors checkpoints")),
        }
    }
}

fn finish(
    path: &Path,
    layout: WeightLayout,
    r: burn::store::ApplyResult,
    map: &[(String, String)],
    classifier_reset: Option<(usize, usize)>,
) -> Result<LoadReport, WeightsError> {
    let source_of = |dst: &str| map.iter().find(|(_, d)| d == dst).map_or(dst.to_string(), |(s, _)| s.clone());
    let mut problems: Vec<String> = r
        .errors
        .iter()
        .take(10)
        .map(|e| match e {
            ApplyError::ShapeMismatch { path, expected, found } => {
                format!(
                    "  `{}` has shape {:?}; the model's `{path}` needs {:?}",
                    source_of(path),
                    found.to_vec(),
                    expected.to_vec()
                )
            }
            other => format!("  {other}"),
        })
        .collect();
    if r.errors.len() > 10 {
        problems.push(format!("  … and {} more tensors of the wrong shape", r.errors.len() - 10));
    }
    let missing: Vec<String> = r
        .missing
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| !(classifier_reset.is_some() && p.starts_with("classifier.")))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("  missing from the file ({}): {}", missing.len(), preview(&missing)));
    }
    let unexpected: Vec<String> = r
        .unused
        .iter()
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .filter(|k| !(classifier_reset.is_some() && k.starts_with("classifier")))
        .cloned()
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!("  not used by the model ({}): {}", unexpected.len(), preview(&unexpected)));
    }
    if !problems.is_empty() {
        return Err(WeightsError::Mismatch { file: path.to_path_buf(), layout, problems });
    }
    Ok(LoadReport { layout, applied: r.applied.len(), classifier_reset, notes: Vec::new() })
}

fn preview(keys: &[String]) -> String {
    let mut s = keys.iter().take(8).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    if keys.len() > 8 {
        s.push_str(&format!(", … ({} more)", keys.len() - 8));
    }
    s
}

/// Convenience: builds `arch` on `device` and loads `path` into it.
pub fn load_model(
    arch: &Architecture,
    path: &Path,
    device: &Device,
) -> Result<(EfficientNet, LoadReport), WeightsError> {
    let mut model = EfficientNet::new(arch, device);
    let report = model.load_weights(path, arch)?;
    Ok((model, report))
}

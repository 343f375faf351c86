//! What a weight load does besides copying: it converts floating tensors of another precision
//! to the model's dtype (f16/bf16/f64 checkpoints, as PyTorch's `load_state_dict` copies into
//! the parameter's dtype), and it looks at the loaded values for what makes every output NaN.

use crate::model::EfficientNet;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{FloatCastAdapter, ModuleAdapter, ModuleContext, ModuleSnapshot};
use burn::tensor::DType;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Casts every floating tensor to `target` on load and counts what it converted, by source dtype.
/// burn-store keeps a source's dtype otherwise, and an f16 parameter in an f32 model fails in
/// the kernels.
#[derive(Clone)]
pub(crate) struct CastToModel {
    cast: FloatCastAdapter,
    target: DType,
    converted: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl CastToModel {
    pub(crate) fn new(target: DType) -> Self {
        Self { cast: FloatCastAdapter::to(target), target, converted: Arc::default() }
    }

    /// One line saying what was converted, if anything was.
    pub(crate) fn note(&self, file: &std::path::Path) -> Option<String> {
        let converted = self.converted.lock().unwrap();
        if converted.is_empty() {
            return None;
        }
        let from: Vec<String> = converted.iter().map(|(d, n)| format!("{n} {d}")).collect();
        Some(format!(
            "note: {}: converted {} tensors to the model's {} on load",
            file.display(),
            from.join(" and "),
            dtype_name(self.target)
        ))
    }
}

impl ModuleAdapter for CastToModel {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        if tensor.dtype.is_float() && tensor.dtype != self.target {
            *self.converted.lock().unwrap().entry(dtype_name(tensor.dtype)).or_default() += 1;
        }
        self.cast.adapt(tensor, ctx)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// `f16`, `bf16`, `f32`, `f64` (PyTorch's spelling of the dtypes users know).
fn dtype_name(d: DType) -> String {
    format!("{d:?}").to_ascii_lowercase()
}

/// The model's floating dtype: what its parameters were created with on its device.
pub(crate) fn model_dtype(model: &EfficientNet) -> DType {
    model.stem.conv.weight.val().dtype()
}

/// Warnings about loaded values that make the outputs meaningless: NaN or infinite values in
/// any tensor, and negative BatchNorm running variance (its `sqrt(var + eps)` is NaN). Tensors
/// are named by `source_of` (the checkpoint's own key for a model path).
pub(crate) fn value_warnings(
    model: &EfficientNet,
    file: &std::path::Path,
    source_of: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut non_finite = Vec::new();
    let mut negative_var = Vec::new();
    for t in model.collect(None, None, false) {
        if !t.dtype.is_float() {
            continue;
        }
        let Ok(data) = burn::store::bridge::to_data(&t) else { continue };
        let Ok(values) = data.try_into_vec_as::<f32>() else { continue };
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            non_finite.push(format!("`{}` ({bad} of {})", source_of(&t.name), values.len()));
        }
        if t.name.ends_with("running_var") {
            let min = values.iter().copied().filter(|v| v.is_finite()).fold(f32::INFINITY, f32::min);
            if min < 0.0 {
                negative_var.push(format!("`{}` (min {min})", source_of(&t.name)));
            }
        }
    }
    let mut out = Vec::new();
    if !non_finite.is_empty() {
        out.push(format!(
            "warning: {}: NaN or infinite values in {} tensors: {}; the model's outputs will not be finite",
            file.display(),
            non_finite.len(),
            list(&non_finite)
        ));
    }
    if !negative_var.is_empty() {
        out.push(format!(
            "warning: {}: negative BatchNorm running variance in {} tensors: {}; those layers output NaN",
            file.display(),
            negative_var.len(),
            list(&negative_var)
        ));
    }
    out
}

/// The checkpoint key that was loaded into model path `dst` (`map`: source → model path).
/// BatchNorm's `gamma`/`beta` are `weight`/`bias` in the map: the PyTorch adapter renames them.
pub(crate) fn source_key(map: &[(String, String)], dst: &str) -> String {
    let find = |k: &str| map.iter().find(|(_, d)| d == k).map(|(s, _)| s.clone());
    let alt = dst.strip_suffix(".gamma").map(|p| format!("{p}.weight"));
    let alt = alt.or_else(|| dst.strip_suffix(".beta").map(|p| format!("{p}.bias")));
    find(dst).or_else(|| alt.as_deref().and_then(find)).unwrap_or_else(|| dst.to_string())
}

fn list(items: &[String]) -> String {
    let mut s = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 5 {
        s.push_str(&format!(", … ({} more)", items.len() - 5));
    }
    s
}

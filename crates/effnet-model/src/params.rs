//! Parameter counting as PyTorch does it.

use burn::module::Module;
use burn::store::ModuleSnapshot;

/// Whether a tensor path is a BatchNorm running statistic (a buffer, not a parameter).
pub fn is_running_stat(path: &str) -> bool {
    path.ends_with("running_mean") || path.ends_with("running_var")
}

/// Trainable parameters: every float tensor except BatchNorm running statistics, i.e. what
/// `sum(p.numel() for p in model.parameters())` gives in PyTorch. burn's `num_params()` also
/// counts the running statistics.
pub fn trainable_params<M: Module + ModuleSnapshot>(module: &M) -> usize {
    module.collect(None, None, false).iter().filter(|t| !is_running_stat(&t.name)).map(|t| t.shape.num_elements()).sum()
}

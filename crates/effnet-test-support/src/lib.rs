//! Pieces shared by the training tests of effnet-train and effnet-cli (a dev-dependency of
//! both, imported as `common`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The embedded digits dataset (`datasets/digits`, CIFAR-100 binary layout).
pub fn digits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits")
}

/// The `[model]` and `[data]` sections of the tiny deterministic run: a narrow model at 16 px on
/// the embedded digits, no dropout or drop-connect, one loader thread.
pub fn tiny_model_and_data() -> String {
    tiny_model_and_data_on(&digits())
}

/// [`tiny_model_and_data`] on another dataset in the digits' layout (a subset of it, say).
pub fn tiny_model_and_data_on(data: &Path) -> String {
    format!(
        r#"
[model]
variant = "custom"
width = 0.25
depth = 0.25
resolution = 16
num_classes = 10
dropout = 0.0
drop_connect_rate = 0.0
bn_momentum = 0.9
[data]
dataset = "cifar100"
path = {:?}
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
crop_fraction = 1.0
num_workers = 0
[data.augment]
scale = [0.7, 1.0]
hflip = 0.0
"#,
        data.display().to_string()
    )
}

/// The `[schedule]` section of the tiny run: exponential decay by 0.9 every epoch, no warm-up.
pub const TINY_SCHEDULE: &str = r#"[schedule]
name = "exponential-step"
warmup_epochs = 0.0
decay_epochs = 1.0
decay_rate = 0.9
"#;

/// The `[optim]` and `[schedule]` sections of the tiny run: TF RMSProp at the paper's rate,
/// then [`TINY_SCHEDULE`].
pub fn tiny_optim_and_schedule() -> String {
    format!("[optim]\nname = \"rmsprop-tf\"\nlr = 0.016\nlr_batch_size = 128\n{TINY_SCHEDULE}")
}

/// flex has one process-wide RNG (model init, dropout masks): tests that train take turns, or
/// a concurrent test's draws land between a seed and the draws it fixes.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

//! `--resume` only with the config the run started with: the keys that may change, and the
//! comparison with the run's `config.toml`.

use crate::trainer::TrainError;
use effnet_config::EffnetConfig;
use std::collections::BTreeMap;
use std::path::Path;

/// Config keys that may differ from the run's `config.toml` on `--resume` (a key or a whole
/// section). They change how the run proceeds, not what its checkpoints hold: the length of
/// the run, logging, the data loader's threads, where the dataset lives, whether corrupt images
/// are skipped, the LR and gradient clipping (what the NaN guard tells the user to change),
/// the weights a fresh run would start from, and `[runtime]` (backend, devices, run_dir,
/// stall timeout). Everything else (model, data layout and augmentation, batch size, seed,
/// optimizer, schedule, EMA, ...) would resume checkpoints into a different run.
pub const RESUME_SAFE_KEYS: &[&str] = &[
    "train.epochs",
    "train.log_every",
    "train.grad_clip_norm",
    "train.init_weights",
    "optim.lr",
    "data.path",
    "data.num_workers",
    "data.skip_corrupt",
    "runtime",
];

/// One key whose value differs between two configs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigChange {
    /// Dotted key, e.g. `model.width`.
    pub key: String,
    /// The value in the run's `config.toml` (`unset` when absent).
    pub stored: String,
    /// The value now.
    pub new: String,
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} → {}", self.key, self.stored, self.new)
    }
}

/// Whether `key` may change on `--resume` ([`RESUME_SAFE_KEYS`]).
pub fn is_safe_on_resume(key: &str) -> bool {
    RESUME_SAFE_KEYS.iter().any(|k| key == *k || key.strip_prefix(k).is_some_and(|rest| rest.starts_with('.')))
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn flat(cfg: &EffnetConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten("", &toml::Value::try_from(cfg).expect("a config serialises to TOML"), &mut out);
    out
}

/// The keys whose resolved values differ between `stored` and `new`, in key order.
pub fn config_changes(stored: &EffnetConfig, new: &EffnetConfig) -> Vec<ConfigChange> {
    let (a, b) = (flat(stored), flat(new));
    let unset = || "unset".to_string();
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| ConfigChange {
            key: k.clone(),
            stored: a.get(k).cloned().unwrap_or_else(unset),
            new: b.get(k).cloned().unwrap_or_else(unset),
        })
        .collect()
}

/// Refuses a resumed config that differs from the run's `config.toml` in a key outside
/// [`RESUME_SAFE_KEYS`]; returns the safe changes, for the caller to note once the run goes on.
pub(super) fn check_resume_config(run_dir: &Path, cfg: &EffnetConfig) -> Result<Vec<ConfigChange>, TrainError> {
    let file = run_dir.join("config.toml");
    if !file.is_file() {
        eprintln!("warning: {}: missing; --resume cannot check that the config is the run's", file.display());
        return Ok(vec![]);
    }
    let stored = EffnetConfig::load(&file)
        .map_err(|e| TrainError::Run(format!("{e} (the run's config, which --resume compares with)")))?;
    let (safe, unsafe_): (Vec<ConfigChange>, Vec<ConfigChange>) =
        config_changes(&stored, cfg).into_iter().partition(|c| is_safe_on_resume(&c.key));
    if !unsafe_.is_empty() {
        let list: Vec<String> = unsafe_.iter().map(ToString::to_string).collect();
        return Err(TrainError::Run(format!(
            "{}: --resume with a different config: {}; only {} may change on resume (train a changed config in a new --run-dir)",
            file.display(),
            list.join(", "),
            RESUME_SAFE_KEYS.join(", ")
        )));
    }
    Ok(safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_keys_match_whole_keys_and_sections() {
        assert!(is_safe_on_resume("train.epochs"));
        assert!(is_safe_on_resume("runtime.devices"));
        assert!(!is_safe_on_resume("train.epochs_extra"));
        assert!(!is_safe_on_resume("runtimes.x"));
        assert!(!is_safe_on_resume("model.width"));
        assert!(!is_safe_on_resume("train.batch_size"));
    }

    #[test]
    fn config_changes_name_each_differing_key() {
        let a = EffnetConfig::from_toml_str("[model]\nvariant = \"b0\"\n", Path::new("a.toml")).unwrap();
        let b = EffnetConfig::from_toml_str(
            "[model]\nvariant = \"b0\"\nwidth = 0.5\n[train]\nepochs = 7\n",
            Path::new("b.toml"),
        )
        .unwrap();
        let c = config_changes(&a, &b);
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["model.width", "train.epochs"]);
        assert_eq!(c[0].stored, "unset");
        assert_eq!(c[0].new, "0.5");
        assert!(config_changes(&a, &a).is_empty());
    }
}

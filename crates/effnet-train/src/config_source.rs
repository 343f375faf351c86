//! A run's `config.toml` begins with a comment naming the config file it was resolved from, so
//! that `eval --run DIR` resolves the config's relative paths (`data.path`) against the same
//! folder as training did, wherever the run directory lies. Parsers ignore the comment, so the
//! file stays a plain config.

use crate::trainer::{ConfigSource, TrainError};
use effnet_config::EffnetConfig;
use std::path::{Path, PathBuf};

const PREFIX: &str = "# source = ";

/// The comment lines for a run resolved from `file`.
pub fn header(file: &Path) -> String {
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    // A TOML string, so that any path (quotes, backslashes) reads back exactly.
    let quoted = toml::Value::String(abs.to_string_lossy().into_owned()).to_string();
    format!(
        "# Resolved by `effnet train` (every default written out). Relative paths are relative to the\n\
         # folder of the config file it was resolved from:\n{PREFIX}{quoted}\n\n"
    )
}

/// The source config named by [`header`] in a run's `config.toml` text.
pub fn source_of(text: &str) -> Option<PathBuf> {
    let line = text.lines().take_while(|l| l.starts_with('#')).find_map(|l| l.strip_prefix(PREFIX))?;
    let value: toml::Table = toml::from_str(&format!("s = {line}")).ok()?;
    value.get("s")?.as_str().map(PathBuf::from)
}

/// Loads a run's `config.toml`; relative paths resolve against its source config's folder
/// (against the run directory when the file names none).
pub fn load_run_config(path: &Path) -> Result<ConfigSource, TrainError> {
    let config = EffnetConfig::load(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::Run(format!("{}: {e}", path.display())))?;
    Ok(ConfigSource { file: source_of(&text).unwrap_or_else(|| path.to_path_buf()), config })
}

//! Config errors: each names the file, the key and the bad value.

use std::path::PathBuf;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{file}:{line}:{column}: {}{message}", key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Parse { file: PathBuf, line: usize, column: usize, key: Option<String>, message: String },
    /// A value outside its allowed range or set.
    #[error("{file}: key `{key}`: invalid value {value}: {reason}")]
    Invalid { file: PathBuf, key: String, value: String, reason: String },
}

impl ConfigError {
    /// The key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Parse { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// A value that failed validation, before the file name is known.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self { key: key.to_string(), value: value.to_string(), reason: reason.into() }
    }

    /// Attaches the file name.
    pub fn in_file(self, file: impl Into<PathBuf>) -> ConfigError {
        ConfigError::Invalid { file: file.into(), key: self.key, value: self.value, reason: self.reason }
    }
}

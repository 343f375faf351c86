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

/// The most characters of a bad value an error echoes.
pub const MAX_VALUE_CHARS: usize = 200;

/// `s` cut to `max` characters, saying how long it was.
pub(crate) fn cut(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} characters)", &s[..i], s.chars().count()),
        None => s,
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
    /// A value longer than [`MAX_VALUE_CHARS`] characters (a reason longer than 1000) is cut (a 10 MB string would otherwise
    /// be echoed as one line).
    pub fn new(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        // The reason may quote the value too.
        Self { key: key.to_string(), value: cut(value.to_string(), MAX_VALUE_CHARS), reason: cut(reason.into(), 1000) }
    }

    /// Attaches the file name.
    pub fn in_file(self, file: impl Into<PathBuf>) -> ConfigError {
        ConfigError::Invalid { file: file.into(), key: self.key, value: self.value, reason: self.reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut() {
        let e = Invalid::new("data.path", "x".repeat(10_000_000), "bad");
        assert!(e.value.len() < 300 && e.value.ends_with("(10000000 characters)"), "{}", e.value.len());
        assert_eq!(Invalid::new("k", "short", "r").value, "short");
    }
}

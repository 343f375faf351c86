//! Errors of the data pipeline. Every message starts with the file (or folder) it is about.

use std::path::{Path, PathBuf};

/// Why a dataset could not be opened or an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (part of the message rather than a `source`, which error chains would
        /// print a second time).
        error: std::io::Error,
    },
    /// A file or folder the format needs is absent.
    #[error("{}: missing ({what})", path.display())]
    Missing {
        /// The expected path.
        path: PathBuf,
        /// What it should hold.
        what: String,
    },
    /// The file exists but does not have the expected layout.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key/record and value where relevant.
        message: String,
    },
    /// A label is outside `0..classes`.
    #[error("{}: {what}: label {label} out of range for {classes} classes", path.display())]
    LabelOutOfRange {
        /// The file holding the label.
        path: PathBuf,
        /// Which record or key.
        what: String,
        /// The label read.
        label: i64,
        /// The number of classes.
        classes: usize,
    },
    /// An image could not be decoded.
    #[error("{}: cannot decode image: {message}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A class folder of an image-folder dataset holds no images.
    #[error("{}: class folder has no images (.jpg, .jpeg, .png)", path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },
    /// A config value does not apply to the dataset.
    #[error("{}: key `{key}`: {message}", path.display())]
    Config {
        /// The dataset root.
        path: PathBuf,
        /// The `[data]` key.
        key: String,
        /// Why.
        message: String,
    },
}

impl DataError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), error }
    }

    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        Self::Format { path: path.to_path_buf(), message: message.into() }
    }

    pub(crate) fn missing(path: &Path, what: impl Into<String>) -> Self {
        Self::Missing { path: path.to_path_buf(), what: what.into() }
    }
}

/// Checks that `path` is a directory: missing, or "not a directory" when it is a file.
pub(crate) fn require_dir(path: &Path, what: &str) -> Result<(), DataError> {
    if path.is_dir() {
        Ok(())
    } else if path.exists() {
        Err(DataError::format(path, format!("not a directory (expected {what})")))
    } else {
        Err(DataError::missing(path, what))
    }
}

/// Reads a whole file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    if !path.exists() {
        return Err(DataError::missing(path, "file not found"));
    }
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

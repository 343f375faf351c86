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

/// The largest dataset file read whole (a CIFAR-100 `train.bin` is 154 MB).
pub const MAX_DATA_FILE: u64 = 2 << 30;

/// The largest image file decoded (a 100-megapixel PNG is far smaller).
pub const MAX_IMAGE_FILE: u64 = 256 << 20;

/// Reads a whole dataset file of at most [`MAX_DATA_FILE`] bytes, naming it on failure; a FIFO,
/// a device or a socket is refused before it is opened.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    read_file_capped(path, MAX_DATA_FILE)
}

/// [`read_file`] with another size cap.
pub(crate) fn read_file_capped(path: &Path, cap: u64) -> Result<Vec<u8>, DataError> {
    if !path.exists() {
        return Err(DataError::missing(path, "file not found"));
    }
    effnet_config::fsio::read_capped(path, cap).map_err(|e| DataError::io(path, e))
}

/// Reads an image file: a regular file of at most [`MAX_IMAGE_FILE`] bytes whose first bytes
/// are a PNG or JPEG signature, checked before the whole file is read.
pub fn read_image_file(path: &Path) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    if !path.exists() {
        return Err(DataError::missing(path, "file not found"));
    }
    let mut head = Vec::with_capacity(16);
    effnet_config::fsio::open_regular(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| DataError::io(path, e))?;
    match image::guess_format(&head) {
        Ok(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        _ => {
            return Err(DataError::Decode {
                path: path.to_path_buf(),
                message: "not a PNG or JPEG file (its first bytes are no PNG or JPEG signature)".into(),
            });
        }
    }
    read_file_capped(path, MAX_IMAGE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("effnet-data-error-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn images_are_checked_before_they_are_read_whole() {
        let d = dir("images");
        // A 10 GB sparse file: neither is read.
        let fake = d.join("fake.png");
        std::fs::File::create(&fake).unwrap().set_len(10 << 30).unwrap();
        let e = read_image_file(&fake).unwrap_err().to_string();
        assert!(e.contains("not a PNG or JPEG"), "{e}");
        let big = d.join("big.png");
        std::fs::write(&big, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
        std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(10 << 30).unwrap();
        let e = read_image_file(&big).unwrap_err().to_string();
        assert!(e.contains("more than the 256 MB"), "{e}");
        let e = read_image_file(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn cifar_binary_sizes_are_checked_before_reading() {
        let d = dir("cifar");
        let bin = d.join("cifar-100-binary");
        std::fs::create_dir_all(&bin).unwrap();
        // Sparse, 2 records and a byte: refused by its size alone.
        std::fs::File::create(bin.join("train.bin")).unwrap().set_len(2 * 3073 + 1).unwrap();
        let e = crate::data::open_cifar_binary(&d, effnet_config::LabelKind::Fine).unwrap_err().to_string();
        assert!(e.contains("train.bin") && e.contains("6147 bytes"), "{e}");
        // /dev/zero in its place is refused, not read until memory runs out.
        std::fs::remove_file(bin.join("train.bin")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", bin.join("train.bin")).unwrap();
        let e = crate::data::open_cifar_binary(&d, effnet_config::LabelKind::Fine).unwrap_err().to_string();
        assert!(e.contains("train.bin") && e.contains("character device"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

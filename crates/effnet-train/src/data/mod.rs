//! Datasets, augmentation and data loaders.
//!
//! [`open_dataset`] reads a dataset in its official on-disk format (CIFAR-100 binary or python,
//! Flowers-102, or an image folder) into named [`Split`]s of decoded [`ImageItem`]s;
//! a [`LoaderSpec`] turns a split into burn data loaders of [`ClassificationBatch`]es;
//! [`preprocess`] is the evaluation transform (also `predict`'s). Augmentation is a pure function of (seed, epoch, sample index), so
//! a run is reproducible whatever the worker interleaving.

mod augment;
mod batcher;
mod cifar;
mod error;
mod flowers;
mod folder;
mod loader;
mod mix;
pub mod pickle;
pub mod preprocess;
mod randaugment;

pub use augment::{RandomResizedCrop, TrainTransform, sample_rng};
pub use batcher::{ClassificationBatch, ClassificationBatcher, EpochControl, Sample, TrainDataset};
pub use cifar::{CifarDataset, open_cifar_binary, open_cifar_python};
pub use error::DataError;
pub use flowers::{FlowersDataset, open_flowers102};
pub use folder::{FolderDataset, open_folder};
pub use loader::LoaderSpec;
pub use mix::{MixParams, Mixed, mix_batch};
pub use randaugment::{RAND_AUGMENT_OPS, rand_augment};

use burn::data::dataset::Dataset;
use effnet_config::{DataConfig, DatasetKind};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A decoded raw sample: the image as stored (any size) and its class index.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageItem {
    /// The RGB image.
    pub image: RgbImage,
    /// Class index in `0..num_classes`.
    pub label: usize,
}

/// One named split of a dataset (`train`, `valid`, `test`).
#[derive(Clone)]
pub struct Split {
    /// The split's name as the dataset defines it.
    pub name: String,
    /// The split's images.
    pub dataset: Arc<dyn Dataset<ImageItem>>,
    /// The label of every image, known without decoding (class counts, `data check`).
    pub labels: Arc<Vec<usize>>,
    /// The image files, for datasets decoded from files: [`Split::undecodable`] decodes them
    /// one by one (the dataset's `get` may skip a corrupt one for the next).
    files: Option<Arc<Vec<(PathBuf, usize)>>>,
}

impl Split {
    /// A split from its name, dataset and labels.
    pub fn new(name: &str, dataset: Arc<dyn Dataset<ImageItem>>, labels: Vec<usize>) -> Self {
        Self { name: name.into(), dataset, labels: Arc::new(labels), files: None }
    }

    /// The same split, its images decoded from `files` (`(path, label)`, in dataset order).
    pub fn with_files(mut self, files: Arc<Vec<(PathBuf, usize)>>) -> Self {
        self.files = Some(files);
        self
    }

    /// Decodes every image once, none skipped: one message per image that cannot be read,
    /// naming the file, in dataset order.
    pub fn undecodable(&self) -> Vec<String> {
        match &self.files {
            Some(files) => {
                files.iter().filter_map(|(path, _)| flowers::decode(path).err()).map(|e| e.to_string()).collect()
            }
            None => (0..self.dataset.len()).filter_map(|i| self.dataset.get(i).err()).map(|e| e.to_string()).collect(),
        }
    }

    /// Number of distinct labels present in the split.
    pub fn num_labels_present(&self) -> usize {
        let mut v: Vec<usize> = self.labels.to_vec();
        v.sort_unstable();
        v.dedup();
        v.len()
    }
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Split({:?}, {} images)", self.name, self.dataset.len())
    }
}

/// A dataset opened from disk: its splits, classes and class names.
#[derive(Debug, Clone)]
pub struct OpenedDataset {
    /// The format it was read from.
    pub kind: DatasetKind,
    /// The splits, in the dataset's order (CIFAR: train, test; Flowers: train, valid, test;
    /// folder: train, valid[, test]).
    pub splits: Vec<Split>,
    /// Number of classes (labels are `0..num_classes`).
    pub num_classes: usize,
    /// One name per class.
    pub class_names: Vec<String>,
}

impl OpenedDataset {
    /// The split called `name`, if any.
    pub fn split(&self, name: &str) -> Option<&Split> {
        self.splits.iter().find(|s| s.name == name)
    }

    /// The training split.
    pub fn train(&self) -> &Split {
        self.split("train").unwrap_or(&self.splits[0])
    }

    /// The validation split: `valid` where the dataset has one, else `test` (CIFAR).
    pub fn valid(&self) -> &Split {
        self.split("valid").or_else(|| self.split("test")).unwrap_or(&self.splits[self.splits.len() - 1])
    }

    /// The test split: `test` where the dataset has one, else `valid`.
    pub fn test(&self) -> &Split {
        self.split("test").unwrap_or_else(|| self.valid())
    }
}

/// Opens the dataset a `[data]` section describes. A relative `cfg.path` resolves against
/// `base_dir` (the config file's directory) and, when nothing is there, against the working
/// directory (so `path = "datasets/digits"` works from the repository root too).
pub fn open_dataset(cfg: &DataConfig, base_dir: &Path) -> Result<OpenedDataset, DataError> {
    let root = resolve_path(base_dir, &cfg.path);
    match cfg.dataset {
        DatasetKind::Cifar100 => open_cifar_binary(&root, cfg.labels),
        DatasetKind::Cifar100Python => open_cifar_python(&root, cfg.labels),
        DatasetKind::Flowers102 => open_flowers102(&root, cfg.skip_corrupt),
        DatasetKind::Folder => open_folder(&root, cfg),
    }
}

/// `path` relative to `base_dir` if it exists there, else as given (relative to the working
/// directory); errors then name the config-relative path.
pub fn resolve_path(base_dir: &Path, path: &str) -> std::path::PathBuf {
    let in_base = base_dir.join(path);
    if in_base.exists() || !Path::new(path).exists() { in_base } else { Path::new(path).to_path_buf() }
}

/// The name of a dataset kind as written in the TOML (`cifar100`, `flowers102`, …).
pub fn kind_name(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::Cifar100 => "cifar100",
        DatasetKind::Cifar100Python => "cifar100-python",
        DatasetKind::Flowers102 => "flowers102",
        DatasetKind::Folder => "folder",
    }
}

/// A dataset error as burn's [`burn::data::dataset::DatasetError`].
pub(crate) fn dataset_error(e: DataError) -> burn::data::dataset::DatasetError {
    burn::data::dataset::DatasetError::new(e)
}

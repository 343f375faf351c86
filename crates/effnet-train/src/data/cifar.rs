//! CIFAR-100 in its two official distributions: `cifar-100-binary/{train,test}.bin` and
//! `cifar-100-python/{train,test,meta}`. Both are held in memory (180 MB for the full set) as
//! the 3072-byte R, G, B planes of each 32×32 image.

use super::error::{read_file, require_dir};
use super::pickle::{self, Value};
use super::{DataError, ImageItem, OpenedDataset, Split};
use burn::data::dataset::{Dataset, DatasetError};
use effnet_config::{DatasetKind, LabelKind};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PIXELS: usize = 32 * 32;
const IMAGE_BYTES: usize = 3 * PIXELS;
/// coarse label byte, fine label byte, R, G, B planes.
const RECORD: usize = 2 + IMAGE_BYTES;

/// One CIFAR split in memory.
#[derive(Debug, Clone)]
pub struct CifarDataset {
    planes: Arc<Vec<u8>>,
    labels: Vec<u16>,
}

impl CifarDataset {
    /// The labels, one per image.
    pub fn labels(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| l as usize).collect()
    }
}

impl Dataset<ImageItem> for CifarDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        let p = &self.planes[index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES];
        let image = RgbImage::from_fn(32, 32, |x, y| {
            let i = (y * 32 + x) as usize;
            image::Rgb([p[i], p[PIXELS + i], p[2 * PIXELS + i]])
        });
        Ok(ImageItem { image, label: self.labels[index] as usize })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// `root` itself, or `root/<sub>` when the files are one level down (the extracted tarball).
fn locate(root: &Path, sub: &str, probe: &str) -> PathBuf {
    if !root.join(probe).exists() && root.join(sub).join(probe).exists() { root.join(sub) } else { root.to_path_buf() }
}

/// Opens `cifar-100-binary` (`train.bin`, `test.bin`, optional `{fine,coarse}_label_names.txt`).
///
/// The number of classes is the number of lines in the label-names file, or 100 (fine) / 20
/// (coarse) without one; a label outside that range is an error naming the file and record.
pub fn open_cifar_binary(root: &Path, labels: LabelKind) -> Result<OpenedDataset, DataError> {
    let dir = locate(root, "cifar-100-binary", "train.bin");
    require_dir(&dir, "CIFAR-100 binary folder with train.bin and test.bin")?;
    let names_file = dir.join(match labels {
        LabelKind::Fine => "fine_label_names.txt",
        LabelKind::Coarse => "coarse_label_names.txt",
    });
    let class_names = if names_file.exists() {
        let text = String::from_utf8_lossy(&read_file(&names_file)?).into_owned();
        let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if names.is_empty() {
            return Err(DataError::format(&names_file, "no class names"));
        }
        names
    } else {
        default_names(labels)
    };
    let mut splits = Vec::new();
    for name in ["train", "test"] {
        let file = dir.join(format!("{name}.bin"));
        // The size the format implies, checked before the file is read.
        let len = match effnet_config::fsio::check_regular(&file) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::missing(&file, "file not found"));
            }
            Err(e) => return Err(DataError::io(&file, e)),
        };
        let bytes = if len > 0 && len.is_multiple_of(RECORD as u64) { read_file(&file)? } else { Vec::new() };
        let bytes_len = if bytes.is_empty() { len as usize } else { bytes.len() };
        if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
            return Err(DataError::format(
                &file,
                format!(
                    "truncated or not CIFAR-100 binary: {} bytes is not a whole number of {RECORD}-byte records ({} records and {} bytes left over)",
                    bytes_len,
                    bytes_len / RECORD,
                    bytes_len % RECORD
                ),
            ));
        }
        let n = bytes.len() / RECORD;
        let mut planes = Vec::with_capacity(n * IMAGE_BYTES);
        let mut lab = Vec::with_capacity(n);
        for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
            let l = match labels {
                LabelKind::Coarse => rec[0],
                LabelKind::Fine => rec[1],
            } as usize;
            if l >= class_names.len() {
                return Err(DataError::LabelOutOfRange {
                    path: file.clone(),
                    what: format!("record {i} {} label", label_word(labels)),
                    label: l as i64,
                    classes: class_names.len(),
                });
            }
            lab.push(l as u16);
            planes.extend_from_slice(&rec[2..]);
        }
        let ds = CifarDataset { planes: Arc::new(planes), labels: lab };
        splits.push(Split::new(name, Arc::new(ds.clone()), ds.labels()));
    }
    Ok(OpenedDataset { kind: DatasetKind::Cifar100, splits, num_classes: class_names.len(), class_names })
}

fn label_word(labels: LabelKind) -> &'static str {
    match labels {
        LabelKind::Fine => "fine",
        LabelKind::Coarse => "coarse",
    }
}

fn default_names(labels: LabelKind) -> Vec<String> {
    let n = match labels {
        LabelKind::Fine => 100,
        LabelKind::Coarse => 20,
    };
    (0..n).map(|i| format!("class_{i}")).collect()
}

/// Opens `cifar-100-python` (`train`, `test`, `meta`: pickled dicts, read without executing
/// pickle code; see [`super::pickle`]).
pub fn open_cifar_python(root: &Path, labels: LabelKind) -> Result<OpenedDataset, DataError> {
    let dir = locate(root, "cifar-100-python", "meta");
    require_dir(&dir, "CIFAR-100 python folder with train, test and meta")?;
    let meta_file = dir.join("meta");
    let meta = load_pickle(&meta_file)?;
    let names_key = match labels {
        LabelKind::Fine => "fine_label_names",
        LabelKind::Coarse => "coarse_label_names",
    };
    let class_names: Vec<String> = meta
        .get(names_key)
        .and_then(Value::as_seq)
        .ok_or_else(|| DataError::format(&meta_file, format!("no list `{names_key}`")))?
        .iter()
        .map(|v| v.as_text().ok_or_else(|| DataError::format(&meta_file, format!("`{names_key}` holds a non-string"))))
        .collect::<Result<_, _>>()?;
    if class_names.is_empty() {
        return Err(DataError::format(&meta_file, format!("`{names_key}` is empty")));
    }
    let labels_key = match labels {
        LabelKind::Fine => "fine_labels",
        LabelKind::Coarse => "coarse_labels",
    };
    let mut splits = Vec::new();
    for name in ["train", "test"] {
        let file = dir.join(name);
        let d = load_pickle(&file)?;
        let (shape, dtype, data) = match d.get("data") {
            Some(Value::NdArray { shape, dtype, fortran: false, data }) => (shape, dtype, data),
            Some(Value::NdArray { fortran: true, .. }) => {
                return Err(DataError::format(&file, "key `data`: Fortran-order array is not supported"));
            }
            _ => return Err(DataError::format(&file, "no numpy array under key `data`")),
        };
        if !matches!(dtype.as_str(), "u1" | "|u1") || shape.len() != 2 || shape[1] != IMAGE_BYTES {
            return Err(DataError::format(
                &file,
                format!("key `data`: expected a uint8 [N, {IMAGE_BYTES}] array, found {dtype} {shape:?}"),
            ));
        }
        if data.len() != shape[0] * IMAGE_BYTES {
            return Err(DataError::format(
                &file,
                format!("key `data`: {} bytes for shape {shape:?} (truncated?)", data.len()),
            ));
        }
        let ls = d
            .get(labels_key)
            .and_then(Value::as_seq)
            .ok_or_else(|| DataError::format(&file, format!("no list `{labels_key}`")))?;
        if ls.len() != shape[0] {
            return Err(DataError::format(
                &file,
                format!("key `{labels_key}`: {} labels for {} images", ls.len(), shape[0]),
            ));
        }
        let mut lab = Vec::with_capacity(ls.len());
        for (i, v) in ls.iter().enumerate() {
            let l = match v {
                Value::Int(l) => *l,
                _ => return Err(DataError::format(&file, format!("key `{labels_key}`[{i}]: not an int"))),
            };
            if l < 0 || l as usize >= class_names.len() {
                return Err(DataError::LabelOutOfRange {
                    path: file.clone(),
                    what: format!("key `{labels_key}`[{i}]"),
                    label: l,
                    classes: class_names.len(),
                });
            }
            lab.push(l as u16);
        }
        let ds = CifarDataset { planes: Arc::new(data.to_vec()), labels: lab };
        splits.push(Split::new(name, Arc::new(ds.clone()), ds.labels()));
    }
    Ok(OpenedDataset { kind: DatasetKind::Cifar100Python, splits, num_classes: class_names.len(), class_names })
}

fn load_pickle(file: &Path) -> Result<Value, DataError> {
    let bytes = read_file(file)?;
    pickle::parse(&bytes).map_err(|e| DataError::format(file, e))
}

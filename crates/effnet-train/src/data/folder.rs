//! Users' own images: `root/<class>/<image>` (classes sorted by name, label = position).
//!
//! Splits, in order of precedence:
//! 1. `root/train/<class>/…` and `root/valid/<class>/…` (or `val/`), optionally `root/test/…`:
//!    the folders are the splits;
//! 2. `[data] split_file = "splits.txt"` (relative to the root): lines `<split> <class>/<image>`
//!    with split `train`, `valid` or `test`; `#` starts a comment;
//! 3. otherwise a fixed, stratified hold-out: `valid_fraction` of each class (picked by a
//!    seeded shuffle of the sorted file names, the same on every machine) becomes `valid`.

use super::flowers::get_decoded;
use super::{DataError, ImageItem, OpenedDataset, Split};
use burn::data::dataset::{Dataset, DatasetError};
use effnet_config::{DataConfig, DatasetKind};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Images of an image folder, decoded on `get` (corrupt files as in
/// [`super::FlowersDataset`]).
#[derive(Debug, Clone)]
pub struct FolderDataset {
    items: Arc<Vec<(PathBuf, usize)>>,
    skip_corrupt: bool,
    corrupt: Arc<AtomicUsize>,
}

impl FolderDataset {
    /// The `(path, label)` pairs.
    pub fn items(&self) -> &[(PathBuf, usize)] {
        &self.items
    }

    /// How many undecodable images have been skipped so far.
    pub fn corrupt_count(&self) -> usize {
        self.corrupt.load(Ordering::Relaxed)
    }
}

impl Dataset<ImageItem> for FolderDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        get_decoded(&self.items, index, self.skip_corrupt, &self.corrupt)
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    v.sort();
    Ok(v)
}

/// `dir/<class>/<image>` → class names and per-class sorted image lists; empty classes are errors.
fn scan_classes(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, DataError> {
    let mut classes = Vec::new();
    for p in sorted_entries(dir)? {
        if !p.is_dir() {
            continue;
        }
        // A lossy conversion would give two folders such as `\xff` and `\xfe` one name (`�`).
        let name = p.file_name().unwrap().to_str().map(String::from).ok_or_else(|| {
            DataError::format(&p, "class folder name is not valid UTF-8 (class names must be text); rename the folder")
        })?;
        let images: Vec<PathBuf> = sorted_entries(&p)?.into_iter().filter(|f| f.is_file() && is_image(f)).collect();
        if images.is_empty() {
            return Err(DataError::EmptyClass { path: p });
        }
        classes.push((name, images));
    }
    if classes.is_empty() {
        return Err(DataError::missing(dir, "class folders `<class>/<image>`"));
    }
    Ok(classes)
}

/// Opens an image folder; see the module docs for the split rules.
pub fn open_folder(root: &Path, cfg: &DataConfig) -> Result<OpenedDataset, DataError> {
    super::error::require_dir(root, "image folder `<class>/<image>`")?;
    let make = |name: &str, items: Vec<(PathBuf, usize)>| {
        let labels = items.iter().map(|(_, l)| *l).collect();
        let items = Arc::new(items);
        let ds = FolderDataset {
            items: items.clone(),
            skip_corrupt: cfg.skip_corrupt,
            corrupt: Arc::new(AtomicUsize::new(0)),
        };
        Split::new(name, Arc::new(ds), labels).with_files(items)
    };
    let valid_dir = ["valid", "val"].iter().map(|d| root.join(d)).find(|d| d.is_dir());
    if let (true, Some(valid_dir)) = (root.join("train").is_dir(), valid_dir) {
        // Layout 1: split folders.
        let train = scan_classes(&root.join("train"))?;
        let class_names: Vec<String> = train.iter().map(|(n, _)| n.clone()).collect();
        let label_of = |dir: &Path, (name, imgs): (String, Vec<PathBuf>)| {
            let label = class_names
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| DataError::format(&dir.join(&name), "class folder not present in train/".to_string()))?;
            Ok::<_, DataError>(imgs.into_iter().map(move |p| (p, label)))
        };
        let mut splits = Vec::new();
        let mut dirs = vec![("train", root.join("train")), ("valid", valid_dir)];
        if root.join("test").is_dir() {
            dirs.push(("test", root.join("test")));
        }
        for (name, dir) in dirs {
            let classes = if name == "train" { train.clone() } else { scan_classes(&dir)? };
            let mut items = Vec::new();
            for c in classes {
                items.extend(label_of(&dir, c)?);
            }
            splits.push(make(name, items));
        }
        return Ok(OpenedDataset { kind: DatasetKind::Folder, splits, num_classes: class_names.len(), class_names });
    }

    let classes = scan_classes(root)?;
    let class_names: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
    let mut by_split: BTreeMap<&str, Vec<(PathBuf, usize)>> = BTreeMap::new();
    if let Some(split_file) = &cfg.split_file {
        // Layout 2: an explicit split file, inside the root, as is every image it lists.
        let canon_root = root.canonicalize().map_err(|e| DataError::io(root, e))?;
        let file = root.join(split_file);
        let inside = |p: &Path| p.canonicalize().is_ok_and(|c| c.starts_with(&canon_root));
        if file.exists() && !inside(&file) {
            return Err(DataError::Config {
                path: root.to_path_buf(),
                key: "split_file".into(),
                message: format!("{:?} leaves the dataset root; a split file must lie inside it", short(split_file)),
            });
        }
        let bytes = super::error::read_file_capped(&file, effnet_config::fsio::MAX_TEXT_FILE)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut seen: std::collections::HashMap<PathBuf, (&str, usize)> = std::collections::HashMap::new();
        let (mut duplicates, mut crossed) = (0usize, 0usize);
        let mut first_repeat: Option<String> = None;
        for (ln, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (split, rel) = line.split_once(char::is_whitespace).ok_or_else(|| {
                DataError::format(
                    &file,
                    format!("line {}: expected `<split> <class>/<image>`, found {:?}", ln + 1, short(line)),
                )
            })?;
            let split = match split {
                "train" => "train",
                "valid" | "val" => "valid",
                "test" => "test",
                other => {
                    return Err(DataError::format(
                        &file,
                        format!("line {}: unknown split {:?} (train, valid or test)", ln + 1, short(other)),
                    ));
                }
            };
            let rel = rel.trim();
            let rel_path = Path::new(rel);
            let leaves = |why: &str| {
                DataError::format(
                    &file,
                    format!("line {}: {:?} {why}; listed images must lie inside the dataset root", ln + 1, short(rel)),
                )
            };
            if rel_path.is_absolute() {
                return Err(leaves("is an absolute path"));
            }
            if rel_path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(leaves("goes up with `..`"));
            }
            let class = rel_path.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
            let label = class.and_then(|c| class_names.iter().position(|n| *n == c)).ok_or_else(|| {
                DataError::format(&file, format!("line {}: {:?} is not under a class folder", ln + 1, short(rel)))
            })?;
            let path = root.join(rel);
            if !path.is_file() {
                return Err(DataError::missing(&path, format!("listed in {} line {}", file.display(), ln + 1)));
            }
            if !inside(&path) {
                return Err(leaves("leads outside the root through a symbolic link"));
            }
            if let Some(&(first_split, first_line)) = seen.get(&path) {
                if first_split == split {
                    duplicates += 1;
                } else {
                    crossed += 1;
                }
                first_repeat
                    .get_or_insert_with(|| format!("line {} repeats line {first_line} ({:?})", ln + 1, short(rel)));
                if first_split == split {
                    continue;
                }
            } else {
                seen.insert(path.clone(), (split, ln + 1));
            }
            by_split.entry(split).or_default().push((path, label));
        }
        if by_split.get("train").is_none_or(Vec::is_empty) {
            return Err(DataError::format(&file, "no `train` images listed"));
        }
        if duplicates + crossed > 0 {
            eprintln!(
                "warning: {}: {duplicates} image(s) listed twice in one split (counted once) and {crossed} listed in two splits (a validation image seen in training); first: {}",
                file.display(),
                first_repeat.unwrap_or_default()
            );
        }
    } else {
        // Layout 3: a seeded, stratified hold-out that does not depend on the machine.
        let frac = cfg.valid_fraction;
        for (label, (name, mut imgs)) in classes.into_iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(fnv1a(name.as_bytes()));
            imgs.shuffle(&mut rng);
            let n_valid = if frac > 0.0 && imgs.len() >= 2 {
                ((imgs.len() as f64 * frac).round() as usize).clamp(1, imgs.len() - 1)
            } else {
                0
            };
            let (valid, train) = imgs.split_at(n_valid);
            let mut valid = valid.to_vec();
            let mut train = train.to_vec();
            valid.sort();
            train.sort();
            by_split.entry("train").or_default().extend(train.into_iter().map(|p| (p, label)));
            by_split.entry("valid").or_default().extend(valid.into_iter().map(|p| (p, label)));
        }
    }
    let mut splits = Vec::new();
    for name in ["train", "valid", "test"] {
        if let Some(items) = by_split.remove(name) {
            splits.push(make(name, items));
        }
    }
    Ok(OpenedDataset { kind: DatasetKind::Folder, splits, num_classes: class_names.len(), class_names })
}

/// A value from a file as echoed in a message: at most 80 characters.
fn short(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// 64-bit FNV-1a: a stable seed from a class name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

//! Oxford Flowers-102 as distributed: `jpg/image_00001.jpg` …, `imagelabels.mat` (`labels`,
//! 1-based classes of every image) and `setid.mat` (`trnid`, `valid`, `tstid`: 1-based image ids).
//! The MATLAB v5 files are read with the `matfile` crate; images are decoded on demand.

use super::error::{read_file, require_dir};
use super::{DataError, ImageItem, OpenedDataset, Split, dataset_error};
use burn::data::dataset::{Dataset, DatasetError};
use effnet_config::DatasetKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Number of Flowers-102 classes.
pub const FLOWERS_CLASSES: usize = 102;

/// Images listed by path and decoded on `get`.
///
/// With `skip_corrupt`, an undecodable image is counted, reported once on stderr and replaced
/// by the next decodable image of the split, so one bad file in a large set does not stop
/// training; without it, `get` returns an error naming the file.
#[derive(Debug, Clone)]
pub struct FlowersDataset {
    items: Arc<Vec<(PathBuf, usize)>>,
    skip_corrupt: bool,
    corrupt: Arc<AtomicUsize>,
}

impl FlowersDataset {
    /// A dataset of `(path, label)` pairs.
    pub fn new(items: Vec<(PathBuf, usize)>, skip_corrupt: bool) -> Self {
        Self { items: Arc::new(items), skip_corrupt, corrupt: Arc::new(AtomicUsize::new(0)) }
    }

    /// The `(path, label)` pairs.
    pub fn items(&self) -> &[(PathBuf, usize)] {
        &self.items
    }

    /// How many undecodable images have been skipped so far.
    pub fn corrupt_count(&self) -> usize {
        self.corrupt.load(Ordering::Relaxed)
    }
}

/// Decodes an image file to RGB, naming the file on failure.
pub(crate) fn decode(path: &Path) -> Result<image::RgbImage, DataError> {
    let bytes = super::error::read_image_file(path)?;
    let img =
        image::load_from_memory(&bytes).map_err(|e| DataError::Decode { path: path.into(), message: e.to_string() })?;
    Ok(img.into_rgb8())
}

/// Shared by the Flowers and image-folder datasets: decode item `index`, skipping corrupt files
/// when asked.
pub(crate) fn get_decoded(
    items: &[(PathBuf, usize)],
    index: usize,
    skip_corrupt: bool,
    corrupt: &AtomicUsize,
) -> Result<ImageItem, DatasetError> {
    let n = items.len();
    for k in 0..n {
        let (path, label) = &items[(index + k) % n];
        match decode(path) {
            Ok(image) => return Ok(ImageItem { image, label: *label }),
            Err(e) if skip_corrupt => {
                let c = corrupt.fetch_add(1, Ordering::Relaxed) + 1;
                eprintln!("warning: skipping corrupt image ({c} so far): {e}");
            }
            Err(e) => return Err(dataset_error(e)),
        }
    }
    Err(dataset_error(DataError::format(
        &items[index].0,
        format!("no decodable image in the split: all {n} images fail to decode, this one first"),
    )))
}

impl Dataset<ImageItem> for FlowersDataset {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        get_decoded(&self.items, index, self.skip_corrupt, &self.corrupt)
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// Reads a MATLAB v5 file's numeric variable `name` as integers.
fn mat_ints(path: &Path, name: &str) -> Result<Vec<i64>, DataError> {
    let bytes = read_file(path)?;
    // matfile 0.5 has an `unwrap` on unusual array classes; a malformed file must not panic.
    let parsed = std::panic::catch_unwind(|| matfile::MatFile::parse(&bytes[..]))
        .map_err(|_| DataError::format(path, "not a readable MATLAB v5 file"))?
        .map_err(|e| DataError::format(path, format!("not a readable MATLAB v5 file ({e})")))?;
    let arr = parsed.find_by_name(name).ok_or_else(|| {
        let have: Vec<&str> = parsed.arrays().iter().map(|a| a.name()).collect();
        // matfile skips char, cell and struct arrays: a variable of that name in the (uncompressed)
        // data is there with the wrong type, not missing.
        let data = bytes.get(128..).unwrap_or_default();
        if !name.is_empty() && data.windows(name.len()).any(|w| w == name.as_bytes()) {
            return DataError::format(
                path,
                format!(
                    "variable `{name}` is not a numeric array (a char, cell or struct array?); expected numeric ids"
                ),
            );
        }
        DataError::format(path, format!("no variable `{name}` (found: {})", have.join(", ")))
    })?;
    use matfile::NumericData as N;
    let complex =
        || DataError::format(path, format!("variable `{name}` holds complex numbers; expected real integer ids"));
    // Each array type as f64; a non-zero imaginary part is an error, not dropped.
    macro_rules! reals {
        ($real:expr, $imag:expr) => {{
            if $imag.as_ref().is_some_and(|im| im.iter().any(|&x| x as f64 != 0.0)) {
                return Err(complex());
            }
            $real.iter().map(|&x| x as f64).collect()
        }};
    }
    let v: Vec<f64> = match arr.data() {
        N::Double { real, imag } => reals!(real, imag),
        N::Single { real, imag } => reals!(real, imag),
        N::UInt8 { real, imag } => reals!(real, imag),
        N::UInt16 { real, imag } => reals!(real, imag),
        N::Int16 { real, imag } => reals!(real, imag),
        N::Int32 { real, imag } => reals!(real, imag),
        N::UInt32 { real, imag } => reals!(real, imag),
        N::Int64 { real, imag } => reals!(real, imag),
        N::UInt64 { real, imag } => reals!(real, imag),
        N::Int8 { real, imag } => reals!(real, imag),
    };
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            if x.fract() == 0.0 && x.is_finite() {
                Ok(x as i64)
            } else {
                Err(DataError::format(path, format!("variable `{name}`[{i}] = {x} is not an integer")))
            }
        })
        .collect()
}

/// Opens Flowers-102: splits `train` (`trnid`), `valid` (`valid`), `test` (`tstid`); labels
/// 1–102 in the file become 0–101.
pub fn open_flowers102(root: &Path, skip_corrupt: bool) -> Result<OpenedDataset, DataError> {
    require_dir(root, "Flowers-102 folder with jpg/, imagelabels.mat and setid.mat")?;
    let labels_file = root.join("imagelabels.mat");
    let setid_file = root.join("setid.mat");
    let jpg = root.join("jpg");
    let labels = mat_ints(&labels_file, "labels")?;
    for (i, &l) in labels.iter().enumerate() {
        if !(1..=FLOWERS_CLASSES as i64).contains(&l) {
            return Err(DataError::LabelOutOfRange {
                path: labels_file.clone(),
                what: format!("variable `labels`[{i}] (1-based)"),
                label: l,
                classes: FLOWERS_CLASSES,
            });
        }
    }
    require_dir(&jpg, "folder of image_NNNNN.jpg files")?;
    let mut splits = Vec::new();
    for (split, var) in [("train", "trnid"), ("valid", "valid"), ("test", "tstid")] {
        let ids = mat_ints(&setid_file, var)?;
        let mut items = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            if id < 1 || id as usize > labels.len() {
                return Err(DataError::format(
                    &setid_file,
                    format!("variable `{var}`[{i}] = {id}: no such image (imagelabels.mat has {})", labels.len()),
                ));
            }
            let path = jpg.join(format!("image_{id:05}.jpg"));
            if !path.exists() {
                return Err(DataError::missing(&path, format!("image {id} of split {split}")));
            }
            items.push((path, (labels[id as usize - 1] - 1) as usize));
        }
        let labels = items.iter().map(|(_, l)| *l).collect();
        let ds = FlowersDataset::new(items, skip_corrupt);
        let files = ds.items.clone();
        splits.push(Split::new(split, Arc::new(ds), labels).with_files(files));
    }
    let class_names = crate::classes::flowers_names(root, FLOWERS_CLASSES)?;
    Ok(OpenedDataset { kind: DatasetKind::Flowers102, splits, num_classes: FLOWERS_CLASSES, class_names })
}

#[cfg(test)]
mod mat_tests {
    use super::*;

    /// A MATLAB v5 file holding one 1×n char array (UTF-16 data).
    fn mat_v5_char(name: &str, text: &str) -> Vec<u8> {
        let mut out = mat_v5(name, &[0.0; 1], None);
        // Class 4 (char) in the array flags, and the data element as miUINT16.
        let flags_at = 128 + 8 + 8;
        out[flags_at] = 4;
        let units: Vec<u16> = text.encode_utf16().collect();
        let data_tag = out.len() - 16;
        out.truncate(data_tag);
        out.extend(4u32.to_le_bytes());
        out.extend(((units.len() * 2) as u32).to_le_bytes());
        units.iter().for_each(|u| out.extend(u.to_le_bytes()));
        out.resize(out.len().div_ceil(8) * 8, 0);
        let len = (out.len() - 136) as u32;
        out[132..136].copy_from_slice(&len.to_le_bytes());
        out
    }

    /// A MATLAB v5 file holding one 1×n double variable, complex when `imag` is given.
    fn mat_v5(name: &str, real: &[f64], imag: Option<&[f64]>) -> Vec<u8> {
        let pad8 = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(8) * 8, 0);
        let mut m = Vec::new();
        let tag = |v: &mut Vec<u8>, ty: u32, len: usize| {
            v.extend(ty.to_le_bytes());
            v.extend((len as u32).to_le_bytes());
        };
        let flags = 6u32 | if imag.is_some() { 0x0800 } else { 0 };
        tag(&mut m, 6, 8);
        m.extend(flags.to_le_bytes());
        m.extend(0u32.to_le_bytes());
        tag(&mut m, 5, 8);
        m.extend(1i32.to_le_bytes());
        m.extend((real.len() as i32).to_le_bytes());
        tag(&mut m, 1, name.len());
        m.extend(name.as_bytes());
        pad8(&mut m);
        for part in std::iter::once(real).chain(imag) {
            tag(&mut m, 9, part.len() * 8);
            part.iter().for_each(|x| m.extend(x.to_le_bytes()));
        }
        let mut out = format!("MATLAB 5.0 MAT-file, effnet test{}", " ".repeat(116)).into_bytes();
        out.truncate(116);
        out.extend([0u8; 8]);
        out.extend(0x0100u16.to_le_bytes());
        out.extend(b"IM");
        tag(&mut out, 14, m.len());
        out.extend(m);
        out
    }

    #[test]
    fn complex_ids_are_refused_not_truncated() {
        let d = std::env::temp_dir().join(format!("effnet-mat-complex-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("setid.mat");
        std::fs::write(&f, mat_v5("trnid", &[1.0, 2.0, 3.0], None)).unwrap();
        assert_eq!(mat_ints(&f, "trnid").unwrap(), [1, 2, 3]);
        std::fs::write(&f, mat_v5("trnid", &[1.0, 2.0, 3.0], Some(&[0.0, 0.0, 0.0]))).unwrap();
        assert_eq!(mat_ints(&f, "trnid").unwrap(), [1, 2, 3]);
        std::fs::write(&f, mat_v5("trnid", &[1.0, 2.0, 3.0], Some(&[0.0, 5.0, 0.0]))).unwrap();
        let e = mat_ints(&f, "trnid").unwrap_err().to_string();
        assert!(e.contains("setid.mat") && e.contains("`trnid` holds complex numbers"), "{e}");
        // Item 19: present with the wrong type is not "missing".
        std::fs::write(&f, mat_v5_char("trnid", "abc")).unwrap();
        let e = mat_ints(&f, "trnid").unwrap_err().to_string();
        assert!(e.contains("`trnid` is not a numeric array"), "{e}");
        let e = mat_ints(&f, "tstid").unwrap_err().to_string();
        assert!(e.contains("no variable `tstid`"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

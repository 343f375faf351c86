//! Reading and writing float32 `.npy` arrays (the format users compare ports with), a block of
//! rows at a time so that a large batch never has to fit in memory at once.

use anyhow::{Context, Result, bail};
use effnet_config::fsio::AtomicFile;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

/// The longest header accepted: numpy writes ~120 bytes; a version-2 file may declare 4 GB.
const MAX_HEADER: usize = 1 << 20;

/// A float32 C-order `.npy` file opened for reading, positioned at its data.
pub struct NpyInput {
    path: PathBuf,
    reader: BufReader<File>,
    pub shape: Vec<usize>,
}

impl NpyInput {
    /// Opens `path` and checks its header: dtype `<f4`, C order, and a shape whose data the
    /// file really holds (a header may claim 2^62 elements; nothing is allocated from it unchecked).
    pub fn open_f32(path: &Path) -> Result<Self> {
        // A regular file only: a FIFO would block the open, a device read forever.
        let file =
            effnet_config::fsio::open_regular(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let file_len = file.metadata().with_context(|| format!("{}: cannot open", path.display()))?.len();
        let mut reader = BufReader::new(file);
        let not_npy = || format!("{}: not a .npy file", path.display());
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic).with_context(not_npy)?;
        if &magic[..6] != b"\x93NUMPY" {
            bail!(not_npy());
        }
        let header_len = match magic[6] {
            1 => {
                let mut b = [0u8; 2];
                reader.read_exact(&mut b).with_context(not_npy)?;
                u16::from_le_bytes(b) as usize
            }
            2 | 3 => {
                let mut b = [0u8; 4];
                reader.read_exact(&mut b).with_context(not_npy)?;
                u32::from_le_bytes(b) as usize
            }
            v => bail!("{}: .npy format version {v} is not supported", path.display()),
        };
        if header_len > MAX_HEADER {
            bail!("{}: a .npy header of {header_len} bytes; not a real array header", path.display());
        }
        let mut header = vec![0u8; header_len];
        reader.read_exact(&mut header).with_context(|| format!("{}: truncated header", path.display()))?;
        let header = String::from_utf8_lossy(&header);
        let data_start = (if magic[6] == 1 { 10 } else { 12 } + header_len) as u64;
        let (descr, fortran, shape) = parse_header(&header).with_context(not_npy)?;
        if descr != "<f4" {
            bail!("{}: dtype '{descr}'; expected float32 ('<f4')", path.display());
        }
        if fortran {
            bail!("{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray", path.display());
        }
        let bytes = shape.iter().try_fold(4u64, |a, &d| a.checked_mul(d));
        let have = file_len.saturating_sub(data_start);
        match bytes {
            Some(b) if b <= have => {}
            _ => bail!(
                "{}: the header declares shape {shape:?} ({} bytes of float32), but the file holds {have} bytes of data: truncated, or a corrupt header",
                path.display(),
                bytes.map_or("more than 2^64".to_string(), |b| b.to_string())
            ),
        }
        // Each dimension fits usize now: their product is at most the file's length.
        let shape = shape.into_iter().map(|d| d as usize).collect();
        Ok(Self { path: path.to_path_buf(), reader, shape })
    }

    /// The next `rows` entries along the first axis, as one flat vector.
    pub fn read_rows(&mut self, rows: usize) -> Result<Vec<f32>> {
        let per_row: usize = self.shape[1..].iter().product();
        let mut bytes = vec![0u8; rows * per_row * 4];
        self.reader.read_exact(&mut bytes).with_context(|| format!("{}: truncated data", self.path.display()))?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }`: the three values.
fn parse_header(h: &str) -> Option<(String, bool, Vec<u64>)> {
    let value = |key: &str| {
        let at = h.find(&format!("'{key}'")).or_else(|| h.find(&format!("\"{key}\"")))?;
        let rest = h[at + key.len() + 2..].trim_start();
        Some(rest.strip_prefix(':')?.trim_start())
    };
    let descr = value("descr")?;
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let descr = descr[1..].split(quote).next()?.to_string();
    let fortran = value("fortran_order")?;
    let fortran = if fortran.starts_with("True") {
        true
    } else if fortran.starts_with("False") {
        false
    } else {
        return None;
    };
    let shape = value("shape")?.strip_prefix('(')?;
    let shape = &shape[..shape.find(')')?];
    let dims = shape.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.trim_end_matches('L').parse().ok());
    Some((descr, fortran, dims.collect::<Option<Vec<u64>>>()?))
}

/// A float32 `.npy` written a block of rows at a time into a unique temporary file (an
/// [`AtomicFile`]), renamed into place by [`NpyOutput::finish`]; dropped unfinished (an error
/// part-way), the temporary is removed. Only a new path or a regular file is replaced.
pub struct NpyOutput {
    path: PathBuf,
    tmp: Option<AtomicFile>,
    writer: Option<npyz::NpyWriter<f32, BufWriter<File>>>,
}

impl NpyOutput {
    pub fn create(path: &Path, shape: &[usize]) -> Result<Self> {
        use npyz::WriterBuilder;
        let tmp = AtomicFile::create(path).with_context(|| format!("{}: cannot write", path.display()))?;
        let file = tmp.file().try_clone().with_context(|| format!("{}: cannot write", path.display()))?;
        let writer = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>())
            .writer(BufWriter::new(file))
            .begin_nd()
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(Self { path: path.to_path_buf(), tmp: Some(tmp), writer: Some(writer) })
    }

    pub fn push(&mut self, values: &[f32]) -> Result<()> {
        let w = self.writer.as_mut().expect("not finished");
        w.extend(values.iter().copied()).with_context(|| format!("{}: cannot write", self.path.display()))
    }

    pub fn finish(mut self) -> Result<()> {
        let w = self.writer.take().expect("not finished");
        // Flushes the buffer (an error here is a full disk, reported rather than dropped).
        w.finish().with_context(|| format!("{}: cannot write", self.path.display()))?;
        let tmp = self.tmp.take().expect("not finished");
        tmp.commit().with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 61, 67), }";
        assert_eq!(parse_header(h), Some(("<f4".into(), false, vec![2, 3, 61, 67])));
        assert_eq!(parse_header("{'descr': '<f8', 'fortran_order': True, 'shape': (5,), }").unwrap().2, vec![5]);
        assert_eq!(
            parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }").unwrap().2,
            Vec::<u64>::new()
        );
        assert_eq!(parse_header("{'descr': '<f4', 'shape': (2,), }"), None);
        assert_eq!(parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), None);
    }
}

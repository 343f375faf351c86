//! Reading and writing float32 `.npy` arrays (the format users compare ports with).

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Reads a float32 array and its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .with_context(|| format!("{}: not a .npy file", path.display()))?;
    let dtype = npy.dtype().descr();
    if dtype != "'<f4'" {
        bail!("{}: dtype {dtype}; expected float32 ('<f4')", path.display());
    }
    if npy.order() != npyz::Order::C {
        bail!("{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray", path.display());
    }
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let data = npy.into_vec::<f32>().with_context(|| format!("{}: truncated data", path.display()))?;
    Ok((shape, data))
}

/// Writes a float32 array atomically (a temporary file renamed into place).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    let tmp = path.with_extension("npy.tmp");
    {
        let file = std::fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape.iter().map(|&d| d as u64).collect::<Vec<_>>())
            .writer(std::io::BufWriter::new(file))
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}

//! Shared by the CLI tests: running the binary, scratch directories, failure checks, and the
//! hostile or unusual files the robustness tests feed it (weights in other precisions, legacy
//! `.pth`, odd `.npy` headers).
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn effnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args(args)
        // Without it a Vulkan loader probed by the wgpu build prints its own `error:` lines.
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .output()
        .expect("run effnet")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures() -> PathBuf {
    repo().join("crates/effnet-model/tests/fixtures")
}

/// A scratch directory in the temp dir, removed when dropped (also when the test fails).
pub struct TmpDir(pub PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tmp_dir(name: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("effnet-robust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

/// A failed command: exit code 1, stderr starting with the `error:` line (an error may list
/// details on the lines after it), no panic.
pub fn assert_error_first(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    err
}

/// A failed command: exit code 1, the whole of stderr one `error:` line, no panic.
pub fn assert_one_line_failure(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: ") && err.trim_end().lines().count() == 1, "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    err
}

/// A failed command: exit code 1, `error:` lines only after whatever notes came first, no panic.
pub fn assert_clean_failure(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.lines().last().is_some_and(|l| l.starts_with("error: ")), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    err
}

pub fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let f = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    let shape = f.shape().to_vec();
    (shape, f.into_vec::<f32>().unwrap())
}

pub fn write_npy(path: &Path, shape: &[u64], data: &[f32]) {
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A float32 tensor of a checkpoint, by name, with its shape; other dtypes keep their raw bytes.
pub struct StTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl StTensor {
    pub fn f32s(&self) -> Vec<f32> {
        assert_eq!(self.dtype, "F32");
        self.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    pub fn set_f32s(&mut self, v: &[f32]) {
        self.bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    }

    /// The tensor converted to `dtype` (F16, BF16, F64); non-F32 tensors are left as they are.
    pub fn to_dtype(&self, dtype: &str) -> StTensor {
        if self.dtype != "F32" {
            return StTensor { dtype: self.dtype.clone(), shape: self.shape.clone(), bytes: self.bytes.clone() };
        }
        let v = self.f32s();
        let bytes = match dtype {
            "F16" => v.iter().flat_map(|&x| f16_bits(x).to_le_bytes()).collect(),
            "BF16" => v.iter().flat_map(|&x| bf16_bits(x).to_le_bytes()).collect(),
            "F64" => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
            other => panic!("{other}"),
        };
        StTensor { dtype: dtype.to_string(), shape: self.shape.clone(), bytes }
    }
}

pub fn read_safetensors(path: &Path) -> BTreeMap<String, StTensor> {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let data = &b[8 + n..];
    let mut out = BTreeMap::new();
    for (name, v) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let off: Vec<usize> = serde_json::from_value(v["data_offsets"].clone()).unwrap();
        out.insert(
            name.clone(),
            StTensor {
                dtype: v["dtype"].as_str().unwrap().to_string(),
                shape: serde_json::from_value(v["shape"].clone()).unwrap(),
                bytes: data[off[0]..off[1]].to_vec(),
            },
        );
    }
    out
}

pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, StTensor>) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, t) in tensors {
        let start = data.len();
        data.extend_from_slice(&t.bytes);
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

/// f32 → IEEE half, round to nearest even.
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 255 {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 31 {
        return sign | 0x7c00;
    }
    let round = |v: u32, shift: u32| {
        let (q, rem, half) = (v >> shift, v & ((1 << shift) - 1), 1 << (shift - 1));
        if rem > half || (rem == half && q & 1 == 1) { q + 1 } else { q }
    };
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        return sign | round(man | 0x80_0000, (14 - e) as u32) as u16;
    }
    // A carry out of the mantissa correctly bumps the exponent.
    sign | round(((e as u32) << 23) | man, 13) as u16
}

/// f32 → bfloat16, round to nearest even.
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// A legacy (PyTorch ≤ 1.5, `_use_new_zipfile_serialization=False`) `torch.save` of a state
/// dict: sequential pickles (magic, protocol 1001, sys info, the dict, the storage keys), then
/// each storage as an i64 element count and its bytes. `storage` is the torch storage class
/// (`HalfStorage`, `DoubleStorage`, …) of tensors in `dtype`; other tensors are left out.
pub fn write_legacy_pth(path: &Path, tensors: &BTreeMap<String, StTensor>, dtype: &str, storage: &str) {
    let unicode = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    };
    let int = |p: &mut Vec<u8>, v: usize| {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    };
    let mut out = vec![0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.'];
    out.extend([0x80, 2, b'M', 0xe9, 0x03, b'.']);
    out.extend([0x80, 2, b'}', b'(']);
    unicode(&mut out, "little_endian");
    out.extend([0x88, b'u', b'.']);
    let chosen: Vec<(&String, &StTensor)> = tensors.iter().filter(|(_, t)| t.dtype == dtype).collect();
    let mut p = vec![0x80, 2, b'}', b'('];
    for (i, (name, t)) in chosen.iter().enumerate() {
        let numel: usize = t.shape.iter().product();
        unicode(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        unicode(&mut p, "storage");
        p.extend(format!("ctorch\n{storage}\n").as_bytes());
        unicode(&mut p, &i.to_string());
        unicode(&mut p, "cpu");
        int(&mut p, numel);
        p.extend([b'N', b't', b'Q']);
        int(&mut p, 0);
        p.push(b'(');
        t.shape.iter().for_each(|&d| int(&mut p, d));
        p.push(b't');
        p.push(b'(');
        let mut stride = 1;
        let mut strides = vec![0; t.shape.len()];
        for (s, d) in strides.iter_mut().zip(&t.shape).rev() {
            *s = stride;
            stride *= d;
        }
        strides.iter().for_each(|&s| int(&mut p, s));
        p.extend([b't', 0x89, b'N', b't', b'R']);
    }
    p.extend([b'u', b'.']);
    out.extend(p);
    out.extend([0x80, 2, b']', b'(']);
    (0..chosen.len()).for_each(|i| unicode(&mut out, &i.to_string()));
    out.extend([b'e', b'.']);
    for (_, t) in &chosen {
        let numel: usize = t.shape.iter().product();
        out.extend((numel as i64).to_le_bytes());
        out.extend(&t.bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// `[model]` of the narrow reference fixtures (B0 blocks, width 0.25, depth 0.5, 10 classes).
pub fn narrow_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("narrow.toml");
    std::fs::write(&cfg, "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 10\n").unwrap();
    cfg
}

/// `forward` of the narrow config with timm `efficientnet_b0` flags on `weights` and `input`.
pub fn forward_timm_b0(dir: &Path, weights: &Path, input: &Path, extra: &[&str]) -> Output {
    let cfg = narrow_config(dir);
    let out = dir.join("logits.npy");
    let mut args = vec![
        "forward",
        "--config",
        cfg.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--padding",
        "symmetric",
        "--bn-eps",
        "1e-5",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    effnet(&args)
}

/// A PNG of `w × h` with a smooth colour ramp.
pub fn write_png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 128]))
        .save(path)
        .unwrap();
}

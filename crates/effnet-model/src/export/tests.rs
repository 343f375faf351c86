//! Export against the state dicts the PyTorch libraries wrote themselves (the fixtures of
//! `scripts/make_reference.py`): same keys, shapes, dtypes and values, and re-import through
//! effnet's loader with identical logits.

use super::torch_layouts::{StateTensor, check_expressible, state_dict};
use super::{ExportError, ExportFormat, export, model_tensors, onnx};
use crate::model::EfficientNet;
use burn::prelude::*;
use effnet_config::{Architecture, ModelConfig, Padding, Variant};
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

fn fixture(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir)
}

/// A scratch directory, removed when dropped.
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("effnet-export-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fixtures' network: the B0 (or Lite0) table at width 0.25, depth 0.5, 10 classes.
fn narrow(lite: bool, padding: &str, eps: f64) -> Architecture {
    let text = format!(
        "variant = \"{}\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 10\npadding = \"{padding}\"\nbn_eps = {eps:e}\ndropout = 0.0\n",
        if lite { "lite0" } else { "custom" },
    );
    toml::from_str::<ModelConfig>(&text).unwrap().architecture().unwrap()
}

fn input(dir: &str) -> Tensor<4> {
    let f = npyz::NpyFile::new(std::io::BufReader::new(std::fs::File::open(fixture(dir).join("input.npy")).unwrap()))
        .unwrap();
    let s: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
    let data = f.into_vec::<f32>().unwrap();
    Tensor::from_data(TensorData::new(data, [s[0], s[1], s[2], s[3]]), &Device::flex())
}

fn logits(model: &EfficientNet, x: Tensor<4>) -> Vec<f32> {
    model.forward(x).into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn loaded(arch: &Architecture, path: &Path) -> EfficientNet {
    let mut model = EfficientNet::new(arch, &Device::flex());
    model.load_weights(path, arch).unwrap();
    model
}

/// (fixture, format, lite, padding, eps): each library's own narrow state dict.
const CASES: [(&str, ExportFormat, bool, &str, f64); 5] = [
    ("timm_b0", ExportFormat::Timm, false, "symmetric", 1e-5),
    ("timm_tf_b0", ExportFormat::TimmTf, false, "tf-same", 1e-3),
    ("torchvision_b0", ExportFormat::Torchvision, false, "symmetric", 1e-5),
    ("lukemelas_b0", ExportFormat::Lukemelas, false, "tf-same", 1e-3),
    ("lite0", ExportFormat::Lukemelas, true, "tf-same", 1e-3),
];

/// The state dict effnet writes for a library is the one that library wrote: every key,
/// shape and dtype (`num_batches_tracked` an int64 scalar), and every float bit for bit.
#[test]
fn state_dicts_equal_the_libraries_own() {
    for (dir, format, lite, padding, eps) in CASES {
        let arch = narrow(lite, padding, eps);
        let file = fixture(dir).join("weights.safetensors");
        let model = loaded(&arch, &file);
        let ours = state_dict(format, &arch, &model_tensors(&model).unwrap()).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        let theirs = SafeTensors::deserialize(&bytes).unwrap();
        let mut their_keys: Vec<String> = theirs.names().into_iter().map(|k| k.to_string()).collect();
        let mut our_keys: Vec<String> = ours.iter().map(|(k, _)| k.clone()).collect();
        their_keys.sort();
        our_keys.sort();
        assert_eq!(our_keys, their_keys, "{dir}: keys");
        for (key, ours) in &ours {
            let t = theirs.tensor(key).unwrap();
            match ours {
                StateTensor::F32 { shape, values } => {
                    assert_eq!((t.dtype(), t.shape()), (Dtype::F32, shape.as_slice()), "{dir}: {key}");
                    let theirs: Vec<f32> =
                        t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                    assert!(values.iter().zip(&theirs).all(|(a, b)| a.to_bits() == b.to_bits()), "{dir}: {key}");
                }
                StateTensor::I64(_) => {
                    assert!(key.ends_with(".num_batches_tracked"), "{key}");
                    assert_eq!((t.dtype(), t.shape()), (Dtype::I64, &[][..]), "{dir}: {key}");
                }
            }
        }
    }
}

/// Export → effnet's own loader → the same logits, bit for bit, for every state-dict format
/// (the lukemelas B0 fixture is refused, see `lukemelas_refuses_a_stage_first_residual`); and
/// those are the library's logits within 1e-4.
#[test]
fn exports_reimport_with_identical_logits() {
    let tmp = TmpDir::new("reimport");
    for (dir, format, lite, padding, eps) in CASES.into_iter().filter(|c| c.0 != "lukemelas_b0") {
        let arch = narrow(lite, padding, eps);
        let model = loaded(&arch, &fixture(dir).join("weights.safetensors"));
        let expected = logits(&model, input(dir));
        for format in [format, ExportFormat::Safetensors] {
            let out = tmp.0.join(format!("{dir}-{format}.safetensors"));
            export(&model, &arch, format, &out).unwrap();
            let again = logits(&loaded(&arch, &out), input(dir));
            assert_eq!(again, expected, "{dir} as {format}");
        }
        let f = npyz::NpyFile::new(std::fs::File::open(fixture(dir).join("logits.npy")).unwrap()).unwrap();
        let torch = f.into_vec::<f32>().unwrap();
        let scale = torch.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = expected.iter().zip(&torch).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-4 * scale, "{dir}: max |effnet − PyTorch| {diff} of max |logit| {scale}");
    }
}

#[test]
fn lukemelas_refuses_a_stage_first_residual() {
    let err = check_expressible(ExportFormat::Lukemelas, &narrow(false, "tf-same", 1e-3)).unwrap_err();
    assert!(err.contains("never adds the residual of a stage's first block") && err.contains("block 0"), "{err}");
    // Released widths have no such block.
    let mut b0 = Architecture::variant(Variant::B0);
    b0.num_classes = 10;
    assert_eq!(
        check_expressible(ExportFormat::Lukemelas, &b0).unwrap(),
        "EfficientNet.from_name(\"efficientnet-b0\", num_classes=10)"
    );
}

/// Each refusal is one line naming the mismatch.
#[test]
fn formats_refuse_what_they_cannot_express() {
    let arch =
        |v: Variant, padding: Padding, eps: f64| Architecture { padding, bn_eps: eps, ..Architecture::variant(v) };
    let refused = |f: ExportFormat, a: &Architecture| {
        let e = check_expressible(f, a).unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let tf_b0 = arch(Variant::B0, Padding::TfSame, 1e-3);
    assert!(
        refused(ExportFormat::Torchvision, &tf_b0)
            .contains("torchvision uses symmetric (k/2) padding, this model TF-SAME padding")
    );
    assert!(refused(ExportFormat::Timm, &tf_b0).contains("use --format timm-tf, lukemelas or onnx"));
    let sym_b0 = arch(Variant::B0, Padding::Symmetric, 1e-5);
    assert!(refused(ExportFormat::TimmTf, &sym_b0).contains("timm-tf uses TF-SAME padding"));
    assert!(refused(ExportFormat::Lukemelas, &sym_b0).contains("lukemelas uses TF-SAME padding"));
    let e = refused(ExportFormat::Timm, &arch(Variant::B0, Padding::Symmetric, 1e-3));
    assert!(e.contains("uses BatchNorm eps 1e-5, this model 1e-3"), "{e}");
    let lite = arch(Variant::Lite0, Padding::Symmetric, 1e-5);
    assert!(refused(ExportFormat::Torchvision, &lite).contains("torchvision defines no EfficientNet-Lite"));
    let b8 = arch(Variant::B8, Padding::Symmetric, 1e-3);
    assert!(refused(ExportFormat::Torchvision, &b8).contains("torchvision defines no EfficientNet-b8"));
    let mut custom = arch(Variant::B0, Padding::Symmetric, 1e-5);
    custom.stages[3].kernel = 7;
    assert!(refused(ExportFormat::Timm, &custom).contains("neither B0's nor Lite0's"));
    // torchvision builds B5-B7 with eps 1e-3, B0-B4 with 1e-5.
    assert!(check_expressible(ExportFormat::Torchvision, &arch(Variant::B5, Padding::Symmetric, 1e-3)).is_ok());
    assert!(check_expressible(ExportFormat::Torchvision, &sym_b0).is_ok());
    // effnet's own and ONNX take anything.
    assert!(check_expressible(ExportFormat::Safetensors, &custom).is_ok());
    assert!(check_expressible(ExportFormat::Onnx, &custom).is_ok());
    let model = EfficientNet::new(&Architecture { num_classes: 3, ..narrow(false, "tf-same", 1e-3) }, &Device::flex());
    let out = std::env::temp_dir().join("effnet-export-refused.safetensors");
    match export(&model, &narrow(false, "tf-same", 1e-3), ExportFormat::Torchvision, &out) {
        Err(ExportError::Unsupported { format: ExportFormat::Torchvision, .. }) => assert!(!out.exists()),
        other => panic!("{other:?}"),
    }
}

/// The released B0 in timm's layout has the 360 tensors of `timm.create_model("efficientnet_b0")`
/// (49 of them `num_batches_tracked`).
#[test]
fn released_b0_has_the_library_tensor_count() {
    let b0 = Architecture { padding: Padding::Symmetric, bn_eps: 1e-5, ..Architecture::variant(Variant::B0) };
    let model = EfficientNet::new(&b0, &Device::flex());
    let tensors = model_tensors(&model).unwrap();
    for format in [ExportFormat::Timm, ExportFormat::Torchvision] {
        let sd = state_dict(format, &b0, &tensors).unwrap();
        let tracked = sd.iter().filter(|(_, t)| matches!(t, StateTensor::I64(_))).count();
        assert_eq!((sd.len(), tracked), (360, 49), "{format}");
    }
    let sd = state_dict(ExportFormat::Timm, &b0, &tensors).unwrap();
    assert_eq!(sd[0].0, "conv_stem.weight");
    assert!(sd.iter().any(
        |(k, t)| k == "classifier.weight" && matches!(t, StateTensor::F32 { shape, .. } if shape == &[1000, 1280])
    ));
}

/// The ONNX graph: opset 17, `input [batch, 3, height, width]` → `logits [batch, classes]`,
/// the ops of each activation, SE and padding rule.
#[test]
fn onnx_graph_structure() {
    let tmp = TmpDir::new("onnx");
    for (dir, lite, padding, eps) in [
        ("timm_tf_b0", false, "tf-same", 1e-3),
        ("timm_b0", false, "symmetric", 1e-5),
        ("lite0", true, "tf-same", 1e-3),
    ] {
        let arch = narrow(lite, padding, eps);
        let model = loaded(&arch, &fixture(dir).join("weights.safetensors"));
        let out = tmp.0.join(format!("{dir}.onnx"));
        let summary = export(&model, &arch, ExportFormat::Onnx, &out).unwrap();
        let info = onnx::inspect(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(info.opset, 17);
        let dims = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(info.inputs, vec![("input".to_string(), dims(&["batch", "3", "height", "width"]))]);
        assert_eq!(info.outputs, vec![("logits".to_string(), dims(&["batch", "10"]))]);
        let blocks = arch.blocks();
        let convs =
            2 + blocks.iter().map(|b| 2 + b.expand as usize + 2 * b.se_channels.is_some() as usize).sum::<usize>();
        let ses = blocks.iter().filter(|b| b.se_channels.is_some()).count();
        let op = |name: &str| info.ops.get(name).copied().unwrap_or(0);
        assert_eq!(op("Conv"), convs, "{dir}");
        assert_eq!(op("BatchNormalization"), 2 + blocks.iter().map(|b| 2 + b.expand as usize).sum::<usize>());
        assert_eq!(op("GlobalAveragePool"), ses + 1);
        assert_eq!(op("Add"), blocks.iter().filter(|b| b.residual).count());
        assert_eq!((op("Gemm"), op("Flatten")), (1, 1));
        if lite {
            assert_eq!((op("Sigmoid"), op("Mul"), ses), (0, 0, 0));
            assert!(op("Clip") > 0);
        } else {
            // SiLU after stem, expand, depthwise, SE reduce and head; the SE gate; the SE scale.
            let silus = 2 + blocks.iter().map(|b| 2 + b.expand as usize).sum::<usize>() - blocks.len() + ses;
            assert_eq!(op("Sigmoid"), silus + ses, "{dir}");
            assert_eq!(op("Mul"), silus + ses, "{dir}");
        }
        let k_convs = 1 + blocks.len();
        assert_eq!(info.same_upper_convs, if padding == "tf-same" { k_convs } else { 0 }, "{dir}");
        assert_eq!((summary.nodes, summary.tensors), (info.ops.values().sum(), info.initializers));
    }
}

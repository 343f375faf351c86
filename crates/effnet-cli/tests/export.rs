//! `effnet export`: ONNX files checked by ONNX Runtime against `effnet forward`, state dicts
//! read back through `--weights`, a run directory as the source, and the refusals.
//!
//! ONNX Runtime comes from PyPI: `scripts/install_onnxruntime.sh` (run by `scripts/test.sh`)
//! puts it in a venv at `target/onnx-venv`; these tests fail, saying so, without it.

mod support;

use std::path::{Path, PathBuf};
use support::{assert_clean_failure, effnet, fixtures, repo, stderr, tmp_dir};

/// The venv Python with onnxruntime and numpy (`EFFNET_ORT_PYTHON` overrides).
fn ort_python() -> PathBuf {
    let python = std::env::var_os("EFFNET_ORT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/onnx-venv/bin/python"));
    let ok = std::process::Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{}: no Python with onnxruntime and numpy; run scripts/install_onnxruntime.sh (scripts/test.sh does)",
        python.display()
    );
    python
}

/// Runs scripts/check_onnx.py: ONNX Runtime's logits of `input` (the whole batch and each image
/// alone) against effnet's; returns the reported max relative difference.
fn check_onnx(model: &Path, input: &Path, logits: &Path) -> f64 {
    let o = std::process::Command::new(ort_python())
        .arg(repo().join("scripts/check_onnx.py"))
        .args([model, input, logits])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["batch_sizes"], serde_json::json!([2, 1]));
    eprintln!("{}: {out}", model.display());
    report["max_rel_diff"].as_f64().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_npy(path: &Path) -> Vec<f32> {
    npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap().into_vec::<f32>().unwrap()
}

/// The narrow PyTorch fixtures (B0 or Lite0 table, width 0.25, depth 0.5, odd 61×67 input, so
/// TF-SAME pads asymmetrically): TF-SAME swish, symmetric swish and TF-SAME ReLU6 without SE.
#[test]
fn onnx_runs_in_onnx_runtime_like_effnet_forward() {
    let tmp = tmp_dir("export-onnx");
    for (dir, variant, padding, eps) in [
        ("timm_tf_b0", "custom", "tf-same", "1e-3"),
        ("timm_b0", "custom", "symmetric", "1e-5"),
        ("lite0", "lite0", "tf-same", "1e-3"),
    ] {
        let cfg = tmp.join(format!("{dir}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[model]\nvariant = \"{variant}\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 10\npadding = \"{padding}\"\nbn_eps = {eps}\n"
            ),
        )
        .unwrap();
        let weights = fixtures().join(dir).join("weights.safetensors");
        let input = fixtures().join(dir).join("input.npy");
        let (logits, model) = (tmp.join(format!("{dir}.npy")), tmp.join(format!("{dir}.onnx")));
        let common = ["--config", s(&cfg), "--weights", s(&weights)];
        let o = effnet(&[&["forward"], &common[..], &["--input", s(&input), "--output", s(&logits)]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let o = effnet(&[&["export"], &common[..], &["--format", "onnx", "--output", s(&model)]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("initializers) for ONNX opset 17"), "{}", stderr(&o));
        let rel = check_onnx(&model, &input, &logits);
        assert!(rel <= 1e-4, "{dir}: ONNX Runtime vs effnet forward: max relative difference {rel}");
    }
}

const CLASSES: [&str; 3] = ["apple", "banana", "cherry"];

/// One epoch of a tiny TF-SAME model on a 3-class folder of 16×16 images, into `dir/run`.
fn trained_run(dir: &Path) -> PathBuf {
    for (split, n) in [("train", 4), ("valid", 2)] {
        for (c, name) in CLASSES.iter().enumerate() {
            let d = dir.join("fruit").join(split).join(name);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    image::Rgb([(c * 90) as u8, ((x * 7 + y * 13 + i * 29) % 255) as u8, 60])
                });
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let cfg = dir.join("fruit.toml");
    std::fs::write(
        &cfg,
        "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nresolution = 16\nnum_classes = 3\n\
         [data]\ndataset = \"folder\"\npath = \"fruit\"\ncrop_fraction = 1.0\nnum_workers = 0\n\
         [train]\nepochs = 1\nbatch_size = 6\n\
         [optim]\nname = \"adamw\"\nlr = 0.003\nlr_batch_size = 6\n\
         [schedule]\nname = \"constant\"\nwarmup_epochs = 0.0\n",
    )
    .unwrap();
    let run = dir.join("run");
    let o = effnet(&["train", "--config", s(&cfg), "--run-dir", s(&run)]);
    assert!(o.status.success(), "{}", stderr(&o));
    run
}

/// fine-tune → export: `--run DIR` as the source; the timm-tf state dict and the ONNX file give
/// the run's logits; what the run cannot be exported as is refused in one line.
#[test]
fn export_from_a_run_directory() {
    let tmp = tmp_dir("export-run");
    let run = trained_run(&tmp);
    let input = tmp.join("x.npy");
    {
        // An odd size, so that TF-SAME pads asymmetrically.
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2, 3, 19, 23])
            .writer(std::fs::File::create(&input).unwrap())
            .begin_nd()
            .unwrap();
        w.extend((0..2 * 3 * 19 * 23).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)).unwrap();
        w.finish().unwrap();
    }
    let run_logits = tmp.join("run.npy");
    let o = effnet(&["forward", "--run", s(&run), "--input", s(&input), "--output", s(&run_logits)]);
    assert!(o.status.success(), "{}", stderr(&o));

    let timm = tmp.join("timm_tf.safetensors");
    let o = effnet(&["export", "--run", s(&run), "--format", "timm-tf", "--output", s(&timm)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("_gen_efficientnet(\"tf_efficientnet_b0\", channel_multiplier=0.25, depth_multiplier=0.25"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o)
            .contains("note: with --variant, effnet reads a timm file as a TF port only if its path contains `tf_`")
    );
    let again = tmp.join("again.npy");
    let config = run.join("config.toml");
    let o = effnet(&[
        "forward",
        "--config",
        s(&config),
        "--weights",
        s(&timm),
        "--input",
        s(&input),
        "--output",
        s(&again),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("(timm layout)"), "{}", stderr(&o));
    assert_eq!(read_npy(&again), read_npy(&run_logits));

    let onnx = tmp.join("run.onnx");
    let o = effnet(&["export", "--run", s(&run), "--format", "onnx", "--output", s(&onnx)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rel = check_onnx(&onnx, &input, &run_logits);
    assert!(rel <= 1e-4, "run as ONNX: max relative difference {rel}");

    // What cannot be: TF-SAME into torchvision, an unknown format, a wrong extension, a run
    // directory without weights.
    let out = tmp.join("tv.safetensors");
    let e =
        assert_clean_failure(&effnet(&["export", "--run", s(&run), "--format", "torchvision", "--output", s(&out)]));
    assert!(e.contains("--format torchvision cannot express this model: torchvision uses symmetric (k/2) padding, this model TF-SAME padding"), "{e}");
    assert!(!out.exists());
    let e = assert_clean_failure(&effnet(&["export", "--run", s(&run), "--format", "keras", "--output", s(&out)]));
    assert!(e.contains("--format: unknown export format `keras`; expected one of timm, timm-tf, torchvision, lukemelas, safetensors, onnx"), "{e}");
    let e = assert_clean_failure(&effnet(&[
        "export",
        "--run",
        s(&run),
        "--format",
        "timm",
        "--output",
        s(&tmp.join("m.onnx")),
    ]));
    assert!(e.contains("m.onnx: --format timm writes a .safetensors file"), "{e}");
    let empty = tmp.join("empty-run");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(&config, empty.join("config.toml")).unwrap();
    let e = assert_clean_failure(&effnet(&["export", "--run", s(&empty), "--format", "onnx", "--output", s(&onnx)]));
    assert!(e.contains("best.bpk: missing"), "{e}");
}

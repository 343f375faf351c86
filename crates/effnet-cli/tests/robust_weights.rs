//! Weights a hostile or just unusual user brings (issue 16): other precisions, broken values,
//! and a training run with fewer than five classes.

mod support;

use support::*;

/// The timm `efficientnet_b0` fixture as f16, bf16 and f64 `.safetensors` and f16/f64 legacy
/// `.pth`: `forward` converts them to the model's f32 (saying so) and gives the reference logits
/// within the rounding of the stored precision.
#[test]
fn half_and_double_precision_weights_are_converted_on_load() {
    let dir = tmp_dir("dtypes");
    let fx = fixtures().join("timm_b0");
    let tensors = read_safetensors(&fx.join("weights.safetensors"));
    let (_, want) = read_npy(&fx.join("logits.npy"));
    let scale = want.iter().map(|x| x.abs()).fold(0.0, f32::max);
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let float_tensors = tensors.values().filter(|t| t.dtype == "F32").count();
    for (dtype, file, tolerance) in [
        ("F16", "w_f16.safetensors", 2e-2),
        ("BF16", "w_bf16.safetensors", 1e-1),
        ("F64", "w_f64.safetensors", 1e-5),
        ("F16", "w_f16.pth", 2e-2),
        ("F64", "w_f64.pth", 1e-5),
    ] {
        let converted = tensors.iter().map(|(k, t)| (k.clone(), t.to_dtype(dtype))).collect();
        let path = dir.join(file);
        if file.ends_with(".pth") {
            let storage = if dtype == "F16" { "HalfStorage" } else { "DoubleStorage" };
            write_legacy_pth(&path, &converted, dtype, storage);
        } else {
            write_safetensors(&path, &converted);
        }
        let o = forward_timm_b0(&dir, &path, &fx.join("input.npy"), &[]);
        let err = stderr(&o);
        assert!(o.status.success(), "{file}: {err}");
        let note = format!("converted {float_tensors} {} tensors to the model's f32", dtype.to_ascii_lowercase());
        assert!(err.contains(&format!("note: {}: {note}", path.display())), "{file}: {err}");
        let (shape, got) = read_npy(&dir.join("logits.npy"));
        assert_eq!(shape, [2, 10]);
        let d = max_abs_diff(&got, &want);
        eprintln!("{file}: max |Δ| = {d:e} (max |logit| {scale})");
        assert!(d <= tolerance * scale.max(1.0), "{file}: max |Δ| = {d:e}");
        if dtype != "BF16" {
            for (g, w) in got.chunks(10).zip(want.chunks(10)) {
                assert_eq!(argmax(g), argmax(w), "{file}");
            }
        }
    }
    // f32 weights load without a note.
    let o = forward_timm_b0(&dir, &fx.join("weights.safetensors"), &fx.join("input.npy"), &[]);
    assert!(o.status.success() && !stderr(&o).contains("converted"), "{}", stderr(&o));
}

/// NaN weights and a negative BatchNorm variance: a warning on load that names the tensors by
/// the file's own keys, and `forward`/`predict` say that the output is not finite.
#[test]
fn nan_weights_and_negative_variance_are_named_on_load() {
    let dir = tmp_dir("nan");
    let fx = fixtures().join("timm_b0");
    let mut tensors = read_safetensors(&fx.join("weights.safetensors"));
    let dw = tensors.get_mut("blocks.0.0.conv_dw.weight").unwrap();
    let mut v = dw.f32s();
    v[3] = f32::NAN;
    v[4] = f32::INFINITY;
    dw.set_f32s(&v);
    let var = tensors.get_mut("bn2.running_var").unwrap();
    let mut v = var.f32s();
    v[0] = -0.5;
    var.set_f32s(&v);
    let bad = dir.join("bad.safetensors");
    write_safetensors(&bad, &tensors);

    let o = forward_timm_b0(&dir, &bad, &fx.join("input.npy"), &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {}: NaN or infinite values in 1 tensors: `blocks.0.0.conv_dw.weight` (2 of 72)",
            bad.display()
        )),
        "{err}"
    );
    assert!(err.contains("negative BatchNorm running variance in 1 tensors: `bn2.running_var` (min -0.5)"), "{err}");
    assert!(err.contains("warning: 20 of the 20 logits are not finite"), "{err}");

    let img = dir.join("cat.png");
    write_png(&img, 40, 30);
    let cfg = narrow_config(&dir);
    let args = ["predict", "--config", cfg.to_str().unwrap(), "--weights", bad.to_str().unwrap()];
    let o = effnet(&[&args[..], &["--resolution", "32", img.to_str().unwrap()]].concat());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("warning: {}: the model's output is not finite", img.display())), "{err}");
    // The good weights give no such warnings.
    let good = fx.join("weights.safetensors");
    let o = effnet(&[
        "predict",
        "--config",
        cfg.to_str().unwrap(),
        "--weights",
        good.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success() && !stderr(&o).contains("warning"), "{}", stderr(&o));
}

/// A 3-class folder dataset trains (burn-train's top-5 metric used to panic: k > classes) and
/// reports top-3, which is 100% by definition; `train.init_weights` takes f16 weights.
#[test]
fn three_classes_train_with_top_k_of_the_class_count() {
    let dir = tmp_dir("three");
    let data = dir.join("data");
    for (split, n) in [("train", 4), ("valid", 2)] {
        for (c, colour) in [("cat", [200u8, 30, 30]), ("dog", [30, 200, 30]), ("owl", [30, 30, 200])] {
            let d = data.join(split).join(c);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let px = image::Rgb([colour[0], colour[1].wrapping_add(i as u8 * 9), colour[2]]);
                image::RgbImage::from_pixel(12, 12, px).save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let fx = fixtures().join("timm_b0");
    let tensors = read_safetensors(&fx.join("weights.safetensors"));
    let half = dir.join("init_f16.safetensors");
    write_safetensors(&half, &tensors.iter().map(|(k, t)| (k.clone(), t.to_dtype("F16"))).collect());
    let cfg = dir.join("three.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nresolution = 16\nnum_classes = 3\n\
             [data]\ndataset = \"folder\"\npath = {:?}\ncrop_fraction = 1.0\nnum_workers = 0\n\
             [train]\nepochs = 1\nbatch_size = 4\ninit_weights = {:?}\n\
             [optim]\nname = \"adamw\"\nlr = 0.001\nlr_batch_size = 4\n[schedule]\nname = \"constant\"\nwarmup_epochs = 0.0\n",
            data.to_str().unwrap(),
            half.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = dir.join("run");
    let o = effnet(&["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("to the model's f32") && err.contains("top3 100.00%"), "{err}");
    assert!(stdout(&o).contains("top-3 100.00%"), "{}", stdout(&o));
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let valid = csv.lines().find(|l| l.starts_with("1,valid,")).unwrap_or_else(|| panic!("{csv}"));
    assert_eq!(valid.split(',').nth(4), Some("1.000000"), "{csv}");
    let o = effnet(&["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", run.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["top_k"].as_u64(), v["top5"].as_f64()), (Some(3), Some(1.0)), "{v}");
    let o = effnet(&["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", run.to_str().unwrap()]);
    assert!(stdout(&o).contains("top-3 100.00%"), "{}", stdout(&o));
}

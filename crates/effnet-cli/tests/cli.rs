//! The `effnet` binary end to end: exit codes, JSON shapes, error messages, parity through the CLI.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{assert_error_first as assert_clean_failure, effnet, fixtures, repo, stderr, stdout, tmp_dir};

#[test]
fn help_lists_the_subcommands() {
    let o = effnet(&["--help"]);
    assert!(o.status.success());
    for cmd in ["info", "config", "forward", "predict"] {
        assert!(stdout(&o).contains(cmd), "{}", stdout(&o));
    }
}

#[test]
fn info_json_has_every_variant_with_params_and_macs() {
    let o = effnet(&["info", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 15);
    for key in ["variant", "params", "macs", "resolution", "width", "depth", "dropout"] {
        assert!(rows.iter().all(|r| r.get(key).is_some()), "missing {key}");
    }
    let b0 = rows.iter().find(|r| r["variant"] == "b0").unwrap();
    assert_eq!(b0["params"], 5_288_548);
    assert_eq!(b0["resolution"], 224);
    let macs = b0["macs"].as_f64().unwrap() / 1e9;
    assert!((macs - 0.39).abs() < 0.01, "{macs}");
    let o = effnet(&["info", "--variant", "b7", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["params"], 66_347_960);
    assert_eq!(
        (v[0]["width"].as_f64(), v[0]["depth"].as_f64(), v[0]["dropout"].as_f64()),
        (Some(2.0), Some(3.1), Some(0.5))
    );
    let macs = v[0]["macs"].as_f64().unwrap() / 1e9;
    assert!((macs - 37.0).abs() < 1.0, "{macs}");
}

#[test]
fn config_check_prints_the_stage_table_or_a_clean_error() {
    let o = effnet(&["config", "check", repo().join("configs/custom-phi.toml").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("custom-phi1.5") && out.contains("stage") && out.contains("repeats"), "{out}");

    let dir = tmp_dir("check");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[model]\nvariant = \"b0\"\ndropout = 2.0\n").unwrap();
    let err = assert_clean_failure(&effnet(&["config", "check", bad.to_str().unwrap()]));
    assert!(err.contains("bad.toml") && err.contains("model.dropout") && err.contains("2"), "{err}");
    std::fs::write(&bad, "[train]\nepoch = 3\n").unwrap();
    let err = assert_clean_failure(&effnet(&["config", "check", bad.to_str().unwrap()]));
    assert!(err.contains("bad.toml:2:1") && err.contains("unknown field `epoch`"), "{err}");
    let err = assert_clean_failure(&effnet(&["config", "check", "/nonexistent.toml"]));
    assert!(err.contains("/nonexistent.toml: cannot read"), "{err}");
}

fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let f = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    let shape = f.shape().to_vec();
    (shape, f.into_vec::<f32>().unwrap())
}

#[test]
fn forward_reproduces_pytorch_logits() {
    let dir = tmp_dir("forward");
    let cfg = dir.join("narrow.toml");
    std::fs::write(&cfg, "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 10\n").unwrap();
    let fx = fixtures().join("timm_tf_b0");
    let out = dir.join("logits.npy");
    let o = effnet(&[
        "forward",
        "--config",
        cfg.to_str().unwrap(),
        "--weights",
        fx.join("weights.pth").to_str().unwrap(),
        "--input",
        fx.join("input.npy").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, got) = read_npy(&out);
    let (_, want) = read_npy(&fx.join("logits.npy"));
    assert_eq!(shape, [2, 10]);
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(d <= 1e-4, "max |Δ| = {d:e}");

    // timm's efficientnet_b0 needs symmetric padding and eps 1e-5: the flags set them.
    let fx = fixtures().join("timm_b0");
    let o = effnet(&[
        "forward",
        "--config",
        cfg.to_str().unwrap(),
        "--weights",
        fx.join("weights.safetensors").to_str().unwrap(),
        "--padding",
        "symmetric",
        "--bn-eps",
        "1e-5",
        "--input",
        fx.join("input.npy").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, got) = read_npy(&out);
    let (_, want) = read_npy(&fx.join("logits.npy"));
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(d <= 1e-4, "max |Δ| = {d:e}");

    // The same in f16 (--precision): half precision's rounding, the same ranking.
    let o = effnet(&[
        "forward",
        "--config",
        cfg.to_str().unwrap(),
        "--weights",
        fx.join("weights.safetensors").to_str().unwrap(),
        "--padding",
        "symmetric",
        "--bn-eps",
        "1e-5",
        "--precision",
        "f16",
        "--input",
        fx.join("input.npy").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, half) = read_npy(&out);
    let d = half.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let scale = want.iter().map(|x| x.abs()).fold(0.0, f32::max);
    eprintln!("f16 logits: max |Δ| = {d:e} (max |logit| {scale})");
    assert!(d <= 2e-2 * scale.max(1.0), "f16 max |Δ| = {d:e}");
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    for (h, w) in half.chunks(10).zip(want.chunks(10)) {
        assert_eq!(argmax(h), argmax(w));
    }
}

#[test]
fn forward_rejects_bad_inputs_cleanly() {
    let dir = tmp_dir("forward-bad");
    let fx = fixtures().join("timm_tf_b0");
    let weights = fx.join("weights.safetensors");
    // A 3-D array.
    let bad = dir.join("bad.npy");
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[3, 4, 5])
            .writer(std::fs::File::create(&bad).unwrap())
            .begin_nd()
            .unwrap();
        w.extend(vec![0f32; 60]).unwrap();
        w.finish().unwrap();
    }
    let args = |input: &Path| {
        vec![
            "forward".to_string(),
            "--variant".into(),
            "b0".into(),
            "--weights".into(),
            weights.to_str().unwrap().into(),
            "--input".into(),
            input.to_str().unwrap().into(),
            "--output".into(),
            dir.join("out.npy").to_str().unwrap().into(),
        ]
    };
    let run = |a: Vec<String>| effnet(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let err = assert_clean_failure(&run(args(&bad)));
    assert!(err.contains("bad.npy") && err.contains("4-D"), "{err}");
    // A file that is not .npy at all.
    let err = assert_clean_failure(&run(args(&fx.join("meta.json"))));
    assert!(err.contains("meta.json"), "{err}");
    // The narrow weights do not fit a real B0: the error names a key and both shapes.
    let err = assert_clean_failure(&run(args(&fx.join("input.npy"))));
    assert!(err.contains("`conv_stem.weight` has shape [8, 3, 3, 3]") && err.contains("[32, 3, 3, 3]"), "{err}");
    assert!(!dir.join("out.npy").exists());
}

#[test]
fn predict_classifies_real_photos_with_imagenet_lite0() {
    let assets = repo().join("target/test-assets");
    let weights = assets.join("efficientnet-lite0-57934424.pth");
    assert!(weights.is_file(), "run scripts/fetch_test_assets.sh first");
    let o = effnet(&[
        "predict",
        "--variant",
        "lite0",
        "--weights",
        weights.to_str().unwrap(),
        "--json",
        assets.join("chelsea.png").to_str().unwrap(),
        assets.join("coffee.png").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let pytorch: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("lite0_imagenet/top5.json")).unwrap()).unwrap();
    for (i, want_top1) in [(0, 281..=285), (1, 967..=967)] {
        let top: Vec<u64> = v[i]["top"].as_array().unwrap().iter().map(|p| p["index"].as_u64().unwrap()).collect();
        assert_eq!(top.len(), 5);
        assert!(want_top1.contains(&top[0]), "{}: top-1 {}", v[i]["image"], top[0]);
        // effnet decodes and resizes with the `image` crate, PyTorch's reference with PIL: the
        // top-5 classes still agree.
        let reference: Vec<u64> = serde_json::from_value(pytorch[i]["indices"].clone()).unwrap();
        let common = top.iter().filter(|t| reference.contains(t)).count();
        assert!(common >= 4, "{top:?} vs PyTorch {reference:?}");
        let p: f64 = v[i]["top"][0]["prob"].as_f64().unwrap();
        assert!(p > 0.3 && p <= 1.0, "{p}");
        assert!(v[i]["top"][0]["label"].as_str().unwrap().len() > 2);
    }
    assert_eq!(v[1]["top"][0]["label"], "espresso");

    let err = assert_clean_failure(&effnet(&[
        "predict",
        "--variant",
        "lite0",
        "--weights",
        weights.to_str().unwrap(),
        "/nonexistent/cat.jpg",
    ]));
    assert!(err.contains("/nonexistent/cat.jpg"), "{err}");
}

#[test]
fn data_check_json_on_the_embedded_dataset() {
    let path = repo().join("datasets/digits");
    let o = effnet(&["data", "check", "--dataset", "cifar100", "--path", path.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["dataset"], "cifar100");
    assert_eq!(v["num_classes"], 10);
    assert_eq!(v["splits"]["train"]["images"], 1438);
    assert_eq!(v["splits"]["train"]["classes"], 10);
    assert_eq!(v["splits"]["test"]["images"], 359);
    assert_eq!(v["splits"]["test"]["classes"], 10);
    assert_eq!(v["splits"].as_object().unwrap().len(), 2);

    // The same through a config file, whose relative path resolves against the file's folder.
    let d = tmp_dir("data-check");
    let cfg = d.join("digits.toml");
    std::fs::write(&cfg, format!("[data]\ndataset = \"cifar100\"\npath = {:?}\n", path.to_str().unwrap())).unwrap();
    let o = effnet(&["data", "check", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("10 classes (0, 1, 2, 3, 4, …)") && out.contains("train     1438 images"), "{out}");
    std::fs::write(&cfg, "[data]\ndataset = \"cifar100\"\npath = \"nowhere\"\n").unwrap();
    let err = assert_clean_failure(&effnet(&["data", "check", "--config", cfg.to_str().unwrap()]));
    assert!(err.contains(&d.join("nowhere").display().to_string()) && err.contains("missing"), "{err}");
}

#[test]
fn data_check_bad_input_is_a_clean_error() {
    let d = tmp_dir("data-bad");
    std::fs::write(d.join("train.bin"), vec![0u8; 3074 + 10]).unwrap();
    std::fs::write(d.join("test.bin"), vec![0u8; 3074]).unwrap();
    let err = assert_clean_failure(&effnet(&["data", "check", "--dataset", "cifar100", "--path", d.to_str().unwrap()]));
    assert!(err.contains("train.bin") && err.contains("truncated"), "{err}");
    let err = assert_clean_failure(&effnet(&["data", "check", "--dataset", "imagenet", "--path", "x"]));
    assert!(err.contains("unknown dataset \"imagenet\""), "{err}");
    // A corrupt image found by --decode names the file.
    let f = d.join("folder");
    std::fs::create_dir_all(f.join("cat")).unwrap();
    std::fs::write(f.join("cat/0.png"), b"not a png").unwrap();
    std::fs::write(f.join("cat/1.png"), b"not a png either").unwrap();
    let err = assert_clean_failure(&effnet(&[
        "data",
        "check",
        "--dataset",
        "folder",
        "--path",
        f.to_str().unwrap(),
        "--decode",
    ]));
    assert!(err.contains("folder/cat/") && err.contains(".png: cannot decode"), "{err}");
}

#[test]
fn data_bench_reports_images_per_second() {
    let path = repo().join("datasets/digits");
    let args = ["data", "bench", "--dataset", "cifar100", "--path", path.to_str().unwrap()];
    let o = effnet(&[&args[..], &["--image-size", "32", "--batch-size", "16", "--batches", "3"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("3 batches, 48 images in") && out.contains("images/s"), "{out}");
}

#[test]
fn train_then_eval_through_the_cli() {
    let dir = tmp_dir("train");
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nresolution = 16\nnum_classes = 10\nbn_momentum = 0.9\n\
             [data]\ndataset = \"cifar100\"\npath = \"{}\"\ncrop_fraction = 1.0\nnum_workers = 0\n\
             [train]\nepochs = 1\nbatch_size = 128\n[optim]\nname = \"adamw\"\nlr = 0.003\nlr_batch_size = 128\n\
             [schedule]\nname = \"constant\"\nwarmup_epochs = 0.0\n",
            repo().join("datasets/digits").display()
        ),
    )
    .unwrap();
    let run = dir.join("run");
    // Data-parallel over two flex devices, chosen on the command line.
    let o =
        effnet(&["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap(), "--devices", "0,1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("done: 1 epochs"), "{}", stdout(&o));
    assert!(stderr(&o).contains("data-parallel on 2 flex devices"), "{}", stderr(&o));
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("devices = [\n    0,\n    1,\n]") || resolved.contains("devices = [0, 1]"), "{resolved}");
    let o = effnet(&["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", run.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["images"], 359);
    assert_eq!(v["split"], "test");
    let top1 = v["top1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1));
    // eval's top-1 on the test split equals the run's final validation top-1 (CIFAR: valid = test).
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    // (summary.json holds metrics.csv's six decimals.)
    assert!((summary["final"]["val_top1"].as_f64().unwrap() - top1).abs() < 1e-6);
    assert_eq!(v["precision"], "f32");
    // bf16 inference: weights and inputs cast; the same mean loss within 5 % (bf16's 8 bits) and
    // top-1 within 5 points. After one epoch this model often predicts one class for nearly
    // every image (top-1 10 %), where bf16's rounding moves a few borderline images: 2 points
    // failed once in CI at 13.6 vs 10.0 %.
    let o = effnet(&[
        "eval",
        "--config",
        cfg.to_str().unwrap(),
        "--checkpoint",
        run.to_str().unwrap(),
        "--json",
        "--precision",
        "bf16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let b: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(b["precision"], "bf16");
    let (loss, bf16_loss) = (v["loss"].as_f64().unwrap(), b["loss"].as_f64().unwrap());
    assert!((bf16_loss - loss).abs() <= 0.05 * loss, "bf16 loss {bf16_loss} vs f32 {loss}");
    assert!((b["top1"].as_f64().unwrap() - top1).abs() <= 0.05, "bf16 {} vs f32 {top1}", b["top1"]);
    // Resuming a finished run and --ema on a file are clean errors.
    let err = assert_clean_failure(&effnet(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--resume",
    ]));
    assert!(err.contains("already trained for 1 epochs"), "{err}");
    let err = assert_clean_failure(&effnet(&[
        "eval",
        "--config",
        cfg.to_str().unwrap(),
        "--checkpoint",
        run.join("latest.bpk").to_str().unwrap(),
        "--ema",
    ]));
    assert!(err.contains("--ema needs a run directory"), "{err}");
}

#[test]
fn bench_reports_json_and_rejects_unknown_kernels() {
    for mode in ["eval", "train"] {
        let out = effnet(&[
            "bench",
            "--variant",
            "b0",
            "--batch",
            "2",
            "--resolution",
            "32",
            "--classes",
            "10",
            "--mode",
            mode,
            "--warmup",
            "0",
            "--runs",
            "1",
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (j["impl"].as_str(), j["mode"].as_str(), j["batch"].as_u64()),
            (Some("effnet"), Some(mode), Some(2))
        );
        assert!(j["images_per_sec"].as_f64().unwrap() > 0.0);
        assert!(j["peak_rss_mb"].as_f64().unwrap() > 1.0);
    }
    let out = effnet(&["bench", "--kernels", "silu", "--runs", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--kernels") && err.contains("`silu`") && !err.contains("panicked"), "{err}");
}

#[test]
fn bench_takes_precision_for_eval_and_a_backend() {
    let tiny = ["bench", "--batch", "2", "--resolution", "32", "--classes", "10", "--warmup", "0", "--runs", "1"];
    let with = |extra: &[&str]| effnet(&[&tiny[..], extra].concat());
    let out = with(&["--mode", "eval", "--precision", "bf16", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["impl"].as_str(), Some("effnet[bf16]"));
    assert!(j["images_per_sec"].as_f64().unwrap() > 0.0);

    // bf16 on wgpu is refused before anything runs (cubecl-wgpu has no bf16), in bench and in
    // forward alike.
    if cfg!(feature = "wgpu") {
        let err = assert_clean_failure(&with(&["--mode", "eval", "--precision", "bf16", "--backend", "wgpu"]));
        assert!(err.contains("--precision \"bf16\"") && err.contains("no bf16"), "{err}");
        let dir = tmp_dir("bf16-wgpu");
        let args = ["forward", "--variant", "b0", "--weights", "w.pth", "--precision", "bf16", "--backend", "wgpu"];
        let out = dir.join("y.npy");
        let io = ["--input", "x.npy", "--output", out.to_str().unwrap()];
        let err = assert_clean_failure(&effnet(&[&args[..], &io[..]].concat()));
        assert!(err.contains("no bf16"), "{err}");
    }

    // Training in f16: mixed precision with loss scaling.
    let out = with(&["--mode", "train", "--precision", "f16", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["impl"].as_str(), Some("effnet[f16]"));
    assert_eq!(j["mode"].as_str(), Some("train"));

    // A backend this binary lacks (the default build has none of the GPU features).
    if !cfg!(feature = "wgpu") {
        let out = with(&["--backend", "wgpu"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--backend wgpu") && err.contains("`wgpu` feature") && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn backend_and_devices_flags_are_checked_cleanly() {
    let dir = tmp_dir("backend");
    let cfg = dir.join("b.toml");
    std::fs::write(&cfg, "[train]\nbatch_size = 128\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    // Not a backend at all: clap's usage error (exit 2) lists the choices.
    let o = effnet(&["eval", "--config", cfg, "--checkpoint", cfg, "--backend", "metal"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown backend \"metal\": expected one of flex, ndarray, wgpu, vulkan, cuda, remote")
    );
    // Three devices do not divide the global batch of 128.
    let err = assert_clean_failure(&effnet(&["train", "--config", cfg, "--devices", "0,1,2"]));
    assert!(
        err.contains("key `train.batch_size`: invalid value 128: must be divisible by the 3 devices")
            && err.contains("--devices"),
        "{err}"
    );
    // Said once (the error chain used to repeat the config error after itself).
    assert_eq!(err.matches("key `train.batch_size`").count(), 1, "{err}");
    let zero = dir.join("zero.toml");
    std::fs::write(&zero, "[train]\nbatch_size = 0\n").unwrap();
    let err = assert_clean_failure(&effnet(&["train", "--config", zero.to_str().unwrap()]));
    assert_eq!(err.matches("invalid value 0").count(), 1, "{err}");
    let err = assert_clean_failure(&effnet(&["train", "--config", cfg, "--devices", "0,0"]));
    assert!(err.contains("device 0 is listed twice"), "{err}");
    let o = effnet(&["train", "--config", cfg, "--devices", "0,x"]);
    assert_eq!(o.status.code(), Some(2));
    // A malformed server address is a usage error naming it.
    let o = effnet(&["train", "--config", cfg, "--devices", "ws://10.0.0.2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("\"ws://10.0.0.2\": missing HOST:PORT"), "{}", stderr(&o));
    // Addresses with a local backend.
    let err = assert_clean_failure(&effnet(&[
        "train",
        "--config",
        cfg,
        "--backend",
        "flex",
        "--devices",
        "ws://10.0.0.2:29501,ws://10.0.0.3:29501",
    ]));
    assert!(
        err.contains("key `runtime.devices`: invalid value \"ws://10.0.0.2:29501\": a server address needs runtime.backend = \"remote\" (not \"flex\")"),
        "{err}"
    );
}

/// Without the `remote` feature, `effnet serve` and `ws://` devices say how to get it.
#[cfg(not(feature = "remote"))]
#[test]
fn serve_and_remote_devices_need_the_remote_feature() {
    let rebuild =
        "this effnet was built without the `remote` feature; rebuild with `cargo build --release --features remote`";
    let err = assert_clean_failure(&effnet(&["serve", "--listen", "127.0.0.1:29501"]));
    assert_eq!(err.trim(), format!("error: effnet serve: {rebuild}"));
    let dir = tmp_dir("no-remote");
    let cfg = dir.join("r.toml");
    std::fs::write(&cfg, "[runtime]\nbackend = \"remote\"\ndevices = [\"ws://127.0.0.1:29501\", \"ws://127.0.0.1:29502\"]\n[train]\nbatch_size = 8\n")
        .unwrap();
    let cfg = cfg.to_str().unwrap();
    let err =
        assert_clean_failure(&effnet(&["train", "--config", cfg, "--run-dir", dir.join("run").to_str().unwrap()]));
    assert!(err.ends_with(&format!("key `runtime.backend`: invalid value \"remote\": {rebuild}\n")), "{err}");
    let err = assert_clean_failure(&effnet(&["train", "--config", cfg, "--devices", "ws://127.0.0.1:29501"]));
    assert_eq!(err.trim(), format!("error: --devices ws://127.0.0.1:29501: {rebuild}"));
}

/// CUDA cannot be built without network access; the error names the backend and the feature.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_backend_that_was_not_compiled_in_is_a_clean_error() {
    let dir = tmp_dir("no-cuda");
    let cfg = dir.join("b.toml");
    std::fs::write(&cfg, "").unwrap();
    let want = "--backend cuda: this effnet was built without the `cuda` feature; rebuild with `cargo build --release --features cuda`";
    for args in [
        vec!["train", "--config", cfg.to_str().unwrap(), "--backend", "cuda"],
        vec!["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", cfg.to_str().unwrap(), "--backend", "cuda"],
        vec![
            "forward",
            "--variant",
            "b0",
            "--weights",
            "w.pth",
            "--input",
            "x.npy",
            "--output",
            "y.npy",
            "--backend",
            "cuda",
        ],
        vec!["predict", "--variant", "b0", "--weights", "w.pth", "--backend", "cuda", "cat.jpg"],
    ] {
        let err = assert_clean_failure(&effnet(&args));
        assert_eq!(err.trim(), format!("error: {want}"), "{args:?}");
    }
}

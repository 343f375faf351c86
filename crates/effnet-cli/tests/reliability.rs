//! Hostile-but-realistic use of `effnet train`, `eval` and `data check` (issue 16): a locked run
//! directory, paths that are files, corrupt images with `skip_corrupt`, a run that stopped before
//! its end-of-run files. Each ends in success or one `error:` line naming the path or key.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::{effnet, stderr, stdout, tmp_dir};

/// A failed command: exit code 1, no panic, and one `error:` line, the last (warnings and
/// progress lines may precede it); returns that line.
fn assert_clean_failure(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert!(errors.len() == 1 && err.trim_end().ends_with(errors[0]), "{err}");
    errors[0].to_string()
}

/// `root/{train,valid}/{a,b}/<n>.png`, 8×8 images (4 training and 2 validation per class);
/// the files named in `corrupt` (e.g. `train/a/0.png`) hold bytes that are no PNG.
fn folder(root: &Path, corrupt: &[&str]) {
    for (split, n) in [("train", 4), ("valid", 2)] {
        for (c, class) in ["a", "b"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let rel = format!("{split}/{class}/{i}.png");
                if corrupt.contains(&rel.as_str()) {
                    std::fs::write(root.join(&rel), b"not a png").unwrap();
                } else {
                    let v = 60 + 120 * c as u8 + 5 * i as u8;
                    image::RgbImage::from_pixel(8, 8, image::Rgb([v, 255 - v, v / 2])).save(root.join(&rel)).unwrap();
                }
            }
        }
    }
}

/// A config training a tiny model on the folder at `data` for `epochs` epochs.
fn config(dir: &Path, data: &Path, epochs: usize, skip_corrupt: bool) -> PathBuf {
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nresolution = 8\nnum_classes = 2\n\
             [data]\ndataset = \"folder\"\npath = {:?}\ncrop_fraction = 1.0\nnum_workers = 0\nskip_corrupt = {skip_corrupt}\n\
             [train]\nepochs = {epochs}\nbatch_size = 4\nema_decay = 0.9\n\
             [optim]\nname = \"adamw\"\nlr = 0.003\nlr_batch_size = 4\n\
             [schedule]\nname = \"constant\"\nwarmup_epochs = 0.0\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_locked_run_directory_is_refused_naming_it_and_the_holder() {
    let dir = tmp_dir("lock");
    let data = dir.join("data");
    folder(&data, &[]);
    let cfg = config(&dir, &data, 1, false);
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    // This test process holds the lock, as a running `effnet train` would.
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(run.join("train.lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(run.join("train.lock"), format!("{}\n", std::process::id())).unwrap();
    let args = ["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()];
    let err = assert_clean_failure(&effnet(&args));
    assert!(err.contains(run.to_str().unwrap()) && err.contains(&format!("PID {}", std::process::id())), "{err}");
    assert!(!run.join("metrics.csv").exists() && !run.join("config.toml").exists());
    drop(lock);
    let o = effnet(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_run_dir_that_is_a_file_is_said_once() {
    let dir = tmp_dir("run-file");
    let data = dir.join("data");
    folder(&data, &[]);
    let cfg = config(&dir, &data, 1, false);
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    let err = assert_clean_failure(&effnet(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        file.to_str().unwrap(),
    ]));
    assert!(err.contains(file.to_str().unwrap()) && err.contains("not a directory"), "{err}");
    // Below a file: the OS error, said once.
    let below = file.join("run");
    let err = assert_clean_failure(&effnet(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        below.to_str().unwrap(),
    ]));
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}

#[test]
fn an_os_error_is_said_once() {
    let dir = tmp_dir("os-error");
    let missing = dir.join("missing.toml");
    for args in [
        vec!["train", "--config", missing.to_str().unwrap()],
        vec!["config", "check", missing.to_str().unwrap()],
        vec!["eval", "--config", missing.to_str().unwrap(), "--checkpoint", dir.to_str().unwrap()],
    ] {
        let err = assert_clean_failure(&effnet(&args));
        assert!(err.contains("missing.toml: cannot read: "), "{args:?}: {err}");
        assert_eq!(err.matches("os error").count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn a_data_path_that_is_a_file_is_not_a_directory() {
    let dir = tmp_dir("data-file");
    let file = dir.join("data.bin");
    std::fs::write(&file, "x").unwrap();
    for kind in ["folder", "cifar100", "cifar100-python", "flowers102"] {
        let err =
            assert_clean_failure(&effnet(&["data", "check", "--dataset", kind, "--path", file.to_str().unwrap()]));
        assert!(err.contains(file.to_str().unwrap()) && err.contains("not a directory"), "{kind}: {err}");
        assert!(!err.contains("missing"), "{kind}: {err}");
    }
}

#[test]
fn data_check_counts_the_images_skip_corrupt_skips() {
    let dir = tmp_dir("skip");
    let data = dir.join("data");
    folder(&data, &["train/a/0.png", "train/b/3.png", "valid/a/1.png"]);
    let cfg = config(&dir, &data, 1, true);
    let o = effnet(&["data", "check", "--config", cfg.to_str().unwrap(), "--decode"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("decoded 9 of 12 images; skipped as corrupt: {\"train\":2,\"valid\":1}"), "{out}");
    assert_eq!(stderr(&o).matches("warning: skipping corrupt image").count(), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("train/a/0.png"), "{}", stderr(&o));
    let o = effnet(&["data", "check", "--config", cfg.to_str().unwrap(), "--decode", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["corrupt"], serde_json::json!({"train": 2, "valid": 1}));

    // Nothing decodable in a split: said, with a file named.
    let all = ["train/a/0.png", "train/a/1.png", "train/a/2.png", "train/a/3.png"];
    let all: Vec<&str> =
        all.into_iter().chain(["train/b/0.png", "train/b/1.png", "train/b/2.png", "train/b/3.png"]).collect();
    let bad = dir.join("bad");
    folder(&bad, &all);
    let cfg = config(&dir, &bad, 1, true);
    let err = assert_clean_failure(&effnet(&["data", "check", "--config", cfg.to_str().unwrap(), "--decode"]));
    assert!(
        err.contains("split train: no decodable image: all 8 fail") && err.contains(".png: cannot decode"),
        "{err}"
    );
    // Training on it fails with that, not with a NaN loss.
    let run = dir.join("run");
    let err = assert_clean_failure(&effnet(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ]));
    assert!(err.contains("no decodable image in the split") && err.contains("/train/"), "{err}");
    assert!(!err.contains("loss became"), "{err}");
}

#[test]
fn eval_of_a_run_that_stopped_early_takes_an_epoch() {
    let dir = tmp_dir("early");
    let data = dir.join("data");
    folder(&data, &[]);
    let cfg = config(&dir, &data, 2, false);
    let run = dir.join("run");
    let o = effnet(&["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let eval = |extra: &[&str]| {
        let base = ["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", run.to_str().unwrap(), "--json"];
        effnet(&[&base[..], extra].concat())
    };
    let o = eval(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole: Value = serde_json::from_str(&stdout(&o)).unwrap();
    // A run stopped before its end-of-run files: only the per-epoch checkpoints remain.
    for f in ["latest.bpk", "best.bpk", "ema.bpk", "summary.json"] {
        let _ = std::fs::remove_file(run.join(f));
    }
    let err = assert_clean_failure(&eval(&[]));
    assert!(err.contains("latest.bpk") && err.contains("--epoch") && err.contains("1, 2"), "{err}");
    let o = eval(&["--epoch", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    // The last epoch's checkpoint is what latest.bpk held.
    assert_eq!(v["top1"], whole["top1"]);
    assert_eq!(v["images"], 4);
    let o = eval(&["--epoch", "1", "--ema"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The same through --run DIR (the run's own config.toml).
    let err = assert_clean_failure(&effnet(&["eval", "--run", run.to_str().unwrap()]));
    assert!(err.contains("best.bpk: missing") && err.contains("--epoch N"), "{err}");
    let o = effnet(&["eval", "--run", run.to_str().unwrap(), "--epoch", "2", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["top1"], whole["top1"]);
    let err = assert_clean_failure(&eval(&["--epoch", "7"]));
    assert!(err.contains("model-7.bpk") && err.contains("1, 2"), "{err}");
    // A per-epoch checkpoint file given directly: read as what it is, not as a weights file.
    let file = run.join("checkpoint/model-2.bpk");
    let o = effnet(&["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", file.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["top1"], whole["top1"]);
    // --epoch reads a run directory.
    let o =
        effnet(&["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", file.to_str().unwrap(), "--epoch", "2"]);
    let err = assert_clean_failure(&o);
    assert!(err.contains("--epoch") && err.contains("run directory"), "{err}");
}

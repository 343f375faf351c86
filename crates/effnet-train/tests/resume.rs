//! The run directory's guarantees (README "Reliability"): one run at a time, `--resume` only with
//! a compatible config, the newest loadable checkpoint with a finite validation loss, missing
//! end-of-run files completed, stale temporaries removed, old checkpoints pruned after a resume.
//! One tiny 2-epoch run is trained once; each case works on a copy of it.

use effnet_test_support as common;

use effnet_config::EffnetConfig;
use effnet_train::progress::EpochRow;
use effnet_train::trainer::{ConfigSource, read_metrics, train};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The tiny deterministic run of `train.rs`, with `extra` TOML appended.
fn tiny(epochs: usize, extra: &str) -> ConfigSource {
    let text = format!(
        "{}[train]\nepochs = {epochs}\nbatch_size = 128\nseed = 7\nema_decay = 0.9\n{}{extra}",
        common::tiny_model_and_data(),
        common::tiny_optim_and_schedule()
    );
    let file = PathBuf::from("tiny.toml");
    ConfigSource { config: EffnetConfig::from_toml_str(&text, &file).unwrap(), file }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("effnet-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() { copy_dir(&src, &dst) } else { std::fs::copy(&src, &dst).map(drop).unwrap() }
    }
}

/// A copy of the finished 2-epoch run (trained on first use).
fn copy_of_base(name: &str) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        // In cargo's per-target scratch folder: nothing removes it when the tests end, so each
        // run removes the bases of earlier runs whose process is gone (one per process: two
        // runs of this binary at once must not share one).
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if Path::new("/proc/self").exists() {
            for e in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("resume-base-")
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = scratch.join(format!("resume-base-{}", std::process::id()));
        train(&tiny(2, ""), &dir, false).unwrap();
        dir
    });
    let dir = tmp(name);
    copy_dir(base, &dir);
    dir
}

fn valid_rows(dir: &Path) -> Vec<EpochRow> {
    read_metrics(&dir.join("metrics.csv")).into_iter().filter(|r| r.split == "valid").collect()
}

/// Epochs with a model checkpoint file.
fn checkpoint_epochs(dir: &Path) -> Vec<usize> {
    let mut v: Vec<usize> = std::fs::read_dir(dir.join("checkpoint"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("model-")?.strip_suffix(".bpk")?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn a_second_run_into_a_locked_run_directory_is_refused() {
    let _serial = common::serial();
    let dir = copy_of_base("locked");
    // Another process's lock, as `effnet train` takes it: flock on train.lock holding the PID.
    let lock =
        std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(dir.join("train.lock")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(dir.join("train.lock"), "4242\n").unwrap();
    let before = std::fs::read(dir.join("metrics.csv")).unwrap();
    let e = train(&tiny(3, ""), &dir, true).unwrap_err().to_string();
    assert!(e.contains(&dir.display().to_string()) && e.contains("PID 4242"), "{e}");
    assert_eq!(std::fs::read(dir.join("metrics.csv")).unwrap(), before);
    // Released (here by closing; a crashed holder's lock goes with its process): the run goes on.
    drop(lock);
    train(&tiny(3, ""), &dir, true).unwrap();
    assert_eq!(valid_rows(&dir).iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_refuses_a_changed_model_before_writing_anything() {
    let _serial = common::serial();
    let dir = copy_of_base("changed");
    let config = std::fs::read(dir.join("config.toml")).unwrap();
    let mut src = tiny(3, "");
    src.config.model.width = Some(0.5);
    src.config.train.label_smoothing = 0.3;
    let e = train(&src, &dir, true).unwrap_err().to_string();
    assert!(e.contains("config.toml") && e.contains("model.width 0.25 → 0.5"), "{e}");
    assert!(e.contains("train.label_smoothing ") && e.contains(" → 0.3") && e.contains("train.epochs"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(std::fs::read(dir.join("config.toml")).unwrap(), config, "config.toml was rewritten");
    assert_eq!(checkpoint_epochs(&dir), [1, 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_epoch_before() {
    let _serial = common::serial();
    let dir = copy_of_base("truncated");
    let model = dir.join("checkpoint/model-2.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let s = train(&tiny(3, ""), &dir, true).unwrap();
    assert_eq!(s.epochs, 3);
    // Epoch 2 was trained again after epoch 1's checkpoint: one row per epoch.
    assert_eq!(valid_rows(&dir).iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(std::fs::read(&model).unwrap().len() >= bytes.len(), "epoch 2's checkpoint was not written again");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_with_a_nan_validation_loss_is_not_resumed_from() {
    let _serial = common::serial();
    let dir = copy_of_base("nan");
    let csv = dir.join("metrics.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let poisoned: Vec<String> = text
        .lines()
        .map(|l| match EpochRow::from_csv(l) {
            Some(r) if r.epoch == 2 && r.split == "valid" => EpochRow { loss: f64::NAN, ..r }.to_csv(),
            _ => l.to_string(),
        })
        .collect();
    std::fs::write(&csv, poisoned.join("\n") + "\n").unwrap();
    // What the NaN guard's "last good checkpoint" names.
    assert_eq!(effnet_train::run_dir::last_good_checkpoint(&dir, false), Some(1));
    train(&tiny(3, ""), &dir, true).unwrap();
    let rows = valid_rows(&dir);
    assert_eq!(rows.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(rows.iter().all(|r| r.loss.is_finite()), "{rows:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_completes_the_end_of_run_files_of_a_finished_run() {
    let _serial = common::serial();
    let dir = copy_of_base("finish");
    let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    for f in ["summary.json", "ema.bpk", "loss.png"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    // Temporaries of a killed run: ours (write-then-rename) and burnpack's; and a user's own
    // `*.tmp` files, which are not ours to delete.
    std::fs::write(dir.join(".summary.json.a1b2C3d4.effnet-tmp"), "{").unwrap();
    std::fs::write(dir.join("checkpoint/.model-3.bpk.999-0.tmp"), [0u8; 16]).unwrap();
    std::fs::write(dir.join("notes.tmp"), "mine").unwrap();
    std::fs::write(dir.join("summary.tmp"), "mine too").unwrap();
    let s = train(&tiny(2, ""), &dir, true).unwrap();
    assert_eq!(s.epochs, 2);
    for f in ["summary.json", "ema.bpk", "loss.png", "latest.bpk"] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&summary).unwrap(),
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap(),
    );
    assert_eq!(a["final"], b["final"]);
    assert_eq!(a["best"], b["best"]);
    let (x, y) = (a["ema"]["val_top1"].as_f64().unwrap(), b["ema"]["val_top1"].as_f64().unwrap());
    assert!((x - y).abs() < 1e-9, "EMA top-1 {x} vs {y}");
    assert!(!dir.join(".summary.json.a1b2C3d4.effnet-tmp").exists());
    assert!(!dir.join("checkpoint/.model-3.bpk.999-0.tmp").exists());
    assert_eq!(std::fs::read_to_string(dir.join("notes.tmp")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(dir.join("summary.tmp")).unwrap(), "mine too");
    // No temporary of this run is left behind.
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(effnet_config::fsio::TEMP_SUFFIX))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Now complete: refused as before.
    let e = train(&tiny(2, ""), &dir, true).unwrap_err().to_string();
    assert!(e.contains("already trained for 2 epochs"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn old_checkpoints_are_pruned_after_a_resume() {
    let _serial = common::serial();
    let dir = copy_of_base("prune");
    // log_every and num_workers may change on resume.
    let mut src = tiny(4, "");
    src.config.train.log_every = 3;
    src.config.data.num_workers = 1;
    train(&src, &dir, true).unwrap();
    assert!(read_metrics(&dir.join("metrics.csv")).iter().any(|r| r.epoch == 4));
    // The last two epochs and the best one.
    let best = valid_rows(&dir).iter().fold((0, f64::MIN), |b, r| if r.top1 > b.1 { (r.epoch, r.top1) } else { b }).0;
    let mut want = vec![3, 4];
    if best < 3 {
        want.insert(0, best);
    }
    assert_eq!(checkpoint_epochs(&dir), want);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_batch_larger_than_the_training_split_is_refused() {
    let _serial = common::serial();
    let mut src = tiny(1, "");
    src.config.train.batch_size = 100_000;
    let dir = tmp("batch");
    let e = train(&src, &dir, false).unwrap_err().to_string();
    assert!(e.contains("key `train.batch_size`: invalid value 100000") && e.contains("1438"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_folder_of_the_users_own_is_refused_untouched() {
    let dir = tmp("users-own");
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        ("config.toml", "# my own, commented\n[train]\nepochs = 1\n"),
        ("metrics.csv", "a,b\n1,2\n"),
        ("notes.tmp", "mine"),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    for resume in [false, true] {
        let e = train(&tiny(1, ""), &dir, resume).unwrap_err().to_string();
        assert!(e.contains("not empty and not an effnet run directory"), "{e}");
        assert!(e.contains("config.toml, metrics.csv, notes.tmp"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        // Nothing changed, nothing added (no lock file, no marker).
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, files.map(|(n, _)| n.to_string()));
        for (name, text) in files {
            assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), text);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_is_read_whole_or_refused_in_one_line() {
    use effnet_train::run_dir::load_training_checkpoint;
    let _serial = common::serial();
    let dir = copy_of_base("eager");
    let cfg = tiny(2, "").config;
    let arch = cfg.model.architecture().unwrap();
    let device = burn::prelude::Device::flex();
    let path = dir.join("checkpoint/model-2.bpk");
    // Loaded from memory: the file may go away right after.
    let bytes = std::fs::read(&path).unwrap();
    assert!(load_training_checkpoint(&path, &arch, cfg.train.ema_decay, &device).is_ok());
    std::fs::remove_file(&path).unwrap();
    let e = load_training_checkpoint(&path, &arch, cfg.train.ema_decay, &device).unwrap_err().to_string();
    assert!(e.contains("model-2.bpk") && e.lines().count() == 1, "{e}");
    // A FIFO in its place is refused, not opened (which would block).
    assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
    let e = load_training_checkpoint(&path, &arch, cfg.train.ema_decay, &device).unwrap_err().to_string();
    assert!(e.contains("a FIFO, not a regular file"), "{e}");
    std::fs::remove_file(&path).unwrap();
    // A truncated one is an error too.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_training_checkpoint(&path, &arch, cfg.train.ema_decay, &device).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

//! Issue 27, "reliability, round two": nothing the user owns is overwritten or followed, no
//! hang on a special file, no unbounded read, no raw control characters on stdout. Each case
//! ends in success or one `error:` line naming the file, key or line.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// `effnet args`, killed after `secs` seconds: a test of a former hang fails instead of hanging.
fn effnet_within(secs: u64, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run effnet");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!("effnet {args:?} still running after {secs} s (stderr: {})", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success(), "mkfifo {}", path.display());
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// `forward` of the narrow reference model on its reference input, writing to `output`.
fn forward_to(dir: &Path, input: &Path, output: &Path) -> Output {
    let cfg = narrow_config(dir);
    let weights = fixtures().join("timm_b0/weights.safetensors");
    effnet_within(
        120,
        &[
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
            output.to_str().unwrap(),
        ],
    )
}

/// Items 1, 2, 8: `--output` never replaces or writes through a FIFO, a device or a symlink,
/// never follows a planted `OUTPUT.tmp`, never deletes the user's own `OUTPUT.npy.tmp`, and
/// leaves no temporary behind.
#[test]
fn forward_output_never_replaces_special_files_or_follows_planted_temporaries() {
    let dir = tmp_dir("output-targets");
    let input = fixtures().join("timm_b0/input.npy");
    let fifo = dir.join("fifo.npy");
    mkfifo(&fifo);
    let victim = dir.join("victim");
    std::fs::write(&victim, "mine").unwrap();
    let link = dir.join("link.npy");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for (target, what) in [(&fifo, "a FIFO"), (&link, "a symbolic link")] {
        let err = assert_one_line_failure(&forward_to(&dir, &input, target));
        assert!(err.contains(target.to_str().unwrap()) && err.contains(what), "{err}");
    }
    assert!(is_fifo(&fifo));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
    // A character device: as root, a rename would have turned /dev/null into a regular file.
    let err = assert_one_line_failure(&forward_to(&dir, &input, Path::new("/dev/null")));
    assert!(err.contains("/dev/null") && err.contains("character device"), "{err}");
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    }

    // The old predictable temporary names: a planted symlink and the user's own file.
    let out = dir.join("out.npy");
    std::os::unix::fs::symlink(&victim, dir.join("out.npy.tmp")).unwrap();
    let planted = dir.join("logits.npy.tmp");
    std::fs::write(&planted, "the user's").unwrap();
    let o = forward_to(&dir, &input, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_npy(&out).0, [2, 10]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
    let o = forward_to(&dir, &input, &dir.join("logits.npy"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&planted).unwrap(), "the user's");
    let left: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("effnet-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Item 12: a FIFO as `--config` or `forward --input` is refused at once, not opened.
#[test]
fn a_fifo_as_config_or_input_is_refused_without_blocking() {
    let dir = tmp_dir("fifo-inputs");
    let fifo = dir.join("in.fifo");
    mkfifo(&fifo);
    let err = assert_one_line_failure(&effnet_within(60, &["config", "check", fifo.to_str().unwrap()]));
    assert!(err.contains(fifo.to_str().unwrap()) && err.contains("a FIFO, not a regular file"), "{err}");
    let err = assert_clean_failure(&forward_to(&dir, &fifo, &dir.join("out.npy")));
    assert!(err.contains(fifo.to_str().unwrap()) && err.contains("a FIFO, not a regular file"), "{err}");
    assert!(!dir.join("out.npy").exists());
    // Item 13: /dev/zero as a config is refused, not read until memory runs out.
    let err = assert_one_line_failure(&effnet_within(60, &["config", "check", "/dev/zero"]));
    assert!(err.contains("/dev/zero") && err.contains("character device"), "{err}");
}

/// `root/<class>/<n>.png` for each class name, two 8×8 images per class.
fn flat_folder(root: &Path, classes: &[&str]) {
    for (c, class) in classes.iter().enumerate() {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..2u8 {
            let v = 40 * c as u8 + 10 * i;
            image::RgbImage::from_pixel(8, 8, image::Rgb([v, 255 - v, v / 2]))
                .save(d.join(format!("{i}.png")))
                .unwrap();
        }
    }
}

fn data_check_config(dir: &Path, root: &Path, split_file: &str) -> PathBuf {
    let cfg = dir.join("data.toml");
    std::fs::write(
        &cfg,
        format!("[data]\ndataset = \"folder\"\npath = {:?}\nsplit_file = {split_file:?}\n", root.to_str().unwrap()),
    )
    .unwrap();
    cfg
}

/// Item 4: split files cannot reach outside the dataset root, by `..`, an absolute path, a
/// symlink, or a split file that itself lies elsewhere.
#[test]
fn split_files_stay_inside_the_dataset_root() {
    let dir = tmp_dir("split-escape");
    let root = dir.join("data");
    flat_folder(&root, &["cat", "dog"]);
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    write_png(&outside.join("x.png"), 8, 8);
    std::fs::write(outside.join("secret.txt"), "topsecret line\n").unwrap();
    std::os::unix::fs::symlink(outside.join("x.png"), root.join("cat/link.png")).unwrap();
    let check = |lines: &str| {
        std::fs::write(root.join("splits.txt"), format!("train cat/0.png\nvalid dog/0.png\n{lines}\n")).unwrap();
        let cfg = data_check_config(&dir, &root, "splits.txt");
        effnet_within(60, &["data", "check", "--config", cfg.to_str().unwrap()])
    };
    for (line, why) in [
        ("train cat/../../outside/x.png", "goes up with `..`"),
        ("train /etc/hostname", "is an absolute path"),
        ("train cat/link.png", "through a symbolic link"),
    ] {
        let err = assert_one_line_failure(&check(line));
        assert!(err.contains("splits.txt") && err.contains("line 3") && err.contains(why), "{line}: {err}");
    }
    let o = check("train cat/1.png");
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg = data_check_config(&dir, &root, "../outside/secret.txt");
    let err = assert_one_line_failure(&effnet_within(60, &["data", "check", "--config", cfg.to_str().unwrap()]));
    assert!(err.contains("split_file") && err.contains("leaves the dataset root"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
}

/// Item 16: a file listed twice, or in two splits, is said once.
#[test]
fn split_file_duplicates_are_warned_about() {
    let dir = tmp_dir("split-dups");
    let root = dir.join("data");
    flat_folder(&root, &["cat", "dog"]);
    std::fs::write(root.join("splits.txt"), "train cat/0.png\ntrain cat/0.png\ntrain dog/0.png\nvalid dog/0.png\n")
        .unwrap();
    let cfg = data_check_config(&dir, &root, "splits.txt");
    let o = effnet_within(60, &["data", "check", "--config", cfg.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(err.contains("1 image(s) listed twice in one split") && err.contains("1 listed in two splits"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["splits"]["train"]["images"], 2, "{v}");
}

/// Item 5: terminal control characters in class names are printed escaped, never raw.
#[test]
fn control_characters_in_class_names_are_escaped_on_stdout() {
    let dir = tmp_dir("control-names");
    let root = dir.join("data");
    let evil = "a\u{1b}[2J\u{1b}]0;title\u{7}\u{8}\rb";
    flat_folder(&root, &[evil, "plain"]);
    let o = effnet_within(60, &["data", "check", "--dataset", "folder", "--path", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains("a\\u{1b}[2J\\u{1b}]0;title\\u{7}\\u{8}\\rb"), "{out}");

    // predict: names from a classes.txt beside the config.
    let cfg = narrow_config(&dir);
    let mut names: Vec<String> = (0..10).map(|i| format!("class{i}\u{1b}[31m\u{7}")).collect();
    std::fs::write(dir.join("classes.txt"), names.join("\n") + "\n").unwrap();
    let img = dir.join("img.png");
    write_png(&img, 32, 32);
    let weights = fixtures().join("timm_b0/weights.safetensors");
    let args = ["predict", "--config", cfg.to_str().unwrap(), "--weights", weights.to_str().unwrap()];
    let o = effnet_within(120, &[&args[..], &["--resolution", "32", img.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    assert!(out.contains("\\u{1b}[31m\\u{7}"), "{out}");

    // Item 15: a classes.txt that does not fit the model is said once.
    names.truncate(7);
    std::fs::write(dir.join("classes.txt"), names.join("\n") + "\n").unwrap();
    let o = effnet_within(120, &[&args[..], &["--resolution", "32", img.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("classes.txt names 7 classes but the model has 10").count(), 1, "{err}");
    assert!(stdout(&o).contains("class 0") || stdout(&o).contains("class "), "{}", stdout(&o));
}

/// Item 7: non-UTF-8 class folder names are refused rather than merged into one `�` class.
#[test]
fn non_utf8_class_folders_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tmp_dir("non-utf8");
    let root = dir.join("data");
    for raw in [&b"\xff"[..], &b"\xfe"[..]] {
        let d = root.join(std::ffi::OsStr::from_bytes(raw));
        std::fs::create_dir_all(&d).unwrap();
        write_png(&d.join("0.png"), 8, 8);
        write_png(&d.join("1.png"), 8, 8);
    }
    let err = assert_one_line_failure(&effnet_within(
        60,
        &["data", "check", "--dataset", "folder", "--path", root.to_str().unwrap()],
    ));
    assert!(err.contains("not valid UTF-8"), "{err}");
}

/// `root/{train,valid}/{a,b}/<n>.png` and a tiny config training on it (`extra` appended).
fn tiny_run_config(dir: &Path, extra: &str) -> PathBuf {
    let root = dir.join("data");
    for (split, n) in [("train", 4u8), ("valid", 2)] {
        for (c, class) in ["a", "b"].iter().enumerate() {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let v = 60 + 120 * c as u8 + 5 * i;
                image::RgbImage::from_pixel(8, 8, image::Rgb([v, 255 - v, v / 2]))
                    .save(d.join(format!("{i}.png")))
                    .unwrap();
            }
        }
    }
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nresolution = 8\nnum_classes = 2\n\
             [data]\ndataset = \"folder\"\npath = {:?}\ncrop_fraction = 1.0\nnum_workers = 0\n\
             [train]\nepochs = 1\nbatch_size = 4\n{extra}\n\
             [optim]\nname = \"adamw\"\nlr = 0.003\nlr_batch_size = 4\n\
             [schedule]\nname = \"constant\"\nwarmup_epochs = 0.0\n",
            root.to_str().unwrap()
        ),
    )
    .unwrap();
    cfg
}

/// Item 3: `train --run-dir` on a folder of the user's own is refused in one line naming the
/// files, and nothing there is touched; an empty folder is fine.
#[test]
fn train_refuses_a_run_directory_of_the_users_own() {
    let dir = tmp_dir("users-run-dir");
    let cfg = tiny_run_config(&dir, "");
    let mine = dir.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("config.toml"), "# my commented config\n").unwrap();
    std::fs::write(mine.join("notes.tmp"), "notes").unwrap();
    let args = ["train", "--config", cfg.to_str().unwrap(), "--run-dir", mine.to_str().unwrap()];
    let err = assert_one_line_failure(&effnet_within(120, &args));
    assert!(err.contains(mine.to_str().unwrap()) && err.contains("config.toml, notes.tmp"), "{err}");
    assert_eq!(std::fs::read_to_string(mine.join("config.toml")).unwrap(), "# my commented config\n");
    assert_eq!(std::fs::read_to_string(mine.join("notes.tmp")).unwrap(), "notes");
    assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 2);
}

/// Item 14: more micro-batches to accumulate than an epoch has is refused before training.
#[test]
fn grad_accumulation_beyond_an_epoch_is_refused() {
    let dir = tmp_dir("accumulation");
    let cfg = tiny_run_config(&dir, "grad_accumulation = 3");
    let run = dir.join("run");
    let err = assert_clean_failure(&effnet_within(
        120,
        &["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()],
    ));
    assert!(err.contains("train.grad_accumulation") && err.contains("2 micro-batches"), "{err}");
    assert!(!run.join("metrics.csv").exists(), "no training");
}

/// Items 1, 2: `export --output` does not follow a symlink planted at the old temporary name
/// `OUTPUT.tmp`, and refuses a symlink or a FIFO as the output itself.
#[test]
fn export_does_not_follow_planted_symlinks() {
    let dir = tmp_dir("export-planted");
    let cfg = dir.join("timm_b0.toml");
    std::fs::write(
        &cfg,
        "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 10\npadding = \"symmetric\"\nbn_eps = 1e-5\n",
    )
    .unwrap();
    let weights = fixtures().join("timm_b0/weights.safetensors");
    let victim = dir.join("victim");
    std::fs::write(&victim, "mine").unwrap();
    let out = dir.join("out.onnx");
    std::os::unix::fs::symlink(&victim, dir.join("out.onnx.tmp")).unwrap();
    let export = |output: &Path| {
        effnet_within(
            120,
            &[
                "export",
                "--config",
                cfg.to_str().unwrap(),
                "--weights",
                weights.to_str().unwrap(),
                "--format",
                "onnx",
                "--output",
                output.to_str().unwrap(),
            ],
        )
    };
    let o = export(&out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::metadata(&out).unwrap().len() > 1000);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
    let link = dir.join("link.onnx");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = dir.join("fifo.onnx");
    mkfifo(&fifo);
    for (target, what) in [(&link, "a symbolic link"), (&fifo, "a FIFO")] {
        let err = assert_one_line_failure(&export(target));
        assert!(err.contains(target.to_str().unwrap()) && err.contains(what), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
    assert!(is_fifo(&fifo));
}

/// Item 19: `eval --checkpoint RUN/checkpoint` says to pass the run directory, and which epochs
/// it has, instead of "the run has no per-epoch checkpoints".
#[test]
fn eval_of_a_runs_checkpoint_folder_points_at_the_run() {
    let dir = tmp_dir("eval-ckpt-folder");
    let cfg = narrow_config(&dir);
    let ckpt = dir.join("run/checkpoint");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("model-3.bpk"), b"x").unwrap();
    let err = assert_one_line_failure(&effnet_within(
        60,
        &["eval", "--config", cfg.to_str().unwrap(), "--checkpoint", ckpt.to_str().unwrap()],
    ));
    assert!(err.contains("pass the run directory") && err.contains("epochs 3"), "{err}");
    assert!(!err.contains("no per-epoch checkpoints"), "{err}");
}

/// Item 11: a set-up that cannot fit in memory is refused in one line before anything is
/// allocated (it ended in SIGABRT), and bench's flags are bounded as the config's are.
#[test]
fn bench_refuses_what_cannot_fit() {
    for (args, want) in [
        (&["bench", "--batch", "50000", "--resolution", "50000"][..], "--resolution: invalid value 50000"),
        (&["bench", "--batch", "4096", "--resolution", "4096", "--mode", "train"][..], "needs at least"),
        (&["bench", "--classes", "2000000"][..], "--classes: invalid value 2000000"),
    ] {
        let started = Instant::now();
        let err = assert_one_line_failure(&effnet_within(60, args));
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(30), "{args:?}: {:?}", started.elapsed());
    }
}

/// Item 18: set-ups that run to the end but cannot learn much say so, once each.
#[test]
fn degenerate_set_ups_are_warned_about_once() {
    let dir = tmp_dir("degenerate");
    // Only the classifier trains, on a random backbone.
    let cfg = tiny_run_config(&dir, "freeze_backbone_epochs = 1");
    let run = dir.join("frozen");
    let o = effnet_within(300, &["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.matches("only the classifier trains, on a randomly initialised backbone").count(), 1, "{err}");
    // Four devices sharing a batch of four: one image per BatchNorm.
    let cfg = tiny_run_config(&dir, "[runtime]\ndevices = [0, 1, 2, 3]");
    let run = dir.join("spread");
    let o = effnet_within(300, &["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("each device's BatchNorm sees 1 image(s) per step").count(), 1, "{err}");
}

/// Item 16: `eval` on a dataset with fewer classes than the model says so.
#[test]
fn eval_on_fewer_classes_than_the_model_warns() {
    let dir = tmp_dir("eval-fewer");
    let cfg = tiny_run_config(&dir, "");
    let run = dir.join("run");
    let o = effnet_within(300, &["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let one = dir.join("one");
    flat_folder(&one, &["a"]);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let data = dir.join("data");
    let cfg_one = dir.join("one.toml");
    std::fs::write(
        &cfg_one,
        text.replace(&format!("{:?}", data.to_str().unwrap()), &format!("{:?}", one.to_str().unwrap())),
    )
    .unwrap();
    let o = effnet_within(300, &["eval", "--config", cfg_one.to_str().unwrap(), "--checkpoint", run.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("has 1 classes but the model 2").count(), 1, "{err}");
}

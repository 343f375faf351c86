//! A trained run directory as the model of `predict`, `eval` and `forward` (`--run DIR`): its
//! config, its weights and the class names recorded in `classes.txt`.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use support::{TmpDir, assert_one_line_failure as assert_clean_failure, effnet, stderr, stdout};

const CLASSES: [&str; 5] = ["apple", "banana", "cherry", "damson", "elder"];

/// `root/{train,valid}/<class>/<n>.png`: 16×16 images, one colour per class plus a little noise,
/// 6 training and 2 validation images per class.
fn folder_dataset(root: &Path) {
    let colours = [[220u8, 30, 30], [230, 220, 40], [120, 0, 40], [60, 40, 140], [30, 160, 60]];
    for (split, n) in [("train", 6), ("valid", 2)] {
        for (c, name) in CLASSES.iter().enumerate() {
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    let noise = ((x * 7 + y * 13 + i * 29) % 17) as u8;
                    image::Rgb(colours[c].map(|v| v.saturating_add(noise)))
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

/// Trains one epoch of a tiny model on the folder dataset into `dir/run`. The config names the
/// data relative to its own folder (`path = "fruit"`), which is neither the run directory nor the
/// working directory: `--run` must find it through the run's config.toml.
fn trained_run(dir: &Path) -> PathBuf {
    let data = dir.join("fruit");
    folder_dataset(&data);
    let cfg = dir.join("fruit.toml");
    std::fs::write(
        &cfg,
        "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nresolution = 16\nnum_classes = 5\n\
             [data]\ndataset = \"folder\"\npath = \"fruit\"\ncrop_fraction = 1.0\nnum_workers = 0\n\
         mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n\
             [train]\nepochs = 1\nbatch_size = 10\nema_decay = 0.9\n\
             [optim]\nname = \"adamw\"\nlr = 0.003\nlr_batch_size = 10\n\
         [schedule]\nname = \"constant\"\nwarmup_epochs = 0.0\n",
    )
    .unwrap();
    let run = dir.join("run");
    let o = effnet(&["train", "--config", cfg.to_str().unwrap(), "--run-dir", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    run
}

#[test]
fn a_run_directory_names_its_classes_in_predict_eval_and_forward() {
    let dir = TmpDir(std::env::temp_dir().join(format!("effnet-cli-rundir-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let run = trained_run(&dir.0);
    let run_s = run.to_str().unwrap();

    // The folder names, in label order, one per line.
    assert_eq!(std::fs::read_to_string(run.join("classes.txt")).unwrap(), CLASSES.map(|c| format!("{c}\n")).concat());

    // predict --run: the run's class names, not `class N` and not ImageNet's.
    let photo = dir.0.join("fruit/valid/cherry/0.png");
    let o = effnet(&["predict", "--run", run_s, "--top", "5", photo.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for name in CLASSES {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert!(!out.contains("class "), "{out}");
    assert!(stderr(&o).contains("best.bpk"), "{}", stderr(&o));
    let o = effnet(&["predict", "--run", run_s, "--json", "--top", "2", photo.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    for p in v[0]["top"].as_array().unwrap() {
        let i = p["index"].as_u64().unwrap() as usize;
        assert_eq!(p["label"], CLASSES[i]);
    }
    // The same names with --config/--weights pointing into the run directory.
    let o = effnet(&[
        "predict",
        "--config",
        run.join("config.toml").to_str().unwrap(),
        "--weights",
        run.join("latest.bpk").to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cherry") && !stdout(&o).contains("class "), "{}", stdout(&o));

    // predict --run preprocesses as the run validated (its [data] crop_fraction 1.0, mean and std
    // 0.5), not with ImageNet's defaults: the same output as those flags given explicitly.
    let p = photo.to_str().unwrap();
    let (config, best) = (run.join("config.toml"), run.join("best.bpk"));
    let explicit = ["--config", config.to_str().unwrap(), "--weights", best.to_str().unwrap(), "--json", p];
    let run_out = effnet(&["predict", "--run", run_s, "--json", p]);
    let flags = ["--crop-fraction", "1", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"];
    let same = effnet(&[&["predict"][..], &explicit, &flags].concat());
    let imagenet = effnet(&[&["predict"][..], &explicit].concat());
    assert!(run_out.status.success() && same.status.success() && imagenet.status.success(), "{}", stderr(&same));
    assert_eq!(stdout(&run_out), stdout(&same));
    assert_ne!(stdout(&run_out), stdout(&imagenet));

    // eval --run --json: per-class accuracy and a confusion matrix over every validation image.
    let o = effnet(&["eval", "--run", run_s, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["images"], 10);
    assert!(v["checkpoint"].as_str().unwrap().ends_with("best.bpk"), "{}", v["checkpoint"]);
    let per_class = v["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 5);
    let cm: Vec<Vec<u64>> = serde_json::from_value(v["confusion_matrix"].clone()).unwrap();
    assert_eq!(cm.len(), 5);
    assert!(cm.iter().all(|r| r.len() == 5));
    assert_eq!(cm.iter().flatten().sum::<u64>(), 10);
    let diagonal: u64 = (0..5).map(|i| cm[i][i]).sum();
    assert!((v["top1"].as_f64().unwrap() - diagonal as f64 / 10.0).abs() < 1e-9);
    for (i, c) in per_class.iter().enumerate() {
        assert_eq!(c["name"], CLASSES[i]);
        assert_eq!(c["images"], 2);
        assert_eq!(c["correct"], cm[i][i]);
        assert!((c["top1"].as_f64().unwrap() - cm[i][i] as f64 / 2.0).abs() < 1e-9);
    }
    // Text: the worst classes by name.
    let o = effnet(&["eval", "--run", run_s, "--ema"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("ema.bpk on valid (10 images)") && out.contains("worst classes (top-1, 5 of 5):"), "{out}");
    assert_eq!(CLASSES.iter().filter(|c| out.contains(*c)).count(), 5, "{out}");

    // forward --run gives the logits of --config/--weights on the run's files.
    let x = dir.0.join("x.npy");
    {
        use npyz::WriterBuilder;
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[2, 3, 16, 16])
            .writer(std::fs::File::create(&x).unwrap())
            .begin_nd()
            .unwrap();
        w.extend((0..2 * 3 * 16 * 16).map(|i| ((i % 23) as f32 - 11.0) / 11.0)).unwrap();
        w.finish().unwrap();
    }
    let (a, b) = (dir.0.join("a.npy"), dir.0.join("b.npy"));
    let o = effnet(&[
        "forward",
        "--run",
        run_s,
        "--latest",
        "--input",
        x.to_str().unwrap(),
        "--output",
        a.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = effnet(&[
        "forward",
        "--config",
        run.join("config.toml").to_str().unwrap(),
        "--weights",
        run.join("latest.bpk").to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        b.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(a, b);
    let f = npyz::NpyFile::new(&a[..]).unwrap();
    assert_eq!(f.shape(), [2, 5]);

    // Bad run directories: one line naming the path.
    let missing = dir.0.join("nope");
    let err = assert_clean_failure(&effnet(&["predict", "--run", missing.to_str().unwrap(), photo.to_str().unwrap()]));
    assert!(err.contains("nope: --run: no such run directory"), "{err}");
    let no_weights = dir.0.join("no-weights");
    std::fs::create_dir_all(&no_weights).unwrap();
    std::fs::copy(run.join("config.toml"), no_weights.join("config.toml")).unwrap();
    let err = assert_clean_failure(&effnet(&["eval", "--run", no_weights.to_str().unwrap()]));
    assert!(err.contains(&format!("{}: missing", no_weights.join("best.bpk").display())), "{err}");
    let err = assert_clean_failure(&effnet(&[
        "predict",
        "--run",
        no_weights.to_str().unwrap(),
        "--ema",
        photo.to_str().unwrap(),
    ]));
    assert!(err.contains("ema.bpk: missing"), "{err}");
    let no_config = dir.0.join("no-config");
    std::fs::create_dir_all(&no_config).unwrap();
    std::fs::copy(run.join("best.bpk"), no_config.join("best.bpk")).unwrap();
    let err = assert_clean_failure(&effnet(&[
        "forward",
        "--run",
        no_config.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        dir.0.join("c.npy").to_str().unwrap(),
    ]));
    assert!(err.contains(&format!("{}: missing", no_config.join("config.toml").display())), "{err}");
    // --ema without --run is refused for predict (eval keeps --checkpoint DIR --ema).
    let err = assert_clean_failure(&effnet(&[
        "predict",
        "--config",
        run.join("config.toml").to_str().unwrap(),
        "--weights",
        run.join("best.bpk").to_str().unwrap(),
        "--ema",
        photo.to_str().unwrap(),
    ]));
    assert!(err.contains("--ema needs --run DIR"), "{err}");
    let err = assert_clean_failure(&effnet(&[&["predict"][..], &explicit, &["--latest"]].concat()));
    assert!(err.contains("--latest needs --run DIR"), "{err}");
}

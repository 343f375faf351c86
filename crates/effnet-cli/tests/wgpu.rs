//! `effnet train`, `eval` and `predict` on burn's wgpu backend against the same commands on
//! flex: the training loop's ops (AdamW, EMA, label smoothing, metrics, the loader's batches),
//! not only one step. Without a GPU this runs on Mesa's
//! lavapipe (Vulkan on the CPU); `scripts/test.sh` installs it. Built with `--features wgpu`.
//!
//! The run is made deterministic across backends: both start from the same weights (a flex run's
//! `latest.bpk` as `train.init_weights`: each backend's RNG would initialise differently), no
//! dropout or drop-path (their masks come from each backend's RNG), no augmentation, one loader
//! worker (several deliver batches in arrival order). What is left differs only by float rounding
//! (reduction order, fused kernels), which training amplifies a little every step.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Per-epoch losses (train and valid) of the wgpu run against the flex run, relative (measured
/// on lavapipe: ≤ 1.2e-4 unfused, ≤ 8e-6 with effnet's fusion choice).
const LOSS_REL_TOL: f64 = 2e-3;
/// Predicted probabilities of the same weights on both backends (measured ≤ 1e-6).
const PROB_TOL: f64 = 1e-4;

fn effnet(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_effnet"))
        .args(args)
        // lavapipe compiles every kernel burn's fusion makes (minutes each step shape) and every
        // autotune candidate: without fusion and with minimal autotuning the run takes seconds.
        // `EFFNET_GPU_FUSION=default` in the environment runs the fused path instead.
        .env("EFFNET_GPU_FUSION", std::env::var("EFFNET_GPU_FUSION").unwrap_or("off".into()))
        .env("CUBECL_AUTOTUNE_LEVEL", std::env::var("CUBECL_AUTOTUNE_LEVEL").unwrap_or("minimal".into()))
        .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()))
        .output()
        .expect("run effnet");
    assert!(o.status.success(), "effnet {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// (epoch, split) → loss, from a run's metrics.csv.
fn losses(run: &Path) -> Vec<(String, f64)> {
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name} in {header:?}"));
    let (epoch, split, loss) = (col("epoch"), col("split"), col("loss"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (format!("{} {}", f[epoch], f[split]), f[loss].parse().unwrap())
        })
        .collect()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap()
}

#[test]
fn training_eval_and_predict_on_wgpu_follow_flex() {
    let dir = std::env::temp_dir().join(format!("effnet-wgpu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two classes of 16×16 images, 8 training and 4 validation images each: every batch has the
    // same shape (on lavapipe each new shape compiles every kernel again, minutes each).
    for (split, n) in [("train", 8), ("valid", 4)] {
        for (class, rgb) in [("a", [220u8, 40, 40]), ("b", [40, 200, 60])] {
            let folder = dir.join("data").join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    let noise = ((x * 7 + y * 13 + i * 31) % 41) as u8;
                    image::Rgb([rgb[0].saturating_sub(noise), rgb[1].saturating_sub(noise), rgb[2]])
                });
                img.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let cfg = dir.join("tiny.toml");
    // AdamW, EMA, label smoothing, a cosine schedule with warm-up and train-mode BatchNorm: the
    // loop's ops, not only a forward/backward.
    std::fs::write(
        &cfg,
        format!(
            "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nresolution = 16\nnum_classes = 2\n\
             dropout = 0.0\ndrop_connect_rate = 0.0\nbn_momentum = 0.9\n\
             [data]\ndataset = \"folder\"\npath = \"{}\"\ncrop_fraction = 1.0\nnum_workers = 1\n\
             [data.augment]\nrandom_resized_crop = false\nhflip = 0.0\n\
             [train]\nepochs = 2\nbatch_size = 8\nseed = 7\nlabel_smoothing = 0.1\nema_decay = 0.9\n\
             [optim]\nname = \"adamw\"\nlr = 0.003\nlr_batch_size = 8\nweight_decay = 0.01\n\
             [schedule]\nname = \"cosine\"\nwarmup_epochs = 0.5\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    // The common start: the same config trained on flex.
    let base = dir.join("base");
    let cfg = cfg.to_str().unwrap();
    effnet(&["train", "--config", cfg, "--run-dir", base.to_str().unwrap()]);
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace("[train]\n", &format!("[train]\ninit_weights = \"{}\"\n", base.join("latest.bpk").display()));
    let cfg_init = dir.join("from-base.toml");
    std::fs::write(&cfg_init, text).unwrap();
    let cfg_init = cfg_init.to_str().unwrap();
    let run = |backend: &str| {
        let run = dir.join(format!("run-{backend}"));
        let t = std::time::Instant::now();
        effnet(&["train", "--config", cfg_init, "--run-dir", run.to_str().unwrap(), "--backend", backend]);
        eprintln!("train on {backend}: {:.1?}", t.elapsed());
        run
    };
    let (flex, gpu) = (run("flex"), run("wgpu"));
    let (lf, lg) = (losses(&flex), losses(&gpu));
    assert_eq!(lf.len(), 4, "{lf:?}");
    assert_eq!(lf.iter().map(|r| &r.0).collect::<Vec<_>>(), lg.iter().map(|r| &r.0).collect::<Vec<_>>());
    for ((what, f), (_, g)) in lf.iter().zip(&lg) {
        let rel = (f - g).abs() / f.abs();
        eprintln!("{what}: loss flex {f:.6}, wgpu {g:.6} (relative difference {rel:.1e})");
        assert!(f.is_finite() && rel <= LOSS_REL_TOL, "{what}: flex {f} vs wgpu {g}");
    }

    // The flex run's weights evaluated and used for prediction on both backends.
    let ckpt = flex.to_str().unwrap();
    let eval =
        |backend: &str| json(&effnet(&["eval", "--config", cfg, "--checkpoint", ckpt, "--json", "--backend", backend]));
    let (ef, eg) = (eval("flex"), eval("wgpu"));
    eprintln!("eval top-1: flex {}, wgpu {}", ef["top1"], eg["top1"]);
    assert_eq!(ef["images"], 8);
    assert_eq!(ef["top1"], eg["top1"]);
    assert!((ef["loss"].as_f64().unwrap() - eg["loss"].as_f64().unwrap()).abs() < 1e-4, "{ef} {eg}");

    let image = dir.join("digit.png");
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([200, 60 + (x * y % 50) as u8, 50]));
    img.save(&image).unwrap();
    let weights = flex.join("best.bpk");
    let predict = |backend: &str| {
        json(&effnet(&[
            "predict",
            "--config",
            cfg,
            "--weights",
            weights.to_str().unwrap(),
            "--json",
            "--top",
            "2",
            "--backend",
            backend,
            image.to_str().unwrap(),
        ]))
    };
    let (pf, pg) = (predict("flex"), predict("wgpu"));
    let (tf, tg) = (&pf[0]["top"], &pg[0]["top"]);
    assert_eq!(tf[0]["index"], tg[0]["index"], "{pf} {pg}");
    for i in 0..2 {
        let (a, b) = (tf[i]["prob"].as_f64().unwrap(), tg[i]["prob"].as_f64().unwrap());
        assert!((a - b).abs() <= PROB_TOL, "{pf} {pg}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

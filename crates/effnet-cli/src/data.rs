//! `effnet data check` and `effnet data bench`.

use anyhow::{Result, bail};
use burn::prelude::Device;
use effnet_config::{Architecture, DataConfig, DatasetKind, EffnetConfig, LabelKind, Variant};
use effnet_train::data::{LoaderSpec, OpenedDataset, kind_name, open_dataset};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `data check`/`data bench` read: a config file, or a dataset kind and path.
pub struct DataSource {
    pub config: Option<PathBuf>,
    pub dataset: Option<String>,
    pub path: Option<PathBuf>,
    pub coarse: bool,
}

fn parse_kind(s: &str) -> Result<DatasetKind> {
    Ok(match s {
        "cifar100" => DatasetKind::Cifar100,
        "cifar100-python" => DatasetKind::Cifar100Python,
        "flowers102" => DatasetKind::Flowers102,
        "folder" => DatasetKind::Folder,
        other => bail!("unknown dataset {other:?}; expected cifar100, cifar100-python, flowers102 or folder"),
    })
}

/// The `[data]` section, the whole config when given, and the directory relative paths resolve against.
fn resolve(src: &DataSource) -> Result<(DataConfig, Option<EffnetConfig>, PathBuf)> {
    match (&src.config, &src.dataset, &src.path) {
        (Some(file), None, None) => {
            let cfg = EffnetConfig::load(file)?;
            let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok((cfg.data.clone(), Some(cfg), base))
        }
        (None, Some(kind), Some(path)) => {
            let data = DataConfig {
                dataset: parse_kind(kind)?,
                path: path.to_string_lossy().into_owned(),
                labels: if src.coarse { LabelKind::Coarse } else { LabelKind::Fine },
                ..DataConfig::default()
            };
            Ok((data, None, PathBuf::new()))
        }
        _ => bail!("give either --config FILE, or --dataset KIND and --path DIR"),
    }
}

fn open(data: &DataConfig, base: &Path) -> Result<OpenedDataset> {
    Ok(open_dataset(data, base)?)
}

/// `effnet data check`: per split the number of images and classes, and a few class names.
pub fn check(src: &DataSource, json: bool, decode: bool) -> Result<()> {
    let (data, _, base) = resolve(src)?;
    let ds = open(&data, &base)?;
    let mut corrupt = serde_json::Map::new();
    let mut skipped = 0;
    if decode {
        // Decode every image once, so a corrupt file is found before training.
        for s in &ds.splits {
            let bad = s.undecodable();
            if let Some(first) = bad.first() {
                if !data.skip_corrupt {
                    bail!("split {}: {first}", s.name);
                }
                if bad.len() == s.dataset.len() {
                    bail!(
                        "split {}: no decodable image: all {} fail to decode (data.skip_corrupt = true needs some that do), e.g. {first}",
                        s.name,
                        bad.len()
                    );
                }
                for e in &bad {
                    eprintln!("warning: skipping corrupt image: {e}");
                }
            }
            skipped += bad.len();
            corrupt.insert(s.name.clone(), json!(bad.len()));
        }
    }
    let root = base.join(&data.path);
    if json {
        let mut splits = serde_json::Map::new();
        for s in &ds.splits {
            splits.insert(s.name.clone(), json!({"images": s.dataset.len(), "classes": s.num_labels_present()}));
        }
        let mut out = json!({
            "dataset": kind_name(ds.kind),
            "path": root.display().to_string(),
            "num_classes": ds.num_classes,
            "class_names": ds.class_names.iter().take(5).collect::<Vec<_>>(),
            "splits": splits,
        });
        if decode {
            out["decoded"] = json!(true);
            out["corrupt"] = serde_json::Value::Object(corrupt);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    // Escaped: a folder name may hold terminal control characters.
    let names: Vec<String> =
        ds.class_names.iter().take(5).map(|n| effnet_train::text::escape_control(n).into_owned()).collect();
    let more = if ds.class_names.len() > 5 { ", …" } else { "" };
    println!("{} at {}: {} classes ({}{more})", kind_name(ds.kind), root.display(), ds.num_classes, names.join(", "));
    for s in &ds.splits {
        println!("  {:<6} {:>7} images  {:>5} classes", s.name, s.dataset.len(), s.num_labels_present());
    }
    if decode {
        let total: usize = ds.splits.iter().map(|s| s.dataset.len()).sum();
        if skipped == 0 {
            println!("every image decoded ({total})");
        } else {
            println!(
                "decoded {} of {total} images; skipped as corrupt: {}",
                total - skipped,
                serde_json::Value::Object(corrupt)
            );
        }
    }
    Ok(())
}

/// `effnet data bench`: images/s of the training loader alone (decode + augment + batch).
pub fn bench(
    src: &DataSource,
    batches: usize,
    image_size: Option<usize>,
    batch_size: Option<usize>,
    workers: Option<usize>,
    json: bool,
) -> Result<()> {
    // The bounds of `[data] image_size`: a 100000-pixel batch would be hundreds of GB.
    if let Some(s) = image_size.filter(|s| !(8..=4096).contains(s)) {
        bail!("--image-size: invalid value {s}: must be between 8 and 4096");
    }
    if batch_size == Some(0) {
        bail!("--batch-size: invalid value 0: must be at least 1");
    }
    let (mut data, cfg, base) = resolve(src)?;
    if let Some(w) = workers {
        data.num_workers = w;
    }
    let cfg = cfg.unwrap_or_default();
    let ds = open(&data, &base)?;
    // A loaded config is validated, so its architecture resolves; without one: B0's.
    let arch = cfg.model.architecture().unwrap_or_else(|_| Architecture::variant(Variant::B0));
    let size = image_size.or(data.image_size).unwrap_or(arch.resolution);
    let batch_size = batch_size.unwrap_or(cfg.train.batch_size);
    let device = Device::flex();
    let spec = LoaderSpec {
        normalization: data.normalization(),
        data: data.clone(),
        image_size: size,
        batch_size,
        seed: cfg.train.seed,
    };
    let (loader, _) = spec.train(&ds, &device);
    if !json {
        println!(
            "train loader: {} images of {}, {size}×{size}, batch {batch_size}, {} workers, randaugment n={} m={}, mixup α={}, cutmix α={}",
            ds.train().dataset.len(),
            kind_name(ds.kind),
            data.num_workers,
            data.augment.randaugment_n,
            data.augment.randaugment_m,
            data.augment.mixup_alpha,
            data.augment.cutmix_alpha
        );
    }
    let mut done = 0usize;
    let mut images = 0usize;
    let start = Instant::now();
    // Full passes until `batches` batches have been produced (an epoch may be shorter).
    while done < batches {
        let before = done;
        for b in loader.iter() {
            let b = b.map_err(|e| anyhow::anyhow!("{e}"))?;
            images += b.images.dims()[0];
            done += 1;
            if done == batches {
                break;
            }
        }
        if done == before {
            bail!("the training split is empty");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if json {
        // The keys of `effnet bench --json` and scripts/bench_peers.py.
        let out = serde_json::json!({
            "impl": "effnet",
            "mode": "loader",
            "batch": batch_size,
            "resolution": size,
            "workers": data.num_workers,
            "batches": done,
            "images_per_sec": images as f64 / secs,
            "peak_rss_mb": effnet_train::bench::peak_rss_mb(),
        });
        println!("{out}");
    } else {
        println!("{done} batches, {images} images in {secs:.2} s: {:.1} images/s", images as f64 / secs);
    }
    Ok(())
}

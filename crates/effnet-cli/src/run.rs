//! `effnet forward` and `effnet predict`.

use crate::model_args::ModelArgs;
use crate::npy;
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::FloatDType;
use effnet_config::Interpolation;
use effnet_train::data::preprocess::{EvalTransform, open_image};
use effnet_train::precision::{cast_input, cast_module};
use serde::Serialize;
use std::path::{Path, PathBuf};

const IMAGENET_CLASSES: &str = include_str!("../assets/imagenet_classes.txt");
/// `--resolution` bounds: those of `[data] image_size` in a config.
const MIN_RESOLUTION: usize = 8;
const MAX_RESOLUTION: usize = 4096;

/// `effnet forward`: eval-mode logits of a float32 NCHW `.npy` batch, `--batch-size` images at
/// a time: the input is read and the logits written block by block.
pub fn forward(model_args: &ModelArgs, input: &Path, output: &Path) -> Result<()> {
    // Before any work: a FIFO, a device or a symlink at --output is refused, not replaced.
    effnet_config::fsio::check_output_target(output).with_context(|| format!("{}: cannot write", output.display()))?;
    let device = model_args.device()?;
    let precision = model_args.precision()?;
    let mut npy = npy::NpyInput::open_f32(input)?;
    let shape = npy.shape.clone();
    if shape.len() != 4 {
        bail!("{}: shape {shape:?}; expected a 4-D NCHW batch", input.display());
    }
    if shape.contains(&0) {
        bail!("{}: shape {shape:?} holds no images", input.display());
    }
    let (_, model, _) = model_args.load(&device)?;
    if shape[1] != model.stem.conv.weight.dims()[1] {
        bail!("{}: {} channels; the model takes {}", input.display(), shape[1], model.stem.conv.weight.dims()[1]);
    }
    let model = cast_module(model.valid(), precision);
    let (n, classes) = (shape[0], model.num_classes());
    let mut out = npy::NpyOutput::create(output, &[n, classes])?;
    let mut non_finite = 0;
    for start in (0..n).step_by(model_args.batch_size as usize) {
        let rows = (model_args.batch_size as usize).min(n - start);
        let x = TensorData::new(npy.read_rows(rows)?, [rows, shape[1], shape[2], shape[3]]);
        let logits = model.forward(cast_input(Tensor::<4>::from_data(x, &device), precision)).cast(FloatDType::F32);
        let values = logits.into_data().convert::<f32>().try_into_vec::<f32>().context("reading logits")?;
        non_finite += values.iter().filter(|v| !v.is_finite()).count();
        out.push(&values)?;
    }
    out.finish()?;
    if non_finite > 0 {
        eprintln!("warning: {non_finite} of the {} logits are not finite (NaN or infinite)", n * classes);
    }
    eprintln!("wrote logits [{n}, {classes}] to {}", output.display());
    Ok(())
}

/// Options of `effnet predict` beyond the model.
pub struct PredictOptions {
    pub top: usize,
    pub json: bool,
    pub resolution: Option<usize>,
    pub crop_fraction: f64,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub interpolation: Interpolation,
}

#[derive(Serialize)]
struct Prediction {
    index: usize,
    label: String,
    prob: f32,
}

#[derive(Serialize)]
struct ImageResult {
    image: String,
    top: Vec<Prediction>,
}

/// `effnet predict`: top-K classes of each image.
pub fn predict(model_args: &ModelArgs, images: &[PathBuf], opts: &PredictOptions) -> Result<()> {
    // A backend this binary lacks is reported before anything else.
    let device = model_args.device()?;
    if images.is_empty() {
        bail!("no images given");
    }
    if !(opts.crop_fraction > 0.0 && opts.crop_fraction <= 1.0) {
        bail!("--crop-fraction: invalid value {}: must be in (0, 1]", opts.crop_fraction);
    }
    // The range of [data] image_size: a 100000-pixel crop would be a 120 GB batch.
    if let Some(r) = opts.resolution.filter(|r| !(MIN_RESOLUTION..=MAX_RESOLUTION).contains(r)) {
        bail!("--resolution: invalid value {r}: must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}");
    }
    // Missing files are reported before time is spent on the model; the others are predicted.
    let total = images.len();
    let (found, missing): (Vec<&PathBuf>, Vec<&PathBuf>) = images.iter().partition(|p| p.is_file());
    let mut failed = missing.len();
    for path in &missing {
        let what = if path.is_dir() { "a directory, not an image file" } else { "no such image file" };
        eprintln!("error: {}: {what}", path.display());
    }
    if found.is_empty() {
        bail!("none of the {total} images could be read");
    }
    let (arch, model, _) = model_args.load(&device)?;
    // What a flag or the run's [data] leaves unset: the family's (Lite's (x − 127)/128, ImageNet's).
    let (mean, std) = arch.family.normalization().f32();
    let transform = EvalTransform {
        size: opts.resolution.unwrap_or(arch.resolution),
        crop_fraction: opts.crop_fraction,
        mean: opts.mean.unwrap_or(mean),
        std: opts.std.unwrap_or(std),
        interpolation: opts.interpolation,
    };
    let precision = model_args.precision()?;
    let model = cast_module(model.valid(), precision);
    let classes = model.num_classes();
    // Decoded and run `--batch-size` images at a time; an unreadable one is reported and skipped.
    let (mut good, mut probs) = (Vec::new(), Vec::new());
    for block in found.chunks(model_args.batch_size as usize) {
        let mut batch = Vec::new();
        for &path in block {
            match open_image(path) {
                Ok((img, warning)) => {
                    warning.iter().for_each(|w| eprintln!("warning: {w}"));
                    batch.extend(transform.apply(&img));
                    good.push(path.clone());
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    failed += 1;
                }
            }
        }
        let n = batch.len() / (3 * transform.size * transform.size);
        if n == 0 {
            continue;
        }
        let x = Tensor::<4>::from_data(TensorData::new(batch, [n, 3, transform.size, transform.size]), &device);
        let logits = model.forward(cast_input(x, precision)).cast(FloatDType::F32);
        let p = burn::tensor::activation::softmax(logits, 1);
        probs.extend(p.into_data().convert::<f32>().try_into_vec::<f32>().context("reading probabilities")?);
    }
    if good.is_empty() {
        bail!("none of the {total} images could be read");
    }
    let images = &good[..];
    // A run's own class names (classes.txt) where they fit the classifier; else ImageNet's.
    let run_names = model_args.class_names()?;
    if let Some(names) = &run_names
        && names.len() != classes
    {
        eprintln!(
            "warning: classes.txt names {} classes but the model has {classes}; printing class indices instead",
            names.len()
        );
    }
    let run_names = run_names.filter(|n| n.len() == classes);
    let labels: Vec<&str> = match &run_names {
        Some(names) => names.iter().map(String::as_str).collect(),
        None => IMAGENET_CLASSES.lines().collect(),
    };
    let results: Vec<ImageResult> = images
        .iter()
        .zip(probs.chunks(classes))
        .map(|(path, row)| {
            let mut idx: Vec<usize> = (0..classes).collect();
            idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let top = idx
                .iter()
                .take(opts.top.min(classes))
                .map(|&i| Prediction {
                    index: i,
                    label: if classes == labels.len() { labels[i].to_string() } else { format!("class {i}") },
                    prob: row[i],
                })
                .collect();
            ImageResult { image: path.display().to_string(), top }
        })
        .collect();
    for (path, row) in images.iter().zip(probs.chunks(classes)) {
        if row.iter().any(|p| !p.is_finite()) {
            eprintln!("warning: {}: the model's output is not finite (NaN or infinite logits)", path.display());
        }
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            println!("{}", r.image);
            for p in &r.top {
                // Escaped: a class name may hold terminal control characters.
                let label = effnet_train::text::escape_control(&p.label);
                println!("  {:>5}  {:<40} {:>6.2}%", p.index, label, 100.0 * p.prob);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of the {total} images could not be read (see above)");
    }
    Ok(())
}

/// Parses `a,b,c` into three floats.
pub fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> =
        s.split(',').map(|x| x.trim().parse::<f32>()).collect::<Result<_, _>>().map_err(|e| format!("{s:?}: {e}"))?;
    <[f32; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected three comma-separated numbers"))
}

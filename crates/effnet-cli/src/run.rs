//! `effnet forward` and `effnet predict`.

use crate::model_args::ModelArgs;
use crate::npy;
use anyhow::{Context, Result, bail};
use burn::prelude::*;
use burn::tensor::FloatDType;
use effnet_config::{Activation, Interpolation};
use effnet_train::precision::{cast_input, cast_module};
use effnet_train::preprocess::{EvalTransform, IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD};
use serde::Serialize;
use std::path::{Path, PathBuf};

const IMAGENET_CLASSES: &str = include_str!("../assets/imagenet_classes.txt");

/// `effnet forward`: eval-mode logits of a float32 NCHW `.npy` batch.
pub fn forward(model_args: &ModelArgs, input: &Path, output: &Path) -> Result<()> {
    let device = model_args.device()?;
    let (shape, data) = npy::read_f32(input)?;
    if shape.len() != 4 {
        bail!("{}: shape {shape:?}; expected a 4-D NCHW batch", input.display());
    }
    let (_, model, _) = model_args.load(&device)?;
    if shape[1] != model.stem.conv.weight.dims()[1] {
        bail!("{}: {} channels; the model takes {}", input.display(), shape[1], model.stem.conv.weight.dims()[1]);
    }
    let precision = model_args.precision()?;
    let x = Tensor::<4>::from_data(TensorData::new(data, [shape[0], shape[1], shape[2], shape[3]]), &device);
    let logits = cast_module(model.valid(), precision).forward(cast_input(x, precision)).cast(FloatDType::F32);
    let dims = logits.dims();
    let values = logits.into_data().convert::<f32>().try_into_vec::<f32>().context("reading logits")?;
    npy::write_f32(output, &dims, &values)?;
    eprintln!("wrote logits {:?} to {}", dims, output.display());
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
    // Fail on a missing image before spending time on the model.
    if let Some(missing) = images.iter().find(|p| !p.is_file()) {
        bail!("{}: no such image file", missing.display());
    }
    let (arch, model, _) = model_args.load(&device)?;
    // Lite weights were trained on (x − 127) / 128; everything else on ImageNet statistics.
    let (mean, std) =
        if arch.activation == Activation::Relu6 { (LITE_MEAN, LITE_STD) } else { (IMAGENET_MEAN, IMAGENET_STD) };
    let transform = EvalTransform {
        size: opts.resolution.unwrap_or(arch.resolution),
        crop_fraction: opts.crop_fraction,
        mean: opts.mean.unwrap_or(mean),
        std: opts.std.unwrap_or(std),
        interpolation: Interpolation::Bicubic,
    };
    let mut batch = Vec::with_capacity(images.len() * 3 * transform.size * transform.size);
    for path in images {
        let img = image::open(path).with_context(|| format!("{}: cannot decode image", path.display()))?;
        batch.extend(transform.apply(&img.to_rgb8()));
    }
    let n = images.len();
    let x = Tensor::<4>::from_data(TensorData::new(batch, [n, 3, transform.size, transform.size]), &device);
    let precision = model_args.precision()?;
    let logits = cast_module(model.valid(), precision).forward(cast_input(x, precision)).cast(FloatDType::F32);
    let probs = burn::tensor::activation::softmax(logits, 1);
    let classes = probs.dims()[1];
    let probs = probs.into_data().convert::<f32>().try_into_vec::<f32>().context("reading probabilities")?;
    let labels: Vec<&str> = IMAGENET_CLASSES.lines().collect();
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
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            println!("{}", r.image);
            for p in &r.top {
                println!("  {:>5}  {:<40} {:>6.2}%", p.index, p.label, 100.0 * p.prob);
            }
        }
    }
    Ok(())
}

/// Parses `a,b,c` into three floats.
pub fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> =
        s.split(',').map(|x| x.trim().parse::<f32>()).collect::<Result<_, _>>().map_err(|e| format!("{s:?}: {e}"))?;
    <[f32; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected three comma-separated numbers"))
}

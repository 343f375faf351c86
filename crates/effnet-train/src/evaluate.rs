//! Evaluation: loss, top-1 and top-5 of a network on a split.

use crate::confusion::ConfusionMatrix;
use crate::data::{ClassificationBatch, LoaderSpec, Split};
use crate::precision::{cast_input, cast_module};
use burn::prelude::*;
use effnet_config::Precision;
use effnet_model::EfficientNet;
use serde::Serialize;

/// Evaluation metrics (accuracies as fractions in 0..1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EvalMetrics {
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    pub images: usize,
}

/// Per-batch sums: (loss·n, top-1 hits, top-5 hits, n); each image's (target, top-1 class) is
/// counted into `confusion`.
fn batch_sums(
    net: &EfficientNet,
    batch: ClassificationBatch,
    precision: Precision,
    confusion: &mut ConfusionMatrix,
) -> (f64, usize, usize, usize) {
    // Loss and ranking in f32 whatever the network's precision.
    let logits = net.forward(cast_input(batch.images, precision)).cast(burn::tensor::FloatDType::F32);
    let [n, classes] = logits.dims();
    let logp = burn::tensor::activation::log_softmax(logits.clone(), 1);
    let targets = batch.targets.clone().reshape([n, 1]);
    let nll = logp.gather(1, targets.clone()).neg().sum().into_scalar::<f32>() as f64;
    let k = classes.min(5);
    let topk = logits.argsort_descending(1).slice([0..n, 0..k]);
    let ints = |t: Tensor<2, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().expect("int tensor");
    for (t, p) in ints(targets.clone()).into_iter().zip(ints(topk.clone().slice([0..n, 0..1]))) {
        confusion.add(t as usize, p as usize);
    }
    let hits = topk.equal(targets.expand([n, k])).int();
    let top1 = hits.clone().slice([0..n, 0..1]).sum().into_scalar::<i64>() as usize;
    let top5 = hits.sum().into_scalar::<i64>() as usize;
    (nll, top1, top5, n)
}

/// Evaluates `net` (in eval mode, cast to `precision` with its inputs) on `split` through the
/// evaluation loader of `spec`: the metrics and the confusion matrix of its top-1 predictions.
pub fn evaluate(
    net: &EfficientNet,
    split: &Split,
    spec: &LoaderSpec,
    device: &Device,
    precision: Precision,
) -> (EvalMetrics, ConfusionMatrix) {
    // `valid()` gives the copy its own running statistics before they are cast.
    let net = cast_module(net.valid(), precision);
    let loader = spec.eval(split, device);
    let (mut loss, mut t1, mut t5, mut n) = (0.0, 0, 0, 0);
    let mut confusion = ConfusionMatrix::new(net.num_classes());
    for batch in loader.iter().flatten() {
        let (l, a, b, m) = batch_sums(&net, batch, precision, &mut confusion);
        loss += l;
        t1 += a;
        t5 += b;
        n += m;
    }
    let d = n.max(1) as f64;
    (EvalMetrics { loss: loss / d, top1: t1 as f64 / d, top5: t5 as f64 / d, images: n }, confusion)
}

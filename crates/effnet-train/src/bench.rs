//! `effnet bench`: throughput of one model at one shape, the way PyTorch users time theirs
//! (`scripts/bench_peers.py` runs the same protocol in PyTorch and ONNX Runtime).
//!
//! Eval times a forward pass on a non-autodiff device (BatchNorm on running statistics) until
//! the logits are on the host. Train times forward, cross-entropy, backward and an SGD step
//! (momentum 0.9, no dampening, lr 0.01, as the peers) until the loss is on the host. Each timed
//! step follows `warmup` untimed ones; the result is the median.

use crate::loss_scale::{GROWTH_INTERVAL, INIT_SCALE, LossScaler};
use crate::precision::{cast_input, cast_module, float_dtype};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_config::{Architecture, Precision};
use effnet_model::EfficientNet;
use serde::Serialize;
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    Eval,
    Train,
}

/// One benchmark: a model, a batch shape and the protocol.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub arch: Architecture,
    pub batch: usize,
    pub resolution: usize,
    pub mode: BenchMode,
    pub warmup: usize,
    pub runs: usize,
    /// Eval: the dtype the weights and input are cast to; train: mixed precision's compute dtype.
    pub precision: Precision,
}

/// The result, in the JSON shape `scripts/bench_peers.py` prints too.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    #[serde(rename = "impl")]
    pub impl_: String,
    pub model: String,
    pub mode: BenchMode,
    pub batch: usize,
    pub resolution: usize,
    pub classes: usize,
    pub threads: usize,
    /// Median images per second over the timed steps.
    pub images_per_sec: f64,
    pub median_step_s: f64,
    /// Seconds of every timed step, in order.
    pub step_s: Vec<f64>,
    /// The process's peak resident set (VmHWM), MB.
    pub peak_rss_mb: f64,
    /// The instruction set effnet's CPU kernels ran: `avx512`, `avx2`, `neon` or `scalar`.
    pub simd: &'static str,
}

/// Runs `spec` on `device` (a plain device; training adds autodiff itself).
pub fn run(spec: &BenchSpec, device: &Device, impl_name: &str) -> BenchResult {
    let steps = spec.warmup + spec.runs.max(1);
    let shape = [spec.batch, spec.arch.in_channels, spec.resolution, spec.resolution];
    let mut times = Vec::with_capacity(steps);
    match spec.mode {
        BenchMode::Eval => {
            let model = cast_module(EfficientNet::new(&spec.arch, device), spec.precision);
            let x = cast_input(Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device), spec.precision);
            for _ in 0..steps {
                let t = Instant::now();
                let logits = model.forward(x.clone()).into_data();
                times.push(t.elapsed().as_secs_f64());
                std::hint::black_box(logits);
            }
        }
        BenchMode::Train => {
            let device = device.clone().autodiff();
            let mut model = EfficientNet::new(&spec.arch, &device);
            // bf16/f16: mixed precision on f32 parameters, as `effnet train` runs it.
            model.set_autocast(Some(float_dtype(spec.precision)));
            let scaler = (spec.precision == Precision::F16).then(|| LossScaler::new(INIT_SCALE, GROWTH_INTERVAL));
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let labels: Vec<i64> = (0..spec.batch).map(|i| (i * 7919 % spec.arch.num_classes) as i64).collect();
            let labels = Tensor::<1, Int>::from_ints(labels.as_slice(), &device);
            let loss_fn = CrossEntropyLossConfig::new().init(&device);
            let momentum = MomentumConfig { momentum: 0.9, dampening: 0.0, nesterov: false };
            let mut optim = SgdConfig::new().with_momentum(Some(momentum)).init();
            for _ in 0..steps {
                let t = Instant::now();
                let loss = loss_fn.forward(model.forward(x.clone()), labels.clone());
                let grads = match &scaler {
                    Some(s) => s.backward(loss.clone(), &model),
                    None => GradientsParams::from_grads(loss.backward(), &model),
                };
                model = optim.step(0.01, model, grads);
                let value = loss.into_scalar::<f32>();
                times.push(t.elapsed().as_secs_f64());
                assert!(value.is_finite(), "benchmark loss became {value}");
            }
            std::hint::black_box(model.num_params());
        }
    }
    let mut timed = times[spec.warmup..].to_vec();
    let step_s = timed.clone();
    timed.sort_by(f64::total_cmp);
    let median = if timed.len() % 2 == 1 {
        timed[timed.len() / 2]
    } else {
        (timed[timed.len() / 2 - 1] + timed[timed.len() / 2]) / 2.0
    };
    BenchResult {
        impl_: impl_name.to_string(),
        model: spec.arch.name.clone(),
        mode: spec.mode,
        batch: spec.batch,
        resolution: spec.resolution,
        classes: spec.arch.num_classes,
        threads: cores(),
        images_per_sec: spec.batch as f64 / median,
        median_step_s: median,
        step_s,
        peak_rss_mb: peak_rss_mb().unwrap_or(f64::NAN),
        simd: effnet_model::selected_isa().name(),
    }
}

/// Cores this process may use (the peers are run with as many threads).
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Peak resident set size of this process in MB (Linux `VmHWM`), `None` elsewhere.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Architecture {
        let text = "variant = \"custom\"\nwidth = 0.25\ndepth = 0.25\nnum_classes = 5\n";
        toml::from_str::<effnet_config::ModelConfig>(text).unwrap().architecture().unwrap()
    }

    #[test]
    fn both_modes_report_a_positive_rate_and_memory() {
        for mode in [BenchMode::Eval, BenchMode::Train] {
            let spec = BenchSpec {
                arch: tiny(),
                batch: 2,
                resolution: 32,
                mode,
                warmup: 1,
                runs: 3,
                precision: Precision::F32,
            };
            let r = run(&spec, &Device::flex(), "effnet");
            assert_eq!(r.step_s.len(), 3);
            assert!(r.images_per_sec > 0.0 && r.images_per_sec.is_finite());
            assert!((r.images_per_sec - 2.0 / r.median_step_s).abs() < 1e-9);
            assert!(r.peak_rss_mb > 1.0, "peak RSS {}", r.peak_rss_mb);
            let json = serde_json::to_value(&r).unwrap();
            assert_eq!(json["mode"], if mode == BenchMode::Eval { "eval" } else { "train" });
        }
    }
}

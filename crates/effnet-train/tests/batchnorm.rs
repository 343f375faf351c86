//! BatchNorm conventions: TF momentum converted once, running statistics as PyTorch keeps them.

use burn::prelude::*;
use burn::tensor::Distribution;
use effnet_config::EffnetConfig;
use effnet_train::build_model;

#[test]
fn running_stats_after_one_step_use_converted_momentum_and_unbiased_variance() {
    let cfg = EffnetConfig::from_toml_str(
        "[model]\nvariant = \"custom\"\nwidth = 0.25\ndepth = 0.5\nnum_classes = 4\nbn_momentum = 0.9\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let dev = Device::flex().autodiff();
    let model = build_model(&cfg, &dev).unwrap();
    assert!((model.stem.bn.momentum - 0.1).abs() < 1e-12);
    let x = Tensor::<4>::random([3, 3, 20, 20], Distribution::Normal(0.0, 1.0), &dev);
    // The stem's BN sees the stem conv's output; compute its batch statistics directly.
    let z = model.stem.conv.forward(x.clone()).inner();
    let [n, c, h, w] = z.dims();
    let per_channel = z.clone().swap_dims(0, 1).reshape([c, n * h * w]);
    let mean = per_channel.clone().mean_dim(1).reshape([c]);
    let centered = per_channel - mean.clone().reshape([c, 1]);
    let var_unbiased = centered.powi_scalar(2).sum_dim(1).reshape([c]).div_scalar((n * h * w - 1) as f64);

    let _ = model.forward(x);
    let m = 0.1;
    let want_mean = mean.mul_scalar(m); // old running mean is 0
    let want_var = var_unbiased.mul_scalar(m).add_scalar(1.0 - m); // old running var is 1
    let vec = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let (got_mean, got_var) =
        (vec(model.stem.bn.running_mean.value_sync()), vec(model.stem.bn.running_var.value_sync()));
    for (g, w) in got_mean.iter().zip(vec(want_mean)) {
        assert!((g - w).abs() < 1e-5, "running mean {g} vs {w}");
    }
    for (g, w) in got_var.iter().zip(vec(want_var)) {
        assert!((g - w).abs() < 1e-4, "running var {g} vs {w}");
    }
}

#[test]
fn drop_connect_schedule_is_applied_from_config() {
    let cfg = EffnetConfig::from_toml_str(
        "[model]\nvariant = \"b0\"\ndrop_connect_rate = 0.2\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let model = build_model(&cfg, &Device::flex()).unwrap();
    let r = model.drop_connect_rates();
    assert_eq!(r.len(), 16);
    assert!((r[15] - 0.2 * 15.0 / 16.0).abs() < 1e-12);
    assert_eq!(r[0], 0.0);
}

//! effnet's Flex kernels (SiLU, sigmoid, depthwise conv) against burn's own ops: values and
//! gradients. (`kernels_model.rs` compares a whole training step with the kernels on and off;
//! it flips a process-wide switch, so it lives in its own test binary.)

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::prelude::*;
use burn::tensor::Distribution;

use effnet_kernels as kernels;
use effnet_kernels::{Kernel, KernelSelection};

fn autodiff() -> Device {
    Device::flex().autodiff()
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 2.0), device)
}

#[test]
fn kernels_are_used_on_flex_only() {
    let x = Tensor::<1>::zeros([4], &Device::flex());
    assert!(kernels::fast_path(&x));
    assert!(kernels::fast_path(&Tensor::<1>::zeros([4], &autodiff())));
    assert!(!kernels::fast_path(&Tensor::<1, Int>::zeros([4], &Device::flex()).float().cast(burn::tensor::DType::F64)));
}

#[test]
fn silu_and_sigmoid_values_and_gradients_match_burn() {
    let device = autodiff();
    let x = random([3, 40, 17, 19], &device);
    let g = random([3, 40, 17, 19], &device);
    for (name, ours, theirs) in [
        (
            "silu",
            kernels::silu::<4> as fn(Tensor<4>) -> Tensor<4>,
            burn::tensor::activation::silu::<4> as fn(Tensor<4>) -> Tensor<4>,
        ),
        ("sigmoid", kernels::sigmoid::<4>, burn::tensor::activation::sigmoid::<4>),
    ] {
        let xa = x.clone().detach().require_grad();
        let xb = x.clone().detach().require_grad();
        let (ya, yb) = (ours(xa.clone()), theirs(xb.clone()));
        let dy = max_diff(ya.clone(), yb.clone());
        assert!(dy < 1e-6, "{name} forward differs by {dy}");
        let ga = xa.grad(&(ya * g.clone()).sum().backward()).unwrap();
        let gb = xb.grad(&(yb * g.clone()).sum().backward()).unwrap();
        let dg = max_diff(ga, gb);
        assert!(dg < 1e-5, "{name} gradient differs by {dg}");
        // Inference (no autodiff) takes the in-place path.
        let plain = x.clone().inner();
        let d = max_diff(ours(plain.clone()), theirs(plain));
        assert!(d < 1e-6, "{name} inference differs by {d}");
    }
}

#[test]
fn depthwise_and_pointwise_conv_values_and_gradients_match_burn() {
    let device = autodiff();
    // (channels, kernel, stride, padding, input h × w): TF-SAME (asymmetric at stride 2) and
    // symmetric padding, odd sizes.
    let cases = [
        (8, 3, 1, PaddingConfig2d::Same, 15, 12),
        (8, 3, 2, PaddingConfig2d::Same, 15, 12),
        (6, 5, 2, PaddingConfig2d::Same, 16, 13),
        (6, 5, 1, PaddingConfig2d::Explicit(2, 2, 2, 2), 9, 9),
        (4, 3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), 8, 11),
        (4, 5, 2, PaddingConfig2d::Same, 2, 2),
    ];
    // 1×1 convs (the batched-matmul path) go through the same checks.
    for (i, (cin, cout, h, w)) in [(8, 12, 5, 7), (3, 1, 1, 1), (16, 4, 6, 6)].into_iter().enumerate() {
        let conv = Conv2dConfig::new([cin, cout], [1, 1]).with_bias(false).init(&device);
        let x = random([3, cin, h, w], &device).require_grad();
        let (ya, yb) = (kernels::conv2d(&conv, x.clone(), |x| conv.forward(x)), conv.forward(x.clone()));
        assert_eq!(ya.dims(), yb.dims(), "1x1 case {i}: output shape");
        let d = max_diff(ya.clone(), yb.clone());
        assert!(d < 1e-4, "1x1 case {i}: forward differs by {d}");
        let g = random(ya.dims(), &device);
        let (grads_a, grads_b) = ((ya * g.clone()).sum().backward(), (yb * g).sum().backward());
        let dx = max_diff(x.grad(&grads_a).unwrap(), x.grad(&grads_b).unwrap());
        let dw = max_diff(conv.weight.grad(&grads_a).unwrap(), conv.weight.grad(&grads_b).unwrap());
        assert!(dx < 1e-4 && dw < 1e-3, "1x1 case {i}: gradients differ by {dx}, {dw}");
    }
    for (i, (c, k, s, pad, h, w)) in cases.into_iter().enumerate() {
        let conv = Conv2dConfig::new([c, c], [k, k])
            .with_groups(c)
            .with_stride([s, s])
            .with_padding(pad)
            .with_bias(false)
            .init(&device);
        let x = random([3, c, h, w], &device).require_grad();
        let (ya, yb) = (kernels::conv2d(&conv, x.clone(), |x| conv.forward(x)), conv.forward(x.clone()));
        assert_eq!(ya.dims(), yb.dims(), "case {i}: output shape");
        let d = max_diff(ya.clone(), yb.clone());
        assert!(d < 1e-5, "case {i}: forward differs by {d}");
        let g = random(ya.dims(), &device);
        let grads_a = (ya * g.clone()).sum().backward();
        let grads_b = (yb * g).sum().backward();
        let dx = max_diff(x.grad(&grads_a).unwrap(), x.grad(&grads_b).unwrap());
        let dw = max_diff(conv.weight.grad(&grads_a).unwrap(), conv.weight.grad(&grads_b).unwrap());
        assert!(dx < 1e-4 && dw < 1e-3, "case {i}: input gradient differs by {dx}, weight gradient by {dw}");
        // Inference.
        let conv_valid = conv.valid();
        let xi = x.clone().inner();
        let d = max_diff(kernels::conv2d(&conv_valid, xi.clone(), |x| conv_valid.forward(x)), conv_valid.forward(xi));
        assert!(d < 1e-5, "case {i}: inference differs by {d}");
    }
}

#[test]
fn batch_norm_train_values_statistics_and_gradients_match_burn() {
    let device = autodiff();
    let cases = [([4, 6, 9, 7], 0.0, false), ([2, 3, 1, 1], 5.0, false), ([8, 16, 4, 4], 50.0, false)];
    // With SiLU fused in: against burn's BatchNorm followed by burn's SiLU.
    let with_silu = [([4, 6, 9, 7], 0.0, true), ([2, 3, 1, 1], 5.0, true), ([3, 5, 16, 17], 0.5, true)];
    for (shape, offset, silu) in cases.into_iter().chain(with_silu) {
        let x = (random(shape, &device) + offset).require_grad();
        let gamma = random([shape[1]], &device).require_grad();
        let beta = random([shape[1]], &device).require_grad();
        let a = kernels::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-3, silu);
        let mut b = burn::tensor::module::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-3);
        if silu {
            b.output = burn::tensor::activation::silu(b.output);
        }
        let tol = 1e-4 * (1.0 + offset);
        for (name, d) in [
            ("output", max_diff(a.output.clone(), b.output.clone())),
            ("mean", max_diff(a.mean, b.mean)),
            ("variance", max_diff(a.variance, b.variance)),
        ] {
            assert!(d < tol, "{shape:?} (silu: {silu}): {name} differs by {d}");
        }
        let g = random(shape, &device);
        let ga = (a.output * g.clone()).sum().backward();
        let gb = (b.output * g).sum().backward();
        let dx = max_diff(x.grad(&ga).unwrap(), x.grad(&gb).unwrap());
        let dgamma = max_diff(gamma.grad(&ga).unwrap(), gamma.grad(&gb).unwrap());
        let dbeta = max_diff(beta.grad(&ga).unwrap(), beta.grad(&gb).unwrap());
        assert!(
            dx < 1e-3 && dgamma < 1e-3 && dbeta < 1e-3,
            "{shape:?} (silu: {silu}): gradients differ by {dx}, {dgamma}, {dbeta}"
        );
    }
}

#[test]
fn squeeze_excite_values_and_gradients_match_burn() {
    let device = autodiff();
    for (shape, reduced, act) in [
        ([3, 8, 5, 7], 2, kernels::Act::Silu),
        ([2, 6, 1, 1], 3, kernels::Act::Relu6),
        ([1, 4, 4, 4], 4, kernels::Act::Silu),
    ] {
        let c = shape[1];
        let reduce = Conv2dConfig::new([c, reduced], [1, 1]).init(&device);
        let expand = Conv2dConfig::new([reduced, c], [1, 1]).init(&device);
        let burn_se = |x: Tensor<4>| {
            let s = reduce.forward(x.clone().mean_dim(2).mean_dim(3));
            let s = match act {
                kernels::Act::Relu6 => burn::tensor::activation::relu(s).clamp_max(6.0),
                _ => burn::tensor::activation::silu(s),
            };
            x * burn::tensor::activation::sigmoid(expand.forward(s))
        };
        let x = random(shape, &device).require_grad();
        let ya = kernels::squeeze_excite(x.clone(), &reduce, &expand, act, |_| panic!("the kernel covers this SE"));
        let yb = burn_se(x.clone());
        let d = max_diff(ya.clone(), yb.clone());
        assert!(d < 1e-5, "{shape:?}: forward differs by {d}");
        let g = random(shape, &device);
        let ga = (ya * g.clone()).sum().backward();
        let gb = (yb * g).sum().backward();
        let grads = [
            ("x", max_diff(x.grad(&ga).unwrap(), x.grad(&gb).unwrap())),
            ("reduce weight", max_diff(reduce.weight.grad(&ga).unwrap(), reduce.weight.grad(&gb).unwrap())),
            ("expand weight", max_diff(expand.weight.grad(&ga).unwrap(), expand.weight.grad(&gb).unwrap())),
        ];
        let bias = |conv: &burn::nn::conv::Conv2d, grads| conv.bias.as_ref().unwrap().grad(grads).unwrap();
        let biases = [
            ("reduce bias", max_diff(bias(&reduce, &ga), bias(&reduce, &gb))),
            ("expand bias", max_diff(bias(&expand, &ga), bias(&expand, &gb))),
        ];
        for (name, d) in grads.into_iter().chain(biases) {
            assert!(d < 1e-4, "{shape:?}: {name} gradient differs by {d}");
        }
        // Without autodiff: the same op, untracked.
        let xi = x.clone().inner();
        let d = max_diff(
            kernels::squeeze_excite(xi.clone(), &reduce.valid(), &expand.valid(), act, |x| x),
            burn_se(x.clone()).inner(),
        );
        assert!(d < 1e-5, "{shape:?}: inference differs by {d}");
    }
}

#[test]
fn kernel_selection_parses_names_and_rejects_typos() {
    let parse = |s: &str| s.parse::<KernelSelection>().map(KernelSelection::kernels);
    assert_eq!(parse("all").unwrap(), Kernel::ALL.to_vec());
    assert_eq!(parse("scale").unwrap(), vec![Kernel::ChannelScale]);
    assert_eq!(parse("burn").unwrap(), vec![]);
    assert_eq!(parse("depthwise, activation").unwrap(), vec![Kernel::Activation, Kernel::Depthwise]);
    assert_eq!("burn".parse(), Ok(KernelSelection::NONE));
    let e = parse("activation,depthwize").unwrap_err();
    assert!(e.contains("`depthwize`"), "{e}");
}

#[test]
fn conv2d_hands_what_no_kernel_covers_to_the_generic_conv() {
    let device = Device::flex();
    let x = random([2, 4, 6, 6], &device);
    let mut generic = 0;
    // Depthwise without bias: the kernel. With a bias, or a dense 3×3: the caller's conv.
    let depthwise = Conv2dConfig::new([4, 4], [3, 3]).with_groups(4).with_bias(false).init(&device);
    kernels::conv2d(&depthwise, x.clone(), |x| {
        generic += 1;
        x
    });
    assert_eq!(generic, 0);
    for conv in [
        Conv2dConfig::new([4, 4], [3, 3]).with_groups(4).init(&device),
        Conv2dConfig::new([4, 3], [3, 3]).with_bias(false).init(&device),
    ] {
        let y = kernels::conv2d(&conv, x.clone(), |x| {
            generic += 1;
            conv.forward(x)
        });
        assert_eq!(y.dims()[1], conv.weight.dims()[0]);
    }
    assert_eq!(generic, 2);
}

#[test]
fn batch_norm_inference_matches_burn() {
    let device = Device::flex();
    let x = random([3, 6, 5, 7], &device);
    let [gamma, beta, mean] = [0, 1, 2].map(|_| random([6], &device));
    let var = random([6], &device).abs() + 0.1;
    let ours =
        kernels::batch_norm_inference(x.clone(), gamma.clone(), beta.clone(), mean.clone(), var.clone(), 1e-3, false);
    let theirs =
        burn::tensor::module::batch_norm(x.clone(), gamma.clone(), beta.clone(), mean.clone(), var.clone(), 1e-3);
    let d = max_diff(ours, theirs.clone());
    assert!(d < 1e-5, "inference BatchNorm differs by {d}");
    let fused = kernels::batch_norm_inference(x, gamma, beta, mean, var, 1e-3, true);
    let d = max_diff(fused, burn::tensor::activation::silu(theirs));
    assert!(d < 1e-5, "fused inference BatchNorm + SiLU differs by {d}");
}

#[test]
fn channel_scale_values_and_gradients_match_burn() {
    let device = autodiff();
    let x = random([3, 5, 6, 7], &device).require_grad();
    let s = random([3, 5, 1, 1], &device).require_grad();
    let (ya, yb) = (kernels::channel_scale(x.clone(), s.clone()), x.clone() * s.clone());
    assert!(max_diff(ya.clone(), yb.clone()) < 1e-6);
    let g = random([3, 5, 6, 7], &device);
    let (ga, gb) = ((ya * g.clone()).sum().backward(), (yb * g).sum().backward());
    let dx = max_diff(x.grad(&ga).unwrap(), x.grad(&gb).unwrap());
    let ds = max_diff(s.grad(&ga).unwrap(), s.grad(&gb).unwrap());
    assert!(dx < 1e-5 && ds < 1e-4, "gradients differ by {dx}, {ds}");
    let (xi, si) = (x.inner(), s.inner());
    assert!(max_diff(kernels::channel_scale(xi.clone(), si.clone()), xi * si) < 1e-6);
}

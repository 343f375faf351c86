//! Autodiff for the Flex kernels: every op records itself through one forward helper
//! ([`record`]) and differentiates through one backward scaffold ([`Scaffold`]); what differs
//! per op is only its [`Step`], the gradient computation proper.

use crate::flex::{
    EffnetKernels, bn_dims, contiguous, depthwise_forward, flex_bn_normalize, flex_bn_stats, flex_channel_scale,
    flex_squeeze_excite, geometry, map, new_tensor, overwrite_in, pw_dims, pw_forward, scale_dims, slice, zip,
};
use crate::layout::{Order, channels_last_tensor, dense, elements, in_order, order_of};
use crate::{activation, batchnorm, channels_last, depthwise, pointwise, simd, squeeze_excite};
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Flex};
use burn::tensor::Shape;
use rayon::prelude::*;

/// One op's backward computation: from its saved state and the (dense, either order) output gradient,
/// the gradient of each of its `N` inputs that autodiff tracks (`tracked[i]`; `None` for the
/// others).
trait Step<const N: usize>: Send + std::fmt::Debug + 'static {
    type State: Clone + Send + std::fmt::Debug + 'static;
    fn grads(self, state: Self::State, grad: FlexTensor, tracked: [bool; N]) -> [Option<FlexTensor>; N];
}

/// The backward scaffold every op shares: take the output gradient, compute the inputs'
/// gradients ([`Step::grads`]), register each for its tracked input.
#[derive(Debug)]
struct Scaffold<S>(S);

impl<S: Step<N>, const N: usize> Backward<Flex, N> for Scaffold<S> {
    type State = S::State;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let computed = self.0.grads(ops.state, grad, ops.parents.each_ref().map(Option::is_some));
        for (parent, g) in ops.parents.into_iter().zip(computed) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// The forward side every op shares: `untracked` on the inputs' dense primitives (in either
/// memory order, see `layout.rs`) when autodiff tracks none of them; otherwise `tracked` on
/// copies (the inputs may be part of the saved state, so nothing may overwrite them), which also
/// returns the state to save.
fn record<S: Step<N>, C: CheckpointStrategy, const N: usize>(
    step: S,
    inputs: [FloatTensor<Autodiff<Flex, C>>; N],
    tracked: impl FnOnce([FlexTensor; N]) -> (S::State, FlexTensor),
    untracked: impl FnOnce([FlexTensor; N]) -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    match Scaffold(step).prepare::<C>(inputs.each_ref().map(|t| t.node())).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (state, out) = tracked(inputs.each_ref().map(|t| dense(t.primitive().clone())));
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(untracked(inputs.map(|t| dense(t.into_primitive())))),
    }
}

fn shaped(grad: Option<Vec<f32>>, like: &FlexTensor) -> Option<FlexTensor> {
    grad.map(|g| new_tensor(g, like.layout().shape().clone()))
}

/// A unary element-wise op from one saved tensor and the output gradient (SiLU saves its
/// input, sigmoid its output).
#[derive(Debug)]
struct Elementwise(fn(&[f32], &[f32], &mut [simd::Out]));

impl Step<1> for Elementwise {
    type State = FlexTensor;

    fn grads(self, saved: FlexTensor, grad: FlexTensor, _: [bool; 1]) -> [Option<FlexTensor>; 1] {
        [Some(zip(saved, grad, self.0))]
    }
}

/// `y·s[n] + x`: `dy = g·s[n]`, `dx = g`.
#[derive(Debug)]
struct Residual;

impl Step<2> for Residual {
    /// The per-sample scales.
    type State = FlexTensor;

    fn grads(self, scale: FlexTensor, grad: FlexTensor, [want_y, want_x]: [bool; 2]) -> [Option<FlexTensor>; 2] {
        let dy = want_y.then(|| crate::flex::flex_residual(grad.clone(), None, Some(&scale)));
        [dy, want_x.then_some(grad)]
    }
}

/// A change of memory order only: the gradient passes as it is.
#[derive(Debug)]
struct Reorder;

impl Step<1> for Reorder {
    type State = ();

    fn grads(self, _: (), grad: FlexTensor, _: [bool; 1]) -> [Option<FlexTensor>; 1] {
        [Some(grad)]
    }
}

#[derive(Debug)]
struct Depthwise;

impl Step<2> for Depthwise {
    /// Input, weight and geometry.
    type State = (FlexTensor, FlexTensor, depthwise::Geometry);

    fn grads(self, (x, w, g): Self::State, grad: FlexTensor, [want_x, want_w]: [bool; 2]) -> [Option<FlexTensor>; 2] {
        if order_of(&x) == Some(Order::Nhwc) {
            let dy = in_order(grad, Order::Nhwc);
            let dx = want_x.then(|| {
                let data = channels_last::depthwise_grad::input_grad(&g, elements(&dy), slice(&w));
                channels_last_tensor(data, [g.batch, g.channels, g.height, g.width])
            });
            let dw = want_w.then(|| channels_last::depthwise_grad::weight_grad(&g, elements(&x), elements(&dy)));
            return [dx, shaped(dw, &w)];
        }
        let grad = contiguous(grad);
        let (dx, dw) = depthwise::backward(&g, slice(&x), slice(&w), slice(&grad), want_x, want_w);
        [shaped(dx, &x), shaped(dw, &w)]
    }
}

#[derive(Debug)]
struct ChannelScale;

impl Step<2> for ChannelScale {
    /// Input and scales.
    type State = (FlexTensor, FlexTensor);

    fn grads(self, (x, s): Self::State, grad: FlexTensor, [want_x, want_s]: [bool; 2]) -> [Option<FlexTensor>; 2] {
        let grad = contiguous(grad);
        let (planes, plane) = scale_dims(&x, &s);
        // ds[n, c] = Σ over the plane of g·x.
        let ds = want_s.then(|| {
            let (g, xs) = (slice(&grad), slice(&x));
            (0..planes)
                .into_par_iter()
                .with_min_len((8192 / plane.max(1)).max(1))
                .map(|p| crate::simd::dot_simd(&g[p * plane..][..plane], &xs[p * plane..][..plane]))
                .collect()
        });
        let ds = shaped(ds, &s);
        [want_x.then(|| flex_channel_scale(grad, &s)), ds]
    }
}

#[derive(Debug)]
struct Pointwise;

impl Step<2> for Pointwise {
    /// Input and weight.
    type State = (FlexTensor, FlexTensor);

    fn grads(self, (x, w): Self::State, grad: FlexTensor, [want_x, want_w]: [bool; 2]) -> [Option<FlexTensor>; 2] {
        let d = pw_dims(&x, &w);
        if order_of(&x) == Some(Order::Nhwc) {
            let dy = in_order(grad, Order::Nhwc);
            let (dx, dw) = pointwise::rows_backward(&d, elements(&x), slice(&w), elements(&dy), want_x, want_w);
            let s = x.layout().shape();
            return [dx.map(|v| channels_last_tensor(v, [s[0], s[1], s[2], s[3]])), shaped(dw, &w)];
        }
        let grad = contiguous(grad);
        let (dx, dw) = pointwise::backward(&d, slice(&x), slice(&w), slice(&grad), want_x, want_w);
        [shaped(dx, &x), shaped(dw, &w)]
    }
}

#[derive(Debug)]
struct BatchNorm {
    eps: f64,
    /// Followed by SiLU (see [`batchnorm::backward_silu`]).
    silu: bool,
}

impl Step<3> for BatchNorm {
    /// Input, statistics, γ and β.
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor);

    fn grads(self, (x, stats, gamma, beta): Self::State, grad: FlexTensor, _: [bool; 3]) -> [Option<FlexTensor>; 3] {
        let d = bn_dims(&x);
        let (mean, var) = slice(&stats).split_at(d.channels);
        let (gamma, beta) = (slice(&gamma), slice(&beta));
        let order = order_of(&x).expect("dense");
        let cl = order == Order::Nhwc;
        let (dx, (dgamma, dbeta)) = if self.silu {
            // The output gradient becomes the input gradient in place.
            overwrite_in(grad, order, |g| {
                if cl {
                    channels_last::batchnorm::backward_silu(elements(&x), g, mean, var, gamma, beta, self.eps)
                } else {
                    batchnorm::backward_silu(&d, slice(&x), g, mean, var, gamma, beta, self.eps)
                }
            })
        } else {
            overwrite_in(grad, order, |g| {
                let (dx, dgamma, dbeta) = if cl {
                    channels_last::batchnorm::backward(elements(&x), g, mean, var, gamma, self.eps)
                } else {
                    batchnorm::backward(&d, slice(&x), g, mean, var, gamma, self.eps)
                };
                g.copy_from_slice(&dx);
                (dgamma, dbeta)
            })
        };
        let channels = |g| new_tensor(g, Shape::from([d.channels]));
        [Some(dx), Some(channels(dgamma)), Some(channels(dbeta))]
    }
}

#[derive(Debug)]
struct SqueezeExcite {
    act: activation::Act,
}

impl Step<5> for SqueezeExcite {
    /// Input, the four weights, and the forward's means, bottleneck and gates.
    type State = ([FlexTensor; 5], squeeze_excite::Saved);

    fn grads(self, (se, saved): Self::State, grad: FlexTensor, _: [bool; 5]) -> [Option<FlexTensor>; 5] {
        let [x, w1, b1, w2, b2] = &se;
        let d = crate::flex::se_dims(x, w1);
        let w =
            squeeze_excite::Weights { reduce: (slice(w1), slice(b1)), expand: (slice(w2), slice(b2)), act: self.act };
        // The output gradient becomes the input gradient in place.
        let order = if d.channels_last { Order::Nhwc } else { Order::Nchw };
        let (dx, g) = overwrite_in(grad, order, |g| squeeze_excite::backward(&d, elements(x), &w, &saved, g));
        let like = |v: Vec<f32>, t: &FlexTensor| Some(new_tensor(v, t.layout().shape().clone()));
        [Some(dx), like(g.reduce.0, w1), like(g.reduce.1, b1), like(g.expand.0, w2), like(g.expand.1, b2)]
    }
}

impl<C: CheckpointStrategy> EffnetKernels for Autodiff<Flex, C> {
    fn squeeze_excite(
        x: FloatTensor<Self>,
        reduce_weight: FloatTensor<Self>,
        reduce_bias: FloatTensor<Self>,
        expand_weight: FloatTensor<Self>,
        expand_bias: FloatTensor<Self>,
        act: activation::Act,
    ) -> FloatTensor<Self> {
        record::<_, C, 5>(
            SqueezeExcite { act },
            [x, reduce_weight, reduce_bias, expand_weight, expand_bias],
            |se| {
                let (out, saved) = flex_squeeze_excite(se.each_ref(), act);
                ((se, saved), out)
            },
            |se| flex_squeeze_excite(se.each_ref(), act).0,
        )
    }

    fn channel_scale(x: FloatTensor<Self>, s: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<_, C, 2>(
            ChannelScale,
            [x, s],
            |[x, s]| {
                let x = contiguous(x);
                let out = flex_channel_scale(x.clone(), &s);
                ((x, s), out)
            },
            |[x, s]| flex_channel_scale(x, &s),
        )
    }

    fn bn_inference(
        _x: FloatTensor<Self>,
        _mean: FloatTensor<Self>,
        _var: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _eps: f64,
        _silu: bool,
    ) -> FloatTensor<Self> {
        unreachable!("effnet_kernels::batch_norm_inference sends autodiff tensors to burn's op")
    }

    fn pointwise_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<_, C, 2>(
            Pointwise,
            [x, weight],
            |[x, w]| {
                let out = pw_forward(&x, &w);
                ((x, w), out)
            },
            |[x, w]| pw_forward(&x, &w),
        )
    }

    fn bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // An untracked leaf: the statistics are constants to autodiff.
        <Self as AutodiffBackend>::from_inner(flex_bn_stats(x.primitive().clone()))
    }

    fn bn_normalize(
        x: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let stats = contiguous(stats.into_primitive());
        record::<_, C, 3>(
            BatchNorm { eps, silu },
            [x, gamma, beta],
            |[x, gamma, beta]| {
                let out = flex_bn_normalize(&x, &stats, &gamma, &beta, eps, silu);
                ((x, stats.clone(), gamma, beta), out)
            },
            |[x, gamma, beta]| flex_bn_normalize(&x, &stats, &gamma, &beta, eps, silu),
        )
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<_, C, 1>(
            Elementwise(activation::silu_backward),
            [x],
            |[x]| (x.clone(), map(x, activation::silu)),
            |[x]| map(x, activation::silu),
        )
    }

    fn residual(y: FloatTensor<Self>, x: FloatTensor<Self>, scale: FloatTensor<Self>) -> FloatTensor<Self> {
        let scale = contiguous(scale.into_primitive());
        record::<_, C, 2>(
            Residual,
            [y, x],
            |[y, x]| (scale.clone(), crate::flex::flex_residual(y, Some(x), Some(&scale))),
            |[y, x]| crate::flex::flex_residual(y, Some(x), Some(&scale)),
        )
    }

    fn channels_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<_, C, 1>(Reorder, [x], |[x]| ((), in_order(x, Order::Nhwc)), |[x]| in_order(x, Order::Nhwc))
    }

    fn sigmoid(x: FloatTensor<Self>) -> FloatTensor<Self> {
        record::<_, C, 1>(
            Elementwise(activation::sigmoid_backward),
            [x],
            |[x]| {
                let out = map(x, activation::sigmoid);
                (out.clone(), out)
            },
            |[x]| map(x, activation::sigmoid),
        )
    }

    fn depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: usize,
        pad_top: usize,
        pad_bottom: usize,
        pad_left: usize,
        pad_right: usize,
    ) -> FloatTensor<Self> {
        let pads = [(pad_top, pad_bottom), (pad_left, pad_right)];
        record::<_, C, 2>(
            Depthwise,
            [x, weight],
            |[x, w]| {
                let g = geometry(&x, &w, stride, pads);
                let out = depthwise_forward(&x, &w, &g);
                ((x, w, g), out)
            },
            |[x, w]| depthwise_forward(&x, &w, &geometry(&x, &w, stride, pads)),
        )
    }
}

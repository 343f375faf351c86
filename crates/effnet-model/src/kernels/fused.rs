//! Inference-only fusions on Flex (no autodiff, f32): BatchNorm folded into the output of the
//! 1×1 and depthwise convolutions, the activation applied while that output is in cache,
//! squeeze-excitation's squeeze computed in the depthwise pass and its rescale folded into the
//! projection GEMM, and the residual added in the projection's epilogue. An MBConv block then
//! costs three passes over memory (expand, depthwise, project) instead of about nine.
//!
//! This is what ONNX Runtime does at export (BN folded into the conv weights, fused
//! conv+activation); burn 0.22.1 has no graph-level fusion on its CPU backend, so the model
//! calls these directly when [`super::fused_inference`] says they apply.

use super::flex::{contiguous, geometry, new_tensor, pw_dims, slice};
use super::simd::{self, Act};
use super::{depthwise, pointwise};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::Shape;
use rayon::prelude::*;

/// The contiguous Flex primitive of a non-autodiff f32 tensor.
pub fn primitive<const D: usize>(t: Tensor<D>) -> FlexTensor {
    contiguous(t.try_into_primitive::<Flex>().unwrap_or_else(|e| panic!("fused kernels need a Flex tensor: {e:?}")))
}

/// A Flex primitive back as a tensor.
pub fn tensor<const D: usize>(t: FlexTensor) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(t)
}

/// `act(scale ⊙ conv1×1(gates ⊙ x) + shift) + residual` (see [`pointwise::forward_affine`]).
pub fn pointwise_affine(
    x: FlexTensor,
    w: FlexTensor,
    bn: (&[f32], &[f32]),
    act: Act,
    gates: Option<&[f32]>,
    residual: Option<FlexTensor>,
) -> FlexTensor {
    let d = pw_dims(&x, &w);
    let shape = x.layout().shape();
    let out = Shape::from([d.batch, d.cout, shape[2], shape[3]]);
    let residual = residual.map(contiguous);
    if let Some(r) = &residual {
        assert_eq!(r.layout().shape(), &out, "residual shape");
    }
    let y = pointwise::forward_affine(&d, slice(&x), slice(&w), bn, act, gates, residual.as_ref().map(slice));
    new_tensor(y, out)
}

/// `act(scale ⊙ depthwise(x) + shift)` and, with `squeeze`, each plane's mean of the result.
pub fn depthwise_affine(
    x: FlexTensor,
    w: FlexTensor,
    stride: usize,
    pads: [(usize, usize); 2],
    bn: (&[f32], &[f32]),
    act: Act,
    squeeze: bool,
) -> (FlexTensor, Option<Vec<f32>>) {
    let g = geometry(&x, &w, stride, pads);
    let mut means = squeeze.then(|| vec![0.0f32; g.batch * g.channels]);
    let y = depthwise::forward_affine(&g, slice(&x), slice(&w), bn, act, means.as_deref_mut());
    (new_tensor(y, Shape::from([g.batch, g.channels, g.out_height, g.out_width])), means)
}

/// `act(scale ⊙ conv(x) + shift)` for a dense (groups = 1) k×k conv without bias (the stem):
/// the input is unfolded into `[n, c_in·k·k, out_h·out_w]` columns (im2col) and multiplied by
/// the `[c_out, c_in·k·k]` weights with the epilogue of [`pointwise::forward_affine`].
pub fn conv_affine(
    x: FlexTensor,
    w: FlexTensor,
    stride: usize,
    [(top, bottom), (left, right)]: [(usize, usize); 2],
    bn: (&[f32], &[f32]),
    act: Act,
) -> FlexTensor {
    let (xd, wd) = (x.layout().shape().clone(), w.layout().shape().clone());
    let ([n, cin, h, wi], [cout, wc, k, k2]) = ([xd[0], xd[1], xd[2], xd[3]], [wd[0], wd[1], wd[2], wd[3]]);
    assert!(wc == cin && k == k2, "conv weight {wd:?} for input {xd:?}");
    let out_h = (h + top + bottom - k) / stride + 1;
    let out_w = (wi + left + right - k) / stride + 1;
    let (rows, plane) = (cin * k * k, out_h * out_w);
    let xs = slice(&x);
    let mut cols = vec![0.0f32; n * rows * plane];
    cols.par_chunks_mut(plane).enumerate().for_each(|(r, dst)| {
        let (s, row) = (r / rows, r % rows);
        let (c, kh, kw) = (row / (k * k), row / k % k, row % k);
        let src = &xs[(s * cin + c) * h * wi..][..h * wi];
        for (oh, d) in dst.chunks_exact_mut(out_w).enumerate() {
            let Some(ih) = (oh * stride + kh).checked_sub(top).filter(|&ih| ih < h) else { continue };
            for (ow, v) in d.iter_mut().enumerate() {
                if let Some(iw) = (ow * stride + kw).checked_sub(left).filter(|&iw| iw < wi) {
                    *v = src[ih * wi + iw];
                }
            }
        }
    });
    let d = pointwise::Dims { batch: n, cin: rows, cout, plane };
    let y = pointwise::forward_affine(&d, &cols, slice(&w), bn, act, None, None);
    new_tensor(y, Shape::from([n, cout, out_h, out_w]))
}

/// Squeeze-excitation's gates from the squeezed `[n, c]` means:
/// `sigmoid(W₂ · act(W₁ · m + b₁) + b₂)` with `W₁` `[r, c]` and `W₂` `[c, r]`.
pub fn se_gates(
    means: &[f32],
    channels: usize,
    (w1, b1): (&[f32], &[f32]),
    (w2, b2): (&[f32], &[f32]),
    act: Act,
) -> Vec<f32> {
    let r = b1.len();
    assert!(w1.len() == r * channels && w2.len() == channels * r && b2.len() == channels);
    assert!(means.len().is_multiple_of(channels));
    let mut gates = Vec::with_capacity(means.len());
    let mut hidden = vec![0.0f32; r];
    for m in means.chunks_exact(channels) {
        for (j, h) in hidden.iter_mut().enumerate() {
            *h = b1[j] + simd::dot(&w1[j * channels..][..channels], m);
        }
        simd::affine_act(&mut hidden, 1.0, 0.0, act);
        gates.extend((0..channels).map(|i| b2[i] + simd::dot(&w2[i * r..][..r], &hidden)));
    }
    simd::sigmoid_in_place(&mut gates);
    gates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn se_gates_match_the_definition() {
        let (n, c, r) = (3, 10, 4);
        let v = |len, seed| crate::kernels::test_values(len, seed, 0.0);
        let (m, w1, b1, w2, b2) = (v(n * c, 1), v(r * c, 2), v(r, 3), v(c * r, 4), v(c, 5));
        for act in [Act::Silu, Act::Relu6] {
            let g = se_gates(&m, c, (&w1, &b1), (&w2, &b2), act);
            for s in 0..n {
                let h: Vec<f64> = (0..r)
                    .map(|j| {
                        let z = b1[j] as f64 + (0..c).map(|i| w1[j * c + i] as f64 * m[s * c + i] as f64).sum::<f64>();
                        if act == Act::Silu { z / (1.0 + (-z).exp()) } else { z.clamp(0.0, 6.0) }
                    })
                    .collect();
                for i in 0..c {
                    let z = b2[i] as f64 + (0..r).map(|j| w2[i * r + j] as f64 * h[j]).sum::<f64>();
                    let want = 1.0 / (1.0 + (-z).exp());
                    assert!((g[s * c + i] as f64 - want).abs() < 1e-6, "{act:?} gate {s},{i}");
                }
            }
        }
    }
}

//! Inference-only fusions on Flex (no autodiff, f32): BatchNorm folded into the output of the
//! 1×1 and depthwise convolutions, the activation applied while that output is in cache,
//! squeeze-excitation's squeeze computed in the depthwise pass and its rescale folded into the
//! projection GEMM, and the residual added in the projection's epilogue. An MBConv block then
//! costs three passes over memory (expand, depthwise, project) instead of about nine.
//!
//! This is what ONNX Runtime does at export (BN folded into the conv weights, fused
//! conv+activation); burn 0.22.1 has no graph-level fusion on its CPU backend, so the model
//! calls these directly when [`crate::fused_inference`] says they apply.

use super::activation::{self, Act};
use super::flex::{contiguous, new_tensor, pw_dims, slice};
use super::layout::{channels_last_strides, channels_last_tensor};
use super::pointwise::{dense, row_major, transposed};
use super::simd;
use super::{channels_last, depthwise, pointwise};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::Shape;
use rayon::prelude::*;

/// The contiguous Flex primitive of a non-autodiff f32 tensor.
pub fn primitive<const D: usize>(t: Tensor<D>) -> FlexTensor {
    contiguous(raw(t))
}

/// The Flex primitive of a non-autodiff f32 tensor, in whatever memory order it has (the
/// activations between fused kernels may be channels-last, see [`channels_last_tensor`]).
pub fn raw<const D: usize>(t: Tensor<D>) -> FlexTensor {
    t.try_into_primitive::<Flex>().unwrap_or_else(|e| panic!("fused kernels need a Flex tensor: {e:?}"))
}

/// A Flex primitive back as a tensor.
pub fn tensor<const D: usize>(t: FlexTensor) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(t)
}

/// `x`'s elements in channels-last order, as a contiguous `[n, h, w, c]` tensor: the same
/// storage when the small-map kernels produced `x` (see [`channels_last_tensor`]), a transposed
/// copy otherwise.
fn nhwc_rows(x: FlexTensor) -> FlexTensor {
    contiguous(x.permute(&[0, 2, 3, 1]))
}

/// `act(scale ⊙ conv1×1(gates ⊙ x) + shift) + residual`, channels-last out (see
/// [`channels_last::pointwise_affine`]).
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
    let out = [d.batch, d.cout, shape[2], shape[3]];
    if let Some(r) = &residual {
        assert_eq!(r.layout().shape(), &Shape::from(out), "residual shape");
    }
    let (x, residual) = (nhwc_rows(x), residual.map(nhwc_rows));
    let y = channels_last::pointwise_affine(&d, slice(&x), slice(&w), bn, act, gates, residual.as_ref().map(slice));
    channels_last_tensor(y, out)
}

/// A whole MBConv block on `x` (`[n, c_in, h, w]` in either memory order), channels-last out
/// (see [`channels_last::mbconv`]).
pub fn mbconv(x: FlexTensor, block: &channels_last::Block) -> FlexTensor {
    let d = x.layout().shape().clone();
    let x = nhwc_rows(x);
    let (y, shape) = channels_last::mbconv(slice(&x), [d[0], d[1], d[2], d[3]], block);
    channels_last_tensor(y, shape)
}

/// Global average pooling and the classifier: `mean_hw(x) · W + b` for `x` `[n, c, h, w]` (in
/// either memory order) and `W` `[c, classes]` (burn's `Linear` layout): one pass for the
/// pooling instead of burn's two reductions over a strided tensor, and one GEMM with the bias as
/// its initial value that uses every thread (at 32² and batch 64 it is bound by reading `W`,
/// 5 MB for 1000 classes: ≈ 4 ms against ≈ 5 through burn's ops).
pub fn pool_linear(x: FlexTensor, w: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
    let d = x.layout().shape().clone();
    let (n, c, plane) = (d[0], d[1], d[2] * d[3]);
    let classes = w.layout().shape()[1];
    assert_eq!(w.layout().shape()[0], c, "classifier input width");
    let channels_last_order = x.layout().strides() == channels_last_strides([n, c, d[2], d[3]]);
    let x = if channels_last_order { nhwc_rows(x) } else { contiguous(x) };
    let xs = slice(&x);
    let mut pooled = vec![0.0f32; n * c];
    let inv = 1.0 / plane as f32;
    pooled.par_chunks_mut(c).zip(xs.par_chunks(c * plane)).for_each(|(m, xn)| {
        if channels_last_order {
            for row in xn.chunks_exact(c) {
                m.iter_mut().zip(row).for_each(|(m, v)| *m += v);
            }
            m.iter_mut().for_each(|m| *m *= inv);
        } else {
            for (m, p) in m.iter_mut().zip(xn.chunks_exact(plane)) {
                *m = simd::sum(p) * inv;
            }
        }
    });
    let bias = bias.map(contiguous);
    let zeros = vec![0.0f32; classes];
    let y = dense(&pooled, n, c, row_major(slice(&w), c, classes), bias.as_ref().map_or(&zeros, |b| slice(b)));
    new_tensor(y, Shape::from([n, classes]))
}

/// `act(scale ⊙ conv(x) + shift)` for a dense (groups = 1) k×k conv without bias (the stem),
/// channels-last out: the input is unfolded into `c_in·k·k` rows of output columns (im2col)
/// block by block, each block multiplied by the `[c_out, c_in·k·k]` weights and finished while
/// it is in cache (see [`channels_last::blocked`]).
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
    let x = contiguous(x);
    let xs = slice(&x);
    let unfold = Unfold { cin, h, w: wi, k, stride, top, left, out_w };
    let fill =
        |s: usize, p0: usize, block: &mut [f32]| unfold.block(&xs[s * cin * h * wi..][..cin * h * wi], p0, block);
    let d = pointwise::Dims { batch: n, cin: rows, cout, plane };
    let y = channels_last::blocked(&d, channels_last::Input::Unfolded(&fill), slice(&w), bn, act, None);
    channels_last_tensor(y, [n, cout, out_h, out_w])
}

/// The im2col of one sample for a k×k conv (see [`conv_affine`]).
struct Unfold {
    cin: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    top: usize,
    left: usize,
    out_w: usize,
}

impl Unfold {
    /// Output columns `p0 .. p0 + len` of sample `xs` (`[c_in, h, w]`) unfolded into `block`
    /// (`c_in·k·k` rows of `len`): row (c, kh, kw) holds input pixel
    /// `(oh·stride + kh − top, ow·stride + kw − left)` of channel c for each output (oh, ow),
    /// zero where that is padding. Every element of `block` is written.
    fn block(&self, xs: &[f32], p0: usize, block: &mut [f32]) {
        let Self { cin, h, w, k, stride, top, left, out_w } = *self;
        let len = block.len() / (cin * k * k);
        for (row, dst) in block.chunks_exact_mut(len).enumerate() {
            let (c, kh, kw) = (row / (k * k), row / k % k, row % k);
            let src = &xs[c * h * w..][..h * w];
            // Output columns whose input column `ow·stride + kw − left` is inside the image.
            let lo = left.saturating_sub(kw).div_ceil(stride).min(out_w);
            let hi = (w + left).saturating_sub(kw).div_ceil(stride).clamp(lo, out_w);
            let mut p = p0;
            while p < p0 + len {
                let (oh, ow0) = (p / out_w, p % out_w);
                let ow1 = out_w.min(ow0 + p0 + len - p);
                let seg = &mut dst[p - p0..][..ow1 - ow0];
                p += ow1 - ow0;
                let Some(ih) = (oh * stride + kh).checked_sub(top).filter(|&ih| ih < h) else {
                    seg.fill(0.0);
                    continue;
                };
                let (a, b) = (lo.clamp(ow0, ow1), hi.clamp(ow0, ow1));
                seg[..a - ow0].fill(0.0);
                seg[b - ow0..].fill(0.0);
                if a < b {
                    let from = &src[ih * w + a * stride + kw - left..(ih + 1) * w];
                    let d = &mut seg[a - ow0..b - ow0];
                    match stride {
                        1 => d.copy_from_slice(&from[..b - a]),
                        2 => depthwise::every_other(from, d),
                        _ => d.iter_mut().enumerate().for_each(|(i, v)| *v = from[i * stride]),
                    }
                }
            }
        }
    }
}

/// Squeeze-excitation's gates from the squeezed `[n, c]` means:
/// `sigmoid(W₂ · act(W₁ · m + b₁) + b₂)` with `W₁` `[r, c]` and `W₂` `[c, r]`.
///
/// Two GEMMs over all samples (`[n, c] · W₁ᵀ`, then `[n, r] · W₂ᵀ`): one dot product per
/// sample and output read both weight matrices once per sample, 3 ms per 1152-channel block
/// of B0 at batch 64.
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
    let n = means.len() / channels;
    let mut hidden = dense(means, n, channels, transposed(w1, r, channels), b1);
    activation::affine_act(&mut hidden, 1.0, 0.0, act);
    let mut gates = dense(&hidden, n, r, transposed(w2, channels, r), b2);
    activation::sigmoid_in_place(&mut gates);
    gates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_affine_matches_the_definition() {
        // The stem's TF-SAME stride 2 (extra pixel bottom/right) on odd and even sizes, PyTorch's
        // symmetric padding, stride 1, a kernel wider than a narrow image, and 40 input channels
        // (360 unfolded rows: blocks of 80 columns that start and end mid-row).
        let v = |len, seed| crate::test_values(len, seed, 0.0);
        for (n, cin, h, wi, cout, k, stride, pads) in [
            (2, 3, 9, 8, 4, 3, 2, [(0, 1), (0, 1)]),
            (1, 3, 10, 7, 5, 3, 2, [(1, 1), (1, 1)]),
            (2, 2, 6, 5, 3, 3, 1, [(1, 1), (1, 1)]),
            (1, 2, 5, 2, 2, 5, 1, [(2, 2), (2, 2)]),
            (1, 40, 13, 11, 3, 3, 1, [(1, 1), (1, 1)]),
            (2, 40, 25, 22, 2, 3, 2, [(0, 1), (0, 1)]),
        ] {
            let [(top, bottom), (left, right)] = pads;
            let (x, w) = (v(n * cin * h * wi, 1), v(cout * cin * k * k, 2));
            let (scale, shift) = (v(cout, 3), v(cout, 4));
            let t = |d: Vec<f32>, shape: [usize; 4]| new_tensor(d, Shape::from(shape));
            let y = conv_affine(
                t(x.clone(), [n, cin, h, wi]),
                t(w.clone(), [cout, cin, k, k]),
                stride,
                pads,
                (&scale, &shift),
                Act::Silu,
            );
            let (oh_n, ow_n) = ((h + top + bottom - k) / stride + 1, (wi + left + right - k) / stride + 1);
            assert_eq!(y.layout().shape(), &Shape::from([n, cout, oh_n, ow_n]));
            let y = contiguous(y);
            let y = slice(&y);
            for (i, &got) in y.iter().enumerate() {
                let (s, o, oh, ow) = (i / (cout * oh_n * ow_n), i / (oh_n * ow_n) % cout, i / ow_n % oh_n, i % ow_n);
                let mut acc = 0.0f64;
                for c in 0..cin {
                    for kh in 0..k {
                        for kw in 0..k {
                            let (ih, iw) = (
                                (oh * stride + kh) as isize - top as isize,
                                (ow * stride + kw) as isize - left as isize,
                            );
                            if (0..h as isize).contains(&ih) && (0..wi as isize).contains(&iw) {
                                acc += w[((o * cin + c) * k + kh) * k + kw] as f64
                                    * x[((s * cin + c) * h + ih as usize) * wi + iw as usize] as f64;
                            }
                        }
                    }
                }
                let z = acc * scale[o] as f64 + shift[o] as f64;
                let want = z / (1.0 + (-z).exp());
                assert!((got as f64 - want).abs() < 1e-5, "{pads:?} s{stride} y[{s},{o},{oh},{ow}] = {got} vs {want}");
            }
        }
    }

    #[test]
    fn unfolded_blocks_overwrite_their_whole_buffer() {
        // Blocks that start and end mid-row, into buffers full of NaN (a reused buffer holds
        // the previous block's values): every element is written, padding as zeros.
        let (cin, h, w, k) = (2, 7, 6, 3);
        for (stride, top, left, out_h, out_w) in [(2, 0, 0, 4, 3), (1, 1, 1, 7, 6), (2, 1, 1, 4, 3)] {
            let u = Unfold { cin, h, w, k, stride, top, left, out_w };
            let xs = crate::test_values(cin * h * w, 9, 2.0);
            let plane = out_h * out_w;
            for (p0, len) in [(0, plane), (1, 5), (4, plane - 4)] {
                let mut block = vec![f32::NAN; cin * k * k * len];
                u.block(&xs, p0, &mut block);
                for (i, &v) in block.iter().enumerate() {
                    let (row, j) = (i / len, i % len);
                    let (c, kh, kw, p) = (row / (k * k), row / k % k, row % k, p0 + j);
                    let (ih, iw) = (
                        (p / out_w * stride + kh) as isize - top as isize,
                        (p % out_w * stride + kw) as isize - left as isize,
                    );
                    let inside = (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw);
                    let want = if inside { xs[(c * h + ih as usize) * w + iw as usize] } else { 0.0 };
                    assert_eq!(v, want, "stride {stride} pad {top},{left} block {p0}+{len} row {row} col {j}");
                }
            }
        }
    }

    #[test]
    fn se_gates_match_the_definition() {
        let (n, c, r) = (3, 10, 4);
        let v = |len, seed| crate::test_values(len, seed, 0.0);
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

//! Squeeze-excitation as one differentiable op on contiguous NCHW (or channels-last) `f32` slices:
//! `y = x · sigmoid(W₂ · act(W₁ · mean(x) + b₁) + b₂)` per (sample, channel) plane, with
//! `W₁` `[r, c]` and `W₂` `[c, r]` (the two 1×1 convs on the squeezed map).
//!
//! Written by hand because in burn 0.22.1 the block is six ops whose backward touches the full
//! map five times: the rescale's input gradient, the mean's broadcast (a tensor of ones times
//! the gradient), the sum of the two gradients of `x`, and the two 1×1 convs with bias on 1×1
//! maps through im2col and a transposed conv (5–7 % of a B0 training step at 32²). Here the
//! forward reads `x` twice (squeeze, rescale) and the backward reads the output gradient and
//! `x` once and writes the input gradient over the output gradient; the small products in
//! between are GEMMs over the batch.

use super::activation::{self, Act};
use super::pointwise::{matmul, row_major, transposed};
use super::simd::{self, filled};
use rayon::prelude::*;

/// `[n, c, h·w]` of the input, the bottleneck width `r`, and whether the input (and output)
/// are channels-last (`[n, h·w, c]` in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
    pub reduced: usize,
    pub channels_last: bool,
}

impl Dims {
    fn min_planes(&self) -> usize {
        (8192 / self.plane.max(1)).max(1)
    }
}

/// The two 1×1 convs: `(W₁ [r, c], b₁ [r])`, `(W₂ [c, r], b₂ [c])`, and the bottleneck's
/// activation.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub reduce: (&'a [f32], &'a [f32]),
    pub expand: (&'a [f32], &'a [f32]),
    pub act: Act,
}

/// What the backward needs besides `x` and the weights: per plane the mean and the gate, per
/// sample the bottleneck before and after its activation.
#[derive(Debug, Clone)]
pub struct Saved {
    means: Vec<f32>,
    pre: Vec<f32>,
    hidden: Vec<f32>,
    gates: Vec<f32>,
}

/// `lhs · rhs` (`m×k` by `k×n`) into a fresh row-major `m×n`, on one thread (these are at most
/// batch × 1152 × 48).
fn product(m: usize, n: usize, k: usize, lhs: super::pointwise::View, rhs: super::pointwise::View) -> Vec<f32> {
    // SAFETY: a non-accumulating GEMM writes all m×n outputs.
    unsafe { filled(m * n, |dst| matmul(dst, false, (m, n, k), lhs, rhs, 1)) }
}

/// `rows × k` `x` times the transpose of the row-major `n × k` weight,
/// plus `bias` on every row.
fn affine_rows(x: &[f32], rows: usize, k: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
    let n = bias.len();
    let mut y = product(rows, n, k, row_major(x, rows, k), transposed(w, n, k));
    for row in y.chunks_exact_mut(n) {
        row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
    }
    y
}

/// The output and what the backward keeps.
pub fn forward(d: &Dims, x: &[f32], w: &Weights) -> (Vec<f32>, Saved) {
    let (n, c, r, plane) = (d.batch, d.channels, d.reduced, d.plane);
    assert!(x.len() == n * c * plane && w.reduce.0.len() == r * c && w.expand.0.len() == c * r);
    let means: Vec<f32> = if d.channels_last {
        let mut m = vec![0.0f32; n * c];
        m.par_chunks_mut(c).zip(x.par_chunks(plane * c)).for_each(|(m, xn)| {
            xn.chunks_exact(c).for_each(|row| simd::add_to(m, row));
            m.iter_mut().for_each(|v| *v /= plane as f32);
        });
        m
    } else {
        x.par_chunks(plane).with_min_len(d.min_planes()).map(|p| simd::sum(p) / plane as f32).collect()
    };
    let pre = affine_rows(&means, n, c, w.reduce.0, w.reduce.1);
    let mut hidden = pre.clone();
    activation::affine_act(&mut hidden, 1.0, 0.0, w.act);
    let mut gates = affine_rows(&hidden, n, r, w.expand.0, w.expand.1);
    activation::sigmoid_in_place(&mut gates);
    // SAFETY: the planes (samples, channels-last) cover the output, each written whole.
    let y = unsafe {
        filled(x.len(), |y| {
            if d.channels_last {
                let zeros = vec![0.0f32; c];
                y.par_chunks_mut(plane * c)
                    .zip(x.par_chunks(plane * c))
                    .zip(gates.par_chunks(c))
                    .for_each(|((o, xn), gn)| activation::affine_act_rows_into(xn, o, gn, &zeros, Act::Identity));
            } else {
                y.par_chunks_mut(plane).with_min_len(d.min_planes()).enumerate().for_each(|(p, o)| {
                    simd::affine_into(&x[p * plane..][..plane], o, gates[p], 0.0);
                })
            }
        })
    };
    (y, Saved { means, pre, hidden, gates })
}

/// The activation's derivative at `v`.
fn act_grad(act: Act, v: f32) -> f32 {
    match act {
        Act::Identity => 1.0,
        Act::Silu => {
            let s = 1.0 / (1.0 + (-v).exp());
            s * (1.0 + v * (1.0 - s))
        }
        Act::Relu6 => f32::from(v > 0.0 && v < 6.0),
    }
}

/// Column sums of a row-major `rows × cols` matrix.
fn column_sums(a: &[f32], cols: usize) -> Vec<f32> {
    let mut s = vec![0.0f32; cols];
    for row in a.chunks_exact(cols) {
        s.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
    s
}

/// Gradients of the weights, in [`Weights`]' shapes.
#[derive(Debug)]
pub struct WeightGrads {
    pub reduce: (Vec<f32>, Vec<f32>),
    pub expand: (Vec<f32>, Vec<f32>),
}

/// The backward: `grad` (the output gradient) is overwritten by the input gradient; returns
/// the weights' gradients.
pub fn backward(d: &Dims, x: &[f32], w: &Weights, saved: &Saved, grad: &mut [f32]) -> WeightGrads {
    let (n, c, r, plane) = (d.batch, d.channels, d.reduced, d.plane);
    assert!(grad.len() == x.len() && x.len() == n * c * plane);
    let Saved { means, pre, hidden, gates } = saved;
    // d gate[p] = Σ over the plane of grad·x, then through the sigmoid.
    let dz: Vec<f32> = if d.channels_last {
        let mut dz = vec![0.0f32; n * c];
        dz.par_chunks_mut(c)
            .zip(grad.par_chunks(plane * c).zip(x.par_chunks(plane * c)))
            .zip(gates.par_chunks(c))
            .for_each(|((dz, (gn, xn)), sn)| {
                gn.chunks_exact(c).zip(xn.chunks_exact(c)).for_each(|(g, x)| simd::mul_add_to(dz, g, x));
                dz.iter_mut().zip(sn).for_each(|(v, &s)| *v *= s * (1.0 - s));
            });
        dz
    } else {
        grad.par_chunks(plane)
            .zip(x.par_chunks(plane))
            .with_min_len(d.min_planes())
            .zip(gates.par_iter())
            .map(|((g, xp), &s)| simd::dot_simd(g, xp) * s * (1.0 - s))
            .collect()
    };
    let expand = (product(c, r, n, transposed(&dz, n, c), row_major(hidden, n, r)), column_sums(&dz, c));
    let dh = product(n, r, c, row_major(&dz, n, c), row_major(w.expand.0, c, r));
    let dpre: Vec<f32> = dh.iter().zip(pre).map(|(&g, &v)| g * act_grad(w.act, v)).collect();
    let reduce = (product(r, c, n, transposed(&dpre, n, r), row_major(means, n, c)), column_sums(&dpre, r));
    let dmean = product(n, c, r, row_major(&dpre, n, r), row_major(w.reduce.0, r, c));
    // dx = grad·gate + dmean / (h·w), the mean's gradient spread over its plane.
    if d.channels_last {
        grad.par_chunks_mut(plane * c).zip(gates.par_chunks(c)).zip(dmean.par_chunks(c)).for_each(|((g, a), dm)| {
            let b: Vec<f32> = dm.iter().map(|v| v / plane as f32).collect();
            activation::affine_act_rows(g, a, &b, Act::Identity);
        });
    } else {
        grad.par_chunks_mut(plane).with_min_len(d.min_planes()).enumerate().for_each(|(p, g)| {
            activation::affine_act(g, gates[p], dmean[p] / plane as f32, Act::Identity);
        });
    }
    WeightGrads { reduce, expand }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_match_f64_definitions() {
        for (act, d) in [
            (Act::Silu, Dims { batch: 3, channels: 5, plane: 7 * 6, reduced: 2, channels_last: false }),
            (Act::Relu6, Dims { batch: 2, channels: 4, plane: 1, reduced: 3, channels_last: false }),
            (Act::Silu, Dims { batch: 3, channels: 21, plane: 3 * 5, reduced: 2, channels_last: true }),
            (Act::Silu, Dims { batch: 2, channels: 40, plane: 4, reduced: 5, channels_last: true }),
        ] {
            let (n, c, r, plane) = (d.batch, d.channels, d.reduced, d.plane);
            let v = |len, seed| crate::test_values(len, seed, 0.0).into_iter().map(|v| 3.0 * v).collect::<Vec<f32>>();
            let (x, dy) = (v(n * c * plane, 1), v(n * c * plane, 2));
            let (w1, b1, w2, b2) = (v(r * c, 3), v(r, 4), v(c * r, 5), v(c, 6));
            let w = Weights { reduce: (&w1, &b1), expand: (&w2, &b2), act };
            // Channels-last cases run on transposed copies, their outputs transposed back.
            let to = |a: &[f32]| {
                if d.channels_last { crate::channels_last::to_channels_last(a, n, c, plane) } else { a.to_vec() }
            };
            let back = |a: &[f32]| {
                if d.channels_last { crate::channels_last::to_channels_first(a, n, c, plane) } else { a.to_vec() }
            };
            let xs = to(&x);
            let (y, saved) = forward(&d, &xs, &w);
            let mut dx = to(&dy);
            let g = backward(&d, &xs, &w, &saved, &mut dx);
            let (y, dx) = (back(&y), back(&dx));
            // The definition in f64, and its gradients by central differences of the loss
            // Σ dy·y (the op is smooth away from ReLU6's kinks, which these values avoid).
            let f64s = |a: &[f32]| a.iter().map(|&v| v as f64).collect::<Vec<f64>>();
            let loss = |x: &[f64], w1: &[f64], b1: &[f64], w2: &[f64], b2: &[f64], out: Option<&mut Vec<f64>>| {
                let mut ys = vec![0.0; x.len()];
                for s in 0..n {
                    let m: Vec<f64> =
                        (0..c).map(|k| x[(s * c + k) * plane..][..plane].iter().sum::<f64>() / plane as f64).collect();
                    let h: Vec<f64> = (0..r)
                        .map(|j| {
                            let z = b1[j] + (0..c).map(|k| w1[j * c + k] * m[k]).sum::<f64>();
                            match act {
                                Act::Silu => z / (1.0 + (-z).exp()),
                                Act::Relu6 => z.clamp(0.0, 6.0),
                                Act::Identity => z,
                            }
                        })
                        .collect();
                    for k in 0..c {
                        let z = b2[k] + (0..r).map(|j| w2[k * r + j] * h[j]).sum::<f64>();
                        let gate = 1.0 / (1.0 + (-z).exp());
                        for i in 0..plane {
                            ys[(s * c + k) * plane + i] = x[(s * c + k) * plane + i] * gate;
                        }
                    }
                }
                let l = ys.iter().zip(&dy).map(|(y, &g)| y * g as f64).sum::<f64>();
                if let Some(out) = out {
                    *out = ys;
                }
                l
            };
            let params = [f64s(&x), f64s(&w1), f64s(&b1), f64s(&w2), f64s(&b2)];
            let mut want_y = Vec::new();
            loss(&params[0], &params[1], &params[2], &params[3], &params[4], Some(&mut want_y));
            for (i, (&a, &b)) in y.iter().zip(&want_y).enumerate() {
                assert!((a as f64 - b).abs() < 1e-5 * b.abs().max(1.0), "{act:?} y[{i}] {a} vs {b}");
            }
            let got: [&[f32]; 5] = [&dx, &g.reduce.0, &g.reduce.1, &g.expand.0, &g.expand.1];
            for (which, got) in got.into_iter().enumerate() {
                for (i, &a) in got.iter().enumerate() {
                    let mut p = params.clone();
                    let h = 1e-4;
                    p[which][i] += h;
                    let up = loss(&p[0], &p[1], &p[2], &p[3], &p[4], None);
                    p[which][i] -= 2.0 * h;
                    let down = loss(&p[0], &p[1], &p[2], &p[3], &p[4], None);
                    let want = (up - down) / (2.0 * h);
                    assert!(
                        (a as f64 - want).abs() < 1e-3 * want.abs().max(1.0),
                        "{act:?} grad {which}[{i}]: {a} vs {want}"
                    );
                }
            }
        }
    }
}

//! Training-mode BatchNorm, optionally followed by SiLU, on channels-last rows (`[m, c]`, one
//! row per pixel of the whole batch): the batch statistics, the normalisation and the backward,
//! each channel's sums vectorised across channels and the rows split between threads.
//!
//! The NCHW kernels (`crate::batchnorm`) reduce plane by plane, and the planes of B0 at 32²
//! input are 16 pixels down to 1; here a task's rows are long runs whatever the map's size.

use crate::activation::{Act, silu_grad_lanes};
use crate::isa::{Simd, simd_fn};
use crate::simd::filled;
use rayon::prelude::*;

/// Rows per task: at least ~16 k elements.
fn rows_per_task(c: usize) -> usize {
    (16 * 1024 / c.max(1)).max(1)
}

/// What [`column_sums`] adds up per channel over rows of `x`.
#[derive(Clone, Copy)]
enum Sums<'a> {
    /// Σ x.
    Plain,
    /// Σ (x − mean)².
    CentredSquares(&'a [f32]),
    /// `g ← g·silu'(a·x + b)` in place (the gradient of BatchNorm's output from SiLU's), then
    /// Σ g and Σ g·(x − mean) (BatchNorm's backward sums).
    SiluGrad { a: &'a [f32], b: &'a [f32], mean: &'a [f32] },
    /// Σ g and Σ g·(x − mean) of the given `g`.
    Grad { mean: &'a [f32] },
}

/// Per channel, the sums `what` asks for over all rows, in f64 (`[c]` or `[2c]`: the second
/// sum after the first). `g` (same shape as `x`) is the gradient for the backward's sums.
fn column_sums(x: &[f32], g: Option<&mut [f32]>, c: usize, what: Sums) -> Vec<f64> {
    let two = matches!(what, Sums::SiluGrad { .. } | Sums::Grad { .. });
    let width = if two { 2 * c } else { c };
    let per = rows_per_task(c) * c;
    let partial: Vec<Vec<f32>> = match g {
        Some(g) => g
            .par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .map(|(g, x)| {
                let mut acc = vec![0.0f32; width];
                sums_rows(x, Some(g), c, what, &mut acc);
                acc
            })
            .collect(),
        None => x
            .par_chunks(per)
            .map(|x| {
                let mut acc = vec![0.0f32; width];
                sums_rows(x, None, c, what, &mut acc);
                acc
            })
            .collect(),
    };
    let mut total = vec![0.0f64; width];
    for p in &partial {
        total.iter_mut().zip(p).for_each(|(t, &v)| *t += v as f64);
    }
    total
}

#[inline(always)]
fn sums_rows_body<S: Simd>(s: S, x: &[f32], mut g: Option<&mut [f32]>, c: usize, what: Sums, acc: &mut [f32]) {
    let l = S::LANES;
    assert!(x.len().is_multiple_of(c) && g.as_ref().is_none_or(|g| g.len() == x.len()));
    for (r, row) in x.chunks_exact(c).enumerate() {
        let mut grow = g.as_deref_mut().map(|g| &mut g[r * c..][..c]);
        let mut i = 0;
        while i < c {
            let xv = s.load_upto(row, i);
            match what {
                Sums::Plain => {
                    let t = s.add(s.load_upto(acc, i), xv);
                    s.store_upto(acc, i, t);
                }
                Sums::CentredSquares(mean) => {
                    let d = s.sub(xv, s.load_upto(mean, i));
                    let t = s.fma(d, d, s.load_upto(acc, i));
                    s.store_upto(acc, i, t);
                }
                Sums::SiluGrad { a, b, mean } => {
                    let grow = grow.as_deref_mut().expect("gradient");
                    let z = s.fma(xv, s.load_upto(a, i), s.load_upto(b, i));
                    let gv = silu_grad_lanes(s, z, s.load_upto(grow, i));
                    s.store_upto(grow, i, gv);
                    add_grad_sums(s, &mut *acc, c, i, gv, s.sub(xv, s.load_upto(mean, i)));
                }
                Sums::Grad { mean } => {
                    let gv = s.load_upto(grow.as_deref().expect("gradient"), i);
                    add_grad_sums(s, &mut *acc, c, i, gv, s.sub(xv, s.load_upto(mean, i)));
                }
            }
            i += l;
        }
    }
}

/// `acc[i ..] += g`, `acc[c + i ..] += g·d` (the lanes inside the c channels).
#[inline(always)]
fn add_grad_sums<S: Simd>(s: S, acc: &mut [f32], c: usize, i: usize, g: S::V, d: S::V) {
    let (first, second) = acc.split_at_mut(c);
    let t = s.add(s.load_upto(first, i), g);
    s.store_upto(first, i, t);
    let t = s.fma(g, d, s.load_upto(second, i));
    s.store_upto(second, i, t);
}

simd_fn!(fn sums_rows(x: &[f32], g: Option<&mut [f32]>, c: usize, what: Sums, acc: &mut [f32]) = sums_rows_body);

/// Per-channel batch mean and biased variance of `[m, c]` rows, in two passes (exact for large
/// means, unlike Σx² − (Σx)²).
pub fn stats(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    let m = (x.len() / c) as f64;
    let mean: Vec<f32> = column_sums(x, None, c, Sums::Plain).iter().map(|s| (s / m) as f32).collect();
    let var = column_sums(x, None, c, Sums::CentredSquares(&mean)).iter().map(|s| (s / m) as f32).collect();
    (mean, var)
}

/// `act(a·x + b)` per channel on `[m, c]` rows into a new buffer (`a`, `b` from
/// `batchnorm::affine`).
pub fn normalize(x: &[f32], a: &[f32], b: &[f32], act: Act) -> Vec<f32> {
    let c = a.len();
    let per = rows_per_task(c) * c;
    // SAFETY: the chunks cover the output and each is written whole.
    unsafe {
        filled(x.len(), |y| {
            y.par_chunks_mut(per)
                .zip(x.par_chunks(per))
                .for_each(|(y, x)| crate::activation::affine_act_rows_into(x, y, a, b, act))
        })
    }
}

/// Gradients of training-mode BatchNorm on `[m, c]` rows (see `crate::batchnorm::backward`):
/// `(dx, dγ, dβ)`.
pub fn backward(
    x: &[f32],
    dy: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut g = dy.to_vec();
    let (dgamma, dbeta) = finish(x, &mut g, Sums::Grad { mean }, (mean, var, gamma), eps);
    (g, dgamma, dbeta)
}

/// [`backward`] of BatchNorm followed by SiLU: `grad` (the SiLU output's gradient) is overwritten
/// by the input gradient; returns `(dγ, dβ)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_silu(
    x: &[f32],
    grad: &mut [f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let (a, b) = crate::batchnorm::affine(mean, var, gamma, beta, eps);
    finish(x, grad, Sums::SiluGrad { a: &a, b: &b, mean }, (mean, var, gamma), eps)
}

/// The backward's sums (`what`), then `g ← k₁·g + k₂·x + k₃` per channel; returns `(dγ, dβ)`.
fn finish(
    x: &[f32],
    g: &mut [f32],
    what: Sums,
    (mean, var, gamma): (&[f32], &[f32], &[f32]),
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let c = mean.len();
    let m = (x.len() / c) as f64;
    let sums = column_sums(x, Some(&mut *g), c, what);
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) =
        (0..c).map(|i| (sums[i] as f32, (sums[c + i] / (var[i] as f64 + eps).sqrt()) as f32)).unzip();
    let (mut k1, mut k2, mut k3) = (vec![0.0f32; c], vec![0.0f32; c], vec![0.0f32; c]);
    for i in 0..c {
        let inv_std = 1.0 / (var[i] as f64 + eps).sqrt();
        let gs = gamma[i] as f64 * inv_std;
        let b2 = -gs * inv_std * dgamma[i] as f64 / m;
        k1[i] = gs as f32;
        k2[i] = b2 as f32;
        k3[i] = (-gs * dbeta[i] as f64 / m - b2 * mean[i] as f64) as f32;
    }
    let per = rows_per_task(c) * c;
    g.par_chunks_mut(per).zip(x.par_chunks(per)).for_each(|(g, x)| affine2_rows(g, x, &k1, &k2, &k3));
    (dgamma, dbeta)
}

#[inline(always)]
fn affine2_rows_body<S: Simd>(s: S, g: &mut [f32], x: &[f32], k1: &[f32], k2: &[f32], k3: &[f32]) {
    let c = k1.len();
    for (grow, xrow) in g.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        let mut i = 0;
        while i < c {
            let t = s.fma(s.load_upto(k2, i), s.load_upto(xrow, i), s.load_upto(k3, i));
            let t = s.fma(s.load_upto(k1, i), s.load_upto(grow, i), t);
            s.store_upto(grow, i, t);
            i += S::LANES;
        }
    }
}

simd_fn!(
    /// `g ← k₁·g + k₂·x + k₃` per channel on `[m, c]` rows.
    fn affine2_rows(g: &mut [f32], x: &[f32], k1: &[f32], k2: &[f32], k3: &[f32]) = affine2_rows_body
);

#[cfg(test)]
mod tests {
    use super::*;

    /// BatchNorm (+ SiLU) on channels-last rows equals the NCHW kernels on the same data.
    #[test]
    fn equals_the_nchw_kernels() {
        for (n, c, plane) in [(3, 5, 7), (2, 40, 9), (4, 19, 1), (2, 96, 16)] {
            let x: Vec<f32> = crate::test_values(n * c * plane, 1, 0.0).iter().map(|v| v * 2.0 + 3.0).collect();
            let dy = crate::test_values(n * c * plane, 2, 0.0);
            let gamma = crate::test_values(c, 3, 1.0);
            let beta = crate::test_values(c, 4, 0.0);
            let eps = 1e-3;
            let d = crate::batchnorm::Dims { batch: n, channels: c, plane };
            let nhwc = |v: &[f32]| super::super::to_channels_last(v, n, c, plane);
            let (xt, dyt) = (nhwc(&x), nhwc(&dy));
            let (mean, var) = stats(&xt, c);
            let (mean0, var0) = crate::batchnorm::stats(&d, &x);
            for i in 0..c {
                assert!((mean[i] - mean0[i]).abs() <= 1e-5 * mean0[i].abs().max(1.0), "mean {i}");
                assert!((var[i] - var0[i]).abs() <= 1e-4 * var0[i].abs().max(1.0), "var {i}");
            }
            let (a, b) = crate::batchnorm::affine(&mean0, &var0, &gamma, &beta, eps);
            for silu in [false, true] {
                let act = if silu { Act::Silu } else { Act::Identity };
                let y = normalize(&xt, &a, &b, act);
                let y0 = nhwc(&crate::batchnorm::normalize(&d, &x, &a, &b, silu));
                let close = |p: f32, q: f32| (p - q).abs() <= 1e-4 * q.abs().max(1.0);
                assert!(y.iter().zip(&y0).all(|(&p, &q)| close(p, q)), "{n}×{c}×{plane} y silu {silu}");
                let (dx, dg, db) = if silu {
                    let mut g = dyt.clone();
                    let (dg, db) = backward_silu(&xt, &mut g, &mean0, &var0, &gamma, &beta, eps);
                    (g, dg, db)
                } else {
                    backward(&xt, &dyt, &mean0, &var0, &gamma, eps)
                };
                let (dx0, dg0, db0) = if silu {
                    let mut g = dy.clone();
                    let (dg, db) = crate::batchnorm::backward_silu(&d, &x, &mut g, &mean0, &var0, &gamma, &beta, eps);
                    (g, dg, db)
                } else {
                    crate::batchnorm::backward(&d, &x, &dy, &mean0, &var0, &gamma, eps)
                };
                let dx0 = nhwc(&dx0);
                for (i, (p, q)) in dx.iter().zip(&dx0).enumerate() {
                    assert!(close(*p, *q), "{n}×{c}×{plane} silu {silu} dx[{i}]: {p} vs {q}");
                }
                for i in 0..c {
                    assert!(close(dg[i], dg0[i]) && close(db[i], db0[i]), "{n}×{c}×{plane} silu {silu} dγ/dβ {i}");
                }
                assert!(db.iter().any(|v| v.abs() > 0.05), "a gradient worth comparing: {db:?}");
            }
        }
    }
}

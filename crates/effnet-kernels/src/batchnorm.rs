//! Training-mode BatchNorm over contiguous NCHW `f32` slices: batch statistics, normalisation
//! and the backward, each one parallel pass (two for the backward), optionally with the SiLU
//! that follows it fused in (its input, the BatchNorm output, is then never stored: the
//! backward recomputes it from `x`).
//!
//! Written by hand because burn 0.22.1 decomposes `batch_norm_train` and its backward into
//! about ten serial element-wise passes plus transposing copies (11 % of a B0 training step at
//! 32², 18 % at 224²).

use super::activation::{Act, affine_act_into, silu_grad_sums};
use super::simd::madd;
use rayon::prelude::*;

/// `[n, c, h·w]` of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
}

impl Dims {
    fn count(&self) -> usize {
        self.batch * self.plane
    }

    fn min_channels(&self) -> usize {
        (16_384 / self.count().max(1)).max(1)
    }

    fn min_planes(&self) -> usize {
        (8_192 / self.plane.max(1)).max(1)
    }
}

/// `Σ a[i]` and `Σ a[i]·(b[i] − shift)` with 8 f32 lanes, returned in f64.
#[inline(always)]
fn sums_body<const F: bool>(a: &[f32], b: Option<(&[f32], f32)>) -> (f64, f64) {
    let mut s = [0.0f32; 8];
    let mut p = [0.0f32; 8];
    let n8 = a.len() / 8 * 8;
    match b {
        None => {
            for ca in a[..n8].chunks_exact(8) {
                for j in 0..8 {
                    s[j] += ca[j];
                }
            }
        }
        // Σ a and Σ a·(b − shift).
        Some((b, shift)) => {
            for (ca, cb) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
                for j in 0..8 {
                    s[j] += ca[j];
                    p[j] += ca[j] * (cb[j] - shift);
                }
            }
        }
    }
    let mut s64: f64 = s.iter().map(|&v| v as f64).sum();
    let mut p64: f64 = p.iter().map(|&v| v as f64).sum();
    for i in n8..a.len() {
        s64 += a[i] as f64;
        if let Some((b, shift)) = b {
            p64 += (a[i] * (b[i] - shift)) as f64;
        }
    }
    (s64, p64)
}

/// `Σ (a[i] − mu)²` with 8 f32 lanes, returned in f64.
#[inline(always)]
fn centred_squares_body<const F: bool>(a: &[f32], mu: f32) -> f64 {
    let mut q = [0.0f32; 8];
    let n8 = a.len() / 8 * 8;
    for ca in a[..n8].chunks_exact(8) {
        for j in 0..8 {
            let t = ca[j] - mu;
            q[j] += t * t;
        }
    }
    q.iter().map(|&v| v as f64).sum::<f64>() + a[n8..].iter().map(|&v| ((v - mu) as f64).powi(2)).sum::<f64>()
}

/// `g[i] ← k₁·g[i] + k₂·x[i] + k₃` (the input gradient over the SiLU-scaled output gradient).
#[inline(always)]
fn affine2_in_place_body<const F: bool>(g: &mut [f32], x: &[f32], (k1, k2, k3): (f32, f32, f32)) {
    for (gv, &xv) in g.iter_mut().zip(x) {
        *gv = madd::<F>(k1, *gv, madd::<F>(k2, xv, k3));
    }
}

// The loops above and below in AVX2/AVX-512 where the CPU has them: as plain closures in the
// parallel loops they were compiled for SSE2 (≈ 12 % of a B0 training step at 224²).
crate::isa::multiversion!(sums, sums_body, (a: &[f32], b: Option<(&[f32], f32)>) -> (f64, f64));
crate::isa::multiversion!(centred_squares, centred_squares_body, (a: &[f32], mu: f32) -> f64);
crate::isa::multiversion!(affine2_in_place, affine2_in_place_body, (g: &mut [f32], x: &[f32], k: (f32, f32, f32)));

/// Per-channel batch mean and biased variance, in two passes over each channel (exact for
/// large means, unlike Σx² − (Σx)²).
pub fn stats(d: &Dims, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let plane = d.plane;
    let m = d.count() as f64;
    (0..d.channels)
        .into_par_iter()
        .with_min_len(d.min_channels())
        .map(|c| {
            let planes = || (0..d.batch).map(|n| &x[(n * d.channels + c) * plane..][..plane]);
            let mean = (planes().map(|p| sums(p, None).0).sum::<f64>() / m) as f32;
            let var = planes().map(|p| centred_squares(p, mean)).sum::<f64>() / m;
            (mean, var as f32)
        })
        .unzip()
}

/// `y = (x − mean)·γ/√(var + ε) + β` per channel (`scale`/`shift` from [`affine`]), then
/// `y·sigmoid(y)` when `silu`.
pub fn normalize(d: &Dims, x: &[f32], scale: &[f32], shift: &[f32], silu: bool) -> Vec<f32> {
    let act = if silu { Act::Silu } else { Act::Identity };
    // SAFETY: the planes cover the output and each plane's loop writes all of it.
    unsafe {
        super::simd::filled(x.len(), |y| {
            y.par_chunks_mut(d.plane).with_min_len(d.min_planes()).enumerate().for_each(|(p, yp)| {
                let c = p % d.channels;
                affine_act_into(&x[p * d.plane..][..d.plane], yp, scale[c], shift[c], act);
            })
        })
    }
}

/// [`normalize`] overwriting `x`, optionally followed by SiLU on each plane while it is in cache
/// (inference: one memory pass for BN + activation instead of two).
pub fn normalize_in_place(d: &Dims, x: &mut [f32], scale: &[f32], shift: &[f32], silu: bool) {
    x.par_chunks_mut(d.plane).with_min_len(d.min_planes()).enumerate().for_each(|(p, xp)| {
        let c = p % d.channels;
        let (a, b) = (scale[c], shift[c]);
        super::activation::affine_act(xp, a, b, if silu { Act::Silu } else { Act::Identity });
    });
}

/// `(a, b)` with `y = a·x + b`: `a = γ/√(var + ε)`, `b = β − mean·a`.
pub fn affine(mean: &[f32], var: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>) {
    (0..mean.len())
        .map(|c| {
            let a = gamma[c] as f64 / (var[c] as f64 + eps).sqrt();
            (a as f32, (beta[c] as f64 - mean[c] as f64 * a) as f32)
        })
        .unzip()
}

/// Gradients of training-mode BatchNorm (batch statistics depend on `x`):
/// `dβ = Σ dy`, `dγ = Σ dy·x̂`, `dx = γ/σ·(dy − dβ/m − x̂·dγ/m)`, with `x̂ = (x − mean)/σ`.
pub fn backward(
    d: &Dims,
    x: &[f32],
    dy: &[f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let plane = d.plane;
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..d.channels)
        .into_par_iter()
        .with_min_len(d.min_channels())
        .map(|c| {
            let inv_std = 1.0 / (var[c] as f64 + eps).sqrt();
            let (mut s, mut p) = (0.0f64, 0.0f64);
            for n in 0..d.batch {
                let o = (n * d.channels + c) * plane;
                let (a, b) = sums(&dy[o..o + plane], Some((&x[o..o + plane], mean[c])));
                s += a;
                p += b;
            }
            (s as f32, (p * inv_std) as f32)
        })
        .unzip();
    let coef = input_grad_coefs(d, mean, var, gamma, &dgamma, &dbeta, eps);
    // SAFETY: the planes cover dx and each plane's loop writes all of it.
    let dx = unsafe {
        super::simd::filled(x.len(), |dx| {
            dx.par_chunks_mut(plane).with_min_len(d.min_planes()).enumerate().for_each(|(p, out)| {
                let (xs, gs) = (&x[p * plane..][..plane], &dy[p * plane..][..plane]);
                super::simd::affine2_into(gs, xs, out, coef[p % d.channels]);
            })
        })
    };
    (dx, dgamma, dbeta)
}

/// `(k₁, k₂, k₃)` per channel with `dx = k₁·dy + k₂·x + k₃`.
fn input_grad_coefs(
    d: &Dims,
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    dgamma: &[f32],
    dbeta: &[f32],
    eps: f64,
) -> Vec<(f32, f32, f32)> {
    let m = d.count() as f64;
    (0..d.channels)
        .map(|c| {
            let inv_std = 1.0 / (var[c] as f64 + eps).sqrt();
            let g = gamma[c] as f64 * inv_std;
            let k1 = g;
            let k2 = -g * inv_std * dgamma[c] as f64 / m;
            let k3 = -g * dbeta[c] as f64 / m - k2 * mean[c] as f64;
            (k1 as f32, k2 as f32, k3 as f32)
        })
        .collect()
}

/// [`backward`] of BatchNorm followed by SiLU (`normalize(…, silu: true)`): `grad` holds the
/// gradient of the SiLU output and is overwritten by the input gradient (first by the
/// BatchNorm output's gradient, recomputing that output from `x`, and BatchNorm's sums in the
/// same pass; then by `dx`). Returns `(dγ, dβ)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_silu(
    d: &Dims,
    x: &[f32],
    grad: &mut [f32],
    mean: &[f32],
    var: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let plane = d.plane;
    let (a, b) = affine(mean, var, gamma, beta, eps);
    let x_plane = |p: usize| &x[p * plane..][..plane];
    // Per plane (all of them in parallel, not per channel: each task writes its own plane).
    let partial: Vec<(f64, f64)> = grad
        .par_chunks_mut(plane)
        .with_min_len(d.min_planes())
        .enumerate()
        .map(|(p, g)| {
            let c = p % d.channels;
            silu_grad_sums(g, x_plane(p), a[c], b[c], mean[c])
        })
        .collect();
    let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..d.channels)
        .map(|c| {
            let (s, p) =
                (0..d.batch).map(|n| partial[n * d.channels + c]).fold((0.0, 0.0), |t, v| (t.0 + v.0, t.1 + v.1));
            (s as f32, (p / (var[c] as f64 + eps).sqrt()) as f32)
        })
        .unzip();
    let coef = input_grad_coefs(d, mean, var, gamma, &dgamma, &dbeta, eps);
    grad.par_chunks_mut(plane).with_min_len(d.min_planes()).enumerate().for_each(|(p, g)| {
        affine2_in_place(g, x_plane(p), coef[p % d.channels]);
    });
    (dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in `[offset − 2, offset + 2)`.
    fn values2(n: usize, seed: u32, offset: f32) -> Vec<f32> {
        crate::test_values(n, seed, 0.0).into_iter().map(|v| 2.0 * v + offset).collect()
    }

    #[test]
    fn forward_and_backward_match_f64_definitions() {
        let d = Dims { batch: 3, channels: 5, plane: 7 * 6 };
        let n = d.batch * d.channels * d.plane;
        // A large mean on purpose: the variance must not cancel catastrophically.
        let x = values2(n, 1, 100.0);
        let dy = values2(n, 2, 0.3);
        let gamma = values2(d.channels, 3, 1.0);
        let beta = values2(d.channels, 4, 0.0);
        let eps = 1e-3;
        let (mean, var) = stats(&d, &x);
        let (a, b) = affine(&mean, &var, &gamma, &beta, eps);
        let y = normalize(&d, &x, &a, &b, false);
        let (dx, dgamma, dbeta) = backward(&d, &x, &dy, &mean, &var, &gamma, eps);
        let m = (d.batch * d.plane) as f64;
        let idx = |nn: usize, c: usize, i: usize| (nn * d.channels + c) * d.plane + i;
        for c in 0..d.channels {
            let all: Vec<usize> = (0..d.batch).flat_map(|nn| (0..d.plane).map(move |i| idx(nn, c, i))).collect();
            let mu = all.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
            let v = all.iter().map(|&i| (x[i] as f64 - mu).powi(2)).sum::<f64>() / m;
            assert!((mean[c] as f64 - mu).abs() < 1e-5 * mu.abs(), "mean {c}");
            assert!((var[c] as f64 - v).abs() < 1e-4 * v, "var {c}: {} vs {v}", var[c]);
            let sd = (v + eps).sqrt();
            let xh = |i: usize| (x[i] as f64 - mu) / sd;
            let db: f64 = all.iter().map(|&i| dy[i] as f64).sum();
            let dg: f64 = all.iter().map(|&i| dy[i] as f64 * xh(i)).sum();
            assert!((dbeta[c] as f64 - db).abs() < 1e-4 * db.abs().max(1.0), "dbeta {c}");
            assert!((dgamma[c] as f64 - dg).abs() < 1e-3 * dg.abs().max(1.0), "dgamma {c}: {} vs {dg}", dgamma[c]);
            for &i in &all {
                let want_y = xh(i) * gamma[c] as f64 + beta[c] as f64;
                assert!((y[i] as f64 - want_y).abs() < 1e-3, "y[{i}] {} vs {want_y}", y[i]);
                let want_dx = gamma[c] as f64 / sd * (dy[i] as f64 - db / m - xh(i) * dg / m);
                assert!(
                    (dx[i] as f64 - want_dx).abs() < 1e-3 * want_dx.abs().max(1.0),
                    "dx[{i}] {} vs {want_dx}",
                    dx[i]
                );
            }
        }
    }

    #[test]
    fn silu_variant_matches_batch_norm_then_silu() {
        // Planes shorter than four vectors and longer (the lockstep groups, with a tail).
        for d in [Dims { batch: 2, channels: 3, plane: 5 * 7 }, Dims { batch: 2, channels: 3, plane: 9 * 11 }] {
            silu_variant_on(&d);
        }
    }

    fn silu_variant_on(d: &Dims) {
        let n = d.batch * d.channels * d.plane;
        let x = values2(n, 5, 1.0);
        let dy = values2(n, 6, 0.0);
        let (gamma, beta) = (values2(d.channels, 7, 1.0), values2(d.channels, 8, 0.5));
        let eps = 1e-3;
        let (mean, var) = stats(d, &x);
        let (a, b) = affine(&mean, &var, &gamma, &beta, eps);
        let y = normalize(d, &x, &a, &b, true);
        let mut dx = dy.clone();
        let (dgamma, dbeta) = backward_silu(d, &x, &mut dx, &mean, &var, &gamma, &beta, eps);
        // The reference: f64 SiLU over the plain BatchNorm, and plain BatchNorm's backward fed
        // with the f64 SiLU gradient.
        let z = normalize(d, &x, &a, &b, false);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let dz: Vec<f32> = z
            .iter()
            .zip(&dy)
            .map(|(&z, &g)| {
                let (z, s) = (z as f64, sig(z as f64));
                (g as f64 * s * (1.0 + z * (1.0 - s))) as f32
            })
            .collect();
        let (want_dx, want_dgamma, want_dbeta) = backward(d, &x, &dz, &mean, &var, &gamma, eps);
        for i in 0..n {
            let want = z[i] as f64 * sig(z[i] as f64);
            assert!((y[i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0), "y[{i}] {} vs {want}", y[i]);
            assert!(
                (dx[i] - want_dx[i]).abs() < 1e-4 * want_dx[i].abs().max(1.0),
                "dx[{i}] {} vs {}",
                dx[i],
                want_dx[i]
            );
        }
        for c in 0..d.channels {
            assert!((dgamma[c] - want_dgamma[c]).abs() < 1e-4 * want_dgamma[c].abs().max(1.0), "dgamma {c}");
            assert!((dbeta[c] - want_dbeta[c]).abs() < 1e-4 * want_dbeta[c].abs().max(1.0), "dbeta {c}");
        }
        // A SiLU gradient that is not all zeros, so the comparison above means something.
        assert!(dbeta.iter().any(|v| v.abs() > 0.1), "{dbeta:?}");
    }
}

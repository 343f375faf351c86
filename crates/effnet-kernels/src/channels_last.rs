//! Inference kernels for small maps in channels-last order (`[n, h, w, c]`): the last stages of
//! a network at low resolution (B0 at 32² input runs 10 of its 16 blocks on 1×1, 2×2 and 4×4
//! maps).
//!
//! The NCHW kernels work plane by plane. A depthwise plane of one or four outputs still pays a
//! zero-padded 8-lane block per tap and a call per plane (≈ 80 ns for a single output), and a
//! 1×1 conv is one GEMM per sample with 1–16 columns, which packs and rereads the whole weight
//! matrix for every sample. At 32² those planes took ≈ 75 % of B0 inference. In channels-last
//! order the depthwise taps vectorise across channels and a 1×1 conv over the whole batch is one
//! GEMM. Inputs and outputs stay channels-last from one small-map kernel to the next (ONNX
//! Runtime keeps its blocked NCHWc layout across layers for the same reason); the tensors that
//! carry them keep their logical `[n, c, h, w]` shape with permuted strides (see `fused.rs`).

use super::depthwise::Geometry;
use super::pointwise::{Dims, gemm_raw, row_major, transposed};
use super::simd::{self, Act, filled};
use rayon::prelude::*;

/// Output planes up to this many pixels take the channels-last depthwise.
const DEPTHWISE_MAX_PLANE: usize = 16;
/// Planes up to this many pixels take the channels-last 1×1 conv.
const POINTWISE_MAX_PLANE: usize = 16;

/// Whether [`depthwise_affine`] is the faster path for this geometry.
pub fn depthwise_applies(g: &Geometry) -> bool {
    g.out_height * g.out_width <= DEPTHWISE_MAX_PLANE
}

/// Whether [`pointwise_affine`] is the faster path for these dimensions.
pub fn pointwise_applies(d: &Dims) -> bool {
    d.plane <= POINTWISE_MAX_PLANE
}

/// One tap of one output pixel: (output pixel, tap, input pixel), all row-major indices.
type Tap = (usize, usize, usize);

/// The taps that fall inside the image, output pixel by output pixel (padding contributes
/// nothing, so it is skipped rather than stored).
fn valid_taps(g: &Geometry) -> Vec<Tap> {
    let k = g.kernel;
    let mut taps = Vec::new();
    for oh in 0..g.out_height {
        for ow in 0..g.out_width {
            for kh in 0..k {
                let Some(ih) = (oh * g.stride + kh).checked_sub(g.pad_top).filter(|&h| h < g.height) else { continue };
                for kw in 0..k {
                    let Some(iw) = (ow * g.stride + kw).checked_sub(g.pad_left).filter(|&w| w < g.width) else {
                        continue;
                    };
                    taps.push((oh * g.out_width + ow, kh * k + kw, ih * g.width + iw));
                }
            }
        }
    }
    taps
}

/// `y[o] += wt[t] ⊙ x[i]` for every tap, rows of `c` channels.
#[inline(always)]
fn accumulate_taps_body<const F: bool>(taps: &[Tap], c: usize, wt: &[f32], x: &[f32], y: &mut [f32]) {
    for &(o, t, i) in taps {
        let (acc, w, x) = (&mut y[o * c..][..c], &wt[t * c..][..c], &x[i * c..][..c]);
        for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
            *a = simd::madd::<F>(w, x, *a);
        }
    }
}

simd::multiversion!(
    accumulate_taps,
    accumulate_taps_body,
    (taps: &[Tap], c: usize, wt: &[f32], x: &[f32], y: &mut [f32])
);

/// `act(scale ⊙ depthwise(x) + shift)` on channels-last `x` (`[n, h, w, c]`), channels-last
/// out, and, with `means` (`[n, c]`), each channel's spatial mean of the result (SE's squeeze).
/// The weights are the usual `[c, 1, k, k]`.
pub fn depthwise_affine(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    means: Option<&mut [f32]>,
) -> Vec<f32> {
    let (c, kk) = (g.channels, g.kernel * g.kernel);
    let (ip, op) = (g.height * g.width, g.out_height * g.out_width);
    assert!(x.len() == g.batch * c * ip && w.len() == c * kk);
    assert!(scale.len() == c && shift.len() == c);
    // `[k², c]`: each tap's weights across channels.
    let mut wt = vec![0.0f32; kk * c];
    for (ch, row) in w.chunks_exact(kk).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            wt[t * c + ch] = v;
        }
    }
    let taps = valid_taps(g);
    let mut y = vec![0.0f32; g.batch * op * c];
    let mut sums = vec![0.0f32; g.batch * c];
    y.par_chunks_mut(op * c).zip(x.par_chunks(ip * c)).zip(sums.par_chunks_mut(c)).for_each(|((yn, xn), sn)| {
        accumulate_taps(&taps, c, &wt, xn, yn);
        for row in yn.chunks_exact_mut(c) {
            simd::affine_act_cols(row, scale, shift, act);
            for (s, &v) in sn.iter_mut().zip(row.iter()) {
                *s += v;
            }
        }
    });
    if let Some(means) = means {
        assert_eq!(means.len(), g.batch * c);
        for (m, s) in means.iter_mut().zip(&sums) {
            *m = s / op as f32;
        }
    }
    y
}

/// `y[n] = act(scale ⊙ (W · (s[n] ⊙ x[n])) + shift) + residual[n]` on channels-last `x`
/// (`[n·h·w, c_in]` rows) and `residual`, channels-last out: one GEMM `x · Wᵀ` over the whole
/// batch that uses every thread.
///
/// One GEMM rather than one per thread: the weights come from L3 (each layer's are read once
/// per batch), and gemm's own threads split them instead of each packing all of them; a
/// 64 × 1152 × 192 product with cold weights ran at 64–70 GFLOP/s that way here, against
/// 2 × 27 as two halves.
pub fn pointwise_affine(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    gates: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (cin, cout, plane) = (d.cin, d.cout, d.plane);
    assert!(x.len() == d.batch * cin * plane && w.len() == cout * cin);
    assert!(scale.len() == cout && shift.len() == cout);
    assert!(gates.is_none_or(|g| g.len() == d.batch * cin));
    assert!(residual.is_none_or(|r| r.len() == d.batch * cout * plane));
    let rows = d.batch * plane;
    let mut gated = Vec::new();
    let a: &[f32] = match gates {
        None => x,
        Some(g) => {
            gated.resize(x.len(), 0.0);
            gated.par_chunks_mut(plane * cin).zip(x.par_chunks(plane * cin)).zip(g.par_chunks(cin)).for_each(
                |((dst, xn), gn)| {
                    for (d, s) in dst.chunks_exact_mut(cin).zip(xn.chunks_exact(cin)) {
                        d.iter_mut().zip(s).zip(gn).for_each(|((d, &s), &g)| *d = s * g);
                    }
                },
            );
            &gated
        }
    };
    // SAFETY: the GEMM writes all rows × c_out outputs (`accumulate = false` reads none) at row
    // stride c_out; `a` is rows × c_in and Wᵀ c_in × c_out (the asserts above).
    let mut y = unsafe {
        filled(rows * cout, |y| {
            gemm_raw(
                y.as_mut_ptr().cast(),
                cout,
                false,
                (rows, cout, cin),
                row_major(a, rows, cin),
                transposed(w, cout, cin),
                rayon::current_num_threads(),
            )
        })
    };
    let per_task = (4096 / cout).max(1) * cout;
    y.par_chunks_mut(per_task).enumerate().for_each(|(t, chunk)| {
        for row in chunk.chunks_exact_mut(cout) {
            simd::affine_act_cols(row, scale, shift, act);
        }
        if let Some(r) = residual {
            chunk.iter_mut().zip(&r[t * per_task..]).for_each(|(v, r)| *v += r);
        }
    });
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{depthwise, pointwise};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::test_values(n, seed, 0.0)
    }

    /// `[n, c, p]` ↔ `[n, p, c]`.
    fn swap(x: &[f32], n: usize, a: usize, b: usize) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for s in 0..n {
            for i in 0..a {
                for j in 0..b {
                    y[(s * b + j) * a + i] = x[(s * a + i) * b + j];
                }
            }
        }
        y
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{what} [{i}]: {a} vs {b}");
        }
    }

    #[test]
    fn depthwise_matches_the_nchw_kernel() {
        // B0's small maps at 32² (1×1 k5/k3, 2×2 k5 s1 and s2 with TF-SAME's asymmetric pad,
        // 4×4 k5 s2), a channel count that is not a multiple of 8, a single sample.
        for (shape, k, s, pads) in [
            ([3, 20, 1, 1], 5, 1, [(2, 2), (2, 2)]),
            ([2, 13, 1, 1], 3, 1, [(1, 1), (1, 1)]),
            ([2, 11, 2, 2], 5, 1, [(2, 2), (2, 2)]),
            ([3, 9, 4, 4], 5, 2, [(1, 2), (1, 2)]),
            ([1, 17, 8, 8], 3, 2, [(0, 1), (0, 1)]),
        ] {
            let g = Geometry::new(shape, k, s, pads);
            let (n, c, ip, op) = (g.batch, g.channels, g.height * g.width, g.out_height * g.out_width);
            let x = values(n * c * ip, 1);
            let w = values(c * k * k, 2);
            let (scale, shift) = (values(c, 3), values(c, 4));
            for act in [Act::Silu, Act::Identity, Act::Relu6] {
                let (mut m1, mut m2) = (vec![0.0; n * c], vec![0.0; n * c]);
                let want = depthwise::forward_affine(&g, &x, &w, (&scale, &shift), act, Some(&mut m1));
                let got = depthwise_affine(&g, &swap(&x, n, c, ip), &w, (&scale, &shift), act, Some(&mut m2));
                close(&swap(&got, n, op, c), &want, &format!("{g:?} {act:?} y"));
                close(&m2, &m1, &format!("{g:?} {act:?} means"));
            }
        }
    }

    #[test]
    fn pointwise_matches_the_nchw_kernel() {
        // 1×1 maps (NCHW and NHWC coincide), 2×2 and 4×4, a single sample; with and without SE
        // gates and the residual.
        for d in [
            Dims { batch: 5, cin: 19, cout: 33, plane: 1 },
            Dims { batch: 7, cin: 12, cout: 10, plane: 4 },
            Dims { batch: 3, cin: 8, cout: 21, plane: 16 },
            Dims { batch: 1, cin: 30, cout: 9, plane: 4 },
        ] {
            let (n, p) = (d.batch, d.plane);
            let x = values(n * d.cin * p, 11);
            let w = values(d.cout * d.cin, 12);
            let (scale, shift) = (values(d.cout, 13), values(d.cout, 14));
            let gates = values(n * d.cin, 15);
            let res = values(n * d.cout * p, 16);
            let (xt, rt) = (swap(&x, n, d.cin, p), swap(&res, n, d.cout, p));
            for (act, with_gates, with_res) in [
                (Act::Silu, false, false),
                (Act::Identity, true, true),
                (Act::Relu6, true, false),
                (Act::Identity, false, true),
            ] {
                let g = with_gates.then_some(&gates[..]);
                let want =
                    pointwise::forward_affine(&d, &x, &w, (&scale, &shift), act, g, with_res.then_some(&res[..]));
                let got = pointwise_affine(&d, &xt, &w, (&scale, &shift), act, g, with_res.then_some(&rt[..]));
                close(&swap(&got, n, p, d.cout), &want, &format!("{d:?} {act:?}"));
            }
        }
    }
}

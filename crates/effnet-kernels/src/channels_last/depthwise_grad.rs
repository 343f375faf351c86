//! The depthwise conv's gradients on channels-last data (training): the input gradient and the
//! weight gradient, vectorised across channels like the forward's taps (`depthwise.rs`).
//!
//! On small maps the NCHW kernels work plane by plane, and a 4×4 or 2×2 plane is mostly
//! padding and per-plane overhead (B0 trains at 32² input on maps of 16² down to 1²); here every
//! vector holds neighbouring channels of one pixel, whatever the map's size.

use super::depthwise::{load_lanes, span, tap_major};
use crate::depthwise::Geometry;
use crate::isa::{Simd, simd_fn};
use crate::simd::{Out, filled};
use rayon::prelude::*;

/// The input gradient `[n, h, w, c]` from the output gradient `dy` (`[n, oh, ow, c]`) and the
/// `[c, 1, k, k]` weights. Stride 1: the forward's taps on `dy` with each kernel turned by 180°
/// (see `crate::depthwise::as_forward`); otherwise each input pixel gathers `w[t]·dy[o]` over the
/// taps `t` and outputs `o` that read it (no scatter, so the pixels are independent tasks).
pub fn input_grad(g: &Geometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (c, kk) = (g.channels, g.kernel * g.kernel);
    let (ip, op) = (g.height * g.width, g.out_height * g.out_width);
    assert!(dy.len() == g.batch * op * c && w.len() == c * kk);
    if let Some((gf, wf)) = crate::depthwise::as_forward(g, w) {
        return super::depthwise(&gf, dy, &wf);
    }
    let wt = tap_major(w, c, kk);
    let rows = g.batch * g.height;
    let per_task = (4096 / (g.width * c).max(1)).max(1);
    // SAFETY: every input row of every sample is one task's, and `row_grad` writes all of it.
    unsafe {
        filled(g.batch * ip * c, |dx| {
            dx.par_chunks_mut(g.width * c).with_min_len(per_task).enumerate().for_each(|(r, row)| {
                let (n, ih) = (r / g.height, r % g.height);
                row_grad(g, &dy[n * op * c..][..op * c], &wt, ih, row);
            });
            debug_assert_eq!(rows * g.width * c, dx.len());
        })
    }
}

/// Input row `ih`'s gradient (all its pixels and channels).
#[inline(always)]
fn row_grad_body<S: Simd>(s: S, g: &Geometry, dy: &[f32], wt: &[f32], ih: usize, out: &mut [Out]) {
    let (c, k, st, l) = (g.channels, g.kernel, g.stride, S::LANES);
    // Kernel row kh reads input row ih from output row oh = (ih + pad_top − kh) / stride when
    // that divides and lands inside the output.
    let taps = |i: usize, pad: usize, out_len: usize| {
        (0..k).filter_map(move |kt| {
            let t = (i + pad).checked_sub(kt)?;
            (t % st == 0 && t / st < out_len).then_some((kt, t / st))
        })
    };
    let out = out.as_mut_ptr().cast::<f32>();
    for iw in 0..g.width {
        let mut cb = 0;
        while cb < c {
            let lanes = (c - cb).min(l);
            let mut acc = s.zero();
            for (kh, oh) in taps(ih, g.pad_top, g.out_height) {
                for (kw, ow) in taps(iw, g.pad_left, g.out_width) {
                    let at = (oh * g.out_width + ow) * c + cb;
                    let wi = (kh * k + kw) * c + cb;
                    // SAFETY: `lanes` channels from cb are inside both (asserted sizes).
                    let (dv, wv) = unsafe {
                        if lanes == l {
                            (s.load(dy.as_ptr().add(at)), s.load(wt.as_ptr().add(wi)))
                        } else {
                            (s.load_partial(dy.as_ptr().add(at), lanes), s.load_partial(wt.as_ptr().add(wi), lanes))
                        }
                    };
                    acc = s.fma(wv, dv, acc);
                }
            }
            // SAFETY: pixel iw's channels cb .. cb + lanes are inside the row.
            unsafe {
                let p = out.add(iw * c + cb);
                if lanes == l { s.store(p, acc) } else { s.store_partial(p, lanes, acc) }
            }
            cb += lanes;
        }
    }
}

simd_fn!(fn row_grad(g: &Geometry, dy: &[f32], wt: &[f32], ih: usize, out: &mut [Out]) = row_grad_body);

/// The weight gradient `[c, 1, k, k]`: `Σ dy[o]·x[o's tap t]` over every output pixel of every
/// sample, per tap and channel. One task per sample and block of channels, each keeping its
/// block's k² sums in registers over the sample's pixels; the per-sample sums are added at the end.
pub fn weight_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (c, kk) = (g.channels, g.kernel * g.kernel);
    let (ip, op) = (g.height * g.width, g.out_height * g.out_width);
    assert!(x.len() == g.batch * ip * c && dy.len() == g.batch * op * c);
    // Per sample, per block of BLOCK channels: [k², width] sums.
    let blocks = c.div_ceil(BLOCK);
    let mut partial = vec![0.0f32; g.batch * kk * c];
    partial.par_chunks_mut(kk * c).enumerate().for_each(|(n, sums)| {
        let (xn, dyn_) = (&x[n * ip * c..][..ip * c], &dy[n * op * c..][..op * c]);
        sums.par_chunks_mut(kk * BLOCK)
            .enumerate()
            .for_each(|(b, block)| sample_weight_grad(g, xn, dyn_, b * BLOCK, ((b + 1) * BLOCK).min(c), block));
    });
    let mut dw = vec![0.0f32; c * kk];
    dw.par_chunks_mut(BLOCK * kk).enumerate().for_each(|(b, out)| {
        let width = out.len() / kk;
        for sample in partial.chunks_exact(kk * c) {
            let block = &sample[b * BLOCK * kk..][..kk * width];
            for (t, row) in block.chunks_exact(width).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    out[j * kk + t] += v;
                }
            }
        }
    });
    debug_assert_eq!(blocks, c.div_ceil(BLOCK));
    dw
}

/// Channels per weight-gradient task.
const BLOCK: usize = 64;

/// One sample's weight-gradient sums for channels `c0 .. c1` into `acc` (`[k², c1 − c0]`): k = 3 with all nine taps in registers, k = 5 a kernel row (five) at a time,
/// other sizes one tap at a time.
#[inline(always)]
fn sample_weight_grad_body<S: Simd>(s: S, g: &Geometry, x: &[f32], dy: &[f32], c0: usize, c1: usize, acc: &mut [f32]) {
    let k = g.kernel;
    let mut cb = c0;
    while cb < c1 {
        let lanes = (c1 - cb).min(S::LANES);
        match k {
            3 => taps_sums::<S, 9>(s, g, (x, dy), (c0, cb, lanes), 0, acc),
            5 => (0..5).for_each(|kh| taps_sums::<S, 5>(s, g, (x, dy), (c0, cb, lanes), kh * 5, acc)),
            _ => (0..k * k).for_each(|t| taps_sums::<S, 1>(s, g, (x, dy), (c0, cb, lanes), t, acc)),
        }
        cb += lanes;
    }
}

simd_fn!(fn sample_weight_grad(g: &Geometry, x: &[f32], dy: &[f32], c0: usize, c1: usize, acc: &mut [f32]) = sample_weight_grad_body);

/// `T` consecutive taps from `t0` (row-major, within one kernel row unless `T = k²`): their sums
/// over the sample's output pixels for `lanes` channels from `cb`, added to `acc` (the `[k²,
/// width]` sums of the block that starts at channel `c0`).
#[inline(always)]
fn taps_sums<S: Simd, const T: usize>(
    s: S,
    g: &Geometry,
    (x, dy): (&[f32], &[f32]),
    (c0, cb, lanes): (usize, usize, usize),
    t0: usize,
    acc: &mut [f32],
) {
    let (c, k, st) = (g.channels, g.kernel, g.stride);
    let mut sums = [s.zero(); T];
    for oh in 0..g.out_height {
        let (rows, ih0) = span(oh, st, g.pad_top, g.height, k);
        for ow in 0..g.out_width {
            let (cols, iw0) = span(ow, st, g.pad_left, g.width, k);
            // SAFETY (both loads): `lanes` channels from cb are inside the pixel's row.
            let d = unsafe { load_lanes(s, dy[(oh * g.out_width + ow) * c + cb..].as_ptr(), lanes) };
            for (j, sum) in sums.iter_mut().enumerate() {
                let (kh, kw) = ((t0 + j) / k, (t0 + j) % k);
                if kh < rows.0 || kh >= rows.1 || kw < cols.0 || kw >= cols.1 {
                    continue;
                }
                let (ih, iw) = ((ih0 + kh as isize) as usize, (iw0 + kw as isize) as usize);
                let xv = unsafe { load_lanes(s, x[(ih * g.width + iw) * c + cb..].as_ptr(), lanes) };
                *sum = s.fma(d, xv, *sum);
            }
        }
    }
    let width = acc.len() / (k * k);
    for (j, sum) in sums.iter().enumerate() {
        let row = &mut acc[(t0 + j) * width + (cb - c0)..][..lanes];
        let mut buf = [0.0f32; 64];
        // SAFETY: LANES ≤ 64 floats of `buf`.
        unsafe { s.store(buf.as_mut_ptr(), *sum) };
        row.iter_mut().zip(&buf).for_each(|(a, v)| *a += v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels_last::{to_channels_first, to_channels_last};

    /// The channels-last forward and both gradients equal the NCHW kernels' (themselves checked
    /// against the definition in `crate::depthwise`): strides 1 and 2, TF-SAME's asymmetric and
    /// symmetric padding, k 3, 5 and 7, maps of one pixel, channel counts with partial vectors.
    #[test]
    fn equal_the_nchw_kernels() {
        for (shape, k, s, pads) in [
            ([2, 24, 8, 8], 3, 2, [(0, 1), (0, 1)]),
            ([3, 40, 4, 4], 5, 2, [(1, 2), (1, 2)]),
            ([2, 17, 7, 9], 3, 1, [(1, 1), (1, 1)]),
            ([2, 96, 2, 2], 5, 1, [(2, 2), (2, 2)]),
            ([4, 33, 1, 1], 3, 1, [(1, 1), (1, 1)]),
            ([1, 144, 5, 6], 5, 2, [(2, 2), (2, 2)]),
            ([2, 20, 9, 10], 7, 1, [(3, 3), (3, 3)]),
            ([2, 130, 3, 3], 3, 2, [(1, 1), (1, 1)]),
        ] {
            let g = Geometry::new(shape, k, s, pads);
            let (n, c) = (g.batch, g.channels);
            let (ip, op) = (g.height * g.width, g.out_height * g.out_width);
            let x = crate::test_values(n * c * ip, 1, 0.0);
            let w = crate::test_values(c * k * k, 2, 0.0);
            let dy = crate::test_values(n * c * op, 3, 0.0);
            let y0 = crate::depthwise::forward(&g, &x, &w);
            let (dx0, dw0) = crate::depthwise::backward(&g, &x, &w, &dy, true, true);
            let (xt, dyt) = (to_channels_last(&x, n, c, ip), to_channels_last(&dy, n, c, op));
            let y = to_channels_first(&super::super::depthwise(&g, &xt, &w), n, c, op);
            let dx = to_channels_first(&input_grad(&g, &dyt, &w), n, c, ip);
            let dw = weight_grad(&g, &xt, &dyt);
            let check = |what: &str, got: &[f32], want: &[f32]| {
                assert_eq!(got.len(), want.len(), "{g:?} {what}");
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{g:?} {what}[{i}]: {a} vs {b}");
                }
            };
            check("y", &y, &y0);
            check("dx", &dx, &dx0.unwrap());
            check("dw", &dw, &dw0.unwrap());
        }
    }
}

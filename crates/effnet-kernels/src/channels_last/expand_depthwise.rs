//! An MBConv block's expand (1×1) and depthwise convs fused per band of rows, for large maps:
//! the expanded activations exist only a few rows at a time, in a buffer that stays in L2.
//!
//! Layer by layer, the expand conv's output (6× the block's input: 77 MB for B0's first
//! stride-2 block at 224² and batch 16) goes out to memory and the depthwise reads it back, and
//! at large maps that traffic, not arithmetic, set the depthwise's speed. Here each task walks
//! down its rows of one sample: the input rows a chunk of depthwise outputs needs are expanded
//! (GEMM, BatchNorm, activation) into the buffer, the rows the next chunk shares with this one
//! (the kernel's overlap) are moved to the buffer's front instead of being recomputed, and the
//! depthwise reads the buffer while it is in cache.

use super::depthwise::{Finish, by_bands, rows, tap_major};
use super::pointwise::{Weights, rows_affine};
use crate::activation::Act;
use crate::depthwise::Geometry;

/// Expanded maps of at least this many floats per sample (512 KB: a core's L2 on the CPUs we
/// measure) take the fused path; smaller ones stay in cache between the two layers anyway.
const MIN_EXPANDED: usize = 128 * 1024;

/// Floats of expanded rows a task's buffer aims at (384 KB, most of a 512 KB L2: B0 at 224²,
/// batch 16 on Zen 3 ran 2–3 % faster than with 192 KB, where the overlap rows moved to the
/// buffer's front are a larger share, and 1 % faster than with 640 KB).
const BUFFER: usize = 96 * 1024;

/// Whether [`expand_depthwise`] is the faster path for the depthwise geometry `g` (on the
/// expanded tensor).
pub fn expand_depthwise_applies(g: &Geometry) -> bool {
    g.height * g.width * g.channels >= MIN_EXPANDED
}

/// The 1×1 expand conv with its folded BatchNorm and activation, `[c_exp, c_in]` weights.
pub struct Expand<'a> {
    pub w: &'a [f32],
    pub bn: (&'a [f32], &'a [f32]),
    pub act: Act,
}

/// `dw(act(scale ⊙ (W_e · x) + shift))`: the expand conv of channels-last `x`
/// (`[n, h, w, c_in]`) and the depthwise conv `g` (its channels are the expanded ones) with its
/// folded BatchNorm and activation, channels-last out; with `means` (`[n, c_exp]`), each
/// channel's spatial mean of the result (SE's squeeze).
pub fn expand_depthwise(
    g: &Geometry,
    x: &[f32],
    expand: &Expand,
    w: &[f32],
    bn: (&[f32], &[f32]),
    act: Act,
    means: Option<&mut [f32]>,
) -> Vec<f32> {
    expand_depthwise_in(BUFFER, g, x, expand, w, bn, act, means)
}

/// [`expand_depthwise`] with a buffer of about `buffer` floats (the tests make it small, so that
/// a map takes many chunks).
#[allow(clippy::too_many_arguments)]
fn expand_depthwise_in(
    buffer: usize,
    g: &Geometry,
    x: &[f32],
    expand: &Expand,
    w: &[f32],
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    means: Option<&mut [f32]>,
) -> Vec<f32> {
    let (c, k, s) = (g.channels, g.kernel, g.stride);
    let (h, wd) = (g.height, g.width);
    let cin = expand.w.len() / c;
    assert!(expand.w.len() == c * cin && x.len() == g.batch * h * wd * cin);
    assert!(expand.bn.0.len() == c && expand.bn.1.len() == c);
    assert!(w.len() == c * k * k && scale.len() == c && shift.len() == c);
    let (we, wt) = (Weights::new(expand.w, c, cin), tap_major(w, c, k * k));
    let f = Finish { scale, shift, act };
    let row = wd * c;
    // Output rows per chunk: as many as fit the buffer with the input rows they need.
    let chunk = ((buffer / row).saturating_sub(k) / s + 1).max(1);
    // A sample's rows are split between tasks only when the batch is smaller than the thread
    // count (each split expands the overlap rows twice).
    let parts = (2 * rayon::current_num_threads()).div_ceil(g.batch).min(g.out_height);
    let band = g.out_height.div_ceil(parts);
    // The input rows `lo .. hi` that output rows `a .. b` read.
    let needs = |a: usize, b: usize| {
        let lo = (a * s).saturating_sub(g.pad_top);
        let hi = ((b - 1) * s + k).saturating_sub(g.pad_top).min(h);
        (lo, hi.max(lo))
    };
    by_bands(g, band, means, |n, oh0, y, sums| {
        let xn = &x[n * h * wd * cin..][..h * wd * cin];
        let mut buf: Vec<f32> = Vec::new();
        // The input rows the buffer holds, from its start.
        let mut held = (0, 0);
        let out_rows = y.len() / (g.out_width * c);
        for (i, yc) in y.chunks_mut(chunk * g.out_width * c).enumerate() {
            let a = oh0 + i * chunk;
            let b = (a + chunk).min(oh0 + out_rows);
            let (lo, hi) = needs(a, b);
            // Rows this chunk shares with the last one move to the front; the rest are expanded.
            let from = if held.0 <= lo && lo < held.1 {
                buf.copy_within((lo - held.0) * row..(held.1 - held.0) * row, 0);
                held.1.min(hi)
            } else {
                lo
            };
            buf.resize((hi - lo) * row, 0.0);
            if from < hi {
                let dst = &mut buf[(from - lo) * row..(hi - lo) * row];
                rows_affine(&we, &xn[from * wd * cin..hi * wd * cin], dst, expand.bn, expand.act, None);
            }
            held = (lo, hi);
            // The depthwise over the buffer: an image of rows lo .. hi whose top padding is what
            // remains of the real one above row a.
            let local =
                Geometry { batch: 1, height: hi - lo, pad_top: (lo + g.pad_top) - a * s, out_height: b - a, ..*g };
            rows(&local, &buf, &wt, f, 0, yc, sums);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels_last::{depthwise_affine, pointwise_affine};
    use crate::pointwise::Dims;

    #[test]
    fn equals_expand_then_depthwise() {
        // Chunks of one output row (every overlap carried over), a few rows, and the whole map;
        // stride 1 and 2 with TF-SAME's and symmetric padding, k 3 and 5; a single sample (its
        // rows split between tasks) and three; 40 channels (16-lane blocks and a tail).
        let v = |n, seed| crate::test_values(n, seed, 0.0);
        for (n, cin, c, h, wd, k, s, pads) in [
            (1, 6, 40, 13, 11, 3, 1, [(1, 1), (1, 1)]),
            (3, 5, 32, 12, 9, 3, 2, [(0, 1), (0, 1)]),
            (2, 4, 16, 15, 14, 5, 2, [(1, 2), (1, 2)]),
            (1, 8, 24, 10, 10, 5, 1, [(2, 2), (2, 2)]),
        ] {
            let g = Geometry::new([n, c, h, wd], k, s, pads);
            let x = v(n * h * wd * cin, 1);
            let (we, es, eb) = (v(c * cin, 2), v(c, 3), v(c, 4));
            let (wdw, ds, db) = (v(c * k * k, 5), v(c, 6), v(c, 7));
            let d = Dims { batch: n, cin, cout: c, plane: h * wd };
            let expanded = pointwise_affine(&d, &x, &we, (&es, &eb), Act::Silu, None, None);
            let mut want_means = vec![0.0; n * c];
            let want = depthwise_affine(&g, &expanded, &wdw, (&ds, &db), Act::Relu6, Some(&mut want_means));
            let expand = Expand { w: &we, bn: (&es, &eb), act: Act::Silu };
            for buffer in [1, 7 * wd * c, 1 << 20] {
                let mut means = vec![f32::NAN; n * c];
                let got = expand_depthwise_in(buffer, &g, &x, &expand, &wdw, (&ds, &db), Act::Relu6, Some(&mut means));
                let what = format!("{g:?} buffer {buffer}");
                assert_eq!(got.len(), want.len(), "{what}");
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{what} y[{i}]: {a} vs {b}");
                }
                for (i, (a, b)) in means.iter().zip(&want_means).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{what} mean[{i}]: {a} vs {b}");
                }
            }
        }
    }
}

//! Inference kernels in channels-last order (`[n, h, w, c]`), which the fused inference path
//! keeps from the stem to the classifier.
//!
//! NCHW kernels work plane by plane: a depthwise plane pays its padding and a call per plane
//! (≈ 80 ns for a single output; the small maps of B0 at 32² input took ≈ 75 % of inference
//! that way), stride 2 gathers every other column, and a 1×1 conv is one GEMM per sample that
//! packs the whole weight matrix again for every sample. In channels-last order the depthwise
//! taps vectorise across channels with no padding at all, a 1×1 conv is a GEMM over blocks of
//! pixels of the whole batch, and BatchNorm, the activation, SE's squeeze and the residual are
//! finished on each block while it is in registers or cache. ONNX Runtime keeps its blocked
//! NCHWc layout across layers for the same reason; the tensors that carry these activations
//! keep their logical `[n, c, h, w]` shape with permuted strides (see `fused.rs`), so burn's
//! own ops still read them.

pub(crate) mod batchnorm;
mod depthwise;
pub(crate) mod depthwise_grad;
mod expand_depthwise;
mod mbconv;
mod pointwise;
mod tile;

pub(crate) use depthwise::depthwise;
#[cfg(test)]
pub(crate) use depthwise::depthwise_affine;
pub use expand_depthwise::Expand;
pub use mbconv::{Block, Depthwise, Gates, Project, mbconv};
pub use pointwise::pointwise_affine;
pub(crate) use pointwise::{Input, blocked};

/// `[n, c, p]` → `[n, p, c]` (tests build channels-last inputs with it).
#[cfg(test)]
pub(crate) fn to_channels_last(x: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for s in 0..n {
        for i in 0..c {
            for j in 0..p {
                y[(s * p + j) * c + i] = x[(s * c + i) * p + j];
            }
        }
    }
    y
}

/// `[n, p, c]` → `[n, c, p]`.
#[cfg(test)]
pub(crate) fn to_channels_first(x: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
    to_channels_last(x, n, p, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Act;
    use crate::depthwise::Geometry;
    use crate::pointwise::Dims;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::test_values(n, seed, 0.0)
    }

    /// The activation in f64 (the tests here and in `tile.rs` compare against it).
    pub(super) fn act64(act: Act, t: f64) -> f64 {
        match act {
            Act::Silu => t / (1.0 + (-t).exp()),
            Act::Relu6 => t.clamp(0.0, 6.0),
            Act::Identity => t,
        }
    }

    #[test]
    fn depthwise_matches_the_definition() {
        // B0's small maps at 32² (1×1 k5/k3, 2×2 k5, 4×4 k5 s2 with TF-SAME's asymmetric pad),
        // 16-channel register blocks with and without a channel tail (32, 40, 17), larger maps
        // split into row bands (a single sample: more bands than rows per task), stride 2 with
        // symmetric padding, a kernel wider than the map, and k = 7 (the AVX2 kernel's pixel
        // pairs unroll k = 3 and 5 at compile time, others not).
        for (shape, k, s, pads) in [
            ([3, 20, 1, 1], 5, 1, [(2, 2), (2, 2)]),
            ([2, 13, 1, 1], 3, 1, [(1, 1), (1, 1)]),
            ([2, 32, 2, 2], 5, 1, [(2, 2), (2, 2)]),
            ([3, 40, 4, 4], 5, 2, [(1, 2), (1, 2)]),
            ([1, 17, 8, 8], 3, 2, [(0, 1), (0, 1)]),
            ([1, 48, 23, 19], 3, 1, [(1, 1), (1, 1)]),
            ([2, 32, 20, 21], 5, 2, [(1, 2), (2, 2)]),
            ([2, 16, 9, 12], 3, 2, [(1, 1), (1, 1)]),
            ([1, 33, 2, 3], 5, 1, [(2, 2), (2, 2)]),
            ([1, 16, 12, 13], 7, 1, [(3, 3), (3, 3)]),
        ] {
            let g = Geometry::new(shape, k, s, pads);
            let (n, c) = (g.batch, g.channels);
            let (h, wd, oh, ow) = (g.height, g.width, g.out_height, g.out_width);
            let x = values(n * h * wd * c, 1);
            let w = values(c * k * k, 2);
            let (scale, shift) = (values(c, 3), values(c, 4));
            for act in [Act::Silu, Act::Identity, Act::Relu6] {
                let mut means = vec![f32::NAN; n * c];
                let y = depthwise_affine(&g, &x, &w, (&scale, &shift), act, Some(&mut means));
                assert_eq!(y.len(), n * oh * ow * c);
                let mut sums = vec![0.0f64; n * c];
                for (i, &got) in y.iter().enumerate() {
                    let (s_, p, ch) = (i / (oh * ow * c), i / c % (oh * ow), i % c);
                    let (r, q) = (p / ow, p % ow);
                    let mut acc = 0.0f64;
                    for kh in 0..k {
                        for kw in 0..k {
                            let (ih, iw) = (
                                (r * s + kh) as isize - pads[0].0 as isize,
                                (q * s + kw) as isize - pads[1].0 as isize,
                            );
                            if (0..h as isize).contains(&ih) && (0..wd as isize).contains(&iw) {
                                let xi = ((s_ * h + ih as usize) * wd + iw as usize) * c + ch;
                                acc += w[ch * k * k + kh * k + kw] as f64 * x[xi] as f64;
                            }
                        }
                    }
                    let want = act64(act, acc * scale[ch] as f64 + shift[ch] as f64);
                    sums[s_ * c + ch] += want;
                    assert!((got as f64 - want).abs() < 1e-5, "{g:?} {act:?} y[{i}] = {got} vs {want}");
                }
                for (i, (&m, s)) in means.iter().zip(&sums).enumerate() {
                    let want = s / (oh * ow) as f64;
                    assert!((m as f64 - want).abs() < 1e-5, "{g:?} {act:?} mean[{i}] = {m} vs {want}");
                }
            }
        }
    }

    #[test]
    fn pointwise_matches_the_definition() {
        // Small maps (one GEMM over the batch: 1×1, 7 pixels), large ones in pixel blocks
        // (c_in 600 → 3 blocks of 64 with a short last one; c_out 700 → blocks of 64), a single
        // block; SE gates on the weights (c_out ≤ block) and on the input block (c_out > block).
        for d in [
            Dims { batch: 3, cin: 6, cout: 9, plane: 7 },
            Dims { batch: 2, cin: 8, cout: 3, plane: 1 },
            Dims { batch: 2, cin: 600, cout: 5, plane: 150 },
            Dims { batch: 2, cin: 8, cout: 700, plane: 100 },
            Dims { batch: 1, cin: 4, cout: 2, plane: 40 },
            // Widths in whole vectors of 8, which the register tile takes (on AVX2): blocks
            // that span samples on a small map (gates on the weights or, for segments shorter
            // than c_out, on the input), an 8-wide last panel, c_out larger than the block, and
            // few rows with the channels split between tasks (one task; three, the last 8 wide).
            Dims { batch: 5, cin: 24, cout: 16, plane: 60 },
            Dims { batch: 2, cin: 40, cout: 24, plane: 1000 },
            Dims { batch: 2, cin: 8, cout: 600, plane: 150 },
            Dims { batch: 3, cin: 8, cout: 8, plane: 9 },
            Dims { batch: 2, cin: 40, cout: 72, plane: 4 },
        ] {
            let (n, p) = (d.batch, d.plane);
            let x = values(n * p * d.cin, 11);
            let w = values(d.cout * d.cin, 12);
            let (scale, shift) = (values(d.cout, 13), values(d.cout, 14));
            let gates = values(n * d.cin, 15);
            let res = values(n * p * d.cout, 16);
            for (act, with_gates, with_res) in
                [(Act::Silu, false, false), (Act::Identity, true, true), (Act::Relu6, true, false)]
            {
                let g = with_gates.then_some(&gates[..]);
                let y = pointwise_affine(&d, &x, &w, (&scale, &shift), act, g, with_res.then_some(&res[..]));
                for (i, &got) in y.iter().enumerate() {
                    let (row, o) = (i / d.cout, i % d.cout);
                    let s_ = row / p;
                    let conv: f64 = (0..d.cin)
                        .map(|c| {
                            let gc = if with_gates { gates[s_ * d.cin + c] as f64 } else { 1.0 };
                            w[o * d.cin + c] as f64 * gc * x[row * d.cin + c] as f64
                        })
                        .sum();
                    let want = act64(act, conv * scale[o] as f64 + shift[o] as f64)
                        + if with_res { res[i] as f64 } else { 0.0 };
                    assert!((got as f64 - want).abs() < 1e-4, "{d:?} {act:?} y[{i}] = {got} vs {want}");
                }
            }
        }
    }
}

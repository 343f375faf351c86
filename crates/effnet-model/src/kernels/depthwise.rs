//! Depthwise k×k convolution (one filter per channel, no bias, dilation 1) on contiguous NCHW
//! `f32` slices: forward, input gradient and weight gradient, with asymmetric padding.
//!
//! Written by hand because burn 0.22.1 has a depthwise fast path for the forward only: its
//! generic weight gradient loops over every channel (8,960 slice/conv/assign rounds per B0
//! backward) and its input gradient runs a K = 1 GEMM per (sample, channel) followed by a scalar
//! scatter; together 27–33 % of a B0 training step. Here every (sample, channel) plane is an
//! independent task for rayon, the inner loops run along a row (contiguous at stride 1, so they
//! vectorise), and the asymmetric TF-SAME padding is handled by the loop bounds instead of a
//! padded copy of the input.

use rayon::prelude::*;

/// Geometry of one depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Padding above and to the left; the right/bottom padding follows from the output size.
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_height: usize,
    pub out_width: usize,
}

impl Geometry {
    /// The geometry for padding `[(top, bottom), (left, right)]`.
    pub fn new(
        [batch, channels, height, width]: [usize; 4],
        kernel: usize,
        stride: usize,
        [(top, bottom), (left, right)]: [(usize, usize); 2],
    ) -> Self {
        let out = |size: usize, a: usize, b: usize| (size + a + b - kernel) / stride + 1;
        Self {
            batch,
            channels,
            height,
            width,
            kernel,
            stride,
            pad_top: top,
            pad_left: left,
            out_height: out(height, top, bottom),
            out_width: out(width, left, right),
        }
    }

    fn in_plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    /// Output positions `o` (along one axis) whose tap `t` lands inside the input:
    /// `0 ≤ o·stride + t − pad < size`.
    fn valid(&self, t: usize, pad: usize, size: usize, out: usize) -> std::ops::Range<usize> {
        let s = self.stride;
        // Clamped to `out`: on a 1×1 map a 5×5 kernel's first taps reach no output at all.
        let lo = if pad > t { (pad - t).div_ceil(s).min(out) } else { 0 };
        let hi = if size + pad > t { ((size + pad - t - 1) / s + 1).min(out) } else { 0 };
        lo..hi.max(lo)
    }

    /// Planes per rayon task: at least ~4 k output elements each.
    fn min_planes(&self) -> usize {
        (4096 / self.out_plane().max(1)).max(1)
    }
}

/// `y[n,c] = x[n,c] ⋆ w[c]` (cross-correlation, like every deep-learning conv).
pub fn forward(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (kk, ip, op) = (g.kernel * g.kernel, g.in_plane(), g.out_plane());
    let mut y = vec![0.0f32; g.batch * g.channels * op];
    y.par_chunks_mut(op).with_min_len(g.min_planes()).enumerate().for_each(|(p, yp)| {
        let xp = &x[p * ip..(p + 1) * ip];
        let wc = &w[(p % g.channels) * kk..][..kk];
        for kh in 0..g.kernel {
            for oh in g.valid(kh, g.pad_top, g.height, g.out_height) {
                let xr = &xp[(oh * g.stride + kh - g.pad_top) * g.width..][..g.width];
                let yr = &mut yp[oh * g.out_width..][..g.out_width];
                for kw in 0..g.kernel {
                    let wv = wc[kh * g.kernel + kw];
                    let cols = g.valid(kw, g.pad_left, g.width, g.out_width);
                    if cols.is_empty() {
                        continue;
                    }
                    let first = cols.start * g.stride + kw - g.pad_left;
                    row_axpy(&mut yr[cols.clone()], xr, first, g.stride, wv);
                }
            }
        }
    });
    y
}

/// `y[i] += a · x[first + i·stride]`.
#[inline(always)]
fn row_axpy(y: &mut [f32], x: &[f32], first: usize, stride: usize, a: f32) {
    if stride == 1 {
        let n = y.len();
        for (o, &v) in y.iter_mut().zip(&x[first..first + n]) {
            *o += a * v;
        }
    } else {
        for (i, o) in y.iter_mut().enumerate() {
            *o += a * x[first + i * stride];
        }
    }
}

/// Gradients `(dx, dw)` from the output gradient `dy`; either can be skipped.
pub fn backward(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (kk, ip, op, planes) = (g.kernel * g.kernel, g.in_plane(), g.out_plane(), g.batch * g.channels);
    let dx = want_dx.then(|| {
        let mut dx = vec![0.0f32; planes * ip];
        dx.par_chunks_mut(ip).with_min_len(g.min_planes()).enumerate().for_each(|(p, dxp)| {
            let dyp = &dy[p * op..(p + 1) * op];
            let wc = &w[(p % g.channels) * kk..][..kk];
            for kh in 0..g.kernel {
                for oh in g.valid(kh, g.pad_top, g.height, g.out_height) {
                    let dxr = &mut dxp[(oh * g.stride + kh - g.pad_top) * g.width..][..g.width];
                    let dyr = &dyp[oh * g.out_width..][..g.out_width];
                    for kw in 0..g.kernel {
                        let wv = wc[kh * g.kernel + kw];
                        let cols = g.valid(kw, g.pad_left, g.width, g.out_width);
                        if cols.is_empty() {
                            continue;
                        }
                        let first = cols.start * g.stride + kw - g.pad_left;
                        // Scatter: dx[first + i·stride] += w · dy[i].
                        let src = &dyr[cols];
                        if g.stride == 1 {
                            for (o, &v) in dxr[first..first + src.len()].iter_mut().zip(src) {
                                *o += wv * v;
                            }
                        } else {
                            for (i, &v) in src.iter().enumerate() {
                                dxr[first + i * g.stride] += wv * v;
                            }
                        }
                    }
                }
            }
        });
        dx
    });
    let dw = want_dw.then(|| {
        // One partial k×k gradient per plane (parallel, no sharing), then a sum over the batch.
        let mut partial = vec![0.0f32; planes * kk];
        partial.par_chunks_mut(kk).with_min_len(g.min_planes()).enumerate().for_each(|(p, acc)| {
            let xp = &x[p * ip..(p + 1) * ip];
            let dyp = &dy[p * op..(p + 1) * op];
            for kh in 0..g.kernel {
                for oh in g.valid(kh, g.pad_top, g.height, g.out_height) {
                    let xr = &xp[(oh * g.stride + kh - g.pad_top) * g.width..][..g.width];
                    let dyr = &dyp[oh * g.out_width..][..g.out_width];
                    for kw in 0..g.kernel {
                        let cols = g.valid(kw, g.pad_left, g.width, g.out_width);
                        if cols.is_empty() {
                            continue;
                        }
                        let first = cols.start * g.stride + kw - g.pad_left;
                        acc[kh * g.kernel + kw] += row_dot(&dyr[cols], xr, first, g.stride);
                    }
                }
            }
        });
        let mut dw = vec![0.0f32; g.channels * kk];
        for n in 0..g.batch {
            for (o, &v) in dw.iter_mut().zip(&partial[n * g.channels * kk..(n + 1) * g.channels * kk]) {
                *o += v;
            }
        }
        dw
    });
    (dx, dw)
}

/// `Σ a[i] · x[first + i·stride]`, with 8 partial sums so that the loop vectorises.
#[inline(always)]
fn row_dot(a: &[f32], x: &[f32], first: usize, stride: usize) -> f32 {
    if stride == 1 {
        let x = &x[first..first + a.len()];
        let mut acc = [0.0f32; 8];
        let (ac, ar) = a.split_at(a.len() / 8 * 8);
        let (xc, xr) = x.split_at(ac.len());
        for (ca, cx) in ac.chunks_exact(8).zip(xc.chunks_exact(8)) {
            for j in 0..8 {
                acc[j] += ca[j] * cx[j];
            }
        }
        acc.iter().sum::<f32>() + ar.iter().zip(xr).map(|(p, q)| p * q).sum::<f32>()
    } else {
        a.iter().enumerate().map(|(i, &v)| v * x[first + i * stride]).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition with an explicitly padded input, in f64.
    fn reference(g: &Geometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (k, s) = (g.kernel, g.stride);
        let mut y = vec![0.0; g.batch * g.channels * g.out_plane()];
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        for n in 0..g.batch {
            for c in 0..g.channels {
                let p = n * g.channels + c;
                for oh in 0..g.out_height {
                    for ow in 0..g.out_width {
                        let o = p * g.out_plane() + oh * g.out_width + ow;
                        for kh in 0..k {
                            for kw in 0..k {
                                let ih = (oh * s + kh) as isize - g.pad_top as isize;
                                let iw = (ow * s + kw) as isize - g.pad_left as isize;
                                if ih < 0 || iw < 0 || ih >= g.height as isize || iw >= g.width as isize {
                                    continue;
                                }
                                let i = p * g.in_plane() + ih as usize * g.width + iw as usize;
                                let wi = c * k * k + kh * k + kw;
                                y[o] += x[i] as f64 * w[wi] as f64;
                                dx[i] += dy[o] as f64 * w[wi] as f64;
                                dw[wi] += dy[o] as f64 * x[i] as f64;
                            }
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_for_tf_same_and_symmetric_padding() {
        // (shape, kernel, stride, pads): odd and even sizes, TF-SAME's extra bottom/right pixel,
        // symmetric k/2, no padding, and a 1-pixel map.
        let cases = [
            ([2, 3, 9, 8], 3, 2, [(0, 1), (0, 1)]),
            ([2, 3, 9, 8], 3, 2, [(1, 1), (1, 1)]),
            ([1, 4, 11, 7], 5, 2, [(1, 2), (2, 2)]),
            ([3, 2, 6, 6], 5, 1, [(2, 2), (2, 2)]),
            ([2, 5, 7, 10], 3, 1, [(1, 1), (1, 1)]),
            ([1, 2, 5, 5], 3, 1, [(0, 0), (0, 0)]),
            ([2, 2, 1, 1], 3, 1, [(1, 1), (1, 1)]),
            ([1, 3, 2, 3], 5, 2, [(1, 2), (1, 2)]),
            ([2, 3, 1, 1], 5, 1, [(2, 2), (2, 2)]),
            ([2, 3, 1, 1], 3, 2, [(0, 2), (0, 2)]),
        ];
        for (i, (shape, k, s, pads)) in cases.into_iter().enumerate() {
            let g = Geometry::new(shape, k, s, pads);
            let x = values(shape.iter().product(), 1 + i as u32);
            let w = values(shape[1] * k * k, 100 + i as u32);
            let dy = values(g.batch * g.channels * g.out_plane(), 200 + i as u32);
            let (ry, rdx, rdw) = reference(&g, &x, &w, &dy);
            let y = forward(&g, &x, &w);
            let (dx, dw) = backward(&g, &x, &w, &dy, true, true);
            let check = |name: &str, got: &[f32], want: &[f64]| {
                assert_eq!(got.len(), want.len(), "case {i} {name} length");
                for (j, (&a, &b)) in got.iter().zip(want).enumerate() {
                    assert!((a as f64 - b).abs() < 1e-5, "case {i} {name}[{j}]: {a} vs {b}");
                }
            };
            check("y", &y, &ry);
            check("dx", &dx.unwrap(), &rdx);
            check("dw", &dw.unwrap(), &rdw);
        }
    }

    #[test]
    fn output_size_follows_the_padding() {
        let g = Geometry::new([1, 1, 225, 197], 3, 2, [(1, 1), (1, 1)]);
        assert_eq!((g.out_height, g.out_width), (113, 99));
        let g = Geometry::new([1, 1, 224, 224], 5, 2, [(1, 2), (1, 2)]);
        assert_eq!((g.out_height, g.out_width), (112, 112));
    }
}

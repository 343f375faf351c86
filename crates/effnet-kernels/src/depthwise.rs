//! Depthwise k×k convolution (one filter per channel, no bias, dilation 1) on contiguous NCHW
//! `f32` slices: forward, input gradient and weight gradient, with asymmetric padding.
//!
//! Written by hand because burn 0.22.1 has a depthwise fast path for the forward only: its
//! generic weight gradient loops over every channel (8,960 slice/conv/assign rounds per B0
//! backward) and its input gradient runs a K = 1 GEMM per (sample, channel) followed by a scalar
//! scatter; together 27–33 % of a B0 training step. Here every (sample, channel) plane is an
//! independent task for rayon. Each plane is first copied, zero-padded (TF-SAME's extra
//! bottom/right pixel included) and split into `stride` column phases, so every kernel tap is
//! a contiguous, branch-free run along an output row that the compiler vectorises.

use super::simd::{Out, filled};
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

    /// Planes per rayon task: at least ~4 k output elements each.
    fn min_planes(&self) -> usize {
        (4096 / self.out_plane().max(1)).max(1)
    }
}

/// A plane zero-padded and split into `stride` column phases, so that every kernel tap reads
/// (or, in the backward, writes) one contiguous run per output row:
/// `phase[ph][r][j] = padded[r][j·stride + ph]`, padded row r = input row r − pad_top.
struct Phases {
    rows: usize,
    width: usize,
}

impl Phases {
    fn new(g: &Geometry) -> Self {
        // Columns rounded up to whole 8-lane blocks (plus the taps' reach) so that the forward
        // can always read full blocks; the extra columns are zeros and their outputs dropped.
        let blocks = g.out_width.div_ceil(LANES) * LANES;
        Self { rows: (g.out_height - 1) * g.stride + g.kernel, width: blocks + (g.kernel - 1) / g.stride }
    }

    fn len(&self, g: &Geometry) -> usize {
        g.stride * self.rows * self.width
    }

    /// Offsets of the k² taps (row-major) for output row 0; output row `oh` adds
    /// [`Self::row_step`]·oh. Computed once per call: the divisions by the stride would
    /// otherwise dominate the inner loops.
    fn taps(&self, g: &Geometry) -> Vec<usize> {
        (0..g.kernel * g.kernel)
            .map(|t| {
                let (kh, kw) = (t / g.kernel, t % g.kernel);
                ((kw % g.stride) * self.rows + kh) * self.width + kw / g.stride
            })
            .collect()
    }

    fn row_step(&self, g: &Geometry) -> usize {
        g.stride * self.width
    }

    /// Phase columns `j` of phase `ph` whose input column `j·stride + ph − pad_left` is inside
    /// the image, and the input column of the first.
    fn cols(&self, g: &Geometry, ph: usize) -> (std::ops::Range<usize>, usize) {
        let s = g.stride;
        let lo = if g.pad_left > ph { (g.pad_left - ph).div_ceil(s) } else { 0 };
        let hi = (g.width + g.pad_left).saturating_sub(ph).div_ceil(s).min(self.width);
        let lo = lo.min(hi);
        (lo..hi, (lo * s + ph).saturating_sub(g.pad_left))
    }

    fn source_row(&self, g: &Geometry, r: usize) -> Option<usize> {
        r.checked_sub(g.pad_top).filter(|&h| h < g.height)
    }

    /// Copies an input plane into the phase layout. Padding positions are never written, so a
    /// buffer reused for planes of the same geometry keeps its zeros and is cleared only when
    /// its size changes.
    fn fill(&self, g: &Geometry, xp: &[f32], buf: &mut Vec<f32>) {
        if buf.len() != self.len(g) {
            buf.clear();
            buf.resize(self.len(g), 0.0);
        }
        for ph in 0..g.stride {
            let (cols, first) = self.cols(g, ph);
            for r in 0..self.rows {
                let Some(h) = self.source_row(g, r) else { continue };
                let src = &xp[h * g.width + first..];
                let dst = &mut buf[(ph * self.rows + r) * self.width..][cols.clone()];
                match g.stride {
                    1 => copy_row(src, dst),
                    2 => every_other(src, dst),
                    s => dst.iter_mut().enumerate().for_each(|(i, d)| *d = src[i * s]),
                }
            }
        }
    }

    /// Adds a phase-layout gradient back into an input plane (the padding is dropped).
    fn gather(&self, g: &Geometry, buf: &[f32], dxp: &mut [f32]) {
        for ph in 0..g.stride {
            let (cols, first) = self.cols(g, ph);
            for r in 0..self.rows {
                let Some(h) = self.source_row(g, r) else { continue };
                let src = &buf[(ph * self.rows + r) * self.width..][cols.clone()];
                let dst = &mut dxp[h * g.width + first..];
                for (i, &v) in src.iter().enumerate() {
                    dst[i * g.stride] += v;
                }
            }
        }
    }
}

/// `dst = src[..dst.len()]` without a `memcpy` call: rows are often only 7–28 floats long (B0's
/// 7×7 to 28×28 maps), where the call cost more than the copy (≈ 5 % of inference at 224²).
#[inline(always)]
fn copy_row(src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        dst[i..i + 8].copy_from_slice(&src[i..i + 8]);
        i += 8;
    }
    // A fixed trip count, so the tail does not become a `memcpy` call either.
    for j in 0..8 {
        if i + j < n {
            dst[i + j] = src[i + j];
        }
    }
}

/// `dst[i] = src[2i]`, vectorised (the scalar strided loop, compiled for baseline x86-64, was
/// most of the phase copy; what is left of it is mostly the first read of the expanded map).
#[inline(always)]
fn every_other_body<const F: bool>(src: &[f32], dst: &mut [f32]) {
    let pairs = dst.len().min(src.len() / 2);
    for (d, pair) in dst[..pairs].iter_mut().zip(src.chunks_exact(2)) {
        *d = pair[0];
    }
    for (i, d) in dst.iter_mut().enumerate().skip(pairs) {
        *d = src[2 * i];
    }
}

crate::isa::multiversion!(pub(super) every_other, every_other_body, (src: &[f32], dst: &mut [f32]));

/// Output columns computed together in registers.
const LANES: usize = 8;

/// Lane blocks computed together (independent accumulators).
const GROUP: usize = 8;

/// `y[n,c] = x[n,c] ⋆ w[c]` (cross-correlation, like every deep-learning conv).
pub fn forward(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (kk, ip, op, ow) = (g.kernel * g.kernel, g.in_plane(), g.out_plane(), g.out_width);
    let ph = Phases::new(g);
    let (taps, step) = (ph.taps(g), ph.row_step(g));
    // SAFETY: each plane's blocks cover all its rows (`forward_plane` writes every output).
    unsafe {
        filled(g.batch * g.channels * op, |y| {
            y.par_chunks_mut(op).with_min_len(g.min_planes()).enumerate().for_each_init(Vec::new, |buf, (p, yp)| {
                ph.fill(g, &x[p * ip..(p + 1) * ip], buf);
                let c = p % g.channels;
                forward_plane(&taps, step, ow, &w[c * kk..][..kk], buf, yp);
            })
        })
    }
}

/// `G` blocks of 8 neighbouring outputs whose taps start at the phase-layout offsets `bases`:
/// all k² taps accumulate in registers, in G independent add chains.
///
/// # Safety
/// `buf` must hold `base + t + LANES` readable floats for every base in `bases` and every tap
/// offset `t` in `taps` (the caller checks the largest once per plane: a bounds check per load
/// cost as many instructions as the FMAs themselves).
#[inline(always)]
unsafe fn tap_blocks<const F: bool, const G: usize>(
    wc: &[f32],
    taps: &[usize],
    buf: *const f32,
    bases: [usize; G],
) -> [[f32; LANES]; G] {
    let mut acc = [[0.0f32; LANES]; G];
    // SAFETY: in bounds by the caller's guarantee.
    let starts = bases.map(|b| unsafe { buf.add(b) });
    for (&a, &t) in wc.iter().zip(taps) {
        for (acc, &p) in acc.iter_mut().zip(&starts) {
            for (j, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                *acc = super::simd::madd::<F>(a, unsafe { *p.add(t + j) }, *acc);
            }
        }
    }
    acc
}

/// One output plane `yp` from its phase-layout input `buf` (see [`forward`]).
#[inline(always)]
fn forward_plane_body<const F: bool>(taps: &[usize], step: usize, ow: usize, wc: &[f32], buf: &[f32], yp: &mut [Out]) {
    // The plane's 8-output blocks in row-major order, GROUP at a time (across row ends too:
    // a 7×7 map has one block per row), so GROUP independent add chains hide the add latency.
    let oh_n = yp.len() / ow;
    let per_row = ow.div_ceil(LANES);
    let total = oh_n * per_row;
    let reach = taps.iter().max().map_or(0, |t| t + LANES);
    assert!(total == 0 || (oh_n - 1) * step + (per_row - 1) * LANES + reach <= buf.len(), "phase buffer too short");
    let store = |yp: &mut [Out], (oh, col): (usize, usize), acc: &[f32; LANES]| {
        // LANES outputs, fewer at a row's end: fixed trip counts, so neither becomes a `memcpy`
        // call (a variable-length copy did, ≈ 7 % of the kernel on 14×14 maps).
        let dst = &mut yp[oh * ow..][..ow];
        if col + LANES <= ow {
            dst[col..col + LANES].iter_mut().zip(acc).for_each(|(d, v)| _ = d.write(*v));
        } else {
            (0..LANES).filter(|j| col + j < ow).for_each(|j| _ = dst[col + j].write(acc[j]));
        }
    };
    // (row, column) of the next block, advanced without divisions (they showed in profiles).
    let mut pos = (0, 0);
    let next = |pos: &mut (usize, usize)| {
        let at = *pos;
        pos.1 += LANES;
        if pos.1 >= ow {
            *pos = (pos.0 + 1, 0);
        }
        at
    };
    let mut f = 0;
    // GROUP blocks at a time, the rest in halving groups (a lone block is one chain of k²
    // dependent FMAs: a 14×14 map has 28 blocks, 3 × 8 + 4).
    macro_rules! blocks {
        ($g:expr) => {{
            let blocks: [(usize, usize); $g] = std::array::from_fn(|_| next(&mut pos));
            // SAFETY: every block lies in the plane, checked against `buf` above.
            let acc = unsafe { tap_blocks::<F, $g>(wc, taps, buf.as_ptr(), blocks.map(|(r, c)| r * step + c)) };
            blocks.into_iter().zip(&acc).for_each(|(b, a)| store(yp, b, a));
            f += $g;
        }};
    }
    while f < total {
        match total - f {
            GROUP.. => blocks!(GROUP),
            4.. => blocks!(4),
            2.. => blocks!(2),
            _ => blocks!(1),
        }
    }
}

/// The input gradient of one plane in phase layout (`buf`, zeroed) from its output gradient.
#[inline(always)]
fn input_grad_plane_body<const F: bool>(
    taps: &[usize],
    step: usize,
    ow: usize,
    wc: &[f32],
    dyp: &[f32],
    buf: &mut [f32],
) {
    for (oh, dyr) in dyp.chunks_exact(ow).enumerate() {
        for (&a, &t) in wc.iter().zip(taps) {
            let at = oh * step + t;
            for (o, &v) in buf[at..at + ow].iter_mut().zip(dyr) {
                *o = super::simd::madd::<F>(a, v, *o);
            }
        }
    }
}

/// `T` taps' weight gradients `Σ dy·x` over a plane, all in registers: `dyp` is the output
/// gradient in whole 8-lane blocks per row (row stride `bw`, zeros past the row's end), so
/// every row, however short (B0's 7×7 and 14×14 maps), runs as full vectors without a scalar
/// tail; each tap adds one FMA per block into its own chain.
///
/// # Safety
/// `buf` must hold `oh·step + col + t + LANES` readable floats for every block (row `oh`,
/// column `col`) of `dyp` and every `t` in `taps` (checked once per plane by the caller).
#[inline(always)]
unsafe fn tap_grads<const F: bool, const T: usize>(
    taps: &[usize],
    step: usize,
    bw: usize,
    dyp: &[f32],
    buf: *const f32,
) -> [f32; T] {
    let taps: [usize; T] = std::array::from_fn(|i| taps[i]);
    let mut acc = [[0.0f32; LANES]; T];
    for (oh, row) in dyp.chunks_exact(bw).enumerate() {
        for (b, d) in row.chunks_exact(LANES).enumerate() {
            // SAFETY: in bounds by the caller's guarantee.
            let base = unsafe { buf.add(oh * step + b * LANES) };
            for (acc, &t) in acc.iter_mut().zip(&taps) {
                for j in 0..LANES {
                    // SAFETY: as above.
                    acc[j] = super::simd::madd::<F>(d[j], unsafe { *base.add(t + j) }, acc[j]);
                }
            }
        }
    }
    acc.map(|a| a.iter().sum())
}

/// One plane's k×k weight gradient (added to `acc`) from its phase-layout input `buf` and its
/// output gradient padded to whole blocks (see [`tap_grads`]): k = 3 with all nine taps in one
/// sweep, k = 5 one kernel row (five chains) per sweep, other sizes one tap per sweep.
#[inline(always)]
fn weight_grad_plane_body<const F: bool>(
    taps: &[usize],
    step: usize,
    bw: usize,
    dyp: &[f32],
    buf: &[f32],
    acc: &mut [f32],
) {
    let reach = taps.iter().max().map_or(0, |t| t + LANES);
    let rows = dyp.len() / bw;
    assert!(rows == 0 || (rows - 1) * step + bw - LANES + reach <= buf.len(), "phase buffer too short");
    let (p, k) = (buf.as_ptr(), taps.len());
    // SAFETY: bounds checked above.
    unsafe {
        match k {
            9 => acc.iter_mut().zip(tap_grads::<F, 9>(taps, step, bw, dyp, p)).for_each(|(a, v)| *a += v),
            25 => {
                for (a, t) in acc.chunks_exact_mut(5).zip(taps.chunks_exact(5)) {
                    a.iter_mut().zip(tap_grads::<F, 5>(t, step, bw, dyp, p)).for_each(|(a, v)| *a += v);
                }
            }
            _ => {
                for (a, t) in acc.iter_mut().zip(taps) {
                    *a += tap_grads::<F, 1>(std::slice::from_ref(t), step, bw, dyp, p)[0];
                }
            }
        }
    }
}

/// `dyp` (rows of `ow`) into `out` as rows of `bw ≥ ow` with zeros after each row's end; `out`
/// is reused across planes of one geometry, so the zeros are written only when it is resized.
fn pad_rows(dyp: &[f32], ow: usize, bw: usize, out: &mut Vec<f32>) {
    let len = dyp.len() / ow * bw;
    if out.len() != len {
        out.clear();
        out.resize(len, 0.0);
    }
    for (src, dst) in dyp.chunks_exact(ow).zip(out.chunks_exact_mut(bw)) {
        copy_row(src, &mut dst[..ow]);
    }
}

crate::isa::multiversion!(
    forward_plane,
    forward_plane_body,
    (taps: &[usize], step: usize, ow: usize, wc: &[f32], buf: &[f32], yp: &mut [Out])
);
crate::isa::multiversion!(
    input_grad_plane,
    input_grad_plane_body,
    (taps: &[usize], step: usize, ow: usize, wc: &[f32], dyp: &[f32], buf: &mut [f32])
);
crate::isa::multiversion!(
    weight_grad_plane,
    weight_grad_plane_body,
    (taps: &[usize], step: usize, bw: usize, dyp: &[f32], buf: &[f32], acc: &mut [f32])
);

/// For stride 1, the input gradient as a forward conv: `dx` is `dy` correlated with each kernel
/// turned by 180°, padded by `k − 1 − p` on each side. The forward kernel accumulates all taps in
/// registers, where the scatter of [`input_grad_plane`] reads and writes its buffer at every tap
/// (it took 4× the forward's time for the same work). `None` for other strides or paddings
/// wider than `k − 1`.
pub(crate) fn as_forward(g: &Geometry, w: &[f32]) -> Option<(Geometry, Vec<f32>)> {
    let k = g.kernel;
    // The bottom/right padding from the output size (stride 1).
    let bottom = (g.out_height + k - 1).checked_sub(g.height + g.pad_top)?;
    let right = (g.out_width + k - 1).checked_sub(g.width + g.pad_left)?;
    if g.stride != 1 || [g.pad_top, bottom, g.pad_left, right].iter().any(|&p| p >= k) {
        return None;
    }
    let pads = [(k - 1 - g.pad_top, k - 1 - bottom), (k - 1 - g.pad_left, k - 1 - right)];
    let gf = Geometry::new([g.batch, g.channels, g.out_height, g.out_width], k, 1, pads);
    debug_assert_eq!((gf.out_height, gf.out_width), (g.height, g.width));
    let kk = k * k;
    let wf = w.chunks_exact(kk).flat_map(|taps| taps.iter().rev().copied()).collect();
    Some((gf, wf))
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
    let (kk, ip, op, ow, planes) =
        (g.kernel * g.kernel, g.in_plane(), g.out_plane(), g.out_width, g.batch * g.channels);
    let ph = Phases::new(g);
    let (taps, step) = (ph.taps(g), ph.row_step(g));
    let dx = want_dx.then(|| {
        if let Some((gf, wf)) = as_forward(g, w) {
            return forward(&gf, dy, &wf);
        }
        let mut dx = vec![0.0f32; planes * ip];
        dx.par_chunks_mut(ip).with_min_len(g.min_planes()).enumerate().for_each_init(
            Vec::new,
            |buf: &mut Vec<f32>, (p, dxp)| {
                if buf.len() == ph.len(g) {
                    buf.fill(0.0);
                } else {
                    buf.clear();
                    buf.resize(ph.len(g), 0.0);
                }
                let wc = &w[(p % g.channels) * kk..][..kk];
                input_grad_plane(&taps, step, ow, wc, &dy[p * op..(p + 1) * op], buf);
                ph.gather(g, buf, dxp);
            },
        );
        dx
    });
    let dw = want_dw.then(|| {
        // One partial k×k gradient per plane (parallel, no sharing), then a sum over the batch.
        let mut partial = vec![0.0f32; planes * kk];
        let bw = ow.div_ceil(LANES) * LANES;
        let init = || (Vec::new(), Vec::new());
        partial.par_chunks_mut(kk).with_min_len(g.min_planes()).enumerate().for_each_init(
            init,
            |(buf, dyp), (p, acc)| {
                ph.fill(g, &x[p * ip..(p + 1) * ip], buf);
                pad_rows(&dy[p * op..(p + 1) * op], ow, bw, dyp);
                weight_grad_plane(&taps, step, bw, dyp, buf, acc);
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::test_values(n, seed, 0.0)
    }

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

    #[test]
    fn matches_the_definition_for_tf_same_and_symmetric_padding() {
        // (shape, kernel, stride, pads): odd and even sizes, TF-SAME's extra bottom/right pixel,
        // symmetric k/2, no padding, a 1-pixel map, and planes whose 8-output blocks come in
        // groups of 8 with remainders of 4 + 1 (15×17: 45 blocks) and 4 (14×14: 28).
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
            ([1, 2, 15, 17], 3, 1, [(1, 1), (1, 1)]),
            ([1, 2, 14, 14], 5, 1, [(2, 2), (2, 2)]),
            // Kernel sizes outside B0's 3 and 5 (the weight gradient's one-tap sweeps).
            ([2, 2, 9, 10], 7, 1, [(3, 3), (3, 3)]),
            ([1, 3, 6, 5], 2, 2, [(0, 1), (0, 0)]),
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

            // Inference on channels-last data with BN folded in, SiLU/ReLU6, and SE's squeeze
            // from the same pass (these few channels take the kernel's channel-by-channel tail;
            // `channels_last`'s own tests cover its register blocks).
            let (n, c, ip, op) = (g.batch, g.channels, g.height * g.width, g.out_plane());
            let scale = values(c, 300 + i as u32);
            let shift = values(c, 400 + i as u32);
            for act in [crate::Act::Silu, crate::Act::Relu6, crate::Act::Identity] {
                let mut means = vec![0.0; n * c];
                let xt = crate::channels_last::to_channels_last(&x, n, c, ip);
                let y = crate::channels_last::depthwise_affine(&g, &xt, &w, (&scale, &shift), act, Some(&mut means));
                let y = crate::channels_last::to_channels_first(&y, n, c, op);
                let want: Vec<f64> = ry
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| {
                        let ch = j / op % c;
                        let t = v * scale[ch] as f64 + shift[ch] as f64;
                        match act {
                            crate::Act::Silu => t / (1.0 + (-t).exp()),
                            crate::Act::Relu6 => t.clamp(0.0, 6.0),
                            crate::Act::Identity => t,
                        }
                    })
                    .collect();
                check("fused y", &y, &want);
                let want_means: Vec<f64> = want.chunks(op).map(|p| p.iter().sum::<f64>() / op as f64).collect();
                check("squeeze", &means, &want_means);
            }
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

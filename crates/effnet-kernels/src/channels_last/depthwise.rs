//! Inference depthwise conv on channels-last data, BatchNorm, the activation and SE's squeeze
//! fused in: each output pixel's channels are accumulated in registers two vectors at a time
//! over the taps that fall inside the image, finished (affine, activation) before they are
//! stored, and summed into the squeeze while they are in registers. One pass over the output,
//! no zeroing, no per-plane padding. Written once on the portable SIMD layer (`isa`).

use crate::activation::{self, Act};
use crate::depthwise::Geometry;
use crate::isa::{Simd, simd_fn};
use crate::simd::{Out, filled};
use rayon::prelude::*;

/// Output rows per parallel task at least; a sample's rows are split further when the batch
/// is smaller than the thread count (batch-1 inference still uses every core).
fn rows_per_task(g: &Geometry) -> usize {
    let tasks_per_sample = (4 * rayon::current_num_threads()).div_ceil(g.batch);
    g.out_height.div_ceil(tasks_per_sample).max(1)
}

/// The folded BatchNorm and activation a depthwise output is finished with.
#[derive(Clone, Copy)]
pub(super) struct Finish<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    pub act: Act,
}

/// `[k², c]` from the `[c, 1, k, k]` weights: each tap's weights across channels, contiguous
/// like the pixels they multiply.
pub(super) fn tap_major(w: &[f32], c: usize, kk: usize) -> Vec<f32> {
    let mut wt = vec![0.0f32; kk * c];
    for (ch, row) in w.chunks_exact(kk).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            wt[t * c + ch] = v;
        }
    }
    wt
}

/// The taps inside the image along one axis for output index `o`: kernel indices `lo .. hi`
/// and the input index of tap 0 (negative inside the padding).
#[inline(always)]
pub(super) fn span(o: usize, stride: usize, pad: usize, size: usize, k: usize) -> ((usize, usize), isize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = (-start).max(0) as usize;
    let hi = k.min((size as isize - start).max(0) as usize);
    ((lo, hi.max(lo)), start)
}

/// Output row `oh`'s sums over the taps inside the image, unfinished: every element of `out`
/// (`out_width · c`) written. Channels in blocks of two vectors held in registers across the
/// taps, then single vectors, the last one partial.
#[inline(always)]
fn taps_row_body<S: Simd>(s: S, g: &Geometry, x: &[f32], wt: &[f32], oh: usize, out: &mut [Out]) {
    let (c, k, st, l) = (g.channels, g.kernel, g.stride, S::LANES);
    assert!(x.len() >= g.height * g.width * c && wt.len() >= k * k * c && out.len() == g.out_width * c);
    let (rows, ih0) = span(oh, st, g.pad_top, g.height, k);
    let mut ow = 0;
    while ow < g.out_width {
        let (cols, iw0) = span(ow, st, g.pad_left, g.width, k);
        // Four or two neighbours whose taps all lie inside the row: independent add chains and
        // each weight load used by every pixel (one pixel at a time was bound by its chain's
        // latency, two by the loads).
        let inside = |n: usize| ow + n <= g.out_width && span(ow + n - 1, st, g.pad_left, g.width, k).0 == (0, k);
        let px = if cols != (0, k) {
            1
        } else if inside(4) {
            4
        } else if inside(2) {
            2
        } else {
            1
        };
        let at = Taps { k, rows, ih0, cols, iw0, row: g.width * c, pixel: st * c, c };
        // SAFETY (every `run`): the taps of the px pixels are inside the image (the spans) and
        // the channel block inside c; the outputs are pixels ow .. ow + px of `out`.
        let o = out.as_mut_ptr().cast::<f32>();
        let mut cb = 0;
        unsafe {
            while cb + 2 * l <= c {
                match (k, px) {
                    (3, 4) => run::<S, 3, 4, 2>(s, &at, x, wt, cb, l, o.add(ow * c)),
                    (3, 2) => run::<S, 3, 2, 2>(s, &at, x, wt, cb, l, o.add(ow * c)),
                    (5, 4) => run::<S, 5, 4, 2>(s, &at, x, wt, cb, l, o.add(ow * c)),
                    (5, 2) => run::<S, 5, 2, 2>(s, &at, x, wt, cb, l, o.add(ow * c)),
                    (_, 4) => run::<S, 0, 4, 2>(s, &at, x, wt, cb, l, o.add(ow * c)),
                    (_, 2) => run::<S, 0, 2, 2>(s, &at, x, wt, cb, l, o.add(ow * c)),
                    _ => run::<S, 0, 1, 2>(s, &at, x, wt, cb, l, o.add(ow * c)),
                }
                cb += 2 * l;
            }
            while cb < c {
                let last = (c - cb).min(l);
                match px {
                    4 => run::<S, 0, 4, 1>(s, &at, x, wt, cb, last, o.add(ow * c)),
                    2 => run::<S, 0, 2, 1>(s, &at, x, wt, cb, last, o.add(ow * c)),
                    _ => run::<S, 0, 1, 1>(s, &at, x, wt, cb, last, o.add(ow * c)),
                }
                cb += last;
            }
        }
        ow += px;
    }
}

/// `lanes` floats at `p` (a whole vector when `lanes` is all of them), the rest zero.
///
/// # Safety
/// `lanes` floats readable at `p`.
#[inline(always)]
pub(super) unsafe fn load_lanes<S: Simd>(s: S, p: *const f32, lanes: usize) -> S::V {
    // SAFETY: the caller's.
    unsafe { if lanes == S::LANES { s.load(p) } else { s.load_partial(p, lanes) } }
}

simd_fn!(fn taps_row(g: &Geometry, x: &[f32], wt: &[f32], oh: usize, out: &mut [Out]) = taps_row_body);

/// The taps of one output pixel (the first of a run): kernel rows `rows` from input row
/// `ih0 + rows.0`, columns `cols` from `iw0 + cols.0`; strides in floats: an input row, the
/// next output pixel's input, the channels (taps and pixels are `c` apart).
struct Taps {
    k: usize,
    rows: (usize, usize),
    ih0: isize,
    cols: (usize, usize),
    iw0: isize,
    row: usize,
    pixel: usize,
    c: usize,
}

/// `PX` neighbouring pixels × `V` vectors of channels from `cb` (the last vector `last` lanes)
/// over the taps of `t` (`K = k` unrolls the tap loop, all columns inside; `K = 0` takes the
/// column range as it comes). Each weight load serves all `PX` pixels: with four, a tap is
/// 10 loads for 8 FMAs on AVX2 (two pixels: 6 for 4, bound by the loads).
///
/// # Safety
/// Every tap read and the `PX` outputs at `o + j·c + cb` valid.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn run<S: Simd, const K: usize, const PX: usize, const V: usize>(
    s: S,
    t: &Taps,
    x: &[f32],
    wt: &[f32],
    cb: usize,
    last: usize,
    o: *mut f32,
) {
    let l = S::LANES;
    let (c0, c1) = if K == 0 { t.cols } else { (0, K) };
    let mut acc = [[s.zero(); V]; PX];
    for kh in t.rows.0..t.rows.1 {
        let ih = (t.ih0 + kh as isize) as usize;
        for kw in c0..c1 {
            let iw = (t.iw0 + kw as isize) as usize;
            // SAFETY: (ih, iw) is inside the image, the channels inside c (the caller's).
            unsafe {
                let xp = x.as_ptr().add(ih * t.row + iw * t.c + cb);
                let wp = wt.as_ptr().add((kh * t.k + kw) * t.c + cb);
                let mut w = [s.zero(); V];
                for (v, w) in w.iter_mut().enumerate() {
                    *w = load_lanes(s, wp.add(v * l), if v + 1 < V { l } else { last });
                }
                for (j, acc) in acc.iter_mut().enumerate() {
                    for (v, a) in acc.iter_mut().enumerate() {
                        let xv = load_lanes(s, xp.add(j * t.pixel + v * l), if v + 1 < V { l } else { last });
                        *a = s.fma(w[v], xv, *a);
                    }
                }
            }
        }
    }
    // SAFETY: the caller's.
    unsafe {
        for (j, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                let p = o.add(j * t.c + cb + v * l);
                if v + 1 < V || last == l { s.store(p, a) } else { s.store_partial(p, last, a) }
            }
        }
    }
}

/// Output rows `oh0 ..` of one sample `x` (`[h, w, c]`) with the `[k², c]` weights `wt`, as many
/// as `y` holds: every element written, each channel's sum over them added to `sums`.
///
/// Row by row: the taps into the row, then BatchNorm, the activation and the sums over the row
/// while it is in L1 (finished per 16-channel block right after its taps, the exponential's
/// long dependency chain stalled the taps of the next block).
pub(super) fn rows(g: &Geometry, x: &[f32], wt: &[f32], f: Finish, oh0: usize, y: &mut [Out], sums: &mut [f32]) {
    for (r, row) in y.chunks_exact_mut(g.out_width * g.channels).enumerate() {
        taps_row(g, x, wt, oh0 + r, row);
        // SAFETY: the taps wrote every element of the row.
        let row = unsafe { &mut *(row as *mut [Out] as *mut [f32]) };
        activation::affine_act_rows_sum(row, f.scale, f.shift, f.act, sums);
    }
}

/// The depthwise conv alone on channels-last `x` (`[n, h, w, c]`), channels-last out (training:
/// BatchNorm's statistics come after it). The weights are the usual `[c, 1, k, k]`.
pub fn depthwise(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (c, kk) = (g.channels, g.kernel * g.kernel);
    let ip = g.height * g.width;
    assert!(x.len() == g.batch * c * ip && w.len() == c * kk);
    let wt = tap_major(w, c, kk);
    by_bands(g, rows_per_task(g), None, |n, oh0, y, _| {
        for (r, row) in y.chunks_exact_mut(g.out_width * c).enumerate() {
            taps_row(g, &x[n * ip * c..][..ip * c], &wt, oh0 + r, row);
        }
    })
}

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
    let ip = g.height * g.width;
    assert!(x.len() == g.batch * c * ip && w.len() == c * kk);
    assert!(scale.len() == c && shift.len() == c);
    let wt = tap_major(w, c, kk);
    let f = Finish { scale, shift, act };
    by_bands(g, rows_per_task(g), means, |n, oh0, y, sums| rows(g, &x[n * ip * c..][..ip * c], &wt, f, oh0, y, sums))
}

/// The `[n, out_h, out_w, c]` output of `task(n, oh0, rows, sums)` run in parallel over every
/// sample n and band of `band` output rows from `oh0` (`rows` holds the band's rows; the task
/// writes every element and adds each channel's sum over them to `sums`) and, with `means`
/// (`[n, c]`), each channel's spatial mean of the output.
pub(super) fn by_bands(
    g: &Geometry,
    band: usize,
    means: Option<&mut [f32]>,
    task: impl Fn(usize, usize, &mut [Out], &mut [f32]) + Sync,
) -> Vec<f32> {
    let (c, op) = (g.channels, g.out_height * g.out_width);
    let bands = g.out_height.div_ceil(band);
    // Each task's channel sums, added up per sample below.
    let mut partial = vec![0.0f32; g.batch * bands * c];
    // SAFETY: the tasks cover every output row of every sample and write every element of
    // their rows (the caller's contract).
    let y = unsafe {
        filled(g.batch * op * c, |y| {
            y.par_chunks_mut(op * c).zip(partial.par_chunks_mut(bands * c)).enumerate().for_each(|(n, (yn, pn))| {
                yn.par_chunks_mut(band * g.out_width * c)
                    .zip(pn.par_chunks_mut(c))
                    .enumerate()
                    .for_each(|(b, (yb, sb))| task(n, b * band, yb, sb));
            })
        })
    };
    if let Some(means) = means {
        assert_eq!(means.len(), g.batch * c);
        let inv = 1.0 / op as f32;
        for (m, pn) in means.chunks_exact_mut(c).zip(partial.chunks_exact(bands * c)) {
            m.fill(0.0);
            for sums in pn.chunks_exact(c) {
                m.iter_mut().zip(sums).for_each(|(m, s)| *m += s);
            }
            m.iter_mut().for_each(|m| *m *= inv);
        }
    }
    y
}

//! Inference depthwise conv on channels-last data, BatchNorm, the activation and SE's squeeze
//! fused in: each output pixel's channels are accumulated in registers a block of [`LANES`] at a
//! time over the taps that fall inside the image, finished (affine, activation) before they are
//! stored, and summed into the squeeze while they are in registers. One pass over the output,
//! no zeroing, no per-plane padding.

use crate::depthwise::Geometry;
use crate::simd::{self, Act, Out, filled};
use rayon::prelude::*;

/// Channels per register block: two AVX2 vectors. B0–B7's depthwise widths are multiples of 16;
/// other widths finish channel by channel.
const LANES: usize = 16;

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
fn span(o: usize, stride: usize, pad: usize, size: usize, k: usize) -> ((usize, usize), isize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = (-start).max(0) as usize;
    let hi = k.min((size as isize - start).max(0) as usize);
    ((lo, hi.max(lo)), start)
}

/// Output row `oh`'s sums over the taps inside the image, unfinished: every element of `out`
/// (`out_width · c`) written. Portable version, channel by channel.
fn taps_row_portable(g: &Geometry, x: &[f32], wt: &[f32], oh: usize, out: &mut [Out]) {
    let (c, k, s) = (g.channels, g.kernel, g.stride);
    let (rows, ih0) = span(oh, s, g.pad_top, g.height, k);
    for (ow, px) in out.chunks_exact_mut(c).enumerate() {
        let (cols, iw0) = span(ow, s, g.pad_left, g.width, k);
        tail_channels(g, x, wt, (ih0, rows), (iw0, cols), 0, px);
    }
}

/// [`taps_row_portable`] with the channels in blocks of 16 held in two AVX2 registers across
/// the taps (written with intrinsics: as a `[f32; 16]` array LLVM kept the sums on the stack and
/// stored them back at every tap). Also the kernel on AVX-512 CPUs.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn taps_row_avx2(g: &Geometry, x: &[f32], wt: &[f32], oh: usize, out: &mut [Out]) {
    use std::arch::x86_64::*;
    let (c, k, s) = (g.channels, g.kernel, g.stride);
    let full = c / LANES * LANES;
    assert!(x.len() >= g.height * g.width * c && wt.len() >= k * k * c && out.len() == g.out_width * c);
    let (rows, ih0) = span(oh, s, g.pad_top, g.height, k);
    let mut ow = 0;
    while ow < g.out_width {
        let (cols, iw0) = span(ow, s, g.pad_left, g.width, k);
        // Four or two neighbours whose taps all lie inside the row: independent add chains and
        // each weight load used by every pixel (one pixel at a time was bound by its chain's
        // latency, two by the loads).
        let inside = |n: usize| ow + n <= g.out_width && span(ow + n - 1, s, g.pad_left, g.width, k).0 == (0, k);
        let px = if cols != (0, k) {
            1
        } else if inside(4) {
            4
        } else if inside(2) {
            2
        } else {
            1
        };
        if px > 1 {
            let at = |ih: usize| (ih * g.width) as isize * c as isize + iw0 * c as isize;
            for cb in (0..full).step_by(LANES) {
                // SAFETY: every tap of the px pixels is inside the image and cb + 16 ≤ c (the
                // spans above); the outputs are pixels ow .. ow + px of `out`.
                unsafe {
                    let xp = x.as_ptr().offset(at(0)).add(cb);
                    let (w, o) = (wt.as_ptr().add(cb), out.as_mut_ptr().add(ow * c + cb).cast::<f32>());
                    let steps = (g.width * c, s * c, c);
                    match (k, px) {
                        (3, 4) => run::<3, 4>(3, xp, w, (ih0, rows), steps, o),
                        (3, _) => run::<3, 2>(3, xp, w, (ih0, rows), steps, o),
                        (5, 4) => run::<5, 4>(5, xp, w, (ih0, rows), steps, o),
                        (5, _) => run::<5, 2>(5, xp, w, (ih0, rows), steps, o),
                        (_, 4) => run::<0, 4>(k, xp, w, (ih0, rows), steps, o),
                        _ => run::<0, 2>(k, xp, w, (ih0, rows), steps, o),
                    }
                }
            }
            for j in 0..px {
                let (cols_j, iw_j) = span(ow + j, s, g.pad_left, g.width, k);
                tail_channels(g, x, wt, (ih0, rows), (iw_j, cols_j), full, &mut out[(ow + j) * c..][..c]);
            }
            ow += px;
            continue;
        }
        let px = &mut out[ow * c..][..c];
        for cb in (0..full).step_by(LANES) {
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for kh in rows.0..rows.1 {
                let ih = (ih0 + kh as isize) as usize;
                for kw in cols.0..cols.1 {
                    let iw = (iw0 + kw as isize) as usize;
                    // SAFETY: (ih, iw) is inside the image and cb + 16 ≤ c, so both 16-float
                    // reads are inside `x` and `wt` (asserted sizes above).
                    unsafe {
                        let xp = x.as_ptr().add((ih * g.width + iw) * c + cb);
                        let wp = wt.as_ptr().add((kh * k + kw) * c + cb);
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wp), _mm256_loadu_ps(xp), a0);
                        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(8)), _mm256_loadu_ps(xp.add(8)), a1);
                    }
                }
            }
            // SAFETY: channels cb .. cb + 16 of this pixel are inside `px`; `Out` is an f32.
            unsafe {
                let o = px.as_mut_ptr().add(cb).cast::<f32>();
                _mm256_storeu_ps(o, a0);
                _mm256_storeu_ps(o.add(8), a1);
            }
        }
        tail_channels(g, x, wt, (ih0, rows), (iw0, cols), full, px);
        ow += 1;
    }
}

/// One pixel's channels from `full` on, one at a time (those after the last whole 16-channel
/// block, or all of them in the portable kernel).
#[inline(always)]
fn tail_channels(
    g: &Geometry,
    x: &[f32],
    wt: &[f32],
    (ih0, rows): (isize, (usize, usize)),
    (iw0, cols): (isize, (usize, usize)),
    full: usize,
    px: &mut [Out],
) {
    let (c, k) = (g.channels, g.kernel);
    for ch in full..c {
        let mut acc = 0.0f32;
        for kh in rows.0..rows.1 {
            let ih = (ih0 + kh as isize) as usize;
            for kw in cols.0..cols.1 {
                let iw = (iw0 + kw as isize) as usize;
                acc += wt[(kh * k + kw) * c + ch] * x[(ih * g.width + iw) * c + ch];
            }
        }
        px[ch].write(acc);
    }
}

/// `PX` neighbouring pixels' 16 channels over the taps of kernel rows `rows` and all `k`
/// columns (`K = k` unrolls the tap loop; `K = 0` takes `k` as it comes): `x` points at input
/// row 0, pixel 0's first tap column, the channel block; `steps` = (input row, output pixel's
/// input, channel count) in floats (taps, output pixels and the weights' taps are `c` apart);
/// `ih0` is the input row of kernel row 0. Each weight load serves all `PX` pixels: with four,
/// a tap is 10 loads for 8 FMAs (two pixels: 6 for 4, bound by the loads).
///
/// # Safety
/// AVX2 and FMA; every tap read and the `PX` 16-float outputs at `o + j·pixel` valid.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn run<const K: usize, const PX: usize>(
    k: usize,
    x: *const f32,
    w: *const f32,
    (ih0, rows): (isize, (usize, usize)),
    (row, pixel, c): (usize, usize, usize),
    o: *mut f32,
) {
    use std::arch::x86_64::*;
    let k = if K == 0 { k } else { K };
    let mut acc = [[_mm256_setzero_ps(); 2]; PX];
    for kh in rows.0..rows.1 {
        // SAFETY: the caller's.
        unsafe {
            let p = x.offset((ih0 + kh as isize) * row as isize);
            let wk = w.add(kh * k * c);
            for kw in 0..k {
                let (wp, xp) = (wk.add(kw * c), p.add(kw * c));
                let (w0, w1) = (_mm256_loadu_ps(wp), _mm256_loadu_ps(wp.add(8)));
                for (j, acc) in acc.iter_mut().enumerate() {
                    let xj = xp.add(j * pixel);
                    acc[0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj), acc[0]);
                    acc[1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj.add(8)), acc[1]);
                }
            }
        }
    }
    // SAFETY: the caller's.
    unsafe {
        for (j, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.add(j * c), acc[0]);
            _mm256_storeu_ps(o.add(j * c + 8), acc[1]);
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
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    for (r, row) in y.chunks_exact_mut(g.out_width * g.channels).enumerate() {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { taps_row_avx2(g, x, wt, oh0 + r, row) };
        } else {
            taps_row_portable(g, x, wt, oh0 + r, row);
        }
        #[cfg(not(target_arch = "x86_64"))]
        taps_row_portable(g, x, wt, oh0 + r, row);
        // SAFETY: the taps wrote every element of the row.
        let row = unsafe { &mut *(row as *mut [Out] as *mut [f32]) };
        simd::affine_act_rows_sum(row, f.scale, f.shift, f.act, sums);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_taps_equal_the_avx2_kernel() {
        // The portable kernel runs only on CPUs without AVX2: compared here row by row, on
        // padded borders, runs of four and two pixels and single ones, stride 2 and a channel
        // tail, unrolled (3, 5) and generic (7) kernels.
        for (shape, k, s, pads) in [
            ([1, 40, 9, 11], 3, 1, [(1, 1), (1, 1)]),
            ([1, 32, 12, 10], 5, 2, [(1, 2), (1, 2)]),
            ([1, 17, 5, 6], 7, 1, [(3, 3), (3, 3)]),
            ([1, 16, 8, 23], 5, 2, [(1, 2), (1, 2)]),
            ([1, 24, 6, 20], 7, 1, [(3, 3), (3, 3)]),
        ] {
            let g = Geometry::new(shape, k, s, pads);
            let c = g.channels;
            let x = crate::test_values(g.height * g.width * c, 1, 0.0);
            let wt = crate::test_values(k * k * c, 2, 0.0);
            for oh in 0..g.out_height {
                let row = |f: &dyn Fn(&mut [Out])| {
                    let mut out = vec![Out::new(f32::NAN); g.out_width * c];
                    f(&mut out);
                    // SAFETY: both kernels write every element (NaN would remain otherwise).
                    out.into_iter().map(|v| unsafe { v.assume_init() }).collect::<Vec<f32>>()
                };
                let portable = row(&|o| taps_row_portable(&g, &x, &wt, oh, o));
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA.
                    let avx2 = row(&|o| unsafe { taps_row_avx2(&g, &x, &wt, oh, o) });
                    for (i, (a, b)) in portable.iter().zip(&avx2).enumerate() {
                        assert!((a - b).abs() <= 1e-5, "{g:?} row {oh} [{i}]: {a} vs {b}");
                    }
                }
                assert!(portable.iter().all(|v| v.is_finite()), "{g:?} row {oh}");
            }
        }
    }
}

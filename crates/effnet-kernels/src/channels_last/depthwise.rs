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

/// One output pixel's channels `cb .. cb + L` summed over the taps `kh ∈ rows`, `kw ∈ cols`
/// (portable; the AVX2 kernel keeps its sums in registers explicitly, see [`rows_avx2`]).
#[inline(always)]
fn taps<const L: usize>(
    g: &Geometry,
    x: &[f32],
    wt: &[f32],
    (ih0, iw0): (isize, isize),
    (rows, cols): ((usize, usize), (usize, usize)),
    cb: usize,
) -> [f32; L] {
    let (c, k) = (g.channels, g.kernel);
    let mut acc = [0.0f32; L];
    for kh in rows.0..rows.1 {
        let ih = (ih0 + kh as isize) as usize;
        for kw in cols.0..cols.1 {
            let iw = (iw0 + kw as isize) as usize;
            let xv = &x[(ih * g.width + iw) * c + cb..][..L];
            let wv = &wt[(kh * k + kw) * c + cb..][..L];
            for l in 0..L {
                acc[l] += wv[l] * xv[l];
            }
        }
    }
    acc
}

/// Finishes one register block of `L` channels at `cb`: stored into `out` (one pixel's `c`
/// channels) and added to `sums`.
#[inline(always)]
fn finish<const F: bool, const L: usize>(mut acc: [f32; L], cb: usize, f: Finish, out: &mut [Out], sums: &mut [f32]) {
    let scale: &[f32; L] = f.scale[cb..][..L].try_into().unwrap();
    let shift: &[f32; L] = f.shift[cb..][..L].try_into().unwrap();
    simd::affine_act_lanes::<F, L>(&mut acc, scale, shift, f.act);
    // Two loops over fixed-size arrays: interleaved, LLVM added the sums lane by lane.
    let out: &mut [Out; L] = (&mut out[cb..][..L]).try_into().unwrap();
    for l in 0..L {
        out[l].write(acc[l]);
    }
    let sums: &mut [f32; L] = (&mut sums[cb..][..L]).try_into().unwrap();
    for l in 0..L {
        sums[l] += acc[l];
    }
}

/// Output rows `oh0 ..` of one sample (`y` holds whole rows of `out_width · c`): every element
/// written, each channel's sum over these rows added to `sums`. Portable version.
fn rows_portable(g: &Geometry, x: &[f32], wt: &[f32], f: Finish, oh0: usize, y: &mut [Out], sums: &mut [f32]) {
    let (c, k, s) = (g.channels, g.kernel, g.stride);
    for (r, yrow) in y.chunks_exact_mut(g.out_width * c).enumerate() {
        let (rows, ih0) = span(oh0 + r, s, g.pad_top, g.height, k);
        for (ow, out) in yrow.chunks_exact_mut(c).enumerate() {
            let (cols, iw0) = span(ow, s, g.pad_left, g.width, k);
            for cb in 0..c {
                let acc = taps::<1>(g, x, wt, (ih0, iw0), (rows, cols), cb);
                finish::<false, 1>(acc, cb, f, out, sums);
            }
        }
    }
}

/// [`rows_portable`] with the channels in blocks of 16 held in two AVX2 registers across the
/// taps (written with intrinsics: as a `[f32; 16]` array LLVM kept the sums on the stack and
/// stored them back at every tap). Also the kernel on AVX-512 CPUs.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(g: &Geometry, x: &[f32], wt: &[f32], f: Finish, oh0: usize, y: &mut [Out], sums: &mut [f32]) {
    use std::arch::x86_64::*;
    let (c, k, s) = (g.channels, g.kernel, g.stride);
    let full = c / LANES * LANES;
    assert!(x.len() >= g.height * g.width * c && wt.len() >= k * k * c);
    for (r, yrow) in y.chunks_exact_mut(g.out_width * c).enumerate() {
        let (rows, ih0) = span(oh0 + r, s, g.pad_top, g.height, k);
        for (ow, out) in yrow.chunks_exact_mut(c).enumerate() {
            let (cols, iw0) = span(ow, s, g.pad_left, g.width, k);
            for cb in (0..full).step_by(LANES) {
                let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for kh in rows.0..rows.1 {
                    let ih = (ih0 + kh as isize) as usize;
                    for kw in cols.0..cols.1 {
                        let iw = (iw0 + kw as isize) as usize;
                        // SAFETY: (ih, iw) is inside the image and cb + 16 ≤ c, so both
                        // 16-float reads are inside `x` and `wt` (asserted sizes above).
                        unsafe {
                            let xp = x.as_ptr().add((ih * g.width + iw) * c + cb);
                            let wp = wt.as_ptr().add((kh * k + kw) * c + cb);
                            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wp), _mm256_loadu_ps(xp), a0);
                            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(8)), _mm256_loadu_ps(xp.add(8)), a1);
                        }
                    }
                }
                let mut acc = [0.0f32; LANES];
                // SAFETY: `acc` holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(acc.as_mut_ptr(), a0);
                    _mm256_storeu_ps(acc.as_mut_ptr().add(8), a1);
                }
                finish::<true, LANES>(acc, cb, f, out, sums);
            }
            for cb in full..c {
                let acc = taps::<1>(g, x, wt, (ih0, iw0), (rows, cols), cb);
                finish::<true, 1>(acc, cb, f, out, sums);
            }
        }
    }
}

/// Output rows `oh0 ..` of one sample `x` (`[h, w, c]`) with the `[k², c]` weights `wt`, as many
/// as `y` holds: every element written, each channel's sum over them added to `sums`.
pub(super) fn rows(g: &Geometry, x: &[f32], wt: &[f32], f: Finish, oh0: usize, y: &mut [Out], sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        return unsafe { rows_avx2(g, x, wt, f, oh0, y, sums) };
    }
    rows_portable(g, x, wt, f, oh0, y, sums)
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

//! 1×1 convolution (no bias, stride 1) on contiguous NCHW `f32` slices as one GEMM per sample,
//! forward and backward, through the `gemm` crate burn-flex itself uses.
//!
//! Written by hand because burn 0.22.1 computes a 1×1 conv's weight gradient as a generic
//! convolution over transposed copies with an im2col whose "kernel" is the whole h×w map
//! (9–11 % of a B0 training step), and expressing the conv as a broadcast batched matmul in
//! burn is slower still (the broadcast weight is materialised per sample in the backward).

use super::simd::{self, Out, filled};
use rayon::prelude::*;

/// `[n, c_in, h·w]` input, `[c_out, c_in]` weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub plane: usize,
}

/// A row-major or transposed view of a matrix: element (i, j) at `i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(super) struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

/// `dst[m×n] (row stride n) (+)= lhs[m×k] · rhs[k×n]`.
fn matmul(dst: &mut [Out], accumulate: bool, (m, n, k): (usize, usize, usize), lhs: View, rhs: View, threads: usize) {
    assert!(dst.len() >= m * n);
    // SAFETY: `dst` holds m×n elements at row stride n; the callers build `lhs`/`rhs` from
    // slices that hold the m×k and k×n elements their strides address (checked by the slice
    // lengths in the callers).
    // `accumulate` reads `dst`: the callers pass initialised memory then (see `backward`).
    unsafe { gemm_raw(dst.as_mut_ptr().cast(), n, accumulate, (m, n, k), lhs, rhs, threads) }
}

/// `dst (+)= lhs · rhs` with `dst` row stride `dst_rs`.
///
/// # Safety
/// `dst` must address m rows of n writable elements at row stride `dst_rs` that nobody else
/// accesses during the call, and `lhs`/`rhs` must address m×k and k×n readable elements.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_raw(
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    lhs: View,
    rhs: View,
    threads: usize,
) {
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

pub(super) fn row_major(s: &[f32], rows: usize, cols: usize) -> View {
    assert!(s.len() >= rows * cols);
    View { ptr: s.as_ptr(), rs: cols as isize, cs: 1 }
}

/// The transpose of a row-major `rows × cols` matrix.
pub(super) fn transposed(s: &[f32], rows: usize, cols: usize) -> View {
    assert!(s.len() >= rows * cols);
    View { ptr: s.as_ptr(), rs: 1, cs: cols as isize }
}

/// `x · rhs + bias` for `x` `[rows, k]` (row-major) and `rhs` `k × n` (the `View` built for
/// those sizes), with `[n]` `bias` added to every row: one GEMM on every thread, the bias as its
/// initial value.
pub(super) fn dense(x: &[f32], rows: usize, k: usize, rhs: View, bias: &[f32]) -> Vec<f32> {
    let n = bias.len();
    let mut y = bias.repeat(rows);
    // SAFETY: `y` is rows × n at row stride n and initialised (the GEMM adds to it); `x` is
    // rows × k (checked by `row_major`) and the caller built `rhs` for k × n.
    unsafe {
        gemm_raw(y.as_mut_ptr(), n, true, (rows, n, k), row_major(x, rows, k), rhs, rayon::current_num_threads())
    };
    y
}

/// Samples run in parallel when there are enough of them; otherwise GEMM uses the threads.
fn split(batch: usize) -> (bool, usize) {
    let threads = rayon::current_num_threads();
    if batch >= threads { (true, 1) } else { (false, threads) }
}

/// `y[n] = W · x[n]`.
pub fn forward(d: &Dims, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (xs, ys) = (d.cin * d.plane, d.cout * d.plane);
    let (by_sample, threads) = split(d.batch);
    let one = |(yn, xn): (&mut [Out], &[f32])| {
        matmul(yn, false, (d.cout, d.plane, d.cin), row_major(w, d.cout, d.cin), row_major(xn, d.cin, d.plane), threads)
    };
    // SAFETY: one GEMM per sample writes all of that sample's c_out × plane outputs.
    unsafe {
        filled(d.batch * ys, |y| {
            if by_sample {
                y.par_chunks_mut(ys).zip(x.par_chunks(xs)).for_each(one);
            } else {
                y.chunks_mut(ys).zip(x.chunks(xs)).for_each(one);
            }
        })
    }
}

/// Outputs of [`forward_affine`] (floats) from which it writes with non-temporal stores: 32 MB,
/// more than a server core's share of L3 holds, so the next layer reads them from memory
/// anyway, and streaming them out spares the read of each line that a normal store makes
/// first (B0 at 224², batch 16: the 77 MB expand output of the 112² block took 10 % less time;
/// streaming outputs of 8 MB and up made inference slower: their readers lost the cache).
const STREAM_MIN: usize = 8 << 20;

/// Output columns per task of [`forward_affine`]: the task's input and output blocks
/// (c_in·len and c_out·len floats) stay near 128 KB, so the epilogue finds its rows in L2.
fn column_block(d: &Dims) -> usize {
    let len = (32 * 1024 / d.cin.max(d.cout).max(1)).max(64);
    if len >= d.plane { d.plane } else { len / 16 * 16 }
}

/// A pointer that rayon tasks writing disjoint parts of one buffer may share.
struct SharedOut(*mut f32);
// SAFETY: the tasks of `forward_affine` write disjoint (sample, column block) regions.
unsafe impl Sync for SharedOut {}
impl SharedOut {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Inference 1×1 conv with BatchNorm folded in:
/// `y[n] = act(scale ⊙ (W · (s[n] ⊙ x[n])) + shift) + residual[n]`, where `s` (`[n, c_in]`,
/// squeeze-excitation's gates) and the residual are optional.
///
/// Each (sample, column block) is one task: its GEMM result is still in cache when the
/// per-channel affine, activation and residual add run over it, so BN, SiLU, SE's rescale and
/// the residual add cost no pass over memory of their own. The gates scale the weights' columns
/// when that is the smaller product, otherwise a scaled copy of the input block.
pub fn forward_affine(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    (scale, shift): (&[f32], &[f32]),
    act: super::simd::Act,
    gates: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let stream = d.batch * d.cout * d.plane >= STREAM_MIN;
    forward_affine_with(d, Input::Planes { x, gates }, w, (scale, shift), act, residual, stream)
}

/// [`forward_affine`] (no gates, no residual) on an input that is never materialised whole:
/// `fill(n, p0, block)` writes sample n's input columns `p0 .. p0 + len` as a row-major
/// `c_in × len` block (`block.len() = c_in·len`) right before the task's GEMM reads it, while
/// it is in cache. The stem's im2col goes through here: unfolded whole it was 22 MB at 224² and
/// batch 16, zeroed, written and read back.
pub fn forward_affine_unfolded(
    d: &Dims,
    fill: &(dyn Fn(usize, usize, &mut [f32]) + Sync),
    w: &[f32],
    bn: (&[f32], &[f32]),
    act: simd::Act,
) -> Vec<f32> {
    let stream = d.batch * d.cout * d.plane >= STREAM_MIN;
    forward_affine_with(d, Input::Blocks(fill), w, bn, act, None, stream)
}

/// Where [`forward_affine_with`] finds its input blocks.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// `[n, c_in, plane]` with optional `[n, c_in]` SE gates.
    Planes { x: &'a [f32], gates: Option<&'a [f32]> },
    /// Written block by block (see [`forward_affine_unfolded`]).
    Blocks(&'a (dyn Fn(usize, usize, &mut [f32]) + Sync)),
}

/// [`forward_affine`] on either input source, its output streamed out with non-temporal stores
/// when `stream`.
#[allow(clippy::too_many_arguments)]
fn forward_affine_with(
    d: &Dims,
    input: Input,
    w: &[f32],
    (scale, shift): (&[f32], &[f32]),
    act: simd::Act,
    residual: Option<&[f32]>,
    stream: bool,
) -> Vec<f32> {
    let (xs, ys, plane) = (d.cin * d.plane, d.cout * d.plane, d.plane);
    assert!(w.len() == d.cout * d.cin);
    assert!(scale.len() == d.cout && shift.len() == d.cout);
    if let Input::Planes { x, gates } = input {
        assert!(x.len() == d.batch * xs && gates.is_none_or(|g| g.len() == d.batch * d.cin));
    }
    assert!(residual.is_none_or(|r| r.len() == d.batch * ys));
    let block = column_block(d);
    let blocks = plane.div_ceil(block);
    // Every element is written by a GEMM before anything reads it, so the buffer is not
    // zeroed first (that memset was ~3 % of B0 inference).
    let mut y = Vec::<f32>::with_capacity(d.batch * ys);
    let out = SharedOut(y.as_mut_ptr());
    (0..d.batch * blocks).into_par_iter().for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(wbuf, xbuf, scratch): &mut (Vec<f32>, Vec<f32>, Vec<f32>), t| {
            let (n, p0) = (t / blocks, (t % blocks) * block);
            let len = block.min(plane - p0);
            let (x, gates) = match input {
                Input::Blocks(fill) => {
                    xbuf.resize(d.cin * len, 0.0);
                    fill(n, p0, xbuf);
                    (row_major(xbuf, d.cin, len), None)
                }
                Input::Planes { x, gates } => {
                    let xn = &x[n * xs..][..xs];
                    (
                        View { ptr: xn[p0..].as_ptr(), rs: plane as isize, cs: 1 },
                        gates.map(|g| (xn, &g[n * d.cin..][..d.cin])),
                    )
                }
            };
            let (lhs, rhs) = match gates {
                None => (row_major(w, d.cout, d.cin), x),
                // SE's gates scale the weights' columns or the input block's rows, whichever
                // is smaller (vectorised: an element-by-element `extend` was ≈ 5 % of B0
                // inference at 224²).
                Some((_, g)) if d.cout <= len => {
                    wbuf.resize(d.cout * d.cin, 0.0);
                    wbuf.chunks_exact_mut(d.cin)
                        .zip(w.chunks_exact(d.cin))
                        .for_each(|(dst, row)| simd::mul(dst, row, g));
                    (row_major(wbuf, d.cout, d.cin), x)
                }
                Some((xn, g)) => {
                    xbuf.resize(d.cin * len, 0.0);
                    for (c, (dst, &k)) in xbuf.chunks_exact_mut(len).zip(g).enumerate() {
                        simd::scale(dst, &xn[c * plane + p0..][..len], k);
                    }
                    (row_major(w, d.cout, d.cin), row_major(xbuf, d.cin, len))
                }
            };
            // BN, the activation and the residual on row o of the block, while it is in cache.
            let finish = |o: usize, row: &mut [f32]| {
                simd::affine_act(row, scale[o], shift[o], act);
                if let Some(r) = residual {
                    row.iter_mut().zip(&r[n * ys + o * plane + p0..][..len]).for_each(|(v, &rv)| *v += rv);
                }
            };
            // SAFETY: sample n, column p0 is inside `y`.
            let dst = unsafe { out.get().add(n * ys + p0) };
            if stream {
                // The block is finished in a scratch buffer that stays in cache, then streamed
                // out (see STREAM_MIN).
                scratch.resize(d.cout * len, 0.0);
                // SAFETY: `scratch` is c_out × len at row stride len; `lhs` is c_out×c_in and
                // `rhs` c_in×len within their slices.
                unsafe { gemm_raw(scratch.as_mut_ptr(), len, false, (d.cout, len, d.cin), lhs, rhs, 1) };
                for (o, row) in scratch.chunks_exact_mut(len).enumerate() {
                    finish(o, row);
                    // SAFETY: row o, columns p0..p0+len of sample n: inside `y`, this task's.
                    unsafe { simd::stream_copy(dst.add(o * plane), row) };
                }
                simd::store_fence();
                return;
            }
            // SAFETY: rows o < c_out, columns p0..p0+len of sample n lie inside `y` and belong
            // to this task alone; `lhs` is c_out×c_in and `rhs` c_in×len within their slices.
            unsafe { gemm_raw(dst, plane, false, (d.cout, len, d.cin), lhs, rhs, 1) };
            for o in 0..d.cout {
                // SAFETY: as above; this row segment is not aliased while it lives.
                finish(o, unsafe { std::slice::from_raw_parts_mut(dst.add(o * plane), len) });
            }
        },
    );
    // SAFETY: the tasks covered every (sample, column block), and each GEMM wrote all of its
    // rows × columns (`accumulate = false` never reads the destination).
    unsafe { y.set_len(d.batch * ys) };
    y
}

/// `dx[n] = Wᵀ · dy[n]` and `dW = Σₙ dy[n] · x[n]ᵀ`; either can be skipped.
pub fn backward(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (xs, ys) = (d.cin * d.plane, d.cout * d.plane);
    let (by_sample, threads) = split(d.batch);
    let dx = want_dx.then(|| {
        let one = |(dxn, dyn_): (&mut [Out], &[f32])| {
            matmul(
                dxn,
                false,
                (d.cin, d.plane, d.cout),
                transposed(w, d.cout, d.cin),
                row_major(dyn_, d.cout, d.plane),
                threads,
            )
        };
        // SAFETY: one GEMM per sample writes all of that sample's c_in × plane gradients.
        unsafe {
            filled(d.batch * xs, |dx| {
                if by_sample {
                    dx.par_chunks_mut(xs).zip(dy.par_chunks(ys)).for_each(one);
                } else {
                    dx.chunks_mut(xs).zip(dy.chunks(ys)).for_each(one);
                }
            })
        }
    });
    let dw = want_dw.then(|| {
        let ws = d.cout * d.cin;
        // Each group of samples accumulates its own partial dW; the partials are summed.
        let groups = if by_sample { rayon::current_num_threads().min(d.batch).max(1) } else { 1 };
        let per = d.batch.div_ceil(groups);
        let mut partial = vec![0.0f32; groups * ws];
        let body = |(g, acc): (usize, &mut [f32])| {
            for n in g * per..((g + 1) * per).min(d.batch) {
                let dyn_ = &dy[n * ys..(n + 1) * ys];
                let xn = &x[n * xs..(n + 1) * xs];
                let first = n == g * per;
                // SAFETY: viewing initialised floats as possibly-uninitialised ones is sound;
                // only floats are written through the view.
                let acc = unsafe { &mut *(&mut *acc as *mut [f32] as *mut [Out]) };
                matmul(
                    acc,
                    !first,
                    (d.cout, d.cin, d.plane),
                    row_major(dyn_, d.cout, d.plane),
                    transposed(xn, d.cin, d.plane),
                    threads,
                );
            }
        };
        if groups > 1 {
            partial.par_chunks_mut(ws).enumerate().for_each(body);
        } else {
            partial.chunks_mut(ws).enumerate().for_each(body);
        }
        let (first, rest) = partial.split_at_mut(ws);
        for other in rest.chunks(ws) {
            for (a, b) in first.iter_mut().zip(other) {
                *a += b;
            }
        }
        partial.truncate(ws);
        partial
    });
    (dx, dw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::test_values(n, seed, 0.0)
    }

    #[test]
    fn fused_inference_matches_the_definition() {
        use crate::Act;
        // A map split into column blocks (c_in 600 → blocks of 64), one that is not, a 1×1 map;
        // SE gates on the weights (c_out ≤ block) and on the input block (c_out > block).
        for d in [
            Dims { batch: 2, cin: 600, cout: 5, plane: 150 },
            Dims { batch: 3, cin: 6, cout: 9, plane: 7 },
            Dims { batch: 2, cin: 8, cout: 3, plane: 1 },
            Dims { batch: 1, cin: 4, cout: 2, plane: 40 },
        ] {
            assert_eq!(column_block(&d) < d.plane, d.cin == 600);
            let x = values(d.batch * d.cin * d.plane, 11);
            let w = values(d.cout * d.cin, 12);
            let (scale, shift) = (values(d.cout, 13), values(d.cout, 14));
            let gates = values(d.batch * d.cin, 15);
            let res = values(d.batch * d.cout * d.plane, 16);
            for (act, with_gates, with_res) in
                [(Act::Silu, false, false), (Act::Identity, true, true), (Act::Relu6, true, false)]
            {
                let y = forward_affine(
                    &d,
                    &x,
                    &w,
                    (&scale, &shift),
                    act,
                    with_gates.then_some(&gates[..]),
                    with_res.then_some(&res[..]),
                );
                // The streamed output (non-temporal stores from a scratch block; unaligned rows
                // here) holds the same values.
                let streamed = forward_affine_with(
                    &d,
                    Input::Planes { x: &x, gates: with_gates.then_some(&gates[..]) },
                    &w,
                    (&scale, &shift),
                    act,
                    with_res.then_some(&res[..]),
                    true,
                );
                assert!(
                    y.iter().zip(&streamed).all(|(a, b)| (a - b).abs() <= 1e-6 * a.abs().max(1.0)),
                    "{d:?} streamed"
                );
                for n in 0..d.batch {
                    for o in 0..d.cout {
                        for p in 0..d.plane {
                            let conv: f64 = (0..d.cin)
                                .map(|c| {
                                    let g = if with_gates { gates[n * d.cin + c] as f64 } else { 1.0 };
                                    w[o * d.cin + c] as f64 * g * x[(n * d.cin + c) * d.plane + p] as f64
                                })
                                .sum();
                            let t = conv * scale[o] as f64 + shift[o] as f64;
                            let a = match act {
                                Act::Silu => t / (1.0 + (-t).exp()),
                                Act::Relu6 => t.clamp(0.0, 6.0),
                                Act::Identity => t,
                            };
                            let i = (n * d.cout + o) * d.plane + p;
                            let want = a + if with_res { res[i] as f64 } else { 0.0 };
                            assert!((y[i] as f64 - want).abs() < 1e-4, "{d:?} {act:?}: {} vs {want}", y[i]);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matches_the_definition() {
        // One sample (GEMM-parallel), a batch (sample-parallel, uneven groups), a 1×1 map.
        for d in [
            Dims { batch: 1, cin: 5, cout: 7, plane: 13 },
            Dims { batch: 5, cin: 6, cout: 3, plane: 10 },
            Dims { batch: 3, cin: 4, cout: 9, plane: 1 },
        ] {
            let x = values(d.batch * d.cin * d.plane, 1);
            let w = values(d.cout * d.cin, 2);
            let dy = values(d.batch * d.cout * d.plane, 3);
            let y = forward(&d, &x, &w);
            let (dx, dw) = backward(&d, &x, &w, &dy, true, true);
            let (dx, dw) = (dx.unwrap(), dw.unwrap());
            let xi = |n: usize, c: usize, p: usize| (n * d.cin + c) * d.plane + p;
            let yi = |n: usize, o: usize, p: usize| (n * d.cout + o) * d.plane + p;
            for n in 0..d.batch {
                for p in 0..d.plane {
                    for o in 0..d.cout {
                        let want: f64 = (0..d.cin).map(|c| w[o * d.cin + c] as f64 * x[xi(n, c, p)] as f64).sum();
                        assert!((y[yi(n, o, p)] as f64 - want).abs() < 1e-5, "{d:?} y");
                    }
                    for c in 0..d.cin {
                        let want: f64 = (0..d.cout).map(|o| w[o * d.cin + c] as f64 * dy[yi(n, o, p)] as f64).sum();
                        assert!((dx[xi(n, c, p)] as f64 - want).abs() < 1e-5, "{d:?} dx");
                    }
                }
            }
            for o in 0..d.cout {
                for c in 0..d.cin {
                    let want: f64 = (0..d.batch)
                        .flat_map(|n| (0..d.plane).map(move |p| (n, p)))
                        .map(|(n, p)| dy[yi(n, o, p)] as f64 * x[xi(n, c, p)] as f64)
                        .sum();
                    assert!((dw[o * d.cin + c] as f64 - want).abs() < 1e-4, "{d:?} dw");
                }
            }
        }
    }
}

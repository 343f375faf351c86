//! 1×1 convolution (no bias, stride 1) on contiguous NCHW `f32` slices as one GEMM per sample,
//! forward and backward, through the `gemm` crate burn-flex itself uses.
//!
//! Written by hand because burn 0.22.1 computes a 1×1 conv's weight gradient as a generic
//! convolution over transposed copies with an im2col whose "kernel" is the whole h×w map
//! (9–11 % of a B0 training step), and expressing the conv as a broadcast batched matmul in
//! burn is slower still (the broadcast weight is materialised per sample in the backward).

use super::simd::{Out, filled};
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
pub(super) fn matmul(
    dst: &mut [Out],
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    lhs: View,
    rhs: View,
    threads: usize,
) {
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
    // SAFETY: forwarded from the caller.
    unsafe { gemm_strided(dst, (dst_rs as isize, 1), accumulate, (m, n, k), lhs, rhs, threads) }
}

/// [`gemm_raw`] with any destination strides `(row, column)`.
///
/// # Safety
/// As [`gemm_raw`]'s, for the elements `dst` addresses with these strides.
pub(super) unsafe fn gemm_strided(
    dst: *mut f32,
    (dst_rs, dst_cs): (isize, isize),
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
            dst_cs,
            dst_rs,
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

/// `Y = X · Wᵀ` on channels-last rows (`X` `[n·h·w, c_in]`, `Y` `[n·h·w, c_out]`): the register
/// tile (or the `gemm` crate) over blocks of rows of the whole batch (training on channels-last
/// data: every pixel of the batch in one product, where NCHW runs one GEMM per sample).
pub fn rows_forward(d: &Dims, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (ones, zeros) = (vec![1.0f32; d.cout], vec![0.0f32; d.cout]);
    crate::channels_last::pointwise_affine(d, x, w, (&ones, &zeros), crate::Act::Identity, None, None)
}

/// The gradients of [`rows_forward`]: `dX = dY · W` (the same product with the transposed
/// weights) and `dW = dYᵀ · X` (one GEMM whose inner dimension is every pixel of the batch).
pub fn rows_backward(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let m = d.batch * d.plane;
    assert!(x.len() == m * d.cin && dy.len() == m * d.cout && w.len() == d.cout * d.cin);
    let dx = want_dx.then(|| {
        let mut wt = vec![0.0f32; d.cin * d.cout];
        for (o, row) in w.chunks_exact(d.cin).enumerate() {
            row.iter().enumerate().for_each(|(i, &v)| wt[i * d.cout + o] = v);
        }
        rows_forward(&Dims { cin: d.cout, cout: d.cin, ..*d }, dy, &wt)
    });
    let dw = want_dw.then(|| {
        // SAFETY: a non-accumulating GEMM writes all c_out × c_in outputs.
        unsafe {
            filled(d.cout * d.cin, |dw| {
                matmul(
                    dw,
                    false,
                    (d.cout, d.cin, m),
                    transposed(dy, m, d.cout),
                    row_major(x, m, d.cin),
                    rayon::current_num_threads(),
                )
            })
        }
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
    fn channels_last_rows_equal_the_nchw_products() {
        for d in [Dims { batch: 3, cin: 24, cout: 40, plane: 10 }, Dims { batch: 2, cin: 7, cout: 5, plane: 1 }] {
            let x = values(d.batch * d.cin * d.plane, 1);
            let w = values(d.cout * d.cin, 2);
            let dy = values(d.batch * d.cout * d.plane, 3);
            let y = forward(&d, &x, &w);
            let (dx, dw) = backward(&d, &x, &w, &dy, true, true);
            let nhwc = |v: &[f32], c| crate::channels_last::to_channels_last(v, d.batch, c, d.plane);
            let yr = rows_forward(&d, &nhwc(&x, d.cin), &w);
            let (dxr, dwr) = rows_backward(&d, &nhwc(&x, d.cin), &w, &nhwc(&dy, d.cout), true, true);
            let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-4 * q.abs().max(1.0));
            assert!(close(&yr, &nhwc(&y, d.cout)), "{d:?} y");
            assert!(close(&dxr.unwrap(), &nhwc(&dx.unwrap(), d.cin)), "{d:?} dx");
            assert!(close(&dwr.unwrap(), &dw.unwrap()), "{d:?} dw");
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

//! SiLU, sigmoid and ReLU6 on `f32` slices, forward and backward, alone or after an affine map
//! (a folded or training BatchNorm): every kernel that evaluates an exponential, written once
//! on the portable SIMD layer (`isa`), four vectors in lockstep (see `isa::math`).
//!
//! Written by hand because burn-flex 0.22.1 runs `sigmoid` as a serial scalar loop over libm
//! `expf`, builds `silu` as `x * sigmoid(x)` (two passes forward, three or four backward) and
//! recomputes the sigmoid in its backward: 21–32 % of a B0 training step and half of inference
//! at 224² before these kernels (BENCHMARKS.md). Large tensors are split over rayon's threads.

use crate::isa::{Simd, math, simd_fn};
use crate::simd::Out;
use rayon::prelude::*;

/// The activation a fused kernel applies after the (folded) BatchNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    Silu,
    Relu6,
}

/// Vectors in lockstep per step.
const N: usize = 4;

/// Elements per parallel task: small enough to use every core on a 32² activation map, large
/// enough that rayon's per-task cost stays below 1 %.
const CHUNK: usize = 16 * 1024;

/// `act` on `M` vectors.
#[inline(always)]
pub(crate) fn apply<S: Simd, const M: usize>(s: S, act: Act, z: [S::V; M]) -> [S::V; M] {
    match act {
        Act::Identity => z,
        Act::Silu => math::silu(s, z),
        Act::Relu6 => {
            let mut z = z;
            for z in z.iter_mut() {
                *z = s.min(s.splat(6.0), s.max(s.zero(), *z));
            }
            z
        }
    }
}

/// One lockstep group of an element-wise map, `z = a·x + b` (per-element `a`, `b` vectors),
/// then the activation or, with `grad`, the SiLU gradient `g·silu'(z)`.
#[derive(Clone, Copy)]
enum Op {
    Act(Act),
    Sigmoid,
    SiluGrad,
    /// `g·σ·(1 − σ)` from the sigmoid's output σ (no exponential).
    SigmoidGrad,
}

#[inline(always)]
fn op<S: Simd, const M: usize>(s: S, op: Op, z: [S::V; M], g: [S::V; M]) -> [S::V; M] {
    match op {
        Op::Act(act) => apply(s, act, z),
        Op::Sigmoid => math::sigmoid(s, z),
        Op::SiluGrad => math::silu_grad(s, z, g),
        Op::SigmoidGrad => {
            let mut d = g;
            for i in 0..M {
                d[i] = s.mul(s.mul(g[i], z[i]), s.sub(s.splat(1.0), z[i]));
            }
            d
        }
    }
}

/// `y[i] = op(a·x[i] + b, g[i])` over a run (`g` only for the gradients; `y` may be `x`'s or
/// `g`'s memory), with `sums` (Σ y, Σ y·(x − mean)) accumulated when asked: the body of every
/// plane-wise kernel here.
///
/// # Safety
/// `x`, `g` (when used) and `y` address `len` floats each.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn run<S: Simd>(
    s: S,
    o: Op,
    x: *const f32,
    g: *const f32,
    y: *mut f32,
    len: usize,
    (a, b): (f32, f32),
    mean: Option<f32>,
) -> (f64, f64) {
    let l = S::LANES;
    let (va, vb) = (s.splat(a), s.splat(b));
    let mut sums = [s.zero(); 2];
    let grad = matches!(o, Op::SiluGrad | Op::SigmoidGrad);
    let mut i = 0;
    // SAFETY (the loads and stores): i + N·l ≤ len in the first loop, i + l ≤ len or a partial
    // vector of len − i in the second.
    unsafe {
        while i + N * l <= len {
            let (mut xv, mut z, mut gv) = ([s.zero(); N], [s.zero(); N], [s.zero(); N]);
            for j in 0..N {
                xv[j] = s.load(x.add(i + j * l));
                z[j] = s.fma(xv[j], va, vb);
                gv[j] = if grad { s.load(g.add(i + j * l)) } else { z[j] };
            }
            let r = op(s, o, z, gv);
            for j in 0..N {
                s.store(y.add(i + j * l), r[j]);
                if let Some(m) = mean {
                    sums[0] = s.add(sums[0], r[j]);
                    sums[1] = s.fma(r[j], s.sub(xv[j], s.splat(m)), sums[1]);
                }
            }
            i += N * l;
        }
        while i < len {
            let n = (len - i).min(l);
            let xv = [if n == l { s.load(x.add(i)) } else { s.load_partial(x.add(i), n) }];
            let z = [s.fma(xv[0], va, vb)];
            let gv = match (grad, n == l) {
                (false, _) => z,
                (true, true) => [s.load(g.add(i))],
                (true, false) => [s.load_partial(g.add(i), n)],
            };
            let r = op(s, o, z, gv);
            if n == l {
                s.store(y.add(i), r[0]);
            } else {
                s.store_partial(y.add(i), n, r[0]);
            }
            if let Some(m) = mean {
                // Padding lanes: the loads gave 0 there, so r is 0·… = 0 for the gradients; the
                // sums are only asked for with gradients.
                sums[0] = s.add(sums[0], r[0]);
                sums[1] = s.fma(r[0], s.sub(xv[0], s.splat(m)), sums[1]);
            }
            i += n;
        }
    }
    (s.reduce_sum(sums[0]) as f64, s.reduce_sum(sums[1]) as f64)
}

#[inline(always)]
fn map_into_body<S: Simd>(s: S, o: Op, x: &[f32], g: Option<&[f32]>, y: &mut [Out], ab: (f32, f32)) {
    assert!(x.len() == y.len() && g.is_none_or(|g| g.len() == x.len()));
    let gp = g.map_or(std::ptr::null(), |g| g.as_ptr());
    // SAFETY: all three are x.len() long (asserted); `Out` is an f32.
    unsafe { run(s, o, x.as_ptr(), gp, y.as_mut_ptr().cast(), x.len(), ab, None) };
}

#[inline(always)]
fn map_in_place_body<S: Simd>(s: S, o: Op, y: &mut [f32], ab: (f32, f32)) {
    // SAFETY: reads and writes y.len() floats of `y` (each element read before it is written).
    unsafe { run(s, o, y.as_ptr(), std::ptr::null(), y.as_mut_ptr(), y.len(), ab, None) };
}

#[inline(always)]
fn silu_grad_sums_body<S: Simd>(s: S, g: &mut [f32], x: &[f32], a: f32, b: f32, mean: f32) -> (f64, f64) {
    assert_eq!(g.len(), x.len());
    let gp = g.as_mut_ptr();
    // SAFETY: both are x.len() long; each g element is read before it is written.
    unsafe { run(s, Op::SiluGrad, x.as_ptr(), gp, gp, x.len(), (a, b), Some(mean)) }
}

simd_fn!(fn map_into(o: Op, x: &[f32], g: Option<&[f32]>, y: &mut [Out], ab: (f32, f32)) = map_into_body);
simd_fn!(fn map_in_place(o: Op, y: &mut [f32], ab: (f32, f32)) = map_in_place_body);
simd_fn!(
    /// On one plane, in place: `g ← g·silu'(z)` with `z = a·x + b` recomputed (the forward did
    /// not keep it); returns `Σ g` and `Σ g·(x − mean)` of the new `g` (training BatchNorm +
    /// SiLU's backward: BatchNorm's sums in the same pass).
    pub(crate) fn silu_grad_sums(g: &mut [f32], x: &[f32], a: f32, b: f32, mean: f32) -> (f64, f64) = silu_grad_sums_body
);

/// `y[r·c + i] = act(a[i]·x[r·c + i] + b[i])` on `m` whole channels-last rows of `c = a.len()`
/// channels (`y` may be `x`), and with `sums` each column's sum of the results added to it: `N`
/// vectors at a time along the row, then single ones (the last partial).
///
/// # Safety
/// `x` and `y` address `m·c` floats; `y` is either `x` or does not overlap it.
#[inline(always)]
unsafe fn rows_raw<S: Simd>(
    s: S,
    x: *const f32,
    y: *mut f32,
    m: usize,
    (a, b): (&[f32], &[f32]),
    act: Act,
    mut sums: Option<&mut [f32]>,
) {
    let (c, l) = (a.len(), S::LANES);
    assert!(b.len() == c && c > 0 && sums.as_ref().is_none_or(|s| s.len() == c));
    // SAFETY (the loads and stores): row r's channels i .. i + N·l (then i + l, or the partial
    // rest) are inside the m·c floats.
    unsafe {
        for r in 0..m {
            let (xr, yr) = (x.add(r * c), y.add(r * c));
            let mut i = 0;
            while i + N * l <= c {
                let mut z = [s.zero(); N];
                for (j, z) in z.iter_mut().enumerate() {
                    *z = s.fma(s.load(xr.add(i + j * l)), s.load_at(a, i + j * l), s.load_at(b, i + j * l));
                }
                let out = apply(s, act, z);
                for (j, &o) in out.iter().enumerate() {
                    s.store(yr.add(i + j * l), o);
                    if let Some(sums) = sums.as_deref_mut() {
                        let t = s.add(s.load_at(sums, i + j * l), o);
                        s.store_upto(sums, i + j * l, t);
                    }
                }
                i += N * l;
            }
            while i < c {
                let n = (c - i).min(l);
                let xv = if n == l { s.load(xr.add(i)) } else { s.load_partial(xr.add(i), n) };
                let o = apply(s, act, [s.fma(xv, s.load_upto(a, i), s.load_upto(b, i))])[0];
                if n == l {
                    s.store(yr.add(i), o)
                } else {
                    s.store_partial(yr.add(i), n, o)
                }
                if let Some(sums) = sums.as_deref_mut() {
                    let t = s.add(s.load_upto(sums, i), o);
                    s.store_upto(sums, i, t);
                }
                i += n;
            }
        }
    }
}

#[inline(always)]
fn rows_body<S: Simd>(s: S, y: &mut [f32], a: &[f32], b: &[f32], act: Act, sums: Option<&mut [f32]>) {
    assert!(y.len().is_multiple_of(a.len()));
    let p = y.as_mut_ptr();
    // SAFETY: in place over y's whole rows.
    unsafe { rows_raw(s, p, p, y.len() / a.len(), (a, b), act, sums) }
}

#[inline(always)]
fn rows_into_body<S: Simd>(s: S, x: &[f32], y: &mut [Out], a: &[f32], b: &[f32], act: Act) {
    assert!(x.len() == y.len() && x.len().is_multiple_of(a.len()));
    // SAFETY: separate buffers of the same whole rows (`Out` is an f32).
    unsafe { rows_raw(s, x.as_ptr(), y.as_mut_ptr().cast(), x.len() / a.len(), (a, b), act, None) }
}

simd_fn!(fn rows(y: &mut [f32], a: &[f32], b: &[f32], act: Act, sums: Option<&mut [f32]>) = rows_body);
simd_fn!(
    /// `y[r·c + i] = act(a[i]·x[r·c + i] + b[i])` on whole channels-last rows of `c = a.len()`
    /// (training BatchNorm's output on channels-last data).
    pub(crate) fn affine_act_rows_into(x: &[f32], y: &mut [Out], a: &[f32], b: &[f32], act: Act) = rows_into_body
);

/// `g·silu'(z)` on one vector (for kernels that fuse it into their own loops).
#[inline(always)]
pub(crate) fn silu_grad_lanes<S: Simd>(s: S, z: S::V, g: S::V) -> S::V {
    math::silu_grad(s, [z], [g])[0]
}

/// `y ← act(a·y + b)` on one short run (no threads: the fused inference kernels call it per
/// output row or row segment while it is in cache).
pub fn affine_act(y: &mut [f32], a: f32, b: f32, act: Act) {
    map_in_place(Op::Act(act), y, (a, b))
}

/// `y[r·c + i] ← act(a[i]·y[r·c + i] + b[i])` on whole channels-last rows of `c = a.len()`.
pub fn affine_act_rows(y: &mut [f32], a: &[f32], b: &[f32], act: Act) {
    rows(y, a, b, act, None)
}

/// [`affine_act_rows`], and each column's sum over the finished rows added to `sums` (`[c]`).
pub fn affine_act_rows_sum(y: &mut [f32], a: &[f32], b: &[f32], act: Act, sums: &mut [f32]) {
    rows(y, a, b, act, Some(sums))
}

/// `y[i] = act(a·x[i] + b)` on one plane (training BatchNorm's output and the activation after
/// it; no threads).
pub fn affine_act_into(x: &[f32], y: &mut [Out], a: f32, b: f32, act: Act) {
    map_into(Op::Act(act), x, None, y, (a, b))
}

fn unary(x: &[f32], y: &mut [Out], o: Op) {
    assert_eq!(x.len(), y.len());
    if x.len() <= CHUNK {
        return map_into(o, x, None, y, (1.0, 0.0));
    }
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| map_into(o, x, None, y, (1.0, 0.0)));
}

fn binary(x: &[f32], g: &[f32], y: &mut [Out], o: Op) {
    assert!(x.len() == y.len() && g.len() == y.len());
    if y.len() <= CHUNK {
        return map_into(o, x, Some(g), y, (1.0, 0.0));
    }
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(y, (x, g))| map_into(o, x, Some(g), y, (1.0, 0.0)));
}

fn in_place(y: &mut [f32], o: Op) {
    if y.len() <= CHUNK {
        return map_in_place(o, y, (1.0, 0.0));
    }
    y.par_chunks_mut(CHUNK).for_each(|y| map_in_place(o, y, (1.0, 0.0)));
}

/// `y = x·sigmoid(x)`.
pub fn silu(x: &[f32], y: &mut [Out]) {
    unary(x, y, Op::Act(Act::Silu))
}

/// `y ← y·sigmoid(y)`.
pub fn silu_in_place(y: &mut [f32]) {
    in_place(y, Op::Act(Act::Silu))
}

/// The SiLU input gradient from the forward's input `x` and the output gradient `g`.
pub fn silu_backward(x: &[f32], g: &[f32], dx: &mut [Out]) {
    binary(x, g, dx, Op::SiluGrad)
}

/// `y = 1 / (1 + e^−x)`.
pub fn sigmoid(x: &[f32], y: &mut [Out]) {
    unary(x, y, Op::Sigmoid)
}

/// `y ← sigmoid(y)`.
pub fn sigmoid_in_place(y: &mut [f32]) {
    in_place(y, Op::Sigmoid)
}

/// The sigmoid input gradient from the forward's *output* `y` and the output gradient `g`.
pub fn sigmoid_backward(y: &[f32], g: &[f32], dx: &mut [Out]) {
    binary(y, g, dx, Op::SigmoidGrad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::filled;

    fn grid() -> Vec<f32> {
        // −100 … 100 densely around 0, plus the clamp edges; longer than CHUNK (the parallel
        // path) and not a multiple of any vector width (the partial tail).
        let mut v: Vec<f32> = (0..40_001).map(|i| (i as f32 - 20_000.0) / 200.0).collect();
        v.extend([-1e4, -88.0, -87.0, 87.0, 89.0, 1e4, 0.0, -0.0]);
        v
    }

    fn sig(v: f64) -> f64 {
        1.0 / (1.0 + (-v).exp())
    }

    #[test]
    fn silu_and_sigmoid_match_f64_references() {
        let x = grid();
        let n = x.len();
        let g: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect();
        // SAFETY: each kernel writes its whole output (checked elementwise below).
        let (y, s) = unsafe { (filled(n, |o| silu(&x, o)), filled(n, |o| sigmoid(&x, o))) };
        let (dx, ds) = unsafe { (filled(n, |o| silu_backward(&x, &g, o)), filled(n, |o| sigmoid_backward(&s, &g, o))) };
        let close = |got: f32, want: f64| (got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0);
        for i in 0..n {
            let (xv, gv) = (x[i] as f64, g[i] as f64);
            let sg = sig(xv);
            assert!(close(y[i], xv * sg), "silu({xv}) = {} vs {}", y[i], xv * sg);
            assert!(close(s[i], sg), "sigmoid({xv}) = {} vs {sg}", s[i]);
            let dsilu = gv * sg * (1.0 + xv * (1.0 - sg));
            assert!(close(dx[i], dsilu), "silu'({xv}) = {} vs {dsilu}", dx[i]);
            let dsig = gv * s[i] as f64 * (1.0 - s[i] as f64);
            assert!(close(ds[i], dsig), "sigmoid'({xv}) = {} vs {dsig}", ds[i]);
        }
        assert!(y.iter().chain(&s).chain(&dx).chain(&ds).all(|v| v.is_finite()));
        // NaN stays NaN (a diverged run must not turn into plausible gates).
        let mut nan = vec![f32::NAN; 19];
        sigmoid_in_place(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()), "sigmoid(NaN) = {nan:?}");
        silu_in_place(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()), "silu(NaN) = {nan:?}");
        let (mut y2, mut s2) = (x.clone(), x.clone());
        silu_in_place(&mut y2);
        sigmoid_in_place(&mut s2);
        assert_eq!((y2, s2), (y, s), "in-place kernels equal the out-of-place ones");
    }

    #[test]
    fn affine_rows_and_their_sums_match_f64() {
        // Channel counts below one vector, between, and with N-vector groups plus tails.
        for c in [3, 8, 13, 16, 40, 72, 100] {
            let rows_n = 5;
            let y0 = crate::test_values(rows_n * c, 1, 0.0).iter().map(|v| v * 8.0).collect::<Vec<_>>();
            let a = crate::test_values(c, 2, 1.0);
            let b = crate::test_values(c, 3, 0.0);
            for act in [Act::Silu, Act::Relu6, Act::Identity] {
                let mut y = y0.clone();
                let mut sums = vec![1.0f32; c];
                affine_act_rows_sum(&mut y, &a, &b, act, &mut sums);
                let mut want_sums = vec![1.0f64; c];
                for (i, (&got, &v)) in y.iter().zip(&y0).enumerate() {
                    let z = a[i % c] as f64 * v as f64 + b[i % c] as f64;
                    let want = match act {
                        Act::Silu => z * sig(z),
                        Act::Relu6 => z.clamp(0.0, 6.0),
                        Act::Identity => z,
                    };
                    want_sums[i % c] += want;
                    assert!(
                        (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "c {c} {act:?} [{i}]: {got} vs {want}"
                    );
                }
                for (ch, (&s, &w)) in sums.iter().zip(&want_sums).enumerate() {
                    assert!((s as f64 - w).abs() <= 1e-4 * w.abs().max(1.0), "c {c} {act:?} sum[{ch}]: {s} vs {w}");
                }
            }
        }
    }

    #[test]
    fn silu_grad_sums_match_f64() {
        for len in [1, 7, 64, 99, 1000] {
            let x = crate::test_values(len, 4, 0.5);
            let g0 = crate::test_values(len, 5, 0.0);
            let (a, b, mean) = (1.7f32, -0.3f32, 0.4f32);
            let mut g = g0.clone();
            let (s1, s2) = silu_grad_sums(&mut g, &x, a, b, mean);
            let (mut w1, mut w2) = (0.0f64, 0.0f64);
            for i in 0..len {
                let z = a as f64 * x[i] as f64 + b as f64;
                let sg = sig(z);
                let want = g0[i] as f64 * sg * (1.0 + z * (1.0 - sg));
                assert!((g[i] as f64 - want).abs() <= 1e-6 * want.abs().max(1.0), "len {len} g[{i}]");
                w1 += want;
                w2 += want * (x[i] as f64 - mean as f64);
            }
            assert!((s1 - w1).abs() <= 1e-5 * w1.abs().max(1.0), "len {len}: Σg {s1} vs {w1}");
            assert!((s2 - w2).abs() <= 1e-5 * w2.abs().max(1.0), "len {len}: Σg(x−m) {s2} vs {w2}");
        }
    }
}

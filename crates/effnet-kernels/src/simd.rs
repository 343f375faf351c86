//! Element-wise activation kernels on `f32` slices: SiLU and sigmoid, forward and backward.
//!
//! Written by hand because burn-flex 0.22.1 runs `sigmoid` as a serial scalar loop over libm
//! `expf`, builds `silu` as `x * sigmoid(x)` (two passes forward, three or four backward) and
//! recomputes the sigmoid in its backward. Those took 21–32 % of a B0 training step and half
//! of inference at 224² (see BENCHMARKS.md). Here each op is one pass, the exponential is a
//! polynomial the compiler vectorises (AVX-512 or AVX2+FMA chosen at run time on x86-64), and
//! large tensors are split over rayon's threads.

use crate::silu_avx2;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output elements the out-of-place kernels write without reading (see [`filled`]).
pub type Out = MaybeUninit<f32>;

/// A vector of `n` floats that `fill` writes, without zeroing the memory first (a memset per
/// kernel output was ~8 % of a B0 training step once freed memory is reused).
///
/// # Safety
/// `fill` must write every element of the slice it is given.
pub unsafe fn filled(n: usize, fill: impl FnOnce(&mut [Out])) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller guarantees that `fill` initialised all n elements.
    unsafe { v.set_len(n) };
    v
}

/// Elements per parallel task: small enough to use every core on a 32² activation map, large
/// enough that rayon's per-task cost stays below 1 %.
const CHUNK: usize = 16 * 1024;

/// `a·b + c`, as one fused instruction in the FMA instantiations of [`multiversion!`] (the
/// baseline build has no FMA: there `mul_add` would be a libm call).
#[inline(always)]
pub(super) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `e^x` for `x ≤ 0` (−∞ included: below −87.3 it returns e^−87.3 ≈ 1e-38, which no sum with
/// 1 can tell from 0). Branch-free, so a loop over it vectorises. Relative error ≤ 3e-7: a
/// quintic fitted to `e^r` on [−ln2/2, ln2/2] (1.1e-7 in exact arithmetic); Cephes' seventh
/// degree bought nothing visible in f32 for two more FMAs per element.
#[inline(always)]
fn exp_neg<const F: bool>(x: f32) -> f32 {
    // Not `x.max(−87.3)`: that would turn NaN into −87.3 (one instruction either way).
    let x = if x < -87.3 { -87.3 } else { x };
    // Round to nearest by adding and removing 1.5·2²³ (two vector adds; `f32::round` rounds
    // half away from zero, which costs several instructions per lane).
    const MAGIC: f32 = 12_582_912.0;
    let t = madd::<F>(x, std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    // ln 2 split in two so that `x - n·ln2` is exact.
    let r = madd::<F>(n, 2.121_944_4e-4, madd::<F>(n, -0.693_359_4, x));
    let mut p = 8.312_528e-3_f32;
    p = madd::<F>(p, r, 4.189_012e-2);
    p = madd::<F>(p, r, 1.666_711_4e-1);
    p = madd::<F>(p, r, 4.999_923e-1);
    let p = madd::<F>(p, r * r, r + 1.0);
    // 2ⁿ straight from `t`'s bits (0x4B40_0000 + n; the shift drops everything above n):
    // `n as i32` would be Rust's saturating cast, which LLVM scalarises lane by lane with
    // NaN/overflow checks — that alone made this function 3× slower.
    p * f32::from_bits(t.to_bits().wrapping_add(127) << 23)
}

/// `e^x` for `|x| ≤ 87.3`, clamped outside (finite for any input, NaN stays NaN); relative
/// error as [`exp_neg`]'s (the same reduction reaches 2¹²⁶).
#[inline(always)]
fn exp_clamped<const F: bool>(x: f32) -> f32 {
    exp_neg::<F>(if x > 87.3 { 87.3 } else { x })
}

/// `x·sigmoid(x)` as `x / (1 + e^−x)`: one exponential and one division, without
/// [`sigmoid1`]'s sign split (≈ 15 % faster, and SiLU is a tenth of B0 inference). For
/// `x < −87.3` it returns `x·e^−87.3`, within 1e-35 of the true value.
#[inline(always)]
pub(super) fn silu1<const F: bool>(x: f32) -> f32 {
    x / (1.0 + exp_clamped::<F>(-x))
}

/// `1 / (1 + e^−x)` from `e = e^−|x|` ∈ (0, 1]: `1/(1+e)` for x ≥ 0 and `e/(1+e)` below, so
/// the exponential never overflows and needs one clamp instead of two.
#[inline(always)]
pub(super) fn sigmoid1<const F: bool>(x: f32) -> f32 {
    let e = exp_neg::<F>(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 { s } else { e * s }
}

#[inline(always)]
fn silu_fwd_body<const F: bool>(x: &[f32], y: &mut [Out]) {
    for (o, &v) in y.iter_mut().zip(x) {
        o.write(silu1::<F>(v));
    }
}

/// d silu / dx = s·(1 + x·(1 − s)), s = sigmoid(x).
#[inline(always)]
fn silu_bwd_body<const F: bool>(x: &[f32], g: &[f32], dx: &mut [Out]) {
    for ((o, &v), &gr) in dx.iter_mut().zip(x).zip(g) {
        let s = sigmoid1::<F>(v);
        o.write(gr * s * (1.0 + v * (1.0 - s)));
    }
}

#[inline(always)]
fn sigmoid_fwd_body<const F: bool>(x: &[f32], y: &mut [Out]) {
    for (o, &v) in y.iter_mut().zip(x) {
        o.write(sigmoid1::<F>(v));
    }
}

/// From the forward's output `y`: dx = g·y·(1 − y) (no exponential at all).
#[inline(always)]
fn sigmoid_bwd_body<const F: bool>(y: &[f32], g: &[f32], dx: &mut [Out]) {
    for ((o, &s), &gr) in dx.iter_mut().zip(y).zip(g) {
        o.write(gr * s * (1.0 - s));
    }
}

/// Instantiates a body for AVX-512 and for AVX2+FMA and picks the best at run time (the crate
/// is built for baseline x86-64, i.e. SSE2, so that the binary runs on any x86-64 CPU). Bodies
/// take `<const FMA: bool>`: true in the two vector instantiations (see [`madd`]).
macro_rules! multiversion {
    ($vis:vis $name:ident, $body:ident, ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { $body::<true>($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { $body::<true>($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the enabled target features (checked above).
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body::<false>($($arg),*)
        }
    };
}
pub(super) use multiversion;

#[inline(always)]
fn silu_in_place_body<const F: bool>(y: &mut [f32]) {
    for v in y.iter_mut() {
        *v = silu1::<F>(*v);
    }
}

#[inline(always)]
fn sigmoid_in_place_body<const F: bool>(y: &mut [f32]) {
    for v in y.iter_mut() {
        *v = sigmoid1::<F>(*v);
    }
}

#[inline(always)]
fn affine_body<const F: bool>(y: &mut [f32], a: f32, b: f32) {
    for v in y.iter_mut() {
        *v = madd::<F>(*v, a, b);
    }
}

#[inline(always)]
fn affine_silu_body<const F: bool>(y: &mut [f32], a: f32, b: f32) {
    for v in y.iter_mut() {
        *v = silu1::<F>(madd::<F>(*v, a, b));
    }
}

#[inline(always)]
fn affine_relu6_body<const F: bool>(y: &mut [f32], a: f32, b: f32) {
    for v in y.iter_mut() {
        *v = madd::<F>(*v, a, b).clamp(0.0, 6.0);
    }
}

/// Per-element coefficients on channels-last rows: `y[r·c + i] ← a[i]·y[r·c + i] + b[i]`
/// (one BatchNorm channel per column; `y` holds whole rows of `c = a.len()`).
#[inline(always)]
fn affine_rows_body<const F: bool>(y: &mut [f32], a: &[f32], b: &[f32]) {
    for row in y.chunks_exact_mut(a.len()) {
        for ((v, &a), &b) in row.iter_mut().zip(a).zip(b) {
            *v = madd::<F>(*v, a, b);
        }
    }
}

#[inline(always)]
fn affine_rows_silu_body<const F: bool>(y: &mut [f32], a: &[f32], b: &[f32]) {
    for row in y.chunks_exact_mut(a.len()) {
        for ((v, &a), &b) in row.iter_mut().zip(a).zip(b) {
            *v = silu1::<F>(madd::<F>(*v, a, b));
        }
    }
}

#[inline(always)]
fn affine_rows_relu6_body<const F: bool>(y: &mut [f32], a: &[f32], b: &[f32]) {
    for row in y.chunks_exact_mut(a.len()) {
        for ((v, &a), &b) in row.iter_mut().zip(a).zip(b) {
            *v = madd::<F>(*v, a, b).clamp(0.0, 6.0);
        }
    }
}

/// [`affine_act_rows`], then each column's sum over the finished rows added to `sums`.
#[inline(always)]
fn affine_rows_sum_body<const F: bool>(y: &mut [f32], a: &[f32], b: &[f32], act: Act, sums: &mut [f32]) {
    match act {
        Act::Identity => affine_rows_body::<F>(y, a, b),
        Act::Silu => affine_rows_silu_body::<F>(y, a, b),
        Act::Relu6 => affine_rows_relu6_body::<F>(y, a, b),
    }
    for row in y.chunks_exact(a.len()) {
        sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
    }
}

/// `dst[i] = a[i]·b[i]`.
#[inline(always)]
fn mul_body<const F: bool>(dst: &mut [f32], a: &[f32], b: &[f32]) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = x * y;
    }
}

/// `dst[i] = src[i]·k`, or `dst[i] ·= k` without `src`.
#[inline(always)]
fn scale_body<const F: bool>(dst: &mut [f32], src: Option<&[f32]>, k: f32) {
    match src {
        Some(src) => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v * k),
        None => dst.iter_mut().for_each(|d| *d *= k),
    }
}

/// `y[i] = a·x[i] + b`.
#[inline(always)]
fn affine_into_body<const F: bool>(x: &[f32], y: &mut [Out], a: f32, b: f32) {
    for (o, &v) in y.iter_mut().zip(x) {
        o.write(madd::<F>(v, a, b));
    }
}

/// `y[i] = k₁·g[i] + k₂·x[i] + k₃` (training BatchNorm's input gradient).
#[inline(always)]
fn affine2_into_body<const F: bool>(g: &[f32], x: &[f32], y: &mut [Out], (k1, k2, k3): (f32, f32, f32)) {
    for ((o, &gv), &xv) in y.iter_mut().zip(g).zip(x) {
        o.write(madd::<F>(k1, gv, madd::<F>(k2, xv, k3)));
    }
}

#[inline(always)]
fn dot_body<const F: bool>(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

multiversion!(pub(super) mul, mul_body, (dst: &mut [f32], a: &[f32], b: &[f32]));
multiversion!(pub(super) scale, scale_body, (dst: &mut [f32], src: Option<&[f32]>, k: f32));
multiversion!(pub(super) affine_into, affine_into_body, (x: &[f32], y: &mut [Out], a: f32, b: f32));
multiversion!(pub(super) affine2_into, affine2_into_body, (g: &[f32], x: &[f32], y: &mut [Out], k: (f32, f32, f32)));
multiversion!(pub(super) dot_simd, dot_body, (a: &[f32], b: &[f32]) -> f32);
multiversion!(affine_simd, affine_body, (y: &mut [f32], a: f32, b: f32));
multiversion!(affine_rows_simd, affine_rows_body, (y: &mut [f32], a: &[f32], b: &[f32]));
multiversion!(affine_rows_silu_simd, affine_rows_silu_body, (y: &mut [f32], a: &[f32], b: &[f32]));
multiversion!(affine_rows_relu6_simd, affine_rows_relu6_body, (y: &mut [f32], a: &[f32], b: &[f32]));
multiversion!(affine_rows_sum_simd, affine_rows_sum_body, (y: &mut [f32], a: &[f32], b: &[f32], act: Act, sums: &mut [f32]));
multiversion!(affine_relu6_simd, affine_relu6_body, (y: &mut [f32], a: f32, b: f32));
multiversion!(affine_silu_simd, affine_silu_body, (y: &mut [f32], a: f32, b: f32));
multiversion!(silu_fwd_simd, silu_fwd_body, (x: &[f32], y: &mut [Out]));
multiversion!(silu_in_place_simd, silu_in_place_body, (y: &mut [f32]));
multiversion!(sigmoid_in_place_simd, sigmoid_in_place_body, (y: &mut [f32]));
multiversion!(silu_bwd_simd, silu_bwd_body, (x: &[f32], g: &[f32], dx: &mut [Out]));
multiversion!(sigmoid_fwd_simd, sigmoid_fwd_body, (x: &[f32], y: &mut [Out]));
multiversion!(sigmoid_bwd_simd, sigmoid_bwd_body, (y: &[f32], g: &[f32], dx: &mut [Out]));

fn unary(x: &[f32], y: &mut [Out], f: fn(&[f32], &mut [Out])) {
    assert_eq!(x.len(), y.len());
    if x.len() <= CHUNK {
        return f(x, y);
    }
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, i)| f(i, o));
}

fn binary(a: &[f32], b: &[f32], y: &mut [Out], f: fn(&[f32], &[f32], &mut [Out])) {
    assert!(a.len() == y.len() && b.len() == y.len());
    if y.len() <= CHUNK {
        return f(a, b, y);
    }
    y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (i, g))| f(i, g, o));
}

fn in_place(y: &mut [f32], f: fn(&mut [f32])) {
    if y.len() <= CHUNK {
        return f(y);
    }
    y.par_chunks_mut(CHUNK).for_each(f);
}

/// `Σ x` in eight interleaved partial sums: a plain `iter().sum()` is one serial chain of adds
/// (float addition is not reassociated), which costs a full add latency per element.
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// `Σ aᵢ·bᵢ` in eight interleaved partial sums (see [`sum`]).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    acc.iter().sum::<f32>() + ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum::<f32>()
}

/// The activation a fused inference kernel applies after the folded BatchNorm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    Silu,
    Relu6,
}

/// `y ← act(a·y + b)` on one short run (no threads: the fused inference kernels call it per
/// output row or row segment while it is in cache).
pub fn affine_act(y: &mut [f32], a: f32, b: f32, act: Act) {
    match act {
        Act::Identity => affine_simd(y, a, b),
        Act::Silu => affine_silu_simd(y, a, b),
        Act::Relu6 => affine_relu6_simd(y, a, b),
    }
}

/// `y[r·c + i] ← act(a[i]·y[r·c + i] + b[i])` on whole channels-last rows of `c = a.len()`
/// (see [`affine_act`]).
pub fn affine_act_rows(y: &mut [f32], a: &[f32], b: &[f32], act: Act) {
    assert!(b.len() == a.len() && !a.is_empty() && y.len().is_multiple_of(a.len()));
    match act {
        Act::Identity => affine_rows_simd(y, a, b),
        Act::Silu if silu_avx2::available() => silu_avx2::affine_silu_rows(y, a, b, None),
        Act::Silu => affine_rows_silu_simd(y, a, b),
        Act::Relu6 => affine_rows_relu6_simd(y, a, b),
    }
}

/// [`affine_act_rows`], and each column's sum over the finished rows added to `sums` (`[c]`).
pub fn affine_act_rows_sum(y: &mut [f32], a: &[f32], b: &[f32], act: Act, sums: &mut [f32]) {
    assert!(b.len() == a.len() && sums.len() == a.len() && !a.is_empty() && y.len().is_multiple_of(a.len()));
    if act == Act::Silu && silu_avx2::available() {
        return silu_avx2::affine_silu_rows(y, a, b, Some(sums));
    }
    affine_rows_sum_simd(y, a, b, act, sums)
}

/// `y ← y·sigmoid(y)`.
pub fn silu_in_place(y: &mut [f32]) {
    in_place(y, silu_in_place_simd)
}

/// `y ← sigmoid(y)`.
pub fn sigmoid_in_place(y: &mut [f32]) {
    in_place(y, sigmoid_in_place_simd)
}

/// `y = x·sigmoid(x)`.
pub fn silu(x: &[f32], y: &mut [Out]) {
    unary(x, y, silu_fwd_simd)
}

/// The SiLU input gradient from the forward's input `x` and the output gradient `g`.
pub fn silu_backward(x: &[f32], g: &[f32], dx: &mut [Out]) {
    binary(x, g, dx, silu_bwd_simd)
}

/// `y = 1 / (1 + e^−x)`.
pub fn sigmoid(x: &[f32], y: &mut [Out]) {
    unary(x, y, sigmoid_fwd_simd)
}

/// The sigmoid input gradient from the forward's *output* `y` and the output gradient `g`.
pub fn sigmoid_backward(y: &[f32], g: &[f32], dx: &mut [Out]) {
    binary(y, g, dx, sigmoid_bwd_simd)
}

/// `dst[..src.len()] = src` with non-temporal stores (they bypass the cache and skip reading
/// the destination lines first) where `dst` is 32-byte aligned; call [`store_fence`] before
/// other threads read `dst`.
///
/// # Safety
/// `dst` must be valid for `src.len()` writes and not overlap `src`.
pub unsafe fn stream_copy(dst: *mut f32, src: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX; the pointers as the caller guarantees.
        return unsafe { stream_copy_avx(dst, src) };
    }
    // SAFETY: as the caller guarantees.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn stream_copy_avx(dst: *mut f32, src: &[f32]) {
    use std::arch::x86_64::{_mm256_loadu_ps, _mm256_stream_ps};
    let n = src.len();
    let head = dst.align_offset(32).min(n);
    // SAFETY: every write is below dst + n (the caller's guarantee); the streamed ones start
    // at a 32-byte aligned address, as `_mm256_stream_ps` requires.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head);
        let mut i = head;
        while i + 8 <= n {
            _mm256_stream_ps(dst.add(i), _mm256_loadu_ps(src.as_ptr().add(i)));
            i += 8;
        }
        std::ptr::copy_nonoverlapping(src.as_ptr().add(i), dst.add(i), n - i);
    }
}

/// Makes earlier non-temporal stores ([`stream_copy`]) visible before any later store (rayon's
/// synchronisation orders only normal stores).
pub fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions (SSE is part of x86-64).
    unsafe {
        std::arch::x86_64::_mm_sfence()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Vec<f32> {
        // −100 … 100 densely around 0, plus the clamp edges; longer than CHUNK to hit the
        // parallel path.
        let mut v: Vec<f32> = (0..40_001).map(|i| (i as f32 - 20_000.0) / 200.0).collect();
        v.extend([-1e4, -88.0, -87.0, 87.0, 89.0, 1e4, 0.0, -0.0]);
        v
    }

    #[test]
    fn exp_is_within_3e_7_relative() {
        let mut worst = 0.0f64;
        for i in -8700..=8700 {
            let x = i as f32 / 100.0;
            let exact = (x as f64).exp();
            for got in [exp_clamped::<false>(x), exp_clamped::<true>(x)] {
                worst = worst.max(((got as f64 - exact) / exact).abs());
            }
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn silu_and_sigmoid_match_f64_references() {
        let x = grid();
        let n = x.len();
        let g: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect();
        // SAFETY: each kernel writes its whole output (checked elementwise below).
        let (y, s) = unsafe { (filled(n, |o| silu(&x, o)), filled(n, |o| sigmoid(&x, o))) };
        let (dx, ds) = unsafe { (filled(n, |o| silu_backward(&x, &g, o)), filled(n, |o| sigmoid_backward(&s, &g, o))) };
        for i in 0..n {
            let xv = x[i] as f64;
            let sig = 1.0 / (1.0 + (-xv).exp());
            let gv = g[i] as f64;
            let close = |got: f32, want: f64| (got as f64 - want).abs() <= 1e-6 * want.abs().max(1.0);
            assert!(close(y[i], xv * sig), "silu({xv}) = {} vs {}", y[i], xv * sig);
            assert!(close(s[i], sig), "sigmoid({xv}) = {} vs {sig}", s[i]);
            let dsilu = gv * sig * (1.0 + xv * (1.0 - sig));
            assert!(close(dx[i], dsilu), "silu'({xv}) = {} vs {dsilu}", dx[i]);
            let dsig = gv * sig * (1.0 - sig);
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
}

//! Small element-wise helpers on `f32` slices (products, affine maps, sums, streaming copies)
//! as plain loops the compiler vectorises for the selected instruction set
//! (`isa::multiversion!`), and the uninitialised-output convention every kernel uses
//! ([`Out`], [`filled`]). The activations are in `activation.rs`.

use crate::isa::multiversion;
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

/// `a·b + c`, as one fused instruction in the FMA instantiations of `isa::multiversion!` (the
/// baseline build has no FMA: there `mul_add` would be a libm call).
#[inline(always)]
pub(super) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
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

/// `acc[i] += x[i]`.
#[inline(always)]
fn add_to_body<const F: bool>(acc: &mut [f32], x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, &v)| *a += v);
}

/// `acc[i] += a[i]·b[i]`.
#[inline(always)]
fn mul_add_to_body<const F: bool>(acc: &mut [f32], a: &[f32], b: &[f32]) {
    acc.iter_mut().zip(a).zip(b).for_each(|((s, &x), &y)| *s = madd::<F>(x, y, *s));
}

/// `y[i] ← k·y[i] + x[i]`.
#[inline(always)]
fn scale_add_body<const F: bool>(y: &mut [f32], k: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(v, &r)| *v = madd::<F>(*v, k, r));
}

multiversion!(pub(crate) scale_add, scale_add_body, (y: &mut [f32], k: f32, x: &[f32]));
multiversion!(pub(crate) add_to, add_to_body, (acc: &mut [f32], x: &[f32]));
multiversion!(pub(crate) mul_add_to, mul_add_to_body, (acc: &mut [f32], a: &[f32], b: &[f32]));
multiversion!(pub(super) mul, mul_body, (dst: &mut [f32], a: &[f32], b: &[f32]));
multiversion!(pub(super) scale, scale_body, (dst: &mut [f32], src: Option<&[f32]>, k: f32));
multiversion!(pub(super) affine_into, affine_into_body, (x: &[f32], y: &mut [Out], a: f32, b: f32));
multiversion!(pub(super) affine2_into, affine2_into_body, (g: &[f32], x: &[f32], y: &mut [Out], k: (f32, f32, f32)));
multiversion!(pub(super) dot_simd, dot_body, (a: &[f32], b: &[f32]) -> f32);

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

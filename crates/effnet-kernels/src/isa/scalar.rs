//! [`Simd`] without vector instructions: one lane (any CPU; `EFFNET_SIMD=scalar` forces it).

use super::Simd;

/// One float per "vector".
#[derive(Debug, Clone, Copy)]
pub struct Scalar;

impl Simd for Scalar {
    type V = f32;
    const LANES: usize = 1;
    /// What the tiles are sized by: a few accumulators (the compiler keeps them in registers).
    const REGISTERS: usize = 16;
    const FMA: bool = false;

    #[inline(always)]
    fn splat(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn zero(self) -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn load(self, p: *const f32) -> f32 {
        // SAFETY: the caller's.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32, v: f32) {
        // SAFETY: the caller's.
        unsafe { *p = v }
    }
    #[inline(always)]
    unsafe fn load_partial(self, _: *const f32, _: usize) -> f32 {
        // n < 1 lane: nothing to read.
        0.0
    }
    #[inline(always)]
    unsafe fn store_partial(self, _: *mut f32, _: usize, _: f32) {}
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn div(self, a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32, c: f32) -> f32 {
        // Two roundings: `mul_add` without an FMA instruction is a libm call.
        a * b + c
    }
    #[inline(always)]
    fn min(self, a: f32, b: f32) -> f32 {
        // x86's semantics: `b` unless `a < b` (a NaN `a` gives `b`).
        if a < b { a } else { b }
    }
    #[inline(always)]
    fn max(self, a: f32, b: f32) -> f32 {
        if a > b { a } else { b }
    }
    #[inline(always)]
    fn scale_pow2(self, p: f32, n: f32) -> f32 {
        f32::from_bits(p.to_bits().wrapping_add((n as i32 as u32) << 23))
    }
    #[inline(always)]
    fn reduce_sum(self, v: f32) -> f32 {
        v
    }
}

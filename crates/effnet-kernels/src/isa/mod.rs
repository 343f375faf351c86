//! The portable SIMD layer: one trait, [`Simd`], over the vector instructions the kernels use,
//! implemented for AVX-512 (16 lanes, 32 registers), AVX2+FMA (8 lanes, 16 registers), NEON
//! (4 lanes, 32 registers) and plain scalar code; and the one place that picks which of them a
//! process runs ([`selected`]: the best the CPU has, or `EFFNET_SIMD`).
//!
//! A kernel is written once, generic over `S: Simd`, every function of it `#[inline(always)]`,
//! and made callable by [`simd_fn!`], which instantiates it per instruction set inside a
//! `#[target_feature]` function and calls the selected one. (The same shape as `pulp`/`gemm`'s
//! `WithSimd`; our own trait because the kernels need operations those crates do not offer
//! generically — masked tails, a power-of-two scale for the exponential — and a register count
//! to size their tiles by.) Autovectorised loops (`simd.rs`'s bodies) go through
//! [`multiversion!`], which dispatches on the same selection.

#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub mod math;

#[cfg(target_arch = "aarch64")]
pub use neon::Neon;
pub use scalar::Scalar;
#[cfg(target_arch = "x86_64")]
pub use x86::{Avx2, Avx512};

use std::sync::atomic::{AtomicU8, Ordering};

/// Vector operations on `f32` lanes. Implementors are zero-sized tokens that exist only where
/// the CPU has the instructions (see [`selected`]); the unsafe methods read or write raw
/// pointers.
pub trait Simd: Copy + Send + Sync + 'static {
    /// A vector of [`Self::LANES`] floats.
    type V: Copy;
    /// Floats per vector.
    const LANES: usize;
    /// Vector registers the ISA has (16 for AVX2, 32 for AVX-512 and NEON): tiles are sized by it.
    const REGISTERS: usize;
    /// Whether [`Simd::fma`] is one fused instruction (and rounds once).
    const FMA: bool;

    fn splat(self, v: f32) -> Self::V;
    fn zero(self) -> Self::V;
    /// # Safety
    /// `LANES` floats readable at `p`.
    unsafe fn load(self, p: *const f32) -> Self::V;
    /// # Safety
    /// `LANES` floats writable at `p`.
    unsafe fn store(self, p: *mut f32, v: Self::V);
    /// The first `n < LANES` floats at `p`, the other lanes zero.
    ///
    /// # Safety
    /// `n` floats readable at `p`.
    unsafe fn load_partial(self, p: *const f32, n: usize) -> Self::V;
    /// Writes the first `n < LANES` lanes of `v` to `p`.
    ///
    /// # Safety
    /// `n` floats writable at `p`.
    unsafe fn store_partial(self, p: *mut f32, n: usize, v: Self::V);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`.
    fn fma(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// The smaller of each lane. Where either is NaN: `b` on x86 and in [`Scalar`], NaN on NEON
    /// (so `min(bound, x)` passes a NaN `x` on everywhere).
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// `p · 2ⁿ` for integral `n` in −126 … 127 (`p` in [0.5, 2)): the exponential's last step.
    fn scale_pow2(self, p: Self::V, n: Self::V) -> Self::V;
    /// The sum of the lanes.
    fn reduce_sum(self, v: Self::V) -> f32;

    /// `LANES` floats from a slice at `i` (bounds-checked once, here).
    #[inline(always)]
    fn load_at(self, s: &[f32], i: usize) -> Self::V {
        assert!(i + Self::LANES <= s.len());
        // SAFETY: in bounds (asserted).
        unsafe { self.load(s.as_ptr().add(i)) }
    }

    /// `s[i ..]`: a whole vector, or the slice's last `s.len() − i < LANES` floats padded with zeros.
    #[inline(always)]
    fn load_upto(self, s: &[f32], i: usize) -> Self::V {
        let n = s.len() - i;
        // SAFETY: min(n, LANES) floats from i are inside `s`.
        unsafe { if n >= Self::LANES { self.load(s.as_ptr().add(i)) } else { self.load_partial(s.as_ptr().add(i), n) } }
    }

    /// Writes the lanes of `v` that fit in `s[i ..]`.
    #[inline(always)]
    fn store_upto(self, s: &mut [f32], i: usize, v: Self::V) {
        let n = s.len() - i;
        // SAFETY: min(n, LANES) floats from i are inside `s`.
        unsafe {
            if n >= Self::LANES {
                self.store(s.as_mut_ptr().add(i), v)
            } else {
                self.store_partial(s.as_mut_ptr().add(i), n, v)
            }
        }
    }
}

/// An instruction set the kernels are instantiated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Isa {
    /// x86-64 AVX-512 F/BW/DQ/VL (with FMA): 16 lanes.
    Avx512 = 1,
    /// x86-64 AVX2 + FMA: 8 lanes.
    Avx2 = 2,
    /// AArch64 Advanced SIMD: 4 lanes.
    Neon = 3,
    /// No vector instructions (any other CPU; also forced for tests).
    Scalar = 4,
}

impl Isa {
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar];

    /// The name users see (`effnet bench --json`'s `"simd"`, `EFFNET_SIMD`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Scalar => "scalar",
        }
    }

    /// Whether this CPU runs it.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::has_avx512(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            Isa::Scalar => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The widest this CPU runs.
    pub fn best() -> Isa {
        Isa::ALL.into_iter().find(|i| i.available()).unwrap_or(Isa::Scalar)
    }

    fn from_u8(v: u8) -> Isa {
        Isa::ALL.into_iter().find(|i| *i as u8 == v).unwrap_or(Isa::Scalar)
    }
}

impl std::str::FromStr for Isa {
    type Err = String;

    /// A name from [`Isa::name`] that this CPU runs; the error says which it has.
    fn from_str(s: &str) -> Result<Isa, String> {
        let names = || Isa::ALL.map(Isa::name).join(", ");
        let isa = Isa::ALL
            .into_iter()
            .find(|i| i.name() == s.trim())
            .ok_or_else(|| format!("unknown instruction set `{}` (expected one of {})", s.trim(), names()))?;
        if !isa.available() {
            let have: Vec<_> = Isa::ALL.into_iter().filter(|i| i.available()).map(Isa::name).collect();
            return Err(format!("this CPU cannot run `{}` (it runs {})", isa.name(), have.join(", ")));
        }
        Ok(isa)
    }
}

/// 0: not yet chosen.
static SELECTED: AtomicU8 = AtomicU8::new(0);

/// `EFFNET_SIMD` read and checked: `Ok(None)` when unset.
pub fn isa_from_env() -> Result<Option<Isa>, String> {
    match std::env::var("EFFNET_SIMD") {
        Ok(v) if !v.trim().is_empty() => v.parse().map(Some).map_err(|e| format!("EFFNET_SIMD: {e}")),
        _ => Ok(None),
    }
}

/// The instruction set this process's kernels run: chosen once, at the first kernel call (or by
/// [`select`]): `EFFNET_SIMD` when it names one this CPU runs, else [`Isa::best`]. (The cli
/// checks `EFFNET_SIMD` with [`isa_from_env`] at start-up and refuses a bad value in one line;
/// here an unusable value falls back to the best.)
#[inline]
pub fn selected() -> Isa {
    match SELECTED.load(Ordering::Relaxed) {
        0 => {
            let isa = isa_from_env().ok().flatten().unwrap_or_else(Isa::best);
            SELECTED.store(isa as u8, Ordering::Relaxed);
            isa
        }
        v => Isa::from_u8(v),
    }
}

/// Forces `isa` for the rest of the process (it must be [`Isa::available`]).
pub fn select(isa: Isa) -> Result<(), String> {
    if !isa.available() {
        return Err(format!("this CPU cannot run `{}`", isa.name()));
    }
    SELECTED.store(isa as u8, Ordering::Relaxed);
    Ok(())
}

/// Defines `$vis fn $name(args) -> ret` that runs the generic `$body::<S>(simd, args)` with
/// the [`selected`] instruction set, each instantiation compiled with its target features
/// (`$body` and everything it calls must be `#[inline(always)]`, so that they are compiled
/// inside that function).
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? = $($body:tt)+) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[allow(unused_imports)]
            use $crate::isa::{Isa, Simd};
            match $crate::isa::selected() {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => {
                    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn inner($($arg: $ty),*) $(-> $ret)? {
                        // SAFETY: only reached where `selected()` found the features.
                        $($body)+(unsafe { $crate::isa::Avx512::new_unchecked() }, $($arg),*)
                    }
                    // SAFETY: the CPU has the features (`selected()` checked them).
                    unsafe { inner($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => {
                    #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn inner($($arg: $ty),*) $(-> $ret)? {
                        // SAFETY: as above.
                        $($body)+(unsafe { $crate::isa::Avx2::new_unchecked() }, $($arg),*)
                    }
                    // SAFETY: as above.
                    unsafe { inner($($arg),*) }
                }
                #[cfg(target_arch = "aarch64")]
                Isa::Neon => {
                    #[target_feature(enable = "neon")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn inner($($arg: $ty),*) $(-> $ret)? {
                        // SAFETY: as above.
                        $($body)+(unsafe { $crate::isa::Neon::new_unchecked() }, $($arg),*)
                    }
                    // SAFETY: as above.
                    unsafe { inner($($arg),*) }
                }
                _ => $($body)+($crate::isa::Scalar, $($arg),*),
            }
        }
    };
}
pub(crate) use simd_fn;

/// Instantiates an autovectorised body `$body::<FMA>(args)` (plain loops the compiler
/// vectorises; `madd::<FMA>` fuses where the instruction set has FMA) for each instruction set
/// and calls the [`selected`] one.
macro_rules! multiversion {
    ($vis:vis $name:ident, $body:ident, ($($arg:ident : $ty:ty),*) $(-> $ret:ty)?) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body<S: $crate::isa::Simd>(_: S, $($arg: $ty),*) $(-> $ret)? {
                if S::FMA { $body::<true>($($arg),*) } else { $body::<false>($($arg),*) }
            }
            $crate::isa::simd_fn!(fn run($($arg: $ty),*) $(-> $ret)? = body);
            run($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unavailable_ones_are_refused() {
        for isa in Isa::ALL {
            match isa.name().parse::<Isa>() {
                Ok(parsed) => assert_eq!(parsed, isa),
                Err(e) => {
                    assert!(!isa.available(), "{isa:?}: {e}");
                    assert!(e.contains("cannot run") && e.contains("scalar"), "{e}");
                }
            }
        }
        assert!("sse9".parse::<Isa>().unwrap_err().contains("unknown instruction set `sse9`"));
        assert!(Isa::Scalar.available());
        assert!(Isa::best().available());
    }
}

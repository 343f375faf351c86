//! The exponential, SiLU and sigmoid on [`Simd`] vectors, `N` vectors in lockstep.
//!
//! Lockstep: one vector's SiLU is a chain of ~20 dependent instructions, and a loop over one
//! vector at a time keeps too few chains in flight to fill the FP units (it waits on latency).
//! Each step here runs over all `N` independent vectors before the next step starts (the
//! constant-`N` loops unroll), which an autovectorised loop does not do.
//!
//! The exponential is SLEEF's `expf_u10` method (≤ 1 ulp): `e^x = 2ⁿ·e^r`, `n = round(x/ln 2)`,
//! `r = x − n·ln 2` in two parts (Cody–Waite), `e^r = 1 + r + r²·P(r)` with a degree-5 `P`.
//! A cheaper one (a table and a cubic, 2.5e-7 relative) measured 0.36 against 0.44 ns per
//! SiLU on Zen 3, but its error, compounded over a deep network's layers, made effnet's fused
//! inference the noisiest f32 engine on a deep random network (issue 28); two FMAs per vector
//! are the price of being no worse than the others.

use super::Simd;

/// `|x|` beyond which `e^x` is clamped: `e^±87.3` stays a normal float, and every use here
/// (`1 + e^−z`) is insensitive to the clamp (below −87.3 the result is within 1e-35 of exact).
const CLAMP: f32 = 87.3;

/// `e^x` on each lane, `x` clamped to ±87.3 (finite for any number; NaN stays NaN).
#[inline(always)]
// The coefficients as SLEEF publishes them (digits beyond f32 kept, so they can be compared).
#[allow(clippy::excessive_precision)]
pub fn exp<S: Simd, const N: usize>(s: S, x: [S::V; N]) -> [S::V; N] {
    // No closures here (`array::map`): they are compiled apart from the `#[target_feature]`
    // function that inlines this one, and their intrinsics become calls.
    let mut x = x;
    let mut n = x;
    // n = round(x / ln 2): adding 1.5·2²³ rounds to an integer (two vector adds; a rounding
    // instruction is not on every ISA).
    const MAGIC: f32 = 12_582_912.0;
    for i in 0..N {
        // The bound first: x86's min/max return their second operand when one is NaN.
        x[i] = s.max(s.splat(-CLAMP), s.min(s.splat(CLAMP), x[i]));
        n[i] = s.sub(s.fma(x[i], s.splat(std::f32::consts::LOG2_E), s.splat(MAGIC)), s.splat(MAGIC));
    }
    let mut r = [s.zero(); N];
    for i in 0..N {
        // ln 2 in two parts: the first has few bits, so n·hi is exact.
        r[i] = s.fma(n[i], s.splat(-0.693_145_751_953_125), x[i]);
        r[i] = s.fma(n[i], s.splat(-1.428_606_765_330_187_045e-6), r[i]);
    }
    let mut p = [s.splat(1.985_276_176_128_536_462_783_81e-4); N];
    for c in [
        1.393_043_552_525_341_510_772_71e-3,
        8.333_360_776_305_198_669_433_59e-3,
        4.166_648_536_920_547_485_351_56e-2,
        1.666_666_716_337_203_979_492_19e-1,
        0.5,
    ] {
        for i in 0..N {
            p[i] = s.fma(p[i], r[i], s.splat(c));
        }
    }
    let mut e = [s.zero(); N];
    for i in 0..N {
        let r2 = s.mul(r[i], r[i]);
        e[i] = s.fma(r2, p[i], s.add(r[i], s.splat(1.0)));
        e[i] = s.scale_pow2(e[i], n[i]);
    }
    e
}

/// `z·sigmoid(z) = z / (1 + e^−z)` on each lane (a NaN stays NaN).
#[inline(always)]
pub fn silu<S: Simd, const N: usize>(s: S, z: [S::V; N]) -> [S::V; N] {
    let e = exp(s, negated(s, z));
    let mut y = z;
    for i in 0..N {
        y[i] = s.div(z[i], s.add(s.splat(1.0), e[i]));
    }
    y
}

/// `1 / (1 + e^−z)` on each lane.
#[inline(always)]
pub fn sigmoid<S: Simd, const N: usize>(s: S, z: [S::V; N]) -> [S::V; N] {
    let mut e = exp(s, negated(s, z));
    for e in e.iter_mut() {
        *e = s.div(s.splat(1.0), s.add(s.splat(1.0), *e));
    }
    e
}

#[inline(always)]
fn negated<S: Simd, const N: usize>(s: S, mut z: [S::V; N]) -> [S::V; N] {
    for z in z.iter_mut() {
        *z = s.sub(s.zero(), *z);
    }
    z
}

/// `g·silu'(z)`, `silu'(z) = σ(z)·(1 + z·(1 − σ(z)))`, on each lane.
#[inline(always)]
pub fn silu_grad<S: Simd, const N: usize>(s: S, z: [S::V; N], g: [S::V; N]) -> [S::V; N] {
    let sig = sigmoid(s, z);
    let mut d = g;
    for i in 0..N {
        let one = s.splat(1.0);
        let t = s.fma(z[i], s.sub(one, sig[i]), one);
        d[i] = s.mul(s.mul(g[i], sig[i]), t);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::{Isa, Scalar, simd_fn};

    /// `f` over `x`, four vectors at a time (then one), with the selected instruction set.
    #[inline(always)]
    fn map4<S: Simd>(s: S, x: &[f32], which: u8) -> Vec<f32> {
        let mut y = x.to_vec();
        let l = S::LANES;
        let apply = |v: [S::V; 4]| match which {
            0 => exp(s, v),
            1 => silu(s, v),
            _ => sigmoid(s, v),
        };
        let mut i = 0;
        while i + 4 * l <= y.len() {
            let v: [S::V; 4] = std::array::from_fn(|j| s.load_at(&y, i + j * l));
            for (j, r) in apply(v).into_iter().enumerate() {
                s.store_upto(&mut y, i + j * l, r);
            }
            i += 4 * l;
        }
        while i < y.len() {
            let v = [s.load_upto(&y, i), s.zero(), s.zero(), s.zero()];
            s.store_upto(&mut y, i, apply(v)[0]);
            i += l;
        }
        y
    }

    simd_fn!(fn map_selected(x: &[f32], which: u8) -> Vec<f32> = map4);

    /// |got − want| in units of the last place of `want` as an f32.
    fn ulps(got: f32, want: f64) -> f64 {
        let e = want.abs().max(f32::MIN_POSITIVE as f64).log2().floor();
        (got as f64 - want).abs() / 2f64.powf(e - 23.0)
    }

    fn grid() -> Vec<f32> {
        // −90 … 90 every 1e-3 (180,001 points), odd length for the partial tail.
        (0..180_001).map(|i| (i as f32 - 90_000.0) / 1000.0).collect()
    }

    fn check(name: &str, isa: &str, got: &[f32], x: &[f32], f: impl Fn(f64) -> f64, max_ulps: f64) {
        let mut worst = (0.0f64, 0.0f32);
        for (&g, &xv) in got.iter().zip(x) {
            let want = f(xv as f64);
            let u = ulps(g, want);
            if u > worst.0 {
                worst = (u, xv);
            }
        }
        eprintln!("{isa} {name}: worst {:.2} ulp at x = {}", worst.0, worst.1);
        assert!(worst.0 <= max_ulps, "{isa} {name}: {:.2} ulp at x = {}", worst.0, worst.1);
    }

    #[test]
    fn exp_within_1_5_ulps_silu_and_sigmoid_within_3_5_of_f64() {
        let x = grid();
        let clamp = |v: f64| v.clamp(-CLAMP as f64, CLAMP as f64);
        let isa = crate::isa::selected().name();
        for (which, name) in [(0u8, "exp"), (1, "silu"), (2, "sigmoid")] {
            for (label, got) in [(isa, map_selected(&x, which)), ("scalar", map4(Scalar, &x, which))] {
                // Within the clamp (outside it e^x is e^±87.3 by design; SiLU and sigmoid there are
                // below 1e-35, checked absolutely).
                let (inside, xs) = (&got[3000..177_001], &x[3000..177_001]);
                match which {
                    0 => check(name, label, inside, xs, |v| clamp(v).exp(), 1.5),
                    1 => check(name, label, inside, xs, |v| v / (1.0 + (-v).exp()), 3.5),
                    _ => check(name, label, inside, xs, |v| 1.0 / (1.0 + (-v).exp()), 3.5),
                }
                if which > 0 {
                    assert!(got[..3000].iter().all(|v| v.abs() < 1e-35), "{label} {name} below −87");
                }
            }
        }
        // NaN stays NaN through SiLU and sigmoid (a diverged run must not produce plausible
        // numbers), on every instruction set.
        let nan = [f32::NAN; 37];
        for which in [1u8, 2] {
            assert!(map_selected(&nan, which).iter().all(|v| v.is_nan()), "{isa} {which}");
        }
        let _ = Isa::Scalar;
    }
}

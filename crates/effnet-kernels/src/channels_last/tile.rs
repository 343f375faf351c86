//! The inference 1×1 conv's GEMM on AVX2+FMA, written by hand: register tiles of 6 pixels ×
//! 16 output channels over all of c_in, and BatchNorm, the activation and the residual applied
//! to each tile in registers before it is stored.
//!
//! Why not the `gemm` crate here (it stays for everything else): it packs the pixel block again
//! on every call, and its result goes out to the block and back for the epilogue — on B0's
//! small-c_in expand convs (16, 24, 40 channels) the tile's load, epilogue and store are a large
//! share of the work. Here the weights are packed once per layer (per sample when SE's gates
//! scale them) and channels-last pixel rows are read where they lie: one broadcast per pixel
//! and input channel.

#[cfg(target_arch = "x86_64")]
use crate::silu_avx2::silu_tile;
use crate::simd::{Act, filled};
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output channels per panel: two 8-lane vectors.
const PANEL: usize = 16;
/// Pixels per register tile: 6 × 2 accumulators, two weight vectors and a broadcast fill 15 of
/// AVX2's 16 registers.
const PIXELS: usize = 6;

/// 1×1 weights packed for [`rows`]: panels of 16 output channels (the last one 8 when c_out is
/// an odd multiple of 8), each `[c_in, width]`, with SE's gates folded into the input channels.
pub(super) struct Panels {
    data: Vec<f32>,
    cin: usize,
    cout: usize,
}

/// Whether [`Panels`] and [`rows`] serve a layer of `cout` output channels on this CPU: AVX2
/// and FMA, and whole 8-lane vectors of output channels (every released EfficientNet's widths
/// are multiples of 8; other layers take the `gemm` crate's path). Not on AVX-512 CPUs: there
/// the `gemm` crate's 16-lane kernels have twice this tile's arithmetic per instruction, and
/// no AVX-512 machine was at hand to measure which is faster.
pub(super) fn applies(cout: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        cout.is_multiple_of(8) && crate::silu_avx2::available() && !is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cout;
        false
    }
}

impl Panels {
    /// Packs `[c_out, c_in]` weights `w` (a transpose into panels: done for every layer call,
    /// as a scalar gather it was 5 % of B0 eval at 32², batch 64, where each weight serves few
    /// pixels), a panel per rayon task, in 8 × 8 blocks transposed in registers.
    pub(super) fn pack(w: &[f32], cout: usize, cin: usize) -> Self {
        assert!(cout.is_multiple_of(8) && w.len() == cout * cin && applies(cout));
        // SAFETY: the panels cover the buffer and `pack_panel` writes every float of each (not
        // zeroed first: that memset cost as much as the packing).
        let data = unsafe {
            filled(cout * cin, |data| {
                data.par_chunks_mut(PANEL * cin).enumerate().for_each(|(b, panel)| {
                    let rows = &w[b * PANEL * cin..][..panel.len()];
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 is present (`applies`); `rows` holds the panel's width × c_in
                    // weights and `panel` c_in × width floats (`Out` is an f32).
                    pack_panel(rows, std::slice::from_raw_parts_mut(panel.as_mut_ptr().cast(), panel.len()), cin);
                    #[cfg(not(target_arch = "x86_64"))]
                    let _ = rows;
                })
            })
        };
        Panels { data, cin, cout }
    }

    /// These panels with input channel `i` scaled by `gates[i]`, in `buf`'s storage (each
    /// panel row is one input channel: a contiguous scale, no gather).
    pub(super) fn gated(&self, gates: &[f32], mut buf: Vec<f32>) -> Self {
        let (cin, cout) = (self.cin, self.cout);
        assert!(gates.len() == cin);
        buf.clear();
        buf.resize(cin * cout, 0.0);
        for o0 in (0..cout).step_by(PANEL) {
            let width = PANEL.min(cout - o0);
            let (src, dst) = (&self.data[o0 * cin..][..width * cin], &mut buf[o0 * cin..][..width * cin]);
            for ((d, s), &g) in dst.chunks_exact_mut(width).zip(src.chunks_exact(width)).zip(gates) {
                d.iter_mut().zip(s).for_each(|(d, &v)| *d = v * g);
            }
        }
        Panels { data: buf, cin, cout }
    }

    /// The buffer back, for the next [`Panels::gated`].
    pub(super) fn into_buffer(self) -> Vec<f32> {
        self.data
    }
}

/// One panel: `rows` (`width` output channels × c_in, width 8 or 16) into `panel` (c_in ×
/// width): 8 × 8 blocks through registers, the last `c_in mod 8` input channels one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pack_panel(rows: &[f32], panel: &mut [f32], cin: usize) {
    let width = rows.len() / cin;
    let full = cin / 8 * 8;
    for j0 in (0..width).step_by(8) {
        for k0 in (0..full).step_by(8) {
            // SAFETY: rows j0 .. j0 + 8 (≤ width) and columns k0 .. k0 + 8 (≤ c_in) of `rows`;
            // panel rows k0 .. k0 + 8, columns j0 .. j0 + 8 (≤ width) of `panel`.
            unsafe {
                let r: [__m256; 8] = std::array::from_fn(|j| _mm256_loadu_ps(rows.as_ptr().add((j0 + j) * cin + k0)));
                let t = transpose8(r);
                for (k, t) in t.into_iter().enumerate() {
                    _mm256_storeu_ps(panel.as_mut_ptr().add((k0 + k) * width + j0), t);
                }
            }
        }
        for k in full..cin {
            for j in j0..j0 + 8 {
                panel[k * width + j] = rows[j * cin + k];
            }
        }
    }
}

/// The 8 × 8 transpose of eight row vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// `dst = act(scale ⊙ (x · Wᵀ) + shift) + residual` for `len` channels-last pixel rows `x`
/// (`[len, c_in]`), `dst` and `residual` `[len, c_out]`. Only where [`applies`] said so.
pub(super) fn rows(
    p: &Panels,
    x: &[f32],
    dst: &mut [f32],
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    residual: Option<&[f32]>,
) {
    let cout = p.cout;
    let len = dst.len() / cout;
    assert!(dst.len() == len * cout);
    // SAFETY: `dst` is len × c_out floats, all of them this call's (asserted, and a `&mut`).
    unsafe { columns(p, x, dst.as_mut_ptr(), len, (scale, shift), act, residual, 0..cout) }
}

/// [`rows`] for output channels `channels` only (from a multiple of 16 to a multiple of 16 or
/// c_out), into the `[len, c_out]` rows at `dst`: for tasks that share one block's rows and
/// split its panels (each reads its share of the weights once).
///
/// # Safety
/// `dst` points at `len · c_out` floats whose columns `channels` no one else reads or writes
/// during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn columns(
    p: &Panels,
    x: &[f32],
    dst: *mut f32,
    len: usize,
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    residual: Option<&[f32]>,
    channels: std::ops::Range<usize>,
) {
    let (cin, cout) = (p.cin, p.cout);
    assert!(x.len() >= len * cin && scale.len() == cout && shift.len() == cout);
    assert!(residual.is_none_or(|r| r.len() >= len * cout) && applies(cout));
    assert!(
        channels.start.is_multiple_of(PANEL)
            && channels.end <= cout
            && (channels.end == cout || channels.end.is_multiple_of(PANEL))
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and FMA are present (`applies`); every tile reads inside `x`, the panels and
    // `residual` and writes inside the caller's `dst` columns (the asserts above bound each by
    // len, c_in, c_out and `channels`).
    unsafe {
        let res = residual.map_or(std::ptr::null(), |r| r.as_ptr());
        rows_avx2(p, x.as_ptr(), dst, len, (scale, shift), act, res, channels)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("applies() is false off x86-64")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_avx2(
    p: &Panels,
    x: *const f32,
    y: *mut f32,
    len: usize,
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    res: *const f32,
    channels: std::ops::Range<usize>,
) {
    let (cin, cout) = (p.cin, p.cout);
    // Panel outer, pixels inner: a panel (c_in × 16 floats) stays in L1 while the block's
    // pixel rows stream past it from L2.
    for o0 in channels.step_by(PANEL) {
        let w = unsafe { p.data.as_ptr().add(o0 * cin) };
        let e = Epilogue { scale: unsafe { scale.as_ptr().add(o0) }, shift: unsafe { shift.as_ptr().add(o0) }, act };
        let wide = cout - o0 >= PANEL;
        for p0 in (0..len).step_by(PIXELS) {
            let at = Tile {
                x: unsafe { x.add(p0 * cin) },
                cin,
                w,
                y: unsafe { y.add(p0 * cout + o0) },
                res: if res.is_null() { res } else { unsafe { res.add(p0 * cout + o0) } },
                cout,
            };
            // SAFETY: (for all arms) `at` addresses pixels p0 .. p0 + n < len and channels
            // o0 .. o0 + 8·V ≤ c_out (see `rows`).
            unsafe {
                match (len - p0).min(PIXELS) {
                    6 if wide => tile::<6, 2>(&at, &e),
                    6 => tile::<6, 1>(&at, &e),
                    5 if wide => tile::<5, 2>(&at, &e),
                    5 => tile::<5, 1>(&at, &e),
                    4 if wide => tile::<4, 2>(&at, &e),
                    4 => tile::<4, 1>(&at, &e),
                    3 if wide => tile::<3, 2>(&at, &e),
                    3 => tile::<3, 1>(&at, &e),
                    2 if wide => tile::<2, 2>(&at, &e),
                    2 => tile::<2, 1>(&at, &e),
                    _ if wide => tile::<1, 2>(&at, &e),
                    _ => tile::<1, 1>(&at, &e),
                }
            }
        }
    }
}

/// Where one tile reads and writes: its first pixel's input row (stride c_in), the panel, its
/// first output (row stride c_out) and the residual at the same place (or null).
#[cfg(target_arch = "x86_64")]
struct Tile {
    x: *const f32,
    cin: usize,
    w: *const f32,
    y: *mut f32,
    res: *const f32,
    cout: usize,
}

/// The panel's BatchNorm coefficients and the activation.
#[cfg(target_arch = "x86_64")]
struct Epilogue {
    scale: *const f32,
    shift: *const f32,
    act: Act,
}

/// `P` pixels × `V` vectors of output channels, all of c_in, finished and stored.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const P: usize, const V: usize>(t: &Tile, e: &Epilogue) {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); V]; P];
        let width = 8 * V;
        for k in 0..t.cin {
            let mut w = [_mm256_setzero_ps(); V];
            for (v, w) in w.iter_mut().enumerate() {
                *w = _mm256_loadu_ps(t.w.add(k * width + 8 * v));
            }
            for (p, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*t.x.add(p * t.cin + k));
                for (a, &w) in acc.iter_mut().zip(&w) {
                    *a = _mm256_fmadd_ps(x, w, *a);
                }
            }
        }
        for v in 0..V {
            let a = _mm256_loadu_ps(e.scale.add(8 * v));
            let b = _mm256_loadu_ps(e.shift.add(8 * v));
            for acc in acc.iter_mut() {
                acc[v] = _mm256_fmadd_ps(acc[v], a, b);
            }
        }
        match e.act {
            Act::Identity => {}
            Act::Silu => silu_tile(&mut acc),
            Act::Relu6 => {
                for z in acc.iter_mut().flat_map(|a| a.iter_mut()) {
                    *z = _mm256_min_ps(_mm256_max_ps(*z, _mm256_setzero_ps()), _mm256_set1_ps(6.0));
                }
            }
        }
        for (p, acc) in acc.iter().enumerate() {
            for (v, &z) in acc.iter().enumerate() {
                let at = p * t.cout + 8 * v;
                let z = if t.res.is_null() { z } else { _mm256_add_ps(z, _mm256_loadu_ps(t.res.add(at))) };
                _mm256_storeu_ps(t.y.add(at), z);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::act64;
    use super::*;

    /// Every tile shape (pixel tails 1–5, an 8-wide last panel), gates and residual, against
    /// an f64 product.
    #[test]
    fn tiles_match_an_f64_product() {
        if !applies(8) {
            eprintln!("no AVX2+FMA: the hand-written tile does not run here");
            return;
        }
        for (len, cin, cout) in
            [(1, 1, 8), (5, 3, 24), (13, 16, 96), (47, 40, 40), (6, 96, 16), (17, 7, 8), (9, 20, 24)]
        {
            let x = crate::test_values(len * cin, 1, 0.0);
            let w = crate::test_values(cout * cin, 2, 0.0);
            let scale = crate::test_values(cout, 3, 1.0);
            let shift = crate::test_values(cout, 4, 0.0);
            let gates = crate::test_values(cin, 5, 0.5);
            let res = crate::test_values(len * cout, 6, 0.0);
            for act in [Act::Silu, Act::Identity, Act::Relu6] {
                for (gated, residual) in [(false, false), (true, true), (true, false)] {
                    let g = gated.then_some(&gates[..]);
                    let p = match g {
                        Some(g) => Panels::pack(&w, cout, cin).gated(g, Vec::new()),
                        None => Panels::pack(&w, cout, cin),
                    };
                    let mut y = vec![f32::NAN; len * cout];
                    rows(&p, &x, &mut y, (&scale, &shift), act, residual.then_some(&res[..]));
                    for r in 0..len {
                        for o in 0..cout {
                            let dot: f64 = (0..cin)
                                .map(|i| x[r * cin + i] as f64 * w[o * cin + i] as f64 * g.map_or(1.0, |g| g[i] as f64))
                                .sum();
                            let mut want = act64(act, scale[o] as f64 * dot + shift[o] as f64);
                            if residual {
                                want += res[r * cout + o] as f64;
                            }
                            let got = y[r * cout + o] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                "{len}×{cin}→{cout} {act:?} gated {gated} residual {residual} at ({r}, {o}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

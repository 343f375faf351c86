//! The inference 1×1 conv's GEMM as register tiles of `P` pixels × `V` vectors of output
//! channels over all of c_in, with BatchNorm, the activation and the residual applied to each
//! tile in registers before it is stored; written once on the portable SIMD layer and sized per
//! instruction set by [`Shaped`] (AVX-512: 14 × 2 × 16 lanes, AVX2: 6 × 2 × 8, NEON: 6 × 4 × 4).
//!
//! Why not the `gemm` crate here (it stays for the scalar fallback and everything else): it
//! packs the pixel block again on every call, and its result goes out to the block and back for
//! the epilogue — on B0's small-c_in expand convs (16, 24, 40 channels) the tile's load,
//! epilogue and store are a large share of the work. Here the weights are packed once per layer
//! (per sample when SE's gates scale them) and channels-last pixel rows are read where they lie:
//! one broadcast per pixel and input channel.

use crate::activation::Act;
use crate::isa::{Isa, Simd, simd_fn};
use crate::simd::filled;
use rayon::prelude::*;

/// Whether the register tile serves 1×1 layers on this CPU: every vector ISA (the scalar
/// fallback leaves them to the `gemm` crate, whose own scalar kernels are as good).
pub(super) fn applies() -> bool {
    crate::isa::selected() != Isa::Scalar
}

#[inline(always)]
fn width_of<S: Shaped>(_: S) -> usize {
    S::VECS * S::LANES
}

simd_fn!(
    /// Output channels per panel on this CPU (the unit [`columns`]' channel ranges come in).
    pub(super) fn panel_width() -> usize = width_of
);

#[inline(always)]
fn lanes_of<S: Simd>(_: S) -> usize {
    S::LANES
}

simd_fn!(fn lanes() -> usize = lanes_of);

/// 1×1 weights packed for [`rows`]: panels of [`panel_width`] output channels (the last one
/// narrower, and padded with zero weights to whole vectors), each `[c_in, width]`, with SE's
/// gates folded into the input channels.
pub(super) struct Panels {
    data: Vec<f32>,
    cin: usize,
    cout: usize,
    /// Channels per panel and per vector.
    width: usize,
    lanes: usize,
}

impl Panels {
    /// Packs `[c_out, c_in]` weights `w`: a transpose into panels, done for every layer call (as
    /// a scalar gather on one thread it was 5 % of B0 eval at 32², batch 64, where each weight
    /// serves few pixels): a panel per rayon task, in blocks of 8 input channels so that each
    /// output channel's run is read once.
    pub(super) fn pack(w: &[f32], cout: usize, cin: usize) -> Self {
        assert!(w.len() == cout * cin && applies());
        let (width, lanes) = (panel_width(), lanes());
        let padded = cout.div_ceil(lanes) * lanes;
        // SAFETY: the panels cover the buffer and each task writes every float of its panel.
        let data = unsafe {
            filled(padded * cin, |data| {
                data.par_chunks_mut(width * cin).enumerate().for_each(|(b, panel)| {
                    let pw = panel.len() / cin;
                    // SAFETY: `Out` is an f32; every element is written below.
                    let panel = std::slice::from_raw_parts_mut(panel.as_mut_ptr().cast::<f32>(), panel.len());
                    let o0 = b * width;
                    for k0 in (0..cin).step_by(8) {
                        let ks = k0..(k0 + 8).min(cin);
                        for j in 0..pw {
                            let o = o0 + j;
                            if o < cout {
                                let src = &w[o * cin..][ks.clone()];
                                for (k, &v) in ks.clone().zip(src) {
                                    panel[k * pw + j] = v;
                                }
                            } else {
                                ks.clone().for_each(|k| panel[k * pw + j] = 0.0);
                            }
                        }
                    }
                })
            })
        };
        Panels { data, cin, cout, width, lanes }
    }

    /// These panels with input channel `i` scaled by `gates[i]`, in `buf`'s storage (each
    /// panel row is one input channel: a contiguous scale, no gather).
    pub(super) fn gated(&self, gates: &[f32], mut buf: Vec<f32>) -> Self {
        let cin = self.cin;
        assert!(gates.len() == cin);
        buf.clear();
        buf.resize(self.data.len(), 0.0);
        for (dst, src) in buf.chunks_mut(self.width * cin).zip(self.data.chunks(self.width * cin)) {
            let pw = src.len() / cin;
            for ((d, s), &g) in dst.chunks_exact_mut(pw).zip(src.chunks_exact(pw)).zip(gates) {
                crate::simd::scale(d, Some(s), g);
            }
        }
        Panels { data: buf, ..*self }
    }

    /// The buffer back, for the next [`Panels::gated`].
    pub(super) fn into_buffer(self) -> Vec<f32> {
        self.data
    }
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

/// [`rows`] for output channels `channels` only (from a multiple of [`panel_width`] to a
/// multiple of it or c_out), into the `[len, c_out]` rows at `dst`: for tasks that share one
/// block's rows and split its panels (each reads its share of the weights once).
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
    let (cin, cout, width) = (p.cin, p.cout, p.width);
    assert!(x.len() >= len * cin && scale.len() == cout && shift.len() == cout);
    assert!(residual.is_none_or(|r| r.len() >= len * cout) && applies() && p.lanes == lanes());
    assert!(
        channels.start.is_multiple_of(width)
            && channels.end <= cout
            && (channels.end == cout || channels.end.is_multiple_of(width))
    );
    let job = Job { p, x, dst: Dst(dst), len, scale, shift, act, res: residual, channels };
    run_tiles(&job);
}

/// Everything [`columns`] was given, for the generic kernel.
struct Job<'a> {
    p: &'a Panels,
    x: &'a [f32],
    dst: Dst,
    len: usize,
    scale: &'a [f32],
    shift: &'a [f32],
    act: Act,
    res: Option<&'a [f32]>,
    channels: std::ops::Range<usize>,
}

#[derive(Clone, Copy)]
struct Dst(*mut f32);

/// The tile of each instruction set: `P` pixels × `V` vectors of output channels, so that the
/// accumulators, one weight vector each and a broadcast fill the register file (AVX-512 and
/// NEON have 32 registers, AVX2 16), and a panel (`V` vectors) divides the usual EfficientNet
/// widths. `VECS` is the `V` that `panels` is instantiated with.
trait Shaped: Simd {
    const VECS: usize;
    fn panels(self, j: &Job);
}

#[cfg(target_arch = "x86_64")]
impl Shaped for crate::isa::Avx512 {
    const VECS: usize = 2;
    #[inline(always)]
    fn panels(self, j: &Job) {
        panels::<Self, 14, 2>(self, j)
    }
}

#[cfg(target_arch = "x86_64")]
impl Shaped for crate::isa::Avx2 {
    const VECS: usize = 2;
    #[inline(always)]
    fn panels(self, j: &Job) {
        panels::<Self, 6, 2>(self, j)
    }
}

#[cfg(target_arch = "aarch64")]
impl Shaped for crate::isa::Neon {
    const VECS: usize = 4;
    #[inline(always)]
    fn panels(self, j: &Job) {
        panels::<Self, 6, 4>(self, j)
    }
}

/// Never runs ([`applies`] is false there); here so that the dispatch covers every ISA.
impl Shaped for crate::isa::Scalar {
    const VECS: usize = 1;
    #[inline(always)]
    fn panels(self, _: &Job) {
        unreachable!("the register tile does not run on the scalar instruction set")
    }
}

#[inline(always)]
fn run_tiles_body<S: Shaped>(s: S, j: &Job) {
    s.panels(j)
}

simd_fn!(fn run_tiles(j: &Job) = run_tiles_body);

/// Panel outer, pixels inner: a panel (c_in × width floats) stays in L1 while the block's pixel
/// rows stream past it from L2. Pixel tails in tiles of P/2, P/4, … and 1; a narrower last panel
/// with `V' < V` vectors, its last vector stored partially when c_out is not a multiple of the
/// lanes.
#[inline(always)]
fn panels<S: Simd, const P: usize, const V: usize>(s: S, j: &Job) {
    let (cin, cout, l) = (j.p.cin, j.p.cout, S::LANES);
    for o0 in j.channels.clone().step_by(j.p.width) {
        let vecs = (cout - o0).min(j.p.width).div_ceil(l);
        let last = (cout - o0).min(j.p.width) - (vecs - 1) * l;
        // SAFETY (the pointers below): panel o0 / width starts at o0·c_in in the packed data;
        // pixels p0 .. p0 + n ≤ len and channels o0 .. o0 + vecs·l (the last vector `last`
        // lanes) are inside `x`, `dst` and `res` (the asserts in `columns`).
        let at = |p0: usize| unsafe {
            Tile {
                x: j.x.as_ptr().add(p0 * cin),
                cin,
                w: j.p.data.as_ptr().add(o0 * cin),
                pw: vecs * l,
                y: j.dst.0.add(p0 * cout + o0),
                res: j.res.map_or(std::ptr::null(), |r| r.as_ptr().add(p0 * cout + o0)),
                cout,
                scale: j.scale.as_ptr().add(o0),
                shift: j.shift.as_ptr().add(o0),
                act: j.act,
                last,
            }
        };
        let mut p0 = 0;
        while p0 < j.len {
            let n = j.len - p0;
            // SAFETY: as above, for the n' ≤ n pixels each tile takes.
            let took = unsafe {
                match vecs {
                    v if v >= V => tail::<S, P, V>(s, &at(p0), n),
                    3 if V > 3 => tail::<S, P, 3>(s, &at(p0), n),
                    2 if V > 2 => tail::<S, P, 2>(s, &at(p0), n),
                    _ => tail::<S, P, 1>(s, &at(p0), n),
                }
            };
            p0 += took;
        }
    }
}

/// One tile of `min(n, P)` pixels, rounded down to P, 7, 4, 2 or 1: returns how many.
///
/// # Safety
/// As [`tile`]'s, for `n` pixels.
#[inline(always)]
unsafe fn tail<S: Simd, const P: usize, const V: usize>(s: S, t: &Tile, n: usize) -> usize {
    // SAFETY: the caller's.
    unsafe {
        if n >= P {
            tile::<S, P, V>(s, t);
            P
        } else if n >= 7 {
            tile::<S, 7, V>(s, t);
            7
        } else if n >= 4 {
            tile::<S, 4, V>(s, t);
            4
        } else if n >= 2 {
            tile::<S, 2, V>(s, t);
            2
        } else {
            tile::<S, 1, V>(s, t);
            1
        }
    }
}

/// Where one tile reads and writes: its first pixel's input row (stride c_in), the panel (row
/// stride `pw`), its first output (row stride c_out) and the residual at the same place (or
/// null), the panel's BatchNorm coefficients, the activation, and the lanes of the last vector.
struct Tile {
    x: *const f32,
    cin: usize,
    w: *const f32,
    pw: usize,
    y: *mut f32,
    res: *const f32,
    cout: usize,
    scale: *const f32,
    shift: *const f32,
    act: Act,
    last: usize,
}

/// `P` pixels × `V` vectors of output channels, all of c_in, finished and stored.
///
/// # Safety
/// `t` addresses `P` pixel rows and `V` vectors of channels (the last `t.last` lanes wide) as
/// [`Tile`] says.
#[inline(always)]
unsafe fn tile<S: Simd, const P: usize, const V: usize>(s: S, t: &Tile) {
    let l = S::LANES;
    // SAFETY: the caller's.
    unsafe {
        let mut acc = [[s.zero(); V]; P];
        for k in 0..t.cin {
            let mut w = [s.zero(); V];
            for (v, w) in w.iter_mut().enumerate() {
                *w = s.load(t.w.add(k * t.pw + v * l));
            }
            for (p, acc) in acc.iter_mut().enumerate() {
                let x = s.splat(*t.x.add(p * t.cin + k));
                for (a, &w) in acc.iter_mut().zip(&w) {
                    *a = s.fma(x, w, *a);
                }
            }
        }
        // The epilogue four accumulators at a time (the lockstep SiLU), each group stored
        // before the next, so that few registers are live beside the tile.
        let mut flat: [[S::V; 4]; 1] = [[s.zero(); 4]];
        let mut i = 0;
        while i < P * V {
            let g = (P * V - i).min(4);
            for (j, f) in flat[0].iter_mut().enumerate().take(g) {
                let (p, v) = ((i + j) / V, (i + j) % V);
                let lanes = if v + 1 == V { t.last } else { l };
                let (a, b) = if lanes == l {
                    (s.load(t.scale.add(v * l)), s.load(t.shift.add(v * l)))
                } else {
                    (s.load_partial(t.scale.add(v * l), lanes), s.load_partial(t.shift.add(v * l), lanes))
                };
                *f = s.fma(acc[p][v], a, b);
            }
            let z = crate::activation::apply(s, t.act, flat[0]);
            for (j, &z) in z.iter().enumerate().take(g) {
                let (p, v) = ((i + j) / V, (i + j) % V);
                let at = p * t.cout + v * l;
                let lanes = if v + 1 == V { t.last } else { l };
                if lanes == l {
                    let z = if t.res.is_null() { z } else { s.add(z, s.load(t.res.add(at))) };
                    s.store(t.y.add(at), z);
                } else {
                    let z = if t.res.is_null() { z } else { s.add(z, s.load_partial(t.res.add(at), lanes)) };
                    s.store_partial(t.y.add(at), lanes, z);
                }
            }
            i += g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::act64;
    use super::*;

    /// Every tile shape (pixel tails, a narrower last panel, c_out not a multiple of the lanes),
    /// gates and residual, against an f64 product.
    #[test]
    fn tiles_match_an_f64_product() {
        if !applies() {
            eprintln!("scalar instruction set: the register tile does not run");
            return;
        }
        for (len, cin, cout) in [
            (1, 1, 8),
            (5, 3, 24),
            (13, 16, 96),
            (47, 40, 40),
            (6, 96, 16),
            (17, 7, 8),
            (9, 20, 24),
            (29, 5, 3),
            (15, 9, 37),
            (31, 24, 112),
            (3, 12, 70),
        ] {
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
                    // A guard float after the rows: partial stores must not write past c_out.
                    let mut y = vec![f32::NAN; len * cout + 1];
                    let (rows_y, guard) = y.split_at_mut(len * cout);
                    rows(&p, &x, rows_y, (&scale, &shift), act, residual.then_some(&res[..]));
                    assert!(guard[0].is_nan(), "wrote past the output");
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

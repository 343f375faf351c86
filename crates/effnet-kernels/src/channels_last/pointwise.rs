//! Inference 1×1 conv (and the stem's k×k conv) on channels-last data: one GEMM per block of
//! output pixels, `[pixels, c_in] · Wᵀ`, with BatchNorm, the activation and the residual
//! applied to the block while it is in cache, and SE's gates folded into the weights or the
//! input block.

use super::tile::{self, Panels};
use crate::activation::{self, Act};
use crate::pointwise::{Dims, gemm_raw, gemm_strided, row_major, transposed};
use crate::simd::{self, filled};
use rayon::prelude::*;

/// Maps of up to this many pixels over the whole batch are multiplied as one GEMM on every
/// thread (see [`whole_batch`]); larger ones block by block (see [`blocked`]).
const WHOLE_BATCH_MAX_PIXELS: usize = 1024;

/// Rows each task of [`blocked`] gets at least when the register tile takes a small map: every
/// task reads all the weights (from L3 on the late layers), so below this the `gemm` crate's
/// split of the weights between threads wins (B0 eval at 32², batch 64: the 1² maps' 64 rows in
/// four tasks ran slower than one GEMM on all threads).
const TILE_MIN_ROWS: usize = 64;

/// `y[n] = act(scale ⊙ (W · (s[n] ⊙ x[n])) + shift) + residual[n]` on channels-last `x`
/// (`[n·h·w, c_in]` rows) and `residual`, channels-last out; `gates` `[n, c_in]` are SE's.
pub fn pointwise_affine(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    bn: (&[f32], &[f32]),
    act: Act,
    gates: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    assert!(x.len() == d.batch * d.cin * d.plane && w.len() == d.cout * d.cin);
    assert!(bn.0.len() == d.cout && bn.1.len() == d.cout);
    assert!(gates.is_none_or(|g| g.len() == d.batch * d.cin));
    assert!(residual.is_none_or(|r| r.len() == d.batch * d.cout * d.plane));
    // Few pixels, or too few blocks to keep every thread busy (small batches): through the
    // `gemm` crate, one GEMM on all threads serves better than blocks that each pack all the
    // weights again. The register tile packs them once for all blocks, which split finer, as
    // long as each still multiplies enough rows to pay for reading all the weights.
    let threads = rayon::current_num_threads();
    let tasks = d.batch * d.plane.div_ceil(block_len(d).min(d.plane));
    let few = d.batch * d.plane <= WHOLE_BATCH_MAX_PIXELS || tasks < 2 * threads;
    let rows = d.batch * d.plane;
    if few && tile::applies() && rows < TILE_MIN_ROWS * 2 * threads {
        split_channels(d, x, w, bn, act, gates, residual)
    } else if few && !tile::applies() {
        whole_batch(d, x, w, bn, act, gates, residual)
    } else {
        blocked(d, Input::Rows { x, gates }, w, bn, act, residual)
    }
}

/// Few pixels: one GEMM `x · Wᵀ` over the whole batch that uses every thread.
///
/// One GEMM rather than one per thread: the weights come from L3 (each layer's are read once
/// per batch), and gemm's own threads split them instead of each packing all of them; a
/// 64 × 1152 × 192 product with cold weights ran at 64–70 GFLOP/s that way here, against
/// 2 × 27 as two halves.
fn whole_batch(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    gates: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (cin, cout, plane) = (d.cin, d.cout, d.plane);
    let rows = d.batch * plane;
    let gated = gates.map(|g| gate_rows(d, x, g));
    let a = gated.as_deref().unwrap_or(x);
    // SAFETY: the GEMM writes all rows × c_out outputs (`accumulate = false` reads none) at row
    // stride c_out; `a` is rows × c_in and Wᵀ c_in × c_out (the caller's asserts).
    let mut y = unsafe {
        filled(rows * cout, |y| {
            gemm_raw(
                y.as_mut_ptr().cast(),
                cout,
                false,
                (rows, cout, cin),
                row_major(a, rows, cin),
                transposed(w, cout, cin),
                rayon::current_num_threads(),
            )
        })
    };
    let per_task = (4096 / cout).max(1) * cout;
    y.par_chunks_mut(per_task).enumerate().for_each(|(t, chunk)| {
        activation::affine_act_rows(chunk, scale, shift, act);
        if let Some(r) = residual {
            chunk.iter_mut().zip(&r[t * per_task..]).for_each(|(v, r)| *v += r);
        }
    });
    y
}

/// `x` with each sample's rows scaled by its `[c_in]` gates (SE's), as a new buffer.
fn gate_rows(d: &Dims, x: &[f32], gates: &[f32]) -> Vec<f32> {
    let (cin, plane) = (d.cin, d.plane);
    let mut gated = vec![0.0f32; x.len()];
    gated.par_chunks_mut(plane * cin).zip(x.par_chunks(plane * cin)).zip(gates.par_chunks(cin)).for_each(
        |((dst, xn), gn)| {
            for (d, s) in dst.chunks_exact_mut(cin).zip(xn.chunks_exact(cin)) {
                simd::mul(d, s, gn);
            }
        },
    );
    gated
}

/// Few rows on the register tile (the 1×1 and 2×2 maps of small inputs): every task takes all
/// the rows and a share of the output channels' panels, so the weights — the larger operand
/// here — are read once in all (B0 eval at 32², batch 64: 64 rows against up to 1152 × 320
/// weights).
fn split_channels(
    d: &Dims,
    x: &[f32],
    w: &[f32],
    bn: (&[f32], &[f32]),
    act: Act,
    gates: Option<&[f32]>,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (cin, cout, rows) = (d.cin, d.cout, d.batch * d.plane);
    let gated = gates.map(|g| gate_rows(d, x, g));
    let a = gated.as_deref().unwrap_or(x);
    let panels = Panels::pack(w, cout, cin);
    let width = tile::panel_width();
    let per_task = cout.div_ceil(width).div_ceil(2 * rayon::current_num_threads()) * width;
    let mut y = Vec::<f32>::with_capacity(rows * cout);
    let out = SharedOut(y.as_mut_ptr());
    (0..cout.div_ceil(per_task)).into_par_iter().for_each(|t| {
        let channels = t * per_task..((t + 1) * per_task).min(cout);
        // SAFETY: `y` holds rows × c_out floats; each task writes only its own channels.
        unsafe { tile::columns(&panels, a, out.get(), rows, bn, act, residual, channels) };
    });
    // SAFETY: the tasks' channel ranges cover 0 .. c_out, each written for every row.
    unsafe { y.set_len(rows * cout) };
    y
}

/// Outputs of [`blocked`] (floats) from which it writes with non-temporal stores: 32 MB, more
/// than a server core's share of L3 holds, so the next layer reads them from memory anyway, and
/// streaming them out spares the read of each line that a normal store makes first (B0 at
/// 224², batch 16: the 77 MB expand output of the 112² block; streaming outputs of 8 MB and up
/// made inference slower: their readers lost the cache).
const STREAM_MIN: usize = 8 << 20;

/// Pixels per block of [`blocked`]: the block's input and output (c_in·len and c_out·len floats)
/// stay near 128 KB, so the epilogue finds them in L2; a multiple of 16 where it is less than a
/// sample's plane.
fn block_len(d: &Dims) -> usize {
    let len = (32 * 1024 / d.cin.max(d.cout).max(1)).max(64);
    if len >= d.plane { len } else { len / 16 * 16 }
}

/// Rows (pixels of the whole batch, in order) per task of [`blocked`]: [`block_len`], spanning
/// samples on small maps, and fewer where that leaves under two tasks per thread.
fn rows_per_task(d: &Dims) -> usize {
    block_len(d).min((d.batch * d.plane).div_ceil(2 * rayon::current_num_threads())).max(1)
}

/// A pointer that rayon tasks writing disjoint parts of one buffer may share.
struct SharedOut(*mut f32);
// SAFETY: the tasks sharing one write disjoint regions (rows in `blocked`, channel columns in
// `split_channels`).
unsafe impl Sync for SharedOut {}
impl SharedOut {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// `[c_in, c_out]` from the `[c_out, c_in]` weights: as the GEMM's left operand (`W`,
/// c_out × c_in) this is column-major, which gemm reads as it is; the row-major `W` it would
/// pack again in every task (a scalar gather that was 8 % of B0 inference at 224²).
fn input_major(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut wt = vec![0.0f32; cin * cout];
    for (o, row) in w.chunks_exact(cin).enumerate() {
        row.iter().enumerate().for_each(|(i, &v)| wt[i * cout + o] = v);
    }
    wt
}

/// A 1×1 layer's weights as [`rows_affine`] multiplies them, and the one place that picks how:
/// the hand-written register tile where it applies (see `tile.rs`), the `gemm` crate on
/// [`input_major`] weights otherwise.
pub(super) enum Weights {
    Tiles(Panels),
    InputMajor { wt: Vec<f32>, cout: usize },
}

impl Weights {
    /// From `[c_out, c_in]` weights.
    pub(super) fn new(w: &[f32], cout: usize, cin: usize) -> Self {
        if tile::applies() {
            Weights::Tiles(Panels::pack(w, cout, cin))
        } else {
            Weights::InputMajor { wt: input_major(w, cout, cin), cout }
        }
    }

    /// These weights with input channel `i` scaled by `gates[i]` (SE's, for one sample), in
    /// `buf`'s storage.
    fn gated(&self, gates: &[f32], buf: Vec<f32>) -> Self {
        match self {
            Weights::Tiles(p) => Weights::Tiles(p.gated(gates, buf)),
            Weights::InputMajor { wt, cout } => {
                let mut scaled = buf;
                scaled.resize(wt.len(), 0.0);
                for ((dst, src), &g) in scaled.chunks_exact_mut(*cout).zip(wt.chunks_exact(*cout)).zip(gates) {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v * g);
                }
                Weights::InputMajor { wt: scaled, cout: *cout }
            }
        }
    }

    /// The storage back, for the next [`Weights::gated`].
    fn into_buffer(self) -> Vec<f32> {
        match self {
            Weights::Tiles(p) => p.into_buffer(),
            Weights::InputMajor { wt, .. } => wt,
        }
    }
}

/// `dst = act(scale ⊙ (x · Wᵀ) + shift) + residual` for `len` channels-last pixel rows `x`
/// (`[len, c_in]`), `dst` and `residual` `[len, c_out]`, on the calling thread (one task's
/// block).
pub(super) fn rows_affine(
    w: &Weights,
    x: &[f32],
    dst: &mut [f32],
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    residual: Option<&[f32]>,
) {
    let wt = match w {
        Weights::Tiles(p) => return tile::rows(p, x, dst, (scale, shift), act, residual),
        Weights::InputMajor { wt, .. } => wt,
    };
    let cout = scale.len();
    let (cin, len) = (wt.len() / cout, dst.len() / cout);
    assert!(wt.len() == cin * cout && x.len() >= len * cin && dst.len() == len * cout);
    // SAFETY: `dst` is len × c_out; the views address c_out × c_in and c_in × len elements
    // inside `wt` and `x` (asserted above).
    unsafe {
        // `yᵀ = W · xᵀ` with y's pixel rows as the destination's columns: gemm's micro-kernel
        // runs along c_out, contiguous in y.
        gemm_strided(
            dst.as_mut_ptr(),
            (1, cout as isize),
            false,
            (cout, len, cin),
            transposed(wt, cin, cout),
            transposed(x, len, cin),
            1,
        )
    };
    activation::affine_act_rows(dst, scale, shift, act);
    if let Some(r) = residual {
        dst.iter_mut().zip(r).for_each(|(v, &r)| *v += r);
    }
}

/// Where [`blocked`] finds its input.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    /// Channels-last `[n·plane, c_in]` rows with optional `[n, c_in]` SE gates.
    Rows { x: &'a [f32], gates: Option<&'a [f32]> },
    /// Written block by block, never whole: `fill(n, p0, block)` writes sample n's input pixels
    /// `p0 .. p0 + len` as a `[c_in, len]` block (`block.len() = c_in·len`; the stem's im2col,
    /// which unfolded whole was 22 MB at 224² and batch 16).
    Unfolded(&'a (dyn Fn(usize, usize, &mut [f32]) + Sync)),
}

/// One task per block of pixel rows (within a sample on large maps, across samples on small
/// ones), each a single-threaded GEMM into its own rows of the output, finished while they are
/// in cache. SE's gates scale the weights' columns
/// when that is the smaller product, otherwise a copy of the input block's columns.
pub(crate) fn blocked(
    d: &Dims,
    input: Input,
    w: &[f32],
    (scale, shift): (&[f32], &[f32]),
    act: Act,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let (cin, cout, plane) = (d.cin, d.cout, d.plane);
    let total = d.batch * plane;
    let per_task = rows_per_task(d);
    // The stem's unfolded blocks are `[c_in, len]`, not pixel rows: the `gemm` crate reads them.
    let weights = match input {
        Input::Rows { .. } => Weights::new(w, cout, cin),
        Input::Unfolded(_) => Weights::InputMajor { wt: input_major(w, cout, cin), cout },
    };
    let mut y = Vec::<f32>::with_capacity(d.batch * plane * cout);
    let out = SharedOut(y.as_mut_ptr());
    let stream = y.capacity() >= STREAM_MIN;
    // A task's rows, split where they cross into the next sample (gates and the stem's unfolding
    // are per sample): `(n, p0, len)`, sample n's pixels p0 .. p0 + len.
    let segments = |t: usize| {
        let (mut r, end) = (t * per_task, ((t + 1) * per_task).min(total));
        std::iter::from_fn(move || {
            (r < end).then(|| {
                let (n, p0) = (r / plane, r % plane);
                let len = (end - r).min(plane - p0);
                r += len;
                (n, p0, len)
            })
        })
    };
    let tasks = total.div_ceil(per_task);
    (0..tasks).into_par_iter().flat_map_iter(segments).for_each_init(
        || (Vec::new(), Vec::new(), Vec::new()),
        |(wbuf, xbuf, scratch): &mut (Vec<f32>, Vec<f32>, Vec<f32>), (n, p0, len)| {
            let first = n * plane + p0;
            // The block is finished in cache: in `y` itself, or in a scratch buffer streamed
            // out after (see STREAM_MIN).
            // SAFETY: output rows first .. first + len are inside `y` and this task's alone.
            let rows = unsafe { out.get().add(first * cout) };
            let into = if stream {
                scratch.resize(len * cout, 0.0);
                scratch.as_mut_ptr()
            } else {
                rows
            };
            // SAFETY: `into` holds len × c_out writable floats nobody else touches now.
            let dst = unsafe { std::slice::from_raw_parts_mut(into, len * cout) };
            let res = residual.map(|r| &r[first * cout..][..len * cout]);
            match input {
                Input::Unfolded(fill) => {
                    xbuf.resize(cin * len, 0.0);
                    fill(n, p0, xbuf);
                    let Weights::InputMajor { wt, .. } = &weights else { unreachable!("chosen above") };
                    // SAFETY: `dst` is len × c_out; the views address c_out × c_in and
                    // c_in × len elements inside `wt` and `xbuf`.
                    unsafe {
                        let (lhs, rhs) = (transposed(wt, cin, cout), row_major(xbuf, cin, len));
                        gemm_strided(dst.as_mut_ptr(), (1, cout as isize), false, (cout, len, cin), lhs, rhs, 1);
                    }
                    activation::affine_act_rows(dst, scale, shift, act);
                    if let Some(r) = res {
                        dst.iter_mut().zip(r).for_each(|(v, &r)| *v += r);
                    }
                }
                Input::Rows { x, gates } => {
                    let xb = &x[first * cin..][..len * cin];
                    match gates.map(|g| &g[n * cin..][..cin]) {
                        None => rows_affine(&weights, xb, dst, (scale, shift), act, res),
                        // SE's gates scale the weights' rows when that is the smaller product,
                        // otherwise a copy of the input block's columns.
                        Some(g) if cout <= len => {
                            let gated = weights.gated(g, std::mem::take(wbuf));
                            rows_affine(&gated, xb, dst, (scale, shift), act, res);
                            *wbuf = gated.into_buffer();
                        }
                        Some(g) => {
                            xbuf.resize(len * cin, 0.0);
                            xbuf.chunks_exact_mut(cin)
                                .zip(xb.chunks_exact(cin))
                                .for_each(|(dst, row)| simd::mul(dst, row, g));
                            rows_affine(&weights, xbuf, dst, (scale, shift), act, res);
                        }
                    }
                }
            }
            if stream {
                // SAFETY: rows first .. first + len of `y`: inside it and this task's alone.
                unsafe { simd::stream_copy(rows, dst) };
                simd::store_fence();
            }
        },
    );
    // SAFETY: the segments covered every (sample, pixel), and each GEMM wrote all of its
    // rows × c_out (`accumulate = false` never reads the destination).
    unsafe { y.set_len(d.batch * plane * cout) };
    y
}

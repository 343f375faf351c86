//! A whole MBConv block in inference on channels-last data, and the one place that chooses how
//! its layers run: expand and depthwise fused per band of rows on large maps, one after the
//! other otherwise; SE's squeeze from the depthwise pass, its gates folded into the projection.
//!
//! Measured and not taken: running large maps sample by sample through the whole block (one
//! thread per sample, its maps in cache) instead of layer by layer over the batch. At 224² and
//! batch 16 it was no faster on the 112² and 56² blocks and up to 1.8× slower on the 28² and 14²
//! ones (each sample reads every weight again).

use super::depthwise::depthwise_affine;
use super::expand_depthwise::{Expand, expand_depthwise, expand_depthwise_applies};
use super::pointwise::pointwise_affine;
use crate::activation::Act;
use crate::depthwise::Geometry;
use crate::pointwise::Dims;

/// The depthwise conv: `[c, 1, k, k]` weights, stride, padding `[(top, bottom), (left, right)]`,
/// folded BatchNorm and activation.
pub struct Depthwise<'a> {
    pub w: &'a [f32],
    pub kernel: usize,
    pub stride: usize,
    pub pads: [(usize, usize); 2],
    pub bn: (&'a [f32], &'a [f32]),
    pub act: Act,
}

/// The 1×1 projection: `[c_out, c_exp]` weights and folded BatchNorm (no activation).
pub struct Project<'a> {
    pub w: &'a [f32],
    pub bn: (&'a [f32], &'a [f32]),
}

/// SE's gates (`[n, c]`) from the depthwise output's channel means (`[n, c]`), for any n.
pub type Gates<'a> = &'a (dyn Fn(&[f32]) -> Vec<f32> + Sync);

/// An MBConv block's layers as plain parts.
pub struct Block<'a> {
    pub expand: Option<Expand<'a>>,
    pub depthwise: Depthwise<'a>,
    pub se: Option<Gates<'a>>,
    pub project: Project<'a>,
    /// The input is added to the projection (stride 1, equal widths).
    pub residual: bool,
}

impl Block<'_> {
    /// The depthwise geometry for `batch` samples of `h × w` input.
    fn geometry(&self, batch: usize, cin: usize, h: usize, w: usize) -> Geometry {
        let d = &self.depthwise;
        let channels = self.expand.as_ref().map_or(cin, |e| e.w.len() / cin);
        Geometry::new([batch, channels, h, w], d.kernel, d.stride, d.pads)
    }
}

/// The block on channels-last `x` (`[n, h, w, c_in]`; `[n, c_in, h, w]` is its logical shape):
/// channels-last `[n, h', w', c_out]` out, and that output's logical shape `[n, c_out, h', w']`.
pub fn mbconv(x: &[f32], [n, cin, h, w]: [usize; 4], block: &Block) -> (Vec<f32>, [usize; 4]) {
    assert_eq!(x.len(), n * cin * h * w, "block input");
    let g = block.geometry(n, cin, h, w);
    let d = &block.depthwise;
    let mut means = block.se.is_some().then(|| vec![0.0f32; n * g.channels]);
    let y = match &block.expand {
        Some(e) if expand_depthwise_applies(&g) => expand_depthwise(&g, x, e, d.w, d.bn, d.act, means.as_deref_mut()),
        Some(e) => {
            let dims = Dims { batch: n, cin, cout: g.channels, plane: h * w };
            let expanded = pointwise_affine(&dims, x, e.w, e.bn, e.act, None, None);
            depthwise_affine(&g, &expanded, d.w, d.bn, d.act, means.as_deref_mut())
        }
        None => depthwise_affine(&g, x, d.w, d.bn, d.act, means.as_deref_mut()),
    };
    let gates = block.se.zip(means).map(|(se, m)| se(&m));
    let cout = block.project.bn.0.len();
    let dims = Dims { batch: n, cin: g.channels, cout, plane: g.out_height * g.out_width };
    let p = &block.project;
    let y = pointwise_affine(&dims, &y, p.w, p.bn, Act::Identity, gates.as_deref(), block.residual.then_some(x));
    (y, [n, cout, g.out_height, g.out_width])
}

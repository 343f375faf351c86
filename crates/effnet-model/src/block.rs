//! The MBConv block (inverted residual with depthwise conv and squeeze-excitation).

use crate::kernels;
use crate::layers::{ConvBnAct, DropPath, NormSpec, SqueezeExcite};
use burn::module::Module;
use burn::prelude::*;
use effnet_config::{Activation, BlockSpec, Padding};

/// 1×1 expand + BN + act (when the ratio ≠ 1), depthwise k×k + BN + act, SE, 1×1 project + BN
/// (no activation), and a drop-path residual when stride is 1 and in == out.
#[derive(Module, Debug)]
pub struct MbConv {
    pub expand: Option<ConvBnAct>,
    pub depthwise: ConvBnAct,
    pub se: Option<SqueezeExcite>,
    pub project: ConvBnAct,
    pub drop_path: DropPath,
    pub residual: bool,
}

impl MbConv {
    /// Builds the block described by `spec` (from [`effnet_config::Architecture::blocks`]).
    pub fn new(spec: &BlockSpec, act: Activation, padding: Padding, norm: NormSpec, device: &Device) -> Self {
        let mid = spec.mid_channels;
        Self {
            expand: spec
                .expand
                .then(|| ConvBnAct::new(spec.in_channels, mid, 1, 1, 1, padding, norm, Some(act), device)),
            depthwise: ConvBnAct::new(mid, mid, spec.kernel, spec.stride, mid, padding, norm, Some(act), device),
            se: spec.se_channels.map(|r| SqueezeExcite::new(mid, r, act, device)),
            project: ConvBnAct::new(mid, spec.out_channels, 1, 1, 1, padding, norm, None, device),
            drop_path: DropPath::new(spec.drop_connect_rate),
            residual: spec.residual,
        }
    }

    /// The generic path (autodiff, any backend and dtype); [`crate::EfficientNet`] decides when
    /// [`MbConv::forward_fused`] runs instead.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = match &self.expand {
            Some(e) => e.forward(x.clone()),
            None => x.clone(),
        };
        y = self.depthwise.forward(y);
        if let Some(se) = &self.se {
            y = se.forward(y);
        }
        y = self.project.forward(y);
        if self.residual { self.drop_path.add_to(y, x) } else { y }
    }

    /// Inference through the fused kernels (the caller checked [`kernels::fused_inference`]):
    /// the whole block in three passes over memory (see [`kernels::mbconv`]). Drop path is the
    /// identity in inference.
    pub fn forward_fused(&self, x: Tensor<4>) -> Tensor<4> {
        let block = kernels::FusedBlock {
            expand: self.expand.as_ref().map(ConvBnAct::fused),
            depthwise: self.depthwise.fused(),
            se: self.se.as_ref().map(SqueezeExcite::fused),
            project: self.project.fused(),
            residual: self.residual,
        };
        kernels::mbconv(x, &block)
    }
}

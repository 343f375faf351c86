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
            drop_path: DropPath::new(0.0),
            residual: spec.residual,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.fused_applies(&x) {
            return self.forward_fused(x);
        }
        let mut y = match &self.expand {
            Some(e) => e.forward(x.clone()),
            None => x.clone(),
        };
        y = self.depthwise.forward(y);
        if let Some(se) = &self.se {
            y = se.forward(y);
        }
        y = self.project.forward(y);
        if self.residual { self.drop_path.forward(y) + x } else { y }
    }

    /// Inference on Flex: the whole block through the fused kernels (see `kernels/fused.rs`).
    fn fused_applies(&self, x: &Tensor<4>) -> bool {
        let channels = self.depthwise.conv.weight.dims()[0];
        kernels::fused_inference(x)
            && kernels::is_depthwise(&self.depthwise.conv, channels)
            && kernels::is_pointwise(&self.project.conv)
            && self.expand.as_ref().is_none_or(|e| kernels::is_pointwise(&e.conv))
    }

    /// expand (fused 1×1) → depthwise with SE's squeeze in the same pass → SE's gates → project
    /// with the gates folded into its GEMM and the residual added in its epilogue. Drop path is
    /// the identity in inference.
    fn forward_fused(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.expand {
            Some(e) => e.forward_pointwise_fused(x.clone(), None, None),
            None => x.clone(),
        };
        let (y, means) = self.depthwise.forward_depthwise_fused(y, self.se.is_some());
        let gates = self.se.as_ref().zip(means).map(|(se, m)| se.gates(&m));
        self.project.forward_pointwise_fused(y, gates.as_deref(), self.residual.then_some(x))
    }
}

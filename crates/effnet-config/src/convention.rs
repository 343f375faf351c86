//! Padding and BatchNorm epsilon per weight source: what a checkpoint was trained with, in one
//! table for the config's defaults, the weight loader's defaults and the exporters' checks.

use crate::arch::Padding;
use crate::variant::Variant;

/// The padding and BatchNorm epsilon a family of checkpoints needs to give its logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convention {
    pub padding: Padding,
    pub bn_eps: f64,
}

/// TF-born weights (tensorflow/tpu, Keras, lukemelas' EfficientNet-PyTorch, timm `tf_*`):
/// TF 'SAME' padding, eps 1e-3. effnet's default.
pub const TF_BORN: Convention = Convention { padding: Padding::TfSame, bn_eps: 1e-3 };

/// PyTorch-born weights (timm `efficientnet_*`, torchvision B0–B4): `k/2` padding, eps 1e-5.
pub const TORCH_BORN: Convention = Convention { padding: Padding::Symmetric, bn_eps: 1e-5 };

impl Convention {
    /// torchvision's: its B5–B7 are TF ports it runs with symmetric padding and eps 1e-3
    /// (`_efficientnet_conf`'s `norm_layer` for b5–b7); B0–B4 and networks built from other
    /// widths and depths are PyTorch-born.
    pub fn torchvision(variant: Option<Variant>) -> Self {
        match variant {
            Some(Variant::B5 | Variant::B6 | Variant::B7) => Convention { padding: Padding::Symmetric, bn_eps: 1e-3 },
            _ => TORCH_BORN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_runs_its_tf_ports_at_eps_1e_3() {
        for v in [Variant::B0, Variant::B3, Variant::B4] {
            assert_eq!(Convention::torchvision(Some(v)), TORCH_BORN, "{v}");
        }
        for v in [Variant::B5, Variant::B6, Variant::B7] {
            let c = Convention::torchvision(Some(v));
            assert_eq!((c.padding, c.bn_eps), (Padding::Symmetric, 1e-3), "{v}");
        }
        assert_eq!(Convention::torchvision(None), TORCH_BORN);
    }
}

//! The released variants and their coefficients, exactly as tensorflow/tpu gives them.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Architecture family: decides activation, squeeze-excitation and whether stem/head are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// EfficientNet-B*: swish, SE 0.25, everything width- and depth-scaled.
    Standard,
    /// EfficientNet-Lite*: ReLU6, no SE, stem (32) and head (1280) fixed, first and last stage
    /// not depth-scaled (`fix_head_stem=True` in `lite/efficientnet_lite_builder.py`).
    Lite,
}

/// A released EfficientNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    B0,
    B1,
    B2,
    B3,
    B4,
    B5,
    B6,
    B7,
    B8,
    L2,
    Lite0,
    Lite1,
    Lite2,
    Lite3,
    Lite4,
}

/// One row of the coefficient table (`efficientnet_params` / `efficientnet_lite_params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VariantParams {
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
    pub dropout: f64,
}

impl Variant {
    /// Every released variant, in table order.
    pub const ALL: [Variant; 15] = [
        Variant::B0,
        Variant::B1,
        Variant::B2,
        Variant::B3,
        Variant::B4,
        Variant::B5,
        Variant::B6,
        Variant::B7,
        Variant::B8,
        Variant::L2,
        Variant::Lite0,
        Variant::Lite1,
        Variant::Lite2,
        Variant::Lite3,
        Variant::Lite4,
    ];

    /// The coefficients of tensorflow/tpu `efficientnet_builder.efficientnet_params` (B*, L2) and
    /// `lite/efficientnet_lite_builder.efficientnet_lite_params` (Lite*). Lite3/Lite4 use TF's
    /// 280/300 px; timm evaluates its ports at 300/380.
    pub fn params(self) -> VariantParams {
        let (width, depth, resolution, dropout) = match self {
            Variant::B0 => (1.0, 1.0, 224, 0.2),
            Variant::B1 => (1.0, 1.1, 240, 0.2),
            Variant::B2 => (1.1, 1.2, 260, 0.3),
            Variant::B3 => (1.2, 1.4, 300, 0.3),
            Variant::B4 => (1.4, 1.8, 380, 0.4),
            Variant::B5 => (1.6, 2.2, 456, 0.4),
            Variant::B6 => (1.8, 2.6, 528, 0.5),
            Variant::B7 => (2.0, 3.1, 600, 0.5),
            Variant::B8 => (2.2, 3.6, 672, 0.5),
            Variant::L2 => (4.3, 5.3, 800, 0.5),
            Variant::Lite0 => (1.0, 1.0, 224, 0.2),
            Variant::Lite1 => (1.0, 1.1, 240, 0.2),
            Variant::Lite2 => (1.1, 1.2, 260, 0.3),
            Variant::Lite3 => (1.2, 1.4, 280, 0.3),
            Variant::Lite4 => (1.4, 1.8, 300, 0.3),
        };
        VariantParams { width, depth, resolution, dropout }
    }

    /// The architecture family of this variant.
    pub fn family(self) -> Family {
        match self {
            Variant::Lite0 | Variant::Lite1 | Variant::Lite2 | Variant::Lite3 | Variant::Lite4 => Family::Lite,
            _ => Family::Standard,
        }
    }

    /// Lower-case name as used in configs and on the command line (`b0`, `lite3`, `l2`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::B0 => "b0",
            Variant::B1 => "b1",
            Variant::B2 => "b2",
            Variant::B3 => "b3",
            Variant::B4 => "b4",
            Variant::B5 => "b5",
            Variant::B6 => "b6",
            Variant::B7 => "b7",
            Variant::B8 => "b8",
            Variant::L2 => "l2",
            Variant::Lite0 => "lite0",
            Variant::Lite1 => "lite1",
            Variant::Lite2 => "lite2",
            Variant::Lite3 => "lite3",
            Variant::Lite4 => "lite4",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;

    /// Accepts `b0`, `B0`, `efficientnet-b0`, `efficientnet_b0`, `tf_efficientnet_b0`, `lite0`,
    /// `efficientnet-lite0` and the like.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase().replace('_', "-");
        let short = lower
            .strip_prefix("tf-")
            .unwrap_or(&lower)
            .strip_prefix("efficientnet-")
            .unwrap_or_else(|| lower.strip_prefix("tf-").unwrap_or(&lower));
        Variant::ALL.into_iter().find(|v| v.name() == short).ok_or_else(|| {
            let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
            format!("unknown variant `{s}`; expected one of {}", names.join(", "))
        })
    }
}

/// Trainable parameters of the reference implementations (torchvision, timm, lukemelas'
/// EfficientNet-PyTorch; 1000 classes; `../shared/docs/param-counts.md`): what
/// [`crate::Architecture::param_count`] and the model's modules are tested against.
pub const REFERENCE_PARAM_COUNTS: [(Variant, usize); 9] = [
    (Variant::B0, 5_288_548),
    (Variant::B1, 7_794_184),
    (Variant::B2, 9_109_994),
    (Variant::B3, 12_233_232),
    (Variant::B4, 19_341_616),
    (Variant::B5, 30_389_784),
    (Variant::B6, 43_040_704),
    (Variant::B7, 66_347_960),
    (Variant::Lite0, 4_652_008),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!("b3".parse::<Variant>().unwrap(), Variant::B3);
        assert_eq!("EfficientNet-B7".parse::<Variant>().unwrap(), Variant::B7);
        assert_eq!("tf_efficientnet_lite4".parse::<Variant>().unwrap(), Variant::Lite4);
        assert_eq!("efficientnet_b0".parse::<Variant>().unwrap(), Variant::B0);
        assert_eq!("L2".parse::<Variant>().unwrap(), Variant::L2);
        let err = "b9".parse::<Variant>().unwrap_err();
        assert!(err.contains("unknown variant `b9`"), "{err}");
    }

    #[test]
    fn names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        }
    }
}

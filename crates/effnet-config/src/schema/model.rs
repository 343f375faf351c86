//! `[model]`: the variant, a free φ and architecture overrides, resolved into the stage table.

use super::check::{in_range_f64, in_range_usize, positive, probability};
use crate::arch::{Activation, Architecture, Padding, ScaleSpec};
use crate::blocks::{BlockArgs, decode_blocks};
use crate::error::Invalid;
use crate::scaling::{CompoundCoefficients, DEFAULT_DEPTH_DIVISOR};
use crate::variant::{Family, Variant};
use serde::{Deserialize, Serialize};

/// `[model]`: a variant, optionally a free φ, and overrides of any architecture field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `b0`…`b8`, `l2`, `lite0`…`lite4`, or `custom` (the B0 base, to scale with `phi` or
    /// explicit `width`/`depth`/`resolution`).
    pub variant: String,
    /// Free compound coefficient: width `β^φ`, depth `α^φ`, resolution `base_resolution·γ^φ`.
    /// Only with `variant = "custom"`, `"b0"` or `"lite0"` (the φ = 0 bases).
    pub phi: Option<f64>,
    /// Depth base α (default: the paper's 1.2, [`CompoundCoefficients::default`]).
    pub alpha: Option<f64>,
    /// Width base β (default: the paper's 1.1).
    pub beta: Option<f64>,
    /// Resolution base γ (default: the paper's 1.15).
    pub gamma: Option<f64>,
    /// Resolution at φ = 0 (default: the base variant's, 224).
    pub base_resolution: Option<usize>,
    /// Width multiplier; overrides the variant's and φ's.
    pub width: Option<f64>,
    /// Depth multiplier; overrides the variant's and φ's.
    pub depth: Option<f64>,
    /// Input resolution; overrides the variant's and φ's.
    pub resolution: Option<usize>,
    /// Dropout before the classifier; overrides the variant's.
    pub dropout: Option<f64>,
    /// Stochastic-depth ("drop connect") rate of the last block; block i of N gets rate·i/N.
    pub drop_connect_rate: f64,
    pub num_classes: usize,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// `tf-same` (TF-born weights) or `symmetric` (PyTorch-born weights).
    pub padding: Padding,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
    /// BatchNorm momentum in **TensorFlow's** convention (0.99 = keep 99 % of the running value).
    /// effnet-train converts it to burn's (`1 − m`).
    pub bn_momentum: f64,
    /// `swish` or `relu6`; defaults to the family's.
    pub activation: Option<Activation>,
    /// Squeeze-excitation on/off; defaults to the family's (on for B*, off for Lite*).
    pub se: Option<bool>,
    /// Block strings replacing the B0 stage list.
    pub blocks: Option<Vec<String>>,
    /// Channel rounding divisor (8).
    pub depth_divisor: usize,
    /// Minimum channel count after rounding (default: the divisor).
    pub min_depth: Option<usize>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            variant: "b0".into(),
            phi: None,
            alpha: None,
            beta: None,
            gamma: None,
            base_resolution: None,
            width: None,
            depth: None,
            resolution: None,
            dropout: None,
            drop_connect_rate: 0.2,
            num_classes: 1000,
            in_channels: 3,
            padding: crate::TF_BORN.padding,
            bn_eps: crate::TF_BORN.bn_eps,
            bn_momentum: 0.99,
            activation: None,
            se: None,
            blocks: None,
            depth_divisor: DEFAULT_DEPTH_DIVISOR,
            min_depth: None,
        }
    }
}

/// What [`ModelConfig::variant`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantChoice {
    Released(Variant),
    Custom,
}

impl ModelConfig {
    /// A config for a released variant with every other field at its default.
    pub fn for_variant(v: Variant) -> Self {
        Self { variant: v.name().into(), ..Self::default() }
    }

    /// The variant named by `variant`.
    pub fn variant_choice(&self) -> Result<VariantChoice, Invalid> {
        if self.variant.eq_ignore_ascii_case("custom") {
            return Ok(VariantChoice::Custom);
        }
        self.variant
            .parse::<Variant>()
            .map(VariantChoice::Released)
            .map_err(|e| Invalid::new("model.variant", format!("{:?}", self.variant), format!("{e}, or custom")))
    }

    /// Checks the section: it must resolve into a stage table.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.architecture().map(|_| ())
    }

    /// Validates the section and resolves it into the stage table.
    pub fn architecture(&self) -> Result<Architecture, Invalid> {
        let choice = self.variant_choice()?;
        let (base, family) = match choice {
            VariantChoice::Released(v) => (v.params(), v.family()),
            VariantChoice::Custom => (Variant::B0.params(), Family::Standard),
        };
        let (mut width, mut depth, mut resolution, dropout) = (base.width, base.depth, base.resolution, base.dropout);

        let paper = CompoundCoefficients::default();
        let coeffs = CompoundCoefficients {
            alpha: positive("model.alpha", self.alpha.unwrap_or(paper.alpha))?,
            beta: positive("model.beta", self.beta.unwrap_or(paper.beta))?,
            gamma: positive("model.gamma", self.gamma.unwrap_or(paper.gamma))?,
        };
        let any_coeff =
            self.alpha.is_some() || self.beta.is_some() || self.gamma.is_some() || self.base_resolution.is_some();
        match self.phi {
            Some(phi) => {
                if !phi.is_finite() || !(0.0..=20.0).contains(&phi) {
                    return Err(Invalid::new("model.phi", phi, "must be between 0 and 20"));
                }
                let is_base =
                    matches!(choice, VariantChoice::Custom | VariantChoice::Released(Variant::B0 | Variant::Lite0));
                if !is_base {
                    return Err(Invalid::new(
                        "model.phi",
                        phi,
                        format!(
                            "phi scales the φ = 0 base network; use variant = \"custom\" (or b0/lite0), not {:?}",
                            self.variant
                        ),
                    ));
                }
                // φ only scales a φ = 0 base (B0, Lite0, custom = B0): its table resolution, 224.
                let base_res = self.base_resolution.unwrap_or(base.resolution);
                in_range_usize("model.base_resolution", base_res, 8, 4096)?;
                let s = coeffs.scale(phi, base_res);
                (width, depth, resolution) = (s.width, s.depth, s.resolution);
            }
            None if any_coeff => {
                return Err(Invalid::new(
                    "model.phi",
                    "(unset)",
                    "alpha/beta/gamma/base_resolution only apply together with phi",
                ));
            }
            None => {}
        }
        if let Some(w) = self.width {
            width = w;
        }
        if let Some(d) = self.depth {
            depth = d;
        }
        if let Some(r) = self.resolution {
            resolution = r;
        }
        in_range_f64("model.width", width, 0.01, 20.0)?;
        in_range_f64("model.depth", depth, 0.01, 20.0)?;
        in_range_usize("model.resolution", resolution, 8, 4096)?;
        let dropout = self.dropout.unwrap_or(dropout);
        probability("model.dropout", dropout, false)?;
        probability("model.drop_connect_rate", self.drop_connect_rate, false)?;
        in_range_usize("model.num_classes", self.num_classes, 1, 1_000_000)?;
        in_range_usize("model.in_channels", self.in_channels, 1, 64)?;
        if !(self.bn_eps > 0.0 && self.bn_eps < 1.0) {
            return Err(Invalid::new("model.bn_eps", self.bn_eps, "must be in (0, 1)"));
        }
        probability("model.bn_momentum", self.bn_momentum, true)?;
        in_range_usize("model.depth_divisor", self.depth_divisor, 1, 1024)?;
        if let Some(m) = self.min_depth {
            in_range_usize("model.min_depth", m, 1, 100_000)?;
        }
        let blocks: Vec<BlockArgs> = match &self.blocks {
            Some(strings) if strings.is_empty() => {
                return Err(Invalid::new("model.blocks", "[]", "needs at least one block string"));
            }
            Some(strings) => {
                decode_blocks(strings).map_err(|e| Invalid::new("model.blocks", format!("{:?}", e.string), e.reason))?
            }
            None => crate::blocks::default_blocks(),
        };

        let name = match choice {
            VariantChoice::Released(v)
                if self.phi.is_none() && self.width.is_none() && self.depth.is_none() && self.blocks.is_none() =>
            {
                v.name().to_string()
            }
            VariantChoice::Released(v) => format!("{}-custom", v.name()),
            VariantChoice::Custom => match self.phi {
                Some(phi) => format!("custom-phi{phi}"),
                None => "custom".into(),
            },
        };
        let mut spec = ScaleSpec::new(&name, family, width, depth, resolution, dropout);
        spec.num_classes = self.num_classes;
        spec.in_channels = self.in_channels;
        spec.blocks = blocks;
        if let Some(a) = self.activation {
            spec.activation = a;
        }
        if let Some(se) = self.se {
            spec.se = se;
        }
        spec.padding = self.padding;
        spec.bn_eps = self.bn_eps;
        spec.bn_momentum = crate::tf_bn_momentum_to_burn(self.bn_momentum);
        spec.drop_connect_rate = self.drop_connect_rate;
        spec.depth_divisor = self.depth_divisor;
        spec.min_depth = self.min_depth;
        Ok(spec.build())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_parse as parse;
    use crate::arch::Padding;

    #[test]
    fn variant_with_overrides() {
        let c = parse(
            "[model]\nvariant = \"b3\"\nnum_classes = 100\ndropout = 0.1\npadding = \"symmetric\"\nbn_eps = 1e-5\n",
        )
        .unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!((a.name.as_str(), a.resolution, a.num_classes, a.dropout), ("b3", 300, 100, 0.1));
        assert_eq!((a.padding, a.bn_eps), (Padding::Symmetric, 1e-5));
        assert_eq!(a.stage_channels(), [24, 32, 48, 96, 136, 232, 384]);
    }

    #[test]
    fn free_phi_and_custom_sizes() {
        let c = parse("[model]\nvariant = \"custom\"\nphi = 1.0\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!((a.width, a.depth, a.resolution), (1.1, 1.2, 258));
        assert_eq!(a.name, "custom-phi1");
        let c = parse("[model]\nvariant = \"custom\"\nphi = 2.0\nalpha = 1.3\nbeta = 1.0\ngamma = 1.0\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert!((a.depth - 1.69).abs() < 1e-12 && a.width == 1.0 && a.resolution == 224);
        let c = parse("[model]\nvariant = \"custom\"\nwidth = 0.5\ndepth = 0.5\nresolution = 96\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!((a.stem_channels, a.resolution), (16, 96));
        assert_eq!(a.stage_repeats(), [1, 1, 1, 2, 2, 2, 1]);
    }

    #[test]
    fn custom_blocks() {
        let c = parse("[model]\nvariant = \"custom\"\nblocks = [\"r1_k3_s22_e1_i32_o16_se0.25\", \"r2_k5_s22_e4_i16_o32_noskip\"]\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!(a.stage_channels(), [16, 32]);
        assert!(a.blocks().iter().all(|b| !b.residual));
        let e = parse("[model]\nblocks = [\"r1_k3_s11_e1_i32\"]\n").unwrap_err().to_string();
        assert_eq!(e, "cfg.toml: key `model.blocks`: invalid value \"r1_k3_s11_e1_i32\": missing `o`");
    }
}

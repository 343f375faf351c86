//! `train.head_init`: how a freshly created classifier is initialised.

use serde::{Deserialize, Serialize};

/// A concrete classifier initialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassifierInit {
    /// tensorflow/tpu's dense init: weight `U(±1/√classes)`, zero bias (training from scratch).
    Tf,
    /// PyTorch `nn.Linear`'s default: weight and bias `U(±1/√in_features)`. Its logits start
    /// near zero, which suits a new head on a pretrained backbone.
    Torch,
    /// Zero weight and bias: every class starts at the same logit.
    Zeros,
}

/// The `train.head_init` key: a concrete init, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadInit {
    /// `tf` when training from scratch, `torch` for a fresh head over `train.init_weights`
    /// (a checkpoint with another class count): on a real fine-tune torch's init scores
    /// 3–4 points above tf's (issue 19).
    #[default]
    Auto,
    Tf,
    Torch,
    Zeros,
}

impl HeadInit {
    /// The init a fresh classifier gets; `over_pretrained`: the backbone comes from
    /// `train.init_weights` and the classifier does not.
    pub fn resolve(self, over_pretrained: bool) -> ClassifierInit {
        match self {
            HeadInit::Auto if over_pretrained => ClassifierInit::Torch,
            HeadInit::Auto | HeadInit::Tf => ClassifierInit::Tf,
            HeadInit::Torch => ClassifierInit::Torch,
            HeadInit::Zeros => ClassifierInit::Zeros,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_tf_from_scratch_and_torch_over_pretrained_weights() {
        assert_eq!(HeadInit::Auto.resolve(false), ClassifierInit::Tf);
        assert_eq!(HeadInit::Auto.resolve(true), ClassifierInit::Torch);
    }

    fn parse(text: &str) -> Result<crate::EffnetConfig, String> {
        crate::EffnetConfig::from_toml_str(text, std::path::Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn head_init_and_backbone_lr_scale_parse_with_their_defaults() {
        let d = parse("").unwrap();
        assert_eq!((d.train.head_init, d.optim.backbone_lr_scale), (HeadInit::Auto, 1.0));
        let c = parse("[train]\nhead_init = \"zeros\"\n[optim]\nbackbone_lr_scale = 0.1\n").unwrap();
        assert_eq!((c.train.head_init, c.optim.backbone_lr_scale), (HeadInit::Zeros, 0.1));
        assert_eq!(parse("[train]\nhead_init = \"torch\"\n").unwrap().train.head_init, HeadInit::Torch);
        assert_eq!(parse("[optim]\nbackbone_lr_scale = 0\n").unwrap().optim.backbone_lr_scale, 0.0);
    }

    #[test]
    fn bad_head_init_or_backbone_lr_scale_is_refused_naming_the_key() {
        let e = parse("[train]\nhead_init = \"kaiming\"\n").unwrap_err();
        assert!(e.contains("train.head_init") && e.contains("kaiming"), "{e}");
        let e = parse("[optim]\nbackbone_lr_scale = -0.5\n").unwrap_err();
        assert!(e.contains("optim.backbone_lr_scale") && e.contains("-0.5"), "{e}");
        let e = parse("[optim]\nbackbone_lr_scale = nan\n").unwrap_err();
        assert!(e.contains("optim.backbone_lr_scale"), "{e}");
    }

    #[test]
    fn an_explicit_choice_holds_either_way() {
        for over in [false, true] {
            assert_eq!(HeadInit::Tf.resolve(over), ClassifierInit::Tf);
            assert_eq!(HeadInit::Torch.resolve(over), ClassifierInit::Torch);
            assert_eq!(HeadInit::Zeros.resolve(over), ClassifierInit::Zeros);
        }
    }
}

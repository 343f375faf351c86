//! The resolved architecture: a plain stage table that the model is a loop over.

use crate::blocks::BlockArgs;
use crate::regularization::{drop_connect_rates, tf_bn_momentum_to_burn};
use crate::scaling::{DEFAULT_DEPTH_DIVISOR, round_filters, round_repeats};
use crate::variant::Family;
use serde::{Deserialize, Serialize};

/// Stem width before scaling (tensorflow/tpu hard-codes it).
pub const BASE_STEM_CHANNELS: usize = 32;
/// Head (last 1×1 conv) width before scaling.
pub const BASE_HEAD_CHANNELS: usize = 1280;

/// Activation after the stem, the expand and depthwise convs, inside SE and after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `x * sigmoid(x)` (B*).
    Swish,
    /// `min(max(x, 0), 6)` (Lite*).
    Relu6,
}

/// How convolutions pad their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    /// TensorFlow 'SAME': total pad `max((⌈i/s⌉−1)·s + k − i, 0)`, the odd pixel at the
    /// bottom/right. Needed by TF-born weights (lukemelas, timm `tf_*`, Keras).
    TfSame,
    /// PyTorch `k/2` on every side (timm `efficientnet_*`, torchvision).
    Symmetric,
}

impl Padding {
    /// Pads (before, after) on one axis for input size `size`, kernel `k` and stride `s`.
    ///
    /// ```
    /// use effnet_config::Padding;
    /// assert_eq!(Padding::TfSame.pads(224, 3, 2), (0, 1));
    /// assert_eq!(Padding::TfSame.pads(225, 3, 2), (1, 1));
    /// assert_eq!(Padding::Symmetric.pads(224, 3, 2), (1, 1));
    /// ```
    pub fn pads(self, size: usize, k: usize, s: usize) -> (usize, usize) {
        match self {
            Padding::TfSame => {
                let out = size.div_ceil(s);
                let total = ((out - 1) * s + k).saturating_sub(size);
                (total / 2, total - total / 2)
            }
            Padding::Symmetric => (k / 2, k / 2),
        }
    }

    /// Output size on one axis.
    pub fn output_size(self, size: usize, k: usize, s: usize) -> usize {
        let (a, b) = self.pads(size, k, s);
        (size + a + b - k) / s + 1
    }
}

/// One stage after scaling: `repeats` blocks, the first with `stride` and `in → out` channels,
/// the rest `out → out` at stride 1 (torchvision's `_MBConvConfig`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub repeats: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand_ratio: usize,
    pub se_ratio: Option<f64>,
    pub id_skip: bool,
}

/// One MBConv block, with its position among all blocks (for the drop-connect schedule).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockSpec {
    /// Index of the stage this block belongs to.
    pub stage: usize,
    /// Index among all blocks of the network, 0-based.
    pub index: usize,
    pub in_channels: usize,
    /// Channels after the expand conv (`in × expand_ratio`).
    pub mid_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Whether there is a 1×1 expand conv (ratio ≠ 1).
    pub expand: bool,
    /// SE bottleneck width `max(1, ⌊in × se_ratio⌋)`, from the block's *input* channels.
    pub se_channels: Option<usize>,
    /// Residual connection: `id_skip`, stride 1 and `in == out`. Only these blocks drop-connect.
    pub residual: bool,
    /// Stochastic-depth rate at full strength: `drop_connect_rate · index / num_blocks`
    /// (tensorflow/tpu, timm, Keras); only a `residual` block applies it.
    pub drop_connect_rate: f64,
}

/// A fully resolved EfficientNet: every number the model needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Architecture {
    /// Display name (`b0`, `lite3`, `custom`).
    pub name: String,
    pub width: f64,
    pub depth: f64,
    /// Native input resolution.
    pub resolution: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
    pub num_classes: usize,
    pub in_channels: usize,
    pub stem_channels: usize,
    pub head_channels: usize,
    pub stages: Vec<StageSpec>,
    pub activation: Activation,
    pub padding: Padding,
    /// BatchNorm epsilon (1e-3 for TF-born weights, 1e-5 for PyTorch-born).
    pub bn_eps: f64,
    /// BatchNorm momentum in burn's and PyTorch's convention (`running = (1−m)·running +
    /// m·batch`): TOML's TensorFlow value converted once, here (TF's 0.99 is 0.01).
    pub bn_momentum: f64,
    /// The last block's drop-connect rate; [`Architecture::blocks`] gives each block its own.
    pub drop_connect_rate: f64,
    /// B* or Lite*: decides, among others, the input normalisation of its released weights.
    pub family: Family,
}

/// Everything needed to scale a block list into an [`Architecture`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSpec {
    pub name: String,
    pub family: Family,
    pub width: f64,
    pub depth: f64,
    pub resolution: usize,
    pub dropout: f64,
    pub num_classes: usize,
    pub in_channels: usize,
    pub blocks: Vec<BlockArgs>,
    pub activation: Activation,
    pub se: bool,
    pub padding: Padding,
    pub bn_eps: f64,
    /// burn convention (see [`Architecture::bn_momentum`]).
    pub bn_momentum: f64,
    pub drop_connect_rate: f64,
    pub depth_divisor: usize,
    pub min_depth: Option<usize>,
}

impl ScaleSpec {
    /// Defaults for a family: B* swish/SE/TF-SAME/1e-3, Lite* ReLU6/no SE.
    pub fn new(name: &str, family: Family, width: f64, depth: f64, resolution: usize, dropout: f64) -> Self {
        Self {
            name: name.to_string(),
            family,
            width,
            depth,
            resolution,
            dropout,
            num_classes: 1000,
            in_channels: 3,
            blocks: crate::blocks::default_blocks(),
            activation: match family {
                Family::Standard => Activation::Swish,
                Family::Lite => Activation::Relu6,
            },
            se: family == Family::Standard,
            padding: crate::TF_BORN.padding,
            bn_eps: crate::TF_BORN.bn_eps,
            // TF's 0.99; no stochastic depth unless a config asks (inference never drops).
            bn_momentum: tf_bn_momentum_to_burn(0.99),
            drop_connect_rate: 0.0,
            depth_divisor: DEFAULT_DEPTH_DIVISOR,
            min_depth: None,
        }
    }

    /// Applies width/depth scaling to the block list, as tensorflow/tpu `Model._build` does.
    /// Lite fixes the stem and head widths and does not depth-scale the first and last stages.
    pub fn build(&self) -> Architecture {
        let fix_head_stem = self.family == Family::Lite;
        let filters = |f: usize| round_filters(f, self.width, self.depth_divisor, self.min_depth);
        let stem_channels = if fix_head_stem { BASE_STEM_CHANNELS } else { filters(BASE_STEM_CHANNELS) };
        let head_channels = if fix_head_stem { BASE_HEAD_CHANNELS } else { filters(BASE_HEAD_CHANNELS) };
        let last = self.blocks.len().saturating_sub(1);
        let mut in_channels = stem_channels;
        let stages = self
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let repeats = if fix_head_stem && (i == 0 || i == last) {
                    b.repeats
                } else {
                    round_repeats(b.repeats, self.depth)
                };
                // Channels flow from the previous stage (as in timm); with a scaled stem this
                // equals TF's round_filters(i), and with Lite's fixed stem it is what TF runs.
                let stage = StageSpec {
                    in_channels,
                    out_channels: filters(b.output_filters),
                    repeats,
                    kernel: b.kernel,
                    stride: b.stride,
                    expand_ratio: b.expand_ratio,
                    se_ratio: if self.se { b.se_ratio } else { None },
                    id_skip: b.id_skip,
                };
                in_channels = stage.out_channels;
                stage
            })
            .collect();
        Architecture {
            name: self.name.clone(),
            width: self.width,
            depth: self.depth,
            resolution: self.resolution,
            dropout: self.dropout,
            num_classes: self.num_classes,
            in_channels: self.in_channels,
            stem_channels,
            head_channels,
            stages,
            activation: self.activation,
            padding: self.padding,
            bn_eps: self.bn_eps,
            bn_momentum: self.bn_momentum,
            drop_connect_rate: self.drop_connect_rate,
            family: self.family,
        }
    }
}

impl Architecture {
    /// The official architecture of a released variant (1000 classes, TF-SAME, eps 1e-3).
    pub fn variant(v: crate::Variant) -> Self {
        let p = v.params();
        ScaleSpec::new(v.name(), v.family(), p.width, p.depth, p.resolution, p.dropout).build()
    }

    /// Every block in order, expanded from the stage table.
    pub fn blocks(&self) -> Vec<BlockSpec> {
        let rates = drop_connect_rates(self.drop_connect_rate, self.num_blocks(), 1.0);
        let mut out = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            for r in 0..stage.repeats {
                let (in_channels, stride) =
                    if r == 0 { (stage.in_channels, stage.stride) } else { (stage.out_channels, 1) };
                out.push(BlockSpec {
                    stage: s,
                    index: out.len(),
                    in_channels,
                    mid_channels: in_channels * stage.expand_ratio,
                    out_channels: stage.out_channels,
                    kernel: stage.kernel,
                    stride,
                    expand: stage.expand_ratio != 1,
                    se_channels: stage.se_ratio.map(|r| ((in_channels as f64 * r) as usize).max(1)),
                    residual: stage.id_skip && stride == 1 && in_channels == stage.out_channels,
                    drop_connect_rate: rates[out.len()],
                });
            }
        }
        out
    }

    /// Per image at `resolution`, the floats one forward pass produces: `(sum, largest)`, the
    /// outputs of every convolution and the classifier (what training keeps for the backward
    /// pass) and the largest single one. A lower bound (BatchNorm and activation outputs, SE and
    /// scratch buffers are left out), so that a set-up refused by it surely cannot fit.
    pub fn activation_floats(&self, resolution: usize) -> (u64, u64) {
        let (mut sum, mut largest) = (0u64, 0u64);
        let mut add = |n: u64| {
            sum = sum.saturating_add(n);
            largest = largest.max(n);
        };
        let mut side = (resolution as u64).div_ceil(2);
        let area = |side: u64| side.saturating_mul(side);
        add(area(side).saturating_mul(self.stem_channels as u64));
        for b in self.blocks() {
            if b.expand {
                add(area(side).saturating_mul(b.mid_channels as u64));
            }
            side = side.div_ceil(b.stride.max(1) as u64);
            add(area(side).saturating_mul(b.mid_channels as u64));
            add(area(side).saturating_mul(b.out_channels as u64));
        }
        add(area(side).saturating_mul(self.head_channels as u64));
        add(self.num_classes as u64);
        (sum, largest)
    }

    /// Total number of MBConv blocks.
    pub fn num_blocks(&self) -> usize {
        self.stages.iter().map(|s| s.repeats).sum()
    }

    /// Stage output channels.
    pub fn stage_channels(&self) -> Vec<usize> {
        self.stages.iter().map(|s| s.out_channels).collect()
    }

    /// Stage repeats.
    pub fn stage_repeats(&self) -> Vec<usize> {
        self.stages.iter().map(|s| s.repeats).collect()
    }

    /// Trainable parameters (conv and linear weights and biases, BN γ and β; BN running
    /// statistics are buffers and not counted, as in PyTorch's `numel` of `parameters()`).
    pub fn param_count(&self) -> usize {
        let bn = |c: usize| 2 * c;
        let mut n = self.in_channels * self.stem_channels * 9 + bn(self.stem_channels);
        for b in self.blocks() {
            if b.expand {
                n += b.in_channels * b.mid_channels + bn(b.mid_channels);
            }
            n += b.mid_channels * b.kernel * b.kernel + bn(b.mid_channels);
            if let Some(se) = b.se_channels {
                n += b.mid_channels * se + se + se * b.mid_channels + b.mid_channels;
            }
            n += b.mid_channels * b.out_channels + bn(b.out_channels);
        }
        let last = self.stages.last().map_or(self.stem_channels, |s| s.out_channels);
        n += last * self.head_channels + bn(self.head_channels);
        n + self.head_channels * self.num_classes + self.num_classes
    }

    /// Multiply-accumulates of one forward pass at `height × width` (convolutions, SE and the
    /// classifier; normalisation and activations are not counted, as in the paper's FLOPs).
    pub fn macs(&self, height: usize, width: usize) -> u64 {
        let p = self.padding;
        let conv = |hw: (usize, usize), cin: usize, cout: usize, k: usize, s: usize, groups: usize| {
            let oh = p.output_size(hw.0, k, s);
            let ow = p.output_size(hw.1, k, s);
            ((oh * ow * cout * (cin / groups) * k * k) as u64, (oh, ow))
        };
        let (mut total, mut hw) = conv((height, width), self.in_channels, self.stem_channels, 3, 2, 1);
        for b in self.blocks() {
            if b.expand {
                total += conv(hw, b.in_channels, b.mid_channels, 1, 1, 1).0;
            }
            let (m, next) = conv(hw, b.mid_channels, b.mid_channels, b.kernel, b.stride, b.mid_channels);
            total += m;
            hw = next;
            if let Some(se) = b.se_channels {
                total += 2 * (b.mid_channels * se) as u64;
            }
            total += conv(hw, b.mid_channels, b.out_channels, 1, 1, 1).0;
        }
        let last = self.stages.last().map_or(self.stem_channels, |s| s.out_channels);
        total += conv(hw, last, self.head_channels, 1, 1, 1).0;
        total + (self.head_channels * self.num_classes) as u64
    }

    /// Indices (into [`Architecture::blocks`]) of the blocks whose outputs are the
    /// `reduction_1..5` end-points of tensorflow/tpu: the last block before each stride-2 block,
    /// and the last block of the network. Outputs are at strides 2, 4, 8, 16 and 32.
    pub fn reduction_endpoints(&self) -> Vec<usize> {
        let blocks = self.blocks();
        let mut out: Vec<usize> = blocks.iter().filter(|b| b.stride == 2 && b.index > 0).map(|b| b.index - 1).collect();
        out.push(blocks.len() - 1);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Variant;

    #[test]
    fn tf_same_pads_hand_worked() {
        let p = Padding::TfSame;
        // 224, k3, s2: out 112, total (111*2 + 3) - 224 = 1 -> (0, 1).
        assert_eq!(p.pads(224, 3, 2), (0, 1));
        // 225, k3, s2: out 113, total 224 + 3 - 225 = 2 -> (1, 1).
        assert_eq!(p.pads(225, 3, 2), (1, 1));
        // 197, k5, s2: out 99, total 196 + 5 - 197 = 4 -> (2, 2).
        assert_eq!(p.pads(197, 5, 2), (2, 2));
        // 112, k5, s2: out 56, total 110 + 5 - 112 = 3 -> (1, 2).
        assert_eq!(p.pads(112, 5, 2), (1, 2));
        // stride 1 odd kernels are symmetric.
        assert_eq!(p.pads(57, 5, 1), (2, 2));
        assert_eq!(p.pads(7, 1, 1), (0, 0));
        // 1 pixel, k3 s2: out 1, total 0 + 3 - 1 = 2 -> (1, 1).
        assert_eq!(p.pads(1, 3, 2), (1, 1));
        assert_eq!(p.output_size(225, 3, 2), 113);
        assert_eq!(Padding::Symmetric.output_size(225, 3, 2), 113);
        assert_eq!(Padding::Symmetric.output_size(224, 5, 2), 112);
    }

    #[test]
    fn b0_and_b7_match_tensorflow() {
        let b0 = Architecture::variant(Variant::B0);
        assert_eq!((b0.stem_channels, b0.head_channels), (32, 1280));
        assert_eq!(b0.stage_channels(), [16, 24, 40, 80, 112, 192, 320]);
        assert_eq!(b0.stage_repeats(), [1, 2, 2, 3, 3, 4, 1]);
        let b7 = Architecture::variant(Variant::B7);
        assert_eq!((b7.stem_channels, b7.head_channels), (64, 2560));
        assert_eq!(b7.stage_channels(), [32, 48, 80, 160, 224, 384, 640]);
        assert_eq!(b7.stage_repeats(), [4, 7, 7, 10, 10, 13, 4]);
    }

    #[test]
    fn b1_to_b6_match_tensorflow() {
        // (stem, head, channels, repeats) recomputed from tensorflow/tpu efficientnet_builder.
        type Row = (Variant, usize, usize, [usize; 7], [usize; 7]);
        let table: [Row; 5] = [
            (Variant::B1, 32, 1280, [16, 24, 40, 80, 112, 192, 320], [2, 3, 3, 4, 4, 5, 2]),
            (Variant::B2, 32, 1408, [16, 24, 48, 88, 120, 208, 352], [2, 3, 3, 4, 4, 5, 2]),
            (Variant::B3, 40, 1536, [24, 32, 48, 96, 136, 232, 384], [2, 3, 3, 5, 5, 6, 2]),
            (Variant::B4, 48, 1792, [24, 32, 56, 112, 160, 272, 448], [2, 4, 4, 6, 6, 8, 2]),
            (Variant::B5, 48, 2048, [24, 40, 64, 128, 176, 304, 512], [3, 5, 5, 7, 7, 9, 3]),
        ];
        for (v, stem, head, ch, rep) in table {
            let a = Architecture::variant(v);
            assert_eq!((a.stem_channels, a.head_channels), (stem, head), "{v}");
            assert_eq!(a.stage_channels(), ch, "{v}");
            assert_eq!(a.stage_repeats(), rep, "{v}");
        }
        let b6 = Architecture::variant(Variant::B6);
        assert_eq!((b6.stem_channels, b6.head_channels), (56, 2304));
        assert_eq!(b6.stage_channels(), [32, 40, 72, 144, 200, 344, 576]);
        assert_eq!(b6.stage_repeats(), [3, 6, 6, 8, 8, 11, 3]);
        let b8 = Architecture::variant(Variant::B8);
        assert_eq!((b8.stem_channels, b8.head_channels, b8.num_blocks()), (72, 2816, 61));
        let l2 = Architecture::variant(Variant::L2);
        assert_eq!((l2.stem_channels, l2.head_channels, l2.num_blocks()), (136, 5504, 88));
    }

    #[test]
    fn param_counts_match_the_references() {
        for (v, n) in crate::REFERENCE_PARAM_COUNTS {
            assert_eq!(Architecture::variant(v).param_count(), n, "{v}");
        }
    }

    #[test]
    fn lite_fixes_stem_head_and_end_stages() {
        let l4 = Architecture::variant(Variant::Lite4);
        assert_eq!((l4.stem_channels, l4.head_channels), (32, 1280));
        assert_eq!(l4.stage_repeats(), [1, 4, 4, 6, 6, 8, 1]);
        assert_eq!(l4.stages[0].in_channels, 32);
        assert!(l4.stages.iter().all(|s| s.se_ratio.is_none()));
        assert_eq!(l4.activation, Activation::Relu6);
        let blocks: Vec<usize> = [Variant::Lite0, Variant::Lite1, Variant::Lite2, Variant::Lite3, Variant::Lite4]
            .into_iter()
            .map(|v| Architecture::variant(v).num_blocks())
            .collect();
        assert_eq!(blocks, [16, 21, 21, 24, 30]);
    }

    #[test]
    fn macs_match_the_paper() {
        // Paper FLOPs (B): 0.39, 0.70, 1.0, 1.8, 4.2, 9.9, 19, 37; our count includes SE and
        // the classifier and uses TF-SAME output sizes.
        let want = [
            (Variant::B0, 0.39),
            (Variant::B1, 0.70),
            (Variant::B2, 1.0),
            (Variant::B3, 1.8),
            (Variant::B4, 4.2),
            (Variant::B5, 9.9),
            (Variant::B6, 19.0),
            (Variant::B7, 37.0),
        ];
        for (v, paper) in want {
            let a = Architecture::variant(v);
            let g = a.macs(a.resolution, a.resolution) as f64 / 1e9;
            assert!((g - paper).abs() / paper < 0.05, "{v}: {g:.3} B vs paper {paper}");
        }
        let b0 = Architecture::variant(Variant::B0);
        // Independently recomputed in Python from the B0 table (conv + SE + classifier MACs).
        assert_eq!(b0.macs(224, 224), 385_814_752);
    }

    #[test]
    fn b0_blocks_and_endpoints() {
        let b0 = Architecture::variant(Variant::B0);
        let blocks = b0.blocks();
        assert_eq!(blocks.len(), 16);
        // First block: no expand, SE from 32 input channels -> 8.
        assert_eq!((blocks[0].expand, blocks[0].se_channels, blocks[0].residual), (false, Some(8), false));
        // Block 2 (stage 1, repeat 1): 24 -> 144 -> 24, SE 6, residual.
        assert_eq!((blocks[2].mid_channels, blocks[2].se_channels, blocks[2].residual), (144, Some(6), true));
        assert_eq!(blocks.iter().filter(|b| b.residual).count(), 9);
        assert_eq!(b0.reduction_endpoints(), [0, 2, 4, 10, 15]);
    }
}

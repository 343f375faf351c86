//! EfficientNet: a loop over the stage table of [`effnet_config::Architecture`].

use crate::block::MbConv;
use crate::layers::{ConvBnAct, NormSpec};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::FloatDType;
use effnet_config::{Architecture, ClassifierInit, Variant};

/// EfficientNet (any variant, any φ, B* or Lite*).
#[derive(Module, Debug)]
pub struct EfficientNet {
    pub stem: ConvBnAct,
    pub blocks: Vec<MbConv>,
    pub head: ConvBnAct,
    pub dropout: Dropout,
    pub classifier: Linear,
    /// Block indices whose outputs are the stride 2/4/8/16/32 end-points.
    #[module(skip)]
    pub endpoints: Vec<usize>,
    /// Mixed precision: the dtype convolutions and the classifier compute in (see
    /// [`EfficientNet::set_autocast`]); `None`: the parameters' dtype.
    #[module(skip)]
    pub autocast: Option<FloatDType>,
}

/// Multi-scale features for detection and segmentation backbones.
#[derive(Debug, Clone)]
pub struct Features {
    /// `reduction_1..5` of tensorflow/tpu: strides 2, 4, 8, 16 and 32.
    pub reductions: Vec<Tensor<4>>,
    /// The head output (after the 1×1 head conv, BN and activation), before pooling.
    pub head: Tensor<4>,
}

/// A classifier initialised as `init` says: TF's dense init `U(±1/√classes)` with zero bias
/// (tensorflow/tpu, for training from scratch), PyTorch `nn.Linear`'s `U(±1/√in_features)` for
/// weight and bias (small logits: a new head on a pretrained backbone), or zeros.
fn classifier(features: usize, num_classes: usize, init: ClassifierInit, device: &Device) -> Linear {
    let uniform = |r: f64| Initializer::Uniform { min: -r, max: r };
    let (weight, bias) = match init {
        ClassifierInit::Tf => (uniform(1.0 / (num_classes as f64).sqrt()), Initializer::Zeros),
        ClassifierInit::Torch => {
            let r = 1.0 / (features as f64).sqrt();
            (uniform(r), uniform(r))
        }
        ClassifierInit::Zeros => (Initializer::Zeros, Initializer::Zeros),
    };
    let mut l = LinearConfig::new(features, num_classes).with_initializer(weight).init(device);
    l.bias = Some(bias.init([num_classes], device));
    l
}

impl EfficientNet {
    /// Builds `arch` with TF's weight init: its BatchNorm momentum (burn convention) and each
    /// block's drop-connect rate are the ones the architecture resolved.
    pub fn new(arch: &Architecture, device: &Device) -> Self {
        let norm = NormSpec { momentum: arch.bn_momentum, epsilon: arch.bn_eps };
        let (act, pad) = (Some(arch.activation), arch.padding);
        let stem = ConvBnAct::new(arch.in_channels, arch.stem_channels, 3, 2, 1, pad, norm, act, device);
        let blocks: Vec<MbConv> =
            arch.blocks().iter().map(|b| MbConv::new(b, arch.activation, pad, norm, device)).collect();
        let last = arch.stages.last().map_or(arch.stem_channels, |s| s.out_channels);
        Self {
            stem,
            blocks,
            head: ConvBnAct::new(last, arch.head_channels, 1, 1, 1, pad, norm, act, device),
            dropout: DropoutConfig::new(arch.dropout).init(),
            classifier: classifier(arch.head_channels, arch.num_classes, ClassifierInit::Tf, device),
            endpoints: arch.reduction_endpoints(),
            autocast: None,
        }
    }

    /// A released variant with 1000 classes.
    pub fn variant(v: Variant, device: &Device) -> Self {
        Self::new(&Architecture::variant(v), device)
    }

    /// Logits `[batch, num_classes]` for images `[batch, channels, height, width]` of any size.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let dtype = crate::mixed::dtype_of(&x);
        let (x, fused) = self.backbone(x, |_, _| {});
        // Dropout is the identity in inference, which is when the fused path applies.
        if fused {
            return crate::kernels::pool_linear(x, &self.classifier);
        }
        let pooled = x.mean_dim(2).mean_dim(3).flatten::<2>(1, 3);
        let logits = crate::mixed::linear(&self.classifier, self.dropout.forward(pooled));
        // Under autocast the logits (and so the loss) are in the input's dtype again.
        if self.autocast.is_some() { crate::mixed::cast_to(logits, dtype) } else { logits }
    }

    /// Mixed precision: convolutions and the classifier compute in `dtype` (bf16 or f16) on f32
    /// parameters, BatchNorm in f32, logits come back in the input's dtype; `None` turns it off.
    /// Gradients reach the f32 parameters through the casts (see `mixed.rs`).
    pub fn set_autocast(&mut self, dtype: Option<FloatDType>) {
        self.autocast = dtype.filter(|d| *d != FloatDType::F32);
    }

    /// The input in the autocast dtype, when autocast is on.
    fn autocast_input(&self, x: Tensor<4>) -> Tensor<4> {
        match self.autocast {
            Some(dtype) => crate::mixed::cast_to(x, dtype),
            None => x,
        }
    }

    /// The head output before pooling: `[batch, head_channels, ⌈h/32⌉, ⌈w/32⌉]`.
    pub fn forward_head(&self, x: Tensor<4>) -> Tensor<4> {
        self.backbone(x, |_, _| {}).0
    }

    /// The stride 2/4/8/16/32 end-points and the head output.
    pub fn forward_features(&self, x: Tensor<4>) -> Features {
        let mut reductions = Vec::with_capacity(self.endpoints.len());
        let (head, _) = self.backbone(x, |i, y| {
            if self.endpoints.contains(&i) {
                reductions.push(y.clone());
            }
        });
        Features { reductions, head }
    }

    /// Stem, blocks (each block's output also to `tap`) and head, and whether they ran fused.
    /// The one place the path is chosen: the fused inference kernels when they apply to the
    /// input ([`crate::kernels::fused_inference`]: f32 on Flex, no autodiff), every layer's
    /// generic `forward` otherwise.
    fn backbone(&self, x: Tensor<4>, mut tap: impl FnMut(usize, &Tensor<4>)) -> (Tensor<4>, bool) {
        let x = self.autocast_input(x);
        let fused = crate::kernels::fused_inference(&x);
        // The generic path's blocks run channels-last on Flex (their kernels follow the input's
        // memory order); the fused path keeps its own order.
        let mut x =
            if fused { self.stem.forward_fused(x) } else { crate::kernels::channels_last(self.stem.forward(x)) };
        for (i, b) in self.blocks.iter().enumerate() {
            x = if fused { b.forward_fused(x) } else { b.forward(x) };
            tap(i, &x);
        }
        (if fused { self.head.forward_fused(x) } else { self.head.forward(x) }, fused)
    }

    /// Number of MBConv blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.classifier.weight.dims()[1]
    }

    /// Sets each block's drop-connect (stochastic depth) rate; `rates.len()` must equal the
    /// number of blocks. Blocks without a residual ignore their rate.
    pub fn set_drop_connect_rates(&mut self, rates: &[f64]) {
        assert_eq!(rates.len(), self.blocks.len(), "one drop-connect rate per block");
        for (b, &r) in self.blocks.iter_mut().zip(rates) {
            assert!((0.0..1.0).contains(&r), "drop-connect rate {r} must be in [0, 1)");
            b.drop_path.rate = r;
        }
    }

    /// Current per-block drop-connect rates.
    pub fn drop_connect_rates(&self) -> Vec<f64> {
        self.blocks.iter().map(|b| b.drop_path.rate).collect()
    }

    /// Replaces the classifier with a freshly initialised one for `num_classes`, keeping the
    /// backbone (fine-tuning on a new dataset), initialised as `init` says.
    pub fn with_num_classes(mut self, num_classes: usize, init: ClassifierInit, device: &Device) -> Self {
        let features = self.classifier.weight.dims()[0];
        self.classifier = classifier(features, num_classes, init, device);
        self
    }

    /// Gives every BatchNorm running statistics of its own. burn's `RunningState` is shared
    /// between clones of a module, so a clone (an EMA copy, say) would otherwise keep reading
    /// and writing the original's statistics.
    pub fn unshare_running_state(mut self) -> Self {
        let mut layers: Vec<&mut ConvBnAct> = vec![&mut self.stem, &mut self.head];
        for b in &mut self.blocks {
            layers.extend(b.expand.as_mut());
            layers.push(&mut b.depthwise);
            layers.push(&mut b.project);
        }
        for l in layers {
            l.bn.unshare_running_state();
        }
        self
    }

    /// Freezes stem, blocks and head: no gradients, BatchNorm uses its running statistics and
    /// drop-path is off. Only the classifier trains.
    pub fn freeze_backbone(mut self) -> Self {
        self.stem = self.stem.freeze();
        self.blocks = self.blocks.into_iter().map(Module::freeze).collect();
        self.head = self.head.freeze();
        self
    }

    /// Undoes [`EfficientNet::freeze_backbone`].
    pub fn unfreeze_backbone(mut self) -> Self {
        self.stem = self.stem.unfreeze();
        self.blocks = self.blocks.into_iter().map(Module::unfreeze).collect();
        self.head = self.head.unfreeze();
        self
    }
}

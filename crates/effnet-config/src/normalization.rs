//! Input normalisation: ImageNet's and Lite's statistics, and which family's released weights
//! were trained on which.

use crate::variant::Family;
use serde::Serialize;

/// Per-channel `(x − mean) / std` on the 0–1 pixel scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Normalization {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// ImageNet's per-channel mean and standard deviation on the 0–1 pixel scale: the normalisation
/// of every B* checkpoint (timm, torchvision, tensorflow/tpu).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// ImageNet statistics (B*).
pub const IMAGENET: Normalization = Normalization { mean: IMAGENET_MEAN, std: IMAGENET_STD };
/// TF EfficientNet-Lite's `(x − 127) / 128` on 0–255 pixels (`lite/efficientnet_lite_builder.py`),
/// expressed on the 0–1 scale: its released weights were trained on it.
pub const LITE: Normalization = Normalization { mean: [127.0 / 255.0; 3], std: [128.0 / 255.0; 3] };

impl Family {
    /// The normalisation a family's released weights were trained with: what `predict` applies
    /// to released weights without a run (training's default is ImageNet's for every family,
    /// see [`crate::DataConfig::normalization`]).
    pub fn normalization(self) -> Normalization {
        match self {
            Family::Standard => IMAGENET,
            Family::Lite => LITE,
        }
    }
}

impl Normalization {
    /// The same numbers in f32, as the data pipeline applies them.
    pub fn f32(self) -> ([f32; 3], [f32; 3]) {
        (self.mean.map(|x| x as f32), self.std.map(|x| x as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_keep_the_statistics_their_weights_were_trained_on() {
        assert_eq!(Family::Standard.normalization().mean, [0.485, 0.456, 0.406]);
        assert_eq!(Family::Standard.normalization().std, [0.229, 0.224, 0.225]);
        // Lite: pixel 127 maps to 0 and 255 to 1.
        let lite = Family::Lite.normalization();
        assert!(((127.0 / 255.0 - lite.mean[0]) / lite.std[0]).abs() < 1e-12);
        assert!(((1.0 - lite.mean[2]) / lite.std[2] - 1.0).abs() < 1e-12);
    }
}

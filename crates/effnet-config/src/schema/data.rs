//! `[data]` and `[data.augment]`: where the images are and how they are augmented.

use super::check::{in_range_f64, in_range_usize, probability};
use crate::error::Invalid;
use crate::normalization::{IMAGENET, Normalization};
use serde::{Deserialize, Serialize};

/// Dataset formats effnet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// `cifar-100-binary/{train,test}.bin`.
    Cifar100,
    /// `cifar-100-python/{train,test,meta}`.
    Cifar100Python,
    /// `jpg/`, `imagelabels.mat`, `setid.mat`.
    Flowers102,
    /// `root/<class>/<image>`.
    Folder,
}

/// Which CIFAR-100 labels to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelKind {
    Fine,
    Coarse,
}

/// Image resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
}

/// `[data]`: where the images are and how they are augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Dataset root (relative paths are relative to the config file).
    pub path: String,
    /// CIFAR-100: fine (100) or coarse (20) labels.
    pub labels: LabelKind,
    /// Training and evaluation image size; defaults to the model's resolution.
    pub image_size: Option<usize>,
    /// Parallel decode/augment workers.
    pub num_workers: usize,
    /// Per-channel normalisation on the 0–1 pixel scale; unset: the model family's (see
    /// [`DataConfig::normalization`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f64; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<[f64; 3]>,
    /// Evaluation: resize the short side to `image_size / crop_fraction`, then centre-crop.
    pub crop_fraction: f64,
    pub interpolation: Interpolation,
    pub augment: AugmentConfig,
    /// Skip (and count) undecodable images instead of failing.
    pub skip_corrupt: bool,
    /// Image folder without `train/`+`valid/` folders: a file (relative to the dataset root) of
    /// lines `<split> <class>/<image>` defining the splits.
    pub split_file: Option<String>,
    /// Image folder without split folders or `split_file`: the fraction of each class held out
    /// as `valid` (a fixed, seeded choice; 0 = no validation split).
    pub valid_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Cifar100,
            path: "datasets/digits".into(),
            labels: LabelKind::Fine,
            image_size: None,
            num_workers: 2,
            mean: None,
            std: None,
            crop_fraction: 0.875,
            interpolation: Interpolation::Bicubic,
            augment: AugmentConfig::default(),
            skip_corrupt: false,
            split_file: None,
            valid_fraction: 0.1,
        }
    }
}

impl DataConfig {
    /// The input normalisation of training and evaluation: `mean`/`std` where the TOML sets them,
    /// otherwise ImageNet's for every family. Fine-tuning the ImageNet Lite0 weights with Lite's
    /// own `(x − 127)/128` instead gave 2 points less top-1 (BENCHMARKS.md "Fine-tuning", three
    /// seeds each). A run's `config.toml` records the values ([`crate::EffnetConfig::resolved`]);
    /// predicting with released weights and no run uses the family's
    /// ([`crate::Family::normalization`]).
    pub fn normalization(&self) -> Normalization {
        Normalization { mean: self.mean.unwrap_or(IMAGENET.mean), std: self.std.unwrap_or(IMAGENET.std) }
    }

    /// Range checks of `[data]` and `[data.augment]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(s) = self.image_size {
            in_range_usize("data.image_size", s, 8, 4096)?;
        }
        in_range_usize("data.num_workers", self.num_workers, 0, 256)?;
        for (i, m) in self.mean.iter().flatten().enumerate() {
            if !m.is_finite() {
                return Err(Invalid::new(&format!("data.mean[{i}]"), m, "must be a finite number"));
            }
        }
        for (i, s) in self.std.iter().flatten().enumerate() {
            if !s.is_finite() {
                return Err(Invalid::new(&format!("data.std[{i}]"), s, "must be a finite number"));
            }
            if *s <= 0.0 {
                return Err(Invalid::new(&format!("data.std[{i}]"), s, "must be positive"));
            }
        }
        if !(self.crop_fraction > 0.0 && self.crop_fraction <= 1.0) {
            return Err(Invalid::new("data.crop_fraction", self.crop_fraction, "must be in (0, 1]"));
        }
        self.augment.validate()?;
        probability("data.valid_fraction", self.valid_fraction, false)?;
        if self.split_file.as_ref().is_some_and(|f| f.trim().is_empty()) {
            return Err(Invalid::new("data.split_file", "\"\"", "must not be empty"));
        }
        Ok(())
    }
}

/// `[data.augment]`: training-time augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Inception-style random-resized crop.
    pub random_resized_crop: bool,
    /// Area fraction range of the crop.
    pub scale: [f64; 2],
    /// Aspect ratio range of the crop.
    pub ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// RandAugment: number of ops per image (0 = off).
    pub randaugment_n: usize,
    /// RandAugment magnitude (0–30, 10 = the paper's scale).
    pub randaugment_m: f64,
    /// Mixup Beta(α, α) (0 = off).
    pub mixup_alpha: f64,
    /// CutMix Beta(α, α) (0 = off).
    pub cutmix_alpha: f64,
    /// Probability of applying mixup/cutmix to a batch.
    pub mix_prob: f64,
    /// With both mixup and cutmix on: probability that a mixed batch uses cutmix.
    pub mix_switch_prob: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            random_resized_crop: true,
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            hflip: 0.5,
            randaugment_n: 0,
            randaugment_m: 9.0,
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            mix_prob: 1.0,
            mix_switch_prob: 0.5,
        }
    }
}

impl AugmentConfig {
    /// Range checks of `[data.augment]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.scale[0] > 0.0 && self.scale[0] <= self.scale[1] && self.scale[1] <= 1.0) {
            return Err(Invalid::new("data.augment.scale", format!("{:?}", self.scale), "needs 0 < min <= max <= 1"));
        }
        if !(self.ratio[0] > 0.0 && self.ratio[0] <= self.ratio[1]) {
            return Err(Invalid::new("data.augment.ratio", format!("{:?}", self.ratio), "needs 0 < min <= max"));
        }
        probability("data.augment.hflip", self.hflip, true)?;
        in_range_usize("data.augment.randaugment_n", self.randaugment_n, 0, 16)?;
        in_range_f64("data.augment.randaugment_m", self.randaugment_m, 0.0, 30.0)?;
        in_range_f64("data.augment.mixup_alpha", self.mixup_alpha, 0.0, 100.0)?;
        in_range_f64("data.augment.cutmix_alpha", self.cutmix_alpha, 0.0, 100.0)?;
        probability("data.augment.mix_prob", self.mix_prob, true)?;
        probability("data.augment.mix_switch_prob", self.mix_switch_prob, true)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_checks_itself_and_defaults_to_imagenet_statistics() {
        let d = DataConfig::default();
        assert_eq!(d.validate(), Ok(()));
        let n = d.normalization();
        assert_eq!((n.mean, n.std), ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]));
        // A key the TOML sets wins, each on its own.
        let half = DataConfig { mean: Some([0.5; 3]), ..d.clone() };
        assert_eq!((half.normalization().mean, half.normalization().std), ([0.5; 3], [0.229, 0.224, 0.225]));
        let bad = DataConfig { std: Some([0.2, 0.0, 0.2]), ..d.clone() };
        let e = bad.validate().unwrap_err();
        assert_eq!((e.key.as_str(), e.value.as_str(), e.reason.as_str()), ("data.std[1]", "0", "must be positive"));
        let bad = DataConfig { augment: AugmentConfig { ratio: [2.0, 1.0], ..AugmentConfig::default() }, ..d };
        assert_eq!(bad.validate().unwrap_err().key, "data.augment.ratio");
    }
}

//! Training-time image transform: random-resized crop (or a plain resize), horizontal flip,
//! RandAugment, normalisation; and the per-sample RNG that makes it reproducible.

use super::preprocess::filter;
use super::randaugment::rand_augment;
use effnet_config::{DataConfig, Interpolation, Normalization};
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// SplitMix64 finaliser: decorrelates nearby seeds.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The RNG of one sample in one epoch: a pure function of `(seed, epoch, index)`, so the
/// augmentation of a sample does not depend on which worker fetched it or when.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> StdRng {
    StdRng::seed_from_u64(mix64(mix64(mix64(seed) ^ epoch) ^ index))
}

/// Inception-style random-resized crop (torchvision's `RandomResizedCrop.get_params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Range of the crop's area as a fraction of the image's.
    pub scale: [f64; 2],
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: [f64; 2],
}

impl RandomResizedCrop {
    /// A crop `(left, top, width, height)` of a `w × h` image: ten tries at a random area and
    /// log-uniform ratio, then the centre crop at the nearest allowed ratio (torchvision).
    pub fn sample(&self, w: u32, h: u32, rng: &mut StdRng) -> (u32, u32, u32, u32) {
        let area = w as f64 * h as f64;
        let (lr0, lr1) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale[0]..=self.scale[1]);
            let ar = if lr1 > lr0 { rng.random_range(lr0..lr1).exp() } else { lr0.exp() };
            let cw = (target * ar).sqrt().round() as u32;
            let ch = (target / ar).sqrt().round() as u32;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let left = rng.random_range(0..=w - cw);
                let top = rng.random_range(0..=h - ch);
                return (left, top, cw, ch);
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (cw, ch) = if in_ratio < self.ratio[0] {
            (w, ((w as f64 / self.ratio[0]).round() as u32).clamp(1, h))
        } else if in_ratio > self.ratio[1] {
            (((h as f64 * self.ratio[1]).round() as u32).clamp(1, w), h)
        } else {
            (w, h)
        };
        ((w - cw) / 2, (h - ch) / 2, cw, ch)
    }
}

/// The training transform of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTransform {
    /// Output side in pixels.
    pub size: usize,
    /// Random-resized crop; `None` resizes the whole image to `size × size`.
    pub crop: Option<RandomResizedCrop>,
    /// Horizontal-flip probability.
    pub hflip: f64,
    /// RandAugment ops per image (0 = off).
    pub randaugment_n: usize,
    /// RandAugment magnitude (0–30; 10 = each op's maximum).
    pub randaugment_m: f64,
    /// Normalisation mean (0–1 scale).
    pub mean: [f32; 3],
    /// Normalisation std (0–1 scale).
    pub std: [f32; 3],
    /// Resampling filter.
    pub interpolation: Interpolation,
}

impl TrainTransform {
    /// The transform `[data]` describes, at `size` pixels, normalised as `normalization` says
    /// (the resolved `[data] mean/std`: [`effnet_config::DataConfig::normalization`]).
    pub fn from_config(cfg: &DataConfig, size: usize, normalization: Normalization) -> Self {
        let a = &cfg.augment;
        let (mean, std) = normalization.f32();
        Self {
            size,
            crop: a.random_resized_crop.then_some(RandomResizedCrop { scale: a.scale, ratio: a.ratio }),
            hflip: a.hflip,
            randaugment_n: a.randaugment_n,
            randaugment_m: a.randaugment_m,
            mean,
            std,
            interpolation: cfg.interpolation,
        }
    }

    /// The augmented `size × size` image (before normalisation).
    pub fn augment(&self, img: &RgbImage, rng: &mut StdRng) -> RgbImage {
        let s = self.size as u32;
        let (w, h) = img.dimensions();
        let mut out = match self.crop {
            Some(c) => {
                let (x, y, cw, ch) = c.sample(w, h, rng);
                let view = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
                resize(&view, s, self.interpolation)
            }
            None => resize(img, s, self.interpolation),
        };
        // Draw the flip coin even when hflip is 0 or 1, so other draws do not shift with it.
        if rng.random::<f64>() < self.hflip {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        if self.randaugment_n > 0 {
            out = rand_augment(&out, self.randaugment_n, self.randaugment_m, rng);
        }
        out
    }

    /// The augmented image as a normalised CHW vector of `3 × size × size`.
    pub fn apply(&self, img: &RgbImage, rng: &mut StdRng) -> Vec<f32> {
        normalize_chw(&self.augment(img, rng), self.mean, self.std)
    }
}

fn resize(img: &RgbImage, s: u32, interpolation: Interpolation) -> RgbImage {
    if img.dimensions() == (s, s) { img.clone() } else { image::imageops::resize(img, s, s, filter(interpolation)) }
}

/// `(pixel / 255 − mean) / std`, channel-major.
pub(crate) fn normalize_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| mean[c] / std[c]);
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = p[c] as f32 * scale[c] - shift[c];
        }
    }
    out
}

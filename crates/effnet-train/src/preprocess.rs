//! Evaluation preprocessing: resize the short side, centre-crop, normalise (timm/torchvision's
//! eval transform).

use effnet_config::Interpolation;
use image::RgbImage;
use image::imageops::FilterType;

/// ImageNet mean and standard deviation on the 0–1 pixel scale.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// TF EfficientNet-Lite's `(x − 127) / 128` on 0–255 pixels, expressed on the 0–1 scale.
pub const LITE_MEAN: [f32; 3] = [127.0 / 255.0; 3];
pub const LITE_STD: [f32; 3] = [128.0 / 255.0; 3];

/// Resize the short side to `size / crop_fraction`, centre-crop `size × size`, normalise.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTransform {
    pub size: usize,
    pub crop_fraction: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub interpolation: Interpolation,
}

impl EvalTransform {
    /// ImageNet statistics, crop fraction 0.875, bicubic.
    pub fn imagenet(size: usize) -> Self {
        Self {
            size,
            crop_fraction: 0.875,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            interpolation: Interpolation::Bicubic,
        }
    }

    /// The image as a normalised CHW float vector of `3 × size × size`.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        let (w, h) = img.dimensions();
        let short = ((self.size as f64 / self.crop_fraction).floor() as u32).max(self.size as u32);
        // torchvision's Resize(int): the short side becomes `short`, the long side is truncated.
        let (nw, nh) = if w <= h {
            (short, ((short as u64 * h as u64) / w as u64) as u32)
        } else {
            (((short as u64 * w as u64) / h as u64) as u32, short)
        };
        let resized = image::imageops::resize(img, nw, nh, filter(self.interpolation));
        let s = self.size as u32;
        let top = ((nh - s) as f64 / 2.0).round() as u32;
        let left = ((nw - s) as f64 / 2.0).round() as u32;
        let mut out = vec![0f32; 3 * self.size * self.size];
        let plane = self.size * self.size;
        for y in 0..s {
            for x in 0..s {
                let p = resized.get_pixel(left + x, top + y);
                let i = (y * s + x) as usize;
                for c in 0..3 {
                    out[c * plane + i] = (p[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
                }
            }
        }
        out
    }
}

pub(crate) fn filter(i: Interpolation) -> FilterType {
    match i {
        Interpolation::Nearest => FilterType::Nearest,
        Interpolation::Bilinear => FilterType::Triangle,
        Interpolation::Bicubic => FilterType::CatmullRom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_crop_normalise_shapes_and_values() {
        // A 300×200 image of constant grey 127 normalises to 0 under the Lite statistics.
        let img = RgbImage::from_pixel(300, 200, image::Rgb([127, 127, 127]));
        let t = EvalTransform { mean: LITE_MEAN, std: LITE_STD, ..EvalTransform::imagenet(64) };
        let v = t.apply(&img);
        assert_eq!(v.len(), 3 * 64 * 64);
        assert!(v.iter().all(|x| x.abs() < 1e-6));
        // A left-dark/right-bright image keeps its orientation after the centre crop.
        let img =
            RgbImage::from_fn(100, 80, |x, _| if x < 50 { image::Rgb([0, 0, 0]) } else { image::Rgb([255, 255, 255]) });
        let v = EvalTransform::imagenet(32).apply(&img);
        let first = v[0];
        let last = v[31];
        assert!((first - (0.0 - 0.485) / 0.229).abs() < 1e-5, "{first}");
        assert!((last - (1.0 - 0.485) / 0.229).abs() < 1e-5, "{last}");
    }
}

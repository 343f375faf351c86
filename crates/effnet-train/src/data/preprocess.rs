//! Evaluation preprocessing: resize the short side, centre-crop, normalise (timm/torchvision's
//! eval transform); decoding an image file with a check for a cut-off JPEG.

use effnet_config::Interpolation;
use image::RgbImage;
use image::imageops::FilterType;
use std::path::Path;

/// ImageNet mean and standard deviation on the 0–1 pixel scale (effnet-config's, in f32).
pub const IMAGENET_MEAN: [f32; 3] = to_f32(effnet_config::IMAGENET.mean);
pub const IMAGENET_STD: [f32; 3] = to_f32(effnet_config::IMAGENET.std);

const fn to_f32(v: [f64; 3]) -> [f32; 3] {
    [v[0] as f32, v[1] as f32, v[2] as f32]
}

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
        let s = self.size as u32;
        let mut out = vec![0f32; 3 * self.size * self.size];
        if w == 0 || h == 0 {
            return out;
        }
        // u64: a thin strip's long side can pass u32 after the short side is scaled up. The cap
        // only matters for absurd crop fractions (1e-30), where it keeps the arithmetic finite.
        let short = ((self.size as f64 / self.crop_fraction).floor() as u64).clamp(self.size as u64, 1 << 31);
        // torchvision's Resize(int): the short side becomes `short`, the long side is truncated.
        let (nw, nh) = if w <= h { (short, short * h as u64 / w as u64) } else { (short * w as u64 / h as u64, short) };
        let top = ((nh - s as u64) as f64 / 2.0).round() as u64;
        let left = ((nw - s as u64) as f64 / 2.0).round() as u64;
        // Only the crop of the resized image is computed, pixel for pixel what resizing the
        // whole image would give there: the whole resize costs nw·nh pixels (5 G for a
        // 20000×1 strip).
        let crop = resize_crop(img, (nw, nh), (left, top), s, self.interpolation);
        let plane = self.size * self.size;
        for (i, p) in crop.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (p[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }
}

/// The `s × s` window at `origin` of `img` resized to `dims`, as RGB bytes, computed the way
/// `image::imageops::resize` computes each output pixel (a vertical pass into f32, then a
/// horizontal pass rounded to u8, with the same taps and weights) but only for the window.
fn resize_crop(img: &RgbImage, dims: (u64, u64), origin: (u64, u64), s: u32, interpolation: Interpolation) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let (support, kernel): (f32, fn(f32) -> f32) = match interpolation {
        Interpolation::Nearest => (0.0, |_| 1.0),
        Interpolation::Bilinear => (1.0, |x| if x.abs() < 1.0 { 1.0 - x.abs() } else { 0.0 }),
        Interpolation::Bicubic => (2.0, catmull_rom),
    };
    let cols: Vec<(u32, Vec<f32>)> = (0..s as u64).map(|x| taps(w, dims.0, origin.0 + x, support, kernel)).collect();
    let c0 = cols.iter().map(|c| c.0).min().unwrap_or(0) as usize;
    let c1 = cols.iter().map(|c| c.0 as usize + c.1.len()).max().unwrap_or(0);
    let span = c1 - c0;
    let raw = img.as_raw();
    let mut tmp = vec![0f32; s as usize * span * 3];
    for y in 0..s as u64 {
        let (first, ws) = taps(h, dims.1, origin.1 + y, support, kernel);
        let row = &mut tmp[y as usize * span * 3..(y as usize + 1) * span * 3];
        for (cx, t) in row.chunks_exact_mut(3).enumerate() {
            for (i, wt) in ws.iter().enumerate() {
                let at = ((first as usize + i) * w as usize + c0 + cx) * 3;
                for c in 0..3 {
                    t[c] += raw[at + c] as f32 * wt;
                }
            }
        }
    }
    let mut out = vec![0u8; s as usize * s as usize * 3];
    for y in 0..s as usize {
        let row = &tmp[y * span * 3..(y + 1) * span * 3];
        for (x, (first, ws)) in cols.iter().enumerate() {
            let mut t = [0f32; 3];
            for (i, wt) in ws.iter().enumerate() {
                let at = (*first as usize - c0 + i) * 3;
                for c in 0..3 {
                    t[c] += row[at + c] * wt;
                }
            }
            for c in 0..3 {
                out[(y * s as usize + x) * 3 + c] = t[c].clamp(0.0, 255.0).round() as u8;
            }
        }
    }
    out
}

/// The first source index and the normalised weights of output pixel `out` of a `src → dst`
/// resize along one axis (image's `vertical_sample`/`horizontal_sample`, same f32 arithmetic).
fn taps(src: u32, dst: u64, out: u64, support: f32, kernel: fn(f32) -> f32) -> (u32, Vec<f32>) {
    let ratio = src as f32 / dst as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let src_support = support * sratio;
    let input = (out as f32 + 0.5) * ratio;
    let left = ((input - src_support).floor() as i64).clamp(0, src as i64 - 1);
    let right = ((input + src_support).ceil() as i64).clamp(left + 1, src as i64);
    let input = input - 0.5;
    let mut ws: Vec<f32> = (left..right).map(|i| kernel((i as f32 - input) / sratio)).collect();
    let sum: f32 = ws.iter().fold(0.0, |a, w| a + w);
    ws.iter_mut().for_each(|w| *w /= sum);
    (left as u32, ws)
}

/// Catmull-Rom: image's `bc_cubic_spline(x, 0.0, 0.5)`, term for term.
fn catmull_rom(x: f32) -> f32 {
    let (b, c) = (0.0f32, 0.5f32);
    let a = x.abs();
    let k = if a < 1.0 {
        (12.0 - 9.0 * b - 6.0 * c) * a.powi(3) + (-18.0 + 12.0 * b + 6.0 * c) * a.powi(2) + (6.0 - 2.0 * b)
    } else if a < 2.0 {
        (-b - 6.0 * c) * a.powi(3)
            + (6.0 * b + 30.0 * c) * a.powi(2)
            + (-12.0 * b - 48.0 * c) * a
            + (8.0 * b + 24.0 * c)
    } else {
        0.0
    };
    k / 6.0
}

/// Decodes an image file (format from its content) to RGB. The second value is a warning when
/// the file is a JPEG that ends before its end-of-image marker: the decoder then fills in the
/// missing part instead of failing, and the prediction is of a partly grey picture.
pub fn open_image(path: &Path) -> Result<(RgbImage, Option<String>), String> {
    // A regular PNG/JPEG file of bounded size, checked before it is read whole.
    let bytes = super::error::read_image_file(path).map_err(|e| match e {
        super::DataError::Io { error, .. } => format!("{}: cannot read: {error}", path.display()),
        e => e.to_string(),
    })?;
    let img = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("{}: cannot decode image: {e}", path.display()))?;
    let warning = jpeg_truncated(&bytes).then(|| {
        format!(
            "{}: truncated JPEG (it ends before the end-of-image marker); only part of it was decoded",
            path.display()
        )
    });
    Ok((img.to_rgb8(), warning))
}

/// Whether `data` is a JPEG that ends before its end-of-image (EOI) marker. Walks the marker
/// segments by their lengths and each scan's entropy-coded data up to the next marker (a 0xFF
/// not followed by a stuffed 0x00 or a restart marker); data after EOI is allowed. Not a JPEG:
/// false.
pub fn jpeg_truncated(data: &[u8]) -> bool {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        // The next marker: 0xFF (any number of fill bytes), then its code.
        while i < data.len() && data[i] != 0xFF {
            i += 1;
        }
        while i < data.len() && data[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = data.get(i) else { return true };
        i += 1;
        match marker {
            0xD9 => return false,
            // Stand-alone markers (TEM, RSTn) and a stray stuffed byte carry no length.
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = data.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else { return true };
        i += len;
        if i > data.len() {
            return true;
        }
        if marker == 0xDA {
            // Entropy-coded data: skip to the first marker that is not stuffing or a restart.
            loop {
                match data.get(i..).and_then(|rest| rest.iter().position(|&b| b == 0xFF)) {
                    None => return true,
                    Some(p) => {
                        let j = i + p;
                        match data.get(j + 1) {
                            None => return true,
                            Some(0x00) | Some(0xD0..=0xD7) => i = j + 2,
                            Some(0xFF) => i = j + 1,
                            Some(_) => {
                                i = j;
                                break;
                            }
                        }
                    }
                }
            }
        }
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

    /// The transform as it was: resize the whole image, then crop.
    fn resize_then_crop(t: &EvalTransform, img: &RgbImage) -> Vec<f32> {
        let (w, h) = img.dimensions();
        let short = ((t.size as f64 / t.crop_fraction).floor() as u32).max(t.size as u32);
        let (nw, nh) = if w <= h {
            (short, ((short as u64 * h as u64) / w as u64) as u32)
        } else {
            (((short as u64 * w as u64) / h as u64) as u32, short)
        };
        let resized = image::imageops::resize(img, nw, nh, filter(t.interpolation));
        let s = t.size as u32;
        let (top, left) = (((nh - s) as f64 / 2.0).round() as u32, ((nw - s) as f64 / 2.0).round() as u32);
        let mut out = vec![0f32; 3 * t.size * t.size];
        for y in 0..s {
            for x in 0..s {
                let p = resized.get_pixel(left + x, top + y);
                for c in 0..3 {
                    out[c * t.size * t.size + (y * s + x) as usize] = (p[c] as f32 / 255.0 - t.mean[c]) / t.std[c];
                }
            }
        }
        out
    }

    fn noise(w: u32, h: u32) -> RgbImage {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        RgbImage::from_fn(w, h, |_, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
        })
    }

    #[test]
    fn imagenet_statistics_are_the_configs_in_f32() {
        // The same f32s as the literals would give: the cast from effnet-config's f64 rounds once.
        assert_eq!(IMAGENET_MEAN, [0.485f32, 0.456, 0.406]);
        assert_eq!(IMAGENET_STD, [0.229f32, 0.224, 0.225]);
    }

    #[test]
    fn cropping_first_gives_the_pixels_of_resizing_the_whole_image() {
        // Downscale and upscale, portrait and landscape, every interpolation: bit-identical.
        for (w, h, size, crop) in [(97, 61, 32, 0.875), (61, 97, 24, 0.9), (20, 13, 40, 1.0), (300, 300, 64, 0.875)] {
            for interpolation in [Interpolation::Bicubic, Interpolation::Bilinear, Interpolation::Nearest] {
                let img = noise(w, h);
                let t = EvalTransform { size, crop_fraction: crop, interpolation, ..EvalTransform::imagenet(size) };
                assert_eq!(t.apply(&img), resize_then_crop(&t, &img), "{w}x{h} -> {size} {interpolation:?}");
            }
        }
    }

    #[test]
    fn a_thin_strip_costs_the_crop_not_the_resized_image() {
        // Resizing 20000×1 to a short side of 256 first is 5.12 M × 256 pixels (3.9 GB, ~44 s);
        // the crop is 224 × 224.
        let img = RgbImage::from_pixel(20000, 1, image::Rgb([200, 100, 50]));
        let started = std::time::Instant::now();
        let v = EvalTransform::imagenet(224).apply(&img);
        assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
        // An absurd crop fraction magnifies a sub-pixel: no overflow, still the strip's colour.
        let t = EvalTransform { crop_fraction: 1e-30, ..EvalTransform::imagenet(8) };
        assert!(
            t.apply(&RgbImage::from_pixel(7, 5, image::Rgb([200, 100, 50])))[..64]
                .iter()
                .all(|x| (x - v[0]).abs() < 1e-5)
        );
        let want = (200.0 / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert!(v[..224 * 224].iter().all(|x| (x - want).abs() < 1e-5));
    }

    #[test]
    fn a_cut_off_jpeg_is_told_from_a_whole_one() {
        let mut jpeg = Vec::new();
        noise(64, 48).write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        assert!(!jpeg_truncated(&jpeg));
        // Bytes after the end-of-image marker are allowed (some cameras append data).
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0u8; 100]);
        assert!(!jpeg_truncated(&padded));
        for cut in [3, 20, jpeg.len() / 2, jpeg.len() - 2] {
            assert!(jpeg_truncated(&jpeg[..cut]), "cut at {cut} of {}", jpeg.len());
        }
        assert!(!jpeg_truncated(b"\x89PNG\r\n"));
        // The decoder accepts the cut-off file; open_image says so.
        let dir = std::env::temp_dir().join(format!("effnet-jpeg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cut.jpg");
        std::fs::write(&path, &jpeg[..jpeg.len() * 2 / 3]).unwrap();
        let (img, warning) = open_image(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(img.dimensions(), (64, 48));
        assert!(warning.unwrap().contains("cut.jpg: truncated JPEG"));
    }

    #[test]
    fn resize_crop_normalise_shapes_and_values() {
        // A 300×200 image of constant grey 127 normalises to 0 under the Lite statistics.
        let img = RgbImage::from_pixel(300, 200, image::Rgb([127, 127, 127]));
        let (mean, std) = effnet_config::LITE.f32();
        let t = EvalTransform { mean, std, ..EvalTransform::imagenet(64) };
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

//! RandAugment (Cubuk et al. 2020): `n` ops drawn uniformly from the list below, each at
//! magnitude `m` on timm's scale (`m / 10` of each op's maximum, a random sign for signed ops;
//! `m` may exceed 10 up to 30). Every drawn op is applied (the paper's rule; timm applies each
//! with p = 0.5). Geometric ops fill with grey 128 and sample bilinearly.

use image::{Rgb, RgbImage};
use rand::RngExt;
use rand::rngs::StdRng;

/// The op names, in draw order.
pub const RAND_AUGMENT_OPS: [&str; 15] = [
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
];

const FILL: [u8; 3] = [128, 128, 128];

/// Applies `n` random ops at magnitude `m`.
pub fn rand_augment(img: &RgbImage, n: usize, m: f64, rng: &mut StdRng) -> RgbImage {
    let mut out = img.clone();
    let level = (m / 10.0).clamp(0.0, 3.0);
    for _ in 0..n {
        let op = rng.random_range(0..RAND_AUGMENT_OPS.len());
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        out = apply_op(&out, op, level, sign);
    }
    out
}

/// One op by index into [`RAND_AUGMENT_OPS`] at `level` (1.0 = the op's maximum).
pub(crate) fn apply_op(img: &RgbImage, op: usize, level: f64, sign: f64) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    match op {
        0 => auto_contrast(img),
        1 => equalize(img),
        2 => map_pixels(img, |v| 255 - v),
        3 => {
            let a = (sign * level * 30.0).to_radians();
            let (cx, cy) = (w / 2.0, h / 2.0);
            // Inverse map of a rotation about the centre.
            let (c, s) = (a.cos(), a.sin());
            affine(img, [c, s, cx - c * cx - s * cy, -s, c, cy + s * cx - c * cy])
        }
        4 => {
            let bits = (8.0 - (level * 4.0).floor()).clamp(1.0, 8.0) as u32;
            let mask = !((1u16 << (8 - bits)) - 1) as u8;
            map_pixels(img, |v| v & mask)
        }
        5 => {
            let t = (256.0 - level * 256.0).clamp(0.0, 256.0) as u16;
            map_pixels(img, |v| if v as u16 >= t { 255 - v } else { v })
        }
        6 => {
            let add = (level * 110.0).round() as u16;
            map_pixels(img, |v| if v < 128 { (v as u16 + add).min(255) as u8 } else { v })
        }
        7 => {
            let grey = grayscale(img);
            blend(&grey, img, 1.0 + sign * level * 0.9)
        }
        8 => {
            let g = grayscale(img);
            let mean = (g.pixels().map(|p| p[0] as f64).sum::<f64>() / (w * h)).round() as u8;
            blend(&RgbImage::from_pixel(img.width(), img.height(), Rgb([mean; 3])), img, 1.0 + sign * level * 0.9)
        }
        9 => blend(&RgbImage::new(img.width(), img.height()), img, 1.0 + sign * level * 0.9),
        10 => blend(&smooth(img), img, 1.0 + sign * level * 0.9),
        11 => affine(img, [1.0, sign * level * 0.3, 0.0, 0.0, 1.0, 0.0]),
        12 => affine(img, [1.0, 0.0, 0.0, sign * level * 0.3, 1.0, 0.0]),
        13 => affine(img, [1.0, 0.0, sign * level * 0.45 * w, 0.0, 1.0, 0.0]),
        _ => affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, sign * level * 0.45 * h]),
    }
}

fn map_pixels(img: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let mut out = img.clone();
    out.iter_mut().for_each(|v| *v = f(*v));
    out
}

/// `degenerate + factor × (img − degenerate)`, clamped (PIL's ImageEnhance).
fn blend(degenerate: &RgbImage, img: &RgbImage, factor: f64) -> RgbImage {
    let mut out = img.clone();
    for (o, (&d, &v)) in out.iter_mut().zip(degenerate.iter().zip(img.iter())) {
        *o = (d as f64 + factor * (v as f64 - d as f64)).round().clamp(0.0, 255.0) as u8;
    }
    out
}

fn grayscale(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        // ITU-R 601-2 luma, as PIL's convert("L").
        let l = ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114 + 500) / 1000) as u8;
        *p = Rgb([l; 3]);
    }
    out
}

/// PIL's SMOOTH kernel `[[1,1,1],[1,5,1],[1,1,1]] / 13`; the border keeps its pixels.
fn smooth(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let mut acc = [0u32; 3];
            for dy in 0..3 {
                for dx in 0..3 {
                    let k = if dx == 1 && dy == 1 { 5 } else { 1 };
                    let p = img.get_pixel(x + dx - 1, y + dy - 1);
                    for c in 0..3 {
                        acc[c] += k * p[c] as u32;
                    }
                }
            }
            out.put_pixel(x, y, Rgb(acc.map(|a| ((a + 6) / 13) as u8)));
        }
    }
    out
}

fn auto_contrast(img: &RgbImage) -> RgbImage {
    let mut lo = [255u8; 3];
    let mut hi = [0u8; 3];
    for p in img.pixels() {
        for c in 0..3 {
            lo[c] = lo[c].min(p[c]);
            hi[c] = hi[c].max(p[c]);
        }
    }
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            if hi[c] > lo[c] {
                p[c] = ((p[c] - lo[c]) as u32 * 255 / (hi[c] - lo[c]) as u32) as u8;
            }
        }
    }
    out
}

/// Per-channel histogram equalisation (PIL's ImageOps.equalize).
fn equalize(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for c in 0..3 {
        let mut hist = [0usize; 256];
        img.pixels().for_each(|p| hist[p[c] as usize] += 1);
        let nonzero: Vec<usize> = hist.iter().copied().filter(|&n| n > 0).collect();
        if nonzero.len() <= 1 {
            continue;
        }
        let step = (nonzero.iter().sum::<usize>() - nonzero[nonzero.len() - 1]) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut n = step / 2;
        for (i, l) in lut.iter_mut().enumerate() {
            *l = (n / step).min(255) as u8;
            n += hist[i];
        }
        out.pixels_mut().for_each(|p| p[c] = lut[p[c] as usize]);
    }
    out
}

/// Output pixel (x, y) samples the input at `(a x + b y + c, d x + e y + f)` (PIL's
/// `Image.transform(AFFINE)` convention), bilinearly, grey outside.
fn affine(img: &RgbImage, m: [f64; 6]) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f64 + 0.5, y as f64 + 0.5);
        let sx = m[0] * xf + m[1] * yf + m[2] - 0.5;
        let sy = m[3] * xf + m[4] * yf + m[5] - 0.5;
        if sx < -0.5 || sy < -0.5 || sx > w as f64 - 0.5 || sy > h as f64 - 0.5 {
            return Rgb(FILL);
        }
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let px = |xx: f64, yy: f64| {
            *img.get_pixel(xx.clamp(0.0, w as f64 - 1.0) as u32, yy.clamp(0.0, h as f64 - 1.0) as u32)
        };
        let (p00, p10, p01, p11) = (px(x0, y0), px(x0 + 1.0, y0), px(x0, y0 + 1.0), px(x0 + 1.0, y0 + 1.0));
        Rgb(std::array::from_fn(|c| {
            let top = p00[c] as f64 * (1.0 - fx) + p10[c] as f64 * fx;
            let bot = p01[c] as f64 * (1.0 - fx) + p11[c] as f64 * fx;
            (top * (1.0 - fy) + bot * fy).round() as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_keep_size_and_known_values() {
        let img = RgbImage::from_fn(16, 12, |x, y| Rgb([(x * 10) as u8, (y * 20) as u8, 200]));
        for (op, name) in RAND_AUGMENT_OPS.iter().enumerate() {
            let out = apply_op(&img, op, 0.9, 1.0);
            assert_eq!(out.dimensions(), (16, 12), "{name}");
        }
        assert_eq!(apply_op(&img, 2, 0.9, 1.0).get_pixel(1, 1), &Rgb([245, 235, 55]));
        // Zero-magnitude geometric and enhancement ops are the identity.
        for op in [3, 7, 8, 9, 10, 11, 12, 13, 14] {
            assert_eq!(apply_op(&img, op, 0.0, 1.0), img, "{}", RAND_AUGMENT_OPS[op]);
        }
        let ac = apply_op(&img, 0, 0.0, 1.0);
        assert_eq!((ac.get_pixel(0, 0)[0], ac.get_pixel(15, 0)[0]), (0, 255));
    }
}

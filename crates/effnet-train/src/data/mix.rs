//! Batch-level mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019), as timm's `Mixup` in
//! batch mode: sample i is mixed with sample N−1−i, λ ~ Beta(α, α), and the soft targets are
//! `λ·onehot(y_i) + (1 − λ)·onehot(y_{N−1−i})` (CutMix: λ corrected to the pasted box's area).

use effnet_config::AugmentConfig;
use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Beta, Distribution};

/// Mixup/CutMix settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixParams {
    /// Mixup Beta(α, α); 0 = off.
    pub mixup_alpha: f64,
    /// CutMix Beta(α, α); 0 = off.
    pub cutmix_alpha: f64,
    /// Probability that a batch is mixed.
    pub prob: f64,
    /// With both on: probability of CutMix rather than mixup.
    pub switch_prob: f64,
}

impl MixParams {
    /// The settings of `[data.augment]`, or `None` when both alphas are 0.
    pub fn from_config(a: &AugmentConfig) -> Option<Self> {
        (a.mixup_alpha > 0.0 || a.cutmix_alpha > 0.0).then_some(Self {
            mixup_alpha: a.mixup_alpha,
            cutmix_alpha: a.cutmix_alpha,
            prob: a.mix_prob,
            switch_prob: a.mix_switch_prob,
        })
    }
}

/// What [`mix_batch`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixed {
    /// `[N × classes]` soft targets, rows summing to 1.
    pub soft_targets: Vec<f32>,
    /// Each row's dominant label (its own when λ ≥ 0.5, else its partner's).
    pub dominant: Vec<usize>,
    /// The λ used (after the CutMix area correction).
    pub lambda: f64,
    /// Whether CutMix (rather than mixup) was used.
    pub cutmix: bool,
}

/// Mixes a batch of `n` CHW images of side `size` in place; `None` when the coin says no mixing.
pub fn mix_batch(
    images: &mut [f32],
    labels: &[usize],
    size: usize,
    num_classes: usize,
    p: &MixParams,
    rng: &mut StdRng,
) -> Option<Mixed> {
    let n = labels.len();
    // Draw every coin up front so the sequence is the same whichever branch runs.
    let apply = rng.random::<f64>() < p.prob;
    let use_cutmix = match (p.mixup_alpha > 0.0, p.cutmix_alpha > 0.0) {
        (true, true) => rng.random::<f64>() < p.switch_prob,
        (false, true) => true,
        _ => false,
    };
    if !apply || n == 0 {
        return None;
    }
    let alpha = if use_cutmix { p.cutmix_alpha } else { p.mixup_alpha };
    let mut lambda = Beta::new(alpha, alpha).map(|b| b.sample(rng)).unwrap_or(1.0);
    let plane = size * size;
    let img_len = 3 * plane;
    let orig = images.to_vec();
    if use_cutmix {
        // Box of area (1 − λ), centre uniform, clipped to the image; λ = 1 − clipped area.
        let cut = (1.0 - lambda).sqrt();
        let (ch, cw) = ((size as f64 * cut) as usize, (size as f64 * cut) as usize);
        let cy = rng.random_range(0..size);
        let cx = rng.random_range(0..size);
        let (y0, y1) = (cy.saturating_sub(ch / 2), (cy + ch / 2).min(size));
        let (x0, x1) = (cx.saturating_sub(cw / 2), (cx + cw / 2).min(size));
        for i in 0..n {
            let j = n - 1 - i;
            for c in 0..3 {
                for y in y0..y1 {
                    let row = c * plane + y * size;
                    images[i * img_len + row + x0..i * img_len + row + x1]
                        .copy_from_slice(&orig[j * img_len + row + x0..j * img_len + row + x1]);
                }
            }
        }
        lambda = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / plane as f64;
    } else {
        let (l, r) = (lambda as f32, 1.0 - lambda as f32);
        for i in 0..n {
            let j = n - 1 - i;
            for k in 0..img_len {
                images[i * img_len + k] = l * orig[i * img_len + k] + r * orig[j * img_len + k];
            }
        }
    }
    let mut soft = vec![0f32; n * num_classes];
    let mut dominant = Vec::with_capacity(n);
    for i in 0..n {
        let j = n - 1 - i;
        soft[i * num_classes + labels[i]] += lambda as f32;
        soft[i * num_classes + labels[j]] += 1.0 - lambda as f32;
        dominant.push(if lambda >= 0.5 { labels[i] } else { labels[j] });
    }
    Some(Mixed { soft_targets: soft, dominant, lambda, cutmix: use_cutmix })
}

//! Compound scaling: the exact TensorFlow rounding rules and the φ formula of the paper.

/// Channel counts are rounded to multiples of this (tensorflow/tpu `depth_divisor`).
pub const DEFAULT_DEPTH_DIVISOR: usize = 8;

/// Scales a channel count by `width` and rounds it the way tensorflow/tpu's `round_filters` does:
/// to the nearest multiple of `divisor` (ties up), never below `min_depth` (default: `divisor`),
/// and bumped up by one `divisor` if rounding lost more than 10 %.
///
/// ```
/// use effnet_config::round_filters;
/// assert_eq!(round_filters(32, 1.0, 8, None), 32);
/// assert_eq!(round_filters(1280, 1.1, 8, None), 1408);
/// assert_eq!(round_filters(40, 0.25, 8, None), 16); // 8 would lose more than 10 %
/// ```
pub fn round_filters(filters: usize, width: f64, divisor: usize, min_depth: Option<usize>) -> usize {
    let divisor_f = divisor as f64;
    let scaled = filters as f64 * width;
    let min_depth = min_depth.unwrap_or(divisor);
    // `int(f + divisor / 2) // divisor * divisor` in Python: truncation, then floor division.
    let rounded = ((scaled + divisor_f / 2.0) as usize / divisor) * divisor;
    let mut new_filters = min_depth.max(rounded);
    if (new_filters as f64) < 0.9 * scaled {
        new_filters += divisor;
    }
    new_filters
}

/// Scales a stage's repeat count by `depth`, rounding up (tensorflow/tpu `round_repeats`).
///
/// ```
/// use effnet_config::round_repeats;
/// assert_eq!(round_repeats(3, 3.1), 10);
/// assert_eq!(round_repeats(1, 1.0), 1);
/// ```
pub fn round_repeats(repeats: usize, depth: f64) -> usize {
    // Same float64 product as TF's `int(math.ceil(multiplier * repeats))`, noise included
    // (1.2 * 5 = 6.000000000000001 rounds up to 7 there too).
    (depth * repeats as f64).ceil() as usize
}

/// The compound-scaling constants of the paper (§3.3): depth `α^φ`, width `β^φ`,
/// resolution `γ^φ`, found by grid search at φ = 1 under `α·β²·γ² ≈ 2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompoundCoefficients {
    /// Depth base α (paper: 1.2).
    pub alpha: f64,
    /// Width base β (paper: 1.1).
    pub beta: f64,
    /// Resolution base γ (paper: 1.15).
    pub gamma: f64,
}

impl Default for CompoundCoefficients {
    fn default() -> Self {
        Self { alpha: 1.2, beta: 1.1, gamma: 1.15 }
    }
}

/// Width, depth and resolution multipliers of a network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    /// Channel multiplier.
    pub width: f64,
    /// Repeat multiplier.
    pub depth: f64,
    /// Input resolution in pixels.
    pub resolution: usize,
}

impl CompoundCoefficients {
    /// The paper's formula for a free compound coefficient φ, from a base network at
    /// `base_resolution` (224 for B0).
    ///
    /// The released B1–B7 do **not** follow φ = 1..7: their coefficients were hand-picked (for
    /// example B7 is width 2.0, depth 3.1, 600 px where φ = 7 gives 1.949, 3.583, 596 px), so the
    /// official variants use the table in [`crate::Variant`] instead of this formula.
    ///
    /// ```
    /// use effnet_config::CompoundCoefficients;
    /// let s = CompoundCoefficients::default().scale(1.0, 224);
    /// assert_eq!((s.width, s.depth, s.resolution), (1.1, 1.2, 258));
    /// ```
    pub fn scale(&self, phi: f64, base_resolution: usize) -> Scaling {
        Scaling {
            width: self.beta.powf(phi),
            depth: self.alpha.powf(phi),
            resolution: (base_resolution as f64 * self.gamma.powf(phi)).round() as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_filters_matches_tf() {
        // Hand-checked against tensorflow/tpu efficientnet_model.round_filters.
        assert_eq!(round_filters(16, 1.1, 8, None), 16);
        assert_eq!(round_filters(40, 1.1, 8, None), 48);
        assert_eq!(round_filters(80, 1.1, 8, None), 88);
        assert_eq!(round_filters(112, 1.1, 8, None), 120);
        assert_eq!(round_filters(192, 1.1, 8, None), 208);
        assert_eq!(round_filters(320, 1.1, 8, None), 352);
        assert_eq!(round_filters(32, 1.2, 8, None), 40);
        assert_eq!(round_filters(1280, 4.3, 8, None), 5504);
        assert_eq!(round_filters(32, 4.3, 8, None), 136);
        // min_depth and the 0.9 rule at small widths.
        assert_eq!(round_filters(16, 0.25, 8, None), 8);
        assert_eq!(round_filters(40, 0.25, 8, None), 16);
        assert_eq!(round_filters(16, 0.25, 8, Some(16)), 16);
        assert_eq!(round_filters(24, 0.5, 8, None), 16);
        assert_eq!(round_filters(80, 0.25, 8, None), 24);
    }

    #[test]
    fn round_repeats_is_ceil() {
        assert_eq!(round_repeats(2, 1.1), 3);
        assert_eq!(round_repeats(4, 1.1), 5);
        assert_eq!(round_repeats(3, 1.4), 5);
        assert_eq!(round_repeats(4, 3.1), 13);
        assert_eq!(round_repeats(1, 0.5), 1);
        assert_eq!(round_repeats(3, 0.5), 2);
        assert_eq!(round_repeats(1, 5.3), 6);
    }

    #[test]
    fn phi_formula() {
        let c = CompoundCoefficients::default();
        let s = c.scale(7.0, 224);
        assert!((s.width - 1.948_717_1).abs() < 1e-6);
        assert!((s.depth - 3.583_180_8).abs() < 1e-6);
        assert_eq!(s.resolution, 596);
        let s0 = c.scale(0.0, 224);
        assert_eq!((s0.width, s0.depth, s0.resolution), (1.0, 1.0, 224));
        // α·β²·γ² ≈ 2: FLOPs roughly double per unit of φ.
        let flops = c.alpha * c.beta * c.beta * c.gamma * c.gamma;
        assert!((flops - 1.92).abs() < 0.01);
    }
}

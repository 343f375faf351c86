//! Two TensorFlow conventions resolved into the [`crate::Architecture`] once, so that model and
//! training only read them: the per-block drop-connect schedule and TF → burn BatchNorm momentum.

/// Converts TensorFlow's BatchNorm momentum (`running = m·running + (1−m)·batch`, TF default
/// 0.99) to burn's and PyTorch's (`running = (1−m)·running + m·batch`): `1 − m`.
///
/// The single most common EfficientNet porting mistake is passing 0.99 to PyTorch/burn, which
/// makes the running statistics follow the last batch almost exactly.
pub fn tf_bn_momentum_to_burn(tf_momentum: f64) -> f64 {
    assert!((0.0..=1.0).contains(&tf_momentum), "TF BatchNorm momentum {tf_momentum} must be in [0, 1]");
    1.0 - tf_momentum
}

/// Per-block stochastic-depth rates: block `i` of `n` gets `rate · i / n` (tensorflow/tpu,
/// timm and Keras all use this schedule, so the first block never drops). `progress` in
/// `[0, 1]` ramps the whole schedule linearly over training; pass 1.0 for no ramp.
pub fn drop_connect_rates(rate: f64, num_blocks: usize, progress: f64) -> Vec<f64> {
    let scale = progress.clamp(0.0, 1.0);
    (0..num_blocks).map(|i| rate * scale * i as f64 / num_blocks as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_conversion() {
        assert!((tf_bn_momentum_to_burn(0.99) - 0.01).abs() < 1e-15);
        assert!((tf_bn_momentum_to_burn(0.9) - 0.1).abs() < 1e-15);
        assert_eq!(tf_bn_momentum_to_burn(1.0), 0.0);
    }

    #[test]
    fn b0_drop_connect_schedule() {
        let r = drop_connect_rates(0.2, 16, 1.0);
        assert_eq!(r.len(), 16);
        assert_eq!(r[0], 0.0);
        assert!((r[1] - 0.0125).abs() < 1e-12);
        assert!((r[8] - 0.1).abs() < 1e-12);
        assert!((r[15] - 0.1875).abs() < 1e-12);
        let half = drop_connect_rates(0.2, 16, 0.5);
        assert!((half[15] - 0.09375).abs() < 1e-12);
        assert_eq!(drop_connect_rates(0.2, 16, 0.0), vec![0.0; 16]);
    }
}

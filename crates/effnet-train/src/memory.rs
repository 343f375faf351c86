//! A memory check before the first allocation: what a set-up needs at least (from the stage
//! table, [`Architecture::activation_floats`]) against what the machine has, so that a batch or
//! an image size that cannot fit is one line naming what to change instead of an abort
//! ("memory allocation of … failed") minutes later.

use effnet_config::Architecture;

/// The least bytes that training `arch` at `resolution` with `batch` images per step needs on
/// the CPU: the kept activations of the batch, and the parameters with their gradients and two
/// optimizer moments.
pub fn training_bytes(arch: &Architecture, resolution: usize, batch: usize) -> u64 {
    let (sum, _) = arch.activation_floats(resolution);
    let params = arch.param_count() as u64;
    4u64.saturating_mul(sum.saturating_mul(batch as u64).saturating_add(params.saturating_mul(4)))
}

/// The least bytes that a forward pass of `batch` images needs: the parameters, and the largest
/// layer's input and output.
pub fn inference_bytes(arch: &Architecture, resolution: usize, batch: usize) -> u64 {
    let (_, largest) = arch.activation_floats(resolution);
    4u64.saturating_mul(
        largest.saturating_mul(2).saturating_mul(batch as u64).saturating_add(arch.param_count() as u64),
    )
}

/// Bytes the machine can still give: `MemAvailable` plus free swap (`/proc/meminfo`); `None`
/// where that is unknown (then nothing is refused).
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kb| kb * 1024)
    };
    Some(field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0)))
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// `Err` (one line: what `what` needs, what there is, what to change) when `needed` exceeds
/// `available`.
pub fn check_fits(what: &str, needed: u64, available: Option<u64>, change: &str) -> Result<(), String> {
    match available {
        Some(have) if needed > have => Err(format!(
            "{what} needs at least {} of memory, but this machine has {} available; {change}",
            gb(needed),
            gb(have)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use effnet_config::Variant;

    #[test]
    fn estimates_refuse_what_cannot_fit_and_pass_what_does() {
        let b0 = Architecture::variant(Variant::B0);
        // B0 at 224², batch 16: a few hundred MB; the estimate is a lower bound, well below 8 GB.
        let small = training_bytes(&b0, 224, 16);
        assert!(small > 100_000_000 && small < 8_000_000_000, "{small}");
        assert!(check_fits("x", small, Some(8 << 30), "y").is_ok());
        // image_size 4096 with batch 64: hundreds of GB.
        let huge = training_bytes(&b0, 4096, 64);
        assert!(huge > 200_000_000_000, "{huge}");
        let e = check_fits("training at image_size 4096, batch 64", huge, Some(128 << 30), "lower train.batch_size")
            .unwrap_err();
        assert!(e.contains("needs at least") && e.contains("137.4 GB available") && e.contains("lower"), "{e}");
        // A million classes: 1.3 G classifier parameters, with gradients and moments.
        let mut wide = b0.clone();
        wide.num_classes = 1_000_000;
        assert!(training_bytes(&wide, 224, 1) > 20_000_000_000);
        assert!(inference_bytes(&b0, 224, 1) < training_bytes(&b0, 224, 1));
        // Unknown memory: nothing refused.
        assert!(check_fits("x", u64::MAX, None, "y").is_ok());
    }
}

//! Which of burn's kernel fusions effnet leaves on for the GPU backends (wgpu, vulkan, cuda).
//!
//! burn 0.22.1's fused reductions (`burn-cubecl-fusion`'s `Reduce` optimization, which folds
//! the element-wise ops before and after a sum/mean into the reduction kernel) fail to expand
//! for a training step of this network: cubecl panics with "Cast element count must match if
//! input is not scalar" (cubecl-core 0.11.3 `frontend/element/cast.rs:56`) in
//! `ReduceKernelFused` → `engine::codegen::io::read_output`. That function reads a tensor that
//! the same fused block wrote, with the block's vector width, without the width conversion that
//! its sibling `write` does (`write_output_aligned`); BatchNorm's batch statistics in training
//! (a mean, then the mean of squared deviations from it, whose inputs are fused outputs of
//! different vector widths) meet it. See README "Known issues" for the minimal reproduction.
//!
//! Removing that one optimization is sound: the reductions then run as burn's plain reduce
//! kernels while element-wise chains, matmuls and the rest stay fused. burn only lets the set
//! of optimizations change before its fusion service starts, so this runs when the first GPU
//! device is made (before any tensor op).

use effnet_config::Invalid;

/// The burn-cubecl fusion optimizations turned off by default (names from
/// `burn_cubecl::fusion::BUILTIN_NAMES`).
pub const DISABLED: [&str; 1] = ["Reduce"];

/// The environment variable that overrides the choice: `off` turns every fusion off (each op its
/// own kernel: what a software Vulkan such as lavapipe compiles fastest, so CI's wgpu tests use
/// it), `burn` leaves burn's full set on (the fused reduction included, to reproduce its bug).
pub const ENV: &str = "EFFNET_GPU_FUSION";

/// Which fusions run on the GPU backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusionChoice {
    /// burn's fusions without [`DISABLED`].
    Default,
    /// None.
    Off,
    /// All of burn's.
    Burn,
}

impl FusionChoice {
    /// The choice `EFFNET_GPU_FUSION` names (unset or empty: [`FusionChoice::Default`]).
    pub fn from_env() -> Result<Self, Invalid> {
        match std::env::var(ENV).unwrap_or_default().as_str() {
            "" | "default" => Ok(Self::Default),
            "off" => Ok(Self::Off),
            "burn" => Ok(Self::Burn),
            other => Err(Invalid::new(ENV, format!("\"{other}\""), "expected default, off or burn")),
        }
    }

    /// The burn-cubecl optimizations this choice removes.
    pub fn removed(self) -> Vec<&'static str> {
        match self {
            Self::Default => DISABLED.to_vec(),
            #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
            Self::Off => burn_cubecl::fusion::BUILTIN_NAMES.to_vec(),
            #[cfg(not(any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
            Self::Off => Vec::new(),
            Self::Burn => Vec::new(),
        }
    }
}

/// Applies [`FusionChoice::from_env`], once per process, before the first GPU device is made.
/// Later calls, and calls after a tensor op has started burn's fusion service, change nothing.
pub fn configure() -> Result<(), Invalid> {
    let choice = FusionChoice::from_env()?;
    #[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            for name in choice.removed() {
                // `ServiceRunning` only: a caller ran GPU ops before asking for a device here;
                // the fusions then stay as burn set them.
                let _ = burn_cubecl::fusion::remove(name);
            }
        });
    }
    let _ = choice;
    Ok(())
}

#[cfg(all(test, any(feature = "wgpu", feature = "vulkan", feature = "cuda")))]
mod tests {
    use super::*;

    /// A rename upstream would make `remove` a silent no-op ("removing a name that matches
    /// nothing is not an error"): the names must be burn's.
    #[test]
    fn disabled_fusions_are_burn_builtins() {
        for name in DISABLED {
            assert!(
                burn_cubecl::fusion::BUILTIN_NAMES.contains(&name),
                "{name} not in {:?}",
                burn_cubecl::fusion::BUILTIN_NAMES
            );
        }
        assert_eq!(FusionChoice::Off.removed().len(), burn_cubecl::fusion::BUILTIN_NAMES.len());
        assert!(FusionChoice::Burn.removed().is_empty());
    }
}

//! Which kernel families are on: a [`KernelSelection`] handed down once per process (the cli's
//! `--kernels`, a test), `EFFNET_KERNELS` until then, every kernel by default.

use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

/// One switch per kernel family, to measure each one's contribution in the same build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kernel {
    /// SiLU and sigmoid.
    Activation = 1,
    Depthwise = 2,
    BatchNorm = 4,
    /// 1×1 convolutions as one GEMM per sample.
    Pointwise = 8,
    /// Squeeze-excitation: the whole block as one op (squeeze, gates, rescale; with the
    /// activation kernels on), and the rescale alone.
    ChannelScale = 16,
    /// Inference only: BN folded into the 1×1/depthwise conv outputs with the activation,
    /// SE's squeeze/rescale and the residual add fused in (see `fused.rs`).
    Fused = 32,
    /// Training: the blocks on channels-last activations (see `layout.rs`, `channels_last/`).
    ChannelsLast = 64,
}

impl Kernel {
    pub const ALL: [Kernel; 7] = [
        Kernel::Activation,
        Kernel::Depthwise,
        Kernel::BatchNorm,
        Kernel::Pointwise,
        Kernel::ChannelScale,
        Kernel::Fused,
        Kernel::ChannelsLast,
    ];

    fn name(self) -> &'static str {
        match self {
            Kernel::Activation => "activation",
            Kernel::Depthwise => "depthwise",
            Kernel::BatchNorm => "batchnorm",
            Kernel::Pointwise => "pointwise",
            Kernel::ChannelScale => "scale",
            Kernel::Fused => "fused",
            Kernel::ChannelsLast => "channels-last",
        }
    }
}

/// A set of kernel families: `all`, `burn` (none: burn's own ops everywhere) or a
/// comma-separated list of `activation`, `depthwise`, `batchnorm`, `pointwise`, `scale`, `fused`,
/// `channels-last` (see [`FromStr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSelection(u8);

impl KernelSelection {
    /// Every kernel (the default).
    pub const ALL: KernelSelection = KernelSelection(1 | 2 | 4 | 8 | 16 | 32 | 64);
    /// None: burn's own ops everywhere.
    pub const NONE: KernelSelection = KernelSelection(0);

    /// Exactly `kernels`.
    pub fn of(kernels: &[Kernel]) -> Self {
        Self(kernels.iter().fold(0, |m, k| m | *k as u8))
    }

    /// Whether `kernel` is in the set.
    pub fn contains(self, kernel: Kernel) -> bool {
        self.0 & kernel as u8 != 0
    }

    /// The kernels in the set, in [`Kernel::ALL`]'s order.
    pub fn kernels(self) -> Vec<Kernel> {
        Kernel::ALL.into_iter().filter(|k| self.contains(*k)).collect()
    }
}

impl FromStr for KernelSelection {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        match spec.trim() {
            "all" | "effnet" | "" => Ok(Self::ALL),
            "burn" | "none" => Ok(Self::NONE),
            list => list
                .split(',')
                .map(|name| {
                    Kernel::ALL.into_iter().find(|k| k.name() == name.trim()).ok_or_else(|| {
                        format!("unknown kernel `{name}` (expected all, burn, or a list of activation, depthwise, batchnorm, pointwise, scale, fused, channels-last)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|ks| Self::of(&ks)),
        }
    }
}

/// Bit 7 set: not yet read from the environment.
const UNREAD: u8 = 0x80;
static MASK: AtomicU8 = AtomicU8::new(UNREAD);

/// The selection in force: the last [`set_kernel_selection`], else `EFFNET_KERNELS` (as in
/// [`KernelSelection`]'s `FromStr`; an unreadable value keeps every kernel on).
pub fn kernel_selection() -> KernelSelection {
    let m = MASK.load(Ordering::Relaxed);
    if m & UNREAD == 0 {
        return KernelSelection(m);
    }
    let selected = std::env::var("EFFNET_KERNELS").ok().and_then(|v| v.parse().ok()).unwrap_or(KernelSelection::ALL);
    MASK.store(selected.0, Ordering::Relaxed);
    selected
}

/// Switches exactly `selection` on for the whole process (benchmarks and parity tests compare
/// the paths in one run).
pub fn set_kernel_selection(selection: KernelSelection) {
    MASK.store(selection.0, Ordering::Relaxed);
}

/// Whether `kernel` is switched on (see [`kernel_selection`]).
pub fn is_enabled(kernel: Kernel) -> bool {
    kernel_selection().contains(kernel)
}

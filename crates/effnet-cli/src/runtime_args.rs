//! `--backend` and `--devices`: the command line's override of `[runtime]`.

use anyhow::{Result, anyhow, bail};
use burn::prelude::Device;
use effnet_config::{BackendKind, EffnetConfig, Precision, RuntimeConfig, parse_device_list};
use effnet_train::devices::{compiled_in, devices_for, missing_feature_message};
use std::path::Path;

/// Device indices as given to `--devices` (`0` or `0,1`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceList(pub Vec<usize>);

fn parse_devices(s: &str) -> Result<DeviceList, String> {
    let v = parse_device_list(s)?;
    if v.is_empty() {
        return Err("needs at least one device".into());
    }
    Ok(DeviceList(v))
}

/// Backend and devices; each overrides the config's `[runtime]` key of the same name.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RuntimeArgs {
    /// Compute backend: flex, ndarray, wgpu, vulkan or cuda (overrides [runtime] backend; all
    /// but flex need the cargo feature of the same name).
    #[arg(long, value_parser = |s: &str| s.parse::<BackendKind>())]
    pub backend: Option<BackendKind>,
    /// Device indices, e.g. `0` or `0,1` (overrides [runtime] devices). Training splits the
    /// global batch over them; inference uses the first.
    #[arg(long, value_parser = parse_devices)]
    pub devices: Option<DeviceList>,
}

impl RuntimeArgs {
    /// Writes the overrides into `runtime`; refuses a backend this binary lacks by its flag.
    fn override_runtime(&self, runtime: &mut RuntimeConfig) -> Result<()> {
        if let Some(b) = self.backend {
            if !compiled_in(b) {
                bail!("--backend {b}: {}", missing_feature_message(b));
            }
            runtime.backend = b;
        }
        if let Some(DeviceList(d)) = &self.devices {
            runtime.devices = d.clone();
        }
        Ok(())
    }

    /// Applies the overrides to a loaded config (read from `file`) and validates it again.
    pub fn apply(&self, cfg: &mut EffnetConfig, file: &Path) -> Result<()> {
        self.override_runtime(&mut cfg.runtime)?;
        if self.backend.is_some() || self.devices.is_some() {
            cfg.validate().map_err(|e| anyhow!("{} (with the --backend/--devices given)", e.in_file(file)))?;
        }
        Ok(())
    }

    /// The inference device: the first of `[runtime]` (of `config`, if any, else the default
    /// flex device) after the overrides.
    pub fn device(&self, config: Option<&Path>) -> Result<Device> {
        let mut runtime = match config {
            Some(path) => EffnetConfig::load(path)?.runtime,
            None => RuntimeConfig::default(),
        };
        self.override_runtime(&mut runtime)?;
        let mut devices = devices_for(&runtime).map_err(|e| match config {
            Some(path) => anyhow!("{}", e.in_file(path)),
            None => anyhow!("{}: {}", e.key, e.reason),
        })?;
        Ok(devices.swap_remove(0))
    }
}

/// `--precision` of the inference commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PrecisionArg {
    /// Inference precision: f32, bf16 or f16 (overrides [runtime] precision). The weights and
    /// inputs are cast; logits are read back as f32.
    #[arg(long, value_parser = |s: &str| s.parse::<Precision>())]
    pub precision: Option<Precision>,
}

impl PrecisionArg {
    /// The flag, else `[runtime] precision` of `config` (if any), else f32.
    pub fn resolve(&self, config: Option<&EffnetConfig>) -> Precision {
        self.precision.or(config.map(|c| c.runtime.precision)).unwrap_or(Precision::F32)
    }
}

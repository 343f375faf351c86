//! `--backend` and `--devices`: the command line's override of `[runtime]`.

use anyhow::{Result, anyhow, bail};
use burn::prelude::Device;
use effnet_config::{BackendKind, DeviceSpec, EffnetConfig, Precision, RuntimeConfig, parse_device_list};
use effnet_train::devices::{compiled_in, devices_for, missing_feature_message};
use std::path::Path;

/// Devices as given to `--devices`: indices (`0` or `0,1`) or server addresses
/// (`ws://a:29501,ws://b:29501/1`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceList(pub Vec<DeviceSpec>);

impl DeviceList {
    /// Whether every entry is a server address (`--devices ws://…` alone then means
    /// `--backend remote`).
    fn all_remote(&self) -> bool {
        self.0.iter().all(|d| matches!(d, DeviceSpec::Remote(_)))
    }
}

pub(crate) fn parse_devices(s: &str) -> Result<DeviceList, String> {
    let v = parse_device_list(s)?;
    if v.is_empty() {
        return Err("needs at least one device".into());
    }
    Ok(DeviceList(v))
}

/// Backend and devices; each overrides the config's `[runtime]` key of the same name.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RuntimeArgs {
    /// Compute backend: flex, ndarray, wgpu, vulkan, cuda or remote (overrides [runtime] backend;
    /// all but flex need the cargo feature of the same name).
    #[arg(long, value_parser = |s: &str| s.parse::<BackendKind>())]
    pub backend: Option<BackendKind>,
    /// Device indices, e.g. `0` or `0,1`, or `effnet serve` addresses, e.g.
    /// `ws://10.0.0.1:29501,ws://10.0.0.2:29501/1` (implies --backend remote) (overrides
    /// [runtime] devices). Training splits the global batch over them; inference uses the first.
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
        if let Some(list) = &self.devices {
            if self.backend.is_none() && list.all_remote() {
                if !compiled_in(BackendKind::Remote) {
                    bail!("--devices {}: {}", list_text(list), missing_feature_message(BackendKind::Remote));
                }
                runtime.backend = BackendKind::Remote;
            }
            runtime.devices = list.0.clone();
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

/// The list as typed: `ws://a:29501,ws://b:29501`.
fn list_text(list: &DeviceList) -> String {
    let items: Vec<String> = list
        .0
        .iter()
        .map(|d| match d {
            DeviceSpec::Index(i) => i.to_string(),
            DeviceSpec::Remote(s) => s.clone(),
        })
        .collect();
    items.join(",")
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

/// `precision` if `backend` computes in it (bf16 on wgpu is refused, see
/// `effnet_train::precision::check_backend_precision`), as a one-line error otherwise.
pub fn checked_precision(precision: Precision, backend: BackendKind) -> anyhow::Result<Precision> {
    effnet_train::precision::check_backend_precision(backend, precision)
        .map_err(|e| anyhow::anyhow!("--precision {}: {}", e.value, e.reason))?;
    Ok(precision)
}

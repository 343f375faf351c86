//! `[runtime]`: backend, devices, precision, run directory.

use super::device::{DeviceSpec, RemoteDevice, format_device_list};
use crate::error::Invalid;
use serde::{Deserialize, Serialize};

/// Compute backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// burn's flex CPU backend (default).
    Flex,
    /// burn's ndarray CPU backend (cargo feature `ndarray`).
    Ndarray,
    /// wgpu on the best adapter (cargo feature `wgpu`).
    Wgpu,
    /// wgpu pinned to Vulkan (cargo feature `vulkan`).
    Vulkan,
    /// CUDA (cargo feature `cuda`).
    Cuda,
    /// Devices hosted by `effnet serve` processes, addressed as `ws://HOST:PORT[/INDEX]`
    /// (cargo feature `remote`).
    Remote,
}

impl BackendKind {
    /// Every backend, in the order they are listed to users.
    pub const ALL: [BackendKind; 6] = [
        BackendKind::Flex,
        BackendKind::Ndarray,
        BackendKind::Wgpu,
        BackendKind::Vulkan,
        BackendKind::Cuda,
        BackendKind::Remote,
    ];

    /// The name used in TOML, on the command line and as the cargo feature.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Vulkan => "vulkan",
            BackendKind::Cuda => "cuda",
            BackendKind::Remote => "remote",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|b| b.name()).collect();
            format!("unknown backend {s:?}: expected one of {}", names.join(", "))
        })
    }
}

/// Numeric precision: of inference (weights and activations cast), and of training
/// (mixed precision: f32 weights, bf16/f16 compute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// 32-bit floats (default).
    F32,
    /// bfloat16 weights and activations (inference).
    Bf16,
    /// IEEE half precision weights and activations (inference).
    F16,
}

impl Precision {
    /// Every precision.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// The name used in TOML and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision {s:?}: expected one of f32, bf16, f16"))
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub backend: BackendKind,
    /// Devices for data-parallel training (one entry = one device; the first is the main
    /// device): indices of the local backend, or with `backend = "remote"` server addresses
    /// `ws://HOST:PORT[/INDEX]`. Inference uses the first.
    pub devices: Vec<DeviceSpec>,
    pub precision: Precision,
    /// Directory for the run's outputs.
    pub run_dir: String,
    /// Seconds without a finished training or validation step after which `effnet train` stops
    /// with an error instead of waiting on; 0 = never. Unset: 600 with remote devices (a server
    /// that failed can leave the driver waiting for a reply that never comes), never otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_timeout_s: Option<u64>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::Flex,
            devices: vec![DeviceSpec::Index(0)],
            precision: Precision::F32,
            run_dir: "runs/default".into(),
            stall_timeout_s: None,
        }
    }
}

impl RuntimeConfig {
    /// Default of [`Self::stall_timeout_s`] for runs on remote devices.
    pub const REMOTE_STALL_TIMEOUT_S: u64 = 600;

    /// How long a training run may go without finishing a step (see [`Self::stall_timeout_s`]).
    pub fn stall_timeout(&self) -> Option<std::time::Duration> {
        let default = (self.backend == BackendKind::Remote).then_some(Self::REMOTE_STALL_TIMEOUT_S);
        self.stall_timeout_s.or(default).filter(|&s| s > 0).map(std::time::Duration::from_secs)
    }

    /// Checks of `[runtime]`: a non-empty list of distinct devices of the chosen backend, a run
    /// directory.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.devices.is_empty() {
            return Err(Invalid::new("runtime.devices", "[]", "needs at least one device"));
        }
        let remote = self.backend == BackendKind::Remote;
        for d in &self.devices {
            match d {
                DeviceSpec::Index(_) if remote => {
                    return Err(Invalid::new(
                        "runtime.devices",
                        d,
                        "runtime.backend = \"remote\" needs server addresses: \"ws://HOST:PORT\" (the server's device 0) or \"ws://HOST:PORT/INDEX\"",
                    ));
                }
                DeviceSpec::Remote(_) if !remote => {
                    return Err(Invalid::new(
                        "runtime.devices",
                        d,
                        format!("a server address needs runtime.backend = \"remote\" (not \"{}\")", self.backend),
                    ));
                }
                DeviceSpec::Remote(s) => {
                    RemoteDevice::parse(s).map_err(|reason| Invalid::new("runtime.devices", d, reason))?;
                }
                DeviceSpec::Index(_) => {}
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if self.devices[..i].iter().any(|e| e.canonical() == d.canonical()) {
                return Err(Invalid::new(
                    "runtime.devices",
                    format_device_list(&self.devices),
                    format!("device {} is listed twice", d.canonical()),
                ));
            }
        }
        if self.run_dir.trim().is_empty() {
            return Err(Invalid::new("runtime.run_dir", "\"\"", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_parse as parse;

    #[test]
    fn remote_devices_need_the_remote_backend_and_valid_addresses() {
        let c = parse("[runtime]\nbackend = \"remote\"\ndevices = [\"ws://a:29501\", \"ws://b:29501/1\"]\n").unwrap();
        let remote: Vec<String> = c.runtime.devices.iter().map(|d| d.remote().unwrap().to_string()).collect();
        assert_eq!(remote, ["ws://a:29501/0", "ws://b:29501/1"]);
        let cases = [
            (
                "[runtime]\nbackend = \"remote\"\ndevices = [\"ws://a:29501\", \"ws//b:29501\"]\n",
                "cfg.toml: key `runtime.devices`: invalid value \"ws//b:29501\": expected ws://HOST:PORT (the server's device 0) or ws://HOST:PORT/INDEX",
            ),
            (
                "[runtime]\nbackend = \"remote\"\ndevices = [\"ws://a:99999\"]\n",
                "cfg.toml: key `runtime.devices`: invalid value \"ws://a:99999\": bad port \"99999\": expected 1-65535",
            ),
            (
                "[runtime]\nbackend = \"remote\"\ndevices = [0, 1]\n",
                "cfg.toml: key `runtime.devices`: invalid value 0: runtime.backend = \"remote\" needs server addresses: \"ws://HOST:PORT\" (the server's device 0) or \"ws://HOST:PORT/INDEX\"",
            ),
            (
                "[runtime]\ndevices = [\"ws://a:29501\"]\n",
                "cfg.toml: key `runtime.devices`: invalid value \"ws://a:29501\": a server address needs runtime.backend = \"remote\" (not \"flex\")",
            ),
            (
                "[runtime]\nbackend = \"remote\"\ndevices = [\"ws://a:29501\", \"ws://a:29501/0\"]\n",
                "cfg.toml: key `runtime.devices`: invalid value [\"ws://a:29501\", \"ws://a:29501/0\"]: device ws://a:29501/0 is listed twice",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want);
        }
        let e = parse("[runtime]\ndevices = [-1]\n").unwrap_err();
        assert_eq!(e.key(), Some("runtime.devices[0]"), "{e}");
    }

    #[test]
    fn stall_timeout_defaults_to_ten_minutes_on_remote_devices_only() {
        use std::time::Duration;
        let remote = "[runtime]\nbackend = \"remote\"\ndevices = [\"ws://a:1\"]\n";
        assert_eq!(parse("").unwrap().runtime.stall_timeout(), None);
        assert_eq!(parse(remote).unwrap().runtime.stall_timeout(), Some(Duration::from_secs(600)));
        assert_eq!(parse(&format!("{remote}stall_timeout_s = 0\n")).unwrap().runtime.stall_timeout(), None);
        let local = parse("[runtime]\nstall_timeout_s = 30\n").unwrap();
        assert_eq!(local.runtime.stall_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(parse(&toml::to_string(&local).unwrap()).unwrap(), local, "the key survives the resolved config");
        let e = parse("[runtime]\nstall_timeout_s = -1\n").unwrap_err().to_string();
        assert!(e.contains("runtime.stall_timeout_s"), "{e}");
    }
}

//! The effnet TOML schema: `[model]`, `[data]`, `[train]`, `[optim]`, `[schedule]`, `[runtime]`,
//! one file per section, each validating its own keys; checks that span sections live in
//! [`EffnetConfig::validate`].
//!
//! Every section and key is optional and has a default; unknown keys are errors. Data flows one
//! way: TOML → [`EffnetConfig`] (validated) → [`Architecture`](crate::Architecture) → modules → training loop.

mod check;
mod data;
mod device;
mod model;
mod optim;
mod runtime;
mod train;

pub use data::{AugmentConfig, DataConfig, DatasetKind, Interpolation, LabelKind};
pub use device::{DeviceSpec, RemoteDevice, format_device_list, parse_device_list};
pub use model::{ModelConfig, VariantChoice};
pub use optim::{OptimConfig, OptimizerKind, ScheduleConfig, ScheduleKind};
pub use runtime::{BackendKind, Precision, RuntimeConfig};
pub use train::TrainConfig;

use crate::error::{ConfigError, Invalid};
use check::in_range_f64;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A whole effnet config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EffnetConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub optim: OptimConfig,
    pub schedule: ScheduleConfig,
    pub runtime: RuntimeConfig,
}

impl EffnetConfig {
    /// Parses and validates TOML text; `file` is only used in messages.
    pub fn from_toml_str(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| parse_error(file, text, None, &e))?;
        let cfg: EffnetConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = (path != "." && !path.is_empty()).then_some(path);
            parse_error(file, text, key, e.inner())
        })?;
        cfg.validate().map_err(|e| e.in_file(file))?;
        Ok(cfg)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        // A regular file of at most 64 MB: a FIFO would block, /dev/zero would fill the memory.
        let text = crate::fsio::read_text_capped(path, crate::fsio::MAX_TEXT_FILE)
            .map_err(|source| ConfigError::Io { file: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, path)
    }

    /// Range and consistency checks: each section's own keys, in file order, then the checks
    /// that span sections.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.model.validate()?;
        self.data.validate()?;
        self.train.validate()?;
        self.optim.validate()?;
        self.schedule.validate()?;
        self.runtime.validate()?;
        self.validate_across_sections()
    }

    /// The config with every default written out, as a run directory's `config.toml` records
    /// it: `[data] mean/std` as training used them (see [`DataConfig::normalization`]), so that
    /// `predict --run` normalises as training did.
    pub fn resolved(&self) -> Self {
        let mut out = self.clone();
        let n = self.data.normalization();
        (out.data.mean, out.data.std) = (Some(n.mean), Some(n.std));
        out
    }

    /// The checks whose bounds come from another section.
    fn validate_across_sections(&self) -> Result<(), Invalid> {
        let (t, s) = (&self.train, &self.schedule);
        in_range_f64("schedule.warmup_epochs", s.warmup_epochs, 0.0, t.epochs as f64)?;
        in_range_f64("schedule.min_lr", s.min_lr, 0.0, self.optim.lr)?;
        let devices = self.runtime.devices.len();
        if !t.batch_size.is_multiple_of(devices) {
            return Err(Invalid::new(
                "train.batch_size",
                t.batch_size,
                format!("must be divisible by the {devices} devices in runtime.devices"),
            ));
        }
        Ok(())
    }
}

fn parse_error(file: &Path, text: &str, key: Option<String>, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    ConfigError::Parse {
        file: file.to_path_buf(),
        line,
        column,
        key,
        message: crate::error::cut(e.message().trim().to_string(), 1000),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses and validates `text` as `cfg.toml`, for the section tests.
#[cfg(test)]
fn test_parse(text: &str) -> Result<EffnetConfig, ConfigError> {
    EffnetConfig::from_toml_str(text, Path::new("cfg.toml"))
}

#[cfg(test)]
mod tests {
    use super::test_parse as parse;
    use super::*;

    #[test]
    fn a_huge_bad_value_is_not_echoed_whole() {
        let e = parse(&format!("[model]\nvariant = \"{}\"\n", "x".repeat(1_000_000))).unwrap_err().to_string();
        assert!(e.len() < 1500 && e.contains("model.variant"), "{} bytes", e.len());
    }

    #[test]
    fn empty_file_is_b0_defaults() {
        let c = parse("").unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!(a.name, "b0");
        assert_eq!(a.param_count(), 5_288_548);
        assert_eq!(c.model.bn_momentum, 0.99);
    }

    #[test]
    fn resolved_writes_out_the_normalisation() {
        let lite = parse("[model]\nvariant = \"lite0\"\n").unwrap();
        assert_eq!(lite.data.mean, None);
        let r = lite.resolved();
        assert_eq!((r.data.mean, r.data.std), (Some(crate::IMAGENET.mean), Some(crate::IMAGENET.std)));
        let b0 = parse("[data]\nstd = [0.5, 0.5, 0.5]\n").unwrap().resolved();
        assert_eq!((b0.data.mean, b0.data.std), (Some(crate::IMAGENET_MEAN), Some([0.5; 3])));
        // Written out, the resolved config reads back as itself.
        let text = toml::to_string_pretty(&r).unwrap();
        assert_eq!(parse(&text).unwrap(), r);
    }

    #[test]
    fn malformed_toml_names_file_and_line() {
        let e = parse("[model]\nvariant = \"b0\"\nwidth = = 2\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("cfg.toml:3:"), "{s}");
        assert!(matches!(e, ConfigError::Parse { line: 3, .. }));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[model]\nvariant = \"b0\"\nwidht = 1.2\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("cfg.toml:3:1: "), "{s}");
        assert!(s.contains("unknown field `widht`"), "{s}");
        assert!(s.contains("model"), "{s}");
        let e = parse("[modle]\nvariant = \"b0\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `modle`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("[train]\nepochs = \"ten\"\n").unwrap_err();
        assert_eq!(e.key(), Some("train.epochs"));
        assert!(e.to_string().starts_with("cfg.toml:2:10: key `train.epochs`: "), "{e}");
        let e = parse("[model]\npadding = \"valid\"\n").unwrap_err();
        assert_eq!(e.key(), Some("model.padding"));
        assert!(e.to_string().contains("tf-same"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let cases = [
            ("[model]\ndropout = 1.5\n", "cfg.toml: key `model.dropout`: invalid value 1.5: must be in [0, 1)"),
            ("[model]\nwidth = -1.0\n", "cfg.toml: key `model.width`: invalid value -1: must be between 0.01 and 20"),
            (
                "[model]\nvariant = \"b9\"\n",
                "cfg.toml: key `model.variant`: invalid value \"b9\": unknown variant `b9`; expected one of b0, b1, b2, b3, b4, b5, b6, b7, b8, l2, lite0, lite1, lite2, lite3, lite4, or custom",
            ),
            (
                "[model]\nvariant = \"b3\"\nphi = 1.0\n",
                "cfg.toml: key `model.phi`: invalid value 1: phi scales the φ = 0 base network; use variant = \"custom\" (or b0/lite0), not \"b3\"",
            ),
            (
                "[train]\nbatch_size = 0\n",
                "cfg.toml: key `train.batch_size`: invalid value 0: must be between 1 and 1048576",
            ),
            (
                "[optim]\nlr = 0.0\n",
                "cfg.toml: key `optim.lr`: invalid value 0: must be between 0.000000000001 and 100",
            ),
            (
                "[data.augment]\nscale = [0.9, 0.1]\n",
                "cfg.toml: key `data.augment.scale`: invalid value [0.9, 0.1]: needs 0 < min <= max <= 1",
            ),
            (
                "[runtime]\ndevices = [0, 1, 2]\n[train]\nbatch_size = 64\n",
                "cfg.toml: key `train.batch_size`: invalid value 64: must be divisible by the 3 devices in runtime.devices",
            ),
            (
                "[runtime]\ndevices = [0, 1, 0]\n[train]\nbatch_size = 63\n",
                "cfg.toml: key `runtime.devices`: invalid value [0, 1, 0]: device 0 is listed twice",
            ),
            // Bounds from another section.
            (
                "[train]\nepochs = 3\n[schedule]\nwarmup_epochs = 4.0\n",
                "cfg.toml: key `schedule.warmup_epochs`: invalid value 4: must be between 0 and 3",
            ),
            (
                "[optim]\nlr = 0.01\n[schedule]\nname = \"cosine\"\nmin_lr = 0.02\n",
                "cfg.toml: key `schedule.min_lr`: invalid value 0.02: must be between 0 and 0.01",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let c = parse("[model]\nvariant = \"lite2\"\n[optim]\nname = \"sgd\"\nnesterov = true\n").unwrap();
        let text = toml::to_string(&c).unwrap();
        let back = parse(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn phi_defaults_are_the_papers_coefficients_on_the_base_resolution() {
        let c = parse("[model]\nvariant = \"lite0\"\nphi = 1.0\n").unwrap();
        let a = c.model.architecture().unwrap();
        let s = crate::CompoundCoefficients::default().scale(1.0, crate::Variant::Lite0.params().resolution);
        assert_eq!((a.width, a.depth, a.resolution), (s.width, s.depth, s.resolution));
        assert_eq!((a.width, a.depth, a.resolution), (1.1, 1.2, 258));
    }
}

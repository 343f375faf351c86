//! The effnet TOML schema: `[model]`, `[data]`, `[train]`, `[optim]`, `[schedule]`, `[runtime]`.
//!
//! Every section and key is optional and has a default; unknown keys are errors. Data flows one
//! way: TOML → [`EffnetConfig`] (validated) → [`Architecture`] → modules → training loop.

use crate::arch::{Activation, Architecture, Padding, ScaleSpec};
use crate::blocks::{BlockArgs, decode_blocks};
use crate::error::{ConfigError, Invalid};
use crate::scaling::{CompoundCoefficients, DEFAULT_DEPTH_DIVISOR};
use crate::variant::{Family, Variant};
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

/// `[model]`: a variant, optionally a free φ, and overrides of any architecture field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `b0`…`b8`, `l2`, `lite0`…`lite4`, or `custom` (the B0 base, to scale with `phi` or
    /// explicit `width`/`depth`/`resolution`).
    pub variant: String,
    /// Free compound coefficient: width `β^φ`, depth `α^φ`, resolution `base_resolution·γ^φ`.
    /// Only with `variant = "custom"`, `"b0"` or `"lite0"` (the φ = 0 bases).
    pub phi: Option<f64>,
    /// Depth base α (default 1.2).
    pub alpha: Option<f64>,
    /// Width base β (default 1.1).
    pub beta: Option<f64>,
    /// Resolution base γ (default 1.15).
    pub gamma: Option<f64>,
    /// Resolution at φ = 0 (default 224).
    pub base_resolution: Option<usize>,
    /// Width multiplier; overrides the variant's and φ's.
    pub width: Option<f64>,
    /// Depth multiplier; overrides the variant's and φ's.
    pub depth: Option<f64>,
    /// Input resolution; overrides the variant's and φ's.
    pub resolution: Option<usize>,
    /// Dropout before the classifier; overrides the variant's.
    pub dropout: Option<f64>,
    /// Stochastic-depth ("drop connect") rate of the last block; block i of N gets rate·i/N.
    pub drop_connect_rate: f64,
    pub num_classes: usize,
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// `tf-same` (TF-born weights) or `symmetric` (PyTorch-born weights).
    pub padding: Padding,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
    /// BatchNorm momentum in **TensorFlow's** convention (0.99 = keep 99 % of the running value).
    /// effnet-train converts it to burn's (`1 − m`).
    pub bn_momentum: f64,
    /// `swish` or `relu6`; defaults to the family's.
    pub activation: Option<Activation>,
    /// Squeeze-excitation on/off; defaults to the family's (on for B*, off for Lite*).
    pub se: Option<bool>,
    /// Block strings replacing the B0 stage list.
    pub blocks: Option<Vec<String>>,
    /// Channel rounding divisor (8).
    pub depth_divisor: usize,
    /// Minimum channel count after rounding (default: the divisor).
    pub min_depth: Option<usize>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            variant: "b0".into(),
            phi: None,
            alpha: None,
            beta: None,
            gamma: None,
            base_resolution: None,
            width: None,
            depth: None,
            resolution: None,
            dropout: None,
            drop_connect_rate: 0.2,
            num_classes: 1000,
            in_channels: 3,
            padding: Padding::TfSame,
            bn_eps: 1e-3,
            bn_momentum: 0.99,
            activation: None,
            se: None,
            blocks: None,
            depth_divisor: DEFAULT_DEPTH_DIVISOR,
            min_depth: None,
        }
    }
}

/// What [`ModelConfig::variant`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantChoice {
    Released(Variant),
    Custom,
}

impl ModelConfig {
    /// A config for a released variant with every other field at its default.
    pub fn for_variant(v: Variant) -> Self {
        Self { variant: v.name().into(), ..Self::default() }
    }

    /// The variant named by `variant`.
    pub fn variant_choice(&self) -> Result<VariantChoice, Invalid> {
        if self.variant.eq_ignore_ascii_case("custom") {
            return Ok(VariantChoice::Custom);
        }
        self.variant
            .parse::<Variant>()
            .map(VariantChoice::Released)
            .map_err(|e| Invalid::new("model.variant", format!("{:?}", self.variant), format!("{e}, or custom")))
    }

    /// Validates the section and resolves it into the stage table.
    pub fn architecture(&self) -> Result<Architecture, Invalid> {
        let choice = self.variant_choice()?;
        let (base, family) = match choice {
            VariantChoice::Released(v) => (v.params(), v.family()),
            VariantChoice::Custom => (Variant::B0.params(), Family::Standard),
        };
        let (mut width, mut depth, mut resolution, dropout) = (base.width, base.depth, base.resolution, base.dropout);

        let coeffs = CompoundCoefficients {
            alpha: positive("model.alpha", self.alpha.unwrap_or(1.2))?,
            beta: positive("model.beta", self.beta.unwrap_or(1.1))?,
            gamma: positive("model.gamma", self.gamma.unwrap_or(1.15))?,
        };
        let any_coeff =
            self.alpha.is_some() || self.beta.is_some() || self.gamma.is_some() || self.base_resolution.is_some();
        match self.phi {
            Some(phi) => {
                if !phi.is_finite() || !(0.0..=20.0).contains(&phi) {
                    return Err(Invalid::new("model.phi", phi, "must be between 0 and 20"));
                }
                let is_base =
                    matches!(choice, VariantChoice::Custom | VariantChoice::Released(Variant::B0 | Variant::Lite0));
                if !is_base {
                    return Err(Invalid::new(
                        "model.phi",
                        phi,
                        format!(
                            "phi scales the φ = 0 base network; use variant = \"custom\" (or b0/lite0), not {:?}",
                            self.variant
                        ),
                    ));
                }
                let base_res = self.base_resolution.unwrap_or(224);
                in_range_usize("model.base_resolution", base_res, 8, 4096)?;
                let s = coeffs.scale(phi, base_res);
                (width, depth, resolution) = (s.width, s.depth, s.resolution);
            }
            None if any_coeff => {
                return Err(Invalid::new(
                    "model.phi",
                    "(unset)",
                    "alpha/beta/gamma/base_resolution only apply together with phi",
                ));
            }
            None => {}
        }
        if let Some(w) = self.width {
            width = w;
        }
        if let Some(d) = self.depth {
            depth = d;
        }
        if let Some(r) = self.resolution {
            resolution = r;
        }
        in_range_f64("model.width", width, 0.01, 20.0)?;
        in_range_f64("model.depth", depth, 0.01, 20.0)?;
        in_range_usize("model.resolution", resolution, 8, 4096)?;
        let dropout = self.dropout.unwrap_or(dropout);
        probability("model.dropout", dropout, false)?;
        probability("model.drop_connect_rate", self.drop_connect_rate, false)?;
        in_range_usize("model.num_classes", self.num_classes, 1, 1_000_000)?;
        in_range_usize("model.in_channels", self.in_channels, 1, 64)?;
        if !(self.bn_eps > 0.0 && self.bn_eps < 1.0) {
            return Err(Invalid::new("model.bn_eps", self.bn_eps, "must be in (0, 1)"));
        }
        probability("model.bn_momentum", self.bn_momentum, true)?;
        in_range_usize("model.depth_divisor", self.depth_divisor, 1, 1024)?;
        if let Some(m) = self.min_depth {
            in_range_usize("model.min_depth", m, 1, 100_000)?;
        }
        let blocks: Vec<BlockArgs> = match &self.blocks {
            Some(strings) if strings.is_empty() => {
                return Err(Invalid::new("model.blocks", "[]", "needs at least one block string"));
            }
            Some(strings) => {
                decode_blocks(strings).map_err(|e| Invalid::new("model.blocks", format!("{:?}", e.string), e.reason))?
            }
            None => crate::blocks::default_blocks(),
        };

        let name = match choice {
            VariantChoice::Released(v)
                if self.phi.is_none() && self.width.is_none() && self.depth.is_none() && self.blocks.is_none() =>
            {
                v.name().to_string()
            }
            VariantChoice::Released(v) => format!("{}-custom", v.name()),
            VariantChoice::Custom => match self.phi {
                Some(phi) => format!("custom-phi{phi}"),
                None => "custom".into(),
            },
        };
        let mut spec = ScaleSpec::new(&name, family, width, depth, resolution, dropout);
        spec.num_classes = self.num_classes;
        spec.in_channels = self.in_channels;
        spec.blocks = blocks;
        if let Some(a) = self.activation {
            spec.activation = a;
        }
        if let Some(se) = self.se {
            spec.se = se;
        }
        spec.padding = self.padding;
        spec.bn_eps = self.bn_eps;
        spec.depth_divisor = self.depth_divisor;
        spec.min_depth = self.min_depth;
        Ok(spec.build())
    }
}

/// Dataset formats effnet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// `cifar-100-binary/{train,test}.bin`.
    Cifar100,
    /// `cifar-100-python/{train,test,meta}`.
    Cifar100Python,
    /// `jpg/`, `imagelabels.mat`, `setid.mat`.
    Flowers102,
    /// `root/<class>/<image>`.
    Folder,
}

/// Which CIFAR-100 labels to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelKind {
    Fine,
    Coarse,
}

/// Image resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
}

/// `[data]`: where the images are and how they are augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Dataset root (relative paths are relative to the config file).
    pub path: String,
    /// CIFAR-100: fine (100) or coarse (20) labels.
    pub labels: LabelKind,
    /// Training and evaluation image size; defaults to the model's resolution.
    pub image_size: Option<usize>,
    /// Parallel decode/augment workers.
    pub num_workers: usize,
    /// ImageNet statistics by default (0–1 pixel scale).
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Evaluation: resize the short side to `image_size / crop_fraction`, then centre-crop.
    pub crop_fraction: f64,
    pub interpolation: Interpolation,
    pub augment: AugmentConfig,
    /// Skip (and count) undecodable images instead of failing.
    pub skip_corrupt: bool,
    /// Image folder without `train/`+`valid/` folders: a file (relative to the dataset root) of
    /// lines `<split> <class>/<image>` defining the splits.
    pub split_file: Option<String>,
    /// Image folder without split folders or `split_file`: the fraction of each class held out
    /// as `valid` (a fixed, seeded choice; 0 = no validation split).
    pub valid_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::Cifar100,
            path: "datasets/digits".into(),
            labels: LabelKind::Fine,
            image_size: None,
            num_workers: 2,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            crop_fraction: 0.875,
            interpolation: Interpolation::Bicubic,
            augment: AugmentConfig::default(),
            skip_corrupt: false,
            split_file: None,
            valid_fraction: 0.1,
        }
    }
}

/// `[data.augment]`: training-time augmentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Inception-style random-resized crop.
    pub random_resized_crop: bool,
    /// Area fraction range of the crop.
    pub scale: [f64; 2],
    /// Aspect ratio range of the crop.
    pub ratio: [f64; 2],
    /// Probability of a horizontal flip.
    pub hflip: f64,
    /// RandAugment: number of ops per image (0 = off).
    pub randaugment_n: usize,
    /// RandAugment magnitude (0–30, 10 = the paper's scale).
    pub randaugment_m: f64,
    /// Mixup Beta(α, α) (0 = off).
    pub mixup_alpha: f64,
    /// CutMix Beta(α, α) (0 = off).
    pub cutmix_alpha: f64,
    /// Probability of applying mixup/cutmix to a batch.
    pub mix_prob: f64,
    /// With both mixup and cutmix on: probability that a mixed batch uses cutmix.
    pub mix_switch_prob: f64,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            random_resized_crop: true,
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
            hflip: 0.5,
            randaugment_n: 0,
            randaugment_m: 9.0,
            mixup_alpha: 0.0,
            cutmix_alpha: 0.0,
            mix_prob: 1.0,
            mix_switch_prob: 0.5,
        }
    }
}

/// `[train]`: the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Global batch size (split over devices).
    pub batch_size: usize,
    pub seed: u64,
    pub label_smoothing: f64,
    /// Steps of gradient accumulation per optimizer step (their gradients are averaged).
    pub grad_accumulation: usize,
    /// Clip each gradient's L2 norm (unset = off).
    pub grad_clip_norm: Option<f64>,
    /// EMA decay of the weights (unset = no EMA; the paper uses 0.9999).
    pub ema_decay: Option<f64>,
    /// Ramp the drop-connect rate linearly from 0 over training.
    pub drop_connect_ramp: bool,
    /// Start from these weights (any format effnet reads).
    pub init_weights: Option<String>,
    /// Keep the backbone frozen for this many epochs (fine-tuning).
    pub freeze_backbone_epochs: usize,
    /// Log every N steps when not on a terminal.
    pub log_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            seed: 42,
            label_smoothing: 0.1,
            grad_accumulation: 1,
            grad_clip_norm: None,
            ema_decay: None,
            drop_connect_ramp: false,
            init_weights: None,
            freeze_backbone_epochs: 0,
            log_every: 50,
        }
    }
}

/// Optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// TensorFlow RMSProp (eps inside the root, accumulator starts at 1): the paper's.
    RmspropTf,
    Sgd,
    Adamw,
}

/// `[optim]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub name: OptimizerKind,
    /// Learning rate per `lr_batch_size` images (paper: 0.016 per 256).
    pub lr: f64,
    /// The batch size `lr` is quoted for; the LR is scaled by `batch_size / lr_batch_size`.
    pub lr_batch_size: usize,
    /// Coupled L2 weight decay, skipping BN and bias parameters.
    pub weight_decay: f64,
    pub momentum: f64,
    pub nesterov: bool,
    /// RMSProp decay (ρ).
    pub decay: f64,
    pub eps: f64,
    /// AdamW β1, β2.
    pub betas: [f64; 2],
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            name: OptimizerKind::RmspropTf,
            lr: 0.016,
            lr_batch_size: 256,
            weight_decay: 1e-5,
            momentum: 0.9,
            nesterov: false,
            decay: 0.9,
            eps: 1e-3,
            betas: [0.9, 0.999],
        }
    }
}

/// LR schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// `lr · rate^⌊epoch / decay_epochs⌋` (paper: 0.97 every 2.4 epochs).
    ExponentialStep,
    Cosine,
    Constant,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    pub name: ScheduleKind,
    /// Linear warm-up length in epochs.
    pub warmup_epochs: f64,
    /// LR at the start of warm-up.
    pub warmup_lr: f64,
    pub decay_epochs: f64,
    pub decay_rate: f64,
    /// Cosine floor.
    pub min_lr: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            name: ScheduleKind::ExponentialStep,
            warmup_epochs: 5.0,
            warmup_lr: 0.0,
            decay_epochs: 2.4,
            decay_rate: 0.97,
            min_lr: 0.0,
        }
    }
}

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

/// One entry of `[runtime] devices`: a local device index, or a device of an `effnet serve`
/// server given by its address (`ws://HOST:PORT` or `ws://HOST:PORT/INDEX`; checked by
/// [`RemoteDevice::parse`] when the config is validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A device of the local backend, by index.
    Index(usize),
    /// A server address as written.
    Remote(String),
}

impl DeviceSpec {
    /// The remote device this entry names, if it is a valid address.
    pub fn remote(&self) -> Option<RemoteDevice> {
        match self {
            DeviceSpec::Index(_) => None,
            DeviceSpec::Remote(s) => RemoteDevice::parse(s).ok(),
        }
    }

    /// The same device the same way: `ws://h:1` and `ws://h:1/0` are one device.
    fn canonical(&self) -> String {
        match (self, self.remote()) {
            (_, Some(r)) => r.to_string(),
            (DeviceSpec::Index(i), None) => i.to_string(),
            (DeviceSpec::Remote(s), None) => s.clone(),
        }
    }
}

impl From<usize> for DeviceSpec {
    fn from(i: usize) -> Self {
        DeviceSpec::Index(i)
    }
}

/// As in the TOML: `0` or `"ws://host:29501"`.
impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Index(i) => write!(f, "{i}"),
            DeviceSpec::Remote(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeviceSpec::Index(i) => s.serialize_u64(*i as u64),
            DeviceSpec::Remote(a) => s.serialize_str(a),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DeviceSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a device index such as 0, or a server address such as \"ws://10.0.0.2:29501\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DeviceSpec, E> {
                usize::try_from(v)
                    .map(DeviceSpec::Index)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DeviceSpec, E> {
                usize::try_from(v)
                    .map(DeviceSpec::Index)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeviceSpec, E> {
                Ok(DeviceSpec::Remote(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A device of an `effnet serve` server: `ws://HOST:PORT` (its device 0) or
/// `ws://HOST:PORT/INDEX` (the server's `--devices` entry at position INDEX).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteDevice {
    /// `ws://HOST:PORT`, the server's address (without the device index).
    pub url: String,
    /// Position in the server's device list.
    pub index: usize,
}

impl RemoteDevice {
    /// Parses `ws://HOST:PORT[/INDEX]`; the error is the reason, for a message naming the value.
    pub fn parse(s: &str) -> Result<Self, String> {
        const FORM: &str = "expected ws://HOST:PORT (the server's device 0) or ws://HOST:PORT/INDEX";
        if s.starts_with("wss://") {
            return Err(format!("burn's websocket transport has no TLS (wss://); {FORM} on a private network"));
        }
        let Some(rest) = s.strip_prefix("ws://") else {
            return Err(FORM.to_string());
        };
        let (authority, index) = match rest.split_once('/') {
            Some((a, i)) => {
                let index = i.parse::<usize>().map_err(|_| format!("device index {i:?} is not a number; {FORM}"))?;
                (a, index)
            }
            None => (rest, 0),
        };
        // `[v6]:port` or `host:port`; the port is required (there is no default).
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() => (h, p),
            _ => return Err(format!("missing HOST:PORT; {FORM}")),
        };
        let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
        if !bracketed && (host.contains([':', '[', ']']) || host.contains(|c: char| c.is_whitespace() || c == '@')) {
            return Err(format!("bad host {host:?} (write an IPv6 address as [ADDR]); {FORM}"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("bad port {port:?}: expected 1-65535")),
        }
        Ok(Self { url: format!("ws://{host}:{port}"), index })
    }
}

/// `ws://HOST:PORT/INDEX`.
impl std::fmt::Display for RemoteDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.url, self.index)
    }
}

/// Formats a device list as in the TOML: `[0, 1]`, `["ws://a:29501", "ws://b:29501"]`.
pub fn format_device_list(devices: &[DeviceSpec]) -> String {
    let items: Vec<String> = devices.iter().map(DeviceSpec::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// Parses a device list as given on the command line: `0`, `0,1,2`, or server addresses
/// `ws://a:29501,ws://b:29501/1`.
pub fn parse_device_list(s: &str) -> Result<Vec<DeviceSpec>, String> {
    s.split(',')
        .map(|x| {
            let x = x.trim();
            if x.contains("://") {
                RemoteDevice::parse(x).map_err(|reason| format!("{x:?}: {reason}"))?;
                Ok(DeviceSpec::Remote(x.to_string()))
            } else {
                x.parse::<usize>().map(DeviceSpec::Index).map_err(|_| {
                    format!("{s:?}: expected comma-separated device indices such as 0,1, or server addresses such as ws://10.0.0.2:29501")
                })
            }
        })
        .collect()
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
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, path)
    }

    /// Range and consistency checks across all sections.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.model.architecture()?;
        let d = &self.data;
        if let Some(s) = d.image_size {
            in_range_usize("data.image_size", s, 8, 4096)?;
        }
        in_range_usize("data.num_workers", d.num_workers, 0, 256)?;
        for (i, s) in d.std.iter().enumerate() {
            if *s <= 0.0 {
                return Err(Invalid::new(&format!("data.std[{i}]"), s, "must be positive"));
            }
        }
        if !(d.crop_fraction > 0.0 && d.crop_fraction <= 1.0) {
            return Err(Invalid::new("data.crop_fraction", d.crop_fraction, "must be in (0, 1]"));
        }
        let a = &d.augment;
        if !(a.scale[0] > 0.0 && a.scale[0] <= a.scale[1] && a.scale[1] <= 1.0) {
            return Err(Invalid::new("data.augment.scale", format!("{:?}", a.scale), "needs 0 < min <= max <= 1"));
        }
        if !(a.ratio[0] > 0.0 && a.ratio[0] <= a.ratio[1]) {
            return Err(Invalid::new("data.augment.ratio", format!("{:?}", a.ratio), "needs 0 < min <= max"));
        }
        probability("data.augment.hflip", a.hflip, true)?;
        in_range_usize("data.augment.randaugment_n", a.randaugment_n, 0, 16)?;
        in_range_f64("data.augment.randaugment_m", a.randaugment_m, 0.0, 30.0)?;
        in_range_f64("data.augment.mixup_alpha", a.mixup_alpha, 0.0, 100.0)?;
        in_range_f64("data.augment.cutmix_alpha", a.cutmix_alpha, 0.0, 100.0)?;
        probability("data.augment.mix_prob", a.mix_prob, true)?;
        probability("data.augment.mix_switch_prob", a.mix_switch_prob, true)?;
        probability("data.valid_fraction", d.valid_fraction, false)?;
        if d.split_file.as_ref().is_some_and(|f| f.trim().is_empty()) {
            return Err(Invalid::new("data.split_file", "\"\"", "must not be empty"));
        }

        let t = &self.train;
        in_range_usize("train.epochs", t.epochs, 1, 100_000)?;
        in_range_usize("train.batch_size", t.batch_size, 1, 1 << 20)?;
        probability("train.label_smoothing", t.label_smoothing, false)?;
        in_range_usize("train.grad_accumulation", t.grad_accumulation, 1, 4096)?;
        if let Some(c) = t.grad_clip_norm {
            positive("train.grad_clip_norm", c)?;
        }
        if let Some(e) = t.ema_decay
            && !(0.0..1.0).contains(&e)
        {
            return Err(Invalid::new("train.ema_decay", e, "must be in [0, 1)"));
        }
        if t.freeze_backbone_epochs > t.epochs {
            return Err(Invalid::new(
                "train.freeze_backbone_epochs",
                t.freeze_backbone_epochs,
                format!("exceeds train.epochs = {}", t.epochs),
            ));
        }
        in_range_usize("train.log_every", t.log_every, 1, 1 << 30)?;

        let o = &self.optim;
        in_range_f64("optim.lr", o.lr, 1e-12, 100.0)?;
        in_range_usize("optim.lr_batch_size", o.lr_batch_size, 1, 1 << 20)?;
        in_range_f64("optim.weight_decay", o.weight_decay, 0.0, 1.0)?;
        probability("optim.momentum", o.momentum, false)?;
        probability("optim.decay", o.decay, false)?;
        in_range_f64("optim.eps", o.eps, 1e-12, 1.0)?;
        probability("optim.betas[0]", o.betas[0], false)?;
        probability("optim.betas[1]", o.betas[1], false)?;
        if o.nesterov && o.name == OptimizerKind::Sgd && o.momentum == 0.0 {
            return Err(Invalid::new("optim.nesterov", true, "Nesterov needs optim.momentum > 0"));
        }

        let s = &self.schedule;
        in_range_f64("schedule.warmup_epochs", s.warmup_epochs, 0.0, t.epochs as f64)?;
        in_range_f64("schedule.warmup_lr", s.warmup_lr, 0.0, 100.0)?;
        in_range_f64("schedule.decay_epochs", s.decay_epochs, 1e-6, 1e6)?;
        if !(s.decay_rate > 0.0 && s.decay_rate <= 1.0) {
            return Err(Invalid::new("schedule.decay_rate", s.decay_rate, "must be in (0, 1]"));
        }
        in_range_f64("schedule.min_lr", s.min_lr, 0.0, o.lr)?;

        let r = &self.runtime;
        if r.devices.is_empty() {
            return Err(Invalid::new("runtime.devices", "[]", "needs at least one device"));
        }
        let remote = r.backend == BackendKind::Remote;
        for d in &r.devices {
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
                        format!("a server address needs runtime.backend = \"remote\" (not \"{}\")", r.backend),
                    ));
                }
                DeviceSpec::Remote(s) => {
                    RemoteDevice::parse(s).map_err(|reason| Invalid::new("runtime.devices", d, reason))?;
                }
                DeviceSpec::Index(_) => {}
            }
        }
        for (i, d) in r.devices.iter().enumerate() {
            if r.devices[..i].iter().any(|e| e.canonical() == d.canonical()) {
                return Err(Invalid::new(
                    "runtime.devices",
                    format_device_list(&r.devices),
                    format!("device {} is listed twice", d.canonical()),
                ));
            }
        }
        if !t.batch_size.is_multiple_of(r.devices.len()) {
            return Err(Invalid::new(
                "train.batch_size",
                t.batch_size,
                format!("must be divisible by the {} devices in runtime.devices", r.devices.len()),
            ));
        }
        if r.run_dir.trim().is_empty() {
            return Err(Invalid::new("runtime.run_dir", "\"\"", "must not be empty"));
        }
        Ok(())
    }
}

fn parse_error(file: &Path, text: &str, key: Option<String>, e: &toml::de::Error) -> ConfigError {
    let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    ConfigError::Parse { file: file.to_path_buf(), line, column, key, message: e.message().trim().to_string() }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn in_range_f64(key: &str, v: f64, lo: f64, hi: f64) -> Result<f64, Invalid> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(Invalid::new(key, v, format!("must be between {lo} and {hi}")))
    }
}

fn in_range_usize(key: &str, v: usize, lo: usize, hi: usize) -> Result<usize, Invalid> {
    if (lo..=hi).contains(&v) { Ok(v) } else { Err(Invalid::new(key, v, format!("must be between {lo} and {hi}"))) }
}

fn positive(key: &str, v: f64) -> Result<f64, Invalid> {
    if v.is_finite() && v > 0.0 { Ok(v) } else { Err(Invalid::new(key, v, "must be a positive number")) }
}

fn probability(key: &str, v: f64, inclusive_one: bool) -> Result<f64, Invalid> {
    let ok = v.is_finite() && v >= 0.0 && if inclusive_one { v <= 1.0 } else { v < 1.0 };
    if ok {
        Ok(v)
    } else {
        Err(Invalid::new(key, v, if inclusive_one { "must be in [0, 1]" } else { "must be in [0, 1)" }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EffnetConfig, ConfigError> {
        EffnetConfig::from_toml_str(text, Path::new("cfg.toml"))
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
    fn variant_with_overrides() {
        let c = parse(
            "[model]\nvariant = \"b3\"\nnum_classes = 100\ndropout = 0.1\npadding = \"symmetric\"\nbn_eps = 1e-5\n",
        )
        .unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!((a.name.as_str(), a.resolution, a.num_classes, a.dropout), ("b3", 300, 100, 0.1));
        assert_eq!((a.padding, a.bn_eps), (Padding::Symmetric, 1e-5));
        assert_eq!(a.stage_channels(), [24, 32, 48, 96, 136, 232, 384]);
    }

    #[test]
    fn free_phi_and_custom_sizes() {
        let c = parse("[model]\nvariant = \"custom\"\nphi = 1.0\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!((a.width, a.depth, a.resolution), (1.1, 1.2, 258));
        assert_eq!(a.name, "custom-phi1");
        let c = parse("[model]\nvariant = \"custom\"\nphi = 2.0\nalpha = 1.3\nbeta = 1.0\ngamma = 1.0\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert!((a.depth - 1.69).abs() < 1e-12 && a.width == 1.0 && a.resolution == 224);
        let c = parse("[model]\nvariant = \"custom\"\nwidth = 0.5\ndepth = 0.5\nresolution = 96\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!((a.stem_channels, a.resolution), (16, 96));
        assert_eq!(a.stage_repeats(), [1, 1, 1, 2, 2, 2, 1]);
    }

    #[test]
    fn custom_blocks() {
        let c = parse("[model]\nvariant = \"custom\"\nblocks = [\"r1_k3_s22_e1_i32_o16_se0.25\", \"r2_k5_s22_e4_i16_o32_noskip\"]\n").unwrap();
        let a = c.model.architecture().unwrap();
        assert_eq!(a.stage_channels(), [16, 32]);
        assert!(a.blocks().iter().all(|b| !b.residual));
        let e = parse("[model]\nblocks = [\"r1_k3_s11_e1_i32\"]\n").unwrap_err().to_string();
        assert_eq!(e, "cfg.toml: key `model.blocks`: invalid value \"r1_k3_s11_e1_i32\": missing `o`");
    }

    #[test]
    fn backend_names_and_device_lists_parse() {
        for b in BackendKind::ALL {
            assert_eq!(b.name().parse::<BackendKind>(), Ok(b));
        }
        assert_eq!(
            "metal".parse::<BackendKind>().unwrap_err(),
            "unknown backend \"metal\": expected one of flex, ndarray, wgpu, vulkan, cuda, remote"
        );
        let idx = |v: &[usize]| v.iter().map(|&i| DeviceSpec::Index(i)).collect::<Vec<_>>();
        assert_eq!(parse_device_list("0, 1,2"), Ok(idx(&[0, 1, 2])));
        assert!(parse_device_list("0,x").unwrap_err().contains("device indices"));
        assert_eq!(
            parse_device_list("ws://10.0.0.1:29501,ws://gpu-b:29501/1"),
            Ok(vec![DeviceSpec::Remote("ws://10.0.0.1:29501".into()), DeviceSpec::Remote("ws://gpu-b:29501/1".into())])
        );
        assert_eq!(
            parse_device_list("ws://a:29501,http://b:1").unwrap_err(),
            "\"http://b:1\": expected ws://HOST:PORT (the server's device 0) or ws://HOST:PORT/INDEX"
        );
    }

    #[test]
    fn remote_addresses_parse_to_url_and_index() {
        let r = |s: &str| RemoteDevice::parse(s).map(|d| (d.url, d.index));
        assert_eq!(r("ws://10.0.0.2:29501"), Ok(("ws://10.0.0.2:29501".into(), 0)));
        assert_eq!(r("ws://gpu-b:29501/3"), Ok(("ws://gpu-b:29501".into(), 3)));
        assert_eq!(r("ws://[fe80::1]:29501/1"), Ok(("ws://[fe80::1]:29501".into(), 1)));
        for (bad, why) in [
            ("ws://gpu-b", "missing HOST:PORT"),
            ("ws://:29501", "missing HOST:PORT"),
            ("ws://gpu-b:0", "bad port \"0\""),
            ("ws://gpu-b:70000", "bad port \"70000\""),
            ("ws://gpu-b:29501/x", "device index \"x\" is not a number"),
            ("ws://fe80::1:29501", "bad host \"fe80::1\""),
            ("wss://gpu-b:29501", "no TLS"),
            ("gpu-b:29501", "expected ws://HOST:PORT"),
        ] {
            let e = r(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

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

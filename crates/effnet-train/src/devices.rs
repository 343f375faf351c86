//! `[runtime]` → burn devices and burn-train's execution strategy.
//!
//! One device trains on it alone. Several devices train data-parallel with burn-train's own
//! strategies (effnet adds no collective of its own):
//!
//! - flex, ndarray, wgpu, vulkan: [`ExecutionStrategy::multi`] with
//!   [`MultiDeviceOptim::OptimMainDevice`]. Each step the model is copied to every device, each
//!   device runs forward/backward on its share of the batch, the gradients are sent to the first
//!   (main) device and **summed** there, and the optimizer steps once on the main device.
//! - remote (devices of `effnet serve` servers, possibly on other machines): `multi` as above,
//!   burn's `remote` backend carrying every op and tensor over websockets (servers send tensors
//!   to each other directly). burn 0.22.1's DDP cannot span servers ("cross-peer all_reduce is not
//!   supported yet"), so remote runs never use it.
//! - cuda: [`ExecutionStrategy::ddp`] with `all_reduce_op: Mean` (NCCL inside burn): every
//!   device keeps its own model and optimizer; gradients are **averaged** by an all-reduce.
//!
//! burn 0.22.1 has no synchronised BatchNorm: batch statistics are computed per replica (as
//! PyTorch DDP without SyncBN). burn's `RunningState` averages the replicas' running-statistics
//! updates across worker threads, so the stored running mean/variance are the mean of the
//! replicas' updates.

use burn::prelude::Device;
use burn::tensor::distributed::{DistributedConfig, ReduceOperation};
use burn::train::{ExecutionStrategy, MultiDeviceOptim};
use effnet_config::{BackendKind, DeviceSpec, Invalid, RuntimeConfig};

/// The message for a backend this binary was built without.
pub fn missing_feature_message(backend: BackendKind) -> String {
    let name = backend.name();
    format!(
        "this effnet was built without the `{name}` feature; rebuild with `cargo build --release --features {name}`"
    )
}

/// Whether `backend` was compiled in (flex always is).
pub fn compiled_in(backend: BackendKind) -> bool {
    match backend {
        BackendKind::Flex => true,
        BackendKind::Ndarray => cfg!(feature = "ndarray"),
        BackendKind::Wgpu => cfg!(feature = "wgpu"),
        BackendKind::Vulkan => cfg!(feature = "vulkan"),
        BackendKind::Cuda => cfg!(feature = "cuda"),
        BackendKind::Remote => cfg!(feature = "remote"),
    }
}

/// One device of `backend` for the `[runtime] devices` entry `spec`; `only` is true when it is
/// the run's only device (wgpu/vulkan then take the best adapter, which also finds a software one).
#[allow(unused_variables)] // `only` is unused when no GPU backend is compiled in.
fn device(backend: BackendKind, spec: &DeviceSpec, only: bool) -> Result<Device, Invalid> {
    let index = match (backend, spec) {
        (BackendKind::Remote, _) => return remote_device(spec),
        (_, DeviceSpec::Index(i)) => *i,
        (_, DeviceSpec::Remote(_)) => {
            return Err(Invalid::new("runtime.devices", spec, "a server address needs runtime.backend = \"remote\""));
        }
    };
    match backend {
        // flex has one CPU device: several entries are several workers on the same thread pool.
        BackendKind::Flex => Ok(Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; users may still ask for it.
        BackendKind::Ndarray => Ok(Device::ndarray()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            crate::fusion::configure()?;
            Ok(Device::wgpu(gpu_kind(index, only)))
        }
        #[cfg(feature = "vulkan")]
        BackendKind::Vulkan => {
            crate::fusion::configure()?;
            Ok(Device::vulkan(gpu_kind(index, only)))
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            crate::fusion::configure()?;
            Ok(Device::cuda(index))
        }
        #[allow(unreachable_patterns)]
        other => Err(Invalid::new("runtime.backend", format!("\"{other}\""), missing_feature_message(other))),
    }
}

/// Connects the device of an `effnet serve` server that `spec` (`ws://HOST:PORT[/INDEX]`) names.
#[cfg(feature = "remote")]
fn remote_device(spec: &DeviceSpec) -> Result<Device, Invalid> {
    use burn::remote::RemoteHost;
    let invalid = |reason: String| Invalid::new("runtime.devices", spec, reason);
    let DeviceSpec::Remote(text) = spec else {
        return Err(invalid("runtime.backend = \"remote\" needs server addresses: \"ws://HOST:PORT[/INDEX]\"".into()));
    };
    let addr = effnet_config::RemoteDevice::parse(text).map_err(invalid)?;
    Device::remote_options(&RemoteHost::websocket(&addr.url))
        .device_index(addr.index)
        .init()
        .map_err(|e| invalid(format!("cannot connect to device {} of the server at {}: {e}", addr.index, addr.url)))
}

#[cfg(not(feature = "remote"))]
fn remote_device(_: &DeviceSpec) -> Result<Device, Invalid> {
    Err(Invalid::new("runtime.backend", "\"remote\"", missing_feature_message(BackendKind::Remote)))
}

#[cfg(any(feature = "wgpu", feature = "vulkan"))]
fn gpu_kind(index: usize, only: bool) -> burn::tensor::DeviceKind {
    if only && index == 0 {
        burn::tensor::DeviceKind::DefaultDevice
    } else {
        burn::tensor::DeviceKind::DiscreteGpu(index)
    }
}

/// The devices `[runtime]` names, main device first.
pub fn devices_for(runtime: &RuntimeConfig) -> Result<Vec<Device>, Invalid> {
    let only = runtime.devices.len() == 1;
    runtime.devices.iter().map(|d| device(runtime.backend, d, only)).collect()
}

/// The compute device for inference and validation: the first of `[runtime] devices`.
pub fn device_for(cfg: &effnet_config::EffnetConfig) -> Result<Device, Invalid> {
    let mut devices = devices_for(&cfg.runtime)?;
    Ok(devices.swap_remove(0))
}

/// How a run is spread over its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// One device.
    Single,
    /// burn-train's `multi` strategy: gradients gathered and summed on the main device.
    Multi,
    /// burn-train's DDP: gradients averaged by an all-reduce (CUDA only in burn 0.22.1).
    Ddp,
}

impl Parallelism {
    /// What `[runtime]` gets: DDP on cuda, `multi` elsewhere, nothing to split for one device.
    pub fn for_runtime(runtime: &RuntimeConfig) -> Self {
        match (runtime.devices.len(), runtime.backend) {
            (1, _) => Parallelism::Single,
            // burn's DDP needs a backend with collectives: only CUDA (NCCL) has one. flex/ndarray
            // panic with `unimplemented!()` and wgpu "has no transport between its devices".
            (_, BackendKind::Cuda) => Parallelism::Ddp,
            // Remote devices on several servers: burn's DDP panics ("cross-peer all_reduce is not
            // supported yet"), so `multi` (gather on the main device) is the remote strategy.
            _ => Parallelism::Multi,
        }
    }

    /// How many per-device gradients burn *sums* into one optimizer step: the loss is divided
    /// by this so that the step uses the gradient of the global batch's mean loss.
    pub fn summed_replicas(self, devices: usize) -> usize {
        match self {
            Parallelism::Multi => devices,
            // DDP's all-reduce averages; one device has nothing to combine.
            Parallelism::Single | Parallelism::Ddp => 1,
        }
    }

    /// burn-train's execution strategy over `devices` (main device first).
    pub fn strategy(self, devices: Vec<Device>) -> ExecutionStrategy {
        match self {
            Parallelism::Single => ExecutionStrategy::single(devices[0].clone()),
            Parallelism::Multi => ExecutionStrategy::multi(devices, MultiDeviceOptim::OptimMainDevice),
            Parallelism::Ddp => {
                ExecutionStrategy::ddp(devices, DistributedConfig { all_reduce_op: ReduceOperation::Mean })
            }
        }
    }
}

/// The per-device batch size for a global `batch_size` (the config checks divisibility).
pub fn per_device_batch(batch_size: usize, devices: usize) -> usize {
    batch_size / devices.max(1)
}

/// Training positions used per epoch when split over `devices`: the largest multiple of the
/// device count, so that every device gets the same number of samples and of batches (DDP's
/// all-reduce needs every device to take the same number of steps). At most `devices − 1`
/// samples sit out an epoch, a different few each epoch (the order is reshuffled).
pub fn positions_per_epoch(train_len: usize, devices: usize) -> usize {
    train_len - train_len % devices.max(1)
}

/// Optimizer steps per epoch: batches per device (all devices have the same number), grouped by
/// gradient accumulation.
pub fn steps_per_epoch(train_len: usize, batch_size: usize, devices: usize, grad_accumulation: usize) -> usize {
    let per_device_items = positions_per_epoch(train_len, devices) / devices.max(1);
    per_device_items.div_ceil(per_device_batch(batch_size, devices)).div_ceil(grad_accumulation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_counts_match_one_device_for_the_same_global_batch() {
        // digits: 1438 training images.
        assert_eq!(steps_per_epoch(1438, 128, 1, 1), 12);
        assert_eq!(steps_per_epoch(1438, 128, 2, 1), 12);
        assert_eq!(steps_per_epoch(1438, 128, 2, 2), 6);
        assert_eq!(positions_per_epoch(1438, 3), 1437);
        assert_eq!(steps_per_epoch(1438, 96, 3, 1), 15);
        assert_eq!(per_device_batch(128, 2), 64);
    }

    #[test]
    fn strategies_by_backend_and_device_count() {
        let rt = |backend, devices: Vec<usize>| RuntimeConfig {
            backend,
            devices: devices.into_iter().map(DeviceSpec::Index).collect(),
            ..Default::default()
        };
        assert_eq!(Parallelism::for_runtime(&rt(BackendKind::Flex, vec![0])), Parallelism::Single);
        assert_eq!(Parallelism::for_runtime(&rt(BackendKind::Flex, vec![0, 1])), Parallelism::Multi);
        assert_eq!(Parallelism::for_runtime(&rt(BackendKind::Wgpu, vec![0, 1])), Parallelism::Multi);
        assert_eq!(Parallelism::for_runtime(&rt(BackendKind::Cuda, vec![0, 1])), Parallelism::Ddp);
        assert_eq!(Parallelism::Multi.summed_replicas(2), 2);
        assert_eq!(Parallelism::Ddp.summed_replicas(2), 1);
        assert_eq!(devices_for(&rt(BackendKind::Flex, vec![0, 1])).unwrap().len(), 2);
        let remote = RuntimeConfig {
            backend: BackendKind::Remote,
            devices: vec![
                DeviceSpec::Remote("ws://127.0.0.1:9/0".into()),
                DeviceSpec::Remote("ws://127.0.0.1:9/1".into()),
            ],
            ..Default::default()
        };
        assert_eq!(Parallelism::for_runtime(&remote), Parallelism::Multi);
    }

    #[cfg(not(feature = "remote"))]
    #[test]
    fn remote_devices_need_the_feature() {
        let remote = RuntimeConfig {
            backend: BackendKind::Remote,
            devices: vec![DeviceSpec::Remote("ws://127.0.0.1:9".into())],
            ..Default::default()
        };
        let e = devices_for(&remote).unwrap_err();
        assert_eq!(e.key, "runtime.backend");
        assert!(e.reason.contains("built without the `remote` feature"), "{}", e.reason);
    }
}

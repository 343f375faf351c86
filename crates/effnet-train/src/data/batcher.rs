//! Datasets of augmented samples and the batcher (the loaders over them: `loader.rs`).
//!
//! Reproducibility: the training set is shuffled by our own per-epoch permutation and each
//! sample's RNG is derived from (seed, epoch, index), where the epoch of a position is the
//! number of times it has been fetched (an atomic counter per position). The images and labels
//! of every batch are therefore a pure function of (seed, epoch, batch position) whatever the
//! number of workers. burn's multi-worker loader still delivers batches in arrival order, so
//! with `num_workers > 1` the *order* of batches within an epoch can vary between runs (with
//! 0 or 1 workers it is fixed).

use super::augment::{mix64, sample_rng};
use super::mix::{MixParams, mix_batch};
use super::preprocess::EvalTransform;
use super::{ImageItem, TrainTransform};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::{Dataset, DatasetError};
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One transformed sample, ready to batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Normalised CHW pixels, `3 × size × size`.
    pub pixels: Vec<f32>,
    /// Class index.
    pub label: usize,
    /// Index of the source image in its split.
    pub index: usize,
    /// The epoch the sample was drawn in (0 for evaluation).
    pub epoch: u64,
}

/// A batch for classification.
#[derive(Debug, Clone)]
pub struct ClassificationBatch {
    /// `[N, 3, size, size]` normalised images.
    pub images: Tensor<4>,
    /// `[N]` class indices (the dominant label of a mixed sample).
    pub targets: Tensor<1, Int>,
    /// `[N, classes]` soft targets when mixup/CutMix was applied to this batch.
    pub soft_targets: Option<Tensor<2>>,
}

/// The training view of a split: permuted per epoch, augmented per sample.
pub struct TrainDataset {
    source: Arc<dyn Dataset<ImageItem>>,
    transform: TrainTransform,
    seed: u64,
    fetches: Arc<Vec<AtomicU64>>,
    perms: Mutex<Vec<(u64, Arc<Vec<u32>>)>>,
    /// (devices, per-device batch) when burn-train splits the loader over several devices.
    split: Option<(usize, usize)>,
}

impl TrainDataset {
    /// Wraps `source`; `seed` drives both the shuffle and the augmentation.
    pub fn new(source: Arc<dyn Dataset<ImageItem>>, transform: TrainTransform, seed: u64) -> Self {
        let len = source.len();
        Self::split(source, transform, seed, len, 1, 1)
    }

    /// Like [`TrainDataset::new`], laid out for a loader that burn-train splits into `devices`
    /// contiguous slices batched by `device_batch` each. An epoch is the first `positions`
    /// (≤ the source's length; a multiple of `devices`) of each epoch's permutation, and
    /// positions are interleaved so that the devices' k-th batches together are exactly the
    /// k-th batch of `devices × device_batch` a single device would get: one or several devices,
    /// every optimizer step sees the same images.
    pub fn split(
        source: Arc<dyn Dataset<ImageItem>>,
        transform: TrainTransform,
        seed: u64,
        positions: usize,
        devices: usize,
        device_batch: usize,
    ) -> Self {
        let positions = positions.min(source.len());
        let fetches = Arc::new((0..positions).map(|_| AtomicU64::new(0)).collect());
        let split = (devices > 1).then_some((devices, device_batch.max(1)));
        Self { source, transform, seed, fetches, perms: Mutex::new(Vec::new()), split }
    }

    /// The single-device order position that loader position `position` stands for.
    fn ordered(&self, position: usize) -> usize {
        let Some((devices, b)) = self.split else { return position };
        let per_device = self.fetches.len() / devices;
        let (d, j) = (position / per_device, position % per_device);
        if d >= devices {
            return position; // not reached: positions are a multiple of `devices`
        }
        let (k, o) = (j / b, j % b);
        // The last batch of each device may be short: `r` items from each device.
        let r = b.min(per_device - k * b);
        k * devices * b + d * r + o
    }

    /// A handle to set the epoch (shared with this dataset).
    pub fn control(&self) -> EpochControl {
        EpochControl { fetches: self.fetches.clone() }
    }

    /// The order of source indices in `epoch`: a seeded permutation.
    pub fn permutation(&self, epoch: u64) -> Arc<Vec<u32>> {
        let mut cache = self.perms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = cache.iter().find(|(e, _)| *e == epoch) {
            return p.clone();
        }
        let mut p: Vec<u32> = (0..self.source.len() as u32).collect();
        p.shuffle(&mut StdRng::seed_from_u64(mix64(self.seed ^ 0x5348_5546) ^ mix64(epoch)));
        let p = Arc::new(p);
        // Workers can straddle an epoch boundary; two epochs in the cache are enough.
        if cache.len() >= 2 {
            cache.remove(0);
        }
        cache.push((epoch, p.clone()));
        p
    }

    /// Sample `index` of the source in `epoch`, without touching the epoch counters.
    pub fn sample(&self, index: usize, epoch: u64) -> Result<Sample, DatasetError> {
        let item = self.source.get(index)?;
        let mut rng = sample_rng(self.seed, epoch, index as u64);
        let pixels = self.transform.apply(&item.image, &mut rng);
        Ok(Sample { pixels, label: item.label, index, epoch })
    }
}

impl Dataset<Sample> for TrainDataset {
    fn get(&self, position: usize) -> Result<Sample, DatasetError> {
        let epoch = self.fetches[position].fetch_add(1, Ordering::Relaxed);
        let index = self.permutation(epoch)[self.ordered(position)] as usize;
        self.sample(index, epoch)
    }

    fn len(&self) -> usize {
        self.fetches.len()
    }
}

/// Sets the epoch of a training loader (resume, or re-sync after an interrupted epoch).
#[derive(Debug, Clone)]
pub struct EpochControl {
    fetches: Arc<Vec<AtomicU64>>,
}

impl EpochControl {
    /// The next pass over the loader is epoch `epoch` (0-based).
    pub fn set_epoch(&self, epoch: u64) {
        self.fetches.iter().for_each(|f| f.store(epoch, Ordering::Relaxed));
    }

    /// The epoch the next pass will be (the least fetch count).
    pub fn epoch(&self) -> u64 {
        self.fetches.iter().map(|f| f.load(Ordering::Relaxed)).min().unwrap_or(0)
    }
}

/// The evaluation view of a split: resize + centre crop + normalise, in order.
pub(super) struct EvalDataset {
    pub(super) source: Arc<dyn Dataset<ImageItem>>,
    pub(super) transform: EvalTransform,
}

impl Dataset<Sample> for EvalDataset {
    fn get(&self, index: usize) -> Result<Sample, DatasetError> {
        let item = self.source.get(index)?;
        Ok(Sample { pixels: self.transform.apply(&item.image), label: item.label, index, epoch: 0 })
    }

    fn len(&self) -> usize {
        self.source.len()
    }
}

/// Stacks samples into a [`ClassificationBatch`], mixing when configured.
#[derive(Debug, Clone)]
pub struct ClassificationBatcher {
    /// Image side.
    pub size: usize,
    /// Number of classes (soft-target width).
    pub num_classes: usize,
    /// Mixup/CutMix, if any.
    pub mix: Option<MixParams>,
    /// Seed of the mixing RNG.
    pub seed: u64,
}

impl Batcher<Sample, ClassificationBatch> for ClassificationBatcher {
    fn batch(&self, items: Vec<Sample>, device: &Device) -> ClassificationBatch {
        let n = items.len();
        let s = self.size;
        let mut pixels = Vec::with_capacity(n * 3 * s * s);
        let mut labels = Vec::with_capacity(n);
        // The mixing RNG is a function of the batch's content (epoch and item indices), not of
        // which worker built it.
        let mut key = mix64(self.seed ^ 0x4d49_5855);
        for it in &items {
            pixels.extend_from_slice(&it.pixels);
            labels.push(it.label);
            key = mix64(key ^ it.epoch.rotate_left(32) ^ it.index as u64);
        }
        let mut soft = None;
        if let Some(p) = &self.mix {
            let mut rng = StdRng::seed_from_u64(key);
            if let Some(m) = mix_batch(&mut pixels, &labels, s, self.num_classes, p, &mut rng) {
                labels = m.dominant;
                soft = Some(Tensor::<2>::from_data(TensorData::new(m.soft_targets, [n, self.num_classes]), device));
            }
        }
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, s, s]), device);
        let targets = Tensor::<1, Int>::from_data(
            TensorData::new(labels.iter().map(|&l| l as i32).collect::<Vec<_>>(), [n]),
            device,
        );
        ClassificationBatch { images, targets, soft_targets: soft }
    }
}

//! The loaders a run builds — training (whole or split over devices) and evaluation — from one
//! [`LoaderSpec`], where the image size, batch, seed and input normalisation are resolved once.

use super::augment::TrainTransform;
use super::batcher::{ClassificationBatch, ClassificationBatcher, EpochControl, EvalDataset, TrainDataset};
use super::mix::MixParams;
use super::preprocess::EvalTransform;
use super::{OpenedDataset, Split};
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::prelude::*;
use effnet_config::{Architecture, DataConfig, EffnetConfig, Normalization};
use std::sync::Arc;

/// What every loader of a run is built from.
#[derive(Debug, Clone)]
pub struct LoaderSpec {
    /// `[data]`: transforms, augmentation, workers.
    pub data: DataConfig,
    /// `[data] mean/std` or their default (see [`DataConfig::normalization`]).
    pub normalization: Normalization,
    pub image_size: usize,
    /// Images per batch (per device for [`LoaderSpec::train_split`]).
    pub batch_size: usize,
    /// Shuffle and augmentation seed.
    pub seed: u64,
}

impl LoaderSpec {
    /// The loaders of `cfg` for the model `arch`: `[data] image_size` or the model's resolution,
    /// `[train] batch_size` and `seed`.
    pub fn new(cfg: &EffnetConfig, arch: &Architecture) -> Self {
        Self {
            data: cfg.data.clone(),
            normalization: cfg.data.normalization(),
            image_size: cfg.data.image_size.unwrap_or(arch.resolution),
            batch_size: cfg.train.batch_size,
            seed: cfg.train.seed,
        }
    }

    /// The same loaders with `batch_size` images per batch.
    pub fn with_batch_size(self, batch_size: usize) -> Self {
        Self { batch_size, ..self }
    }

    /// The training transform: augmentation at `image_size`, then normalisation.
    pub fn train_transform(&self) -> TrainTransform {
        TrainTransform::from_config(&self.data, self.image_size, self.normalization)
    }

    /// The evaluation transform: resize the short side to `image_size / crop_fraction`,
    /// centre-crop, normalise.
    pub fn eval_transform(&self) -> EvalTransform {
        let (mean, std) = self.normalization.f32();
        EvalTransform {
            size: self.image_size,
            crop_fraction: self.data.crop_fraction,
            mean,
            std,
            interpolation: self.data.interpolation,
        }
    }

    /// The shuffled, augmented, mixed training loader of `ds.train()`, and its epoch control.
    pub fn train(
        &self,
        ds: &OpenedDataset,
        device: &Device,
    ) -> (Arc<dyn DataLoader<ClassificationBatch>>, EpochControl) {
        self.train_split(ds, device, ds.train().dataset.len(), 1)
    }

    /// [`LoaderSpec::train`] for burn-train to split over `devices` (see [`TrainDataset::split`]):
    /// `batch_size` is per device, an epoch is the first `positions` of each epoch's shuffle.
    pub fn train_split(
        &self,
        ds: &OpenedDataset,
        device: &Device,
        positions: usize,
        devices: usize,
    ) -> (Arc<dyn DataLoader<ClassificationBatch>>, EpochControl) {
        let train = TrainDataset::split(
            ds.train().dataset.clone(),
            self.train_transform(),
            self.seed,
            positions,
            devices,
            self.batch_size,
        );
        let control = train.control();
        let batcher = ClassificationBatcher {
            size: self.image_size,
            num_classes: ds.num_classes,
            mix: MixParams::from_config(&self.data.augment),
            seed: self.seed,
        };
        // No `.shuffle()`: TrainDataset permutes per epoch itself, reproducibly and resumably.
        let loader = DataLoaderBuilder::new(batcher)
            .batch_size(self.batch_size)
            .num_workers(self.data.num_workers)
            .set_device(device.clone())
            .build(train);
        (loader, control)
    }

    /// The evaluation loader of a split, in order.
    pub fn eval(&self, split: &Split, device: &Device) -> Arc<dyn DataLoader<ClassificationBatch>> {
        let ds = EvalDataset { source: split.dataset.clone(), transform: self.eval_transform() };
        let batcher = ClassificationBatcher { size: self.image_size, num_classes: 0, mix: None, seed: 0 };
        DataLoaderBuilder::new(batcher)
            .batch_size(self.batch_size)
            .num_workers(self.data.num_workers)
            .set_device(device.clone())
            .build(ds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use effnet_config::{IMAGENET, LITE};
    use std::path::Path;

    fn spec(toml: &str) -> LoaderSpec {
        let cfg = EffnetConfig::from_toml_str(toml, Path::new("t.toml")).unwrap();
        LoaderSpec::new(&cfg, &cfg.model.architecture().unwrap())
    }

    #[test]
    fn one_normalisation_for_every_loader() {
        let lite = spec("[model]\nvariant = \"lite0\"\n");
        assert_eq!((lite.normalization, lite.image_size, lite.batch_size), (IMAGENET, 224, 64));
        assert_eq!(lite.eval_transform().std, IMAGENET.f32().1);
        assert_eq!(lite.train_transform().mean, IMAGENET.f32().0);
        let own = spec(
            "[model]\nvariant = \"lite0\"\n[data]\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\nimage_size = 64\n",
        );
        assert_eq!((own.normalization.mean, own.normalization.std, own.image_size), ([0.5; 3], [0.5; 3], 64));
        assert_eq!(own.eval_transform().mean, [0.5f32; 3]);
        assert_ne!(LITE, IMAGENET);
    }
}

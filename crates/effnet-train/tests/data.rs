//! Data loaders on small files in the real formats (written here, or committed fixtures made by
//! scripts/make_data_fixtures.py), augmentation reproducibility, mixing, and bad input.

use burn::data::dataset::Dataset;
use burn::prelude::*;
use effnet_config::{DataConfig, DatasetKind, IMAGENET, LabelKind};
use effnet_train::data::preprocess::EvalTransform;
use effnet_train::data::*;
use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("data-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
}

/// A CIFAR binary record: coarse, fine, then planes with byte k = (i + k) % 256.
fn record(i: usize, coarse: u8, fine: u8) -> Vec<u8> {
    let mut r = vec![coarse, fine];
    r.extend((0..3072).map(|k| ((i + k) % 256) as u8));
    r
}

fn write_cifar_bin(dir: &Path, train: &[(u8, u8)], test: &[(u8, u8)]) {
    for (name, recs) in [("train.bin", train), ("test.bin", test)] {
        let bytes: Vec<u8> = recs.iter().enumerate().flat_map(|(i, &(c, f))| record(i, c, f)).collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn cfg(kind: DatasetKind, path: &Path) -> DataConfig {
    DataConfig { dataset: kind, path: path.to_string_lossy().into_owned(), num_workers: 0, ..DataConfig::default() }
}

fn err_string<T: std::fmt::Debug>(r: Result<T, DataError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn cifar_binary_counts_labels_and_pixels() {
    let d = tmp("cifar_bin");
    write_cifar_bin(&d, &[(3, 7), (1, 99), (19, 0)], &[(0, 5), (2, 42)]);
    let ds = open_cifar_binary(&d, LabelKind::Fine).unwrap();
    assert_eq!(ds.num_classes, 100);
    assert_eq!(
        ds.splits.iter().map(|s| (s.name.as_str(), s.dataset.len())).collect::<Vec<_>>(),
        [("train", 3), ("test", 2)]
    );
    assert_eq!(ds.valid().name, "test");
    let labels: Vec<usize> = (0..3).map(|i| ds.train().dataset.get(i).unwrap().label).collect();
    assert_eq!(labels, [7, 99, 0]);
    // Record 1, pixel (x=5, y=2): R = byte 69, G = byte 1024+69, B = byte 2048+69, each +1.
    let item = ds.train().dataset.get(1).unwrap();
    assert_eq!(item.image.dimensions(), (32, 32));
    assert_eq!(item.image.get_pixel(5, 2), &Rgb([70, ((1 + 1024 + 69) % 256) as u8, ((1 + 2048 + 69) % 256) as u8]));
    let coarse = open_cifar_binary(&d, LabelKind::Coarse).unwrap();
    assert_eq!(coarse.num_classes, 20);
    assert_eq!(coarse.test().dataset.get(1).unwrap().label, 2);
}

#[test]
fn cifar_binary_bad_input_names_the_file() {
    let d = tmp("cifar_bad");
    write_cifar_bin(&d, &[(0, 1), (0, 2)], &[(0, 3)]);
    let mut bytes = std::fs::read(d.join("train.bin")).unwrap();
    bytes.truncate(3074 + 1000);
    std::fs::write(d.join("train.bin"), bytes).unwrap();
    let e = err_string(open_cifar_binary(&d, LabelKind::Fine));
    assert!(
        e.contains("train.bin") && e.contains("truncated") && e.contains("1 records and 1000 bytes left over"),
        "{e}"
    );

    // Label names file with 10 classes and a label 12 in record 1.
    write_cifar_bin(&d, &[(0, 1), (0, 12)], &[(0, 3)]);
    std::fs::write(d.join("fine_label_names.txt"), (0..10).map(|i| format!("c{i}\n")).collect::<String>()).unwrap();
    let e = err_string(open_cifar_binary(&d, LabelKind::Fine));
    assert!(e.contains("train.bin") && e.contains("record 1 fine label: label 12 out of range for 10 classes"), "{e}");

    std::fs::remove_file(d.join("test.bin")).unwrap();
    write_cifar_bin(&d, &[(0, 1)], &[]);
    let e = err_string(open_cifar_binary(&d, LabelKind::Fine));
    assert!(e.contains("test.bin"), "{e}");
}

#[test]
fn cifar_python_reads_real_pickles() {
    let ds = open_cifar_python(&fixtures().join("cifar-100-python"), LabelKind::Fine).unwrap();
    assert_eq!(ds.kind, DatasetKind::Cifar100Python);
    assert_eq!(ds.num_classes, 100);
    assert_eq!(&ds.class_names[..3], ["apple", "aquarium_fish", "baby"]);
    assert_eq!((ds.train().dataset.len(), ds.test().dataset.len()), (5, 3));
    let labels: Vec<usize> = (0..5).map(|i| ds.train().dataset.get(i).unwrap().label).collect();
    assert_eq!(labels, [0, 1, 2, 3, 99]);
    // Pixel rule of the fixtures: image i, byte k = (7 i + k) % 256; both pickle styles.
    for split in [ds.train(), ds.test()] {
        let item = split.dataset.get(2).unwrap();
        let k = 3 * 32 + 4;
        assert_eq!(
            item.image.get_pixel(4, 3),
            &Rgb([((14 + k) % 256) as u8, ((14 + 1024 + k) % 256) as u8, ((14 + 2048 + k) % 256) as u8])
        );
    }
    assert_eq!(ds.test().dataset.get(0).unwrap().label, 4);
    let coarse = open_cifar_python(&fixtures().join("cifar-100-python"), LabelKind::Coarse).unwrap();
    assert_eq!((coarse.num_classes, coarse.class_names[1].as_str()), (20, "fish"));
    assert_eq!(coarse.train().dataset.get(4).unwrap().label, 19);

    let d = tmp("cifar_py_bad");
    for f in ["meta", "test"] {
        std::fs::copy(fixtures().join("cifar-100-python").join(f), d.join(f)).unwrap();
    }
    let train = std::fs::read(fixtures().join("cifar-100-python/train")).unwrap();
    std::fs::write(d.join("train"), &train[..train.len() / 2]).unwrap();
    let e = err_string(open_cifar_python(&d, LabelKind::Fine));
    assert!(e.contains("train") && e.contains("truncated pickle"), "{e}");
}

fn write_jpeg(path: &Path, colour: [u8; 3], w: u32, h: u32) {
    RgbImage::from_pixel(w, h, Rgb(colour)).save(path).unwrap();
}

fn flowers_dir(name: &str) -> PathBuf {
    let d = tmp(name);
    std::fs::create_dir(d.join("jpg")).unwrap();
    for f in ["imagelabels.mat", "setid.mat"] {
        std::fs::copy(fixtures().join("flowers").join(f), d.join(f)).unwrap();
    }
    for i in 1..=7u32 {
        write_jpeg(&d.join(format!("jpg/image_{i:05}.jpg")), [(i * 30) as u8, 100, 200], 40 + i, 30);
    }
    d
}

#[test]
fn flowers_splits_labels_and_images() {
    let d = flowers_dir("flowers_ok");
    let ds = open_dataset(&cfg(DatasetKind::Flowers102, &d), Path::new("/")).unwrap();
    assert_eq!(ds.num_classes, 102);
    let sizes: Vec<_> = ds.splits.iter().map(|s| (s.name.as_str(), s.dataset.len())).collect();
    assert_eq!(sizes, [("train", 3), ("valid", 2), ("test", 2)]);
    let train: Vec<usize> = (0..3).map(|i| ds.train().dataset.get(i).unwrap().label).collect();
    assert_eq!(train, [0, 1, 101]);
    let t = ds.test().dataset.get(1).unwrap();
    assert_eq!((t.label, t.image.dimensions()), (4, (47, 30)));
    let p = t.image.get_pixel(10, 10);
    assert!((p[0] as i32 - 210).abs() <= 3 && (p[2] as i32 - 200).abs() <= 3, "{p:?}");
}

#[test]
fn flowers_bad_input_names_the_file() {
    let d = flowers_dir("flowers_bad");
    std::fs::remove_file(d.join("setid.mat")).unwrap();
    let e = err_string(open_flowers102(&d, false));
    assert!(e.contains("setid.mat") && e.contains("missing"), "{e}");

    let d = flowers_dir("flowers_bad_label");
    std::fs::copy(fixtures().join("flowers/imagelabels_bad.mat"), d.join("imagelabels.mat")).unwrap();
    let e = err_string(open_flowers102(&d, false));
    assert!(e.contains("imagelabels.mat") && e.contains("label 103 out of range for 102 classes"), "{e}");

    let d = flowers_dir("flowers_not_mat");
    std::fs::write(d.join("setid.mat"), b"this is not a MAT file").unwrap();
    let e = err_string(open_flowers102(&d, false));
    assert!(e.contains("setid.mat") && e.contains("MATLAB"), "{e}");

    // A corrupt JPEG: an error naming it, or skipped and counted.
    let d = flowers_dir("flowers_corrupt");
    std::fs::write(d.join("jpg/image_00002.jpg"), b"\xff\xd8\xff\xe0 truncated").unwrap();
    let ds = open_flowers102(&d, false).unwrap();
    let e = ds.train().dataset.get(1).unwrap_err().to_string();
    assert!(e.contains("image_00002.jpg") && e.contains("cannot decode"), "{e}");
    let ds = open_flowers102(&d, true).unwrap();
    let item = ds.train().dataset.get(1).unwrap();
    assert_eq!(item.label, 101, "replaced by the next image");
}

fn write_png(path: &Path, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(8, 6, Rgb([v, v, v])).save(path).unwrap();
}

#[test]
fn image_folder_splits() {
    // Flat layout: 10 cats, 5 dogs; valid_fraction 0.2 → 2 + 1 held out.
    let d = tmp("folder_flat");
    for i in 0..10 {
        write_png(&d.join(format!("cat/{i}.png")), 10);
    }
    for i in 0..5 {
        write_png(&d.join(format!("dog/{i}.jpg.png")), 200);
    }
    let mut c = cfg(DatasetKind::Folder, &d);
    c.valid_fraction = 0.2;
    let ds = open_dataset(&c, Path::new("/")).unwrap();
    assert_eq!(ds.class_names, ["cat", "dog"]);
    assert_eq!((ds.train().dataset.len(), ds.valid().dataset.len()), (12, 3));
    assert_eq!(ds.test().name, "valid");
    let again = open_dataset(&c, Path::new("/")).unwrap();
    let paths =
        |ds: &OpenedDataset| -> Vec<usize> { (0..3).map(|i| ds.valid().dataset.get(i).unwrap().label).collect() };
    assert_eq!(paths(&ds), paths(&again));
    assert_eq!(paths(&ds), [0, 0, 1]);

    // Split file.
    std::fs::write(
        d.join("splits.txt"),
        "# split file\ntrain cat/0.png\ntrain dog/1.jpg.png\nvalid cat/1.png\ntest dog/2.jpg.png\n",
    )
    .unwrap();
    c.split_file = Some("splits.txt".into());
    let ds = open_dataset(&c, Path::new("/")).unwrap();
    let sizes: Vec<_> = ds.splits.iter().map(|s| (s.name.as_str(), s.dataset.len())).collect();
    assert_eq!(sizes, [("train", 2), ("valid", 1), ("test", 1)]);
    assert_eq!(ds.test().dataset.get(0).unwrap().label, 1);
    std::fs::write(d.join("splits.txt"), "train cat/0.png\nholdout cat/1.png\n").unwrap();
    let e = err_string(open_dataset(&c, Path::new("/")));
    assert!(e.contains("splits.txt") && e.contains("line 2") && e.contains("holdout"), "{e}");

    // Split folders.
    let d = tmp("folder_split_dirs");
    write_png(&d.join("train/a/0.png"), 1);
    write_png(&d.join("train/b/0.png"), 2);
    write_png(&d.join("train/b/1.png"), 2);
    write_png(&d.join("val/b/0.png"), 2);
    let ds = open_dataset(&cfg(DatasetKind::Folder, &d), Path::new("/")).unwrap();
    assert_eq!((ds.train().dataset.len(), ds.valid().dataset.len(), ds.num_classes), (3, 1, 2));
    assert_eq!(ds.valid().dataset.get(0).unwrap().label, 1);

    // An empty class folder is an error naming it.
    std::fs::create_dir_all(d.join("train/c")).unwrap();
    let e = err_string(open_dataset(&cfg(DatasetKind::Folder, &d), Path::new("/")));
    assert!(e.contains("train/c") && e.contains("no images"), "{e}");
}

#[test]
fn embedded_digits_resolve_against_base_dir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ds = open_dataset(&DataConfig::default(), &root).unwrap();
    assert_eq!(ds.num_classes, 10);
    assert_eq!((ds.train().dataset.len(), ds.test().dataset.len()), (1438, 359));
    assert_eq!(ds.class_names[3], "3");
}

#[test]
fn random_resized_crop_respects_bounds() {
    let c = RandomResizedCrop { scale: [0.25, 0.5], ratio: [0.5, 2.0] };
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..2000 {
        let (x, y, w, h) = c.sample(300, 200, &mut rng);
        assert!(x + w <= 300 && y + h <= 200);
        let area = (w * h) as f64 / 60000.0;
        let ratio = w as f64 / h as f64;
        // Rounding to whole pixels moves area and ratio by at most a pixel's worth.
        assert!((0.25 - 0.01..=0.5 + 0.01).contains(&area), "area {area}");
        assert!((0.5 * 0.98..=2.0 * 1.02).contains(&ratio), "ratio {ratio}");
    }
    // Impossible scale → torchvision's fallback: whole image clipped to the ratio range.
    let c = RandomResizedCrop { scale: [1.0, 1.0], ratio: [1.0, 1.0] };
    assert_eq!(c.sample(300, 200, &mut rng), (50, 0, 200, 200));
}

fn digits_cfg() -> DataConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits").to_string_lossy().into_owned();
    let mut c = DataConfig { path, num_workers: 0, ..DataConfig::default() };
    c.augment.randaugment_n = 2;
    c
}

#[test]
fn augmentation_is_a_function_of_seed_epoch_and_index() {
    let c = digits_cfg();
    let ds = open_dataset(&c, Path::new("/")).unwrap();
    let make = || TrainDataset::new(ds.train().dataset.clone(), TrainTransform::from_config(&c, 48, IMAGENET), 7);
    let (a, b) = (make(), make());
    assert_eq!(a.sample(10, 3).unwrap(), b.sample(10, 3).unwrap());
    assert_ne!(a.sample(10, 3).unwrap().pixels, a.sample(10, 4).unwrap().pixels);
    assert_ne!(a.sample(10, 3).unwrap().pixels, a.sample(11, 3).unwrap().pixels);
    // Fetching position p in epoch e gives the permuted sample of that epoch; set_epoch resumes.
    let first = a.get(0).unwrap();
    assert_eq!(first.epoch, 0);
    assert_eq!(first.index, a.permutation(0)[0] as usize);
    assert_eq!(a.get(0).unwrap().epoch, 1);
    b.control().set_epoch(1);
    assert_eq!(b.get(0).unwrap(), a.sample(a.permutation(1)[0] as usize, 1).unwrap());
    assert_ne!(a.permutation(0), a.permutation(1));
}

#[test]
fn a_split_epoch_gives_each_step_the_one_device_batch() {
    // burn-train slices the loader's positions into `devices` contiguous shares, each batched by
    // the per-device batch; step k's batches together must be one-device batch k.
    let c = digits_cfg();
    let ds = open_dataset(&c, Path::new("/")).unwrap();
    let src = ds.train().dataset.clone();
    let (devices, b, positions) = (2, 7, 1430); // 715 per device: 102 batches of 7, then 1
    let one = TrainDataset::new(src.clone(), TrainTransform::from_config(&c, 8, IMAGENET), 3);
    let two = TrainDataset::split(src, TrainTransform::from_config(&c, 8, IMAGENET), 3, positions, devices, b);
    assert_eq!(two.len(), positions);
    let order: Vec<usize> = (0..one.len()).map(|p| one.get(p).unwrap().index).collect();
    let per_device = positions / devices;
    let shares: Vec<Vec<usize>> =
        (0..devices).map(|d| (0..per_device).map(|j| two.get(d * per_device + j).unwrap().index).collect()).collect();
    let mut seen = std::collections::HashSet::new();
    for (k, start) in (0..per_device).step_by(b).enumerate() {
        let end = (start + b).min(per_device);
        let mut step: Vec<usize> = shares.iter().flat_map(|s| s[start..end].to_vec()).collect();
        let mut want = order[k * devices * b..k * devices * b + devices * (end - start)].to_vec();
        step.sort();
        want.sort();
        assert_eq!(step, want, "step {k}");
        seen.extend(step);
    }
    // The epoch is the first `positions` of the shuffle, each image once.
    assert_eq!(seen.len(), positions);
}

#[test]
fn mixup_and_cutmix_targets() {
    let (n, s, k) = (4, 8, 5);
    let labels = [0usize, 1, 2, 3];
    let base: Vec<f32> = (0..n).flat_map(|i| vec![i as f32; 3 * s * s]).collect();
    let p = MixParams { mixup_alpha: 0.4, cutmix_alpha: 0.0, prob: 1.0, switch_prob: 0.5 };
    let mut imgs = base.clone();
    let m = mix_batch(&mut imgs, &labels, s, k, &p, &mut StdRng::seed_from_u64(3)).unwrap();
    let l = m.lambda as f32;
    assert!(!m.cutmix && (0.0..=1.0).contains(&l));
    for i in 0..n {
        let row = &m.soft_targets[i * k..(i + 1) * k];
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((row[labels[i]] - l).abs() < 1e-6 && (row[labels[n - 1 - i]] - (1.0 - l)).abs() < 1e-6);
        let want = l * i as f32 + (1.0 - l) * (n - 1 - i) as f32;
        assert!((imgs[i * 3 * s * s] - want).abs() < 1e-5);
        assert_eq!(m.dominant[i], if l >= 0.5 { labels[i] } else { labels[n - 1 - i] });
    }
    let p = MixParams { mixup_alpha: 0.0, cutmix_alpha: 1.0, ..p };
    let mut imgs = base.clone();
    let m = mix_batch(&mut imgs, &labels, s, k, &p, &mut StdRng::seed_from_u64(5)).unwrap();
    assert!(m.cutmix);
    // λ is the fraction of image 0's own pixels left.
    let own = imgs[..s * s].iter().filter(|&&v| v == 0.0).count() as f64 / (s * s) as f64;
    assert!((own - m.lambda).abs() < 1e-9, "{own} vs {}", m.lambda);
    let off = MixParams { prob: 0.0, ..p };
    assert!(mix_batch(&mut imgs, &labels, s, k, &off, &mut StdRng::seed_from_u64(5)).is_none());
}

/// The loaders of `c` at ImageNet statistics (a B* model's).
fn spec(c: &DataConfig, image_size: usize, batch_size: usize, seed: u64) -> LoaderSpec {
    LoaderSpec { data: c.clone(), normalization: IMAGENET, image_size, batch_size, seed }
}

#[test]
fn loaders_give_batches_of_the_right_shape() {
    let device = Device::default();
    let mut c = digits_cfg();
    c.augment.mixup_alpha = 0.2;
    let ds = open_dataset(&c, Path::new("/")).unwrap();
    let (loader, _) = spec(&c, 40, 16, 1).train(&ds, &device);
    assert_eq!(loader.num_items(), 1438);
    let b = loader.iter().next().unwrap().unwrap();
    assert_eq!(b.images.dims(), [16, 3, 40, 40]);
    assert_eq!(b.targets.dims(), [16]);
    let soft = b.soft_targets.expect("mixup on").into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(soft.len(), 16 * 10);
    for row in soft.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    // Two workers: same batches (as a set) as a second loader with the same seed.
    c.num_workers = 2;
    c.augment.mixup_alpha = 0.0;
    let sums = |seed| {
        let (l, _) = spec(&c, 32, 100, seed).train(&ds, &device);
        let mut v: Vec<i64> = l
            .iter()
            .map(|b| {
                // Summed on the host in order: a parallel reduction's rounding varies run to run.
                let pixels = b.unwrap().images.into_data().try_to_vec::<f32>().unwrap();
                (pixels.iter().map(|&p| p as f64).sum::<f64>() * 100.0).round() as i64
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(sums(9), sums(9));
    assert_ne!(sums(9), sums(10));
}

#[test]
fn eval_loader_is_resize_and_centre_crop() {
    let device = Device::default();
    let mut c = digits_cfg();
    c.crop_fraction = 0.8;
    let ds = open_dataset(&c, Path::new("/")).unwrap();
    let loader = spec(&c, 48, 4, 0).eval(ds.valid(), &device);
    let b = loader.iter().next().unwrap().unwrap();
    assert_eq!(b.images.dims(), [4, 3, 48, 48]);
    assert!(b.soft_targets.is_none());
    let got = b.images.into_data().try_to_vec::<f32>().unwrap();
    let t = EvalTransform { crop_fraction: 0.8, ..EvalTransform::imagenet(48) };
    let want: Vec<f32> = (0..4).flat_map(|i| t.apply(&ds.valid().dataset.get(i).unwrap().image)).collect();
    assert_eq!(got, want);
    let labels = b.targets.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
    let want: Vec<i64> = (0..4).map(|i| ds.valid().dataset.get(i).unwrap().label as i64).collect();
    assert_eq!(labels, want);
}

#[test]
fn batch_and_item_types_meet_burn_train_bounds() {
    fn bounds<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    bounds::<ClassificationBatch>();
    bounds::<Sample>();
    bounds::<ImageItem>();
    bounds::<Split>();
}

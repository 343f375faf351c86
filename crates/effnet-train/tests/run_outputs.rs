//! What a run leaves for people: readable plots, `classes.txt`, and the confusion matrix behind
//! `eval`'s per-class report.

use effnet_train::classes::{flowers_names, read_classes, write_classes};
use effnet_train::confusion::ConfusionMatrix;
use effnet_train::plot::{PLOT_SIZE, PlotContext, write_plots};
use effnet_train::progress::EpochRow;
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("effnet-outputs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn row(epoch: usize, split: &str, loss: f64, top1: f64) -> EpochRow {
    EpochRow { epoch, split: split.into(), loss, top1, top5: top1, lr: None, images_per_sec: 1.0 }
}

/// Pixels darker than mid-grey (text and axes are black; the curves are saturated colours with
/// at least one bright channel) in `x0..x1 × y0..y1`.
fn dark_pixels(img: &image::RgbImage, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> usize {
    let mut n = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            let p = img.get_pixel(x, y).0;
            n += usize::from(p.iter().all(|&c| c < 100));
        }
    }
    n
}

#[test]
fn plots_have_their_size_and_text_in_the_title_and_on_the_axes() {
    let dir = tmp("plots");
    let mut rows = vec![];
    for e in 1..=12 {
        let t = e as f64;
        rows.push(row(e, "train", 2.3 / t.sqrt(), 0.1 + 0.07 * t));
        rows.push(row(e, "valid", 2.4 / t.sqrt() + 0.05, 0.08 + 0.065 * t));
    }
    let ctx = PlotContext {
        run_dir: "runs/fruit".into(),
        model: "efficientnet-b0, 5 classes".into(),
        ema_top1: Some(0.9),
        ema_loss: Some(0.7),
        label_smoothing: 0.1,
        best_epoch: None,
    };
    write_plots(&dir, &rows, &ctx);
    for name in ["loss.png", "accuracy.png"] {
        let img = image::open(dir.join(name)).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), PLOT_SIZE, "{name}");
        let (w, h) = PLOT_SIZE;
        // The title band holds text, centred: dark pixels left and right of the middle.
        let left = dark_pixels(&img, (0, 0, w / 2, 40));
        let right = dark_pixels(&img, (w / 2, 0, w, 40));
        assert!(left > 150 && right > 150, "{name}: title band {left} + {right} dark pixels");
        // The x-axis description and tick labels below the frame, the y-axis ones left of it.
        let below = dark_pixels(&img, (80, h - 45, w, h));
        let beside = dark_pixels(&img, (0, 50, 60, h - 60));
        assert!(below > 50 && beside > 150, "{name}: {below} dark pixels below the plot, {beside} beside it");
    }
    // No rows: no plot (and no panic).
    let empty = tmp("plots-empty");
    write_plots(&empty, &[], &ctx);
    assert!(!empty.join("loss.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn a_single_epoch_run_still_plots() {
    let dir = tmp("plots-one");
    write_plots(&dir, &[row(1, "train", 1.0, 0.5), row(1, "valid", 1.1, 0.4)], &PlotContext::default());
    let img = image::open(dir.join("accuracy.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), PLOT_SIZE);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn confusion_matrix_counts_and_ranks_the_worst_classes() {
    let names: Vec<String> = ["cat", "dog", "owl"].map(String::from).to_vec();
    let mut cm = ConfusionMatrix::new(3);
    // cat: 3 of 4 right; dog: 1 of 3 (twice taken for a cat); owl: 2 of 2.
    for (t, p) in [(0, 0), (0, 0), (0, 0), (0, 2), (1, 1), (1, 0), (1, 0), (2, 2), (2, 2)] {
        cm.add(t, p);
    }
    assert_eq!(cm.total(), 9);
    assert_eq!(cm.rows(), [[3, 0, 1], [2, 1, 0], [0, 0, 2]]);
    let per = cm.per_class(&names);
    assert_eq!((per[0].images, per[0].correct, per[0].top1), (4, 3, Some(0.75)));
    assert_eq!(per[1].name, "dog");
    let worst: Vec<String> = cm.worst(&names, 2).into_iter().map(|c| c.name).collect();
    assert_eq!(worst, ["dog", "cat"]);
    // A class without images has no accuracy and is not among the worst.
    let mut cm = ConfusionMatrix::new(2);
    cm.add(0, 1);
    assert_eq!(cm.per_class(&[]).iter().map(|c| c.top1).collect::<Vec<_>>(), [Some(0.0), None]);
    assert_eq!(cm.worst(&[], 5).len(), 1);
    assert_eq!(cm.worst(&[], 5)[0].name, "class 0");
}

#[test]
fn class_names_round_trip_and_flowers_names_when_present() {
    let dir = tmp("classes");
    assert_eq!(read_classes(&dir).unwrap(), None);
    write_classes(&dir, &["apple".into(), "two\nlines".into()]).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("classes.txt")).unwrap(), "apple\ntwo lines\n");
    assert_eq!(read_classes(&dir).unwrap().unwrap(), ["apple", "two lines"]);
    assert!(!dir.join("classes.txt.tmp").exists());

    // Flowers-102: 1-based indices, or the names of cat_to_name.json.
    assert_eq!(flowers_names(&dir, 3).unwrap(), ["class_001", "class_002", "class_003"]);
    std::fs::write(dir.join("cat_to_name.json"), r#"{"2": "hard-leaved pocket orchid", "1": "pink primrose"}"#)
        .unwrap();
    assert_eq!(flowers_names(&dir, 2).unwrap(), ["pink primrose", "hard-leaved pocket orchid"]);
    let e = flowers_names(&dir, 3).unwrap_err().to_string();
    assert!(e.contains("cat_to_name.json") && e.contains("no name for class \"3\""), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

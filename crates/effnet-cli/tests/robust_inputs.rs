//! Inputs a hostile or just unusual user feeds `forward` and `predict` (issue 16): lying `.npy`
//! headers, big batches, huge or thin images, truncated and unreadable files.

mod support;

use std::time::Instant;
use support::*;

/// `forward` runs a batch in `--batch-size` blocks and streams the logits: 5 images in blocks
/// of 2 give the same logits as the reference, image for image.
#[test]
fn forward_runs_a_batch_in_blocks() {
    let dir = tmp_dir("blocks");
    let fx = fixtures().join("timm_b0");
    let (shape, input) = read_npy(&fx.join("input.npy"));
    let (_, want) = read_npy(&fx.join("logits.npy"));
    let per = input.len() / 2;
    // Images 0, 1, 0, 1, 0.
    let five: Vec<f32> = (0..5).flat_map(|i| input[(i % 2) * per..(i % 2 + 1) * per].iter().copied()).collect();
    let big = dir.join("five.npy");
    write_npy(&big, &[5, shape[1], shape[2], shape[3]], &five);
    let weights = fx.join("weights.safetensors");
    let o = forward_timm_b0(&dir, &weights, &big, &["--batch-size", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("wrote logits [5, 10]"), "{}", stderr(&o));
    let (out_shape, got) = read_npy(&dir.join("logits.npy"));
    assert_eq!(out_shape, [5, 10]);
    for i in 0..5 {
        let d = max_abs_diff(&got[i * 10..(i + 1) * 10], &want[(i % 2) * 10..(i % 2 + 1) * 10]);
        assert!(d <= 1e-4, "image {i}: max |Δ| = {d:e}");
    }
    let o = forward_timm_b0(&dir, &weights, &big, &["--batch-size", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--batch-size"), "{}", stderr(&o));
    assert!(!dir.join("logits.npy.tmp").exists());
}

/// A header that claims far more data than the file holds is refused before anything is
/// allocated, naming the file (it was a panic: "more elements than fit in usize").
#[test]
fn npy_headers_that_lie_about_their_size_are_refused() {
    let dir = tmp_dir("npy");
    let weights = fixtures().join("timm_b0/weights.safetensors");
    let lying = |name: &str, shape: &str| {
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend([0u8; 64]);
        let path = dir.join(name);
        std::fs::write(&path, b).unwrap();
        path
    };
    // 2^60 and 2^62 elements (2^64 bytes), a product beyond 2^64, a plain truncated file.
    for (name, shape, claim) in [
        ("big.npy", "1073741824, 1073741824, 1, 1", "shape [1073741824, 1073741824, 1, 1] (4611686018427387904 bytes"),
        ("huge.npy", "1073741824, 1073741824, 2, 2", "(more than 2^64 bytes"),
        ("overflow.npy", "4294967296, 4294967296, 4294967296, 1", "(more than 2^64 bytes"),
        ("short.npy", "2, 3, 61, 67", "(98088 bytes"),
    ] {
        let input = lying(name, shape);
        let err = assert_clean_failure(&forward_timm_b0(&dir, &weights, &input, &[]));
        assert!(err.contains(&format!("{}: the header declares", input.display())), "{err}");
        assert!(err.contains(claim) && err.contains("the file holds 64 bytes of data"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let empty = dir.join("empty.npy");
    write_npy(&empty, &[0, 3, 8, 8], &[]);
    let err = assert_clean_failure(&forward_timm_b0(&dir, &weights, &empty, &[]));
    assert!(err.contains("empty.npy: shape [0, 3, 8, 8] holds no images"), "{err}");
}

fn predict_args(dir: &std::path::Path) -> Vec<String> {
    let cfg = narrow_config(dir);
    let weights = fixtures().join("timm_b0/weights.safetensors");
    ["predict", "--config", cfg.to_str().unwrap(), "--weights", weights.to_str().unwrap()].map(String::from).to_vec()
}

fn run(args: &[String], extra: &[&str]) -> std::process::Output {
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend(extra);
    effnet(&a)
}

/// A 20000×1 strip is cropped in source coordinates and only the crop resized (it took 44 s
/// and 4 GB); `--resolution` is bounded like `[data] image_size`.
#[test]
fn predict_bounds_the_work_of_odd_sizes() {
    let dir = tmp_dir("sizes");
    let args = predict_args(&dir);
    let strip = dir.join("strip.png");
    write_png(&strip, 20000, 1);
    let started = Instant::now();
    let o = run(&args, &["--json", strip.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(started.elapsed().as_secs_f64() < 20.0, "{:?}", started.elapsed());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["top"].as_array().unwrap().len(), 5);
    for bad in ["100000", "4"] {
        let err = assert_clean_failure(&run(&args, &["--resolution", bad, strip.to_str().unwrap()]));
        assert!(err.contains(&format!("--resolution: invalid value {bad}: must be between 8 and 4096")), "{err}");
    }
    // `data bench` has the same bound on its image size, and a batch of at least one.
    let digits = repo().join("datasets/digits");
    let bench = ["data", "bench", "--dataset", "cifar100", "--path", digits.to_str().unwrap(), "--batches", "1"];
    let err = assert_clean_failure(&effnet(&[&bench[..], &["--image-size", "100000"]].concat()));
    assert_eq!(err, "error: --image-size: invalid value 100000: must be between 8 and 4096\n");
    let err = assert_clean_failure(&effnet(&[&bench[..], &["--batch-size", "0"]].concat()));
    assert_eq!(err, "error: --batch-size: invalid value 0: must be at least 1\n");
}

/// A truncated JPEG is predicted (the decoder fills in the rest) with a warning naming it.
#[test]
fn predict_warns_about_a_truncated_jpeg() {
    let dir = tmp_dir("jpeg");
    let args = predict_args(&dir);
    let whole = dir.join("whole.jpg");
    image::RgbImage::from_fn(96, 64, |x, y| image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8]))
        .save(&whole)
        .unwrap();
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 5]).unwrap();
    let o = run(&args, &["--resolution", "32", whole.to_str().unwrap(), cut.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("warning: {}: truncated JPEG", cut.display())), "{err}");
    assert!(!err.contains("whole.jpg"), "{err}");
    assert!(stdout(&o).contains("cut.jpg") && stdout(&o).contains("whole.jpg"), "{}", stdout(&o));
}

/// Unreadable files among good ones: the good ones are predicted, each bad one is reported,
/// and the exit code says that something failed.
#[test]
fn predict_reports_bad_files_and_predicts_the_rest() {
    let dir = tmp_dir("mixed");
    let args = predict_args(&dir);
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    write_png(&a, 40, 30);
    write_png(&b, 30, 40);
    let corrupt = dir.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let missing = dir.join("missing.png");
    let o = run(
        &args,
        &[
            "--json",
            "--resolution",
            "32",
            a.to_str().unwrap(),
            missing.to_str().unwrap(),
            corrupt.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
    );
    let err = assert_clean_failure(&o);
    assert!(err.contains(&format!("error: {}: no such image file", missing.display())), "{err}");
    assert!(err.contains(&format!("error: {}: cannot decode image", corrupt.display())), "{err}");
    assert!(err.ends_with("error: 2 of the 4 images could not be read (see above)\n"), "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|r| r["image"].as_str().unwrap()).collect();
    assert_eq!(names, [a.to_str().unwrap(), b.to_str().unwrap()]);
    // A directory is not an image either; nothing readable: an error before the model is loaded.
    let err = assert_clean_failure(&run(&args, &[dir.to_str().unwrap()]));
    assert!(err.starts_with(&format!("error: {}: a directory, not an image file\n", dir.display())), "{err}");
    let err = assert_clean_failure(&run(&args, &[missing.to_str().unwrap()]));
    assert_eq!(
        err,
        format!("error: {}: no such image file\nerror: none of the 1 images could be read\n", missing.display())
    );
}

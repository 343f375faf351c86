//! Every config shipped under `configs/` validates.

use effnet_config::EffnetConfig;
use std::path::Path;

#[test]
fn shipped_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = EffnetConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            cfg.model.architecture().unwrap();
            n += 1;
        }
    }
    assert!(n >= 3, "found {n} configs");
}

#[test]
fn reference_config_equals_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/reference.toml");
    let cfg = EffnetConfig::load(&path).unwrap();
    assert_eq!(cfg, EffnetConfig::default(), "configs/reference.toml must list the defaults");
}

#[test]
fn missing_file_names_the_path() {
    let e = EffnetConfig::load(Path::new("/nonexistent/x.toml")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/x.toml: cannot read:"), "{e}");
}

fn invalid(toml: &str) -> (String, String) {
    let e = EffnetConfig::from_toml_str(toml, Path::new("c.toml")).unwrap_err();
    (e.key().unwrap_or_default().to_string(), e.to_string())
}

#[test]
fn a_seed_beyond_toml_integers_is_refused() {
    let (key, e) = invalid("[train]\nseed = 18446744073709551615\n");
    assert_eq!(key, "train.seed", "{e}");
    assert!(e.contains("18446744073709551615") && e.contains("9223372036854775807"), "{e}");
    let ok = EffnetConfig::from_toml_str("[train]\nseed = 9223372036854775807\n", Path::new("c.toml")).unwrap();
    // It round-trips through TOML, as a run's config.toml and --resume need.
    let text = toml::to_string(&ok).unwrap();
    assert_eq!(EffnetConfig::from_toml_str(&text, Path::new("c.toml")).unwrap().train.seed, i64::MAX as u64);
}

#[test]
fn mean_and_std_must_be_finite() {
    for (toml, key) in [
        ("[data]\nstd = [inf, 0.2, 0.2]\n", "data.std[0]"),
        ("[data]\nstd = [0.2, nan, 0.2]\n", "data.std[1]"),
        ("[data]\nmean = [0.5, 0.5, nan]\n", "data.mean[2]"),
        ("[data]\nmean = [-inf, 0.5, 0.5]\n", "data.mean[0]"),
    ] {
        let (k, e) = invalid(toml);
        assert_eq!(k, key, "{e}");
        assert!(e.contains("finite") && !e.contains("lr"), "{e}");
    }
}

#[test]
fn a_config_that_is_no_regular_file_is_refused_without_reading_it() {
    // /dev/zero would be read until memory runs out.
    let e = EffnetConfig::load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(e.starts_with("/dev/zero: cannot read:") && e.contains("character device"), "{e}");
    let dir = std::env::temp_dir().join(format!("effnet-config-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("c.toml");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A FIFO without a writer would block the open forever.
    let e = EffnetConfig::load(&fifo).unwrap_err().to_string();
    assert!(e.contains("a FIFO, not a regular file"), "{e}");
    let big = dir.join("big.toml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(effnet_config::fsio::MAX_TEXT_FILE + 1).unwrap();
    let e = EffnetConfig::load(&big).unwrap_err().to_string();
    assert!(e.contains("more than the 64 MB"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

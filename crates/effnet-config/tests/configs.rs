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

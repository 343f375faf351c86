//! The class names a run was trained on: `classes.txt` in the run directory, one name per line,
//! line i naming class i, so that `predict --run` prints names rather than indices.

use crate::data::DataError;
use std::path::{Path, PathBuf};

/// The file in the run directory.
pub const CLASSES_FILE: &str = "classes.txt";

/// A name as one line: line breaks inside a (folder) name would shift every later class.
fn one_line(name: &str) -> String {
    name.replace(['\n', '\r'], " ")
}

/// A regular text file of at most [`effnet_config::fsio::MAX_TEXT_FILE`] bytes.
fn read_text(path: &Path) -> Result<String, DataError> {
    effnet_config::fsio::read_text_capped(path, effnet_config::fsio::MAX_TEXT_FILE).map_err(|e| DataError::io(path, e))
}

/// Writes `run_dir/classes.txt` atomically (a temporary file renamed over it), so a reader
/// never sees half a list.
pub fn write_classes(run_dir: &Path, names: &[String]) -> std::io::Result<PathBuf> {
    let path = run_dir.join(CLASSES_FILE);
    let mut text = String::new();
    for n in names {
        text.push_str(&one_line(n));
        text.push('\n');
    }
    effnet_config::fsio::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Reads `dir/classes.txt`: `Ok(None)` when there is none.
pub fn read_classes(dir: &Path) -> Result<Option<Vec<String>>, DataError> {
    let path = dir.join(CLASSES_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_text(&path)?;
    Ok(Some(text.lines().map(String::from).collect()))
}

/// Flowers-102 ships no names. Where the dataset folder holds the widely used `cat_to_name.json`
/// (`{"1": "pink primrose", …}`, 1-based) or a `class_names.txt` of 102 lines, those name the
/// classes; otherwise `class_001` … `class_102` (the 1-based indices of `imagelabels.mat`).
pub fn flowers_names(root: &Path, classes: usize) -> Result<Vec<String>, DataError> {
    let json = root.join("cat_to_name.json");
    let txt = root.join("class_names.txt");
    if json.is_file() {
        let text = read_text(&json)?;
        let map: std::collections::HashMap<String, String> = serde_json::from_str(&text)
            .map_err(|e| DataError::format(&json, format!("expected {{\"1\": \"name\", …}}: {e}")))?;
        return (1..=classes)
            .map(|i| {
                map.get(&i.to_string())
                    .map(|n| one_line(n))
                    .ok_or_else(|| DataError::format(&json, format!("no name for class \"{i}\"")))
            })
            .collect();
    }
    if txt.is_file() {
        let text = read_text(&txt)?;
        let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if names.len() != classes {
            return Err(DataError::format(&txt, format!("{} names for {classes} classes", names.len())));
        }
        return Ok(names);
    }
    Ok((1..=classes).map(|i| format!("class_{i:03}")).collect())
}

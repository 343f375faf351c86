//! A run's `config.toml` begins with a comment naming the config file it was resolved from, so
//! that `eval --run DIR` resolves the config's relative paths (`data.path`) against the same
//! folder as training did, wherever the run directory lies. Parsers ignore the comment, so the
//! file stays a plain config.

use crate::trainer::{ConfigSource, TrainError};
use effnet_config::EffnetConfig;
use std::path::{Path, PathBuf};

const PREFIX: &str = "# source = ";

/// How a run's `config.toml` begins (it marks run directories of effnets from before
/// [`crate::run_dir::MARKER_FILE`]).
pub const HEADER_START: &str = "# Resolved by `effnet train`";

/// `s` as a one-line TOML basic string: quotes, backslashes and every control character
/// (newlines included) escaped, so that any path reads back exactly from one comment line.
pub fn toml_basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The comment lines for a run resolved from `file`.
pub fn header(file: &Path) -> String {
    let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let quoted = toml_basic_string(&abs.to_string_lossy());
    format!(
        "{HEADER_START} (every default written out). Relative paths are relative to the\n\
         # folder of the config file it was resolved from:\n{PREFIX}{quoted}\n\n"
    )
}

/// The source config named by [`header`] in a run's `config.toml` text.
pub fn source_of(text: &str) -> Option<PathBuf> {
    let line = text.lines().take_while(|l| l.starts_with('#')).find_map(|l| l.strip_prefix(PREFIX))?;
    let value: toml::Table = toml::from_str(&format!("s = {line}")).ok()?;
    value.get("s")?.as_str().map(PathBuf::from)
}

/// Loads a run's `config.toml`; relative paths resolve against its source config's folder
/// (against the run directory when the file names none).
pub fn load_run_config(path: &Path) -> Result<ConfigSource, TrainError> {
    let config = EffnetConfig::load(path)?;
    let text = effnet_config::fsio::read_text_capped(path, effnet_config::fsio::MAX_TEXT_FILE)
        .map_err(|e| TrainError::Run(format!("{}: {e}", path.display())))?;
    Ok(ConfigSource { file: source_of(&text).unwrap_or_else(|| path.to_path_buf()), config })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_path_with_newlines_and_quotes_reads_back() {
        for name in ["/x/a\nb \"c\".toml", "/x/back\\slash\r\t\u{1b}[2J.toml", "/x/plain.toml", "/x/\u{7f}del'q.toml"] {
            let h = header(Path::new(name));
            // The header stays comment lines: a parser sees an empty document.
            assert!(h.lines().all(|l| l.is_empty() || l.starts_with('#')), "{h:?}");
            assert_eq!(h.lines().count(), 4, "{h:?}");
            assert_eq!(source_of(&h), Some(PathBuf::from(name)), "{h:?}");
            let cfg = h.clone() + "[train]\nepochs = 2\n";
            assert!(toml::from_str::<toml::Table>(&cfg).is_ok(), "{cfg:?}");
        }
    }
}

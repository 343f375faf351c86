//! The file access every effnet command shares, so that nothing the user owns is overwritten or
//! followed and no read is unbounded:
//!
//! - inputs (configs, split files, dataset files, images, arrays) are opened only when they are
//!   regular files (after following symlinks): a FIFO, a device or a socket is refused in one
//!   line instead of blocking or reading forever ([`open_regular`]), and text files are read
//!   with a size cap ([`read_capped`]);
//! - outputs are written to a fresh temporary beside the target, created with `O_EXCL` under a
//!   unique name `.<name>.<random>.effnet-tmp` (never a predictable name that a planted symlink
//!   could redirect), and renamed over the target only once complete ([`AtomicFile`],
//!   [`write_atomic`]). The target must be a new path or a regular file: a directory, a symlink,
//!   a FIFO, a device or a socket is refused, never replaced. On any error the temporary is
//!   removed.

use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The largest config, split file or class list read (a 64 MB TOML is already absurd).
pub const MAX_TEXT_FILE: u64 = 64 << 20;

/// The suffix of every temporary file effnet writes (see [`AtomicFile`]).
pub const TEMP_SUFFIX: &str = ".effnet-tmp";

/// What kind of file `meta` is, in words.
fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Checks that `path` (symlinks followed) is a regular file, before anything opens it: a FIFO
/// would block the open, a device could be read forever. The error says what it is instead.
pub fn check_regular(path: &Path) -> io::Result<Metadata> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() { Ok(meta) } else { Err(invalid(format!("{}, not a regular file", kind_of(&meta)))) }
}

/// Opens `path` for reading if it is a regular file (see [`check_regular`]).
pub fn open_regular(path: &Path) -> io::Result<File> {
    check_regular(path)?;
    let file = File::open(path)?;
    // The path may have been swapped between the check and the open.
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid(format!("{}, not a regular file", kind_of(&meta))));
    }
    Ok(file)
}

/// Reads a whole regular file of at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    let too_big = |n: u64| invalid(format!("{n} bytes; more than the {} MB effnet reads from such a file", cap >> 20));
    if len > cap {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, cap)?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Checks that `path` may be replaced by a new regular file: it does not exist, or it is a
/// regular file (not followed through a symlink).
pub fn check_output_target(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(invalid(format!(
            "{}; effnet writes only to a new path or over a regular file, and does not replace or write through it",
            kind_of(&meta)
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A file being written: a unique temporary beside the target, renamed over it by
/// [`AtomicFile::commit`]. Dropped uncommitted (an error part-way), the temporary is removed.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary for `target`, after checking the target with
    /// [`check_output_target`].
    pub fn create(target: &Path) -> io::Result<Self> {
        check_output_target(target)?;
        let name = target.file_name().ok_or_else(|| invalid("not a file name".into()))?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(TEMP_SUFFIX)
            .rand_bytes(8)
            // Subject to the umask, as a plain `File::create` would be (tempfile's default is 0600).
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(parent)?;
        Ok(Self { tmp, target: target.to_path_buf() })
    }

    /// The temporary file, to write to.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// The temporary's path (for messages).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes the temporary to disk and renames it over the target (checked again).
    pub fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        check_output_target(&self.target)?;
        self.tmp.persist(&self.target).map(drop).map_err(|e| e.error)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Writes `bytes` to `path` through an [`AtomicFile`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Whether `name` is a temporary effnet (an [`AtomicFile`]) or burn-store (a checkpoint's
/// scratch file `.<name>.<pid>-<n>.tmp`) writes: the only files stale-temporary cleanup removes.
pub fn is_own_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else { return false };
    if rest.ends_with(TEMP_SUFFIX) {
        return rest.len() > TEMP_SUFFIX.len();
    }
    let Some(stem) = rest.strip_suffix(".tmp") else { return false };
    let Some((base, pid_n)) = stem.rsplit_once('.') else { return false };
    let Some((pid, n)) = pid_n.split_once('-') else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !base.is_empty() && digits(pid) && digits(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("effnet-fsio-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mkfifo(path: &Path) {
        let ok = std::process::Command::new("mkfifo").arg(path).status().unwrap().success();
        assert!(ok, "mkfifo");
    }

    #[test]
    fn write_atomic_replaces_regular_and_creates_new() {
        let d = dir("regular");
        let p = d.join("out.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // Nothing but the output is left.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    }

    #[test]
    fn write_atomic_refuses_special_targets() {
        let d = dir("special");
        let fifo = d.join("fifo");
        mkfifo(&fifo);
        let e = write_atomic(&fifo, b"x").unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        let victim = d.join("victim");
        std::fs::write(&victim, "mine").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = write_atomic(&link, b"x").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        let e = write_atomic(Path::new("/dev/null"), b"x").unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        let e = write_atomic(&d, b"x").unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        // No temporary left behind, nothing else touched.
        let mut names: Vec<String> =
            std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["fifo", "link", "victim"]);
    }

    #[test]
    fn temporaries_are_unique_and_ignore_planted_files() {
        let d = dir("planted");
        let victim = d.join("victim");
        std::fs::write(&victim, "mine").unwrap();
        // The old predictable names: a planted symlink and a user's own file.
        std::os::unix::fs::symlink(&victim, d.join("out.onnx.tmp")).unwrap();
        std::fs::write(d.join("out.npy.tmp"), "user").unwrap();
        write_atomic(&d.join("out.onnx"), b"model").unwrap();
        write_atomic(&d.join("out.npy"), b"array").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        assert_eq!(std::fs::read_to_string(d.join("out.npy.tmp")).unwrap(), "user");
        let f = AtomicFile::create(&d.join("x")).unwrap();
        let name = f.temp_path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with(".x.") && name.ends_with(TEMP_SUFFIX) && is_own_temporary(&name), "{name}");
        let tmp = f.temp_path().to_path_buf();
        drop(f);
        assert!(!tmp.exists(), "an uncommitted temporary is removed");
    }

    #[test]
    fn own_temporary_names() {
        assert!(is_own_temporary(".out.npy.a1B2c3D4.effnet-tmp"));
        assert!(is_own_temporary(".model-3.bpk.999-0.tmp"));
        for user in ["notes.tmp", "summary.tmp", ".notes.tmp", "out.npy.tmp", ".effnet-tmp", ".a.b-c.tmp", ".a.1-.tmp"]
        {
            assert!(!is_own_temporary(user), "{user}");
        }
    }

    #[test]
    fn reads_refuse_special_files_and_cap_size() {
        let d = dir("reads");
        let fifo = d.join("fifo");
        mkfifo(&fifo);
        // Would block forever if opened.
        let e = read_capped(&fifo, MAX_TEXT_FILE).unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
        let e = read_capped(Path::new("/dev/zero"), MAX_TEXT_FILE).unwrap_err().to_string();
        assert!(e.contains("character device"), "{e}");
        let big = d.join("big");
        std::fs::write(&big, vec![b'a'; 2 << 20]).unwrap();
        let e = read_capped(&big, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("2097152 bytes") && e.contains("1 MB"), "{e}");
        assert_eq!(read_capped(&big, 2 << 20).unwrap().len(), 2 << 20);
    }
}

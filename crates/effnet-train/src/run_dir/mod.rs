//! What `effnet train` guarantees about its run directory, kept out of the training loop:
//!
//! - one writer at a time: an advisory lock (`flock`) on `train.lock`, which holds the holder's
//!   PID; the kernel drops it when the process ends, so a crash leaves no stale lock;
//! - `--resume` only with the config the run started with, except [`RESUME_SAFE_KEYS`], checked
//!   before anything in the directory is written;
//! - `--resume` from the newest epoch whose three checkpoint files load and whose validation loss
//!   is finite, falling back to an earlier epoch (with a warning naming the file) otherwise;
//! - a run whose last epoch finished but whose end-of-run files are missing is completed by
//!   `--resume` rather than refused as already trained;
//! - a run directory is new, empty, or effnet's own (it holds [`MARKER_FILE`], written when a
//!   run starts, or the `config.toml` an earlier effnet wrote); a folder of the user's own is
//!   refused, naming the files a run would touch, before anything in it is written;
//! - temporaries left by a killed run are removed at start (only effnet's and burn-store's own
//!   temporary names, see [`effnet_config::fsio::is_own_temporary`]), and old epoch checkpoints
//!   are pruned ([`KeepLastAndBest`]) also after a resume.

use crate::trainer::TrainError;
use effnet_config::EffnetConfig;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::Path;

mod checkpoints;
mod outputs;
mod resume_config;

pub use checkpoints::*;
use checkpoints::{checkpoint_path, epochs_on_disk};
pub use outputs::*;
use resume_config::check_resume_config;
pub use resume_config::*;

/// The lock file in the run directory; it holds the PID of the run that holds the lock.
pub const LOCK_FILE: &str = "train.lock";

/// The file that marks a directory as an effnet run directory, written when a run starts.
pub const MARKER_FILE: &str = ".effnet-run";

/// Files written at the end of a run, after the last epoch (see [`write_end_of_run`]).
const END_OF_RUN_FILES: &[&str] = &["latest.bpk", "summary.json", "loss.png", "accuracy.png"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io { path: path.to_path_buf(), error }
}

/// The run directory's lock, held until dropped or the process ends.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `run_dir` (which must exist), or says which process holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self, TrainError> {
        let path = run_dir.join(LOCK_FILE);
        // Not truncated on open: a refused run reads the holder's PID from it.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.trim().parse::<u32>().map_or("PID unknown".to_string(), |p| format!("PID {p}"));
                return Err(TrainError::Run(format!(
                    "{}: in use by another effnet train ({holder}); wait for it to end or choose another --run-dir",
                    run_dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        file.set_len(0).map_err(io(&path))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes()).map_err(io(&path))?;
        Ok(Self { _file: file })
    }
}

/// Opens `run_dir` for a run: creates and locks it, removes stale temporaries, checks a
/// resumed config, and returns the lock with the epoch to start from (0 for a new run). With
/// `resume`, an epoch equal to `train.epochs` means only the end-of-run files remain to write.
pub fn begin(run_dir: &Path, cfg: &EffnetConfig, resume: bool) -> Result<(RunLock, usize), TrainError> {
    let no_checkpoint = || {
        TrainError::Run(format!("{}: --resume, but there is no complete checkpoint to resume from", run_dir.display()))
    };
    if run_dir.exists() && !run_dir.is_dir() {
        return Err(TrainError::Run(format!(
            "{}: not a directory (the run directory: --run-dir or runtime.run_dir)",
            run_dir.display()
        )));
    }
    if resume && !run_dir.exists() {
        return Err(no_checkpoint());
    }
    check_ownership(run_dir)?;
    std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
    let lock = RunLock::acquire(run_dir)?;
    let marker = run_dir.join(MARKER_FILE);
    if !marker.is_file() {
        effnet_config::fsio::write_atomic(&marker, b"effnet run directory: effnet train writes here\n")
            .map_err(io(&marker))?;
    }
    remove_stale_temporaries(run_dir);
    if !resume {
        if latest_checkpoint(run_dir).is_some() {
            return Err(TrainError::Run(format!(
                "{} already holds checkpoints; pass --resume to continue it or choose another --run-dir",
                run_dir.display()
            )));
        }
        return Ok((lock, 0));
    }
    let changes = check_resume_config(run_dir, cfg)?;
    let epoch = last_good_checkpoint(run_dir, true).ok_or_else(no_checkpoint)?;
    let epochs = cfg.train.epochs;
    if epoch > epochs || (epoch == epochs && end_of_run_complete(run_dir, cfg)) {
        return Err(TrainError::Run(format!(
            "{}: already trained for {epoch} epochs (train.epochs = {epochs})",
            run_dir.display()
        )));
    }
    for c in changes {
        eprintln!("note: resuming with a changed {c}");
    }
    discard_checkpoints_after(run_dir, epoch);
    if epoch == epochs {
        eprintln!("note: {}: all {epoch} epochs are trained; writing the missing end-of-run files", run_dir.display());
    }
    Ok((lock, epoch))
}

/// Whether `run_dir` is effnet's own: it holds [`MARKER_FILE`], or (a run of an effnet from
/// before the marker) a `config.toml` that `effnet train` resolved.
fn is_effnet_run_dir(run_dir: &Path) -> bool {
    if run_dir.join(MARKER_FILE).is_file() {
        return true;
    }
    let start = crate::config_source::HEADER_START.as_bytes();
    let mut head = vec![0u8; start.len()];
    effnet_config::fsio::open_regular(&run_dir.join("config.toml")).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && head == start
}

/// Refuses a run directory that exists, is not empty and is not effnet's own (see
/// [`is_effnet_run_dir`]): a run would overwrite `config.toml`, `metrics.csv` and more there.
/// The lock file alone (a run that is starting) counts as empty.
fn check_ownership(run_dir: &Path) -> Result<(), TrainError> {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return Ok(()) };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != LOCK_FILE && n != MARKER_FILE)
        .collect();
    if names.is_empty() || is_effnet_run_dir(run_dir) {
        return Ok(());
    }
    names.sort();
    let shown = names.iter().take(5).map(|n| crate::text::escape_control(n)).collect::<Vec<_>>().join(", ");
    let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
    Err(TrainError::Run(format!(
        "{}: not empty and not an effnet run directory (no {MARKER_FILE}); it holds {shown}{more}, which a run could overwrite or delete; choose a new or empty --run-dir",
        run_dir.display()
    )))
}

/// Removes the temporaries of an interrupted run in the run directory and its `checkpoint/`:
/// effnet's and burn-store's own temporary names only, never a user's `*.tmp`. With the lock
/// held, no other run is writing them.
fn remove_stale_temporaries(run_dir: &Path) {
    let mut removed = 0;
    for dir in [run_dir.to_path_buf(), run_dir.join("checkpoint")] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let own = entry.file_name().to_str().is_some_and(effnet_config::fsio::is_own_temporary);
            let regular = entry.file_type().is_ok_and(|t| t.is_file());
            if own && regular && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        eprintln!("note: removed {removed} temporary file(s) an interrupted run left in {}", run_dir.display());
    }
}

/// Deletes the checkpoints of epochs after `epoch` (unusable ones that [`last_good_checkpoint`]
/// passed over): the resumed run writes those epochs again.
fn discard_checkpoints_after(run_dir: &Path, epoch: usize) {
    for e in epochs_on_disk(run_dir).into_iter().filter(|&e| e > epoch) {
        for kind in ["model", "optim", "scheduler"] {
            let _ = std::fs::remove_file(checkpoint_path(run_dir, kind, e));
        }
        eprintln!("warning: {}: resuming from epoch {epoch}; removed the checkpoint of epoch {e}", run_dir.display());
    }
}

/// Whether the end-of-run files of a finished run are all there.
fn end_of_run_complete(run_dir: &Path, cfg: &EffnetConfig) -> bool {
    let ema = cfg.train.ema_decay.map(|_| "ema.bpk");
    END_OF_RUN_FILES.iter().copied().chain(ema).all(|f| run_dir.join(f).is_file())
}

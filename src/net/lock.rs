//! One process per data directory.
//!
//! Two processes on one data directory would sign with one key from one store:
//! the second would fork the first's chain. A running node holds an exclusive
//! lock on `DATA_DIR/tidings.lock` (an advisory `flock`, released by the kernel
//! when the process dies, so a crash leaves nothing to clean up) and writes its
//! process id and start time into it, so a second `tidings run` can say which
//! process holds the directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "tidings.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another tidings process is running on {dir} ({holder}); stop it first, or give this \
         node its own data directory"
    )]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// Who holds it, as the lock file says.
        holder: String,
    },
    /// The lock file could not be used.
    #[error("cannot lock the data directory {dir}: {error}")]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `dir` (which must exist) for this process, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |error| LockError::Io {
            dir: dir.to_path_buf(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "process unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or(0);
        let note = format!(
            "pid {}, started {}\n",
            std::process::id(),
            crate::utc::utc(started)
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(note.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_named_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let error = DataDirLock::acquire(dir.path()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("another tidings process"), "{message}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}

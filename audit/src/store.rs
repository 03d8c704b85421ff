//! Where the log's bytes live: an ordered key-value store with atomic batches.
//!
//! The log needs only this much from storage, so the protocol core and the
//! simulator never depend on sled: [`MemoryStore`] serves tests and simulations,
//! and `SledStore` (feature `sled`) the node.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Key-value pairs, in the order a range returned them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Set a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying storage reported an error.
    #[error("storage error: {0}")]
    Backend(String),
    /// The stored bytes are damaged.
    #[error("the stored data is corrupt: {0}")]
    Corrupt(String),
}

/// An ordered key-value store whose batches apply atomically.
pub trait Store: Send + 'static {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` pairs with keys in `[start, end)`, in key order.
    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError>;
    /// Up to `limit` pairs with keys in `[start, end)`, last key first.
    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError>;
    /// Applies every write, or none.
    fn apply(&mut self, writes: Vec<Write>) -> Result<(), StoreError>;
    /// Makes every applied batch durable.
    fn flush(&self) -> Result<(), StoreError>;
    /// Bytes the store occupies (on disk where there is a disk).
    fn size_bytes(&self) -> Result<u64, StoreError>;
}

/// A store in memory: for tests and the simulator.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Direct access to the raw bytes, for tamper tests.
    pub fn raw_mut(&mut self) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        &mut self.map
    }
}

fn bounds<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (Bound::Included(start), Bound::Excluded(end))
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.get(key).cloned())
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range::<[u8], _>(bounds(start, end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self
            .map
            .range::<[u8], _>(bounds(start, end))
            .rev()
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&mut self, writes: Vec<Write>) -> Result<(), StoreError> {
        for write in writes {
            match write {
                Write::Put(key, value) => {
                    self.map.insert(key, value);
                }
                Write::Delete(key) => {
                    self.map.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn size_bytes(&self) -> Result<u64, StoreError> {
        Ok(self
            .map
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

#[cfg(feature = "sled")]
pub use sled_store::SledStore;

#[cfg(feature = "sled")]
mod sled_store {
    use std::path::{Path, PathBuf};

    use super::{Pairs, Store, StoreError, Write};

    /// The log in a sled 0.34 database (one tree, prefixed keys).
    #[derive(Debug)]
    pub struct SledStore {
        db: sled::Db,
        path: PathBuf,
    }

    /// Why a sled database could not be opened.
    #[derive(Debug, thiserror::Error)]
    pub enum OpenError {
        /// sled refused to open it.
        #[error(
            "cannot open the database {path}: {reason} (if a node is running on this data \
             directory, stop it or query it through its API)"
        )]
        Open { path: PathBuf, reason: String },
        /// sled found the files corrupt, or panicked while reading them.
        #[error("the database {path} is corrupt and cannot be read")]
        Corrupt { path: PathBuf },
    }

    fn backend(error: sled::Error) -> StoreError {
        match error {
            sled::Error::Corruption { .. } => StoreError::Corrupt(error.to_string()),
            other => StoreError::Backend(other.to_string()),
        }
    }

    /// How often, and how far apart, opening retries a lock still held by this
    /// process's own just-closed handle.
    const LOCK_ATTEMPTS: u32 = 100;
    const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

    impl SledStore {
        /// Opens or creates the database at `path`.
        pub fn open(path: &Path) -> Result<Self, OpenError> {
            // The writer thread decides when to fsync (see `writer`); sled's own
            // background flusher would compete with the node for its cores.
            let config = sled::Config::new().path(path).flush_every_ms(None);
            // A database this process has just closed keeps its file lock until
            // sled's background work on it ends: wait a little for that. (Another
            // process holding it is refused earlier, by the data directory lock.)
            let mut attempts = 0;
            let opened = loop {
                // sled may panic on some corrupt files; turn that into an error.
                let opened =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
                let locked = matches!(&opened, Ok(Err(sled::Error::Io(error)))
                    if error.to_string().contains("could not acquire lock"));
                if !locked || attempts == LOCK_ATTEMPTS {
                    break opened;
                }
                attempts += 1;
                std::thread::sleep(LOCK_RETRY);
            };
            match opened {
                Ok(Ok(db)) => Ok(Self {
                    db,
                    path: path.to_path_buf(),
                }),
                Ok(Err(sled::Error::Corruption { .. })) | Err(_) => Err(OpenError::Corrupt {
                    path: path.to_path_buf(),
                }),
                Ok(Err(error)) => Err(OpenError::Open {
                    path: path.to_path_buf(),
                    reason: error.to_string(),
                }),
            }
        }

        /// Another handle on an open database (sled allows one process to open a
        /// database once; handles within it are shared).
        pub fn from_db(db: sled::Db, path: &Path) -> Self {
            Self {
                db,
                path: path.to_path_buf(),
            }
        }

        /// Where the database lives.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Direct access to sled, for tamper tests.
        pub fn db(&self) -> &sled::Db {
            &self.db
        }
    }

    fn collect(
        iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        limit: usize,
    ) -> Result<Pairs, StoreError> {
        iter.take(limit)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    impl Store for SledStore {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self
                .db
                .get(key)
                .map_err(backend)?
                .map(|value| value.to_vec()))
        }

        fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError> {
            if start >= end {
                return Ok(Vec::new());
            }
            collect(self.db.range(start..end), limit)
        }

        fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, StoreError> {
            if start >= end {
                return Ok(Vec::new());
            }
            collect(self.db.range(start..end).rev(), limit)
        }

        fn apply(&mut self, writes: Vec<Write>) -> Result<(), StoreError> {
            let mut batch = sled::Batch::default();
            for write in writes {
                match write {
                    Write::Put(key, value) => batch.insert(key, value),
                    Write::Delete(key) => batch.remove(key),
                }
            }
            self.db.apply_batch(batch).map_err(backend)
        }

        fn flush(&self) -> Result<(), StoreError> {
            self.db.flush().map(|_| ()).map_err(backend)
        }

        fn size_bytes(&self) -> Result<u64, StoreError> {
            self.db.size_on_disk().map_err(backend)
        }
    }
}

#[cfg(feature = "sled")]
pub use sled_store::OpenError;

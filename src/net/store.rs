//! The node's directory on disk, so a restarted node has its records back.
//!
//! One sled database in `DATA_DIR/store`: each origin's current record (`r` ‖
//! origin), each quarantine proof (`q` ‖ origin), and this node's own latest record
//! (`own`), which a restart must continue rather than fork. Records are stored as
//! their signed wire bytes and go through every acceptance rule again when loaded;
//! expired ones are dropped then.

use std::path::Path;

use tidings_audit::OpenError;
use tidings_keys::NodeId;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("{0}")]
    Open(#[from] OpenError),
    /// A read or write failed.
    #[error("directory store: {0}")]
    Io(String),
}

fn io(error: sled::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

/// What a store held when the node started.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The node's own latest record.
    pub own: Option<Vec<u8>>,
    /// Current records, by origin.
    pub records: Vec<(NodeId, Vec<u8>)>,
    /// Quarantine proofs.
    pub proofs: Vec<Vec<u8>>,
}

/// The persisted directory.
#[derive(Debug)]
pub struct DirectoryStore {
    db: sled::Db,
}

fn key(prefix: u8, origin: &NodeId) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(origin.as_bytes());
    key
}

impl DirectoryStore {
    /// Opens or creates the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let store = tidings_audit::SledStore::open(path)?;
        Ok(Self {
            db: store.db().clone(),
        })
    }

    /// Everything stored.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded {
            own: self.db.get(b"own").map_err(io)?.map(|value| value.to_vec()),
            ..Loaded::default()
        };
        for item in self.db.scan_prefix(b"r") {
            let (k, v) = item.map_err(io)?;
            if let Ok(origin) = <[u8; 32]>::try_from(&k[1..]) {
                loaded
                    .records
                    .push((NodeId::from_bytes(origin), v.to_vec()));
            }
        }
        for item in self.db.scan_prefix(b"q") {
            loaded.proofs.push(item.map_err(io)?.1.to_vec());
        }
        Ok(loaded)
    }

    /// Stores `origin`'s current record.
    pub fn put_record(&self, origin: &NodeId, wire: &[u8]) -> Result<(), StoreError> {
        self.db
            .insert(key(b'r', origin), wire)
            .map(|_| ())
            .map_err(io)
    }

    /// Forgets `origin`'s record.
    pub fn remove_record(&self, origin: &NodeId) -> Result<(), StoreError> {
        self.db.remove(key(b'r', origin)).map(|_| ()).map_err(io)
    }

    /// Stores a quarantine proof (and drops the origin's record).
    pub fn put_proof(&self, origin: &NodeId, proof: &[u8]) -> Result<(), StoreError> {
        self.remove_record(origin)?;
        self.db
            .insert(key(b'q', origin), proof)
            .map(|_| ())
            .map_err(io)
    }

    /// Stores this node's own latest record.
    pub fn put_own(&self, wire: &[u8]) -> Result<(), StoreError> {
        self.db.insert(b"own", wire).map(|_| ()).map_err(io)
    }

    /// Makes every write durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }
}

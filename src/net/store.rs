//! The node's directory on disk, so a restarted node has its records back.
//!
//! One sled database in `DATA_DIR/store`: each origin's current record (`r` ‖
//! origin), each quarantine proof (`q` ‖ origin), this node's own latest record
//! (`own`), which a restart must continue rather than fork, and the audit log's
//! durable head as last seen (`audit`: index and chain hash), which lets a restart
//! tell an audit log that was cut back or replaced. The roster chain: each
//! applied operation (`0x01` ‖ epoch, big-endian), this node's votes (`0x02` ‖ epoch:
//! the id of the operation it signed for that epoch) and a roster fork proof
//! (`fork`); these are synced before the driver goes on, like the own record.
//! Records are stored as their
//! signed wire bytes and go through every acceptance rule again when loaded;
//! expired ones are dropped then.
//!
//! Only the own record is made durable at once (see the durability contract in
//! `proto::event`); the rest is flushed within a second, since peers hold it too.

use std::path::Path;

use tidings_audit::OpenError;
use tidings_keys::NodeId;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A read or write failed.
    #[error("directory store: {0}")]
    Io(String),
    /// What was read is damaged.
    #[error("directory store: the stored data is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the store's files are damaged (rather than unavailable).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt(_) | StoreError::Open(OpenError::Corrupt { .. })
        )
    }
}

fn io(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Corruption { .. } => StoreError::Corrupt(error.to_string()),
        other => StoreError::Io(other.to_string()),
    }
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
    /// The audit log's durable head when the store was last flushed.
    pub audit_head: Option<(u64, [u8; 32])>,
    /// The node was recovering its own chain from peers and had not finished.
    pub recovering: bool,
    /// Applied roster operations, in epoch order.
    pub roster_ops: Vec<(u64, Vec<u8>)>,
    /// This node's votes: the operation id it signed, per epoch.
    pub votes: Vec<(u64, [u8; 32])>,
    /// A roster fork proof.
    pub roster_fork: Option<Vec<u8>>,
}

/// The persisted directory.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    db: sled::Db,
}

/// Key prefix of applied roster operations (a byte no text key starts with).
const ROSTER_OP: u8 = 0x01;
/// Key prefix of this node's roster votes.
const VOTE: u8 = 0x02;

fn epoch_key(prefix: u8, epoch: u64) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(&epoch.to_be_bytes());
    key
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
        if let Some(value) = self.db.get(b"audit").map_err(io)? {
            let bytes: [u8; 40] = value
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("the stored audit head is malformed".into()))?;
            let mut index = [0u8; 8];
            index.copy_from_slice(&bytes[..8]);
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&bytes[8..]);
            loaded.audit_head = Some((u64::from_be_bytes(index), hash));
        }
        loaded.recovering = self.db.get(b"recovering").map_err(io)?.is_some();
        let epoch = |key: &[u8]| -> Result<u64, StoreError> {
            <[u8; 8]>::try_from(&key[1..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("a roster key is malformed".into()))
        };
        for item in self.db.scan_prefix([ROSTER_OP]) {
            let (k, v) = item.map_err(io)?;
            loaded.roster_ops.push((epoch(&k)?, v.to_vec()));
        }
        for item in self.db.scan_prefix([VOTE]) {
            let (k, v) = item.map_err(io)?;
            let id = <[u8; 32]>::try_from(v.as_ref())
                .map_err(|_| StoreError::Corrupt("a stored roster vote is malformed".into()))?;
            loaded.votes.push((epoch(&k)?, id));
        }
        loaded.roster_fork = self.db.get(b"fork").map_err(io)?.map(|v| v.to_vec());
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

    /// Stores an applied roster operation.
    pub fn put_roster_op(&self, epoch: u64, op: &[u8]) -> Result<(), StoreError> {
        self.db
            .insert(epoch_key(ROSTER_OP, epoch), op)
            .map(|_| ())
            .map_err(io)
    }

    /// Stores this node's vote for `epoch`.
    pub fn put_vote(&self, epoch: u64, id: &[u8; 32]) -> Result<(), StoreError> {
        self.db
            .insert(epoch_key(VOTE, epoch), &id[..])
            .map(|_| ())
            .map_err(io)
    }

    /// Stores a roster fork proof.
    pub fn put_roster_fork(&self, proof: &[u8]) -> Result<(), StoreError> {
        self.db.insert(b"fork", proof).map(|_| ()).map_err(io)
    }

    /// Forgets a quarantine proof (a pardon).
    pub fn remove_proof(&self, origin: &NodeId) -> Result<(), StoreError> {
        self.db.remove(key(b'q', origin)).map(|_| ()).map_err(io)
    }

    /// Stores this node's own latest record.
    pub fn put_own(&self, wire: &[u8]) -> Result<(), StoreError> {
        self.db.insert(b"own", wire).map(|_| ()).map_err(io)
    }

    /// Remembers the audit log's durable head.
    pub fn put_audit_head(&self, index: u64, hash: &[u8; 32]) -> Result<(), StoreError> {
        let mut value = index.to_be_bytes().to_vec();
        value.extend_from_slice(hash);
        self.db.insert(b"audit", value).map(|_| ()).map_err(io)
    }

    /// Marks that the node is recovering its own chain (durable with the next
    /// flush): a restart before recovery finished must not start as if it had.
    pub fn mark_recovering(&self) -> Result<(), StoreError> {
        self.db
            .insert(b"recovering", &[1u8][..])
            .map(|_| ())
            .map_err(io)
    }

    /// Clears the recovering mark (durable with the next flush).
    pub fn clear_recovering(&self) -> Result<(), StoreError> {
        self.db.remove(b"recovering").map(|_| ()).map_err(io)
    }

    /// A handle for flushing from another thread.
    pub fn flusher(&self) -> sled::Db {
        self.db.clone()
    }

    /// Makes every write durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }
}

//! Starting from a data directory: the lock, the store and the audit log checked
//! against each other, and where the node's own chain stands.
//!
//! The node's latest own record is the newest of what its store holds (`own`) and
//! what its audit log says it published or took back (with the signed record as
//! evidence). Both are written and synced before any record leaves the node, so
//! either one alone suffices; together they catch each other's losses:
//!
//! - a store that is older than the audit log (cut back by corruption, or
//!   replaced) is corrected from the log, and the node says so;
//! - the store remembers the audit log's durable head (index and chain hash); an
//!   audit log that ends before it, or holds another entry there, was cut back or
//!   replaced. It is moved aside (`audit.damaged-TIME`), and a new log continues
//!   from the remembered head with a `log_resumed` entry saying what happened, so
//!   no index is used twice and no history silently shrinks;
//! - a part that cannot be opened at all (sled refuses or panics on it) is moved
//!   aside the same way: the store is rebuilt from the audit log and from peers,
//!   the audit log continues from the store's head if it is known.
//!
//! With no own record anywhere, the node has never signed only if its data
//! directory is new and it has nobody to ask (no bootstrap peer). Otherwise it
//! starts **recovering**: it signs nothing until peers returned what they hold of
//! its chain (see the own-chain rules of `proto::state`). A proof that its own key
//! equivocated, found in the store, halts signing until a pardon.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidings_audit::{AuditLog, AuditWriter, EntryKind, NewEntry, SledStore};
use tidings_keys::FederationId;
use tracing::debug;

use super::{NodeConfig, NodeError};
use crate::net::lock::DataDirLock;
use crate::net::store::{DirectoryStore, Loaded};
use crate::proto::directory::DirectoryConfig;
use crate::proto::membership::member_list;
use crate::proto::state::{announcement_of, State};
use crate::proto::{Announcement, EquivocationProof, Record, Verdict, VerifiedRecord};
use crate::recording::record_key;

/// How many entries about its own origin a node looks back through for its
/// latest publication.
const OWN_SCAN: usize = 1_000_000;

/// What startup found and did, for the actor to report.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// Said at warn level.
    pub(super) warnings: Vec<String>,
    /// Appended to the audit log first thing.
    pub(super) entries: Vec<NewEntry>,
}

/// The opened data directory.
pub(super) struct Opened {
    lock: DataDirLock,
    store: DirectoryStore,
    loaded: Loaded,
    log: AuditLog<SledStore>,
    audit_db: sled::Db,
    /// Neither a store nor an audit log existed.
    fresh: bool,
    notes: Notes,
}

/// Everything the actor starts from.
pub(super) struct Restored {
    pub(super) state: State,
    pub(super) writer: AuditWriter<SledStore>,
    pub(super) audit_db: sled::Db,
    pub(super) store: DirectoryStore,
    pub(super) lock: DataDirLock,
    pub(super) notes: Notes,
}

fn data_dir_error(path: &Path, reason: impl ToString) -> NodeError {
    NodeError::DataDir {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Moves a damaged part of the data directory aside, keeping it for inspection.
fn move_aside(path: &Path, now_ms: u64) -> Result<PathBuf, NodeError> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "part".into());
    let aside = path.with_file_name(format!("{name}.damaged-{}", now_ms / 1000));
    std::fs::rename(path, &aside).map_err(|error| {
        data_dir_error(
            path,
            format!("cannot move it aside to {}: {error}", aside.display()),
        )
    })?;
    Ok(aside)
}

/// Locks the data directory and opens the store and the audit log, repairing
/// what can be repaired and noting it.
pub(super) fn open(
    config: &NodeConfig,
    federation: FederationId,
    now_ms: u64,
) -> Result<Opened, NodeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|error| data_dir_error(dir, error))?;
    let lock = DataDirLock::acquire(dir)?;
    let mut notes = Notes::default();
    let store_path = dir.join("store");
    let audit_path = dir.join("audit");
    let store_existed = store_path.exists();
    let audit_existed = audit_path.exists();
    let (store, loaded) = open_store(&store_path, now_ms, &mut notes)?;
    let (log, audit_db) = open_audit(
        config,
        federation,
        &audit_path,
        audit_existed,
        loaded.audit_head,
        now_ms,
        &mut notes,
    )?;
    Ok(Opened {
        lock,
        store,
        loaded,
        log,
        audit_db,
        fresh: !store_existed && !audit_existed,
        notes,
    })
}

fn open_store(
    path: &Path,
    now_ms: u64,
    notes: &mut Notes,
) -> Result<(DirectoryStore, Loaded), NodeError> {
    let attempt = DirectoryStore::open(path).and_then(|store| {
        let loaded = store.load()?;
        Ok((store, loaded))
    });
    match attempt {
        Ok(opened) => Ok(opened),
        Err(error) => {
            let aside = move_aside(path, now_ms)?;
            notes.warnings.push(format!(
                "the directory store could not be read ({error}); it was moved to {} and \
                 the node rebuilds it from its audit log and its peers",
                aside.display()
            ));
            let store = DirectoryStore::open(path)?;
            let loaded = store.load()?;
            Ok((store, loaded))
        }
    }
}

/// Opens the audit log, or continues a lost or damaged one from the head the
/// store remembers.
fn open_audit(
    config: &NodeConfig,
    federation: FederationId,
    path: &Path,
    existed: bool,
    remembered: Option<(u64, [u8; 32])>,
    now_ms: u64,
    notes: &mut Notes,
) -> Result<(AuditLog<SledStore>, sled::Db), NodeError> {
    let audit_error = |error: String| NodeError::Audit(error);
    let opened = SledStore::open(path)
        .map_err(|error| match error {
            tidings_audit::OpenError::Open { reason, .. } => reason,
            corrupt => corrupt.to_string(),
        })
        .and_then(|store| {
            let db = store.db().clone();
            AuditLog::open(store, config.identity.clone(), federation, config.audit)
                .map(|log| (log, db))
                .map_err(|error| error.to_string())
        });
    let problem = match (&opened, existed) {
        (Err(error), true) => Some(format!("could not be read ({error})")),
        (Err(error), false) => return Err(audit_error(error.clone())),
        (Ok(_), false) => remembered
            .filter(|(index, _)| *index > 0)
            .map(|(index, _)| {
                format!("it was missing, though this node had written {index} entries")
            }),
        (Ok((log, _)), true) => remembered.and_then(|head| cut_back(log, head)),
    };
    let Some(problem) = problem else {
        return opened.map_err(audit_error);
    };
    drop(opened);
    let aside = if existed {
        Some(move_aside(path, now_ms)?)
    } else {
        // Only just created by the attempt above: nothing to keep.
        std::fs::remove_dir_all(path).map_err(|error| data_dir_error(path, error))?;
        None
    };
    let base = remembered.unwrap_or((0, [0; 32]));
    let kept = aside
        .map(|aside| format!("; the damaged log was moved to {}", aside.display()))
        .unwrap_or_default();
    let reason = if base.0 > 0 {
        format!(
            "the audit log {problem}{kept}; this log continues from entry {} (the durable \
             head this node last recorded)",
            base.0 + 1
        )
    } else {
        format!("the audit log {problem}{kept}; its extent is unknown, this log starts anew")
    };
    notes.warnings.push(reason.clone());
    let store = SledStore::open(path).map_err(|error| audit_error(error.to_string()))?;
    let db = store.db().clone();
    let log = AuditLog::resume(
        store,
        config.identity.clone(),
        federation,
        config.audit,
        base,
        now_ms,
        reason,
    )
    .map_err(|error| audit_error(error.to_string()))?;
    Ok((log, db))
}

/// What is wrong with `log` given the durable head the store remembers, if
/// anything.
fn cut_back(log: &AuditLog<SledStore>, (index, hash): (u64, [u8; 32])) -> Option<String> {
    match log.check_head(index, &hash) {
        Ok(Ok(())) => None,
        Ok(Err(problem)) => Some(format!("is damaged: {problem}")),
        Err(error) => Some(format!("could not be read ({error})")),
    }
}

/// The newest own record the audit log holds evidence of.
fn own_from_audit(log: &AuditLog<SledStore>, federation: &FederationId) -> Option<VerifiedRecord> {
    let me = log.node();
    let entry = log
        .newest_of(&me, &[EntryKind::Published, EntryKind::Recovered], OWN_SCAN)
        .ok()
        .flatten()?;
    let bytes = log.evidence(&entry.record?).ok().flatten()?;
    VerifiedRecord::from_bytes(&bytes, Some(federation))
        .ok()
        .filter(|record| record.origin() == me)
}

/// Builds the state machine from the opened directory, decides where the own
/// chain stands, and starts the audit writer.
pub(super) fn restore(
    config: &NodeConfig,
    federation: FederationId,
    opened: Opened,
    advertised: Vec<String>,
    now_ms: u64,
) -> Result<Restored, NodeError> {
    let Opened {
        lock,
        store,
        loaded,
        log,
        audit_db,
        fresh,
        mut notes,
    } = opened;
    let me = config.identity.node_id();
    let from_store = loaded
        .own
        .as_deref()
        .and_then(|bytes| VerifiedRecord::from_bytes(bytes, Some(&federation)).ok())
        .filter(|record| record.origin() == me);
    let from_audit = own_from_audit(&log, &federation);
    let own = newest_own(&store, from_store, from_audit, &mut notes)?;
    let mut directory = DirectoryConfig::new(federation);
    directory.origin_rate = config.origin_rate;
    let roster = Arc::new(config.roster.clone());
    let mut state = State::new(
        config.identity.clone(),
        directory,
        config.gossip.clone(),
        roster.clone(),
        member_list(&roster),
        now_ms,
    );
    match &own {
        Some(record) => state.restore_own(record.clone(), now_ms),
        None if fresh && config.bootstrap.is_empty() => {}
        None => {
            notes.warnings.push(
                "no record of this node's own chain is on disk: it signs nothing until its \
                 peers have returned what they hold of it"
                    .into(),
            );
            state.mark_lost(now_ms);
        }
    }
    restore_directory(&mut state, &store, loaded, federation, now_ms)?;
    state.add_bootstrap(config.bootstrap.iter().map(|(peer, _)| *peer));
    let mut announcement = Announcement {
        addrs: advertised,
        specialists: config.specialists.clone(),
    };
    if announcement.specialists.is_empty() {
        // Keep what was announced before the restart unless the config names specialists.
        if let Some(own) = &own {
            announcement.specialists = announcement_of(own).specialists;
        }
    }
    // Refuse an announcement peers would refuse, now rather than later.
    VerifiedRecord::sign(
        &config.identity,
        Record::first(
            federation,
            me,
            announcement.clone(),
            now_ms,
            config.gossip.ttl_ms,
        ),
    )
    .map_err(|error| NodeError::Publish(crate::proto::PublishError::Invalid(error)))?;
    state.set_announcement(announcement);
    let writer = AuditWriter::spawn(log, 8192).map_err(|e| NodeError::Audit(e.to_string()))?;
    Ok(Restored {
        state,
        writer,
        audit_db,
        store,
        lock,
        notes,
    })
}

/// The newer of the store's and the audit log's own record; the store is brought
/// up to date when the log was ahead.
fn newest_own(
    store: &DirectoryStore,
    from_store: Option<VerifiedRecord>,
    from_audit: Option<VerifiedRecord>,
    notes: &mut Notes,
) -> Result<Option<VerifiedRecord>, NodeError> {
    let store_seq = from_store.as_ref().map(VerifiedRecord::seq);
    let newest = match (from_store, from_audit) {
        (Some(stored), Some(audited)) if audited.seq() > stored.seq() => Some(audited),
        (Some(stored), _) => Some(stored),
        (None, audited) => audited,
    };
    if let Some(record) = &newest {
        if store_seq != Some(record.seq()) {
            notes.warnings.push(format!(
                "the directory store held {}, but the audit log shows seq {} was signed: \
                 continuing this node's chain from seq {}",
                store_seq.map_or("no own record".to_string(), |seq| format!("seq {seq}")),
                record.seq(),
                record.seq()
            ));
            notes.entries.push(NewEntry {
                at_ms: 0,
                kind: EntryKind::Recovered,
                peer: None,
                origin: Some(record.origin()),
                record: Some(record_key(&record.id())),
                reason: format!(
                    "took back this node's own record seq {} from its audit log (the \
                     directory store was behind)",
                    record.seq()
                ),
                evidence: Some(record.wire_bytes().to_vec()),
            });
            store.put_own(record.wire_bytes())?;
            store.flush()?;
        }
    }
    Ok(newest)
}

fn restore_directory(
    state: &mut State,
    store: &DirectoryStore,
    loaded: Loaded,
    federation: FederationId,
    now_ms: u64,
) -> Result<(), NodeError> {
    let mut kept = 0;
    for (origin, bytes) in loaded.records {
        let verdict = VerifiedRecord::from_bytes(&bytes, Some(&federation))
            .map(|record| state.restore_record(record, now_ms));
        match verdict {
            Ok(Verdict::Accepted { .. } | Verdict::Duplicate(_)) => kept += 1,
            _ => store.remove_record(&origin)?,
        }
    }
    for bytes in loaded.proofs {
        if let Ok(proof) = EquivocationProof::decode(&bytes) {
            state.restore_proof(&proof);
        }
    }
    debug!(records = kept, "directory restored");
    Ok(())
}

//! Starting from a data directory: the lock, the store and the audit log checked
//! against each other, and where the node's own chain stands.
//!
//! The node's latest own record is the newer of what its store holds (`own`) and
//! what its audit log says it published or took back (with the signed record as
//! evidence). Both are written and synced before any record leaves the node, so
//! on a clean restart they agree (or differ by the one record a crash caught
//! between the two syncs, which never left the node). They also catch each
//! other's losses:
//!
//! - the store remembers the audit log's durable head (index and chain hash); an
//!   audit log that ends before it, or holds another entry there, was cut back or
//!   replaced. It is moved aside (`audit.damaged-TIME`), and a new log continues
//!   from the remembered head with a `log_resumed` entry saying what happened, so
//!   no index is used twice and no history silently shrinks;
//! - a part that sled finds corrupt is moved aside the same way; a part that
//!   cannot be opened for another reason (in use, permissions) stops the start
//!   with a clear error, and nothing is moved.
//!
//! The node signs at once only after a clean restart. After any repair, a
//! disagreement between the two parts, a data directory that vanished, or a
//! restart during an unfinished recovery (the store keeps a marker until it
//! ends), it starts **recovering**: it signs nothing until a peer has shown what it
//! holds of the node's chain, takes back anything newer, and then jumps its chain
//! well above everything it found (see the own-chain rules of `proto::state`).
//! A new node (its key just made by `tidings init`, which leaves a `new-node`
//! marker, or a library caller's `NodeConfig::new_node`) with an empty directory
//! starts its chain at once. A proof that its own key equivocated, found in the
//! store, halts signing until a pardon.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidings_audit::{AuditError, AuditLog, AuditWriter, EntryKind, NewEntry, OpenError, SledStore};
use tidings_keys::{FederationId, NodeId};
use tracing::debug;

use super::{NodeConfig, NodeError};
use crate::net::lock::DataDirLock;
use crate::net::store::{DirectoryStore, Loaded};
use crate::proto::directory::{DirectoryConfig, VerifiedCache};
use crate::proto::roster::{Action, Genesis, Ledger, RosterForkProof, RosterHash, SignedOp};
use crate::proto::state::{announcement_of, State};
use crate::proto::{Announcement, EquivocationProof, Record, Verdict, VerifiedRecord};
use crate::recording::record_key;

/// How many entries about its own origin a node looks back through for its
/// latest publication.
const OWN_SCAN: usize = 1_000_000;

/// Recently verified records kept (they are shared with the directory, so the
/// cache holds little beyond what the directory holds).
const VERIFIED_CACHE_RECORDS: usize = 1024;

/// The marker `tidings init` leaves in the data directory of a new key.
pub const NEW_NODE_MARKER: &str = "new-node";

/// What startup found and did, for the actor to report.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// Said at warn level.
    pub(super) warnings: Vec<String>,
    /// Appended to the audit log first thing.
    pub(super) entries: Vec<NewEntry>,
    /// A part of the data directory was damaged, missing or rebuilt.
    repaired: bool,
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
    /// The data directory belongs to a new key that never signed.
    new_node: bool,
    /// The key this one replaced by a roster rotation, whose history the data
    /// directory holds.
    rotated_from: Option<NodeId>,
    notes: Notes,
}

/// Everything the actor starts from.
pub(super) struct Restored {
    pub(super) state: State,
    /// Records verified recently, shared by the state and the checkers.
    pub(super) cache: Arc<VerifiedCache>,
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
    let fresh = !store_path.exists() && !audit_path.exists();
    let marker = dir.join(NEW_NODE_MARKER);
    let new_node = fresh && (config.new_node || marker.exists());
    let audit_existed = audit_path.exists();
    let (store, loaded) = open_store(&store_path, now_ms, &mut notes)?;
    let rotated_from = rotated_from(config, federation, &loaded);
    if let Some(old) = rotated_from {
        set_aside_rotated_log(config, federation, &audit_path, old, now_ms, &mut notes)?;
    }
    let audit_existed = audit_existed && audit_path.exists();
    let remembered = if rotated_from.is_some() && !audit_path.exists() {
        // The head the store remembers is the old key's log's.
        None
    } else {
        loaded.audit_head
    };
    let (log, audit_db) = open_audit(
        config,
        federation,
        &audit_path,
        audit_existed,
        remembered,
        now_ms,
        &mut notes,
    )?;
    if marker.exists() {
        // The store and the log exist from here on: the marker has done its job.
        let _ = std::fs::remove_file(&marker);
    }
    Ok(Opened {
        lock,
        store,
        loaded,
        log,
        audit_db,
        fresh,
        new_node,
        rotated_from,
        notes,
    })
}

/// The key this node's key replaced, when the stored roster chain rotated a
/// member's key to this one and the data directory still holds the old key's
/// history (its own record, its audit log). The chain is read, not checked
/// here: `restore_roster` checks it from the genesis (and refuses to start on
/// a chain that does not apply), and a log set aside is kept, not deleted.
fn rotated_from(config: &NodeConfig, federation: FederationId, loaded: &Loaded) -> Option<NodeId> {
    let me = config.identity.node_id();
    let own = loaded
        .own
        .as_deref()
        .and_then(|bytes| VerifiedRecord::from_bytes(bytes, Some(&federation)).ok())?;
    if own.origin() == me {
        return None;
    }
    loaded.roster_ops.iter().find_map(|(_, bytes)| {
        match SignedOp::decode(bytes).ok()?.body.action {
            Action::Rotate { from, to } if to == me && from == own.origin() => Some(from),
            _ => None,
        }
    })
}

/// Moves the audit log signed by the rotated-away key aside (kept, readable
/// with `tidings audit log --dir`), so that the new key starts its own log.
fn set_aside_rotated_log(
    config: &NodeConfig,
    federation: FederationId,
    path: &Path,
    old: NodeId,
    now_ms: u64,
    notes: &mut Notes,
) -> Result<(), NodeError> {
    if !path.exists() {
        return Ok(());
    }
    let belongs_to_old = match try_open_audit(config, federation, path) {
        Err(AuditOpenError::OtherKey(found)) => found == old,
        _ => false,
    };
    if !belongs_to_old {
        return Ok(());
    }
    // A directory of its own, laid out as a data directory, so that the audit
    // commands read it (`tidings audit verify -d DIR/old-key-…`).
    let mut holder = path.with_file_name(format!("old-key-{}", old.short()));
    if holder.exists() {
        holder = path.with_file_name(format!("old-key-{}-{}", old.short(), now_ms / 1000));
    }
    std::fs::create_dir_all(&holder).map_err(|error| data_dir_error(&holder, error))?;
    let aside = holder.join("audit");
    std::fs::rename(path, &aside).map_err(|error| {
        data_dir_error(
            path,
            format!("cannot move the old key's audit log aside: {error}"),
        )
    })?;
    notes.warnings.push(format!(
        "this node's key was rotated from {old} to {}: the old key's audit log is kept at {} \
         and a new log starts; the record chain continues under the new key",
        config.identity.node_id(),
        aside.display()
    ));
    Ok(())
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
        Err(error) if error.is_corruption() => {
            let aside = move_aside(path, now_ms)?;
            notes.repaired = true;
            notes.warnings.push(format!(
                "the directory store is corrupt ({error}); it was moved to {} and the node \
                 rebuilds it from its audit log and its peers",
                aside.display()
            ));
            let store = DirectoryStore::open(path)?;
            let loaded = store.load()?;
            Ok((store, loaded))
        }
        Err(error) => Err(error.into()),
    }
}

/// Why an audit log could not be opened: damaged (moved aside), or unavailable.
enum AuditOpenError {
    Corrupt(String),
    Unavailable(String),
    /// The log was written by this other key.
    OtherKey(NodeId),
}

fn try_open_audit(
    config: &NodeConfig,
    federation: FederationId,
    path: &Path,
) -> Result<(AuditLog<SledStore>, sled::Db), AuditOpenError> {
    let store = SledStore::open(path).map_err(|error| match error {
        OpenError::Corrupt { .. } => AuditOpenError::Corrupt(error.to_string()),
        OpenError::Open { reason, .. } => AuditOpenError::Unavailable(reason),
    })?;
    let db = store.db().clone();
    AuditLog::open(store, config.identity.clone(), federation, config.audit)
        .map(|log| (log, db))
        .map_err(|error| match error {
            AuditError::CorruptMeta(_)
            | AuditError::Store(tidings_audit::StoreError::Corrupt(_)) => {
                AuditOpenError::Corrupt(error.to_string())
            }
            AuditError::WrongNode { found, .. } => AuditOpenError::OtherKey(found),
            other => AuditOpenError::Unavailable(other.to_string()),
        })
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
    let opened = try_open_audit(config, federation, path);
    let problem = match (&opened, existed) {
        (Err(AuditOpenError::Unavailable(reason)), _) => {
            return Err(NodeError::Audit(format!(
                "cannot open the audit log at {}: {reason}",
                path.display()
            )))
        }
        (Err(AuditOpenError::OtherKey(found)), _) => {
            return Err(NodeError::Audit(format!(
                "the audit log at {} was written by key {found}, not by this node's key {}",
                path.display(),
                config.identity.node_id()
            )))
        }
        (Err(AuditOpenError::Corrupt(reason)), true) => Some(format!("is corrupt ({reason})")),
        (Err(AuditOpenError::Corrupt(reason)), false) => {
            return Err(NodeError::Audit(reason.clone()))
        }
        (Ok(_), false) => remembered
            .filter(|(index, _)| *index > 0)
            .map(|(index, _)| format!("was missing, though this node had written {index} entries")),
        (Ok((log, _)), true) => remembered.and_then(|head| cut_back(log, head)),
    };
    let Some(problem) = problem else {
        return opened.map_err(|_| NodeError::Audit("the audit log could not be opened".into()));
    };
    drop(opened);
    notes.repaired = true;
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
    let store = SledStore::open(path).map_err(|error| NodeError::Audit(error.to_string()))?;
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
    .map_err(|error| NodeError::Audit(error.to_string()))?;
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

/// Where the node's own chain stands at start.
#[derive(Debug)]
enum Start {
    /// A clean restart (or a new node): sign above this record at once.
    Known(Option<VerifiedRecord>),
    /// Recover from peers first; the record found, if any, is a lower bound.
    Recovering(Option<VerifiedRecord>),
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
        new_node,
        rotated_from,
        mut notes,
    } = opened;
    let me = config.identity.node_id();
    let stored_own = loaded
        .own
        .as_deref()
        .and_then(|bytes| VerifiedRecord::from_bytes(bytes, Some(&federation)).ok());
    // The rotated-away key's latest record: the new key's chain continues above it.
    let predecessor = stored_own
        .clone()
        .filter(|record| Some(record.origin()) == rotated_from);
    let from_store = stored_own.filter(|record| record.origin() == me);
    let from_audit = own_from_audit(&log, &federation);
    let start = decide(
        &store,
        from_store,
        from_audit,
        fresh,
        new_node,
        loaded.recovering,
        log.base().0 > 0,
        &mut notes,
    )?;
    let mut directory = DirectoryConfig::new(federation);
    directory.origin_rate = config.origin_rate;
    let genesis = Genesis::from_roster(federation, &config.roster)
        .map_err(|error| NodeError::Roster(error.to_string()))?;
    let mut state = State::new(
        config.identity.clone(),
        directory,
        config.gossip.clone(),
        Ledger::new(genesis),
        now_ms,
    );
    restore_roster(&mut state, &loaded, now_ms, &mut notes)?;
    // Votes are in the store, and each is audited (`roster_signed`): a store
    // that was repaired or lost gets them back from the log, so a restart
    // never signs a second operation for an epoch.
    for (epoch, id) in votes_from_audit(&log) {
        state.restore_vote(epoch, RosterHash(id));
    }
    // Records this node verified recently, or its checkers verified ahead of
    // the state machine: the same bytes again (from another peer, or after the
    // origin moved on) skip the signature check.
    let cache = Arc::new(VerifiedCache::new(VERIFIED_CACHE_RECORDS));
    state.set_verified_cache(cache.clone());
    let own = match start {
        Start::Known(own) => {
            if let Some(record) = &own {
                state.restore_own(record.clone(), now_ms);
            }
            own
        }
        Start::Recovering(own) => {
            if let Some(record) = &own {
                state.restore_own(record.clone(), now_ms);
            }
            state.mark_lost(now_ms);
            // Durably: a restart before recovery ends recovers again.
            store.mark_recovering()?;
            store.flush()?;
            own
        }
    };
    restore_directory(&mut state, &store, loaded, federation, now_ms)?;
    if let (None, Some(previous)) = (&own, &predecessor) {
        state.continue_chain(previous.clone());
    }
    let own = own.or(predecessor);
    state.add_bootstrap(config.bootstrap.iter().map(|(peer, _)| *peer));
    // The configuration file's specialists, and those the API announced
    // before (see `configured`).
    let before = own
        .as_ref()
        .map(|own| announcement_of(own).specialists)
        .unwrap_or_default();
    let owned = super::configured::read(&config.data_dir);
    let announcement = Announcement {
        addrs: advertised,
        specialists: super::configured::apply(&before, &owned, &config.specialists),
    };
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
    super::configured::write(
        &config.data_dir,
        &super::configured::names(&config.specialists),
    )
    .map_err(|error| NodeError::DataDir {
        path: config.data_dir.join(super::configured::FILE),
        reason: error.to_string(),
    })?;
    let writer = AuditWriter::spawn_with(log, 8192, crate::net::priority::background)
        .map_err(|e| NodeError::Audit(e.to_string()))?;
    Ok(Restored {
        state,
        cache,
        writer,
        audit_db,
        store,
        lock,
        notes,
    })
}

/// Where the own chain stands, from what the store and the audit log hold (see
/// the module docs); brings the store up to date and notes what it did.
#[allow(clippy::too_many_arguments)]
fn decide(
    store: &DirectoryStore,
    from_store: Option<VerifiedRecord>,
    from_audit: Option<VerifiedRecord>,
    fresh: bool,
    new_node: bool,
    was_recovering: bool,
    audit_pruned: bool,
    notes: &mut Notes,
) -> Result<Start, NodeError> {
    let seq = |record: &Option<VerifiedRecord>| record.as_ref().map_or(0, VerifiedRecord::seq);
    let (store_seq, audit_seq) = (seq(&from_store), seq(&from_audit));
    // A clean restart: both parts agree, up to the one record a crash can catch
    // between their two syncs (or the log pruned the publications it had).
    let agree = store_seq.abs_diff(audit_seq) <= 1 || (audit_seq == 0 && audit_pruned);
    let newest = if audit_seq > store_seq {
        from_audit.clone()
    } else {
        from_store.clone()
    };
    if let Some(record) = &newest {
        if store_seq < record.seq() {
            store.put_own(record.wire_bytes())?;
            store.flush()?;
            notes.warnings.push(format!(
                "the directory store held {}, but the audit log shows seq {} was signed: \
                 continuing from seq {}",
                if store_seq == 0 {
                    "no own record".to_string()
                } else {
                    format!("seq {store_seq}")
                },
                record.seq(),
                record.seq()
            ));
        }
        if audit_seq < record.seq() {
            // Signed and synced to the store, but the log's sync was cut short:
            // the log gets the evidence now.
            notes.entries.push(NewEntry {
                at_ms: 0,
                kind: EntryKind::Recovered,
                peer: None,
                origin: Some(record.origin()),
                record: Some(record_key(&record.id())),
                reason: format!(
                    "this node's own record seq {}, found in its store: the audit log had \
                     not recorded its publication",
                    record.seq()
                ),
                evidence: Some(record.wire_bytes().to_vec()),
            });
        }
    }
    if was_recovering {
        notes.warnings.push(
            "this node was recovering its own chain when it stopped: it goes on recovering".into(),
        );
        return Ok(Start::Recovering(newest));
    }
    if fresh {
        if new_node {
            return Ok(Start::Known(None));
        }
        notes.warnings.push(
            "no store and no audit log: this node may have lost its data (a new node's \
             directory comes from `tidings init`); it signs nothing until a peer has shown \
             what it holds of its chain"
                .into(),
        );
        return Ok(Start::Recovering(None));
    }
    if notes.repaired || !agree {
        if !agree {
            notes.warnings.push(format!(
                "the directory store (seq {store_seq}) and the audit log (seq {audit_seq}) \
                 disagree about this node's latest record"
            ));
        }
        notes.warnings.push(
            "after a repair this node recovers its own chain from its peers before it signs".into(),
        );
        return Ok(Start::Recovering(newest));
    }
    Ok(Start::Known(newest))
}

/// This node's roster votes as its audit log records them: `roster_signed`
/// entries name the operation (as their record) and its epoch (in the reason).
fn votes_from_audit(log: &AuditLog<SledStore>) -> Vec<(u64, [u8; 32])> {
    let mut votes = Vec::new();
    let mut after = 0;
    loop {
        let query = tidings_audit::Query {
            kind: Some(EntryKind::RosterSigned),
            after_index: after,
            limit: 1000,
            ..Default::default()
        };
        let Ok(entries) = log.query(&query) else {
            break;
        };
        let Some(last) = entries.last() else {
            break;
        };
        after = last.index;
        for entry in &entries {
            let epoch = entry
                .reason
                .split(" for epoch ")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse::<u64>().ok());
            if let (Some(epoch), Some(record)) = (epoch, entry.record) {
                votes.push((epoch, record.0));
            }
        }
        if entries.len() < 1000 {
            break;
        }
    }
    votes
}

/// Replays the stored roster chain from the genesis, then this node's votes and
/// a fork proof. A stored operation that does not apply is a damaged store: the
/// node refuses to start rather than judge records by a roster it cannot trust.
fn restore_roster(
    state: &mut State,
    loaded: &Loaded,
    now_ms: u64,
    notes: &mut Notes,
) -> Result<(), NodeError> {
    for (epoch, bytes) in &loaded.roster_ops {
        let op = SignedOp::decode(bytes).map_err(|error| {
            NodeError::Roster(format!(
                "stored roster operation for epoch {epoch}: {error}"
            ))
        })?;
        state.restore_roster_op(&op, now_ms).map_err(|error| {
            NodeError::Roster(format!(
                "stored roster operation for epoch {epoch}: {error}"
            ))
        })?;
    }
    for (epoch, id) in &loaded.votes {
        state.restore_vote(*epoch, RosterHash(*id));
    }
    if let Some(bytes) = &loaded.roster_fork {
        match RosterForkProof::decode(bytes)
            .map_err(|error| error.to_string())
            .and_then(|proof| state.restore_roster_fork(proof).map_err(|e| e.to_string()))
        {
            Ok(()) => notes.warnings.push(
                "a roster fork proof is stored: roster changes have stopped until the \
                 operators agree on a new genesis"
                    .into(),
            ),
            Err(error) => notes.warnings.push(format!(
                "the stored roster fork proof is not valid ({error}); ignored"
            )),
        }
    }
    let roster = state.ledger().state();
    if roster.epoch() > 0 {
        debug!(
            epoch = roster.epoch(),
            members = roster.members().len(),
            "roster restored"
        );
    }
    Ok(())
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

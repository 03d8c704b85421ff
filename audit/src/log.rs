//! [`AuditLog`]: append, query, verify and prune, over any [`Store`].
//!
//! Key layout (one keyspace, so every append is one atomic batch):
//!
//! | key | value |
//! |---|---|
//! | `e` ‖ index | the entry (postcard) |
//! | `r` ‖ record ‖ index, `o` ‖ origin ‖ index, `p` ‖ peer ‖ index | empty (indexes) |
//! | `v` ‖ record | the signed evidence, stored once |
//! | `c` ‖ index | a signed checkpoint |
//! | `m` | the log's metadata: next index, head hash, signed base |
//!
//! Entries, index keys, evidence, checkpoints and metadata of one append go in one
//! batch: after a crash the log holds every batch or none of it, and the indexes
//! always agree with the entries.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tidings_keys::{FederationId, Identity, NodeId};

use crate::checkpoint::Checkpoint;
use crate::entry::{
    bounded_reason, hex32, Entry, EntryKind, NewEntry, RecordKey, MAX_EVIDENCE_BYTES,
};
use crate::store::{Store, StoreError, Write};
use crate::verify::{ChainCheck, Problem, Verified};

const META_KEY: &[u8] = b"m";

/// When checkpoints are signed, and what is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditConfig {
    /// Sign a checkpoint after this many entries...
    pub checkpoint_every_entries: u64,
    /// ...or once this much log time has passed since the last one.
    pub checkpoint_every_ms: u64,
    /// Prune the oldest entries when the log's bytes exceed this.
    pub max_bytes: Option<u64>,
    /// Prune entries older than this (relative to the newest entry).
    pub max_age_ms: Option<u64>,
    /// Entries removed per pruning step.
    pub prune_chunk: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_entries: 1024,
            checkpoint_every_ms: 60_000,
            max_bytes: Some(1 << 30),
            max_age_ms: Some(90 * 24 * 60 * 60 * 1000),
            prune_chunk: 1024,
        }
    }
}

/// Why the log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The log was opened for reading only.
    #[error("the audit log is open for reading only")]
    ReadOnly,
    /// There is no log in this store.
    #[error("no audit log has been written here yet")]
    Empty,
    /// The log was written by another node.
    #[error("this audit log belongs to node {found}, not to {expected}")]
    WrongNode { expected: NodeId, found: NodeId },
    /// The metadata does not decode.
    #[error("the audit log's metadata is corrupt: {0}")]
    CorruptMeta(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    node: NodeId,
    federation: FederationId,
    next_index: u64,
    #[serde(with = "hex32")]
    head: [u8; 32],
    base_index: u64,
    #[serde(with = "hex32")]
    base_hash: [u8; 32],
    last_checkpoint_index: u64,
    last_checkpoint_at_ms: u64,
    last_at_ms: u64,
    logical_bytes: u64,
}

/// A query over the log. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Entries about this record.
    pub record: Option<RecordKey>,
    /// Entries about this origin.
    pub origin: Option<NodeId>,
    /// Entries involving this peer.
    pub peer: Option<NodeId>,
    /// Entries of this kind.
    pub kind: Option<EntryKind>,
    /// Entries at or after this time.
    pub since_ms: Option<u64>,
    /// Entries before this time.
    pub until_ms: Option<u64>,
    /// Entries after this index (for paging).
    pub after_index: u64,
    /// At most this many entries (0: 100).
    pub limit: usize,
}

/// Size and span of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// First entry present (after pruning).
    pub first_index: u64,
    /// Last entry.
    pub last_index: u64,
    /// Bytes the store occupies.
    pub store_bytes: u64,
    /// Bytes of entries, indexes and evidence as counted by the log.
    pub logical_bytes: u64,
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![prefix];
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn entry_key(index: u64) -> Vec<u8> {
    key(b'e', &[&index.to_be_bytes()])
}

fn index_from_key(raw: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    if raw.len() >= 8 {
        bytes.copy_from_slice(&raw[raw.len() - 8..]);
    }
    u64::from_be_bytes(bytes)
}

fn checkpoint_writes(
    identity: &Identity,
    meta: &mut Meta,
    index: u64,
    head: [u8; 32],
    at_ms: u64,
    writes: &mut Vec<Write>,
) {
    let checkpoint = Checkpoint::sign(identity, &meta.federation, index, head, at_ms);
    let bytes = postcard::to_allocvec(&checkpoint).unwrap_or_default();
    meta.logical_bytes += 9 + bytes.len() as u64;
    writes.push(Write::Put(key(b'c', &[&index.to_be_bytes()]), bytes));
    meta.last_checkpoint_index = index;
    meta.last_checkpoint_at_ms = at_ms;
}

/// The tamper-evident log of one node.
pub struct AuditLog<S: Store> {
    store: S,
    /// Evidence keys known to be stored (a cache that saves a lookup per entry).
    known_evidence: std::collections::HashSet<RecordKey>,
    identity: Option<Arc<Identity>>,
    config: AuditConfig,
    meta: Meta,
}

impl<S: Store> std::fmt::Debug for AuditLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("next_index", &self.meta.next_index)
            .finish()
    }
}

impl<S: Store> AuditLog<S> {
    /// Opens the log in `store`, creating it for `identity` if empty.
    pub fn open(
        store: S,
        identity: Arc<Identity>,
        federation: FederationId,
        config: AuditConfig,
    ) -> Result<Self, AuditError> {
        let node = identity.node_id();
        let meta = match store.get(META_KEY)? {
            Some(bytes) => postcard::from_bytes::<Meta>(&bytes)
                .map_err(|error| AuditError::CorruptMeta(error.to_string()))?,
            None => Meta {
                node,
                federation,
                next_index: 1,
                head: [0; 32],
                base_index: 0,
                base_hash: [0; 32],
                last_checkpoint_index: 0,
                last_checkpoint_at_ms: 0,
                last_at_ms: 0,
                logical_bytes: 0,
            },
        };
        if meta.node != node {
            return Err(AuditError::WrongNode {
                expected: node,
                found: meta.node,
            });
        }
        Ok(Self {
            store,
            known_evidence: Default::default(),
            identity: Some(identity),
            config,
            meta,
        })
    }

    /// Opens an existing log for reading, queries and verification only (no key).
    pub fn open_read_only(store: S) -> Result<Self, AuditError> {
        let bytes = store.get(META_KEY)?.ok_or(AuditError::Empty)?;
        let meta = postcard::from_bytes::<Meta>(&bytes)
            .map_err(|error| AuditError::CorruptMeta(error.to_string()))?;
        Ok(Self {
            store,
            known_evidence: Default::default(),
            identity: None,
            config: AuditConfig::default(),
            meta,
        })
    }

    /// The node whose log this is.
    pub fn node(&self) -> NodeId {
        self.meta.node
    }

    /// The federation the checkpoints are signed for.
    pub fn federation(&self) -> FederationId {
        self.meta.federation
    }

    /// The index the next entry will get.
    pub fn next_index(&self) -> u64 {
        self.meta.next_index
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The underlying store, mutably (tests).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The signed base `(index, hash)` the chain starts from.
    pub fn base(&self) -> (u64, [u8; 32]) {
        (self.meta.base_index, self.meta.base_hash)
    }

    /// Appends `entries` in one atomic batch; returns the last index written.
    pub fn append(&mut self, entries: Vec<NewEntry>) -> Result<u64, AuditError> {
        let identity = self.identity.clone().ok_or(AuditError::ReadOnly)?;
        let mut writes = Vec::with_capacity(entries.len() * 3 + 2);
        let mut meta = self.meta.clone();
        let mut new_evidence: Vec<RecordKey> = Vec::new();
        for new in entries {
            let entry = self.chain(&mut meta, new.clone());
            self.index_writes(&entry, &mut writes, &mut meta);
            if let (Some(record), Some(evidence)) = (new.record, new.evidence) {
                let stored = self.known_evidence.contains(&record)
                    || new_evidence.contains(&record)
                    || self.store.get(&key(b'v', &[&record.0]))?.is_some();
                if !stored && evidence.len() <= MAX_EVIDENCE_BYTES {
                    meta.logical_bytes += 33 + evidence.len() as u64;
                    writes.push(Write::Put(key(b'v', &[&record.0]), evidence));
                    new_evidence.push(record);
                }
            }
            let due = entry.index - meta.last_checkpoint_index
                >= self.config.checkpoint_every_entries
                || entry.at_ms.saturating_sub(meta.last_checkpoint_at_ms)
                    >= self.config.checkpoint_every_ms;
            if due {
                checkpoint_writes(
                    &identity,
                    &mut meta,
                    entry.index,
                    entry.hash,
                    entry.at_ms,
                    &mut writes,
                );
            }
        }
        writes.push(Write::Put(META_KEY.to_vec(), self.encode_meta(&meta)));
        self.store.apply(writes)?;
        self.meta = meta;
        if self.known_evidence.len() > 100_000 {
            self.known_evidence.clear();
        }
        self.known_evidence.extend(new_evidence);
        self.enforce_retention()?;
        Ok(self.meta.next_index - 1)
    }

    fn chain(&self, meta: &mut Meta, new: NewEntry) -> Entry {
        let at_ms = new.at_ms.max(meta.last_at_ms);
        let mut entry = Entry {
            index: meta.next_index,
            at_ms,
            kind: new.kind,
            peer: new.peer,
            origin: new.origin,
            record: new.record,
            reason: bounded_reason(new.reason),
            hash: [0; 32],
        };
        entry.hash = entry.chain_hash(&meta.head);
        meta.head = entry.hash;
        meta.next_index += 1;
        meta.last_at_ms = at_ms;
        entry
    }

    fn index_writes(&self, entry: &Entry, writes: &mut Vec<Write>, meta: &mut Meta) {
        let index = entry.index.to_be_bytes();
        let value = postcard::to_allocvec(entry).unwrap_or_default();
        meta.logical_bytes += 9 + value.len() as u64;
        writes.push(Write::Put(entry_key(entry.index), value));
        let secondary = [
            (b'r', entry.record.map(|r| r.0)),
            (b'o', entry.origin.map(|o| *o.as_bytes())),
            (b'p', entry.peer.map(|p| *p.as_bytes())),
        ];
        for (prefix, id) in secondary {
            if let Some(id) = id {
                meta.logical_bytes += 41;
                writes.push(Write::Put(key(prefix, &[&id, &index]), Vec::new()));
            }
        }
    }

    fn encode_meta(&self, meta: &Meta) -> Vec<u8> {
        postcard::to_allocvec(meta).unwrap_or_default()
    }

    /// Signs a checkpoint at the current head (at shutdown), if any entry is unsigned.
    pub fn checkpoint_now(&mut self) -> Result<(), AuditError> {
        let identity = self.identity.clone().ok_or(AuditError::ReadOnly)?;
        let last = self.meta.next_index - 1;
        if last == 0 || last == self.meta.last_checkpoint_index {
            return Ok(());
        }
        let mut meta = self.meta.clone();
        let mut writes = Vec::new();
        let (head, at) = (meta.head, meta.last_at_ms);
        checkpoint_writes(&identity, &mut meta, last, head, at, &mut writes);
        writes.push(Write::Put(META_KEY.to_vec(), self.encode_meta(&meta)));
        self.store.apply(writes)?;
        self.meta = meta;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn flush(&self) -> Result<(), AuditError> {
        Ok(self.store.flush()?)
    }

    /// One entry.
    pub fn entry(&self, index: u64) -> Result<Option<Entry>, AuditError> {
        Ok(self
            .store
            .get(&entry_key(index))?
            .and_then(|bytes| postcard::from_bytes(&bytes).ok()))
    }

    /// Raw entries with index in `[from, to)`, as `(index, bytes)`.
    fn raw_entries(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        Ok(self
            .store
            .range(&entry_key(from), &entry_key(to), limit)?
            .into_iter()
            .map(|(k, v)| (index_from_key(&k), v))
            .collect())
    }

    /// The newest `limit` entries, oldest first.
    pub fn latest(&self, limit: usize) -> Result<Vec<Entry>, AuditError> {
        let mut entries: Vec<Entry> = self
            .store
            .range_rev(&entry_key(0), &entry_key(u64::MAX), limit)?
            .into_iter()
            .filter_map(|(_, v)| postcard::from_bytes(&v).ok())
            .collect();
        entries.reverse();
        Ok(entries)
    }

    /// Entries matching `query`, oldest first.
    pub fn query(&self, query: &Query) -> Result<Vec<Entry>, AuditError> {
        let limit = if query.limit == 0 { 100 } else { query.limit };
        let matches = |entry: &Entry| {
            query.record.is_none_or(|r| entry.record == Some(r))
                && query.origin.is_none_or(|o| entry.origin == Some(o))
                && query.peer.is_none_or(|p| entry.peer == Some(p))
                && query.kind.is_none_or(|k| entry.kind == k)
                && query.since_ms.is_none_or(|t| entry.at_ms >= t)
                && query.until_ms.is_none_or(|t| entry.at_ms < t)
                && entry.index > query.after_index
        };
        let by_index = [
            (b'r', query.record.map(|r| r.0)),
            (b'o', query.origin.map(|o| *o.as_bytes())),
            (b'p', query.peer.map(|p| *p.as_bytes())),
        ]
        .into_iter()
        .find_map(|(prefix, id)| id.map(|id| (prefix, id)));
        let mut found = Vec::new();
        if let Some((prefix, id)) = by_index {
            let start = key(
                prefix,
                &[&id, &query.after_index.saturating_add(1).to_be_bytes()],
            );
            let end = key(prefix, &[&id, &u64::MAX.to_be_bytes()]);
            let mut cursor = start;
            loop {
                let page = self.store.range(&cursor, &end, 1024)?;
                let Some((last, _)) = page.last() else { break };
                cursor = key(
                    prefix,
                    &[&id, &index_from_key(last).saturating_add(1).to_be_bytes()],
                );
                for (k, _) in &page {
                    if let Some(entry) = self.entry(index_from_key(k))? {
                        if matches(&entry) {
                            found.push(entry);
                            if found.len() == limit {
                                return Ok(found);
                            }
                        }
                    }
                }
                if page.len() < 1024 {
                    break;
                }
            }
            return Ok(found);
        }
        let mut from = query
            .after_index
            .saturating_add(1)
            .max(self.first_index_by_time(query.since_ms)?);
        loop {
            let page = self.raw_entries(from, u64::MAX, 1024)?;
            let Some((last, _)) = page.last() else { break };
            from = last + 1;
            for (_, bytes) in &page {
                let Ok(entry) = postcard::from_bytes::<Entry>(bytes) else {
                    continue;
                };
                if query.until_ms.is_some_and(|t| entry.at_ms >= t) {
                    return Ok(found);
                }
                if matches(&entry) {
                    found.push(entry);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            if page.len() < 1024 {
                break;
            }
        }
        Ok(found)
    }

    /// The first index whose time is at or after `since` (binary search: times
    /// never decrease along the log).
    fn first_index_by_time(&self, since: Option<u64>) -> Result<u64, AuditError> {
        let Some(since) = since else { return Ok(0) };
        let (mut low, mut high) = (self.meta.base_index + 1, self.meta.next_index);
        while low < high {
            let middle = low + (high - low) / 2;
            match self.entry(middle)? {
                Some(entry) if entry.at_ms < since => low = middle + 1,
                _ => high = middle,
            }
        }
        Ok(low)
    }

    /// The signed bytes stored for `record`.
    pub fn evidence(&self, record: &RecordKey) -> Result<Option<Vec<u8>>, AuditError> {
        Ok(self.store.get(&key(b'v', &[&record.0]))?)
    }

    /// Every evidence record key, in order.
    pub fn evidence_keys(&self) -> Result<Vec<RecordKey>, AuditError> {
        let mut keys = Vec::new();
        let mut cursor = vec![b'v'];
        loop {
            let page = self.store.range(&cursor, b"w", 1024)?;
            for (k, _) in &page {
                if k.len() == 33 {
                    let mut id = [0u8; 32];
                    id.copy_from_slice(&k[1..]);
                    keys.push(RecordKey(id));
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == 1024 => {
                    cursor = last.clone();
                    cursor.push(0);
                }
                _ => return Ok(keys),
            }
        }
    }

    /// Every checkpoint, in index order. Undecodable ones are skipped here and
    /// reported by [`AuditLog::verify`].
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, AuditError> {
        Ok(self
            .store
            .range(b"c", b"d", usize::MAX)?
            .into_iter()
            .filter_map(|(_, v)| postcard::from_bytes(&v).ok())
            .collect())
    }

    /// Size and span.
    pub fn stats(&self) -> Result<Stats, AuditError> {
        Ok(Stats {
            first_index: self.meta.base_index + 1,
            last_index: self.meta.next_index - 1,
            store_bytes: self.store.size_bytes()?,
            logical_bytes: self.meta.logical_bytes,
        })
    }

    /// Recomputes the chain from the signed base and checks every checkpoint.
    pub fn verify(&self) -> Result<Result<Verified, Problem>, AuditError> {
        let raw_checkpoints = self.store.range(b"c", b"d", usize::MAX)?;
        let mut checkpoints = Vec::with_capacity(raw_checkpoints.len());
        for (k, v) in raw_checkpoints {
            match postcard::from_bytes::<Checkpoint>(&v) {
                Ok(checkpoint) if checkpoint.index == index_from_key(&k) => {
                    checkpoints.push(checkpoint)
                }
                _ => {
                    return Ok(Err(Problem::BadCheckpointSignature {
                        index: index_from_key(&k),
                    }))
                }
            }
        }
        let mut check = match ChainCheck::new(
            self.meta.node,
            &self.meta.federation,
            self.base(),
            &checkpoints,
        ) {
            Ok(check) => check,
            Err(problem) => return Ok(Err(problem)),
        };
        let mut from = 0;
        loop {
            let page = self.raw_entries(from, u64::MAX, 4096)?;
            for (index, bytes) in &page {
                let entry = match postcard::from_bytes::<Entry>(bytes) {
                    Ok(entry) if entry.index == *index => entry,
                    Ok(_) | Err(_) => {
                        return Ok(Err(Problem::Undecodable {
                            index: *index,
                            reason: "the stored bytes are not an entry with this index".into(),
                        }))
                    }
                };
                if let Err(problem) = check.push(&entry) {
                    return Ok(Err(problem));
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == 4096 => from = last + 1,
                _ => break,
            }
        }
        let verified = check.finish();
        if let Ok(verified) = &verified {
            if verified.last + 1 != self.meta.next_index {
                return Ok(Err(Problem::Missing {
                    expected: verified.last + 1,
                    found: self.meta.next_index,
                }));
            }
        }
        Ok(verified)
    }

    /// Checks that every entry has its index keys and every index key its entry;
    /// returns the number of index keys checked.
    pub fn check_indexes(&self) -> Result<Result<u64, Problem>, AuditError> {
        let mut checked = 0;
        for prefix in [b'r', b'o', b'p'] {
            let mut cursor = vec![prefix];
            loop {
                let page = self.store.range(&cursor, &[prefix + 1], 4096)?;
                for (k, _) in &page {
                    checked += 1;
                    let index = index_from_key(k);
                    let Some(entry) = self.entry(index)? else {
                        return Ok(Err(Problem::IndexMismatch { index }));
                    };
                    let id: Option<[u8; 32]> = match prefix {
                        b'r' => entry.record.map(|r| r.0),
                        b'o' => entry.origin.map(|o| *o.as_bytes()),
                        _ => entry.peer.map(|p| *p.as_bytes()),
                    };
                    if k.len() != 41 || id.map(|id| id.to_vec()) != Some(k[1..33].to_vec()) {
                        return Ok(Err(Problem::IndexMismatch { index }));
                    }
                }
                match page.last() {
                    Some((last, _)) if page.len() == 4096 => {
                        cursor = last.clone();
                        cursor.push(0);
                    }
                    _ => break,
                }
            }
        }
        let mut from = 0;
        loop {
            let page = self.raw_entries(from, u64::MAX, 4096)?;
            for (index, bytes) in &page {
                let Ok(entry) = postcard::from_bytes::<Entry>(bytes) else {
                    continue;
                };
                let ib = index.to_be_bytes();
                for (prefix, id) in [
                    (b'r', entry.record.map(|r| r.0)),
                    (b'o', entry.origin.map(|o| *o.as_bytes())),
                    (b'p', entry.peer.map(|p| *p.as_bytes())),
                ] {
                    if let Some(id) = id {
                        if self.store.get(&key(prefix, &[&id, &ib]))?.is_none() {
                            return Ok(Err(Problem::IndexMismatch { index: *index }));
                        }
                    }
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == 4096 => from = last + 1,
                _ => break,
            }
        }
        Ok(Ok(checked))
    }

    fn enforce_retention(&mut self) -> Result<(), AuditError> {
        for _ in 0..64 {
            let first = self.meta.base_index + 1;
            let last = self.meta.next_index - 1;
            if last < first + self.config.prune_chunk {
                return Ok(());
            }
            let too_big = self
                .config
                .max_bytes
                .is_some_and(|max| self.meta.logical_bytes > max);
            let too_old = match (self.config.max_age_ms, self.entry(first)?) {
                (Some(age), Some(entry)) => entry.at_ms.saturating_add(age) < self.meta.last_at_ms,
                _ => false,
            };
            if !too_big && !too_old {
                return Ok(());
            }
            self.prune_before(first + self.config.prune_chunk)?;
        }
        Ok(())
    }

    /// Removes entries below `cut` as one range, signing a checkpoint at the new base.
    pub fn prune_before(&mut self, cut: u64) -> Result<(), AuditError> {
        let identity = self.identity.clone().ok_or(AuditError::ReadOnly)?;
        let first = self.meta.base_index + 1;
        let cut = cut.min(self.meta.next_index - 1);
        if cut <= first {
            return Ok(());
        }
        let Some(base_entry) = self.entry(cut - 1)? else {
            return Ok(());
        };
        let mut meta = self.meta.clone();
        let mut writes = Vec::new();
        let mut records = Vec::new();
        for (index, bytes) in self.raw_entries(first, cut, usize::MAX)? {
            meta.logical_bytes = meta.logical_bytes.saturating_sub(9 + bytes.len() as u64);
            writes.push(Write::Delete(entry_key(index)));
            let Ok(entry) = postcard::from_bytes::<Entry>(&bytes) else {
                continue;
            };
            let ib = index.to_be_bytes();
            for (prefix, id) in [
                (b'r', entry.record.map(|r| r.0)),
                (b'o', entry.origin.map(|o| *o.as_bytes())),
                (b'p', entry.peer.map(|p| *p.as_bytes())),
            ] {
                if let Some(id) = id {
                    meta.logical_bytes = meta.logical_bytes.saturating_sub(41);
                    writes.push(Write::Delete(key(prefix, &[&id, &ib])));
                }
            }
            if let Some(record) = entry.record {
                if !records.contains(&record) {
                    records.push(record);
                }
            }
        }
        for record in records {
            let start = key(b'r', &[&record.0, &cut.to_be_bytes()]);
            let end = key(b'r', &[&record.0, &u64::MAX.to_be_bytes()]);
            if self.store.range(&start, &end, 1)?.is_empty() {
                if let Some(evidence) = self.evidence(&record)? {
                    meta.logical_bytes = meta
                        .logical_bytes
                        .saturating_sub(33 + evidence.len() as u64);
                    writes.push(Write::Delete(key(b'v', &[&record.0])));
                }
            }
        }
        for (k, _) in self
            .store
            .range(b"c", &key(b'c', &[&(cut - 1).to_be_bytes()]), usize::MAX)?
        {
            writes.push(Write::Delete(k));
        }
        let has_base_checkpoint = self
            .store
            .get(&key(b'c', &[&(cut - 1).to_be_bytes()]))?
            .is_some();
        if !has_base_checkpoint {
            let last_checkpoint = (meta.last_checkpoint_index, meta.last_checkpoint_at_ms);
            checkpoint_writes(
                &identity,
                &mut meta,
                cut - 1,
                base_entry.hash,
                base_entry.at_ms,
                &mut writes,
            );
            if last_checkpoint.0 > cut - 1 {
                (meta.last_checkpoint_index, meta.last_checkpoint_at_ms) = last_checkpoint;
            }
        }
        meta.base_index = cut - 1;
        meta.base_hash = base_entry.hash;
        self.known_evidence.clear();
        writes.push(Write::Put(META_KEY.to_vec(), self.encode_meta(&meta)));
        self.store.apply(writes)?;
        self.meta = meta;
        Ok(())
    }
}

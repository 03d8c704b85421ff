//! [`AuditLog`]: append, query, verify and prune, over any [`Store`].
//!
//! The key layout is in [`layout`](crate::layout). Entries, evidence, index
//! buckets, checkpoints and metadata of one append go in one batch: after a crash
//! the log holds every batch or none of it, and the indexes always agree with the
//! entries.
//!
//! # Retention that traffic cannot flush
//!
//! A log capped in bytes or age must drop something, and what it drops must not be
//! chosen by whoever sends the most. Entries are of two tiers
//! ([`EntryKind::is_routine`]): routine ones (stale and ignored records, relays,
//! accepted connections, expiries), which any peer's cheap traffic produces in
//! bulk, and the rest: every accepted or published record with its evidence, every
//! rejection, equivocation, quarantine, penalty, ban, refused connection and
//! incident. Pruning the oldest range of the chain removes only its routine
//! entries; the others stay in their blocks, below the new base. Only when the
//! live chain is too short to prune and the log is still over its limits do the
//! oldest kept entries go, a block at a time. So evidence of an offence outlives
//! any amount of routine traffic, and is lost only to the log's own limits filled
//! by other kept entries (which peers cannot produce cheaply: accepted records are
//! bounded by each origin's rate limit, offences end in bans).
//!
//! The chain still verifies after pruning: each run of consecutive kept entries
//! gets a signed checkpoint at the entry just before it (whose hash its first entry
//! chains from) and at its last entry, and a checkpoint at the new base vouches for
//! the live chain, as before. A changed, moved or reordered kept entry is found;
//! removing a whole run together with its checkpoints is not (it looks like the
//! log's own eviction), which witnesses of the log are meant to catch.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tidings_keys::{FederationId, Identity, NodeId};

use crate::checkpoint::Checkpoint;
use crate::entry::{
    bounded_reason, hex32, Entry, EntryKind, NewEntry, RecordKey, MAX_EVIDENCE_BYTES,
};
use crate::layout::{
    block_key, block_of, block_start, bucket_key, checkpoint_key, decode_bucket, decode_evidence,
    evidence_key, group_blocks, group_bucket_range, group_buckets, group_of, group_start, id_in,
    indexed_ids, parse_bucket_key, push_evidence, trailing_u64, Blocks, BLOCK, BY_ORIGIN, BY_PEER,
    BY_RECORD, INDEXES, META_KEY,
};
use crate::store::{Store, StoreError, Write};
use crate::verify::{ChainCheck, EvidenceCheck, Problem, Verified};

/// Bytes counted per listing of an entry not yet in a written bucket (a varint
/// delta, about two bytes); a written bucket counts its own bytes.
const INDEX_ELEMENT_BYTES: u64 = 2;

#[path = "upgrade.rs"]
mod upgrade;

/// An append's evidence goes under a new key once its value is this long, so
/// that a large append does not make one large value.
const EVIDENCE_VALUE_BYTES: usize = 16 * 1024;

/// Blocks changed by one batch, in place of what the store holds (`None`: deleted).
type Overlay = BTreeMap<u64, Option<Vec<Entry>>>;

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
    #[error(transparent)]
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
    /// The log's writer stopped earlier: it shut down, or an append or sync
    /// failed (the reason says which).
    #[error("the audit log has stopped: {0}")]
    Stopped(String),
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
    /// Groups below this have their index buckets written; the entries after
    /// them are found by reading them.
    listed_groups: u64,
}

/// The metadata of the earlier layout (see [`AuditLog::open`]).
#[derive(Debug, Clone, Deserialize)]
struct LegacyMeta {
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
    /// First entry of the live chain (after pruning).
    pub first_index: u64,
    /// Entries kept below it from pruned ranges (not routine).
    pub kept_entries: u64,
    /// Last entry.
    pub last_index: u64,
    /// Bytes the store occupies.
    pub store_bytes: u64,
    /// Bytes of entries, indexes and evidence as counted by the log.
    pub logical_bytes: u64,
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
    writes.push(Write::Put(checkpoint_key(index), bytes));
    meta.last_checkpoint_index = index;
    meta.last_checkpoint_at_ms = at_ms;
}

fn entry_size(entry: &Entry) -> u64 {
    postcard::experimental::serialized_size(entry).unwrap_or(0) as u64
}

/// A decoded block, or the first index of a block that does not decode.
type BlockRead = Result<Vec<Entry>, u64>;

/// The tamper-evident log of one node.
pub struct AuditLog<S: Store> {
    store: S,
    /// The entries of the last block if it is not full (so appends need not read it).
    tail: Vec<Entry>,
    identity: Option<Arc<Identity>>,
    config: AuditConfig,
    meta: Meta,
    /// While the clock reads earlier than the log's last entry: the clock reading
    /// and the log time when that began (see [`AuditLog::append`]).
    slew: Option<(u64, u64)>,
}

impl<S: Store> std::fmt::Debug for AuditLog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("next_index", &self.meta.next_index)
            .finish()
    }
}

/// The metadata, or `Err(legacy)` for metadata of the earlier layout.
fn decode_meta(bytes: &[u8]) -> Result<Result<Meta, LegacyMeta>, AuditError> {
    // The current metadata has one more field at the end; postcard ignores
    // trailing bytes, so it is tried first.
    if let Ok(meta) = postcard::from_bytes::<Meta>(bytes) {
        return Ok(Ok(meta));
    }
    postcard::from_bytes::<LegacyMeta>(bytes)
        .map(Err)
        .map_err(|error| AuditError::CorruptMeta(error.to_string()))
}

impl<S: Store> AuditLog<S> {
    /// Opens the log in `store`, creating it for `identity` if empty.
    pub fn open(
        mut store: S,
        identity: Arc<Identity>,
        federation: FederationId,
        config: AuditConfig,
    ) -> Result<Self, AuditError> {
        let node = identity.node_id();
        let meta = match store.get(META_KEY)? {
            Some(bytes) => {
                let (converted, meta) = Self::current_meta(store, decode_meta(&bytes)?)?;
                store = converted;
                meta
            }
            None => {
                // A new log is written at once, so readers find it (empty) from the start.
                let meta = Meta {
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
                    listed_groups: 0,
                };
                store.apply(vec![Write::Put(META_KEY.to_vec(), encode_meta(&meta))])?;
                meta
            }
        };
        if meta.node != node {
            return Err(AuditError::WrongNode {
                expected: node,
                found: meta.node,
            });
        }
        Self::with_meta(store, Some(identity), config, meta)
    }

    /// Opens an existing log for reading, queries and verification only (no key).
    ///
    /// A log of the earlier layout is converted first, as [`AuditLog::open`]
    /// does: that rewrites how it is stored, not what it holds.
    pub fn open_read_only(store: S) -> Result<Self, AuditError> {
        let bytes = store.get(META_KEY)?.ok_or(AuditError::Empty)?;
        let (store, meta) = Self::current_meta(store, decode_meta(&bytes)?)?;
        Self::with_meta(store, None, AuditConfig::default(), meta)
    }

    /// The metadata of the current layout: a log of the earlier layout is
    /// converted, and keys a conversion left behind are deleted.
    fn current_meta(store: S, meta: Result<Meta, LegacyMeta>) -> Result<(S, Meta), AuditError> {
        let (mut store, meta) = match meta {
            Ok(meta) => (store, meta),
            Err(legacy) => Self::convert(store, legacy)?,
        };
        upgrade::delete_legacy_keys(&mut store)?;
        Ok((store, meta))
    }

    fn with_meta(
        store: S,
        identity: Option<Arc<Identity>>,
        config: AuditConfig,
        meta: Meta,
    ) -> Result<Self, AuditError> {
        let mut log = Self {
            store,
            tail: Vec::new(),
            identity,
            config,
            meta,
            slew: None,
        };
        let last = log.meta.next_index - 1;
        if last > log.meta.base_index && !last.is_multiple_of(BLOCK) {
            if let Some(Ok(entries)) = log.read_block(block_of(last))? {
                log.tail = entries
                    .into_iter()
                    .filter(|entry| entry.index <= last)
                    .collect();
            }
        }
        Ok(log)
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

    /// Starts a new log in an empty `store` that continues a previous log of this
    /// node which was lost or damaged: its first entry is `base.0 + 1`, chained to
    /// `base.1` (the previous log's head as far as it is known), so no index is
    /// used twice. A checkpoint signed at the base vouches for the start, and the
    /// first entry is a [`EntryKind::LogResumed`] saying `reason`.
    pub fn resume(
        mut store: S,
        identity: Arc<Identity>,
        federation: FederationId,
        config: AuditConfig,
        base: (u64, [u8; 32]),
        at_ms: u64,
        reason: String,
    ) -> Result<Self, AuditError> {
        if store.get(META_KEY)?.is_some() {
            return Err(AuditError::CorruptMeta(
                "cannot resume into a store that already holds a log".into(),
            ));
        }
        let (index, hash) = base;
        let mut meta = Meta {
            node: identity.node_id(),
            federation,
            next_index: index + 1,
            head: hash,
            base_index: index,
            base_hash: hash,
            last_checkpoint_index: 0,
            last_checkpoint_at_ms: 0,
            last_at_ms: 0,
            logical_bytes: 0,
            listed_groups: group_of(index + 1),
        };
        let mut writes = Vec::new();
        if index > 0 {
            checkpoint_writes(&identity, &mut meta, index, hash, at_ms, &mut writes);
        }
        writes.push(Write::Put(META_KEY.to_vec(), encode_meta(&meta)));
        store.apply(writes)?;
        let mut log = Self::with_meta(store, Some(identity), config, meta)?;
        log.append(vec![NewEntry {
            at_ms,
            kind: EntryKind::LogResumed,
            peer: None,
            origin: None,
            record: None,
            reason,
            evidence: None,
        }])?;
        Ok(log)
    }

    /// The last entry's index and chain hash (`(0, zeros)` for an empty log).
    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.meta.next_index - 1, self.meta.head)
    }

    /// The time of the last entry.
    pub fn last_at_ms(&self) -> u64 {
        self.meta.last_at_ms
    }

    /// Appends `entries` in one atomic batch; returns the last index written.
    ///
    /// Entry times never go backwards and never freeze: an entry stamped earlier
    /// than the last one (the clock was set back, or ran ahead before a restart)
    /// gets a time that advances at half the clock's rate from the last entry's,
    /// until the clock catches up, as `adjtime` slews a clock.
    pub fn append(&mut self, entries: Vec<NewEntry>) -> Result<u64, AuditError> {
        let identity = self.identity.clone().ok_or(AuditError::ReadOnly)?;
        let mut writes = Vec::new();
        let mut meta = self.meta.clone();
        let mut blocks: Blocks = BTreeMap::new();
        if let Some(first) = self.tail.first() {
            blocks.insert(block_of(first.index), self.tail.clone());
        }
        // The evidence of this append, under the index of its first piece.
        let mut evidence_value: Option<(u64, Vec<u8>)> = None;
        for new in entries {
            let at_ms = self.stamp(&meta, new.at_ms);
            let entry = chain(&mut meta, new.clone(), at_ms);
            meta.logical_bytes += entry_size(&entry) + INDEX_ELEMENT_BYTES * listings(&entry);
            if let (Some(record), Some(evidence)) = (&new.record, &new.evidence) {
                if evidence.len() <= MAX_EVIDENCE_BYTES {
                    if evidence_value
                        .as_ref()
                        .is_some_and(|(_, value)| value.len() >= EVIDENCE_VALUE_BYTES)
                    {
                        evidence_writes(evidence_value.take(), &mut meta, &mut writes);
                    }
                    let (_, value) =
                        evidence_value.get_or_insert_with(|| (entry.index, Vec::new()));
                    push_evidence(value, entry.index, &record.0, evidence);
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
            blocks.entry(block_of(entry.index)).or_default().push(entry);
        }
        evidence_writes(evidence_value, &mut meta, &mut writes);
        // Groups this batch completed get their buckets, in the same batch.
        let complete = group_of(meta.next_index);
        if meta.listed_groups < complete {
            let overlay: Overlay = blocks
                .iter()
                .map(|(block, entries)| (*block, Some(entries.clone())))
                .collect();
            for group in meta.listed_groups..complete {
                self.list_group(group, &overlay, &mut meta, &mut writes, false)?;
            }
            meta.listed_groups = complete;
        }
        let mut tail = Vec::new();
        for (block, entries) in blocks {
            writes.push(Write::Put(
                block_key(block),
                postcard::to_allocvec(&entries).unwrap_or_default(),
            ));
            tail = entries;
        }
        if tail.len() as u64 == BLOCK {
            tail.clear();
        }
        writes.push(Write::Put(META_KEY.to_vec(), encode_meta(&meta)));
        self.apply(writes)?;
        self.meta = meta;
        self.tail = tail;
        self.enforce_retention()?;
        Ok(self.meta.next_index - 1)
    }

    /// The entries of `group`, oldest first, with `overlay` in place of what the
    /// store holds. Blocks that do not decode are left out (verification reports
    /// them).
    fn group_entries(&self, group: u64, overlay: &Overlay) -> Result<Vec<Entry>, AuditError> {
        let (first, end) = group_blocks(group);
        let mut blocks: BTreeMap<u64, Vec<Entry>> = self
            .blocks(first, end, usize::MAX)?
            .into_iter()
            .filter_map(|(block, read)| Some((block, read.ok()?)))
            .collect();
        for (block, entries) in overlay.range(first..end) {
            match entries {
                Some(entries) => blocks.insert(*block, entries.clone()),
                None => blocks.remove(block),
            };
        }
        Ok(blocks.into_values().flatten().collect())
    }

    /// Writes the buckets of `group`, built from its entries (with `overlay`
    /// applied). With `relist`, buckets written before are replaced: those left
    /// empty are deleted, and their bytes are counted out.
    fn list_group(
        &self,
        group: u64,
        overlay: &Overlay,
        meta: &mut Meta,
        writes: &mut Vec<Write>,
        relist: bool,
    ) -> Result<(), AuditError> {
        let entries = self.group_entries(group, overlay)?;
        let (buckets, listings) = group_buckets(group, &entries);
        if relist {
            for prefix in INDEXES {
                let (start, end) = group_bucket_range(prefix, group);
                for (key, value) in self.store.range(&start, &end, usize::MAX)? {
                    meta.logical_bytes = meta
                        .logical_bytes
                        .saturating_sub((key.len() + value.len()) as u64);
                    if !buckets.contains_key(&key) {
                        writes.push(Write::Delete(key));
                    }
                }
            }
        } else {
            // Until now its listings were counted at an estimate.
            meta.logical_bytes = meta
                .logical_bytes
                .saturating_sub(INDEX_ELEMENT_BYTES * listings);
        }
        for (key, value) in buckets {
            meta.logical_bytes += (key.len() + value.len()) as u64;
            writes.push(Write::Put(key, value));
        }
        Ok(())
    }

    /// The time an entry given `given_ms` gets (see [`AuditLog::append`]).
    fn stamp(&mut self, meta: &Meta, given_ms: u64) -> u64 {
        let last = meta.last_at_ms;
        if given_ms >= last {
            self.slew = None;
            return given_ms;
        }
        match self.slew {
            Some((clock, at)) if given_ms >= clock => (at + (given_ms - clock) / 2).max(last),
            _ => {
                self.slew = Some((given_ms, last));
                last
            }
        }
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
        writes.push(Write::Put(META_KEY.to_vec(), encode_meta(&meta)));
        self.apply(writes)?;
        self.meta = meta;
        Ok(())
    }

    /// Applies `writes` to the store in one batch.
    fn apply(&mut self, writes: Vec<Write>) -> Result<(), AuditError> {
        Ok(self.store.apply(writes)?)
    }

    /// Makes everything appended so far durable.
    pub fn flush(&self) -> Result<(), AuditError> {
        Ok(self.store.flush()?)
    }

    fn read_block(&self, block: u64) -> Result<Option<BlockRead>, AuditError> {
        Ok(self.store.get(&block_key(block))?.map(|bytes| {
            postcard::from_bytes::<Vec<Entry>>(&bytes).map_err(|_| block_start(block))
        }))
    }

    /// Blocks `[from, to)` in order, at most `limit` of them.
    fn blocks(
        &self,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, BlockRead)>, AuditError> {
        Ok(self
            .store
            .range(&block_key(from), &block_key(to), limit)?
            .into_iter()
            .map(|(k, v)| {
                let block = trailing_u64(&k);
                let read = postcard::from_bytes::<Vec<Entry>>(&v).map_err(|_| block_start(block));
                (block, read)
            })
            .collect())
    }

    /// One entry.
    pub fn entry(&self, index: u64) -> Result<Option<Entry>, AuditError> {
        if index == 0 || index >= self.meta.next_index {
            return Ok(None);
        }
        Ok(match self.read_block(block_of(index))? {
            Some(Ok(entries)) => entries.into_iter().find(|entry| entry.index == index),
            _ => None,
        })
    }

    /// Entries with index at least `from`, oldest first, at most `limit`.
    fn entries_from(&self, from: u64, limit: usize) -> Result<Vec<Entry>, AuditError> {
        let mut out = Vec::new();
        let mut block = block_of(from.max(1));
        while out.len() < limit {
            let page = self.blocks(block, u64::MAX, 16)?;
            let Some((last, _)) = page.last() else { break };
            block = last + 1;
            for (_, read) in page {
                for entry in read.unwrap_or_default() {
                    if entry.index >= from && out.len() < limit {
                        out.push(entry);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The newest `limit` entries, oldest first.
    pub fn latest(&self, limit: usize) -> Result<Vec<Entry>, AuditError> {
        let from = self.meta.next_index.saturating_sub(limit as u64).max(1);
        self.entries_from(from, limit)
    }

    /// The first entry not yet in a written bucket.
    fn unlisted_from(&self) -> u64 {
        group_start(self.meta.listed_groups)
    }

    /// The indices listed under `id` in the bucket of index `prefix`, `group`.
    fn bucket_list(&self, prefix: u8, group: u64, id: &[u8; 32]) -> Result<Vec<u64>, AuditError> {
        Ok(self
            .store
            .get(&bucket_key(prefix, group, id[0]))?
            .and_then(|bytes| decode_bucket(&bytes))
            .and_then(|mut bucket| bucket.remove(id))
            .unwrap_or_default())
    }

    /// Entries not yet in a written bucket whose id in index `prefix` is `id`.
    fn unlisted_with(&self, prefix: u8, id: &[u8; 32], after: u64) -> Result<Vec<u64>, AuditError> {
        Ok(self
            .entries_from(self.unlisted_from().max(after + 1), usize::MAX)?
            .into_iter()
            .filter(|entry| id_in(entry, prefix).as_ref() == Some(id))
            .map(|entry| entry.index)
            .collect())
    }

    /// Entry indices listed under `id` in index `prefix`, after `after`.
    fn indexed(&self, prefix: u8, id: &[u8; 32], after: u64) -> Result<Vec<u64>, AuditError> {
        let mut indices = Vec::new();
        for group in group_of(after.saturating_add(1))..self.meta.listed_groups {
            indices.extend(
                self.bucket_list(prefix, group, id)?
                    .into_iter()
                    .filter(|&index| index > after),
            );
        }
        indices.extend(self.unlisted_with(prefix, id, after)?);
        Ok(indices)
    }

    /// The newest entry about `origin` of one of `kinds`, looking back through at
    /// most `max_scan` entries about that origin.
    pub fn newest_of(
        &self,
        origin: &NodeId,
        kinds: &[EntryKind],
        max_scan: usize,
    ) -> Result<Option<Entry>, AuditError> {
        let id = origin.as_bytes();
        let mut scanned = 0;
        for entry in self
            .entries_from(self.unlisted_from(), usize::MAX)?
            .into_iter()
            .rev()
            .filter(|entry| entry.origin.as_ref() == Some(origin))
        {
            scanned += 1;
            if scanned > max_scan {
                return Ok(None);
            }
            if kinds.contains(&entry.kind) {
                return Ok(Some(entry));
            }
        }
        for group in (0..self.meta.listed_groups).rev() {
            let mut cached: Option<(u64, Vec<Entry>)> = None;
            for index in self.bucket_list(BY_ORIGIN, group, id)?.into_iter().rev() {
                scanned += 1;
                if scanned > max_scan {
                    return Ok(None);
                }
                let found = self.entry_cached(&mut cached, index)?;
                if let Some(entry) = found.filter(|entry| kinds.contains(&entry.kind)) {
                    return Ok(Some(entry.clone()));
                }
            }
        }
        Ok(None)
    }

    /// Entry `index`, reading its block unless `cache` holds that block already.
    fn entry_cached<'c>(
        &self,
        cache: &'c mut Option<(u64, Vec<Entry>)>,
        index: u64,
    ) -> Result<Option<&'c Entry>, AuditError> {
        let block = block_of(index);
        if cache.as_ref().is_none_or(|(cached, _)| *cached != block) {
            let entries = match self.read_block(block)? {
                Some(Ok(entries)) => entries,
                _ => Vec::new(),
            };
            *cache = Some((block, entries));
        }
        Ok(cache
            .as_ref()
            .and_then(|(_, entries)| entries.iter().find(|entry| entry.index == index)))
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
            (BY_RECORD, query.record.map(|r| r.0)),
            (BY_ORIGIN, query.origin.map(|o| *o.as_bytes())),
            (BY_PEER, query.peer.map(|p| *p.as_bytes())),
        ]
        .into_iter()
        .find_map(|(prefix, id)| id.map(|id| (prefix, id)));
        let mut found = Vec::new();
        if let Some((prefix, id)) = by_index {
            let mut cached: Option<(u64, Vec<Entry>)> = None;
            for index in self.indexed(prefix, &id, query.after_index)? {
                let entry = self.entry_cached(&mut cached, index)?;
                if let Some(entry) = entry.filter(|entry| matches(entry)) {
                    found.push(entry.clone());
                    if found.len() == limit {
                        break;
                    }
                }
            }
            return Ok(found);
        }
        let mut from = query
            .after_index
            .saturating_add(1)
            .max(self.first_index_by_time(query.since_ms)?);
        loop {
            let page = self.entries_from(from, 4096)?;
            let Some(last) = page.last() else { break };
            from = last.index + 1;
            for entry in &page {
                if query.until_ms.is_some_and(|t| entry.at_ms >= t) {
                    return Ok(found);
                }
                if matches(entry) {
                    found.push(entry.clone());
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }

    /// The first index whose time is at or after `since` (binary search: times
    /// never decrease along the log).
    fn first_index_by_time(&self, since: Option<u64>) -> Result<u64, AuditError> {
        let Some(since) = since else { return Ok(0) };
        // Entries kept below the base are older than the live chain: a search
        // that starts before the live chain starts at the very beginning.
        match self.entry(self.meta.base_index + 1)? {
            Some(first) if first.at_ms >= since => return Ok(0),
            _ => {}
        }
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
        for index in self.indexed(BY_RECORD, &record.0, 0)? {
            if let Some(bytes) = self.evidence_at(index, record)? {
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// The evidence entry `index` carries, if it is evidence of `record`.
    fn evidence_at(&self, index: u64, record: &RecordKey) -> Result<Option<Vec<u8>>, AuditError> {
        let Some((_, value)) = self
            .store
            .range_rev(&evidence_key(0), &evidence_key(index.saturating_add(1)), 1)?
            .pop()
        else {
            return Ok(None);
        };
        Ok(decode_evidence(&value).and_then(|pieces| {
            pieces
                .into_iter()
                .find(|(at, id, _)| *at == index && *id == record.0)
                .map(|(_, _, bytes)| bytes.to_vec())
        }))
    }

    /// Calls `each` with every stored evidence value, in order: the index its
    /// key names, and the value.
    fn scan_evidence<E: From<AuditError>>(
        &self,
        mut each: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut cursor = evidence_key(0);
        let end = [b'V' + 1];
        loop {
            let page = self
                .store
                .range(&cursor, &end, 64)
                .map_err(AuditError::from)?;
            for (key, value) in &page {
                each(trailing_u64(key), value)?;
            }
            match page.last() {
                Some((last, _)) if page.len() == 64 => {
                    cursor = evidence_key(trailing_u64(last).saturating_add(1));
                }
                _ => return Ok(()),
            }
        }
    }

    /// Calls `each` with every piece of stored evidence, in the order of the
    /// entries that carry it: the entry's index, the record key and the bytes.
    /// A record carried by more than one entry comes once per entry. Values
    /// that do not decode are left out ([`AuditLog::check_evidence`] reports them).
    pub fn for_each_evidence<E: From<AuditError>>(
        &self,
        mut each: impl FnMut(u64, RecordKey, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scan_evidence(|_, value| {
            for (index, record, bytes) in decode_evidence(value).unwrap_or_default() {
                each(index, RecordKey(record), bytes)?;
            }
            Ok(())
        })
    }

    /// Every evidence record key, in order.
    pub fn evidence_keys(&self) -> Result<Vec<RecordKey>, AuditError> {
        let mut keys = BTreeSet::new();
        self.for_each_evidence(|_, record, _| {
            keys.insert(record);
            Ok::<_, AuditError>(())
        })?;
        Ok(keys.into_iter().collect())
    }

    /// Up to `limit` records with stored evidence whose id, in lowercase hex,
    /// begins with `prefix` (in id order).
    pub fn evidence_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<RecordKey>, AuditError> {
        let prefix = prefix.to_ascii_lowercase();
        if !prefix.chars().all(|c| c.is_ascii_hexdigit()) || limit == 0 {
            return Ok(Vec::new());
        }
        let matches = |id: &[u8; 32]| RecordKey(*id).to_string().starts_with(&prefix);
        let Some(byte) = prefix
            .get(..2)
            .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        else {
            // Less than a byte: every piece of evidence is a candidate.
            let mut keys = self.evidence_keys()?;
            keys.retain(|key| matches(&key.0));
            keys.truncate(limit);
            return Ok(keys);
        };
        // Candidates from the record index, each with the entries about it.
        let mut candidates: BTreeMap<[u8; 32], Vec<u64>> = BTreeMap::new();
        for group in 0..self.meta.listed_groups {
            let Some(bucket) = self
                .store
                .get(&bucket_key(BY_RECORD, group, byte))?
                .and_then(|bytes| decode_bucket(&bytes))
            else {
                continue;
            };
            for (id, indices) in bucket {
                if matches(&id) {
                    candidates.entry(id).or_default().extend(indices);
                }
            }
        }
        for entry in self.entries_from(self.unlisted_from(), usize::MAX)? {
            if let Some(id) = entry.record.map(|record| record.0).filter(matches) {
                candidates.entry(id).or_default().push(entry.index);
            }
        }
        let mut keys = Vec::new();
        for (id, indices) in candidates {
            let record = RecordKey(id);
            for index in indices {
                if self.evidence_at(index, &record)?.is_some() {
                    keys.push(record);
                    break;
                }
            }
            if keys.len() >= limit {
                break;
            }
        }
        Ok(keys)
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
            kept_entries: self.kept_entries()?,
            last_index: self.meta.next_index - 1,
            store_bytes: self.store.size_bytes()?,
            logical_bytes: self.meta.logical_bytes,
        })
    }

    /// Recomputes the chain from the signed base and checks every checkpoint.
    pub fn verify(&self) -> Result<Result<Verified, Problem>, AuditError> {
        let mut checkpoints = Vec::new();
        for (k, v) in self.store.range(b"c", b"d", usize::MAX)? {
            match postcard::from_bytes::<Checkpoint>(&v) {
                Ok(checkpoint) if checkpoint.index == trailing_u64(&k) => {
                    checkpoints.push(checkpoint)
                }
                _ => {
                    return Ok(Err(Problem::BadCheckpointSignature {
                        index: trailing_u64(&k),
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
        let mut block = 0;
        loop {
            let page = self.blocks(block, u64::MAX, 64)?;
            for (_, read) in &page {
                let entries = match read {
                    Ok(entries) => entries,
                    Err(first) => {
                        return Ok(Err(Problem::Undecodable {
                            index: *first,
                            reason: "the stored block of entries does not decode".into(),
                        }))
                    }
                };
                for entry in entries {
                    if let Err(problem) = check.push(entry) {
                        return Ok(Err(problem));
                    }
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == 64 => block = last + 1,
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

    /// Checks the log against a head its node recorded elsewhere as durable
    /// (`index`, chain hash): the log must reach that entry and hold it unchanged.
    /// Entries pruned since cannot be compared and pass.
    pub fn check_head(
        &self,
        index: u64,
        hash: &[u8; 32],
    ) -> Result<Result<(), Problem>, AuditError> {
        let last = self.meta.next_index - 1;
        if last < index {
            return Ok(Err(Problem::CutBack {
                last,
                remembered: index,
            }));
        }
        let found = if index == self.meta.base_index {
            Some(self.meta.base_hash)
        } else if index > self.meta.base_index {
            self.entry(index)?.map(|entry| entry.hash)
        } else {
            return Ok(Ok(()));
        };
        Ok(if found.as_ref() == Some(hash) {
            Ok(())
        } else {
            Err(Problem::Replaced { index })
        })
    }

    /// Checks each piece of stored evidence with `check`, and every entry that
    /// should have evidence against it (see [`crate::verify::check_evidence`]);
    /// returns the number of records whose evidence was checked. Each piece must
    /// also be stored with an entry about the record it is evidence of.
    pub fn check_evidence(
        &self,
        check: EvidenceCheck<'_>,
    ) -> Result<Result<u64, Problem>, AuditError> {
        let entries = self.entries_from(1, usize::MAX)?;
        let by_index: BTreeMap<u64, &Entry> =
            entries.iter().map(|entry| (entry.index, entry)).collect();
        let mut signers = BTreeMap::new();
        let mut problem = None;
        self.scan_evidence(|first, value| {
            if problem.is_some() {
                return Ok(());
            }
            let Some(pieces) = decode_evidence(value)
                .filter(|pieces| pieces.first().map(|(index, _, _)| *index) == Some(first))
            else {
                problem = Some(Problem::Undecodable {
                    index: first,
                    reason: "the stored evidence does not decode".into(),
                });
                return Ok(());
            };
            for (index, record, bytes) in pieces {
                let record = RecordKey(record);
                let carrier = by_index.get(&index).and_then(|entry| entry.record);
                let checked = if carrier != Some(record) {
                    Err("stored with an entry that is not about this record".to_string())
                } else {
                    check(&record, bytes)
                };
                match checked {
                    Ok(signer) => {
                        signers.insert(record, signer);
                    }
                    Err(reason) => {
                        problem = Some(Problem::BadEvidence {
                            index,
                            record,
                            reason,
                        });
                        return Ok(());
                    }
                }
            }
            Ok::<_, AuditError>(())
        })?;
        if let Some(problem) = problem {
            return Ok(Err(problem));
        }
        Ok(crate::verify::check_carriers(&entries, &signers).map(|()| signers.len() as u64))
    }

    /// Checks that every entry of a listed group is in its buckets and every
    /// listing names an entry with that id; returns the number of listings checked.
    pub fn check_indexes(&self) -> Result<Result<u64, Problem>, AuditError> {
        let mut listed: HashSet<(u8, [u8; 32], u64)> = HashSet::new();
        for prefix in INDEXES {
            for (key, value) in self.store.range(&[prefix], &[prefix + 1], usize::MAX)? {
                let (Some((_, group, byte)), Some(bucket)) =
                    (parse_bucket_key(&key), decode_bucket(&value))
                else {
                    return Ok(Err(Problem::IndexMismatch { index: 0 }));
                };
                // Buckets are written for listed groups only, and never empty.
                if group >= self.meta.listed_groups || bucket.is_empty() {
                    return Ok(Err(Problem::IndexMismatch {
                        index: group_start(group),
                    }));
                }
                for (id, indices) in bucket {
                    for index in indices {
                        if id[0] != byte || group_of(index) != group {
                            return Ok(Err(Problem::IndexMismatch { index }));
                        }
                        listed.insert((prefix, id, index));
                    }
                }
            }
        }
        let total = listed.len() as u64;
        for entry in self.entries_from(1, usize::MAX)? {
            if group_of(entry.index) >= self.meta.listed_groups {
                break;
            }
            for (prefix, id) in indexed_ids(&entry) {
                if let Some(id) = id {
                    if !listed.remove(&(prefix, id, entry.index)) {
                        return Ok(Err(Problem::IndexMismatch { index: entry.index }));
                    }
                }
            }
        }
        if let Some((_, _, index)) = listed.iter().min_by_key(|(_, _, index)| *index) {
            return Ok(Err(Problem::IndexMismatch { index: *index }));
        }
        Ok(Ok(total))
    }

    fn enforce_retention(&mut self) -> Result<(), AuditError> {
        for _ in 0..64 {
            let too_big = self
                .config
                .max_bytes
                .is_some_and(|max| self.meta.logical_bytes > max);
            let too_old = |entry: Option<&Entry>| match (self.config.max_age_ms, entry) {
                (Some(age), Some(entry)) => entry.at_ms.saturating_add(age) < self.meta.last_at_ms,
                _ => false,
            };
            let first = self.meta.base_index + 1;
            let last = self.meta.next_index - 1;
            // Routine entries go first: the live chain is pruned (keeping what is
            // not routine) while it is long enough...
            if last >= first + self.config.prune_chunk
                && (too_big || too_old(self.entry(first)?.as_ref()))
            {
                if !self.prune_before(first + self.config.prune_chunk)? {
                    return Ok(());
                }
                continue;
            }
            // ...then the oldest kept entries, a block at a time.
            match self.oldest_kept_block()? {
                Some((block, entries)) if too_big || too_old(entries.first()) => {
                    self.evict_kept_block(block, &entries)?;
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// The oldest block of entries kept below the base, if any.
    fn oldest_kept_block(&self) -> Result<Option<(u64, Vec<Entry>)>, AuditError> {
        let live = block_of(self.meta.base_index + 1);
        Ok(self
            .blocks(0, live, 1)?
            .into_iter()
            .next()
            .map(|(block, read)| (block, read.unwrap_or_default())))
    }

    /// Entries kept below the base (not routine, from pruned ranges).
    pub fn kept_entries(&self) -> Result<u64, AuditError> {
        let live = block_of(self.meta.base_index + 1);
        let mut count = 0;
        let mut block = 0;
        loop {
            let page = self.blocks(block, live, 64)?;
            for (_, read) in &page {
                count += read.as_ref().map_or(0, |entries| entries.len() as u64);
            }
            match page.last() {
                Some((last, _)) if page.len() == 64 => block = last + 1,
                _ => return Ok(count),
            }
        }
    }

    /// Prunes the live chain below `cut` (rounded down to a block boundary): its
    /// routine entries are removed, the others stay in their blocks, below the new
    /// base. Each run of kept entries gets a signed checkpoint just before it and
    /// at its end, so it still verifies without the entries pruned around it, and
    /// a checkpoint at the new base vouches for the rest of the chain. Returns
    /// false if nothing could be pruned (the range does not decode).
    pub fn prune_before(&mut self, cut: u64) -> Result<bool, AuditError> {
        let identity = self.identity.clone().ok_or(AuditError::ReadOnly)?;
        let first = self.meta.base_index + 1;
        let cut = block_start(block_of(cut.min(self.meta.next_index - 1)));
        if cut <= first {
            return Ok(false);
        }
        let Some(base_entry) = self.entry(cut - 1)? else {
            return Ok(false);
        };
        let mut meta = self.meta.clone();
        let mut writes = Vec::new();
        let mut removed = Removed::default();
        let mut overlay = Overlay::new();
        // Indices (with hash and time) that need a checkpoint: either side of a run.
        let mut bounds: BTreeMap<u64, ([u8; 32], u64)> = BTreeMap::new();
        let mut previous = (meta.base_index, meta.base_hash, 0);
        let mut in_run = false;
        for (block, read) in self.blocks(block_of(first), block_of(cut), usize::MAX)? {
            let Ok(entries) = read else {
                return Ok(false);
            };
            let mut kept = Vec::new();
            for entry in entries {
                if entry.kind.is_routine() {
                    if in_run {
                        bounds.insert(previous.0, (previous.1, previous.2));
                        in_run = false;
                    }
                    removed.entry(&entry, &mut meta);
                } else {
                    if !in_run {
                        bounds.insert(previous.0, (previous.1, previous.2));
                        in_run = true;
                    }
                    kept.push(entry.clone());
                }
                previous = (entry.index, entry.hash, entry.at_ms);
            }
            if kept.is_empty() {
                writes.push(Write::Delete(block_key(block)));
                overlay.insert(block, None);
            } else {
                writes.push(Write::Put(
                    block_key(block),
                    postcard::to_allocvec(&kept).unwrap_or_default(),
                ));
                overlay.insert(block, Some(kept));
            }
        }
        if in_run {
            bounds.insert(previous.0, (previous.1, previous.2));
        }
        bounds.insert(cut - 1, (base_entry.hash, base_entry.at_ms));
        // Checkpoints inside the pruned range are dropped unless they bound a run.
        for (k, v) in
            self.store
                .range(&checkpoint_key(first), &checkpoint_key(cut - 1), usize::MAX)?
        {
            if !bounds.contains_key(&trailing_u64(&k)) {
                meta.logical_bytes = meta.logical_bytes.saturating_sub(9 + v.len() as u64);
                writes.push(Write::Delete(k));
            }
        }
        for (index, (hash, at_ms)) in bounds {
            if index > 0 && self.store.get(&checkpoint_key(index))?.is_none() {
                writes.push(signed_checkpoint(&identity, &mut meta, index, hash, at_ms));
            }
        }
        self.forget_removed(&removed, &overlay, &mut meta, &mut writes)?;
        meta.base_index = cut - 1;
        meta.base_hash = base_entry.hash;
        writes.push(Write::Put(META_KEY.to_vec(), encode_meta(&meta)));
        self.apply(writes)?;
        self.meta = meta;
        Ok(true)
    }

    /// Removes a block of kept entries below the base (the oldest), with the
    /// checkpoints that only served it. If a run continues in the next block, a
    /// checkpoint at this block's last entry keeps it verifiable.
    fn evict_kept_block(&mut self, block: u64, entries: &[Entry]) -> Result<(), AuditError> {
        let identity = self.identity.clone().ok_or(AuditError::ReadOnly)?;
        let mut meta = self.meta.clone();
        let mut writes = vec![Write::Delete(block_key(block))];
        let mut removed = Removed::default();
        for entry in entries {
            removed.entry(entry, &mut meta);
        }
        let overlay = Overlay::from([(block, None)]);
        let next = match self.blocks(block + 1, u64::MAX, 1)?.into_iter().next() {
            Some((_, Ok(rest))) => rest.first().map_or(meta.next_index, |entry| entry.index),
            _ => meta.next_index,
        };
        if let Some(last) = entries.last() {
            if last.index + 1 == next
                && last.index < meta.base_index
                && self.store.get(&checkpoint_key(last.index))?.is_none()
            {
                writes.push(signed_checkpoint(
                    &identity, &mut meta, last.index, last.hash, last.at_ms,
                ));
            }
        }
        for (k, v) in self
            .store
            .range(b"c", &checkpoint_key(next.saturating_sub(1)), usize::MAX)?
        {
            meta.logical_bytes = meta.logical_bytes.saturating_sub(9 + v.len() as u64);
            writes.push(Write::Delete(k));
        }
        self.forget_removed(&removed, &overlay, &mut meta, &mut writes)?;
        writes.push(Write::Put(META_KEY.to_vec(), encode_meta(&meta)));
        self.apply(writes)?;
        self.meta = meta;
        Ok(())
    }

    /// Deletes the evidence removed entries carried, and lists again the groups
    /// they were listed in (`overlay`: the blocks as this step leaves them).
    fn forget_removed(
        &self,
        removed: &Removed,
        overlay: &Overlay,
        meta: &mut Meta,
        writes: &mut Vec<Write>,
    ) -> Result<(), AuditError> {
        let (Some(&first), Some(&last)) = (removed.indices.first(), removed.indices.last()) else {
            return Ok(());
        };
        // From the value that holds `first`'s evidence, if any, to `last`.
        let start = self
            .store
            .range_rev(&evidence_key(0), &evidence_key(first + 1), 1)?
            .pop()
            .map_or_else(|| evidence_key(first), |(key, _)| key);
        for (key, value) in self
            .store
            .range(&start, &evidence_key(last + 1), usize::MAX)?
        {
            let Some(pieces) = decode_evidence(&value) else {
                continue;
            };
            let mut kept = Vec::new();
            let mut first_kept = None;
            for (index, record, bytes) in &pieces {
                if !removed.indices.contains(index) {
                    first_kept.get_or_insert(*index);
                    push_evidence(&mut kept, *index, record, bytes);
                }
            }
            if kept.len() == value.len() {
                continue;
            }
            meta.logical_bytes = meta
                .logical_bytes
                .saturating_sub((key.len() + value.len()) as u64);
            writes.push(Write::Delete(key));
            if let Some(index) = first_kept {
                // What is left goes under its first piece's index.
                let key = evidence_key(index);
                meta.logical_bytes += (key.len() + kept.len()) as u64;
                writes.push(Write::Put(key, kept));
            }
        }
        for group in group_of(first)..=group_of(last) {
            if group < meta.listed_groups {
                self.list_group(group, overlay, meta, writes, true)?;
            } else {
                // Counted at the estimate until listed.
                let listings: u64 = removed
                    .listings
                    .range(group_start(group)..group_start(group + 1))
                    .map(|(_, count)| count)
                    .sum();
                meta.logical_bytes = meta
                    .logical_bytes
                    .saturating_sub(INDEX_ELEMENT_BYTES * listings);
            }
        }
        Ok(())
    }

    /// The log's size as [`Stats::logical_bytes`] counts it, recounted from
    /// what the store holds (what the metadata carries is kept in step by each
    /// write; a converted log starts from this).
    pub(crate) fn recount(&self) -> Result<u64, AuditError> {
        let mut bytes = 0;
        let unlisted = self.unlisted_from();
        for entry in self.entries_from(1, usize::MAX)? {
            bytes += entry_size(&entry);
            if entry.index >= unlisted {
                bytes += INDEX_ELEMENT_BYTES * listings(&entry);
            }
        }
        for (start, end) in [
            (&b"R"[..], &b"S"[..]),
            (b"O", b"Q"),
            (b"V", b"W"),
            (b"c", b"d"),
        ] {
            for (key, value) in self.store.range(start, end, usize::MAX)? {
                bytes += (key.len() + value.len()) as u64;
            }
        }
        Ok(bytes)
    }
}

/// Writes an evidence value `(first index, value)`, if any.
fn evidence_writes(value: Option<(u64, Vec<u8>)>, meta: &mut Meta, writes: &mut Vec<Write>) {
    if let Some((first, value)) = value {
        let key = evidence_key(first);
        meta.logical_bytes += (key.len() + value.len()) as u64;
        writes.push(Write::Put(key, value));
    }
}

/// How many indexes list `entry`.
fn listings(entry: &Entry) -> u64 {
    indexed_ids(entry)
        .iter()
        .filter(|(_, id)| id.is_some())
        .count() as u64
}

/// Entries taken out of the log by one pruning step.
#[derive(Debug, Default)]
struct Removed {
    indices: BTreeSet<u64>,
    /// How many index listings each removed entry had.
    listings: BTreeMap<u64, u64>,
}

impl Removed {
    fn entry(&mut self, entry: &Entry, meta: &mut Meta) {
        meta.logical_bytes = meta.logical_bytes.saturating_sub(entry_size(entry));
        self.indices.insert(entry.index);
        self.listings.insert(entry.index, listings(entry));
    }
}

/// A checkpoint at `index` that leaves the "last checkpoint" bookkeeping alone
/// (it vouches for a kept run or a base, not for the head).
fn signed_checkpoint(
    identity: &Identity,
    meta: &mut Meta,
    index: u64,
    head: [u8; 32],
    at_ms: u64,
) -> Write {
    let checkpoint = Checkpoint::sign(identity, &meta.federation, index, head, at_ms);
    let bytes = postcard::to_allocvec(&checkpoint).unwrap_or_default();
    meta.logical_bytes += 9 + bytes.len() as u64;
    Write::Put(checkpoint_key(index), bytes)
}

/// Chains `new`, stamped `at_ms`, after the head in `meta`.
fn chain(meta: &mut Meta, new: NewEntry, at_ms: u64) -> Entry {
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

fn encode_meta(meta: &Meta) -> Vec<u8> {
    postcard::to_allocvec(meta).unwrap_or_default()
}

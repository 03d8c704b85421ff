//! Converting a log of the earlier layout (evidence under `v` ‖ record, index
//! lists under `r`/`o`/`p` ‖ id ‖ group, metadata without the listed groups) to
//! the current one ([`crate::layout`]).
//!
//! The conversion writes the new keys first, in batches; each is the same
//! whatever was written before, so a conversion cut short by a crash is simply
//! done again at the next open, from the earlier metadata that is still in
//! place. The batch that writes the new metadata is the commit point. The old
//! keys are deleted after it, in batches, and whatever a crash leaves of them
//! is deleted at the next open. Nothing is signed and no entry changes: the
//! chain, its checkpoints and every export stay as they were.
//!
//! Evidence moves to the entries that carry it: those about the record whose
//! kind carries evidence, or else the first entry about it. Evidence that no
//! entry is about any more is dropped (the earlier layout deleted it too when
//! it pruned the last such entry).

use std::collections::BTreeMap;

use super::{AuditError, AuditLog, LegacyMeta, Meta, Overlay};
use crate::entry::{Entry, RecordKey};
use crate::layout::{
    decode_list, evidence_key, group_of, push_evidence, LEGACY_END, LEGACY_START, META_KEY,
};
use crate::log::{encode_meta, AuditConfig};
use crate::store::{Store, Write};
use crate::verify::carries_evidence;

/// Legacy keys deleted per batch.
const DELETE_BATCH: usize = 8192;

impl<S: Store> AuditLog<S> {
    /// Converts the log in `store`, described by `legacy`; returns the store
    /// and the new metadata (already written).
    pub(super) fn convert(store: S, legacy: LegacyMeta) -> Result<(S, Meta), AuditError> {
        let mut meta = Meta {
            node: legacy.node,
            federation: legacy.federation,
            next_index: legacy.next_index,
            head: legacy.head,
            base_index: legacy.base_index,
            base_hash: legacy.base_hash,
            last_checkpoint_index: legacy.last_checkpoint_index,
            last_checkpoint_at_ms: legacy.last_checkpoint_at_ms,
            last_at_ms: legacy.last_at_ms,
            logical_bytes: legacy.logical_bytes,
            listed_groups: 0,
        };
        let mut log = Self::with_meta(store, None, AuditConfig::default(), meta.clone())?;
        log.convert_evidence()?;
        let complete = group_of(meta.next_index);
        for group in 0..complete {
            let mut writes = Vec::new();
            log.list_group(group, &Overlay::new(), &mut meta, &mut writes, false)?;
            log.apply(writes)?;
        }
        meta.listed_groups = complete;
        log.meta = meta.clone();
        meta.logical_bytes = log.recount()?;
        log.apply(vec![Write::Put(META_KEY.to_vec(), encode_meta(&meta))])?;
        Ok((log.store, meta))
    }

    /// Writes each piece of legacy evidence under the entries that carry it.
    fn convert_evidence(&mut self) -> Result<(), AuditError> {
        let mut cursor = vec![b'v'];
        loop {
            let page = self.store.range(&cursor, b"w", 256)?;
            let mut writes = Vec::new();
            for (key, bytes) in &page {
                let Ok(id) = <[u8; 32]>::try_from(&key[1..]) else {
                    continue;
                };
                let record = RecordKey(id);
                let mut about: Vec<Entry> = Vec::new();
                let mut cached: Option<(u64, Vec<Entry>)> = None;
                for index in self.legacy_list(b'r', &id)? {
                    if let Some(entry) = self.entry_cached(&mut cached, index)? {
                        if entry.record == Some(record) {
                            about.push(entry.clone());
                        }
                    }
                }
                let carriers: Vec<u64> = about
                    .iter()
                    .filter(|entry| carries_evidence(entry.kind))
                    .map(|entry| entry.index)
                    .collect();
                let carriers = if carriers.is_empty() {
                    about.first().map(|entry| entry.index).into_iter().collect()
                } else {
                    carriers
                };
                for index in carriers {
                    let mut value = Vec::new();
                    push_evidence(&mut value, index, &id, bytes);
                    writes.push(Write::Put(evidence_key(index), value));
                }
            }
            self.apply(writes)?;
            match page.last() {
                Some((last, _)) if page.len() == 256 => {
                    cursor = last.clone();
                    cursor.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    /// The indices a legacy index list holds for `id`, over all its groups.
    fn legacy_list(&self, prefix: u8, id: &[u8; 32]) -> Result<Vec<u64>, AuditError> {
        let start = crate::layout::key(prefix, &[id, &0u64.to_be_bytes()]);
        let end = crate::layout::key(prefix, &[id, &u64::MAX.to_be_bytes()]);
        let mut groups = BTreeMap::new();
        for (key, value) in self.store.range(&start, &end, usize::MAX)? {
            groups.insert(key, decode_list(&value).unwrap_or_default());
        }
        Ok(groups.into_values().flatten().collect())
    }
}

/// Deletes every key of the earlier layout left in `store`.
pub(super) fn delete_legacy_keys<S: Store>(store: &mut S) -> Result<(), AuditError> {
    loop {
        let keys = store.range(LEGACY_START, LEGACY_END, DELETE_BATCH)?;
        if keys.is_empty() {
            return Ok(());
        }
        store.apply(
            keys.into_iter()
                .map(|(key, _)| Write::Delete(key))
                .collect(),
        )?;
    }
}

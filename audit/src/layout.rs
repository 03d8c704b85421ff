//! How the log is laid out in its key-value store.
//!
//! | key | value |
//! |---|---|
//! | `e` ‖ block | up to [`BLOCK`] consecutive entries (postcard `Vec<Entry>`) |
//! | `V` ‖ index | the signed evidence carried by the entries of one append from entry `index` on: for each, its index, record key and bytes |
//! | `R` ‖ group ‖ byte, `O` ‖ group ‖ byte, `P` ‖ group ‖ byte | a bucket: the record, origin or peer ids of that [`GROUP`] of entries whose first byte is `byte`, each with the indices of its entries |
//! | `c` ‖ index | a signed checkpoint |
//! | `m` | the log's metadata: next index, head hash, signed base, groups listed |
//!
//! Every key a busy log writes grows with the log: blocks and evidence by entry
//! index, buckets by group. The store then appends at the end of its key space
//! instead of inserting at random places, which is what an entry cost when
//! evidence was keyed by record id and index lists by id (about 30 µs in sled,
//! most of it for those random keys). The evidence of one append goes under one
//! key, since the store's cost is mostly per key: in sled, 64 entries with 300
//! bytes of evidence each cost about 17 µs of CPU per entry with a key each and
//! about 6 µs with one key for all (the `appends` example of this crate).
//!
//! A group's buckets are written once, in the batch that completes the group,
//! built from the group's entries (and rebuilt from them when pruning removes
//! some). The newest entries, at most one group, are not listed yet: a query
//! reads them. So there is no index state kept only in memory, and nothing to
//! rebuild after a crash.
//!
//! Logs written with the earlier layout (evidence under `v` ‖ record, lists
//! under `r`/`o`/`p` ‖ id ‖ group) are converted when opened; see
//! [`AuditLog::open`](crate::AuditLog::open).

use std::collections::BTreeMap;

use crate::entry::Entry;

/// Entries per block key.
pub const BLOCK: u64 = 64;

/// Entries per index group.
pub const GROUP: u64 = 4096;

/// The three secondary indexes: by record, by origin, by peer.
pub const INDEXES: [u8; 3] = [b'R', b'O', b'P'];

/// The index of entries about a record.
pub const BY_RECORD: u8 = b'R';
/// The index of entries about an origin.
pub const BY_ORIGIN: u8 = b'O';
/// The index of entries involving a peer.
pub const BY_PEER: u8 = b'P';

/// The metadata key.
pub const META_KEY: &[u8] = b"m";

/// Keys of the earlier layout lie in `[LEGACY_START, LEGACY_END)`.
pub const LEGACY_START: &[u8] = b"o";
/// See [`LEGACY_START`].
pub const LEGACY_END: &[u8] = b"w";

/// `prefix ‖ parts…`
pub fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![prefix];
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

/// The block holding entry `index` (indices start at 1).
pub fn block_of(index: u64) -> u64 {
    index.saturating_sub(1) / BLOCK
}

/// The first entry index of `block`.
pub fn block_start(block: u64) -> u64 {
    block * BLOCK + 1
}

/// The key of `block`.
pub fn block_key(block: u64) -> Vec<u8> {
    key(b'e', &[&block.to_be_bytes()])
}

/// The index group of entry `index`.
pub fn group_of(index: u64) -> u64 {
    index.saturating_sub(1) / GROUP
}

/// The first entry index of `group`.
pub fn group_start(group: u64) -> u64 {
    group * GROUP + 1
}

/// The blocks of `group`: `[first, end)`.
pub fn group_blocks(group: u64) -> (u64, u64) {
    let per_group = GROUP / BLOCK;
    (group * per_group, (group + 1) * per_group)
}

/// The key of the bucket of index `prefix`, `group`, ids beginning with `byte`.
pub fn bucket_key(prefix: u8, group: u64, byte: u8) -> Vec<u8> {
    key(prefix, &[&group.to_be_bytes(), &[byte]])
}

/// The keys of every bucket of index `prefix` in `group`: `[start, end)`.
pub fn group_bucket_range(prefix: u8, group: u64) -> (Vec<u8>, Vec<u8>) {
    (
        key(prefix, &[&group.to_be_bytes()]),
        key(prefix, &[&group.saturating_add(1).to_be_bytes()]),
    )
}

/// The group and first byte a bucket key names, or `None` if it is not one.
pub fn parse_bucket_key(raw: &[u8]) -> Option<(u8, u64, u8)> {
    (raw.len() == 10 && INDEXES.contains(&raw[0]))
        .then(|| (raw[0], trailing_u64(&raw[..9]), raw[9]))
}

/// The key of a checkpoint at `index`.
pub fn checkpoint_key(index: u64) -> Vec<u8> {
    key(b'c', &[&index.to_be_bytes()])
}

/// The key of the evidence carried by entry `index`.
pub fn evidence_key(index: u64) -> Vec<u8> {
    key(b'V', &[&index.to_be_bytes()])
}

/// Appends one piece of evidence to a stored evidence value.
pub fn push_evidence(out: &mut Vec<u8>, index: u64, record: &[u8; 32], bytes: &[u8]) {
    out.extend_from_slice(&index.to_be_bytes());
    out.extend_from_slice(record);
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The bytes [`push_evidence`] adds.
pub fn evidence_item_len(bytes: &[u8]) -> u64 {
    let mut length = Vec::new();
    push_varint(&mut length, bytes.len() as u64);
    (8 + 32 + length.len() + bytes.len()) as u64
}

/// One piece of stored evidence: the index of the entry carrying it, the record
/// key and the bytes.
pub type EvidencePiece<'v> = (u64, [u8; 32], &'v [u8]);

/// The pieces of a stored evidence value (indices increasing), or `None` if it
/// does not decode.
pub fn decode_evidence(mut value: &[u8]) -> Option<Vec<EvidencePiece<'_>>> {
    let mut out: Vec<EvidencePiece<'_>> = Vec::new();
    while !value.is_empty() {
        let index = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        let record: [u8; 32] = value.get(8..40)?.try_into().ok()?;
        let (length, rest) = take_varint(&value[40..])?;
        let length = usize::try_from(length).ok()?;
        let bytes = rest.get(..length)?;
        if out.last().is_some_and(|(last, _, _)| *last >= index) {
            return None;
        }
        out.push((index, record, bytes));
        value = &rest[length..];
    }
    Some(out)
}

/// The trailing big-endian u64 of a key.
pub fn trailing_u64(raw: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    if raw.len() >= 8 {
        bytes.copy_from_slice(&raw[raw.len() - 8..]);
    }
    u64::from_be_bytes(bytes)
}

/// The ids an entry is indexed under, by index prefix.
pub fn indexed_ids(entry: &Entry) -> [(u8, Option<[u8; 32]>); 3] {
    [
        (BY_RECORD, entry.record.map(|record| record.0)),
        (BY_ORIGIN, entry.origin.map(|origin| *origin.as_bytes())),
        (BY_PEER, entry.peer.map(|peer| *peer.as_bytes())),
    ]
}

/// The id an entry has in index `prefix`.
pub fn id_in(entry: &Entry, prefix: u8) -> Option<[u8; 32]> {
    indexed_ids(entry)
        .into_iter()
        .find(|(p, _)| *p == prefix)
        .and_then(|(_, id)| id)
}

/// Sorted indices as varint deltas.
pub fn encode_list(indices: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(indices.len() * 2);
    let mut previous = 0;
    for &index in indices {
        push_varint(&mut out, index - previous);
        previous = index;
    }
    out
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A varint at the start of `bytes`, and the bytes after it.
fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (at, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f).checked_shl(7 * at as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[at + 1..]));
        }
    }
    None
}

/// The indices of a list, or `None` if the bytes are not a valid list.
pub fn decode_list(mut bytes: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut previous: u64 = 0;
    while !bytes.is_empty() {
        let (delta, rest) = take_varint(bytes)?;
        if delta == 0 && !out.is_empty() {
            return None;
        }
        previous = previous.checked_add(delta)?;
        out.push(previous);
        bytes = rest;
    }
    Some(out)
}

/// The ids of one bucket, each with the indices of its entries.
pub type Bucket = BTreeMap<[u8; 32], Vec<u64>>;

/// A bucket as stored: per id, in id order, the 32 bytes of the id, the length of
/// its list in bytes (a varint) and the list.
pub fn encode_bucket(bucket: &Bucket) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, indices) in bucket {
        let list = encode_list(indices);
        out.extend_from_slice(id);
        push_varint(&mut out, list.len() as u64);
        out.extend_from_slice(&list);
    }
    out
}

/// A stored bucket, or `None` if the bytes are not one (ids out of order or
/// repeated, a list that does not decode or is empty).
pub fn decode_bucket(mut bytes: &[u8]) -> Option<Bucket> {
    let mut bucket = Bucket::new();
    let mut last: Option<[u8; 32]> = None;
    while !bytes.is_empty() {
        let id: [u8; 32] = bytes.get(..32)?.try_into().ok()?;
        let (length, rest) = take_varint(&bytes[32..])?;
        let length = usize::try_from(length).ok()?;
        let list = decode_list(rest.get(..length)?)?;
        if list.is_empty() || last.is_some_and(|last| last >= id) {
            return None;
        }
        last = Some(id);
        bucket.insert(id, list);
        bytes = &rest[length..];
    }
    Some(bucket)
}

/// The buckets of a group's entries, by key, and the number of listings in them.
pub fn group_buckets<'e>(
    group: u64,
    entries: impl IntoIterator<Item = &'e Entry>,
) -> (BTreeMap<Vec<u8>, Vec<u8>>, u64) {
    let mut buckets: BTreeMap<(u8, u8), Bucket> = BTreeMap::new();
    let mut listings = 0;
    for entry in entries {
        for (prefix, id) in indexed_ids(entry) {
            if let Some(id) = id {
                listings += 1;
                buckets
                    .entry((prefix, id[0]))
                    .or_default()
                    .entry(id)
                    .or_default()
                    .push(entry.index);
            }
        }
    }
    let encoded = buckets
        .into_iter()
        .map(|((prefix, byte), bucket)| (bucket_key(prefix, group, byte), encode_bucket(&bucket)))
        .collect();
    (encoded, listings)
}

/// Entries waiting to be written, by block.
pub type Blocks = BTreeMap<u64, Vec<Entry>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_reject_garbage() {
        let indices = [1, 2, 300, 70_000, u64::MAX / 2];
        assert_eq!(decode_list(&encode_list(&indices)).unwrap(), indices);
        assert_eq!(decode_list(&[]).unwrap(), Vec::<u64>::new());
        assert!(decode_list(&[0x80]).is_none(), "truncated");
        assert!(decode_list(&[5, 0]).is_none(), "a repeated index");
        assert!(decode_list(&[0xff; 12]).is_none(), "overlong");
    }

    #[test]
    fn buckets_round_trip_and_reject_garbage() {
        let mut bucket = Bucket::new();
        bucket.insert([1; 32], vec![3, 9, 4000]);
        bucket.insert([2; 32], vec![7]);
        let bytes = encode_bucket(&bucket);
        assert_eq!(decode_bucket(&bytes).unwrap(), bucket);
        assert_eq!(decode_bucket(&[]).unwrap(), Bucket::new());
        assert!(
            decode_bucket(&bytes[..bytes.len() - 1]).is_none(),
            "truncated"
        );
        assert!(decode_bucket(&bytes[..20]).is_none(), "a cut id");
        // The two ids swapped: out of order.
        let first_len = 32 + 1 + bytes[32] as usize;
        let mut reordered = bytes[first_len..].to_vec();
        reordered.extend_from_slice(&bytes[..first_len]);
        assert!(decode_bucket(&reordered).is_none(), "ids out of order");
        // An id with an empty list.
        let mut empty = [3u8; 32].to_vec();
        empty.push(0);
        assert!(decode_bucket(&empty).is_none(), "an empty list");
    }

    #[test]
    fn evidence_values_round_trip_and_reject_garbage() {
        let mut value = Vec::new();
        push_evidence(&mut value, 5, &[1; 32], b"first");
        push_evidence(&mut value, 9, &[2; 32], &[7; 200]);
        assert_eq!(
            value.len() as u64,
            evidence_item_len(b"first") + evidence_item_len(&[7; 200])
        );
        let pieces = decode_evidence(&value).unwrap();
        assert_eq!(
            pieces,
            vec![(5, [1; 32], &b"first"[..]), (9, [2; 32], &[7; 200][..])]
        );
        assert!(
            decode_evidence(&value[..value.len() - 1]).is_none(),
            "truncated"
        );
        assert!(decode_evidence(&value[..30]).is_none(), "a cut record key");
        let mut backwards = Vec::new();
        push_evidence(&mut backwards, 9, &[2; 32], b"x");
        push_evidence(&mut backwards, 5, &[1; 32], b"y");
        assert!(
            decode_evidence(&backwards).is_none(),
            "indices out of order"
        );
    }

    #[test]
    fn blocks_and_groups() {
        assert_eq!(block_of(1), 0);
        assert_eq!(block_of(64), 0);
        assert_eq!(block_of(65), 1);
        assert_eq!(block_start(1), 65);
        assert_eq!(group_of(4096), 0);
        assert_eq!(group_of(4097), 1);
        assert_eq!(group_start(1), 4097);
        assert_eq!(group_blocks(1), (64, 128));
        let key = bucket_key(BY_PEER, 7, 0xab);
        assert_eq!(parse_bucket_key(&key), Some((BY_PEER, 7, 0xab)));
        let (start, end) = group_bucket_range(BY_PEER, 7);
        assert!(start <= key && key < end);
        assert!(bucket_key(BY_PEER, 8, 0) >= end);
    }
}

//! How the log is laid out in its key-value store.
//!
//! | key | value |
//! |---|---|
//! | `e` ‖ block | up to [`BLOCK`] consecutive entries (postcard `Vec<Entry>`) |
//! | `r` ‖ record ‖ group, `o` ‖ origin ‖ group, `p` ‖ peer ‖ group | the indices of the entries of that [`GROUP`] about this id, delta-encoded varints |
//! | `v` ‖ record | the signed evidence, stored once |
//! | `c` ‖ index | a signed checkpoint |
//! | `m` | the log's metadata: next index, head hash, signed base |
//!
//! Entries are stored in blocks and index entries in per-group lists so that an
//! append of a batch writes one key per touched block and one per touched
//! (id, group), instead of four keys per entry: the store does several times less
//! work, and its write amplification shrinks with it.

use std::collections::BTreeMap;

use crate::entry::Entry;

/// Entries per block key.
pub const BLOCK: u64 = 64;

/// Entries per index group.
pub const GROUP: u64 = 4096;

/// The three secondary indexes.
pub const INDEXES: [u8; 3] = [b'r', b'o', b'p'];

/// The metadata key.
pub const META_KEY: &[u8] = b"m";

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

/// The key of an index list.
pub fn index_key(prefix: u8, id: &[u8; 32], group: u64) -> Vec<u8> {
    key(prefix, &[id, &group.to_be_bytes()])
}

/// The key of a checkpoint at `index`.
pub fn checkpoint_key(index: u64) -> Vec<u8> {
    key(b'c', &[&index.to_be_bytes()])
}

/// The key of the evidence of a record.
pub fn evidence_key(record: &[u8; 32]) -> Vec<u8> {
    key(b'v', &[record])
}

/// The trailing big-endian u64 of a key.
pub fn trailing_u64(raw: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    if raw.len() >= 8 {
        bytes.copy_from_slice(&raw[raw.len() - 8..]);
    }
    u64::from_be_bytes(bytes)
}

/// The 32-byte id inside an index key.
pub fn index_key_id(raw: &[u8]) -> Option<[u8; 32]> {
    (raw.len() == 41).then(|| {
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[1..33]);
        id
    })
}

/// The ids an entry is indexed under, by index prefix.
pub fn indexed_ids(entry: &Entry) -> [(u8, Option<[u8; 32]>); 3] {
    [
        (b'r', entry.record.map(|record| record.0)),
        (b'o', entry.origin.map(|origin| *origin.as_bytes())),
        (b'p', entry.peer.map(|peer| *peer.as_bytes())),
    ]
}

/// Sorted indices as varint deltas.
pub fn encode_list(indices: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(indices.len() * 2);
    let mut previous = 0;
    for &index in indices {
        let mut delta = index - previous;
        previous = index;
        while delta >= 0x80 {
            out.push((delta as u8) | 0x80);
            delta >>= 7;
        }
        out.push(delta as u8);
    }
    out
}

/// The indices of a list, or `None` if the bytes are not a valid list.
pub fn decode_list(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    let mut previous: u64 = 0;
    let mut value: u64 = 0;
    let mut shift = 0;
    for &byte in bytes {
        if shift > 63 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            previous = previous.checked_add(value)?;
            if value == 0 && !out.is_empty() {
                return None;
            }
            out.push(previous);
            value = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    (shift == 0).then_some(out)
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
    fn blocks_and_groups() {
        assert_eq!(block_of(1), 0);
        assert_eq!(block_of(64), 0);
        assert_eq!(block_of(65), 1);
        assert_eq!(block_start(1), 65);
        assert_eq!(group_of(4096), 0);
        assert_eq!(group_of(4097), 1);
    }
}

use std::collections::BTreeMap;
use std::sync::Arc;

use tidings_keys::{FederationId, Identity, NodeId};

use super::*;
use crate::export::{read_export, spread, Line};
use crate::layout;

fn identity(seed: u8) -> Arc<Identity> {
    Arc::new(Identity::from_seed(&[seed; 32]))
}

fn federation() -> FederationId {
    FederationId::from_name("audit-test")
}

fn config(every: u64) -> AuditConfig {
    AuditConfig {
        checkpoint_every_entries: every,
        checkpoint_every_ms: u64::MAX,
        max_bytes: None,
        max_age_ms: None,
        prune_chunk: 64,
    }
}

fn peer(seed: u8) -> NodeId {
    Identity::from_seed(&[seed; 32]).node_id()
}

fn new_entry(at_ms: u64, kind: EntryKind, record: u8, peer_seed: u8) -> NewEntry {
    NewEntry {
        at_ms,
        kind,
        peer: Some(peer(peer_seed)),
        origin: Some(peer(100 + record)),
        record: Some(RecordKey([record; 32])),
        reason: format!("{kind} record {record}"),
        evidence: Some(vec![record; 40]),
    }
}

fn filled(count: u64, every: u64) -> AuditLog<MemoryStore> {
    let mut log =
        AuditLog::open(MemoryStore::new(), identity(1), federation(), config(every)).unwrap();
    let entries = (0..count)
        .map(|i| {
            new_entry(
                1000 + i * 10,
                if i % 3 == 0 {
                    EntryKind::Accepted
                } else {
                    EntryKind::Relayed
                },
                (i % 5) as u8,
                (i % 4) as u8 + 10,
            )
        })
        .collect();
    log.append(entries).unwrap();
    log
}

#[test]
fn queries_by_record_origin_peer_kind_and_time() {
    let log = filled(50, 16);
    let by_record = log
        .query(&Query {
            record: Some(RecordKey([2; 32])),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_record.len(), 10);
    assert!(by_record
        .iter()
        .all(|e| e.record == Some(RecordKey([2; 32]))));
    let by_origin = log
        .query(&Query {
            origin: Some(peer(103)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_origin.len(), 10);
    let by_peer = log
        .query(&Query {
            peer: Some(peer(10)),
            kind: Some(EntryKind::Accepted),
            ..Default::default()
        })
        .unwrap();
    assert!(by_peer
        .iter()
        .all(|e| e.peer == Some(peer(10)) && e.kind == EntryKind::Accepted));
    assert!(!by_peer.is_empty());
    let window = log
        .query(&Query {
            since_ms: Some(1100),
            until_ms: Some(1200),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        window.iter().map(|e| e.index).collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );
    let paged = log
        .query(&Query {
            after_index: 45,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(paged.len(), 5);
    assert_eq!(
        log.latest(3)
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect::<Vec<_>>(),
        vec![48, 49, 50]
    );
    // Evidence is found by record (stored with each entry that carried it).
    assert_eq!(log.evidence_keys().unwrap().len(), 5);
    assert_eq!(
        log.evidence(&RecordKey([4; 32])).unwrap(),
        Some(vec![4; 40])
    );
}

#[test]
fn an_intact_log_verifies_and_times_never_go_back() {
    let mut log = filled(40, 16);
    log.append(vec![new_entry(5, EntryKind::Stale, 1, 1)])
        .unwrap();
    assert_eq!(
        log.entry(41).unwrap().unwrap().at_ms,
        1390,
        "clamped to the previous time"
    );
    let verified = log.verify().unwrap().unwrap();
    assert_eq!(
        (verified.first, verified.last, verified.checkpoints),
        (1, 41, 2)
    );
    assert_eq!(verified.unsigned_tail, 9);
    log.checkpoint_now().unwrap();
    assert_eq!(log.verify().unwrap().unwrap().unsigned_tail, 0);
}

/// Rewrites the block holding entries 1..=64 with `change` applied to its entries.
fn rewrite_first_block(log: &mut AuditLog<MemoryStore>, change: impl FnOnce(&mut Vec<Entry>)) {
    let key = layout::block_key(0);
    let mut entries: Vec<Entry> = postcard::from_bytes(&log.store_mut().raw_mut()[&key]).unwrap();
    change(&mut entries);
    log.store_mut()
        .raw_mut()
        .insert(key, postcard::to_allocvec(&entries).unwrap());
}

#[test]
fn a_changed_entry_is_found_at_its_index() {
    let mut log = filled(40, 16);
    rewrite_first_block(&mut log, |entries| entries[22].reason.push('!'));
    let problem = log.verify().unwrap().unwrap_err();
    assert_eq!(problem, Problem::HashMismatch { index: 23 });
}

#[test]
fn a_flipped_byte_anywhere_in_the_stored_entries_is_found() {
    for position in [0usize, 7, 100, 1000, 2500] {
        let mut log = filled(40, 16);
        let key = layout::block_key(0);
        let value = log.store_mut().raw_mut().get_mut(&key).unwrap();
        let at = position % value.len();
        value[at] ^= 0x04;
        let problem = log.verify().unwrap().unwrap_err();
        assert!((1..=40).contains(&problem.index()), "byte {at}: {problem}");
    }
}

#[test]
fn a_removed_entry_is_found() {
    let mut log = filled(40, 16);
    rewrite_first_block(&mut log, |entries| {
        entries.remove(29);
    });
    let problem = log.verify().unwrap().unwrap_err();
    assert_eq!(
        problem,
        Problem::Missing {
            expected: 30,
            found: 31
        }
    );
    // Removing the tail is caught by the checkpoint that covers it, or by the head.
    let mut log = filled(40, 16);
    rewrite_first_block(&mut log, |entries| entries.truncate(32));
    assert!(log.verify().unwrap().is_err());
    // Removing a whole block.
    let mut log = filled(200, 16);
    log.store_mut().raw_mut().remove(&layout::block_key(1));
    assert_eq!(
        log.verify().unwrap().unwrap_err(),
        Problem::Missing {
            expected: 65,
            found: 129
        }
    );
}

#[test]
fn indexes_are_checked_both_ways() {
    // One group listed in buckets, and some entries after it.
    let mut log = filled(layout::GROUP + 100, 1024);
    let listed = log.check_indexes().unwrap().unwrap();
    assert_eq!(
        listed,
        layout::GROUP * 3,
        "each entry of the first group, by three ids"
    );
    let buckets: Vec<Vec<u8>> = log
        .store_mut()
        .raw_mut()
        .keys()
        .filter(|k| layout::parse_bucket_key(k).is_some())
        .cloned()
        .collect();
    assert!(!buckets.is_empty());
    let original = log.store_mut().raw_mut().clone();
    for key in &buckets {
        // A bucket dropped: its entries are no longer listed.
        log.store_mut().raw_mut().remove(key);
        assert!(matches!(
            log.check_indexes().unwrap(),
            Err(Problem::IndexMismatch { .. })
        ));
        // A listing moved to another entry: found.
        *log.store_mut().raw_mut() = original.clone();
        let value = log.store_mut().raw_mut().get_mut(key).unwrap();
        let last = value.len() - 1;
        value[last] ^= 1;
        assert!(
            matches!(
                log.check_indexes().unwrap(),
                Err(Problem::IndexMismatch { .. })
            ),
            "{key:?}"
        );
        *log.store_mut().raw_mut() = original.clone();
    }
    // A bucket for a group not listed yet.
    log.store_mut()
        .raw_mut()
        .insert(layout::bucket_key(layout::BY_PEER, 1, 0), Vec::new());
    assert!(matches!(
        log.check_indexes().unwrap(),
        Err(Problem::IndexMismatch { .. })
    ));
}

#[test]
fn a_forged_checkpoint_is_found() {
    let mut log = filled(40, 16);
    let mut key = vec![b'c'];
    key.extend_from_slice(&16u64.to_be_bytes());
    let mut checkpoint: Checkpoint =
        postcard::from_bytes(&log.store_mut().raw_mut()[&key]).unwrap();
    checkpoint.head[0] ^= 1;
    log.store_mut()
        .raw_mut()
        .insert(key.clone(), postcard::to_allocvec(&checkpoint).unwrap());
    assert_eq!(
        log.verify().unwrap().unwrap_err(),
        Problem::BadCheckpointSignature { index: 16 }
    );
    // Signed by another key: still refused.
    let forged = Checkpoint::sign(&identity(9), &federation(), 16, checkpoint.head, 0);
    log.store_mut()
        .raw_mut()
        .insert(key, postcard::to_allocvec(&forged).unwrap());
    assert!(matches!(
        log.verify().unwrap().unwrap_err(),
        Problem::ForeignCheckpoint { index: 16, .. }
    ));
}

fn exported(log: &AuditLog<MemoryStore>) -> Vec<String> {
    let mut out = Vec::new();
    export::export(log, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn reread(lines: &[String]) -> export::ReadExport {
    read_export(lines.join("\n").as_bytes()).unwrap()
}

#[test]
fn exports_verify_offline_and_tampering_names_the_index() {
    let log = filled(40, 16);
    let lines = exported(&log);
    let export = reread(&lines);
    let verified = export.verify(Some(&log.node())).unwrap();
    assert_eq!(verified.last, 40);
    assert_eq!(export.evidence.len(), 5);
    assert!(
        export.verify(Some(&peer(77))).is_err(),
        "pinned to another node"
    );

    let position = |index: u64| {
        lines
            .iter()
            .position(|l| {
                l.contains(&format!("\"index\":{index},")) && l.contains("\"type\":\"entry\"")
            })
            .unwrap()
    };
    // A changed reason.
    let mut tampered = lines.clone();
    let at = position(12);
    tampered[at] = tampered[at].replace("record", "RECORD");
    assert_eq!(reread(&tampered).verify(None).unwrap_err().index(), 12);
    // A removed entry.
    let mut removed = lines.clone();
    removed.remove(position(20));
    assert_eq!(
        reread(&removed).verify(None).unwrap_err(),
        Problem::Missing {
            expected: 20,
            found: 21
        }
    );
    // Two entries swapped.
    let mut reordered = lines.clone();
    reordered.swap(position(5), position(6));
    assert_eq!(
        reread(&reordered).verify(None).unwrap_err(),
        Problem::Missing {
            expected: 5,
            found: 6
        }
    );
    // A forged checkpoint.
    let mut forged = lines.clone();
    let at = forged
        .iter()
        .position(|l| l.contains("\"type\":\"checkpoint\""))
        .unwrap();
    let Line::Checkpoint(mut checkpoint) = serde_json::from_str(&forged[at]).unwrap() else {
        panic!()
    };
    checkpoint.at_ms += 1;
    forged[at] = serde_json::to_string(&Line::Checkpoint(checkpoint)).unwrap();
    assert_eq!(
        reread(&forged).verify(None).unwrap_err(),
        Problem::BadCheckpointSignature { index: 16 }
    );
    // Garbage lines are typed errors.
    assert!(read_export("not json".as_bytes()).is_err());
    assert!(read_export("".as_bytes()).is_err());
    let mut no_header = lines.clone();
    no_header.remove(0);
    assert!(read_export(no_header.join("\n").as_bytes()).is_err());
}

#[test]
fn retention_prunes_whole_ranges_and_keeps_verification() {
    let mut log = AuditLog::open(
        MemoryStore::new(),
        identity(1),
        federation(),
        AuditConfig {
            max_age_ms: Some(200),
            ..config(16)
        },
    )
    .unwrap();
    for i in 0..300u64 {
        // Record 99 is referenced only early; record 1 throughout.
        let record = if i < 5 { 99 } else { 1 };
        log.append(vec![new_entry(
            1000 + i * 10,
            EntryKind::Accepted,
            record,
            3,
        )])
        .unwrap();
    }
    let stats = log.stats().unwrap();
    assert!(stats.first_index > 1, "{stats:?}");
    assert_eq!(stats.last_index, 300);
    assert_eq!((stats.first_index - 1) % 64, 0, "whole blocks");
    let oldest = log.entry(stats.first_index).unwrap().unwrap();
    assert!(
        oldest.at_ms + 200 + 2 * 64 * 10 >= 3990,
        "everything older than the age limit went, up to whole blocks: {oldest:?}"
    );
    let verified = log.verify().unwrap().unwrap();
    assert_eq!(verified.first, stats.first_index);
    assert!(
        log.evidence(&RecordKey([99; 32])).unwrap().is_none(),
        "unreferenced evidence removed"
    );
    assert!(
        log.evidence(&RecordKey([1; 32])).unwrap().is_some(),
        "referenced evidence kept"
    );
    let lines = exported(&log);
    reread(&lines).verify(None).unwrap();

    // Retention by bytes.
    let mut small = AuditLog::open(
        MemoryStore::new(),
        identity(1),
        federation(),
        AuditConfig {
            max_bytes: Some(4000),
            ..config(16)
        },
    )
    .unwrap();
    for i in 0..200u64 {
        small
            .append(vec![new_entry(i, EntryKind::Relayed, (i % 7) as u8, 2)])
            .unwrap();
    }
    let stats = small.stats().unwrap();
    assert!(stats.first_index > 150, "{stats:?}");
    assert!(stats.logical_bytes <= 4000 + 2 * 10 * 400, "{stats:?}");
    small.verify().unwrap().unwrap();
}

#[test]
fn the_writer_applies_backpressure_and_loses_nothing() {
    let log = AuditLog::open(MemoryStore::new(), identity(1), federation(), config(64)).unwrap();
    let writer = AuditWriter::spawn(log, 1).unwrap();
    let writer = Arc::new(writer);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    writer
                        .append(new_entry(i, EntryKind::Relayed, t as u8, 1))
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let durable = writer.flush().unwrap();
    assert_eq!(durable, 2000);
    assert_eq!(writer.lag(), 0);
    let log = Arc::try_unwrap(writer).unwrap().shutdown().unwrap();
    let verified = log.verify().unwrap().unwrap();
    assert_eq!(
        (verified.last, verified.unsigned_tail),
        (2000, 0),
        "final checkpoint at shutdown"
    );
}

#[test]
fn merged_exports_show_how_a_record_spread() {
    let record = RecordKey([7; 32]);
    let nodes: Vec<Arc<Identity>> = (1..=4).map(identity).collect();
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.node_id()).collect();
    let entry = |at, kind, from: Option<NodeId>| NewEntry {
        at_ms: at,
        kind,
        peer: from,
        origin: Some(ids[0]),
        record: Some(record),
        reason: String::new(),
        evidence: None,
    };
    let script = [
        vec![entry(100, EntryKind::Published, None)],
        vec![entry(110, EntryKind::Accepted, Some(ids[0]))],
        vec![
            entry(120, EntryKind::Accepted, Some(ids[1])),
            entry(130, EntryKind::Accepted, Some(ids[0])),
        ],
        vec![],
    ];
    let exports: Vec<export::ReadExport> = nodes
        .iter()
        .zip(script)
        .map(|(node, entries)| {
            let mut log =
                AuditLog::open(MemoryStore::new(), node.clone(), federation(), config(16)).unwrap();
            log.append(entries).unwrap();
            reread(&exported(&log))
        })
        .collect();
    // The signer is named by the caller, who proved it from the evidence:
    // the entries' own claim of origin is not trusted.
    assert_eq!(spread(&exports, record, None).origin, None);
    let spread = spread(&exports, record, Some(ids[0]));
    assert_eq!(spread.origin, Some(ids[0]));
    assert_eq!(spread.receipts.len(), 3);
    assert_eq!(
        spread.receipts[2].from,
        Some(ids[1]),
        "node 3 got it first from node 2"
    );
    assert_eq!(spread.missing, vec![ids[3]]);
    let names = |id: &NodeId| format!("n{}", ids.iter().position(|x| x == id).unwrap() + 1);
    let tree = spread.render(&names, &|t| t.to_string());
    assert!(tree.contains("└─ n1 published at 100"), "{tree}");
    assert!(tree.contains("   └─ n2 accepted from n1 at 110"), "{tree}");
    assert!(
        tree.contains("      └─ n3 accepted from n2 at 120"),
        "{tree}"
    );
    assert!(tree.contains("never received by n4"), "{tree}");
}

#[cfg(feature = "sled")]
#[test]
fn sled_logs_persist_and_refuse_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit");
    {
        let mut log = AuditLog::open(
            SledStore::open(&path).unwrap(),
            identity(1),
            federation(),
            config(8),
        )
        .unwrap();
        log.append(
            (0..20)
                .map(|i| new_entry(i, EntryKind::Accepted, 1, 2))
                .collect(),
        )
        .unwrap();
        log.flush().unwrap();
    }
    let log = AuditLog::open(
        SledStore::open(&path).unwrap(),
        identity(1),
        federation(),
        config(8),
    )
    .unwrap();
    assert_eq!(log.next_index(), 21);
    assert_eq!(log.verify().unwrap().unwrap().last, 20);
    drop(log);
    let error = AuditLog::open(
        SledStore::open(&path).unwrap(),
        identity(2),
        federation(),
        config(8),
    )
    .unwrap_err();
    assert!(matches!(error, AuditError::WrongNode { .. }));
}

#[cfg(feature = "sled")]
#[test]
fn a_corrupt_sled_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit");
    {
        let mut log = AuditLog::open(
            SledStore::open(&path).unwrap(),
            identity(1),
            federation(),
            config(8),
        )
        .unwrap();
        log.append(
            (0..20)
                .map(|i| new_entry(i, EntryKind::Accepted, 1, 2))
                .collect(),
        )
        .unwrap();
        log.flush().unwrap();
    }
    // Overwrite every file sled wrote with garbage.
    for entry in walk(&path) {
        std::fs::write(&entry, vec![0xa5; 4096]).unwrap();
    }
    match SledStore::open(&path) {
        Err(error) => assert!(error.to_string().contains("audit"), "{error}"),
        Ok(store) => {
            // If sled accepts the files, the log must still not panic: it reports.
            let result = AuditLog::open(store, identity(1), federation(), config(8));
            if let Ok(log) = result {
                let _ = log.verify();
            }
        }
    }
    // A path that is a file, not a directory.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let error = SledStore::open(&file).unwrap_err();
    assert!(error.to_string().contains("plain-file"), "{error}");
}

#[cfg(feature = "sled")]
fn walk(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_clock_set_back_slews_entry_times_instead_of_freezing_them() {
    let mut log = filled(10, 16);
    let last = log.last_at_ms();
    assert_eq!(last, 1090);
    // The clock now reads earlier than the log (it ran ahead before, and was
    // fixed); it advances 10 ms per entry.
    let behind = 500;
    let mut times = Vec::new();
    for step in 0..5u64 {
        log.append(vec![new_entry(
            last - behind + step * 10,
            EntryKind::Stale,
            1,
            1,
        )])
        .unwrap();
        times.push(log.last_at_ms());
    }
    assert_eq!(
        times,
        vec![1090, 1095, 1100, 1105, 1110],
        "half the clock's rate"
    );
    // Once the clock catches up, entries carry it again.
    log.append(vec![new_entry(5000, EntryKind::Stale, 1, 1)])
        .unwrap();
    assert_eq!(log.last_at_ms(), 5000);
    log.verify().unwrap().unwrap();
}

#[test]
fn a_resumed_log_continues_the_indices_and_says_so() {
    let old = filled(100, 16);
    let (index, head) = old.head();
    let mut log = AuditLog::resume(
        MemoryStore::new(),
        identity(1),
        federation(),
        config(16),
        (index, head),
        9000,
        "the previous log could not be read".into(),
    )
    .unwrap();
    let first = log.entry(101).unwrap().unwrap();
    assert_eq!(first.kind, EntryKind::LogResumed);
    assert!(first.reason.contains("could not be read"));
    assert!(log.entry(100).unwrap().is_none());
    log.append(vec![new_entry(9100, EntryKind::Accepted, 1, 1)])
        .unwrap();
    let verified = log.verify().unwrap().unwrap();
    assert_eq!((verified.first, verified.last), (101, 102));
    // A base that is not what the node signed fails verification.
    let mut forged = AuditLog::resume(
        MemoryStore::new(),
        identity(1),
        federation(),
        config(16),
        (index, head),
        9000,
        "x".into(),
    )
    .unwrap();
    let key = layout::checkpoint_key(index);
    let mut checkpoint: Checkpoint =
        postcard::from_bytes(&forged.store().get(&key).unwrap().unwrap()).unwrap();
    checkpoint.head[0] ^= 1;
    forged
        .store_mut()
        .raw_mut()
        .insert(key, postcard::to_allocvec(&checkpoint).unwrap());
    assert!(forged.verify().unwrap().is_err());
}

#[test]
fn the_newest_entry_of_an_origin_by_kind_is_found() {
    let mut log = filled(0, 16);
    let me = peer(100);
    let published = |at: u64, record: u8| NewEntry {
        at_ms: at,
        kind: EntryKind::Published,
        peer: None,
        origin: Some(me),
        record: Some(RecordKey([record; 32])),
        reason: String::new(),
        evidence: Some(vec![record; 8]),
    };
    log.append(vec![published(1, 1), published(2, 2)]).unwrap();
    // Many relays of the record afterwards, across index groups.
    let relays: Vec<NewEntry> = (0..(layout::GROUP + 10))
        .map(|i| NewEntry {
            kind: EntryKind::Relayed,
            peer: Some(peer(7)),
            evidence: None,
            ..published(3 + i, 2)
        })
        .collect();
    log.append(relays).unwrap();
    let newest = log
        .newest_of(&me, &[EntryKind::Published], usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(newest.record, Some(RecordKey([2; 32])));
    assert_eq!(newest.index, 2);
    assert!(log
        .newest_of(&me, &[EntryKind::Published], 100)
        .unwrap()
        .is_none());
    assert!(log
        .newest_of(&peer(99), &[EntryKind::Published], usize::MAX)
        .unwrap()
        .is_none());
}

#[test]
fn a_full_writer_gives_entries_back_instead_of_blocking() {
    let log = AuditLog::open(MemoryStore::new(), identity(1), federation(), config(16)).unwrap();
    let writer = AuditWriter::spawn(log, 1).unwrap();
    let handle = writer.handle();
    let mut given_back = 0;
    for i in 0..2000u64 {
        match handle.try_append_batch(vec![new_entry(i, EntryKind::Stale, 1, 1)]) {
            Ok(()) => {}
            Err(TryAppendError::Full(Full(entries))) => {
                given_back += entries.len();
                handle.append_batch(entries).unwrap();
            }
            Err(TryAppendError::Closed(error)) => panic!("{error}"),
        }
    }
    assert!(given_back > 0, "a one-slot channel must fill");
    let durable = handle.flush().unwrap();
    assert_eq!(durable, 2000);
    assert_eq!(handle.durable_head().0, 2000);
    let log = writer.shutdown().unwrap();
    assert_eq!(log.head().0, 2000, "the final checkpoint adds no entry");
}

fn bare(at_ms: u64, kind: EntryKind, record: u8, peer_seed: u8) -> NewEntry {
    NewEntry {
        evidence: None,
        ..new_entry(at_ms, kind, record, peer_seed)
    }
}

/// A log capped at `max_bytes` holding a rejected forgery (no evidence: its
/// signature does not verify) and an equivocation (with evidence), then a flood of
/// ignored records filling the cap `times` times over.
fn flooded(max_bytes: u64, times: u64) -> AuditLog<MemoryStore> {
    let mut log = AuditLog::open(
        MemoryStore::new(),
        identity(1),
        federation(),
        AuditConfig {
            max_bytes: Some(max_bytes),
            ..config(16)
        },
    )
    .unwrap();
    log.append(vec![bare(1, EntryKind::Accepted, 6, 9)])
        .unwrap();
    log.append(vec![bare(2, EntryKind::Rejected, 7, 9)])
        .unwrap();
    log.append(vec![new_entry(3, EntryKind::Equivocation, 8, 9)])
        .unwrap();
    // Count what the flood added, as the log counts it, until the cap is filled
    // `times` over.
    let mut added = 0;
    let mut at = 10;
    while added < max_bytes * times {
        let before = log.stats().unwrap().logical_bytes;
        let batch = (0..32)
            .map(|i| bare(at + i, EntryKind::Ignored, 20 + (i % 5) as u8, 3))
            .collect();
        log.append(batch).unwrap();
        let after = log.stats().unwrap().logical_bytes;
        added += after.saturating_sub(before).max(32 * 60);
        at += 32;
    }
    log
}

#[test]
fn a_flood_of_routine_entries_never_pushes_out_offences_or_their_evidence() {
    let log = flooded(20_000, 5);
    let stats = log.stats().unwrap();
    assert!(
        stats.first_index > 500,
        "the flood went through pruning several times: {stats:?}"
    );
    assert!(stats.logical_bytes <= 20_000 + 16_000, "{stats:?}");
    let found = |record: u8| {
        log.query(&Query {
            record: Some(RecordKey([record; 32])),
            ..Query::default()
        })
        .unwrap()
    };
    assert_eq!(found(7)[0].kind, EntryKind::Rejected);
    assert_eq!(found(8)[0].kind, EntryKind::Equivocation);
    assert_eq!(found(6)[0].kind, EntryKind::Accepted);
    assert!(log.evidence(&RecordKey([8; 32])).unwrap().is_some());
    assert!(found(20)
        .iter()
        .all(|entry| entry.index >= stats.first_index));
    let verified = log.verify().unwrap().unwrap();
    assert_eq!(verified.kept, 3);
    assert_eq!(stats.kept_entries, 3);
    assert_eq!(verified.first, stats.first_index);
    // An export carries them and verifies the same way.
    let lines = exported(&log);
    assert_eq!(reread(&lines).verify(None).unwrap().kept, 3);
    // Queries by time still reach back to them.
    let since = log
        .query(&Query {
            since_ms: Some(2),
            limit: 2,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(since[0].kind, EntryKind::Rejected);
}

#[test]
fn entries_kept_from_pruned_ranges_are_still_tamper_evident() {
    // A changed kept entry.
    let mut log = flooded(20_000, 2);
    rewrite_first_block(&mut log, |entries| entries[1].reason.push('!'));
    assert_eq!(
        log.verify().unwrap().unwrap_err(),
        Problem::HashMismatch { index: 2 }
    );
    // A kept entry moved to another index.
    let mut log = flooded(20_000, 2);
    rewrite_first_block(&mut log, |entries| entries[2].index = 5);
    assert!(log.verify().unwrap().is_err());
    // The checkpoint that ties the run to the chain, removed.
    let mut log = flooded(20_000, 2);
    let end = log.checkpoints().unwrap()[0].index;
    assert_eq!(end, 3, "a checkpoint at the end of the kept run");
    log.store_mut()
        .raw_mut()
        .remove(&layout::checkpoint_key(end));
    assert_eq!(
        log.verify().unwrap().unwrap_err(),
        Problem::UnsignedKept { index: 3 }
    );
    // In an export: a kept entry changed.
    let log = flooded(20_000, 2);
    let lines: Vec<String> = exported(&log)
        .into_iter()
        .map(|line| line.replace("rejected record 7", "rejected record 9"))
        .collect();
    assert_eq!(
        reread(&lines).verify(None).unwrap_err(),
        Problem::HashMismatch { index: 2 }
    );
}

#[test]
fn when_only_kept_entries_remain_the_oldest_go() {
    let mut log = AuditLog::open(
        MemoryStore::new(),
        identity(1),
        federation(),
        AuditConfig {
            max_bytes: Some(30_000),
            ..config(16)
        },
    )
    .unwrap();
    for i in 0..2000u64 {
        log.append(vec![NewEntry {
            record: Some(RecordKey(*blake3::hash(&i.to_le_bytes()).as_bytes())),
            ..new_entry(i, EntryKind::Accepted, 0, 3)
        }])
        .unwrap();
    }
    let stats = log.stats().unwrap();
    assert!(stats.logical_bytes <= 30_000 + 16_000, "{stats:?}");
    let verified = log.verify().unwrap().unwrap();
    let oldest = log
        .query(&Query {
            limit: 1,
            ..Query::default()
        })
        .unwrap()[0]
        .index;
    assert!(oldest > 1000, "the oldest kept entries went: {oldest}");
    assert_eq!(verified.last, 2000);
    let first_record = RecordKey(*blake3::hash(&0u64.to_le_bytes()).as_bytes());
    assert!(log.evidence(&first_record).unwrap().is_none());
    reread(&exported(&log)).verify(None).unwrap();
}

/// A stand-in for the node's record check: evidence of record `r` is 40 bytes
/// of `r`, signed by `peer(100 + r)`.
fn toy_check(key: &RecordKey, bytes: &[u8]) -> Result<NodeId, String> {
    if bytes.len() != 40 || bytes.iter().any(|b| *b != bytes[0]) {
        return Err("the signature does not verify".into());
    }
    if key.0[0] != bytes[0] {
        return Err("the bytes are another record".into());
    }
    Ok(peer(100 + bytes[0]))
}

#[test]
fn exported_evidence_is_checked_and_each_fault_names_its_entry() {
    let log = filled(20, 5);
    let lines = exported(&log);
    assert_eq!(reread(&lines).check_evidence(&toy_check), Ok(5));
    assert_eq!(log.check_evidence(&toy_check).unwrap(), Ok(5));
    let key = RecordKey([3; 32]);
    let first_entry = reread(&lines)
        .entries
        .iter()
        .find(|entry| entry.record == Some(key))
        .unwrap()
        .index;
    let evidence_line = |lines: &[String]| {
        lines
            .iter()
            .position(|line| {
                line.contains("\"type\":\"evidence\"") && line.contains(&key.to_string())
            })
            .unwrap()
    };

    // Changed bytes.
    let mut tampered = lines.clone();
    let at = evidence_line(&tampered);
    tampered[at] = tampered[at].replacen("\"bytes\":\"0303", "\"bytes\":\"0304", 1);
    match reread(&tampered).check_evidence(&toy_check) {
        Err(Problem::BadEvidence { index, record, .. }) => {
            assert_eq!((index, record), (first_entry, key));
        }
        other => panic!("changed evidence bytes passed: {other:?}"),
    }

    // Another record's bytes under this key.
    let mut swapped = lines.clone();
    let at = evidence_line(&swapped);
    swapped[at] = swapped[at].replace(&"03".repeat(40), &"02".repeat(40));
    match reread(&swapped).check_evidence(&toy_check) {
        Err(Problem::BadEvidence { index, reason, .. }) => {
            assert_eq!(index, first_entry);
            assert!(reason.contains("another record"), "{reason}");
        }
        other => panic!("another record's evidence passed: {other:?}"),
    }

    // Missing evidence.
    let mut missing = lines.clone();
    missing.remove(evidence_line(&missing));
    match reread(&missing).check_evidence(&toy_check) {
        Err(Problem::MissingEvidence { index, record }) => {
            assert_eq!((index, record), (first_entry, key));
        }
        other => panic!("missing evidence passed: {other:?}"),
    }

    // Evidence signed by another key than the origin the entries name.
    let lying = |key: &RecordKey, bytes: &[u8]| {
        toy_check(key, bytes).map(|signer| if key.0[0] == 3 { peer(7) } else { signer })
    };
    match reread(&lines).check_evidence(&lying) {
        Err(Problem::EvidenceOfAnotherOrigin {
            index,
            claimed,
            signer,
            ..
        }) => {
            assert_eq!(index, first_entry);
            assert_eq!((claimed, signer), (peer(103), peer(7)));
        }
        other => panic!("evidence of another origin passed: {other:?}"),
    }
}

#[test]
fn moving_the_start_up_to_hide_entries_is_found() {
    // Checkpoints every 8 entries; a third of the entries are accepted records,
    // the rest routine relays.
    let log = filled(40, 8);
    let intact = reread(&exported(&log));
    assert!(intact.verify(None).is_ok());
    let at = intact
        .checkpoints
        .iter()
        .find(|c| c.index == 24)
        .expect("a checkpoint at entry 24")
        .clone();
    // Claim the log starts at 24 and drop entries 9..=16: what is left below the
    // new start would read as kept runs between checkpoints.
    let mut moved = intact.clone();
    moved.base = (at.index, at.head);
    moved.entries.retain(|e| !(9..=16).contains(&e.index));
    match moved.verify(None) {
        Err(Problem::RoutineKept { index }) => assert!(index <= 24, "{index}"),
        other => panic!("a moved start passed: {other:?}"),
    }
    // An entry numbered 0 below the start is refused, not an overflow.
    let mut zero = intact.clone();
    zero.entries[0].index = 0;
    assert!(zero.verify(None).is_err());
}

#[test]
fn stored_evidence_is_checked_where_it_is_kept() {
    // Two appends: the evidence of each is stored under one key.
    let mut log = filled(20, 5);
    log.append(vec![
        new_entry(5000, EntryKind::Accepted, 3, 1),
        new_entry(5001, EntryKind::Relayed, 4, 1),
    ])
    .unwrap();
    assert_eq!(log.check_evidence(&toy_check).unwrap(), Ok(5));
    let original = log.store_mut().raw_mut().clone();
    let stored: Vec<(Vec<u8>, Vec<u8>)> = original
        .iter()
        .filter(|(key, _)| key.first() == Some(&b'V'))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    assert_eq!(stored.len(), 2, "one value per append");
    let pieces = |value: &[u8]| -> Vec<(u64, [u8; 32], Vec<u8>)> {
        layout::decode_evidence(value)
            .unwrap()
            .into_iter()
            .map(|(index, record, bytes)| (index, record, bytes.to_vec()))
            .collect()
    };
    let encode = |pieces: &[(u64, [u8; 32], Vec<u8>)]| {
        let mut value = Vec::new();
        for (index, record, bytes) in pieces {
            layout::push_evidence(&mut value, *index, record, bytes);
        }
        value
    };
    assert_eq!(pieces(&stored[0].1).len(), 20);
    assert_eq!(pieces(&stored[1].1).len(), 2);
    let restore = |log: &mut AuditLog<MemoryStore>| *log.store_mut().raw_mut() = original.clone();
    let check = |log: &AuditLog<MemoryStore>| log.check_evidence(&toy_check).unwrap();
    for (key, value) in &stored {
        for at in 0..pieces(value).len() {
            let index = pieces(value)[at].0;
            // A changed byte of the record key or of the evidence.
            for (field, byte) in [(1, 0), (1, 31), (2, 0), (2, 39)] {
                let mut changed = pieces(value);
                if field == 1 {
                    changed[at].1[byte] ^= 1;
                } else {
                    changed[at].2[byte] ^= 1;
                }
                log.store_mut()
                    .raw_mut()
                    .insert(key.clone(), encode(&changed));
                match check(&log) {
                    Err(Problem::BadEvidence { index: found, .. }) => assert_eq!(found, index),
                    other => panic!("piece {index}, field {field} changed passed: {other:?}"),
                }
                restore(&mut log);
            }
            // Moved to the entry after it, which is about another record.
            let mut moved = pieces(value);
            moved[at].0 += 1;
            if moved.get(at + 1).is_none_or(|next| next.0 > moved[at].0) {
                log.store_mut()
                    .raw_mut()
                    .insert(key.clone(), encode(&moved));
                assert!(
                    matches!(check(&log), Err(Problem::BadEvidence { .. })),
                    "piece {index} moved"
                );
                restore(&mut log);
            }
        }
        // Cut short, or under another index than its first piece's.
        log.store_mut()
            .raw_mut()
            .insert(key.clone(), value[..value.len() - 1].to_vec());
        assert!(matches!(check(&log), Err(Problem::Undecodable { .. })));
        restore(&mut log);
        let mut other_key = key.clone();
        *other_key.last_mut().unwrap() ^= 1;
        log.store_mut().raw_mut().remove(key);
        log.store_mut().raw_mut().insert(other_key, value.clone());
        assert!(check(&log).is_err());
        restore(&mut log);
    }
    // Every piece of record 3's evidence removed: its entries are missing it.
    for (key, value) in &stored {
        let kept: Vec<_> = pieces(value)
            .into_iter()
            .filter(|(_, record, _)| *record != [3; 32])
            .collect();
        log.store_mut().raw_mut().remove(key);
        if let Some((first, _, _)) = kept.first() {
            let key = layout::evidence_key(*first);
            log.store_mut().raw_mut().insert(key, encode(&kept));
        }
    }
    match check(&log) {
        Err(Problem::MissingEvidence { index: 4, record }) => {
            assert_eq!(record, RecordKey([3; 32]))
        }
        other => panic!("missing evidence passed: {other:?}"),
    }
}

/// A record id made from a number.
fn numbered(i: u64) -> RecordKey {
    RecordKey(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

#[test]
fn evidence_is_found_by_record_and_prefix_in_listed_groups_and_after() {
    let mut log =
        AuditLog::open(MemoryStore::new(), identity(1), federation(), config(256)).unwrap();
    let count = layout::GROUP + 300;
    for chunk in (0..count).collect::<Vec<_>>().chunks(97) {
        let entries = chunk
            .iter()
            .map(|&i| NewEntry {
                at_ms: i,
                // Every third record accepted with evidence, the rest relayed without.
                kind: if i % 3 == 0 {
                    EntryKind::Accepted
                } else {
                    EntryKind::Relayed
                },
                peer: Some(peer((i % 5) as u8)),
                origin: Some(peer(100)),
                record: Some(numbered(i)),
                reason: String::new(),
                evidence: (i % 3 == 0).then(|| vec![7; 40]),
            })
            .collect();
        log.append(entries).unwrap();
    }
    assert_eq!(log.check_indexes().unwrap(), Ok(layout::GROUP * 3));
    assert_eq!(log.recount().unwrap(), log.stats().unwrap().logical_bytes);
    // One in the listed group, one after it; one of each without evidence.
    for i in [300, layout::GROUP + 150, 301, layout::GROUP + 151] {
        let record = numbered(i);
        let has = i % 3 == 0;
        assert_eq!(log.evidence(&record).unwrap().is_some(), has, "{i}");
        let hex = record.to_string();
        for length in [1, 2, 5, 64] {
            let found = log
                .evidence_with_prefix(&hex[..length], usize::MAX)
                .unwrap();
            assert_eq!(found.contains(&record), has, "{i} by {length} characters");
            assert!(found
                .iter()
                .all(|key| key.to_string().starts_with(&hex[..length])));
            assert!(
                found.windows(2).all(|pair| pair[0] < pair[1]),
                "in id order"
            );
        }
        let upper = hex[..6].to_ascii_uppercase();
        assert_eq!(
            log.evidence_with_prefix(&upper, 10)
                .unwrap()
                .contains(&record),
            has
        );
    }
    let all = log.evidence_keys().unwrap();
    assert_eq!(all.len() as u64, count.div_ceil(3));
    assert_eq!(log.evidence_with_prefix("", usize::MAX).unwrap(), all);
    assert_eq!(log.evidence_with_prefix("", 3).unwrap(), all[..3]);
    assert!(log.evidence_with_prefix("xyz", 10).unwrap().is_empty());
    // Queries by record, origin and peer see both sides of the group boundary.
    let by_peer = log
        .query(&Query {
            peer: Some(peer(2)),
            limit: usize::MAX,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(by_peer.len() as u64, count / 5 + u64::from(count % 5 > 2));
    assert!(by_peer.iter().all(|entry| entry.peer == Some(peer(2))));
    assert!(by_peer.windows(2).all(|pair| pair[0].index < pair[1].index));
}

#[test]
fn the_counted_size_stays_what_the_store_holds() {
    // Appends across groups, pruning of routine entries and eviction of kept ones.
    let mut log = AuditLog::open(
        MemoryStore::new(),
        identity(1),
        federation(),
        AuditConfig {
            max_bytes: Some(600_000),
            prune_chunk: 512,
            ..config(100)
        },
    )
    .unwrap();
    let mut evicted = false;
    for round in 0..40u64 {
        let entries = (0..500)
            .map(|i| {
                let n = round * 500 + i;
                new_entry(
                    n,
                    match n % 4 {
                        0 => EntryKind::Accepted,
                        1 => EntryKind::Rejected,
                        _ => EntryKind::Stale,
                    },
                    (n % 50) as u8,
                    (n % 7) as u8,
                )
            })
            .collect();
        log.append(entries).unwrap();
        let stats = log.stats().unwrap();
        assert_eq!(log.recount().unwrap(), stats.logical_bytes, "round {round}");
        evicted |= stats.first_index > 1 && log.entry(1).unwrap().is_none();
    }
    assert!(evicted, "kept entries were evicted too");
    assert!(log.check_indexes().unwrap().is_ok());
    log.check_evidence(&toy_check).unwrap().unwrap();
    log.verify().unwrap().unwrap();
}

/// A log written in the earlier layout (evidence under its record id, index
/// lists under each id), by the code of that layout: this node's record
/// published and, at the end, recovered (one record, two entries carrying it),
/// accepted records with evidence, rejected and relayed ones, pruned to 24 kB so
/// that kept entries lie below the base and the oldest of them were evicted.
fn legacy_store() -> MemoryStore {
    let raw: Vec<(Vec<u8>, Vec<u8>)> =
        postcard::from_bytes(include_bytes!("../tests/fixtures/legacy-log.bin")).unwrap();
    let mut store = MemoryStore::new();
    store.raw_mut().extend(raw);
    store
}

/// [`toy_check`], and this node's own record 200 signed by itself.
fn fixture_check(key: &RecordKey, bytes: &[u8]) -> Result<NodeId, String> {
    if key.0[0] == 200 && bytes == [200; 40] {
        return Ok(identity(1).node_id());
    }
    toy_check(key, bytes)
}

fn is_legacy(key: &[u8]) -> bool {
    (layout::LEGACY_START..layout::LEGACY_END).contains(&key)
}

#[test]
fn a_log_of_the_earlier_layout_is_converted_without_losing_anything() {
    let mut legacy = legacy_store();
    let raw = legacy.raw_mut().clone();
    let old_entries: Vec<Entry> = raw
        .iter()
        .filter(|(key, _)| key[0] == b'e')
        .flat_map(|(_, value)| postcard::from_bytes::<Vec<Entry>>(value).unwrap())
        .collect();
    let old_evidence: BTreeMap<RecordKey, Vec<u8>> = raw
        .iter()
        .filter(|(key, _)| key[0] == b'v')
        .map(|(key, value)| (RecordKey(key[1..].try_into().unwrap()), value.clone()))
        .collect();
    assert!(raw.keys().any(|key| key[0] == b'r') && old_evidence.len() > 5);
    assert!(old_evidence.contains_key(&RecordKey([200; 32])));

    // Opened for reading: converted.
    let log = AuditLog::open_read_only(legacy_store()).unwrap();
    let all = |log: &AuditLog<MemoryStore>| {
        log.query(&Query {
            limit: usize::MAX,
            ..Query::default()
        })
        .unwrap()
    };
    assert_eq!(all(&log), old_entries, "every entry, unchanged");
    let verified = log.verify().unwrap().unwrap();
    assert!(verified.kept > 0, "{verified:?}");
    log.check_indexes().unwrap().unwrap();
    assert_eq!(
        log.check_evidence(&fixture_check).unwrap(),
        Ok(old_evidence.len() as u64)
    );
    for (record, bytes) in &old_evidence {
        assert_eq!(log.evidence(record).unwrap().as_ref(), Some(bytes));
    }
    assert_eq!(
        log.evidence_keys().unwrap(),
        old_evidence.keys().copied().collect::<Vec<_>>()
    );
    assert_eq!(log.recount().unwrap(), log.stats().unwrap().logical_bytes);
    assert!(log
        .store()
        .range(layout::LEGACY_START, layout::LEGACY_END, 1)
        .unwrap()
        .is_empty());
    // The export of the converted log is the one the earlier log would give:
    // the same entries, checkpoints and evidence.
    let export = reread(&exported(&log));
    export.verify(None).unwrap();
    assert_eq!(export.evidence, old_evidence);
    let converted = log.store().clone();

    // A conversion cut short (some new keys written, the old metadata still in
    // place) ends the same; so does one whose old keys were not all deleted.
    let mut partial = legacy_store();
    let mut converted_raw = converted.clone();
    for (i, (key, value)) in converted_raw.raw_mut().iter().enumerate() {
        if !is_legacy(key) && key.as_slice() != layout::META_KEY && i % 2 == 0 {
            partial.raw_mut().insert(key.clone(), value.clone());
        }
    }
    let mut again = AuditLog::open_read_only(partial).unwrap();
    assert_eq!(again.store_mut().raw_mut(), converted_raw.raw_mut());
    let mut leftover = converted.clone();
    leftover.raw_mut().extend(
        raw.iter()
            .filter(|(key, _)| is_legacy(key))
            .take(7)
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let mut again = AuditLog::open_read_only(leftover).unwrap();
    assert_eq!(again.store_mut().raw_mut(), converted_raw.raw_mut());

    // Opened by its node: converted the same way, and it goes on, across a group.
    let mut log = AuditLog::open(legacy_store(), identity(1), federation(), config(64)).unwrap();
    let last = old_entries.last().unwrap().index;
    let entries = (0..layout::GROUP)
        .map(|i| new_entry(10_000 + i, EntryKind::Accepted, (i % 9) as u8, 3))
        .collect();
    log.append(entries).unwrap();
    assert_eq!(log.head().0, last + layout::GROUP);
    log.verify().unwrap().unwrap();
    log.check_indexes().unwrap().unwrap();
    log.check_evidence(&fixture_check).unwrap().unwrap();
    assert_eq!(log.recount().unwrap(), log.stats().unwrap().logical_bytes);
    assert_eq!(
        log.evidence(&RecordKey([200; 32])).unwrap(),
        Some(vec![200; 40])
    );
    let by_record = log
        .query(&Query {
            record: Some(RecordKey([4; 32])),
            limit: usize::MAX,
            ..Query::default()
        })
        .unwrap();
    let expected = all(&log)
        .into_iter()
        .filter(|entry| entry.record == Some(RecordKey([4; 32])))
        .collect::<Vec<_>>();
    assert_eq!(by_record, expected);
    assert!(by_record.iter().any(|entry| entry.index <= last));
    assert!(by_record.iter().any(|entry| entry.index > last));
}

/// Waits until `handle` has made `index` durable without being asked to;
/// fails after `limit`.
fn wait_durable(handle: &WriterHandle, index: u64, limit: std::time::Duration) {
    let started = std::time::Instant::now();
    while handle.durable_index() < index {
        assert!(
            started.elapsed() < limit,
            "entries up to {index} were not synced within {limit:?} without a flush"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A store in memory that counts its syncs (and fails them on demand).
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    flushes: Arc<std::sync::atomic::AtomicUsize>,
    applies: Arc<std::sync::atomic::AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// Each write takes this long (milliseconds).
    slow_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Store for CountingStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }
    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<store::Pairs, StoreError> {
        self.inner.range(start, end, limit)
    }
    fn range_rev(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<store::Pairs, StoreError> {
        self.inner.range_rev(start, end, limit)
    }
    fn apply(&mut self, writes: Vec<store::Write>) -> Result<(), StoreError> {
        self.applies
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let slow = self.slow_ms.load(std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(slow));
        self.inner.apply(writes)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Backend("EIO".into()));
        }
        self.inner.flush()
    }
    fn size_bytes(&self) -> Result<u64, StoreError> {
        self.inner.size_bytes()
    }
}

#[test]
fn entries_written_apart_become_durable_together_without_a_flush() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let flushes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = CountingStore {
        inner: MemoryStore::new(),
        flushes: flushes.clone(),
        ..CountingStore::default()
    };
    let log = AuditLog::open(store, identity(1), federation(), config(1_000_000)).unwrap();
    let writer = AuditWriter::spawn(log, 64).unwrap();
    let handle = writer.handle();
    // A writer idle for longer than a flush interval, then three appends well
    // within one interval of each other: one sync, a flush interval after the
    // first (not one at once for the first and one later for the others).
    std::thread::sleep(writer::FLUSH_INTERVAL + Duration::from_millis(100));
    let before = flushes.load(Ordering::SeqCst);
    for i in 0..3u64 {
        handle
            .append_batch(vec![new_entry(i, EntryKind::Stale, 1, 1)])
            .unwrap();
        std::thread::sleep(writer::FLUSH_INTERVAL / 50);
    }
    wait_durable(&handle, 3, Duration::from_secs(30));
    assert_eq!(
        flushes.load(Ordering::SeqCst) - before,
        1,
        "one sync covers the entries of one flush interval"
    );
    writer.shutdown().unwrap();
}

#[test]
fn a_writer_runs_its_setup_on_its_own_thread_before_any_entry() {
    let (told, heard) = std::sync::mpsc::channel();
    let log = AuditLog::open(MemoryStore::new(), identity(1), federation(), config(1_000)).unwrap();
    let writer = AuditWriter::spawn_with(log, 4, move || {
        let name = std::thread::current().name().map(str::to_owned);
        told.send(name).unwrap();
    })
    .unwrap();
    assert_eq!(
        heard.recv().unwrap().as_deref(),
        Some("tidings-audit"),
        "the setup ran on another thread than the writer's"
    );
    writer
        .handle()
        .append_batch(vec![new_entry(0, EntryKind::Stale, 1, 1)])
        .unwrap();
    assert_eq!(writer.flush().unwrap(), 1);
    writer.shutdown().unwrap();
}

#[test]
fn entries_handed_over_one_by_one_are_appended_together_and_a_reader_settles_them() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let applies = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let store = CountingStore {
        inner: MemoryStore::new(),
        applies: applies.clone(),
        ..CountingStore::default()
    };
    let log = AuditLog::open(store, identity(1), federation(), config(1_000_000)).unwrap();
    let before = applies.load(Ordering::SeqCst);
    let writer = AuditWriter::spawn(log, 64).unwrap();
    let handle = writer.handle();
    // Five entries handed over 30 ms apart (as a node relays records one at a
    // time while they spread), within the writer's linger: one append (each
    // rewrites the block it ends in), not five; two if this machine stalls.
    for i in 0..5u64 {
        handle
            .append_batch(vec![new_entry(i, EntryKind::Stale, 1, 1)])
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    // A reader that settles sees all five written, without waiting for a flush.
    assert_eq!(handle.settle().unwrap(), 5);
    assert_eq!(handle.written_index(), 5);
    assert_eq!(handle.durable_index(), 0, "settling does not sync");
    let appends = applies.load(Ordering::SeqCst) - before;
    assert!(
        appends <= 2,
        "entries 30 ms apart were appended one by one ({appends} appends)"
    );
    // Nothing queued: settling answers at once.
    assert_eq!(handle.settle().unwrap(), 5);
    writer.shutdown().unwrap();
}

#[test]
fn whoever_waits_for_the_log_appends_and_syncs_on_its_own_thread() {
    use std::time::Duration;
    // A writer thread that never gets to run (as a low-priority thread on
    // saturated cores): flushes and settles must not wait for it.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let log = AuditLog::open(MemoryStore::new(), identity(1), federation(), config(1_000)).unwrap();
    let writer = AuditWriter::spawn_with(log, 64, move || {
        let _ = held.recv();
    })
    .unwrap();
    let handle = writer.handle();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        for i in 0..3u64 {
            handle
                .append_batch(vec![new_entry(i, EntryKind::Stale, 1, 1)])
                .unwrap();
        }
        let settled = handle.settle().unwrap();
        handle
            .append_batch(vec![new_entry(3, EntryKind::Relayed, 2, 1)])
            .unwrap();
        let flushed = handle.flush().unwrap();
        done.send((settled, flushed, handle.durable_head().0, handle.lag()))
            .unwrap();
    });
    let answer = finished.recv_timeout(Duration::from_secs(20));
    release.send(()).unwrap();
    waiter.join().unwrap();
    assert_eq!(
        answer.expect("a flush waited for the writer thread"),
        (3, 4, 4, 0)
    );
    let log = writer.shutdown().unwrap();
    assert_eq!(log.head().0, 4);
    log.verify().unwrap().unwrap();
}

#[test]
fn after_a_failed_sync_nothing_is_appended_or_synced_and_every_call_fails() {
    use std::sync::atomic::Ordering;
    let store = CountingStore::default();
    let (failing, flushes, applies) = (
        store.failing.clone(),
        store.flushes.clone(),
        store.applies.clone(),
    );
    let log = AuditLog::open(store, identity(1), federation(), config(1_000)).unwrap();
    let writer = AuditWriter::spawn(log, 64).unwrap();
    let handle = writer.handle();
    handle
        .append_batch(vec![new_entry(0, EntryKind::Stale, 1, 1)])
        .unwrap();
    assert_eq!(handle.flush().unwrap(), 1);
    failing.store(true, Ordering::SeqCst);
    handle
        .append_batch(vec![new_entry(1, EntryKind::Stale, 1, 1)])
        .unwrap();
    let error = handle.flush().unwrap_err().to_string();
    assert!(error.contains("EIO"), "{error}");
    assert_eq!(
        handle.durable_index(),
        1,
        "the failed sync made nothing durable"
    );
    // The disk recovers: the log still does not go on, since what the failed
    // sync covered may be lost, and a later sync would not say so.
    failing.store(false, Ordering::SeqCst);
    let (applied, synced) = (
        applies.load(Ordering::SeqCst),
        flushes.load(Ordering::SeqCst),
    );
    assert!(handle.flush().is_err());
    assert!(handle.settle().is_err() || handle.lag() == 0);
    assert!(handle
        .append_batch(vec![new_entry(2, EntryKind::Stale, 1, 1)])
        .is_err());
    assert!(matches!(
        handle.try_append_batch(vec![new_entry(3, EntryKind::Stale, 1, 1)]),
        Err(TryAppendError::Closed(_))
    ));
    // Dropped without a shutdown: no final checkpoint or sync either.
    drop(writer);
    assert_eq!(
        (
            applies.load(Ordering::SeqCst),
            flushes.load(Ordering::SeqCst)
        ),
        (applied, synced),
        "nothing was written or synced after the failure"
    );
    assert_eq!(handle.durable_index(), 1);
}

#[test]
fn entries_a_reader_settled_are_still_synced_within_the_flush_interval() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let store = CountingStore::default();
    let (flushes, slow) = (store.flushes.clone(), store.slow_ms.clone());
    let log = AuditLog::open(store, identity(1), federation(), config(1_000_000)).unwrap();
    let writer = AuditWriter::spawn(log, 64).unwrap();
    let handle = writer.handle();
    handle
        .append_batch(vec![new_entry(0, EntryKind::Stale, 1, 1)])
        .unwrap();
    // A reader takes the entry before the writer thread's linger ends, and
    // its append lasts past it: the writer thread wakes to an empty queue,
    // and must still sync the entry.
    slow.store(writer::LINGER.as_millis() as u64 + 150, Ordering::SeqCst);
    assert_eq!(handle.settle().unwrap(), 1);
    slow.store(0, Ordering::SeqCst);
    assert_eq!(handle.durable_index(), 0);
    wait_durable(&handle, 1, Duration::from_secs(5));
    assert!(flushes.load(Ordering::SeqCst) >= 1);
    writer.shutdown().unwrap();
}

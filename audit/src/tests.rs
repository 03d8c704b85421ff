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
    // Evidence is stored once per record.
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
    let mut log = filled(100, 16);
    assert!(log.check_indexes().unwrap().is_ok());
    // Drop one index list: its entries are no longer listed.
    let key = log
        .store_mut()
        .raw_mut()
        .keys()
        .find(|k| k.first() == Some(&b'p'))
        .cloned()
        .unwrap();
    log.store_mut().raw_mut().remove(&key);
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
    let spread = spread(&exports, record);
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

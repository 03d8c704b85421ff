//! A rogue admitted peer sends every class of bad input over real QUIC with mutual
//! TLS. Each is refused with the right verdict and audit entry, the peer's score
//! drops and it is banned where it should be, and honest gossip goes on.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::{config, count, eventually, identity, specialist};
use tidings::audit::{Entry, EntryKind, Query};
use tidings::keys::{Domain, FederationId, NodeId, Roster};
use tidings::net::node::{Node, NodeHandle};
use tidings::net::transport::{send_frame, Transport};
use tidings::proto::record::SignedRecord;
use tidings::proto::wire::Message;
use tidings::proto::{Announcement, Record};

const HONEST: [u8; 3] = [1, 2, 3];
const ROGUES: std::ops::RangeInclusive<u8> = 10..=19;

fn members() -> Roster {
    HONEST
        .iter()
        .copied()
        .chain(ROGUES)
        .map(|seed| identity(seed).node_id())
        .collect()
}

async fn rogue(seed: u8, target: &NodeHandle) -> quinn::Connection {
    let shared = Arc::new(RwLock::new(members()));
    let transport =
        Transport::bind(&identity(seed), shared, "127.0.0.1:0".parse().unwrap()).unwrap();
    transport
        .dial(target.node_id(), target.local_addr())
        .await
        .unwrap()
}

fn entries_from(node: &NodeHandle, peer: NodeId) -> Vec<Entry> {
    node.audit_log()
        .unwrap()
        .query(&Query {
            peer: Some(peer),
            limit: 10_000,
            ..Query::default()
        })
        .unwrap()
}

async fn audited(node: &NodeHandle, seed: u8, what: &str, matches: impl Fn(&Entry) -> bool) {
    let peer = identity(seed).node_id();
    eventually(what, Duration::from_secs(15), || async {
        entries_from(node, peer).iter().any(&matches)
    })
    .await;
}

fn record_by(seed: u8, federation: &str, issued_at_ms: u64, endpoint: &str) -> Vec<u8> {
    let author = identity(seed);
    let announcement = Announcement {
        addrs: vec![],
        specialists: vec![tidings::proto::Specialist {
            endpoint: endpoint.into(),
            ..specialist("rogue", "rogue")
        }],
    };
    let record = Record::first(
        FederationId::from_name(federation),
        author.node_id(),
        announcement,
        issued_at_ms,
        600_000,
    );
    let bytes = record.encode();
    let signature = author.sign(Domain::Record, &record.federation, &bytes);
    SignedRecord::new(bytes, signature).encode()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_class_of_bad_input_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let roster = members();
    let first = Node::spawn(config(dir.path(), 1, &roster, vec![]))
        .await
        .unwrap();
    let bootstrap = vec![(first.node_id(), first.local_addr())];
    let second = Node::spawn(config(dir.path(), 2, &roster, bootstrap.clone()))
        .await
        .unwrap();
    let third = Node::spawn(config(dir.path(), 3, &roster, bootstrap))
        .await
        .unwrap();
    eventually("honest nodes converge", Duration::from_secs(10), || async {
        count(&first, "summarize").await == 3 && count(&second, "summarize").await == 3
    })
    .await;

    // A slow drip: a frame announced as 50 bytes, 5 delivered, the rest never.
    let drip = rogue(13, &first).await;
    let mut stream = drip.open_uni().await.unwrap();
    stream.write_all(&50u32.to_be_bytes()).await.unwrap();
    stream.write_all(&[1, 2, 3, 4, 5]).await.unwrap();

    // Garbage frames: malformed, penalised, banned.
    let garbage = rogue(10, &first).await;
    for _ in 0..3 {
        let _ = send_frame(&garbage, &[0xde, 0xad, 0xbe, 0xef]).await;
    }
    audited(&first, 10, "garbage is a malformed frame", |e| {
        e.kind == EntryKind::MalformedFrame
    })
    .await;
    audited(&first, 10, "the garbage sender is banned", |e| {
        e.kind == EntryKind::Banned
    })
    .await;

    // An unknown message type.
    let unknown = rogue(11, &first).await;
    send_frame(&unknown, &[1, 99, 0]).await.unwrap();
    audited(&first, 11, "an unknown message type is malformed", |e| {
        e.kind == EntryKind::MalformedFrame && e.reason.contains("unknown message type")
    })
    .await;

    // An oversize frame, written below the framing helper's own limit check.
    let oversize = rogue(12, &first).await;
    let mut stream_big = oversize.open_uni().await.unwrap();
    let big = vec![0u8; 1_200_000];
    stream_big
        .write_all(&(big.len() as u32).to_be_bytes())
        .await
        .unwrap();
    let _ = stream_big.write_all(&big).await;
    let _ = stream_big.finish();
    audited(&first, 12, "an oversize frame is refused", |e| {
        e.kind == EntryKind::MalformedFrame && e.reason.contains("larger than the limit")
    })
    .await;

    // A flood of duplicates (node 2's current record, 256 copies a frame): each
    // copy changes nothing and is charged; the work budget runs out, the flooder
    // is penalised, then banned.
    let flood = rogue(14, &first).await;
    let held = first.record(second.node_id()).await.unwrap().unwrap();
    let copies = Message::Records(vec![held.wire_bytes().to_vec(); 256]).encode();
    for _ in 0..2000 {
        if send_frame(&flood, &copies).await.is_err() {
            break;
        }
    }
    audited(&first, 14, "the flooder is penalised", |e| {
        e.kind == EntryKind::Penalised && e.reason.contains("budget")
    })
    .await;
    audited(&first, 14, "the flooder is banned", |e| {
        e.kind == EntryKind::Banned
    })
    .await;

    // A forged record in node 2's name.
    let forger = rogue(15, &first).await;
    let mut forged = Record::first(
        FederationId::from_name("test"),
        second.node_id(),
        Announcement::default(),
        now_ms(),
        600_000,
    );
    forged.seq = 50;
    forged.prev = tidings::proto::RecordId([2; 32]);
    let bytes = forged.encode();
    let signature = identity(15).sign(Domain::Record, &forged.federation, &bytes);
    send_frame(
        &forger,
        &Message::Records(vec![SignedRecord::new(bytes, signature).encode()]).encode(),
    )
    .await
    .unwrap();
    audited(
        &first,
        15,
        "the forgery is rejected and blamed on its sender",
        |e| e.kind == EntryKind::Rejected && e.reason.starts_with("bad_signature"),
    )
    .await;
    assert_eq!(
        first.record(second.node_id()).await.unwrap().unwrap().seq(),
        1,
        "the real record stays"
    );

    // A replay of node 2's first record after it moved on: stale, no blame.
    let old = second.record(second.node_id()).await.unwrap().unwrap();
    let newer = second
        .announce(specialist("update", "summarize"))
        .await
        .unwrap();
    eventually(
        "node 1 has node 2's update",
        Duration::from_secs(10),
        || async {
            first
                .record(second.node_id())
                .await
                .unwrap()
                .is_some_and(|r| r.id() == newer.id())
        },
    )
    .await;
    let replayer = rogue(16, &first).await;
    send_frame(
        &replayer,
        &Message::Records(vec![old.wire_bytes().to_vec()]).encode(),
    )
    .await
    .unwrap();
    audited(&first, 16, "the replay is stale", |e| {
        e.kind == EntryKind::Stale
    })
    .await;
    assert!(
        !entries_from(&first, identity(16).node_id())
            .iter()
            .any(|e| e.kind == EntryKind::Penalised),
        "replays cost nothing"
    );

    // An equivocation by an admitted member: quarantined at every honest node.
    let (a, b) = (
        record_by(17, "test", now_ms(), "https://a.example"),
        record_by(17, "test", now_ms(), "https://b.example"),
    );
    let to_first = rogue(17, &first).await;
    let to_second = rogue(17, &second).await;
    send_frame(&to_first, &Message::Records(vec![a]).encode())
        .await
        .unwrap();
    send_frame(&to_second, &Message::Records(vec![b]).encode())
        .await
        .unwrap();
    let equivocator = identity(17).node_id();
    eventually(
        "the equivocator is quarantined everywhere",
        Duration::from_secs(15),
        || async {
            for node in [&first, &second, &third] {
                if !node
                    .members()
                    .await
                    .unwrap()
                    .iter()
                    .any(|m| m.id == equivocator && m.quarantined)
                {
                    return false;
                }
            }
            true
        },
    )
    .await;

    // A future-dated record: ignored, no blame.
    let future = rogue(18, &first).await;
    send_frame(
        &future,
        &Message::Records(vec![record_by(
            18,
            "test",
            now_ms() + 600_000,
            "https://f.example",
        )])
        .encode(),
    )
    .await
    .unwrap();
    audited(&first, 18, "a future-dated record is ignored", |e| {
        e.kind == EntryKind::Ignored && e.reason.contains("future")
    })
    .await;

    // A record of another federation: rejected.
    let foreign = rogue(19, &first).await;
    send_frame(
        &foreign,
        &Message::Records(vec![record_by(
            19,
            "elsewhere",
            now_ms(),
            "https://w.example",
        )])
        .encode(),
    )
    .await
    .unwrap();
    audited(&first, 19, "another federation's record is rejected", |e| {
        e.kind == EntryKind::Rejected && e.reason.starts_with("wrong_federation")
    })
    .await;

    // The drip timed out meanwhile.
    audited(&first, 13, "a dripped frame times out", |e| {
        e.kind == EntryKind::MalformedFrame && e.reason.contains("in time")
    })
    .await;
    drop(stream);

    // Honest gossip went on through all of it.
    third.announce(specialist("late", "late")).await.unwrap();
    eventually(
        "an honest announcement still reaches everyone",
        Duration::from_secs(10),
        || async { count(&first, "late").await == 1 && count(&second, "late").await == 1 },
    )
    .await;
    for node in [first, second, third] {
        node.shutdown().await.unwrap();
    }
}

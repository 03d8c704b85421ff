//! Hostile peers over real QUIC: what they cannot stall, amplify, exhaust or
//! erase. Each test plays one attack against nodes on loopback and checks the
//! bound the node promises.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{config, identity, roster};
use tidings::keys::{FederationId, NodeId};
use tidings::net::node::Node;
use tidings::net::transport::{FrameWriter, Transport};
use tidings::proto::wire::Message;
use tidings::proto::{Announcement, Record, VerifiedRecord};
use tokio::net::UdpSocket;

/// A UDP relay that passes a client's packets to `server` and drops every answer:
/// the client's handshake starts at the server and is never answered.
async fn black_hole(server: SocketAddr) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_536];
        let mut answers = vec![0u8; 65_536];
        loop {
            tokio::select! {
                received = front.recv_from(&mut buffer) => {
                    let Ok((length, _)) = received else { return };
                    let _ = back.send_to(&buffer[..length], server).await;
                }
                // Answers are read and thrown away.
                _ = back.recv_from(&mut answers) => {}
            }
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_handshakes_do_not_delay_an_admitted_peer() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2, 3]);
    let victim = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    // Six handshakes opened through black holes, never answered (no key needed:
    // the stranger's key would be refused, but the handshake never gets that far).
    let shared = Arc::new(RwLock::new(members.clone()));
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let relay = black_hole(victim.local_addr()).await;
        let stranger =
            Transport::bind(&identity(9), shared.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let node = victim.node_id();
        stalled.push(tokio::spawn(async move {
            let _ = stranger.dial(node, relay).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // An admitted peer dials meanwhile.
    let peer = Transport::bind(&identity(2), shared, "127.0.0.1:0".parse().unwrap()).unwrap();
    let started = Instant::now();
    let connection = peer
        .dial(victim.node_id(), victim.local_addr())
        .await
        .unwrap();
    let handshake = started.elapsed();
    println!("admitted handshake beside six stalled ones: {handshake:?}");
    assert!(handshake < Duration::from_secs(1), "{handshake:?}");
    drop(connection);
    // A new member joins as quickly.
    let started = Instant::now();
    let joining = Node::spawn(config(
        dir.path(),
        3,
        &members,
        vec![(victim.node_id(), victim.local_addr())],
    ))
    .await
    .unwrap();
    joining.ready().await.unwrap();
    println!(
        "a new member joined (it may sign) after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    for task in stalled {
        task.abort();
    }
    joining.shutdown().await.unwrap();
    victim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_listing_another_members_address_is_blamed_on_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2, 3]);
    let honest = Node::spawn(config(dir.path(), 1, &members, vec![]))
        .await
        .unwrap();
    let bootstrap = vec![(honest.node_id(), honest.local_addr())];
    // Node 2 advertises node 1's address as its own.
    let mut liar = config(dir.path(), 2, &members, bootstrap.clone());
    liar.advertise = Some(vec![honest.local_addr().to_string()]);
    let liar = Node::spawn(liar).await.unwrap();
    // The victim lists no address (as behind NAT): the liar cannot dial it,
    // so the victim dials the liar itself, at the address the liar's record lists.
    let mut victim = config(dir.path(), 3, &members, bootstrap);
    victim.advertise = Some(vec![]);
    let victim = Node::spawn(victim).await.unwrap();
    let liar_id = liar.node_id();
    common::eventually(
        "the victim dials the liar at the listed address and says whose record lied",
        Duration::from_secs(20),
        || async {
            victim
                .audit_log()
                .unwrap()
                .query(&tidings::audit::Query {
                    kind: Some(tidings::audit::EntryKind::Misdirected),
                    ..Default::default()
                })
                .unwrap()
                .iter()
                .any(|entry| {
                    entry.peer == Some(liar_id)
                        && entry.record.is_some()
                        && entry.reason.contains("record's address is wrong")
                })
        },
    )
    .await;
    let refused = victim
        .audit_log()
        .unwrap()
        .query(&tidings::audit::Query {
            kind: Some(tidings::audit::EntryKind::ConnectionRefused),
            ..Default::default()
        })
        .unwrap();
    assert!(
        refused
            .iter()
            .all(|entry| entry.peer != Some(honest.node_id())),
        "the node that answered is never blamed: {refused:?}"
    );
    let members = victim.members().await.unwrap();
    assert!(members.iter().all(|member| !member.banned));
    victim.shutdown().await.unwrap();
    liar.shutdown().await.unwrap();
    honest.shutdown().await.unwrap();
}

/// User and system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

/// The share of a core process `pid` used while `during` ran.
fn core_share(pid: u32, during: impl FnOnce()) -> f64 {
    let (cpu, wall) = (cpu_time(pid), Instant::now());
    during();
    (cpu_time(pid) - cpu).as_secs_f64() / wall.elapsed().as_secs_f64()
}

/// The flood an admitted key sends: its current record, then frame after frame of
/// records that change nothing — 256 duplicates, 256 stale copies, 256 expired
/// ones, and 15 different records of 60 KiB each (accepted until the origin's rate
/// limit, then rate-limited or stale).
fn flood_frames(identity: &tidings::keys::Identity, federation: FederationId) -> Vec<Vec<u8>> {
    use tidings::proto::limits::DEFAULT_TTL_MS;
    let now = now_ms();
    let me = identity.node_id();
    let sign = |record| VerifiedRecord::sign(identity, record).unwrap();
    let first = sign(Record::first(
        federation,
        me,
        announcement("a", 0),
        now,
        DEFAULT_TTL_MS,
    ));
    let current = sign(Record::next(
        &first,
        announcement("b", 0),
        now,
        DEFAULT_TTL_MS,
    ));
    let expired = sign(Record::next(
        &current,
        announcement("old", 0),
        now - 3 * DEFAULT_TTL_MS,
        DEFAULT_TTL_MS,
    ));
    let mut big = Vec::new();
    let mut previous = current.clone();
    for i in 0..15 {
        let record = sign(Record::next(
            &previous,
            announcement(&format!("big{i}"), 47),
            now,
            DEFAULT_TTL_MS,
        ));
        assert!(
            record.wire_bytes().len() > 60_000,
            "{}",
            record.wire_bytes().len()
        );
        big.push(record.wire_bytes().to_vec());
        previous = record;
    }
    let copies = |record: &VerifiedRecord| {
        Message::Records(vec![record.wire_bytes().to_vec(); 256]).encode()
    };
    vec![
        Message::Records(vec![current.wire_bytes().to_vec()]).encode(),
        copies(&current),
        copies(&first),
        copies(&expired),
        Message::Records(big).encode(),
    ]
}

/// An announcement of one specialist `name`, padded with `extra` specialists of
/// about 1.6 KiB each.
fn announcement(name: &str, extra: usize) -> Announcement {
    let mut specialists = vec![common::specialist(name, "flood")];
    for i in 0..extra {
        let mut padded = common::specialist(&format!("{name}-{i}"), "flood");
        padded.endpoint = format!("https://{}.example/", "e".repeat(480));
        for key in 0..3 {
            padded.meta.insert(format!("k{key}"), "v".repeat(250));
        }
        specialists.push(padded);
    }
    Announcement {
        addrs: vec![],
        specialists,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Dials `target` as `identity` and sends `frames` over and over (the first one
/// once per connection) until `until`, dialling again whenever the connection is
/// closed. Returns (frames sent, connections made).
async fn flood(
    identity: Arc<tidings::keys::Identity>,
    roster: tidings::keys::Roster,
    target: (NodeId, SocketAddr),
    frames: Vec<Vec<u8>>,
    until: Instant,
) -> (u64, u64) {
    let transport = Transport::bind(
        &identity,
        Arc::new(RwLock::new(roster)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let (mut sent, mut connections) = (0u64, 0u64);
    while Instant::now() < until {
        let Ok(connection) = transport.dial(target.0, target.1).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connections += 1;
        let Ok(mut writer) = FrameWriter::open(&connection).await else {
            continue;
        };
        let mut next = 0;
        while Instant::now() < until {
            let sending = writer.send(&frames[next]);
            match tokio::time::timeout_at(until.into(), sending).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
            next = if next + 1 == frames.len() {
                1
            } else {
                next + 1
            };
        }
    }
    (sent, connections)
}

#[test]
fn a_flood_from_one_admitted_key_costs_a_bounded_share_of_a_core() {
    const INTERVAL_MS: u64 = 1000;
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(root.path(), 4, INTERVAL_MS, &[]);
    // n0 is the victim, n1 and n2 are honest, n3's key is the attacker's.
    for index in 0..3 {
        cluster.start(index);
    }
    for index in 0..3 {
        cluster.wait_ready(index, Duration::from_secs(20));
    }
    let attacker =
        Arc::new(tidings::keys::Identity::load(&cluster.members[3].dir.join("node.key")).unwrap());
    let members = tidings::keys::Roster::load(&root.path().join("roster.toml")).unwrap();
    let frames = flood_frames(&attacker, cluster.federation);
    let victim = cluster.pid(0);
    let target = (cluster.members[0].id, cluster.members[0].listen);
    let idle = core_share(victim, || std::thread::sleep(Duration::from_secs(5)));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let until = Instant::now() + Duration::from_secs(12);
    let attack = runtime.spawn(flood(attacker.clone(), members, target, frames, until));
    let mut reached = None;
    let flooded = core_share(victim, || {
        std::thread::sleep(Duration::from_secs(4));
        // An honest update in the middle of the flood.
        let announced = Instant::now();
        cluster
            .announce(1, "fresh-during-flood", "https://fresh.example/")
            .unwrap();
        let has_it = |index| {
            cluster
                .get(index, "/v1/specialists?name=fresh-during-flood")
                .is_some_and(|found| {
                    found["specialists"]
                        .as_array()
                        .is_some_and(|list| !list.is_empty())
                })
        };
        while announced.elapsed() < Duration::from_secs(20) {
            if has_it(0) && has_it(2) {
                reached = Some(announced.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    });
    let (sent, connections) = runtime.block_on(attack).unwrap();
    let checks = cluster.metric(0, "tidings_signature_checks_total").unwrap();
    let dropped = cluster
        .metric(0, "tidings_frames_over_budget_total")
        .unwrap();
    println!(
        "flood: {sent} frames over {connections} connections; victim CPU {:.1}% of a core \
         (idle {:.1}%); {checks} signatures checked, {dropped} frames dropped over budget; \
         honest update reached every honest node after {reached:?}",
        flooded * 100.0,
        idle * 100.0
    );
    let members = cluster.get(0, "/v1/members").unwrap();
    let attacker_id = attacker.node_id().to_string();
    let listed = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["id"] == attacker_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["banned"], true, "{listed}");
    // The operator's log says so, naming the peer.
    let log = cluster.log_tail(0, usize::MAX);
    assert!(
        log.lines()
            .any(|line| line.contains("peer banned") && line.contains(&attacker.node_id().short())),
        "no ban in the victim's log"
    );
    let reached = reached.expect("the honest update reached every honest node");
    assert!(
        reached < Duration::from_millis(2 * INTERVAL_MS),
        "the honest update took {reached:?}"
    );
    // The attacker's records cost at most a handful of signature checks: its
    // first records, up to its own rate limit.
    assert!(checks < 200.0, "{checks} signatures checked");
    assert!(
        flooded < 0.25,
        "the victim spent {:.1}% of a core",
        flooded * 100.0
    );
}

/// A record of `author`'s own, or one claiming `claimed` as its origin (then the
/// signature is `author`'s, so it does not verify: a forgery).
fn signed_record(
    author: &tidings::keys::Identity,
    claimed: Option<NodeId>,
    seq: u64,
    issued_at_ms: u64,
    name: &str,
) -> Vec<u8> {
    let mut record = Record::first(
        FederationId::from_name("test"),
        claimed.unwrap_or(author.node_id()),
        announcement(name, 0),
        issued_at_ms,
        tidings::proto::limits::DEFAULT_TTL_MS,
    );
    record.seq = seq;
    if seq > 1 {
        record.prev = tidings::proto::RecordId([1; 32]);
    }
    let bytes = record.encode();
    let signature = author.sign(tidings::keys::Domain::Record, &record.federation, &bytes);
    tidings::proto::record::SignedRecord::new(bytes, signature).encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_fills_the_audit_log_never_erases_an_earlier_forgery() {
    const LIMIT: u64 = 32 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let flooders: Vec<u8> = (11..=18).collect();
    let seeds: Vec<u8> = [1, 2, 10].into_iter().chain(flooders.clone()).collect();
    let members = roster(&seeds);
    let mut victim_config = config(dir.path(), 1, &members, vec![]);
    victim_config.audit.max_bytes = Some(LIMIT);
    victim_config.audit.prune_chunk = 64;
    let victim = Node::spawn(victim_config).await.unwrap();
    let honest = Node::spawn(config(
        dir.path(),
        2,
        &members,
        vec![(victim.node_id(), victim.local_addr())],
    ))
    .await
    .unwrap();
    let target = (victim.node_id(), victim.local_addr());
    let connect = |seed: u8| {
        let members = members.clone();
        async move {
            let transport = Transport::bind(
                &identity(seed),
                Arc::new(RwLock::new(members)),
                "127.0.0.1:0".parse().unwrap(),
            )
            .unwrap();
            let connection = transport.dial(target.0, target.1).await.unwrap();
            (transport, connection)
        }
    };
    // Member 10 sends a forgery in member 2's name, and a false entry of its own.
    let now = now_ms();
    let forger = identity(10);
    let forgery = signed_record(&forger, Some(honest.node_id()), 7, now, "forged");
    let false_entry = signed_record(&forger, None, 1, now, "payments");
    let forgery_id = tidings::proto::UnverifiedRecord::parse(&forgery, None)
        .unwrap()
        .id()
        .to_string();
    let false_id = tidings::proto::UnverifiedRecord::parse(&false_entry, None)
        .unwrap()
        .id()
        .to_string();
    let (_forger_transport, connection) = connect(10).await;
    tidings::net::transport::send_frame(
        &connection,
        &Message::Records(vec![forgery, false_entry]).encode(),
    )
    .await
    .unwrap();
    common::eventually(
        "the forgery is audited",
        Duration::from_secs(10),
        || async {
            victim.audit_log().unwrap().stats().unwrap().last_index > 0
                && victim
                    .audit_log()
                    .unwrap()
                    .query(&tidings::audit::Query {
                        kind: Some(tidings::audit::EntryKind::Rejected),
                        ..Default::default()
                    })
                    .unwrap()
                    .iter()
                    .any(|entry| entry.record.map(|r| r.to_string()) == Some(forgery_id.clone()))
        },
    )
    .await;

    // Eight members flood stale and expired records, each below its work budget
    // (never banned), until the log's limit has been filled four times over.
    let written_at_start = victim.audit_log().unwrap().stats().unwrap().last_index;
    let mut tasks = Vec::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for seed in flooders {
        let (transport, connection) = connect(seed).await;
        let author = identity(seed);
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let _transport = transport;
            let now = now_ms();
            let current = signed_record(&author, None, 2, now, "current");
            let stale = signed_record(&author, None, 1, now, "stale");
            let expired = signed_record(&author, None, 3, now - 3 * 3_600_000, "expired");
            let mut writer = FrameWriter::open(&connection).await.unwrap();
            writer
                .send(&Message::Records(vec![current]).encode())
                .await
                .unwrap();
            let frames = [
                Message::Records(vec![stale; 8]).encode(),
                Message::Records(vec![expired; 8]).encode(),
            ];
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if writer.send(&frames[sent % 2]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            sent
        }));
    }
    common::eventually(
        "the flood fills the log's limit four times over",
        Duration::from_secs(120),
        || async {
            let stats = victim.audit_log().unwrap().stats().unwrap();
            (stats.last_index - written_at_start) * 150 > 4 * LIMIT
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        assert!(task.await.unwrap() > 10);
    }
    let stats = victim.audit_log().unwrap().stats().unwrap();
    println!("audit log after the flood: {stats:?}");
    assert!(stats.first_index > written_at_start, "pruned: {stats:?}");
    let members = victim.members().await.unwrap();
    assert!(
        members.iter().all(|member| !member.banned),
        "the flood stayed within every budget"
    );
    let data = dir.path().join("node-1");
    victim.shutdown().await.unwrap();
    honest.shutdown().await.unwrap();

    // The forgery's entry and the false entry's evidence are still there.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let data = data.to_str().unwrap();
    let trace = cli(&["audit", "trace", "--data-dir", data, &forgery_id, "--json"]);
    let history = trace["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|step| step["kind"] == "rejected" && step["peer"] == forger.node_id().to_string()),
        "{trace}"
    );
    let trace = cli(&["audit", "trace", "--data-dir", data, &false_id, "--json"]);
    assert_eq!(
        trace["evidence"]["signer"],
        forger.node_id().to_string(),
        "{trace}"
    );
    let verified = cli(&["audit", "verify", "--data-dir", data, "--json"]);
    println!("audit verify: {verified}");
}

/// Resident memory of process `pid`, bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Opens `streams` message streams on `connection`, each announcing a largest
/// frame and sending all of it but its last byte, then holding it open until
/// `until`. Returns the bytes the victim granted credit for.
async fn unfinished_streams(connection: quinn::Connection, streams: usize, until: Instant) -> u64 {
    use tidings::proto::limits::MAX_FRAME_BYTES;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let connection = connection.clone();
        tasks.push(tokio::spawn(async move {
            let opening = tokio::time::timeout_at(until.into(), connection.open_uni()).await;
            let Ok(Ok(mut stream)) = opening else {
                return 0u64;
            };
            let mut taken = 0u64;
            let head = (MAX_FRAME_BYTES as u32).to_be_bytes();
            if stream.write_all(&head).await.is_err() {
                return 0;
            }
            let chunk = vec![9u8; 64 * 1024];
            let mut left = MAX_FRAME_BYTES - 1;
            while left > 0 {
                let part = &chunk[..left.min(chunk.len())];
                match tokio::time::timeout_at(until.into(), stream.write_all(part)).await {
                    Ok(Ok(())) => {
                        taken += part.len() as u64;
                        left -= part.len();
                    }
                    _ => break,
                }
            }
            tokio::time::sleep_until(until.into()).await;
            drop(stream);
            taken
        }));
    }
    let mut taken = 0;
    for task in tasks {
        taken += task.await.unwrap_or(0);
    }
    taken
}

#[test]
fn one_key_with_many_connections_and_unfinished_streams_pins_little_memory() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(root.path(), 2, 1000, &[]);
    // n0 is the victim; n1's key is the attacker's.
    cluster.start(0);
    cluster.wait_ready(0, Duration::from_secs(20));
    let attacker =
        Arc::new(tidings::keys::Identity::load(&cluster.members[1].dir.join("node.key")).unwrap());
    let members = tidings::keys::Roster::load(&root.path().join("roster.toml")).unwrap();
    let victim = cluster.pid(0);
    let target = (cluster.members[0].id, cluster.members[0].listen);
    std::thread::sleep(Duration::from_secs(2));
    let before = resident(victim);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Held for 8 s: under the victim's 10 s wait for a frame's bytes, so it
    // holds whatever it buffered for the whole attack.
    let until = Instant::now() + Duration::from_secs(8);
    let attack = runtime.spawn(async move {
        let transport = Transport::bind(
            &attacker,
            Arc::new(RwLock::new(members)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let mut attacks = Vec::new();
        let mut connections = 0;
        for _ in 0..12 {
            if let Ok(connection) = transport.dial(target.0, target.1).await {
                connections += 1;
                attacks.push(tokio::spawn(unfinished_streams(connection, 64, until)));
            }
        }
        let mut taken = 0;
        for attack in attacks {
            taken += attack.await.unwrap();
        }
        (connections, taken)
    });
    let mut peak = before;
    while Instant::now() < until {
        peak = peak.max(resident(victim));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (connections, taken) = runtime.block_on(attack).unwrap();
    let growth = peak.saturating_sub(before);
    let connected = cluster.metric(0, "tidings_peers_connected").unwrap();
    println!(
        "12 connections x 64 unfinished 1 MiB streams: {connections} connected, the victim granted \
         credit for {:.1} MiB; its memory grew by {:.1} MiB at most ({:.1} -> {:.1} MiB); \
         {connected} connection(s) open after",
        taken as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        before as f64 / 1048576.0,
        peak as f64 / 1048576.0,
    );
    assert_eq!(connections, 12, "every dial succeeded");
    assert!(
        growth < 64 * 1024 * 1024,
        "the victim grew by {growth} bytes"
    );
    // Stream credit is granted per connection (its receive window), but only the
    // newest connection of a key is kept: the victim holds one window at a time.
    assert!(connected <= 1.0, "{connected} connections kept");
}

/// Reads every frame `connection` brings until `until`: (frame bytes, record
/// bytes by record id, copies of records received).
async fn replies(
    connection: quinn::Connection,
    until: Instant,
) -> (
    u64,
    std::collections::HashMap<tidings::proto::RecordId, u64>,
    u64,
) {
    use tidings::net::transport::FrameReader;
    let (mut bytes, mut copies) = (0u64, 0u64);
    let mut distinct = std::collections::HashMap::new();
    while let Ok(Ok(stream)) = tokio::time::timeout_at(until.into(), connection.accept_uni()).await
    {
        let mut reader = FrameReader::new(stream);
        while let Ok(Ok(Some(frame))) = tokio::time::timeout_at(until.into(), reader.next()).await {
            bytes += frame.len() as u64 + 4;
            if let Ok(Message::Records(records)) = Message::decode(&frame) {
                for record in records {
                    let signed = tidings::proto::record::SignedRecord::decode(&record).unwrap();
                    distinct.insert(signed.id(), record.len() as u64);
                    copies += 1;
                }
            }
        }
    }
    (bytes, distinct, copies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_syncs_and_wants_get_each_record_once() {
    use tidings::proto::wire::{Prefix, Range, Summary};
    let dir = tempfile::tempdir().unwrap();
    let members = roster(&[1, 2, 3, 4]);
    // Records of about 16 KiB, so that framing does not hide amplification.
    let padded = |seed: u8| announcement(&format!("agent-{seed}"), 10).specialists;
    let mut victim_config = config(dir.path(), 1, &members, vec![]);
    victim_config.specialists = padded(1);
    // One long interval: the whole attack falls within it.
    victim_config.gossip.interval_ms = 5000;
    let victim = Node::spawn(victim_config).await.unwrap();
    let target = (victim.node_id(), victim.local_addr());
    let mut honest = Vec::new();
    for seed in [2, 3] {
        let mut config = config(dir.path(), seed, &members, vec![target]);
        config.specialists = padded(seed);
        honest.push(Node::spawn(config).await.unwrap());
    }
    common::eventually(
        "the victim holds three records",
        Duration::from_secs(20),
        || {
            let victim = &victim;
            async move { victim.stats().await.unwrap().records == 3 }
        },
    )
    .await;

    let attacker = Transport::bind(
        &identity(4),
        Arc::new(RwLock::new(members.clone())),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let connection = attacker.dial(target.0, target.1).await.unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let reading = tokio::spawn(replies(connection.clone(), until));
    let nothing = vec![Range {
        prefix: Prefix::ROOT,
        summary: Summary::Holdings(vec![]),
    }];
    let mut origins: Vec<NodeId> = [1u8, 2, 3].map(|seed| identity(seed).node_id()).to_vec();
    origins.sort();
    let mut requests = vec![Message::Open {
        clock_ms: now_ms(),
        ranges: nothing.clone(),
    }
    .encode()];
    for _ in 0..64 {
        requests.push(Message::Sync(nothing.clone()).encode());
        requests.push(Message::Want(origins.clone()).encode());
    }
    // Repeats within one request are refused outright.
    requests.push(Message::Want(vec![origins[0]; 512]).encode());
    let mut writer = FrameWriter::open(&connection).await.unwrap();
    let mut asked = 0u64;
    for request in &requests {
        writer.send(request).await.unwrap();
        asked += request.len() as u64 + 4;
    }
    let (bytes, distinct, copies) = reading.await.unwrap();
    let needed: u64 = distinct.values().sum();
    let amplification = bytes as f64 / needed as f64;
    println!(
        "{} requests ({asked} bytes) asking for everything: {bytes} bytes back, {copies} record \
         copies of {} records ({needed} bytes): {amplification:.2}x what it could need",
        requests.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), 3, "every record it lacked came");
    assert!(amplification <= 4.0, "{amplification:.2}x");
    victim.shutdown().await.unwrap();
    for node in honest {
        node.shutdown().await.unwrap();
    }
}

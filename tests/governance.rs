//! Governance over real processes: five `tidings run` nodes change their roster
//! through the CLI, with no restart: a sixth member is added by a threshold of
//! approvals and joins live; a member is removed and dropped everywhere without
//! any honest peer being banned; a quarantined honest member is pardoned and
//! publishes again; a member rotates its key and, restarted with the new key,
//! continues its record chain. Then the exported chain verifies offline, and a
//! tampered one names its first invalid operation.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::cluster::{tidings, Cluster};
use serde_json::Value;
use tidings::keys::{Identity, Roster};
use tidings::net::transport::{send_frame, Transport};
use tidings::proto::wire::Message;
use tidings::proto::{Record, VerifiedRecord};

const INTERVAL_MS: u64 = 300;

/// Waits until `check` holds, or fails with `what` and the nodes' log tails.
fn until(cluster: &Cluster, what: &str, limit: Duration, mut check: impl FnMut(&Cluster) -> bool) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check(cluster) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tails: Vec<String> = (0..cluster.members.len())
        .map(|i| {
            let pending: Vec<String> = cluster
                .get(i, "/v1/roster/pending")
                .and_then(|p| p["pending"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let held: Vec<String> = p["approvals"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|a| a.as_str().unwrap_or("-").chars().take(6).collect())
                        .collect();
                    format!("{} {held:?}/{}", p["action"], p["needed"])
                })
                .collect();
            format!(
                "--- {} ({}) epoch {:?} pending {pending:?}\n{}",
                cluster.members[i].name,
                cluster.members[i]
                    .id
                    .to_string()
                    .chars()
                    .take(6)
                    .collect::<String>(),
                epoch(cluster, i),
                cluster.log_tail(i, 8)
            )
        })
        .collect();
    panic!("not within {limit:?}: {what}\n{}", tails.join("\n"));
}

fn epoch(cluster: &Cluster, index: usize) -> Option<u64> {
    cluster.get(index, "/v1/roster")?["epoch"].as_u64()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// Whether member `index` holds a record of `origin` offering `name`.
fn offers(cluster: &Cluster, index: usize, origin: &str, name: &str) -> bool {
    cluster
        .get(index, &format!("/v1/specialists?name={name}"))
        .and_then(|answer| answer["specialists"].as_array().cloned())
        .is_some_and(|found| found.iter().any(|s| s["origin"] == origin))
}

/// Every audit entry `index` holds of `kind`, through its API.
fn audit_kind(cluster: &Cluster, index: usize, kind: &str) -> Vec<Value> {
    cluster
        .get(index, &format!("/v1/audit?kind={kind}&limit=1000"))
        .and_then(|answer| answer["entries"].as_array().cloned())
        .unwrap_or_default()
}

/// Proposes on `proposer`, approves on each of `voters`, and waits until every
/// member in `live` is at `epoch`.
fn govern(
    cluster: &Cluster,
    proposer: usize,
    propose: &[&str],
    voters: &[usize],
    live: &[usize],
    epoch_after: u64,
) -> String {
    let mut args = vec!["roster", "propose"];
    args.extend_from_slice(propose);
    args.push("--json");
    let answer = json(&cluster.cli(proposer, &args));
    assert_eq!(answer["status"], "pending", "{answer}");
    let id = answer["operation"]["id"].as_str().unwrap().to_string();
    for &voter in voters {
        until(
            cluster,
            "the proposal reaches the voter",
            Duration::from_secs(20),
            |c| {
                c.get(voter, "/v1/roster/pending")
                    .and_then(|p| p["pending"].as_array().cloned())
                    .is_some_and(|pending| pending.iter().any(|p| p["id"] == id.as_str()))
            },
        );
        // A unique prefix is enough to approve.
        let answer = json(&cluster.cli(voter, &["roster", "approve", &id[..12], "--json"]));
        assert!(
            answer["status"] == "pending" || answer["status"] == "applied",
            "{answer}"
        );
    }
    until(
        cluster,
        &format!("every live node at epoch {epoch_after}"),
        Duration::from_secs(20),
        |c| live.iter().all(|&i| epoch(c, i) == Some(epoch_after)),
    );
    id
}

#[test]
fn five_processes_add_remove_pardon_and_rotate_members_live() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(root.path(), 5, INTERVAL_MS, &[]);
    cluster.start_all();
    for index in 0..5 {
        cluster.wait_ready(index, Duration::from_secs(20));
    }
    // Every node derived the same genesis from the shared roster file.
    let created = json(&tidings(
        root.path(),
        &[
            "roster",
            "create",
            "--roster",
            "roster.toml",
            "--federation",
            "cluster",
            "--json",
        ],
    ));
    assert_eq!(created["needed"], 4, "floor(2*5/3)+1");
    until(
        &cluster,
        "every node at the genesis",
        Duration::from_secs(10),
        |c| {
            (0..5).all(|i| {
                c.get(i, "/v1/roster")
                    .is_some_and(|r| r["genesis"] == created["genesis"])
            })
        },
    );

    // 1. A sixth node joins: its key holder countersigns, n0 proposes, three
    //    more approve (4 of 5), and every node admits it without a restart.
    let six = cluster.join("n5", INTERVAL_MS);
    cluster.start(six);
    let six_id = cluster.members[six].id.to_string();
    let countersigned = json(&tidings(
        root.path(),
        &[
            "roster",
            "countersign",
            "--key",
            "n5/node.key",
            "--federation",
            "cluster",
            "--label",
            "n5",
            "--json",
        ],
    ));
    let signature = countersigned["countersignature"]
        .as_str()
        .unwrap()
        .to_string();
    govern(
        &cluster,
        0,
        &[
            "add",
            &six_id,
            "--label",
            "n5",
            "--countersignature",
            &signature,
        ],
        &[1, 2, 3],
        &[0, 1, 2, 3, 4, 5],
        1,
    );
    cluster.wait_ready(six, Duration::from_secs(20));
    assert!(cluster
        .announce(six, "late-ocr", "https://n5.example/ocr")
        .is_some());
    until(
        &cluster,
        "the new member's specialist everywhere",
        Duration::from_secs(20),
        |c| (0..6).all(|i| offers(c, i, &six_id, "late-ocr")),
    );
    until(
        &cluster,
        "the new member connected to n0",
        Duration::from_secs(20),
        |c| {
            c.get(0, "/v1/members")
                .and_then(|m| m["members"].as_array().cloned())
                .is_some_and(|m| {
                    m.iter()
                        .any(|m| m["id"] == six_id.as_str() && m["connected"] == true)
                })
        },
    );

    // 2. n4 is removed: every node drops it and its record, nobody is banned.
    let four_id = cluster.members[4].id.to_string();
    assert!(cluster
        .announce(4, "leaving", "https://n4.example/x")
        .is_some());
    until(
        &cluster,
        "n4's record everywhere",
        Duration::from_secs(20),
        |c| {
            [0, 1, 2, 3, 5]
                .iter()
                .all(|&i| offers(c, i, &four_id, "leaving"))
        },
    );
    govern(
        &cluster,
        1,
        &["remove", &four_id],
        // Six members now: an operation needs five approvals.
        &[0, 2, 3, 5],
        &[0, 1, 2, 3, 5],
        2,
    );
    until(
        &cluster,
        "n4's record gone everywhere",
        Duration::from_secs(20),
        |c| {
            [0, 1, 2, 3, 5]
                .iter()
                .all(|&i| !offers(c, i, &four_id, "leaving"))
        },
    );
    until(
        &cluster,
        "n4 halts: it heard of its removal",
        Duration::from_secs(20),
        |c| c.health(4).is_some_and(|h| h["status"] == "halted"),
    );
    // Its connections close, n4 keeps dialling its former peers, and each
    // refuses it: a removed key never connects again (a resumed TLS session
    // once let it back in, its key taken from the session instead of checked
    // against the roster).
    until(
        &cluster,
        "n4's connections closed",
        Duration::from_secs(20),
        |c| c.health(4).is_some_and(|h| h["peers_connected"] == 0),
    );
    // From here on no member accepts a connection of n4's key (its own view
    // may flash "up" for the instant before a refusal reaches it), and it
    // does try: the members record refused handshakes of its key.
    let from_four = |c: &Cluster, kind: &str| -> usize {
        [0, 1, 2, 3, 5]
            .iter()
            .map(|&i| {
                audit_kind(c, i, kind)
                    .iter()
                    .filter(|entry| entry["peer"] == four_id.as_str())
                    .count()
            })
            .sum()
    };
    let accepted_before = from_four(&cluster, "connection_accepted");
    let refused_before = from_four(&cluster, "stranger_refused");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        from_four(&cluster, "connection_accepted"),
        accepted_before,
        "a member accepted the removed n4 again"
    );
    assert!(
        from_four(&cluster, "stranger_refused") > refused_before,
        "n4 kept dialling and was refused"
    );

    // 3. n3 is quarantined (its key signed two records for one seq, as a copied
    //    node folder would), then pardoned, and publishes again everywhere.
    let three_id = cluster.members[3].id.to_string();
    assert!(cluster
        .announce(3, "scanner", "https://n3.example/scan")
        .is_some());
    until(
        &cluster,
        "n3's record at n0",
        Duration::from_secs(20),
        |c| offers(c, 0, &three_id, "scanner"),
    );
    let current = cluster.get(3, &format!("/v1/records/{three_id}")).unwrap();
    let bytes = tidings::keys::hex::decode(current["signed_hex"].as_str().unwrap()).unwrap();
    let record = VerifiedRecord::from_bytes(&bytes, Some(&cluster.federation)).unwrap();
    let key = Identity::load(&cluster.members[3].dir.join("node.key")).unwrap();
    let twin = VerifiedRecord::sign(
        &key,
        Record {
            issued_at_ms: record.record().issued_at_ms + 1,
            ..record.record().clone()
        },
    )
    .unwrap();
    let everyone: Roster = cluster.members.iter().map(|m| m.id).collect();
    let target = (cluster.members[0].id, cluster.members[0].listen);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let transport = Transport::bind(
            &key,
            Arc::new(RwLock::new(everyone)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let connection = transport.dial(target.0, target.1).await.unwrap();
        send_frame(
            &connection,
            &Message::Records(vec![twin.wire_bytes().to_vec()]).encode(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    until(
        &cluster,
        "n3 quarantined everywhere and halted",
        Duration::from_secs(20),
        |c| {
            [0, 1, 2, 5].iter().all(|&i| {
                c.get(i, "/v1/members")
                    .and_then(|m| m["members"].as_array().cloned())
                    .is_some_and(|m| {
                        m.iter()
                            .any(|m| m["id"] == three_id.as_str() && m["quarantined"] == true)
                    })
            }) && c.health(3).is_some_and(|h| h["status"] == "halted")
        },
    );
    // The pardon's floor defaults to the proof the proposer holds.
    govern(
        &cluster,
        0,
        &["pardon", &three_id],
        &[1, 2, 5],
        &[0, 1, 2, 3, 5],
        3,
    );
    cluster.wait_ready(3, Duration::from_secs(20));
    assert!(cluster
        .announce(3, "scanner-2", "https://n3.example/scan2")
        .is_some());
    until(
        &cluster,
        "n3's new record accepted everywhere",
        Duration::from_secs(20),
        |c| {
            [0, 1, 2, 5]
                .iter()
                .all(|&i| offers(c, i, &three_id, "scanner-2"))
        },
    );

    // 4. n2 rotates its key: a new key countersigns, four members approve, n2
    //    (its old key off the roster) halts; restarted with the new key, its
    //    chain continues right above its last record under the old key.
    let two_old = cluster.members[2].id.to_string();
    assert!(cluster
        .announce(2, "translator", "https://n2.example/tr")
        .is_some());
    until(
        &cluster,
        "n2's record everywhere",
        Duration::from_secs(20),
        |c| {
            [0, 1, 3, 5]
                .iter()
                .all(|&i| offers(c, i, &two_old, "translator"))
        },
    );
    let last_seq = cluster.get(2, &format!("/v1/records/{two_old}")).unwrap()["seq"]
        .as_u64()
        .unwrap();
    tidings(root.path(), &["keygen", "--key", "n2/next.key"]);
    let two_new: tidings::keys::NodeId = tidings(root.path(), &["id", "--key", "n2/next.key"])
        .trim()
        .parse()
        .unwrap();
    let next_key = cluster.members[2].dir.join("next.key");
    govern(
        &cluster,
        2,
        &["rotate", "--key-file", next_key.to_str().unwrap()],
        &[0, 1, 5],
        &[0, 1, 2, 3, 5],
        4,
    );
    until(
        &cluster,
        "n2 halts: its key was rotated",
        Duration::from_secs(20),
        |c| c.health(2).is_some_and(|h| h["status"] == "halted"),
    );
    cluster.terminate(2, Duration::from_secs(10));
    std::fs::rename(&next_key, cluster.members[2].dir.join("node.key")).unwrap();
    cluster.members[2].id = two_new;
    cluster.start(2);
    cluster.wait_ready(2, Duration::from_secs(20));
    let two_new = two_new.to_string();
    until(
        &cluster,
        "n2's chain continues under the new key everywhere",
        Duration::from_secs(20),
        |c| {
            [0, 1, 2, 3, 5].iter().all(|&i| {
                c.get(i, &format!("/v1/records/{two_new}"))
                    .is_some_and(|r| r["seq"].as_u64() == Some(last_seq + 1))
                    && offers(c, i, &two_new, "translator")
            })
        },
    );
    for index in [0, 1, 3, 5] {
        assert!(
            !offers(&cluster, index, &two_old, "translator"),
            "the old key's record is gone"
        );
    }

    // No honest node banned anyone, or was banned, through all of it.
    for index in [0, 1, 2, 3, 5] {
        let banned = audit_kind(&cluster, index, "banned");
        assert!(
            banned.is_empty(),
            "{} banned: {banned:?}",
            cluster.members[index].name
        );
        // n2's log started anew with its new key (the old one is kept aside).
        if index != 2 {
            let applied = audit_kind(&cluster, index, "roster_applied");
            assert!(
                applied.len() >= 4,
                "{} audited its roster changes: {applied:?}",
                cluster.members[index].name
            );
        }
    }
    assert!(
        cluster.members[2]
            .dir
            .join(format!("old-key-{}", &two_old[..10]))
            .join("audit")
            .is_dir(),
        "the old key's audit log is kept where the audit commands read it"
    );

    // 5. The chain exports and verifies offline from the genesis file; a
    //    tampered copy names its first invalid operation.
    let exported = root.path().join("chain.txt");
    cluster.cli(
        2,
        &["roster", "export", "--out", exported.to_str().unwrap()],
    );
    let verified = json(&tidings(
        root.path(),
        &[
            "verify",
            "chain.txt",
            "--roster",
            "roster.toml",
            "--federation",
            "cluster",
            "--json",
        ],
    ));
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["epoch"], 4);
    let text = std::fs::read_to_string(&exported).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Flip one hex digit inside the second operation's body.
    let second = lines.iter().position(|l| l.starts_with("op ")).unwrap() + 1;
    let mut bytes: Vec<char> = lines[second].chars().collect();
    bytes[20] = if bytes[20] == '0' { '1' } else { '0' };
    lines[second] = bytes.into_iter().collect();
    std::fs::write(root.path().join("tampered.txt"), lines.join("\n") + "\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["verify", "tampered.txt", "--json"])
        .current_dir(root.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(report["valid"], false);
    let verdict = report["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("operation #2") || verdict.contains("line 4"),
        "{verdict}"
    );

    // 6. n2's export brings the old key's log along, and a merge named by the
    //    chain sees one member under two keys: its old key published a record
    //    its new key never received, and it is not "never received" by n2.
    cluster.terminate(2, Duration::from_secs(10));
    tidings(
        root.path(),
        &["audit", "export", "-d", "n2", "-o", "n2.jsonl"],
    );
    let old_export = root
        .path()
        .join(format!("n2.old-key-{}.jsonl", &two_old[..10]));
    let old_lines = std::fs::read_to_string(&old_export).expect("the old key's log is exported");
    let published = old_lines
        .lines()
        .map(json)
        .find(|line| line["kind"] == "published")
        .expect("the old key published");
    let record = published["record"].as_str().unwrap();
    let old_name = old_export.file_name().unwrap().to_str().unwrap();
    let merge = |names: &str, record: &str| {
        json(&tidings(
            root.path(),
            &[
                "audit", "merge", "--record", record, "--roster", names, "--json", "n2.jsonl",
                old_name,
            ],
        ))
    };
    let missing = |merged: &Value| merged["missing"].as_array().unwrap().clone();
    assert_eq!(
        missing(&merge("roster.toml", record)),
        vec![Value::from(two_new.as_str())],
        "the genesis file does not know the rotation"
    );
    // A unique prefix names the record too.
    let merged = merge("chain.txt", &record[..12]);
    assert_eq!(merged["record"], record, "{merged}");
    assert!(missing(&merged).is_empty(), "one member");
    assert!(missing(&merge("n2", record)).is_empty(), "its stored chain");
    // A tampered chain names nothing.
    let (ok, said) = {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args([
                "audit",
                "merge",
                "--record",
                record,
                "--roster",
                "tampered.txt",
            ])
            .args(["n2.jsonl", old_name])
            .current_dir(root.path())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert!(!ok && said.contains("not a valid roster chain"), "{said}");
}

/// Runs `tidings ARGS --api <member's API>` and returns whether it succeeded and
/// what it printed (both streams).
fn try_cli(cluster: &Cluster, index: usize, args: &[&str]) -> (bool, String) {
    let mut all: Vec<&str> = args.to_vec();
    let api = cluster.members[index].api.clone();
    all.extend(["--api", &api]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(&all)
        .current_dir(&cluster.root)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Waits until n1 holds proposal `id`, then checks it refuses to approve it
/// (it signed another operation for that epoch).
fn refuses_second_vote(cluster: &Cluster, id: &str, when: &str) {
    until(
        cluster,
        "the competing proposal at n1",
        Duration::from_secs(20),
        |c| {
            c.get(1, "/v1/roster/pending")
                .and_then(|p| p["pending"].as_array().cloned())
                .is_some_and(|pending| pending.iter().any(|p| p["id"] == id))
        },
    );
    let (ok, text) = try_cli(cluster, 1, &["roster", "approve", id]);
    assert!(
        !ok,
        "n1 signed a second operation for epoch 1 {when}: {text}"
    );
    assert!(text.contains("already signed"), "{text}");
}

#[test]
fn a_vote_and_the_chain_survive_sigkill() {
    let root = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(root.path(), 4, INTERVAL_MS, &[]);
    cluster.start_all();
    for index in 0..4 {
        cluster.wait_ready(index, Duration::from_secs(20));
    }
    let three = cluster.members[3].id.to_string();
    let p = json(&cluster.cli(
        0,
        &["roster", "propose", "relabel", &three, "dee", "--json"],
    ));
    let p_id = p["operation"]["id"].as_str().unwrap().to_string();
    // n1 approves; SIGKILL a few milliseconds after the answer.
    let answer = json(&cluster.cli(1, &["roster", "approve", &p_id, "--json"]));
    assert_eq!(answer["status"], "pending", "{answer}");
    std::thread::sleep(Duration::from_millis(u64::from(std::process::id() % 20)));
    cluster.kill(1);
    cluster.start(1);
    cluster.wait_ready(1, Duration::from_secs(20));
    // A competing operation for the same epoch: n1 must refuse to sign it.
    let q = json(&cluster.cli(
        3,
        &["roster", "propose", "relabel", &three, "other", "--json"],
    ));
    let q_id = q["operation"]["id"].as_str().unwrap().to_string();
    refuses_second_vote(&cluster, &q_id, "after SIGKILL");
    let view = cluster.get(1, "/v1/roster").unwrap();
    assert_eq!(
        view["votes"][0][1],
        p_id.as_str(),
        "the vote was restored: {view}"
    );
    // The store lost (the vote with it): the audit log still has the vote.
    cluster.kill(1);
    std::fs::remove_dir_all(cluster.members[1].dir.join("store")).unwrap();
    cluster.start(1);
    cluster.wait_ready(1, Duration::from_secs(30));
    refuses_second_vote(&cluster, &q_id, "after losing its store");
    // n2 approves the first: applied. SIGKILL n2 and n0 right after; both come
    // back at epoch 1 with the change.
    cluster.cli(2, &["roster", "approve", &p_id]);
    until(
        &cluster,
        "every node at epoch 1",
        Duration::from_secs(20),
        |c| (0..4).all(|i| epoch(c, i) == Some(1)),
    );
    for index in [2, 0] {
        cluster.kill(index);
        cluster.start(index);
        cluster.wait_ready(index, Duration::from_secs(20));
        let view = cluster.get(index, "/v1/roster").unwrap();
        assert_eq!(view["epoch"], 1, "{view}");
        assert_eq!(view["head"], p_id.as_str());
        let dee = view["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == three.as_str() && m["label"] == "dee");
        assert!(dee, "the applied relabel is restored: {view}");
    }
}

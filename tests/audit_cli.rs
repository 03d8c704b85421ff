//! The demo and the audit commands, driven as a user would: the demo's outcomes,
//! then trace, log, verify, export, merge and tamper detection on its data.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn tidings(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .env_remove("TIDINGS_DATA_DIR")
        .output()
        .expect("the tidings binary runs")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `tidings audit merge` of `exports` for `record`, with the demo's roster.
fn merge(dir: &Path, record: &str, exports: &[&str]) -> Output {
    let mut args = vec![
        "audit",
        "merge",
        "--roster",
        "fed/roster.toml",
        "--record",
        record,
    ];
    args.extend_from_slice(exports);
    tidings(dir, &args)
}

#[test]
fn the_demo_outcomes_and_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let summary = json(&tidings(path, &["demo", "--data-dir", "fed", "--json"]));
    let honest = summary["honest_nodes"].as_u64().unwrap();
    assert!(
        summary["honest_converged_rounds"].as_f64().is_some(),
        "{summary}"
    );
    assert_eq!(summary["forgery_audited_with_peer"], "mallory");
    assert_eq!(
        summary["equivocator_quarantined_at"].as_u64(),
        Some(honest),
        "quarantined everywhere"
    );
    assert!(summary["flooder_banned_by"].as_u64().unwrap() >= 1);
    assert_eq!(
        summary["update_during_flood_reached"].as_u64(),
        Some(honest)
    );

    // The false entry's trace at node-1 names its signer and the peer it came from.
    let record = summary["false_entry"].as_str().unwrap();
    let trace = json(&tidings(
        path,
        &["audit", "trace", "-d", "fed/node-1", record, "--json"],
    ));
    assert_eq!(trace["evidence"]["signer"], summary["false_entry_signer"]);
    assert_eq!(
        trace["first_receipt"]["peer"],
        summary["false_entry_first_peer"]
    );
    assert_eq!(trace["evidence"]["specialists"][0]["name"], "payments");
    let text =
        String::from_utf8(tidings(path, &["audit", "trace", "-d", "fed/node-1", record]).stdout)
            .unwrap();
    assert!(text.contains("signed by   mallory"), "{text}");
    // Ids as the tables print them work too: a record's 12-character prefix,
    // an origin's roster label and a peer's id prefix, and RFC 3339 times.
    let short = tidings(
        path,
        &[
            "audit",
            "trace",
            "-d",
            "fed/node-1",
            &record[..12],
            "--json",
        ],
    );
    assert_eq!(json(&short)["record"], record);
    let peer = summary["false_entry_first_peer"].as_str().unwrap();
    let about = json(&tidings(
        path,
        &[
            "audit",
            "log",
            "-d",
            "fed/node-1",
            "--origin",
            "mallory",
            "--peer",
            &peer[..10],
            "--record",
            &record[..12],
            "--since",
            "2000-01-01T00:00:00Z",
            "--json",
        ],
    ));
    let about = about.as_array().unwrap();
    assert!(!about.is_empty());
    assert!(about
        .iter()
        .all(|e| e["record"] == record && e["peer"] == peer));
    let unknown = tidings(
        path,
        &["audit", "log", "-d", "fed/node-1", "--origin", "nobody"],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no member of the roster"));

    // The forgery is in node-1's log, blamed on mallory.
    let rejected = json(&tidings(
        path,
        &[
            "audit",
            "log",
            "-d",
            "fed/node-1",
            "--kind",
            "rejected",
            "--json",
        ],
    ));
    assert!(rejected
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["reason"].as_str().unwrap().starts_with("bad_signature")));

    // Every log verifies; exports verify offline; a tampered export names the index.
    for node in ["node-1", "node-2", "mallory"] {
        let verify = tidings(path, &["audit", "verify", "-d", &format!("fed/{node}")]);
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
        let export = tidings(
            path,
            &[
                "audit",
                "export",
                "-d",
                &format!("fed/{node}"),
                "-o",
                &format!("{node}.jsonl"),
            ],
        );
        assert!(export.status.success());
    }
    let verify = tidings(
        path,
        &["audit", "verify", "--export", "node-1.jsonl", "--json"],
    );
    assert_eq!(json(&verify)["valid"], true);
    let text = std::fs::read_to_string(path.join("node-1.jsonl")).unwrap();
    let tampered = text.replacen("\"kind\":\"accepted\"", "\"kind\":\"rejected\"", 1);
    std::fs::write(path.join("tampered.jsonl"), tampered).unwrap();
    let verify = tidings(
        path,
        &["audit", "verify", "--export", "tampered.jsonl", "--json"],
    );
    assert_eq!(verify.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(report["first_bad_index"].as_u64().unwrap() >= 1);
    // `tidings verify` recognises audit exports too.
    assert!(tidings(path, &["verify", "node-1.jsonl"]).status.success());
    assert_eq!(
        tidings(path, &["verify", "tampered.jsonl"]).status.code(),
        Some(1)
    );

    // Evidence is checked, not only the chain: changed bytes, another record's
    // bytes under an entry's key, and missing evidence each fail both verifiers,
    // naming the entry.
    let lines: Vec<&str> = text.lines().collect();
    let evidence: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("\"type\":\"evidence\""))
        .collect();
    assert!(evidence.len() >= 2, "the demo's export holds evidence");
    let bytes_of = |line: &str| {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        value["bytes"].as_str().unwrap().to_string()
    };
    let (first, second) = (evidence[0], evidence[1]);
    let mut flipped = lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    let hex = bytes_of(lines[first]);
    let last = hex.len() - 1;
    let changed = format!(
        "{}{}",
        &hex[..last],
        if hex.ends_with('0') { '1' } else { '0' }
    );
    flipped[first] = lines[first].replace(&hex, &changed);
    let mut swapped = lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    swapped[first] = lines[first].replace(&hex, &bytes_of(lines[second]));
    let without: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("\"type\":\"evidence\""))
        .map(|l| l.to_string())
        .collect();
    for (name, lines, says) in [
        ("flipped.jsonl", flipped, "is not valid"),
        ("swapped.jsonl", swapped, "is not valid"),
        ("without.jsonl", without, "which is missing"),
    ] {
        std::fs::write(path.join(name), lines.join("\n") + "\n").unwrap();
        let verify = tidings(path, &["audit", "verify", "--export", name, "--json"]);
        assert_eq!(verify.status.code(), Some(1), "{name} passed");
        let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
        let message = report["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
        assert!(message.contains("entry "), "{name}: {message}");
        assert!(report["first_bad_index"].as_u64().unwrap() >= 1, "{report}");
        let plain = tidings(path, &["verify", name]);
        assert_eq!(plain.status.code(), Some(1), "{name} passed tidings verify");
        let out = String::from_utf8_lossy(&plain.stdout);
        assert!(out.contains("INVALID at entry"), "{name}: {out}");
        assert!(
            !merge(path, record, &[name]).status.success(),
            "{name} merged"
        );
    }

    // Merging exports shows who relayed the false entry to whom.
    let merge = merge(
        path,
        record,
        &["mallory.jsonl", "node-1.jsonl", "node-2.jsonl"],
    );
    let tree = String::from_utf8(merge.stdout).unwrap();
    assert!(
        tree.contains("mallory") && tree.contains("published"),
        "{tree}"
    );
    assert!(tree.contains("node-1"), "{tree}");
}

#[test]
fn a_byte_changed_inside_sled_is_named_by_audit_verify() {
    use tidings::audit::layout::block_key;
    use tidings::audit::SledStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    assert!(tidings(path, &["demo", "--data-dir", "fed", "--json"])
        .status
        .success());
    let before = json(&tidings(
        path,
        &["audit", "verify", "-d", "fed/node-2", "--json"],
    ));
    assert_eq!(before["valid"], true);
    {
        let store = SledStore::open(&path.join("fed/node-2/audit")).unwrap();
        let key = block_key(0);
        let mut value = store.db().get(&key).unwrap().unwrap().to_vec();
        // A byte inside the first entry's reason text.
        let at = value
            .windows(8)
            .position(|w| w == b"accepted" || w == b"publishe")
            .unwrap();
        value[at] ^= 0x20;
        store.db().insert(&key, value).unwrap();
        store.db().flush().unwrap();
    }
    let output = tidings(path, &["audit", "verify", "-d", "fed/node-2", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(
        (1..=64).contains(&report["first_bad_index"].as_u64().unwrap()),
        "{report}"
    );
    let text =
        String::from_utf8(tidings(path, &["audit", "verify", "-d", "fed/node-2"]).stdout).unwrap();
    assert!(text.contains("INVALID at entry"), "{text}");
}

#[test]
fn audit_commands_explain_a_missing_log() {
    let dir = tempfile::tempdir().unwrap();
    let output = tidings(dir.path(), &["audit", "log", "-d", "nowhere"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no audit log"));
}

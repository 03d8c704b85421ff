//! The command line as a user drives it: keygen, id, record sign, verify, and the
//! errors for a missing or loose key file and a tampered record.

use std::path::Path;
use std::process::{Command, Output};

fn tidings(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .env_remove("TIDINGS_KEY")
        .output()
        .expect("the tidings binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn keygen_id_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let keygen = tidings(path, &["keygen", "--json"]);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let generated: serde_json::Value = serde_json::from_slice(&keygen.stdout).unwrap();
    let node_id = generated["node_id"].as_str().unwrap().to_string();
    assert_eq!(node_id.len(), 52);

    let id = tidings(path, &["id"]);
    assert_eq!(stdout(&id).trim(), node_id);

    let again = tidings(path, &["keygen"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("already exists"));

    let sign = tidings(
        path,
        &[
            "record",
            "sign",
            "--federation",
            "acme",
            "--specialist",
            "translator:translate,fr-en:https://mt.example/api",
        ],
    );
    assert!(sign.status.success(), "{}", stderr(&sign));

    let verify = tidings(
        path,
        &["verify", "record.tidings", "--federation", "acme", "--json"],
    );
    assert!(verify.status.success(), "{}", stdout(&verify));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["record"]["signer"], node_id.as_str());
    assert_eq!(report["record"]["seq"], 1);

    let successor = tidings(
        path,
        &[
            "record",
            "sign",
            "--after",
            "record.tidings",
            "-o",
            "second.tidings",
        ],
    );
    assert!(successor.status.success(), "{}", stderr(&successor));
    let verify = tidings(path, &["verify", "second.tidings", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["record"]["seq"], 2);
    assert_eq!(report["record"]["prev"], {
        let first = tidings(path, &["verify", "record.tidings", "--json"]);
        let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
        first["record"]["record_id"].clone()
    });

    let wrong = tidings(path, &["verify", "record.tidings", "--federation", "other"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stdout(&wrong).contains("another federation"));
}

#[test]
fn a_tampered_record_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    assert!(tidings(path, &["keygen"]).status.success());
    let sign = tidings(
        path,
        &[
            "record",
            "sign",
            "--specialist",
            "ocr:ocr:https://ocr.example",
        ],
    );
    assert!(sign.status.success());
    let original = std::fs::read(path.join("record.tidings")).unwrap();
    // A flipped bit in the last byte of the signature.
    let mut tampered = original.clone();
    *tampered.last_mut().unwrap() ^= 0x01;
    std::fs::write(path.join("tampered.tidings"), &tampered).unwrap();
    let verify = tidings(path, &["verify", "tampered.tidings"]);
    assert_eq!(verify.status.code(), Some(1));
    let text = stdout(&verify);
    assert!(text.contains("INVALID"), "{text}");
    assert!(text.contains("bad signature"), "{text}");

    std::fs::write(path.join("garbage.tidings"), b"not a record").unwrap();
    let verify = tidings(path, &["verify", "garbage.tidings"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stdout(&verify).contains("not a tidings export"));
}

#[test]
fn a_roster_check_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    assert!(tidings(path, &["keygen"]).status.success());
    assert!(tidings(path, &["keygen", "--key", "other.key"])
        .status
        .success());
    let other = stdout(&tidings(path, &["id", "--key", "other.key"]));
    std::fs::write(
        path.join("roster.toml"),
        format!("[[member]]\nid = \"{}\"\n", other.trim()),
    )
    .unwrap();
    assert!(tidings(
        path,
        &["record", "sign", "--specialist", "a:b:https://c.example"]
    )
    .status
    .success());
    let verify = tidings(
        path,
        &["verify", "record.tidings", "--roster", "roster.toml"],
    );
    assert_eq!(verify.status.code(), Some(1));
    assert!(stdout(&verify).contains("not on the roster"));
}

#[test]
fn missing_and_loose_key_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let missing = tidings(path, &["id", "--key", "absent.key"]);
    assert_eq!(missing.status.code(), Some(2));
    let message = stderr(&missing);
    assert!(
        message.contains("absent.key") && message.contains("tidings keygen"),
        "{message}"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert!(tidings(path, &["keygen"]).status.success());
        let key = path.join("node.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loose = tidings(path, &["id"]);
        assert_eq!(loose.status.code(), Some(2));
        let message = stderr(&loose);
        assert!(message.contains("chmod 600 node.key"), "{message}");
    }
}

#[test]
fn the_demo_refuses_a_data_directory_that_is_not_a_previous_demos() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let precious = path.join("node");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("node.key"), "not the demo's").unwrap();
    let refused = tidings(path, &["demo", "--data-dir", "node"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("not a previous demo's directory"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read_to_string(precious.join("node.key")).unwrap(),
        "not the demo's",
        "nothing in it was touched"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let bash = tidings(path, &["completions", "bash"]);
    assert!(bash.status.success());
    let script = stdout(&bash);
    for command in ["watch", "leave", "lookup", "roster", "completions"] {
        assert!(script.contains(command), "{command} is not completed");
    }
    std::fs::write(path.join("tidings.bash"), &script).unwrap();
    let checked = Command::new("bash")
        .args(["-n", "tidings.bash"])
        .current_dir(path)
        .status();
    if let Ok(status) = checked {
        assert!(
            status.success(),
            "the bash completion script does not parse"
        );
    }
    let man = tidings(path, &["man"]);
    assert!(stdout(&man).starts_with(".ie") && stdout(&man).contains(".TH tidings 1"));
    let pages = tidings(path, &["man", "--dir", "man"]);
    assert!(pages.status.success(), "{}", stderr(&pages));
    for page in ["tidings.1", "tidings-run.1", "tidings-roster-propose.1"] {
        let text = std::fs::read_to_string(path.join("man").join(page)).unwrap();
        assert!(text.contains(".SH SYNOPSIS"), "{page}");
    }
}

//! The commands that talk to a running node (`announce`, `lookup`, `members`,
//! `show`, `withdraw`), against a real `tidings run` process.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tidings(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .env_remove("TIDINGS_API")
        .env_remove("TIDINGS_CONFIG")
        .output()
        .unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn commands_against_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let init = tidings(
        path,
        &[
            "init",
            "solo",
            "--listen",
            &format!("127.0.0.1:{udp}"),
            "--api",
            &format!("127.0.0.1:{api}"),
        ],
    );
    assert!(init.status.success());
    let config = "solo/tidings.toml";
    // Before the node runs: a clear message.
    let absent = tidings(path, &["lookup", "--config", config]);
    assert_eq!(absent.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&absent.stderr).contains("no node is answering"));

    let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["run", "--config", config])
        .current_dir(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _stop = Stop(child);
    let started = Instant::now();
    while !tidings(path, &["members", "--config", config])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the node's API did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let announced = json(&tidings(
        path,
        &[
            "announce",
            "--config",
            config,
            "--name",
            "ocr",
            "--capability",
            "ocr",
            "--endpoint",
            "https://ocr.example/api",
            "--meta",
            "lang=en",
            "--json",
        ],
    ));
    let record = announced["record"].as_str().unwrap().to_string();
    let found = json(&tidings(
        path,
        &[
            "lookup",
            "--config",
            config,
            "--capability",
            "ocr",
            "--json",
        ],
    ));
    assert_eq!(found["specialists"][0]["specialist"]["meta"]["lang"], "en");
    let members = json(&tidings(path, &["members", "--config", config, "--json"]));
    assert_eq!(members["members"][0]["this_node"], true);
    let shown = json(&tidings(
        path,
        &["show", "--config", config, &record, "--json"],
    ));
    assert_eq!(shown["current"], true);
    let text =
        String::from_utf8(tidings(path, &["show", "--config", config, &record]).stdout).unwrap();
    assert!(text.contains("published here"), "{text}");
    assert!(
        json(&tidings(
            path,
            &["withdraw", "--config", config, "--name", "ocr", "--json"]
        ))["seq"]
            .as_u64()
            .unwrap()
            >= 3
    );
    let missing = tidings(path, &["withdraw", "--config", config, "--name", "ocr"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    let bad = tidings(path, &["show", "--config", config, "nonsense"]);
    assert_eq!(bad.status.code(), Some(2));
}
